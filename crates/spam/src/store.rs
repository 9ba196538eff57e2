//! The per-user token store: its file format (see the crate documentation), loading, and
//! learning under a lock with a durable replace. This module is the only writer of the file.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{fchown, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::classify::{combine, token_probability, MIN_TRAINED};
use crate::tokens::{digest, tokenize};

/// Most tokens a store keeps; beyond it, it is cut to 90 % by dropping the rarest.
pub const MAX_TOKENS: usize = 150_000;
/// Most learnt-message lines kept (oldest forgotten first).
pub const MAX_LEARNED: usize = 20_000;
/// A store file is read up to this size; the rest is ignored (as a damaged tail would be).
const MAX_FILE: u64 = 32 * 1024 * 1024;
/// Longest token accepted from a file.
const MAX_TOKEN_LEN: usize = 300;
const MAGIC: &str = "ownmail-spam";
const VERSION: &str = "1";

/// Which way a message is learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    Spam,
    Ham,
}

impl Class {
    fn letter(self) -> char {
        match self {
            Class::Spam => 'S',
            Class::Ham => 'H',
        }
    }

    fn from_letter(s: &str) -> Option<Class> {
        match s {
            "S" => Some(Class::Spam),
            "H" => Some(Class::Ham),
            _ => None,
        }
    }
}

/// One user's classifier: how many messages of each class were learnt, which ones, and the
/// per-token counts.
#[derive(Clone, Debug, Default)]
pub struct TokenStore {
    nspam: u32,
    nham: u32,
    /// Learnt messages, oldest first, and the same as a map for lookup.
    learned: VecDeque<(Class, String)>,
    index: HashMap<String, Class>,
    /// token → (spam messages, ham messages) that held it.
    tokens: HashMap<String, (u32, u32)>,
}

impl TokenStore {
    /// Reads the store at `path`; a missing file is an empty store. Damaged lines are skipped
    /// (see the crate documentation); only a failure to read the file is an error.
    pub fn load(path: &Path) -> io::Result<TokenStore> {
        match open_nofollow(path) {
            Ok(f) => {
                let mut bytes = Vec::new();
                f.take(MAX_FILE).read_to_end(&mut bytes)?;
                Ok(TokenStore::parse(&bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(TokenStore::default()),
            Err(e) => Err(e),
        }
    }

    /// Parses the file format, skipping what does not parse.
    pub fn parse(bytes: &[u8]) -> TokenStore {
        let mut s = TokenStore::default();
        let mut header: Option<(u32, u32)> = None;
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let Ok(line) = std::str::from_utf8(raw) else {
                continue;
            };
            let f: Vec<&str> = line.trim_end_matches('\r').split(' ').collect();
            match f.as_slice() {
                [MAGIC, VERSION, ns, nh] if i == 0 => {
                    if let (Ok(ns), Ok(nh)) = (ns.parse(), nh.parse()) {
                        header = Some((ns, nh));
                    }
                }
                ["L", class, d] => {
                    if let Some(c) = Class::from_letter(class) {
                        if is_digest(d) && !s.index.contains_key(*d) {
                            s.index.insert((*d).to_string(), c);
                            s.learned.push_back((c, (*d).to_string()));
                        }
                    }
                }
                ["T", tok, sp, hm] => {
                    if let (Ok(sp), Ok(hm)) = (sp.parse::<u32>(), hm.parse::<u32>()) {
                        if !tok.is_empty() && tok.len() <= MAX_TOKEN_LEN && (sp, hm) != (0, 0) {
                            s.tokens.insert((*tok).to_string(), (sp, hm));
                        }
                    }
                }
                _ => {}
            }
        }
        while s.learned.len() > MAX_LEARNED {
            if let Some((_, d)) = s.learned.pop_front() {
                s.index.remove(&d);
            }
        }
        // A lost header: the learnt lines are the best count there is.
        let (ns, nh) = header.unwrap_or_else(|| {
            let spam = s.learned.iter().filter(|(c, _)| *c == Class::Spam).count();
            let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
            (n(spam), n(s.learned.len() - spam))
        });
        s.nspam = ns;
        s.nham = nh;
        s
    }

    /// The file's contents.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64 + self.learned.len() * 36 + self.tokens.len() * 24);
        let _ = writeln!(out, "{MAGIC} {VERSION} {} {}", self.nspam, self.nham);
        for (c, d) in &self.learned {
            let _ = writeln!(out, "L {} {d}", c.letter());
        }
        let mut toks: Vec<(&String, &(u32, u32))> = self.tokens.iter().collect();
        toks.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (t, (sp, hm)) in toks {
            let _ = writeln!(out, "T {t} {sp} {hm}");
        }
        out.into_bytes()
    }

    /// (spam, ham): how many messages of each class the store has learnt.
    pub fn counts(&self) -> (u32, u32) {
        (self.nspam, self.nham)
    }

    /// How many distinct tokens the store holds.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// How `message` was learnt, if it was (and is still remembered).
    pub fn learned_as(&self, message: &[u8]) -> Option<Class> {
        self.index.get(&digest(message)).copied()
    }

    /// The probability that `message` is spam, or `None` until the store has learnt at least
    /// [`MIN_TRAINED`] messages of each class.
    pub fn spam_probability(&self, message: &[u8]) -> Option<f64> {
        if self.nspam < MIN_TRAINED || self.nham < MIN_TRAINED {
            return None;
        }
        let probs = tokenize(message)
            .iter()
            .filter_map(|t| self.tokens.get(t))
            .map(|&(sp, hm)| token_probability(sp, hm, self.nspam, self.nham))
            .collect();
        Some(combine(probs))
    }

    /// Learns `message` as `class` in memory. Returns whether anything changed: learning a
    /// message again as the same class does nothing; as the other class, first undoes the
    /// earlier learning.
    pub fn learn_message(&mut self, message: &[u8], class: Class) -> bool {
        let d = digest(message);
        let before = self.index.get(&d).copied();
        if before == Some(class) {
            return false;
        }
        let tokens = tokenize(message);
        if let Some(old) = before {
            self.count(&tokens, old, false);
            self.learned.retain(|(_, x)| *x != d);
        }
        self.count(&tokens, class, true);
        self.index.insert(d.clone(), class);
        self.learned.push_back((class, d));
        while self.learned.len() > MAX_LEARNED {
            if let Some((_, old)) = self.learned.pop_front() {
                self.index.remove(&old);
            }
        }
        if self.tokens.len() > MAX_TOKENS {
            self.prune(MAX_TOKENS / 10 * 9);
        }
        true
    }

    fn count(&mut self, tokens: &[String], class: Class, add: bool) {
        let step = |n: u32| {
            if add {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            }
        };
        match class {
            Class::Spam => self.nspam = step(self.nspam),
            Class::Ham => self.nham = step(self.nham),
        }
        for t in tokens {
            if add {
                let e = self.tokens.entry(t.clone()).or_insert((0, 0));
                match class {
                    Class::Spam => e.0 = step(e.0),
                    Class::Ham => e.1 = step(e.1),
                }
            } else if let Some(e) = self.tokens.get_mut(t) {
                match class {
                    Class::Spam => e.0 = step(e.0),
                    Class::Ham => e.1 = step(e.1),
                }
                if *e == (0, 0) {
                    self.tokens.remove(t);
                }
            }
        }
    }

    /// Keeps the `keep` tokens seen in the most messages.
    fn prune(&mut self, keep: usize) {
        let mut all: Vec<(String, (u32, u32))> = self.tokens.drain().collect();
        all.sort_unstable_by(|a, b| {
            let total = |x: &(u32, u32)| u64::from(x.0) + u64::from(x.1);
            total(&b.1).cmp(&total(&a.1)).then_with(|| a.0.cmp(&b.0))
        });
        all.truncate(keep);
        self.tokens = all.into_iter().collect();
    }
}

fn is_digest(d: &str) -> bool {
    d.len() == 32 && d.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Learns `message` as `class` into the store at `path` ([`learn_owned`] without an owner).
pub fn learn(path: &Path, message: &[u8], class: Class) -> io::Result<bool> {
    learn_owned(path, message, class, None)
}

/// Learns `message` as `class` into the store at `path`: holding an exclusive `flock` on
/// `<path>.lock`, reads the store (missing is empty), learns, and — only if something
/// changed — writes the new store to a temporary file in the same directory, fsyncs it,
/// renames it over `path` and fsyncs the directory. Files created here are mode 0600 and,
/// with `owner` given, chowned to it (the caller decides whether it may: only root can give
/// files away). Returns whether the store changed.
pub fn learn_owned(
    path: &Path,
    message: &[u8],
    class: Class,
    owner: Option<(u32, u32)>,
) -> io::Result<bool> {
    learn_many(path, &[message], class, owner).map(|n| n > 0)
}

/// [`learn_owned`] for several messages at once: one lock, one read and at most one write of
/// the store (moving a thousand messages into Junk should not rewrite the file a thousand
/// times). Returns how many of the messages changed the store.
pub fn learn_many(
    path: &Path,
    messages: &[&[u8]],
    class: Class,
    owner: Option<(u32, u32)>,
) -> io::Result<usize> {
    let lock_path = with_suffix(path, ".lock");
    let lock_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(&lock_path)
        .map_err(|e| at(&lock_path, e))?;
    chown(&lock_file, owner).map_err(|e| at(&lock_path, e))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| at(&lock_path, io::Error::from(e)))?;

    let mut store = TokenStore::load(path).map_err(|e| at(path, e))?;
    let mut changed = 0;
    for m in messages {
        if store.learn_message(m, class) {
            changed += 1;
        }
    }
    if changed > 0 {
        write_durable(path, &store.to_bytes(), owner)?;
    }
    Ok(changed)
}

/// Temp file in the same directory, fsync, rename over `path`, fsync the directory.
fn write_durable(path: &Path, bytes: &[u8], owner: Option<(u32, u32)>) -> io::Result<()> {
    static N: AtomicU64 = AtomicU64::new(0);
    let tmp = with_suffix(
        path,
        &format!(
            ".tmp.{}.{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ),
    );
    let result = (|| {
        // create_new: O_EXCL, so a link planted under this name is never followed.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlag::O_CLOEXEC.bits())
            .open(&tmp)?;
        chown(&f, owner)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(at(path, e));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| at(dir, e))
}

fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)
}

fn chown(f: &File, owner: Option<(u32, u32)>) -> io::Result<()> {
    match owner {
        Some((uid, gid)) => fchown(f, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, body: &str) -> Vec<u8> {
        format!("Message-ID: <{id}@example.org>\r\nSubject: test {id}\r\n\r\n{body}\r\n")
            .into_bytes()
    }

    #[test]
    fn learning_is_idempotent_and_moves_between_classes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(crate::STORE_FILE);
        let m = msg("a1", "cheap pharmacy discount");
        assert!(learn(&path, &m, Class::Spam).expect("learn"));
        assert!(!learn(&path, &m, Class::Spam).expect("learn again"));
        let s = TokenStore::load(&path).expect("load");
        assert_eq!(s.counts(), (1, 0));
        assert_eq!(s.learned_as(&m), Some(Class::Spam));
        assert_eq!(s.tokens.get("pharmacy"), Some(&(1, 0)));

        assert!(learn(&path, &m, Class::Ham).expect("move"));
        let s = TokenStore::load(&path).expect("load");
        assert_eq!(s.counts(), (0, 1));
        assert_eq!(s.learned_as(&m), Some(Class::Ham));
        assert_eq!(s.tokens.get("pharmacy"), Some(&(0, 1)));
        assert_eq!(s.learned.len(), 1);
        // No temporary files left behind; the lock file stays.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("readdir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn learn_many_writes_once_and_counts_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(crate::STORE_FILE);
        let a = msg("a", "lottery");
        let b = msg("b", "casino");
        let n = learn_many(&path, &[&a, &b, &a], Class::Spam, None).expect("learn");
        assert_eq!(n, 2);
        assert_eq!(TokenStore::load(&path).expect("load").counts(), (2, 0));
        let n = learn_many(&path, &[&a, &b], Class::Ham, None).expect("learn");
        assert_eq!(n, 2);
        assert_eq!(TokenStore::load(&path).expect("load").counts(), (0, 2));
        assert_eq!(learn_many(&path, &[], Class::Ham, None).expect("learn"), 0);
    }

    #[test]
    fn format_round_trips_and_is_as_documented() {
        let mut s = TokenStore::default();
        s.learn_message(&msg("a", "lottery winner"), Class::Spam);
        s.learn_message(&msg("b", "meeting agenda"), Class::Ham);
        let bytes = s.to_bytes();
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert!(text.starts_with("ownmail-spam 1 1 1\n"), "{text}");
        assert!(text.contains("\nT lottery 1 0\n"), "{text}");
        assert!(text.contains("\nT agenda 0 1\n"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("L S ")).count(), 1);
        let back = TokenStore::parse(&bytes);
        assert_eq!(back.counts(), (1, 1));
        assert_eq!(back.tokens, s.tokens);
        assert_eq!(back.learned, s.learned);
        assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn damaged_store_keeps_what_parses_and_can_still_learn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(crate::STORE_FILE);
        let mut s = TokenStore::default();
        let m = msg("a", "lottery winner");
        s.learn_message(&m, Class::Spam);
        s.learn_message(&msg("b", "meeting agenda"), Class::Ham);
        let mut bytes = s.to_bytes();
        // Lose the header, add garbage in the middle and a cut-off tail.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = text.split_once('\n').map_or("", |x| x.1).to_string();
        bytes = b"garbage\xff??\n".to_vec();
        bytes.extend_from_slice(body.as_bytes());
        bytes.extend_from_slice(b"T broken\nT x notanumber 1\nL Q zz\n\0\0\nT lot\xff\xfe\n");
        std::fs::write(&path, &bytes).expect("write");
        let d = TokenStore::load(&path).expect("load");
        assert_eq!(d.counts(), (1, 1), "counts rebuilt from L lines");
        assert_eq!(d.tokens.get("lottery"), Some(&(1, 0)));
        assert_eq!(d.learned_as(&m), Some(Class::Spam));
        assert!(!d.tokens.contains_key("x"));
        // Learning rewrites a clean file.
        assert!(learn(&path, &msg("c", "casino prize"), Class::Spam).expect("learn"));
        let again = std::fs::read_to_string(&path).expect("utf8 now");
        assert!(again.starts_with("ownmail-spam 1 2 1\n"), "{again}");
        assert!(!again.contains("garbage"));
        // Not even a store: still loads, empty.
        std::fs::write(&path, b"\x00\x01\x02 binary junk").expect("write");
        assert_eq!(TokenStore::load(&path).expect("load").counts(), (0, 0));
    }

    #[test]
    fn files_created_as_root_belong_to_the_owner() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            return; // Only root can give files away.
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(crate::STORE_FILE);
        let owner = Some((65534, 65533));
        assert!(learn_owned(&path, &msg("a", "prize"), Class::Spam, owner).expect("learn"));
        for p in [path.clone(), with_suffix(&path, ".lock")] {
            let md = std::fs::metadata(&p).expect("stat");
            assert_eq!((md.uid(), md.gid()), (65534, 65533), "{}", p.display());
            assert_eq!(md.mode() & 0o777, 0o600, "{}", p.display());
        }
    }

    #[test]
    fn pruning_drops_rare_tokens() {
        let mut s = TokenStore::default();
        for i in 0..50u32 {
            s.tokens.insert(format!("t{i}"), (i, 0));
        }
        s.prune(10);
        assert_eq!(s.token_count(), 10);
        assert!(s.tokens.contains_key("t49"));
        assert!(!s.tokens.contains_key("t0"));
    }

    #[test]
    fn store_through_a_symlink_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, b"ownmail-spam 1 0 0\n").expect("write");
        let path = dir.path().join(crate::STORE_FILE);
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        assert!(TokenStore::load(&path).is_err());
    }

    #[test]
    fn no_probability_until_trained() {
        let mut s = TokenStore::default();
        for i in 0..MIN_TRAINED - 1 {
            s.learn_message(&msg(&format!("s{i}"), "lottery winner"), Class::Spam);
            s.learn_message(&msg(&format!("h{i}"), "meeting agenda"), Class::Ham);
        }
        assert_eq!(s.spam_probability(&msg("x", "lottery")), None);
        s.learn_message(&msg("s-last", "lottery winner"), Class::Spam);
        s.learn_message(&msg("h-last", "meeting agenda"), Class::Ham);
        let p = s
            .spam_probability(&msg("x", "lottery winner"))
            .expect("trained");
        assert!(p > 0.9, "{p}");
        let p = s
            .spam_probability(&msg("y", "meeting agenda"))
            .expect("trained");
        assert!(p < 0.1, "{p}");
    }
}
