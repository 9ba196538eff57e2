//! The queue with a fake courier in a temporary spool: real files, real fsyncs (tier 2).
//! A "crash" is the queue dropped without shutdown, with its scheduler task aborted; the
//! kill -9 tests of the whole binary live in the end-to-end suite.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ownmail_types::{
    Address, BodyType, BoxFuture, Courier, DeliveryOutcome, Destination, Envelope, MessageSink,
    Notify, QueueId, Recipient, ReversePath,
};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::spool::{DeliveryState, Status};
use crate::{Notifier, Queue, QueueOptions};

const BODY: &[u8] = b"Subject: hello\r\n\r\nHi there.\r\n";

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
                // A local destination: delivered one recipient at a time, with progress saved
                // between them (relay recipients go to the courier as one batch).
                dest: Destination::Lmtp {
                    dest: "127.0.0.1:24".into(),
                    rcpt: r.to_string(),
                },
            })
            .collect(),
    }
}

/// Shows the queue's log lines in a failing test's output.
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
}

fn fast() -> QueueOptions {
    logs();
    QueueOptions {
        retry_delays: vec![Duration::from_millis(20)],
        ..QueueOptions::default()
    }
}

type Script = Box<dyn Fn(&str, usize) -> DeliveryOutcome + Send + Sync>;

/// Answers by script: (recipient, how many times it was offered before) → outcome.
struct FakeCourier {
    script: Script,
    delay: Duration,
    calls: Mutex<Vec<(QueueId, String, Vec<u8>)>>,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl FakeCourier {
    fn new(script: impl Fn(&str, usize) -> DeliveryOutcome + Send + Sync + 'static) -> Arc<Self> {
        Self::slow(Duration::ZERO, script)
    }

    fn slow(
        delay: Duration,
        script: impl Fn(&str, usize) -> DeliveryOutcome + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(FakeCourier {
            script: Box::new(script),
            delay,
            calls: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
        })
    }

    fn delivering() -> Arc<Self> {
        Self::new(|_, _| delivered())
    }

    fn rcpts(&self) -> Vec<String> {
        self.calls
            .lock()
            .expect("calls")
            .iter()
            .map(|c| c.1.clone())
            .collect()
    }
}

impl Courier for FakeCourier {
    fn deliver<'a>(
        &'a self,
        env: &'a Envelope,
        rcpt: &'a Recipient,
        message: &'a [u8],
    ) -> BoxFuture<'a, DeliveryOutcome> {
        Box::pin(async move {
            let who = rcpt.rcpt.to_string();
            let before = {
                let mut calls = self.calls.lock().expect("calls");
                let before = calls.iter().filter(|c| c.1 == who).count();
                calls.push((env.id.clone(), who.clone(), message.to_vec()));
                before
            };
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_running.fetch_max(now, Ordering::SeqCst);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            self.running.fetch_sub(1, Ordering::SeqCst);
            (self.script)(&who, before)
        })
    }
}

fn delivered() -> DeliveryOutcome {
    DeliveryOutcome::Delivered {
        detail: "250 ok".into(),
    }
}

fn tempfail() -> DeliveryOutcome {
    DeliveryOutcome::TempFail {
        reason: "451 try later".into(),
    }
}

/// One call of the notifier: recipient, reason, the delay (None for `failed`), the bytes.
type Notice = (String, String, Option<Duration>, Vec<u8>);

/// Records what the scheduler notifies.
#[derive(Default)]
struct FakeNotifier {
    notices: Mutex<Vec<Notice>>,
}

impl Notifier for FakeNotifier {
    fn failed(&self, _: &Envelope, rcpt: &Recipient, reason: &str, message: &[u8]) {
        self.notices.lock().expect("notices").push((
            rcpt.rcpt.to_string(),
            reason.to_string(),
            None,
            message.to_vec(),
        ));
    }

    fn delayed(
        &self,
        _: &Envelope,
        rcpt: &Recipient,
        reason: &str,
        after: Duration,
        message: &[u8],
    ) {
        self.notices.lock().expect("notices").push((
            rcpt.rcpt.to_string(),
            reason.to_string(),
            Some(after),
            message.to_vec(),
        ));
    }
}

/// A started scheduler and what it reported.
struct Running {
    queue: Arc<Queue>,
    courier: Arc<FakeCourier>,
    notifier: Arc<FakeNotifier>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

fn start(queue: &Arc<Queue>, courier: Arc<FakeCourier>) -> Running {
    let notifier = Arc::new(FakeNotifier::default());
    let (stop, shutdown) = watch::channel(false);
    let handle = queue.start(courier.clone(), notifier.clone(), shutdown);
    Running {
        queue: queue.clone(),
        courier,
        notifier,
        stop,
        handle,
    }
}

impl Running {
    /// `Notifier::failed` calls: (recipient, reason).
    fn failures(&self) -> Vec<(String, String)> {
        self.notices()
            .into_iter()
            .filter(|n| n.2.is_none())
            .map(|n| (n.0, n.1))
            .collect()
    }

    /// `Notifier::delayed` calls: (recipient, after).
    fn delays(&self) -> Vec<(String, Duration)> {
        self.notices()
            .into_iter()
            .filter_map(|n| Some((n.0, n.2?)))
            .collect()
    }

    fn notices(&self) -> Vec<Notice> {
        self.notifier.notices.lock().expect("notices").clone()
    }

    async fn shutdown(self) {
        self.stop.send(true).expect("scheduler listening");
        tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .expect("scheduler stops")
            .expect("no panic");
    }

    /// Kills the scheduler mid-flight and drops the queue, leaving the spool as a crash
    /// would; returns when nothing of the old queue is left running.
    async fn crash(self) {
        let Running {
            queue,
            handle,
            stop,
            courier,
            notifier,
        } = self;
        let gone: Weak<Queue> = Arc::downgrade(&queue);
        handle.abort();
        let _ = handle.await;
        drop((queue, stop, courier, notifier));
        wait_until("the old queue to be dropped", || gone.upgrade().is_none()).await;
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn spool_file(env: &Envelope, body: &[u8]) -> Vec<u8> {
    let mut data = b"ownmail-queue 1\n".to_vec();
    data.extend(serde_json::to_vec(env).expect("json"));
    data.push(b'\n');
    data.extend(body);
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_resolves_only_once_the_file_is_in_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), fast()).expect("open");
    let env = envelope(&["a@x.org"]);
    let path = dir.path().join("queue").join(env.id.as_str());

    // Held before the rename: written to tmp/, not yet acknowledged.
    queue.commit_hold().set(true);
    let pending = {
        let (queue, env) = (queue.clone(), env.clone());
        tokio::spawn(async move { queue.enqueue(env, BODY.to_vec()).await })
    };
    wait_until("the enqueue to reach the committer", || {
        queue.commit_hold().submitted.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(!pending.is_finished(), "acknowledged before the commit");
    assert!(!path.exists());
    assert_eq!(names(&dir.path().join("tmp")), vec![env.id.to_string()]);

    queue.commit_hold().set(false);
    pending.await.expect("task").expect("enqueued");
    assert_eq!(
        fs::read(&path).expect("queued file"),
        spool_file(&env, BODY)
    );
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert_eq!((queue.len(), queue.commits()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_queue_resumes_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = envelope(&["a@x.org", "b@y.org"]);
    {
        let queue = Queue::open(dir.path(), fast()).expect("open");
        queue
            .enqueue(env.clone(), BODY.to_vec())
            .await
            .expect("enqueued");
    }

    let queue = Queue::open(dir.path(), fast()).expect("reopen");
    assert_eq!(queue.len(), 1);
    let run = start(&queue, FakeCourier::delivering());
    wait_until("delivery", || queue.is_empty()).await;
    let calls = run.courier.calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), 2);
    for (id, _, message) in &calls {
        assert_eq!(
            (id, message.as_slice()),
            (&env.id, BODY),
            "the courier gets the bytes without the header"
        );
    }
    assert!(names(&dir.path().join("queue")).is_empty());
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempfail_twice_then_delivered_is_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), fast()).expect("open");
    let run = start(
        &queue,
        FakeCourier::new(|_, before| if before < 2 { tempfail() } else { delivered() }),
    );
    queue
        .enqueue(envelope(&["a@x.org"]), BODY.to_vec())
        .await
        .expect("enqueued");

    wait_until("delivery", || queue.is_empty()).await;
    assert_eq!(run.courier.rcpts(), ["a@x.org"; 3]);
    assert!(run.failures().is_empty());
    assert!(names(&dir.path().join("queue")).is_empty());
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permfail_notifies_failed_and_removes_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), fast()).expect("open");
    let run = start(
        &queue,
        FakeCourier::new(|rcpt, _| match rcpt {
            "nobody@x.org" => DeliveryOutcome::PermFail {
                reason: "550 5.1.1 no such user".into(),
            },
            _ => delivered(),
        }),
    );
    queue
        .enqueue(envelope(&["a@x.org", "nobody@x.org"]), BODY.to_vec())
        .await
        .expect("enqueued");

    wait_until("the queue to empty", || queue.is_empty()).await;
    assert_eq!(
        run.failures(),
        [(
            "nobody@x.org".to_string(),
            "550 5.1.1 no such user".to_string()
        )]
    );
    assert_eq!(run.courier.rcpts().len(), 2, "one attempt each");
    assert!(names(&dir.path().join("queue")).is_empty());
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_expiry_gives_up_on_the_recipient() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = QueueOptions {
        ttl: Duration::from_millis(300),
        retry_delays: vec![Duration::from_millis(50)],
        ..fast()
    };
    let queue = Queue::open(dir.path(), opts).expect("open");
    let run = start(&queue, FakeCourier::new(|_, _| tempfail()));
    queue
        .enqueue(envelope(&["a@x.org"]), BODY.to_vec())
        .await
        .expect("enqueued");

    wait_until("expiry", || queue.is_empty()).await;
    let failures = run.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, "a@x.org");
    assert!(
        failures[0].1.starts_with("no delivery within") && failures[0].1.contains("451 try later"),
        "{}",
        failures[0].1
    );
    assert!(names(&dir.path().join("queue")).is_empty());
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_only_the_undelivered_recipient_is_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = envelope(&["a@x.org", "b@y.org"]);
    let state_path = dir.path().join("queue").join(format!("{}.state", env.id));

    let slow = QueueOptions {
        retry_delays: vec![Duration::from_secs(3600)],
        ..fast()
    };
    let queue = Queue::open(dir.path(), slow).expect("open");
    let run = start(
        &queue,
        FakeCourier::new(|rcpt, _| {
            if rcpt == "a@x.org" {
                delivered()
            } else {
                tempfail()
            }
        }),
    );
    queue
        .enqueue(env.clone(), BODY.to_vec())
        .await
        .expect("enqueued");
    let saved = || {
        let Ok(data) = fs::read(&state_path) else {
            return None;
        };
        serde_json::from_slice::<DeliveryState>(&data).ok()
    };
    wait_until("the first round to be saved", || {
        saved().is_some_and(|s| s.attempts == 1)
    })
    .await;
    let state = saved().expect("state");
    assert_eq!(
        state
            .recipients
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [Status::Delivered, Status::Pending]
    );
    drop(queue);
    run.crash().await;

    let queue = Queue::open(dir.path(), fast()).expect("reopen");
    let listed = queue.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]
            .pending
            .iter()
            .map(|p| p.rcpt.to_string())
            .collect::<Vec<_>>(),
        ["b@y.org"]
    );
    assert_eq!(listed[0].attempts, 1);
    let run = start(&queue, FakeCourier::delivering());
    queue.flush(None); // its next attempt was an hour away
    wait_until("delivery", || queue.is_empty()).await;
    assert_eq!(run.courier.rcpts(), ["b@y.org"]);
    assert!(names(&dir.path().join("queue")).is_empty());
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_spool_files_are_moved_to_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue_dir = dir.path().join("queue");
    fs::create_dir_all(&queue_dir).expect("mkdir");
    let (bad_header, bad_json, wrong_id, truncated, good) = (
        QueueId::new(),
        QueueId::new(),
        QueueId::new(),
        QueueId::new(),
        QueueId::new(),
    );
    fs::write(
        queue_dir.join(bad_header.as_str()),
        b"From nobody\n{}\nbody",
    )
    .expect("write");
    fs::write(
        queue_dir.join(bad_json.as_str()),
        b"ownmail-queue 1\n{not json\nbody",
    )
    .expect("write");
    fs::write(
        queue_dir.join(wrong_id.as_str()),
        spool_file(&envelope(&["a@x.org"]), BODY),
    )
    .expect("write");
    let mut cut = spool_file(
        &Envelope {
            id: truncated.clone(),
            ..envelope(&["a@x.org"])
        },
        b"",
    );
    cut.truncate(cut.len() - 10);
    fs::write(queue_dir.join(truncated.as_str()), cut).expect("write");
    fs::write(queue_dir.join("stray-file"), b"?").expect("write");
    let good_env = Envelope {
        id: good.clone(),
        ..envelope(&["a@x.org"])
    };
    fs::write(queue_dir.join(good.as_str()), spool_file(&good_env, BODY)).expect("write");
    fs::write(queue_dir.join(format!("{good}.state")), b"{\"attempts\":").expect("write");

    let queue = Queue::open(dir.path(), fast()).expect("open despite corruption");
    let mut expected = vec![
        bad_header.to_string(),
        bad_json.to_string(),
        wrong_id.to_string(),
        truncated.to_string(),
        "stray-file".to_string(),
        format!("{good}.state"),
    ];
    expected.sort();
    assert_eq!(names(&dir.path().join("corrupt")), expected);
    assert_eq!(names(&queue_dir), [good.to_string()]);
    // The good message lost its progress, not its recipients.
    assert_eq!(
        queue
            .list()
            .iter()
            .map(|m| (&m.id, m.pending.len()))
            .collect::<Vec<_>>(),
        [(&good, 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmp_leftovers_are_removed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("tmp")).expect("mkdir");
    fs::write(
        dir.path().join("tmp").join(QueueId::new().as_str()),
        b"ownmail-queue 1\n{\"half",
    )
    .expect("write");
    fs::write(dir.path().join("tmp").join("other"), b"x").expect("write");

    let queue = Queue::open(dir.path(), fast()).expect("open");
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert!(queue.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_state_file_is_deleted_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("queue")).expect("mkdir");
    let orphan = dir
        .path()
        .join("queue")
        .join(format!("{}.state", QueueId::new()));
    fs::write(
        &orphan,
        serde_json::to_vec(&DeliveryState::new(1, 0)).expect("json"),
    )
    .expect("write");

    let queue = Queue::open(dir.path(), fast()).expect("open");
    assert!(!orphan.exists());
    assert!(queue.is_empty());
    assert!(names(&dir.path().join("corrupt")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_all_land_in_batched_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), fast()).expect("open");
    // Everything ready at once is committed together; hold the committer until all 200 are
    // ready so that this shows the batching rather than a timing.
    queue.commit_hold().set(true);
    let mut enqueues = JoinSet::new();
    for _ in 0..200 {
        let queue = queue.clone();
        enqueues.spawn(async move { queue.enqueue(envelope(&["a@x.org"]), BODY.to_vec()).await });
    }
    wait_until("all enqueues to be ready", || {
        queue.commit_hold().submitted.load(Ordering::SeqCst) == 200
    })
    .await;
    queue.commit_hold().set(false);
    while let Some(done) = enqueues.join_next().await {
        done.expect("task").expect("enqueued");
    }
    assert_eq!(queue.len(), 200);
    assert_eq!(names(&dir.path().join("queue")).len(), 200);
    assert!(
        queue.commits() < 200,
        "{} commits for 200 messages",
        queue.commits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_run_concurrently_up_to_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = QueueOptions {
        max_concurrent_deliveries: 2,
        ..fast()
    };
    let queue = Queue::open(dir.path(), opts).expect("open");
    for _ in 0..6 {
        queue
            .enqueue(envelope(&["a@x.org"]), BODY.to_vec())
            .await
            .expect("enqueued");
    }
    let run = start(
        &queue,
        FakeCourier::slow(Duration::from_millis(30), |_, _| delivered()),
    );
    wait_until("delivery", || queue.is_empty()).await;
    assert_eq!(run.courier.rcpts().len(), 6);
    assert!(run.courier.most_running.load(Ordering::SeqCst) <= 2);
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_queue_delivers_nothing_until_resumed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), fast()).expect("open");
    queue.pause();
    let run = start(&queue, FakeCourier::delivering());
    queue
        .enqueue(envelope(&["a@x.org"]), BODY.to_vec())
        .await
        .expect("enqueued");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(run.courier.rcpts().is_empty());
    queue.resume();
    wait_until("delivery", || queue.is_empty()).await;
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_message_is_forgotten_with_its_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), fast()).expect("open");
    let env = envelope(&["a@x.org"]);
    queue
        .enqueue(env.clone(), BODY.to_vec())
        .await
        .expect("enqueued");
    assert!(queue.remove(&env.id));
    assert!(!queue.remove(&env.id));
    assert!(queue.is_empty());
    assert!(names(&dir.path().join("queue")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_pending_recipients_attempts_and_last_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = QueueOptions {
        retry_delays: vec![Duration::from_secs(3600)],
        ..fast()
    };
    let queue = Queue::open(dir.path(), slow).expect("open");
    let run = start(
        &queue,
        FakeCourier::new(|rcpt, _| {
            if rcpt == "a@x.org" {
                delivered()
            } else {
                tempfail()
            }
        }),
    );
    let env = envelope(&["a@x.org", "b@y.org"]);
    queue
        .enqueue(env.clone(), BODY.to_vec())
        .await
        .expect("enqueued");
    wait_until("the first round", || {
        queue
            .list()
            .first()
            .is_some_and(|m| m.attempts == 1 && !m.delivering)
    })
    .await;

    let listed = queue.list();
    let m = &listed[0];
    assert_eq!((&m.id, &m.mail_from), (&env.id, &env.mail_from));
    assert_eq!(m.pending.len(), 1);
    assert_eq!(m.pending[0].rcpt.to_string(), "b@y.org");
    assert_eq!(m.pending[0].dest, "lmtp:127.0.0.1:24→b@y.org");
    assert_eq!(m.last_error.as_deref(), Some("451 try later"));
    assert!(m.next_attempt > SystemTime::now() + Duration::from_secs(3000));
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_delivery_under_way() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), fast()).expect("open");
    let run = start(
        &queue,
        FakeCourier::slow(Duration::from_millis(200), |_, _| delivered()),
    );
    queue
        .enqueue(envelope(&["a@x.org"]), BODY.to_vec())
        .await
        .expect("enqueued");
    wait_until("the delivery to start", || !run.courier.rcpts().is_empty()).await;
    let queue = run.queue.clone();
    run.shutdown().await;
    assert!(
        queue.is_empty(),
        "the delivery finished before the scheduler returned"
    );
    assert!(names(&dir.path().join("queue")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_refuses_an_envelope_without_recipients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), fast()).expect("open");
    assert!(queue.enqueue(envelope(&[]), BODY.to_vec()).await.is_err());
    assert!(names(&dir.path().join("queue")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_removed_mid_delivery_is_dropped_when_the_round_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), fast()).expect("open");
    let run = start(
        &queue,
        FakeCourier::slow(Duration::from_millis(100), |_, _| tempfail()),
    );
    let env = envelope(&["a@x.org", "b@y.org"]);
    queue
        .enqueue(env.clone(), BODY.to_vec())
        .await
        .expect("enqueued");
    wait_until("the delivery to start", || !run.courier.rcpts().is_empty()).await;

    assert!(queue.remove(&env.id));
    assert!(queue.list().is_empty());
    wait_until("the files to go", || {
        names(&dir.path().join("queue")).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        run.courier.rcpts(),
        ["a@x.org"],
        "no recipient offered after the removal"
    );
    assert!(queue.is_empty() && run.failures().is_empty());
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_notice_carries_the_queued_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), fast()).expect("open");
    let run = start(
        &queue,
        FakeCourier::new(|_, _| DeliveryOutcome::PermFail {
            reason: "550 5.1.1 no such user".into(),
        }),
    );
    queue
        .enqueue(envelope(&["a@x.org"]), BODY.to_vec())
        .await
        .expect("enqueued");

    wait_until("the queue to empty", || queue.is_empty()).await;
    assert_eq!(
        run.notices(),
        [(
            "a@x.org".to_string(),
            "550 5.1.1 no such user".to_string(),
            None,
            BODY.to_vec()
        )]
    );
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_warning_is_sent_once_per_recipient_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = QueueOptions {
        warn_intervals: vec![Duration::from_millis(150), Duration::from_secs(3600)],
        ..fast()
    };
    let env = envelope(&["a@x.org", "b@y.org"]);
    let queue = Queue::open(dir.path(), opts.clone()).expect("open");
    let run = start(&queue, FakeCourier::new(|_, _| tempfail()));
    queue
        .enqueue(env.clone(), BODY.to_vec())
        .await
        .expect("enqueued");

    wait_until("the warnings", || run.delays().len() == 2).await;
    let rounds = run.courier.rcpts().len();
    wait_until("more rounds", || run.courier.rcpts().len() >= rounds + 10).await;
    let warned = Duration::from_millis(150);
    assert_eq!(
        run.delays(),
        [
            ("a@x.org".to_string(), warned),
            ("b@y.org".to_string(), warned)
        ]
    );
    let notices = run.notices();
    assert!(notices
        .iter()
        .all(|n| n.1 == "451 try later" && n.3 == BODY));
    assert!(run.failures().is_empty());
    // Saved, so that a restart knows.
    let state_path = dir.path().join("queue").join(format!("{}.state", env.id));
    wait_until("the warning to be saved", || {
        fs::read(&state_path)
            .ok()
            .and_then(|data| serde_json::from_slice::<DeliveryState>(&data).ok())
            .is_some_and(|s| s.recipients.iter().all(|r| r.warned_ms == Some(150)))
    })
    .await;
    drop(queue);
    run.crash().await;

    let queue = Queue::open(dir.path(), opts).expect("reopen");
    let run = start(&queue, FakeCourier::new(|_, _| tempfail()));
    wait_until("rounds after the restart", || {
        run.courier.rcpts().len() >= 10
    })
    .await;
    assert!(run.delays().is_empty(), "{:?}", run.delays());
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_first_warning_names_only_the_longest_interval_passed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hour = Duration::from_secs(3600);
    let opts = QueueOptions {
        warn_intervals: vec![hour, 2 * hour, 24 * hour],
        ..fast()
    };
    let queue = Queue::open(dir.path(), opts).expect("open");
    let run = start(&queue, FakeCourier::new(|_, _| tempfail()));
    let mut env = envelope(&["a@x.org"]);
    env.received_at -= 3 * 3600; // as if the server had been down for three hours
    queue.enqueue(env, BODY.to_vec()).await.expect("enqueued");

    wait_until("the warning", || !run.delays().is_empty()).await;
    let rounds = run.courier.rcpts().len();
    wait_until("more rounds", || run.courier.rcpts().len() >= rounds + 5).await;
    assert_eq!(run.delays(), [("a@x.org".to_string(), 2 * hour)]);
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_warn_intervals_means_no_delay_warnings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = QueueOptions {
        warn_intervals: Vec::new(),
        ..fast()
    };
    let queue = Queue::open(dir.path(), opts).expect("open");
    let run = start(&queue, FakeCourier::new(|_, _| tempfail()));
    let mut env = envelope(&["a@x.org"]);
    env.received_at -= 3600;
    queue.enqueue(env, BODY.to_vec()).await.expect("enqueued");
    wait_until("a few rounds", || run.courier.rcpts().len() >= 5).await;
    assert!(run.notices().is_empty());
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_recipients_go_to_the_courier_as_one_batch() {
    use std::sync::Mutex;

    /// Records the size of every batch it is given and delivers everything.
    #[derive(Default)]
    struct Batches(Mutex<Vec<usize>>);
    impl Courier for Batches {
        fn deliver<'a>(
            &'a self,
            _: &'a Envelope,
            _: &'a Recipient,
            _: &'a [u8],
        ) -> ownmail_types::BoxFuture<'a, DeliveryOutcome> {
            self.0.lock().expect("lock").push(1);
            Box::pin(async {
                DeliveryOutcome::Delivered {
                    detail: "ok".into(),
                }
            })
        }
        fn deliver_batch<'a>(
            &'a self,
            _: &'a Envelope,
            rcpts: &'a [&'a Recipient],
            _: &'a [u8],
        ) -> ownmail_types::BoxFuture<'a, Vec<DeliveryOutcome>> {
            self.0.lock().expect("lock").push(rcpts.len());
            let n = rcpts.len();
            Box::pin(async move {
                vec![
                    DeliveryOutcome::Delivered {
                        detail: "ok".into()
                    };
                    n
                ]
            })
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(dir.path(), fast()).expect("open");
    let courier = Arc::new(Batches::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let handle = queue.start(courier.clone(), Arc::new(NoNotice), stop_rx);
    let mut env = envelope(&["a@x.org", "b@x.org", "c@y.org"]);
    for r in &mut env.recipients {
        r.dest = Destination::Relay {
            action: "out".into(),
            to: r.rcpt.clone(),
        };
    }
    queue.enqueue(env, BODY.to_vec()).await.expect("enqueued");
    wait_until("delivery", || queue.is_empty()).await;
    assert_eq!(*courier.0.lock().expect("lock"), vec![3]);
    let _ = stop.send(true);
    let _ = handle.await;
}

struct NoNotice;
impl crate::Notifier for NoNotice {
    fn failed(&self, _: &Envelope, _: &Recipient, _: &str, _: &[u8]) {}
    fn delayed(&self, _: &Envelope, _: &Recipient, _: &str, _: Duration, _: &[u8]) {}
}
