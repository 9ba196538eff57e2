//! Who an IMAP login is and where their mail lives (SPEC §4.2 `imap auth|userbase|mailbox`,
//! §5.6).
//!
//! - Credentials: `imap auth <t>`, else the table of the first `listen … auth <t>`, else the
//!   `imap userbase` table when it is a `passwd:` file (Dovecot's passdb and userdb in one).
//! - The user: the login's entry in `imap userbase <t>` (else in the userbase of the first
//!   action that has one, else the system's passwd). A login that is not in the userbase but
//!   owns exactly one mailbox (the article's `mayeu@tc2.fr` → `m`) is that mailbox's user.
//! - The Maildir: a `passwd:` entry's `userdb_mail=maildir:PATH`, else `imap mailbox PATH`,
//!   else where the rules deliver that user's mail, else `~/Maildir`. `~` is the user's home.
//!
//! The same Maildir the delivery agent writes is the one IMAP serves: with no `imap` lines
//! at all, the rules decide both.

use std::path::PathBuf;

use ownmail_config::model::ActionKind;
use ownmail_types::{Address, Destination, LocalUser, ReversePath};

use crate::route::{expand_format, system_user};
use crate::{RcptDecision, Ruleset, SessionInfo};

/// A logged-in IMAP user's mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapAccount {
    /// The user as the userbase knows it (uid/gid own the Maildir).
    pub user: LocalUser,
    /// The INBOX Maildir; folders are `.Name` inside it.
    pub maildir: PathBuf,
}

impl Ruleset {
    /// The credentials table IMAP logins are checked against (see the module header).
    pub fn imap_auth_table(&self) -> Option<String> {
        let c = self.config();
        if let Some(t) = &c.imap.auth {
            return Some(t.name.clone());
        }
        if let Some(t) = c
            .listeners
            .iter()
            .find_map(|l| l.auth.as_ref().and_then(|a| a.table.as_ref()))
        {
            return Some(t.name.clone());
        }
        let ub = c.imap.userbase.as_ref()?;
        self.table(&ub.name)
            .filter(|t| t.is_passwd())
            .map(|_| ub.name.clone())
    }

    /// Checks `password` and returns the login's mailbox. Slow on purpose (password hashes):
    /// call it off the async threads.
    pub fn imap_login(&self, login: &str, password: &[u8]) -> Option<ImapAccount> {
        let table = self.imap_auth_table()?;
        if !self.check_password(&table, login, password) {
            return None;
        }
        self.imap_account(login)
    }

    /// Where `login`'s mail lives (no password check).
    pub fn imap_account(&self, login: &str) -> Option<ImapAccount> {
        if login.is_empty() || login.contains('/') || login.contains('\0') {
            return None;
        }
        let mut names = vec![login.to_string()];
        let owned = self.login_mailboxes(login);
        if owned.len() == 1 {
            names.extend(owned.into_iter().filter(|n| !n.eq_ignore_ascii_case(login)));
        }
        names.iter().find_map(|n| self.account_of(n))
    }

    fn imap_userbase(&self) -> Option<String> {
        let c = self.config();
        if let Some(t) = &c.imap.userbase {
            return Some(t.name.clone());
        }
        c.actions
            .iter()
            .filter(|a| matches!(a.kind, ActionKind::Maildir { .. }))
            .chain(c.actions.iter())
            .find_map(|a| a.userbase.as_ref().map(|t| t.name.clone()))
    }

    fn account_of(&self, name: &str) -> Option<ImapAccount> {
        let (user, mail) = match self.imap_userbase() {
            Some(t) => {
                let e = self.table(&t)?.userbase(name)?;
                (
                    LocalUser {
                        name: e.name,
                        uid: e.uid,
                        gid: e.gid,
                        home: e.home,
                    },
                    e.mail,
                )
            }
            None => (system_user(name)?, None),
        };
        let maildir = match mail.as_deref().and_then(dovecot_maildir) {
            Some(p) => PathBuf::from(expand_dovecot(&expand_format(p, &user), &user)),
            None => match &self.config().imap.mailbox {
                Some(p) => PathBuf::from(expand_format(p, &user)),
                None => self
                    .delivered_maildir(&user.name)
                    .unwrap_or_else(|| user.home.join("Maildir")),
            },
        };
        Some(ImapAccount { user, maildir })
    }

    /// The Maildir the rules deliver local user `name`'s mail to, if any rule does.
    fn delivered_maildir(&self, name: &str) -> Option<PathBuf> {
        let s = SessionInfo {
            local: true,
            ..SessionInfo::default()
        };
        let mut domains: Vec<String> = self.served_domains().into_iter().collect();
        domains.push(self.hostname().to_string());
        domains.push("localhost".to_string());
        for d in domains {
            let addr = Address::new_unchecked(name, &d);
            let RcptDecision::Accept { destinations, .. } =
                self.route(&s, &ReversePath::Null, &addr)
            else {
                continue;
            };
            for dest in destinations {
                if let Destination::Maildir { user, path, .. } = dest {
                    if user.name.eq_ignore_ascii_case(name) {
                        return Some(path);
                    }
                }
            }
        }
        None
    }
}

/// `maildir:PATH[:OPTION=…]` (Dovecot's mail location) → PATH; other formats → None.
fn dovecot_maildir(location: &str) -> Option<&str> {
    let rest = location.strip_prefix("maildir:")?;
    let path = rest.split(':').next().unwrap_or(rest);
    (!path.is_empty()).then_some(path)
}

/// Dovecot's `%u`, `%n`, `%h` (and `%%`) in a mail location.
fn expand_dovecot(s: &str, user: &LocalUser) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') | Some('n') => out.push_str(&user.name),
            Some('h') => out.push_str(&user.home.to_string_lossy()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_locations() {
        assert_eq!(dovecot_maildir("maildir:~/"), Some("~/"));
        assert_eq!(
            dovecot_maildir("maildir:~/Maildir:LAYOUT=fs"),
            Some("~/Maildir")
        );
        assert_eq!(dovecot_maildir("mbox:~/mail"), None);
        assert_eq!(dovecot_maildir("maildir:"), None);
        let u = LocalUser {
            name: "m".into(),
            uid: 1,
            gid: 1,
            home: PathBuf::from("/var/vmail/m"),
        };
        assert_eq!(expand_dovecot("/srv/%u/x%%", &u), "/srv/m/x%");
        assert_eq!(expand_dovecot("%h/Maildir%", &u), "/var/vmail/m/Maildir%");
    }
}
