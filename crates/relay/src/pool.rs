//! Idle connections kept for the next message to the same server (SPEC §5.4).
//!
//! A connection is kept only after a transaction ended cleanly, and only for [`IDLE_FOR`];
//! at most [`MAX_PER_KEY`] per key and [`MAX_TOTAL`] in all. The key holds everything that
//! shaped the session — address, the TLS policy, the name we verified or presented, HELO,
//! source address, the user we authenticated as — so a connection is only ever reused for a
//! route that would have opened the very same session. Whoever takes one must probe it (the
//! courier sends `RSET`) and drop it on any error: the server may have timed it out.
//!
//! A reaper task runs while the pool holds anything and drops what has expired, so idle
//! connections do not linger when no more mail comes. The lock is never held across an await.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::client::Client;

/// How long an idle connection is kept.
pub(crate) const IDLE_FOR: Duration = Duration::from_secs(10);
/// Idle connections kept per key.
pub(crate) const MAX_PER_KEY: usize = 3;
/// Idle connections kept in all.
pub(crate) const MAX_TOTAL: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub addr: SocketAddr,
    /// The host name used for SNI and certificate checks.
    pub name: String,
    pub tls: crate::TlsPolicy,
    pub lmtp: bool,
    pub helo: String,
    pub src: Option<IpAddr>,
    pub user: Option<String>,
}

#[derive(Default)]
struct Idle {
    conns: HashMap<Key, Vec<(Instant, Client)>>,
    reaper_running: bool,
}

impl Idle {
    fn total(&self) -> usize {
        self.conns.values().map(Vec::len).sum()
    }

    fn sweep(&mut self, now: Instant) {
        for list in self.conns.values_mut() {
            list.retain(|(since, _)| now.duration_since(*since) < IDLE_FOR);
        }
        self.conns.retain(|_, list| !list.is_empty());
    }
}

#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Idle>,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Idle> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection for `key`, if one has not expired.
    pub(crate) fn take(&self, key: &Key) -> Option<Client> {
        let mut idle = self.lock();
        idle.sweep(Instant::now());
        let list = idle.conns.get_mut(key)?;
        let (_, client) = list.pop()?;
        if list.is_empty() {
            idle.conns.remove(key);
        }
        Some(client)
    }

    /// Keeps `client` for reuse, unless it is broken or the pool is full.
    pub(crate) fn put(self: &Arc<Self>, key: Key, client: Client) {
        if client.broken {
            return;
        }
        let mut idle = self.lock();
        let now = Instant::now();
        idle.sweep(now);
        if idle.total() >= MAX_TOTAL {
            return;
        }
        let list = idle.conns.entry(key).or_default();
        if list.len() >= MAX_PER_KEY {
            // The oldest goes; dropping it closes it.
            list.remove(0);
        }
        list.push((now, client));
        if !idle.reaper_running {
            idle.reaper_running = true;
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }
}

/// Sweeps every [`IDLE_FOR`] while anything is kept; ends when the pool is empty or gone.
async fn reap(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(IDLE_FOR).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.lock();
        idle.sweep(Instant::now());
        if idle.conns.is_empty() {
            idle.reaper_running = false;
            return;
        }
    }
}
