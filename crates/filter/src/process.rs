//! One `proc-exec` filter process: spawned once for the whole server, shared by every session
//! and multiplexed by (session id, token). A reader task routes the filter's answers to the
//! waiting requests; a writer task owns its stdin; stderr is logged line by line.
//!
//! Invariants:
//! - A process that crashes, hangs (no answer within the request's timeout) or writes garbage
//!   is marked broken at once: it is killed, every waiting request gets an error (the session
//!   answers 421/451), and a restart is scheduled with a doubling backoff. Sessions keep the
//!   process they started with: a new process never sees a session it has no `link-connect`
//!   for, so a session whose process broke tempfails its later requests.
//! - No await on a filter is unbounded: every send and every answer has a deadline; the
//!   reader never waits on a session that stopped listening.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

use crate::protocol::{self, Output, Phase, Register, Registrations, Response, SessionId, Token};
use crate::Settings;

/// Lines waiting to be written to one filter's stdin.
const WRITE_QUEUE: usize = 4096;
/// Data lines a filter has answered that the session has not taken yet.
const DATA_QUEUE: usize = 1024;
/// Requests waiting (or abandoned) at one filter before it counts as hung.
const MAX_PENDING: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the maps half-updated in a way
    // that matters more than stopping filtering: keep going with the data as it is.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who is waiting for answers with this (session, token).
enum Pending {
    Result(oneshot::Sender<Response>),
    Data(mpsc::Sender<Vec<u8>>),
    /// The session stopped waiting (it went away): a late answer is read and dropped.
    Abandoned,
}

/// A configured `proc-exec` filter: the process currently serving it, if healthy.
pub(crate) struct FilterProc {
    pub name: Arc<str>,
    command: String,
    settings: Arc<Settings>,
    state: Mutex<ProcState>,
}

struct ProcState {
    current: Option<Arc<Running>>,
    /// What the last healthy process registered: a session started while the filter is
    /// down still knows which of its requests must tempfail.
    registrations: Registrations,
    backoff: Duration,
    restarting: bool,
    closed: bool,
}

impl FilterProc {
    pub fn new(name: &str, command: &str, settings: Arc<Settings>) -> Arc<FilterProc> {
        Arc::new(FilterProc {
            name: Arc::from(name),
            command: command.to_string(),
            state: Mutex::new(ProcState {
                current: None,
                registrations: Registrations::default(),
                backoff: settings.restart_backoff,
                restarting: false,
                closed: false,
            }),
            settings,
        })
    }

    /// Spawns the first process; an error names what went wrong.
    pub async fn start(self: &Arc<Self>) -> Result<(), String> {
        let running = self.spawn().await?;
        let mut st = lock(&self.state);
        st.registrations = running.registrations;
        st.current = Some(running);
        Ok(())
    }

    /// The healthy process and what this filter registered (from the last healthy one).
    pub fn current(&self) -> (Option<Arc<Running>>, Registrations) {
        let st = lock(&self.state);
        let current = st.current.clone().filter(|r| !r.is_broken());
        (current, st.registrations)
    }

    /// Stops the process for good (server shutdown): no restart follows.
    pub fn close(&self) {
        let current = {
            let mut st = lock(&self.state);
            st.closed = true;
            st.current.take()
        };
        if let Some(r) = current {
            r.kill();
        }
    }

    fn schedule_restart(self: &Arc<Self>, lived: Duration) {
        let delay = {
            let mut st = lock(&self.state);
            if st.closed || st.restarting {
                return;
            }
            st.current = None;
            st.restarting = true;
            // A process that served for a while earns a fresh, short backoff.
            if lived >= self.settings.restart_backoff_max {
                st.backoff = self.settings.restart_backoff;
            }
            let delay = st.backoff;
            st.backoff = (st.backoff * 2).min(self.settings.restart_backoff_max);
            delay
        };
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut delay = delay;
            loop {
                tokio::time::sleep(delay).await;
                let Some(p) = weak.upgrade() else { return };
                if lock(&p.state).closed {
                    return;
                }
                match p.spawn().await {
                    Ok(running) => {
                        let mut st = lock(&p.state);
                        st.restarting = false;
                        if st.closed {
                            running.kill();
                            return;
                        }
                        tracing::info!(filter = %p.name, "filter restarted");
                        st.registrations = running.registrations;
                        st.current = Some(running);
                        return;
                    }
                    Err(e) => {
                        let mut st = lock(&p.state);
                        if st.closed {
                            st.restarting = false;
                            return;
                        }
                        delay = st.backoff;
                        st.backoff = (st.backoff * 2).min(p.settings.restart_backoff_max);
                        tracing::error!(filter = %p.name, error = %e, retry_in = ?delay, "filter restart failed");
                    }
                }
            }
        });
    }

    /// Starts the command and runs the handshake (smtpd-filters(7) PROTOCOL), bounded by
    /// `handshake_timeout`.
    async fn spawn(self: &Arc<Self>) -> Result<Arc<Running>, String> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: `sh -c` may fork the command rather than exec it, and a
            // hung filter must die whole (see `kill_group`).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {:?}: {e}", self.command))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("no pipes to the filter process".into());
        };
        tokio::spawn(log_stderr(self.name.clone(), BufReader::new(stderr)));
        let mut stdout = BufReader::new(stdout);

        let handshake = async {
            let config = protocol::handshake(
                self.settings.session_timeout_secs,
                self.settings.admd.as_deref(),
            );
            stdin
                .write_all(&config)
                .await
                .map_err(|e| format!("writing the handshake: {e}"))?;
            stdin
                .flush()
                .await
                .map_err(|e| format!("writing the handshake: {e}"))?;
            let mut reg = Registrations::default();
            let mut line = Vec::new();
            loop {
                match read_line(&mut stdout, &mut line).await {
                    Ok(true) => {}
                    Ok(false) => return Err("exited during the handshake".to_string()),
                    Err(e) => return Err(format!("reading the handshake: {e}")),
                }
                match protocol::parse_register(&line) {
                    Ok(Register::Ready) => return Ok(reg),
                    Ok(Register::Report(e)) => reg.add_event(e),
                    Ok(Register::AllReports) => {
                        protocol::Event::ALL.iter().for_each(|e| reg.add_event(*e))
                    }
                    Ok(Register::Filter(p)) => reg.add_phase(p),
                    Err(e) => return Err(format!("bad handshake line: {e}")),
                }
            }
        };
        let timeout = self.settings.handshake_timeout;
        let registrations = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(reg)) => reg,
            Ok(Err(e)) => {
                kill_group(child);
                return Err(e);
            }
            Err(_) => {
                kill_group(child);
                return Err(format!("no register|ready within {timeout:?}"));
            }
        };
        tracing::info!(filter = %self.name, registered = %registrations.describe(), "filter started");

        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        let running = Arc::new(Running {
            name: self.name.clone(),
            registrations,
            writer,
            pending: Mutex::new(HashMap::new()),
            broken: AtomicBool::new(false),
            started: Instant::now(),
            child: Mutex::new(Some(child)),
            owner: Arc::downgrade(self),
        });
        tokio::spawn(write_lines(Arc::downgrade(&running), stdin, queue));
        tokio::spawn(read_answers(running.clone(), stdout));
        Ok(running)
    }
}

/// One live filter process.
pub(crate) struct Running {
    pub name: Arc<str>,
    pub registrations: Registrations,
    writer: mpsc::Sender<Vec<u8>>,
    pending: Mutex<HashMap<(SessionId, Token), Pending>>,
    broken: AtomicBool,
    started: Instant,
    child: Mutex<Option<Child>>,
    owner: Weak<FilterProc>,
}

/// Removes a request's entry when the request ends, however it ends.
struct PendingGuard<'a> {
    running: &'a Running,
    key: (SessionId, Token),
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let mut pending = lock(&self.running.pending);
        if let Some(entry) = pending.get_mut(&self.key) {
            // Still there: the answer has not (fully) come. If the filter is alive it may
            // still answer; keep the key so that answer is not taken for garbage.
            *entry = Pending::Abandoned;
        }
    }
}

pub(crate) fn now() -> String {
    protocol::timestamp(SystemTime::now())
}

impl Running {
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    fn kill(&self) {
        self.broken.store(true, Ordering::SeqCst);
        if let Some(child) = lock(&self.child).take() {
            kill_group(child);
        }
        lock(&self.pending).clear();
    }

    /// Marks the process broken: kill it, fail every waiting request, schedule a restart.
    pub fn fail(&self, why: &str) {
        if self.broken.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::error!(filter = %self.name, reason = %why, "filter broken: its requests tempfail until it is restarted");
        self.kill();
        if let Some(owner) = self.owner.upgrade() {
            owner.schedule_restart(self.started.elapsed());
        }
    }

    /// Queues one line for stdin; waits at most `timeout` for room.
    pub async fn send(&self, line: Vec<u8>, timeout: Duration) -> Result<(), String> {
        if self.is_broken() {
            return Err("filter is down".into());
        }
        match tokio::time::timeout(timeout, self.writer.send(line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => {
                self.fail("its stdin is closed");
                Err("filter is down".into())
            }
            Err(_) => {
                self.fail(&format!("its stdin stayed full for {timeout:?}"));
                Err("filter is not reading".into())
            }
        }
    }

    /// Queues one line without waiting (for `Drop`); a full queue loses the line.
    pub fn try_send(&self, line: Vec<u8>) {
        if !self.is_broken() && self.writer.try_send(line).is_err() {
            tracing::warn!(filter = %self.name, "filter input queue full: report dropped");
        }
    }

    fn register(
        &self,
        key: (SessionId, Token),
        entry: Pending,
    ) -> Result<PendingGuard<'_>, String> {
        let mut pending = lock(&self.pending);
        if self.is_broken() {
            return Err("filter is down".into());
        }
        if pending.len() >= MAX_PENDING {
            drop(pending);
            self.fail("too many unanswered requests");
            return Err("filter is not answering".into());
        }
        pending.insert(key, entry);
        Ok(PendingGuard { running: self, key })
    }

    /// One filter request and its `filter-result`.
    pub async fn request(
        &self,
        session: SessionId,
        phase: Phase,
        params: &[&str],
        timeout: Duration,
    ) -> Result<Response, String> {
        let token = Token::random();
        let (tx, rx) = oneshot::channel();
        let _guard = self.register((session, token), Pending::Result(tx))?;
        let deadline = tokio::time::Instant::now() + timeout;
        self.send(
            protocol::filter(&now(), phase, session, token, params),
            timeout,
        )
        .await?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err("filter broke before answering".into()),
            Err(_) => {
                self.fail(&format!("no answer to {} within {timeout:?}", phase.name()));
                Err("filter did not answer in time".into())
            }
        }
    }

    /// The data-line phase for one message: sends `lines` and `.`, returns the lines the
    /// filter wrote back before its `.`. Sending and collecting run together: a filter may
    /// echo lines as they come, and neither side may wait for the other to finish.
    pub async fn data(
        &self,
        session: SessionId,
        lines: &[Vec<u8>],
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, String> {
        let token = Token::random();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(DATA_QUEUE);
        let _guard = self.register((session, token), Pending::Data(tx))?;
        let send_all = async {
            for line in lines {
                self.send(protocol::data_line(&now(), session, token, line), timeout)
                    .await?;
            }
            self.send(protocol::data_line(&now(), session, token, b"."), timeout)
                .await
        };
        let collect = async move {
            let mut out = Vec::new();
            let mut total = 0usize;
            while let Some(line) = rx.recv().await {
                if line == b"." {
                    return Ok(out);
                }
                total = total.saturating_add(line.len() + 2);
                if total > max_bytes {
                    return Err(format!("more than {max_bytes} bytes of output"));
                }
                out.push(line);
            }
            Err("filter broke before its final dot".to_string())
        };
        let both = async {
            let (sent, collected) = tokio::join!(send_all, collect);
            sent?;
            collected
        };
        match tokio::time::timeout(timeout, both).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => {
                self.fail(&format!("data-line: {e}"));
                Err(e)
            }
            Err(_) => {
                self.fail(&format!("data-line not finished within {timeout:?}"));
                Err("filter did not finish the message in time".into())
            }
        }
    }

    /// Routes one answer line; `Err` means the filter is broken.
    async fn route(&self, line: &[u8]) -> Result<(), String> {
        let show = || String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
        match protocol::parse_output(line) {
            Err(e) => Err(format!("garbage ({e}): {}", show())),
            Ok(Output::Report { text }) => {
                tracing::info!(filter = %self.name, report = %text, "filter report");
                Ok(())
            }
            Ok(Output::Result {
                session,
                token,
                response,
            }) => {
                let entry = lock(&self.pending).remove(&(session, token));
                match entry {
                    Some(Pending::Result(tx)) => {
                        let _ = tx.send(response);
                        Ok(())
                    }
                    Some(Pending::Abandoned) => Ok(()),
                    Some(Pending::Data(_)) => {
                        Err(format!("filter-result during data-line: {}", show()))
                    }
                    None => Err(format!("answer to no request: {}", show())),
                }
            }
            Ok(Output::DataLine {
                session,
                token,
                line: data,
            }) => {
                let key = (session, token);
                let sender = {
                    let mut pending = lock(&self.pending);
                    let last = data == b".";
                    match pending.get(&key) {
                        Some(Pending::Data(tx)) => {
                            let tx = tx.clone();
                            if last {
                                pending.remove(&key);
                            }
                            Some(tx)
                        }
                        Some(Pending::Abandoned) => {
                            if last {
                                pending.remove(&key);
                            }
                            None
                        }
                        Some(Pending::Result(_)) => {
                            return Err(format!("filter-dataline outside data-line: {}", show()))
                        }
                        None => return Err(format!("data line for no request: {}", show())),
                    }
                };
                if let Some(tx) = sender {
                    // Waits only while the session is collecting; a session that stopped
                    // has dropped its receiver and this returns at once.
                    let _ = tx.send(data).await;
                }
                Ok(())
            }
        }
    }
}

async fn write_lines(
    running: Weak<Running>,
    mut stdin: ChildStdin,
    mut queue: mpsc::Receiver<Vec<u8>>,
) {
    while let Some(line) = queue.recv().await {
        let mut result = stdin.write_all(&line).await;
        if result.is_ok() && queue.is_empty() {
            result = stdin.flush().await;
        }
        if let Err(e) = result {
            if let Some(r) = running.upgrade() {
                r.fail(&format!("writing to it: {e}"));
            }
            return;
        }
    }
}

async fn read_answers<R: AsyncBufRead + Unpin>(running: Arc<Running>, mut stdout: R) {
    let mut line = Vec::new();
    loop {
        match read_line(&mut stdout, &mut line).await {
            Ok(true) => {}
            Ok(false) => {
                running.fail("it exited");
                return;
            }
            Err(e) => {
                running.fail(&format!("reading from it: {e}"));
                return;
            }
        }
        if running.is_broken() {
            return;
        }
        if let Err(e) = running.route(&line).await {
            running.fail(&e);
            return;
        }
    }
}

/// Kills the filter's whole process group (the shell and whatever it started: killing the
/// shell alone would leave a forked filter running, holding its pipes open) and reaps the
/// shell.
fn kill_group(mut child: Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // The group was made with the child as leader (`process_group(0)`), so its id is the
        // child's pid; the child has not been reaped yet (we hold it), so the id is still ours.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.start_kill();
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move {
                let _ = child.wait().await;
            });
        }
        // No runtime (the server is exiting): `kill_on_drop` has sent the signal; tokio's
        // orphan queue reaps it if a runtime comes back.
        Err(_) => drop(child),
    }
}

async fn log_stderr<R: AsyncBufRead + Unpin>(name: Arc<str>, mut stderr: R) {
    let mut line = Vec::new();
    while let Ok(true) = read_line(&mut stderr, &mut line).await {
        tracing::warn!(filter = %name, stderr = %String::from_utf8_lossy(&line), "filter says");
    }
}

/// Reads one line without its `\n` (and `\r`) into `line`, refusing lines longer than
/// [`protocol::MAX_LINE`]. `Ok(false)` at end of input.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    line.clear();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            // EOF: a last line without newline still counts.
            return Ok(!line.is_empty());
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > protocol::MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line too long",
            ));
        }
        line.extend_from_slice(chunk);
        let used = done.unwrap_or(buf.len());
        r.consume(used);
        if done.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_line_splits_and_bounds() {
        let mut r = BufReader::new(&b"one\r\ntwo\nthree"[..]);
        let mut l = Vec::new();
        assert!(read_line(&mut r, &mut l).await.unwrap());
        assert_eq!(l, b"one");
        assert!(read_line(&mut r, &mut l).await.unwrap());
        assert_eq!(l, b"two");
        assert!(read_line(&mut r, &mut l).await.unwrap());
        assert_eq!(l, b"three");
        assert!(!read_line(&mut r, &mut l).await.unwrap());

        let long = vec![b'x'; protocol::MAX_LINE + 10];
        let mut r = BufReader::new(&long[..]);
        assert!(read_line(&mut r, &mut l).await.is_err());
    }
}
