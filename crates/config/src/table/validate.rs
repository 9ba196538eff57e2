//! `Table::validate`: checks every entry for one use, at the exact column of the problem.
//!
//! The parsers are the ones lookups use (`lookup.rs`, `expand.rs`), so an entry `check`
//! accepts is an entry a lookup understands, and an entry it rejects is one a lookup would
//! skip — never one it would silently truncate.

use std::collections::HashSet;

use super::expand::{
    parse_target, split_targets, ExpandError, Failure, Target, Walker, MAX_DEPTH, MAX_RESULTS,
};
use super::lookup::{is_domain_marker, parse_hash, parse_secret, parse_userbase, split_credential};
use super::{Entry, Table, Usage};
use crate::diag::Diagnostics;

impl Table {
    /// Checks the entries for `usage`, pushing errors and warnings at their positions.
    /// Call it once per use the configuration makes of the table.
    pub fn validate(&self, usage: Usage, diags: &mut Diagnostics) {
        match usage {
            Usage::Credentials => self.validate_credentials(diags),
            Usage::Userbase => self.validate_userbase(diags),
            Usage::Secrets => self.validate_secrets(diags),
            Usage::Aliases | Usage::Virtual => self.validate_aliases(usage, diags),
            Usage::List => {}
        }
    }

    fn validate_credentials(&self, diags: &mut Diagnostics) {
        for (i, entry) in self.entries.iter().enumerate() {
            let key = &entry.key;
            if let Some(record) = self.passwd_record(i) {
                if record.has_password() {
                    check_hash(entry, &record.password, 0, diags);
                }
                continue;
            }
            let Some(value) = entry.value.as_deref() else {
                diags.error(
                    &entry.key_pos,
                    format!("no password for \"{key}\" (expected USER HASH)"),
                );
                continue;
            };
            let parts = match split_credential(value) {
                Ok(parts) => parts,
                Err((offset, message)) => {
                    diags.error(
                        &entry.value_pos_at(offset),
                        format!("malformed credentials for \"{key}\": {message}"),
                    );
                    continue;
                }
            };
            if let Some(user) = parts.user.filter(|u| !u.eq_ignore_ascii_case(key)) {
                diags.warning(
                    &entry.value_pos_at(0),
                    format!("the credentials of \"{key}\" name another user \"{user}\"; the login name is \"{key}\""),
                );
            }
            check_hash(entry, parts.hash, parts.hash_offset, diags);
        }
    }

    fn validate_userbase(&self, diags: &mut Diagnostics) {
        for (i, entry) in self.entries.iter().enumerate() {
            let key = &entry.key;
            if let Some(record) = self.passwd_record(i) {
                let home_ok = record.home.as_deref().is_some_and(|h| h.starts_with('/'));
                if record.uid.is_none() || record.gid.is_none() || !home_ok {
                    let pos = if home_ok {
                        &entry.key_pos
                    } else {
                        record.home_pos.as_ref().unwrap_or(&entry.key_pos)
                    };
                    diags.warning(
                        pos,
                        format!("\"{key}\" has no uid, gid and absolute home in this passwd file; mail cannot be delivered to it"),
                    );
                }
                continue;
            }
            let Some(value) = entry.value.as_deref() else {
                diags.error(
                    &entry.key_pos,
                    format!("no UID:GID:HOME for user \"{key}\""),
                );
                continue;
            };
            if let Err((offset, message)) = parse_userbase(value) {
                diags.error(
                    &entry.value_pos_at(offset),
                    format!("userbase entry \"{key}\": {message}"),
                );
            }
        }
    }

    fn validate_secrets(&self, diags: &mut Diagnostics) {
        if self.is_passwd() {
            diags.error(
                &self.source_pos,
                format!(
                    "table \"{}\": a passwd: table cannot hold relay secrets (LABEL USER:PASSWORD)",
                    self.name
                ),
            );
            return;
        }
        for entry in &self.entries {
            let key = &entry.key;
            let Some(value) = entry.value.as_deref() else {
                diags.error(
                    &entry.key_pos,
                    format!("no USER:PASSWORD for relay secret \"{key}\""),
                );
                continue;
            };
            if let Err((offset, message)) = parse_secret(value) {
                diags.error(
                    &entry.value_pos_at(offset),
                    format!("relay secret \"{key}\": {message}"),
                );
            }
        }
    }

    fn validate_aliases(&self, usage: Usage, diags: &mut Diagnostics) {
        let what = if usage == Usage::Virtual {
            "virtual"
        } else {
            "alias"
        };
        if self.is_passwd() {
            diags.error(
                &self.source_pos,
                format!(
                    "table \"{}\": a passwd: table cannot be used as an {what} table",
                    self.name
                ),
            );
            return;
        }
        for entry in &self.entries {
            if usage == Usage::Virtual && is_domain_marker(&entry.key, entry.value.as_deref()) {
                continue;
            }
            self.check_alias_key(entry, usage, diags);
            let Some(value) = entry.value.as_deref() else {
                let hint = match entry.key.split_once(':') {
                    Some((k, v)) => format!(" (write \"{k}: {v}\")"),
                    None => String::new(),
                };
                diags.error(
                    &entry.key_pos,
                    format!("{what} \"{}\" has no target{hint}", entry.key),
                );
                continue;
            };
            for (offset, text) in split_targets(value) {
                let pos = entry.value_pos_at(offset);
                match parse_target(text) {
                    Err(message) => diags.error(
                        &pos,
                        format!("invalid target \"{text}\" for \"{}\": {message}", entry.key),
                    ),
                    Ok(Target::Address {
                        full,
                        local,
                        domain,
                    }) if self.serves_domain(domain) => {
                        if self.lookup_address(local, domain, '+').is_none() {
                            diags.warning(
                                &pos,
                                format!("\"{full}\" is in served domain {domain} but has no entry; mail to it will bounce"),
                            );
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
        self.check_loops(diags);
    }

    fn check_alias_key(&self, entry: &Entry, usage: Usage, diags: &mut Diagnostics) {
        let key = &entry.key;
        match (usage, key.rsplit_once('@')) {
            (Usage::Aliases, Some(_)) => diags.warning(
                &entry.key_pos,
                format!("alias tables are looked up by user name, so \"{key}\" never matches; use the table as a virtual table"),
            ),
            (Usage::Virtual, Some((_, domain))) if domain.is_empty() || domain.contains('@') => {
                diags.error(&entry.key_pos, format!("malformed virtual key \"{key}\" (expected user@domain or @domain)"));
            }
            _ => {}
        }
    }

    /// Expands every entry; reports each cycle once, at the target that closes it.
    fn check_loops(&self, diags: &mut Diagnostics) {
        let mut cycles: HashSet<Vec<String>> = HashSet::new();
        let (mut deep, mut many) = (false, false);
        for (start, entry) in self.entries.iter().enumerate() {
            // File order, so that each cycle is reported at the same place every time.
            if self.index_of(&entry.key) != Some(start) {
                continue;
            }
            if entry.value.is_none() || is_domain_marker(&entry.key, entry.value.as_deref()) {
                continue;
            }
            let mut walker = Walker::new(self, '+');
            let Err(Failure { error, at }) = walker.entry(start, None) else {
                continue;
            };
            let at_pos = at.and_then(|(e, off)| self.entries.get(e).map(|e| e.value_pos_at(off)));
            let pos = at_pos.unwrap_or_else(|| entry.key_pos.clone());
            match error {
                ExpandError::Loop(chain) => {
                    let mut members: Vec<String> =
                        chain.iter().skip(1).map(|k| k.to_lowercase()).collect();
                    members.sort();
                    if cycles.insert(members) {
                        diags.error(&pos, ExpandError::Loop(chain).to_string());
                    }
                }
                ExpandError::TooDeep if !deep => {
                    deep = true;
                    diags.error(
                        &pos,
                        format!(
                            "expanding \"{}\" nests more than {MAX_DEPTH} entries deep",
                            entry.key
                        ),
                    );
                }
                ExpandError::TooMany if !many => {
                    many = true;
                    diags.error(
                        &pos,
                        format!(
                            "expanding \"{}\" gives more than {MAX_RESULTS} results",
                            entry.key
                        ),
                    );
                }
                _ => {}
            }
        }
    }
}

/// Checks a password hash found at byte `offset` of the entry's value.
fn check_hash(entry: &Entry, hash: &str, offset: usize, diags: &mut Diagnostics) {
    let key = &entry.key;
    match parse_hash(hash) {
        Err(e) => diags.error(
            &entry.value_pos_at(offset.saturating_add(e.offset)),
            format!("malformed password hash for \"{key}\": {}", e.message),
        ),
        Ok(h) if h.is_plain_text() => diags.warning(
            &entry.value_pos_at(offset),
            format!("plain-text password for \"{key}\"; hash it with \"ownmail encrypt\""),
        ),
        Ok(_) => {}
    }
}
