//! SHA-crypt, `$5$` (SHA-256) and `$6$` (SHA-512), as specified by Ulrich Drepper
//! (<https://www.akkadia.org/drepper/SHA-crypt.txt>) and implemented by glibc and libxcrypt.
//!
//! Form: `$6$[rounds=N$]SALT$HASH`. Parsing is as strict as libxcrypt (Debian's crypt(3)):
//! a hash libxcrypt would refuse, or would verify by producing a different string (a salt
//! longer than 16 characters, `rounds=05000`), can never match at login, so it is an error
//! here instead of a silent mismatch.

use rand::rngs::OsRng;
use rand::Rng;
use sha_crypt::{sha256_crypt_b64, sha512_crypt_b64, Sha256Params, Sha512Params};

use crate::ct::ct_eq;
use crate::password::HashError;

/// The crypt base64 alphabet, in value order.
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// At most this many salt characters are used (Drepper, "salt string ... up to 16").
const SALT_MAX: usize = 16;
/// The `rounds=` range; libxcrypt refuses values outside it (glibc clamps them, which gives a
/// different string, so such a hash never verifies there either).
const ROUNDS_MIN: usize = 1_000;
const ROUNDS_MAX: usize = 999_999_999;
/// Rounds when there is no `rounds=` field.
const ROUNDS_DEFAULT: usize = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShaVariant {
    Sha256,
    Sha512,
}

impl ShaVariant {
    fn id(self) -> &'static str {
        match self {
            ShaVariant::Sha256 => "$5$",
            ShaVariant::Sha512 => "$6$",
        }
    }

    /// Encoded hash length: 32 or 64 bytes in crypt base64.
    fn hash_len(self) -> usize {
        match self {
            ShaVariant::Sha256 => 43,
            ShaVariant::Sha512 => 86,
        }
    }

    /// The last character encodes fewer than 6 bits (16 of 258 for SHA-256, 8 of 516 for
    /// SHA-512, Drepper's final `b64_from_24bit` calls), so its value has an upper bound.
    fn last_char_limit(self) -> u8 {
        match self {
            ShaVariant::Sha256 => 16,
            ShaVariant::Sha512 => 4,
        }
    }
}

/// A parsed SHA-crypt hash.
#[derive(Clone)]
pub(crate) struct ShaCrypt {
    variant: ShaVariant,
    rounds: usize,
    salt: String,
    /// The encoded hash, exactly as stored (already validated).
    hash: String,
}

fn crypt_value(b: u8) -> Option<u8> {
    CRYPT_ALPHABET
        .iter()
        .position(|&c| c == b)
        .and_then(|p| u8::try_from(p).ok())
}

impl ShaCrypt {
    /// Parse `s`, which starts with `variant`'s `$5$`/`$6$` and was found at byte `at`.
    pub(crate) fn parse(variant: ShaVariant, s: &str, at: usize) -> Result<ShaCrypt, HashError> {
        let id = variant.id();
        let Some(mut rest) = s.strip_prefix(id) else {
            return Err(HashError::new(
                at,
                format!("expected a hash starting with {id}"),
            ));
        };
        let mut pos = at + id.len();

        let mut rounds = ROUNDS_DEFAULT;
        if let Some(after) = rest.strip_prefix("rounds=") {
            let digits_at = pos + "rounds=".len();
            let Some(end) = after.find('$') else {
                return Err(HashError::new(pos, "rounds= field is not followed by '$'"));
            };
            rounds = parse_rounds(&after[..end], digits_at)?;
            rest = &after[end + 1..];
            pos = digits_at + end + 1;
        }

        let Some(salt_end) = rest.find('$') else {
            return Err(HashError::new(
                pos,
                format!("{id} hash has no '$' between salt and hash"),
            ));
        };
        let salt = &rest[..salt_end];
        if let Some(i) = salt.bytes().position(|b| crypt_value(b).is_none()) {
            return Err(HashError::new(
                pos + i,
                "salt character outside the crypt alphabet ./0-9A-Za-z",
            ));
        }
        if salt.len() > SALT_MAX {
            return Err(HashError::new(
                pos + SALT_MAX,
                format!("salt longer than {SALT_MAX} characters; crypt(3) would cut it"),
            ));
        }

        let hash = &rest[salt_end + 1..];
        let hash_at = pos + salt_end + 1;
        if let Some(i) = hash.bytes().position(|b| crypt_value(b).is_none()) {
            let what = if hash.as_bytes().get(i) == Some(&b'$') {
                "unexpected '$' in the hash part"
            } else {
                "hash character outside the crypt alphabet ./0-9A-Za-z"
            };
            return Err(HashError::new(hash_at + i, what));
        }
        let want = variant.hash_len();
        if hash.len() != want {
            let offset = if hash.len() > want {
                hash_at + want
            } else {
                hash_at
            };
            return Err(HashError::new(
                offset,
                format!(
                    "{id} hash part must be {want} characters, found {}",
                    hash.len()
                ),
            ));
        }
        let last_ok = hash
            .bytes()
            .last()
            .and_then(crypt_value)
            .is_some_and(|v| v < variant.last_char_limit());
        if !last_ok {
            return Err(HashError::new(
                hash_at + want - 1,
                format!("{id} hash ends in a character that crypt(3) never produces there"),
            ));
        }

        Ok(ShaCrypt {
            variant,
            rounds,
            salt: salt.to_owned(),
            hash: hash.to_owned(),
        })
    }

    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        // Compare the encoded strings, as crypt(3) users do; `parse` guaranteed the stored
        // one is canonical, so equal strings mean equal digests.
        let computed = match self.variant {
            ShaVariant::Sha512 => Sha512Params::new(self.rounds)
                .ok()
                .and_then(|p| sha512_crypt_b64(password, self.salt.as_bytes(), &p).ok()),
            ShaVariant::Sha256 => Sha256Params::new(self.rounds)
                .ok()
                .and_then(|p| sha256_crypt_b64(password, self.salt.as_bytes(), &p).ok()),
        };
        computed.is_some_and(|c| ct_eq(c.as_bytes(), self.hash.as_bytes()))
    }

    #[cfg(test)]
    pub(crate) fn rounds(&self) -> usize {
        self.rounds
    }
}

/// The digits of `rounds=N`, found at byte `at`: decimal, no sign, no leading zero (libxcrypt
/// refuses `rounds=05000`), within [`ROUNDS_MIN`, `ROUNDS_MAX`].
fn parse_rounds(digits: &str, at: usize) -> Result<usize, HashError> {
    if let Some(i) = digits.bytes().position(|b| !b.is_ascii_digit()) {
        return Err(HashError::new(at + i, "rounds= must be a decimal number"));
    }
    if digits.is_empty() {
        return Err(HashError::new(at, "rounds= has no number"));
    }
    if digits.starts_with('0') {
        return Err(HashError::new(at, "rounds= number has a leading zero"));
    }
    match digits.parse::<usize>() {
        Ok(n) if (ROUNDS_MIN..=ROUNDS_MAX).contains(&n) => Ok(n),
        _ => Err(HashError::new(
            at,
            format!("rounds= must be between {ROUNDS_MIN} and {ROUNDS_MAX}"),
        )),
    }
}

/// A new SHA-512-crypt hash `$6$<16 random salt chars>$<86 chars>`, with the default 5000
/// rounds (no `rounds=` field), as `doveadm pw -s SHA512-CRYPT` and `mkpasswd -m sha-512`
/// make. The salt comes from the operating system's random source.
pub fn hash_sha512_crypt(password: &[u8]) -> String {
    let salt: String = (0..SALT_MAX)
        .map(|_| char::from(CRYPT_ALPHABET[OsRng.gen_range(0..CRYPT_ALPHABET.len())]))
        .collect();
    // The only errors sha-crypt reports are rounds out of range and non-UTF-8 output, and
    // neither can happen with the default rounds and its own base64 output.
    let hash = sha512_crypt_b64(password, salt.as_bytes(), &Sha512Params::default())
        .expect("default rounds are in range and the encoding is ASCII");
    format!("$6${salt}${hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_field_rejects_non_canonical_numbers() {
        assert_eq!(parse_rounds("5000", 10), Ok(5000));
        assert_eq!(parse_rounds("05000", 10).map_err(|e| e.offset), Err(10));
        assert_eq!(parse_rounds("", 10).map_err(|e| e.offset), Err(10));
        assert_eq!(parse_rounds("12a4", 10).map_err(|e| e.offset), Err(12));
        assert!(parse_rounds("999", 0).is_err());
        assert!(parse_rounds("1000000000", 0).is_err());
        assert!(parse_rounds("99999999999999999999999999", 0).is_err());
        assert_eq!(parse_rounds("999999999", 0), Ok(999_999_999));
    }

    #[test]
    fn new_hash_has_sixteen_salt_chars_and_default_rounds() {
        let h = hash_sha512_crypt(b"pw");
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(parts.len(), 4, "{h}");
        assert_eq!(parts[1], "6");
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3].len(), 86);
        let parsed = ShaCrypt::parse(ShaVariant::Sha512, &h, 0).unwrap();
        assert_eq!(parsed.rounds(), ROUNDS_DEFAULT);
    }

    #[test]
    fn new_hashes_get_different_salts() {
        assert_ne!(hash_sha512_crypt(b"pw"), hash_sha512_crypt(b"pw"));
    }

    #[test]
    fn generated_hashes_always_end_in_a_canonical_character() {
        // Checks the last_char_limit reasoning against the library's own encoder.
        for i in 0..16u32 {
            let pw = i.to_le_bytes();
            let p512 = Sha512Params::default();
            let h512 = sha512_crypt_b64(&pw, b"salt", &p512).unwrap();
            let s512 = format!("$6$salt${h512}");
            assert!(
                ShaCrypt::parse(ShaVariant::Sha512, &s512, 0).is_ok(),
                "{s512}"
            );
            let p256 = Sha256Params::new(1000).unwrap();
            let h256 = sha256_crypt_b64(&pw, b"salt", &p256).unwrap();
            let s256 = format!("$5$rounds=1000$salt${h256}");
            assert!(
                ShaCrypt::parse(ShaVariant::Sha256, &s256, 0).is_ok(),
                "{s256}"
            );
        }
    }
}
