//! Rules: which rule a recipient matches, and where its mail goes (SPEC §4.1, §5.3).
//!
//! Evaluation is pure (no I/O beyond the in-memory tables and, for users not in a userbase,
//! the system's passwd database). Rules are tried in order per recipient; the first match
//! wins; no match is a rejection. A recipient is resolved completely when it is given
//! (`RCPT TO`), as OpenSMTPD does: aliases are expanded, every address an expansion yields
//! goes through the rules again (as a local, internal envelope), and every local user must
//! exist — so an unknown user is refused at RCPT, never bounced later.

mod imap;
mod matching;
mod owner;
mod route;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ownmail_config::table::Table;
use ownmail_config::Config;

pub use imap::ImapAccount;
pub use route::{RcptDecision, Refusal};

/// What a rule may ask about the session a recipient arrived in.
#[derive(Clone, Debug, Default)]
pub struct SessionInfo {
    /// The client's address; None for the local socket.
    pub client: Option<IpAddr>,
    /// A loopback connection or the local socket: what `from local` means.
    pub local: bool,
    /// The local submission socket (`sendmail`).
    pub socket: bool,
    /// The user the session authenticated as.
    pub auth_user: Option<String>,
    /// The listener's `tag`.
    pub tag: Option<String>,
    /// The session is encrypted.
    pub tls: bool,
    /// The HELO/EHLO name.
    pub helo: String,
    /// The client's verified reverse DNS name, when known.
    pub rdns: Option<String>,
}

/// A configuration ready to evaluate: the rules and the loaded tables.
pub struct Ruleset {
    config: Arc<Config>,
    tables: Arc<HashMap<String, Table>>,
    /// Lowercased names that `for local` covers.
    local_names: Vec<String>,
    hostname: String,
    sub_addr_delim: char,
}

impl Ruleset {
    /// `hostname` is this host's name; `listen_addrs` the addresses it listens on (their
    /// literals `[a.b.c.d]` count as local names, SPEC §4.1).
    pub fn new(
        config: Arc<Config>,
        tables: Arc<HashMap<String, Table>>,
        hostname: &str,
        listen_addrs: &[IpAddr],
    ) -> Self {
        let mut local_names = vec![
            "localhost".to_string(),
            "localhost.localdomain".to_string(),
            hostname.to_lowercase(),
        ];
        for l in &config.listeners {
            if let Some(h) = &l.hostname {
                local_names.push(h.to_lowercase());
            }
        }
        for a in listen_addrs {
            local_names.push(match a {
                IpAddr::V4(v4) => format!("[{v4}]"),
                IpAddr::V6(v6) => format!("[ipv6:{v6}]"),
            });
        }
        local_names.sort();
        local_names.dedup();
        let sub_addr_delim = config.smtp.sub_addr_delim.unwrap_or('+');
        Ruleset {
            config,
            tables,
            local_names,
            hostname: hostname.to_string(),
            sub_addr_delim,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// True when `domain` is one `for local` covers.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let d = domain.to_lowercase();
        self.local_names.contains(&d)
    }

    fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    /// An allow list (`greylist … allow <t>`): whether one of the table's keys is a network
    /// holding `client`.
    pub fn table_has_network(&self, table: &str, client: IpAddr) -> bool {
        self.table(table)
            .is_some_and(|t| t.keys().any(|k| matching::network_contains(k, client)))
    }

    /// Whether the table has `key` (case-insensitive), e.g. a sender domain on an allow list.
    pub fn table_contains(&self, table: &str, key: &str) -> bool {
        self.table(table).is_some_and(|t| t.contains(key))
    }
}
