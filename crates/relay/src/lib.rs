//! Delivery to other hosts (SPEC §5.4): by MX lookup, through a smarthost, or as a backup MX.
//! [`RelayCourier`] implements the queue's [`Courier`] for `Destination::Relay`; the binary
//! gives it one [`RelayRoute`] per relay action of the configuration.
//! [`RelayCourier::deliver_many`] takes several recipients of one message at once and gives
//! those of one action and domain (of one action, for a smarthost) a single transaction.
//!
//! The path of a message to a group of recipients:
//! 1. Loop check: more than [`RelayOptions::max_received`] `Received:` fields is a mail loop
//!    (RFC 5321 §6.3), a permanent failure before any connection is made.
//! 2. Targets, in order (`targets.rs`; `mx.rs` decides, `dns.rs` asks):
//!    - smarthost: the URL's host (its addresses, unless it is an IP literal) and port;
//!    - by MX (RFC 5321 §5.1): MX records by preference, equal ones shuffled, each host's
//!      A then AAAA addresses; no MX records → the domain itself as an MX of preference 0; a
//!      null MX (RFC 7505) or NXDOMAIN → permanent failure; DNS trouble → temporary failure;
//!      this host as the best MX → permanent failure (a configuration error, not a loop);
//!    - backup: only MXs strictly better than the backup host.
//! 3. For each target address until one gives an answer (`attempt.rs`): a reused idle
//!    connection (`pool.rs`, probed with RSET) or a new one (`client.rs`: greeting, EHLO,
//!    STARTTLS, AUTH), then the transaction, whose replies give each recipient its outcome.
//!
//! Invariants:
//! - A permanent failure comes only from a server's 5xx reply to the transaction (MAIL, RCPT,
//!   DATA, end of data) or from a fact that no retry can change (loop, null MX, NXDOMAIN, a
//!   non-ASCII address and a server without SMTPUTF8). Network errors, timeouts, unparseable
//!   replies, refused greetings, TLS and AUTH trouble only ever move on to the next address,
//!   and when none is left the outcome is temporary.
//! - A 4xx reply to the transaction is a temporary failure at once (the server answered; the
//!   next MX would only queue it again), except 421, which closes the connection: next address.
//! - Credentials go only to a smarthost, and only over TLS or to a loopback address.
//! - Every network wait is bounded by [`RelayOptions`]' timeouts; DNS lookups by the command
//!   timeout.
//! - Nothing here logs: every outcome carries a precise reason, `HOST [IP]: REPLY` when a
//!   server gave one (the reply verbatim, for a DSN's Diagnostic-Code; see [`status_of`]).
//!
//! Opportunistic TLS (the default): STARTTLS when offered, certificate not checked (see
//! `tls.rs` for why). If the handshake fails, that address is tried once more without
//! STARTTLS, as Postfix does at security level "may": an MX with a broken TLS stack still gets
//! its mail, in plaintext, as it would had it not offered TLS at all.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ownmail_config::model::{RelayScheme, RelayTls, RelayUrl};
use ownmail_types::{
    Address, BoxFuture, Courier, DeliveryOutcome, Destination, Envelope, Recipient, ReversePath,
};

mod attempt;
mod client;
mod dns;
mod message;
mod mx;
mod pool;
mod status;
mod targets;
mod tls;

pub use status::status_of;

use attempt::Session;
use client::{Transaction, TxRcpt};
use dns::Dns;

/// Recipients per transaction: RFC 5321 §4.5.3.1.8 obliges every server to take 100.
pub const MAX_RCPTS: usize = 100;

/// One relay action, resolved from the configuration by the binary.
#[derive(Clone)]
pub struct RelayRoute {
    /// `host URL`: a smarthost. `None` relays by MX.
    pub host: Option<RelayUrl>,
    /// `(user, password)` for the smarthost, from the secrets table (the URL's LABEL).
    /// Used only with `host`, never sent to an MX.
    pub auth: Option<(String, String)>,
    /// The name for EHLO; `None` = [`RelayOptions::hostname`].
    pub helo: Option<String>,
    pub tls: RelayTls,
    /// `backup`: `Some(None)` = backup MX for our own host name; `Some(Some(name))` = backup
    /// for the MX named `name`.
    pub backup: Option<Option<String>>,
    /// `mail-from`: the sender to give instead of the envelope's (a null sender stays null:
    /// turning a bounce into a normal message could make bounces loop).
    pub mail_from: Option<String>,
    /// The source address to connect from.
    pub src: Option<IpAddr>,
}

impl fmt::Debug for RelayRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayRoute")
            .field("host", &self.host)
            .field("auth_user", &self.auth.as_ref().map(|(user, _)| user))
            .field("helo", &self.helo)
            .field("tls", &self.tls)
            .field("backup", &self.backup)
            .field("mail_from", &self.mail_from)
            .field("src", &self.src)
            .finish()
    }
}

/// Settings shared by every relay action.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// Our name: the default EHLO name and backup host, and the best-MX check.
    pub hostname: String,
    /// Our listen addresses: a best MX resolving to one of these is a configuration error.
    pub local_addrs: Vec<IpAddr>,
    /// The `resolver` directive's servers; empty = `/etc/resolv.conf`.
    pub resolvers: Vec<SocketAddr>,
    /// The port of MX hosts: 25 (tests use another).
    pub port: u16,
    pub connect_timeout: Duration,
    /// Each reply, and each DNS lookup.
    pub command_timeout: Duration,
    /// Writing the message, and the reply to its final dot.
    pub data_timeout: Duration,
    /// More `Received:` fields than this is a mail loop (100 is usual).
    pub max_received: usize,
}

/// How a connection uses TLS, from the URL scheme and the `tls` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TlsPolicy {
    /// `smtps://`: TLS from the first byte.
    implicit: bool,
    /// No TLS, no mail.
    required: bool,
    /// Check the certificate chain and name.
    verify: bool,
}

impl TlsPolicy {
    fn of(scheme: RelayScheme, tls: RelayTls) -> Self {
        let implicit = scheme == RelayScheme::Smtps;
        TlsPolicy {
            implicit,
            required: implicit || scheme == RelayScheme::SmtpTls || tls != RelayTls::Opportunistic,
            verify: tls == RelayTls::RequiredVerify,
        }
    }
}

/// Delivers `Destination::Relay` recipients; see the crate documentation.
pub struct RelayCourier {
    opts: RelayOptions,
    dns: Dns,
    tls: tls::Connectors,
    routes: RwLock<Arc<HashMap<String, RelayRoute>>>,
    pool: Arc<pool::Pool>,
    /// Told the address of each host that accepted mail from us (greylisting spares it).
    delivered_to: RwLock<Option<DeliveredHook>>,
}

/// See [`RelayCourier::on_delivered`].
pub type DeliveredHook = Arc<dyn Fn(IpAddr) + Send + Sync>;

impl RelayCourier {
    /// Builds the resolver (reading `/etc/resolv.conf` when `opts.resolvers` is empty) and
    /// the TLS configurations. No routes yet: see [`RelayCourier::set_routes`].
    pub fn new(opts: RelayOptions) -> Result<Arc<Self>, String> {
        let dns = Dns::new(&opts.resolvers, opts.command_timeout)?;
        let tls = tls::Connectors::new()?;
        Ok(Arc::new(RelayCourier {
            opts,
            dns,
            tls,
            routes: RwLock::new(Arc::new(HashMap::new())),
            pool: Arc::new(pool::Pool::default()),
            delivered_to: RwLock::new(None),
        }))
    }

    /// Replaces the relay actions, by action name (at start and on every reload). Deliveries
    /// under way finish with the routes they started with.
    pub fn set_routes(&self, routes: HashMap<String, RelayRoute>) {
        let mut slot = self.routes.write().unwrap_or_else(|e| e.into_inner());
        *slot = Arc::new(routes);
    }

    /// Calls `hook` with the address of every host that accepts at least one recipient from
    /// us (None: nobody is told).
    pub fn on_delivered(&self, hook: Option<DeliveredHook>) {
        *self.delivered_to.write().unwrap_or_else(|e| e.into_inner()) = hook;
    }

    fn delivered(&self, host: IpAddr) {
        let hook = self
            .delivered_to
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(host);
        }
    }

    fn routes(&self) -> Arc<HashMap<String, RelayRoute>> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&routes)
    }

    /// Delivers one message to several recipients at once: recipients of the same relay
    /// action and domain (of the same action, for a smarthost) share one transaction, of at
    /// most [`MAX_RCPTS`] recipients. Returns one outcome per recipient, in the order given.
    /// [`Courier::deliver`] is this with one recipient.
    pub async fn deliver_many(
        &self,
        env: &Envelope,
        rcpts: &[&Recipient],
        message: &[u8],
    ) -> Vec<DeliveryOutcome> {
        let routes = self.routes();
        let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; rcpts.len()];
        // (action, domain; "" for a smarthost) and the indices of its recipients.
        let mut groups: Vec<((&str, &str), Vec<usize>)> = Vec::new();
        for (i, rcpt) in rcpts.iter().enumerate() {
            let refused = match &rcpt.dest {
                Destination::Relay { action, to } => match routes.get(action) {
                    Some(route) => {
                        let domain = if route.host.is_some() {
                            ""
                        } else {
                            to.domain()
                        };
                        let key = (action.as_str(), domain);
                        match groups
                            .iter_mut()
                            .find(|(k, members)| *k == key && members.len() < MAX_RCPTS)
                        {
                            Some((_, members)) => members.push(i),
                            None => groups.push((key, vec![i])),
                        }
                        continue;
                    }
                    // A reload may bring it back; until then the mail waits.
                    None => temp(format!("4.3.5 no relay action {action:?} is configured")),
                },
                _ => perm("not a relay destination".to_string()),
            };
            if let Some(slot) = outcomes.get_mut(i) {
                *slot = Some(refused);
            }
        }
        for ((action, _), members) in &groups {
            let Some(route) = routes.get(*action) else {
                continue;
            };
            let group: Vec<&Recipient> = members
                .iter()
                .filter_map(|&i| rcpts.get(i).copied())
                .collect();
            let results = self.relay_group(env, route, &group, message).await;
            for (&i, outcome) in members.iter().zip(results) {
                if let Some(slot) = outcomes.get_mut(i) {
                    *slot = Some(outcome);
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(no_outcome))
            .collect()
    }

    /// One transaction's worth of recipients, all under `route` (and, by MX, of one domain).
    async fn relay_group(
        &self,
        env: &Envelope,
        route: &RelayRoute,
        rcpts: &[&Recipient],
        message: &[u8],
    ) -> Vec<DeliveryOutcome> {
        let all = |outcome: DeliveryOutcome| vec![outcome; rcpts.len()];
        let received = message::received_count(message);
        if received > self.opts.max_received {
            return all(perm(format!(
                "5.4.6 mail loop: too many Received: headers ({received}, more than {})",
                self.opts.max_received
            )));
        }
        let helo = route.helo.as_deref().unwrap_or(&self.opts.hostname);
        if !valid_helo(helo) {
            return all(temp(format!("4.3.5 invalid HELO name {helo:?}")));
        }
        let from = match sender(env, route) {
            Ok(from) => from,
            Err(outcome) => return all(outcome),
        };
        let tx = Transaction {
            env,
            from: &from,
            rcpts: rcpts
                .iter()
                .map(|r| TxRcpt {
                    to: match &r.dest {
                        Destination::Relay { to, .. } => to,
                        _ => &r.rcpt,
                    },
                    orcpt: r.orcpt.as_deref(),
                    notify: r.notify,
                })
                .collect(),
            message,
        };
        let domain = tx.rcpts.first().map(|r| r.to.domain()).unwrap_or_default();
        let (session, found) = match &route.host {
            Some(url) => (
                Session {
                    policy: TlsPolicy::of(url.scheme, route.tls),
                    lmtp: url.scheme == RelayScheme::Lmtp,
                    helo,
                    auth: route.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                    src: route.src,
                },
                self.smarthost_targets(url).await,
            ),
            None => (
                Session {
                    policy: TlsPolicy::of(RelayScheme::Smtp, route.tls),
                    lmtp: false,
                    helo,
                    auth: None,
                    src: route.src,
                },
                self.mx_targets(domain, route).await,
            ),
        };
        match found {
            Ok((targets, failures)) => self.try_targets(&targets, failures, &session, &tx).await,
            Err(outcome) => all(outcome),
        }
    }
}

impl Courier for RelayCourier {
    fn deliver<'a>(
        &'a self,
        env: &'a Envelope,
        rcpt: &'a Recipient,
        message: &'a [u8],
    ) -> BoxFuture<'a, DeliveryOutcome> {
        Box::pin(async move {
            let mut outcomes = self.deliver_many(env, &[rcpt], message).await;
            outcomes.pop().unwrap_or_else(no_outcome)
        })
    }

    fn deliver_batch<'a>(
        &'a self,
        env: &'a Envelope,
        rcpts: &'a [&'a Recipient],
        message: &'a [u8],
    ) -> BoxFuture<'a, Vec<DeliveryOutcome>> {
        Box::pin(self.deliver_many(env, rcpts, message))
    }
}

/// The envelope sender, or the route's `mail-from`; a null sender stays null.
fn sender(env: &Envelope, route: &RelayRoute) -> Result<ReversePath, DeliveryOutcome> {
    match (&env.mail_from, &route.mail_from) {
        (ReversePath::Null, _) | (_, None) => Ok(env.mail_from.clone()),
        (_, Some(from)) => Address::parse(from).map(ReversePath::Address).map_err(|e| {
            temp(format!(
                "4.3.5 invalid mail-from {from:?} in the relay action: {e}"
            ))
        }),
    }
}

/// A name that can go on the EHLO line as one word.
fn valid_helo(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Never expected: every recipient gets an outcome on every path.
fn no_outcome() -> DeliveryOutcome {
    temp("4.3.0 internal error: no outcome for this recipient".to_string())
}

fn perm(reason: String) -> DeliveryOutcome {
    DeliveryOutcome::PermFail { reason }
}

fn temp(reason: String) -> DeliveryOutcome {
    DeliveryOutcome::TempFail { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_policy_follows_scheme_and_option() {
        let p = TlsPolicy::of(RelayScheme::Smtp, RelayTls::Opportunistic);
        assert!(!p.implicit && !p.required && !p.verify);
        let p = TlsPolicy::of(RelayScheme::SmtpTls, RelayTls::Opportunistic);
        assert!(!p.implicit && p.required && !p.verify);
        let p = TlsPolicy::of(RelayScheme::Smtps, RelayTls::RequiredVerify);
        assert!(p.implicit && p.required && p.verify);
        let p = TlsPolicy::of(RelayScheme::Smtp, RelayTls::Required);
        assert!(p.required && !p.verify);
    }

    #[test]
    fn helo_names_are_single_words() {
        assert!(valid_helo("mail.example.org"));
        assert!(!valid_helo(""));
        assert!(!valid_helo("a b"));
        assert!(!valid_helo("a\r\nRCPT TO:<x@y>"));
    }

    #[test]
    fn route_debug_hides_the_password() {
        let route = RelayRoute {
            host: None,
            auth: Some(("user".to_string(), "s3cret".to_string())),
            helo: None,
            tls: RelayTls::Opportunistic,
            backup: None,
            mail_from: None,
            src: None,
        };
        let shown = format!("{route:?}");
        assert!(
            shown.contains("user") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
