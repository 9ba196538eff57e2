//! LIST and LSUB (RFC 9051 §6.3.9, RFC 3501 §6.3.9), with CHILDREN (RFC 3348), SPECIAL-USE
//! (RFC 6154) attributes and LIST-STATUS (RFC 5819). `/` is the hierarchy delimiter.

use ownmail_imap_proto::{Data, ListReturn, ListSelect, Mailbox, MailboxAttr};
use ownmail_mailstore::FolderInfo;

use crate::session::{store_error, Session, Tagged};

const DELIM: char = '/';

/// Case: IMAP names are case-sensitive except INBOX; we compare exactly, INBOX aside.
fn name_matches(pattern: &str, name: &str) -> bool {
    if name == "INBOX" {
        let upper = pattern.to_string();
        let p = if upper.len() >= 5
            && upper
                .get(..5)
                .is_some_and(|h| h.eq_ignore_ascii_case("INBOX"))
        {
            format!("INBOX{}", upper.get(5..).unwrap_or(""))
        } else {
            upper
        };
        return matches_cs(p.as_bytes(), name.as_bytes());
    }
    matches_cs(pattern.as_bytes(), name.as_bytes())
}

/// Whether `name` matches `pattern`: `*` matches anything, `%` anything but the delimiter
/// (RFC 9051 §6.3.9). Dynamic programming, so many wildcards cannot blow up.
fn matches_cs(pattern: &[u8], name: &[u8]) -> bool {
    let mut ok = vec![false; name.len() + 1];
    if let Some(first) = ok.first_mut() {
        *first = true;
    }
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        if p == b'*' || p == b'%' {
            let mut run = false;
            for j in 0..=name.len() {
                if j > 0 && p == b'%' && name.get(j - 1) == Some(&(DELIM as u8)) {
                    run = false;
                }
                run = run || ok.get(j).copied().unwrap_or(false);
                if let Some(n) = next.get_mut(j) {
                    *n = run;
                }
            }
        } else {
            for j in 1..=name.len() {
                let v = ok.get(j - 1).copied().unwrap_or(false) && name.get(j - 1) == Some(&p);
                if let Some(n) = next.get_mut(j) {
                    *n = v;
                }
            }
        }
        ok = next;
    }
    ok.last().copied().unwrap_or(false)
}

fn attrs(f: &FolderInfo, with_subscribed: bool) -> Vec<MailboxAttr> {
    let mut a = Vec::new();
    if !f.selectable {
        a.push(MailboxAttr::NoSelect);
    }
    a.push(if f.has_children {
        MailboxAttr::HasChildren
    } else {
        MailboxAttr::HasNoChildren
    });
    if let Some(su) = f.special_use {
        a.push(MailboxAttr::parse(su.attribute()));
    }
    if with_subscribed && f.subscribed {
        a.push(MailboxAttr::Subscribed);
    }
    a
}

pub(crate) fn list(
    s: &mut Session,
    selection: &[ListSelect],
    reference: &str,
    patterns: &[String],
    returns: &[ListReturn],
) -> Tagged {
    let user = match s.user() {
        Ok(u) => u,
        Err(t) => return t,
    };
    // RFC 9051 §6.3.9: an empty pattern asks for the delimiter and the root.
    if patterns.len() == 1 && patterns.first().is_some_and(|p| p.is_empty()) {
        s.data(Data::List {
            attrs: vec![MailboxAttr::NoSelect],
            delimiter: Some(DELIM),
            mailbox: String::new(),
            child_subscribed: false,
        });
        return Tagged::ok("LIST completed");
    }
    let folders = match user.store.list_folders() {
        Ok(f) => f,
        Err(e) => return store_error(e),
    };
    let subscribed_only = selection.contains(&ListSelect::Subscribed);
    let special_only = selection.contains(&ListSelect::SpecialUse);
    let with_subscribed = subscribed_only || returns.contains(&ListReturn::Subscribed);
    let status_items = returns.iter().find_map(|r| match r {
        ListReturn::Status(items) => Some(items.clone()),
        _ => None,
    });
    let mut out = Vec::new();
    for f in &folders {
        let hit = patterns.iter().any(|p| {
            let decoded = ownmail_imap_proto::mutf7_decode(p).unwrap_or_else(|_| p.clone());
            name_matches(&format!("{reference}{decoded}"), &f.name)
        });
        if !hit || (subscribed_only && !f.subscribed) || (special_only && f.special_use.is_none()) {
            continue;
        }
        out.push((f.name.clone(), attrs(f, with_subscribed), f.selectable));
    }
    for (name, attrs, selectable) in out {
        s.data(Data::List {
            attrs,
            delimiter: Some(DELIM),
            mailbox: name.clone(),
            child_subscribed: false,
        });
        if let (Some(items), true) = (&status_items, selectable) {
            if let Ok(items) = crate::mailbox::status_values(s, &Mailbox::new(name.clone()), items)
            {
                s.data(Data::Status {
                    mailbox: name,
                    items,
                });
            }
        }
    }
    Tagged::ok("LIST completed")
}

pub(crate) fn lsub(s: &mut Session, reference: &str, pattern: &str) -> Tagged {
    let user = match s.user() {
        Ok(u) => u,
        Err(t) => return t,
    };
    let folders = match user.store.list_folders() {
        Ok(f) => f,
        Err(e) => return store_error(e),
    };
    let pattern = format!("{reference}{pattern}");
    let hits: Vec<FolderInfo> = folders
        .into_iter()
        .filter(|f| f.subscribed && name_matches(&pattern, &f.name))
        .collect();
    for f in hits {
        let mut attrs = Vec::new();
        if !f.selectable {
            attrs.push(MailboxAttr::NoSelect);
        }
        s.data(Data::Lsub {
            attrs,
            delimiter: Some(DELIM),
            mailbox: f.name,
        });
    }
    Tagged::ok("LSUB completed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(name_matches("*", "Lists/rust"));
        assert!(!name_matches("%", "Lists/rust"));
        assert!(name_matches("%", "Lists"));
        assert!(name_matches("Lists/%", "Lists/rust"));
        assert!(name_matches("L*t", "Lists/rust"));
        assert!(name_matches("inbox", "INBOX"));
        assert!(!name_matches("sent", "Sent"));
        assert!(!name_matches("Sent", "Sent/x"));
        let many = "*".repeat(5000);
        assert!(name_matches(&many, "abc"));
    }
}
