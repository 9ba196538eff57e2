//! IMAP4rev1 / IMAP4rev2 server sessions (RFC 3501, RFC 9051) over any async stream, on top
//! of one user's Maildir++ store ([`ownmail_mailstore`]).
//!
//! Job: turn the commands that [`ownmail_imap_proto`] parses into mail store operations and
//! the store's answers into responses. One module per command family; [`session`] owns the
//! loop, the connection and the per-session state.
//!
//! Invariants:
//! - A session reaches only the Maildir its [`Authenticator`] returned; every folder name
//!   goes through [`ownmail_mailstore::FolderName`] rules (no `.`, no `/` at the ends), so
//!   `../x` and friends are refused before any path is built.
//! - No input panics the session: every index into client data is checked, unknown or
//!   malformed commands are answered `BAD`, too many of them close the connection.
//! - Message sequence numbers change only where RFC 3501 §7.4.1 allows: EXPUNGE responses
//!   are not sent during FETCH, STORE, SEARCH or COPY (the non-UID forms).
//! - LOGIN and AUTHENTICATE are refused before TLS on a listener that requires it
//!   (`LOGINDISABLED`, SPEC §5.6); STARTTLS throws away anything pipelined after it.

// `deny`, not `forbid`: `watch` registers the inotify descriptor with tokio, the one audited
// `unsafe` (allowed there, with its proof).
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod append;
mod auth;
mod compress;
mod copy;
mod expunge;
mod fetch;
mod idle;
mod learn;
mod list;
mod listener;
mod mailbox;
mod message;
mod mime;
mod qresync;
mod search;
mod select;
mod session;
mod snapshot;
mod store;
mod watch;

pub use listener::{serve, ListenerOptions};
pub use session::{run_session, Io};

/// Where a logged-in user's mail lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxRoot {
    /// The user's Maildir (the INBOX); folders are `.Name` directories inside it.
    pub path: PathBuf,
    /// uid/gid that new directories and files should belong to (when running as root).
    pub owner: Option<(u32, u32)>,
}

/// Checks a user name and password. The binary implements it over its credentials and
/// userbase tables; tests use a fake.
///
/// Contract: the implementer compares in constant time where it can, never logs the
/// password, and returns the Maildir of exactly the user that was authenticated. It may
/// block (password hashing): the session calls it on a blocking thread.
pub trait Authenticator: Send + Sync {
    fn login(&self, user: &str, password: &[u8]) -> Option<MailboxRoot>;
}

/// What one listener's sessions share.
#[derive(Clone)]
pub struct ImapCtx {
    /// Our name, in the greeting and in BYE.
    pub hostname: String,
    /// The stream handed to [`run_session`] is already TLS (port 993, "imaps").
    pub tls_active_at_start: bool,
    /// STARTTLS is offered when this is set and TLS is not active yet.
    pub starttls: Option<Arc<rustls::ServerConfig>>,
    /// LOGIN/AUTHENTICATE only over TLS (`LOGINDISABLED` before it).
    pub require_tls_for_login: bool,
    /// APPENDLIMIT (RFC 7889) and the largest literal accepted.
    pub max_message: u64,
    /// Autologout before login (RFC 9051 §5.4 asks at least 1 minute).
    pub preauth_timeout: Duration,
    /// Autologout after login, including IDLE (RFC 9051 §5.4: at least 30 minutes).
    pub idle_timeout: Duration,
    /// How often IDLE re-reads the folder when it cannot watch it (no inotify, limits
    /// reached, or `idle_watch` off). SPEC §5.6 wants new mail reported within a second.
    pub idle_poll: Duration,
    /// IDLE watches the selected folder with inotify and reports a change as it happens.
    /// Turn off where the kernel never hears of changes (NFS shared with other hosts).
    pub idle_watch: bool,
    /// While watching, IDLE still re-reads the folder this often: a safety net for changes
    /// the watch cannot see.
    pub idle_recheck: Duration,
    /// BAD answers after which the session is closed.
    pub max_errors: u32,
}

impl ImapCtx {
    /// A context with the usual limits: 64 MiB messages, 2 minutes before login, 30 after,
    /// IDLE watching the folder (re-read every 5 s anyway, every 500 ms where it cannot
    /// watch), 20 errors.
    pub fn new(hostname: impl Into<String>) -> ImapCtx {
        ImapCtx {
            hostname: hostname.into(),
            tls_active_at_start: false,
            starttls: None,
            require_tls_for_login: false,
            max_message: 64 * 1024 * 1024,
            preauth_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(30 * 60),
            idle_poll: Duration::from_millis(500),
            idle_watch: true,
            idle_recheck: Duration::from_secs(5),
            max_errors: 20,
        }
    }
}
