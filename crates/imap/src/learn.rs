//! Training the user's spam classifier from COPY/MOVE (SPEC: the per-user classifier "learns
//! from IMAP moves into and out of Junk").
//!
//! A message copied or moved into the `\Junk` folder is learnt as spam; one copied or moved
//! out of it into any folder but `\Trash` is learnt as ham (deleting spam says nothing about
//! it). The store is `ownmail_spam::STORE_FILE` in the root of the user's Maildir.
//!
//! Contract with `copy`: called only after the copy/move succeeded, with the destination's
//! messages as synced afterwards. Learning never fails the command: each error is logged
//! (`event=spam-learn-error`) and the rest go on.

use std::io::Read;

use ownmail_mailstore::{Folder, FolderName, MessageInfo, SpecialUse, Uid};
use ownmail_spam::{learn_many, Class, STORE_FILE};

use crate::session::User;

/// A message bigger than this is learnt from its first this many bytes (the classifier reads
/// no more than its first `ownmail_spam::MAX_SCAN` bytes anyway).
const MAX_READ: u64 = 8 * 1024 * 1024;
/// Messages are learnt in batches of about this many bytes: one store rewrite per batch, and
/// a bound on the memory a large MOVE takes.
const BATCH_BYTES: usize = 32 * 1024 * 1024;

/// Which way a copy from folder `from` to folder `to` (IMAP names) teaches, if at all.
pub(crate) fn class_for(from: &str, to: &str) -> Option<Class> {
    let role = |name: &str| FolderName::parse(name).ok().and_then(|n| n.special_use());
    match (role(from), role(to)) {
        (Some(SpecialUse::Junk), Some(SpecialUse::Junk)) => None,
        (_, Some(SpecialUse::Junk)) => Some(Class::Spam),
        (Some(SpecialUse::Junk), Some(SpecialUse::Trash)) => None,
        (Some(SpecialUse::Junk), _) => Some(Class::Ham),
        _ => None,
    }
}

/// Learns the messages `dest_uids` of folder `dest` (now listed in `messages`), copied or
/// moved there from folder `from`, when the move teaches anything.
pub(crate) fn after_copy(
    session: &str,
    user: &User,
    from: &str,
    dest: &Folder,
    messages: &[MessageInfo],
    dest_uids: &[Uid],
) {
    let Some(class) = class_for(from, dest.name()) else {
        return;
    };
    let what = match class {
        Class::Spam => "spam",
        Class::Ham => "ham",
    };
    let warn = |uid: Option<Uid>, e: &dyn std::fmt::Display| {
        let uid = uid.map_or_else(|| "-".to_string(), |u| u.0.to_string());
        tracing::warn!(
            "imap session={session} event=spam-learn-error user={:?} class={what} uid={uid} error=\"{e}\"",
            user.name
        );
    };
    let store = user.store.root().join(STORE_FILE);
    let mut learnt = 0usize;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut flush = |batch: &mut Vec<Vec<u8>>| {
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        match learn_many(&store, &refs, class, user.owner) {
            Ok(n) => learnt += n,
            Err(e) => warn(None, &e),
        }
        batch.clear();
    };
    for uid in dest_uids {
        let Some(m) = messages.iter().find(|m| m.uid == *uid) else {
            continue;
        };
        let mut bytes = Vec::new();
        let read = dest
            .open_message(m)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                f.take(MAX_READ)
                    .read_to_end(&mut bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = read {
            warn(Some(*uid), &e);
            continue;
        }
        batch_bytes += bytes.len();
        batch.push(bytes);
        if batch_bytes >= BATCH_BYTES {
            flush(&mut batch);
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch);
    }
    if learnt > 0 {
        tracing::info!(
            "imap session={session} event=spam-learn user={:?} class={what} folder={:?} messages={learnt}",
            user.name,
            dest.name()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_moves_teach_and_trash_does_not() {
        assert_eq!(class_for("INBOX", "Junk"), Some(Class::Spam));
        assert_eq!(class_for("Archive", "Junk"), Some(Class::Spam));
        assert_eq!(class_for("Junk", "INBOX"), Some(Class::Ham));
        assert_eq!(class_for("Junk", "Lists/rust"), Some(Class::Ham));
        assert_eq!(class_for("Junk", "Trash"), None);
        assert_eq!(class_for("Junk", "Junk"), None);
        assert_eq!(class_for("INBOX", "Archive"), None);
        assert_eq!(class_for("Trash", "INBOX"), None);
        assert_eq!(class_for("Lists/Junk", "INBOX"), None);
    }
}
