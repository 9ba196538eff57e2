//! `ownmail dns DOMAIN -f CONF` (SPEC §3, §6.4): the DNS records to publish for DOMAIN, as
//! zone-file lines derived from the configuration — MX, SPF, DKIM (from the `dkim sign`
//! keys), DMARC — and, as comments, the PTR records to check.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ownmail_config::check::resolve_listen;
use ownmail_config::model::{Config, ListenOn};
use ownmail_config::{check_file, ParseOptions};
use ownmail_policy::{dkim_txt, entry_domains, load_entry_key, zone_txt};

pub struct DnsArgs {
    pub domain: String,
    pub file: PathBuf,
    pub pki_dir: PathBuf,
}

pub fn dns(args: DnsArgs) -> ExitCode {
    match records(&args) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ownmail dns: {e}");
            ExitCode::FAILURE
        }
    }
}

fn records(args: &DnsArgs) -> Result<String, String> {
    let domain = args.domain.trim_end_matches('.').to_ascii_lowercase();
    if !crate::dkim_cmd::valid_domain(&domain) {
        return Err(format!("\"{domain}\" is not a domain name"));
    }
    let checked = check_file(
        &args.file,
        &ParseOptions {
            pki_dir: args.pki_dir.clone(),
        },
    );
    if !checked.ok() {
        let errors: Vec<String> = checked
            .diags
            .iter()
            .filter(|d| d.is_error())
            .map(ToString::to_string)
            .collect();
        return Err(format!(
            "the configuration has errors:\n{}",
            errors.join("\n")
        ));
    }
    let config = &checked.config;
    let host = mail_host(config);
    let mut out = format!("; DNS records for {domain}, from {}\n", args.file.display());
    // RFC 5321 §5.1: the MX names the host that receives mail for the domain.
    out.push_str(&format!("{domain}. IN MX 10 {host}.\n"));
    // RFC 7208: the hosts of the MX records may send for the domain; nothing else may.
    out.push_str(&zone_txt(&domain, "v=spf1 mx -all"));
    out.push('\n');
    let mut dkim = 0;
    for entry in &config.dkim {
        let domains = entry_domains(entry, &checked.tables).map_err(|e| e.to_string())?;
        if !domains.contains(&domain) {
            continue;
        }
        let key = load_entry_key(entry).map_err(|e| e.to_string())?;
        out.push_str(&zone_txt(
            &format!("{}._domainkey.{domain}", entry.selector),
            &dkim_txt(key.kind, &key.public),
        ));
        out.push('\n');
        dkim += 1;
    }
    if dkim == 0 {
        out.push_str(&format!(
            "; no `dkim sign` line for {domain}: mail from it leaves unsigned \
             (make a key with `ownmail dkim keygen {domain}`)\n"
        ));
    }
    // RFC 7489: quarantine what fails both SPF and DKIM alignment, and ask for aggregate
    // reports, so that a sender forgotten in SPF shows up before it is tightened to reject.
    out.push_str(&zone_txt(
        &format!("_dmarc.{domain}"),
        &format!("v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"),
    ));
    out.push('\n');
    out.push_str(&ptr_lines(config, &host));
    Ok(out)
}

/// The host name other servers see: the first `listen … hostname NAME`, else this host's.
fn mail_host(config: &Config) -> String {
    config
        .listeners
        .iter()
        .find_map(|l| l.hostname.clone())
        .unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_string())
        })
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Comments naming the PTR record each public listening address needs: receivers commonly
/// check that a sending address resolves back to the name it greets with (forward-confirmed
/// reverse DNS), and the PTR is set by the address's owner, not in the domain's zone.
fn ptr_lines(config: &Config, host: &str) -> String {
    let mut addrs: Vec<IpAddr> = Vec::new();
    for l in &config.listeners {
        if l.on == ListenOn::Socket {
            continue;
        }
        for ip in resolve_listen(&l.on, l.family).unwrap_or_default() {
            if !ip.is_loopback() && !ip.is_unspecified() && !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
    }
    let mut out = format!(
        "; PTR to check (set by whoever owns the address): every address {host} sends from \
         must resolve back to {host}.\n"
    );
    for ip in addrs {
        out.push_str(&format!("; {} IN PTR {host}.\n", reverse_name(ip)));
    }
    out
}

/// `10.2.0.192.in-addr.arpa.` or the nibble form under `ip6.arpa.` (RFC 3596 §2.5).
fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reverse_name;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.10".parse().expect("ip")),
            "10.2.0.192.in-addr.arpa."
        );
        assert_eq!(
            reverse_name("2001:db8::1".parse().expect("ip")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
    }
}
