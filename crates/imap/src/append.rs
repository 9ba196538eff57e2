//! APPEND (RFC 9051 §6.3.12) with APPENDUID (RFC 4315 §3).

use ownmail_imap_proto::{Code, DateTime, Flag, Mailbox, SequenceSet};
use ownmail_mailstore::StoreError;

use crate::message;
use crate::session::{folder_name, store_error, Session, Tagged};

pub(crate) fn append(
    s: &mut Session,
    mb: &Mailbox,
    flags: &[Flag],
    date: Option<DateTime>,
    bytes: &[u8],
) -> Tagged {
    let name = match folder_name(mb) {
        Ok(n) => n,
        Err(t) => return t,
    };
    if bytes.len() as u64 > s.ctx.max_message {
        return Tagged::no("Message too large").code(Code::TooBig);
    }
    let folder = match s.user().map(|u| u.store.folder(&name)) {
        Ok(Ok(f)) => f,
        Ok(Err(StoreError::NotFound(_))) => {
            return Tagged::no("No such mailbox").code(Code::TryCreate)
        }
        Ok(Err(e)) => return store_error(e),
        Err(t) => return t,
    };
    let f = message::from_imap_flags(flags);
    // Stored with LF line endings like delivered mail; sent back with CRLF.
    let stored = ownmail_mailstore::from_crlf(bytes);
    let uid = match folder.append(&stored, &f, date.as_ref().map(message::from_datetime)) {
        Ok(u) => u,
        Err(e) => return store_error(e),
    };
    let validity = match folder.sync() {
        Ok(st) => st.uid_validity.0,
        Err(e) => return store_error(e),
    };
    match SequenceSet::single(uid.0) {
        Some(uids) => Tagged::ok("APPEND completed").code(Code::AppendUid {
            uid_validity: validity,
            uids,
        }),
        None => Tagged::ok("APPEND completed"),
    }
}
