//! The spool directory: its layout, its file format and the fsync discipline. This module is
//! the only one that reads or writes spool files; everything else asks it.
//!
//! Layout of the spool `dir`:
//! - `queue/<id>`: one accepted message: the line `ownmail-queue 1`, the envelope
//!   ([`Envelope`]) as one line of JSON, then the message bytes exactly as received. Written
//!   once, never modified; removed when no recipient is pending.
//! - `queue/<id>.state`: delivery progress of that message (JSON [`DeliveryState`]: each
//!   recipient pending, delivered or failed with its last error and the longest delay
//!   warning sent for it; rounds made; next attempt).
//!   Absent until a delivery attempt changed something; replaced whole, never edited.
//! - `tmp/`: files being written. Anything there at open was never acknowledged: removed.
//! - `corrupt/`: spool files that could not be read back, moved aside for a human.
//!
//! Invariants:
//! 1. A message is acknowledged only after body + envelope + directory entry are fsynced:
//!    `tmp/<id>` is written and fsynced, renamed to `queue/<id>`, and `queue/` is fsynced
//!    (once for a whole batch: group commit, see `commit.rs`) before `enqueue` resolves.
//! 2. Every file under `queue/` is complete: files get there only by renaming an fsynced
//!    file, so a crash leaves the old version or the new one, never a torn one.
//! 3. A delivered recipient is forgotten only after the courier said Delivered (couriers
//!    fsync first); a failed one only after `Notifier::failed` ran for it.
//! 4. `queue/<id>` is removed before `queue/<id>.state`: a crash in between leaves an orphan
//!    state file, deleted at the next open. The other order would leave a message with no
//!    progress, redelivered to everyone. Removals are not fsynced: if a crash undoes one, the
//!    message is delivered again, which is allowed.
//!
//! So the worst case after a crash is a duplicate delivery, never a loss.
//!
//! Reading is defensive: a file that fails to parse is moved to `corrupt/` and logged, never
//! a panic; an I/O error leaves the file where it is (it is not lost; a later open retries).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use ownmail_types::{Envelope, QueueId};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::durable;

/// The first line of every message file; the number is the format's version.
const HEADER: &[u8] = b"ownmail-queue 1\n";
/// Bounds what is read for the envelope line, so that a corrupt file cannot fill memory.
const MAX_ENVELOPE_LINE: u64 = 16 << 20;
const MAX_STATE_FILE: u64 = 16 << 20;
const STATE_SUFFIX: &str = ".state";

/// What became of one recipient so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Pending,
    Delivered,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecipientState {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The longest `warn_intervals` entry (in ms) the sender was warned about for this
    /// recipient; shorter ones count as sent too. Absent in files of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warned_ms: Option<u64>,
}

/// Delivery progress of one message; `recipients[i]` is `Envelope::recipients[i]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeliveryState {
    /// Delivery rounds made.
    pub attempts: u32,
    /// Milliseconds since the epoch.
    pub next_attempt_ms: u64,
    pub recipients: Vec<RecipientState>,
}

impl DeliveryState {
    /// A message not tried yet: everyone pending, first attempt at `now_ms`.
    pub fn new(recipients: usize, now_ms: u64) -> Self {
        let fresh = RecipientState {
            status: Status::Pending,
            last_error: None,
            warned_ms: None,
        };
        DeliveryState {
            attempts: 0,
            next_attempt_ms: now_ms,
            recipients: vec![fresh; recipients],
        }
    }

    /// Indexes (into the envelope's recipients) still owed a delivery.
    pub fn pending(&self) -> impl Iterator<Item = (usize, &RecipientState)> {
        self.recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status == Status::Pending)
    }

    pub fn has_pending(&self) -> bool {
        self.pending().next().is_some()
    }

    pub fn count(&self, status: Status) -> usize {
        self.recipients
            .iter()
            .filter(|r| r.status == status)
            .count()
    }
}

/// A message found in `queue/` at open.
pub(crate) struct LoadedMessage {
    pub env: Envelope,
    /// None when it has no state file yet (or it was corrupt): nothing delivered so far.
    pub state: Option<DeliveryState>,
}

/// Why a spool file could not be read back.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The disk said no; the file may be fine.
    Io(io::Error),
    /// The content is not what this module writes.
    Corrupt(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// The spool directory. Cheap to share behind an `Arc`; all methods block (call them from
/// `spawn_blocking` in async code).
#[derive(Debug)]
pub(crate) struct Spool {
    queue: PathBuf,
    tmp: PathBuf,
    corrupt: PathBuf,
}

impl Spool {
    /// Opens the spool at `dir`, creating what is missing; empties `tmp/`; loads every
    /// message of `queue/` with its state, moving unreadable files to `corrupt/` and deleting
    /// orphan state files. Fails only if the directories cannot be made or listed.
    pub fn open(dir: &Path) -> io::Result<(Spool, Vec<LoadedMessage>)> {
        let spool = Spool {
            queue: dir.join("queue"),
            tmp: dir.join("tmp"),
            corrupt: dir.join("corrupt"),
        };
        spool.make_dirs(dir)?;
        spool.clean_tmp()?;
        let loaded = spool.load_all()?;
        Ok((spool, loaded))
    }

    fn make_dirs(&self, dir: &Path) -> io::Result<()> {
        if !dir.is_dir() {
            fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                durable::sync_dir(parent)?;
            }
        }
        let mut created = false;
        for sub in [&self.queue, &self.tmp, &self.corrupt] {
            created |= durable::ensure_dir(sub)?;
        }
        if created {
            // The queue/ entry itself must be durable before anything in it is acknowledged.
            durable::sync_dir(dir)?;
        }
        Ok(())
    }

    /// Whatever is in tmp/ was never acknowledged (or is a state file that never replaced
    /// its predecessor): removing it loses nothing.
    fn clean_tmp(&self) -> io::Result<()> {
        let mut removed = 0usize;
        for entry in fs::read_dir(&self.tmp)? {
            let path = entry?.path();
            let result = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match result {
                Ok(()) => removed += 1,
                Err(e) => {
                    warn!(event = %"tmp_cleanup", file = %path.display(), error = ?e.to_string(), "queue")
                }
            }
        }
        if removed > 0 {
            info!(event = %"tmp_cleanup", removed, "queue");
        }
        Ok(())
    }

    fn load_all(&self) -> io::Result<Vec<LoadedMessage>> {
        let mut messages: BTreeMap<QueueId, OsString> = BTreeMap::new();
        let mut states: BTreeMap<QueueId, OsString> = BTreeMap::new();
        for entry in fs::read_dir(&self.queue)? {
            let name = entry?.file_name();
            match classify(&name) {
                Some(Name::Message(id)) => {
                    messages.insert(id, name);
                }
                Some(Name::State(id)) => {
                    states.insert(id, name);
                }
                None => self.move_to_corrupt(&name, "not a spool file name"),
            }
        }

        let mut loaded = Vec::with_capacity(messages.len());
        for (id, name) in &messages {
            let env = match self.read_envelope(id) {
                Ok(env) => env,
                Err(ReadError::Corrupt(reason)) => {
                    self.move_to_corrupt(name, &reason);
                    continue;
                }
                Err(ReadError::Io(e)) => {
                    // Left in place, not loaded: it is still there for the next start.
                    error!(id = %id, event = %"unreadable", error = ?e.to_string(), "queue");
                    continue;
                }
            };
            let state = match states.remove(id) {
                None => None,
                Some(state_name) => match self.read_state(id, &env) {
                    Ok(state) => Some(state),
                    Err(ReadError::Corrupt(reason)) => {
                        // Progress lost: every pending recipient is tried again (duplicates
                        // at worst).
                        self.move_to_corrupt(&state_name, &reason);
                        None
                    }
                    Err(ReadError::Io(e)) => {
                        error!(id = %id, event = %"unreadable", file = %"state", error = ?e.to_string(), "queue");
                        None
                    }
                },
            };
            loaded.push(LoadedMessage { env, state });
        }

        // A state file without its message: the message was removed and the crash came
        // before the state file followed (invariant 4).
        for (id, name) in states {
            if messages.contains_key(&id) {
                continue; // its message was unreadable; keep both for the next start
            }
            match fs::remove_file(self.queue.join(&name)) {
                Ok(()) => info!(id = %id, event = %"orphan_state_removed", "queue"),
                Err(e) => {
                    warn!(id = %id, event = %"orphan_state_removed", error = ?e.to_string(), "queue")
                }
            }
        }
        Ok(loaded)
    }

    fn message_path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(id.as_str())
    }

    fn state_path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(format!("{id}{STATE_SUFFIX}"))
    }

    /// Reads the header and envelope of `queue/<id>`, checking they belong together.
    fn read_envelope(&self, id: &QueueId) -> Result<Envelope, ReadError> {
        let mut reader = BufReader::new(File::open(self.message_path(id))?);
        read_prefix(&mut reader, id)
    }

    fn read_state(&self, id: &QueueId, env: &Envelope) -> Result<DeliveryState, ReadError> {
        let mut data = Vec::new();
        File::open(self.state_path(id))?
            .take(MAX_STATE_FILE + 1)
            .read_to_end(&mut data)?;
        if data.len() as u64 > MAX_STATE_FILE {
            return Err(ReadError::Corrupt("state file too large".into()));
        }
        let state: DeliveryState = serde_json::from_slice(&data)
            .map_err(|e| ReadError::Corrupt(format!("bad state file: {e}")))?;
        if state.recipients.len() != env.recipients.len() {
            return Err(ReadError::Corrupt(format!(
                "state file has {} recipients, envelope {}",
                state.recipients.len(),
                env.recipients.len()
            )));
        }
        Ok(state)
    }

    /// Writes and fsyncs `tmp/<id>` (header, envelope line, message). Not yet acknowledged:
    /// [`Spool::commit`] makes it so.
    pub fn write_tmp(&self, id: &QueueId, envelope_json: &[u8], message: &[u8]) -> io::Result<()> {
        durable::write_synced(
            &self.tmp.join(id.as_str()),
            &[HEADER, envelope_json, b"\n", message],
        )
    }

    /// Moves each `tmp/<id>` into `queue/` and fsyncs `queue/` once for all of them. Returns
    /// one result per id, in order; a failed one leaves no file behind (best effort).
    pub fn commit(&self, ids: &[QueueId]) -> Vec<io::Result<()>> {
        let mut results: Vec<io::Result<()>> = ids
            .iter()
            .map(|id| {
                let tmp = self.tmp.join(id.as_str());
                fs::rename(&tmp, self.message_path(id)).inspect_err(|_| {
                    let _ = fs::remove_file(&tmp);
                })
            })
            .collect();
        if results.iter().any(Result::is_ok) {
            if let Err(e) = durable::sync_dir(&self.queue) {
                for (id, result) in ids.iter().zip(results.iter_mut()) {
                    if result.is_ok() {
                        // Not acknowledged, so better gone; if the unlink is lost too, the
                        // message is delivered without its 250 (a duplicate at worst).
                        let _ = fs::remove_file(self.message_path(id));
                        *result = Err(io::Error::new(
                            e.kind(),
                            format!("fsync of queue directory: {e}"),
                        ));
                    }
                }
            }
        }
        results
    }

    /// The message bytes of `queue/<id>`, without header and envelope.
    pub fn read_message(&self, id: &QueueId) -> Result<Vec<u8>, ReadError> {
        let mut reader = BufReader::new(File::open(self.message_path(id))?);
        read_prefix(&mut reader, id)?;
        let mut message = Vec::new();
        reader.read_to_end(&mut message)?;
        Ok(message)
    }

    /// Durably replaces `queue/<id>.state`.
    pub fn write_state(&self, id: &QueueId, state: &DeliveryState) -> io::Result<()> {
        let json = serde_json::to_vec(state).map_err(io::Error::other)?;
        durable::replace(
            &self.tmp.join(format!("{id}{STATE_SUFFIX}")),
            &self.state_path(id),
            &[&json],
        )
    }

    /// Forgets a message: the message file first, then its state (invariant 4).
    pub fn remove(&self, id: &QueueId) -> io::Result<()> {
        for path in [self.message_path(id), self.state_path(id)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Moves a message that turned out unreadable at delivery time, with its state file, to
    /// `corrupt/`.
    pub fn quarantine(&self, id: &QueueId, reason: &str) {
        self.move_to_corrupt(OsStr::new(id.as_str()), reason);
        let state = format!("{id}{STATE_SUFFIX}");
        if self.queue.join(&state).exists() {
            self.move_to_corrupt(OsStr::new(&state), reason);
        }
    }

    /// Moves `queue/<name>` to `corrupt/` (never overwriting) and logs why.
    fn move_to_corrupt(&self, name: &OsStr, reason: &str) {
        let from = self.queue.join(name);
        let mut to = self.corrupt.join(name);
        let mut n = 1u32;
        while to.exists() {
            let mut numbered = name.to_os_string();
            numbered.push(format!(".{n}"));
            to = self.corrupt.join(numbered);
            n += 1;
        }
        match fs::rename(&from, &to) {
            Ok(()) => {
                error!(event = %"corrupt", file = %from.display(), moved_to = %to.display(), reason, "queue")
            }
            Err(e) => {
                error!(event = %"corrupt", file = %from.display(), reason, error = ?e.to_string(), "queue: cannot move aside")
            }
        }
    }
}

enum Name {
    Message(QueueId),
    State(QueueId),
}

fn classify(name: &OsStr) -> Option<Name> {
    let name = name.to_str()?;
    match name.strip_suffix(STATE_SUFFIX) {
        Some(id) => QueueId::parse(id).map(Name::State),
        None => QueueId::parse(name).map(Name::Message),
    }
}

/// Reads and checks the header line and the envelope line of a message file.
fn read_prefix(reader: &mut impl BufRead, id: &QueueId) -> Result<Envelope, ReadError> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(HEADER.len() as u64)
        .read_until(b'\n', &mut line)?;
    if line != HEADER {
        return Err(ReadError::Corrupt("bad header line".into()));
    }
    line.clear();
    reader
        .by_ref()
        .take(MAX_ENVELOPE_LINE)
        .read_until(b'\n', &mut line)?;
    if line.pop() != Some(b'\n') {
        return Err(ReadError::Corrupt(
            "envelope line truncated or too long".into(),
        ));
    }
    let env: Envelope = serde_json::from_slice(&line)
        .map_err(|e| ReadError::Corrupt(format!("bad envelope: {e}")))?;
    if &env.id != id {
        return Err(ReadError::Corrupt(format!("envelope says id {}", env.id)));
    }
    if env.recipients.is_empty() {
        return Err(ReadError::Corrupt("envelope has no recipients".into()));
    }
    Ok(env)
}
