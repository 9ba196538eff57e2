//! The spam verdict (SPEC: `spam junk-score N reject-score M`): one score per message, the sum
//! of named symbols, written into `X-Spam-*` header fields. The caller (the SMTP session)
//! files a message whose score is ≥ N into `.Junk` and answers 5xx at the end of DATA when it
//! is ≥ M; this crate only computes and formats. It is pure and synchronous (no tokio): the
//! only I/O is the per-user classifier's store file.
//!
//! Where symbols come from:
//! - [`content_symbols`]: the message itself (GTUBE, header anomalies);
//! - [`auth_symbols`]: SPF/DKIM/DMARC/ARC results, from ownmail's summary
//!   `spf=pass dkim=pass dmarc=pass arc=none`;
//! - [`bayes_symbol`]: the per-user statistical classifier ([`TokenStore`], [`StoreCache`]),
//!   trained by [`learn`] when the user moves mail into or out of Junk over IMAP.
//!
//! # Symbols
//!
//! | Symbol               | Score  | When |
//! |----------------------|--------|------|
//! | `GTUBE`              | 1000.0 | the GTUBE test string ([`GTUBE`]) is in the message or a decoded text part |
//! | `MISSING_HEADERS`    | 3.0    | no header fields could be parsed at all |
//! | `MISSING_FROM`       | 2.0    | no `From:` address |
//! | `MISSING_DATE`       | 1.0    | no `Date:` field |
//! | `INVALID_DATE`       | 1.0    | a `Date:` field that does not parse as a date |
//! | `DATE_IN_FUTURE`     | 2.0    | `Date:` more than 24 hours ahead of now |
//! | `DATE_IN_PAST`       | 1.0    | `Date:` more than 96 hours before now |
//! | `MISSING_MID`        | 0.5    | no `Message-ID:` |
//! | `MISSING_SUBJECT`    | 0.5    | no `Subject:`, or only white space |
//! | `SUBJ_ALL_CAPS`      | 1.5    | at least 10 cased letters in the subject, none lower case |
//! | `FROM_NAME_HAS_ADDR` | 2.0    | the `From:` display name holds an address other than the sender's |
//! | `HTML_ONLY`          | 0.7    | an HTML part and no plain-text part |
//! | `EMPTY_BODY`         | 1.0    | no text in the body and no attachment |
//! | `MANY_RECIPIENTS`    | 1.0    | more than 15 addresses in `To:` and `Cc:` together |
//! | `SPF_PASS`           | -0.1   | `spf=pass` |
//! | `SPF_FAIL`           | 2.0    | `spf=fail` |
//! | `SPF_SOFTFAIL`       | 1.0    | `spf=softfail` |
//! | `SPF_NEUTRAL`        | 0.3    | `spf=neutral` |
//! | `SPF_NONE`           | 0.5    | `spf=none` |
//! | `SPF_PERMERROR`      | 0.5    | `spf=permerror` |
//! | `DKIM_VALID`         | -0.1   | `dkim=pass` |
//! | `DKIM_INVALID`       | 1.5    | `dkim=fail` |
//! | `DKIM_NONE`          | 0.2    | `dkim=none` |
//! | `DKIM_PERMERROR`     | 0.5    | `dkim=permerror` |
//! | `DMARC_PASS`         | -0.5   | `dmarc=pass` |
//! | `DMARC_FAIL`         | 3.5    | `dmarc=fail` |
//! | `DMARC_NONE`         | 0.2    | `dmarc=none` |
//! | `ARC_PASS`           | -0.1   | `arc=pass` |
//! | `ARC_FAIL`           | 0.5    | `arc=fail` |
//! | `BAYES_SPAM`         | 6.0    | classifier probability ≥ 0.99 |
//! | `BAYES_SPAM`         | 3.5    | classifier probability ≥ 0.90 |
//! | `BAYES_HAM`          | -1.5   | classifier probability ≤ 0.10 |
//! | `BAYES_HAM`          | -3.0   | classifier probability ≤ 0.01 |
//!
//! Temporary errors (`temperror`) and unknown results give no symbol: they say nothing about
//! the message. The classifier gives no symbol until the user's store holds at least
//! [`MIN_TRAINED`] spam and [`MIN_TRAINED`] ham messages.
//!
//! # The classifier
//!
//! Tokens (at most [`MAX_TOKENS_PER_MESSAGE`] distinct ones per message, each counted once):
//! lower-cased words of 3 to 24 characters from the decoded text of `text/plain` and
//! `text/html` parts (tags, scripts and styles stripped) and from the subject (prefixed
//! `subject:`), the `From:` domain (`from:`), URL host names and their last two labels
//! (`url:`), and `skip:<first char>:<length/10*10>` for longer words. Only the first
//! [`MAX_SCAN`] bytes of a message are read. Each token's spam probability is Robinson's
//! f(w) (s = 0.45, x = 0.5); the up to 150 tokens furthest from 0.5 (at least 0.1 away) are
//! combined with Fisher's chi-square method as SpamBayes does.
//!
//! # Store file format (`<Maildir>/ownmail-spam.db`, [`STORE_FILE`])
//!
//! UTF-8 text, one record per line, fields separated by one space:
//!
//! ```text
//! ownmail-spam 1 <nspam> <nham>          header: format version 1, messages learnt per class
//! L <S|H> <digest>                       a learnt message, oldest first (at most 20,000)
//! T <token> <spam> <ham>                 a token and how many spam / ham messages held it
//! ```
//!
//! `<digest>` is the first 32 hex digits of SHA-256 over `mid:` + the Message-ID, or over
//! `body:` + the body when there is no Message-ID. Tokens never contain white space. When the
//! store exceeds [`MAX_TOKENS`] tokens it is cut to 90 % of that, dropping the tokens seen in
//! the fewest messages; past 20,000 learnt-message lines the oldest are forgotten (their
//! counts stay, so learning such a message again counts it twice).
//!
//! Invariants:
//! - Nothing here panics on message bytes or on the store file: a damaged store loses only
//!   its unparseable lines (a missing or damaged header is rebuilt from the `L` lines), and
//!   the next [`learn`] rewrites it whole.
//! - The store file is only ever replaced whole, under an exclusive `flock` of
//!   `<store>.lock`: written to a temporary file in the same directory, fsynced, renamed over
//!   the old one, and the directory fsynced. Readers ([`TokenStore::load`], [`StoreCache`])
//!   take no lock and see either the old or the new file.
//! - Learning the same message twice as the same class changes nothing; learning it as the
//!   other class first takes back what the earlier learning added.
//! - Inside the Maildir nothing is opened through a symbolic link (the store may be written
//!   by root in a directory its user owns).

#![forbid(unsafe_code)]

mod auth;
mod cache;
mod classify;
mod content;
mod store;
mod tokens;
mod verdict;

pub use auth::auth_symbols;
pub use cache::StoreCache;
pub use classify::{bayes_symbol, MIN_TRAINED};
pub use content::content_symbols;
pub use store::{learn, learn_many, learn_owned, Class, TokenStore, MAX_LEARNED, MAX_TOKENS};
pub use tokens::{MAX_SCAN, MAX_TOKENS_PER_MESSAGE};
pub use verdict::{Symbol, Verdict, VERDICT_FIELDS};

/// The "Generic Test for Unsolicited Bulk Email" string: a message containing it scores
/// [`content_symbols`]' `GTUBE` symbol, 1000.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBESC-EQUIVALENT-ANTI-UBE-TEST-EMAIL*C.34X";

/// The classifier store's file name inside a user's Maildir root.
pub const STORE_FILE: &str = "ownmail-spam.db";
