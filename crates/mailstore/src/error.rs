//! The one error type of the IMAP-facing store: every refusal is a variant a caller can match
//! on (an IMAP layer turns `InvalidName` into `NO [CANNOT]`, `NotFound` into
//! `NO [NONEXISTENT]`, `Io` into `NO [SERVERBUG]`…), and every I/O failure names its path.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::uidlist::Uid;

/// Why a folder name was refused (see [`crate::FolderName::parse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    Empty,
    /// `a//b`, a leading or trailing `/`.
    EmptyComponent,
    /// `.` anywhere in a component: on disk `.` is the hierarchy separator (we do not escape).
    Dot,
    /// NUL, another control character, or DEL.
    ControlChar,
    /// `%` or `*`: LIST wildcards can never be part of a real name.
    Wildcard,
    /// Bytes outside ASCII: the IMAP layer passes modified UTF-7, as Dovecot stores it.
    NotAscii,
    /// A component over 255 bytes, a name over 1024, or a directory name over 255.
    TooLong,
    /// `INBOX/x`: INBOX is the Maildir root and has no Maildir++ children here.
    UnderInbox,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "empty",
            NameError::EmptyComponent => "empty hierarchy level",
            NameError::Dot => "contains '.'",
            NameError::ControlChar => "contains a control character",
            NameError::Wildcard => "contains a wildcard ('%' or '*')",
            NameError::NotAscii => "not ASCII (modified UTF-7 expected)",
            NameError::TooLong => "too long",
            NameError::UnderInbox => "INBOX cannot have children",
        })
    }
}

#[derive(Debug)]
pub enum StoreError {
    InvalidName {
        name: String,
        why: NameError,
    },
    /// No such folder.
    NotFound(String),
    /// The folder (or the rename target) exists already.
    AlreadyExists(String),
    /// INBOX cannot be deleted or renamed; a folder cannot be renamed below itself.
    NotAllowed(String),
    /// No message with this UID (anymore).
    NoSuchMessage(Uid),
    /// All 26 keyword letters of this folder are taken.
    TooManyKeywords,
    /// The invalid keyword (empty, or with a space, control char or IMAP special).
    InvalidKeyword(String),
    /// Someone else held the lock longer than we wait.
    Locked(PathBuf),
    /// A file we own (UID list) cannot be read as its format.
    Corrupt {
        path: PathBuf,
        why: String,
    },
    Io {
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::InvalidName { name, why } => {
                write!(f, "invalid folder name {name:?}: {why}")
            }
            StoreError::NotFound(n) => write!(f, "no folder {n:?}"),
            StoreError::AlreadyExists(n) => write!(f, "folder {n:?} exists"),
            StoreError::NotAllowed(why) => write!(f, "not allowed: {why}"),
            StoreError::NoSuchMessage(u) => write!(f, "no message with UID {}", u.0),
            StoreError::TooManyKeywords => f.write_str("no keyword slot left (26 per folder)"),
            StoreError::InvalidKeyword(k) => write!(f, "invalid keyword {k:?}"),
            StoreError::Locked(p) => write!(f, "{}: still locked, gave up waiting", p.display()),
            StoreError::Corrupt { path, why } => write!(f, "{}: corrupt: {why}", path.display()),
            StoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<StoreError> for io::Error {
    fn from(e: StoreError) -> io::Error {
        let kind = match &e {
            StoreError::Io { source, .. } => source.kind(),
            StoreError::NotFound(_) | StoreError::NoSuchMessage(_) => io::ErrorKind::NotFound,
            StoreError::AlreadyExists(_) => io::ErrorKind::AlreadyExists,
            StoreError::InvalidName { .. } | StoreError::InvalidKeyword(_) => {
                io::ErrorKind::InvalidInput
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e.to_string())
    }
}

/// `map_err(io_at(path))`: an I/O error with the path it happened at.
pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
