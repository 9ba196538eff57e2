//! Greylisting (SPEC §4.2 `greylist delay DURATION [expire DURATION]`): the first message of
//! an unknown (client network, sender, recipient) triplet is deferred; a retry after `delay`
//! passes, and so does every later message of the triplet while it keeps being used.
//! Authenticated and local clients are never greylisted: the caller does not ask for them.
//!
//! Triplets: the client network is the IPv4 /24 or the IPv6 /64 of the client (a sender's
//! pool of outgoing servers usually shares one); sender and recipient are lowercased, the null
//! sender is `<>`, and a sender's BATV tag (`prvs=TAG=user@dom`, `msprvs1=…`, `btv1==…==`) is
//! removed and an SRS address (`SRS0=HHH=TT=orig.example=user@fwd`, `SRS1=…`) stands for the
//! original sender, since both change with every message and would make every retry new.
//!
//! Expiry:
//! - a triplet waiting for its retry is forgotten [`UNRETRIED_WINDOW`] (1 day) after its
//!   delay has ended: a sender that has not retried by then starts over;
//! - a triplet that passed stays allowed for `expire` (the directive's, default
//!   [`DEFAULT_EXPIRE`], 36 days, as postgrey's max-age and spamd's white list) after its last
//!   use, and each use starts that time again.
//!
//! State: `<spool>/greylist`, owned by this module alone. A text file, one record a line:
//!
//! ```text
//! ownmail-greylist 1
//! g 1718000000 1718000000 192.0.2.0/24 alice@example.org bob@example.net
//! p 1718000000 1718000420 2001:db8:1:2::/64 <> bob@example.net
//! ```
//!
//! fields separated by one space: the state (`g` waiting, `p` passed), first seen and last
//! use (Unix seconds), the client network, the sender, the recipient; in the last two every
//! byte outside `!`..`~` and `%` itself is written `%XX`. A record holds the whole state of
//! its triplet: a later line for the same triplet replaces an earlier one.
//!
//! Invariants:
//! - Every change is appended as one record with one `write(2)` on an `O_APPEND` file: a
//!   killed process loses nothing (the page cache keeps what was written), a crash of the
//!   machine may lose the last records, never more, and that only costs one more deferral.
//!   A refreshed last use of a passed triplet is written at most once per
//!   [`REFRESH_INTERVAL`], so after a restart a triplet may expire up to that much sooner.
//! - A line that does not parse (a damaged file) is skipped, and so is a last line without
//!   its newline (a write cut short); the rest of the file still counts.
//! - The file is compacted — the live records written to `greylist.tmp`, fsynced, renamed
//!   over `greylist`, the directory fsynced — when opened and whenever the log has grown past
//!   twice the live triplets (plus some slack), so it stays proportional to what is kept.
//! - Memory is bounded: at most [`MAX_ENTRIES`] triplets. Beyond that expired ones go first,
//!   then the oldest waiting ones, then the least recently used passed ones.
//! - [`Greylist::check`] never fails and never panics: a write error is logged and the
//!   decision still made from memory.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::warn;

/// How long a passed triplet stays allowed after its last use when `expire` is not given.
pub const DEFAULT_EXPIRE: Duration = Duration::from_secs(36 * 24 * 3600);
/// How long after its delay has ended a triplet that was never retried is kept.
pub const UNRETRIED_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The most triplets kept; beyond that the least valuable are dropped.
pub const MAX_ENTRIES: usize = 1_000_000;
/// A passed triplet's new last use is written to the file at most this often.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

/// The file's first line; a file of another format is read as damaged lines.
const HEADER: &str = "ownmail-greylist 1";
const FILE_NAME: &str = "greylist";
const TMP_NAME: &str = "greylist.tmp";
/// Log records allowed beyond twice the live triplets before compacting.
const COMPACT_SLACK: usize = 1024;
/// After the file could not be written, rewriting it is tried again after this.
const COMPACT_RETRY: Duration = Duration::from_secs(60);
/// Sender and recipient are cut to this many bytes: an SMTP path is at most 256 octets
/// (RFC 5321 §4.5.3.1.3), so only abuse is cut, and memory stays bounded.
const MAX_ADDRESS: usize = 512;

/// Whether a message of a triplet may go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GreyDecision {
    Pass,
    /// Answer 4xx; the triplet passes in `retry_after`.
    Defer {
        retry_after: Duration,
    },
}

/// The client's network: IPv4 /24 or IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Network {
    V4([u8; 3]),
    V6([u8; 8]),
}

impl Network {
    fn of(ip: IpAddr) -> Network {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Network::V4([a, b, c])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                let mut net = [0u8; 8];
                net.copy_from_slice(&o[..8]);
                Network::V6(net)
            }
        }
    }

    fn parse(s: &str) -> Option<Network> {
        let (addr, len) = s.split_once('/')?;
        match len {
            "24" => {
                let [a, b, c, d] = addr.parse::<Ipv4Addr>().ok()?.octets();
                (d == 0).then_some(Network::V4([a, b, c]))
            }
            "64" => {
                let o = addr.parse::<Ipv6Addr>().ok()?.octets();
                if o[8..].iter().any(|&b| b != 0) {
                    return None;
                }
                let mut net = [0u8; 8];
                net.copy_from_slice(&o[..8]);
                Some(Network::V6(net))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Network::V4([a, b, c]) => write!(f, "{}/24", Ipv4Addr::new(a, b, c, 0)),
            Network::V6(net) => {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(&net);
                write!(f, "{}/64", Ipv6Addr::from(o))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Triplet {
    net: Network,
    sender: Box<str>,
    rcpt: Box<str>,
}

impl Triplet {
    /// The entry of a host we relay to ([`Greylist::allow_host`]): `*` is no address.
    fn host(net: Network) -> Triplet {
        Triplet {
            net,
            sender: "*".into(),
            rcpt: "*".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// Unix seconds.
    first: u64,
    /// Unix seconds: the pass, or the latest use since.
    last: u64,
    passed: bool,
    /// `last` as the file has it.
    logged_last: u64,
}

struct State {
    entries: HashMap<Triplet, Entry>,
    /// Append handle of the file; None after an error until the next compaction.
    log: Option<File>,
    /// Records in the file (live or superseded), header excluded.
    log_records: usize,
    /// After a failed compaction, the next is not tried before this (Unix seconds).
    retry_at: u64,
}

/// The greylist of one spool. `Send + Sync`: sessions share it.
pub struct Greylist {
    dir: PathBuf,
    delay: Duration,
    expire: Duration,
    max_entries: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for Greylist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Greylist")
            .field("dir", &self.dir)
            .field("delay", &self.delay)
            .field("expire", &self.expire)
            .finish()
    }
}

impl Greylist {
    /// Reads `<spool>/greylist` (a missing file is an empty list), drops what has expired and
    /// compacts the file. `delay` is the wait before a retry passes; `expire` how long a
    /// passed triplet stays allowed after its last use (see the module doc).
    pub fn open(spool: &Path, delay: Duration, expire: Duration) -> io::Result<Greylist> {
        Self::open_bounded(spool, delay, expire, MAX_ENTRIES, SystemTime::now())
    }

    fn open_bounded(
        spool: &Path,
        delay: Duration,
        expire: Duration,
        max_entries: usize,
        now: SystemTime,
    ) -> io::Result<Greylist> {
        let list = Greylist {
            dir: spool.to_path_buf(),
            delay,
            expire,
            max_entries: max_entries.max(1),
            state: Mutex::new(State {
                entries: HashMap::new(),
                log: None,
                log_records: 0,
                retry_at: 0,
            }),
        };
        let mut bytes = Vec::new();
        match File::open(list.path()) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut entries = HashMap::new();
        let mut skipped = 0usize;
        // Only complete lines: a last line without its newline is a write cut short.
        let complete = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(end) => bytes.get(..end).unwrap_or_default(),
            None => &[],
        };
        for (i, line) in complete.split(|&b| b == b'\n').enumerate() {
            if i == 0 && line == HEADER.as_bytes() {
                continue;
            }
            match parse_record(line) {
                Some((triplet, entry)) => {
                    entries.insert(triplet, entry);
                }
                None => skipped += 1,
            }
        }
        if skipped > 0 {
            warn!(
                "greylist event=load path={} skipped={skipped} reason=damaged-lines",
                list.path().display()
            );
        }
        {
            let mut state = list.lock();
            state.entries = entries;
            let now = unix_secs(now);
            list.drop_expired(&mut state, now);
            if state.entries.len() > list.max_entries {
                list.enforce_capacity(&mut state);
            }
            list.compact(&mut state)?;
        }
        Ok(list)
    }

    /// Whether a message from `client`, `sender` (MAIL FROM, "" for the null sender) to
    /// `rcpt` may go on at `now`, recording what is new. The caller has already excluded
    /// authenticated and local clients.
    pub fn check(&self, client: IpAddr, sender: &str, rcpt: &str, now: SystemTime) -> GreyDecision {
        let triplet = Triplet {
            net: Network::of(client),
            sender: normalise_sender(sender).into_boxed_str(),
            rcpt: normalise_rcpt(rcpt).into_boxed_str(),
        };
        let now = unix_secs(now);
        let delay = self.delay.as_secs();
        let mut state = self.lock();
        let host = Triplet::host(triplet.net);
        if state
            .entries
            .get(&host)
            .is_some_and(|e| e.passed && !self.expired(e, now))
        {
            return GreyDecision::Pass;
        }
        let existing = state
            .entries
            .get(&triplet)
            .copied()
            .filter(|e| !self.expired(e, now));
        let (entry, decision, write) = match existing {
            Some(mut e) if e.passed => {
                e.last = e.last.max(now);
                let write = e.last.saturating_sub(e.logged_last) >= REFRESH_INTERVAL.as_secs();
                (e, GreyDecision::Pass, write)
            }
            Some(mut e) => {
                let waited = now.saturating_sub(e.first);
                if waited >= delay {
                    e.passed = true;
                    e.last = now;
                    (e, GreyDecision::Pass, true)
                } else {
                    let retry_after = Duration::from_secs(delay - waited);
                    return GreyDecision::Defer { retry_after };
                }
            }
            None => {
                let passed = self.delay.is_zero();
                let e = Entry {
                    first: now,
                    last: now,
                    passed,
                    logged_last: now,
                };
                let decision = if passed {
                    GreyDecision::Pass
                } else {
                    GreyDecision::Defer {
                        retry_after: self.delay,
                    }
                };
                (e, decision, true)
            }
        };
        let mut entry = entry;
        if write {
            entry.logged_last = entry.last;
        }
        let is_new = state.entries.insert(triplet.clone(), entry).is_none();
        if is_new && state.entries.len() > self.max_entries {
            // The compaction writes this entry too.
            self.drop_expired(&mut state, now);
            self.enforce_capacity(&mut state);
            self.compact_logged(&mut state, now);
        } else if write && state.log.is_none() {
            // The file could not be written to: rewrite it whole, now and then.
            if now >= state.retry_at {
                self.compact_logged(&mut state, now);
            }
        } else if write {
            self.append(&mut state, &triplet, &entry);
            if state.log_records > 2 * state.entries.len() + COMPACT_SLACK {
                self.drop_expired(&mut state, now);
                self.compact_logged(&mut state, now);
            }
        }
        decision
    }

    /// A host we relayed mail to (as OpenBSD's spamlogd does): mail from its network is not
    /// greylisted until `expire` after the last delivery to it, so that replies to our users'
    /// mail are not delayed. Kept as the passed triplet (network, `*`, `*`).
    pub fn allow_host(&self, host: IpAddr, now: SystemTime) {
        let triplet = Triplet::host(Network::of(host));
        let now = unix_secs(now);
        let mut state = self.lock();
        let mut entry = match state
            .entries
            .get(&triplet)
            .copied()
            .filter(|e| e.passed && !self.expired(e, now))
        {
            Some(mut e) => {
                e.last = e.last.max(now);
                if e.last.saturating_sub(e.logged_last) < REFRESH_INTERVAL.as_secs() {
                    state.entries.insert(triplet, e);
                    return;
                }
                e
            }
            None => Entry {
                first: now,
                last: now,
                passed: true,
                logged_last: now,
            },
        };
        entry.logged_last = entry.last;
        state.entries.insert(triplet.clone(), entry);
        if state.log.is_some() {
            self.append(&mut state, &triplet, &entry);
        }
    }

    /// Triplets remembered, waiting or passed.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The state, even after a panic elsewhere held the lock (the map is always consistent
    /// between statements that change it).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, e: &Entry, now: u64) -> bool {
        let until = if e.passed {
            e.last.saturating_add(self.expire.as_secs())
        } else {
            e.first
                .saturating_add(self.delay.as_secs())
                .saturating_add(UNRETRIED_WINDOW.as_secs())
        };
        now >= until
    }

    fn drop_expired(&self, state: &mut State, now: u64) {
        state.entries.retain(|_, e| !self.expired(e, now));
    }

    /// Cuts the list to 90% of its bound, if above: the oldest waiting triplets first, then
    /// the least recently used passed ones. Cutting below the bound keeps this (and the
    /// compaction after it) rare.
    fn enforce_capacity(&self, state: &mut State) {
        let target = self.max_entries - self.max_entries / 10;
        if state.entries.len() <= target {
            return;
        }
        let excess = state.entries.len() - target;
        // (passed, time): waiting ones sort first, each kind oldest first.
        let mut ages: Vec<(bool, u64)> = state
            .entries
            .values()
            .map(|e| (e.passed, if e.passed { e.last } else { e.first }))
            .collect();
        ages.sort_unstable();
        let Some(&cut) = ages.get(excess.saturating_sub(1)) else {
            return;
        };
        let mut dropped = 0usize;
        state.entries.retain(|_, e| {
            let age = (e.passed, if e.passed { e.last } else { e.first });
            if dropped < excess && age <= cut {
                dropped += 1;
                false
            } else {
                true
            }
        });
        warn!(
            "greylist event=capacity dropped={dropped} kept={}",
            state.entries.len()
        );
    }

    /// Appends one record with one write.
    fn append(&self, state: &mut State, triplet: &Triplet, entry: &Entry) {
        let Some(log) = state.log.as_mut() else {
            return;
        };
        let record = format_record(triplet, entry);
        match log.write_all(record.as_bytes()) {
            Ok(()) => state.log_records += 1,
            Err(e) => {
                warn!(
                    "greylist event=write-error path={} error=\"{e}\"",
                    self.path().display()
                );
                state.log = None;
            }
        }
    }

    fn compact_logged(&self, state: &mut State, now: u64) {
        if let Err(e) = self.compact(state) {
            state.retry_at = now.saturating_add(COMPACT_RETRY.as_secs());
            warn!(
                "greylist event=compact-error path={} error=\"{e}\"",
                self.path().display()
            );
        }
    }

    /// Rewrites the file with the live records only: temp file, fsync, rename, fsync the
    /// directory; then appends go to the new file.
    fn compact(&self, state: &mut State) -> io::Result<()> {
        let mut text = String::with_capacity(64 * state.entries.len() + HEADER.len() + 1);
        text.push_str(HEADER);
        text.push('\n');
        for (triplet, entry) in &state.entries {
            let mut entry = *entry;
            entry.logged_last = entry.last;
            text.push_str(&format_record(triplet, &entry));
        }
        let tmp = self.dir.join(TMP_NAME);
        let path = self.path();
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            state.log = None;
            return Err(e);
        }
        for entry in state.entries.values_mut() {
            entry.logged_last = entry.last;
        }
        state.log_records = state.entries.len();
        state.log = Some(OpenOptions::new().append(true).open(&path)?);
        Ok(())
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn format_record(t: &Triplet, e: &Entry) -> String {
    format!(
        "{} {} {} {} {} {}\n",
        if e.passed { 'p' } else { 'g' },
        e.first,
        e.logged_last,
        t.net,
        escape(&t.sender),
        escape(&t.rcpt),
    )
}

fn parse_record(line: &[u8]) -> Option<(Triplet, Entry)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut fields = line.split(' ');
    let passed = match fields.next()? {
        "g" => false,
        "p" => true,
        _ => return None,
    };
    let first: u64 = fields.next()?.parse().ok()?;
    let last: u64 = fields.next()?.parse().ok()?;
    let net = Network::parse(fields.next()?)?;
    let sender = unescape(fields.next()?)?;
    let rcpt = unescape(fields.next()?)?;
    if fields.next().is_some() || sender.is_empty() || rcpt.is_empty() {
        return None;
    }
    Some((
        Triplet {
            net,
            sender: sender.into_boxed_str(),
            rcpt: rcpt.into_boxed_str(),
        },
        Entry {
            first,
            last,
            passed,
            logged_last: last,
        },
    ))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `<a@b>` → `a@b`.
fn strip_brackets(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
}

/// Cut to [`MAX_ADDRESS`] bytes, on a character boundary.
fn bounded(mut s: String) -> String {
    if s.len() > MAX_ADDRESS {
        let mut end = MAX_ADDRESS;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn normalise_rcpt(rcpt: &str) -> String {
    let r = strip_brackets(rcpt).to_lowercase();
    if r.is_empty() {
        return "<>".to_string();
    }
    bounded(r)
}

/// The sender as a triplet has it: lowercase, `<>` for the null sender, BATV tags removed,
/// SRS addresses replaced by the original sender.
fn normalise_sender(sender: &str) -> String {
    let s = strip_brackets(sender).to_lowercase();
    if s.is_empty() {
        return "<>".to_string();
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return bounded(s);
    };
    if let Some(original) = srs_original(local) {
        return bounded(original);
    }
    bounded(format!("{}@{domain}", strip_batv(local)))
}

/// `prvs=TAG=user` (BATV), `msprvs1=TAG=user` (Microsoft), `btv1==TAG==user` → `user`.
fn strip_batv(local: &str) -> &str {
    for (prefix, sep) in [("prvs=", "="), ("msprvs1=", "="), ("btv1==", "==")] {
        if let Some(rest) = local.strip_prefix(prefix) {
            if let Some((_tag, user)) = rest.split_once(sep) {
                if !user.is_empty() {
                    return user;
                }
            }
        }
    }
    local
}

/// The original sender of an SRS local part (lowercase):
/// `srs0=HHH=TT=orig.example=user` and
/// `srs1=HHH=first.forwarder==HHH=TT=orig.example=user` → `user@orig.example`.
fn srs_original(local: &str) -> Option<String> {
    let srs0 = |body: &str| -> Option<String> {
        let mut parts = body.splitn(4, '=');
        let (_hash, _time) = (parts.next()?, parts.next()?);
        let (domain, user) = (parts.next()?, parts.next()?);
        (!domain.is_empty() && !user.is_empty()).then(|| format!("{user}@{domain}"))
    };
    let sep = |c: Option<char>| matches!(c, Some('=' | '+' | '-'));
    if let Some(rest) = local.strip_prefix("srs0") {
        let mut chars = rest.chars();
        return if sep(chars.next()) {
            srs0(chars.as_str())
        } else {
            None
        };
    }
    let rest = local.strip_prefix("srs1")?;
    let mut chars = rest.chars();
    if !sep(chars.next()) {
        return None;
    }
    // HHH=first.forwarder=<sep>SRS0-body
    let (_hash, rest) = chars.as_str().split_once('=')?;
    let (_forwarder, rest) = rest.split_once('=')?;
    let mut chars = rest.chars();
    if !sep(chars.next()) {
        return None;
    }
    srs0(chars.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_secs(300);
    const EXPIRE: Duration = DEFAULT_EXPIRE;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A base time near the real clock (opening drops what has expired by the real clock).
    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix_secs(SystemTime::now()))
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn defer(n: u64) -> GreyDecision {
        GreyDecision::Defer {
            retry_after: secs(n),
        }
    }

    #[test]
    fn first_defers_early_retry_defers_late_retry_passes() {
        let dir = tempfile::tempdir().unwrap();
        let g = Greylist::open(dir.path(), DELAY, EXPIRE).unwrap();
        let t = t0();
        let c = ip("192.0.2.10");
        assert_eq!(g.check(c, "a@x.example", "b@y.example", t), defer(300));
        assert_eq!(
            g.check(c, "a@x.example", "b@y.example", t + secs(100)),
            defer(200)
        );
        assert_eq!(
            g.check(c, "a@x.example", "b@y.example", t + secs(300)),
            GreyDecision::Pass
        );
        // Auto-allow: later messages pass at once.
        assert_eq!(
            g.check(c, "A@X.example", "<B@Y.EXAMPLE>", t + secs(4000)),
            GreyDecision::Pass
        );
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn hosts_we_relay_to_are_not_greylisted_and_this_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let t = t0();
        {
            let g = Greylist::open(dir.path(), DELAY, EXPIRE).unwrap();
            assert_eq!(g.check(ip("198.51.100.7"), "a@x", "b@y", t), defer(300));
            g.allow_host(ip("198.51.100.25"), t);
            // Its /24: any sender, any recipient, at once.
            assert_eq!(
                g.check(ip("198.51.100.7"), "c@z", "b@y", t + secs(1)),
                GreyDecision::Pass
            );
            // Another network still waits.
            assert_eq!(g.check(ip("203.0.113.7"), "a@x", "b@y", t), defer(300));
        }
        let g = Greylist::open(dir.path(), DELAY, EXPIRE).unwrap();
        assert_eq!(
            g.check(ip("198.51.100.99"), "d@w", "b@y", t + secs(2)),
            GreyDecision::Pass
        );
        // Until `expire` after the last delivery.
        assert_eq!(
            g.check(ip("198.51.100.99"), "d@w", "b@y", t + EXPIRE + secs(10)),
            defer(300)
        );
    }

    #[test]
    fn same_slash24_is_the_same_triplet_another_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let g = Greylist::open(dir.path(), DELAY, EXPIRE).unwrap();
        let t = t0();
        g.check(ip("192.0.2.10"), "a@x", "b@y", t);
        assert_eq!(
            g.check(ip("192.0.2.200"), "a@x", "b@y", t + secs(300)),
            GreyDecision::Pass
        );
        assert_eq!(
            g.check(ip("192.0.3.10"), "a@x", "b@y", t + secs(300)),
            defer(300)
        );
        // IPv6: the /64.
        g.check(ip("2001:db8:1:2::1"), "a@x", "b@y", t);
        assert_eq!(
            g.check(ip("2001:db8:1:2:ffff::9"), "a@x", "b@y", t + secs(300)),
            GreyDecision::Pass
        );
        assert_eq!(
            g.check(ip("2001:db8:1:3::1"), "a@x", "b@y", t + secs(300)),
            defer(300)
        );
        // An IPv4-mapped client is its IPv4 network.
        assert_eq!(
            g.check(ip("::ffff:192.0.2.7"), "a@x", "b@y", t + secs(301)),
            GreyDecision::Pass
        );
        // Other sender or recipient: new triplets.
        assert_eq!(
            g.check(ip("192.0.2.10"), "c@x", "b@y", t + secs(300)),
            defer(300)
        );
        assert_eq!(
            g.check(ip("192.0.2.10"), "a@x", "d@y", t + secs(300)),
            defer(300)
        );
    }

    #[test]
    fn reopen_keeps_waiting_and_passed_triplets() {
        let dir = tempfile::tempdir().unwrap();
        let t = t0();
        {
            let g = Greylist::open(dir.path(), DELAY, EXPIRE).unwrap();
            g.check(ip("192.0.2.1"), "waiting@x", "r@y", t);
            g.check(ip("192.0.2.1"), "passed@x", "r@y", t);
            g.check(ip("192.0.2.1"), "passed@x", "r@y", t + secs(300));
            g.check(ip("2001:db8::1"), "", "odd \"r\"%@y", t);
            // Dropped without any shutdown: as after kill -9, only the appended records.
        }
        let g = Greylist::open(dir.path(), DELAY, EXPIRE).unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(
            g.check(ip("192.0.2.1"), "waiting@x", "r@y", t + secs(60)),
            defer(240)
        );
        assert_eq!(
            g.check(ip("192.0.2.1"), "passed@x", "r@y", t + secs(301)),
            GreyDecision::Pass
        );
        assert_eq!(
            g.check(ip("2001:db8::2"), "<>", "ODD \"r\"%@y", t + secs(300)),
            GreyDecision::Pass
        );
    }

    #[test]
    fn expiry_of_waiting_and_passed_triplets() {
        let dir = tempfile::tempdir().unwrap();
        let expire = secs(10 * 24 * 3600);
        let g = Greylist::open(dir.path(), DELAY, expire).unwrap();
        let t = t0();
        let c = ip("192.0.2.1");
        // Never retried within delay + one day: starts over.
        g.check(c, "late@x", "r@y", t);
        let late = t + DELAY + UNRETRIED_WINDOW;
        assert_eq!(g.check(c, "late@x", "r@y", late), defer(300));
        // Passed, then used again before expiry: stays; unused for `expire`: starts over.
        g.check(c, "p@x", "r@y", t);
        g.check(c, "p@x", "r@y", t + secs(300));
        let used = t + secs(300) + expire - secs(1);
        assert_eq!(g.check(c, "p@x", "r@y", used), GreyDecision::Pass);
        assert_eq!(
            g.check(c, "p@x", "r@y", used + expire - secs(1)),
            GreyDecision::Pass
        );
        assert_eq!(
            g.check(c, "p@x", "r@y", used + expire - secs(1) + expire),
            defer(300)
        );
    }

    #[test]
    fn damaged_lines_and_a_cut_last_line_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let t = unix_secs(t0());
        let text = format!(
            "{HEADER}\n\
             g {t} {t} 192.0.2.0/24 a@x r@y\n\
             garbage line\n\
             p {t} {t} 192.0.2.0/24 b@x\n\
             p {t} {t} 192.0.2.1/24 c@x r@y\n\
             p x {t} 192.0.2.0/24 c@x r@y\n\
             g {t} {t} 192.0.2.0/24 bad%zz r@y\n\
             \u{0}\u{ff}\n\
             p {t} {t} 2001:db8::/64 d@x r@y\n\
             p {t} {t} 192.0.2.0/24 cut@x r@"
        );
        fs::write(dir.path().join("greylist"), text).unwrap();
        let g = Greylist::open(dir.path(), DELAY, EXPIRE).unwrap();
        assert_eq!(g.len(), 2);
        let now = UNIX_EPOCH + secs(t + 10);
        assert_eq!(g.check(ip("192.0.2.9"), "a@x", "r@y", now), defer(290));
        assert_eq!(
            g.check(ip("2001:db8::5"), "d@x", "r@y", now),
            GreyDecision::Pass
        );
        assert_eq!(g.check(ip("192.0.2.9"), "cut@x", "r@", now), defer(300));
        // The rewritten file is clean.
        let text = fs::read_to_string(dir.path().join("greylist")).unwrap();
        assert!(text.starts_with("ownmail-greylist 1\n"));
        assert!(!text.contains("garbage"));
    }

    #[test]
    fn compaction_keeps_entries_and_bounds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let g = Greylist::open(dir.path(), DELAY, EXPIRE).unwrap();
        let t = t0();
        let c = ip("192.0.2.1");
        // Many refreshes of few triplets: the log would grow without compaction.
        for i in 0..10 {
            g.check(c, &format!("s{i}@x"), "r@y", t);
            g.check(c, &format!("s{i}@x"), "r@y", t + DELAY);
        }
        for round in 1..400u64 {
            for i in 0..10 {
                let now = t + DELAY + REFRESH_INTERVAL * round as u32;
                assert_eq!(
                    g.check(c, &format!("s{i}@x"), "r@y", now),
                    GreyDecision::Pass
                );
            }
        }
        let lines = fs::read_to_string(dir.path().join("greylist"))
            .unwrap()
            .lines()
            .count();
        assert!(lines <= 2 * 10 + COMPACT_SLACK + 2, "{lines} lines");
        drop(g);
        let g = Greylist::open(dir.path(), DELAY, EXPIRE).unwrap();
        assert_eq!(g.len(), 10);
        let lines = fs::read_to_string(dir.path().join("greylist"))
            .unwrap()
            .lines()
            .count();
        assert_eq!(lines, 11, "header and ten records after compaction at open");
    }

    #[test]
    fn memory_is_bounded_oldest_waiting_dropped_first() {
        let dir = tempfile::tempdir().unwrap();
        let t = t0();
        let g = Greylist::open_bounded(dir.path(), DELAY, EXPIRE, 10, t).unwrap();
        let c = ip("192.0.2.1");
        g.check(c, "keep@x", "r@y", t);
        g.check(c, "keep@x", "r@y", t + DELAY);
        for i in 0..30u64 {
            g.check(c, &format!("w{i}@x"), "r@y", t + DELAY + secs(i));
            assert!(g.len() <= 10);
        }
        assert_eq!(
            g.check(c, "keep@x", "r@y", t + DELAY + secs(40)),
            GreyDecision::Pass
        );
        // The newest waiting one survived.
        assert_eq!(
            g.check(c, "w29@x", "r@y", t + DELAY * 2 + secs(29)),
            GreyDecision::Pass
        );
    }

    #[test]
    fn greylist_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Greylist>();
    }

    #[test]
    fn zero_delay_passes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let g = Greylist::open(dir.path(), Duration::ZERO, EXPIRE).unwrap();
        assert_eq!(
            g.check(ip("192.0.2.1"), "a@x", "b@y", t0()),
            GreyDecision::Pass
        );
    }

    #[test]
    fn clock_going_back_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let g = Greylist::open(dir.path(), DELAY, EXPIRE).unwrap();
        let t = t0();
        g.check(ip("192.0.2.1"), "a@x", "b@y", t);
        assert_eq!(
            g.check(ip("192.0.2.1"), "a@x", "b@y", t - secs(50)),
            defer(300)
        );
        assert_eq!(
            g.check(ip("192.0.2.1"), "a@x", "b@y", UNIX_EPOCH - secs(5)),
            defer(300)
        );
    }

    #[test]
    fn sender_normalisation() {
        let cases = [
            ("", "<>"),
            ("<>", "<>"),
            ("<Alice@Example.ORG>", "alice@example.org"),
            ("prvs=1234abcdef=alice@example.org", "alice@example.org"),
            ("PRVS=0123456789=Alice@example.org", "alice@example.org"),
            ("msprvs1=17abcdefgh=bob@example.org", "bob@example.org"),
            ("btv1==1234==carol@example.org", "carol@example.org"),
            (
                "SRS0=HHH=TT=orig.example=user@fwd.example",
                "user@orig.example",
            ),
            (
                "SRS0+HHH=TT=orig.example=us=er@fwd.example",
                "us=er@orig.example",
            ),
            (
                "SRS1=HHH=first.example==HHH=TT=orig.example=user@second.example",
                "user@orig.example",
            ),
            ("srs0=broken@fwd.example", "srs0=broken@fwd.example"),
            ("prvs=@example.org", "prvs=@example.org"),
            ("no-at-sign", "no-at-sign"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalise_sender(raw), want, "{raw:?}");
        }
        assert_eq!(normalise_sender(&"é".repeat(1000)).len(), MAX_ADDRESS);
    }

    #[test]
    fn records_round_trip() {
        let triplet = Triplet {
            net: Network::of(ip("2001:db8:aa:bb:1::1")),
            sender: "we ird%@x".into(),
            rcpt: "ü@y".into(),
        };
        let entry = Entry {
            first: 1,
            last: 2,
            passed: true,
            logged_last: 2,
        };
        let line = format_record(&triplet, &entry);
        assert_eq!(line, "p 1 2 2001:db8:aa:bb::/64 we%20ird%25@x %C3%BC@y\n");
        let parsed = parse_record(line.trim_end().as_bytes()).unwrap();
        assert_eq!(parsed, (triplet, entry));
    }
}
