//! Connection-time screening (SPEC §4.2 `dnsbl`, `screen`): DNS blocklists, forward-confirmed
//! reverse DNS and the HELO/EHLO argument of a client that is neither authenticated nor local.
//!
//! Invariants:
//! - Fail open. What the DNS cannot tell us in time (a timeout, SERVFAIL, a blocklist's own
//!   error code) never counts against the client: the zone counts as not listing it, and the
//!   reverse DNS is [`Rdns::Unknown`]. Each such failure is logged with the zone and client.
//! - Bounded: every query of one [`Screener::screen`] call runs concurrently and all of them
//!   end within the screener's timeout; a query still pending then is abandoned.
//! - Only an answer in 127.0.0.0/8 is a listing (RFC 5782 §2.1), and 127.255.255.0/24 is
//!   Spamhaus' way of saying "query refused" (public resolver, over quota): an error, not a hit.
//!   A resolver that answers NXDOMAIN with its own address (a "search helper") lists no one.
//! - [`helo_problem`] is pure and total: any string in, a verdict out.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use mail_auth::hickory_resolver::net::NetError;
use mail_auth::hickory_resolver::proto::rr::{Name, RData};
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::MessageAuthenticator;
use ownmail_config::model::{Dnsbl, SpamVerdict};
use tokio::time::{timeout_at, Instant};
use tracing::warn;

/// PTR names followed for forward confirmation; a client with more gets the first ones only
/// (a PTR set that large is a misconfiguration, and each name costs a query).
pub const MAX_PTR_NAMES: usize = 10;

/// A blocklist that lists the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsblHit {
    pub zone: String,
    pub verdict: SpamVerdict,
    /// The return codes (127.0.0.x) the zone gave; they say why, per zone.
    pub codes: Vec<Ipv4Addr>,
}

/// The client's reverse DNS, forward-confirmed (FCrDNS) or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rdns {
    /// A PTR name whose A/AAAA records include the client (lowercase, no trailing dot).
    Confirmed(String),
    /// PTR names, none of which forward-confirms.
    Unconfirmed(Vec<String>),
    /// No PTR record (NXDOMAIN or no data).
    Missing,
    /// Not known (a timeout, SERVFAIL, not asked): never held against the client.
    Unknown,
}

/// What [`Screener::screen`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScreenResult {
    /// The zones listing the client, in configuration order, `allow` zones included.
    pub hits: Vec<DnsblHit>,
    pub rdns: Rdns,
}

impl ScreenResult {
    /// The first `allow` zone that lists the client: it skips the DNSBL, screen and greylist
    /// checks.
    pub fn allowed(&self) -> Option<&str> {
        self.hits
            .iter()
            .find(|h| h.verdict == SpamVerdict::Allow)
            .map(|h| h.zone.as_str())
    }

    /// The first `reject` zone listing the client; None when an `allow` zone lists it.
    pub fn rejected(&self) -> Option<&DnsblHit> {
        if self.allowed().is_some() {
            return None;
        }
        self.hits.iter().find(|h| h.verdict == SpamVerdict::Reject)
    }

    /// The `junk` zones listing the client; none when an `allow` zone lists it.
    pub fn junk(&self) -> impl Iterator<Item = &DnsblHit> {
        let allowed = self.allowed().is_some();
        self.hits
            .iter()
            .filter(move |h| !allowed && h.verdict == SpamVerdict::Junk)
    }
}

/// The DNSBL zones of a configuration and the resolver to ask them with.
pub struct Screener {
    dns: MessageAuthenticator,
    zones: Vec<Dnsbl>,
    timeout: Duration,
}

impl std::fmt::Debug for Screener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screener")
            .field("zones", &self.zones)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// How one DNSBL query ended.
enum ZoneAnswer {
    Listed(Vec<Ipv4Addr>),
    NotListed,
    Failed(String),
}

impl Screener {
    /// `timeout` bounds a whole [`Screener::screen`] call, every query in it.
    pub fn new(dns: MessageAuthenticator, zones: Vec<Dnsbl>, timeout: Duration) -> Self {
        Screener {
            dns,
            zones,
            timeout,
        }
    }

    /// The configured zones.
    pub fn zones(&self) -> &[Dnsbl] {
        &self.zones
    }

    /// Asks every DNSBL zone about `client` and, when `rdns`, its PTR names and their
    /// addresses, all at once and all within the timeout. A zone that does not answer in time
    /// or errs is logged and counts as not listing the client. Never hangs, never fails.
    pub async fn screen(&self, client: IpAddr, rdns: bool) -> ScreenResult {
        let client = client.to_canonical();
        let deadline = Instant::now() + self.timeout;
        let resolver = self.dns.resolver();
        let queries = self
            .zones
            .iter()
            .map(|zone| Box::pin(query_zone(resolver, client, &zone.zone, deadline)))
            .collect::<Vec<_>>();
        let rdns_lookup = async {
            if rdns {
                reverse_dns(resolver, client, deadline).await
            } else {
                Rdns::Unknown
            }
        };
        let (answers, rdns) = tokio::join!(join_all(queries), rdns_lookup);
        let mut hits = Vec::new();
        for (zone, answer) in self.zones.iter().zip(answers) {
            match answer {
                ZoneAnswer::Listed(codes) => hits.push(DnsblHit {
                    zone: zone.zone.clone(),
                    verdict: zone.verdict,
                    codes,
                }),
                ZoneAnswer::NotListed => {}
                ZoneAnswer::Failed(why) => {
                    warn!(
                        "dnsbl zone={} client={client} result={why}, failing open",
                        zone.zone
                    );
                }
            }
        }
        ScreenResult { hits, rdns }
    }
}

/// Asks `zone` whether it lists `client`.
async fn query_zone(
    resolver: &TokioResolver,
    client: IpAddr,
    zone: &str,
    deadline: Instant,
) -> ZoneAnswer {
    let Some(name) = dnsbl_name(client, zone) else {
        return ZoneAnswer::Failed("error (not a valid zone name)".to_string());
    };
    let name = match fqdn(&name) {
        Ok(n) => n,
        Err(e) => return ZoneAnswer::Failed(format!("error ({e})")),
    };
    match timeout_at(deadline, resolver.ipv4_lookup(name)).await {
        Err(_) => ZoneAnswer::Failed("timeout".to_string()),
        Ok(Err(e)) if e.is_no_records_found() => ZoneAnswer::NotListed,
        Ok(Err(e)) => ZoneAnswer::Failed(format!("error ({})", one_line(&e))),
        Ok(Ok(lookup)) => classify_answer(lookup.answers().iter().filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })),
    }
}

/// Sorts a zone's A records into a listing, an error code or nothing (RFC 5782 §2.1).
fn classify_answer(addrs: impl IntoIterator<Item = Ipv4Addr>) -> ZoneAnswer {
    let mut codes = Vec::new();
    let mut error = None;
    for a in addrs {
        let [first, second, third, _] = a.octets();
        if first != 127 {
            // Not a DNSBL answer: a resolver that rewrites NXDOMAIN, or a zone gone wild.
            continue;
        }
        if second == 255 && third == 255 {
            error = Some(a);
        } else if !codes.contains(&a) {
            codes.push(a);
        }
    }
    match (codes.is_empty(), error) {
        (false, _) => ZoneAnswer::Listed(codes),
        (true, Some(code)) => ZoneAnswer::Failed(format!("error (zone returned {code})")),
        (true, None) => ZoneAnswer::NotListed,
    }
}

/// The name a DNSBL is asked for (RFC 5782 §2.1 for IPv4, §2.4 for IPv6): the address's
/// octets (IPv4) or nibbles (IPv6) in reverse order, then the zone. None for an empty zone.
pub fn dnsbl_name(client: IpAddr, zone: &str) -> Option<String> {
    let zone = zone.trim().trim_matches('.');
    if zone.is_empty() {
        return None;
    }
    Some(format!("{}.{zone}", reversed(client.to_canonical())))
}

/// The address in reverse order, as in `in-addr.arpa` / `ip6.arpa` names, without the suffix.
fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => reversed_nibbles(v6),
    }
}

fn reversed_nibbles(v6: Ipv6Addr) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(63);
    for byte in v6.octets().iter().rev() {
        for nibble in [byte & 0x0f, byte >> 4] {
            if !out.is_empty() {
                out.push('.');
            }
            out.push(char::from(HEX[usize::from(nibble)]));
        }
    }
    out
}

/// The client's PTR names and whether one of them resolves back to it (FCrDNS).
async fn reverse_dns(resolver: &TokioResolver, client: IpAddr, deadline: Instant) -> Rdns {
    let lookup = match timeout_at(deadline, resolver.reverse_lookup(client)).await {
        Err(_) => {
            warn!("rdns client={client} result=timeout, failing open");
            return Rdns::Unknown;
        }
        Ok(Err(e)) if e.is_no_records_found() => return Rdns::Missing,
        Ok(Err(e)) => {
            warn!(
                "rdns client={client} result=error ({}), failing open",
                one_line(&e)
            );
            return Rdns::Unknown;
        }
        Ok(Ok(lookup)) => lookup,
    };
    let mut names: Vec<String> = Vec::new();
    for record in lookup.answers() {
        if let RData::PTR(ptr) = &record.data {
            let name = host_name(&ptr.0);
            if !name.is_empty() && !names.contains(&name) && names.len() < MAX_PTR_NAMES {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        return Rdns::Missing;
    }
    let forward = names
        .iter()
        .map(|name| Box::pin(forward_confirms(resolver, name, client, deadline)))
        .collect::<Vec<_>>();
    let results = join_all(forward).await;
    let mut unknown = false;
    for (name, result) in names.iter().zip(&results) {
        match result {
            Some(true) => return Rdns::Confirmed(name.clone()),
            Some(false) => {}
            None => unknown = true,
        }
    }
    if unknown {
        warn!("rdns client={client} result=timeout-or-error on forward lookup, failing open");
        return Rdns::Unknown;
    }
    Rdns::Unconfirmed(names)
}

/// Whether `name`'s addresses of the client's family include the client; None when the DNS
/// could not say.
async fn forward_confirms(
    resolver: &TokioResolver,
    name: &str,
    client: IpAddr,
    deadline: Instant,
) -> Option<bool> {
    let Ok(fq) = fqdn(name) else {
        // A PTR name that is no valid name cannot resolve to anything.
        return Some(false);
    };
    let found = match client {
        IpAddr::V4(_) => timeout_at(deadline, resolver.ipv4_lookup(fq)).await,
        IpAddr::V6(_) => timeout_at(deadline, resolver.ipv6_lookup(fq)).await,
    };
    match found {
        Err(_) => None,
        Ok(Err(e)) if e.is_no_records_found() => Some(false),
        Ok(Err(_)) => None,
        Ok(Ok(lookup)) => Some(lookup.answers().iter().any(|r| match &r.data {
            RData::A(a) => IpAddr::V4(a.0) == client,
            RData::AAAA(a) => IpAddr::V6(a.0) == client,
            _ => false,
        })),
    }
}

/// A fully qualified name, so that no resolv.conf `search` suffix is ever tried.
fn fqdn(s: &str) -> Result<Name, String> {
    let mut name = Name::from_utf8(s.trim_end_matches('.')).map_err(|e| e.to_string())?;
    name.set_fqdn(true);
    Ok(name)
}

/// A name as we compare and log it: lowercase ASCII, no trailing dot.
fn host_name(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// An error's text on one line, for a log field.
fn one_line(e: &NetError) -> String {
    e.to_string().replace(['\r', '\n'], " ")
}

/// Runs `futures` concurrently on this task and returns their outputs in order. (Kept here
/// rather than pulling in the `futures` crate for one function.)
async fn join_all<F: Future>(futures: Vec<Pin<Box<F>>>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, out) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// What is wrong with a HELO/EHLO argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeloProblem {
    /// No argument at all.
    Empty,
    /// Neither a host name nor an address literal (RFC 5321 §4.1.1.1, §4.1.3).
    Invalid,
    /// A host name without a dot.
    NotFqdn,
    /// An address literal that is not the client's address.
    LiteralMismatch,
    /// One of our own names or addresses.
    OurName,
}

impl HeloProblem {
    /// For the reply text and the log.
    pub fn describe(&self) -> &'static str {
        match self {
            HeloProblem::Empty => "empty HELO/EHLO argument",
            HeloProblem::Invalid => "HELO/EHLO argument is not a host name or address literal",
            HeloProblem::NotFqdn => "HELO/EHLO host name is not fully qualified",
            HeloProblem::LiteralMismatch => "HELO/EHLO address literal is not the client's address",
            HeloProblem::OurName => "HELO/EHLO claims to be this server",
        }
    }
}

impl std::fmt::Display for HeloProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// What is wrong with `helo`, the HELO/EHLO argument of `client`; None when nothing is.
/// Address literals (`[192.0.2.1]`, `[IPv6:2001:db8::1]`, RFC 5321 §4.1.3) are fine when
/// they are the client. `our_names` are our host names, lowercase; an entry that is an
/// address (`192.0.2.1` or `[192.0.2.1]`) is one of our addresses.
pub fn helo_problem(helo: &str, client: IpAddr, our_names: &[String]) -> Option<HeloProblem> {
    let helo = helo.trim();
    if helo.is_empty() {
        return Some(HeloProblem::Empty);
    }
    if let Some(inner) = helo.strip_prefix('[') {
        let Some(literal) = inner.strip_suffix(']').and_then(parse_literal) else {
            return Some(HeloProblem::Invalid);
        };
        let literal = literal.to_canonical();
        if literal == client.to_canonical() {
            return None;
        }
        if our_names
            .iter()
            .filter_map(|n| parse_address(n))
            .any(|ours| ours == literal)
        {
            return Some(HeloProblem::OurName);
        }
        return Some(HeloProblem::LiteralMismatch);
    }
    let name = helo.strip_suffix('.').unwrap_or(helo);
    if !is_host_name(name) {
        return Some(HeloProblem::Invalid);
    }
    let lower = name.to_lowercase();
    if our_names
        .iter()
        .any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(&lower))
    {
        return Some(HeloProblem::OurName);
    }
    if !name.contains('.') {
        return Some(HeloProblem::NotFqdn);
    }
    None
}

/// The address in an address literal's brackets: `192.0.2.1` or `IPv6:2001:db8::1`.
fn parse_literal(inner: &str) -> Option<IpAddr> {
    if let Some(v6) = strip_prefix_ignore_case(inner, "IPv6:") {
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    inner.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// An entry of `our_names` read as an address, bracketed or not.
fn parse_address(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    let s = strip_prefix_ignore_case(s, "IPv6:").unwrap_or(s);
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// A host name (RFC 1123 §2.1), leniently: labels of letters, digits, `-` and `_` (common in
/// real names), 1–63 octets each, at most 253 in all, and a last label that is not all digits
/// (so that a bare `192.0.2.1` is no host name). Non-ASCII letters are allowed for SMTPUTF8
/// clients (RFC 6531 §3.7.1).
fn is_host_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    });
    if !labels_ok {
        return false;
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    !last.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dnsbl_name_reverses_ipv4_octets() {
        assert_eq!(
            dnsbl_name(v4("192.0.2.99"), "zen.spamhaus.org").as_deref(),
            Some("99.2.0.192.zen.spamhaus.org")
        );
        // A trailing dot on the zone is not doubled; an IPv4-mapped client is its IPv4.
        assert_eq!(
            dnsbl_name(v4("::ffff:127.0.0.2"), "bl.example.").as_deref(),
            Some("2.0.0.127.bl.example")
        );
        assert_eq!(dnsbl_name(v4("127.0.0.2"), " . "), None);
    }

    #[test]
    fn dnsbl_name_reverses_ipv6_nibbles() {
        // RFC 5782 §2.4's example.
        assert_eq!(
            dnsbl_name(v4("2001:db8:1:2:3:4:567:89ab"), "ugly.example.com").as_deref(),
            Some(
                "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
            )
        );
    }

    #[test]
    fn only_loopback_answers_list_and_127_255_255_is_an_error() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(matches!(
            classify_answer([a("127.0.0.2"), a("127.0.0.4")]),
            ZoneAnswer::Listed(c) if c == vec![a("127.0.0.2"), a("127.0.0.4")]
        ));
        assert!(matches!(
            classify_answer([a("127.255.255.254")]),
            ZoneAnswer::Failed(_)
        ));
        assert!(matches!(
            classify_answer([a("127.255.255.252"), a("127.0.0.10")]),
            ZoneAnswer::Listed(c) if c == vec![a("127.0.0.10")]
        ));
        // A resolver's NXDOMAIN-rewriting "search helper" lists no one.
        assert!(matches!(
            classify_answer([a("198.51.100.7")]),
            ZoneAnswer::NotListed
        ));
        assert!(matches!(classify_answer([]), ZoneAnswer::NotListed));
    }

    #[test]
    fn allowed_zone_overrides_reject() {
        let hit = |zone: &str, verdict| DnsblHit {
            zone: zone.into(),
            verdict,
            codes: vec![Ipv4Addr::new(127, 0, 0, 2)],
        };
        let mut r = ScreenResult {
            hits: vec![
                hit("junk.example", SpamVerdict::Junk),
                hit("bad.example", SpamVerdict::Reject),
            ],
            rdns: Rdns::Unknown,
        };
        assert_eq!(r.allowed(), None);
        assert_eq!(r.rejected().map(|h| h.zone.as_str()), Some("bad.example"));
        assert_eq!(r.junk().count(), 1);
        r.hits.push(hit("good.example", SpamVerdict::Allow));
        assert_eq!(r.allowed(), Some("good.example"));
        assert_eq!(r.rejected(), None);
        assert_eq!(r.junk().count(), 0);
    }

    #[test]
    fn helo_problems() {
        let ours = vec!["mx.example.org".to_string(), "192.0.2.25".to_string()];
        let client = v4("198.51.100.7");
        let cases: &[(&str, Option<HeloProblem>)] = &[
            ("mail.example.net", None),
            ("mail.example.net.", None),
            ("MAIL.Example.NET", None),
            ("host_1.example.net", None),
            ("bücher.example", None),
            ("[198.51.100.7]", None),
            ("", Some(HeloProblem::Empty)),
            ("   ", Some(HeloProblem::Empty)),
            ("localhost", Some(HeloProblem::NotFqdn)),
            ("WIN-ABC123", Some(HeloProblem::NotFqdn)),
            ("198.51.100.7", Some(HeloProblem::Invalid)),
            ("[198.51.100.8]", Some(HeloProblem::LiteralMismatch)),
            ("[192.0.2.25]", Some(HeloProblem::OurName)),
            ("[198.51.100.7", Some(HeloProblem::Invalid)),
            ("[not an address]", Some(HeloProblem::Invalid)),
            ("[IPv6:2001:db8::1]", Some(HeloProblem::LiteralMismatch)),
            ("[IPv6:198.51.100.7]", Some(HeloProblem::Invalid)),
            ("mail..example.net", Some(HeloProblem::Invalid)),
            (".", Some(HeloProblem::Invalid)),
            ("bad name.example", Some(HeloProblem::Invalid)),
            ("exa$mple.com", Some(HeloProblem::Invalid)),
            ("mx.example.org", Some(HeloProblem::OurName)),
            ("MX.EXAMPLE.ORG.", Some(HeloProblem::OurName)),
        ];
        for (helo, want) in cases {
            assert_eq!(helo_problem(helo, client, &ours), *want, "helo {helo:?}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert_eq!(
            helo_problem(&long, client, &ours),
            Some(HeloProblem::Invalid)
        );
    }

    #[test]
    fn helo_ipv6_literal_of_the_client_is_fine() {
        let client = v4("2001:db8::25");
        assert_eq!(helo_problem("[IPv6:2001:DB8::25]", client, &[]), None);
        assert_eq!(helo_problem("[ipv6:2001:db8:0::25]", client, &[]), None);
        // An IPv4-mapped client is the IPv4 address it stands for.
        let mapped = v4("::ffff:198.51.100.7");
        assert_eq!(helo_problem("[198.51.100.7]", mapped, &[]), None);
    }

    #[test]
    fn helo_problem_never_panics_on_odd_bytes() {
        for s in [
            "[", "]", "[]", "[IPv6:]", "\u{0}", "é[", "[é", "[IPv6", "-.-", "a.-",
        ] {
            let _ = helo_problem(s, v4("192.0.2.1"), &["é".to_string()]);
        }
    }

    #[test]
    fn screener_is_shareable_and_its_future_is_send() {
        fn shareable<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        shareable::<Screener>();
        let dns = "127.0.0.1:53".parse().unwrap();
        let resolver = crate::resolver(&[dns], Duration::from_secs(1)).unwrap();
        let screener = Screener::new(resolver, Vec::new(), Duration::from_secs(1));
        send(&screener.screen(v4("192.0.2.1"), true));
    }

    #[test]
    fn describe_texts_are_distinct() {
        let all = [
            HeloProblem::Empty,
            HeloProblem::Invalid,
            HeloProblem::NotFqdn,
            HeloProblem::LiteralMismatch,
            HeloProblem::OurName,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.describe(), b.describe());
            }
        }
    }

    /// Against a DNS server on loopback that lists 127.0.0.2 in one zone, errs in another
    /// and never answers for a third.
    mod live {
        use std::net::SocketAddr;
        use std::time::Duration;

        use mail_auth::hickory_resolver::proto::op::{Message, ResponseCode};
        use mail_auth::hickory_resolver::proto::rr::rdata::{A, PTR};
        use mail_auth::hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
        use ownmail_config::model::{Dnsbl, SpamVerdict};
        use tokio::net::UdpSocket;

        use crate::screen::{Rdns, Screener};

        /// The answer for one question: None means stay silent.
        fn answer(name: &str, rtype: RecordType) -> Option<Result<RData, ResponseCode>> {
            let a = |s: &str| Ok(RData::A(A(s.parse().expect("test address"))));
            let ptr = |s: &str| Ok(RData::PTR(PTR(Name::from_ascii(s).expect("test name"))));
            if name.ends_with(".silent.test") || name == "5.2.0.192.in-addr.arpa" {
                return None;
            }
            Some(match (name, rtype) {
                ("2.0.0.127.listed.test", RecordType::A) => a("127.0.0.2"),
                ("2.2.0.192.listed.test", RecordType::A) => a("127.0.0.2"),
                ("2.0.0.127.allow.test", RecordType::A) => a("127.0.0.3"),
                ("2.2.0.192.quota.test", RecordType::A) => a("127.255.255.254"),
                ("2.2.0.192.broken.test", _) => Err(ResponseCode::ServFail),
                // Loopback clients get their PTR from hickory itself (RFC 6761 `localhost`):
                // the reverse DNS tests use TEST-NET-1 clients.
                ("2.2.0.192.in-addr.arpa", RecordType::PTR) => ptr("mail.example.test."),
                ("mail.example.test", RecordType::A) => a("192.0.2.2"),
                ("3.2.0.192.in-addr.arpa", RecordType::PTR) => ptr("other.example.test."),
                ("other.example.test", RecordType::A) => a("192.0.2.99"),
                _ => Err(ResponseCode::NXDomain),
            })
        }

        async fn start_dns() -> SocketAddr {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let addr = socket.local_addr().expect("address");
            tokio::spawn(async move {
                let mut buf = [0u8; 1500];
                while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                    let Ok(request) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    let Some(query) = request.queries.first().cloned() else {
                        continue;
                    };
                    let name = query.name().to_ascii().trim_end_matches('.').to_lowercase();
                    let Some(result) = answer(&name, query.query_type()) else {
                        continue;
                    };
                    let mut response =
                        Message::response(request.metadata.id, request.metadata.op_code);
                    response.metadata.recursion_desired = request.metadata.recursion_desired;
                    response.metadata.recursion_available = true;
                    response.add_query(query.clone());
                    match result {
                        Ok(data) => {
                            response.add_answer(Record::from_rdata(query.name().clone(), 60, data));
                        }
                        Err(code) => response.metadata.response_code = code,
                    }
                    if let Ok(bytes) = response.to_vec() {
                        let _ = socket.send_to(&bytes, from).await;
                    }
                }
            });
            addr
        }

        fn zone(name: &str, verdict: SpamVerdict) -> Dnsbl {
            Dnsbl {
                zone: name.to_string(),
                verdict,
                pos: ownmail_config::diag::Pos::builtin(),
            }
        }

        #[tokio::test]
        async fn listed_zone_hits_and_silent_zone_fails_open_within_the_bound() {
            let dns = start_dns().await;
            // Each query may take 10 s: only the screener's own bound can end the silent one.
            let resolver = crate::resolver(&[dns], Duration::from_secs(10)).expect("resolver");
            let zones = vec![
                zone("silent.test", SpamVerdict::Reject),
                zone("listed.test", SpamVerdict::Reject),
                zone("quota.test", SpamVerdict::Reject),
                zone("broken.test", SpamVerdict::Reject),
                zone("clean.test", SpamVerdict::Junk),
            ];
            let bound = Duration::from_millis(800);
            let screener = Screener::new(resolver, zones, bound);
            let started = std::time::Instant::now();
            let result = screener.screen("192.0.2.2".parse().unwrap(), true).await;
            let took = started.elapsed();
            assert!(took >= bound, "the silent zone was waited for: {took:?}");
            assert!(took < bound + Duration::from_secs(2), "took {took:?}");
            let zones: Vec<&str> = result.hits.iter().map(|h| h.zone.as_str()).collect();
            assert_eq!(zones, ["listed.test"]);
            assert_eq!(
                result.hits[0].codes,
                ["127.0.0.2".parse::<std::net::Ipv4Addr>().unwrap()]
            );
            assert_eq!(
                result.rejected().map(|h| h.zone.as_str()),
                Some("listed.test")
            );
            assert_eq!(result.rdns, Rdns::Confirmed("mail.example.test".into()));
        }

        #[tokio::test]
        async fn allow_zone_and_reverse_dns_outcomes() {
            let dns = start_dns().await;
            let resolver = crate::resolver(&[dns], Duration::from_secs(2)).expect("resolver");
            let zones = vec![
                zone("listed.test", SpamVerdict::Reject),
                zone("allow.test", SpamVerdict::Allow),
            ];
            let screener = Screener::new(resolver, zones, Duration::from_secs(3));
            let r = screener.screen("127.0.0.2".parse().unwrap(), false).await;
            assert_eq!(r.hits.len(), 2);
            assert_eq!(r.allowed(), Some("allow.test"));
            assert_eq!(r.rejected(), None);
            assert_eq!(r.rdns, Rdns::Unknown, "not asked");

            let r = screener.screen("192.0.2.3".parse().unwrap(), true).await;
            assert!(r.hits.is_empty());
            assert_eq!(r.rdns, Rdns::Unconfirmed(vec!["other.example.test".into()]));

            let r = screener.screen("192.0.2.4".parse().unwrap(), true).await;
            assert_eq!(r.rdns, Rdns::Missing);
        }

        #[tokio::test]
        async fn silent_reverse_dns_is_unknown_within_the_bound() {
            let dns = start_dns().await;
            let resolver = crate::resolver(&[dns], Duration::from_secs(10)).expect("resolver");
            let bound = Duration::from_millis(500);
            let screener = Screener::new(resolver, Vec::new(), bound);
            let started = std::time::Instant::now();
            let r = screener.screen("192.0.2.5".parse().unwrap(), true).await;
            assert!(started.elapsed() < bound + Duration::from_secs(2));
            assert_eq!(r.rdns, Rdns::Unknown);
            assert!(r.hits.is_empty());
        }
    }
}
