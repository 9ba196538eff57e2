//! One step of alias/virtual expansion, for routers that re-route each resulting address
//! through the rules (as OpenSMTPD does) instead of expanding inside one table.

use super::expand::{parse_target, split_targets, Target};
use super::Table;

/// One target of an alias or virtual entry, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AliasTarget {
    /// A local user name (no `@`).
    User(String),
    /// `local@domain`.
    Address(String),
    /// `|command`.
    Command(String),
    /// `/path/to/file` (mbox-style append).
    File(String),
    /// `:include:/path`.
    Include(String),
    /// `error:CODE text`.
    Error(u16, String),
}

impl Table {
    /// The targets of the entry that `local@domain` leads to — tried in the order `local@domain`
    /// (exact), without its sub-address, `local`, `@domain` — or None when no entry matches.
    /// Targets that do not parse are left out (`check` reports them).
    pub fn address_targets(
        &self,
        local: &str,
        domain: &str,
        delim: char,
    ) -> Option<Vec<AliasTarget>> {
        let idx = self.lookup_address(local, domain, delim)?;
        Some(self.targets_of(idx))
    }

    /// The targets of the entry for the user name `user` (exact, then without sub-address).
    pub fn user_targets(&self, user: &str, delim: char) -> Option<Vec<AliasTarget>> {
        let idx = self.lookup_user(user, delim)?;
        Some(self.targets_of(idx))
    }

    fn targets_of(&self, idx: usize) -> Vec<AliasTarget> {
        let Some(value) = self.entries.get(idx).and_then(|e| e.value.as_deref()) else {
            return Vec::new();
        };
        split_targets(value)
            .into_iter()
            .filter_map(|(_, t)| parse_target(t).ok())
            .map(|t| match t {
                Target::User(u) => AliasTarget::User(u.to_string()),
                Target::Address { full, .. } => AliasTarget::Address(full.to_string()),
                Target::Command(c) => AliasTarget::Command(c.to_string()),
                Target::File(f) => AliasTarget::File(f.to_string()),
                Target::Include(p) => AliasTarget::Include(p.to_string()),
                Target::Error(code, text) => AliasTarget::Error(code, text.to_string()),
            })
            .collect()
    }
}
