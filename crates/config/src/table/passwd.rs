//! The `passwd:` format: Dovecot's passwd-file and `/etc/passwd` alike.
//!
//! ```text
//! user:password:uid:gid:gecos:home:shell:extra
//! m:{SHA512-CRYPT}$6$...:5000:5000::/var/vmail/m::userdb_mail=maildir:~/Maildir
//! ```
//!
//! Trailing fields may be left out (`user:password` is a credentials-only line). `extra` is
//! the rest of the line (it may hold ':'), a space-separated list of `key=value` (or bare
//! `key`) fields. `#` starts a comment line. The password field is kept verbatim; `x`, `*`,
//! an empty field and `!…` mean "no password login" as in `/etc/passwd`.

use std::path::Path;
use std::sync::Arc;

use super::file::utf8_line;
use super::Entry;
use crate::diag::{Diagnostics, Pos};

/// The fields of one passwd line beyond its user name (which is the entry's key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PasswdRecord {
    /// The password field as written; its position is the entry's `value_pos`.
    pub password: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The home field, if present and not empty.
    pub home: Option<String>,
    pub home_pos: Option<Pos>,
    /// `key=value` extra fields (`userdb_mail=maildir:~/Maildir`); a bare `key` has "".
    pub extra: Vec<(String, String)>,
}

impl PasswdRecord {
    /// Whether the password field allows a login at all (`x`, `*`, `!…` and "" do not).
    pub fn has_password(&self) -> bool {
        let p = self.password.as_str();
        !(p.is_empty() || p == "x" || p == "*" || p.starts_with('!') || p.starts_with("*LK*"))
    }

    /// The value of an extra field, by exact name.
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a passwd file into entries (key = user, value = everything after the first ':',
/// value position = the password field) and their records, in the same order.
pub(crate) fn parse(
    bytes: &[u8],
    file: &Arc<Path>,
    diags: &mut Diagnostics,
) -> (Vec<Entry>, Vec<PasswdRecord>) {
    let mut entries = Vec::new();
    let mut records = Vec::new();
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = u32::try_from(n + 1).unwrap_or(u32::MAX);
        let Some(line) = utf8_line(raw, file, line_no, diags) else {
            continue;
        };
        if let Some((entry, record)) = parse_line(line, file, line_no, diags) {
            entries.push(entry);
            records.push(record);
        }
    }
    (entries, records)
}

/// One line; `None` for blank and comment lines and for reported errors.
fn parse_line(
    line: &str,
    file: &Arc<Path>,
    line_no: u32,
    diags: &mut Diagnostics,
) -> Option<(Entry, PasswdRecord)> {
    let start = line.find(|c: char| !c.is_whitespace())?;
    let text = line.get(start..).unwrap_or_default().trim_end();
    if text.starts_with('#') {
        return None;
    }
    let pos_at = |byte_in_text: usize| {
        let n = line
            .get(..start + byte_in_text)
            .map_or(0, |s| s.chars().count())
            + 1;
        Pos::new(file.clone(), line_no, u32::try_from(n).unwrap_or(u32::MAX))
    };

    // Up to 8 fields; the last (extra) keeps its colons.
    let mut fields: Vec<(usize, &str)> = Vec::with_capacity(8);
    let mut offset = 0;
    for field in text.splitn(8, ':') {
        fields.push((offset, field));
        offset += field.len() + 1;
    }
    let field = |i: usize| fields.get(i).copied();

    let (_, user) = field(0)?;
    if user.is_empty() {
        diags.error(&pos_at(0), "empty user name in passwd line");
        return None;
    }
    if let Some(bad) = user.find(char::is_whitespace) {
        diags.error(
            &pos_at(bad),
            format!("whitespace inside the user name \"{user}\""),
        );
        return None;
    }
    let Some((pw_off, password)) = field(1) else {
        diags.error(
            &pos_at(user.len()),
            format!("missing ':' after \"{user}\" (passwd format is user:password:uid:gid:gecos:home:shell:extra)"),
        );
        return None;
    };

    let mut ok = true;
    let mut number = |i: usize, what: &str| -> Option<u32> {
        let (off, text) = field(i)?;
        if text.is_empty() {
            return None;
        }
        match text.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                diags.error(
                    &pos_at(off),
                    format!("{what} \"{text}\" of \"{user}\" is not a number"),
                );
                ok = false;
                None
            }
        }
    };
    let uid = number(2, "uid");
    let gid = number(3, "gid");
    if !ok {
        return None;
    }
    let (home, home_pos) = match field(5) {
        Some((off, h)) if !h.is_empty() => (Some(h.to_string()), Some(pos_at(off))),
        _ => (None, None),
    };
    let extra = field(7)
        .map(|(_, e)| {
            e.split_whitespace()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.to_string(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default();

    let entry = Entry {
        key: user.to_string(),
        value: Some(text.get(pw_off..).unwrap_or_default().to_string()),
        key_pos: pos_at(0),
        value_pos: Some(pos_at(pw_off)),
        exact_cols: true,
    };
    let record = PasswdRecord {
        password: password.to_string(),
        uid,
        gid,
        home,
        home_pos,
        extra,
    };
    Some((entry, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> (Vec<Entry>, Vec<PasswdRecord>, Vec<String>) {
        let mut diags = Diagnostics::new();
        let file: Arc<Path> = Arc::from(Path::new("/p"));
        let (e, r) = parse(text.as_bytes(), &file, &mut diags);
        (e, r, diags.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn dovecot_line_with_extra_fields() {
        let (e, r, d) = parse_str("# users\nm:{PLAIN}pw:5000:5000::/var/vmail/m::userdb_mail=maildir:~/ quota_rule=*:storage=1G\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(e[0].key, "m");
        assert_eq!(e[0].key_pos.line, 2);
        assert_eq!(e[0].value_pos.as_ref().map(|p| p.col), Some(3));
        assert_eq!(r[0].password, "{PLAIN}pw");
        assert_eq!((r[0].uid, r[0].gid), (Some(5000), Some(5000)));
        assert_eq!(r[0].home.as_deref(), Some("/var/vmail/m"));
        assert_eq!(r[0].home_pos.as_ref().map(|p| p.col), Some(24));
        assert_eq!(r[0].extra("userdb_mail"), Some("maildir:~/"));
        assert_eq!(r[0].extra("quota_rule"), Some("*:storage=1G"));
    }

    #[test]
    fn etc_passwd_line_and_short_lines() {
        let (e, r, d) =
            parse_str("vmail:x:5000:5000::/var/vmail:/usr/sbin/nologin\nalice:$6$s$h\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(e.len(), 2);
        assert!(!r[0].has_password());
        assert_eq!(r[1].password, "$6$s$h");
        assert_eq!(r[1].uid, None);
        assert_eq!(r[1].home, None);
    }

    #[test]
    fn malformed_lines_are_errors_at_their_column() {
        let (e, _, d) = parse_str(":pw\nbob:pw:50x0:1\ncarol:pw:1:g\ndave\nok:pw\n");
        assert_eq!(e.len(), 1);
        assert_eq!(
            d,
            vec![
                "/p:1:1: empty user name in passwd line",
                "/p:2:8: uid \"50x0\" of \"bob\" is not a number",
                "/p:3:12: gid \"g\" of \"carol\" is not a number",
                "/p:4:5: missing ':' after \"dave\" (passwd format is user:password:uid:gid:gecos:home:shell:extra)",
            ]
        );
    }
}
