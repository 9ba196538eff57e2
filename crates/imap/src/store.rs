//! STORE and UID STORE (RFC 9051 §6.4.6): FLAGS, +FLAGS, -FLAGS, with .SILENT.

use ownmail_imap_proto::{Code, Data, FetchValue, Flag, SequenceSet, StoreMode};
use ownmail_mailstore::MessageInfo;

use crate::message;
use crate::session::{store_error, Session, Tagged};

pub(crate) fn store(
    s: &mut Session,
    uid: bool,
    set: &SequenceSet,
    mode: StoreMode,
    silent: bool,
    flags: &[Flag],
) -> Tagged {
    let idxs = match s.resolve(set, uid) {
        Ok(i) => i,
        Err(t) => return t,
    };
    let mut out = Vec::new();
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
            if f == m.flags {
                unchanged.push((i, m));
            } else {
                changes.push((i, m, f));
            }
        }
        let batch: Vec<_> = changes
            .iter()
            .map(|(_, m, f)| (m.clone(), f.clone()))
            .collect();
        let updated = match sel.folder.set_flags_many(&batch) {
            Ok(u) => u,
            Err(e) => return store_error(e),
        };
        let mut now: Vec<(usize, MessageInfo)> = unchanged;
        for ((i, _, _), u) in changes.into_iter().zip(updated) {
            // None: expunged by another session meanwhile; its EXPUNGE comes later.
            if let Some(u) = u {
                if let Some(slot) = sel.msgs.get_mut(i) {
                    *slot = u.clone();
                }
                now.push((i, u));
            }
        }
        now.sort_by_key(|(i, _)| *i);
        if !silent {
            for (i, m) in now {
                let mut items = vec![FetchValue::Flags(message::to_imap_flags(&m.flags))];
                if uid {
                    items.push(FetchValue::Uid(m.uid.0));
                }
                out.push(Data::Fetch {
                    seq: u32::try_from(i + 1).unwrap_or(u32::MAX),
                    items,
                });
            }
        }
    }
    for d in out {
        s.data(d);
    }
    Tagged::ok("STORE completed")
}
