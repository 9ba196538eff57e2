//! Commands: the typed form of what [`crate::CommandReader`] cut out, and their parser.

use crate::cursor::{Cursor, PResult};
use crate::fetch::{fetch_items, FetchAttr};
use crate::search::{search_keys, search_return, SearchKey, SearchReturn};
use crate::types::{DateTime, Flag, Mailbox, MailboxAttr, SequenceSet, StatusItem};
use std::fmt;

/// A sensible command line limit: RFC 7162 §4 asks servers to accept at least 8192 octets.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// A sensible literal limit (APPEND): the session's APPENDLIMIT should not exceed it.
pub const DEFAULT_MAX_LITERAL: u64 = 64 * 1024 * 1024;

/// Most entries in one ENABLE, ID, STATUS, LIST option or flag list.
const MAX_LIST: usize = 256;

/// A tagged command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

/// A password: its `Debug` never shows it, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub Vec<u8>);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// SELECT/EXAMINE parameters (RFC 7162 §3.1.8 CONDSTORE, §3.2.5 QRESYNC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectParam {
    CondStore,
    QResync {
        uid_validity: u32,
        modseq: u64,
        known_uids: Option<SequenceSet>,
        /// Known message numbers and their UIDs.
        seq_match: Option<(SequenceSet, SequenceSet)>,
    },
}

/// LIST selection options (RFC 5258 §3.1, RFC 6154 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListSelect {
    Subscribed,
    Remote,
    RecursiveMatch,
    SpecialUse,
    Other(String),
}

/// LIST return options (RFC 5258 §3.2, RFC 5819 LIST-STATUS, RFC 6154).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListReturn {
    Subscribed,
    Children,
    SpecialUse,
    Status(Vec<StatusItem>),
    Other(String),
}

/// How STORE changes the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

/// What a command asks for. `uid: true` marks the `UID …` forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// `initial` is the SASL-IR response still base64-encoded; `=` (empty) is `Some("")`.
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Login {
        username: String,
        password: Password,
    },
    Enable(Vec<String>),
    Select {
        mailbox: Mailbox,
        params: Vec<SelectParam>,
    },
    Examine {
        mailbox: Mailbox,
        params: Vec<SelectParam>,
    },
    Create {
        mailbox: Mailbox,
        special_use: Vec<MailboxAttr>,
    },
    Delete(Mailbox),
    Rename {
        from: Mailbox,
        to: Mailbox,
    },
    Subscribe(Mailbox),
    Unsubscribe(Mailbox),
    List {
        selection: Vec<ListSelect>,
        reference: String,
        patterns: Vec<String>,
        returns: Vec<ListReturn>,
    },
    Lsub {
        reference: String,
        pattern: String,
    },
    Namespace,
    Status {
        mailbox: Mailbox,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: Mailbox,
        flags: Vec<Flag>,
        date: Option<DateTime>,
        message: Vec<u8>,
        /// Sent as a `~{N}` literal8 (RFC 3516 §4.4).
        binary: bool,
    },
    Idle,
    Check,
    Close,
    Unselect,
    Expunge,
    UidExpunge(SequenceSet),
    Search {
        uid: bool,
        /// `None` for a plain SEARCH; `Some` for ESEARCH (`RETURN ()` is `Some(vec![])`).
        returns: Option<Vec<SearchReturn>>,
        charset: Option<String>,
        criteria: SearchKey,
    },
    Fetch {
        uid: bool,
        set: SequenceSet,
        items: Vec<FetchAttr>,
        changed_since: Option<u64>,
        /// QRESYNC `VANISHED` modifier (UID FETCH only, RFC 7162 §3.2.6).
        vanished: bool,
    },
    Store {
        uid: bool,
        set: SequenceSet,
        mode: StoreMode,
        silent: bool,
        flags: Vec<Flag>,
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: Mailbox,
    },
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: Mailbox,
    },
    /// `ID NIL` is `None`; field values may be NIL (RFC 2971).
    Id(Option<Vec<(String, Option<String>)>>),
    Compress {
        mechanism: String,
    },
}

/// Why a command was refused: answer `tag BAD message` (or `* BAD message` without a tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub tag: Option<String>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// Whether a line (from [`crate::CommandReader::feed_line`]) ends IDLE (RFC 2177).
pub fn is_idle_done(line: &[u8]) -> bool {
    line.eq_ignore_ascii_case(b"DONE")
}

/// Parses one whole command as returned by [`crate::CommandReader`] (no final CRLF).
pub fn parse_command(input: &[u8]) -> Result<Command, ParseError> {
    let mut c = Cursor::new(input);
    let tag = c
        .tag()
        .map_err(|message| ParseError { tag: None, message })?;
    let body = command_body(&mut c).and_then(|b| c.end().map(|()| b));
    body.map(|body| Command {
        tag: tag.clone(),
        body,
    })
    .map_err(|message| ParseError {
        tag: Some(tag),
        message,
    })
}

fn command_body(c: &mut Cursor) -> PResult<CommandBody> {
    c.sp()?;
    let name = c.keyword()?;
    match name.as_str() {
        "UID" => {
            c.sp()?;
            let sub = c.keyword()?;
            match sub.as_str() {
                "FETCH" => fetch(c, true),
                "STORE" => store(c, true),
                "COPY" => copy_move(c, true, false),
                "MOVE" => copy_move(c, true, true),
                "SEARCH" => search(c, true),
                "EXPUNGE" => {
                    c.sp()?;
                    Ok(CommandBody::UidExpunge(c.sequence_set()?))
                }
                _ => Err(format!("Unknown UID command {sub}")),
            }
        }
        "CAPABILITY" => Ok(CommandBody::Capability),
        "NOOP" => Ok(CommandBody::Noop),
        "LOGOUT" => Ok(CommandBody::Logout),
        "STARTTLS" => Ok(CommandBody::StartTls),
        "AUTHENTICATE" => {
            c.sp()?;
            let mechanism = c.atom()?.to_ascii_uppercase();
            // RFC 4959: the initial response is base64 or "=".
            let initial = if c.eat(b' ') {
                let a = c.atom()?;
                Some(if a == "=" { Vec::new() } else { a.into_bytes() })
            } else {
                None
            };
            Ok(CommandBody::Authenticate { mechanism, initial })
        }
        "LOGIN" => {
            c.sp()?;
            let username = c.astring_utf8()?;
            c.sp()?;
            let password = Password(c.astring()?);
            Ok(CommandBody::Login { username, password })
        }
        "ENABLE" => {
            let mut caps = Vec::new();
            while c.eat(b' ') {
                caps.push(c.atom()?);
                if caps.len() > MAX_LIST {
                    return Err("Too many capabilities".into());
                }
            }
            if caps.is_empty() {
                return Err("ENABLE needs capabilities".into());
            }
            Ok(CommandBody::Enable(caps))
        }
        "SELECT" | "EXAMINE" => {
            c.sp()?;
            let mailbox = mailbox(c)?;
            let params = select_params(c)?;
            Ok(if name == "SELECT" {
                CommandBody::Select { mailbox, params }
            } else {
                CommandBody::Examine { mailbox, params }
            })
        }
        "CREATE" => {
            c.sp()?;
            let mailbox = mailbox(c)?;
            let mut special_use = Vec::new();
            // RFC 6154 §3: CREATE mbox (USE (\Sent)).
            if c.eat(b' ') {
                c.expect(b'(', "( before CREATE parameters")?;
                if !c.eat_word("USE") {
                    return Err("Unknown CREATE parameter".into());
                }
                c.sp()?;
                c.expect(b'(', "( after USE")?;
                loop {
                    special_use.push(MailboxAttr::parse(&c.flag_text()?));
                    if special_use.len() > MAX_LIST {
                        return Err("Too many attributes".into());
                    }
                    if c.eat(b')') {
                        break;
                    }
                    c.sp()?;
                }
                c.expect(b')', ")")?;
            }
            Ok(CommandBody::Create {
                mailbox,
                special_use,
            })
        }
        "DELETE" => one_mailbox(c).map(CommandBody::Delete),
        "SUBSCRIBE" => one_mailbox(c).map(CommandBody::Subscribe),
        "UNSUBSCRIBE" => one_mailbox(c).map(CommandBody::Unsubscribe),
        "RENAME" => {
            c.sp()?;
            let from = mailbox(c)?;
            c.sp()?;
            let to = mailbox(c)?;
            Ok(CommandBody::Rename { from, to })
        }
        "LIST" => list(c),
        "LSUB" => {
            c.sp()?;
            let reference = mailbox_text(c)?;
            c.sp()?;
            let pattern = c.list_mailbox()?;
            Ok(CommandBody::Lsub { reference, pattern })
        }
        "NAMESPACE" => Ok(CommandBody::Namespace),
        "STATUS" => {
            c.sp()?;
            let mailbox = mailbox(c)?;
            c.sp()?;
            let items = status_items(c)?;
            Ok(CommandBody::Status { mailbox, items })
        }
        "APPEND" => append(c),
        "IDLE" => Ok(CommandBody::Idle),
        "CHECK" => Ok(CommandBody::Check),
        "CLOSE" => Ok(CommandBody::Close),
        "UNSELECT" => Ok(CommandBody::Unselect),
        "EXPUNGE" => Ok(CommandBody::Expunge),
        "SEARCH" => search(c, false),
        "FETCH" => fetch(c, false),
        "STORE" => store(c, false),
        "COPY" => copy_move(c, false, false),
        "MOVE" => copy_move(c, false, true),
        "ID" => id(c),
        "COMPRESS" => {
            c.sp()?;
            Ok(CommandBody::Compress {
                mechanism: c.atom()?.to_ascii_uppercase(),
            })
        }
        _ => Err(format!("Unknown command {name}")),
    }
}

fn mailbox_text(c: &mut Cursor) -> PResult<String> {
    String::from_utf8(c.astring()?).map_err(|_| "Invalid UTF-8 in mailbox name".to_string())
}

fn mailbox(c: &mut Cursor) -> PResult<Mailbox> {
    mailbox_text(c).map(Mailbox::new)
}

fn one_mailbox(c: &mut Cursor) -> PResult<Mailbox> {
    c.sp()?;
    mailbox(c)
}

fn select_params(c: &mut Cursor) -> PResult<Vec<SelectParam>> {
    let mut params = Vec::new();
    if !c.eat(b' ') {
        return Ok(params);
    }
    c.expect(b'(', "( before SELECT parameters")?;
    if c.eat(b')') {
        return Ok(params);
    }
    loop {
        let w = c.keyword()?;
        match w.as_str() {
            "CONDSTORE" => params.push(SelectParam::CondStore),
            "QRESYNC" => {
                c.sp()?;
                c.expect(b'(', "( after QRESYNC")?;
                let uid_validity = c.nz_number()?.get();
                c.sp()?;
                let modseq = c.number64()?;
                let mut known_uids = None;
                let mut seq_match = None;
                if c.eat(b' ') {
                    if c.peek() != Some(b'(') {
                        known_uids = Some(c.sequence_set()?);
                        c.eat(b' ');
                    }
                    if c.eat(b'(') {
                        let seqs = c.sequence_set()?;
                        c.sp()?;
                        let uids = c.sequence_set()?;
                        c.expect(b')', ")")?;
                        seq_match = Some((seqs, uids));
                    }
                }
                c.expect(b')', ") after QRESYNC parameters")?;
                params.push(SelectParam::QResync {
                    uid_validity,
                    modseq,
                    known_uids,
                    seq_match,
                });
            }
            _ => return Err(format!("Unknown SELECT parameter {w}")),
        }
        if c.eat(b')') {
            return Ok(params);
        }
        c.sp()?;
        if params.len() > 8 {
            return Err("Too many SELECT parameters".into());
        }
    }
}

/// LIST, basic (RFC 3501 §6.3.8) and extended (RFC 5258 §3).
fn list(c: &mut Cursor) -> PResult<CommandBody> {
    c.sp()?;
    let mut selection = Vec::new();
    if c.eat(b'(') {
        if !c.eat(b')') {
            loop {
                let w = c.keyword()?;
                selection.push(match w.as_str() {
                    "SUBSCRIBED" => ListSelect::Subscribed,
                    "REMOTE" => ListSelect::Remote,
                    "RECURSIVEMATCH" => ListSelect::RecursiveMatch,
                    "SPECIAL-USE" => ListSelect::SpecialUse,
                    _ => ListSelect::Other(w),
                });
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
                if selection.len() > MAX_LIST {
                    return Err("Too many selection options".into());
                }
            }
        }
        c.sp()?;
    }
    let reference = mailbox_text(c)?;
    c.sp()?;
    let mut patterns = Vec::new();
    if c.eat(b'(') {
        loop {
            patterns.push(c.list_mailbox()?);
            if c.eat(b')') {
                break;
            }
            c.sp()?;
            if patterns.len() > MAX_LIST {
                return Err("Too many patterns".into());
            }
        }
    } else {
        patterns.push(c.list_mailbox()?);
    }
    let mut returns = Vec::new();
    if c.eat(b' ') {
        if !c.eat_word("RETURN") {
            return Err("Expected RETURN".into());
        }
        c.sp()?;
        c.expect(b'(', "( after RETURN")?;
        if !c.eat(b')') {
            loop {
                let w = c.keyword()?;
                returns.push(match w.as_str() {
                    "SUBSCRIBED" => ListReturn::Subscribed,
                    "CHILDREN" => ListReturn::Children,
                    "SPECIAL-USE" => ListReturn::SpecialUse,
                    "STATUS" => {
                        c.sp()?;
                        ListReturn::Status(status_items(c)?)
                    }
                    _ => ListReturn::Other(w),
                });
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
                if returns.len() > MAX_LIST {
                    return Err("Too many return options".into());
                }
            }
        }
    }
    Ok(CommandBody::List {
        selection,
        reference,
        patterns,
        returns,
    })
}

fn status_items(c: &mut Cursor) -> PResult<Vec<StatusItem>> {
    c.expect(b'(', "( before status items")?;
    let mut items = Vec::new();
    loop {
        let w = c.keyword()?;
        items.push(StatusItem::parse(&w).ok_or_else(|| format!("Unknown status item {w}"))?);
        if c.eat(b')') {
            return Ok(items);
        }
        c.sp()?;
        if items.len() > MAX_LIST {
            return Err("Too many status items".into());
        }
    }
}

fn flag_list(c: &mut Cursor) -> PResult<Vec<Flag>> {
    c.expect(b'(', "( before flags")?;
    let mut flags = Vec::new();
    if c.eat(b')') {
        return Ok(flags);
    }
    loop {
        let f = Flag::parse(&c.flag_text()?);
        if f == Flag::Recent {
            return Err("\\Recent cannot be set".into());
        }
        flags.push(f);
        if c.eat(b')') {
            return Ok(flags);
        }
        c.sp()?;
        if flags.len() > MAX_LIST {
            return Err("Too many flags".into());
        }
    }
}

/// APPEND mbox [flags] [date-time] literal (RFC 3501 §6.3.11; literal8 from RFC 3516).
fn append(c: &mut Cursor) -> PResult<CommandBody> {
    c.sp()?;
    let mailbox = mailbox(c)?;
    c.sp()?;
    let mut flags = Vec::new();
    if c.peek() == Some(b'(') {
        flags = flag_list(c)?;
        c.sp()?;
    }
    let mut date = None;
    if c.peek() == Some(b'"') {
        date = Some(c.date_time()?);
        c.sp()?;
    }
    let binary = c.peek() == Some(b'~');
    if !matches!(c.peek(), Some(b'{' | b'~')) {
        return Err("APPEND needs the message as a literal".into());
    }
    let message = c.string_ext(true)?;
    Ok(CommandBody::Append {
        mailbox,
        flags,
        date,
        message,
        binary,
    })
}

fn search(c: &mut Cursor, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let mut returns = None;
    if c.eat_word("RETURN") {
        c.sp()?;
        returns = Some(search_return(c)?);
        c.sp()?;
    }
    let mut charset = None;
    if c.eat_word("CHARSET") {
        c.sp()?;
        charset =
            Some(String::from_utf8(c.astring()?).map_err(|_| "Invalid charset name".to_string())?);
        c.sp()?;
    }
    let criteria = search_keys(c)?;
    Ok(CommandBody::Search {
        uid,
        returns,
        charset,
        criteria,
    })
}

fn fetch(c: &mut Cursor, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let items = fetch_items(c)?;
    let mut changed_since = None;
    let mut vanished = false;
    // RFC 7162 §3.1.4 / §3.2.6: (CHANGEDSINCE n [VANISHED]).
    if c.eat(b' ') {
        c.expect(b'(', "( before FETCH modifiers")?;
        loop {
            let w = c.keyword()?;
            match w.as_str() {
                "CHANGEDSINCE" => {
                    c.sp()?;
                    changed_since = Some(c.number64()?);
                }
                "VANISHED" if uid => vanished = true,
                _ => return Err(format!("Unknown FETCH modifier {w}")),
            }
            if c.eat(b')') {
                break;
            }
            c.sp()?;
        }
        if vanished && changed_since.is_none() {
            return Err("VANISHED needs CHANGEDSINCE".into());
        }
    }
    Ok(CommandBody::Fetch {
        uid,
        set,
        items,
        changed_since,
        vanished,
    })
}

fn store(c: &mut Cursor, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let mut unchanged_since = None;
    // RFC 7162 §3.1.3: STORE set (UNCHANGEDSINCE n) item flags.
    if c.eat(b'(') {
        if !c.eat_word("UNCHANGEDSINCE") {
            return Err("Unknown STORE modifier".into());
        }
        c.sp()?;
        unchanged_since = Some(c.number64()?);
        c.expect(b')', ") after STORE modifier")?;
        c.sp()?;
    }
    let mode = if c.eat(b'+') {
        StoreMode::Add
    } else if c.eat(b'-') {
        StoreMode::Remove
    } else {
        StoreMode::Replace
    };
    let item = c.keyword()?;
    let silent = match item.as_str() {
        "FLAGS" => false,
        "FLAGS.SILENT" => true,
        _ => return Err(format!("Unknown STORE item {item}")),
    };
    c.sp()?;
    let flags = if c.peek() == Some(b'(') {
        flag_list(c)?
    } else {
        // RFC 3501 §9: flags may also be given without parentheses, separated by spaces.
        let mut flags = vec![Flag::parse(&c.flag_text()?)];
        while c.eat(b' ') {
            flags.push(Flag::parse(&c.flag_text()?));
            if flags.len() > MAX_LIST {
                return Err("Too many flags".into());
            }
        }
        if flags.contains(&Flag::Recent) {
            return Err("\\Recent cannot be set".into());
        }
        flags
    };
    Ok(CommandBody::Store {
        uid,
        set,
        mode,
        silent,
        flags,
        unchanged_since,
    })
}

fn copy_move(c: &mut Cursor, uid: bool, is_move: bool) -> PResult<CommandBody> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let mailbox = mailbox(c)?;
    Ok(if is_move {
        CommandBody::Move { uid, set, mailbox }
    } else {
        CommandBody::Copy { uid, set, mailbox }
    })
}

/// ID (RFC 2971 §3.1): NIL or a list of field/value pairs.
fn id(c: &mut Cursor) -> PResult<CommandBody> {
    c.sp()?;
    if c.eat_word("NIL") {
        return Ok(CommandBody::Id(None));
    }
    c.expect(b'(', "( or NIL")?;
    let mut fields = Vec::new();
    if c.eat(b')') {
        return Ok(CommandBody::Id(Some(fields)));
    }
    loop {
        let key = String::from_utf8(c.string()?).map_err(|_| "Invalid UTF-8 in ID".to_string())?;
        c.sp()?;
        let value = match c.nstring()? {
            Some(v) => Some(String::from_utf8(v).map_err(|_| "Invalid UTF-8 in ID".to_string())?),
            None => None,
        };
        fields.push((key, value));
        if c.eat(b')') {
            return Ok(CommandBody::Id(Some(fields)));
        }
        c.sp()?;
        if fields.len() >= 30 {
            // RFC 2971 §3.3: at most 30 field-value pairs.
            return Err("Too many ID fields".into());
        }
    }
}
