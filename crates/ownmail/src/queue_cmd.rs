//! `ownmail queue …` and `mailq` (SPEC §3; `main.rs` turns `mailq [--spool DIR]` into
//! `ownmail queue [--spool DIR] list`): the client of the control socket (`control.rs`).
//! `list` and `show` read the spool directly when no daemon answers; the commands that
//! steer the queue need the daemon.
//!
//! The exchange ([`Client`]) returns data; printing is separate, so tests drive a real
//! daemon-side socket and check what came back.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ownmail_queue::QueuedMessage;
use ownmail_types::QueueId;

use crate::control::{self, Cmd, Request, Response};

/// A big queue's listing takes a moment to build and send; a daemon that says nothing for
/// this long is stuck.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds the answer read into memory (a listing of a very large queue still fits).
const MAX_RESPONSE: u64 = 256 << 20;

#[derive(Clone, Debug, clap::Subcommand)]
pub enum QueueAction {
    /// Every queued message with its pending recipients (like `mailq`).
    List,
    /// One message: its envelope, then its headers.
    Show {
        #[arg(value_parser = parse_queue_id)]
        id: QueueId,
    },
    /// Retry now: the message ID, or every message.
    Flush {
        #[arg(value_parser = parse_queue_id)]
        id: Option<QueueId>,
    },
    /// Drop a message from the queue, without a bounce.
    Remove {
        #[arg(value_parser = parse_queue_id)]
        id: QueueId,
    },
    /// Stop starting deliveries (those under way finish).
    Pause,
    /// Start delivering again.
    Resume,
}

fn parse_queue_id(s: &str) -> Result<QueueId, String> {
    QueueId::parse(s).ok_or_else(|| "a queue id is 20 lowercase hex digits".to_string())
}

/// Why the daemon could not be asked.
#[derive(Debug)]
pub enum ClientError {
    /// No daemon listens on this spool (no socket, or a stale one).
    NotRunning,
    /// The daemon answered with an error.
    Refused(String),
    /// Reaching it or reading its answer failed.
    Io(io::Error),
    /// Its answer was not one this client understands.
    Protocol(String),
    /// No daemon, and the spool could not be read directly either.
    Spool(PathBuf, io::Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotRunning => f.write_str("the ownmail daemon is not running"),
            ClientError::Refused(e) => f.write_str(e),
            ClientError::Io(e) if e.kind() == io::ErrorKind::PermissionDenied => write!(
                f,
                "{e} (only root and the user ownmail runs as may use the queue commands)"
            ),
            ClientError::Io(e) => write!(f, "control socket: {e}"),
            ClientError::Protocol(e) => write!(f, "control socket: {e}"),
            ClientError::Spool(dir, e) => write!(f, "cannot read the spool {}: {e}", dir.display()),
        }
    }
}

/// Talks to the daemon through one control socket, one connection per request.
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: PathBuf) -> Self {
        Client { socket }
    }

    /// The daemon of the spool at `spool`.
    pub fn for_spool(spool: &Path) -> Self {
        Client::new(control::socket_path(spool))
    }

    pub fn list(&self) -> Result<Vec<QueuedMessage>, ClientError> {
        let response = self.request(Cmd::List, None)?;
        response
            .messages
            .ok_or_else(|| ClientError::Protocol("listing without messages".into()))
    }

    /// The message and its header section.
    pub fn show(&self, id: &QueueId) -> Result<(QueuedMessage, Option<String>), ClientError> {
        let response = self.request(Cmd::Show, Some(id))?;
        let message = response
            .messages
            .and_then(|m| m.into_iter().next())
            .ok_or_else(|| ClientError::Protocol("show without a message".into()))?;
        Ok((message, response.headers))
    }

    pub fn flush(&self, id: Option<&QueueId>) -> Result<(), ClientError> {
        self.request(Cmd::Flush, id).map(drop)
    }

    pub fn remove(&self, id: &QueueId) -> Result<(), ClientError> {
        self.request(Cmd::Remove, Some(id)).map(drop)
    }

    pub fn pause(&self) -> Result<(), ClientError> {
        self.request(Cmd::Pause, None).map(drop)
    }

    pub fn resume(&self) -> Result<(), ClientError> {
        self.request(Cmd::Resume, None).map(drop)
    }

    /// One request, one answer; an answer with `ok: false` is [`ClientError::Refused`].
    fn request(&self, cmd: Cmd, id: Option<&QueueId>) -> Result<Response, ClientError> {
        let request = Request {
            cmd,
            id: id.map(|id| id.as_str().to_string()),
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning,
            _ => ClientError::Io(e),
        })?;
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
            .map_err(ClientError::Io)?;
        let mut line =
            serde_json::to_vec(&request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        stream.write_all(&line).map_err(ClientError::Io)?;

        let mut answer = Vec::new();
        BufReader::new(stream)
            .take(MAX_RESPONSE)
            .read_until(b'\n', &mut answer)
            .map_err(ClientError::Io)?;
        if answer.last() != Some(&b'\n') {
            return Err(ClientError::Protocol(if answer.is_empty() {
                "the daemon closed the connection without answering".into()
            } else {
                "answer cut short".into()
            }));
        }
        let response: Response = serde_json::from_slice(&answer)
            .map_err(|e| ClientError::Protocol(format!("bad answer: {e}")))?;
        if response.ok {
            Ok(response)
        } else {
            Err(ClientError::Refused(
                response.error.unwrap_or_else(|| "failed".into()),
            ))
        }
    }
}

/// `ownmail queue [--spool DIR] ACTION`.
pub fn queue_command(spool: &Path, action: QueueAction) -> ExitCode {
    let client = Client::for_spool(spool);
    let result = match action {
        QueueAction::List => list(&client, spool),
        QueueAction::Show { id } => show(&client, spool, &id),
        QueueAction::Flush { id } => client.flush(id.as_ref()).map(|()| match id {
            Some(id) => format!("{id}: delivery scheduled now\n"),
            None => "every message: delivery scheduled now\n".to_string(),
        }),
        QueueAction::Remove { id } => client
            .remove(&id)
            .map(|()| format!("{id}: removed from the queue\n")),
        QueueAction::Pause => client.pause().map(|()| "queue paused\n".to_string()),
        QueueAction::Resume => client.resume().map(|()| "queue resumed\n".to_string()),
    };
    match result {
        Ok(text) => {
            let mut out = io::stdout().lock();
            if out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(ClientError::NotRunning) => {
            eprintln!(
                "ownmail queue: no daemon answers on {} (is `ownmail serve --spool {}` running?)",
                control::socket_path(spool).display(),
                spool.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ownmail queue: {e}");
            ExitCode::FAILURE
        }
    }
}

fn list(client: &Client, spool: &Path) -> Result<String, ClientError> {
    let messages = match client.list() {
        Err(ClientError::NotRunning) => {
            let messages = ownmail_queue::read_spool(spool).map_err(|e| spool_error(spool, e))?;
            eprintln!("(daemon not running: read from the spool)");
            messages
        }
        other => other?,
    };
    Ok(format_list(&messages, SystemTime::now()))
}

fn show(client: &Client, spool: &Path, id: &QueueId) -> Result<String, ClientError> {
    let (message, headers) = match client.show(id) {
        Err(ClientError::NotRunning) => {
            let found =
                ownmail_queue::read_message(spool, id).map_err(|e| spool_error(spool, e))?;
            eprintln!("(daemon not running: read from the spool)");
            let (message, bytes) = found
                .ok_or_else(|| ClientError::Refused(format!("no message {id} in the queue")))?;
            (message, Some(control::header_section(&bytes)))
        }
        other => other?,
    };
    Ok(format_show(&message, headers.as_deref(), SystemTime::now()))
}

fn spool_error(spool: &Path, e: io::Error) -> ClientError {
    ClientError::Spool(spool.to_path_buf(), e)
}

/// Like `mailq`: per message, a line `ID  AGE  <sender>  STATUS`, then one indented line
/// per pending recipient `rcpt  (dest)  last error`; blocks are separated by a blank line.
pub fn format_list(messages: &[QueuedMessage], now: SystemTime) -> String {
    if messages.is_empty() {
        return "queue is empty\n".to_string();
    }
    let mut out = String::new();
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{}  {}  <{}>  {}",
            m.id,
            age(m.received_at, now),
            m.mail_from,
            status(m, now)
        );
        for p in &m.pending {
            let _ = write!(out, "    {}  ({})", p.rcpt, printable(&p.dest));
            if let Some(e) = &p.last_error {
                let _ = write!(out, "  {}", printable(e));
            }
            out.push('\n');
        }
    }
    let rcpts: usize = messages.iter().map(|m| m.pending.len()).sum();
    let _ = writeln!(
        out,
        "\n-- {} message{}, {} recipient{} pending",
        messages.len(),
        plural(messages.len()),
        rcpts,
        plural(rcpts)
    );
    out
}

/// The envelope of one message, a blank line, then its headers (when known).
pub fn format_show(m: &QueuedMessage, headers: Option<&str>, now: SystemTime) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "id: {}", m.id);
    let _ = writeln!(out, "from: <{}>", m.mail_from);
    let _ = writeln!(
        out,
        "received: {} ({} ago)",
        utc(m.received_at),
        age(m.received_at, now)
    );
    let _ = writeln!(out, "attempts: {}", m.attempts);
    let _ = writeln!(out, "status: {}", status(m, now));
    for p in &m.pending {
        let _ = write!(out, "to: <{}>  ({})", p.rcpt, printable(&p.dest));
        if let Some(e) = &p.last_error {
            let _ = write!(out, "  last error: {}", printable(e));
        }
        out.push('\n');
    }
    if let Some(headers) = headers {
        out.push('\n');
        for line in headers.lines() {
            out.push_str(&printable(line));
            out.push('\n');
        }
    }
    out
}

fn status(m: &QueuedMessage, now: SystemTime) -> String {
    if m.delivering {
        return "delivering".to_string();
    }
    match m.next_attempt.duration_since(now) {
        Ok(wait) if wait >= Duration::from_secs(1) => format!("next attempt in {}", span(wait)),
        _ => "next attempt now".to_string(),
    }
}

/// How long ago `received_at` (seconds since the epoch) was.
fn age(received_at: u64, now: SystemTime) -> String {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    span(Duration::from_secs(now.saturating_sub(received_at)))
}

/// `45s`, `12m`, `3h05m`, `2d04h`.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` (days to a civil date: the proleptic Gregorian calendar, after
/// Howard Hinnant's `civil_from_days`).
fn utc(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Text from the network (remote replies, headers) with control characters made visible,
/// so that it cannot drive the terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ownmail_queue::{PendingRecipient, Queue, QueueOptions};
    use ownmail_types::{
        Address, BodyType, Destination, Envelope, MessageSink, Notify, Recipient, ReversePath,
    };
    use tokio::sync::watch;

    use super::*;

    const BODY: &[u8] = b"Subject: hello\r\nFrom: sender@example.org\r\n\r\nHi there.\r\n";

    fn addr(s: &str) -> Address {
        Address::parse(s).expect("test address")
    }

    fn envelope(rcpts: &[&str]) -> Envelope {
        let received_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        Envelope {
            id: QueueId::new(),
            mail_from: ReversePath::Address(addr("sender@example.org")),
            helo: "client.example.org".into(),
            client: None,
            auth_user: None,
            tag: None,
            received_at,
            body: BodyType::SevenBit,
            smtputf8: false,
            ret: None,
            envid: None,
            recipients: rcpts
                .iter()
                .map(|r| Recipient {
                    rcpt: addr(r),
                    orcpt: None,
                    notify: Notify::default(),
                    dest: Destination::Relay {
                        action: "out".into(),
                        to: addr(r),
                    },
                })
                .collect(),
        }
    }

    /// A spool with a queue (no scheduler: nothing is delivered) and its control socket.
    struct Daemon {
        dir: tempfile::TempDir,
        queue: Arc<Queue>,
        stop: watch::Sender<bool>,
        handle: tokio::task::JoinHandle<()>,
    }

    impl Daemon {
        async fn start() -> Daemon {
            let dir = tempfile::tempdir().expect("tempdir");
            let queue = Queue::open(dir.path(), QueueOptions::default()).expect("open");
            let (stop, shutdown) = watch::channel(false);
            let handle = control::serve_control(dir.path(), queue.clone(), shutdown)
                .await
                .expect("control socket");
            Daemon {
                dir,
                queue,
                stop,
                handle,
            }
        }

        fn client(&self) -> Client {
            Client::for_spool(self.dir.path())
        }

        async fn enqueue(&self, rcpts: &[&str]) -> Envelope {
            let env = envelope(rcpts);
            self.queue
                .enqueue(env.clone(), BODY.to_vec())
                .await
                .expect("enqueued");
            env
        }

        async fn stop(self) -> tempfile::TempDir {
            self.stop.send(true).expect("control task listening");
            tokio::time::timeout(Duration::from_secs(5), self.handle)
                .await
                .expect("control task stops")
                .expect("no panic");
            self.dir
        }
    }

    /// Runs a blocking client call off the runtime's threads.
    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f).await.expect("client call")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn list_through_the_socket_is_the_queues_listing() {
        let daemon = Daemon::start().await;
        let client = daemon.client();
        assert_eq!(blocking(move || client.list()).await.expect("list"), []);
        let a = daemon.enqueue(&["a@x.org", "b@y.org"]).await;
        let b = daemon.enqueue(&["c@z.org"]).await;

        let client = daemon.client();
        let listed = blocking(move || client.list()).await.expect("list");
        assert_eq!(listed, daemon.queue.list());
        let ids: Vec<&QueueId> = listed.iter().map(|m| &m.id).collect();
        assert_eq!(ids, [&a.id, &b.id]);
        assert_eq!(listed[0].pending.len(), 2);
        daemon.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn show_returns_the_envelope_and_the_headers() {
        let daemon = Daemon::start().await;
        let env = daemon.enqueue(&["a@x.org"]).await;
        let client = daemon.client();
        let id = env.id.clone();
        let (m, headers) = blocking(move || client.show(&id)).await.expect("show");
        assert_eq!(m.id, env.id);
        assert_eq!(
            headers.as_deref(),
            Some("Subject: hello\r\nFrom: sender@example.org\r\n")
        );

        let client = daemon.client();
        let err = blocking(move || client.show(&QueueId::new()))
            .await
            .expect_err("not queued");
        assert!(matches!(&err, ClientError::Refused(e) if e.starts_with("no message")));
        daemon.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remove_drops_the_message_and_its_files() {
        let daemon = Daemon::start().await;
        let env = daemon.enqueue(&["a@x.org"]).await;
        let file = daemon.dir.path().join("queue").join(env.id.as_str());
        assert!(file.exists());

        let client = daemon.client();
        let id = env.id.clone();
        blocking(move || client.remove(&id)).await.expect("remove");
        assert!(daemon.queue.is_empty());
        assert!(!file.exists());

        let client = daemon.client();
        let id = env.id.clone();
        let again = blocking(move || client.remove(&id)).await;
        assert!(matches!(again, Err(ClientError::Refused(_))));
        daemon.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flush_pause_and_resume_are_acknowledged() {
        let daemon = Daemon::start().await;
        let env = daemon.enqueue(&["a@x.org"]).await;
        let client = daemon.client();
        let id = env.id.clone();
        blocking(move || {
            client.pause()?;
            client.flush(Some(&id))?;
            client.flush(None)?;
            client.resume()
        })
        .await
        .expect("acknowledged");

        let client = daemon.client();
        let unknown = blocking(move || client.flush(Some(&QueueId::new()))).await;
        assert!(matches!(unknown, Err(ClientError::Refused(_))));
        daemon.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_daemon_leaves_no_socket_and_the_client_says_not_running() {
        let daemon = Daemon::start().await;
        let socket = control::socket_path(daemon.dir.path());
        assert!(socket.exists());
        let dir = daemon.stop().await;
        assert!(!socket.exists());
        let client = Client::for_spool(dir.path());
        assert!(matches!(
            blocking(move || client.list()).await,
            Err(ClientError::NotRunning)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_socket_is_not_running_and_is_replaced_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = control::socket_path(dir.path());
        // A socket nobody listens on any more, as a crash leaves it.
        drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
        let client = Client::for_spool(dir.path());
        assert!(matches!(
            blocking(move || client.list()).await,
            Err(ClientError::NotRunning)
        ));

        let queue = Queue::open(dir.path(), QueueOptions::default()).expect("open");
        let (_stop, shutdown) = watch::channel(false);
        let _handle = control::serve_control(dir.path(), queue, shutdown)
            .await
            .expect("control socket");
        let client = Client::for_spool(dir.path());
        assert_eq!(blocking(move || client.list()).await.expect("list"), []);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_socket_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let daemon = Daemon::start().await;
        let socket = control::socket_path(daemon.dir.path());
        let mode = std::fs::metadata(&socket)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!daemon.dir.path().join(".control.tmp").exists());
        daemon.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_and_oversized_requests_get_an_error_line() {
        let daemon = Daemon::start().await;
        let socket = control::socket_path(daemon.dir.path());
        let ask = |request: Vec<u8>| {
            let socket = socket.clone();
            blocking(move || {
                let mut s = UnixStream::connect(socket).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(15)))
                    .expect("timeout");
                // The daemon may answer and close before reading everything.
                let _ = s.write_all(&request);
                let mut answer = Vec::new();
                let _ = s.read_to_end(&mut answer);
                answer
            })
        };
        let cases: [(Vec<u8>, &str); 5] = [
            (b"{\"cmd\":\"explode\"}\n".to_vec(), "bad request"),
            (b"{\"cmd\":\"remove\"}\n".to_vec(), "needs a queue id"),
            (
                b"{\"cmd\":\"show\",\"id\":\"../../etc/passwd\"}\n".to_vec(),
                "not a queue id",
            ),
            (vec![b'x'; control::MAX_REQUEST + 10], "too long"),
            (b"{\"cmd\":\"list\"}".to_vec(), "not terminated"),
        ];
        for (request, expected) in cases {
            // The unterminated one ends when the client stops writing.
            let answer = if expected == "not terminated" {
                let socket = socket.clone();
                blocking(move || {
                    let mut s = UnixStream::connect(socket).expect("connect");
                    s.write_all(&request).expect("write");
                    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
                    let mut answer = Vec::new();
                    s.read_to_end(&mut answer).expect("read");
                    answer
                })
                .await
            } else {
                ask(request).await
            };
            let response: Response = serde_json::from_slice(&answer).expect("one JSON line");
            assert!(!response.ok);
            let error = response.error.unwrap_or_default();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
        daemon.stop().await;
    }

    #[tokio::test]
    async fn offline_listing_reads_the_spool_of_a_stopped_daemon() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = Queue::open(dir.path(), QueueOptions::default()).expect("open");
        let env = envelope(&["a@x.org"]);
        queue
            .enqueue(env.clone(), BODY.to_vec())
            .await
            .expect("enqueued");
        drop(queue);
        let client = Client::for_spool(dir.path());
        let text = list(&client, dir.path()).expect("offline list");
        assert!(text.starts_with(&format!("{}  ", env.id)));
        assert!(text.contains("  <sender@example.org>  next attempt now\n"));
        assert!(text.contains("\n    a@x.org  (relay:out→a@x.org)\n"));
        let shown = show(&client, dir.path(), &env.id).expect("offline show");
        assert!(shown.contains("\nSubject: hello\n"));
        assert!(matches!(
            show(&client, dir.path(), &QueueId::new()),
            Err(ClientError::Refused(_))
        ));
    }

    fn message(received_at: u64, next_in: Duration, errors: &[Option<&str>]) -> QueuedMessage {
        let pending: Vec<PendingRecipient> = errors
            .iter()
            .enumerate()
            .map(|(i, e)| PendingRecipient {
                rcpt: addr(&format!("r{i}@example.net")),
                dest: format!("relay:out→r{i}@example.net"),
                last_error: e.map(str::to_string),
            })
            .collect();
        QueuedMessage {
            id: QueueId::parse("0123456789abcdef0123").expect("id"),
            mail_from: ReversePath::Null,
            received_at,
            last_error: None,
            pending,
            attempts: 2,
            next_attempt: UNIX_EPOCH + Duration::from_secs(1_000_000) + next_in,
            delivering: false,
        }
    }

    #[test]
    fn list_shows_one_block_per_message_with_its_recipients() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let m = message(
            1_000_000 - 7500,
            Duration::from_secs(300),
            &[Some("451 4.7.1 greylisted\r\n\x1b[31mtry later"), None],
        );
        assert_eq!(
            format_list(&[m], now),
            "0123456789abcdef0123  2h05m  <>  next attempt in 5m\n\
             \x20   r0@example.net  (relay:out→r0@example.net)  451 4.7.1 greylisted\u{fffd}\u{fffd}\u{fffd}[31mtry later\n\
             \x20   r1@example.net  (relay:out→r1@example.net)\n\
             \n-- 1 message, 2 recipients pending\n"
        );
        assert_eq!(format_list(&[], now), "queue is empty\n");
    }

    #[test]
    fn show_prints_the_envelope_then_the_headers() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let m = message(1_000_000 - 30, Duration::ZERO, &[None]);
        assert_eq!(
            format_show(&m, Some("Subject: hi\r\nTo: x@y\r\n"), now),
            "id: 0123456789abcdef0123\nfrom: <>\n\
             received: 1970-01-12 13:46:10 UTC (30s ago)\nattempts: 2\n\
             status: next attempt now\nto: <r0@example.net>  (relay:out→r0@example.net)\n\
             \nSubject: hi\nTo: x@y\n"
        );
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_709_251_199), "2024-02-29 23:59:59 UTC");
    }

    #[test]
    fn spans_are_short() {
        let s = |n| span(Duration::from_secs(n));
        assert_eq!(
            [s(0), s(59), s(60), s(3599), s(3600), s(90_000)],
            ["0s", "59s", "1m", "59m", "1h00m", "1d01h"]
        );
    }
}
