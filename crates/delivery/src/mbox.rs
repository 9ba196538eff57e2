//! mbox destinations (SPEC §5.3), normally `/var/mail/USER`, in the mboxrd form.
//!
//! Locking: both a dot-lock `PATH.lock` (what mail readers such as mutt, mailx and Dovecot's
//! mbox driver look for) and `flock(LOCK_EX)` on the file (what procmail and others take), so
//! that no reader sees a message half appended, whichever lock it honours.
//!
//! No partial entries (SPEC §5.2): the length before appending is remembered, and on any error
//! the file is truncated back to it. A crash between write and truncate can leave a partial
//! entry; that is the one window an append-only format cannot close.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{fchown, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use ownmail_mailstore::Owner;
use ownmail_types::{DeliveryOutcome, LocalUser, ReversePath};

/// How long to wait for another process's lock (dot-lock, then flock) before a `TempFail`.
const LOCK_WAIT: Duration = Duration::from_secs(10);
const LOCK_POLL: Duration = Duration::from_millis(100);
/// A dot-lock this old was left by a crashed writer; nobody holds a mailbox for 5 minutes.
const STALE_LOCK: Duration = Duration::from_secs(300);

/// Appends `copy` (already in local form) to the mbox at `path`, creating it (mode 0600, the
/// user's) when missing.
pub(crate) async fn deliver(
    user: &LocalUser,
    path: &Path,
    mail_from: &ReversePath,
    copy: Vec<u8>,
) -> DeliveryOutcome {
    let owner = match crate::owner_for(user) {
        Ok(owner) => owner,
        Err(refused) => return refused,
    };
    let entry = entry(mail_from, SystemTime::now(), &copy);
    let target = path.to_path_buf();
    match tokio::task::spawn_blocking(move || append(&target, &entry, owner)).await {
        Ok(Ok(())) => DeliveryOutcome::Delivered {
            detail: format!("mbox {}", path.display()),
        },
        // Lock contention, a full disk, permissions: all worth a retry.
        Ok(Err(e)) => DeliveryOutcome::TempFail {
            reason: format!("mbox delivery failed: {e}"),
        },
        Err(e) => DeliveryOutcome::TempFail {
            reason: format!("mbox delivery task failed: {e}"),
        },
    }
}

/// Locks, appends, syncs; the locks go when this returns (flock with the file, the dot-lock
/// by its guard), whatever happened.
fn append(path: &Path, entry: &[u8], owner: Option<Owner>) -> io::Result<()> {
    let _dotlock = DotLock::acquire(path)?;
    let file = open_mbox(path, owner)?;
    let file = flock_exclusive(file).map_err(|e| at(path, e))?;
    append_or_roll_back(&file, entry, |mut f, bytes| f.write_all(bytes)).map_err(|e| at(path, e))
}

/// Writes the separator the file needs and `entry` through `write`, then syncs. On any error
/// the file is truncated back to its old length (and synced) before the error is returned.
/// `write` is a parameter so that tests can make it fail half way.
fn append_or_roll_back(
    file: &File,
    entry: &[u8],
    mut write: impl FnMut(&File, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let old_len = file.metadata()?.len();
    let result = separator(file, old_len)
        .and_then(|sep| write(file, sep))
        .and_then(|()| write(file, entry))
        .and_then(|()| file.sync_all());
    match result {
        Ok(()) => Ok(()),
        Err(e) => match file.set_len(old_len).and_then(|()| file.sync_all()) {
            Ok(()) => Err(e),
            Err(t) => Err(io::Error::new(
                e.kind(),
                format!("{e}; truncating back to {old_len} bytes failed too: {t}"),
            )),
        },
    }
}

/// What must precede a new entry so that its `From ` line starts after an empty line, even
/// if whoever wrote last did not end the file properly.
fn separator(file: &File, len: u64) -> io::Result<&'static [u8]> {
    if len == 0 {
        return Ok(b"");
    }
    let mut tail = [0u8; 2];
    let tail = if len >= 2 {
        file.read_exact_at(&mut tail, len - 2)?;
        &tail[..]
    } else {
        file.read_exact_at(&mut tail[..1], 0)?;
        &tail[..1]
    };
    Ok(if tail.ends_with(b"\n\n") || tail == b"\n" {
        b""
    } else if tail.ends_with(b"\n") {
        b"\n"
    } else {
        b"\n\n"
    })
}

/// Opens the mbox for appending, or creates it (0600, chowned to `owner`). Never follows a
/// symbolic link, and refuses an existing file that is not a plain file of the user's with a
/// single link: as root, appending to a link an attacker planted would write anywhere.
fn open_mbox(path: &Path, owner: Option<Owner>) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true)
        .append(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits());
    match opts.clone().create_new(true).mode(0o600).open(path) {
        Ok(file) => {
            if let Some((uid, gid)) = owner {
                if let Err(e) = fchown(&file, Some(uid), Some(gid)) {
                    let _ = fs::remove_file(path);
                    return Err(at(path, e));
                }
            }
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let file = opts.open(path).map_err(|e| at(path, e))?;
            let meta = file.metadata().map_err(|e| at(path, e))?;
            let refuse = |why: String| {
                Err(at(
                    path,
                    io::Error::new(io::ErrorKind::PermissionDenied, why),
                ))
            };
            if !meta.is_file() {
                return refuse("not a regular file".to_string());
            }
            if meta.nlink() != 1 {
                return refuse(format!(
                    "has {} hard links, refusing to append",
                    meta.nlink()
                ));
            }
            if let Some((uid, _)) = owner {
                if meta.uid() != uid {
                    return refuse(format!(
                        "owned by uid {}, not by the recipient's uid {uid}",
                        meta.uid()
                    ));
                }
            }
            Ok(file)
        }
        Err(e) => Err(at(path, e)),
    }
}

fn flock_exclusive(file: File) -> io::Result<Flock<File>> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((f, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(LOCK_POLL);
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "flock held by another process for over {}s",
                        LOCK_WAIT.as_secs()
                    ),
                ))
            }
            Err((_, e)) => return Err(e.into()),
        }
    }
}

/// `PATH.lock`, made with `O_EXCL` (safe on local file systems, which is where mail spools
/// live) and removed when dropped.
struct DotLock {
    path: PathBuf,
}

impl DotLock {
    fn acquire(mbox: &Path) -> io::Result<DotLock> {
        let mut name = OsString::from(mbox.as_os_str());
        name.push(".lock");
        let path = PathBuf::from(name);
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    // The pid, as liblockfile writes it: for a human wondering who holds it.
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(DotLock { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if is_stale(&path) {
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        let why = format!(
                            "locked by another process for over {}s",
                            LOCK_WAIT.as_secs()
                        );
                        return Err(at(&path, io::Error::new(io::ErrorKind::WouldBlock, why)));
                    }
                    std::thread::sleep(LOCK_POLL);
                }
                Err(e) => return Err(at(&path, e)),
            }
        }
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn is_stale(lock: &Path) -> bool {
    let Ok(modified) = fs::symlink_metadata(lock).and_then(|m| m.modified()) else {
        return false;
    };
    SystemTime::now()
        .duration_since(modified)
        .is_ok_and(|age| age > STALE_LOCK)
}

/// One mboxrd entry: the `From ` line, the message with every `>*From ` line given one more
/// `>` (so readers can undo it exactly), a final newline if missing, and an empty line.
fn entry(mail_from: &ReversePath, now: SystemTime, copy: &[u8]) -> Vec<u8> {
    let sender = match mail_from {
        ReversePath::Null => "MAILER-DAEMON".to_string(),
        // A quoted local part may hold a space, which would end the field early.
        ReversePath::Address(a) => a.to_string().replace(|c: char| c.is_whitespace(), "_"),
    };
    let mut out = format!("From {sender} {}\n", asctime(now)).into_bytes();
    out.reserve(copy.len() + copy.len() / 50 + 2);
    for line in copy.split_inclusive(|&b| b == b'\n') {
        let unquoted = line
            .iter()
            .position(|&b| b != b'>')
            .and_then(|i| line.get(i..))
            .unwrap_or_default();
        if unquoted.starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// The `From ` line date in asctime(3) form, `Thu Nov  4 18:22:48 1986`, in UTC.
fn asctime(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Both indices are in range by construction: a remainder of 7, and a month in 1..=12.
    let (wday, month) = (DAYS[(days % 7) as usize], MONTHS[(m - 1) as usize]);
    format!("{wday} {month} {d:2} {hh:02}:{mm:02}:{ss:02} {y}")
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`, for non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ownmail_types::Address;

    #[test]
    fn asctime_matches_the_c_library_form() {
        assert_eq!(asctime(UNIX_EPOCH), "Thu Jan  1 00:00:00 1970");
        assert_eq!(
            asctime(UNIX_EPOCH + Duration::from_secs(531_505_368)),
            "Tue Nov  4 16:22:48 1986"
        );
        assert_eq!(
            asctime(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "Tue Feb 29 00:00:00 2000"
        );
        assert_eq!(
            asctime(UNIX_EPOCH + Duration::from_secs(1_767_225_599)),
            "Wed Dec 31 23:59:59 2025"
        );
    }

    #[test]
    fn entries_quote_from_lines_mboxrd_style() {
        let from = ReversePath::Address(Address::new_unchecked("a", "x.org"));
        let e = entry(
            &from,
            UNIX_EPOCH,
            b"Subject: s\n\nFrom here\n>From there\n>>From x\nFromage\n From y\nend",
        );
        let text = String::from_utf8(e).expect("utf-8");
        assert_eq!(
            text,
            "From a@x.org Thu Jan  1 00:00:00 1970\nSubject: s\n\n>From here\n>>From there\n>>>From x\nFromage\n From y\nend\n\n"
        );
        let e = entry(&ReversePath::Null, UNIX_EPOCH, b"x\n");
        assert!(e.starts_with(b"From MAILER-DAEMON Thu Jan  1"));
        assert!(e.ends_with(b"\nx\n\n"));
    }

    #[test]
    fn a_write_failing_half_way_is_truncated_back() {
        let t = tempfile::tempdir().expect("tempdir");
        let path = t.path().join("mbox");
        fs::write(&path, b"From a Thu Jan  1 00:00:00 1970\nold\n\n").expect("write");
        let before = fs::read(&path).expect("read");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .expect("open");
        let result = append_or_roll_back(
            &file,
            b"From b Thu Jan  1 00:00:00 1970\nnew message\n\n",
            |mut f, bytes| {
                let half = bytes.get(..bytes.len() / 2).unwrap_or_default();
                f.write_all(half)?;
                Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "disk full (simulated)",
                ))
            },
        );
        let err = result.expect_err("simulated failure");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(fs::read(&path).expect("read"), before);
    }

    #[test]
    fn separator_repairs_a_missing_final_newline() {
        let t = tempfile::tempdir().expect("tempdir");
        let cases: [(&[u8], &[u8]); 5] = [
            (b"", b""),
            (b"x", b"\n\n"),
            (b"x\n", b"\n"),
            (b"x\n\n", b""),
            (b"\n", b""),
        ];
        for (content, want) in cases {
            let path = t.path().join("m");
            fs::write(&path, content).expect("write");
            let f = File::open(&path).expect("open");
            assert_eq!(
                separator(&f, content.len() as u64).expect("separator"),
                want,
                "{content:?}"
            );
        }
    }

    #[test]
    fn a_stale_dot_lock_is_broken_and_ours_removed_on_drop() {
        let t = tempfile::tempdir().expect("tempdir");
        let mbox = t.path().join("u");
        let lock = t.path().join("u.lock");
        let old = File::create(&lock).expect("lock");
        old.set_modified(SystemTime::now() - Duration::from_secs(600))
            .expect("age it");
        let held = DotLock::acquire(&mbox).expect("stale lock broken");
        assert!(lock.exists());
        drop(held);
        assert!(!lock.exists());
    }
}
