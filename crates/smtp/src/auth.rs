//! SMTP AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN, only over TLS, and the brute-force
//! defence: failures per client address are answered more and more slowly, then refused for
//! a while; a success is never slowed and clears the record.
//!
//! Passwords and their base64 never reach a log line or an error message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

/// Failures from one address before each further one is answered slowly.
const SLOW_AFTER: u32 = 3;
/// Failures from one address before it is refused for `BLOCK_FOR`.
const BLOCK_AFTER: u32 = 20;
const BLOCK_FOR: Duration = Duration::from_secs(600);
/// A record with no failure for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(900);
/// At most this many addresses are remembered (the oldest go first): bounded memory.
const MAX_TRACKED: usize = 10_000;

/// What the defence says before a login is tried.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    Open,
    Blocked,
}

#[derive(Default)]
pub struct FailureLog {
    by_ip: Mutex<HashMap<IpAddr, Record>>,
}

struct Record {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl FailureLog {
    pub fn gate(&self, ip: IpAddr) -> Gate {
        let map = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&ip).and_then(|r| r.blocked_until) {
            Some(until) if until > Instant::now() => Gate::Blocked,
            _ => Gate::Open,
        }
    }

    /// Records a failure; returns how long to wait before answering it.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut map = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            map.retain(|_, r| now.duration_since(r.last) < FORGET_AFTER);
            if map.len() >= MAX_TRACKED {
                if let Some(oldest) = map.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let r = map.entry(ip).or_insert(Record {
            count: 0,
            last: now,
            blocked_until: None,
        });
        if now.duration_since(r.last) > FORGET_AFTER {
            r.count = 0;
            r.blocked_until = None;
        }
        r.count = r.count.saturating_add(1);
        r.last = now;
        if r.count >= BLOCK_AFTER {
            r.blocked_until = Some(now + BLOCK_FOR);
        }
        if r.count > SLOW_AFTER {
            Duration::from_secs(u64::from((r.count - SLOW_AFTER).min(5)))
        } else {
            Duration::ZERO
        }
    }

    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&ip);
    }
}

/// Decodes one base64 SASL response; None when it isn't base64.
pub fn decode(b64: &[u8]) -> Option<Vec<u8>> {
    let trimmed = b64.strip_suffix(b"\r").unwrap_or(b64);
    if trimmed == b"=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .ok()
}

pub fn encode(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// PLAIN: `authzid NUL authcid NUL passwd` (RFC 4616 §2). An authorization identity other
/// than the login itself is not supported (no proxy logins).
pub fn parse_plain(decoded: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut parts = decoded.splitn(3, |b| *b == 0);
    let authzid = parts.next()?;
    let authcid = parts.next()?;
    let passwd = parts.next()?;
    let user = std::str::from_utf8(authcid).ok()?.to_string();
    if user.is_empty() || (!authzid.is_empty() && authzid != authcid) {
        return None;
    }
    Some((user, passwd.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_splits_identity_and_password() {
        assert_eq!(
            parse_plain(b"\0mayeu\0secret"),
            Some(("mayeu".into(), b"secret".to_vec()))
        );
        assert_eq!(
            parse_plain(b"mayeu\0mayeu\0secret"),
            Some(("mayeu".into(), b"secret".to_vec()))
        );
        assert_eq!(parse_plain(b"admin\0mayeu\0secret"), None);
        assert_eq!(parse_plain(b"\0\0secret"), None);
        assert_eq!(parse_plain(b"no-nul"), None);
    }

    #[test]
    fn base64_errors_are_none() {
        assert_eq!(
            decode(b"AG1heWV1AHNlY3JldA=="),
            Some(b"\0mayeu\0secret".to_vec())
        );
        assert_eq!(decode(b"!!not base64"), None);
        assert_eq!(decode(b"="), Some(Vec::new()));
    }

    #[test]
    fn failures_slow_down_then_block_and_success_clears() {
        let log = FailureLog::default();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..SLOW_AFTER {
            assert_eq!(log.failed(ip), Duration::ZERO);
        }
        assert_eq!(log.failed(ip), Duration::from_secs(1));
        assert_eq!(log.gate(ip), Gate::Open);
        for _ in 0..BLOCK_AFTER {
            log.failed(ip);
        }
        assert_eq!(log.gate(ip), Gate::Blocked);
        log.succeeded(ip);
        assert_eq!(log.gate(ip), Gate::Open);
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(log.gate(other), Gate::Open);
    }

    #[test]
    fn memory_is_bounded() {
        let log = FailureLog::default();
        for i in 0..(MAX_TRACKED as u32 + 50) {
            log.failed(IpAddr::from(i.to_be_bytes()));
        }
        assert!(log.by_ip.lock().expect("lock").len() <= MAX_TRACKED);
    }
}
