//! The queue (SPEC §5.2, §5.4): owns the spool directory, accepts messages from SMTP
//! ([`ownmail_types::MessageSink`]), keeps them durably until every recipient is done, and
//! hands each pending recipient to a [`ownmail_types::Courier`] — first attempt at once, then
//! retries with growing delays until the ttl ends. It never imports a concrete courier.
//!
//! Invariants (the disk side is spelled out in `spool.rs`, its only owner):
//! - a message is acknowledged only after body + envelope + directory entry are fsynced;
//! - a delivered recipient is forgotten only after the courier said Delivered (couriers
//!   fsync first);
//! - the worst case after a crash is a duplicate delivery, never a loss.
//!
//! Module map, in the order a message moves: `spool` (file format, recovery at open) and
//! `durable` (fsync helpers) → `commit` (group commit of new messages) → `queue` (the
//! in-memory table, enqueue, admin operations) → `scheduler` (delivery rounds, retries, ttl).

mod commit;
mod durable;
mod offline;
mod queue;
mod scheduler;
mod spool;

#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use ownmail_types::{Address, Destination, Envelope, QueueId, Recipient, ReversePath};
use serde::{Deserialize, Serialize};

pub use offline::{read_message, read_spool};
pub use queue::Queue;

/// What the scheduler tells about recipients it cannot deliver; the bounces of SPEC §5.4 are
/// built from this. Both methods are called synchronously from a delivery round, so they must
/// not block: hand slow work (building and queueing a bounce) to a task of its own.
///
/// `message` is the queued message as the couriers get it (our `Received:` on top). It is
/// empty in the rare case that the spool file could not be read when the recipient expired.
pub trait Notifier: Send + Sync + 'static {
    /// A recipient will never be delivered (permanent failure or ttl expiry). Called before
    /// the failure is recorded, so a crash in between repeats the call rather than losing
    /// it; work the implementer finishes in a task of its own is outside that guarantee.
    fn failed(&self, env: &Envelope, rcpt: &Recipient, reason: &str, message: &[u8]);
    /// A recipient is still undelivered `after` the message arrived (one of
    /// [`QueueOptions::warn_intervals`]); `reason` is the latest temporary error. Called at
    /// most once per recipient and interval, even across restarts.
    fn delayed(
        &self,
        env: &Envelope,
        rcpt: &Recipient,
        reason: &str,
        after: Duration,
        message: &[u8],
    );
}

/// How long mail may stay queued and how often it is retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueOptions {
    /// `queue ttl`: after this long since arrival, a recipient that still fails temporarily
    /// fails for good (SPEC §5.4, default 4 days).
    pub ttl: Duration,
    /// Deliveries of different messages that may run at once.
    pub max_concurrent_deliveries: usize,
    /// The wait after the 1st, 2nd, … failed attempt; the last one repeats. Empty means one
    /// hour between attempts.
    pub retry_delays: Vec<Duration>,
    /// `bounce warn-interval`: when a recipient still fails temporarily this long after the
    /// message arrived, the sender is warned ([`Notifier::delayed`]) once per interval
    /// (SPEC §5.4, default 4 hours). Empty means no delay warnings.
    pub warn_intervals: Vec<Duration>,
}

impl Default for QueueOptions {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        QueueOptions {
            ttl: Duration::from_secs(4 * 24 * 3600),
            max_concurrent_deliveries: 64,
            retry_delays: vec![
                min(1),
                min(5),
                min(15),
                min(30),
                min(60),
                min(120),
                min(240),
            ],
            warn_intervals: vec![min(240)],
        }
    }
}

/// One queued message as `ownmail queue list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub id: QueueId,
    pub mail_from: ReversePath,
    /// Seconds since the epoch, from the envelope.
    pub received_at: u64,
    /// Recipients not yet delivered nor failed, in envelope order.
    pub pending: Vec<PendingRecipient>,
    /// Delivery rounds made so far.
    pub attempts: u32,
    /// When the next round starts (in the past: as soon as a delivery slot is free).
    pub next_attempt: SystemTime,
    /// The latest temporary error among the pending recipients.
    pub last_error: Option<String>,
    /// A delivery round is running right now.
    pub delivering: bool,
}

/// A recipient still owed a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecipient {
    pub rcpt: Address,
    /// Where it goes, in one line: `maildir:/home/u/Maildir`, `relay:outbound→x@y.org`, …
    pub dest: String,
    pub last_error: Option<String>,
}

/// A one-line summary of a destination, for listings.
pub fn dest_summary(dest: &Destination) -> String {
    match dest {
        Destination::Maildir {
            path, junk: false, ..
        } => format!("maildir:{}", path.display()),
        Destination::Maildir {
            path, junk: true, ..
        } => format!("maildir:{} junk", path.display()),
        Destination::Mbox { path, .. } => format!("mbox:{}", path.display()),
        Destination::Mda { command, .. } => format!("mda:{command}"),
        Destination::Lmtp { dest, rcpt } => format!("lmtp:{dest}→{rcpt}"),
        Destination::Relay { action, to } => format!("relay:{action}→{to}"),
    }
}
