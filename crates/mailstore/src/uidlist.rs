//! `dovecot-uidlist`: the per-folder map from message basename to IMAP UID, in the format
//! Dovecot (v1.1 and later) writes, so a Maildir moves between Dovecot and ownmail with its
//! UIDs and UIDVALIDITY.
//!
//! ```text
//! 3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1
//! 25020 :1275660000.M1P2.host,S=1234
//! 25021 W1290 :1275660001.M2P2.host,S=1250
//! ```
//! Header: version `3`, then fields in any order — `V` UIDVALIDITY, `N` next UID, `G` mailbox
//! GUID (others are kept as they are). Records: the UID, optional extension fields (`W` virtual
//! size, `G` message GUID…, kept verbatim), then `:` and the basename (the file name without
//! its `:2,` part). Version 1 (Courier's `1 <uidvalidity> <nextuid>`, records `<uid> <name>`)
//! is read too and written back as version 3.
//!
//! Invariants (the UID list's owner is [`crate::Folder`]):
//! - The file is only changed while holding `dovecot-uidlist.lock` (a dot-lock: created with
//!   `O_EXCL`, removed when done; one older than [`STALE_AFTER`] is taken to be left by a
//!   crash and broken), and only replaced whole: temp file, fsync, rename, fsync directory.
//! - UIDs only grow: `N` is never lowered, a UID is never given twice, a removed message's UID
//!   is never reused. UIDVALIDITY is set once, when the file is first made — and changed
//!   (to a greater one) only when that is unavoidable: a header that cannot be read, or the
//!   UIDs used up. Other damage is repaired keeping it ([`UidList::parse_repairing`]).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{io_at, Result, StoreError};

pub const UIDLIST: &str = "dovecot-uidlist";
pub const LOCK: &str = "dovecot-uidlist.lock";
/// Dovecot's default: a lock file untouched for two minutes is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(120);
/// How long we wait for someone else's lock before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// An IMAP UID (RFC 3501 §2.3.1.1), never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid(pub u32);

/// An IMAP UIDVALIDITY, never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UidValidity(pub u32);

/// One record: a UID, Dovecot's extension fields (kept verbatim) and the basename.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub uid: Uid,
    pub ext: Vec<String>,
    pub basename: String,
}

impl Record {
    /// Dovecot's `W<vsize>` extension field: the size with CRLF line endings.
    pub fn vsize(&self) -> Option<u64> {
        self.ext
            .iter()
            .find_map(|e| e.strip_prefix('W'))
            .and_then(|v| v.parse().ok())
    }

    /// Sets the `W` field (replacing an old one).
    pub fn set_vsize(&mut self, vsize: u64) {
        self.ext.retain(|e| !e.starts_with('W'));
        self.ext.push(format!("W{vsize}"));
    }
}

/// The parsed file. Records are kept in UID order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidList {
    pub uid_validity: UidValidity,
    pub next_uid: Uid,
    /// The mailbox GUID, 32 hex digits.
    pub guid: String,
    /// Header fields we do not interpret, written back unchanged.
    pub other_header: Vec<String>,
    pub records: Vec<Record>,
}

impl UidList {
    /// A new, empty list: UIDVALIDITY from the clock, a fresh GUID.
    pub fn fresh() -> UidList {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        UidList {
            uid_validity: UidValidity((now as u32).max(1)),
            next_uid: Uid(1),
            guid: new_guid(),
            other_header: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Parses the file's text strictly: a header we cannot read is an error. Bad record
    /// lines are left out as [`UidList::parse_repairing`] leaves them out.
    pub fn parse(text: &str, path: &Path) -> Result<UidList> {
        let parsed = UidList::parse_repairing(text);
        match parsed.header_problem {
            Some(why) => Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                why,
            }),
            None => Ok(parsed.list),
        }
    }

    /// Parses the file's text, repairing what it can (issue 11: a damaged list never makes
    /// a folder unusable, and never loses a message — a message whose record is left out
    /// is still on disk and gets a new UID at the next sync):
    /// - a header we cannot read (no version, no readable `V`, or cut short — the header
    ///   line has no newline, so `N` may be cut too) makes a fresh UIDVALIDITY: the old one
    ///   is unknown, and without it no UID can be trusted (RFC 3501 §2.3.1.1). The records
    ///   still readable keep their UIDs under the new UIDVALIDITY (harmless: clients resync);
    /// - an unknown version (a newer Dovecot) is read as version 3 when its `V` is readable;
    /// - a line that does not parse, has UID 0, or shares its UID or its basename with
    ///   another line is left out — both lines of a pair, since which one clients saw is
    ///   unknown, and a UID must never name a different message (their files get new UIDs);
    /// - `N` at or below a record's UID is raised: no UID is ever handed out twice (this is
    ///   no damage, and is not reported: see below).
    pub fn parse_repairing(text: &str) -> Parsed {
        let mut problems = Vec::new();
        let mut list = UidList {
            uid_validity: UidValidity(0),
            next_uid: Uid(1),
            guid: String::new(),
            other_header: Vec::new(),
            records: Vec::new(),
        };
        let (header, body) = match text.split_once('\n') {
            Some((h, b)) => (h, b),
            None => (text, ""),
        };
        let header_problem = read_header(header, &mut list, &mut problems)
            .err()
            .or_else(|| (!text.contains('\n')).then(|| "header line cut short".to_string()));
        let v1 = header.split_ascii_whitespace().next() == Some("1");
        if header_problem.is_some() {
            list.uid_validity = UidList::fresh().uid_validity;
            list.next_uid = Uid(1);
            list.other_header.clear();
        }
        if list.guid.is_empty() {
            list.guid = new_guid();
        }
        let mut by_uid: HashMap<Uid, usize> = HashMap::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut all: Vec<Option<Record>> = Vec::new();
        let cut = !body.is_empty() && !body.ends_with('\n');
        for (i, line) in body.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let rec = match parse_record(line, v1) {
                Some(r) if r.uid.0 != 0 => r,
                _ => {
                    problems.push(format!("unreadable record on line {}", i + 2));
                    continue;
                }
            };
            let idx = all.len();
            let dup_uid = by_uid.insert(rec.uid, idx);
            let dup_name = by_name.insert(rec.basename.clone(), idx);
            for (j, what) in [
                (dup_uid, format!("UID {} given twice", rec.uid.0)),
                (dup_name, format!("{} listed twice", rec.basename)),
            ] {
                if let Some(slot) = j.and_then(|j| all.get_mut(j)) {
                    problems.push(what);
                    *slot = None;
                }
            }
            all.push((dup_uid.is_none() && dup_name.is_none()).then_some(rec));
        }
        if cut {
            problems.push("last line cut short".to_string());
        }
        list.records = all.into_iter().flatten().collect();
        list.records.sort_by_key(|r| r.uid);
        // Never hand out a UID that a record already has, whatever N says. Not damage:
        // Dovecot appends records without rewriting the header (its index holds the real
        // next UID), so a file it wrote often says `N1` above fifty records.
        if let Some(last) = list.records.last() {
            if list.next_uid <= last.uid {
                list.next_uid = Uid(last.uid.0.saturating_add(1));
            }
        }
        Parsed {
            list,
            header_problem,
            problems,
        }
    }

    /// The file's text, version 3.
    pub fn render(&self) -> String {
        let mut out = format!(
            "3 V{} N{} G{}",
            self.uid_validity.0, self.next_uid.0, self.guid
        );
        for f in &self.other_header {
            out.push(' ');
            out.push_str(f);
        }
        out.push('\n');
        for r in &self.records {
            out.push_str(&r.uid.0.to_string());
            for e in &r.ext {
                out.push(' ');
                out.push_str(e);
            }
            out.push_str(" :");
            out.push_str(&r.basename);
            out.push('\n');
        }
        out
    }

    /// Numbers the records 1, 2, … under a new UIDVALIDITY greater than the old one (RFC 3501
    /// §2.3.1.1): the way on when the UIDs are used up, since none may be given twice.
    pub fn renumber(&mut self) {
        let clock = UidList::fresh().uid_validity.0;
        let next = self.uid_validity.0.checked_add(1).unwrap_or(1);
        self.uid_validity = UidValidity(clock.max(next));
        let mut uid = 1;
        for r in &mut self.records {
            r.uid = Uid(uid);
            uid += 1;
        }
        self.next_uid = Uid(uid);
    }

    /// Gives `basename` the next UID. `None` when the UID space is used up (2^32-1).
    pub fn assign(&mut self, basename: String) -> Option<Uid> {
        let uid = self.next_uid;
        if uid.0 == u32::MAX {
            return None;
        }
        self.next_uid = Uid(uid.0 + 1);
        self.records.push(Record {
            uid,
            ext: Vec::new(),
            basename,
        });
        Some(uid)
    }
}

/// What [`UidList::parse_repairing`] made of a file.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub list: UidList,
    /// Why the header could not be read; then `list` has a fresh UIDVALIDITY.
    pub header_problem: Option<String>,
    /// Other damage repaired in `list` (lines left out, `N` raised), for the log.
    pub problems: Vec<String>,
}

impl Parsed {
    /// True when the file on disk differs from `list` in a way worth rewriting it for.
    pub fn repaired(&self) -> bool {
        self.header_problem.is_some() || !self.problems.is_empty()
    }
}

/// Reads the header line into `list` (`V`, `N`, `G`, other fields); an error says why it
/// cannot be trusted. Version 1 is `1 <uidvalidity> <nextuid>`; 3 and any newer version
/// (noted in `problems`) are fields in any order.
fn read_header(
    header: &str,
    list: &mut UidList,
    problems: &mut Vec<String>,
) -> std::result::Result<(), String> {
    let mut fields = header.trim_end_matches('\r').split_ascii_whitespace();
    let version = fields.next().ok_or("empty")?;
    match version {
        "1" => {
            let v = fields.next().and_then(|v| v.parse().ok());
            let n = fields.next().and_then(|n| n.parse().ok());
            list.uid_validity = UidValidity(v.ok_or("bad v1 header")?);
            list.next_uid = Uid(n.ok_or("bad v1 header")?);
        }
        v if v.parse::<u32>().is_ok() => {
            if v != "3" {
                problems.push(format!("unknown version {v}, read as version 3"));
            }
            for f in fields {
                if let Some(v) = f.strip_prefix('V') {
                    list.uid_validity = UidValidity(v.parse().map_err(|_| "bad V field")?);
                } else if let Some(n) = f.strip_prefix('N') {
                    list.next_uid = Uid(n.parse().map_err(|_| "bad N field")?);
                } else if let Some(g) = f.strip_prefix('G') {
                    list.guid = g.to_string();
                } else {
                    list.other_header.push(f.to_string());
                }
            }
        }
        _ => return Err("no version number".to_string()),
    }
    if list.uid_validity.0 == 0 {
        return Err("no UIDVALIDITY".to_string());
    }
    if list.next_uid.0 == 0 {
        list.next_uid = Uid(1);
    }
    Ok(())
}

fn parse_record(line: &str, v1: bool) -> Option<Record> {
    let line = line.trim_end_matches('\r');
    let (uid, rest) = line.split_once(' ')?;
    let uid = Uid(uid.parse().ok()?);
    let (ext, basename) = if v1 {
        (Vec::new(), rest.trim())
    } else if let Some(name) = rest.strip_prefix(':') {
        (Vec::new(), name)
    } else {
        // Extension fields, then " :" and the name (which cannot contain " :" itself:
        // Maildir names have no spaces).
        let (ext, name) = rest.split_once(" :")?;
        (
            ext.split_ascii_whitespace().map(str::to_string).collect(),
            name,
        )
    };
    if basename.is_empty() || basename.contains('/') || basename.contains('\0') {
        return None;
    }
    Some(Record {
        uid,
        ext,
        basename: basename.to_string(),
    })
}

/// 128 bits in hex: from the kernel's random source, or (if that fails) from the clock, the
/// pid and a counter — unique enough for a mailbox GUID, which is only an identity hint.
fn new_guid() -> String {
    let mut buf = [0u8; 16];
    let random =
        File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut buf));
    if random.is_err() {
        static N: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let a = now ^ u64::from(std::process::id()) << 32;
        let b = N.fetch_add(1, Ordering::Relaxed) ^ now.rotate_left(17);
        buf[..8].copy_from_slice(&a.to_be_bytes());
        buf[8..].copy_from_slice(&b.to_be_bytes());
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `dir/dovecot-uidlist`; `None` if there is none yet. A damaged file is repaired
/// in memory as [`read_repairing`] does (and logged there).
pub fn read(dir: &Path) -> Result<Option<UidList>> {
    Ok(read_repairing(dir)?.map(|(list, _)| list))
}

/// Reads `dir/dovecot-uidlist` with [`UidList::parse_repairing`]; the flag says the file
/// was damaged and should be rewritten (the caller holds the lock). Each repair is logged
/// once, with the path: the rewrite makes the next read clean.
pub fn read_repairing(dir: &Path) -> Result<Option<(UidList, bool)>> {
    let path = dir.join(UIDLIST);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(&path)(e)),
    };
    let parsed = UidList::parse_repairing(&String::from_utf8_lossy(&bytes));
    if let Some(why) = &parsed.header_problem {
        tracing::warn!(
            "mailstore event=uidlist-rebuilt path={} reason=\"{why}\" uidvalidity={} \
             kept={} note=\"header unreadable: new UIDVALIDITY, clients will resync\"",
            path.display(),
            parsed.list.uid_validity.0,
            parsed.list.records.len(),
        );
    }
    if !parsed.problems.is_empty() {
        tracing::warn!(
            "mailstore event=uidlist-repaired path={} uidvalidity={} next_uid={} kept={} \
             problems=\"{}\"",
            path.display(),
            parsed.list.uid_validity.0,
            parsed.list.next_uid.0,
            parsed.list.records.len(),
            summary(&parsed.problems),
        );
    }
    let repaired = parsed.repaired();
    Ok(Some((parsed.list, repaired)))
}

/// The first few problems, and how many more: one bounded log line for any file.
fn summary(problems: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut out = problems
        .iter()
        .take(SHOWN)
        .map(|p| p.replace('"', "'"))
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        out.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    out
}

/// Replaces `dir/name` with `bytes` durably: a temp file in the same directory, fsync,
/// rename over, fsync the directory. Readers see the old or the new file, never a mix.
pub fn write_durable(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    static N: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let dest = dir.join(name);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc_nofollow())
            .open(&tmp)?;
        own_like_dir(&f, dir)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &dest)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_at(&dest)(e));
    }
    sync_dir(dir)
}

/// Running as root, gives a file we just created the owner of the directory it is in: a
/// Maildir belongs to its user (uid 5000 in the article), and Dovecot or an MDA running as
/// that user must be able to replace what we wrote.
pub(crate) fn own_like_dir(f: &File, dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let d = fs::metadata(dir)?;
    let m = f.metadata()?;
    if m.uid() != d.uid() || m.gid() != d.gid() {
        std::os::unix::fs::fchown(f, Some(d.uid()), Some(d.gid()))?;
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

pub(crate) fn libc_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// A held dot-lock (`dovecot-uidlist.lock`, `subscriptions.lock`); removed on drop.
#[derive(Debug)]
pub struct DotLock {
    path: PathBuf,
}

impl DotLock {
    /// Takes the lock file `dir/file`, waiting up to `wait`. A lock file older than `stale` is
    /// removed and taken over (its holder crashed, or is hung past any sane sync time).
    pub fn acquire(dir: &Path, file: &str, wait: Duration, stale: Duration) -> Result<DotLock> {
        let path = dir.join(file);
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc_nofollow())
                .open(&path)
            {
                Ok(mut f) => {
                    // The holder's pid, as Dovecot writes it; only informative.
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(DotLock { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let old = fs::symlink_metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    // Retry at once only if the stale file really went away; a lock we cannot
                    // remove is waited on like any other, up to the deadline.
                    if old.is_some_and(|age| age > stale) && fs::remove_file(&path).is_ok() {
                        continue;
                    }
                }
                Err(e) => return Err(io_at(&path)(e)),
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Locked(path));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
