//! Which mail exchangers to try for a domain, and in which order: pure decisions over what DNS
//! answered, so that they can be tested without a network.
//!
//! - RFC 5321 §5.1: MX records sorted by preference, lowest first; records of equal preference
//!   in random order, to spread the load.
//! - RFC 7505: a domain whose only MX is `.` (a "null MX") accepts no mail.
//! - RFC 5321 §5.1 again: a relay that finds itself in the list must drop itself and every MX
//!   of equal or worse preference, or mail would loop. When this host is the *best* MX, the
//!   domain should have been accepted for local delivery: that is a configuration error.
//! - SPEC §5.4, backup MX: deliver only to MXs strictly better than the named backup host.

use std::net::IpAddr;

use rand::seq::SliceRandom;
use rand::Rng;

/// One MX record as DNS gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MxRecord {
    pub pref: u16,
    /// Lowercase, without the trailing dot; empty for the root (`.`, a null MX).
    pub exchange: String,
}

/// An MX host with the addresses its name resolved to (possibly none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MxHost {
    pub pref: u16,
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

/// Who "this host" is, for the self-MX checks.
pub(crate) struct Me<'a> {
    pub hostname: &'a str,
    pub local_addrs: &'a [IpAddr],
}

impl Me<'_> {
    fn is(&self, host: &MxHost) -> bool {
        same_name(&host.name, self.hostname)
            || host.addrs.iter().any(|a| self.local_addrs.contains(a))
    }
}

/// What to do with the MX hosts of a domain.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Try these, in this order.
    Hosts(Vec<MxHost>),
    /// The best MX is this host, and this is not a backup route.
    BestIsUs,
    /// A backup route: no MX is better than the backup host, so there is nobody to hand the
    /// mail to (it waits in the queue).
    NothingBetter { backup: String },
}

/// RFC 7505 §3: a null MX is a single record with exchange `.`; several, all `.`, mean the
/// same. A `.` next to real exchanges is a broken zone: the real ones are used.
pub(crate) fn is_null_mx(records: &[MxRecord]) -> bool {
    !records.is_empty() && records.iter().all(|r| r.exchange.is_empty())
}

/// Sorts by preference, shuffles each group of equal preference, drops `.` entries.
pub(crate) fn order<R: Rng>(records: Vec<MxRecord>, rng: &mut R) -> Vec<MxRecord> {
    let mut records: Vec<MxRecord> = records
        .into_iter()
        .filter(|r| !r.exchange.is_empty())
        .collect();
    records.shuffle(rng);
    // A stable sort keeps the shuffled order within each preference.
    records.sort_by_key(|r| r.pref);
    records
}

/// Applies the self and backup rules to the ordered hosts. `backup` is the name of the backup
/// host for a backup route (this host's name when the route names none), `None` otherwise.
pub(crate) fn select(hosts: Vec<MxHost>, me: &Me<'_>, backup: Option<&str>) -> Plan {
    let best = hosts.iter().map(|h| h.pref).min();
    let ours = hosts.iter().filter(|h| me.is(h)).map(|h| h.pref).min();
    let named = backup.and_then(|name| {
        hosts
            .iter()
            .filter(|h| same_name(&h.name, name))
            .map(|h| h.pref)
            .min()
    });
    let limit = match (named, ours) {
        (Some(n), Some(o)) => Some(n.min(o)),
        (Some(n), None) => Some(n),
        // Not a backup route, or the backup host is not listed: relay as usual, which still
        // means never to ourselves or anyone worse.
        (None, Some(o)) if Some(o) == best => return Plan::BestIsUs,
        (None, o) => o,
    };
    let Some(limit) = limit else {
        return Plan::Hosts(hosts);
    };
    let better: Vec<MxHost> = hosts.into_iter().filter(|h| h.pref < limit).collect();
    if better.is_empty() {
        // Only reachable through `named` (otherwise `ours` was the best, handled above).
        Plan::NothingBetter {
            backup: backup.unwrap_or_default().to_string(),
        }
    } else {
        Plan::Hosts(better)
    }
}

/// Host names compare case-insensitively, with or without the root's trailing dot.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The address of a domain literal (RFC 5321 §4.1.3): `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
pub(crate) fn address_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner
            .get(5..)?
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(IpAddr::V6),
        _ => inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rec(pref: u16, exchange: &str) -> MxRecord {
        MxRecord {
            pref,
            exchange: exchange.to_string(),
        }
    }

    fn host(pref: u16, name: &str, addr: &str) -> MxHost {
        MxHost {
            pref,
            name: name.to_string(),
            addrs: vec![addr.parse().expect("test address")],
        }
    }

    fn names(plan: &Plan) -> Vec<&str> {
        match plan {
            Plan::Hosts(h) => h.iter().map(|h| h.name.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    const ME: Me<'static> = Me {
        hostname: "mail.example.org",
        local_addrs: &[],
    };

    #[test]
    fn records_sort_by_preference_and_equal_ones_are_shuffled() {
        let records = vec![rec(20, "c"), rec(10, "a1"), rec(10, "a2"), rec(5, "first")];
        let mut seen_a2_first = false;
        let mut seen_a1_first = false;
        for seed in 0..64 {
            let ordered = order(records.clone(), &mut StdRng::seed_from_u64(seed));
            let prefs: Vec<u16> = ordered.iter().map(|r| r.pref).collect();
            assert_eq!(prefs, [5, 10, 10, 20]);
            match ordered.get(1).map(|r| r.exchange.as_str()) {
                Some("a1") => seen_a1_first = true,
                Some("a2") => seen_a2_first = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            seen_a1_first && seen_a2_first,
            "equal preferences never shuffled"
        );
    }

    #[test]
    fn null_mx_is_only_dots() {
        assert!(is_null_mx(&[rec(0, "")]));
        assert!(!is_null_mx(&[]));
        assert!(!is_null_mx(&[rec(0, ""), rec(10, "mx")]));
        let ordered = order(vec![rec(0, ""), rec(10, "mx")], &mut rand::thread_rng());
        assert_eq!(ordered, [rec(10, "mx")]);
    }

    #[test]
    fn best_mx_being_us_by_name_or_address_is_refused() {
        let hosts = vec![
            host(10, "MAIL.example.org.", "192.0.2.1"),
            host(20, "b", "192.0.2.2"),
        ];
        assert_eq!(select(hosts, &ME, None), Plan::BestIsUs);
        let local = ["192.0.2.9".parse().expect("addr")];
        let me = Me {
            hostname: "other",
            local_addrs: &local,
        };
        let hosts = vec![host(10, "a", "192.0.2.9"), host(20, "b", "192.0.2.2")];
        assert_eq!(select(hosts, &me, None), Plan::BestIsUs);
    }

    #[test]
    fn a_relay_listed_as_secondary_drops_itself_and_worse() {
        let hosts = vec![
            host(10, "a", "192.0.2.1"),
            host(20, "mail.example.org", "192.0.2.2"),
            host(30, "c", "192.0.2.3"),
        ];
        assert_eq!(names(&select(hosts, &ME, None)), ["a"]);
    }

    #[test]
    fn backup_delivers_only_to_strictly_better_mx() {
        let hosts = vec![
            host(10, "a", "192.0.2.1"),
            host(20, "b", "192.0.2.4"),
            host(20, "mail.example.org", "192.0.2.2"),
            host(30, "c", "192.0.2.3"),
        ];
        let plan = select(hosts.clone(), &ME, Some("mail.example.org"));
        assert_eq!(names(&plan), ["a"]);
        assert_eq!(names(&select(hosts.clone(), &ME, Some("B"))), ["a"]);
        assert_eq!(
            select(hosts, &ME, Some("a")),
            Plan::NothingBetter {
                backup: "a".to_string()
            }
        );
    }

    #[test]
    fn domain_literals_are_addresses() {
        assert_eq!(
            address_literal("[192.0.2.1]"),
            Some("192.0.2.1".parse().expect("addr"))
        );
        assert_eq!(
            address_literal("[ipv6:2001:db8::1]"),
            Some("2001:db8::1".parse().expect("addr"))
        );
        assert_eq!(address_literal("[2001:db8::1]"), None);
        assert_eq!(address_literal("example.org"), None);
        assert_eq!(address_literal("[300.1.1.1]"), None);
    }

    #[test]
    fn backup_for_an_unlisted_host_relays_as_usual() {
        let hosts = vec![host(10, "a", "192.0.2.1"), host(20, "b", "192.0.2.2")];
        assert_eq!(names(&select(hosts, &ME, Some("elsewhere"))), ["a", "b"]);
    }
}
