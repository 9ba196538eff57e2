//! The queue's in-memory table and its doors: `enqueue` (SMTP in) and the admin operations
//! (list, flush, remove, pause). The table holds envelopes and delivery state, never message
//! bytes: those are read from the spool when a delivery starts.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ownmail_types::{BoxFuture, Envelope, MessageSink, QueueId};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::commit::Committer;
use crate::spool::{DeliveryState, Spool};
use crate::{dest_summary, PendingRecipient, QueueOptions, QueuedMessage};

/// The mail queue. Made by [`Queue::open`], shared as `Arc<Queue>`; an `Arc<Queue>` coerces
/// to `Arc<dyn MessageSink>` for the SMTP side.
pub struct Queue {
    /// Lets `enqueue(&self)` run its work in a task of its own (see there).
    me: Weak<Queue>,
    pub(crate) spool: Arc<Spool>,
    committer: Committer,
    pub(crate) opts: QueueOptions,
    table: Mutex<Table>,
    /// Wakes the scheduler: new message, flush, resume, a delivery slot freed.
    pub(crate) wake: Notify,
    pub(crate) paused: AtomicBool,
}

#[derive(Default)]
pub(crate) struct Table {
    pub messages: BTreeMap<QueueId, Entry>,
    /// Ids being written, so that a clashing id can never overwrite a queued file.
    incoming: HashSet<QueueId>,
}

pub(crate) struct Entry {
    pub env: Arc<Envelope>,
    pub state: DeliveryState,
    /// A delivery round owns this message right now; only it touches its files.
    pub in_flight: bool,
    /// Removed by the admin during a round; the round deletes the files when it ends.
    pub removed: bool,
}

impl Queue {
    /// Opens (creating if needed) the spool at `dir`: `dir/queue`, `dir/tmp`, `dir/corrupt`.
    /// Removes leftovers in `tmp/` (never acknowledged). Loads every message in `queue/` for
    /// delivery, resuming where a crash or a restart left it. Unreadable files are moved to
    /// `corrupt/` and logged.
    pub fn open(dir: &Path, opts: QueueOptions) -> io::Result<Arc<Queue>> {
        let (spool, loaded) = Spool::open(dir)?;
        let spool = Arc::new(spool);
        let committer = Committer::start(spool.clone())?;
        let now = now_ms();
        let mut table = Table::default();
        for message in loaded {
            let id = message.env.id.clone();
            let state = message
                .state
                .unwrap_or_else(|| DeliveryState::new(message.env.recipients.len(), now));
            if !state.has_pending() {
                // Finished just before the crash, unlinks not done yet.
                if let Err(e) = spool.remove(&id) {
                    warn!(id = %id, event = %"remove", error = ?e.to_string(), "queue");
                }
                continue;
            }
            let entry = Entry {
                env: Arc::new(message.env),
                state,
                in_flight: false,
                removed: false,
            };
            table.messages.insert(id, entry);
        }
        info!(event = %"opened", dir = %dir.display(), messages = table.messages.len(), "queue");
        Ok(Arc::new_cyclic(|me| Queue {
            me: me.clone(),
            spool,
            committer,
            opts,
            table: Mutex::new(table),
            wake: Notify::new(),
            paused: AtomicBool::new(false),
        }))
    }

    /// The table, even if a panicking thread held it: every change to it is a single
    /// assignment, so it is never left half-updated.
    pub(crate) fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every queued message with its pending recipients, oldest first.
    pub fn list(&self) -> Vec<QueuedMessage> {
        let table = self.table();
        table
            .messages
            .iter()
            .filter(|(_, entry)| !entry.removed)
            .map(|(id, entry)| {
                let pending: Vec<PendingRecipient> = entry
                    .state
                    .pending()
                    .filter_map(|(i, st)| {
                        let r = entry.env.recipients.get(i)?;
                        Some(PendingRecipient {
                            rcpt: r.rcpt.clone(),
                            dest: dest_summary(&r.dest),
                            last_error: st.last_error.clone(),
                        })
                    })
                    .collect();
                QueuedMessage {
                    id: id.clone(),
                    mail_from: entry.env.mail_from.clone(),
                    received_at: entry.env.received_at,
                    last_error: pending.iter().rev().find_map(|p| p.last_error.clone()),
                    pending,
                    attempts: entry.state.attempts,
                    next_attempt: UNIX_EPOCH + Duration::from_millis(entry.state.next_attempt_ms),
                    delivering: entry.in_flight,
                }
            })
            .collect()
    }

    /// Retries now: the message `id`, or every message. A message being delivered right now
    /// is not affected. Works while paused too, but takes effect at `resume`.
    pub fn flush(&self, id: Option<&QueueId>) {
        let now = now_ms();
        let mut table = self.table();
        for (key, entry) in table.messages.iter_mut() {
            if id.is_none_or(|id| id == key) && !entry.in_flight {
                entry.state.next_attempt_ms = now;
            }
        }
        drop(table);
        self.wake.notify_one();
    }

    /// Drops a message from the queue, pending recipients and all (no bounce). False if no
    /// such message.
    pub fn remove(&self, id: &QueueId) -> bool {
        let mut table = self.table();
        let Some(entry) = table.messages.get_mut(id) else {
            return false;
        };
        if entry.removed {
            return false;
        }
        if entry.in_flight {
            entry.removed = true;
            info!(id = %id, event = %"removed", by = %"admin", "queue");
            return true;
        }
        // Unlinked under the lock, so that no round starts on it meanwhile; out of the table
        // only once off the disk.
        if let Err(e) = self.spool.remove(id) {
            warn!(id = %id, event = %"remove", error = ?e.to_string(), "queue");
        }
        table.messages.remove(id);
        drop(table);
        info!(id = %id, event = %"removed", by = %"admin", "queue");
        true
    }

    /// Stops starting deliveries (those running finish).
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        info!(event = %"paused", "queue");
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        info!(event = %"resumed", "queue");
        self.wake.notify_one();
    }

    /// Messages in the queue.
    pub fn len(&self) -> usize {
        self.table()
            .messages
            .values()
            .filter(|e| !e.removed)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batches committed so far: each is one fsync of `queue/` acknowledging one or more
    /// messages.
    pub fn commits(&self) -> u64 {
        self.committer.commits()
    }

    #[cfg(test)]
    pub(crate) fn commit_hold(&self) -> &crate::commit::test_hold::Hold {
        &self.committer.hold
    }

    /// The work of `enqueue`, in a task of its own.
    async fn accept(self: Arc<Self>, env: Envelope, message: Vec<u8>) -> Result<(), String> {
        let id = env.id.clone();
        // The id names a file: only what QueueId::new makes is allowed.
        if QueueId::parse(id.as_str()).is_none() {
            return Err(format!("invalid queue id {id:?}"));
        }
        if env.recipients.is_empty() {
            return Err("no recipients".into());
        }
        let _reservation = self.reserve(&id)?;
        let json = serde_json::to_vec(&env).map_err(|e| format!("cannot encode envelope: {e}"))?;
        let size = message.len();

        let spool = self.spool.clone();
        let tmp_id = id.clone();
        let written =
            tokio::task::spawn_blocking(move || spool.write_tmp(&tmp_id, &json, &message))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
        if let Err(e) = written {
            warn!(id = %id, event = %"enqueue_failed", error = ?e.to_string(), "queue");
            return Err(format!("cannot write to the queue: {e}"));
        }
        if let Err(e) = self.committer.commit(id.clone()).await {
            warn!(id = %id, event = %"enqueue_failed", error = ?e.to_string(), "queue");
            return Err(format!("cannot commit to the queue: {e}"));
        }

        info!(id = %id, event = %"queued", from = %env.mail_from, rcpts = env.recipients.len(), size, "queue");
        let state = DeliveryState::new(env.recipients.len(), now_ms());
        let entry = Entry {
            env: Arc::new(env),
            state,
            in_flight: false,
            removed: false,
        };
        self.table().messages.insert(id, entry);
        self.wake.notify_one();
        Ok(())
    }

    fn reserve(&self, id: &QueueId) -> Result<Reservation<'_>, String> {
        let mut table = self.table();
        if table.messages.contains_key(id) || !table.incoming.insert(id.clone()) {
            return Err(format!("queue id {id} already in use"));
        }
        Ok(Reservation {
            queue: self,
            id: id.clone(),
        })
    }
}

/// Holds an id in `Table::incoming` while its message is written.
struct Reservation<'a> {
    queue: &'a Queue,
    id: QueueId,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.queue.table().incoming.remove(&self.id);
    }
}

impl MessageSink for Queue {
    /// Resolves once the message is in `queue/` with its envelope, file and directory
    /// fsynced (see `spool.rs`); an `Err` means it is not queued (SMTP answers 451).
    fn enqueue(&self, env: Envelope, message: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        let me = self.me.upgrade();
        Box::pin(async move {
            let me = me.ok_or("the queue is shutting down")?;
            // A task of its own, so that a client hanging up mid-write cannot cancel the
            // work halfway: the message either never reaches queue/, or reaches it and is
            // delivered (the client, lacking its 250, may send it again: a duplicate).
            tokio::spawn(me.accept(env, message))
                .await
                .map_err(|e| format!("queue task failed: {e}"))?
        })
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
