//! Mail authentication policy (SPEC §5.7): DKIM signing of the mail our own users send out,
//! and SPF, DKIM, DMARC and ARC checks of mail from outside, stated in one
//! `Authentication-Results:` field (module `inbound`, its pure half in `authres`).
//!
//! Cryptography and canonicalisation come from `mail-auth` (with a corrected relaxed body
//! canonicalisation, see `vendor/README.md`); this crate decides *what* is signed and with
//! which key, loads keys, generates them (`ownmail dkim keygen`) and writes the DNS records
//! that publish them (`ownmail dns`).
//!
//! Invariants:
//! - Keys are read and checked once, when the configuration is loaded (start and SIGHUP); a
//!   key that cannot sign (unreadable, an EC key, RSA under 2048 bits) is an error naming the
//!   `dkim sign` line, never a message that silently leaves unsigned.
//! - [`DkimSigner::sign`] never panics on message bytes, and signs only a message whose
//!   `From:` addresses all have one domain, and only with that domain's own entry.

mod author;
pub mod authres;
mod inbound;
mod key;
mod keygen;
mod record;
mod signer;

pub use author::author_domain;
pub use inbound::{
    resolver, spf_result as spf_auth_result, InboundChecks, DNS_BUDGET, MAX_ARC_SETS, MAX_HEADER,
    MAX_SIGNATURES,
};
pub use key::{load_key, KeyError, KeyKind, LoadedKey};
pub use keygen::{generate, GeneratedKey};
pub use record::{dkim_txt, zone_txt};
pub use signer::{entry_domains, load_entry_key, ConfigError, DkimSigner, SIGNED_HEADERS};
