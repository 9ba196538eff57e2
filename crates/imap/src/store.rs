//! STORE and UID STORE (RFC 9051 §6.4.6): FLAGS, +FLAGS, -FLAGS, with .SILENT, and the
//! CONDSTORE `(UNCHANGEDSINCE n)` modifier with its `[MODIFIED set]` (RFC 7162 §3.1.3).

use std::sync::Arc;

use ownmail_imap_proto::{Code, Data, FetchValue, Flag, SequenceSet, StoreMode};
use ownmail_mailstore::{FlagChange, MessageInfo};

use crate::message;
use crate::session::{store_error, Session, Tagged};

/// What to do to the flags of the messages named.
pub(crate) struct StoreArgs<'a> {
    pub mode: StoreMode,
    pub silent: bool,
    pub flags: &'a [Flag],
    pub unchanged_since: Option<u64>,
}

pub(crate) fn store(s: &mut Session, uid: bool, set: &SequenceSet, args: StoreArgs) -> Tagged {
    let StoreArgs {
        mode,
        silent,
        flags,
        unchanged_since,
    } = args;
    let idxs = match s.resolve(set, uid) {
        Ok(i) => i,
        Err(t) => return t,
    };
    if unchanged_since.is_some() {
        s.condstore = true;
    }
    let condstore = s.condstore;
    let mut out = Vec::new();
    let mut modified = Vec::new();
    {
        let Some(sel) = s.selected.as_mut() else {
            return Tagged::bad("No mailbox selected");
        };
        if sel.read_only {
            return Tagged::no("Mailbox is read-only").code(Code::Cannot);
        }
        // Work out every new flag set first, then rename the files in one batch.
        let mut changes = Vec::new();
        let mut unchanged = Vec::new();
        for i in idxs {
            let Some(m) = sel.msgs.get(i).cloned() else {
                continue;
            };
            let mut f = match mode {
                StoreMode::Replace => message::from_imap_flags(flags),
                StoreMode::Add | StoreMode::Remove => m.flags.clone(),
            };
            if mode != StoreMode::Replace {
                for flag in flags {
                    message::apply_flag(&mut f, flag, mode == StoreMode::Add);
                }
            }
            // A conditional STORE tests every message, changing or not (RFC 7162 §3.1.3).
            if f == m.flags && unchanged_since.is_none() {
                unchanged.push((i, m));
            } else {
                changes.push((i, m, f));
            }
        }
        let batch: Vec<_> = changes
            .iter()
            .map(|(_, m, f)| (m.clone(), f.clone()))
            .collect();
        let updated = match sel.folder.set_flags_checked(&batch, unchanged_since) {
            Ok(u) => u,
            Err(e) => return store_error(e),
        };
        // Messages told about: (index, as now, whether its mod-sequence moved).
        let mut now: Vec<(usize, MessageInfo, bool)> =
            unchanged.into_iter().map(|(i, m)| (i, m, false)).collect();
        for ((i, old, _), u) in changes.into_iter().zip(updated) {
            match u {
                FlagChange::Done(u) => {
                    if let Some(slot) = Arc::make_mut(&mut sel.msgs).get_mut(i) {
                        *slot = u.clone();
                    }
                    let moved = u.modseq != old.modseq;
                    now.push((i, u, moved));
                }
                // Changed by someone else after the client's mod-sequence: left alone; the
                // refresh after the command announces its flags.
                FlagChange::Modified(_) => {
                    modified.push(if uid {
                        old.uid.0
                    } else {
                        u32::try_from(i + 1).unwrap_or(u32::MAX)
                    });
                }
                // Expunged by another session meanwhile; its EXPUNGE comes later.
                FlagChange::Gone => {}
            }
        }
        now.sort_by_key(|(i, _, _)| *i);
        for (i, m, moved) in now {
            // RFC 7162 §3.1.3: with CONDSTORE, a changed message is reported with its new
            // MODSEQ even under .SILENT.
            if silent && !(condstore && moved) {
                continue;
            }
            let mut items = Vec::new();
            if !silent {
                items.push(FetchValue::Flags(message::to_imap_flags(&m.flags)));
            }
            if uid {
                items.push(FetchValue::Uid(m.uid.0));
            }
            if condstore {
                items.push(FetchValue::ModSeq(m.modseq));
            }
            out.push(Data::Fetch {
                seq: u32::try_from(i + 1).unwrap_or(u32::MAX),
                items,
            });
        }
    }
    for d in out {
        s.data(d);
    }
    modified.sort_unstable();
    match SequenceSet::from_numbers(&modified) {
        Some(set) => Tagged::ok("Conditional STORE failed").code(Code::Modified(set)),
        None => Tagged::ok("STORE completed"),
    }
}
