//! DNS for relaying: MX records of a domain, addresses (A and AAAA) of a host, through
//! hickory's resolver.
//!
//! The resolver asks the servers of the `resolver` directive (SPEC §4.2), or those of
//! `/etc/resolv.conf` when there are none. It never reads `/etc/hosts` (`ResolveHosts::Never`):
//! mail routing follows the DNS, and tests point it at a DNS server of their own. UDP is tried
//! first and a truncated answer is asked again over TCP (hickory's default).
//!
//! Names are looked up fully qualified, so a `search` line in resolv.conf never turns
//! `example.org` into `example.org.corp.internal`.
//!
//! Failures are sorted into the three kinds that decide a delivery: the name does not exist
//! (NXDOMAIN), it exists without records of the type (NODATA), or we could not find out
//! (timeouts, SERVFAIL, refusals: worth another try later).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::TokioResolver;

use crate::mx::MxRecord;

/// Why a lookup gave no records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DnsError {
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// The name exists, but has no record of the type asked for.
    NoData,
    /// No usable answer (timeout, SERVFAIL, …); the text says which.
    Temp(String),
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsError::NxDomain => f.write_str("no such domain (NXDOMAIN)"),
            DnsError::NoData => f.write_str("no records of that type"),
            DnsError::Temp(e) => f.write_str(e),
        }
    }
}

pub(crate) struct Dns {
    resolver: TokioResolver,
    /// The most time one lookup (all its retries included) may take.
    limit: Duration,
}

impl Dns {
    /// `servers` empty means the system's configuration (`/etc/resolv.conf`).
    pub(crate) fn new(servers: &[SocketAddr], limit: Duration) -> Result<Self, String> {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio()
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
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], name_servers),
                TokioRuntimeProvider::default(),
            )
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.use_hosts_file = ResolveHosts::Never;
        let resolver = builder
            .build()
            .map_err(|e| format!("building the DNS resolver: {e}"))?;
        Ok(Dns { resolver, limit })
    }

    /// The MX records of `domain`, unsorted; a null MX comes back as a record with an empty
    /// exchange.
    pub(crate) async fn mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError> {
        let name = fqdn(domain)?;
        let lookup = self.bounded(self.resolver.mx_lookup(name)).await?;
        let records: Vec<MxRecord> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some(MxRecord {
                    pref: mx.preference,
                    exchange: host_name(&mx.exchange),
                }),
                _ => None,
            })
            .collect();
        if records.is_empty() {
            // An answer of CNAMEs only, say.
            return Err(DnsError::NoData);
        }
        Ok(records)
    }

    /// The IPv4 then the IPv6 addresses of `host`. Both are asked at once; the lookup fails
    /// only when neither gives an address, and then with the more hopeful of the two errors
    /// (a temporary failure of one beats NODATA of the other).
    pub(crate) async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let name = fqdn(host)?;
        let (v4, v6) = tokio::join!(
            self.bounded(self.resolver.ipv4_lookup(name.clone())),
            self.bounded(self.resolver.ipv6_lookup(name)),
        );
        let mut addrs = Vec::new();
        let mut errors = Vec::new();
        for result in [v4, v6] {
            match result {
                Ok(lookup) => addrs.extend(lookup.answers().iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) => errors.push(e),
            }
        }
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        if let Some(temp) = errors.iter().find(|e| matches!(e, DnsError::Temp(_))) {
            return Err(temp.clone());
        }
        if errors.len() == 2 && errors.iter().all(|e| *e == DnsError::NxDomain) {
            return Err(DnsError::NxDomain);
        }
        Err(DnsError::NoData)
    }

    async fn bounded<T>(
        &self,
        lookup: impl std::future::Future<Output = Result<T, NetError>>,
    ) -> Result<T, DnsError> {
        match tokio::time::timeout(self.limit, lookup).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(DnsError::Temp(format!(
                "no answer within {}s",
                self.limit.as_secs_f64()
            ))),
        }
    }
}

fn classify(e: &NetError) -> DnsError {
    if e.is_nx_domain() {
        DnsError::NxDomain
    } else if e.is_no_records_found() {
        DnsError::NoData
    } else {
        DnsError::Temp(e.to_string())
    }
}

/// A fully qualified name for `s` (UTF-8 labels become A-labels). A name that cannot be one
/// is reported as not existing: no DNS answer could ever change that.
fn fqdn(s: &str) -> Result<Name, DnsError> {
    let mut name = Name::from_utf8(s.trim_end_matches('.')).map_err(|_| DnsError::NxDomain)?;
    name.set_fqdn(true);
    Ok(name)
}

/// The exchange as we compare and show it: lowercase, no trailing dot, "" for the root.
fn host_name(name: &Name) -> String {
    if name.is_root() {
        return String::new();
    }
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}
