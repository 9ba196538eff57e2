//! Loaded stores shared by all sessions of the process, reloaded when the file changes.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::store::TokenStore;

/// Most stores kept loaded; past it the least recently used is dropped.
const MAX_CACHED: usize = 64;

/// What identifies one version of a store file: [`crate::learn`] replaces it by rename, so
/// the inode changes with every write; mtime and size catch anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    mtime: Option<SystemTime>,
    size: u64,
}

struct Entry {
    key: FileKey,
    store: Arc<TokenStore>,
    used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<PathBuf, Entry>,
    clock: u64,
}

/// A process-wide cache of [`TokenStore`]s keyed by path. `Send + Sync`; the lock is not
/// held while a store is read from disk.
#[derive(Default)]
pub struct StoreCache {
    inner: Mutex<Inner>,
}

impl StoreCache {
    pub fn new() -> Self {
        StoreCache::default()
    }

    /// The spam probability of `message` under the store at `path`: `None` when there is no
    /// store, it cannot be read, or it has not learnt enough yet.
    pub fn probability(&self, path: &Path, message: &[u8]) -> Option<f64> {
        self.store(path)?.spam_probability(message)
    }

    /// The store at `path`, loaded again if the file changed since it was cached.
    pub fn store(&self, path: &Path) -> Option<Arc<TokenStore>> {
        let Some(key) = file_key(path) else {
            self.lock().entries.remove(path);
            return None;
        };
        {
            let mut inner = self.lock();
            inner.clock += 1;
            let now = inner.clock;
            if let Some(e) = inner.entries.get_mut(path) {
                if e.key == key {
                    e.used = now;
                    return Some(Arc::clone(&e.store));
                }
            }
        }
        let store = Arc::new(TokenStore::load(path).ok()?);
        // The file may have been replaced while it was read: cache it under the key seen
        // before reading, so a newer file is noticed (and read) next time.
        let mut inner = self.lock();
        if inner.entries.len() >= MAX_CACHED && !inner.entries.contains_key(path) {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(p, _)| p.clone());
            if let Some(p) = oldest {
                inner.entries.remove(&p);
            }
        }
        let used = inner.clock;
        inner.entries.insert(
            path.to_path_buf(),
            Entry {
                key,
                store: Arc::clone(&store),
                used,
            },
        );
        Some(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves a usable map: recover it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn file_key(path: &Path) -> Option<FileKey> {
    let md = std::fs::symlink_metadata(path).ok()?;
    md.is_file().then(|| FileKey {
        dev: md.dev(),
        ino: md.ino(),
        mtime: md.modified().ok(),
        size: md.size(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{learn, Class};
    use crate::MIN_TRAINED;

    fn msg(id: &str, body: &str) -> Vec<u8> {
        format!("Message-ID: <{id}@example.org>\r\nSubject: test\r\n\r\n{body}\r\n").into_bytes()
    }

    #[test]
    fn cache_follows_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(crate::STORE_FILE);
        let cache = StoreCache::new();
        assert_eq!(
            cache.probability(&path, b"Subject: x\r\n\r\nlottery\r\n"),
            None
        );
        for i in 0..MIN_TRAINED {
            learn(
                &path,
                &msg(&format!("s{i}"), "lottery winner prize"),
                Class::Spam,
            )
            .expect("learn");
            learn(
                &path,
                &msg(&format!("h{i}"), "meeting agenda notes"),
                Class::Ham,
            )
            .expect("learn");
        }
        let first = cache.store(&path).expect("store");
        assert_eq!(first.counts(), (MIN_TRAINED, MIN_TRAINED));
        let again = cache.store(&path).expect("store");
        assert!(Arc::ptr_eq(&first, &again), "unchanged file is not reread");
        let p = cache
            .probability(&path, &msg("x", "lottery winner"))
            .expect("trained");
        assert!(p > 0.9, "{p}");
        learn(&path, &msg("more", "lottery"), Class::Spam).expect("learn");
        let after = cache.store(&path).expect("store");
        assert_eq!(after.counts(), (MIN_TRAINED + 1, MIN_TRAINED));
        std::fs::remove_file(&path).expect("rm");
        assert!(cache.store(&path).is_none());
    }

    #[test]
    fn cache_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<StoreCache>();
    }
}
