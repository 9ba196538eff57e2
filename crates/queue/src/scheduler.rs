//! The scheduler (SPEC §5.4): starts a delivery round for every message whose time has
//! come, up to `max_concurrent_deliveries` at once. A round reads the message from the spool
//! and offers it to the courier once per pending recipient, one after another. A recipient
//! that fails temporarily is retried at the next round (first at once, then after each of
//! `retry_delays` in turn); past the ttl, or on a permanent failure, it is given up and
//! [`Notifier::failed`] is told. A recipient still failing temporarily once the message is
//! older than one of `warn_intervals` makes a [`Notifier::delayed`], once per interval: the
//! longest interval warned is kept in the state file, so a restart does not warn again.
//! When no recipient is left the message is removed.
//!
//! Progress is saved (`queue/<id>.state`) after every round that leaves recipients pending,
//! and also after a recipient is delivered or given up while others are still to be tried in
//! the same round, so that a crash mid-round repeats as little as possible.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ownmail_types::{Courier, DeliveryOutcome, Destination, Envelope, QueueId, Recipient};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tracing::{error, info, warn};

use crate::queue::{now_ms, Queue};
use crate::spool::{ReadError, Status};
use crate::Notifier;

/// How long a stopping scheduler waits for the deliveries under way.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// The wait between attempts when `retry_delays` is empty.
const FALLBACK_RETRY_DELAY: Duration = Duration::from_secs(3600);

impl Queue {
    /// Starts the scheduler: delivers every pending recipient via `courier`, first attempt at
    /// once, then retries with growing delays; ttl expiry or a permanent failure drops the
    /// recipient from the queue and calls [`Notifier::failed`], a long delay calls
    /// [`Notifier::delayed`]. Returns when `shutdown` turns true (or its sender is dropped),
    /// after the deliveries under way finish — at most 10 s, then they are cut short and
    /// retried at the next start. Start it once per queue.
    pub fn start(
        self: &Arc<Self>,
        courier: Arc<dyn Courier>,
        notifier: Arc<dyn Notifier>,
        shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(self.clone().run(courier, notifier, shutdown))
    }

    async fn run(
        self: Arc<Self>,
        courier: Arc<dyn Courier>,
        notifier: Arc<dyn Notifier>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        info!(event = %"scheduler_started", messages = self.len(), "queue");
        let mut running = JoinSet::new();
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            let next = self.start_due(&mut running, &courier, &notifier);
            let sleep = async move {
                match next {
                    Some(at) => {
                        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = self.wake.notified() => {}
                () = sleep => {}
                Some(done) = running.join_next(), if !running.is_empty() => log_panic(done),
            }
        }

        info!(
            event = %"scheduler_stopping",
            in_flight = running.len(),
            "queue"
        );
        let drain = async {
            while let Some(done) = running.join_next().await {
                log_panic(done);
            }
        };
        if tokio::time::timeout(SHUTDOWN_WAIT, drain).await.is_err() {
            warn!(
                event = %"shutdown_timeout",
                cut_short = running.len(),
                "queue: retried at next start"
            );
            running.shutdown().await;
        }
        info!(event = %"scheduler_stopped", "queue");
    }

    /// Starts a round for each due message while slots are free; returns when the next
    /// not-yet-due message falls due (ms since the epoch), if any. A scan of the whole table
    /// per wake-up: plenty for the thousands of messages a personal server may hold.
    fn start_due(
        self: &Arc<Self>,
        running: &mut JoinSet<()>,
        courier: &Arc<dyn Courier>,
        notifier: &Arc<dyn Notifier>,
    ) -> Option<u64> {
        if self.paused.load(Ordering::SeqCst) {
            return None;
        }
        let now = now_ms();
        let free = self
            .opts
            .max_concurrent_deliveries
            .max(1)
            .saturating_sub(running.len());
        let mut due = Vec::new();
        let mut next: Option<u64> = None;
        let mut table = self.table();
        for (id, entry) in &table.messages {
            if entry.in_flight || entry.removed {
                continue;
            }
            let at = entry.state.next_attempt_ms;
            if at <= now {
                due.push((at, id.clone()));
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        // Longest waiting first; those left over start when a slot frees (join_next wakes us).
        due.sort_unstable();
        due.truncate(free);
        for (_, id) in &due {
            if let Some(entry) = table.messages.get_mut(id) {
                entry.in_flight = true;
            }
        }
        drop(table);
        for (_, id) in due {
            running.spawn(self.clone().deliver(id, courier.clone(), notifier.clone()));
        }
        next
    }

    /// One delivery round of message `id` (marked in flight by the caller).
    async fn deliver(
        self: Arc<Self>,
        id: QueueId,
        courier: Arc<dyn Courier>,
        notifier: Arc<dyn Notifier>,
    ) {
        let mut round = RoundGuard {
            queue: self.clone(),
            id: id.clone(),
            finished: false,
        };
        let Some((env, pending, attempts)) = self.snapshot(&id) else {
            round.finished = true;
            return;
        };
        let round = Round {
            queue: &self,
            id: &id,
            env: &env,
            notifier: &*notifier,
            attempts,
            guard: round,
        };

        let spool = self.spool.clone();
        let read_id = id.clone();
        let read = tokio::task::spawn_blocking(move || spool.read_message(&read_id))
            .await
            .unwrap_or_else(|e| Err(ReadError::Io(io::Error::other(e))));
        let message = match read {
            Ok(message) => message,
            Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                error!(id = %id, event = %"lost", "queue: message file vanished from the spool");
                self.forget(&id);
                return round.finish();
            }
            Err(ReadError::Corrupt(reason)) => {
                let spool = self.spool.clone();
                let bad_id = id.clone();
                let _ =
                    tokio::task::spawn_blocking(move || spool.quarantine(&bad_id, &reason)).await;
                self.forget(&id);
                return round.finish();
            }
            Err(ReadError::Io(e)) => {
                for &i in &pending {
                    let reason = format!("cannot read the queued message: {e}");
                    // No bytes to show: a failure notice due now goes out without them.
                    round.record(i, DeliveryOutcome::TempFail { reason }, &[]);
                }
                return round.end().await;
            }
        };

        // Recipients that leave this host go to the courier together (one transaction per
        // destination host); local deliveries one at a time, saving progress after each so
        // that a crash repeats as few of them as possible.
        let (remote, local): (Vec<usize>, Vec<usize>) = pending
            .iter()
            .copied()
            .filter(|i| env.recipients.get(*i).is_some())
            .partition(|i| {
                env.recipients
                    .get(*i)
                    .is_some_and(|r| matches!(r.dest, Destination::Relay { .. }))
            });
        if !remote.is_empty() && !self.is_removed(&id) {
            let rcpts: Vec<&Recipient> = remote
                .iter()
                .filter_map(|i| env.recipients.get(*i))
                .collect();
            let outcomes = courier.deliver_batch(&env, &rcpts, &message).await;
            for (&i, outcome) in remote.iter().zip(outcomes) {
                round.record(i, outcome, &message);
            }
            if !local.is_empty() {
                self.save(&id).await;
            }
        }
        for (k, &i) in local.iter().enumerate() {
            if self.is_removed(&id) {
                break;
            }
            let Some(rcpt) = env.recipients.get(i) else {
                continue;
            };
            let outcome = courier.deliver(&env, rcpt, &message).await;
            let settled = round.record(i, outcome, &message);
            if settled && k + 1 < local.len() {
                self.save(&id).await;
            }
        }
        round.end().await
    }

    /// The envelope, the pending recipients and the rounds made, unless removed.
    fn snapshot(&self, id: &QueueId) -> Option<(Arc<Envelope>, Vec<usize>, u32)> {
        let table = self.table();
        let entry = table.messages.get(id).filter(|e| !e.removed)?;
        Some((
            entry.env.clone(),
            entry.state.pending().map(|(i, _)| i).collect(),
            entry.state.attempts,
        ))
    }

    fn is_removed(&self, id: &QueueId) -> bool {
        self.table().messages.get(id).is_none_or(|e| e.removed)
    }

    fn forget(&self, id: &QueueId) {
        self.table().messages.remove(id);
    }

    fn set_recipient(
        &self,
        id: &QueueId,
        index: usize,
        status: Status,
        last_error: Option<String>,
    ) {
        let mut table = self.table();
        let Some(entry) = table.messages.get_mut(id) else {
            return;
        };
        if let Some(r) = entry.state.recipients.get_mut(index) {
            r.status = status;
            r.last_error = last_error;
        }
    }

    /// The delay warning due for recipient `index` of `env` at `now` (ms), marked as sent:
    /// the longest of `warn_intervals` that the message's age has passed and that is longer
    /// than any warned before. After a long downtime this warns once, not once per interval.
    fn take_warning(
        &self,
        id: &QueueId,
        index: usize,
        env: &Envelope,
        now: u64,
    ) -> Option<Duration> {
        let age = now.saturating_sub(env.received_at.saturating_mul(1000));
        let mut table = self.table();
        let state = table
            .messages
            .get_mut(id)?
            .state
            .recipients
            .get_mut(index)?;
        let due = self
            .opts
            .warn_intervals
            .iter()
            .copied()
            .filter(|d| millis(*d) <= age && state.warned_ms.is_none_or(|w| millis(*d) > w))
            .max()?;
        state.warned_ms = Some(millis(due));
        Some(due)
    }

    /// Writes the state file if the message is still queued with recipients pending.
    async fn save(&self, id: &QueueId) {
        let state = {
            let table = self.table();
            match table.messages.get(id) {
                Some(entry) if !entry.removed && entry.state.has_pending() => entry.state.clone(),
                _ => return,
            }
        };
        let spool = self.spool.clone();
        let state_id = id.clone();
        let saved = tokio::task::spawn_blocking(move || spool.write_state(&state_id, &state))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        if let Err(e) = saved {
            // Memory still knows; only a crash before the next save repeats deliveries.
            warn!(id = %id, event = %"save_failed", error = ?e.to_string(), "queue");
        }
    }

    /// Removes a message's files (blocking pool) and logs it.
    async fn remove_files(&self, id: &QueueId, delivered: usize, failed: usize) {
        let spool = self.spool.clone();
        let gone = id.clone();
        let removed = tokio::task::spawn_blocking(move || spool.remove(&gone))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        match removed {
            Ok(()) => info!(id = %id, event = %"done", delivered, failed, "queue"),
            Err(e) => {
                warn!(id = %id, event = %"done", delivered, failed, error = ?e.to_string(), "queue: cannot remove files")
            }
        }
    }

    /// The wait after `rounds` failed rounds (1 = after the first attempt).
    pub(crate) fn retry_delay(&self, rounds: u32) -> Duration {
        let delays = &self.opts.retry_delays;
        let i = usize::try_from(rounds.saturating_sub(1))
            .unwrap_or(usize::MAX)
            .min(delays.len().saturating_sub(1));
        delays.get(i).copied().unwrap_or(FALLBACK_RETRY_DELAY)
    }

    /// When the ttl of `env` ends, in ms since the epoch.
    fn expiry_ms(&self, env: &Envelope) -> u64 {
        env.received_at
            .saturating_mul(1000)
            .saturating_add(millis(self.opts.ttl))
    }
}

/// One round in progress: applies the courier's answers to the table and ends the round.
struct Round<'a> {
    queue: &'a Arc<Queue>,
    id: &'a QueueId,
    env: &'a Envelope,
    notifier: &'a dyn Notifier,
    /// Rounds made before this one.
    attempts: u32,
    guard: RoundGuard,
}

impl Round<'_> {
    /// Applies one recipient's outcome; true if the recipient is settled (delivered or
    /// given up), a change worth saving. `message` is for the notifier.
    fn record(&self, index: usize, outcome: DeliveryOutcome, message: &[u8]) -> bool {
        let Some(rcpt) = self.env.recipients.get(index) else {
            return false;
        };
        let (queue, id) = (self.queue, self.id);
        let now = now_ms();
        let expiry = queue.expiry_ms(self.env);
        match outcome {
            DeliveryOutcome::Delivered { detail } => {
                info!(
                    "delivery id={id} rcpt={} dest={} result=delivered detail={detail:?}",
                    rcpt.rcpt,
                    crate::dest_summary(&rcpt.dest)
                );
                queue.set_recipient(id, index, Status::Delivered, None);
                true
            }
            DeliveryOutcome::TempFail { reason } if now >= expiry => {
                let reason = format!(
                    "no delivery within {}; last error: {reason}",
                    human(queue.opts.ttl)
                );
                self.give_up(index, rcpt, reason, message);
                true
            }
            DeliveryOutcome::TempFail { reason } => {
                let retry_in = queue
                    .retry_delay(self.attempts.saturating_add(1))
                    .min(Duration::from_millis(expiry - now));
                info!(
                    "delivery id={id} rcpt={} dest={} result=tempfail reason={reason:?} retry_in={}",
                    rcpt.rcpt,
                    crate::dest_summary(&rcpt.dest),
                    human(retry_in)
                );
                // Without the bytes (unreadable spool file) the warning waits for a later round.
                let warning = (!message.is_empty())
                    .then(|| queue.take_warning(id, index, self.env, now))
                    .flatten();
                if let Some(after) = warning {
                    info!(
                        "delivery id={id} rcpt={} result=delayed after={}",
                        rcpt.rcpt,
                        human(after)
                    );
                    self.notifier
                        .delayed(self.env, rcpt, &reason, after, message);
                }
                queue.set_recipient(id, index, Status::Pending, Some(reason));
                false
            }
            DeliveryOutcome::PermFail { reason } => {
                self.give_up(index, rcpt, reason, message);
                true
            }
        }
    }

    /// A recipient that will never be delivered. The notifier runs before the failure is
    /// recorded: a crash in between repeats the bounce rather than losing it.
    fn give_up(&self, index: usize, rcpt: &Recipient, reason: String, message: &[u8]) {
        warn!(
            "delivery id={} rcpt={} dest={} result=failed reason={reason:?}",
            self.id,
            rcpt.rcpt,
            crate::dest_summary(&rcpt.dest)
        );
        self.notifier.failed(self.env, rcpt, &reason, message);
        self.queue
            .set_recipient(self.id, index, Status::Failed, Some(reason));
    }

    /// Counts the round, then saves the state and schedules the next round, or removes the
    /// message when nobody is left.
    async fn end(self) {
        let (queue, id) = (self.queue, self.id);
        let now = now_ms();
        // Decided under the lock, acted on after it (the guard's drop takes it too).
        let after = {
            let mut table = queue.table();
            match table.messages.get_mut(id) {
                None => After::Gone,
                Some(entry) if entry.removed => After::RemovedByAdmin,
                Some(entry) => {
                    entry.state.attempts = self.attempts.saturating_add(1);
                    if entry.state.has_pending() {
                        let retry =
                            now.saturating_add(millis(queue.retry_delay(entry.state.attempts)));
                        // The last attempt is made when the ttl ends, not a whole delay later.
                        entry.state.next_attempt_ms = retry.min(queue.expiry_ms(self.env).max(now));
                        After::Retry
                    } else {
                        After::Done {
                            delivered: entry.state.count(Status::Delivered),
                            failed: entry.state.count(Status::Failed),
                        }
                    }
                }
            }
        };
        match after {
            After::Gone => {}
            After::Retry => queue.save(id).await,
            // Out of the table only once off the disk: whoever sees it gone may rely on that.
            After::Done { delivered, failed } => {
                queue.remove_files(id, delivered, failed).await;
                queue.forget(id);
            }
            After::RemovedByAdmin => {
                let spool = queue.spool.clone();
                let gone = id.clone();
                let _ = tokio::task::spawn_blocking(move || spool.remove(&gone)).await;
                queue.forget(id);
            }
        }
        self.finish()
    }

    fn finish(mut self) {
        self.guard.finished = true;
    }
}

enum After {
    Gone,
    Retry,
    Done { delivered: usize, failed: usize },
    RemovedByAdmin,
}

/// Clears the in-flight mark however the round ends. A round that did not finish (the
/// courier panicked, or shutdown cut it short) is retried after a delay, not in a hot loop.
struct RoundGuard {
    queue: Arc<Queue>,
    id: QueueId,
    finished: bool,
}

impl Drop for RoundGuard {
    fn drop(&mut self) {
        let mut table = self.queue.table();
        let mut remove_files = false;
        if let Some(entry) = table.messages.get_mut(&self.id) {
            entry.in_flight = false;
            if entry.removed {
                // The scheduler skips it meanwhile; out of the table once off the disk.
                remove_files = true;
            } else if !self.finished {
                let delay = self
                    .queue
                    .retry_delay(entry.state.attempts.saturating_add(1));
                entry.state.next_attempt_ms = now_ms().saturating_add(millis(delay));
            }
        }
        drop(table);
        if remove_files {
            if let Err(e) = self.queue.spool.remove(&self.id) {
                warn!(id = %self.id, event = %"remove", error = ?e.to_string(), "queue");
            }
            self.queue.forget(&self.id);
        }
        self.queue.wake.notify_one();
    }
}

fn log_panic(done: Result<(), JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            error!(event = %"delivery_panicked", error = ?e.to_string(), "queue");
        }
    }
}

/// `4d`, `30m`, `90s`, `250ms`: for log lines and failure reasons.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
