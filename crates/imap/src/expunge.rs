//! EXPUNGE and UID EXPUNGE (RFC 9051 §6.4.3, RFC 4315 §2.1). The EXPUNGE responses come
//! from the session's refresh, which compares the folder with what the client was told.

use ownmail_imap_proto::SequenceSet;
use ownmail_mailstore::Uid;

use crate::session::{store_error, Session, Tagged};

pub(crate) fn expunge(s: &mut Session, uids: Option<&SequenceSet>) -> Tagged {
    let Some(sel) = s.selected.as_ref() else {
        return Tagged::bad("No mailbox selected");
    };
    if sel.read_only {
        return Tagged::no("Mailbox is read-only").code(ownmail_imap_proto::Code::Cannot);
    }
    let r = match uids {
        None => sel.folder.expunge(),
        Some(set) => {
            let largest = sel.msgs.last().map_or(0, |m| m.uid.0);
            let picked: Vec<Uid> = sel
                .msgs
                .iter()
                .filter(|m| set.contains(m.uid.0, largest))
                .map(|m| m.uid)
                .collect();
            sel.folder.expunge_uids(&picked)
        }
    };
    match r {
        Ok(_) => Tagged::ok("EXPUNGE completed"),
        Err(e) => store_error(e),
    }
}
