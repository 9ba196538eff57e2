//! One SMTP session: a loop reading commands (pipelined: replies are written when the client
//! has nothing more buffered), a transaction at a time.
//!
//! Security notes at the lines they concern: only CRLF.CRLF ends DATA, bare CR/LF closes the
//! session (SMTP smuggling); after STARTTLS every byte received before the handshake is
//! dropped and the session starts over (RFC 3207 §4.2, CVE-2011-0411).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ownmail_rules::{RcptDecision, SessionInfo};
use ownmail_smtp_proto::{
    discard_line, parse_command, take_line, BdatReceiver, BdatState, Command, DataReceiver,
    DataState, Line, MailParams, RcptParams, Reply,
};
use ownmail_types::{
    Address, BodyType, Destination, Envelope, InboundMessage, InboundVerdict, QueueId, Recipient,
    ReversePath,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::antispam::{ClientState, Refusal};
use crate::received::{received, Trace};
use crate::{ListenerCtx, Runtime, Shared, TlsMode};
use ownmail_filter::{Decision, Endpoint, FilterSession, Outcome, SessionId, TxId};

/// Any byte stream a session can run over: TCP, TLS over TCP, a test pipe.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

const READ_CHUNK: usize = 64 * 1024;

/// Who is on the other end of a session.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A program on this host, through the local submission socket, running as `uid`.
    Local { uid: u32 },
}

impl Peer {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Peer::Tcp(a) => Some(a.ip()),
            Peer::Local { .. } => None,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{}", a.ip()),
            Peer::Local { uid } => write!(f, "local-uid-{uid}"),
        }
    }
}

/// Why the loop stops.
enum Stop {
    /// The client said QUIT, or we said a final 421/5xx.
    Done,
    /// The connection broke or timed out.
    Lost,
}

struct Transaction {
    id: QueueId,
    from: ReversePath,
    params: MailParams,
    rcpts: Vec<(Address, RcptParams, Vec<Destination>)>,
    /// The rules in force when MAIL was given: the whole transaction uses them.
    runtime: Arc<Runtime>,
    /// The transaction's id for filters.
    ftx: TxId,
}

struct Session {
    io: Option<Box<dyn Io>>,
    id: String,
    peer: Peer,
    ctx: Arc<ListenerCtx>,
    shared: Arc<Shared>,
    input: Vec<u8>,
    /// The login of an authenticated session.
    auth_user: Option<String>,
    output: Vec<u8>,
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    errors: u32,
    tx: Option<Transaction>,
    /// A message being received in BDAT chunks: the receiver (with its running size) and
    /// the bytes so far.
    bdat: Option<(BdatReceiver, Vec<u8>)>,
    /// What the anti-spam checks know about the client.
    client: ClientState,
    /// The listener's OpenSMTPD filters (`listen on … filter NAME`).
    filter: Option<FilterSession>,
    /// A filter said `junk`: the message gets `X-Spam: yes`.
    filter_junk: bool,
    /// Our address on this connection.
    local: Option<SocketAddr>,
    shutdown: watch::Receiver<bool>,
}

/// What a filter decision leaves the session to do.
enum Filtered {
    /// Go on, with this value instead of the client's (a `rewrite`) if any.
    Go(Option<String>),
    /// The filter's reply was given: the command is refused.
    Refused,
}

/// Runs one session to its end.
pub async fn run_session(
    io: Box<dyn Io>,
    peer: Peer,
    ctx: Arc<ListenerCtx>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    run_session_at(io, peer, None, ctx, shared, shutdown).await
}

/// [`run_session`], knowing our own address on the connection (`local`), which filters are told.
pub async fn run_session_at(
    io: Box<dyn Io>,
    peer: Peer,
    local: Option<SocketAddr>,
    ctx: Arc<ListenerCtx>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let id = shared.session_id();
    info!("smtp session={id} event=connect client={peer}");
    let mut s = Session {
        io: Some(io),
        id,
        peer,
        ctx,
        shared,
        input: Vec::with_capacity(4096),
        auth_user: None,
        output: Vec::with_capacity(4096),
        helo: None,
        esmtp: false,
        tls: false,
        errors: 0,
        tx: None,
        bdat: None,
        client: ClientState::default(),
        filter: None,
        filter_junk: false,
        local,
        shutdown,
    };
    let result = s.run().await;
    if let Some(mut f) = s.filter.take() {
        f.disconnect().await;
    }
    if let Some(mut io) = s.io.take() {
        let _ = io.shutdown().await;
    }
    let how = match result {
        Stop::Done => "closed",
        Stop::Lost => "lost",
    };
    info!("smtp session={} event=disconnect reason={how}", s.id);
}

impl Session {
    fn limits(&self) -> crate::Limits {
        self.shared.runtime().limits.clone()
    }

    fn reply(&mut self, code: u16, enhanced: &str, text: impl Into<String>) {
        let r = Reply::new(code, enhanced, text);
        debug!("smtp session={} event=reply code={}", self.id, r.code);
        self.output.extend_from_slice(&r.to_bytes());
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if self.output.is_empty() {
            return Ok(());
        }
        let Some(io) = self.io.as_mut() else {
            return Err(Stop::Lost);
        };
        let out = std::mem::take(&mut self.output);
        io.write_all(&out).await.map_err(|_| Stop::Lost)?;
        io.flush().await.map_err(|_| Stop::Lost)?;
        Ok(())
    }

    /// Reads more input, waiting at most `timeout`; on shutdown answers 421.
    async fn read_more(&mut self, timeout: std::time::Duration) -> Result<(), Stop> {
        self.flush().await?;
        let Some(io) = self.io.as_mut() else {
            return Err(Stop::Lost);
        };
        let mut buf = vec![0u8; READ_CHUNK];
        let n = tokio::select! {
            r = tokio::time::timeout(timeout, io.read(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(Stop::Lost),
                Ok(Ok(n)) => n,
                Err(_) => {
                    self.reply(421, "4.4.2", format!("{} Timeout, closing connection", self.ctx.hostname));
                    let _ = self.flush().await;
                    return Err(Stop::Done);
                }
            },
            _ = self.shutdown.changed() => {
                self.reply(421, "4.3.2", format!("{} Service shutting down, try again later", self.ctx.hostname));
                let _ = self.flush().await;
                return Err(Stop::Done);
            }
        };
        self.input.extend_from_slice(&buf[..n]);
        Ok(())
    }

    async fn run(&mut self) -> Stop {
        if let Err(stop) = self.open_checks().await {
            return stop;
        }
        if let Err(stop) = self.filter_connect().await {
            return stop;
        }
        if self.ctx.tls_mode == TlsMode::Implicit {
            if let Err(stop) = self.start_tls().await {
                return stop;
            }
        }
        let host = self.ctx.hostname.clone();
        self.output
            .extend_from_slice(format!("220 {host} ESMTP ownmail\r\n").as_bytes());
        if let Some(f) = self.filter.as_mut() {
            f.greeting(&host).await;
        }
        loop {
            if *self.shutdown.borrow() {
                self.reply(
                    421,
                    "4.3.2",
                    format!("{host} Service shutting down, try again later"),
                );
                let _ = self.flush().await;
                return Stop::Done;
            }
            let limits = self.limits();
            let line = match take_line(&self.input, limits.max_line) {
                Line::NeedMore => {
                    if let Err(stop) = self.read_more(limits.command_timeout).await {
                        return stop;
                    }
                    continue;
                }
                Line::TooLong(_) => {
                    // Drop the whole line, however long, before answering once: its tail
                    // must never be read as a command.
                    loop {
                        let (n, found_lf) = discard_line(&self.input);
                        self.input.drain(..n.min(self.input.len()));
                        if found_lf {
                            break;
                        }
                        if let Err(stop) = self.read_more(limits.command_timeout).await {
                            return stop;
                        }
                    }
                    self.reply(500, "5.5.2", "Line too long");
                    if self.count_error(&limits) {
                        return self.close_after_errors().await;
                    }
                    continue;
                }
                Line::Complete(line, n) => {
                    self.input.drain(..n.min(self.input.len()));
                    line
                }
            };
            let cmd = match parse_command(&line) {
                Ok(c) => c,
                Err(e) => {
                    self.reply(e.code, e.enhanced, e.message);
                    if self.count_error(&limits) {
                        return self.close_after_errors().await;
                    }
                    continue;
                }
            };
            match self.command(cmd, &limits).await {
                Ok(()) => {}
                Err(stop) => return stop,
            }
            if self.errors > limits.max_errors {
                return self.close_after_errors().await;
            }
        }
    }

    /// The anti-spam checks before the greeting: the connection rate of a client that is not
    /// local; for a screened client the DNS lookups start and `screen pregreet` waits.
    async fn open_checks(&mut self) -> Result<(), Stop> {
        let Some(anti) = self.shared.runtime().antispam.clone() else {
            return Ok(());
        };
        let info = self.session_info();
        let Some(client) = info.client.filter(|_| !info.local) else {
            return Ok(());
        };
        if let Err(refusal) = anti.admit(client) {
            info!(
                "smtp session={} event=refused client={client} check=limit-connections",
                self.id
            );
            return self.refuse_and_close(refusal).await;
        }
        if !self.screened_listener() {
            return Ok(());
        }
        self.client.pending = anti.start_screen(client);
        let Some(wait) = anti
            .pregreet()
            .filter(|_| self.ctx.tls_mode != TlsMode::Implicit)
        else {
            return Ok(());
        };
        let Some(io) = self.io.as_mut() else {
            return Err(Stop::Lost);
        };
        let mut buf = [0u8; 512];
        let spoke = tokio::select! {
            r = tokio::time::timeout(wait, io.read(&mut buf)) => match r {
                Err(_) => false,
                Ok(Ok(0)) | Ok(Err(_)) => return Err(Stop::Lost),
                Ok(Ok(_)) => true,
            },
            _ = self.shutdown.changed() => return Err(Stop::Done),
        };
        if spoke {
            info!(
                "smtp session={} event=refused client={client} check=pregreet",
                self.id
            );
            return self
                .refuse_and_close((
                    554,
                    "5.5.1",
                    "Protocol error: client talked before the greeting".to_string(),
                ))
                .await;
        }
        Ok(())
    }

    /// `listen on … filter NAME`: the session's filters, told of the connection (the
    /// `connect` phase, before the banner).
    async fn filter_connect(&mut self) -> Result<(), Stop> {
        let runtime = self.shared.runtime();
        let (Some(name), Some(filters)) = (self.ctx.filter.as_ref(), runtime.filters.as_ref())
        else {
            return Ok(());
        };
        let Some(session) = filters.session(name, SessionId::random()) else {
            return Ok(());
        };
        self.filter = Some(session);
        let (src, dest) = match self.peer {
            Peer::Tcp(a) => (
                Endpoint::Inet(a),
                Endpoint::Inet(
                    self.local
                        .unwrap_or_else(|| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0)),
                ),
            ),
            Peer::Local { .. } => (
                Endpoint::Unix("sendmail.sock".to_string()),
                Endpoint::Unix("sendmail.sock".to_string()),
            ),
        };
        if let (false, Some(screener), Some(ip)) = (
            self.client.looking_up(),
            runtime.rdns.clone(),
            self.peer.ip(),
        ) {
            self.client.pending =
                Some(tokio::spawn(async move { screener.screen(ip, true).await }));
        }
        let (rdns, fcrdns) = self.client.rdns().await;
        let Some(f) = self.filter.as_mut() else {
            return Ok(());
        };
        let d = f.connect(&rdns, fcrdns, &src, &dest).await;
        match self.filtered(d).await? {
            Filtered::Go(_) => Ok(()),
            // A refused connection is closed (as OpenSMTPD does).
            Filtered::Refused => {
                let _ = self.flush().await;
                Err(Stop::Done)
            }
        }
    }

    /// Acts on a filter's decision: a reject is replied (the command is refused), a
    /// disconnect closes the session, a failed filter closes it with 421 (nothing of this
    /// session was accepted that the filter has not seen), junk is remembered.
    async fn filtered(&mut self, d: Decision) -> Result<Filtered, Stop> {
        match d {
            Decision::Proceed => Ok(Filtered::Go(None)),
            Decision::Rewrite(v) => Ok(Filtered::Go(Some(v))),
            Decision::Junk => {
                self.filter_junk = true;
                Ok(Filtered::Go(None))
            }
            Decision::Reject(reply) => {
                info!(
                    "smtp session={} event=filter-reject reply=\"{reply}\"",
                    self.id
                );
                self.output.extend_from_slice(reply.as_bytes());
                self.output.extend_from_slice(b"\r\n");
                if reply.starts_with('5') {
                    self.errors += 1;
                }
                Ok(Filtered::Refused)
            }
            Decision::Disconnect(reply) => {
                info!(
                    "smtp session={} event=filter-disconnect reply=\"{reply}\"",
                    self.id
                );
                self.output.extend_from_slice(reply.as_bytes());
                self.output.extend_from_slice(b"\r\n");
                let _ = self.flush().await;
                Err(Stop::Done)
            }
            Decision::TempFail => {
                warn!("smtp session={} event=filter-failed", self.id);
                self.tx = None;
                self.reply(
                    421,
                    "4.3.0",
                    format!("{} Filter unavailable, try again later", self.ctx.hostname),
                );
                let _ = self.flush().await;
                Err(Stop::Done)
            }
        }
    }

    async fn refuse_and_close(&mut self, (code, enhanced, text): Refusal) -> Result<(), Stop> {
        let host = self.ctx.hostname.clone();
        self.reply(code, enhanced, format!("{host} {text}"));
        let _ = self.flush().await;
        Err(Stop::Done)
    }

    /// A listener that requires authentication (submission) is for our own users: its
    /// clients are not screened.
    fn screened_listener(&self) -> bool {
        !self.ctx.auth.as_ref().is_some_and(|a| a.required)
    }

    /// Whether this session's client gets the anti-spam checks: neither local nor
    /// authenticated, on a screened listener.
    fn screened(&self) -> bool {
        let info = self.session_info();
        !info.local && info.client.is_some() && self.auth_user.is_none() && self.screened_listener()
    }

    /// The anti-spam checks at MAIL: the client's (once a session) and the message rate.
    async fn mail_checks(&mut self, from: &ReversePath) -> Result<(), Refusal> {
        let Some(anti) = self.shared.runtime().antispam.clone() else {
            return Ok(());
        };
        let info = self.session_info();
        if self.screened() {
            if let Some(client) = info.client {
                if let Err(r) = anti
                    .check_client(&mut self.client, client, &info.helo)
                    .await
                {
                    info!(
                        "smtp session={} event=refused client={client} check={}",
                        self.id, self.client.reason
                    );
                    return Err(r);
                }
            }
        }
        let client = info.client.filter(|_| !info.local);
        let domain = match from {
            ReversePath::Address(a) if client.is_some() || self.auth_user.is_some() => {
                Some(a.domain().to_lowercase())
            }
            _ => None,
        };
        anti.limit(
            ownmail_config::model::Counted::Messages,
            client,
            self.auth_user.as_deref(),
            domain.as_deref(),
            1,
        )
        .inspect_err(|_| {
            info!(
                "smtp session={} event=refused client={} check=limit-messages",
                self.id, self.peer
            )
        })
    }

    /// The anti-spam checks of one accepted recipient: the recipient rate and greylisting.
    async fn rcpt_checks(
        &mut self,
        runtime: &Runtime,
        from: &ReversePath,
        to: &Address,
    ) -> Result<(), Refusal> {
        let Some(anti) = runtime.antispam.clone() else {
            return Ok(());
        };
        let info = self.session_info();
        let client = info.client.filter(|_| !info.local);
        anti.limit(
            ownmail_config::model::Counted::Recipients,
            client,
            self.auth_user.as_deref(),
            None,
            1,
        )
        .inspect_err(|_| {
            info!(
                "smtp session={} event=refused client={} check=limit-recipients",
                self.id, self.peer
            )
        })?;
        if !self.screened() || self.client.allowed.is_some() {
            return Ok(());
        }
        let Some(client) = client else {
            return Ok(());
        };
        let mail_from = match from {
            ReversePath::Address(a) => a.to_string(),
            ReversePath::Null => String::new(),
        };
        anti.greylist(
            &runtime.rules,
            client,
            &info.helo,
            &mail_from,
            &to.to_string(),
        )
        .await
        .inspect_err(|_| {
            info!(
                "smtp session={} event=greylisted client={client} from=<{mail_from}> rcpt=<{to}>",
                self.id
            )
        })
    }

    /// The address a filter's `rewrite` of MAIL FROM or RCPT TO gives (`<>` around it or
    /// not); None, after a 451, when it is not an address.
    fn rewritten(&mut self, value: &str) -> Option<Address> {
        let v = value.trim_start_matches('<').trim_end_matches('>');
        match Address::parse(v) {
            Ok(a) => Some(a),
            Err(_) => {
                warn!(
                    "smtp session={} event=filter-bad-rewrite value=\"{v}\"",
                    self.id
                );
                self.reply(451, "4.3.0", "Filter error, try again later");
                None
            }
        }
    }

    /// The `helo`/`ehlo` filter phase: the name to go on with, or None when refused.
    async fn filter_helo(&mut self, ehlo: bool, name: String) -> Result<Option<String>, Stop> {
        let Some(f) = self.filter.as_mut() else {
            return Ok(Some(name));
        };
        let d = f.helo(ehlo, &name).await;
        Ok(match self.filtered(d).await? {
            Filtered::Go(rewrite) => Some(rewrite.unwrap_or(name)),
            Filtered::Refused => None,
        })
    }

    /// Counts one error; true when the session has had too many.
    fn count_error(&mut self, limits: &crate::Limits) -> bool {
        self.errors += 1;
        self.errors > limits.max_errors
    }

    async fn close_after_errors(&mut self) -> Stop {
        warn!(
            "smtp session={} event=too-many-errors client={}",
            self.id, self.peer
        );
        self.reply(
            421,
            "4.7.0",
            format!("{} Too many errors, closing connection", self.ctx.hostname),
        );
        let _ = self.flush().await;
        Stop::Done
    }

    fn session_info(&self) -> SessionInfo {
        let (client, local, socket) = match self.peer {
            Peer::Tcp(a) => {
                let ip = a.ip();
                let local = match ip {
                    IpAddr::V4(v4) => v4.is_loopback(),
                    IpAddr::V6(v6) => {
                        v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                    }
                };
                (Some(ip), local, false)
            }
            Peer::Local { .. } => (None, true, true),
        };
        SessionInfo {
            client,
            local,
            socket,
            auth_user: self.auth_user.clone(),
            tag: self.ctx.tag.clone(),
            tls: self.tls,
            helo: self.helo.clone().unwrap_or_default(),
            rdns: None,
        }
    }

    fn needs_tls_first(&self) -> bool {
        self.ctx.tls_mode == TlsMode::Require && !self.tls
    }

    async fn command(&mut self, cmd: Command, limits: &crate::Limits) -> Result<(), Stop> {
        match cmd {
            Command::Ehlo(name) | Command::Lhlo(name) => {
                let Some(name) = self.filter_helo(true, name).await? else {
                    return Ok(());
                };
                self.tx = None;
                self.bdat = None;
                self.helo = Some(name);
                self.esmtp = true;
                let mut ext = vec![
                    "PIPELINING".to_string(),
                    "8BITMIME".to_string(),
                    "SMTPUTF8".to_string(),
                    format!("SIZE {}", limits.max_message_size),
                    "ENHANCEDSTATUSCODES".to_string(),
                    "DSN".to_string(),
                    "CHUNKING".to_string(),
                ];
                if !self.tls
                    && self.ctx.tls.is_some()
                    && matches!(self.ctx.tls_mode, TlsMode::Offer | TlsMode::Require)
                {
                    ext.push("STARTTLS".to_string());
                }
                // RFC 4954 §4 lets a server offer AUTH only where it accepts it: after TLS.
                if self.tls && self.ctx.auth.is_some() && self.auth_user.is_none() {
                    ext.push("AUTH PLAIN LOGIN".to_string());
                }
                let r = ownmail_smtp_proto::ehlo_reply(&self.ctx.hostname, "Hello", &ext);
                self.output.extend_from_slice(&r.to_bytes());
            }
            Command::Helo(name) => {
                let Some(name) = self.filter_helo(false, name).await? else {
                    return Ok(());
                };
                self.tx = None;
                self.helo = Some(name);
                self.esmtp = false;
                let host = self.ctx.hostname.clone();
                self.output
                    .extend_from_slice(format!("250 {host} Hello\r\n").as_bytes());
            }
            Command::StartTls => {
                if self.tls
                    || self.ctx.tls.is_none()
                    || !matches!(self.ctx.tls_mode, TlsMode::Offer | TlsMode::Require)
                {
                    self.reply(503, "5.5.1", "TLS not available");
                    self.errors += 1;
                    return Ok(());
                }
                self.reply(220, "2.0.0", "Ready to start TLS");
                self.flush().await?;
                // RFC 3207 §4.2: nothing the client sent before the handshake may be acted on.
                self.input.clear();
                self.start_tls().await?;
                if let Some(f) = self.filter.as_mut() {
                    f.tls("version=TLS").await;
                }
                self.helo = None;
                self.esmtp = false;
                self.tx = None;
            }
            Command::Mail { from, params } => return self.mail(from, params, limits).await,
            Command::Rcpt { to, params } => return self.rcpt(to, params).await,
            Command::Data if self.bdat.is_some() => {
                self.reply(503, "5.5.1", "DATA after BDAT is not allowed");
                self.errors += 1;
            }
            Command::Data => return self.data(limits).await,
            Command::Bdat { size, last } => return self.bdat(size, last, limits).await,
            Command::Rset => {
                if let Some(f) = self.filter.as_mut() {
                    let tx = self.tx.as_ref().map(|t| t.ftx);
                    f.reset(tx).await;
                }
                self.tx = None;
                self.bdat = None;
                self.reply(250, "2.0.0", "Ok");
            }
            Command::Noop => self.reply(250, "2.0.0", "Ok"),
            Command::Quit => {
                let host = self.ctx.hostname.clone();
                self.reply(221, "2.0.0", format!("{host} Bye"));
                let _ = self.flush().await;
                return Err(Stop::Done);
            }
            Command::Vrfy(_) => self.reply(
                252,
                "2.5.2",
                "Cannot VRFY user, but will accept message and attempt delivery",
            ),
            Command::Expn(_) => self.reply(502, "5.5.1", "EXPN not available"),
            Command::Help => self.reply(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321"),
            Command::Auth { mechanism, initial } => {
                return self.auth(&mechanism, initial, limits).await
            }
        }
        Ok(())
    }

    async fn mail(
        &mut self,
        from: ReversePath,
        params: MailParams,
        limits: &crate::Limits,
    ) -> Result<(), Stop> {
        if self.helo.is_none() {
            self.reply(503, "5.5.1", "Send HELO/EHLO first");
            self.errors += 1;
            return Ok(());
        }
        if self.needs_tls_first() {
            self.reply(530, "5.7.0", "Must issue a STARTTLS command first");
            self.errors += 1;
            return Ok(());
        }
        if self.ctx.auth.as_ref().is_some_and(|a| a.required) && self.auth_user.is_none() {
            self.reply(530, "5.7.0", "Authentication required");
            self.errors += 1;
            return Ok(());
        }
        if let (Some(login), ReversePath::Address(a)) = (&self.auth_user, &from) {
            let senders = self.ctx.senders.as_ref().map(|(t, _)| t.as_str());
            if !self.shared.runtime().rules.sender_owned(login, a, senders) {
                info!("smtp session={} event=mail from=<{a}> user={login} result=refused reason=not-owned", self.id);
                self.reply(
                    550,
                    "5.7.1",
                    format!("<{a}>: Sender address not owned by user {login}"),
                );
                self.errors += 1;
                return Ok(());
            }
        }
        if self.tx.is_some() {
            self.reply(503, "5.5.1", "Sender already specified");
            self.errors += 1;
            return Ok(());
        }
        if !self.esmtp && (params.size.is_some() || params.body.is_some() || params.smtputf8) {
            self.reply(555, "5.5.4", "MAIL parameters need EHLO");
            self.errors += 1;
            return Ok(());
        }
        if !params.smtputf8 && !from.to_string().is_ascii() {
            self.reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8");
            self.errors += 1;
            return Ok(());
        }
        if params.size.is_some_and(|n| n > limits.max_message_size) {
            self.reply(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            );
            return Ok(());
        }
        if let Err((code, enhanced, text)) = self.mail_checks(&from).await {
            self.reply(code, enhanced, text);
            return Ok(());
        }
        let mut from = from;
        let ftx = TxId::random();
        if let Some(f) = self.filter.as_mut() {
            let d = f.mail_from(&from.to_string()).await;
            match self.filtered(d).await? {
                Filtered::Go(None) => {}
                Filtered::Go(Some(v)) if v.trim_matches(['<', '>']).is_empty() => {
                    from = ReversePath::Null
                }
                Filtered::Go(Some(v)) => match self.rewritten(&v) {
                    Some(a) => from = ReversePath::Address(a),
                    None => return Ok(()),
                },
                Filtered::Refused => return Ok(()),
            }
            if let Some(f) = self.filter.as_mut() {
                f.mail_reply(ftx, &from.to_string(), Outcome::Ok).await;
            }
        }
        let id = QueueId::new();
        info!("smtp session={} id={id} event=mail from=<{from}>", self.id);
        self.tx = Some(Transaction {
            id,
            from,
            params,
            rcpts: Vec::new(),
            runtime: self.shared.runtime(),
            ftx,
        });
        self.reply(250, "2.1.0", "Ok");
        Ok(())
    }

    async fn rcpt(&mut self, to: Address, params: RcptParams) -> Result<(), Stop> {
        let info = self.session_info();
        let Some(tx) = self.tx.as_ref() else {
            self.reply(503, "5.5.1", "Need MAIL before RCPT");
            self.errors += 1;
            return Ok(());
        };
        if !tx.params.smtputf8 && !to.to_string().is_ascii() {
            self.reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8");
            self.errors += 1;
            return Ok(());
        }
        if tx.rcpts.len() >= tx.runtime.limits.max_rcpt {
            self.reply(452, "4.5.3", "Too many recipients");
            return Ok(());
        }
        let ftx = tx.ftx;
        let mut to = to;
        if let Some(f) = self.filter.as_mut() {
            let d = f.rcpt_to(&to.to_string()).await;
            match self.filtered(d).await? {
                Filtered::Go(None) => {}
                Filtered::Go(Some(v)) => match self.rewritten(&v) {
                    Some(a) => to = a,
                    None => return Ok(()),
                },
                Filtered::Refused => return Ok(()),
            }
        }
        let Some(tx) = self.tx.as_ref() else {
            return Ok(());
        };
        match tx.runtime.rules.route(&info, &tx.from, &to) {
            RcptDecision::Accept {
                rule,
                action,
                destinations,
            } => {
                let (runtime, from, id) = (tx.runtime.clone(), tx.from.clone(), tx.id.clone());
                if let Err((code, enhanced, text)) = self.rcpt_checks(&runtime, &from, &to).await {
                    self.reply(code, enhanced, text);
                    return Ok(());
                }
                if let Some(f) = self.filter.as_mut() {
                    f.rcpt_reply(ftx, &to.to_string(), Outcome::Ok).await;
                }
                info!(
                    "smtp session={} id={id} event=rcpt rcpt=<{to}> rule={} action={action} result=accepted",
                    self.id,
                    rule + 1
                );
                if let Some(tx) = self.tx.as_mut() {
                    tx.rcpts.push((to, params, destinations));
                }
                self.reply(250, "2.1.5", "Ok");
            }
            RcptDecision::Refuse(r) => {
                info!(
                    "smtp session={} id={} event=rcpt rcpt=<{to}> result=refused code={}",
                    self.id, tx.id, r.code
                );
                self.reply(r.code, r.enhanced, r.text);
                if r.code >= 500 {
                    self.errors += 1;
                }
            }
        }
        Ok(())
    }

    /// Checks that DATA/BDAT may start: a transaction with at least one recipient.
    fn ready_for_data(&mut self) -> bool {
        match &self.tx {
            None => {
                self.reply(503, "5.5.1", "Need MAIL command");
                self.errors += 1;
                false
            }
            Some(tx) if tx.rcpts.is_empty() => {
                self.reply(554, "5.5.1", "No valid recipients");
                self.errors += 1;
                false
            }
            Some(_) => true,
        }
    }

    async fn data(&mut self, limits: &crate::Limits) -> Result<(), Stop> {
        if !self.ready_for_data() {
            return Ok(());
        }
        if let Some(f) = self.filter.as_mut() {
            let d = f.data().await;
            if let Filtered::Refused = self.filtered(d).await? {
                return Ok(());
            }
            if let (Some(f), Some(tx)) = (self.filter.as_mut(), self.tx.as_ref()) {
                f.data_reply(tx.ftx, Outcome::Ok).await;
            }
        }
        self.reply(354, "", "End data with <CR><LF>.<CR><LF>");
        let mut rx = DataReceiver::new(limits.max_message_size);
        let mut body = Vec::new();
        loop {
            let (used, state) = rx.feed(&self.input, &mut body);
            self.input.drain(..used.min(self.input.len()));
            match state {
                DataState::NeedMore => self.read_more(limits.data_timeout).await?,
                DataState::Done => break,
                DataState::TooBig => {
                    self.tx = None;
                    self.reply(
                        552,
                        "5.3.4",
                        "Message size exceeds fixed maximum message size",
                    );
                    return Ok(());
                }
                DataState::BareLineEnding => {
                    // SMTP smuggling: the client and we might disagree on where the message
                    // ends, so nothing after this point can be trusted. Refuse and close.
                    warn!(
                        "smtp session={} event=bare-line-ending client={}",
                        self.id, self.peer
                    );
                    self.tx = None;
                    self.reply(
                        554,
                        "5.5.2",
                        "Bare CR or LF in message data is not allowed, closing connection",
                    );
                    let _ = self.flush().await;
                    return Err(Stop::Done);
                }
            }
        }
        self.finish_message(body).await
    }

    async fn bdat(&mut self, size: u64, last: bool, limits: &crate::Limits) -> Result<(), Stop> {
        // RFC 3030 §2: the chunk's bytes follow whatever we answer; consume them either way.
        let ok = self.ready_for_data();
        let (mut rx, mut body) = match self.bdat.take() {
            Some(b) if ok => b,
            _ => (BdatReceiver::new(limits.max_message_size), Vec::new()),
        };
        rx.start_chunk(size, last);
        loop {
            let (used, state) = rx.feed(&self.input, &mut body);
            self.input.drain(..used.min(self.input.len()));
            if !ok {
                body.clear();
            }
            match state {
                BdatState::NeedMore => self.read_more(limits.data_timeout).await?,
                BdatState::ChunkDone { last } => {
                    if !ok {
                        return Ok(());
                    }
                    if last {
                        self.finish_message(body).await?;
                    } else {
                        self.reply(250, "2.0.0", format!("{size} octets received"));
                        self.bdat = Some((rx, body));
                    }
                    return Ok(());
                }
                BdatState::TooBig => {
                    if ok {
                        self.tx = None;
                        self.reply(
                            552,
                            "5.3.4",
                            "Message size exceeds fixed maximum message size",
                        );
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Builds the envelope, adds `Received:`, and hands the message to the queue; replies 250
    /// only when the queue says it is on disk.
    async fn finish_message(&mut self, body: Vec<u8>) -> Result<(), Stop> {
        self.bdat = None;
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        let Some(body) = self.filter_message(&tx, body).await? else {
            return Ok(());
        };
        let queued = self.queue_message(tx, body).await;
        if let Some((ftx, size)) = queued {
            if let Some(f) = self.filter.as_mut() {
                match size {
                    Some(size) => f.committed(ftx, size).await,
                    None => f.rollback(ftx).await,
                }
            }
        }
        Ok(())
    }

    /// The data-line and commit filter phases: the message as the filters return it, or
    /// None when they refused it (replied). A filter's `junk` adds `X-Spam: yes` on top.
    async fn filter_message(
        &mut self,
        tx: &Transaction,
        body: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, Stop> {
        let Some(f) = self.filter.as_mut() else {
            return Ok(Some(body));
        };
        let mut body = body;
        let mut junk_marked = false;
        if self.filter_junk || f.is_junk() {
            body.splice(0..0, b"X-Spam: yes\r\n".iter().copied());
            junk_marked = true;
        }
        let body = match f.message(tx.ftx, &body).await {
            Ok(new) => new,
            Err(d) => {
                // Only a failed filter ends the data-line phase early (421, closed).
                self.filtered(d).await?;
                return Ok(None);
            }
        };
        let Some(f) = self.filter.as_mut() else {
            return Ok(Some(body));
        };
        let d = f.commit(tx.ftx).await;
        match self.filtered(d).await? {
            Filtered::Refused => {
                if let Some(f) = self.filter.as_mut() {
                    f.rollback(tx.ftx).await;
                }
                Ok(None)
            }
            Filtered::Go(_) => {
                let mut body = body;
                if self.filter_junk && !junk_marked {
                    body.splice(0..0, b"X-Spam: yes\r\n".iter().copied());
                }
                Ok(Some(body))
            }
        }
    }

    /// Our own checks, then the queue: the filter transaction and the queued size (None when
    /// refused or not queued), for the filters' report.
    async fn queue_message(
        &mut self,
        tx: Transaction,
        body: Vec<u8>,
    ) -> Option<(TxId, Option<usize>)> {
        let ftx = tx.ftx;
        let refused = Some((ftx, None));
        if let Some(bad) = self.forged_from(&body) {
            info!(
                "smtp session={} id={} event=refused reason=from-not-owned from=<{bad}>",
                self.id, tx.id
            );
            self.reply(
                550,
                "5.7.1",
                format!(
                    "From: <{bad}> is not an address of user {}",
                    self.auth_user.as_deref().unwrap_or("")
                ),
            );
            return refused;
        }
        let signature = self.sign_outbound(&tx, &body);
        let checked = self.check_inbound(&tx, &body).await;
        if let Some(InboundVerdict::Reject { reply, summary }) = &checked {
            info!(
                "smtp session={} id={} event=refused reason=auth-results {summary} from=<{}>",
                self.id, tx.id, tx.from
            );
            self.reply(550, "5.7.1", reply.clone());
            return refused;
        }
        let spam_fields = match self.spam_verdict(&tx, &body, checked.as_ref()) {
            Some((fields, true, score)) => {
                info!(
                    "smtp session={} id={} event=refused reason=spam score={score} from=<{}>",
                    self.id, tx.id, tx.from
                );
                self.reply(
                    550,
                    "5.7.1",
                    format!("Message rejected as spam (score {score})"),
                );
                drop(fields);
                return refused;
            }
            Some((fields, false, score)) => {
                info!(
                    "smtp session={} id={} event=spam-verdict score={score}",
                    self.id, tx.id
                );
                fields
            }
            None => String::new(),
        };
        let now = SystemTime::now();
        let mut with = String::from(if tx.params.smtputf8 {
            "UTF8SMTP"
        } else if self.esmtp {
            "ESMTP"
        } else {
            "SMTP"
        });
        if self.tls {
            with.push('S');
        }
        let single_rcpt = match tx.rcpts.as_slice() {
            [(a, _, _)] => Some(a.to_string()),
            _ => None,
        };
        let helo = self.helo.clone().unwrap_or_default();
        let header = received(&Trace {
            helo: &helo,
            client: self.peer.ip(),
            local_uid: match self.peer {
                Peer::Local { uid } => Some(uid),
                Peer::Tcp(_) => None,
            },
            hostname: &self.ctx.hostname,
            with,
            id: tx.id.as_str(),
            single_rcpt,
            now,
        });
        let signature = signature.unwrap_or_default();
        // Verdict fields that came with the message are not ours (a filter of this listener
        // may have written them, though): a sender must not say `X-Spam-Status: No` for us.
        let checked = if spam_fields.is_empty() || self.filter.is_some() {
            checked
        } else {
            without_foreign_verdict(checked, &body)
        };
        let header = spam_fields + &header;
        let message = match &checked {
            // Our Authentication-Results: on top, forged ones gone (RFC 8601 §5).
            Some(verdict) => {
                let mut trace = signature.into_bytes();
                trace.extend_from_slice(header.as_bytes());
                verdict.rewrite(&trace, &body)
            }
            None => {
                let mut message = Vec::with_capacity(signature.len() + header.len() + body.len());
                message.extend_from_slice(signature.as_bytes());
                message.extend_from_slice(header.as_bytes());
                message.extend_from_slice(&body);
                message
            }
        };
        let size = message.len();
        let nrcpt = tx.rcpts.len();
        let mut recipients = Vec::new();
        for (rcpt, params, dests) in tx.rcpts {
            for dest in dests {
                recipients.push(Recipient {
                    rcpt: rcpt.clone(),
                    orcpt: params.orcpt.clone(),
                    notify: params.notify.unwrap_or_default(),
                    dest,
                });
            }
        }
        let env = Envelope {
            id: tx.id.clone(),
            mail_from: tx.from.clone(),
            helo,
            client: self.peer.ip(),
            auth_user: self.auth_user.clone(),
            tag: self.ctx.tag.clone(),
            received_at: now
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            body: tx.params.body.unwrap_or(BodyType::SevenBit),
            smtputf8: tx.params.smtputf8,
            ret: tx.params.ret,
            envid: tx.params.envid.clone(),
            recipients,
        };
        match self.shared.sink.enqueue(env, message).await {
            Ok(()) => {
                info!(
                    "smtp session={} id={} event=accepted from=<{}> size={size} rcpts={nrcpt}",
                    self.id, tx.id, tx.from
                );
                self.reply(250, "2.0.0", format!("Ok: queued as {}", tx.id));
                Some((ftx, Some(size)))
            }
            Err(e) => {
                warn!(
                    "smtp session={} id={} event=queue-error error=\"{e}\"",
                    self.id, tx.id
                );
                self.reply(451, "4.3.0", "Temporary queue failure, try again later");
                refused
            }
        }
    }

    /// SPEC §5.7: the DKIM-Signature field for mail of an authenticated or local sender
    /// that leaves for another host (at least one recipient relayed), when the signer has a
    /// key for its `From:` domain. Signing happens before the message is queued, so what is
    /// on disk is already signed: a crash cannot leave mail half-signed or sent unsigned.
    /// A signing failure is logged and the mail goes unsigned (the key was checked at load,
    /// so this is not expected).
    fn sign_outbound(&self, tx: &Transaction, body: &[u8]) -> Option<String> {
        let signer = tx.runtime.signer.as_ref()?;
        let relayed = tx
            .rcpts
            .iter()
            .any(|(_, _, dests)| dests.iter().any(|d| matches!(d, Destination::Relay { .. })));
        if !relayed || !(self.auth_user.is_some() || self.session_info().local) {
            return None;
        }
        // Hashing a large body and an RSA signature take milliseconds: keep other sessions
        // of this worker thread moving (block_in_place needs the multi-thread runtime).
        let sign = || signer.sign(body);
        let result = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(sign),
            _ => sign(),
        };
        match result {
            Ok(Some(sig)) => {
                info!(
                    "smtp session={} id={} event=dkim-signed domain={} selector={}",
                    self.id, tx.id, sig.domain, sig.selector
                );
                Some(sig.field)
            }
            Ok(None) => None,
            Err(e) => {
                warn!(
                    "smtp session={} id={} event=dkim-error error=\"{e}\"",
                    self.id, tx.id
                );
                None
            }
        }
    }

    /// SPEC §5.7: mail from outside (neither authenticated nor local) is checked for SPF,
    /// DKIM, DMARC and ARC before it is queued and before we answer, so that `dmarc reject`
    /// can refuse it at DATA. The checker bounds its own time and never fails. (`&mut self`:
    /// a session is Send, not Sync, and this holds it across an await.)
    async fn check_inbound(&mut self, tx: &Transaction, body: &[u8]) -> Option<InboundVerdict> {
        let checker = tx.runtime.checker.as_ref()?;
        let info = self.session_info();
        if info.local || info.socket || self.auth_user.is_some() {
            return None;
        }
        let client = info.client?;
        let mail_from = tx.from.to_string();
        let verdict = checker
            .check(InboundMessage {
                client,
                helo: &info.helo,
                mail_from: &mail_from,
                message: body,
            })
            .await;
        if let InboundVerdict::Accept { summary, .. } = &verdict {
            info!(
                "smtp session={} id={} event=auth-results {summary}",
                self.id, tx.id
            );
        }
        Some(verdict)
    }

    /// The spam verdict of a message from a screened client: its header fields, whether it
    /// is refused, and its score. None when no verdict applies.
    fn spam_verdict(
        &self,
        tx: &Transaction,
        body: &[u8],
        checked: Option<&InboundVerdict>,
    ) -> Option<(String, bool, String)> {
        let anti = tx.runtime.antispam.as_ref()?;
        if !self.screened() {
            return None;
        }
        let summary = match checked {
            Some(InboundVerdict::Accept { summary, .. }) => Some(summary.as_str()),
            _ => None,
        };
        let inbound_junk = summary.is_some_and(|s| s.contains("junk="));
        let maildirs: Vec<std::path::PathBuf> = tx
            .rcpts
            .iter()
            .flat_map(|(_, _, dests)| dests.iter())
            .filter_map(|d| match d {
                Destination::Maildir { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        let verdict = anti.verdict(&self.client, body, summary, &maildirs)?;
        let (fields, reject) = anti.judge(&verdict, &self.client, inbound_junk);
        let score = format!("{:.1}", verdict.score());
        Some((fields, reject && anti.verdict_on(), score))
    }

    /// For an authenticated session without `masquerade`: the first `From:` address the
    /// login does not own, if any.
    fn forged_from(&self, body: &[u8]) -> Option<String> {
        let login = self.auth_user.as_ref()?;
        let senders = self.ctx.senders.as_ref();
        if senders.is_some_and(|(_, masquerade)| *masquerade) {
            return None;
        }
        let rules = self.shared.runtime().rules.clone();
        let senders = senders.map(|(t, _)| t.as_str());
        let addrs = header_addresses(body, "from");
        if addrs.is_empty() {
            return None;
        }
        addrs.into_iter().find(|a| match Address::parse(a) {
            Ok(addr) => !rules.sender_owned(login, &addr, senders),
            Err(_) => true,
        })
    }

    /// Reads one line of a SASL exchange; None (after replying) when it is too long.
    async fn sasl_line(&mut self, limits: &crate::Limits) -> Result<Option<Vec<u8>>, Stop> {
        loop {
            match take_line(&self.input, limits.max_line) {
                Line::NeedMore => self.read_more(limits.command_timeout).await?,
                Line::TooLong(_) => {
                    loop {
                        let (n, found_lf) = discard_line(&self.input);
                        self.input.drain(..n.min(self.input.len()));
                        if found_lf {
                            break;
                        }
                        self.read_more(limits.command_timeout).await?;
                    }
                    self.reply(500, "5.5.2", "Line too long");
                    self.errors += 1;
                    return Ok(None);
                }
                Line::Complete(line, n) => {
                    self.input.drain(..n.min(self.input.len()));
                    return Ok(Some(line));
                }
            }
        }
    }

    /// Asks for one SASL response with `334 CHALLENGE`; None when cancelled (`*`), too long
    /// or not base64 (the reply is sent).
    async fn sasl_response(
        &mut self,
        challenge: &str,
        limits: &crate::Limits,
    ) -> Result<Option<Vec<u8>>, Stop> {
        self.output
            .extend_from_slice(format!("334 {challenge}\r\n").as_bytes());
        let Some(line) = self.sasl_line(limits).await? else {
            return Ok(None);
        };
        Ok(self.sasl_decode(&line))
    }

    fn sasl_decode(&mut self, b64: &[u8]) -> Option<Vec<u8>> {
        if b64 == b"*" {
            self.reply(501, "5.7.0", "Authentication cancelled");
            return None;
        }
        match crate::auth::decode(b64) {
            Some(d) => Some(d),
            None => {
                self.reply(501, "5.5.2", "Invalid base64 data");
                self.errors += 1;
                None
            }
        }
    }

    /// AUTH PLAIN / LOGIN (RFC 4954), over TLS only, on listeners with `auth`.
    async fn auth(
        &mut self,
        mechanism: &str,
        initial: Option<String>,
        limits: &crate::Limits,
    ) -> Result<(), Stop> {
        let Some(policy) = self.ctx.auth.clone() else {
            self.reply(503, "5.5.1", "AUTH not available on this listener");
            self.errors += 1;
            return Ok(());
        };
        if !self.tls {
            self.reply(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            );
            self.errors += 1;
            return Ok(());
        }
        if self.auth_user.is_some() || self.tx.is_some() || self.helo.is_none() {
            self.reply(503, "5.5.1", "AUTH not allowed now");
            self.errors += 1;
            return Ok(());
        }
        let ip = self.peer.ip();
        if ip.is_some_and(|ip| self.shared.auth_failures.gate(ip) == crate::auth::Gate::Blocked) {
            self.reply(
                454,
                "4.7.0",
                "Too many authentication failures, try again later",
            );
            return Ok(());
        }
        let credentials = match mechanism {
            "PLAIN" => {
                let decoded = match initial {
                    Some(i) => self.sasl_decode(i.as_bytes()),
                    None => self.sasl_response("", limits).await?,
                };
                let Some(decoded) = decoded else {
                    return Ok(());
                };
                crate::auth::parse_plain(&decoded)
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => self.sasl_decode(i.as_bytes()),
                    None => {
                        self.sasl_response(&crate::auth::encode("Username:"), limits)
                            .await?
                    }
                };
                let Some(user) = user else { return Ok(()) };
                let Some(pass) = self
                    .sasl_response(&crate::auth::encode("Password:"), limits)
                    .await?
                else {
                    return Ok(());
                };
                String::from_utf8(user)
                    .ok()
                    .filter(|u| !u.is_empty())
                    .map(|u| (u, pass))
            }
            _ => {
                self.reply(504, "5.5.4", "Unrecognized authentication type");
                self.errors += 1;
                return Ok(());
            }
        };
        let ok = match &credentials {
            Some((user, pass)) => {
                let rules = self.shared.runtime().rules.clone();
                let (table, user, pass) = (policy.table.clone(), user.clone(), pass.clone());
                tokio::task::spawn_blocking(move || rules.check_password(&table, &user, &pass))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        };
        let login = credentials.map(|(u, _)| u).unwrap_or_default();
        if ok {
            if let Some(ip) = ip {
                self.shared.auth_failures.succeeded(ip);
            }
            info!(
                "smtp session={} event=auth user={login} mechanism={mechanism} result=ok",
                self.id
            );
            if let Some(f) = self.filter.as_mut() {
                f.auth_result(&login, ownmail_filter::AuthResult::Pass)
                    .await;
            }
            self.auth_user = Some(login);
            self.reply(235, "2.7.0", "Authentication successful");
        } else {
            let delay = ip
                .map(|ip| self.shared.auth_failures.failed(ip))
                .unwrap_or_default();
            warn!("smtp session={} event=auth user={login:?} mechanism={mechanism} result=failed client={}", self.id, self.peer);
            self.flush().await?;
            tokio::time::sleep(delay).await;
            self.reply(535, "5.7.8", "Authentication credentials invalid");
            self.errors += 1;
        }
        Ok(())
    }

    async fn start_tls(&mut self) -> Result<(), Stop> {
        let Some(cfg) = self.ctx.tls.clone() else {
            return Err(Stop::Done);
        };
        let Some(io) = self.io.take() else {
            return Err(Stop::Lost);
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        let limits = self.limits();
        match tokio::time::timeout(limits.command_timeout, acceptor.accept(io)).await {
            Ok(Ok(tls)) => {
                self.io = Some(Box::new(tls));
                self.tls = true;
                info!("smtp session={} event=starttls", self.id);
                Ok(())
            }
            Ok(Err(e)) => {
                info!("smtp session={} event=tls-failed error=\"{e}\"", self.id);
                Err(Stop::Lost)
            }
            Err(_) => Err(Stop::Lost),
        }
    }
}

/// `checked` with the verdict fields of `body` (see [`ownmail_spam::VERDICT_FIELDS`]) added
/// to what it removes.
fn without_foreign_verdict(checked: Option<InboundVerdict>, body: &[u8]) -> Option<InboundVerdict> {
    let foreign = ownmail_policy::authres::named_fields(body, &ownmail_spam::VERDICT_FIELDS);
    if foreign.is_empty() {
        return checked;
    }
    match checked {
        None => Some(InboundVerdict::Accept {
            prepend: String::new(),
            remove: foreign,
            summary: String::new(),
        }),
        Some(InboundVerdict::Accept {
            prepend,
            mut remove,
            summary,
        }) => {
            // Whole fields of one header section: they never overlap.
            remove.extend(foreign);
            remove.sort_by_key(|r| r.start);
            Some(InboundVerdict::Accept {
                prepend,
                remove,
                summary,
            })
        }
        reject => reject,
    }
}

/// The addresses in the header fields named `name` (case-insensitive) of a message: unfolded,
/// `Name <a@b>` and bare `a@b` forms, quoted strings and comments skipped.
pub(crate) fn header_addresses(message: &[u8], name: &str) -> Vec<String> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 2);
    let head = String::from_utf8_lossy(&message[..end]);
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = fields.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else if !line.is_empty() {
            fields.push(line.to_string());
        }
    }
    let mut out = Vec::new();
    for f in fields {
        let Some((n, value)) = f.split_once(':') else {
            continue;
        };
        if !n.trim().eq_ignore_ascii_case(name) {
            continue;
        }
        // Split at commas outside quotes, angle brackets and comments.
        let (mut depth, mut quoted, mut angle, mut cur) = (0u32, false, false, String::new());
        let mut parts = Vec::new();
        for c in value.chars() {
            match c {
                '"' if depth == 0 => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted && depth > 0 => depth -= 1,
                '<' if !quoted && depth == 0 => angle = true,
                '>' if !quoted && depth == 0 => angle = false,
                ',' if !quoted && depth == 0 && !angle => {
                    parts.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        parts.push(cur);
        for p in parts {
            let addr = match (p.rfind('<'), p.rfind('>')) {
                (Some(a), Some(b)) if a < b => p[a + 1..b].trim().to_string(),
                _ => {
                    // Bare address: drop comments.
                    let mut s = String::new();
                    let mut d = 0u32;
                    for c in p.chars() {
                        match c {
                            '(' => d += 1,
                            ')' if d > 0 => d -= 1,
                            _ if d == 0 => s.push(c),
                            _ => {}
                        }
                    }
                    s.trim().to_string()
                }
            };
            if !addr.is_empty() {
                out.push(addr);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::header_addresses;

    #[test]
    fn from_addresses_are_found_in_every_form() {
        let m = b"Subject: x\r\nFrom: \"Doe, J\" <j@x.test>,\r\n  other@y.test (comment)\r\nTo: z@z.test\r\n\r\nFrom: body@no.test\r\n";
        assert_eq!(
            header_addresses(m, "from"),
            vec!["j@x.test".to_string(), "other@y.test".to_string()]
        );
        assert_eq!(header_addresses(m, "to"), vec!["z@z.test".to_string()]);
        assert!(header_addresses(b"X: y\r\n\r\n", "from").is_empty());
    }
}
