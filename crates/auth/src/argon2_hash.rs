//! Argon2 (RFC 9106) in the PHC string format: `$argon2id$v=19$m=65536,t=2,p=1$SALT$HASH`,
//! as written by libargon2, libsodium and Dovecot's `{ARGON2ID}`/`{ARGON2I}`.
//!
//! The PHC string is parsed by the `argon2` crate's parser; everything verification needs is
//! decoded once here, and verification computes the hash with the stored parameters and
//! compares it in constant time.

use argon2::password_hash::PasswordHash as PhcString;
use argon2::{Algorithm, Argon2, Params, Version};

use crate::ct::ct_eq;
use crate::password::{HashError, Scheme};

/// The most memory a stored hash may ask for, in KiB: 1 GiB, libsodium's "sensitive" limit.
/// Verification allocates `m` KiB at once, and a failed allocation aborts the process, so a
/// hash asking for more is refused when the table is read rather than at someone's login.
pub(crate) const MAX_M_COST: u32 = 1 << 20;

/// argon2's minimum salt length in bytes (RFC 9106 §3.1 allows 8).
const MIN_SALT: usize = 8;

/// A parsed Argon2 hash.
#[derive(Clone)]
pub(crate) struct Argon2Hash {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl Argon2Hash {
    /// Parse the PHC string `s` (starting `$argon2`), found at byte `at`.
    pub(crate) fn parse(s: &str, at: usize) -> Result<Argon2Hash, HashError> {
        let phc = PhcString::new(s)
            .map_err(|e| HashError::new(at, format!("malformed argon2 PHC string: {e}")))?;
        let algorithm = Algorithm::try_from(phc.algorithm)
            .map_err(|_| HashError::new(at + 1, "unknown argon2 variant"))?;
        // libargon2 reads a string without `v=` as version 1.0 (0x10); the argon2 crate
        // would default to 1.3, so the version is chosen here, not left to it.
        let version = match phc.version {
            None => Version::V0x10,
            Some(v) => Version::try_from(v)
                .map_err(|_| HashError::new(at, "argon2 version must be v=16 or v=19"))?,
        };
        let params = Params::try_from(&phc)
            .map_err(|e| HashError::new(at, format!("bad argon2 parameters: {e}")))?;
        if !params.keyid().is_empty() {
            return Err(HashError::new(
                at,
                "argon2 hashes with a keyid (a secret key) are not supported",
            ));
        }
        if params.m_cost() > MAX_M_COST {
            return Err(HashError::new(
                at,
                format!(
                    "argon2 memory m={} KiB is above the {MAX_M_COST} KiB (1 GiB) limit",
                    params.m_cost()
                ),
            ));
        }
        let Some(salt) = phc.salt else {
            return Err(HashError::new(at, "argon2 hash has no salt"));
        };
        let mut buf = [0u8; 64];
        let salt = salt
            .decode_b64(&mut buf)
            .map_err(|e| HashError::new(at, format!("argon2 salt does not decode: {e}")))?;
        if salt.len() < MIN_SALT {
            return Err(HashError::new(
                at,
                format!("argon2 salt is shorter than {MIN_SALT} bytes"),
            ));
        }
        let Some(hash) = phc.hash else {
            return Err(HashError::new(at, "argon2 string has no hash part"));
        };
        Ok(Argon2Hash {
            algorithm,
            version,
            params,
            salt: salt.to_vec(),
            hash: hash.as_bytes().to_vec(),
        })
    }

    pub(crate) fn scheme(&self) -> Scheme {
        match self.algorithm {
            Algorithm::Argon2id => Scheme::Argon2id,
            Algorithm::Argon2i => Scheme::Argon2i,
            Algorithm::Argon2d => Scheme::Argon2d,
        }
    }

    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        let ctx = Argon2::new(self.algorithm, self.version, self.params.clone());
        let mut out = vec![0u8; self.hash.len()];
        ctx.hash_password_into(password, &self.salt, &mut out)
            .is_ok()
            && ct_eq(&out, &self.hash)
    }

    /// m, t, p: for tests that must keep verification cheap.
    #[cfg(test)]
    pub(crate) fn costs(&self) -> (u32, u32, u32) {
        (
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    #[test]
    fn crate_generated_hash_parses_and_verifies() {
        let params = Params::new(64, 1, 1, None).unwrap();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap();
        let h = argon
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        let parsed = Argon2Hash::parse(&h, 0).unwrap();
        assert_eq!(parsed.scheme(), Scheme::Argon2id);
        assert_eq!(parsed.costs(), (64, 1, 1));
        assert!(parsed.verify(b"correct horse"));
        assert!(!parsed.verify(b"correct horsE"));
    }

    #[test]
    fn memory_above_the_limit_is_refused() {
        let h = "$argon2id$v=19$m=2097152,t=2,p=1$c2FsdHNhbHRzYWx0$pwZ7sGME81TL89Hs/ia4qXIxzecJdXvdtALit/lGF0w";
        let err = Argon2Hash::parse(h, 0).map(|_| ()).unwrap_err();
        assert!(err.message.contains("limit"), "{err}");
    }

    #[test]
    fn short_salt_is_refused() {
        // "c2FsdA" is 4 bytes: the PHC parser takes it, argon2 could not use it.
        let h = "$argon2id$v=19$m=256,t=2,p=1$c2FsdA$pwZ7sGME81TL89Hs/ia4qXIxzecJdXvdtALit/lGF0w";
        let err = Argon2Hash::parse(h, 0).map(|_| ()).unwrap_err();
        assert!(err.message.contains("salt"), "{err}");
    }

    #[test]
    fn string_without_hash_part_is_refused() {
        let h = "$argon2id$v=19$m=256,t=2,p=1$c2FsdHNhbHRzYWx0";
        assert!(Argon2Hash::parse(h, 0).is_err());
    }
}
