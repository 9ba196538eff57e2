//! Maildir destinations (SPEC §5.3), written through `ownmail-mailstore`.

use std::io;
use std::path::{Path, PathBuf};

use ownmail_mailstore::{Maildir, Owner};
use ownmail_types::{DeliveryOutcome, LocalUser};

/// The Maildir++ folder that `junk` sends spam to.
const JUNK_FOLDER: &str = "Junk";

/// Delivers `copy` (already in local form) to the Maildir at `path`, or to its `.Junk` folder.
/// Missing directories are created, owned by the user.
pub(crate) async fn deliver(
    user: &LocalUser,
    path: &Path,
    to_junk: bool,
    copy: Vec<u8>,
) -> DeliveryOutcome {
    let owner = match crate::owner_for(user) {
        Ok(owner) => owner,
        Err(refused) => return refused,
    };
    let root = path.to_path_buf();
    // The file system calls block (fsync above all): keep them off the async workers.
    match tokio::task::spawn_blocking(move || deliver_blocking(root, to_junk, &copy, owner)).await {
        Ok(Ok(file)) => DeliveryOutcome::Delivered {
            detail: format!("maildir {}", file.display()),
        },
        // Every file system error is worth a retry: a full disk or quota (ENOSPC, EDQUOT), an
        // I/O error, or permissions the admin can fix. The queue's lifetime bounds the retries.
        Ok(Err(e)) => DeliveryOutcome::TempFail {
            reason: format!("maildir delivery failed: {e}"),
        },
        Err(e) => DeliveryOutcome::TempFail {
            reason: format!("maildir delivery task failed: {e}"),
        },
    }
}

fn deliver_blocking(
    root: PathBuf,
    to_junk: bool,
    copy: &[u8],
    owner: Option<Owner>,
) -> io::Result<PathBuf> {
    let inbox = Maildir::open(root);
    inbox.ensure(owner)?;
    let target = if to_junk {
        let junk = inbox.folder(JUNK_FOLDER)?;
        junk.ensure(owner)?;
        junk
    } else {
        inbox
    };
    target.deliver(copy, owner)
}

/// True when the header section has `X-Spam: yes` (case-insensitive), the mark a spam filter
/// in front of us leaves (the same test as OpenSMTPD's `junk`). Only the header section is
/// read; a folded value counts by its first word.
pub(crate) fn is_marked_spam(message: &[u8]) -> bool {
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return false;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        if !name.trim_ascii_end().eq_ignore_ascii_case(b"X-Spam") {
            continue;
        }
        let value = value.get(1..).unwrap_or_default();
        let word: Vec<u8> = value
            .iter()
            .copied()
            .skip_while(u8::is_ascii_whitespace)
            .take_while(|b| b.is_ascii_alphabetic())
            .collect();
        if word.eq_ignore_ascii_case(b"yes") {
            return true;
        }
    }
    false
}
