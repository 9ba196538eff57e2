//! The client side of OpenSMTPD's filter protocol (smtpd-filters(7)): ownmail runs the
//! `filter NAME proc-exec "CMD"` programs written for OpenSMTPD — filter-dkimsign,
//! filter-rspamd, filter-senderscore, … — unchanged, and asks them about each SMTP session.
//!
//! We speak protocol version **0.6** ([`protocol::PROTOCOL_VERSION`]), the one of OpenSMTPD
//! 6.7 to 7.3: all three Debian 12 filters accept it (libopensmtpd takes any `0.x`; the Go
//! filters need at least 0.5 for `SESSION|TOKEN` order and 0.6 for `tx-mail` as
//! `msgid|result|address`), while 0.7 swapped `link-auth` to `result|user`, which the
//! filter-rspamd of Debian 12 reads the old way.
//!
//! # Use from the SMTP session
//!
//! [`Filters::start`] once per configuration: it spawns every `proc-exec` filter that a
//! listener's `filter NAME` reaches (directly or through a `chain`), runs the handshake, and
//! fails naming the filter if one does not complete it. Then, per connection on a listener
//! with `filter NAME`, [`Filters::session`] gives a [`FilterSession`]; call it as the SMTP
//! dialogue goes (methods returning [`Decision`] run the filters of that phase; the others
//! only report):
//!
//! ```text
//! let mut f = filters.session(name, SessionId::random())?;   // None: no such filter
//! f.connect(rdns, fcrdns, src, dest)      -> Decision   // before the banner
//! f.greeting(hostname)                                   // after the 220 banner
//! f.helo(ehlo, name)                      -> Decision   // HELO/EHLO; reports link-identify if passed
//! f.starttls() -> Decision;  f.tls(desc)                 // STARTTLS command; after the handshake
//! f.auth(mechanism) -> Decision;  f.auth_result(user, AuthResult)
//! f.mail_from(addr)                       -> Decision   // address without <>
//! f.mail_reply(txid, addr, Outcome)                     // after the reply: tx-begin + tx-mail
//! f.rcpt_to(addr) -> Decision;  f.rcpt_reply(txid, addr, Outcome);  f.envelope(txid, evpid)
//! f.data() -> Decision;  f.data_reply(txid, Outcome)     // before/after the 354
//! f.message(txid, &msg_crlf)              -> Result<Vec<u8>, Decision>   // after the final dot
//! f.commit(txid)                          -> Decision   // then queue the returned message
//! f.committed(txid, size) | f.rollback(txid) | f.reset(txid)
//! f.rset() / f.noop() / f.quit()          -> Decision   // the other commands filters may see
//! f.protocol_client(line); f.protocol_server(reply); f.timeout()
//! f.disconnect()                                         // also sent when `f` is dropped
//! ```
//!
//! [`Decision::Junk`] (and [`FilterSession::is_junk`]) mean: add `X-Spam: yes` to the message
//! (OpenSMTPD prepends it before the data-line phase, so filters see it). `Reject`/`Disconnect`
//! carry the reply as the filter gave it (always a valid `4xx`/`5xx`; a reject with `421`
//! becomes `Disconnect`, as in OpenSMTPD). [`Decision::TempFail`] means a filter failed:
//! answer 421 (or 451) — nothing was accepted, so nothing is lost.
//!
//! # Invariants
//! - A chain runs its filters in order for each phase; a `rewrite` feeds the next filter and
//!   the last rewrite wins; the first `reject` or `disconnect` ends the phase; `junk` is
//!   remembered and the chain goes on. Data lines flow through the chain the same way.
//! - Filters only get the events and phases they registered; a filter that crashes, hangs or
//!   writes garbage makes the affected request [`Decision::TempFail`], is killed and is
//!   restarted with backoff for later sessions (see `process`). Garbage from a filter never
//!   panics and never blocks other sessions.
//! - Nothing a client sends can start a new protocol line: CR and LF in parameters become
//!   spaces. AUTH credentials are never sent to filters (only the mechanism name).
#![forbid(unsafe_code)]

mod builtin;
mod process;
pub mod protocol;
mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ownmail_config::model::{Config, FilterKind};
use ownmail_config::table::Table;

pub use protocol::{Endpoint, Phase, SessionId, TxId, PROTOCOL_VERSION};
pub use session::{AuthResult, Decision, FilterSession, Outcome};

use process::FilterProc;

/// Knobs of the filter runtime; the defaults are OpenSMTPD-like. Tests shorten the timeouts.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a filter may take from start to `register|ready`.
    pub handshake_timeout: Duration,
    /// How long a filter may take to answer one request (all phases but data-line).
    pub request_timeout: Duration,
    /// How long one filter may take to return a whole message in the data-line phase.
    pub data_timeout: Duration,
    /// First wait before restarting a broken filter; doubles on each failure.
    pub restart_backoff: Duration,
    /// Longest wait between restarts.
    pub restart_backoff_max: Duration,
    /// Sent as `config|smtp-session-timeout`.
    pub session_timeout_secs: u32,
    /// Sent as `config|admd` (the authserv-id, e.g. the server's hostname), if set.
    pub admd: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            data_timeout: Duration::from_secs(30),
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            session_timeout_secs: 300,
            admd: None,
        }
    }
}

/// All filter processes of one configuration. Dropping it kills them.
pub struct Filters {
    procs: HashMap<String, Arc<FilterProc>>,
    /// Built-in filters, compiled; they need no process.
    builtins: HashMap<String, Arc<builtin::Compiled>>,
    /// Listener-visible filter name → the `proc-exec` and built-in filters it runs, in order.
    chains: HashMap<String, Vec<String>>,
    settings: Arc<Settings>,
}

impl Filters {
    /// Spawns every `proc-exec` filter that some listener's `filter NAME` reaches and waits
    /// for each handshake; compiles the built-in filters against `tables` (the loaded
    /// tables of the configuration). The error names the filter that failed.
    pub async fn start(
        config: &Config,
        settings: Settings,
        tables: Arc<HashMap<String, Table>>,
    ) -> Result<Filters, String> {
        let settings = Arc::new(settings);
        let mut chains: HashMap<String, Vec<String>> = HashMap::new();
        let mut commands: Vec<(String, String)> = Vec::new();
        let mut builtins: HashMap<String, Arc<builtin::Compiled>> = HashMap::new();
        for listener in &config.listeners {
            let Some(name) = &listener.filter else {
                continue;
            };
            if chains.contains_key(name) {
                continue;
            }
            let members = resolve(config, name)?;
            for (member, kind) in &members {
                match kind {
                    FilterKind::ProcExec(command) => {
                        if !commands.iter().any(|(n, _)| n == member) {
                            commands.push((member.clone(), command.clone()));
                        }
                    }
                    FilterKind::Builtin(b) => {
                        if !builtins.contains_key(member) {
                            let compiled = builtin::Compiled::new(b, &tables)
                                .map_err(|e| format!("filter {member:?}: {e}"))?;
                            builtins.insert(member.clone(), Arc::new(compiled));
                        }
                    }
                    FilterKind::Chain(_) => {
                        return Err(format!("filter {member:?}: a chain cannot be chained"))
                    }
                }
            }
            chains.insert(name.clone(), members.into_iter().map(|(n, _)| n).collect());
        }
        let mut procs: HashMap<String, Arc<FilterProc>> = HashMap::new();
        for (name, command) in commands {
            let proc = FilterProc::new(&name, &command, settings.clone());
            if let Err(e) = proc.start().await {
                for p in procs.values() {
                    p.close();
                }
                return Err(format!("filter {name:?}: {e}"));
            }
            procs.insert(name, proc);
        }
        Ok(Filters {
            procs,
            builtins,
            chains,
            settings,
        })
    }

    /// The filters of one session on a listener with `filter NAME`; `None` if no listener
    /// uses `name` (a configuration error the caller should not meet after `check`).
    pub fn session(&self, name: &str, id: SessionId) -> Option<FilterSession> {
        let members = self.chains.get(name)?;
        let mut chain = Vec::with_capacity(members.len());
        for m in members {
            if let Some(b) = self.builtins.get(m) {
                chain.push(session::Member {
                    name: Arc::from(m.as_str()),
                    registrations: protocol::Registrations::default(),
                    running: None,
                    builtin: Some(b.clone()),
                });
                continue;
            }
            let proc = self.procs.get(m)?;
            let (running, registrations) = proc.current();
            chain.push(session::Member {
                name: proc.name.clone(),
                registrations,
                running,
                builtin: None,
            });
        }
        Some(FilterSession::new(id, chain, self.settings.clone()))
    }

    /// Whether every process behind `name` is running (false while one is being restarted).
    pub fn healthy(&self, name: &str) -> bool {
        self.chains.get(name).is_some_and(|members| {
            members.iter().all(|m| {
                self.builtins.contains_key(m)
                    || self.procs.get(m).is_some_and(|p| p.current().0.is_some())
            })
        })
    }

    /// Kills every filter process; no restart follows.
    pub fn shutdown(&self) {
        for p in self.procs.values() {
            p.close();
        }
    }
}

impl Drop for Filters {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The `proc-exec` and built-in filters behind a listener's filter name, in order.
fn resolve<'c>(config: &'c Config, name: &str) -> Result<Vec<(String, &'c FilterKind)>, String> {
    let find = |n: &str| config.filters.iter().find(|f| f.name == n);
    let Some(filter) = find(name) else {
        return Err(format!("filter {name:?} is not defined"));
    };
    match &filter.kind {
        FilterKind::Chain(members) => members
            .iter()
            .map(|m| match find(m).map(|f| &f.kind) {
                Some(FilterKind::Chain(_)) => Err(format!(
                    "filter chain {name:?} (line {}): member {m:?} is a chain; only proc-exec and built-in filters can be chained",
                    filter.pos.line
                )),
                Some(kind) => Ok((m.clone(), kind)),
                None => Err(format!(
                    "filter chain {name:?} (line {}): member {m:?} is not defined",
                    filter.pos.line
                )),
            })
            .collect(),
        kind => Ok(vec![(name.to_string(), kind)]),
    }
}
