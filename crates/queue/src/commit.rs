//! Group commit. Each enqueue writes and fsyncs its own file in `tmp/` (concurrently, on
//! tokio's blocking pool: ext4 folds those fsyncs into one journal commit), then hands the id
//! to the single committer thread. The committer takes every id that is ready at that moment,
//! renames them all into `queue/`, fsyncs `queue/` once, and only then answers each enqueue.
//! While one directory fsync runs, the next batch gathers: under load, one fsync acknowledges
//! many messages.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use ownmail_types::QueueId;
use tokio::sync::oneshot;

use crate::spool::Spool;

struct Job {
    id: QueueId,
    done: oneshot::Sender<io::Result<()>>,
}

/// The handle on the committer thread; the thread ends when this is dropped.
pub(crate) struct Committer {
    jobs: mpsc::Sender<Job>,
    commits: Arc<AtomicU64>,
    #[cfg(test)]
    pub hold: Arc<test_hold::Hold>,
}

impl Committer {
    pub fn start(spool: Arc<Spool>) -> io::Result<Committer> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        #[cfg(test)]
        let hold = Arc::new(test_hold::Hold::default());
        #[cfg(test)]
        let thread_hold = hold.clone();
        std::thread::Builder::new()
            .name("queue-commit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    #[cfg(test)]
                    thread_hold.wait_while_held();
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let ids: Vec<QueueId> = batch.iter().map(|job| job.id.clone()).collect();
                    let results = spool.commit(&ids);
                    counter.fetch_add(1, Ordering::Relaxed);
                    for (job, result) in batch.into_iter().zip(results) {
                        // The enqueue may have been dropped meanwhile; the message stays queued.
                        let _ = job.done.send(result);
                    }
                }
            })?;
        Ok(Committer {
            jobs,
            commits,
            #[cfg(test)]
            hold,
        })
    }

    /// Moves `tmp/<id>` (written and fsynced) into `queue/` durably; resolves after the
    /// directory fsync that covers it.
    pub async fn commit(&self, id: QueueId) -> io::Result<()> {
        let (done, result) = oneshot::channel();
        #[cfg(test)]
        self.hold.submitted.fetch_add(1, Ordering::SeqCst);
        self.jobs
            .send(Job { id, done })
            .map_err(|_| io::Error::other("queue committer stopped"))?;
        result
            .await
            .map_err(|_| io::Error::other("queue committer stopped"))?
    }

    /// Directory fsyncs made so far (each one commits a batch).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// Lets a test stop the committer while enqueues pile up, so that batching is shown by
/// construction rather than by timing.
#[cfg(test)]
pub(crate) mod test_hold {
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Condvar, Mutex, PoisonError};

    #[derive(Default)]
    pub struct Hold {
        held: Mutex<bool>,
        released: Condvar,
        /// Ids handed to the committer so far.
        pub submitted: AtomicUsize,
    }

    impl Hold {
        pub fn set(&self, held: bool) {
            *self.held.lock().unwrap_or_else(PoisonError::into_inner) = held;
            self.released.notify_all();
        }

        pub(super) fn wait_while_held(&self) {
            let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            let _held = self
                .released
                .wait_while(held, |held| *held)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}
