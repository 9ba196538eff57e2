//! bcrypt, `$2b$`, `$2y$` and `$2a$` (OpenBSD; Dovecot's `{BLF-CRYPT}`).
//!
//! Form: `$2b$CC$` + 22 salt characters + 31 hash characters, 60 in all, in the bcrypt base64
//! alphabet `./A-Za-z0-9`. The three prefixes compute the same function for passwords under
//! 255 bytes; verification is the `bcrypt` crate's (constant-time comparison, password cut at
//! 72 bytes like every bcrypt).

use base64::alphabet::BCRYPT;
use base64::engine::general_purpose::NO_PAD;
use base64::engine::GeneralPurpose;
use base64::Engine;

use crate::password::HashError;

/// Canonical bcrypt base64: refuses final characters with unused bits set, which
/// crypt_blowfish never produces and whose hash therefore never verifies there.
const BCRYPT_B64: GeneralPurpose = GeneralPurpose::new(&BCRYPT, NO_PAD);

const LEN: usize = 60;
const SALT_AT: usize = 7;
const HASH_AT: usize = SALT_AT + 22;
/// Costs the bcrypt crate (and OpenBSD) accept; the work is 2^cost.
const COST_MIN: u32 = 4;
const COST_MAX: u32 = 31;

/// A parsed bcrypt hash, kept whole for the `bcrypt` crate.
#[derive(Clone)]
pub(crate) struct Bcrypt {
    text: String,
}

fn is_bcrypt_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

impl Bcrypt {
    /// Parse `s` (starting `$2a$`, `$2b$` or `$2y$`), found at byte `at`.
    pub(crate) fn parse(s: &str, at: usize) -> Result<Bcrypt, HashError> {
        let b = s.as_bytes();
        let prefix_ok = b.len() >= 4
            && b[0] == b'$'
            && b[1] == b'2'
            && matches!(b[2], b'a' | b'b' | b'y')
            && b[3] == b'$';
        if !prefix_ok {
            return Err(HashError::new(
                at,
                "expected a $2a$, $2b$ or $2y$ bcrypt hash",
            ));
        }
        let cost_digits = b.get(4..6).unwrap_or_default();
        if cost_digits.len() != 2 || !cost_digits.iter().all(u8::is_ascii_digit) {
            return Err(HashError::new(at + 4, "bcrypt cost must be two digits"));
        }
        let cost = u32::from(b[4] - b'0') * 10 + u32::from(b[5] - b'0');
        if !(COST_MIN..=COST_MAX).contains(&cost) {
            return Err(HashError::new(
                at + 4,
                format!("bcrypt cost must be between {COST_MIN:02} and {COST_MAX}"),
            ));
        }
        if b.get(6) != Some(&b'$') {
            return Err(HashError::new(
                at + 6,
                "bcrypt cost must be followed by '$'",
            ));
        }
        if let Some(i) = b.iter().skip(SALT_AT).position(|&c| !is_bcrypt_char(c)) {
            return Err(HashError::new(
                at + SALT_AT + i,
                "character outside the bcrypt alphabet ./A-Za-z0-9",
            ));
        }
        if b.len() != LEN {
            let offset = if b.len() > LEN { at + LEN } else { at };
            return Err(HashError::new(
                offset,
                format!("bcrypt hash must be {LEN} characters, found {}", b.len()),
            ));
        }
        // All ASCII from here on, so slicing at these offsets is safe.
        if !matches!(BCRYPT_B64.decode(&s[SALT_AT..HASH_AT]), Ok(v) if v.len() == 16) {
            return Err(HashError::new(
                at + HASH_AT - 1,
                "bcrypt salt ends in a character that bcrypt never produces there",
            ));
        }
        if !matches!(BCRYPT_B64.decode(&s[HASH_AT..]), Ok(v) if v.len() == 23) {
            return Err(HashError::new(
                at + LEN - 1,
                "bcrypt hash ends in a character that bcrypt never produces there",
            ));
        }
        Ok(Bcrypt { text: s.to_owned() })
    }

    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        bcrypt::verify(password, &self.text).unwrap_or(false)
    }

    #[cfg(test)]
    pub(crate) fn cost(&self) -> u32 {
        self.text
            .get(4..6)
            .and_then(|c| c.parse().ok())
            .unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_generated_hash_parses_and_verifies() {
        let h = bcrypt::hash("correct horse", 4).unwrap();
        let parsed = Bcrypt::parse(&h, 0).unwrap();
        assert_eq!(parsed.cost(), 4);
        assert!(parsed.verify(b"correct horse"));
        assert!(!parsed.verify(b"correct horse "));
    }

    #[test]
    fn cost_out_of_range_is_refused_at_the_cost() {
        let h = "$2b$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        assert_eq!(Bcrypt::parse(h, 0).map(|_| ()).unwrap_err().offset, 4);
        let h = "$2b$32$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        assert_eq!(Bcrypt::parse(h, 0).map(|_| ()).unwrap_err().offset, 4);
    }

    #[test]
    fn non_canonical_salt_end_is_refused() {
        // 'C' as the 22nd salt character leaves unused bits set.
        let h = "$2b$05$CCCCCCCCCCCCCCCCCCCCCCE5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        assert_eq!(Bcrypt::parse(h, 0).map(|_| ()).unwrap_err().offset, 28);
    }
}
