//! Rate limits (SPEC §4.2 `limit (messages|connections|recipients) N per (minute|hour) per
//! (client|user|sender-domain)`): at most N events in any window of a minute or an hour, per
//! key; beyond that the caller answers 4xx.
//!
//! Keys: a client is its full IPv4 address or its IPv6 /64 (one host usually holds a whole
//! /64, so counting single IPv6 addresses would count nothing); a user is the login,
//! lowercase; a sender domain is lowercase without a trailing dot.
//!
//! The window slides: each key keeps counts in 60 slots (a second each for `per minute`, a
//! minute each for `per hour`), and the events of the last 60 slots, the current one
//! included, are what counts. So the N+1-th event within the window is refused and the N-th
//! passes; an event leaves the window between 59 and 60 slots after it happened.
//!
//! Invariants:
//! - All or nothing: when any applicable limit would be exceeded, nothing is counted for any
//!   of them (a refused message does not use up the sender's allowance).
//! - In memory only: a restart forgets the counts, which is harmless for minutes and hours.
//! - Memory is bounded: keys whose window is empty are swept every [`SWEEP_EVERY`] calls,
//!   and a limit holds at most [`MAX_KEYS`] keys; beyond that the least recently active tenth
//!   is forgotten (forgetting only ever lets mail through).
//! - [`RateLimiter::hit`] never panics, whatever the times and counts.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ownmail_config::model::{Counted, LimitKey, Per, RateLimit};

/// Slots per window.
const SLOTS: u64 = 60;
/// The most keys one limit keeps.
pub const MAX_KEYS: usize = 100_000;
/// Idle keys are swept once every this many calls of [`RateLimiter::hit`].
pub const SWEEP_EVERY: u64 = 1024;

/// A limit that an event would have gone beyond.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    /// N of the `limit` line.
    pub limit: u32,
    pub per: Per,
    pub key: LimitKey,
    pub what: Counted,
    /// When enough earlier events will have left the window for this one to pass (the whole
    /// window when it could never pass: more events at once than the limit).
    pub retry_after: Duration,
}

impl Exceeded {
    /// `10 messages per minute per client`.
    pub fn describe(&self) -> String {
        let what = match self.what {
            Counted::Messages => "messages",
            Counted::Connections => "connections",
            Counted::Recipients => "recipients",
        };
        let per = match self.per {
            Per::Minute => "minute",
            Per::Hour => "hour",
        };
        let key = match self.key {
            LimitKey::Client => "client",
            LimitKey::User => "user",
            LimitKey::SenderDomain => "sender-domain",
        };
        format!("{} {what} per {per} per {key}", self.limit)
    }
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What one limit counts by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    /// The /64.
    V6(u64),
    Name(Box<str>),
}

/// The recent events of one key.
#[derive(Debug)]
struct Window {
    /// Slot 0 begins here (the key's first event).
    start: Instant,
    /// (slot number, events), oldest first, only slots with events, at most [`SLOTS`].
    slots: VecDeque<(u64, u64)>,
}

impl Window {
    fn new(start: Instant) -> Self {
        Window {
            start,
            slots: VecDeque::new(),
        }
    }

    fn slot_of(&self, now: Instant, slot: Duration) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_millis();
        let slot_ms = slot.as_millis().max(1);
        u64::try_from(elapsed / slot_ms).unwrap_or(u64::MAX)
    }

    /// Forgets slots that have left the window ending in `current`.
    fn prune(&mut self, current: u64) {
        while let Some(&(s, _)) = self.slots.front() {
            if s.saturating_add(SLOTS) <= current {
                self.slots.pop_front();
            } else {
                break;
            }
        }
    }

    fn count(&self) -> u64 {
        self.slots.iter().map(|&(_, n)| n).sum()
    }

    fn add(&mut self, current: u64, n: u64) {
        match self.slots.back_mut() {
            Some((s, count)) if *s == current => *count = count.saturating_add(n),
            // A `now` earlier than the newest slot (instants from racing threads): count it
            // in the newest slot rather than out of order.
            Some((s, count)) if *s > current => *count = count.saturating_add(n),
            _ => self.slots.push_back((current, n)),
        }
    }

    /// When the newest events happened, for eviction.
    fn last_active(&self, slot: Duration) -> Instant {
        let newest = self.slots.back().map_or(0, |&(s, _)| s);
        let offset = slot.saturating_mul(u32::try_from(newest).unwrap_or(u32::MAX));
        self.start.checked_add(offset).unwrap_or(self.start)
    }
}

/// One `limit` line and its counts.
#[derive(Debug)]
struct Limit {
    rule: RateLimit,
    counters: HashMap<Key, Window>,
}

impl Limit {
    fn slot(&self) -> Duration {
        match self.rule.per {
            Per::Minute => Duration::from_secs(1),
            Per::Hour => Duration::from_secs(60),
        }
    }

    fn window(&self) -> Duration {
        self.slot().saturating_mul(SLOTS as u32)
    }

    /// The error for this limit.
    fn exceeded(&self, retry_after: Duration) -> Exceeded {
        Exceeded {
            limit: self.rule.messages,
            per: self.rule.per,
            key: self.rule.key,
            what: self.rule.what,
            retry_after,
        }
    }

    /// Err when `n` more events of `key` at `now` would go beyond the limit.
    fn check(&mut self, key: &Key, n: u64, now: Instant) -> Result<(), Exceeded> {
        let slot = self.slot();
        let whole = self.window();
        let limit = u64::from(self.rule.messages);
        if n > limit {
            return Err(self.exceeded(whole));
        }
        let Some(window) = self.counters.get_mut(key) else {
            return Ok(());
        };
        let current = window.slot_of(now, slot);
        window.prune(current);
        let count = window.count();
        if count.saturating_add(n) <= limit {
            return Ok(());
        }
        // The oldest events must leave until `n` more fit.
        let must_leave = count.saturating_add(n) - limit;
        let mut left = 0u64;
        let mut free_slot = current.saturating_add(SLOTS);
        for &(s, c) in &window.slots {
            left = left.saturating_add(c);
            if left >= must_leave {
                free_slot = s.saturating_add(SLOTS);
                break;
            }
        }
        let offset = slot.saturating_mul(u32::try_from(free_slot).unwrap_or(u32::MAX));
        let free_at = window.start.checked_add(offset).unwrap_or(now);
        let retry_after = free_at
            .saturating_duration_since(now)
            .clamp(Duration::from_secs(1), whole);
        Err(self.exceeded(retry_after))
    }

    fn count_in(&mut self, key: Key, n: u64, now: Instant) {
        let slot = self.slot();
        if !self.counters.contains_key(&key) && self.counters.len() >= MAX_KEYS {
            self.sweep(now);
            if self.counters.len() >= MAX_KEYS {
                self.evict_idlest();
            }
        }
        let window = self.counters.entry(key).or_insert_with(|| Window::new(now));
        let current = window.slot_of(now, slot);
        window.prune(current);
        window.add(current, n);
    }

    /// Forgets keys with no event in their window.
    fn sweep(&mut self, now: Instant) {
        let slot = self.slot();
        self.counters.retain(|_, w| {
            let current = w.slot_of(now, slot);
            w.prune(current);
            !w.slots.is_empty()
        });
    }

    /// Forgets the least recently active tenth of the keys.
    fn evict_idlest(&mut self) {
        let slot = self.slot();
        let mut times: Vec<Instant> = self
            .counters
            .values()
            .map(|w| w.last_active(slot))
            .collect();
        let excess = (self.counters.len() / 10).max(1);
        let Some(idx) = excess.checked_sub(1).filter(|&i| i < times.len()) else {
            return;
        };
        let (_, &mut cut, _) = times.select_nth_unstable(idx);
        let mut dropped = 0;
        self.counters.retain(|_, w| {
            if dropped < excess && w.last_active(slot) <= cut {
                dropped += 1;
                false
            } else {
                true
            }
        });
    }
}

/// The `limit` lines of a configuration and their counts. `Send + Sync`: sessions share it.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limits: Vec<Limit>,
    /// Calls of [`RateLimiter::hit`] left until the next sweep.
    until_sweep: u64,
}

impl RateLimiter {
    pub fn new(limits: &[RateLimit]) -> Self {
        RateLimiter {
            state: Mutex::new(State {
                limits: limits
                    .iter()
                    .map(|rule| Limit {
                        rule: rule.clone(),
                        counters: HashMap::new(),
                    })
                    .collect(),
                until_sweep: SWEEP_EVERY,
            }),
        }
    }

    /// No `limit` lines: [`RateLimiter::hit`] always passes.
    pub fn is_empty(&self) -> bool {
        self.lock().limits.is_empty()
    }

    /// Counts `n` events of kind `what` at `now` under every limit on `what` whose key is
    /// given: `client` for `per client`, `user` (the authenticated login) for `per user`,
    /// `sender_domain` for `per sender-domain`; pass None where a key does not apply (no user
    /// before authentication, no domain for the null sender) and those limits are skipped.
    /// If any of them would be exceeded nothing is counted, and the first such limit (in
    /// configuration order) is the error.
    pub fn hit(
        &self,
        what: Counted,
        client: Option<IpAddr>,
        user: Option<&str>,
        sender_domain: Option<&str>,
        n: u32,
        now: Instant,
    ) -> Result<(), Exceeded> {
        let mut state = self.lock();
        if state.limits.is_empty() {
            return Ok(());
        }
        state.until_sweep = state.until_sweep.saturating_sub(1);
        if state.until_sweep == 0 {
            state.until_sweep = SWEEP_EVERY;
            for limit in &mut state.limits {
                limit.sweep(now);
            }
        }
        if n == 0 {
            return Ok(());
        }
        let n = u64::from(n);
        let client = client.map(client_key);
        let user = user
            .map(|u| u.trim().to_lowercase())
            .filter(|u| !u.is_empty())
            .map(|u| Key::Name(u.into_boxed_str()));
        let domain = sender_domain
            .map(|d| d.trim().trim_end_matches('.').to_lowercase())
            .filter(|d| !d.is_empty())
            .map(|d| Key::Name(d.into_boxed_str()));
        let key_for = |rule: &RateLimit| -> Option<Key> {
            match rule.key {
                LimitKey::Client => client.clone(),
                LimitKey::User => user.clone(),
                LimitKey::SenderDomain => domain.clone(),
            }
        };
        let applicable: Vec<(usize, Key)> = state
            .limits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.rule.what == what)
            .filter_map(|(i, l)| key_for(&l.rule).map(|k| (i, k)))
            .collect();
        for (i, key) in &applicable {
            if let Some(limit) = state.limits.get_mut(*i) {
                limit.check(key, n, now)?;
            }
        }
        for (i, key) in applicable {
            if let Some(limit) = state.limits.get_mut(i) {
                limit.count_in(key, n, now);
            }
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn client_key(ip: IpAddr) -> Key {
    match ip.to_canonical() {
        IpAddr::V4(v4) => Key::V4(u32::from(v4)),
        IpAddr::V6(v6) => Key::V6((u128::from(v6) >> 64) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ownmail_config::Pos;

    fn rule(what: Counted, n: u32, per: Per, key: LimitKey) -> RateLimit {
        RateLimit {
            what,
            messages: n,
            per,
            key,
            pos: Pos::builtin(),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn n_pass_and_the_next_fails_other_client_unaffected() {
        let rl = RateLimiter::new(&[rule(Counted::Messages, 3, Per::Minute, LimitKey::Client)]);
        let t = Instant::now();
        let c = ip("192.0.2.1");
        for i in 0..3 {
            assert_eq!(
                rl.hit(Counted::Messages, c, None, None, 1, t + secs(i)),
                Ok(())
            );
        }
        let err = rl
            .hit(Counted::Messages, c, None, None, 1, t + secs(10))
            .unwrap_err();
        assert_eq!(err.describe(), "3 messages per minute per client");
        assert_eq!(err.retry_after, secs(50));
        assert_eq!(
            rl.hit(
                Counted::Messages,
                ip("192.0.2.2"),
                None,
                None,
                1,
                t + secs(10)
            ),
            Ok(())
        );
        // A refused event was not counted: still refused, with the same wait.
        assert!(rl
            .hit(Counted::Messages, c, None, None, 1, t + secs(59))
            .is_err());
    }

    #[test]
    fn window_slides() {
        let rl = RateLimiter::new(&[rule(Counted::Messages, 2, Per::Minute, LimitKey::Client)]);
        let t = Instant::now();
        let c = ip("192.0.2.1");
        assert!(rl.hit(Counted::Messages, c, None, None, 1, t).is_ok());
        assert!(rl
            .hit(Counted::Messages, c, None, None, 1, t + secs(30))
            .is_ok());
        let err = rl
            .hit(Counted::Messages, c, None, None, 1, t + secs(59))
            .unwrap_err();
        assert_eq!(err.retry_after, secs(1));
        // The first event has left the window; the second has not.
        assert!(rl
            .hit(Counted::Messages, c, None, None, 1, t + secs(60))
            .is_ok());
        assert!(rl
            .hit(Counted::Messages, c, None, None, 1, t + secs(61))
            .is_err());
        assert!(rl
            .hit(Counted::Messages, c, None, None, 1, t + secs(90))
            .is_ok());
    }

    #[test]
    fn per_hour_windows() {
        let rl = RateLimiter::new(&[rule(Counted::Messages, 1, Per::Hour, LimitKey::Client)]);
        let t = Instant::now();
        let c = ip("192.0.2.1");
        assert!(rl.hit(Counted::Messages, c, None, None, 1, t).is_ok());
        let err = rl
            .hit(Counted::Messages, c, None, None, 1, t + secs(1800))
            .unwrap_err();
        assert_eq!(err.retry_after, secs(1800));
        assert_eq!(err.describe(), "1 messages per hour per client");
        assert!(rl
            .hit(Counted::Messages, c, None, None, 1, t + secs(3600))
            .is_ok());
    }

    #[test]
    fn ipv6_clients_share_their_slash64() {
        let rl = RateLimiter::new(&[rule(Counted::Messages, 1, Per::Minute, LimitKey::Client)]);
        let t = Instant::now();
        assert!(rl
            .hit(Counted::Messages, ip("2001:db8:1:2::1"), None, None, 1, t)
            .is_ok());
        assert!(rl
            .hit(Counted::Messages, ip("2001:db8:1:2::ff"), None, None, 1, t)
            .is_err());
        assert!(rl
            .hit(Counted::Messages, ip("2001:db8:1:3::1"), None, None, 1, t)
            .is_ok());
        // IPv4 counts single addresses; a mapped address is its IPv4.
        assert!(rl
            .hit(Counted::Messages, ip("192.0.2.1"), None, None, 1, t)
            .is_ok());
        assert!(rl
            .hit(Counted::Messages, ip("::ffff:192.0.2.1"), None, None, 1, t)
            .is_err());
    }

    #[test]
    fn user_and_sender_domain_keys() {
        let rl = RateLimiter::new(&[
            rule(Counted::Messages, 2, Per::Minute, LimitKey::User),
            rule(Counted::Messages, 3, Per::Minute, LimitKey::SenderDomain),
        ]);
        let t = Instant::now();
        let c = ip("192.0.2.1");
        assert!(rl
            .hit(
                Counted::Messages,
                c,
                Some("alice"),
                Some("example.org"),
                1,
                t
            )
            .is_ok());
        assert!(rl
            .hit(
                Counted::Messages,
                c,
                Some("Alice"),
                Some("EXAMPLE.org."),
                1,
                t
            )
            .is_ok());
        let err = rl
            .hit(
                Counted::Messages,
                c,
                Some("alice"),
                Some("example.org"),
                1,
                t,
            )
            .unwrap_err();
        assert_eq!(err.key, LimitKey::User);
        assert_eq!(err.describe(), "2 messages per minute per user");
        // Nothing was counted for the domain: bob gets the domain's third.
        assert!(rl
            .hit(Counted::Messages, c, Some("bob"), Some("example.org"), 1, t)
            .is_ok());
        let err = rl
            .hit(
                Counted::Messages,
                c,
                Some("carol"),
                Some("example.org"),
                1,
                t,
            )
            .unwrap_err();
        assert_eq!(err.describe(), "3 messages per minute per sender-domain");
        // No user, no domain (unauthenticated, null sender): those limits do not apply.
        for _ in 0..10 {
            assert!(rl.hit(Counted::Messages, c, None, None, 1, t).is_ok());
        }
    }

    #[test]
    fn connections_are_counted_apart_from_messages() {
        let rl = RateLimiter::new(&[
            rule(Counted::Connections, 2, Per::Minute, LimitKey::Client),
            rule(Counted::Messages, 1, Per::Minute, LimitKey::Client),
        ]);
        let t = Instant::now();
        let c = ip("192.0.2.1");
        assert!(rl.hit(Counted::Connections, c, None, None, 1, t).is_ok());
        assert!(rl.hit(Counted::Messages, c, None, None, 1, t).is_ok());
        assert!(rl.hit(Counted::Connections, c, None, None, 1, t).is_ok());
        let err = rl
            .hit(Counted::Connections, c, None, None, 1, t)
            .unwrap_err();
        assert_eq!(err.what, Counted::Connections);
        assert_eq!(err.describe(), "2 connections per minute per client");
        assert!(rl.hit(Counted::Messages, c, None, None, 1, t).is_err());
    }

    #[test]
    fn recipients_count_several_at_once() {
        let rl = RateLimiter::new(&[rule(Counted::Recipients, 10, Per::Minute, LimitKey::Client)]);
        let t = Instant::now();
        let c = ip("192.0.2.1");
        assert!(rl.hit(Counted::Recipients, c, None, None, 7, t).is_ok());
        assert!(rl.hit(Counted::Recipients, c, None, None, 4, t).is_err());
        assert!(rl.hit(Counted::Recipients, c, None, None, 3, t).is_ok());
        assert!(rl.hit(Counted::Recipients, c, None, None, 1, t).is_err());
        // More at once than the limit can never pass: told to wait the whole window.
        let other = ip("192.0.2.2");
        let err = rl
            .hit(Counted::Recipients, other, None, None, 11, t)
            .unwrap_err();
        assert_eq!(err.retry_after, secs(60));
        assert_eq!(rl.hit(Counted::Recipients, other, None, None, 0, t), Ok(()));
    }

    #[test]
    fn rate_limiter_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<RateLimiter>();
    }

    #[test]
    fn no_limits_always_pass() {
        let rl = RateLimiter::new(&[]);
        assert!(rl.is_empty());
        let t = Instant::now();
        for _ in 0..1000 {
            assert!(rl
                .hit(Counted::Messages, ip("192.0.2.1"), None, None, u32::MAX, t)
                .is_ok());
        }
    }

    #[test]
    fn idle_keys_are_swept_and_keys_are_bounded() {
        let rl = RateLimiter::new(&[rule(Counted::Messages, 5, Per::Minute, LimitKey::Client)]);
        let t = Instant::now();
        for i in 0..100u32 {
            let c = Some(IpAddr::from(std::net::Ipv4Addr::from(i)));
            assert!(rl.hit(Counted::Messages, c, None, None, 1, t).is_ok());
        }
        let keys = |rl: &RateLimiter| rl.lock().limits[0].counters.len();
        assert_eq!(keys(&rl), 100);
        for _ in 0..SWEEP_EVERY {
            let _ = rl.hit(
                Counted::Messages,
                ip("198.51.100.1"),
                None,
                None,
                0,
                t + secs(120),
            );
        }
        assert_eq!(keys(&rl), 0, "all windows were empty");

        let mut limit = Limit {
            rule: rule(Counted::Messages, 5, Per::Minute, LimitKey::Client),
            counters: HashMap::new(),
        };
        for i in 0..(MAX_KEYS as u32 + 10) {
            limit.count_in(Key::V4(i), 1, t + Duration::from_micros(u64::from(i)));
            assert!(limit.counters.len() <= MAX_KEYS);
        }
        // The newest survived the eviction.
        assert!(limit.counters.contains_key(&Key::V4(MAX_KEYS as u32 + 9)));
    }

    #[test]
    fn instants_out_of_order_never_panic() {
        let rl = RateLimiter::new(&[rule(Counted::Messages, 2, Per::Minute, LimitKey::Client)]);
        let t = Instant::now() + secs(100);
        let c = ip("192.0.2.1");
        assert!(rl.hit(Counted::Messages, c, None, None, 1, t).is_ok());
        assert!(rl
            .hit(Counted::Messages, c, None, None, 1, t - secs(50))
            .is_ok());
        assert!(rl
            .hit(Counted::Messages, c, None, None, 1, t - secs(90))
            .is_err());
    }
}
