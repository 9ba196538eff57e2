//! DKIM private keys from PEM files: RSA as PKCS#1 (`RSA PRIVATE KEY`, `openssl genrsa`) or
//! PKCS#8 (`PRIVATE KEY`, `openssl genpkey`, `ownmail dkim keygen`), Ed25519 as PKCS#8 v1 or
//! v2. Loading checks that the key can sign, so that a bad key is found at start, not when
//! the first message leaves.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};

/// A key file larger than this is not a key (an 8192-bit RSA PEM is under 7 KB).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// ring (and so mail-auth) refuses to sign with smaller RSA keys; RFC 8301 §3.2 asks for at
/// least 1024 and recommends 2048.
pub const MIN_RSA_BITS: usize = 2048;

/// The two DKIM signing algorithms (RFC 6376 `rsa-sha256`, RFC 8463 `ed25519-sha256`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    Ed25519,
}

impl KeyKind {
    /// The DKIM `a=` tag value.
    pub fn algorithm(self) -> &'static str {
        match self {
            KeyKind::Rsa => "rsa-sha256",
            KeyKind::Ed25519 => "ed25519-sha256",
        }
    }

    /// The DNS record's `k=` tag value.
    pub fn dns_k(self) -> &'static str {
        match self {
            KeyKind::Rsa => "rsa",
            KeyKind::Ed25519 => "ed25519",
        }
    }
}

/// Why a key file cannot be used for signing.
#[derive(Debug)]
pub enum KeyError {
    Read(std::io::Error),
    TooLarge(u64),
    /// No PEM private key section in the file.
    NotPem,
    /// A private key of a kind DKIM does not sign with (EC).
    Unsupported(&'static str),
    RsaTooSmall(usize),
    /// The key is of one kind, the configuration asked for the other.
    WrongKind {
        found: KeyKind,
        wanted: KeyKind,
    },
    /// The cryptography library rejected the key.
    Invalid(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Read(e) => write!(f, "cannot read: {e}"),
            KeyError::TooLarge(n) => write!(f, "{n} bytes is too large for a private key"),
            KeyError::NotPem => write!(
                f,
                "no PEM private key in it (expected \"BEGIN PRIVATE KEY\" or \"BEGIN RSA PRIVATE KEY\")"
            ),
            KeyError::Unsupported(what) => {
                write!(f, "{what}: DKIM signs with RSA or Ed25519 keys only")
            }
            KeyError::RsaTooSmall(bits) => write!(
                f,
                "a {bits}-bit RSA key is too weak to sign with (at least {MIN_RSA_BITS} bits); \
                 make a new one with `ownmail dkim keygen` and publish its record"
            ),
            KeyError::WrongKind { found, wanted } => write!(
                f,
                "this is an {} key, but the line says algorithm {}",
                found.dns_k(),
                wanted.algorithm()
            ),
            KeyError::Invalid(e) => write!(f, "not a usable key: {e}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// A private key ready to sign, with the public half that DNS must publish.
pub struct LoadedKey {
    pub kind: KeyKind,
    /// Modulus size for RSA, 256 for Ed25519.
    pub bits: usize,
    /// The bytes of the DNS record's `p=` tag: an RSA SubjectPublicKeyInfo (DER), or the
    /// 32 raw bytes of an Ed25519 public key (RFC 8463 §4.2).
    pub public: Vec<u8>,
    pub(crate) key: Arc<DkimKey>,
}

impl fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedKey")
            .field("kind", &self.kind)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

/// Reads the key at `path`; with `wanted`, the key must be of that kind.
pub fn load_key(path: &Path, wanted: Option<KeyKind>) -> Result<LoadedKey, KeyError> {
    let meta = std::fs::metadata(path).map_err(KeyError::Read)?;
    if meta.len() > MAX_KEY_FILE {
        return Err(KeyError::TooLarge(meta.len()));
    }
    let pem = std::fs::read(path).map_err(KeyError::Read)?;
    let key = parse_key(&pem)?;
    match wanted {
        Some(w) if w != key.kind => Err(KeyError::WrongKind {
            found: key.kind,
            wanted: w,
        }),
        _ => Ok(key),
    }
}

/// Parses a PEM private key (see the module comment for the forms accepted).
pub(crate) fn parse_key(pem: &[u8]) -> Result<LoadedKey, KeyError> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::NotPem)?;
    match der {
        PrivateKeyDer::Pkcs1(k) => rsa_key(RsaDer::Pkcs1(k.secret_pkcs1_der())),
        PrivateKeyDer::Pkcs8(k) => {
            let der = k.secret_pkcs8_der();
            match pkcs8_kind(der) {
                Some(KeyKind::Rsa) => rsa_key(RsaDer::Pkcs8(der)),
                Some(KeyKind::Ed25519) => ed25519_key(der),
                None => Err(KeyError::Unsupported("a PKCS#8 key of another algorithm")),
            }
        }
        PrivateKeyDer::Sec1(_) => Err(KeyError::Unsupported("an elliptic-curve (EC) key")),
        _ => Err(KeyError::Unsupported("an unknown kind of key")),
    }
}

enum RsaDer<'a> {
    Pkcs1(&'a [u8]),
    Pkcs8(&'a [u8]),
}

fn rsa_key(der: RsaDer<'_>) -> Result<LoadedKey, KeyError> {
    // The rsa crate tells the size (for a clear message about old 1024-bit keys) and writes
    // the SubjectPublicKeyInfo; ring (through mail-auth) signs.
    let parsed = match der {
        RsaDer::Pkcs1(d) => rsa::RsaPrivateKey::from_pkcs1_der(d).map_err(|e| e.to_string()),
        RsaDer::Pkcs8(d) => rsa::RsaPrivateKey::from_pkcs8_der(d).map_err(|e| e.to_string()),
    }
    .map_err(KeyError::Invalid)?;
    let bits = parsed.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall(bits));
    }
    let public = parsed
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| KeyError::Invalid(e.to_string()))?
        .as_bytes()
        .to_vec();
    let key_der = match der {
        RsaDer::Pkcs1(d) => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(d)),
        RsaDer::Pkcs8(d) => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(d)),
    };
    let key =
        RsaKey::<Sha256>::from_key_der(key_der).map_err(|e| KeyError::Invalid(e.to_string()))?;
    Ok(LoadedKey {
        kind: KeyKind::Rsa,
        bits,
        public,
        key: Arc::new(DkimKey::Rsa(key)),
    })
}

fn ed25519_key(der: &[u8]) -> Result<LoadedKey, KeyError> {
    // `openssl genpkey -algorithm ed25519` writes PKCS#8 v1 (no public key inside), which
    // ring accepts only through the "maybe unchecked" constructor.
    let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(der)
        .map_err(|e| KeyError::Invalid(e.to_string()))?;
    Ok(LoadedKey {
        kind: KeyKind::Ed25519,
        bits: 256,
        public: key.public_key(),
        key: Arc::new(DkimKey::Ed25519(key)),
    })
}

/// rsaEncryption, 1.2.840.113549.1.1.1 (RFC 8017 Appendix A.1).
const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
/// id-Ed25519, 1.3.101.112 (RFC 8410 §3).
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// The algorithm of a PKCS#8 key, from the OID in its AlgorithmIdentifier, which sits within
/// the first bytes of the structure (SEQUENCE, version INTEGER, SEQUENCE { OID ... }).
fn pkcs8_kind(der: &[u8]) -> Option<KeyKind> {
    let head = der.get(..der.len().min(32))?;
    let has = |oid: &[u8]| head.windows(oid.len()).any(|w| w == oid);
    if has(OID_RSA) {
        Some(KeyKind::Rsa)
    } else if has(OID_ED25519) {
        Some(KeyKind::Ed25519)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_pem() {
        assert!(matches!(parse_key(b"hello"), Err(KeyError::NotPem)));
        assert!(matches!(parse_key(b""), Err(KeyError::NotPem)));
        let broken = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(parse_key(broken), Err(KeyError::Unsupported(_))));
        let broken_rsa = b"-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(parse_key(broken_rsa), Err(KeyError::Invalid(_))));
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let e = load_key(Path::new("/nonexistent/dkim.key"), None).unwrap_err();
        assert!(matches!(e, KeyError::Read(_)));
        assert!(e.to_string().starts_with("cannot read"), "{e}");
    }
}
