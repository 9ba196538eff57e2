//! Who may log in, and which sender addresses a login may use (SPEC §5.5).
//!
//! Credentials come from the listener's `auth <t>` table (any §4.3 form). An authenticated
//! login owns an address when the configuration delivers that address only to the login's
//! own mailboxes. The login's mailboxes are the local users that `LOGIN@DOMAIN` resolves to,
//! for every domain this host serves — so the article's login `mayeu` (from `smtpdauth`)
//! owns what the aliases deliver to the virtual user `m`, because `mayeu@tc2.fr m` says
//! `mayeu@tc2.fr` is `m`'s. A login with an `@` is an address itself; a login that resolves
//! to nothing is its own (system) user name. A `senders <t>` table replaces all of this by an
//! explicit list per login (addresses or `@domain`).

use std::collections::BTreeSet;

use ownmail_config::model::{Expansion, For, TableOrValue};
use ownmail_types::{Address, Destination, ReversePath};

use crate::{RcptDecision, Ruleset, SessionInfo};

impl Ruleset {
    /// Checks `password` for `user` in the credentials table `table`. Slow on purpose (the
    /// hash schemes are): call it off the async threads.
    pub fn check_password(&self, table: &str, user: &str, password: &[u8]) -> bool {
        let Some(t) = self.table(table) else {
            return false;
        };
        match t.credentials(user) {
            Some(c) => c.hash.verify(password),
            None => false,
        }
    }

    /// Local mailboxes `addr` is delivered to, as internal mail; None when any part of it
    /// leaves this host or it is refused.
    fn mailboxes(&self, addr: &Address) -> Option<BTreeSet<String>> {
        let s = SessionInfo {
            local: true,
            ..SessionInfo::default()
        };
        let RcptDecision::Accept { destinations, .. } = self.route(&s, &ReversePath::Null, addr)
        else {
            return None;
        };
        let mut users = BTreeSet::new();
        for d in destinations {
            match d {
                Destination::Maildir { user, .. }
                | Destination::Mbox { user, .. }
                | Destination::Mda { user, .. } => {
                    users.insert(user.name.to_lowercase());
                }
                Destination::Lmtp { rcpt, .. } => {
                    users.insert(rcpt.to_lowercase());
                }
                Destination::Relay { .. } => return None,
            }
        }
        (!users.is_empty()).then_some(users)
    }

    /// The domains this host receives mail for: `for domain` values and tables, the domains
    /// that virtual tables mark as served, and the local names.
    pub(crate) fn served_domains(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .local_names
            .iter()
            .filter(|n| !n.starts_with('['))
            .cloned()
            .collect();
        for r in &self.config.rules {
            if let For::Domain(v) = &r.for_.value {
                match v {
                    TableOrValue::Value(d) => {
                        out.insert(d.to_lowercase());
                    }
                    TableOrValue::Table(t) => {
                        if let Some(table) = self.table(&t.name) {
                            out.extend(
                                table.keys().map(|k| k.trim_end_matches(':').to_lowercase()),
                            );
                        }
                    }
                }
            }
        }
        for a in &self.config.actions {
            if let Some(Expansion::Virtual(t)) = &a.expansion {
                if let Some(table) = self.table(&t.name) {
                    out.extend(table.served_domains().into_iter().map(|d| d.to_lowercase()));
                }
            }
        }
        out
    }

    /// The mailboxes a login owns (see the module header).
    pub fn login_mailboxes(&self, login: &str) -> BTreeSet<String> {
        if login.contains('@') {
            return Address::parse(login)
                .ok()
                .and_then(|a| self.mailboxes(&a))
                .unwrap_or_default();
        }
        let mut mine = BTreeSet::new();
        for d in self.served_domains() {
            if let Some(users) = self.mailboxes(&Address::new_unchecked(login, &d)) {
                mine.extend(users);
            }
        }
        if mine.is_empty() {
            mine.insert(login.to_lowercase());
        }
        mine
    }

    /// May `login` use `addr` as its sender? With a `senders` table, only what the table lists
    /// for the login; otherwise only addresses delivered to the login's own mailboxes.
    pub fn sender_owned(&self, login: &str, addr: &Address, senders: Option<&str>) -> bool {
        if let Some(name) = senders {
            let Some(value) = self
                .table(name)
                .and_then(|t| t.get(login).map(str::to_string))
            else {
                return false;
            };
            let full = addr.to_string().to_lowercase();
            let at_domain = format!("@{}", addr.domain());
            return value
                .split(|c: char| c == ',' || c.is_whitespace())
                .map(|v| v.trim().to_lowercase())
                .any(|v| !v.is_empty() && (v == full || v == at_domain));
        }
        match self.mailboxes(addr) {
            Some(theirs) => theirs.is_subset(&self.login_mailboxes(login)),
            None => false,
        }
    }
}
