//! New DKIM keys (`ownmail dkim keygen`): RSA 2048 (the `rsa` crate; ring cannot generate
//! RSA keys) or Ed25519 (ring), written as PKCS#8 PEM (`BEGIN PRIVATE KEY`), the form
//! `openssl genpkey` writes and every tool reads.

use base64::Engine;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

use crate::key::{parse_key, KeyError, KeyKind, LoadedKey};

/// RSA keys we generate: RFC 8301 §3.2 recommends at least 2048 bits, and 2048 still fits
/// the DNS record in two TXT strings.
pub const RSA_BITS: usize = 2048;

/// A freshly generated key: the PEM to write (mode 600) and the key as loaded from it.
pub struct GeneratedKey {
    pub pem: String,
    pub key: LoadedKey,
}

/// Generates a key of `kind`. The PEM is read back through the same loader `serve` uses, so
/// a key we write is a key we can sign with.
pub fn generate(kind: KeyKind) -> Result<GeneratedKey, KeyError> {
    let pem = match kind {
        KeyKind::Rsa => {
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS)
                .map_err(|e| KeyError::Invalid(e.to_string()))?;
            key.to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyError::Invalid(e.to_string()))?
                .to_string()
        }
        KeyKind::Ed25519 => {
            let rng = ring::rand::SystemRandom::new();
            let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|e| KeyError::Invalid(e.to_string()))?;
            pem_encode("PRIVATE KEY", der.as_ref())
        }
    };
    let key = parse_key(pem.as_bytes())?;
    Ok(GeneratedKey { pem, key })
}

/// RFC 7468 textual encoding: base64 in lines of 64 characters between the labels.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_keys_round_trip_through_pem() {
        let g = generate(KeyKind::Ed25519).expect("keygen");
        assert!(g.pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(g.key.kind, KeyKind::Ed25519);
        assert_eq!(g.key.public.len(), 32);
    }

    #[test]
    fn rsa_keys_are_2048_bit_pkcs8() {
        let g = generate(KeyKind::Rsa).expect("keygen");
        assert!(g.pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!((g.key.kind, g.key.bits), (KeyKind::Rsa, 2048));
        // SubjectPublicKeyInfo of a 2048-bit key: 294 bytes.
        assert_eq!(g.key.public.len(), 294);
    }
}
