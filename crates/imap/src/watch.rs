//! IDLE's wake-up: the mail store's [`FolderWatch`] (inotify on the folder's `new/` and
//! `cur/`) registered with tokio's reactor.
//!
//! Why the split: the mail store is shared with local delivery and has no async runtime, so
//! it only sets up the non-blocking inotify descriptor and reads it; waiting for it is the
//! async caller's business, and that is this module.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use ownmail_mailstore::{FolderWatch, WatchEvent};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::debug;

/// A watch on one folder, waited on without blocking the runtime.
pub(crate) struct Watcher {
    fd: AsyncFd<FolderWatch>,
}

impl Watcher {
    /// Watches the folder whose Maildir directory is `dir`. `None` when that cannot be done
    /// (not Linux, inotify limits reached, `new/` or `cur/` missing): the caller polls. The
    /// reason is logged once per process at debug level — with many sessions idling, the
    /// per-user instance limit fails every further IDLE the same way.
    pub fn start(session: &str, dir: &Path) -> Option<Watcher> {
        match Watcher::new(dir) {
            Ok(w) => Some(w),
            Err(e) => {
                static LOGGED: AtomicBool = AtomicBool::new(false);
                if !LOGGED.swap(true, Ordering::Relaxed) {
                    debug!(
                        "imap session={session} event=idle-watch-unavailable fallback=poll error=\"{e}\""
                    );
                }
                None
            }
        }
    }

    // The crate denies `unsafe`; this is its one exception: since tokio 1.53.3 registering a
    // descriptor is `unsafe`, and the old safe constructors are deprecated as unsound.
    #[allow(unsafe_code)]
    fn new(dir: &Path) -> io::Result<Watcher> {
        let watch = FolderWatch::new(dir)?;
        // SAFETY: `register_with_interest` needs `watch.as_raw_fd()` to be an open descriptor
        // that stays open, naming the same open file description, for as long as the
        // `AsyncFd` lives, with every `as_raw_fd()` call returning that same number.
        // `FolderWatch` owns its inotify descriptor (an `OwnedFd` inside nix's `Inotify`),
        // opened in `FolderWatch::new` and closed only when the `FolderWatch` is dropped; it
        // has no method that closes, replaces or hands out ownership of it, and its
        // `as_raw_fd` always returns that descriptor. The `AsyncFd` owns the `FolderWatch`
        // (moved in here), and `Watcher` never calls `get_mut`, `into_inner` or
        // `mem::forget`, so the descriptor outlives the registration, which `AsyncFd`'s drop
        // removes before dropping the `FolderWatch`.
        let fd = unsafe { AsyncFd::register_with_interest(watch, Interest::READABLE) }?;
        Ok(Watcher { fd })
    }

    /// Waits until the folder changed; a burst of changes is one answer. Cancel-safe: the
    /// events are read only in the same poll that returns them, so dropping this future
    /// loses nothing.
    pub async fn changed(&self) -> io::Result<WatchEvent> {
        loop {
            let mut ready = self.fd.readable().await?;
            // `try_io` clears the readiness only on WouldBlock (the queue is empty), so a
            // queue drained partly (FolderWatch bounds its reads) wakes us again at once.
            match ready.try_io(|fd| fd.get_ref().read_changes()) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use std::time::Duration;

    use ownmail_mailstore::Maildir;

    use super::*;

    #[tokio::test]
    async fn delivery_from_another_thread_wakes_the_watcher_within_a_second() {
        let t = tempfile::tempdir().expect("tempdir");
        let md = Maildir::open(t.path().join("Maildir"));
        md.ensure(None).expect("ensure");
        let w = Watcher::start("test", md.path()).expect("inotify");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            md.deliver(b"Subject: hi\n\nbody\n", None).expect("deliver");
        });
        let ev = tokio::time::timeout(Duration::from_secs(1), w.changed())
            .await
            .expect("woken within 1 s")
            .expect("no error");
        assert_eq!(ev, WatchEvent::Changed);
        writer.join().expect("writer");
        // Drained: nothing more to report.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), w.changed())
                .await
                .is_err()
        );
    }

    #[test]
    fn missing_folder_gives_no_watcher() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _in_rt = rt.enter();
        let t = tempfile::tempdir().expect("tempdir");
        assert!(Watcher::start("test", &t.path().join("nope")).is_none());
    }
}
