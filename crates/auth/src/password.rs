//! The public face: [`Scheme`], [`PasswordHash`] and [`HashError`], and the dispatch from a
//! stored string to the module that knows its scheme.

use std::fmt;

use crate::argon2_hash::Argon2Hash;
use crate::bcrypt_hash::Bcrypt;
use crate::ct::ct_eq_secret;
use crate::salted_digest::{DigestAlg, SaltedDigest};
use crate::shacrypt::{ShaCrypt, ShaVariant};

/// The longest password [`PasswordHash::verify`] will hash, in bytes.
///
/// SHA-crypt's work grows with the square of the password length (Drepper's steps 14–16 and
/// every round hash a password-length sequence), so an attacker could make each login attempt
/// cost seconds of CPU with a long password. SASL PLAIN servers must accept 255-byte passwords
/// (RFC 4616 §2); this leaves ample room above that.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// How a stored password is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// crypt(3) `$6$`, Dovecot `{SHA512-CRYPT}`.
    Sha512Crypt,
    /// crypt(3) `$5$`, Dovecot `{SHA256-CRYPT}`.
    Sha256Crypt,
    /// crypt(3) `$2b$`, `$2y$`, `$2a$`, Dovecot `{BLF-CRYPT}`.
    Bcrypt,
    /// PHC `$argon2id$`, Dovecot `{ARGON2ID}`.
    Argon2id,
    /// PHC `$argon2i$`, Dovecot `{ARGON2I}`.
    Argon2i,
    /// PHC `$argon2d$`.
    Argon2d,
    /// The password itself: a bare string, or Dovecot `{PLAIN}` / `{CLEARTEXT}`.
    Plain,
    /// Dovecot `{SSHA}`: base64 of SHA-1(password ‖ salt) ‖ salt.
    Ssha,
    /// Dovecot `{SSHA256}`: as `{SSHA}` with SHA-256.
    Ssha256,
    /// Dovecot `{SSHA512}`: as `{SSHA}` with SHA-512.
    Ssha512,
    /// Dovecot `{SHA}`: SHA-1(password), base64 or hex.
    Sha,
    /// Dovecot `{SHA256}`: SHA-256(password), base64 or hex.
    Sha256,
    /// Dovecot `{SHA512}`: SHA-512(password), base64 or hex.
    Sha512,
}

impl Scheme {
    /// The scheme's Dovecot name (without braces), used in messages.
    fn name(self) -> &'static str {
        match self {
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::Sha256Crypt => "SHA256-CRYPT",
            Scheme::Bcrypt => "BLF-CRYPT",
            Scheme::Argon2id => "ARGON2ID",
            Scheme::Argon2i => "ARGON2I",
            Scheme::Argon2d => "ARGON2D",
            Scheme::Plain => "PLAIN",
            Scheme::Ssha => "SSHA",
            Scheme::Ssha256 => "SSHA256",
            Scheme::Ssha512 => "SSHA512",
            Scheme::Sha => "SHA",
            Scheme::Sha256 => "SHA256",
            Scheme::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a stored string is not a usable password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashError {
    /// Byte offset into the string given to [`PasswordHash::parse`] where the problem is;
    /// 0 when the problem is the string as a whole.
    pub offset: usize,
    /// What is wrong, for a person. Never contains the password or the hash.
    pub message: String,
}

impl HashError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> Self {
        HashError {
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for HashError {}

/// A stored password hash, recognised and checked to be well formed.
#[derive(Clone)]
pub struct PasswordHash {
    scheme: Scheme,
    /// The hash text without any Dovecot `{SCHEME}` prefix (for `Plain`, the password).
    text: String,
    material: Material,
}

/// What `verify` needs, decoded once by `parse`.
#[derive(Clone)]
enum Material {
    ShaCrypt(ShaCrypt),
    Bcrypt(Bcrypt),
    Argon2(Argon2Hash),
    Digest(SaltedDigest),
    /// The password is `PasswordHash::text`.
    Plain,
}

/// Dovecot `{SCHEME}` names that exist but that ownmail does not verify; named in the error
/// so the admin knows it is a choice, not a typo.
const UNSUPPORTED_DOVECOT: &[&str] = &[
    "MD5-CRYPT",
    "MD5",
    "SMD5",
    "PLAIN-MD5",
    "LDAP-MD5",
    "CRAM-MD5",
    "DIGEST-MD5",
    "PLAIN-MD4",
    "NTLM",
    "LANMAN",
    "RPA",
    "OTP",
    "SKEY",
    "DES-CRYPT",
    "PBKDF2",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "PLAIN-TRUNC",
    "PLAIN.B64",
    "PLAIN.HEX",
];

/// Well-known crypt(3) ids that ownmail does not verify.
const UNSUPPORTED_CRYPT: &[(&str, &str)] = &[
    ("1", "MD5-crypt"),
    ("3", "NT-hash"),
    ("7", "scrypt"),
    ("y", "yescrypt"),
    ("gy", "gost-yescrypt"),
    ("sha1", "SHA1-crypt"),
    ("md5", "SunMD5"),
    ("2x", "bcrypt $2x$ (the buggy pre-2011 variant)"),
];

impl PasswordHash {
    /// Recognise a stored hash.
    ///
    /// Accepts crypt(3) forms `$6$`, `$5$` (both with an optional `rounds=N$`),
    /// `$2b$`/`$2y$`/`$2a$`, PHC `$argon2id$`/`$argon2i$`/`$argon2d$`, and Dovecot `{SCHEME}`
    /// prefixes `{SHA512-CRYPT}`, `{SHA256-CRYPT}`, `{BLF-CRYPT}`, `{ARGON2ID}`, `{ARGON2I}`,
    /// `{CRYPT}` (each followed by the matching crypt string), `{PLAIN}`, `{CLEARTEXT}`,
    /// `{SSHA}`, `{SSHA256}`, `{SSHA512}`, `{SHA}`, `{SHA256}`, `{SHA512}`; scheme names are
    /// case-insensitive. A string that starts with neither `$` nor `{` is a plain-text
    /// password ([`Scheme::Plain`]); the caller should warn about it.
    ///
    /// The caller passes the field exactly as stored, without trimming inside it.
    ///
    /// # Errors
    /// An empty string; whitespace or a control character anywhere (the offset is that of the
    /// first one); an unknown or unsupported `$id$` or `{SCHEME}`; a hash that is malformed for
    /// its scheme (wrong length, characters outside its alphabet, a bad `rounds=` or cost,
    /// base64 that does not decode, argon2 parameters the PHC parser refuses).
    pub fn parse(s: &str) -> Result<PasswordHash, HashError> {
        if s.is_empty() {
            return Err(HashError::new(0, "empty password hash"));
        }
        // The article's /etc/smtpdauth had a hash broken by spaces; no scheme has any.
        if let Some((i, c)) = s
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || c.is_control())
        {
            let what = if c.is_whitespace() {
                "whitespace"
            } else {
                "a control character"
            };
            return Err(HashError::new(
                i,
                format!(
                    "{what} (U+{:04X}) inside the password hash; a hash never contains one",
                    u32::from(c)
                ),
            ));
        }
        if let Some(rest) = s.strip_prefix('{') {
            let Some(close) = rest.find('}') else {
                return Err(HashError::new(
                    0,
                    "'{' starts a {SCHEME} prefix but there is no closing '}'",
                ));
            };
            let name = &rest[..close];
            let body = &rest[close + 1..];
            parse_dovecot(name, body, close + 2)
        } else if s.starts_with('$') {
            parse_crypt(s, 0)
        } else {
            Ok(PasswordHash {
                scheme: Scheme::Plain,
                text: s.to_owned(),
                material: Material::Plain,
            })
        }
    }

    /// How the password is hashed.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether the stored value is the password itself (bare, `{PLAIN}` or `{CLEARTEXT}`).
    pub fn is_plain_text(&self) -> bool {
        self.scheme == Scheme::Plain
    }

    /// The hash text without any Dovecot `{SCHEME}` prefix; for plain text, the password.
    pub fn hash_text(&self) -> &str {
        &self.text
    }

    /// Whether `password` matches. Constant-time where the comparison is ours; never panics,
    /// whatever the password (any bytes, any length).
    ///
    /// A password longer than [`MAX_PASSWORD_LEN`] bytes never matches.
    pub fn verify(&self, password: &[u8]) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        match &self.material {
            Material::ShaCrypt(h) => h.verify(password),
            Material::Bcrypt(h) => h.verify(password),
            Material::Argon2(h) => h.verify(password),
            Material::Digest(h) => h.verify(password),
            Material::Plain => ct_eq_secret(password, self.text.as_bytes()),
        }
    }
}

/// Only the scheme: a hash (or a plain-text password) must never reach a log line.
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHash")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// A crypt(3) or PHC string `s` (starting with `$`) found at byte `at` of the input.
fn parse_crypt(s: &str, at: usize) -> Result<PasswordHash, HashError> {
    let rest = s.get(1..).unwrap_or("");
    let Some(id_end) = rest.find('$') else {
        return Err(HashError::new(
            at,
            "a crypt(3) hash starts with $ID$, but there is no second '$'",
        ));
    };
    let id = &rest[..id_end];
    let (scheme, material) = match id {
        "6" => (
            Scheme::Sha512Crypt,
            Material::ShaCrypt(ShaCrypt::parse(ShaVariant::Sha512, s, at)?),
        ),
        "5" => (
            Scheme::Sha256Crypt,
            Material::ShaCrypt(ShaCrypt::parse(ShaVariant::Sha256, s, at)?),
        ),
        "2a" | "2b" | "2y" => (Scheme::Bcrypt, Material::Bcrypt(Bcrypt::parse(s, at)?)),
        "argon2id" | "argon2i" | "argon2d" => {
            let h = Argon2Hash::parse(s, at)?;
            (h.scheme(), Material::Argon2(h))
        }
        _ => {
            // Name only ids we know: an unknown one may be part of a mistyped password.
            let message = match UNSUPPORTED_CRYPT.iter().find(|(known, _)| *known == id) {
                Some((known, name)) => format!("${known}$ ({name}) hashes are not supported"),
                None => {
                    "unknown crypt(3) hash type (the text between the first two '$')".to_owned()
                }
            };
            return Err(HashError::new(at + 1, message));
        }
    };
    Ok(PasswordHash {
        scheme,
        text: s.to_owned(),
        material,
    })
}

/// A Dovecot `{name}body`, where `body` starts at byte `at` of the input.
fn parse_dovecot(name: &str, body: &str, at: usize) -> Result<PasswordHash, HashError> {
    let upper = name.to_ascii_uppercase();
    let digest = |alg, salted| -> Result<PasswordHash, HashError> {
        let d = if salted {
            SaltedDigest::parse_salted(alg, body, at)?
        } else {
            SaltedDigest::parse_unsalted(alg, body, at)?
        };
        Ok(PasswordHash {
            scheme: d.scheme(),
            text: body.to_owned(),
            material: Material::Digest(d),
        })
    };
    let required = match upper.as_str() {
        "SHA512-CRYPT" => Some(Scheme::Sha512Crypt),
        "SHA256-CRYPT" => Some(Scheme::Sha256Crypt),
        "BLF-CRYPT" => Some(Scheme::Bcrypt),
        "ARGON2ID" => Some(Scheme::Argon2id),
        "ARGON2I" => Some(Scheme::Argon2i),
        "CRYPT" => None,
        "PLAIN" | "CLEARTEXT" => {
            if body.is_empty() {
                return Err(HashError::new(
                    at,
                    format!("{{{upper}}} with an empty password"),
                ));
            }
            return Ok(PasswordHash {
                scheme: Scheme::Plain,
                text: body.to_owned(),
                material: Material::Plain,
            });
        }
        "SSHA" => return digest(DigestAlg::Sha1, true),
        "SSHA256" => return digest(DigestAlg::Sha256, true),
        "SSHA512" => return digest(DigestAlg::Sha512, true),
        "SHA" | "SHA1" => return digest(DigestAlg::Sha1, false),
        "SHA256" => return digest(DigestAlg::Sha256, false),
        "SHA512" => return digest(DigestAlg::Sha512, false),
        other => {
            let message = if UNSUPPORTED_DOVECOT.contains(&other) {
                format!("{{{other}}} hashes are not supported")
            } else {
                "unknown password scheme in {SCHEME}".to_owned()
            };
            return Err(HashError::new(1, message));
        }
    };
    if !body.starts_with('$') {
        return Err(HashError::new(
            at,
            format!("{{{upper}}} must be followed by a crypt(3) hash starting with '$'"),
        ));
    }
    let hash = parse_crypt(body, at)?;
    match required {
        Some(want) if want != hash.scheme => Err(HashError::new(
            at,
            format!("{{{upper}}} is followed by a {} hash", hash.scheme),
        )),
        _ => Ok(hash),
    }
}

#[cfg(test)]
mod tests;
