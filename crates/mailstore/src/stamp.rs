//! A cheap "has this folder changed?" test, so that an IMAP session need not re-read a
//! 100,000-file directory after every command or on every IDLE re-check.
//!
//! Every change to what a folder holds renames, creates or removes a file in `new/` or `cur/`
//! (which moves the directory's mtime), or rewrites `dovecot-uidlist` / `dovecot-keywords`
//! (replaced by rename: a new inode and mtime). A [`FolderStamp`] records those; equal stamps
//! mean nothing changed since the sync that took the first one.
//!
//! The kernel stamps directories with a coarse clock (a few milliseconds), so two changes in
//! the same tick leave the same mtime. A stamp whose newest time is less than
//! [`SETTLE`] old is therefore not trusted ([`FolderStamp::take`] gives `None`): the caller
//! syncs every time until the folder has been quiet for that long.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a folder must have been untouched before its stamp is trusted.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The identity and mtime of `new/`, `cur/`, the UID list and the keywords file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolderStamp {
    parts: [Option<(u64, i64, i64)>; 4],
}

impl FolderStamp {
    /// The folder at `dir` as it is now; `None` when it cannot be trusted (changed within
    /// [`SETTLE`], or `new/`/`cur/` unreadable): sync in that case.
    pub fn take(dir: &Path) -> Option<FolderStamp> {
        let part = |name: &str| {
            fs::symlink_metadata(dir.join(name))
                .ok()
                .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
        };
        let parts = [
            part("new"),
            part("cur"),
            part("dovecot-uidlist"),
            part("dovecot-keywords"),
        ];
        if parts[0].is_none() || parts[1].is_none() {
            return None;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let settled = parts.iter().flatten().all(|&(_, secs, _)| {
            u64::try_from(secs).is_ok_and(|s| now.saturating_sub(s) >= SETTLE.as_secs())
        });
        settled.then_some(FolderStamp { parts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path, secs: u64) {
        let t = SystemTime::now() - Duration::from_secs(secs);
        let f = fs::File::open(path).expect("open");
        f.set_modified(t).expect("set mtime");
    }

    #[test]
    fn a_quiet_folder_has_a_stable_stamp_and_a_change_breaks_it() {
        let t = tempfile::tempdir().expect("tmp");
        let d = t.path();
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir(d.join(sub)).expect("mkdir");
        }
        // Just made: too fresh to trust.
        assert_eq!(FolderStamp::take(d), None);
        age(&d.join("new"), 60);
        age(&d.join("cur"), 60);
        let a = FolderStamp::take(d).expect("settled");
        assert_eq!(FolderStamp::take(d), Some(a));
        // A delivery into new/ moves its mtime: not equal (and not yet trusted).
        fs::write(d.join("new/1.M1P1.h"), "x").expect("deliver");
        assert_ne!(FolderStamp::take(d), Some(a));
        age(&d.join("new"), 30);
        let b = FolderStamp::take(d).expect("settled again");
        assert_ne!(a, b);
        // A rewritten UID list (new inode) changes it too, even with an old mtime.
        fs::write(d.join("dovecot-uidlist"), "3 V1 N1\n").expect("uidlist");
        age(&d.join("dovecot-uidlist"), 30);
        let c = FolderStamp::take(d).expect("settled");
        assert_ne!(b, c);
        // Not a folder.
        assert_eq!(FolderStamp::take(&d.join("missing")), None);
    }
}
