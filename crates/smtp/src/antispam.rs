//! Anti-spam in the SMTP session (SPEC §4.2 anti-spam directives): the connection checks
//! (rate of connections, `screen pregreet`, DNS block and allow lists, forward-confirmed
//! reverse DNS, HELO sanity), the envelope checks (message and recipient rate limits,
//! greylisting) and the spam verdict at the end of DATA.
//!
//! Who is checked: the connection rate of every client that is not local (loopback or the
//! local socket); everything else only for a client that is neither local nor authenticated
//! by the time it says MAIL, on a listener that does not require authentication (a
//! submission port is for our own users). A client listed in a `dnsbl ZONE allow` zone skips
//! the DNS list, screen and greylist checks.
//!
//! Every check fails open: a DNS answer that does not come in time is logged and counts as
//! "not listed"; nothing here refuses mail because a lookup failed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ownmail_config::model::{Counted, SpamVerdict};
use ownmail_config::Config;
use ownmail_policy::{
    GreyDecision, Greylist, HeloProblem, InboundChecks, RateLimiter, Rdns, ScreenResult, Screener,
};
use ownmail_spam::{StoreCache, Symbol, Verdict};
use tokio::task::JoinHandle;

/// How long all DNS list and reverse DNS queries of one client may take together.
pub const SCREEN_TIMEOUT: Duration = Duration::from_secs(5);

/// A reply the session gives: code, enhanced code, text.
pub(crate) type Refusal = (u16, &'static str, String);

/// The anti-spam configuration of a running server. The greylist, the rate counters and the
/// classifier cache outlive a configuration reload when their settings did not change.
pub struct AntiSpam {
    screener: Option<Arc<Screener>>,
    fcrdns: Option<SpamVerdict>,
    helo: Option<SpamVerdict>,
    pregreet: Option<Duration>,
    greylist: Option<Arc<Greylist>>,
    grey_allow: Option<String>,
    /// SPF for the allow table's sender domains.
    spf: Option<Arc<InboundChecks>>,
    limiter: Arc<RateLimiter>,
    limits_key: String,
    grey_key: String,
    scores: Option<(f64, f64)>,
    stores: Arc<StoreCache>,
    our_names: Vec<String>,
}

impl std::fmt::Debug for AntiSpam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AntiSpam")
            .field("scores", &self.scores)
            .field("greylist", &self.greylist.is_some())
            .field("pregreet", &self.pregreet)
            .finish()
    }
}

impl AntiSpam {
    /// The anti-spam a configuration asks for; None when it asks for none. `previous` is the
    /// running one, whose greylist, counters and classifier cache are kept when unchanged.
    pub fn from_config(
        config: &Config,
        hostname: &str,
        our_names: Vec<String>,
        spool: &Path,
        previous: Option<&AntiSpam>,
    ) -> Result<Option<AntiSpam>, String> {
        let a = &config.antispam;
        let wanted = a.scores.is_some()
            || !a.dnsbl.is_empty()
            || a.greylist.is_some()
            || !a.limits.is_empty()
            || a.screen.fcrdns.is_some()
            || a.screen.helo.is_some()
            || a.screen.pregreet.is_some();
        if !wanted {
            return Ok(None);
        }
        let scores = a.scores.as_ref().map(|(j, r)| (j.value(), r.value()));
        let screener = if !a.dnsbl.is_empty() || a.screen.fcrdns.is_some() || scores.is_some() {
            let dns = ownmail_policy::resolver(&config.resolvers, SCREEN_TIMEOUT)?;
            Some(Arc::new(Screener::new(
                dns,
                a.dnsbl.clone(),
                SCREEN_TIMEOUT,
            )))
        } else {
            None
        };
        let limits_key = format!("{:?}", a.limits);
        let limiter = match previous {
            Some(p) if p.limits_key == limits_key => p.limiter.clone(),
            _ => Arc::new(RateLimiter::new(&a.limits)),
        };
        let (greylist, grey_key) = match &a.greylist {
            Some(g) => {
                let expire = g.expire.unwrap_or(ownmail_policy::DEFAULT_EXPIRE);
                let key = format!("{}:{:?}:{:?}", spool.display(), g.delay, expire);
                let list = match previous {
                    Some(p) if p.grey_key == key => p.greylist.clone(),
                    _ => None,
                };
                let list = match list {
                    Some(l) => l,
                    None => Arc::new(
                        Greylist::open(spool, g.delay, expire)
                            .map_err(|e| format!("greylist state in {}: {e}", spool.display()))?,
                    ),
                };
                (Some(list), key)
            }
            None => (None, String::new()),
        };
        let grey_allow = a
            .greylist
            .as_ref()
            .and_then(|g| g.allow.as_ref())
            .map(|t| t.name.clone());
        let spf = if grey_allow.is_some() {
            let policy = ownmail_policy::authres::LocalPolicy::default();
            Some(Arc::new(InboundChecks::new(
                hostname,
                &config.resolvers,
                policy,
                SCREEN_TIMEOUT,
            )?))
        } else {
            None
        };
        let stores = previous
            .map(|p| p.stores.clone())
            .unwrap_or_else(|| Arc::new(StoreCache::new()));
        Ok(Some(AntiSpam {
            screener,
            fcrdns: a.screen.fcrdns.as_ref().map(|(v, _)| *v),
            helo: a.screen.helo.as_ref().map(|(v, _)| *v),
            pregreet: a.screen.pregreet.as_ref().map(|(d, _)| *d),
            greylist,
            grey_allow,
            spf,
            limiter,
            limits_key,
            grey_key,
            scores,
            stores,
            our_names,
        }))
    }

    /// The greylist, if configured (the relay tells it the hosts we deliver to).
    pub fn greylist_state(&self) -> Option<Arc<Greylist>> {
        self.greylist.clone()
    }

    /// `screen pregreet`: how long to wait before the greeting.
    pub(crate) fn pregreet(&self) -> Option<Duration> {
        self.pregreet
    }

    /// Whether the spam verdict is on.
    pub(crate) fn verdict_on(&self) -> bool {
        self.scores.is_some()
    }

    /// `limit connections`: counts one connection of `client`.
    pub(crate) fn admit(&self, client: IpAddr) -> Result<(), Refusal> {
        self.limiter
            .hit(
                Counted::Connections,
                Some(client),
                None,
                None,
                1,
                Instant::now(),
            )
            .map_err(|e| {
                (
                    421,
                    "4.7.0",
                    format!(
                        "Too many connections from [{client}] ({}), try again later",
                        e.describe()
                    ),
                )
            })
    }

    /// Starts the DNS list and reverse DNS lookups of `client`; the session collects the
    /// answer at MAIL.
    pub(crate) fn start_screen(&self, client: IpAddr) -> Option<JoinHandle<ScreenResult>> {
        let screener = self.screener.clone()?;
        let rdns = self.fcrdns.is_some() || self.scores.is_some();
        Some(tokio::spawn(
            async move { screener.screen(client, rdns).await },
        ))
    }

    /// `limit messages|recipients`: counts `n` for whichever keys apply.
    pub(crate) fn limit(
        &self,
        what: Counted,
        client: Option<IpAddr>,
        user: Option<&str>,
        sender_domain: Option<&str>,
        n: u32,
    ) -> Result<(), Refusal> {
        self.limiter
            .hit(what, client, user, sender_domain, n, Instant::now())
            .map_err(|e| {
                (
                    451,
                    "4.7.1",
                    format!("Rate limit exceeded: {}, try again later", e.describe()),
                )
            })
    }

    /// The connection checks at MAIL, for a screened client: refuses a client on a
    /// `reject` list or failing a `reject` screen; notes `junk` ones for the verdict.
    pub(crate) async fn check_client(
        &self,
        state: &mut ClientState,
        client: IpAddr,
        helo: &str,
    ) -> Result<(), Refusal> {
        if state.settled {
            return state.refusal.clone().map_or(Ok(()), Err);
        }
        state.settled = true;
        state.settle().await;
        let result = state.result.take();
        let outcome = self.judge_client(state, result.as_ref(), client, helo);
        state.result = result;
        outcome
    }

    fn judge_client(
        &self,
        state: &mut ClientState,
        result: Option<&ScreenResult>,
        client: IpAddr,
        helo: &str,
    ) -> Result<(), Refusal> {
        if let Some(r) = result {
            if let Some(zone) = r.allowed() {
                state.allowed = Some(zone.to_string());
                return Ok(());
            }
        }
        let mut refusal = None;
        if let Some(r) = result {
            if let Some(hit) = r.rejected() {
                refusal = Some((
                    554,
                    "5.7.1",
                    format!(
                        "Service unavailable; client [{client}] blocked using {}",
                        hit.zone
                    ),
                ));
                state.reason = format!("dnsbl zone={}", hit.zone);
            }
            for hit in &r.hits {
                if hit.verdict == SpamVerdict::Junk {
                    state
                        .symbols
                        .push(Symbol::new(zone_symbol(&hit.zone), 5.0, hit.zone.clone()));
                    state.junk.push(format!("dnsbl {}", hit.zone));
                }
            }
            let bad_rdns = match &r.rdns {
                Rdns::Missing => Some(("RDNS_NONE", 1.5, "no reverse DNS")),
                Rdns::Unconfirmed(_) => {
                    Some(("RDNS_NOT_FCRDNS", 1.0, "reverse DNS not forward-confirmed"))
                }
                Rdns::Confirmed(_) | Rdns::Unknown => None,
            };
            if let Some((name, score, what)) = bad_rdns {
                match self.fcrdns {
                    Some(SpamVerdict::Reject) if refusal.is_none() => {
                        refusal = Some((
                            550,
                            "5.7.25",
                            format!("Client host [{client}] rejected: {what}"),
                        ));
                        state.reason = format!("fcrdns {name}");
                    }
                    Some(SpamVerdict::Junk) => {
                        state.symbols.push(Symbol::new(name, score, what));
                        state.junk.push(format!("fcrdns {what}"));
                    }
                    _ => state.symbols.push(Symbol::new(name, score, what)),
                }
            }
        }
        if let Some(problem) = ownmail_policy::helo_problem(helo, client, &self.our_names) {
            let name = helo_symbol(&problem);
            match self.helo {
                Some(SpamVerdict::Reject) if refusal.is_none() => {
                    refusal = Some((
                        550,
                        "5.7.1",
                        format!("HELO/EHLO name rejected: {}", problem.describe()),
                    ));
                    state.reason = format!("helo {name}");
                }
                Some(SpamVerdict::Junk) => {
                    state
                        .symbols
                        .push(Symbol::new(name, 1.0, problem.describe()));
                    state.junk.push(format!("helo {}", problem.describe()));
                }
                _ => state
                    .symbols
                    .push(Symbol::new(name, 1.0, problem.describe())),
            }
        }
        state.refusal = refusal.clone();
        refusal.map_or(Ok(()), Err)
    }

    /// Greylisting of one recipient of a screened client (not on an allow list).
    pub(crate) async fn greylist(
        &self,
        rules: &ownmail_rules::Ruleset,
        client: IpAddr,
        helo: &str,
        mail_from: &str,
        rcpt: &str,
    ) -> Result<(), Refusal> {
        let Some(list) = &self.greylist else {
            return Ok(());
        };
        if let Some(table) = &self.grey_allow {
            if rules.table_has_network(table, client) {
                return Ok(());
            }
            let domain = mail_from.rsplit_once('@').map(|(_, d)| d);
            if let (Some(domain), Some(spf)) = (domain, &self.spf) {
                if rules.table_contains(table, domain) {
                    let out = spf
                        .spf(
                            client,
                            helo,
                            mail_from,
                            tokio::time::Instant::now() + SCREEN_TIMEOUT,
                        )
                        .await;
                    if ownmail_policy::spf_auth_result(out.result())
                        == ownmail_policy::authres::AuthResult::Pass
                    {
                        return Ok(());
                    }
                }
            }
        }
        let sender = if mail_from.is_empty() {
            "<>"
        } else {
            mail_from
        };
        let list = list.clone();
        let (sender, rcpt) = (sender.to_string(), rcpt.to_string());
        // One append to the state file at most: cheap, but it is file I/O.
        let decision = tokio::task::spawn_blocking(move || {
            list.check(client, &sender, &rcpt, SystemTime::now())
        })
        .await
        .unwrap_or(GreyDecision::Pass);
        match decision {
            GreyDecision::Pass => Ok(()),
            GreyDecision::Defer { retry_after } => Err((
                451,
                "4.7.1",
                format!(
                    "Greylisted, please try again in {} seconds",
                    retry_after.as_secs().max(1)
                ),
            )),
        }
    }

    /// The spam verdict of a message from a screened client: content and authentication
    /// symbols, the connection's, and the classifier of the recipients' Maildirs (the mean of
    /// those that are trained). None when neither `spam` nor a `junk` check applies.
    pub(crate) fn verdict(
        &self,
        state: &ClientState,
        message: &[u8],
        auth_summary: Option<&str>,
        maildirs: &[PathBuf],
    ) -> Option<Verdict> {
        if self.scores.is_none() && state.junk.is_empty() {
            return None;
        }
        let mut v = Verdict {
            symbols: state.symbols.clone(),
        };
        if self.scores.is_some() {
            for s in ownmail_spam::content_symbols(message, SystemTime::now()) {
                v.add(s);
            }
            if let Some(summary) = auth_summary {
                for s in ownmail_spam::auth_symbols(summary) {
                    v.add(s);
                }
            }
            let ps: Vec<f64> = maildirs
                .iter()
                .filter_map(|m| {
                    self.stores
                        .probability(&m.join(ownmail_spam::STORE_FILE), message)
                })
                .collect();
            if !ps.is_empty() {
                let p = ps.iter().sum::<f64>() / ps.len() as f64;
                if let Some(s) = ownmail_spam::bayes_symbol(p) {
                    v.add(s);
                }
            }
        }
        Some(v)
    }

    /// The header fields for a verdict, and whether the message is refused (score at or
    /// over `reject-score`). `inbound_junk`: the authentication checks already marked it.
    pub(crate) fn judge(
        &self,
        v: &Verdict,
        state: &ClientState,
        inbound_junk: bool,
    ) -> (String, bool) {
        let forced = !state.junk.is_empty();
        let Some((junk, reject)) = self.scores else {
            // No `spam` line: only a `junk` check applies.
            let why = state.junk.join(", ");
            let fields = if inbound_junk {
                format!("X-Ownmail-Junk: {why}\r\n")
            } else {
                format!("X-Spam: yes\r\nX-Ownmail-Junk: {why}\r\n")
            };
            return (fields, false);
        };
        let mut fields = v.header_fields(junk, reject, forced);
        if inbound_junk {
            fields = fields.replace("X-Spam: yes\r\n", "");
        }
        if forced {
            fields.push_str(&format!("X-Ownmail-Junk: {}\r\n", state.junk.join(", ")));
        }
        (fields, v.score() >= reject)
    }
}

/// What the anti-spam checks know about one session's client.
#[derive(Default)]
pub(crate) struct ClientState {
    /// The DNS lookups started at connect.
    pub pending: Option<JoinHandle<ScreenResult>>,
    /// Their answer, once collected.
    result: Option<ScreenResult>,
    /// The connection checks ran (they run once a session).
    settled: bool,
    refusal: Option<Refusal>,
    /// Why the client was refused, for the log.
    pub reason: String,
    /// The `dnsbl … allow` zone that lists the client.
    pub allowed: Option<String>,
    pub symbols: Vec<Symbol>,
    /// Why the message must go to the junk folder whatever its score.
    pub junk: Vec<String>,
}

impl ClientState {
    /// Whether the client's lookups were started (or are done).
    pub(crate) fn looking_up(&self) -> bool {
        self.pending.is_some() || self.result.is_some()
    }

    /// Collects the answer of the lookups started at connect (bounded).
    async fn settle(&mut self) {
        if let Some(task) = self.pending.take() {
            if let Ok(Ok(r)) = tokio::time::timeout(SCREEN_TIMEOUT * 2, task).await {
                self.result = Some(r);
            }
        }
    }

    /// The client's reverse DNS name (empty when unknown) and whether it is forward-confirmed,
    /// as filters are told at connect.
    pub(crate) async fn rdns(&mut self) -> (String, bool) {
        self.settle().await;
        match self.result.as_ref().map(|r| &r.rdns) {
            Some(Rdns::Confirmed(name)) => (name.clone(), true),
            Some(Rdns::Unconfirmed(names)) => (names.first().cloned().unwrap_or_default(), false),
            _ => (String::new(), false),
        }
    }
}

impl Drop for ClientState {
    fn drop(&mut self) {
        if let Some(task) = self.pending.take() {
            task.abort();
        }
    }
}

/// `RBL_ZEN_SPAMHAUS_ORG` for `zen.spamhaus.org`.
fn zone_symbol(zone: &str) -> String {
    let mut s = String::from("RBL_");
    for c in zone.trim_end_matches('.').chars() {
        s.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        });
    }
    s
}

fn helo_symbol(p: &HeloProblem) -> &'static str {
    match p {
        HeloProblem::Empty => "HELO_EMPTY",
        HeloProblem::Invalid => "HELO_INVALID",
        HeloProblem::NotFqdn => "HELO_NOT_FQDN",
        HeloProblem::LiteralMismatch => "HELO_LITERAL_MISMATCH",
        HeloProblem::OurName => "HELO_OUR_NAME",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_symbols_are_upper_snake() {
        assert_eq!(zone_symbol("zen.spamhaus.org."), "RBL_ZEN_SPAMHAUS_ORG");
        assert_eq!(zone_symbol("b-l.example"), "RBL_B_L_EXAMPLE");
    }
}
