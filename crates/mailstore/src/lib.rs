//! Maildir++ folders (SPEC §5.3, §5.6): the mail store that local delivery writes and IMAP
//! reads. This crate owns the on-disk layout; nobody else composes paths inside a Maildir.
//!
//! Two faces: [`Maildir`] for delivery (create folders, drop a message into `new/`), and
//! [`MailStore`] / [`Folder`] for IMAP (folder names and LIST, subscriptions, special-use
//! folders, flags in file names, Dovecot's `dovecot-keywords` and `dovecot-uidlist`, APPEND,
//! COPY, MOVE, EXPUNGE). Module map: `name` (IMAP names ↔ `.A.B` directories, isolation),
//! `flags` (`:2,` letters, keywords), `uidlist` (the UID list format and its dot-lock),
//! `modseq` (CONDSTORE/QRESYNC mod-sequences and remembered expunges, `ownmail-modseq`),
//! `store` (folders and messages), `error` (the typed [`StoreError`]).
//!
//! Layout: a Maildir is a directory with `tmp/`, `new/` and `cur/`. Maildir++ subfolders are
//! sibling directories inside the main one, named `.` + the folder name, with hierarchy levels
//! separated by `.` (`.Junk`, `.Lists.rust`), each a Maildir of its own plus an empty
//! `maildirfolder` file (the marker Dovecot and Courier write).
//!
//! One writer discipline — each kind of change has exactly one owner:
//! - **Delivery** only ever creates a file in `tmp/` and renames it into `new/`. It never reads,
//!   renames or removes anything in `new/` or `cur/` (the one exception: its own file, removed
//!   again if syncing `new/` failed right after the rename).
//! - **IMAP** ([`Folder`]) is the only one that moves files `new/` → `cur/`, renames files in
//!   `cur/` to change their `:2,FLAGS`, removes messages, and writes `dovecot-uidlist`,
//!   `ownmail-modseq`, `dovecot-keywords` and `subscriptions` — always holding the folder's
//!   `dovecot-uidlist.lock`, so concurrent sessions serialise while delivery never waits.
//!
//! Invariants:
//! - A file appears in `new/` only complete: it was written in `tmp/`, fsynced, renamed, and
//!   `new/` was fsynced before [`Maildir::deliver`] returns (SPEC §5.2). A crash leaves at worst
//!   a stray file in `tmp/`, never a partial message in `new/`.
//! - File names are unique — seconds, microseconds, pid, a per-process counter, the host name —
//!   and end in `,S=<size>`, the exact size of the file, so readers need not `stat` it.
//! - Directories made here are mode 0700 and files 0600; with an owner given, both are chowned
//!   to it (the caller decides whether it may: only root can give files away).
//! - Inside a Maildir nothing follows a symbolic link: `tmp/` and `new/` are opened with
//!   `O_NOFOLLOW` and the message is created and renamed relative to those directory handles,
//!   because the user who owns the Maildir may be someone other than the (root) writer. The
//!   Maildir's own path may be a link; users do move their mail.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{fchown, lchown, DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{open, openat, renameat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{fsync, unlinkat, UnlinkatFlags};

/// A uid and gid that new directories and files are given.
pub type Owner = (u32, u32);

/// The longest directory name most file systems allow (NAME_MAX).
const MAX_NAME: usize = 255;

/// A Maildir, or a Maildir++ subfolder of one. Only a path: nothing is touched until
/// [`Maildir::ensure`] or [`Maildir::deliver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maildir {
    root: PathBuf,
    /// The folder name (`Junk`, `Lists.rust`) when this is a Maildir++ subfolder.
    folder: Option<String>,
}

impl Maildir {
    /// The Maildir at `root` (its `cur/`, `new/` and `tmp/` live directly below).
    pub fn open(root: impl Into<PathBuf>) -> Self {
        Maildir {
            root: root.into(),
            folder: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The Maildir++ subfolder `name` (`Junk` is the directory `.Junk`; `Lists.rust` is
    /// `.Lists.rust`). Asked of a subfolder, gives the folder below it (`.Lists` → `.Lists.rust`).
    /// Refuses names that could leave the Maildir or that no file system would take: empty,
    /// containing `/`, `..` or control characters, starting or ending with `.`, or too long.
    pub fn folder(&self, name: &str) -> io::Result<Maildir> {
        let invalid = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid folder name {name:?}: {why}"),
            )
        };
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        if name.contains('/') {
            return Err(invalid("contains /"));
        }
        if name.contains("..") {
            return Err(invalid("contains .."));
        }
        if name.starts_with('.') || name.ends_with('.') {
            return Err(invalid("starts or ends with ."));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("contains a control character"));
        }
        let (base, full) = match &self.folder {
            None => (self.root.as_path(), name.to_string()),
            Some(own) => (
                self.root.parent().unwrap_or(Path::new("/")),
                format!("{own}.{name}"),
            ),
        };
        let dir = format!(".{full}");
        if dir.len() > MAX_NAME {
            return Err(invalid("longer than 255 bytes"));
        }
        Ok(Maildir {
            root: base.join(dir),
            folder: Some(full),
        })
    }

    /// Creates whatever is missing: the Maildir's directory (and missing parents), `cur/`,
    /// `new/`, `tmp/`, and for a subfolder its `maildirfolder` marker. What this call creates
    /// gets mode 0700 (files 0600) and, when given, the owner; what exists is left alone.
    pub fn ensure(&self, owner: Option<Owner>) -> io::Result<()> {
        create_dir_chain(&self.root, owner)?;
        for sub in ["cur", "new", "tmp"] {
            create_dir_owned(&self.root.join(sub), owner)?;
        }
        if self.folder.is_some() {
            let marker = self.root.join("maildirfolder");
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(OFlag::O_NOFOLLOW.bits())
                .open(&marker)
            {
                Ok(f) => chown_file(&f, owner).map_err(|e| at(&marker, e))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(at(&marker, e)),
            }
        }
        Ok(())
    }

    /// Delivers one message: writes `bytes` to `tmp/NAME` (mode 0600, chowned to `owner`),
    /// fsyncs it, renames it to `new/NAME` and fsyncs `new/`. Returns the final path. On any
    /// error nothing of this message is left in `tmp/` or `new/`. The Maildir must exist
    /// ([`Maildir::ensure`]).
    pub fn deliver(&self, bytes: &[u8], owner: Option<Owner>) -> io::Result<PathBuf> {
        let name = unique_name(bytes.len() as u64, Some(crlf_size(bytes)));
        let root = open(
            &self.root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| at(&self.root, e.into()))?;
        let tmp = open_subdir(&root, "tmp").map_err(|e| at(&self.root.join("tmp"), e))?;
        let new = open_subdir(&root, "new").map_err(|e| at(&self.root.join("new"), e))?;
        let tmp_path = self.root.join("tmp").join(&name);
        let new_path = self.root.join("new").join(&name);

        let fd = openat(
            &tmp,
            name.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| at(&tmp_path, e.into()))?;
        // From here on the tmp file is ours: every failure removes it (the removal is best
        // effort — a leftover in tmp/ is garbage nobody reads, never a delivered message).
        let written = write_synced(File::from(fd), bytes, owner).map_err(|e| at(&tmp_path, e));
        let renamed = written.and_then(|()| {
            renameat(&tmp, name.as_str(), &new, name.as_str()).map_err(|e| at(&new_path, e.into()))
        });
        if let Err(e) = renamed {
            let _ = unlinkat(&tmp, name.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        // The rename is durable only once the directory is synced. If that fails, take the
        // message back out: the caller will retry, and a retry must not make a duplicate.
        if let Err(e) = fsync(&new) {
            let _ = unlinkat(&new, name.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(at(&self.root.join("new"), e.into()));
        }
        Ok(new_path)
    }
}

fn write_synced(mut file: File, bytes: &[u8], owner: Option<Owner>) -> io::Result<()> {
    chown_file(&file, owner)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn chown_file(file: &File, owner: Option<Owner>) -> io::Result<()> {
    match owner {
        Some((uid, gid)) => fchown(file, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

/// Opens `tmp/` or `new/` below `root` without following a symbolic link.
fn open_subdir(root: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    Ok(openat(
        root,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Creates `dir` and every missing parent, top down, each with [`create_dir_owned`].
fn create_dir_chain(dir: &Path, owner: Option<Owner>) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = dir;
    loop {
        match fs::metadata(cur) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(at(
                    cur,
                    io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(cur);
                match cur.parent() {
                    Some(p) if !p.as_os_str().is_empty() => cur = p,
                    _ => break,
                }
            }
            Err(e) => return Err(at(cur, e)),
        }
    }
    for d in missing.iter().rev() {
        create_dir_owned(d, owner)?;
    }
    Ok(())
}

/// Makes one directory, mode 0700, chowned to `owner`. One that already exists (another
/// delivery may have raced us to it) is left as it is.
fn create_dir_owned(dir: &Path, owner: Option<Owner>) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => match owner {
            // lchown: if the new entry was swapped for a link meanwhile, the link is what
            // changes owner, not its target.
            Some((uid, gid)) => lchown(dir, Some(uid), Some(gid)).map_err(|e| at(dir, e)),
            None => Ok(()),
        },
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(at(dir, e)),
    }
}

/// Puts the path into the error's text (the kind stays, so callers can still tell a full disk
/// from a missing directory).
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// `<secs>.M<usecs>P<pid>Q<counter>.<host>,S=<size>,W=<vsize>`: the usual Maildir form
/// (Courier's `Q` delivery counter keeps two deliveries in the same microsecond apart), with
/// Dovecot's `W=`: the size with CRLF line endings, which IMAP reports as RFC822.SIZE.
pub(crate) fn unique_name(size: u64, vsize: Option<u64>) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let q = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = format!(
        "{}.M{}P{}Q{}.{},S={size}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        q,
        hostname()
    );
    if let Some(w) = vsize {
        name.push_str(&format!(",W={w}"));
    }
    name
}

/// The host name as it may appear in a Maildir name: `/` and `:` would break the path or
/// the `:2,FLAGS` suffix, so they are written `\057` and `\072`, as Dovecot does.
fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let raw = if raw.is_empty() {
            "localhost".to_string()
        } else {
            raw
        };
        escape_hostname(&raw)
    })
}

fn escape_hostname(raw: &str) -> String {
    raw.replace('/', "\\057").replace(':', "\\072")
}

/// For readers (IMAP, tests): the `,S=` size in a Maildir file name, if there is one.
pub fn size_from_name(name: &str) -> Option<u64> {
    name_field(name, "S=")
}

/// The `,W=` size (with CRLF line endings) in a Maildir file name, if there is one.
pub fn vsize_from_name(name: &str) -> Option<u64> {
    name_field(name, "W=")
}

fn name_field(name: &str, key: &str) -> Option<u64> {
    let base = name.split(':').next()?;
    base.split(',')
        .skip(1)
        .find_map(|field| field.strip_prefix(key))?
        .parse()
        .ok()
}

/// The size of `bytes` once every bare LF is written CRLF (what IMAP clients are sent).
pub fn crlf_size(bytes: &[u8]) -> u64 {
    let mut bare = 0u64;
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            bare += 1;
        }
        prev = b;
    }
    bytes.len() as u64 + bare
}

/// `bytes` with every CRLF written LF, as Maildir files hold them (Dovecot's
/// `mail_save_crlf = no`); borrowed when there is none. [`to_crlf`] gives the bytes back.
pub fn from_crlf(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !bytes.windows(2).any(|w| w == b"\r\n") {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(b);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// `bytes` with every bare LF written CRLF; borrowed when there is none. Maildir files
/// hold LF line endings (as Dovecot and local delivery write them), IMAP sends CRLF.
pub fn to_crlf(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if crlf_size(bytes) == bytes.len() as u64 {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    std::borrow::Cow::Owned(out)
}

mod error;
mod flags;
mod modseq;
mod name;
mod stamp;
mod store;
mod uidlist;
mod watch;

pub use error::{NameError, Result, StoreError};
pub use flags::{check_keyword, split_info, Flags, Keywords, FORWARDED, MAX_KEYWORDS};
pub use modseq::{MAX_EXPUNGED, MODSEQ};
pub use name::{is_inbox, FolderName, SpecialUse};
pub use stamp::FolderStamp;
pub use store::{FlagChange, Folder, FolderInfo, FolderState, MailStore, MessageInfo};
pub use uidlist::{Uid, UidList, UidValidity, LOCK as UIDLIST_LOCK, UIDLIST};
pub use watch::{FolderWatch, WatchEvent};

#[cfg(test)]
mod migration_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
