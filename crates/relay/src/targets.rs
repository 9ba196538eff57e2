//! Where to take a group of recipients: the smarthost's addresses, or the MX hosts of the
//! domain in order, with the decisions of `mx.rs` applied to what `dns.rs` found.

use std::net::{IpAddr, SocketAddr};

use ownmail_config::model::RelayUrl;
use ownmail_types::DeliveryOutcome;

use crate::dns::DnsError;
use crate::mx::{self, Me, MxHost, MxRecord, Plan};
use crate::{perm, temp, RelayCourier, RelayRoute};

/// One address to try, under the name it was found by (shown, and used for TLS).
pub(crate) struct Target {
    pub name: String,
    pub addr: SocketAddr,
}

impl Target {
    fn new(name: &str, ip: IpAddr, port: u16) -> Self {
        Target {
            name: name.to_string(),
            addr: SocketAddr::new(ip, port),
        }
    }
}

impl RelayCourier {
    /// The smarthost's addresses. Any failure to find them is temporary: it is our own
    /// configuration, or the DNS, and both can be fixed.
    pub(crate) async fn smarthost_targets(
        &self,
        url: &RelayUrl,
    ) -> Result<(Vec<Target>, Vec<String>), DeliveryOutcome> {
        let port = url.port.unwrap_or(url.scheme.default_port());
        let host = url.host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok((vec![Target::new(host, ip, port)], Vec::new()));
        }
        match self.dns.addresses(host).await {
            Ok(addrs) => Ok((
                addrs
                    .into_iter()
                    .map(|ip| Target::new(host, ip, port))
                    .collect(),
                Vec::new(),
            )),
            Err(e) => Err(temp(format!(
                "4.4.3 smarthost {host}: looking up its address: {e}"
            ))),
        }
    }

    /// The MX hosts' addresses in the order to try them, and the lookups that failed on the
    /// way (for the reason if nothing works).
    pub(crate) async fn mx_targets(
        &self,
        domain: &str,
        route: &RelayRoute,
    ) -> Result<(Vec<Target>, Vec<String>), DeliveryOutcome> {
        let port = self.opts.port;
        if let Some(ip) = mx::address_literal(domain) {
            if self.opts.local_addrs.contains(&ip) {
                return Err(self.best_mx_is_us(domain));
            }
            return Ok((vec![Target::new(domain, ip, port)], Vec::new()));
        }
        let records = match self.dns.mx(domain).await {
            Ok(records) => records,
            Err(DnsError::NxDomain) => {
                return Err(perm(format!(
                    "5.1.2 domain {domain} does not exist (NXDOMAIN)"
                )))
            }
            // RFC 5321 §5.1: no MX records, the domain itself is the implicit MX.
            Err(DnsError::NoData) => Vec::new(),
            Err(DnsError::Temp(e)) => {
                return Err(temp(format!(
                    "4.4.3 DNS: MX lookup for {domain} failed: {e}"
                )))
            }
        };
        if mx::is_null_mx(&records) {
            return Err(perm(format!(
                "5.1.10 {domain}: domain does not accept mail (null MX)"
            )));
        }
        let implicit = records.is_empty();
        let ordered = if implicit {
            vec![MxRecord {
                pref: 0,
                exchange: domain.to_string(),
            }]
        } else {
            mx::order(records, &mut rand::thread_rng())
        };
        let mut hosts = Vec::with_capacity(ordered.len());
        let mut failures = Vec::new();
        for record in ordered {
            let addrs = match self.dns.addresses(&record.exchange).await {
                Ok(addrs) => addrs,
                Err(DnsError::Temp(e)) if implicit => {
                    return Err(temp(format!(
                        "4.4.3 DNS: address lookup for {domain} failed: {e}"
                    )))
                }
                Err(_) if implicit => {
                    return Err(perm(format!(
                        "5.1.2 domain {domain} has neither MX nor address records"
                    )))
                }
                Err(e) => {
                    // Kept without addresses: its name still counts for the self checks.
                    failures.push(format!("{}: address lookup: {e}", record.exchange));
                    Vec::new()
                }
            };
            hosts.push(MxHost {
                pref: record.pref,
                name: record.exchange,
                addrs,
            });
        }
        let me = Me {
            hostname: &self.opts.hostname,
            local_addrs: &self.opts.local_addrs,
        };
        let backup = route
            .backup
            .as_ref()
            .map(|name| name.as_deref().unwrap_or(&self.opts.hostname));
        match mx::select(hosts, &me, backup) {
            Plan::BestIsUs => Err(self.best_mx_is_us(domain)),
            Plan::NothingBetter { backup } => Err(temp(format!(
                "4.4.4 no MX of {domain} is better than the backup MX {backup}: \
                 waiting for a better one"
            ))),
            Plan::Hosts(hosts) => Ok((
                hosts
                    .iter()
                    .flat_map(|h| h.addrs.iter().map(|&ip| Target::new(&h.name, ip, port)))
                    .collect(),
                failures,
            )),
        }
    }

    fn best_mx_is_us(&self, domain: &str) -> DeliveryOutcome {
        perm(format!(
            "5.4.6 best MX for {domain} is this host: configuration error \
             (accept the domain for local delivery or fix the MX)"
        ))
    }
}
