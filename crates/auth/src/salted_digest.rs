//! Dovecot's plain digest schemes: `{SHA}`, `{SHA256}`, `{SHA512}` (digest of the password)
//! and `{SSHA}`, `{SSHA256}`, `{SSHA512}` (digest of password ‖ salt, followed by the salt),
//! also written by OpenLDAP's slappasswd.
//!
//! Encoding as Dovecot reads it: base64 by default; for the unsalted schemes, a string of
//! exactly twice the digest length in hex digits is read as hex. The base64 reader is lenient
//! about padding and unused final bits, like Dovecot's, because the bytes are well defined
//! either way.

use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{DecodeError, Engine};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::ct::ct_eq;
use crate::password::{HashError, Scheme};

const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DigestAlg {
    Sha1,
    Sha256,
    Sha512,
}

impl DigestAlg {
    fn len(self) -> usize {
        match self {
            DigestAlg::Sha1 => 20,
            DigestAlg::Sha256 => 32,
            DigestAlg::Sha512 => 64,
        }
    }

    fn digest(self, password: &[u8], salt: &[u8]) -> Vec<u8> {
        match self {
            DigestAlg::Sha1 => Sha1::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize()
                .to_vec(),
            DigestAlg::Sha256 => Sha256::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize()
                .to_vec(),
            DigestAlg::Sha512 => Sha512::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize()
                .to_vec(),
        }
    }
}

/// A digest, with the salt for the salted schemes (empty for the unsalted ones).
#[derive(Clone)]
pub(crate) struct SaltedDigest {
    alg: DigestAlg,
    salted: bool,
    digest: Vec<u8>,
    salt: Vec<u8>,
}

/// Decode base64 `s`, found at byte `at`, pointing errors at the offending character.
fn decode_b64(s: &str, at: usize) -> Result<Vec<u8>, HashError> {
    LENIENT_B64.decode(s).map_err(|e| match e {
        DecodeError::InvalidByte(i, _) | DecodeError::InvalidLastSymbol(i, _) => {
            HashError::new(at + i, "character outside base64 (A-Za-z0-9+/=)")
        }
        DecodeError::InvalidLength(_) => HashError::new(at, "base64 of impossible length"),
        DecodeError::InvalidPadding => HashError::new(at, "base64 padding is wrong"),
    })
}

impl SaltedDigest {
    /// `{SSHA}`-style: base64 of digest ‖ salt, the salt at least one byte (as Dovecot).
    pub(crate) fn parse_salted(
        alg: DigestAlg,
        s: &str,
        at: usize,
    ) -> Result<SaltedDigest, HashError> {
        let mut bytes = decode_b64(s, at)?;
        if bytes.len() <= alg.len() {
            return Err(HashError::new(
                at,
                format!(
                    "salted hash decodes to {} bytes; needs the {}-byte digest and a salt",
                    bytes.len(),
                    alg.len()
                ),
            ));
        }
        let salt = bytes.split_off(alg.len());
        Ok(SaltedDigest {
            alg,
            salted: true,
            digest: bytes,
            salt,
        })
    }

    /// `{SHA}`-style: the digest alone, base64 or hex.
    pub(crate) fn parse_unsalted(
        alg: DigestAlg,
        s: &str,
        at: usize,
    ) -> Result<SaltedDigest, HashError> {
        let digest = if s.len() == 2 * alg.len() && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            decode_hex(s)
        } else {
            decode_b64(s, at)?
        };
        if digest.len() != alg.len() {
            return Err(HashError::new(
                at,
                format!(
                    "hash decodes to {} bytes; the digest is {} bytes",
                    digest.len(),
                    alg.len()
                ),
            ));
        }
        Ok(SaltedDigest {
            alg,
            salted: false,
            digest,
            salt: Vec::new(),
        })
    }

    pub(crate) fn scheme(&self) -> Scheme {
        match (self.alg, self.salted) {
            (DigestAlg::Sha1, true) => Scheme::Ssha,
            (DigestAlg::Sha256, true) => Scheme::Ssha256,
            (DigestAlg::Sha512, true) => Scheme::Ssha512,
            (DigestAlg::Sha1, false) => Scheme::Sha,
            (DigestAlg::Sha256, false) => Scheme::Sha256,
            (DigestAlg::Sha512, false) => Scheme::Sha512,
        }
    }

    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        ct_eq(&self.alg.digest(password, &self.salt), &self.digest)
    }
}

/// Hex digits (already checked, even count) to bytes.
fn decode_hex(s: &str) -> Vec<u8> {
    fn nibble(b: u8) -> u8 {
        match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => 0,
        }
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| (nibble(pair[0]) << 4) | nibble(pair[1]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_both_cases() {
        assert_eq!(decode_hex("00ffAb10"), vec![0x00, 0xff, 0xab, 0x10]);
    }

    #[test]
    fn base64_error_points_at_the_bad_character() {
        let err = decode_b64("AAAA*AAA", 10).unwrap_err();
        assert_eq!(err.offset, 14);
    }

    #[test]
    fn salted_hash_without_salt_is_refused() {
        // base64 of 20 zero bytes: a SHA-1 digest and nothing after it.
        let err = SaltedDigest::parse_salted(DigestAlg::Sha1, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", 0)
            .map(|_| ())
            .unwrap_err();
        assert!(err.message.contains("salt"), "{err}");
    }
}
