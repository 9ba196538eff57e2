//! Watching one folder for changes, so IMAP IDLE can report new mail within a second of
//! delivery (SPEC §5.6) without polling.
//!
//! A [`FolderWatch`] is a Linux inotify instance with two watches: the folder's `new/` and
//! `cur/`. Everything that changes what IMAP shows of a folder is a name change in one of
//! them — delivery renames `tmp/` → `new/`, sessions rename `new/` → `cur/` and within `cur/`
//! to change `:2,FLAGS`, expunge unlinks — so the watch asks for exactly those events
//! (create, moved in, moved out, delete) and not for writes or attribute changes, which
//! happen in `tmp/` or leave the IMAP view alone. The UID list (`dovecot-uidlist`) lives
//! beside `new/` and `cur/`, not in them: a session's own sync does not wake it up.
//!
//! The file descriptor is non-blocking and close-on-exec, and this module stays synchronous
//! (the crate has no async runtime): the caller waits for the descriptor to become readable
//! (tokio's `AsyncFd`, `poll(2)`, …) and then calls [`FolderWatch::read_changes`], which
//! drains what is queued and reports it as one coalesced [`WatchEvent`].
//!
//! Contract for callers: a watch is a hint, never the truth. After [`WatchEvent::Changed`]
//! re-read the folder ([`crate::Folder::sync`]); the kernel may drop events when its queue
//! overflows (reported as `Changed`), and file systems such as NFS never report changes made
//! on other hosts, so a slow safety re-read is still wise. When the watch cannot be set up
//! (not Linux, `fs.inotify.max_user_instances` or `max_user_watches` reached, folder gone),
//! [`FolderWatch::new`] fails and the caller polls instead.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

/// What [`FolderWatch::read_changes`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEvent {
    /// Something in `new/` or `cur/` changed (or events were lost): re-read the folder.
    Changed,
    /// `new/` or `cur/` itself was removed, moved or unmounted: the watch sees nothing more.
    /// Re-read the folder and stop waiting on this watch.
    Gone,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::io;
    use std::os::fd::{AsFd, BorrowedFd};
    use std::path::Path;

    use nix::errno::Errno;
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

    use super::WatchEvent;

    /// At most this many `read(2)`s (4 KiB each, see nix's `read_events`) per call: a folder
    /// flooded with changes cannot keep one caller here forever. What is left keeps the
    /// descriptor readable, so the next wait returns at once.
    const MAX_READS: usize = 16;

    /// The events that change what IMAP shows. `IN_ONLYDIR` refuses a non-directory and
    /// `IN_DONT_FOLLOW` a symbolic link named `new` or `cur` (inside a Maildir nothing follows
    /// a link, see the crate's invariants). `IN_DELETE_SELF`/`IN_MOVE_SELF` tell us the
    /// directory went away; `IN_IGNORED`, `IN_UNMOUNT` and `IN_Q_OVERFLOW` come unasked.
    fn mask() -> AddWatchFlags {
        AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR
            | AddWatchFlags::IN_DONT_FOLLOW
    }

    /// Events after which the watch on that directory reports nothing more.
    fn gone() -> AddWatchFlags {
        AddWatchFlags::IN_IGNORED
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_UNMOUNT
    }

    #[derive(Debug)]
    pub struct Watch {
        inotify: Inotify,
    }

    impl Watch {
        pub fn new(dir: &Path) -> io::Result<Watch> {
            let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
            for sub in ["new", "cur"] {
                let path = dir.join(sub);
                inotify.add_watch(&path, mask()).map_err(|e| {
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("{}: inotify_add_watch: {e}", path.display()),
                    )
                })?;
            }
            Ok(Watch { inotify })
        }

        pub fn read_changes(&self) -> io::Result<WatchEvent> {
            let mut seen = false;
            for _ in 0..MAX_READS {
                let events = match self.inotify.read_events() {
                    Ok(events) => events,
                    // EWOULDBLOCK is EAGAIN on Linux.
                    Err(Errno::EAGAIN) => break,
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                };
                if events.is_empty() {
                    break;
                }
                if events.iter().any(|ev| ev.mask.intersects(gone())) {
                    return Ok(WatchEvent::Gone);
                }
                seen = true;
            }
            if seen {
                Ok(WatchEvent::Changed)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        }

        pub fn fd(&self) -> BorrowedFd<'_> {
            self.inotify.as_fd()
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::convert::Infallible;
    use std::io;
    use std::os::fd::BorrowedFd;
    use std::path::Path;

    use super::WatchEvent;

    /// No inotify here: a watch can never be made, so none of its methods can be reached.
    #[derive(Debug)]
    pub struct Watch {
        never: Infallible,
    }

    impl Watch {
        pub fn new(_dir: &Path) -> io::Result<Watch> {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "folder watching needs Linux inotify",
            ))
        }

        pub fn read_changes(&self) -> io::Result<WatchEvent> {
            match self.never {}
        }

        pub fn fd(&self) -> BorrowedFd<'_> {
            match self.never {}
        }
    }
}

/// A watch on one folder's `new/` and `cur/` (see the module header). Dropping it closes the
/// inotify descriptor, which removes both watches.
#[derive(Debug)]
pub struct FolderWatch {
    inner: imp::Watch,
}

impl FolderWatch {
    /// Starts watching the folder whose Maildir directory is `dir` ([`crate::Folder::path`],
    /// [`crate::Maildir::path`]). Fails when inotify is unavailable or out of instances or
    /// watches, or when `new/` or `cur/` is missing, not a directory, or a symbolic link; the
    /// caller should then poll. Changes made before this returns are not reported: re-read
    /// the folder once after starting the watch.
    pub fn new(dir: &Path) -> io::Result<FolderWatch> {
        Ok(FolderWatch {
            inner: imp::Watch::new(dir)?,
        })
    }

    /// Drains the queued events without blocking and sums them up: `Changed`, or `Gone` if
    /// either directory stopped being watched. Nothing queued is an error of kind
    /// [`io::ErrorKind::WouldBlock`] — what a readiness loop (tokio's `AsyncFd::try_io`)
    /// expects before it waits again.
    pub fn read_changes(&self) -> io::Result<WatchEvent> {
        self.inner.read_changes()
    }
}

/// The inotify descriptor, to wait on for readability. It is the same descriptor for the
/// watch's whole life — opened by [`FolderWatch::new`], closed only when the watch is dropped —
/// which is what registering it with an event loop (tokio's `AsyncFd`) requires.
impl AsFd for FolderWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }
}

impl AsRawFd for FolderWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.fd().as_raw_fd()
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use std::fs;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::Maildir;

    /// Polls `read_changes` until it reports something or `limit` passes.
    fn wait_for(w: &FolderWatch, limit: Duration) -> Option<(WatchEvent, Duration)> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            match w.read_changes() {
                Ok(ev) => return Some((ev, t0.elapsed())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("read_changes: {e}"),
            }
        }
        None
    }

    fn maildir() -> (tempfile::TempDir, Maildir) {
        let t = tempfile::tempdir().expect("tempdir");
        let md = Maildir::open(t.path().join("Maildir"));
        md.ensure(None).expect("ensure");
        (t, md)
    }

    #[test]
    fn nothing_happened_is_would_block() {
        let (_t, md) = maildir();
        let w = FolderWatch::new(md.path()).expect("watch");
        let e = w.read_changes().expect_err("nothing yet");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn rename_into_new_by_another_thread_is_seen_within_a_second() {
        let (_t, md) = maildir();
        let w = FolderWatch::new(md.path()).expect("watch");
        let root = md.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let tmp = root.join("tmp/1.M1P1Q1.host,S=2");
            fs::write(&tmp, b"x\n").expect("write tmp");
            fs::rename(&tmp, root.join("new/1.M1P1Q1.host,S=2")).expect("rename");
        });
        let (ev, took) = wait_for(&w, Duration::from_secs(1)).expect("an event within 1 s");
        assert_eq!(ev, WatchEvent::Changed);
        assert!(took < Duration::from_secs(1), "{took:?}");
        writer.join().expect("writer");
    }

    #[test]
    fn a_burst_of_changes_is_one_event() {
        let (_t, md) = maildir();
        let w = FolderWatch::new(md.path()).expect("watch");
        for i in 0..50 {
            md.deliver(format!("Subject: {i}\n\nbody\n").as_bytes(), None)
                .expect("deliver");
        }
        assert_eq!(w.read_changes().expect("changed"), WatchEvent::Changed);
        let e = w.read_changes().expect_err("all drained");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn flag_rename_in_cur_and_unlink_are_seen() {
        let (_t, md) = maildir();
        let path = md.deliver(b"Subject: x\n\nbody\n", None).expect("deliver");
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let w = FolderWatch::new(md.path()).expect("watch");

        let cur = md.path().join("cur").join(format!("{name}:2,S"));
        fs::rename(&path, &cur).expect("new -> cur");
        assert_eq!(w.read_changes().expect("moved"), WatchEvent::Changed);

        fs::remove_file(&cur).expect("expunge");
        assert_eq!(w.read_changes().expect("deleted"), WatchEvent::Changed);
    }

    #[test]
    fn writes_outside_new_and_cur_are_not_seen() {
        let (_t, md) = maildir();
        let w = FolderWatch::new(md.path()).expect("watch");
        fs::write(md.path().join("tmp/partial"), b"x").expect("tmp");
        fs::write(md.path().join("dovecot-uidlist"), b"3 V1 N1\n").expect("uidlist");
        let e = w.read_changes().expect_err("nothing in new/ or cur/");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn removed_folder_is_gone() {
        let (_t, md) = maildir();
        let w = FolderWatch::new(md.path()).expect("watch");
        fs::remove_dir_all(md.path()).expect("rm");
        let (ev, _) = wait_for(&w, Duration::from_secs(1)).expect("an event");
        assert_eq!(ev, WatchEvent::Gone);
    }

    #[test]
    fn missing_or_linked_new_is_refused() {
        let (t, md) = maildir();
        fs::remove_dir(md.path().join("new")).expect("rm new");
        assert!(FolderWatch::new(md.path()).is_err());
        let elsewhere = t.path().join("elsewhere");
        fs::create_dir(&elsewhere).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, md.path().join("new")).expect("symlink");
        assert!(FolderWatch::new(md.path()).is_err());
    }
}
