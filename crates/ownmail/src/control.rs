//! The control socket `SPOOL/control.sock`: how `ownmail queue` (and `mailq`) steer the
//! running daemon's queue (SPEC §3). The client side is `queue_cmd.rs`.
//!
//! Protocol: the client sends one JSON [`Request`] on one line, the daemon answers one JSON
//! [`Response`] on one line and closes. One request per connection.
//!
//! Who may use it: root and the user the daemon runs as, checked on every connection with
//! the peer's credentials (SO_PEERCRED). The socket file is also mode 0600 from the moment
//! it exists (bound inside a private 0700 directory, then renamed into place), so the check
//! is a second lock, not the only one.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ownmail_queue::{Queue, QueuedMessage};
use ownmail_types::QueueId;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// The socket's name in the spool.
pub const SOCKET_NAME: &str = "control.sock";
/// A request is a command and an id: anything longer is not one.
pub const MAX_REQUEST: usize = 4096;
/// A connection that has not finished its exchange by then is dropped.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// `show` returns at most this much of the message's header section.
const MAX_SHOWN_HEADER: usize = 256 * 1024;

/// What a client asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cmd {
    List,
    Show,
    Flush,
    Remove,
    Pause,
    Resume,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub cmd: Cmd,
    /// The queue id for `show` and `remove` (required) and `flush` (optional: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `list`: every queued message; `show`: the one asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<QueuedMessage>>,
    /// `show`: the message's header section (lossy UTF-8, at most `MAX_SHOWN_HEADER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<String>,
}

impl Response {
    fn done() -> Self {
        Response {
            ok: true,
            ..Response::default()
        }
    }

    fn error(message: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(message.into()),
            ..Response::default()
        }
    }
}

/// The control socket of the spool at `spool`.
pub fn socket_path(spool: &Path) -> PathBuf {
    spool.join(SOCKET_NAME)
}

/// Binds `SPOOL/control.sock` (replacing a stale one: the caller holds the spool lock, so no
/// other daemon uses it) and serves it until `shutdown` turns true or its sender is dropped;
/// the socket file is removed then. Call after [`Queue::open`]; keep the handle and await it
/// at shutdown.
pub async fn serve_control(
    spool: &Path,
    queue: Arc<Queue>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<JoinHandle<()>> {
    let path = socket_path(spool);
    let listener = bind_private(spool, &path)?;
    info!("control event=listen socket={}", path.display());
    Ok(tokio::spawn(accept_loop(
        listener,
        path,
        spool.to_path_buf(),
        queue,
        shutdown,
    )))
}

/// Binds the socket in a fresh 0700 directory, makes it 0600, then renames it to `path`:
/// nobody else can reach it at any moment, whatever the umask.
fn bind_private(spool: &Path, path: &Path) -> io::Result<UnixListener> {
    let private = spool.join(".control.tmp");
    match fs::remove_dir_all(&private) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::DirBuilder::new().mode(0o700).create(&private)?;
    let bound = bind_and_move(&private.join(SOCKET_NAME), path);
    let _ = fs::remove_dir_all(&private);
    bound
}

fn bind_and_move(tmp: &Path, path: &Path) -> io::Result<UnixListener> {
    let listener = UnixListener::bind(tmp)?;
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o600))?;
    // rename(2) replaces a stale socket atomically.
    fs::rename(tmp, path)?;
    Ok(listener)
}

async fn accept_loop(
    listener: UnixListener,
    path: PathBuf,
    spool: PathBuf,
    queue: Arc<Queue>,
    mut shutdown: watch::Receiver<bool>,
) {
    let euid = nix::unistd::geteuid().as_raw();
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let conn = Connection {
                        spool: spool.clone(),
                        queue: queue.clone(),
                        euid,
                    };
                    tokio::spawn(conn.run(stream));
                }
                Err(e) => {
                    warn!("control event=accept-failed error=\"{e}\"");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    if let Err(e) = fs::remove_file(&path) {
        warn!(
            "control event=unlink-failed socket={} error=\"{e}\"",
            path.display()
        );
    }
    info!("control event=stopped");
}

/// One client connection.
struct Connection {
    spool: PathBuf,
    queue: Arc<Queue>,
    euid: u32,
}

impl Connection {
    async fn run(self, stream: UnixStream) {
        let uid = match stream.peer_cred() {
            Ok(cred) => cred.uid(),
            Err(e) => {
                warn!("control event=refused reason=\"no peer credentials: {e}\"");
                return;
            }
        };
        if uid != 0 && uid != self.euid {
            warn!("control event=refused uid={uid}");
            let _ = tokio::time::timeout(
                CONNECTION_TIMEOUT,
                write_response(stream, &Response::error("permission denied")),
            )
            .await;
            return;
        }
        match tokio::time::timeout(CONNECTION_TIMEOUT, self.exchange(stream, uid)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("control event=io-error uid={uid} error=\"{e}\""),
            Err(_) => warn!("control event=timeout uid={uid}"),
        }
    }

    async fn exchange(&self, stream: UnixStream, uid: u32) -> io::Result<()> {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        (&mut reader)
            .take(MAX_REQUEST as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        let response = if line.last() != Some(&b'\n') {
            Response::error(if line.len() > MAX_REQUEST {
                "request too long"
            } else {
                "request not terminated by a newline"
            })
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(request) => self.execute(request, uid).await,
                Err(e) => Response::error(format!("bad request: {e}")),
            }
        };
        write_response(reader.into_inner(), &response).await
    }

    async fn execute(&self, request: Request, uid: u32) -> Response {
        let id = match request.id.as_deref().map(parse_id).transpose() {
            Ok(id) => id,
            Err(e) => return Response::error(e),
        };
        let id_field = id
            .as_ref()
            .map_or_else(String::new, |id| format!(" id={id}"));
        info!(
            "control event={}{id_field} uid={uid}",
            cmd_name(request.cmd)
        );
        match (request.cmd, id) {
            (Cmd::List, _) => Response {
                messages: Some(self.queue.list()),
                ..Response::done()
            },
            (Cmd::Show, Some(id)) => self.show(id).await,
            (Cmd::Flush, id) => {
                if let Some(id) = &id {
                    if !self.is_queued(id) {
                        return not_queued(id);
                    }
                }
                self.queue.flush(id.as_ref());
                Response::done()
            }
            (Cmd::Remove, Some(id)) => {
                let queue = self.queue.clone();
                let gone = id.clone();
                // It unlinks files: off the async threads.
                match tokio::task::spawn_blocking(move || queue.remove(&gone)).await {
                    Ok(true) => Response::done(),
                    Ok(false) => not_queued(&id),
                    Err(e) => Response::error(format!("remove failed: {e}")),
                }
            }
            (Cmd::Pause, _) => {
                self.queue.pause();
                Response::done()
            }
            (Cmd::Resume, _) => {
                self.queue.resume();
                Response::done()
            }
            (Cmd::Show | Cmd::Remove, None) => Response::error("this command needs a queue id"),
        }
    }

    fn is_queued(&self, id: &QueueId) -> bool {
        self.queue.list().iter().any(|m| &m.id == id)
    }

    /// The summary comes from the queue (it knows what is being delivered); the headers from
    /// the spool file, read-only.
    async fn show(&self, id: QueueId) -> Response {
        let Some(message) = self.queue.list().into_iter().find(|m| m.id == id) else {
            return not_queued(&id);
        };
        let spool = self.spool.clone();
        let read = tokio::task::spawn_blocking(move || ownmail_queue::read_message(&spool, &id))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        // Delivered and removed meanwhile: still show what was asked.
        let headers = match read {
            Ok(Some((_, bytes))) => Some(header_section(&bytes)),
            Ok(None) => None,
            Err(e) => return Response::error(format!("cannot read the message: {e}")),
        };
        Response {
            messages: Some(vec![message]),
            headers,
            ..Response::done()
        }
    }
}

fn parse_id(id: &str) -> Result<QueueId, String> {
    QueueId::parse(id).ok_or_else(|| format!("{id:?} is not a queue id"))
}

fn not_queued(id: &QueueId) -> Response {
    Response::error(format!("no message {id} in the queue"))
}

fn cmd_name(cmd: Cmd) -> &'static str {
    match cmd {
        Cmd::List => "list",
        Cmd::Show => "show",
        Cmd::Flush => "flush",
        Cmd::Remove => "remove",
        Cmd::Pause => "pause",
        Cmd::Resume => "resume",
    }
}

/// The header section of a message (up to and including the blank line, or all of it if
/// there is none), capped and decoded leniently for display.
pub fn header_section(message: &[u8]) -> String {
    let end = message
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| i + 1)
        .into_iter()
        .chain(
            message
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| i + 2),
        )
        .min()
        .unwrap_or(message.len());
    let head = message.get(..end.min(MAX_SHOWN_HEADER)).unwrap_or(message);
    String::from_utf8_lossy(head).into_owned()
}

async fn write_response(mut stream: UnixStream, response: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_are_one_json_line() {
        let req = Request {
            cmd: Cmd::Flush,
            id: None,
        };
        assert_eq!(
            serde_json::to_string(&req).expect("json"),
            r#"{"cmd":"flush"}"#
        );
        let back: Request =
            serde_json::from_str(r#"{"cmd":"remove","id":"0123456789abcdef0123"}"#).expect("json");
        assert_eq!(back.cmd, Cmd::Remove);
        assert_eq!(
            serde_json::to_string(&Response::error("no")).expect("json"),
            r#"{"ok":false,"error":"no"}"#
        );
    }

    #[test]
    fn header_section_stops_at_the_first_blank_line() {
        assert_eq!(
            header_section(b"Subject: a\r\nX: b\r\n\r\nbody\r\n\r\nmore"),
            "Subject: a\r\nX: b\r\n"
        );
        assert_eq!(header_section(b"Subject: a\n\nbody"), "Subject: a\n");
        assert_eq!(header_section(b"Subject: no body"), "Subject: no body");
    }
}
