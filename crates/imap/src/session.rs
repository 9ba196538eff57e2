//! The session loop: greeting, reading commands (literals and all) with
//! [`CommandReader`], dispatch by state, untagged updates of the selected folder, and the
//! tagged answer last.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ownmail_imap_proto::{
    mutf7_decode, parse_command, Code, Command, CommandBody, CommandReader, Data, EncodeOptions,
    FetchValue, Mailbox, ReadErrorKind, ReadState, Response, SequenceSet, Status,
};
use ownmail_mailstore::{Folder, MailStore, MessageInfo, StoreError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{debug, info};

use crate::{message, Authenticator, ImapCtx};

/// The stream a session runs over: TCP, TLS, or an in-memory pipe in tests.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

const READ_CHUNK: usize = 16 * 1024;

/// Why the session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// We said BYE (LOGOUT, timeout, shutdown, too many errors).
    Done,
    /// The peer went away or the stream failed.
    Lost,
}

/// The tagged line that ends a command, written after the untagged updates.
#[derive(Debug)]
pub(crate) struct Tagged {
    pub status: Status,
    pub code: Option<Code>,
    pub text: String,
}

impl Tagged {
    pub fn ok(text: impl Into<String>) -> Tagged {
        Tagged {
            status: Status::Ok,
            code: None,
            text: text.into(),
        }
    }
    pub fn no(text: impl Into<String>) -> Tagged {
        Tagged {
            status: Status::No,
            code: None,
            text: text.into(),
        }
    }
    pub fn bad(text: impl Into<String>) -> Tagged {
        Tagged {
            status: Status::Bad,
            code: None,
            text: text.into(),
        }
    }
    pub fn code(mut self, code: Code) -> Tagged {
        self.code = Some(code);
        self
    }
}

/// A logged-in user.
pub(crate) struct User {
    pub name: String,
    pub store: MailStore,
    pub owner: Option<(u32, u32)>,
}

/// The selected folder as this session has announced it: `msgs[i]` is sequence number i+1.
pub(crate) struct Selected {
    pub folder: Folder,
    pub read_only: bool,
    pub uid_next: u32,
    /// Shared with other sessions until this one changes it (see [`crate::snapshot`]):
    /// write through `Arc::make_mut`.
    pub msgs: Arc<Vec<MessageInfo>>,
}

/// Runs `f`, which does file system work, without holding up the other sessions of this
/// runtime thread: on the multi-threaded runtime (the server's) the thread hands its other
/// tasks to a new worker first; elsewhere (single-threaded tests) `f` just runs.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// What ended [`Session::read_or`].
pub(crate) enum Woke<T> {
    /// Input arrived (appended to `input`).
    Input,
    /// Nothing happened within the wait.
    Timeout,
    /// The other future completed first.
    Other(T),
}

pub(crate) struct Session {
    io: Option<Box<dyn Io>>,
    pub id: String,
    pub ctx: Arc<ImapCtx>,
    pub auth: Arc<dyn Authenticator>,
    shutdown: watch::Receiver<bool>,
    pub input: Vec<u8>,
    output: Vec<u8>,
    pub reader: CommandReader,
    pub tls: bool,
    pub user: Option<User>,
    pub selected: Option<Selected>,
    /// ENABLE IMAP4rev2 was given (RFC 9051 §6.3.1).
    pub rev2: bool,
    /// CONDSTORE is on (RFC 7162 §3.1): ENABLE, or a CONDSTORE-enabling command was used.
    /// Unsolicited FETCH then carries MODSEQ, SELECT answers HIGHESTMODSEQ.
    pub condstore: bool,
    /// ENABLE QRESYNC was given (RFC 7162 §3.2.3): EXPUNGE becomes VANISHED.
    pub qresync: bool,
    /// COMPRESS=DEFLATE is active (RFC 4978): `io` is a [`crate::compress::Deflate`].
    pub compressed: bool,
    errors: u32,
}

fn session_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("imap-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs one IMAP session to its end: greeting, commands, BYE. `shutdown` turning true ends
/// it with `* BYE` at the next command or while waiting for one.
pub async fn run_session(
    io: Box<dyn Io>,
    ctx: Arc<ImapCtx>,
    auth: Arc<dyn Authenticator>,
    shutdown: watch::Receiver<bool>,
) {
    let id = session_id();
    info!("imap session={id} event=connect");
    let max_literal = ctx.max_message;
    let mut s = Session {
        io: Some(io),
        id,
        tls: ctx.tls_active_at_start,
        ctx,
        auth,
        shutdown,
        input: Vec::with_capacity(4096),
        output: Vec::with_capacity(4096),
        reader: CommandReader::new(ownmail_imap_proto::DEFAULT_MAX_LINE, max_literal),
        user: None,
        selected: None,
        rev2: false,
        condstore: false,
        qresync: false,
        compressed: false,
        errors: 0,
    };
    let result = s.run().await;
    let _ = s.flush().await;
    if let Some(mut io) = s.io.take() {
        let _ = io.shutdown().await;
    }
    let how = match result {
        Stop::Done => "closed",
        Stop::Lost => "lost",
    };
    info!("imap session={} event=disconnect reason={how}", s.id);
}

impl Session {
    pub fn send(&mut self, r: Response) {
        r.encode_into(&mut self.output, EncodeOptions::default());
    }

    pub fn data(&mut self, d: Data) {
        self.send(Response::Data(d));
    }

    fn tagged(&mut self, tag: &str, t: Tagged) {
        self.send(Response::Tagged {
            tag: tag.to_string(),
            status: t.status,
            code: t.code,
            text: t.text,
        });
    }

    pub fn bye(&mut self, text: &str) {
        self.send(Response::Untagged {
            status: Status::Bye,
            code: None,
            text: text.to_string(),
        });
    }

    pub async fn flush(&mut self) -> Result<(), Stop> {
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

    /// Waits up to `wait` for input. `Ok(false)`: nothing came in time. On shutdown says BYE.
    pub async fn read_some(&mut self, wait: Duration) -> Result<bool, Stop> {
        let woke = self.read_or(wait, std::future::pending::<()>()).await?;
        Ok(matches!(woke, Woke::Input))
    }

    /// [`Session::read_some`] that also returns when `other` completes first (IDLE's folder
    /// watch). `other` must be cancel-safe: it is dropped when input or the timeout wins.
    pub async fn read_or<T>(
        &mut self,
        wait: Duration,
        other: impl Future<Output = T>,
    ) -> Result<Woke<T>, Stop> {
        self.flush().await?;
        let Some(io) = self.io.as_mut() else {
            return Err(Stop::Lost);
        };
        let mut buf = vec![0u8; READ_CHUNK];
        let n = tokio::select! {
            r = tokio::time::timeout(wait, io.read(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(Stop::Lost),
                Ok(Ok(n)) => n,
                Err(_) => return Ok(Woke::Timeout),
            },
            v = other => return Ok(Woke::Other(v)),
            _ = self.shutdown.changed() => {
                self.bye("Server shutting down");
                let _ = self.flush().await;
                return Err(Stop::Done);
            }
        };
        self.input
            .extend_from_slice(buf.get(..n).unwrap_or_default());
        Ok(Woke::Input)
    }

    /// Reads more input or ends the session with an autologout BYE.
    pub async fn read_more(&mut self) -> Result<(), Stop> {
        let wait = if self.user.is_some() {
            self.ctx.idle_timeout
        } else {
            self.ctx.preauth_timeout
        };
        if self.read_some(wait).await? {
            Ok(())
        } else {
            self.bye("Autologout; idle for too long");
            let _ = self.flush().await;
            Err(Stop::Done)
        }
    }

    /// One line that is not a command (a SASL response, `DONE`).
    pub async fn read_line(&mut self) -> Result<Option<Vec<u8>>, Stop> {
        loop {
            let (n, st) = self.reader.feed_line(&self.input);
            self.input.drain(..n.min(self.input.len()));
            match st {
                ReadState::Command(line) => return Ok(Some(line)),
                ReadState::Error(_) => return Ok(None),
                ReadState::NeedMore | ReadState::NeedContinuation => self.read_more().await?,
            }
        }
    }

    pub fn swap_io(&mut self) -> Option<Box<dyn Io>> {
        self.io.take()
    }

    pub fn set_io(&mut self, io: Box<dyn Io>) {
        self.io = Some(io);
    }

    /// Drops whatever the client sent after STARTTLS (RFC 9051 §6.2.1: no command injection).
    pub fn discard_input(&mut self) {
        self.input.clear();
        self.reader =
            CommandReader::new(ownmail_imap_proto::DEFAULT_MAX_LINE, self.ctx.max_message);
    }

    pub fn login_disabled(&self) -> bool {
        self.ctx.require_tls_for_login && !self.tls
    }

    pub fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = [
            "IMAP4rev1",
            "IMAP4rev2",
            "LITERAL+",
            "SASL-IR",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UIDPLUS",
            "MOVE",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
            "ESEARCH",
            "LIST-STATUS",
            "BINARY",
            "CONDSTORE",
            "QRESYNC",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        caps.push(format!("APPENDLIMIT={}", self.ctx.max_message));
        if self.user.is_none() {
            if !self.tls && self.ctx.starttls.is_some() {
                caps.push("STARTTLS".into());
            }
            if self.login_disabled() {
                caps.push("LOGINDISABLED".into());
            } else {
                caps.push("AUTH=PLAIN".into());
            }
        } else if !self.compressed {
            // RFC 4978 §3: offered once logged in, and no longer once active.
            caps.push("COMPRESS=DEFLATE".into());
        }
        caps
    }

    async fn run(&mut self) -> Stop {
        let caps = self.capabilities();
        self.send(Response::Untagged {
            status: Status::Ok,
            code: Some(Code::Capability(caps)),
            text: "ownmail ready".into(),
        });
        loop {
            if *self.shutdown.borrow() {
                self.bye("Server shutting down");
                return Stop::Done;
            }
            let (n, st) = self.reader.feed(&self.input);
            self.input.drain(..n.min(self.input.len()));
            let raw = match st {
                ReadState::NeedMore => {
                    if let Err(stop) = self.read_more().await {
                        return stop;
                    }
                    continue;
                }
                ReadState::NeedContinuation => {
                    self.send(Response::Continuation("Ready for literal".into()));
                    if let Err(stop) = self.read_more().await {
                        return stop;
                    }
                    continue;
                }
                ReadState::Error(e) => {
                    let text = e.kind.to_string();
                    match (&e.kind, e.tag.as_deref()) {
                        // RFC 7889 §2 / RFC 9051 §7.1: a message over APPENDLIMIT gets NO
                        // [TOOBIG]; the literal was not taken (or was skipped), so the
                        // session goes on.
                        (ReadErrorKind::LiteralTooLarge { .. }, Some(tag)) => {
                            self.send(Response::Tagged {
                                tag: tag.to_string(),
                                status: Status::No,
                                code: Some(Code::TooBig),
                                text,
                            })
                        }
                        _ => self.send(Response::bad(e.tag.as_deref(), &text)),
                    }
                    if self.count_error() {
                        return Stop::Done;
                    }
                    continue;
                }
                ReadState::Command(raw) => raw,
            };
            let cmd = match parse_command(&raw) {
                Ok(c) => c,
                Err(e) => {
                    self.send(Response::bad(e.tag.as_deref(), &e.message));
                    if self.count_error() {
                        return Stop::Done;
                    }
                    continue;
                }
            };
            if let Err(stop) = self.command(cmd).await {
                return stop;
            }
        }
    }

    /// Counts one BAD; after too many says BYE and gives up.
    fn count_error(&mut self) -> bool {
        self.errors += 1;
        if self.errors > self.ctx.max_errors {
            self.bye("Too many errors");
            true
        } else {
            false
        }
    }

    async fn command(&mut self, cmd: Command) -> Result<(), Stop> {
        let Command { tag, body } = cmd;
        let who = self.user.as_ref().map_or("-", |u| u.name.as_str());
        debug!(
            "imap session={} user={who:?} event=command tag={tag}",
            self.id
        );
        // RFC 3501 §7.4.1: no EXPUNGE during FETCH, STORE, SEARCH (non-UID) — and we add
        // COPY, whose sequence numbers refer to the view before it.
        let expunge_ok = !matches!(
            body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
                | CommandBody::Copy { uid: false, .. }
        );
        let t = match body {
            CommandBody::Logout => {
                self.bye("Logging out");
                self.tagged(&tag, Tagged::ok("LOGOUT completed"));
                let _ = self.flush().await;
                return Err(Stop::Done);
            }
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.data(Data::Capability(caps));
                Tagged::ok("CAPABILITY completed")
            }
            CommandBody::Noop | CommandBody::Check => Tagged::ok("NOOP completed"),
            CommandBody::Id(_) => {
                self.data(Data::Id(Some(vec![(
                    "name".to_string(),
                    Some("ownmail".to_string()),
                )])));
                Tagged::ok("ID completed")
            }
            CommandBody::Enable(caps) => {
                let mut enabled = Vec::new();
                for c in caps {
                    if c.eq_ignore_ascii_case("IMAP4rev2") {
                        self.rev2 = true;
                        enabled.push("IMAP4rev2".to_string());
                    } else if c.eq_ignore_ascii_case("CONDSTORE") {
                        self.condstore = true;
                        enabled.push("CONDSTORE".to_string());
                    } else if c.eq_ignore_ascii_case("QRESYNC") {
                        // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                        self.condstore = true;
                        self.qresync = true;
                        enabled.push("QRESYNC".to_string());
                    }
                }
                self.data(Data::Enabled(enabled));
                Tagged::ok("ENABLE completed")
            }
            CommandBody::StartTls => match crate::auth::starttls(self, &tag).await? {
                Some(t) => t,
                None => return Ok(()),
            },
            CommandBody::Login { username, password } => {
                crate::auth::login(self, &username, password.0).await
            }
            CommandBody::Authenticate { mechanism, initial } => {
                crate::auth::authenticate(self, &mechanism, initial).await?
            }
            CommandBody::Compress { mechanism } => {
                match crate::compress::compress(self, &tag, &mechanism).await? {
                    Some(t) => t,
                    None => return Ok(()),
                }
            }
            body if self.user.is_none() => {
                let _ = body;
                Tagged::bad("Log in first")
            }
            // RFC 2177: IDLE is allowed without a selected mailbox too (nothing to report).
            CommandBody::Idle => crate::idle::idle(self).await?,
            body => blocking(|| self.mailbox_command(&tag, body)),
        };
        if t.status == Status::Bad {
            self.tagged(&tag, t);
            return if self.count_error() {
                Err(Stop::Done)
            } else {
                Ok(())
            };
        }
        blocking(|| self.refresh(expunge_ok));
        self.tagged(&tag, t);
        Ok(())
    }

    /// The commands that work on the mail store, after login. They read and rename files
    /// (a SELECT of a large folder reads its directories): run through [`blocking`].
    fn mailbox_command(&mut self, tag: &str, body: CommandBody) -> Tagged {
        match body {
            CommandBody::Namespace => crate::mailbox::namespace(self),
            CommandBody::List {
                selection,
                reference,
                patterns,
                returns,
            } => crate::list::list(self, &selection, &reference, &patterns, &returns),
            CommandBody::Lsub { reference, pattern } => {
                crate::list::lsub(self, &reference, &pattern)
            }
            CommandBody::Create { mailbox, .. } => crate::mailbox::create(self, &mailbox),
            CommandBody::Delete(mailbox) => crate::mailbox::delete(self, &mailbox),
            CommandBody::Rename { from, to } => crate::mailbox::rename(self, &from, &to),
            CommandBody::Subscribe(mailbox) => crate::mailbox::subscribe(self, &mailbox, true),
            CommandBody::Unsubscribe(mailbox) => crate::mailbox::subscribe(self, &mailbox, false),
            CommandBody::Status { mailbox, items } => {
                crate::mailbox::status(self, &mailbox, &items)
            }
            CommandBody::Select { mailbox, params } => {
                crate::select::select(self, &mailbox, false, &params)
            }
            CommandBody::Examine { mailbox, params } => {
                crate::select::select(self, &mailbox, true, &params)
            }
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
                ..
            } => crate::append::append(self, &mailbox, &flags, date, &message),
            body if self.selected.is_none() => {
                let _ = body;
                Tagged::bad("No mailbox selected")
            }
            CommandBody::Close => crate::select::close(self),
            CommandBody::Unselect => crate::select::unselect(self),
            CommandBody::Expunge => crate::expunge::expunge(self, None),
            CommandBody::UidExpunge(set) => crate::expunge::expunge(self, Some(&set)),
            CommandBody::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            } => crate::fetch::fetch(self, uid, &set, &items, changed_since, vanished),
            CommandBody::Store {
                uid,
                set,
                mode,
                silent,
                flags,
                unchanged_since,
            } => crate::store::store(
                self,
                uid,
                &set,
                crate::store::StoreArgs {
                    mode,
                    silent,
                    flags: &flags,
                    unchanged_since,
                },
            ),
            CommandBody::Copy { uid, set, mailbox } => {
                crate::copy::copy(self, uid, &set, &mailbox, false)
            }
            CommandBody::Move { uid, set, mailbox } => {
                crate::copy::copy(self, uid, &set, &mailbox, true)
            }
            CommandBody::Search {
                uid,
                returns,
                charset,
                criteria,
            } => crate::search::search(
                self,
                tag,
                uid,
                returns.as_deref(),
                charset.as_deref(),
                &criteria,
            ),
            _ => Tagged::bad("Command not allowed here"),
        }
    }

    /// Syncs the selected folder and announces what changed: EXPUNGE (when allowed), FETCH
    /// FLAGS for changed flags, EXISTS for new messages.
    pub fn refresh(&mut self, expunge_ok: bool) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let Ok(snap) = crate::snapshot::current(&sel.folder) else {
            return;
        };
        sel.uid_next = snap.uid_next;
        if Arc::ptr_eq(&snap.messages, &sel.msgs) {
            return; // the very state this session shows: nothing changed
        }
        let now = &snap.messages;
        let present: HashSet<u32> = now.iter().map(|m| m.uid.0).collect();
        let gone: Vec<usize> = sel
            .msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| !present.contains(&m.uid.0))
            .map(|(i, _)| i)
            .collect();
        let mut out = Vec::new();
        let told_gone = expunge_ok && !gone.is_empty();
        if told_gone {
            if self.qresync {
                // RFC 7162 §3.2.10: with QRESYNC on, expunges are told by UID, all in one.
                let uids: Vec<u32> = gone
                    .iter()
                    .filter_map(|&i| sel.msgs.get(i).map(|m| m.uid.0))
                    .collect();
                if let Some(uids) = SequenceSet::from_numbers(&uids) {
                    out.push(Data::Vanished {
                        earlier: false,
                        uids,
                    });
                }
            } else {
                // Each EXPUNGE renumbers the messages after it (RFC 9051 §7.5.1).
                for (k, &i) in gone.iter().enumerate() {
                    out.push(Data::Expunge(u32::try_from(i + 1 - k).unwrap_or(u32::MAX)));
                }
            }
        }
        // Flag changes, numbered as the client sees them after the expunges above.
        let last = sel.msgs.last().map_or(0, |m| m.uid.0);
        let mut added = 0usize;
        for m in now.iter() {
            match sel.msgs.binary_search_by_key(&m.uid.0, |x| x.uid.0) {
                Ok(pos) => {
                    let changed = sel.msgs.get(pos).is_some_and(|old| old.flags != m.flags);
                    if changed {
                        let before = if told_gone {
                            gone.partition_point(|&g| g < pos)
                        } else {
                            0
                        };
                        let mut items = vec![
                            FetchValue::Flags(message::to_imap_flags(&m.flags)),
                            FetchValue::Uid(m.uid.0),
                        ];
                        // RFC 7162 §3.1.4: with CONDSTORE on, flag updates carry MODSEQ.
                        if self.condstore {
                            items.push(FetchValue::ModSeq(m.modseq));
                        }
                        out.push(Data::Fetch {
                            seq: u32::try_from(pos + 1 - before).unwrap_or(u32::MAX),
                            items,
                        });
                    }
                }
                Err(_) if m.uid.0 > last => added += 1,
                Err(_) => {}
            }
        }
        if gone.is_empty() || expunge_ok {
            // The client's view is now exactly the folder's: share it.
            sel.msgs = snap.messages.clone();
        } else {
            // Messages expunged meanwhile stay in view until an EXPUNGE may be sent
            // (RFC 3501 §7.4.1): this session's own list, updated in place.
            let mut mine: Vec<MessageInfo> = sel
                .msgs
                .iter()
                .map(
                    |old| match now.binary_search_by_key(&old.uid.0, |x| x.uid.0) {
                        Ok(p) => now.get(p).cloned().unwrap_or_else(|| old.clone()),
                        Err(_) => old.clone(),
                    },
                )
                .collect();
            mine.extend(now.iter().filter(|m| m.uid.0 > last).cloned());
            sel.msgs = Arc::new(mine);
        }
        if added > 0 {
            out.push(Data::Exists(
                u32::try_from(sel.msgs.len()).unwrap_or(u32::MAX),
            ));
        }
        for d in out {
            self.data(d);
        }
    }

    pub fn user(&self) -> Result<&User, Tagged> {
        self.user
            .as_ref()
            .ok_or_else(|| Tagged::bad("Log in first"))
    }

    /// The indexes into the selected folder's messages that `set` names. Sequence numbers
    /// beyond the last message are a BAD (RFC 9051 §6.4.5); UIDs that do not exist are skipped.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, Tagged> {
        let Some(sel) = self.selected.as_ref() else {
            return Err(Tagged::bad("No mailbox selected"));
        };
        let count = u32::try_from(sel.msgs.len()).unwrap_or(u32::MAX);
        if uid {
            let largest = sel.msgs.last().map_or(0, |m| m.uid.0);
            return Ok(sel
                .msgs
                .iter()
                .enumerate()
                .filter(|(_, m)| set.contains(m.uid.0, largest))
                .map(|(i, _)| i)
                .collect());
        }
        for r in &set.0 {
            for n in [r.start, r.end] {
                if let ownmail_imap_proto::SeqNum::Value(v) = n {
                    if v.get() > count {
                        return Err(Tagged::bad("Invalid message sequence number"));
                    }
                }
            }
        }
        if count == 0 {
            return Err(Tagged::bad("No messages"));
        }
        Ok((1..=count)
            .filter(|&n| set.contains(n, count))
            .map(|n| (n - 1) as usize)
            .collect())
    }
}

/// A client's mailbox name as the store wants it: modified UTF-7 decoded (RFC 3501 §5.1.3),
/// `INBOX` in any case as `INBOX`.
pub(crate) fn folder_name(mb: &Mailbox) -> Result<String, Tagged> {
    if mb.is_inbox() {
        return Ok("INBOX".to_string());
    }
    mutf7_decode(mb.as_str()).map_err(|_| Tagged::bad("Invalid modified UTF-7 in mailbox name"))
}

/// A store error as the tagged answer a client can act on (RFC 5530 codes).
pub(crate) fn store_error(e: StoreError) -> Tagged {
    match e {
        StoreError::InvalidName { name, why } => {
            Tagged::no(format!("Invalid mailbox name {name:?}: {why}")).code(Code::Cannot)
        }
        StoreError::NotFound(_) => Tagged::no("No such mailbox").code(Code::NonExistent),
        StoreError::AlreadyExists(_) => Tagged::no("Mailbox exists").code(Code::AlreadyExists),
        StoreError::NotAllowed(why) => Tagged::no(format!("Not allowed: {why}")).code(Code::Cannot),
        StoreError::NoSuchMessage(_) => Tagged::no("Message is gone").code(Code::NonExistent),
        StoreError::TooManyKeywords => Tagged::no("Too many keywords").code(Code::Limit),
        StoreError::InvalidKeyword(k) => Tagged::bad(format!("Invalid keyword {k:?}")),
        StoreError::Locked(_) => {
            Tagged::no("Mailbox busy, try again").code(Code::Other("INUSE".into()))
        }
        e => {
            tracing::warn!("imap event=store-error error=\"{e}\"");
            Tagged::no("Server error").code(Code::ServerBug)
        }
    }
}
