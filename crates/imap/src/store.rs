//! STORE and UID STORE (RFC 9051 §6.4.6): FLAGS, +FLAGS, -FLAGS, with .SILENT.

use ownmail_imap_proto::{Code, Data, FetchValue, Flag, SequenceSet, StoreMode};
use ownmail_mailstore::StoreError;

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
            let now = if f == m.flags {
                m
            } else {
                match sel.folder.set_flags(m.uid, &f) {
                    Ok(updated) => {
                        if let Some(slot) = sel.msgs.get_mut(i) {
                            *slot = updated.clone();
                        }
                        updated
                    }
                    Err(StoreError::NoSuchMessage(_)) => continue,
                    Err(e) => return store_error(e),
                }
            };
            if !silent {
                let mut items = vec![FetchValue::Flags(message::to_imap_flags(&now.flags))];
                if uid {
                    items.push(FetchValue::Uid(now.uid.0));
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
