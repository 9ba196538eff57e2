//! Typed lookups: credentials, userbase entries, relay secrets, keys and served domains.
//!
//! Every lookup is case-insensitive on the key and returns owned values. A lookup that finds
//! an entry whose value does not parse for that use returns `None`; `validate` has reported it
//! at its position already, so the caller need not say more than "unknown".
//!
//! The value parsers here (`split_credential`, `parse_userbase`, `parse_secret`) are shared
//! with `validate.rs`, so that what `check` accepts is exactly what a lookup understands.

use std::collections::HashSet;
use std::path::PathBuf;

use ownmail_auth::{HashError, PasswordHash};

use super::Table;

/// A login name and its stored password hash.
#[derive(Clone, Debug)]
pub struct Credential {
    /// The login name: the table's key as written.
    pub user: String,
    pub hash: PasswordHash,
}

/// Where a user's mail goes: `NAME UID:GID:HOME`, or the fields of a `passwd:` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Always absolute.
    pub home: PathBuf,
    /// A `passwd:` line's `userdb_mail=` (or `mail=`) extra field, e.g. `maildir:~/Maildir`.
    pub mail: Option<String>,
}

/// A problem at byte `.0` of a value.
pub(crate) type ValueError = (usize, String);

/// A credentials value: `HASH`, or the article's `USER:HASH`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CredentialParts<'a> {
    /// The user named inside the value (`USER:HASH`), if any.
    pub user: Option<&'a str>,
    pub hash: &'a str,
    /// Byte offset of `hash` in the value.
    pub hash_offset: usize,
}

/// Splits a credentials value. A value starting with `$` or `{` is a hash as a whole (crypt
/// strings and Dovecot `{SCHEME}` prefixes may hold ':'); otherwise a ':' separates the
/// article's `USER:` from the hash; otherwise the value is a plain-text password.
pub(crate) fn split_credential(value: &str) -> Result<CredentialParts<'_>, ValueError> {
    if value.starts_with('$') || value.starts_with('{') {
        return Ok(CredentialParts {
            user: None,
            hash: value,
            hash_offset: 0,
        });
    }
    let Some((user, hash)) = value.split_once(':') else {
        return Ok(CredentialParts {
            user: None,
            hash: value,
            hash_offset: 0,
        });
    };
    if user.is_empty() {
        return Err((0, "empty user name before ':'".to_string()));
    }
    if let Some(bad) = user.find(char::is_whitespace) {
        return Err((
            bad,
            format!("whitespace inside the user name \"{user}\" (expected USER:HASH)"),
        ));
    }
    if hash.is_empty() {
        return Err((
            user.len() + 1,
            format!("no password hash after \"{user}:\""),
        ));
    }
    Ok(CredentialParts {
        user: Some(user),
        hash,
        hash_offset: user.len() + 1,
    })
}

/// Parses a stored hash; the one place this module calls `ownmail-auth`.
pub(crate) fn parse_hash(hash: &str) -> Result<PasswordHash, HashError> {
    PasswordHash::parse(hash)
}

/// Parses a userbase value `UID:GID:HOME`.
pub(crate) fn parse_userbase(value: &str) -> Result<(u32, u32, PathBuf), ValueError> {
    let mut parts = value.splitn(3, ':');
    let (Some(uid), Some(gid), Some(home)) = (parts.next(), parts.next(), parts.next()) else {
        return Err((0, format!("expected UID:GID:HOME, found \"{value}\"")));
    };
    let number = |text: &str, offset: usize, what: &str| {
        text.parse::<u32>()
            .map_err(|_| (offset, format!("{what} \"{text}\" is not a number")))
    };
    let uid_n = number(uid, 0, "uid")?;
    let gid_n = number(gid, uid.len() + 1, "gid")?;
    let home_offset = uid.len() + gid.len() + 2;
    if !home.starts_with('/') {
        return Err((
            home_offset,
            format!("home \"{home}\" is not an absolute path"),
        ));
    }
    Ok((uid_n, gid_n, PathBuf::from(home)))
}

/// Parses a relay secret `USER:PASSWORD`.
pub(crate) fn parse_secret(value: &str) -> Result<(String, String), ValueError> {
    let Some((user, password)) = value.split_once(':') else {
        return Err((0, "expected USER:PASSWORD".to_string()));
    };
    if user.is_empty() {
        return Err((0, "empty user name before ':'".to_string()));
    }
    if password.is_empty() {
        return Err((user.len() + 1, format!("no password after \"{user}:\"")));
    }
    Ok((user.to_string(), password.to_string()))
}

/// Whether `key` marks a served domain in a virtual table: `example.org: true`, or a lone
/// key that looks like a domain (a dot, no '@').
pub(crate) fn is_domain_marker(key: &str, value: Option<&str>) -> bool {
    if key.contains('@') || key.is_empty() {
        return false;
    }
    match value {
        Some(v) => v.eq_ignore_ascii_case("true"),
        None => key.contains('.'),
    }
}

impl Table {
    /// The password hash `user` logs in with: from a credentials table (`USER HASH` or
    /// `USER USER:HASH`) or a `passwd:` file. `None` if there is none or it is malformed.
    pub fn credentials(&self, user: &str) -> Option<Credential> {
        let i = self.index_of(user)?;
        let entry = self.entries.get(i)?;
        let hash = match self.passwd_record(i) {
            Some(record) if !record.has_password() => return None,
            Some(record) => parse_hash(&record.password).ok()?,
            None => {
                let value = entry.value.as_deref()?;
                parse_hash(split_credential(value).ok()?.hash).ok()?
            }
        };
        Some(Credential {
            user: entry.key.clone(),
            hash,
        })
    }

    /// Where `name`'s mail lives: `NAME UID:GID:HOME`, or a complete `passwd:` line.
    pub fn userbase(&self, name: &str) -> Option<UserEntry> {
        let i = self.index_of(name)?;
        let entry = self.entries.get(i)?;
        if let Some(record) = self.passwd_record(i) {
            let home = record.home.as_deref().filter(|h| h.starts_with('/'))?;
            let mail = record.extra("userdb_mail").or_else(|| record.extra("mail"));
            return Some(UserEntry {
                name: entry.key.clone(),
                uid: record.uid?,
                gid: record.gid?,
                home: PathBuf::from(home),
                mail: mail.map(str::to_string),
            });
        }
        let (uid, gid, home) = parse_userbase(entry.value.as_deref()?).ok()?;
        Some(UserEntry {
            name: entry.key.clone(),
            uid,
            gid,
            home,
            mail: None,
        })
    }

    /// The `(user, password)` a relay authenticates with, for `label`.
    pub fn secret(&self, label: &str) -> Option<(String, String)> {
        if self.is_passwd() {
            return None;
        }
        parse_secret(self.entry(label)?.value.as_deref()?).ok()
    }

    /// Whether the table has `key` (case-insensitive).
    pub fn contains(&self, key: &str) -> bool {
        self.index_of(key).is_some()
    }

    /// The value of `key` (case-insensitive), as written; `None` also for a lone key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key)?.value.as_deref()
    }

    /// The distinct keys in file order, as written (the first of duplicates).
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, e)| self.index.get(&e.key.to_lowercase()) == Some(i))
            .map(|(_, e)| e.key.as_str())
    }

    /// The domains this table serves, lowercased, in file order: virtual `DOMAIN: true`
    /// entries and lone domain keys (SPEC §4.3).
    pub fn served_domains(&self) -> Vec<String> {
        if self.is_passwd() {
            return Vec::new();
        }
        let mut seen = HashSet::new();
        self.entries
            .iter()
            .filter(|e| is_domain_marker(&e.key, e.value.as_deref()))
            .map(|e| e.key.to_lowercase())
            .filter(|d| seen.insert(d.clone()))
            .collect()
    }

    /// Whether `domain` is one of `served_domains` (case-insensitive).
    pub fn serves_domain(&self, domain: &str) -> bool {
        self.entry(domain)
            .is_some_and(|e| !self.is_passwd() && is_domain_marker(&e.key, e.value.as_deref()))
    }

    /// The number of distinct keys.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_values_split() {
        let ok = |v| split_credential(v).map(|p| (p.user, p.hash, p.hash_offset));
        assert_eq!(ok("$6$s$h"), Ok((None, "$6$s$h", 0)));
        assert_eq!(
            ok("{SHA512-CRYPT}$6$s$h"),
            Ok((None, "{SHA512-CRYPT}$6$s$h", 0))
        );
        assert_eq!(ok("mayeu:$6$s$h"), Ok((Some("mayeu"), "$6$s$h", 6)));
        assert_eq!(ok("secret"), Ok((None, "secret", 0)));
        assert_eq!(ok(":x").map_err(|e| e.0), Err(0));
        assert_eq!(ok("=> mayeu:hashpassword}").map_err(|e| e.0), Err(2));
        assert_eq!(ok("mayeu:").map_err(|e| e.0), Err(6));
    }

    #[test]
    fn userbase_values_parse_with_offsets() {
        assert_eq!(
            parse_userbase("5000:5000:/var/vmail/m"),
            Ok((5000, 5000, PathBuf::from("/var/vmail/m")))
        );
        assert_eq!(parse_userbase("5000:5000").map_err(|e| e.0), Err(0));
        assert_eq!(parse_userbase("50a0:5000:/h").map_err(|e| e.0), Err(0));
        assert_eq!(parse_userbase("5000:-1:/h").map_err(|e| e.0), Err(5));
        assert_eq!(parse_userbase("1:2:var/m").map_err(|e| e.0), Err(4));
    }

    #[test]
    fn secrets_parse() {
        assert_eq!(
            parse_secret("u:p:w"),
            Ok(("u".to_string(), "p:w".to_string()))
        );
        assert_eq!(parse_secret("up").map_err(|e| e.0), Err(0));
        assert_eq!(parse_secret("u:").map_err(|e| e.0), Err(2));
    }

    #[test]
    fn domain_markers() {
        assert!(is_domain_marker("example.org", Some("true")));
        assert!(is_domain_marker("example.org", None));
        assert!(!is_domain_marker("m@example.org", Some("true")));
        assert!(!is_domain_marker("root", Some("pi")));
        assert!(!is_domain_marker("localhost", None));
    }
}
