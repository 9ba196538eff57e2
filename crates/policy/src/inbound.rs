//! Checks of mail from outside (SPEC §5.7): SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489)
//! and ARC (RFC 8617) with mail-auth, through a hickory resolver that asks the servers of the
//! `resolver` directive (or `/etc/resolv.conf`'s) and never `/etc/hosts`.
//!
//! Invariants:
//! - A check never fails a message: what we cannot find out (a DNS timeout, SERVFAIL) is
//!   `temperror`, what the sender published wrongly (a broken record, a malformed signature)
//!   is `permerror`, and the message goes on. Only `dmarc reject` refuses, and only a DMARC
//!   `fail` of a domain that publishes `p=reject`.
//! - The work is bounded: all DNS of one message within [`DNS_BUDGET`] (a lookup still
//!   pending then is a `temperror`), at most [`MAX_SIGNATURES`] DKIM signatures and
//!   [`MAX_ARC_SETS`] ARC sets, a header section of at most [`MAX_HEADER`] bytes (beyond that
//!   DKIM, DMARC and ARC are `permerror`; SPF needs no header and is still checked).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcResult, MessageAuthenticator, SpfOutput,
    SpfResult,
};
use ownmail_config::model::Config;
use ownmail_types::{BoxFuture, InboundChecker, InboundMessage, InboundVerdict};
use tokio::time::{timeout_at, Instant};

use crate::authres::{
    forged_results, header_size, junk_fields, render, Action, AuthResult, DkimLine, DmarcLine,
    DmarcPolicy, LocalPolicy, Report, SpfLine,
};

/// All DNS work for one message (SPF, every DKIM key, DMARC, ARC) ends within this.
pub const DNS_BUDGET: Duration = Duration::from_secs(10);
/// One DNS query, retries included, is given up after this.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// DKIM signatures verified per message; more is `permerror` (each costs DNS and hashing).
pub const MAX_SIGNATURES: usize = 10;
/// RFC 8617 §5.1.1.1: more than 50 ARC sets is a failed chain.
pub const MAX_ARC_SETS: usize = 50;
/// The largest header section checked for DKIM, DMARC and ARC.
pub const MAX_HEADER: usize = 512 * 1024;

/// The checks of a configuration: its resolver, our host name, its local policy.
pub struct InboundChecks {
    dns: MessageAuthenticator,
    hostname: String,
    policy: LocalPolicy,
    budget: Duration,
}

impl std::fmt::Debug for InboundChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundChecks")
            .field("hostname", &self.hostname)
            .field("policy", &self.policy)
            .finish()
    }
}

/// A hickory resolver for `servers` (none: the system's), never reading `/etc/hosts`.
pub fn resolver(
    servers: &[SocketAddr],
    query_timeout: Duration,
) -> Result<MessageAuthenticator, String> {
    let (config, mut opts) = if servers.is_empty() {
        mail_auth::hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| format!("reading the system's DNS configuration: {e}"))?
    } else {
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        (
            ResolverConfig::from_parts(None, vec![], name_servers),
            ResolverOpts::default(),
        )
    };
    opts.use_hosts_file = ResolveHosts::Never;
    opts.timeout = query_timeout;
    opts.attempts = 1;
    MessageAuthenticator::new(config, opts).map_err(|e| format!("building the DNS resolver: {e}"))
}

impl InboundChecks {
    pub fn new(
        hostname: &str,
        servers: &[SocketAddr],
        policy: LocalPolicy,
        budget: Duration,
    ) -> Result<Self, String> {
        Ok(InboundChecks {
            dns: resolver(servers, QUERY_TIMEOUT.min(budget))?,
            hostname: hostname.to_string(),
            policy,
            budget,
        })
    }

    /// The checks a configuration asks for; None with `auth-results off`.
    pub fn from_config(config: &Config, hostname: &str) -> Result<Option<Self>, String> {
        let inbound = &config.inbound;
        if !inbound.checks() {
            return Ok(None);
        }
        let policy = LocalPolicy {
            dmarc_reject: inbound.dmarc_reject.is_some(),
            spf_fail_junk: inbound.spf_fail_junk.is_some(),
            dmarc_fail_junk: inbound.dmarc_fail_junk.is_some(),
        };
        Self::new(hostname, &config.resolvers, policy, DNS_BUDGET).map(Some)
    }

    /// SPF `check_host()` (RFC 7208 §4) of the MAIL FROM identity, or of the HELO identity
    /// for the null sender (§2.4), within `deadline`.
    /// An IPv4-mapped IPv6 client (`::ffff:192.0.2.1`, from a dual-stack socket) is the IPv4
    /// client it stands for (RFC 7208 §5.6: `ip4` mechanisms must match it).
    pub async fn spf(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
        deadline: Instant,
    ) -> SpfOutput {
        let ip = ip.to_canonical();
        let params = if mail_from.is_empty() {
            SpfParameters::verify_ehlo(ip, helo, &self.hostname)
        } else {
            SpfParameters::verify_mail_from(ip, helo, &self.hostname, mail_from)
        };
        match timeout_at(deadline, self.dns.verify_spf(params)).await {
            Ok(out) => out,
            Err(_) => SpfOutput::new(String::new()).with_result(SpfResult::TempError),
        }
    }

    /// Every check of one message, as plain results.
    pub async fn evaluate(&self, msg: InboundMessage<'_>) -> Report {
        let deadline = Instant::now() + self.budget;
        let spf_domain = match msg.mail_from.rsplit_once('@') {
            Some((_, d)) if !msg.mail_from.is_empty() => d,
            _ => msg.helo,
        };
        let spf_line = |out: &SpfOutput| SpfLine {
            result: spf_result(out.result()),
            mail_from: msg.mail_from.to_string(),
            helo: msg.helo.to_string(),
        };
        let why = if header_size(msg.message) > MAX_HEADER {
            Some("header section too large")
        } else if crate::authres::count_fields(msg.message, "DKIM-Signature") > MAX_SIGNATURES {
            Some("too many DKIM signatures")
        } else if crate::authres::count_fields(msg.message, "ARC-Seal") > MAX_ARC_SETS {
            Some("too many ARC sets")
        } else {
            None
        };
        let parsed = match why {
            Some(_) => None,
            // Parsing hashes the body once per signature: CPU work, off the async threads.
            None => blocking(|| AuthenticatedMessage::parse(msg.message)),
        };
        let Some(parsed) = parsed else {
            let spf = self
                .spf(msg.client, msg.helo, msg.mail_from, deadline)
                .await;
            let reason = why.unwrap_or("no header fields");
            return Report {
                spf: spf_line(&spf),
                dkim: vec![DkimLine {
                    result: AuthResult::PermError,
                    domain: None,
                    selector: None,
                    reason: Some(reason.to_string()),
                }],
                dmarc: DmarcLine {
                    result: AuthResult::PermError,
                    header_from: None,
                    policy: None,
                },
                arc: AuthResult::PermError,
            };
        };
        let (spf, dkim, arc) = tokio::join!(
            self.spf(msg.client, msg.helo, msg.mail_from, deadline),
            timeout_at(deadline, self.dns.verify_dkim(&parsed)),
            timeout_at(deadline, self.dns.verify_arc(&parsed)),
        );
        let arc = match arc {
            Ok(a) => dkim_result(a.result()),
            Err(_) => AuthResult::TempError,
        };
        let header_from = single_from_domain(&parsed);
        let (dkim_lines, dmarc) = match dkim {
            Ok(outputs) => {
                let lines = outputs.iter().map(dkim_line).collect();
                let dmarc = timeout_at(
                    deadline,
                    self.dns
                        .verify_dmarc(DmarcParameters::new(&parsed, &outputs, spf_domain, &spf)),
                )
                .await;
                let dmarc = match dmarc {
                    Ok(out) => DmarcLine {
                        result: dmarc_result(&out.result()),
                        header_from: header_from.clone(),
                        policy: out.dmarc_record().map(|_| match out.policy() {
                            Policy::Reject => DmarcPolicy::Reject,
                            Policy::Quarantine => DmarcPolicy::Quarantine,
                            Policy::None | Policy::Unspecified => DmarcPolicy::None,
                        }),
                    },
                    Err(_) => DmarcLine {
                        result: AuthResult::TempError,
                        header_from: header_from.clone(),
                        policy: None,
                    },
                };
                (lines, dmarc)
            }
            Err(_) => (
                vec![DkimLine {
                    result: AuthResult::TempError,
                    domain: None,
                    selector: None,
                    reason: Some("DNS time budget exceeded".into()),
                }],
                // DMARC without the DKIM results would be a guess.
                DmarcLine {
                    result: AuthResult::TempError,
                    header_from: header_from.clone(),
                    policy: None,
                },
            ),
        };
        Report {
            spf: spf_line(&spf),
            dkim: dkim_lines,
            dmarc,
            arc,
        }
    }

    /// The verdict on a checked message: the `Authentication-Results:` field on top, forged
    /// ones gone, local policy applied.
    pub fn verdict(&self, msg: &InboundMessage<'_>, report: &Report) -> InboundVerdict {
        let mut summary = report.summary();
        match self.policy.decide(report) {
            Action::Reject(reply) => InboundVerdict::Reject { reply, summary },
            Action::Accept { junk } => {
                let mut prepend = render(&self.hostname, report);
                if let Some(why) = junk {
                    prepend.push_str(&junk_fields(why));
                    summary.push_str(" junk=");
                    summary.push_str(why);
                }
                InboundVerdict::Accept {
                    prepend,
                    remove: forged_results(msg.message, &self.hostname),
                    summary,
                }
            }
        }
    }
}

impl InboundChecker for InboundChecks {
    fn check<'a>(&'a self, msg: InboundMessage<'a>) -> BoxFuture<'a, InboundVerdict> {
        Box::pin(async move {
            let report = self.evaluate(msg).await;
            self.verdict(&msg, &report)
        })
    }
}

/// Runs CPU-bound work so that the other tasks of this worker thread move on (block_in_place
/// needs the multi-thread runtime; elsewhere, as in tests, it just runs).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The one domain of the `From:` addresses, as DMARC uses it.
fn single_from_domain(m: &AuthenticatedMessage<'_>) -> Option<String> {
    let mut domain: Option<String> = None;
    for from in &m.from {
        let (_, d) = from.rsplit_once('@')?;
        let d = d.to_ascii_lowercase();
        match &domain {
            None => domain = Some(d),
            Some(first) if *first == d => {}
            Some(_) => return None,
        }
    }
    domain
}

/// An SPF result as RFC 8601 names it.
pub fn spf_result(r: SpfResult) -> AuthResult {
    match r {
        SpfResult::Pass => AuthResult::Pass,
        SpfResult::Fail => AuthResult::Fail,
        SpfResult::SoftFail => AuthResult::SoftFail,
        SpfResult::Neutral => AuthResult::Neutral,
        SpfResult::TempError => AuthResult::TempError,
        SpfResult::PermError => AuthResult::PermError,
        SpfResult::None => AuthResult::None,
    }
}

fn dkim_result(r: &DkimResult) -> AuthResult {
    match r {
        DkimResult::Pass => AuthResult::Pass,
        DkimResult::Neutral(_) => AuthResult::Neutral,
        DkimResult::Fail(_) => AuthResult::Fail,
        DkimResult::PermError(_) => AuthResult::PermError,
        DkimResult::TempError(_) => AuthResult::TempError,
        DkimResult::None => AuthResult::None,
    }
}

fn dkim_line(out: &DkimOutput<'_>) -> DkimLine {
    let reason = match out.result() {
        DkimResult::Neutral(e)
        | DkimResult::Fail(e)
        | DkimResult::PermError(e)
        | DkimResult::TempError(e) => Some(e.to_string()),
        DkimResult::Pass | DkimResult::None => None,
    };
    DkimLine {
        result: dkim_result(out.result()),
        domain: out.signature().map(|s| s.d.clone()),
        selector: out.signature().map(|s| s.s.clone()),
        reason,
    }
}

fn dmarc_result(r: &DmarcResult) -> AuthResult {
    match r {
        DmarcResult::Pass => AuthResult::Pass,
        DmarcResult::Fail(_) => AuthResult::Fail,
        DmarcResult::TempError(_) => AuthResult::TempError,
        DmarcResult::PermError(_) => AuthResult::PermError,
        DmarcResult::None => AuthResult::None,
    }
}
