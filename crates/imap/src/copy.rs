//! COPY, MOVE and their UID forms (RFC 9051 §6.4.7–6.4.8, RFC 6851), answering COPYUID
//! (RFC 4315 §3).

use ownmail_imap_proto::{Code, Mailbox, Response, SequenceSet, Status};
use ownmail_mailstore::{StoreError, Uid};

use crate::session::{folder_name, store_error, Session, Tagged};

pub(crate) fn copy(
    s: &mut Session,
    uid: bool,
    set: &SequenceSet,
    mb: &Mailbox,
    is_move: bool,
) -> Tagged {
    let name = match folder_name(mb) {
        Ok(n) => n,
        Err(t) => return t,
    };
    let idxs = match s.resolve(set, uid) {
        Ok(i) => i,
        Err(t) => return t,
    };
    let dest = match s.user().map(|u| u.store.folder(&name)) {
        Ok(Ok(f)) => f,
        Ok(Err(StoreError::NotFound(_))) => {
            return Tagged::no("No such mailbox").code(Code::TryCreate)
        }
        Ok(Err(e)) => return store_error(e),
        Err(t) => return t,
    };
    let Some(sel) = s.selected.as_ref() else {
        return Tagged::bad("No mailbox selected");
    };
    if is_move && sel.read_only {
        return Tagged::no("Mailbox is read-only").code(Code::Cannot);
    }
    let uids: Vec<Uid> = idxs
        .iter()
        .filter_map(|&i| sel.msgs.get(i).map(|m| m.uid))
        .collect();
    let r = if is_move {
        sel.folder.move_to(&uids, &dest)
    } else {
        sel.folder.copy_to(&uids, &dest)
    };
    let pairs = match r {
        Ok(p) => p,
        Err(e) => return store_error(e),
    };
    let state = match dest.sync() {
        Ok(st) => st,
        Err(e) => return store_error(e),
    };
    let validity = state.uid_validity.0;
    let dest_uids: Vec<Uid> = pairs.iter().map(|(_, b)| *b).collect();
    if let Some(user) = s.user.as_ref() {
        // Into or out of Junk: train the classifier. Never fails the command.
        crate::learn::after_copy(
            &s.id,
            user,
            sel.folder.name(),
            &dest,
            &state.messages,
            &dest_uids,
        );
    }
    let src: Vec<u32> = pairs.iter().map(|(a, _)| a.0).collect();
    let dst: Vec<u32> = pairs.iter().map(|(_, b)| b.0).collect();
    // COPYUID lists both sides in the same order; SequenceSet::from_numbers sorts, which
    // keeps the pairing because the store hands out destination UIDs in source order.
    let code = match (
        SequenceSet::from_numbers(&src),
        SequenceSet::from_numbers(&dst),
    ) {
        (Some(source), Some(dest)) => Some(Code::CopyUid {
            uid_validity: validity,
            source,
            dest,
        }),
        _ => None,
    };
    let verb = if is_move { "MOVE" } else { "COPY" };
    match (is_move, code) {
        // RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
        (true, Some(code)) => {
            s.send(Response::Untagged {
                status: Status::Ok,
                code: Some(code),
                text: "Moved".into(),
            });
            Tagged::ok(format!("{verb} completed"))
        }
        (false, Some(code)) => Tagged::ok(format!("{verb} completed")).code(code),
        (_, None) => Tagged::ok(format!("{verb} completed")),
    }
}
