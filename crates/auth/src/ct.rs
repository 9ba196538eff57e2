//! Constant-time comparison for the digests this crate compares itself.

use sha2::{Digest, Sha256};

/// Whether `a == b`, taking the same time for every pair of equal-length inputs.
///
/// The length itself is not secret here: every caller compares fixed-size digests or encoded
/// hashes whose length the stored hash already fixes.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// Whether two secrets of possibly different lengths are equal, without revealing through
/// timing how long the stored one is or where they first differ: both are reduced to SHA-256
/// digests first, which always have the same length.
pub(crate) fn ct_eq_secret(a: &[u8], b: &[u8]) -> bool {
    ct_eq(&Sha256::digest(a), &Sha256::digest(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_is_plain_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
    }

    #[test]
    fn ct_eq_secret_compares_values_not_lengths_only() {
        assert!(ct_eq_secret(b"secret", b"secret"));
        assert!(!ct_eq_secret(b"secret", b"secreT"));
        assert!(!ct_eq_secret(b"secret", b"secret\0"));
        assert!(!ct_eq_secret(b"", b"x"));
    }
}
