//! SELECT, EXAMINE, CLOSE and UNSELECT (RFC 9051 §6.3.2, §6.4.1, RFC 3691), with the
//! CONDSTORE and QRESYNC parameters (RFC 7162 §3.1.8, §3.2.5).

use ownmail_imap_proto::{Code, Data, Flag, Mailbox, Response, SelectParam, Status};

use crate::session::{folder_name, store_error, Selected, Session, Tagged};

const SYSTEM_FLAGS: [Flag; 5] = [
    Flag::Answered,
    Flag::Flagged,
    Flag::Deleted,
    Flag::Seen,
    Flag::Draft,
];

fn untagged(s: &mut Session, code: Code, text: &str) {
    s.send(Response::Untagged {
        status: Status::Ok,
        code: Some(code),
        text: text.to_string(),
    });
}

pub(crate) fn select(
    s: &mut Session,
    mb: &Mailbox,
    read_only: bool,
    params: &[SelectParam],
) -> Tagged {
    let mut resync = None;
    for p in params {
        match p {
            SelectParam::CondStore => s.condstore = true,
            // RFC 7162 §3.2.5: QRESYNC without ENABLE QRESYNC first is a BAD.
            SelectParam::QResync { .. } if !s.qresync => {
                return Tagged::bad("QRESYNC is not enabled")
            }
            SelectParam::QResync { .. } => resync = Some(p),
        }
    }
    // RFC 9051 §6.3.2: a failed SELECT leaves no mailbox selected.
    if s.selected.take().is_some() {
        untagged(s, Code::Closed, "Previous mailbox closed");
    }
    let name = match folder_name(mb) {
        Ok(n) => n,
        Err(t) => return t,
    };
    let user = match s.user() {
        Ok(u) => u,
        Err(t) => return t,
    };
    let folder = match user.store.folder(&name) {
        Ok(f) => f,
        Err(e) => return store_error(e),
    };
    // Shared with the other sessions that have this folder selected, while nobody changes it.
    let state = match crate::snapshot::current(&folder) {
        Ok(st) => st,
        Err(e) => return store_error(e),
    };
    let mut flags = SYSTEM_FLAGS.to_vec();
    let mut keywords: Vec<String> = state
        .messages
        .iter()
        .flat_map(|m| m.flags.keywords.iter().cloned())
        .collect();
    keywords.sort();
    keywords.dedup();
    flags.extend(keywords.into_iter().map(Flag::Keyword));
    let count = u32::try_from(state.messages.len()).unwrap_or(u32::MAX);
    s.data(Data::Flags(flags.clone()));
    s.data(Data::Exists(count));
    if !s.rev2 {
        s.data(Data::Recent(0));
    }
    if let Some(pos) = state.messages.iter().position(|m| !m.flags.seen) {
        if !s.rev2 {
            let first = u32::try_from(pos + 1).unwrap_or(u32::MAX);
            untagged(s, Code::Unseen(first), "First unseen");
        }
    }
    untagged(s, Code::UidValidity(state.uid_validity), "UIDs valid");
    untagged(s, Code::UidNext(state.uid_next), "Predicted next UID");
    let permanent = if read_only { Vec::new() } else { flags };
    untagged(
        s,
        Code::PermanentFlags {
            flags: permanent,
            new_keywords: !read_only,
        },
        "Limited",
    );
    // RFC 7162 §3.1.2.1: a server with persistent mod-sequences says HIGHESTMODSEQ on every
    // successful SELECT/EXAMINE, CONDSTORE enabled or not.
    untagged(s, Code::HighestModSeq(state.highest_modseq), "Highest");
    // RFC 7162 §3.2.5.1: with a matching UIDVALIDITY, what changed since the client's
    // mod-sequence — the UIDs expunged, then the flags that changed (only among the UIDs it
    // says it knows, when it says so). The sequence-match data is not needed: expunges are
    // remembered, and a client older than that memory is told every UID not present.
    if let Some(SelectParam::QResync {
        uid_validity,
        modseq,
        known_uids,
        ..
    }) = resync
    {
        if *uid_validity == state.uid_validity {
            let largest = state.messages.last().map_or(0, |m| m.uid.0);
            if let Some(uids) = crate::qresync::vanished(
                &folder,
                *modseq,
                &state.messages,
                state.uid_next,
                known_uids.as_ref(),
            ) {
                s.data(Data::Vanished {
                    earlier: true,
                    uids,
                });
            }
            for (i, m) in state.messages.iter().enumerate() {
                let known = known_uids
                    .as_ref()
                    .is_none_or(|k| k.contains(m.uid.0, largest));
                if m.modseq > *modseq && known {
                    s.data(crate::qresync::flags_fetch(i, m));
                }
            }
        }
    }
    s.selected = Some(Selected {
        folder,
        read_only,
        uid_next: state.uid_next,
        msgs: state.messages,
    });
    if read_only {
        Tagged::ok("EXAMINE completed").code(Code::ReadOnly)
    } else {
        Tagged::ok("SELECT completed").code(Code::ReadWrite)
    }
}

/// CLOSE: expunges silently (when read-write), then deselects.
pub(crate) fn close(s: &mut Session) -> Tagged {
    if let Some(sel) = s.selected.take() {
        if !sel.read_only {
            if let Err(e) = sel.folder.expunge() {
                return store_error(e);
            }
        }
    }
    Tagged::ok("CLOSE completed")
}

pub(crate) fn unselect(s: &mut Session) -> Tagged {
    s.selected = None;
    Tagged::ok("UNSELECT completed")
}
