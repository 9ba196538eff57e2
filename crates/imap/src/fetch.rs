//! FETCH and UID FETCH (RFC 9051 §6.4.5, RFC 3501 §6.4.5): FLAGS, UID, RFC822.SIZE,
//! INTERNALDATE, RFC822, RFC822.HEADER, RFC822.TEXT, ENVELOPE, BODY, BODYSTRUCTURE,
//! BODY[section]<partial> and BODY.PEEK of the message or of any part (HEADER,
//! HEADER.FIELDS[.NOT], TEXT, MIME), BINARY[part]<partial>, BINARY.PEEK and BINARY.SIZE
//! (RFC 3516), MODSEQ and the `(CHANGEDSINCE n [VANISHED])` modifier (RFC 7162 §3.1.4,
//! §3.2.6).
//!
//! Messages are read whole (the literal limit bounds what was stored) and sent with CRLF
//! line endings whatever the file holds, so every size and offset agrees with RFC822.SIZE
//! (the `,W=` size) and with what Dovecot sends. The MIME structure ([`crate::mime`]) is
//! parsed only for the items that need it. Each message's items are all computed before it
//! is marked `\Seen`, so a BINARY that fails (`NO [UNKNOWN-CTE]`) leaves it unseen.

use std::borrow::Cow;
use std::io::Read;
use std::sync::Arc;

use ownmail_imap_proto::{
    Code, Data, FetchAttr, FetchValue, Partial, Section, SectionText, SequenceSet,
};
use ownmail_mailstore::{Folder, MessageInfo, StoreError};

use crate::message;
use crate::mime::{self, Kind, Part};
use crate::session::{store_error, Session, Tagged};

fn needs_body(a: &FetchAttr) -> bool {
    !matches!(
        a,
        FetchAttr::Flags
            | FetchAttr::Uid
            | FetchAttr::InternalDate
            | FetchAttr::Rfc822Size
            | FetchAttr::ModSeq
    )
}

/// Items that need the MIME structure, not just the header/body split.
fn needs_mime(a: &FetchAttr) -> bool {
    match a {
        FetchAttr::Body | FetchAttr::BodyStructure => true,
        FetchAttr::BodySection { section, .. } => !section.part.is_empty(),
        FetchAttr::Binary { part, .. } | FetchAttr::BinarySize { part } => !part.is_empty(),
        _ => false,
    }
}

/// Items that set `\Seen` (RFC 9051 §6.4.5, RFC 3516 §4.2).
fn sets_seen(a: &FetchAttr) -> bool {
    matches!(
        a,
        FetchAttr::Rfc822
            | FetchAttr::Rfc822Text
            | FetchAttr::BodySection { peek: false, .. }
            | FetchAttr::Binary { peek: false, .. }
    )
}

/// A BINARY of a part whose Content-Transfer-Encoding we cannot undo (RFC 3516 §4.3).
struct UnknownCte;

/// IMAP literals may not carry NUL (RFC 3501 §9 CHAR8): send 0x80 instead, as Dovecot does.
/// BINARY, whose literal8 may, keeps them.
fn no_nuls(mut data: Vec<u8>) -> Vec<u8> {
    for b in &mut data {
        if *b == 0 {
            *b = 0x80;
        }
    }
    data
}

fn slice<'m>(msg: &'m [u8], r: &std::ops::Range<usize>) -> &'m [u8] {
    msg.get(r.clone()).unwrap_or_default()
}

/// The bytes a BODY[section] names, `None` (NIL) when there is no such part, or when
/// HEADER/TEXT name a part that is not a message/rfc822 (RFC 3501 §6.4.5).
fn section_bytes(msg: &[u8], tree: Option<&Part>, section: &Section) -> Option<Vec<u8>> {
    if section.part.is_empty() {
        return Some(match &section.text {
            None => msg.to_vec(),
            Some(SectionText::Header) => message::header(msg).to_vec(),
            Some(SectionText::Text) => message::text(msg).to_vec(),
            Some(SectionText::HeaderFields(names)) => message::header_fields(msg, names, false),
            Some(SectionText::HeaderFieldsNot(names)) => message::header_fields(msg, names, true),
            Some(SectionText::Mime) => return None,
        });
    }
    let part = mime::find(tree?, &section.part)?;
    let text = match &section.text {
        None => return Some(slice(msg, &part.body).to_vec()),
        Some(SectionText::Mime) => return Some(slice(msg, &part.header).to_vec()),
        Some(t) => t,
    };
    // HEADER, HEADER.FIELDS[.NOT] and TEXT of a message/rfc822 part are those of the
    // encapsulated message.
    let Kind::Message(inner) = &part.kind else {
        return None;
    };
    let header = slice(msg, &inner.header);
    Some(match text {
        SectionText::Header => header.to_vec(),
        SectionText::Text => slice(msg, &inner.body).to_vec(),
        SectionText::HeaderFields(names) => message::header_fields(header, names, false),
        SectionText::HeaderFieldsNot(names) => message::header_fields(header, names, true),
        SectionText::Mime => return None,
    })
}

/// BINARY[part] (RFC 3516 §4.2): the part's body with its transfer encoding undone; the
/// whole message, as it is, for an empty part; `None` (NIL) when there is no such part.
fn binary_bytes(
    msg: &[u8],
    tree: Option<&Part>,
    part: &[u32],
) -> Result<Option<Vec<u8>>, UnknownCte> {
    if part.is_empty() {
        return Ok(Some(msg.to_vec()));
    }
    let Some(p) = tree.and_then(|t| mime::find(t, part)) else {
        return Ok(None);
    };
    mime::decode(p.content.encoding.as_deref(), slice(msg, &p.body))
        .map(Some)
        .ok_or(UnknownCte)
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

fn dotted(part: &[u32]) -> String {
    part.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// What one message offers to the items.
struct Source<'a> {
    m: &'a MessageInfo,
    folder: &'a Folder,
    /// The message with CRLF line endings, when an item needed it.
    body: Option<&'a [u8]>,
    tree: Option<&'a Part>,
}

/// One item's value; `None` for FLAGS, which is filled in once `\Seen` is settled.
fn value(a: &FetchAttr, src: &Source) -> Result<Option<FetchValue>, UnknownCte> {
    let msg = src.body.unwrap_or_default();
    Ok(Some(match a {
        // Filled in once `\Seen` is settled: both may change.
        FetchAttr::Flags | FetchAttr::ModSeq => return Ok(None),
        FetchAttr::Uid => FetchValue::Uid(src.m.uid.0),
        FetchAttr::Rfc822Size => FetchValue::Rfc822Size(
            src.body
                .map_or(src.m.vsize.or(src.m.size).unwrap_or(0), |b| b.len() as u64),
        ),
        FetchAttr::InternalDate => {
            let t = src
                .folder
                .internal_date(src.m)
                .unwrap_or(std::time::UNIX_EPOCH);
            FetchValue::InternalDate(message::to_datetime(t))
        }
        FetchAttr::Rfc822 => FetchValue::Rfc822(src.body.map(|b| no_nuls(b.to_vec()))),
        FetchAttr::Rfc822Header => {
            FetchValue::Rfc822Header(src.body.map(|b| no_nuls(message::header(b).to_vec())))
        }
        FetchAttr::Rfc822Text => {
            FetchValue::Rfc822Text(src.body.map(|b| no_nuls(message::text(b).to_vec())))
        }
        FetchAttr::Envelope => {
            FetchValue::Envelope(Box::new(message::envelope(message::header(msg))))
        }
        FetchAttr::Body | FetchAttr::BodyStructure => {
            let extensible = matches!(a, FetchAttr::BodyStructure);
            let owned;
            let tree = match src.tree {
                Some(t) => t,
                None => {
                    owned = mime::parse(msg);
                    &owned
                }
            };
            FetchValue::Raw {
                name: if extensible { "BODYSTRUCTURE" } else { "BODY" }.to_string(),
                value: mime::structure(msg, tree).encode(extensible),
            }
        }
        FetchAttr::BodySection {
            section,
            partial: p,
            ..
        } => {
            let data = src.body.and_then(|b| section_bytes(b, src.tree, section));
            let (origin, data) = match data {
                Some(d) => {
                    let (o, d) = partial(no_nuls(d), *p);
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
        FetchAttr::Binary {
            part, partial: p, ..
        } => match (binary_bytes(msg, src.tree, part)?, p) {
            (Some(data), Some(p)) => {
                // FetchValue::Binary has no origin: write `BINARY[part]<origin> ~{n}` here.
                let (origin, data) = partial(data, Some(*p));
                let mut value = format!("~{{{}}}\r\n", data.len()).into_bytes();
                value.extend_from_slice(&data);
                FetchValue::Raw {
                    name: format!("BINARY[{}]<{}>", dotted(part), origin.unwrap_or(0)),
                    value,
                }
            }
            (data, _) => FetchValue::Binary {
                part: part.clone(),
                data,
            },
        },
        FetchAttr::BinarySize { part } => FetchValue::BinarySize {
            part: part.clone(),
            size: binary_bytes(msg, src.tree, part)?.map_or(0, |d| d.len() as u64),
        },
    }))
}

pub(crate) fn fetch(
    s: &mut Session,
    uid: bool,
    set: &SequenceSet,
    items: &[FetchAttr],
    changed_since: Option<u64>,
    vanished: bool,
) -> Tagged {
    // RFC 7162 §3.2.6: VANISHED only once QRESYNC is enabled.
    if vanished && !s.qresync {
        return Tagged::bad("VANISHED needs ENABLE QRESYNC");
    }
    let mut idxs = match s.resolve(set, uid) {
        Ok(i) => i,
        Err(t) => return t,
    };
    let mut items = items.to_vec();
    if uid && !items.contains(&FetchAttr::Uid) {
        items.insert(0, FetchAttr::Uid);
    }
    // RFC 7162 §3.1.4.1: MODSEQ and CHANGEDSINCE enable CONDSTORE; CHANGEDSINCE implies MODSEQ.
    if changed_since.is_some() && !items.contains(&FetchAttr::ModSeq) {
        items.push(FetchAttr::ModSeq);
    }
    if items.contains(&FetchAttr::ModSeq) {
        s.condstore = true;
    }
    if let (Some(since), Some(sel)) = (changed_since, s.selected.as_ref()) {
        idxs.retain(|&i| sel.msgs.get(i).is_some_and(|m| m.modseq > since));
        if vanished {
            // `*` in the set stands for the last UID ever given, so `300:*` also covers
            // UIDs expunged above the last message still here.
            if let Some(uids) =
                crate::qresync::vanished(&sel.folder, since, &sel.msgs, sel.uid_next, Some(set))
            {
                s.data(Data::Vanished {
                    earlier: true,
                    uids,
                });
            }
        }
    }
    let condstore = s.condstore;
    let want_body = items.iter().any(needs_body);
    let want_mime = items.iter().any(needs_mime);
    let mark_seen = items.iter().any(sets_seen);
    let mut out = Vec::new();
    let mut missing = false;
    let mut failed = None;
    {
        let Some(sel) = s.selected.as_mut() else {
            return Tagged::bad("No mailbox selected");
        };
        let wants_size = items.contains(&FetchAttr::Rfc822Size);
        // Per message: its index, itself, and the item values (FLAGS left for later).
        let mut answers: Vec<(usize, MessageInfo, Vec<Option<FetchValue>>)> = Vec::new();
        // CRLF sizes learnt by reading files whose names do not carry them.
        let mut learnt = Vec::new();
        for i in idxs {
            let Some(mut m) = sel.msgs.get(i).cloned() else {
                continue;
            };
            let body = if want_body || (m.vsize.is_none() && wants_size) {
                match read_message(&sel.folder, &mut m) {
                    Ok(b) => {
                        if m.vsize.is_none() {
                            m.vsize = Some(b.len() as u64);
                            learnt.push((m.uid, b.len() as u64));
                        }
                        let stale = sel.msgs.get(i).is_some_and(|x| {
                            x.file_name != m.file_name || x.in_new != m.in_new || x.vsize != m.vsize
                        });
                        if stale {
                            if let Some(slot) = Arc::make_mut(&mut sel.msgs).get_mut(i) {
                                slot.file_name.clone_from(&m.file_name);
                                slot.in_new = m.in_new;
                                slot.vsize = m.vsize;
                            }
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
            let tree = match (&body, want_mime) {
                (Some(b), true) => Some(mime::parse(b)),
                _ => None,
            };
            let src = Source {
                m: &m,
                folder: &sel.folder,
                body: body.as_deref(),
                tree: tree.as_ref(),
            };
            let values: Result<Vec<_>, UnknownCte> = items.iter().map(|a| value(a, &src)).collect();
            let Ok(values) = values else {
                failed = Some(
                    Tagged::no("Unknown Content-Transfer-Encoding")
                        .code(Code::Other("UNKNOWN-CTE".into())),
                );
                break;
            };
            answers.push((i, m, values));
        }
        if let Err(e) = sel.folder.remember_vsizes(&learnt) {
            tracing::debug!("imap event=vsize-cache-error error=\"{e}\"");
        }
        // `\Seen` for every message that gets it, in one batch of renames.
        let mut seen_now = vec![false; answers.len()];
        if mark_seen && !sel.read_only {
            let (pos, batch): (Vec<usize>, Vec<_>) = answers
                .iter()
                .enumerate()
                .filter(|(_, (_, m, _))| !m.flags.seen)
                .map(|(k, (_, m, _))| {
                    let mut f = m.flags.clone();
                    f.seen = true;
                    (k, (m.clone(), f))
                })
                .unzip();
            let updated = match sel.folder.set_flags_many(&batch) {
                Ok(u) => u,
                Err(e) => return store_error(e),
            };
            for (k, u) in pos.into_iter().zip(updated) {
                // None: expunged meanwhile; its EXPUNGE is announced later.
                let (Some(u), Some((i, m, _))) = (u, answers.get_mut(k)) else {
                    continue;
                };
                if let Some(slot) = Arc::make_mut(&mut sel.msgs).get_mut(*i) {
                    *slot = u.clone();
                }
                *m = u;
                if let Some(flag) = seen_now.get_mut(k) {
                    *flag = true;
                }
            }
        }
        for ((i, m, values), flags_changed) in answers.into_iter().zip(seen_now) {
            let mut values: Vec<FetchValue> = items
                .iter()
                .zip(values)
                .filter_map(|(a, v)| match a {
                    FetchAttr::Flags => Some(FetchValue::Flags(message::to_imap_flags(&m.flags))),
                    FetchAttr::ModSeq => Some(FetchValue::ModSeq(m.modseq)),
                    _ => v,
                })
                .collect();
            if flags_changed && !items.contains(&FetchAttr::Flags) {
                values.push(FetchValue::Flags(message::to_imap_flags(&m.flags)));
            }
            // RFC 7162 §3.1.4: a flag change we report carries its MODSEQ.
            if flags_changed && condstore && !items.contains(&FetchAttr::ModSeq) {
                values.push(FetchValue::ModSeq(m.modseq));
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
    if let Some(t) = failed {
        // RFC 3516 §4.3: the request fails; the messages answered before stand.
        t
    } else if missing {
        // RFC 9051 §7.1: some of the messages were expunged by another session.
        Tagged::no("Some messages were expunged meanwhile")
            .code(Code::Other("EXPUNGEISSUED".into()))
    } else {
        Tagged::ok("FETCH completed")
    }
}

/// The message as IMAP sends it: every bare LF written CRLF (Maildir files hold LF).
fn with_crlf(b: Vec<u8>) -> Vec<u8> {
    let converted = match ownmail_mailstore::to_crlf(&b) {
        Cow::Owned(v) => Some(v),
        Cow::Borrowed(_) => None,
    };
    converted.unwrap_or(b)
}

/// The message's bytes. Messages are read whole; the literal limit bounds what was stored.
fn read(folder: &Folder, m: &MessageInfo) -> Result<Vec<u8>, StoreError> {
    let mut f = folder.open_message(m)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| StoreError::Io {
        path: folder.message_path(m),
        source: e,
    })?;
    Ok(buf)
}

/// The message's bytes with CRLF line endings, following it if another session renamed it (new flags, or moved
/// from `new/` to `cur/`) since our last sync. Updates `m`'s file name, not its flags: those
/// changes are announced by the session's refresh.
pub(crate) fn read_message(folder: &Folder, m: &mut MessageInfo) -> Result<Vec<u8>, StoreError> {
    read_following(folder, m).map(with_crlf)
}

fn read_following(folder: &Folder, m: &mut MessageInfo) -> Result<Vec<u8>, StoreError> {
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
