//! `ownmail check`: read a configuration, then everything it names — tables, certificates,
//! interfaces — and report each problem at its `FILE:LINE:COL`.
//!
//! Checking touches only local files and the host's interfaces; it never asks DNS (a host
//! name after `listen on` is looked up in `/etc/hosts` only), so it is safe in tests and on a
//! machine whose resolver is down.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use crate::diag::Diagnostics;
use crate::model::{Config, Family, Grammar, ImapTls, ListenOn, Pki};
use crate::parser::{self, ParseOptions};
use crate::table::{Table, Usage};

/// A configuration read and checked, with its tables loaded.
pub struct Checked {
    pub config: Config,
    pub grammar: Option<Grammar>,
    pub tables: HashMap<String, Table>,
    pub diags: Diagnostics,
}

impl Checked {
    pub fn ok(&self) -> bool {
        !self.diags.has_errors()
    }
}

/// Parses `path` and checks everything it refers to.
pub fn check_file(path: &Path, opts: &ParseOptions) -> Checked {
    let parsed = parser::parse_file(path, opts);
    let mut diags = parsed.diags;
    let config = parsed.config;
    let tables = load_tables(&config, &mut diags);
    for p in &config.pkis {
        if let Err(m) = load_pki(p) {
            diags.error(&p.pos, m);
        }
    }
    for l in &config.listeners {
        if let Err(m) = resolve_listen(&l.on, l.family) {
            diags.error(&l.on_pos, m);
        }
        if l.auth.as_ref().is_some_and(|a| a.table.is_none()) {
            diags.warning(
                &l.pos,
                "auth without a table: ownmail does not read the system's accounts, so no login \
                 will succeed; name a credentials table (auth <table>)",
            );
        }
    }
    for l in &config.imap.listeners {
        if let Err(m) = resolve_listen(&l.on, None) {
            diags.error(&l.on_pos, m);
        }
        if l.tls != ImapTls::None && l.pki.is_none() && config.pkis.len() != 1 {
            diags.error(
                &l.pos,
                "IMAP with TLS needs a certificate: add `pki NAME` to this line",
            );
        }
    }
    if let Some(l) = config.imap.listeners.first() {
        let has_auth = config.imap.auth.is_some()
            || config
                .listeners
                .iter()
                .any(|x| x.auth.as_ref().is_some_and(|a| a.table.is_some()))
            || config
                .imap
                .userbase
                .as_ref()
                .is_some_and(|t| tables.get(&t.name).is_some_and(Table::is_passwd));
        if !has_auth {
            diags.warning(
                &l.pos,
                "no credentials for IMAP logins: add `imap auth <table>` (or a `passwd:` \
                 table as `imap userbase`), otherwise nobody can log in",
            );
        }
    }
    for d in &config.dkim {
        if let Err(e) = std::fs::metadata(&d.key) {
            diags.error(&d.pos, format!("DKIM key {}: {e}", d.key.display()));
        }
    }
    for f in &config.filters {
        // The program of a `proc-exec` filter, when it is written as an absolute path: one
        // that is not there would stop `serve` at start.
        let crate::model::FilterKind::ProcExec(cmd) = &f.kind else {
            continue;
        };
        let program = cmd.split_whitespace().next().unwrap_or("");
        if program.starts_with('/') && std::fs::metadata(program).is_err() {
            diags.error(
                &f.pos,
                format!("filter \"{}\": {program} does not exist", f.name),
            );
        }
    }
    Checked {
        config,
        grammar: parsed.grammar,
        tables,
        diags,
    }
}

/// Loads every declared table once and validates it for each use the configuration makes.
fn load_tables(config: &Config, diags: &mut Diagnostics) -> HashMap<String, Table> {
    let mut tables = HashMap::new();
    for decl in &config.tables {
        if let Some(t) = Table::load(decl, diags) {
            tables.insert(decl.name.clone(), t);
        }
    }
    let uses: BTreeSet<(String, Usage)> = config
        .table_uses()
        .into_iter()
        .map(|(t, u)| (t.name.clone(), u))
        .collect();
    for (name, usage) in uses {
        if let Some(t) = tables.get(&name) {
            t.validate(usage, diags);
        }
    }
    tables
}

/// The TLS material of one pki, checked as the server will use it.
pub struct TlsKeyPair {
    pub certs: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
}

/// Reads and checks a pki's certificate chain and private key (PKCS#1 `RSA PRIVATE KEY` as
/// `openssl genrsa` writes it, PKCS#8, SEC1), and that they belong together.
pub fn load_pki(p: &Pki) -> Result<TlsKeyPair, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&p.cert, &p.key) else {
        return Err(format!("pki \"{}\" needs both a cert and a key", p.name));
    };
    let what = format!("certificate \"{}\"", p.name);
    std::fs::metadata(cert).map_err(|e| format!("{what}: cannot read {}: {e}", cert.display()))?;
    std::fs::metadata(key).map_err(|e| format!("{what}: cannot read {}: {e}", key.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{what}: cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: {} is not a PEM certificate: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate in {}", cert.display()));
    }
    let pkey = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{what}: {} holds no usable private key: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing = provider
        .key_provider
        .load_private_key(pkey.clone_key())
        .map_err(|e| {
            format!(
                "{what}: private key {} is not usable: {e} (RSA keys must be at least 2048 bits; \
                 regenerate with: openssl genrsa -out {} 4096)",
                key.display(),
                key.display()
            )
        })?;
    let ck = rustls::sign::CertifiedKey::new(certs.clone(), signing);
    ck.keys_match().map_err(|e| {
        format!(
            "{what}: {} does not belong to {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(TlsKeyPair { certs, key: pkey })
}

/// The addresses a `listen on` names: an address, an interface (`lo`, `eth0`), `any`, or a
/// host name from `/etc/hosts`.
pub fn resolve_listen(on: &ListenOn, family: Option<Family>) -> Result<Vec<IpAddr>, String> {
    let keep = |ip: &IpAddr| match family {
        Some(Family::Inet4) => ip.is_ipv4(),
        Some(Family::Inet6) => ip.is_ipv6(),
        None => true,
    };
    let name = match on {
        ListenOn::Socket => return Ok(Vec::new()),
        ListenOn::Any => {
            let any: Vec<IpAddr> = ["0.0.0.0", "::"]
                .iter()
                .filter_map(|a| a.parse().ok())
                .filter(keep)
                .collect();
            return Ok(any);
        }
        ListenOn::Name(n) => n,
    };
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let mut found_iface = false;
    let mut addrs = Vec::new();
    if let Ok(ifs) = nix::ifaddrs::getifaddrs() {
        for ifa in ifs {
            if ifa.interface_name != *name {
                continue;
            }
            found_iface = true;
            let Some(a) = ifa.address else { continue };
            let ip = if let Some(v4) = a.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = a.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            // An IPv6 link-local address cannot be bound without its scope, and no mail
            // server is reached by one: leave it out.
            let link_local = matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
            if keep(&ip) && !link_local && !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
    }
    if found_iface {
        if addrs.is_empty() {
            return Err(format!("interface \"{name}\" has no address to listen on"));
        }
        return Ok(addrs);
    }
    let hosts = hosts_lookup(Path::new("/etc/hosts"), name)
        .into_iter()
        .filter(keep)
        .collect::<Vec<_>>();
    if hosts.is_empty() {
        return Err(format!(
            "\"{name}\" is neither an interface of this host, nor an address, nor a name in /etc/hosts"
        ));
    }
    Ok(hosts)
}

/// Addresses of `name` in a hosts file (case-insensitive names, `#` comments).
fn hosts_lookup(file: &Path, name: &str) -> Vec<IpAddr> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(ip) = fields.next().and_then(|a| a.parse::<IpAddr>().ok()) else {
            continue;
        };
        if fields.any(|h| h.eq_ignore_ascii_case(name)) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}
