//! SMTP server sessions (SPEC §5.1): greeting to queued message over any async stream, with
//! STARTTLS, PIPELINING, CHUNKING and the limits of §5.1.
//!
//! The session knows two things outside itself: the rules (`ownmail-rules`, swapped whole on
//! reload, with the DKIM [`OutboundSigner`]) and a [`MessageSink`] that makes a message
//! durable. It says `250` to DATA only after the sink's `enqueue` has returned Ok — never
//! before the bytes are on disk. Mail that is signed is signed before it is queued, so the
//! queue only ever holds it whole and signed; mail from outside is checked (the
//! [`InboundChecker`]) before it is queued too, so a refusal comes before the `250`.

mod antispam;
mod auth;
mod received;
mod session;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ownmail_rules::Ruleset;
use ownmail_types::{InboundChecker, MessageSink, OutboundSigner};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

pub use antispam::{AntiSpam, SCREEN_TIMEOUT};
pub use session::{run_session, run_session_at, Peer};

/// How a listener offers TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    None,
    /// STARTTLS offered.
    Offer,
    /// STARTTLS required before MAIL.
    Require,
    /// Implicit TLS from the first byte (port 465).
    Implicit,
}

/// A listener's `auth` / `auth-optional`.
#[derive(Clone, Debug)]
pub struct AuthPolicy {
    /// `auth`: MAIL needs a login first; `auth-optional`: logins are offered.
    pub required: bool,
    /// The credentials table.
    pub table: String,
}

/// What one listener needs to run its sessions; fixed for the listener's life.
pub struct ListenerCtx {
    pub hostname: String,
    pub tls_mode: TlsMode,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub tag: Option<String>,
    pub auth: Option<AuthPolicy>,
    /// `senders <t> [masquerade]`.
    pub senders: Option<(String, bool)>,
    /// `filter NAME`: the OpenSMTPD filter (or chain) this listener's sessions go through.
    pub filter: Option<String>,
}

/// Limits of SMTP sessions (SPEC §5.1).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_message_size: u64,
    pub max_rcpt: usize,
    /// Command line length, CRLF excluded (RFC 5321 §4.5.3.1.4 says at least 512).
    pub max_line: usize,
    /// Errors in one session before `421` and close.
    pub max_errors: u32,
    /// Waiting for a command (RFC 5321 §4.5.3.2.7 suggests 5 minutes).
    pub command_timeout: Duration,
    /// Waiting for more DATA (RFC 5321 §4.5.3.2.6: 3 minutes a block; we allow more).
    pub data_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 35 * 1024 * 1024,
            max_rcpt: 1000,
            max_line: 2048,
            max_errors: 10,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            max_connections: 512,
            max_connections_per_client: 32,
        }
    }
}

/// The parts that a configuration reload replaces.
pub struct Runtime {
    pub rules: Arc<Ruleset>,
    pub limits: Limits,
    /// DKIM signing of mail our own users send out (`dkim sign`); None signs nothing.
    pub signer: Option<Arc<dyn OutboundSigner>>,
    /// SPF/DKIM/DMARC/ARC checks of mail from outside (on unless `auth-results off`).
    pub checker: Option<Arc<dyn InboundChecker>>,
    /// DNS lists, screens, greylisting, rate limits and the spam verdict; None when the
    /// configuration asks for none of them.
    pub antispam: Option<Arc<AntiSpam>>,
    /// The OpenSMTPD filter processes (`filter NAME proc-exec`), started with the server and
    /// kept across reloads.
    pub filters: Option<Arc<ownmail_filter::Filters>>,
    /// Reverse DNS for the filters' `connect` (rdns, fcrdns) when the anti-spam checks do not
    /// look it up already; None without filters.
    pub rdns: Option<Arc<ownmail_policy::Screener>>,
}

/// What every session of every listener shares.
pub struct Shared {
    runtime: RwLock<Arc<Runtime>>,
    pub sink: Arc<dyn MessageSink>,
    connections: Mutex<HashMap<IpAddr, usize>>,
    auth_failures: auth::FailureLog,
    total: AtomicU64,
    next_session: AtomicU64,
}

impl Shared {
    pub fn new(runtime: Runtime, sink: Arc<dyn MessageSink>) -> Arc<Self> {
        Arc::new(Shared {
            runtime: RwLock::new(Arc::new(runtime)),
            sink,
            connections: Mutex::new(HashMap::new()),
            auth_failures: auth::FailureLog::default(),
            total: AtomicU64::new(0),
            next_session: AtomicU64::new(1),
        })
    }

    /// The current rules and limits; a session takes them once per transaction.
    pub fn runtime(&self) -> Arc<Runtime> {
        match self.runtime.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces rules and limits (SIGHUP); sessions in progress finish their transaction
    /// with the old ones.
    pub fn replace_runtime(&self, runtime: Runtime) {
        let new = Arc::new(runtime);
        match self.runtime.write() {
            Ok(mut r) => *r = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    fn session_id(&self) -> String {
        format!("{:08x}", self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    /// Counts a new connection; None when a limit is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Option<ConnGuard> {
        let mut conns = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if self.total.load(Ordering::Relaxed) as usize >= limits.max_connections {
            return None;
        }
        let n = conns.entry(ip).or_insert(0);
        if *n >= limits.max_connections_per_client {
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(ConnGuard {
            shared: self.clone(),
            ip,
        })
    }
}

/// Releases a connection slot when the session ends, however it ends.
struct ConnGuard {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut conns = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = conns.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                conns.remove(&self.ip);
            }
        }
        self.shared.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections on `listener` until `shutdown` turns true; each session runs in its
/// own task and is told to stop (421) on shutdown too.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ListenerCtx>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (mut stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: pause a little instead of spinning.
                warn!("smtp event=accept-error error=\"{e}\"");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let limits = shared.runtime().limits.clone();
        let Some(guard) = shared.admit(peer.ip(), &limits) else {
            info!(
                "smtp event=refused client={} reason=too-many-connections",
                peer.ip()
            );
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"421 4.7.0 Too many connections, try again later\r\n")
                    .await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let ctx = ctx.clone();
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let local = stream.local_addr().ok();
            run_session_at(
                Box::new(stream),
                Peer::Tcp(peer),
                local,
                ctx,
                shared,
                shutdown,
            )
            .await;
        });
    }
}

/// Serves the local submission socket (`sendmail`): every local user may connect; the
/// session knows the caller's uid and counts as local mail (`from local`, `from socket`).
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    ctx: Arc<ListenerCtx>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                warn!("smtp event=accept-error socket=local error=\"{e}\"");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
        let ctx = ctx.clone();
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            run_session(Box::new(stream), Peer::Local { uid }, ctx, shared, shutdown).await;
        });
    }
}
