//! `dkim sign domain (NAME|<t>) selector NAME key FILE [algorithm A]` (SPEC §4.2): which key
//! signs mail from which author domain, and the signing itself (relaxed/relaxed, SPEC §5.7).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use mail_auth::common::crypto::{Algorithm, DkimKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner as MailAuthSigner, Done};
use ownmail_config::model::{Config, DkimAlgorithm, DkimSign, TableOrValue};
use ownmail_config::table::Table;
use ownmail_config::Pos;
use ownmail_types::{OutboundSigner, SignatureField};

use crate::author::author_domain;
use crate::key::{load_key, KeyKind};

/// The header fields signed when present (RFC 6376 §5.4.1's list, less the trace and list
/// fields that change in transit). mail-auth also signs each one that is *absent*, so none
/// can be added later without breaking the signature; `From` is named twice so that a second
/// `From:` cannot be added either (oversigning, RFC 6376 §8.15).
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// A configuration problem, at the `dkim sign` line that caused it.
#[derive(Clone, Debug)]
pub struct ConfigError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

/// One key shared by the signers of every domain of its `dkim sign` line.
struct SharedKey(Arc<DkimKey>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

struct DomainSigner {
    signer: MailAuthSigner<SharedKey, Done>,
    selector: String,
}

/// Every `dkim sign` entry of a configuration, keys loaded: signs a message with the entry of
/// its author domain. The first entry naming a domain wins.
pub struct DkimSigner {
    by_domain: HashMap<String, DomainSigner>,
}

impl fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut domains: Vec<&String> = self.by_domain.keys().collect();
        domains.sort();
        f.debug_struct("DkimSigner")
            .field("domains", &domains)
            .finish()
    }
}

/// The domains of a `dkim sign` line, lowercased: its NAME, or the domains a table lists
/// (lone keys, or `DOMAIN: true` entries of a virtual table).
pub fn entry_domains(
    entry: &DkimSign,
    tables: &HashMap<String, Table>,
) -> Result<Vec<String>, ConfigError> {
    match &entry.domain {
        TableOrValue::Value(d) => Ok(vec![normalize_domain(d)]),
        TableOrValue::Table(t) => match tables.get(&t.name) {
            Some(table) => Ok(table
                .served_domains()
                .iter()
                .map(|d| normalize_domain(d))
                .collect()),
            None => Err(ConfigError {
                pos: entry.pos.clone(),
                message: format!("table \"{}\" is not defined", t.name),
            }),
        },
    }
}

fn normalize_domain(d: &str) -> String {
    d.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn wanted_kind(a: Option<DkimAlgorithm>) -> Option<KeyKind> {
    a.map(|a| match a {
        DkimAlgorithm::RsaSha256 => KeyKind::Rsa,
        DkimAlgorithm::Ed25519Sha256 => KeyKind::Ed25519,
    })
}

/// Loads the key of one `dkim sign` line, the error naming the line.
pub fn load_entry_key(entry: &DkimSign) -> Result<crate::LoadedKey, ConfigError> {
    load_key(&entry.key, wanted_kind(entry.algorithm)).map_err(|e| ConfigError {
        pos: entry.pos.clone(),
        message: format!("DKIM key {}: {e}", entry.key.display()),
    })
}

impl DkimSigner {
    /// Loads every key of `config.dkim` once. Every bad line is reported, not just the first.
    pub fn from_config(
        config: &Config,
        tables: &HashMap<String, Table>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut by_domain = HashMap::new();
        let mut errors = Vec::new();
        for entry in &config.dkim {
            let domains = match entry_domains(entry, tables) {
                Ok(d) => d,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let key = match load_entry_key(entry) {
                Ok(k) => k,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for domain in domains {
                if domain.is_empty() || by_domain.contains_key(&domain) {
                    continue;
                }
                let signer = MailAuthSigner::from_key(SharedKey(key.key.clone()))
                    .domain(domain.clone())
                    .selector(entry.selector.clone())
                    .headers(SIGNED_HEADERS.iter().copied())
                    .header_canonicalization(Canonicalization::Relaxed)
                    .body_canonicalization(Canonicalization::Relaxed);
                by_domain.insert(
                    domain,
                    DomainSigner {
                        signer,
                        selector: entry.selector.clone(),
                    },
                );
            }
        }
        if errors.is_empty() {
            Ok(DkimSigner { by_domain })
        } else {
            Err(errors)
        }
    }

    /// No `dkim sign` line (or only empty tables): nothing is ever signed.
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// Whether mail from `domain` is signed.
    pub fn signs(&self, domain: &str) -> bool {
        self.by_domain.contains_key(&normalize_domain(domain))
    }
}

impl OutboundSigner for DkimSigner {
    fn sign(&self, message: &[u8]) -> Result<Option<SignatureField>, String> {
        let Some(domain) = author_domain(message) else {
            return Ok(None);
        };
        let Some(d) = self.by_domain.get(&domain) else {
            return Ok(None);
        };
        let signature = d
            .signer
            .sign(message)
            .map_err(|e| format!("DKIM signing for {domain} failed: {e}"))?;
        Ok(Some(SignatureField {
            field: signature.to_header(),
            domain,
            selector: d.selector.clone(),
        }))
    }
}

#[cfg(test)]
mod tests;
