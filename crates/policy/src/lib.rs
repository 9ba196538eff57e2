//! Mail authentication policy (SPEC §5.7): DKIM signing of the mail our own users send out,
//! and SPF, DKIM, DMARC and ARC checks of mail from outside, stated in one
//! `Authentication-Results:` field (module `inbound`, its pure half in `authres`).
//!
//! Cryptography and canonicalisation come from `mail-auth` (with a corrected relaxed body
//! canonicalisation, see `vendor/README.md`); this crate decides *what* is signed and with
//! which key, loads keys, generates them (`ownmail dkim keygen`) and writes the DNS records
//! that publish them (`ownmail dns`).
//!
//! Anti-spam at connection and envelope time (SPEC §4.2) lives here too: DNSBL, reverse-DNS
//! and HELO screening (`screen`), durable greylisting in the spool (`greylist`) and in-memory
//! rate limits (`ratelimit`); the SMTP session decides when to ask and what to answer.
//!
//! Invariants:
//! - Keys are read and checked once, when the configuration is loaded (start and SIGHUP); a
//!   key that cannot sign (unreadable, an EC key, RSA under 2048 bits) is an error naming the
//!   `dkim sign` line, never a message that silently leaves unsigned.
//! - [`DkimSigner::sign`] never panics on message bytes, and signs only a message whose
//!   `From:` addresses all have one domain, and only with that domain's own entry.

mod author;
pub mod authres;
mod greylist;
mod inbound;
mod key;
mod keygen;
mod ratelimit;
mod record;
mod screen;
mod signer;

pub use author::author_domain;
pub use greylist::{GreyDecision, Greylist, DEFAULT_EXPIRE, UNRETRIED_WINDOW};
pub use inbound::{
    resolver, spf_result as spf_auth_result, InboundChecks, DNS_BUDGET, MAX_ARC_SETS, MAX_HEADER,
    MAX_SIGNATURES,
};
pub use key::{load_key, KeyError, KeyKind, LoadedKey};
pub use keygen::{generate, GeneratedKey};
pub use ratelimit::{Exceeded, RateLimiter};
pub use record::{dkim_txt, zone_txt};
pub use screen::{
    dnsbl_name, helo_problem, DnsblHit, HeloProblem, Rdns, ScreenResult, Screener, MAX_PTR_NAMES,
};
pub use signer::{entry_domains, load_entry_key, ConfigError, DkimSigner, SIGNED_HEADERS};
