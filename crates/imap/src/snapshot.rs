//! Folder states shared between sessions.
//!
//! A selected folder's message list is the bulk of a session's memory (about 250 bytes a
//! message: 25 MB for a 100,000-message INBOX). Sessions that have the same unchanged folder
//! selected — a phone, a laptop and a webmail on one INBOX — share one list: a process-wide
//! cache maps each folder directory to the list of its last sync, keyed by the folder's
//! [`FolderStamp`], held weakly so a list lives only while some session uses it. A session
//! that changes its view (a STORE, an expunge it may not announce yet) copies the list first
//! (`Arc::make_mut`), and adopts the shared one again at its next refresh.
//!
//! The stamp also spares the directory scan: a folder whose stamp is unchanged since the
//! cached sync is not read again, so the refresh after each command and IDLE's periodic
//! re-check cost four `stat`s.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Folders whose last state is kept after every session let go of it, and for how long.
const KEEP_FOLDERS: usize = 8;
const KEEP_FOR: Duration = Duration::from_secs(300);

use ownmail_mailstore::{Folder, FolderStamp, MessageInfo, StoreError};

/// A folder's state as one sync saw it; `messages` may be shared with other sessions.
#[derive(Clone)]
pub(crate) struct Snapshot {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    pub messages: Arc<Vec<MessageInfo>>,
}

struct Entry {
    /// `None`: synced while the folder was still settling; only a sync may confirm it.
    stamp: Option<FolderStamp>,
    /// The list itself, kept for a while after the last session let go of it, so that
    /// the next SELECT of an unchanged folder (a client reconnecting) needs no scan.
    keep: Option<Arc<Vec<MessageInfo>>>,
    used: Instant,
    uid_validity: u32,
    uid_next: u32,
    highest_modseq: u64,
    messages: Weak<Vec<MessageInfo>>,
}

fn cache() -> &'static Mutex<HashMap<PathBuf, Entry>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Entry>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Lets go of kept lists idle for [`KEEP_FOR`] or beyond the [`KEEP_FOLDERS`] most recently
/// used, and of entries nobody holds any more.
fn trim(c: &mut HashMap<PathBuf, Entry>) {
    for e in c.values_mut() {
        if e.used.elapsed() > KEEP_FOR {
            e.keep = None;
        }
    }
    let mut kept: Vec<(Instant, PathBuf)> = c
        .iter()
        .filter(|(_, e)| e.keep.is_some())
        .map(|(p, e)| (e.used, p.clone()))
        .collect();
    if kept.len() > KEEP_FOLDERS {
        kept.sort();
        let excess = kept.len() - KEEP_FOLDERS;
        for (_, p) in kept.into_iter().take(excess) {
            if let Some(e) = c.get_mut(&p) {
                e.keep = None;
            }
        }
    }
    c.retain(|_, e| e.messages.strong_count() > 0);
}

/// The folder as it is now: the cached state when its stamp has not moved (and some session
/// still holds it), else a fresh sync, cached for the next caller when the stamp is settled.
pub(crate) fn current(folder: &Folder) -> Result<Snapshot, StoreError> {
    let dir = folder.path().to_path_buf();
    let stamp = FolderStamp::take(&dir);
    if let Some(stamp) = stamp {
        if let Ok(mut c) = cache().lock() {
            if let Some(e) = c.get_mut(&dir).filter(|e| e.stamp == Some(stamp)) {
                e.used = Instant::now();
                if let Some(messages) = e.messages.upgrade() {
                    return Ok(Snapshot {
                        uid_validity: e.uid_validity,
                        uid_next: e.uid_next,
                        highest_modseq: e.highest_modseq,
                        messages,
                    });
                }
            }
        }
    }
    let state = folder.sync()?;
    // A sync that found what another session already holds shares that list (the stamp may
    // be unsettled, or moved without a change that matters): same memory, same pointer, so
    // that session's next refresh has nothing to compare.
    let held = cache()
        .lock()
        .ok()
        .and_then(|c| c.get(&dir).and_then(|e| e.messages.upgrade()))
        .filter(|m| **m == state.messages);
    let snap = Snapshot {
        uid_validity: state.uid_validity.0,
        uid_next: state.uid_next.0,
        highest_modseq: state.highest_modseq,
        messages: held.unwrap_or_else(|| Arc::new(state.messages)),
    };
    // The stamp was taken before the sync: a change made meanwhile moves it, so the next
    // caller syncs again rather than trusting a state that missed the change. Without a
    // trusted stamp the entry is still kept, for sharing, but never matched without a sync.
    if let Ok(mut c) = cache().lock() {
        c.insert(
            dir,
            Entry {
                stamp,
                keep: Some(snap.messages.clone()),
                used: Instant::now(),
                uid_validity: snap.uid_validity,
                uid_next: snap.uid_next,
                highest_modseq: snap.highest_modseq,
                messages: Arc::downgrade(&snap.messages),
            },
        );
        trim(&mut c);
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ownmail_mailstore::MailStore;
    use std::time::{Duration, SystemTime};

    fn settle(dir: &std::path::Path) {
        let old = SystemTime::now() - Duration::from_secs(60);
        for name in ["new", "cur", "dovecot-uidlist", "dovecot-keywords"] {
            if let Ok(f) = std::fs::File::open(dir.join(name)) {
                f.set_modified(old).expect("mtime");
            }
        }
    }

    #[test]
    fn a_quiet_folder_is_shared_and_a_change_is_seen() {
        let t = tempfile::tempdir().expect("tmp");
        let store = MailStore::open(t.path().join("Maildir"));
        store.ensure_special_folders(None).expect("ensure");
        let inbox = store.folder("INBOX").expect("inbox");
        let dir = inbox.path().to_path_buf();
        std::fs::write(dir.join("new/1700000000.M1P1.h,S=2"), "x\n").expect("deliver");
        inbox.sync().expect("first sync writes the UID list");
        settle(&dir);
        let a = current(&inbox).expect("a");
        let b = current(&inbox).expect("b");
        assert!(Arc::ptr_eq(&a.messages, &b.messages), "not shared");
        assert_eq!(a.messages.len(), 1);
        // A delivery by someone else: the stamp moves, the next state has it.
        std::fs::write(dir.join("new/1700000001.M2P1.h,S=2"), "y\n").expect("deliver");
        let c = current(&inbox).expect("c");
        assert_eq!(c.messages.len(), 2);
        assert!(!Arc::ptr_eq(&a.messages, &c.messages));
        // An unsettled folder is synced every time, but an unchanged result is shared.
        let d = current(&inbox).expect("d");
        assert!(
            Arc::ptr_eq(&c.messages, &d.messages),
            "unchanged sync not shared"
        );
        drop(d);
        // Dropped by every session: kept for the next SELECT, for a while, then let go.
        let weak = Arc::downgrade(&c.messages);
        drop((a, b, c));
        assert!(
            weak.upgrade().is_some(),
            "the last state is kept for a reconnect"
        );
        if let Ok(mut c) = cache().lock() {
            let long_ago = Instant::now().checked_sub(KEEP_FOR + Duration::from_secs(1));
            for e in c.values_mut() {
                e.used = long_ago.unwrap_or(e.used);
            }
            trim(&mut c);
        }
        assert!(weak.upgrade().is_none(), "kept beyond KEEP_FOR");
    }
}
