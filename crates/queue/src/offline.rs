//! Reading the spool without owning it, for `ownmail queue list|show` while no daemon runs
//! (SPEC §3: "`list`/`show` also work when it is stopped").
//!
//! Read-only and lock-free: nothing here writes, moves or deletes a file, and a daemon may be
//! changing the spool meanwhile. That is safe because `spool.rs` only ever renames complete
//! files into `queue/` (its invariant 2): a file seen here is whole or gone. A message file that
//! vanishes between the listing and the read is skipped, and so is one that does not parse
//! (the daemon moves those to `corrupt/` at its next start; reporting them is its job). A state
//! file that is missing or unreadable means "nothing delivered yet", as at the daemon's open.
//!
//! The format is `spool.rs`'s, read with its own state types; the few lines that check the
//! header and envelope are repeated here because that module keeps them private.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ownmail_types::{Envelope, QueueId};

use crate::spool::DeliveryState;
use crate::{dest_summary, PendingRecipient, QueuedMessage};

/// The first line of every message file (`spool.rs`).
const HEADER: &[u8] = b"ownmail-queue 1\n";
/// Same bounds as `spool.rs`: a corrupt file cannot fill memory.
const MAX_ENVELOPE_LINE: u64 = 16 << 20;
const MAX_STATE_FILE: u64 = 16 << 20;
const STATE_SUFFIX: &str = ".state";

/// Every message queued in the spool at `dir`, oldest first, as [`crate::Queue::list`] would
/// show it after a restart (`delivering` is always false). A spool that was never opened (no
/// `queue/` yet) is empty; a missing `dir` is an error.
pub fn read_spool(dir: &Path) -> io::Result<Vec<QueuedMessage>> {
    let queue_dir = dir.join("queue");
    let entries = match fs::read_dir(&queue_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound && dir.is_dir() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // Ids sort by arrival, so the map's order is the queue's.
    let mut ids = BTreeMap::new();
    for entry in entries {
        let name = entry?.file_name();
        if let Some(id) = name.to_str().and_then(QueueId::parse) {
            ids.insert(id, ());
        }
    }
    let mut messages = Vec::with_capacity(ids.len());
    for id in ids.into_keys() {
        if let Some(m) = read_queued(&queue_dir, &id)? {
            messages.push(m);
        }
    }
    Ok(messages)
}

/// One queued message and its bytes (without the spool's header and envelope lines), or
/// None if `id` is not in the queue (or no longer owes any delivery).
pub fn read_message(dir: &Path, id: &QueueId) -> io::Result<Option<(QueuedMessage, Vec<u8>)>> {
    // A deserialized QueueId is not checked, and this one names a file: check it again.
    let Some(id) = QueueId::parse(id.as_str()) else {
        return Ok(None);
    };
    let queue_dir = dir.join("queue");
    let Some(mut reader) = open_message(&queue_dir, &id)? else {
        return Ok(None);
    };
    let Some(env) = read_prefix(&mut reader, &id)? else {
        return Ok(None);
    };
    let mut message = Vec::new();
    reader.read_to_end(&mut message)?;
    let state = read_state(&queue_dir, &id, &env)?;
    Ok(queued_message(&env, state.as_ref(), false).map(|m| (m, message)))
}

/// The summary of one message file with its state, if it is still queued.
fn read_queued(queue_dir: &Path, id: &QueueId) -> io::Result<Option<QueuedMessage>> {
    let Some(mut reader) = open_message(queue_dir, id)? else {
        return Ok(None);
    };
    let Some(env) = read_prefix(&mut reader, id)? else {
        return Ok(None);
    };
    let state = read_state(queue_dir, id, &env)?;
    Ok(queued_message(&env, state.as_ref(), false))
}

/// What [`crate::Queue::list`] shows for a message, from its envelope and delivery state
/// (None: not tried yet, first attempt due now). None when no recipient is pending: such a
/// message is only waiting for its files to be removed.
pub(crate) fn queued_message(
    env: &Envelope,
    state: Option<&DeliveryState>,
    delivering: bool,
) -> Option<QueuedMessage> {
    let (pending, attempts, next_attempt): (Vec<PendingRecipient>, u32, SystemTime) = match state {
        Some(state) => {
            let pending = state
                .pending()
                .filter_map(|(i, st)| {
                    let r = env.recipients.get(i)?;
                    Some(PendingRecipient {
                        rcpt: r.rcpt.clone(),
                        dest: dest_summary(&r.dest),
                        last_error: st.last_error.clone(),
                    })
                })
                .collect();
            let next = UNIX_EPOCH + Duration::from_millis(state.next_attempt_ms);
            (pending, state.attempts, next)
        }
        None => {
            let pending = env
                .recipients
                .iter()
                .map(|r| PendingRecipient {
                    rcpt: r.rcpt.clone(),
                    dest: dest_summary(&r.dest),
                    last_error: None,
                })
                .collect();
            (pending, 0, SystemTime::now())
        }
    };
    if pending.is_empty() {
        return None;
    }
    Some(QueuedMessage {
        id: env.id.clone(),
        mail_from: env.mail_from.clone(),
        received_at: env.received_at,
        last_error: pending.iter().rev().find_map(|p| p.last_error.clone()),
        pending,
        attempts,
        next_attempt,
        delivering,
    })
}

/// `queue/<id>` opened for reading; None if it is gone (delivered or removed meanwhile).
fn open_message(queue_dir: &Path, id: &QueueId) -> io::Result<Option<BufReader<File>>> {
    match File::open(queue_dir.join(id.as_str())) {
        Ok(file) => Ok(Some(BufReader::new(file))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The header and envelope lines of a message file, checked as `spool.rs` checks them; None
/// if they are not what it writes.
fn read_prefix(reader: &mut impl BufRead, id: &QueueId) -> io::Result<Option<Envelope>> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(HEADER.len() as u64)
        .read_until(b'\n', &mut line)?;
    if line != HEADER {
        return Ok(None);
    }
    line.clear();
    reader
        .by_ref()
        .take(MAX_ENVELOPE_LINE)
        .read_until(b'\n', &mut line)?;
    if line.pop() != Some(b'\n') {
        return Ok(None);
    }
    let Ok(env) = serde_json::from_slice::<Envelope>(&line) else {
        return Ok(None);
    };
    Ok((&env.id == id && !env.recipients.is_empty()).then_some(env))
}

/// `queue/<id>.state`; None if there is none yet, or it does not fit the envelope.
fn read_state(queue_dir: &Path, id: &QueueId, env: &Envelope) -> io::Result<Option<DeliveryState>> {
    let file = match File::open(queue_dir.join(format!("{id}{STATE_SUFFIX}"))) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut data = Vec::new();
    file.take(MAX_STATE_FILE + 1).read_to_end(&mut data)?;
    if data.len() as u64 > MAX_STATE_FILE {
        return Ok(None);
    }
    Ok(serde_json::from_slice::<DeliveryState>(&data)
        .ok()
        .filter(|state| state.recipients.len() == env.recipients.len()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use ownmail_types::{
        Address, BodyType, BoxFuture, Courier, DeliveryOutcome, Destination, Envelope, MessageSink,
        Notify, QueueId, Recipient, ReversePath,
    };
    use tokio::sync::watch;

    use super::*;
    use crate::{Notifier, Queue, QueueOptions};

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

    /// Delivers to `a@x.org`, tempfails everyone else.
    struct HalfCourier;

    impl Courier for HalfCourier {
        fn deliver<'a>(
            &'a self,
            _env: &'a Envelope,
            rcpt: &'a Recipient,
            _message: &'a [u8],
        ) -> BoxFuture<'a, DeliveryOutcome> {
            let outcome = if rcpt.rcpt.to_string() == "a@x.org" {
                DeliveryOutcome::Delivered {
                    detail: "ok".into(),
                }
            } else {
                DeliveryOutcome::TempFail {
                    reason: "451 try later".into(),
                }
            };
            Box::pin(async move { outcome })
        }
    }

    struct Silent;

    impl Notifier for Silent {
        fn failed(&self, _: &Envelope, _: &Recipient, _: &str, _: &[u8]) {}
        fn delayed(&self, _: &Envelope, _: &Recipient, _: &str, _: Duration, _: &[u8]) {}
    }

    fn slow_retries() -> QueueOptions {
        QueueOptions {
            retry_delays: vec![Duration::from_secs(3600)],
            ..QueueOptions::default()
        }
    }

    #[tokio::test]
    async fn untried_message_is_read_back_with_every_recipient_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = Queue::open(dir.path(), slow_retries()).expect("open");
        let env = envelope(&["a@x.org", "b@y.org"]);
        queue
            .enqueue(env.clone(), BODY.to_vec())
            .await
            .expect("enqueued");
        drop(queue);

        let listed = read_spool(dir.path()).expect("read");
        assert_eq!(listed.len(), 1);
        let m = &listed[0];
        assert_eq!((&m.id, &m.mail_from), (&env.id, &env.mail_from));
        assert_eq!(m.received_at, env.received_at);
        let rcpts: Vec<String> = m.pending.iter().map(|p| p.rcpt.to_string()).collect();
        assert_eq!(rcpts, ["a@x.org", "b@y.org"]);
        assert_eq!(m.pending[1].dest, "relay:out→b@y.org");
        assert_eq!((m.attempts, m.delivering, &m.last_error), (0, false, &None));

        let (mut shown, bytes) = read_message(dir.path(), &env.id)
            .expect("read")
            .expect("found");
        assert!(shown.next_attempt <= SystemTime::now(), "untried: due now");
        shown.next_attempt = m.next_attempt;
        assert_eq!(&shown, m);
        assert_eq!(bytes, BODY);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offline_listing_equals_the_queues_own_after_a_round() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = Queue::open(dir.path(), slow_retries()).expect("open");
        let (stop, shutdown) = watch::channel(false);
        let scheduler = queue.start(Arc::new(HalfCourier), Arc::new(Silent), shutdown);
        let env = envelope(&["a@x.org", "b@y.org"]);
        queue
            .enqueue(env.clone(), BODY.to_vec())
            .await
            .expect("enqueued");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !queue
            .list()
            .first()
            .is_some_and(|m| m.attempts == 1 && !m.delivering)
        {
            assert!(tokio::time::Instant::now() < deadline, "no round made");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).expect("scheduler listening");
        scheduler.await.expect("scheduler stops");

        let live = queue.list();
        let offline = read_spool(dir.path()).expect("read");
        assert_eq!(offline, live);
        let m = &offline[0];
        assert_eq!(m.pending.len(), 1);
        assert_eq!(m.pending[0].rcpt.to_string(), "b@y.org");
        assert_eq!(m.last_error.as_deref(), Some("451 try later"));
    }

    #[tokio::test]
    async fn vanished_and_damaged_files_are_skipped_and_nothing_is_moved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = Queue::open(dir.path(), slow_retries()).expect("open");
        let good = envelope(&["a@x.org"]);
        queue
            .enqueue(good.clone(), BODY.to_vec())
            .await
            .expect("enqueued");
        drop(queue);
        let queue_dir = dir.path().join("queue");
        // Damaged: wrong header; an envelope cut short; a state file for another envelope.
        let bad = QueueId::new();
        fs::write(queue_dir.join(bad.as_str()), b"garbage\n").expect("write");
        let torn = envelope(&["b@y.org"]);
        let json = serde_json::to_vec(&torn).expect("json");
        let mut file = HEADER.to_vec();
        file.extend_from_slice(&json[..json.len() / 2]);
        fs::write(queue_dir.join(torn.id.as_str()), file).expect("write");
        fs::write(queue_dir.join(format!("{}.state", good.id)), b"{not json").expect("write");
        fs::write(queue_dir.join("README"), b"not a spool file").expect("write");

        let listed = read_spool(dir.path()).expect("read");
        let ids: Vec<&QueueId> = listed.iter().map(|m| &m.id).collect();
        assert_eq!(ids, [&good.id]);
        assert_eq!(listed[0].pending.len(), 1, "a bad state file means none");
        assert!(read_message(dir.path(), &bad).expect("read").is_none());
        assert!(read_message(dir.path(), &torn.id).expect("read").is_none());
        assert!(read_message(dir.path(), &QueueId::new())
            .expect("read")
            .is_none());
        // Read-only: everything is where it was.
        let mut names: Vec<String> = fs::read_dir(&queue_dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 5);
    }

    #[test]
    fn never_opened_spool_is_empty_and_a_missing_one_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_spool(dir.path()).expect("read"), []);
        let missing = dir.path().join("nope");
        let err = read_spool(&missing).expect_err("no such spool");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn an_id_that_is_not_a_queue_id_names_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sneaky: QueueId = serde_json::from_str("\"../../etc/passwd\"").expect("json");
        assert!(read_message(dir.path(), &sneaky).expect("read").is_none());
    }
}
