//! NAMESPACE, CREATE, DELETE, RENAME, SUBSCRIBE/UNSUBSCRIBE and STATUS (RFC 9051 §6.3).

use ownmail_imap_proto::{Data, Mailbox, StatusItem};

use crate::session::{folder_name, store_error, Session, Tagged};

pub(crate) fn namespace(s: &mut Session) -> Tagged {
    // RFC 2342: one personal namespace, no prefix, `/` as delimiter.
    s.data(Data::Namespace {
        personal: vec![(String::new(), Some('/'))],
        other: Vec::new(),
        shared: Vec::new(),
    });
    Tagged::ok("NAMESPACE completed")
}

pub(crate) fn create(s: &mut Session, mb: &Mailbox) -> Tagged {
    let name = match folder_name(mb) {
        Ok(n) => n,
        Err(t) => return t,
    };
    // RFC 9051 §6.3.4: a trailing delimiter only says the client means to create children.
    let name = name.strip_suffix('/').unwrap_or(&name).to_string();
    let user = match s.user() {
        Ok(u) => u,
        Err(t) => return t,
    };
    match user.store.create_folder(&name, user.owner) {
        Ok(_) => Tagged::ok("CREATE completed"),
        Err(e) => store_error(e),
    }
}

pub(crate) fn delete(s: &mut Session, mb: &Mailbox) -> Tagged {
    let name = match folder_name(mb) {
        Ok(n) => n,
        Err(t) => return t,
    };
    if s.selected
        .as_ref()
        .is_some_and(|sel| sel.folder.name() == name)
    {
        return Tagged::no("Cannot delete the selected mailbox")
            .code(ownmail_imap_proto::Code::Other("INUSE".into()));
    }
    let user = match s.user() {
        Ok(u) => u,
        Err(t) => return t,
    };
    match user.store.delete_folder(&name) {
        Ok(()) => Tagged::ok("DELETE completed"),
        Err(e) => store_error(e),
    }
}

pub(crate) fn rename(s: &mut Session, from: &Mailbox, to: &Mailbox) -> Tagged {
    let (from, to) = match (folder_name(from), folder_name(to)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(t), _) | (_, Err(t)) => return t,
    };
    let user = match s.user() {
        Ok(u) => u,
        Err(t) => return t,
    };
    match user.store.rename_folder(&from, &to) {
        Ok(()) => Tagged::ok("RENAME completed"),
        Err(e) => store_error(e),
    }
}

pub(crate) fn subscribe(s: &mut Session, mb: &Mailbox, on: bool) -> Tagged {
    let name = match folder_name(mb) {
        Ok(n) => n,
        Err(t) => return t,
    };
    let user = match s.user() {
        Ok(u) => u,
        Err(t) => return t,
    };
    let r = if on {
        user.store.subscribe(&name)
    } else {
        user.store.unsubscribe(&name)
    };
    match r {
        Ok(()) => Tagged::ok(if on {
            "SUBSCRIBE completed"
        } else {
            "UNSUBSCRIBE completed"
        }),
        Err(e) => store_error(e),
    }
}

/// The STATUS values of `mb`, in the order asked.
pub(crate) fn status_values(
    s: &Session,
    mb: &Mailbox,
    items: &[StatusItem],
) -> Result<Vec<(StatusItem, u64)>, Tagged> {
    let name = folder_name(mb)?;
    let user = s.user()?;
    let folder = user.store.folder(&name).map_err(store_error)?;
    let st = folder.sync().map_err(store_error)?;
    let mut out = Vec::new();
    for &item in items {
        let v = match item {
            StatusItem::Messages => st.messages.len() as u64,
            StatusItem::Recent => 0,
            StatusItem::UidNext => u64::from(st.uid_next.0),
            StatusItem::UidValidity => u64::from(st.uid_validity.0),
            StatusItem::Unseen => st.messages.iter().filter(|m| !m.flags.seen).count() as u64,
            StatusItem::Deleted => st.messages.iter().filter(|m| m.flags.deleted).count() as u64,
            StatusItem::Size => st
                .messages
                .iter()
                .map(|m| m.vsize.or(m.size).unwrap_or(0))
                .sum(),
            StatusItem::AppendLimit => s.ctx.max_message,
            StatusItem::HighestModSeq => st.highest_modseq,
        };
        out.push((item, v));
    }
    Ok(out)
}

pub(crate) fn status(s: &mut Session, mb: &Mailbox, items: &[StatusItem]) -> Tagged {
    // RFC 7162 §3.1: STATUS HIGHESTMODSEQ is a CONDSTORE-enabling command.
    if items.contains(&StatusItem::HighestModSeq) {
        s.condstore = true;
    }
    match status_values(s, mb, items) {
        Ok(items) => {
            let mailbox = folder_name(mb).unwrap_or_default();
            s.data(Data::Status { mailbox, items });
            Tagged::ok("STATUS completed")
        }
        Err(t) => t,
    }
}
