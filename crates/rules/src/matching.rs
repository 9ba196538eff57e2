//! Does a rule match? Each condition of SPEC §4.1 against a session and an envelope.

use std::net::IpAddr;

use ownmail_config::model::{Cond, For, From, Rule, TableOrValue};
use ownmail_types::{Address, ReversePath};

use crate::{Ruleset, SessionInfo};

impl Ruleset {
    /// The index of the first rule that matches, or None.
    pub fn first_match(
        &self,
        s: &SessionInfo,
        from: &ReversePath,
        rcpt: &Address,
    ) -> Option<usize> {
        self.config
            .rules
            .iter()
            .position(|r| self.rule_matches(r, s, from, rcpt))
    }

    fn rule_matches(&self, r: &Rule, s: &SessionInfo, from: &ReversePath, rcpt: &Address) -> bool {
        self.cond(&r.from, |f| self.source_matches(f, s, from))
            && self.cond(&r.for_, |f| self.dest_matches(f, rcpt))
            && r.auth.as_ref().is_none_or(|c| {
                self.cond(c, |t| match (&s.auth_user, t) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(u), Some(t)) => self.value_in(t, u),
                })
            })
            && r.tag
                .as_ref()
                .is_none_or(|c| self.cond(c, |t| s.tag.as_deref() == Some(t.as_str())))
            && r.tls.as_ref().is_none_or(|c| self.cond(c, |_| s.tls))
            && r.mail_from
                .as_ref()
                .is_none_or(|c| self.cond(c, |t| self.sender_in(t, from)))
            && r.rcpt_to
                .as_ref()
                .is_none_or(|c| self.cond(c, |t| self.address_in(t, rcpt)))
            && r.helo
                .as_ref()
                .is_none_or(|c| self.cond(c, |t| self.value_in(t, &s.helo)))
    }

    fn cond<T>(&self, c: &Cond<T>, test: impl FnOnce(&T) -> bool) -> bool {
        test(&c.value) != c.negated
    }

    fn source_matches(&self, f: &From, s: &SessionInfo, from: &ReversePath) -> bool {
        match f {
            From::Any => true,
            From::Local => s.local,
            From::Socket => s.socket,
            From::Auth(None) => s.auth_user.is_some(),
            From::Auth(Some(t)) => s.auth_user.as_deref().is_some_and(|u| self.value_in(t, u)),
            From::Src(t) => s.client.is_some_and(|ip| self.network_in(t, ip)),
            From::MailFrom(t) => self.sender_in(t, from),
            From::Rdns(None) => s.rdns.is_some(),
            From::Rdns(Some(t)) => s.rdns.as_deref().is_some_and(|n| self.value_in(t, n)),
        }
    }

    fn dest_matches(&self, f: &For, rcpt: &Address) -> bool {
        match f {
            For::Any => true,
            For::Local => self.is_local_domain(rcpt.domain()),
            For::Domain(t) => self.domain_in(t, rcpt.domain()),
            For::RcptTo(t) => self.address_in(t, rcpt),
        }
    }

    /// Keys of a table (or the one value), lowercased.
    fn keys<'a>(&'a self, t: &'a TableOrValue) -> Box<dyn Iterator<Item = String> + 'a> {
        match t {
            TableOrValue::Value(v) => Box::new(std::iter::once(v.to_lowercase())),
            TableOrValue::Table(r) => match self.table(&r.name) {
                Some(table) => Box::new(table.keys().map(|k| k.to_lowercase())),
                None => Box::new(std::iter::empty()),
            },
        }
    }

    fn value_in(&self, t: &TableOrValue, v: &str) -> bool {
        let v = v.to_lowercase();
        self.keys(t).any(|k| k == v)
    }

    /// A domain matches itself, and `*.example.org` matches its subdomains.
    fn domain_in(&self, t: &TableOrValue, domain: &str) -> bool {
        let d = domain.to_lowercase();
        self.keys(t).any(|k| {
            let k = k.trim_end_matches(':');
            k == d
                || k.strip_prefix("*.")
                    .is_some_and(|suffix| d.ends_with(&format!(".{suffix}")))
        })
    }

    /// An address matches `user@domain`, `@domain` or `domain` entries.
    fn address_in(&self, t: &TableOrValue, a: &Address) -> bool {
        let full = a.to_string().to_lowercase();
        let at_domain = format!("@{}", a.domain());
        self.keys(t)
            .any(|k| k == full || k == at_domain || k == a.domain())
    }

    fn sender_in(&self, t: &TableOrValue, from: &ReversePath) -> bool {
        match from {
            ReversePath::Null => self.keys(t).any(|k| k == "<>" || k.is_empty()),
            ReversePath::Address(a) => self.address_in(t, a),
        }
    }

    fn network_in(&self, t: &TableOrValue, ip: IpAddr) -> bool {
        self.keys(t).any(|k| network_contains(&k, ip))
    }
}

/// `a.b.c.d`, `a.b.c.d/n`, IPv6 likewise; an IPv4-mapped IPv6 client matches IPv4 entries.
pub(crate) fn network_contains(net: &str, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (addr, prefix) = match net.split_once('/') {
        Some((a, p)) => (a, p.parse::<u32>().ok()),
        None => (net, None),
    };
    let Ok(net_ip) = addr.parse::<IpAddr>() else {
        return false;
    };
    match (net_ip, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let p = prefix.unwrap_or(32).min(32);
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let p = prefix.unwrap_or(128).min(128);
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::network_contains;

    #[test]
    fn networks_match_by_prefix() {
        let ip = |s: &str| s.parse().expect("ip");
        assert!(network_contains("192.168.0.0/24", ip("192.168.0.77")));
        assert!(!network_contains("192.168.0.0/24", ip("192.168.1.1")));
        assert!(network_contains("10.0.0.1", ip("10.0.0.1")));
        assert!(network_contains("0.0.0.0/0", ip("8.8.8.8")));
        assert!(network_contains("127.0.0.0/8", ip("::ffff:127.0.0.1")));
        assert!(network_contains("fd00::/8", ip("fd12::1")));
        assert!(!network_contains("garbage", ip("10.0.0.1")));
    }
}
