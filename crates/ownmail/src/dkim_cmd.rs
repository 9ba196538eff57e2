//! `ownmail dkim keygen` (SPEC §3), and the wiring of `dkim sign` keys (SPEC §4.2) into
//! `serve` and `check`. Keys, signing and records belong to `ownmail-policy`.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Subcommand, ValueEnum};
use ownmail_config::table::Table;
use ownmail_config::{Checked, Config};
use ownmail_policy::{dkim_txt, generate, load_entry_key, zone_txt, DkimSigner, KeyKind};
use ownmail_types::OutboundSigner;

/// The selector `keygen` uses without `--selector`. A fixed name keeps the first setup
/// simple; for a key rotation, give the new key another selector (a date, say) so that both
/// records can be published while mail signed with the old key is still in flight.
pub const DEFAULT_SELECTOR: &str = "ownmail";

#[derive(Subcommand)]
pub enum DkimAction {
    /// Write a new private key (mode 600) and print the DNS TXT record that publishes it.
    Keygen {
        /// The domain that will sign with the key (the `d=` of its signatures).
        domain: String,
        /// The DKIM selector: the record goes to SELECTOR._domainkey.DOMAIN.
        #[arg(short = 's', long, default_value = DEFAULT_SELECTOR)]
        selector: String,
        /// rsa: 2048-bit RSA (rsa-sha256), understood by every verifier; ed25519
        /// (ed25519-sha256, RFC 8463): short, but not every verifier knows it yet.
        #[arg(short = 'a', long, value_enum, default_value_t = Algorithm::Rsa)]
        algorithm: Algorithm,
        /// Where to write the key [default: ./DOMAIN.SELECTOR.key]. An existing file is
        /// never overwritten.
        #[arg(short = 'o', long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

pub fn dkim_command(action: DkimAction) -> ExitCode {
    match action {
        DkimAction::Keygen {
            domain,
            selector,
            algorithm,
            out,
        } => match keygen(&domain, &selector, algorithm, out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ownmail dkim keygen: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// A DNS name as DKIM needs it: letters, digits, `-` and `_` in dot-separated labels.
pub(crate) fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn keygen(
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    out: Option<PathBuf>,
) -> Result<(), String> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !valid_domain(&domain) {
        return Err(format!("\"{domain}\" is not a domain name"));
    }
    if !valid_domain(selector) {
        return Err(format!(
            "\"{selector}\" is not a selector (letters, digits, '-', '_', dots)"
        ));
    }
    let kind = match algorithm {
        Algorithm::Rsa => KeyKind::Rsa,
        Algorithm::Ed25519 => KeyKind::Ed25519,
    };
    let path = out.unwrap_or_else(|| PathBuf::from(format!("{domain}.{selector}.key")));
    let generated = generate(kind).map_err(|e| format!("cannot generate a key: {e}"))?;
    write_private(&path, generated.pem.as_bytes())?;
    let shown = std::fs::canonicalize(&path).unwrap_or(path);
    eprintln!("{}", shown.display());
    eprintln!(
        "add to smtpd.conf: dkim sign domain {domain} selector {selector} key \"{}\" algorithm {}",
        shown.display(),
        kind.algorithm()
    );
    let record = zone_txt(
        &format!("{selector}._domainkey.{domain}"),
        &dkim_txt(kind, &generated.key.public),
    );
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{record}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write the record: {e}"))
}

/// Creates `path` with mode 600 (never replacing a file: a published key must not be lost),
/// writes it and syncs it to disk.
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!("{} already exists; not overwriting it", path.display())
            } else {
                format!("cannot create {}: {e}", path.display())
            }
        })?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The DKIM signer of a configuration for `serve` (None when it has no `dkim sign` line),
/// or every bad `dkim sign` line as `FILE:LINE:COL: message`.
pub(crate) fn signer_of(
    config: &Config,
    tables: &HashMap<String, Table>,
) -> Result<Option<Arc<dyn OutboundSigner>>, String> {
    let signer = DkimSigner::from_config(config, tables).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    if signer.is_empty() {
        return Ok(None);
    }
    tracing::info!("dkim event=keys-loaded signer={signer:?}");
    Ok(Some(Arc::new(signer)))
}

/// `check`: every `dkim sign` key must load and be able to sign. A key file that does not
/// exist is already reported by the configuration check.
pub(crate) fn check_keys(checked: &mut Checked) {
    for entry in &checked.config.dkim {
        if std::fs::metadata(&entry.key).is_err() {
            continue;
        }
        if let Err(e) = load_entry_key(entry) {
            checked.diags.error(&e.pos, e.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_domain;

    #[test]
    fn domains_and_selectors_are_dns_labels() {
        for ok in ["example.org", "s1", "2026-11", "a_b.example"] {
            assert!(valid_domain(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "a b",
            "a/b",
            "-x;y",
            "a\"b",
            &"x".repeat(64),
        ] {
            assert!(!valid_domain(bad), "{bad}");
        }
    }
}
