//! Password hashes: recognising, verifying and creating them.
//!
//! A credentials table (SPEC §4.3) stores one hash per user, in whatever form the admin's other
//! tools wrote it: crypt(3) strings (`$6$`, `$5$`, `$2b$`/`$2y$`/`$2a$`, `$argon2id$`), Dovecot
//! `{SCHEME}` prefixed strings, or — discouraged — the password in plain text.
//! [`PasswordHash::parse`] recognises the form and checks it is well formed, so a damaged entry
//! (a hash with a space inside it, a truncated hash) is reported where it is read, with the byte
//! offset of the problem, instead of silently never matching at login.
//! [`PasswordHash::verify`] checks a password against it; [`hash_sha512_crypt`] makes a new one.
//!
//! Invariants:
//! - Pure code: no I/O, no logging. Nothing here ever prints or formats a password or a hash;
//!   `Debug` on [`PasswordHash`] shows only the scheme.
//! - Never panics on input: every stored string and every password, however odd, gives an
//!   error or `false`.
//! - Comparisons that this crate makes itself run in constant time for equal-length values;
//!   the crypt libraries used here compare in constant time too.
//! - A hash that parses can be verified: anything the libraries would refuse at verification
//!   time is refused by `parse` already, and costs are bounded so that one stored hash cannot
//!   exhaust memory (see `argon2_hash`).

mod argon2_hash;
mod bcrypt_hash;
mod ct;
mod password;
mod salted_digest;
mod shacrypt;

pub use password::{HashError, PasswordHash, Scheme, MAX_PASSWORD_LEN};
pub use shacrypt::hash_sha512_crypt;
