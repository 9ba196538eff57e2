//! FETCH and UID FETCH (RFC 9051 §6.4.5). Supported: FLAGS, UID, RFC822.SIZE, INTERNALDATE,
//! RFC822, RFC822.HEADER, RFC822.TEXT and BODY[…]/BODY.PEEK[…] of the whole message
//! (HEADER, TEXT, HEADER.FIELDS, HEADER.FIELDS.NOT, partial). ENVELOPE, BODYSTRUCTURE, BODY,
//! BINARY and MODSEQ are refused with BAD for now; part numbers give NIL.

use std::io::Read;

use ownmail_imap_proto::{Data, FetchAttr, FetchValue, Partial, Section, SectionText, SequenceSet};
use ownmail_mailstore::{MessageInfo, StoreError};

use crate::message;
use crate::session::{store_error, Session, Tagged};

fn unsupported(a: &FetchAttr) -> bool {
    matches!(
        a,
        FetchAttr::Envelope
            | FetchAttr::Body
            | FetchAttr::BodyStructure
            | FetchAttr::ModSeq
            | FetchAttr::Binary { .. }
            | FetchAttr::BinarySize { .. }
    )
}

fn needs_body(a: &FetchAttr) -> bool {
    matches!(
        a,
        FetchAttr::Rfc822
            | FetchAttr::Rfc822Header
            | FetchAttr::Rfc822Text
            | FetchAttr::BodySection { .. }
    )
}

/// Items that set `\Seen` (RFC 9051 §6.4.5).
fn sets_seen(a: &FetchAttr) -> bool {
    matches!(
        a,
        FetchAttr::Rfc822 | FetchAttr::Rfc822Text | FetchAttr::BodySection { peek: false, .. }
    )
}

fn section_bytes(msg: &[u8], section: &Section) -> Option<Vec<u8>> {
    if !section.part.is_empty() {
        return None;
    }
    Some(match &section.text {
        None => msg.to_vec(),
        Some(SectionText::Header) => message::header(msg).to_vec(),
        Some(SectionText::Text) => message::text(msg).to_vec(),
        Some(SectionText::HeaderFields(names)) => message::header_fields(msg, names, false),
        Some(SectionText::HeaderFieldsNot(names)) => message::header_fields(msg, names, true),
        Some(SectionText::Mime) => return None,
    })
}

fn partial(data: Vec<u8>, p: Option<Partial>) -> (Option<u32>, Vec<u8>) {
    match p {
        None => (None, data),
        Some(p) => {
            let start = (p.offset as usize).min(data.len());
            let end = start.saturating_add(p.length as usize).min(data.len());
            (
                Some(p.offset),
                data.get(start..end).map(<[u8]>::to_vec).unwrap_or_default(),
            )
        }
    }
}

pub(crate) fn fetch(s: &mut Session, uid: bool, set: &SequenceSet, items: &[FetchAttr]) -> Tagged {
    if items.iter().any(unsupported) {
        return Tagged::bad("ENVELOPE, BODYSTRUCTURE, BINARY and MODSEQ are not supported yet");
    }
    let idxs = match s.resolve(set, uid) {
        Ok(i) => i,
        Err(t) => return t,
    };
    let mut items = items.to_vec();
    if uid && !items.contains(&FetchAttr::Uid) {
        items.insert(0, FetchAttr::Uid);
    }
    let want_body = items.iter().any(needs_body);
    let mark_seen = items.iter().any(sets_seen);
    let mut out = Vec::new();
    let mut missing = false;
    {
        let Some(sel) = s.selected.as_mut() else {
            return Tagged::bad("No mailbox selected");
        };
        for i in idxs {
            let Some(mut m) = sel.msgs.get(i).cloned() else {
                continue;
            };
            let body = if want_body || (m.size.is_none() && items.contains(&FetchAttr::Rfc822Size))
            {
                match read_message(&sel.folder, &mut m) {
                    Ok(b) => {
                        if let Some(slot) = sel.msgs.get_mut(i) {
                            slot.file_name.clone_from(&m.file_name);
                            slot.in_new = m.in_new;
                        }
                        Some(b)
                    }
                    Err(StoreError::NoSuchMessage(_)) => {
                        missing = true;
                        continue;
                    }
                    Err(e) => return store_error(e),
                }
            } else {
                None
            };
            let mut flags_changed = false;
            if mark_seen && !sel.read_only && !m.flags.seen {
                let mut f = m.flags.clone();
                f.seen = true;
                match sel.folder.set_flags(m.uid, &f) {
                    Ok(updated) => {
                        m = updated;
                        if let Some(slot) = sel.msgs.get_mut(i) {
                            *slot = m.clone();
                        }
                        flags_changed = true;
                    }
                    Err(StoreError::NoSuchMessage(_)) => {}
                    Err(e) => return store_error(e),
                }
            }
            let mut values = Vec::new();
            for a in &items {
                let v = match a {
                    FetchAttr::Flags => FetchValue::Flags(message::to_imap_flags(&m.flags)),
                    FetchAttr::Uid => FetchValue::Uid(m.uid.0),
                    FetchAttr::Rfc822Size => FetchValue::Rfc822Size(
                        body.as_ref()
                            .map_or(m.size.unwrap_or(0), |b| b.len() as u64),
                    ),
                    FetchAttr::InternalDate => match sel.folder.internal_date(&m) {
                        Ok(t) => FetchValue::InternalDate(message::to_datetime(t)),
                        Err(_) => {
                            FetchValue::InternalDate(message::to_datetime(std::time::UNIX_EPOCH))
                        }
                    },
                    FetchAttr::Rfc822 => FetchValue::Rfc822(body.clone()),
                    FetchAttr::Rfc822Header => FetchValue::Rfc822Header(
                        body.as_deref().map(|b| message::header(b).to_vec()),
                    ),
                    FetchAttr::Rfc822Text => {
                        FetchValue::Rfc822Text(body.as_deref().map(|b| message::text(b).to_vec()))
                    }
                    FetchAttr::BodySection {
                        section,
                        partial: p,
                        ..
                    } => {
                        let data = body.as_deref().and_then(|b| section_bytes(b, section));
                        let (origin, data) = match data {
                            Some(d) => {
                                let (o, d) = partial(d, *p);
                                (o, Some(d))
                            }
                            None => (p.map(|p| p.offset), None),
                        };
                        FetchValue::BodySection {
                            section: section.clone(),
                            origin,
                            data,
                        }
                    }
                    _ => continue,
                };
                values.push(v);
            }
            if flags_changed && !items.contains(&FetchAttr::Flags) {
                values.push(FetchValue::Flags(message::to_imap_flags(&m.flags)));
            }
            out.push(Data::Fetch {
                seq: u32::try_from(i + 1).unwrap_or(u32::MAX),
                items: values,
            });
        }
    }
    for d in out {
        s.data(d);
    }
    if missing {
        // RFC 9051 §7.1: some of the messages were expunged by another session.
        Tagged::no("Some messages were expunged meanwhile")
            .code(ownmail_imap_proto::Code::Other("EXPUNGEISSUED".into()))
    } else {
        Tagged::ok("FETCH completed")
    }
}

/// The message's bytes. Messages are read whole; the literal limit bounds what was stored.
fn read(folder: &ownmail_mailstore::Folder, m: &MessageInfo) -> Result<Vec<u8>, StoreError> {
    let mut f = folder.open_message(m)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| StoreError::Io {
        path: folder.message_path(m),
        source: e,
    })?;
    Ok(buf)
}

/// The message's bytes, following it if another session renamed it (new flags, or moved
/// from `new/` to `cur/`) since our last sync. Updates `m`'s file name, not its flags: those
/// changes are announced by the session's refresh.
pub(crate) fn read_message(
    folder: &ownmail_mailstore::Folder,
    m: &mut MessageInfo,
) -> Result<Vec<u8>, StoreError> {
    match read(folder, m) {
        Err(StoreError::NoSuchMessage(uid)) => {
            let now = folder.sync()?;
            let found = now
                .messages
                .into_iter()
                .find(|x| x.uid == uid)
                .ok_or(StoreError::NoSuchMessage(uid))?;
            m.file_name = found.file_name;
            m.in_new = found.in_new;
            read(folder, m)
        }
        r => r,
    }
}
