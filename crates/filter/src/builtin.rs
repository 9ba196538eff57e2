//! Built-in filters (`filter NAME phase PHASE match CONDITIONS DECISION`): evaluated in the
//! session, against the facts [`Facts`] the session recorded, with no process.
//!
//! Table semantics follow OpenSMTPD's `table_match`: `src` keys are networks (K_NETADDR);
//! `rdns` and `helo` keys are host names where `*` matches any run of characters
//! (K_DOMAIN, `hostname_match`); `mail-from` and `rcpt-to` keys are `user@domain`,
//! `@domain` or `user` (K_MAILADDR: the domain part may hold `*`, a key without a `+tag`
//! ignores the address's tag); `auth` keys are user names; `regex` keys are regular
//! expressions searched for in the value (`(?i)` makes one case-insensitive).
//! Lookups are case-insensitive except regular expressions.

use std::collections::HashMap;
use std::net::IpAddr;

use ownmail_config::model::{Builtin, BuiltinDecision, BuiltinTest, TableMatch};
use ownmail_config::table::Table;
use regex_automata::meta::Regex;

use crate::protocol::Phase;

/// What the session knows so far, for the conditions of built-in filters.
#[derive(Clone, Debug, Default)]
pub(crate) struct Facts {
    /// The client's reverse name; empty when it has none.
    pub rdns: String,
    pub fcrdns: bool,
    /// The client's address (`None` on a local socket).
    pub src: Option<IpAddr>,
    pub helo: Option<String>,
    /// The authenticated user, once authentication passed.
    pub user: Option<String>,
    pub mail_from: Option<String>,
    pub rcpt_to: Option<String>,
}

impl Facts {
    /// Whether the client has a reverse name (OpenSMTPD: not `<unknown>`, not an address).
    fn has_rdns(&self) -> bool {
        let r = self.rdns.trim_start_matches('[').trim_end_matches(']');
        !r.is_empty() && r != "<unknown>" && r.parse::<IpAddr>().is_err()
    }
}

/// One key set of a table, ready for matching.
#[derive(Debug)]
enum Matcher {
    Regex(Vec<Regex>),
    Networks(Vec<(IpAddr, u8)>),
    /// Lowercased host-name patterns.
    Domains(Vec<String>),
    /// Lowercased address patterns.
    Addresses(Vec<String>),
    /// Lowercased user names.
    Users(Vec<String>),
}

#[derive(Debug)]
struct Test {
    negated: bool,
    what: TestKind,
}

#[derive(Debug)]
enum TestKind {
    Fcrdns,
    Rdns(Option<Matcher>),
    Src(Matcher),
    Helo(Matcher),
    Auth(Option<Matcher>),
    MailFrom(Matcher),
    RcptTo(Matcher),
}

/// A built-in filter with its tables read and its regular expressions compiled.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub phase: Phase,
    tests: Vec<Test>,
    pub decision: BuiltinDecision,
}

impl Compiled {
    /// Compiles `b`; the error names the table or key at fault (the caller adds the filter).
    pub fn new(b: &Builtin, tables: &HashMap<String, Table>) -> Result<Compiled, String> {
        let phase = Phase::from_name(b.phase.name())
            .ok_or_else(|| format!("phase {} is not supported", b.phase.name()))?;
        let mut tests = Vec::with_capacity(b.conds.len());
        for cond in &b.conds {
            let m = |kind: Kind| -> Result<Matcher, String> {
                match cond.what.table() {
                    Some(t) => matcher(t, kind, tables),
                    None => Err("internal: condition without a table".to_string()),
                }
            };
            let opt = |kind: Kind| -> Result<Option<Matcher>, String> {
                cond.what
                    .table()
                    .map(|t| matcher(t, kind, tables))
                    .transpose()
            };
            let what = match &cond.what {
                BuiltinTest::Fcrdns => TestKind::Fcrdns,
                BuiltinTest::Rdns(_) => TestKind::Rdns(opt(Kind::Domains)?),
                BuiltinTest::Src(_) => TestKind::Src(m(Kind::Networks)?),
                BuiltinTest::Helo(_) => TestKind::Helo(m(Kind::Domains)?),
                BuiltinTest::Auth(_) => TestKind::Auth(opt(Kind::Users)?),
                BuiltinTest::MailFrom(_) => TestKind::MailFrom(m(Kind::Addresses)?),
                BuiltinTest::RcptTo(_) => TestKind::RcptTo(m(Kind::Addresses)?),
            };
            tests.push(Test {
                negated: cond.negated,
                what,
            });
        }
        Ok(Compiled {
            phase,
            tests,
            decision: b.decision.clone(),
        })
    }

    /// Whether every condition holds.
    pub fn matches(&self, facts: &Facts) -> bool {
        self.tests.iter().all(|t| t.holds(facts) != t.negated)
    }
}

impl Test {
    fn holds(&self, f: &Facts) -> bool {
        match &self.what {
            TestKind::Fcrdns => f.fcrdns,
            TestKind::Rdns(None) => f.has_rdns(),
            TestKind::Rdns(Some(m)) => f.has_rdns() && m.matches(&f.rdns),
            TestKind::Src(m) => match (m, f.src) {
                (Matcher::Networks(nets), Some(ip)) => nets.iter().any(|n| in_network(ip, *n)),
                (Matcher::Regex(_), Some(ip)) => m.matches(&ip.to_string()),
                (Matcher::Regex(_), None) => m.matches("local"),
                _ => false,
            },
            TestKind::Helo(m) => f.helo.as_deref().is_some_and(|h| m.matches(h)),
            TestKind::Auth(None) => f.user.is_some(),
            TestKind::Auth(Some(m)) => f.user.as_deref().is_some_and(|u| m.matches(u)),
            TestKind::MailFrom(m) => f.mail_from.as_deref().is_some_and(|a| m.matches(a)),
            TestKind::RcptTo(m) => f.rcpt_to.as_deref().is_some_and(|a| m.matches(a)),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Networks,
    Domains,
    Addresses,
    Users,
}

fn matcher(t: &TableMatch, kind: Kind, tables: &HashMap<String, Table>) -> Result<Matcher, String> {
    let name = &t.table.name;
    let table = tables
        .get(name)
        .ok_or_else(|| format!("table \"{name}\" is not loaded"))?;
    let keys: Vec<&str> = table.keys().collect();
    if t.regex {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let re = Regex::new(k).map_err(|e| {
                format!("table \"{name}\": invalid regular expression \"{k}\": {e}")
            })?;
            out.push(re);
        }
        return Ok(Matcher::Regex(out));
    }
    let lower = || keys.iter().map(|k| k.to_lowercase()).collect::<Vec<_>>();
    Ok(match kind {
        Kind::Networks => {
            let mut nets = Vec::with_capacity(keys.len());
            for k in &keys {
                nets.push(parse_network(k).ok_or_else(|| {
                    format!("table \"{name}\": \"{k}\" is not an address or a network")
                })?);
            }
            Matcher::Networks(nets)
        }
        Kind::Domains => Matcher::Domains(lower()),
        Kind::Addresses => Matcher::Addresses(lower()),
        Kind::Users => Matcher::Users(lower()),
    })
}

impl Matcher {
    fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Regex(res) => res.iter().any(|r| r.is_match(value)),
            Matcher::Networks(nets) => value
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| nets.iter().any(|n| in_network(ip, *n))),
            Matcher::Domains(keys) => {
                let v = value.to_lowercase();
                keys.iter().any(|k| hostname_match(&v, k))
            }
            Matcher::Addresses(keys) => {
                let v = value.to_lowercase();
                keys.iter().any(|k| mailaddr_match(&v, k))
            }
            Matcher::Users(keys) => {
                let v = value.to_lowercase();
                keys.contains(&v)
            }
        }
    }
}

/// `a.b.c.d`, `a.b.c.d/n`, `::1`, `2001:db8::/32` (brackets allowed).
fn parse_network(key: &str) -> Option<(IpAddr, u8)> {
    let key = key.trim();
    let (addr, len) = match key.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (key, None),
    };
    let ip: IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((ip, len))
}

fn in_network(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    // An IPv4 client seen on an IPv6 socket is still that IPv4 client.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// OpenSMTPD's `hostname_match`: `*` in the pattern skips characters of the name up to the
/// next one that equals the pattern's next character; both must end together. Both
/// arguments are lowercase.
fn hostname_match(name: &str, pattern: &str) -> bool {
    let n = name.as_bytes();
    let p = pattern.as_bytes();
    let (mut i, mut j) = (0, 0);
    while j < p.len() && i < n.len() {
        if p[j] == b'*' {
            while j < p.len() && p[j] == b'*' {
                j += 1;
            }
            while i < n.len() && Some(&n[i]) != p.get(j) {
                i += 1;
            }
            continue;
        }
        if p[j] != n[i] {
            return false;
        }
        i += 1;
        j += 1;
    }
    i == n.len() && j == p.len()
}

/// OpenSMTPD's `mailaddr_match` of a (lowercase) address against a (lowercase) key:
/// `user@domain`, `@domain` or `user` (a key without `@` is a user part, as in OpenSMTPD's
/// `text_to_mailaddr`). The domain may use `*`; a key user without `+` ignores the
/// address's `+tag`.
fn mailaddr_match(addr: &str, key: &str) -> bool {
    let split = |s: &str| -> (String, String) {
        match s.rsplit_once('@') {
            Some((u, d)) => (u.to_string(), d.to_string()),
            None => (s.to_string(), String::new()),
        }
    };
    let (mut user, domain) = split(addr);
    let (kuser, kdomain) = split(key);
    if kuser.is_empty() && kdomain.is_empty() {
        return true;
    }
    if !kdomain.is_empty() && !hostname_match(&domain, &kdomain) {
        return false;
    }
    if !kuser.is_empty() {
        if !kuser.contains('+') {
            if let Some(i) = user.find('+') {
                user.truncate(i);
            }
        }
        if user != kuser {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_match_like_opensmtpd() {
        assert!(hostname_match("mx.example.org", "mx.example.org"));
        assert!(hostname_match("a.example.org", "*.example.org"));
        // As in OpenSMTPD, `*` stops at the first character that can follow it.
        assert!(!hostname_match("a.b.example.org", "*.example.org"));
        assert!(!hostname_match("example.org", "*.example.org"));
        assert!(!hostname_match("mx.example.org", "example.org"));
        assert!(hostname_match("host-1.dyn.isp.net", "*.dyn.*"));
        assert!(!hostname_match("", "x"));
    }

    #[test]
    fn addresses_match_like_opensmtpd() {
        assert!(mailaddr_match("bob@example.org", "bob@example.org"));
        assert!(mailaddr_match("bob+tag@example.org", "bob@example.org"));
        assert!(!mailaddr_match(
            "bob+tag@example.org",
            "bob+other@example.org"
        ));
        assert!(mailaddr_match("alice@example.org", "@example.org"));
        assert!(mailaddr_match("alice@mx.example.org", "@*.example.org"));
        assert!(!mailaddr_match("alice@example.net", "@example.org"));
        assert!(mailaddr_match("alice@example.net", "alice"));
        assert!(!mailaddr_match("", "@example.org"));
    }

    #[test]
    fn networks() {
        let n = parse_network("192.0.2.0/24").unwrap();
        assert!(in_network("192.0.2.7".parse().unwrap(), n));
        assert!(in_network("::ffff:192.0.2.7".parse().unwrap(), n));
        assert!(!in_network("192.0.3.7".parse().unwrap(), n));
        let n = parse_network("2001:db8::/32").unwrap();
        assert!(in_network("2001:db8::1".parse().unwrap(), n));
        assert!(!in_network("2001:db9::1".parse().unwrap(), n));
        assert!(in_network(
            "10.1.2.3".parse().unwrap(),
            parse_network("0.0.0.0/0").unwrap()
        ));
        assert!(parse_network("10.0.0.0/33").is_none());
        assert!(parse_network("nope").is_none());
    }
}
