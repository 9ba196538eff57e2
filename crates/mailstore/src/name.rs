//! IMAP folder names and their Maildir++ directories.
//!
//! An IMAP name uses `/` between hierarchy levels (`Lists/rust`); on disk the folder is the
//! single directory `.Lists.rust` directly inside the Maildir root. INBOX (any case) is the
//! root itself.
//!
//! A `.` inside a level would be read back as a level boundary, so such names are **refused**
//! (`NameError::Dot`) rather than escaped: Dovecot's `~`-style escaping is an option one turns
//! on, and a refused name is a simpler promise than an escape we must keep compatible forever.
//!
//! Because every folder is exactly one directory entry of the root whose name starts with `.`
//! and which contains no `/`, `..` or NUL, no valid name can reach outside the Maildir.

use std::fmt;

use crate::error::NameError;

/// Longest hierarchy level, and longest directory entry (NAME_MAX).
const MAX_COMPONENT: usize = 255;
/// Longest IMAP name we accept at all.
const MAX_NAME: usize = 1024;

/// A checked folder name other than INBOX, in IMAP form (`Lists/rust`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FolderName(String);

impl FolderName {
    /// Checks `name` (IMAP form, separator `/`). `INBOX` itself is not a `FolderName`: see
    /// [`is_inbox`]. The IMAP layer strips the trailing `/` RFC 3501 §6.3.3 allows on CREATE
    /// before calling this.
    pub fn parse(name: &str) -> Result<FolderName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME || name.len() + 1 > MAX_COMPONENT {
            return Err(NameError::TooLong);
        }
        for c in name.chars() {
            if c.is_control() {
                return Err(NameError::ControlChar);
            }
            if !c.is_ascii() {
                return Err(NameError::NotAscii);
            }
            if c == '%' || c == '*' {
                return Err(NameError::Wildcard);
            }
        }
        for (i, part) in name.split('/').enumerate() {
            if part.is_empty() {
                return Err(NameError::EmptyComponent);
            }
            if part.contains('.') {
                return Err(NameError::Dot);
            }
            if part.len() > MAX_COMPONENT {
                return Err(NameError::TooLong);
            }
            if i == 0 && part.eq_ignore_ascii_case("INBOX") && name.len() > part.len() {
                return Err(NameError::UnderInbox);
            }
        }
        Ok(FolderName(name.to_string()))
    }

    /// The name of the Maildir++ directory inside the root: `.Lists.rust`.
    pub fn dir_name(&self) -> String {
        format!(".{}", self.0.replace('/', "."))
    }

    /// The folder a root entry such as `.Lists.rust` stands for, if it is a valid one.
    pub fn from_dir_name(entry: &str) -> Option<FolderName> {
        let inner = entry.strip_prefix('.')?;
        let name = inner.replace('.', "/");
        let parsed = FolderName::parse(&name).ok()?;
        // INBOX (any case) as a directory would shadow the root: not a folder of ours.
        if is_inbox(parsed.as_str()) {
            return None;
        }
        Some(parsed)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Lists` for `Lists/rust`; `None` at the top.
    pub fn parent(&self) -> Option<FolderName> {
        self.0
            .rsplit_once('/')
            .map(|(p, _)| FolderName(p.to_string()))
    }

    /// True when `self` is strictly below `other` (`Lists/rust` under `Lists`).
    pub fn is_under(&self, other: &FolderName) -> bool {
        self.0.len() > other.0.len()
            && self.0.starts_with(other.0.as_str())
            && self.0.as_bytes().get(other.0.len()) == Some(&b'/')
    }

    /// The special-use role of a top-level folder with a well-known name (as Dovecot's stock
    /// configuration assigns them, RFC 6154).
    pub fn special_use(&self) -> Option<SpecialUse> {
        SpecialUse::ALL
            .into_iter()
            .find(|s| s.folder_name() == self.0)
    }
}

impl fmt::Display for FolderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// INBOX is case-insensitive (RFC 3501 §5.1).
pub fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case("INBOX")
}

/// RFC 6154 special-use roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    pub const ALL: [SpecialUse; 5] = [
        SpecialUse::Sent,
        SpecialUse::Drafts,
        SpecialUse::Trash,
        SpecialUse::Junk,
        SpecialUse::Archive,
    ];

    /// The LIST attribute, `\Sent` etc.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }

    /// The folder that has this role.
    pub fn folder_name(self) -> &'static str {
        match self {
            SpecialUse::Sent => "Sent",
            SpecialUse::Drafts => "Drafts",
            SpecialUse::Trash => "Trash",
            SpecialUse::Junk => "Junk",
            SpecialUse::Archive => "Archive",
        }
    }
}
