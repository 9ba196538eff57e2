//! Server responses (RFC 3501 §7, RFC 9051 §7) and the string encoders they use.
//!
//! Everything the server writes goes through [`write_astring`], [`write_string`] or
//! [`write_nstring`], which pick an atom, a quoted string or a literal so that no value can
//! break the response's syntax (a CR or LF in a quoted string would let a sender forge
//! responses). Human-readable text has CR and LF replaced by spaces for the same reason.

use crate::fetch::{Section, SectionText};
use crate::mutf7::mutf7_encode;
use crate::search::SearchReturn;
use crate::types::{DateTime, Flag, MailboxAttr, SequenceSet, StatusItem};

/// Longest value written as a quoted string; longer ones become literals.
const MAX_QUOTED: usize = 1000;

/// How the client's session shapes encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// UTF8=ACCEPT (RFC 6855) or IMAP4rev2 is enabled: mailbox names go out as UTF-8 and
    /// quoted strings may carry UTF-8; otherwise names are modified UTF-7 and 8-bit text is sent
    /// as literals.
    pub utf8: bool,
}

/// Status of a tagged or untagged status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    /// Untagged greeting only.
    PreAuth,
    /// Untagged only.
    Bye,
}

/// A response code, the bracketed part of a status response (RFC 3501 §7.1, RFC 9051 §7.1,
/// RFC 4315 UIDPLUS, RFC 5530, RFC 7162).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Alert,
    Capability(Vec<String>),
    /// `new_keywords` adds `\*`: the client may create keywords.
    PermanentFlags {
        flags: Vec<Flag>,
        new_keywords: bool,
    },
    UidValidity(u32),
    UidNext(u32),
    Unseen(u32),
    AppendUid {
        uid_validity: u32,
        uids: SequenceSet,
    },
    CopyUid {
        uid_validity: u32,
        source: SequenceSet,
        dest: SequenceSet,
    },
    ReadWrite,
    ReadOnly,
    TryCreate,
    NonExistent,
    AlreadyExists,
    HighestModSeq(u64),
    NoModSeq,
    Modified(SequenceSet),
    Closed,
    Parse,
    AuthenticationFailed,
    AuthorizationFailed,
    Unavailable,
    ServerBug,
    Cannot,
    Limit,
    OverQuota,
    TooBig,
    ContactAdmin,
    PrivacyRequired,
    CompressionActive,
    UseAttr,
    /// Anything else, written as given between the brackets.
    Other(String),
}

/// Untagged data (RFC 3501 §7.2–7.4, RFC 9051 §7.2–7.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Capability(Vec<String>),
    /// `mailbox` is UTF-8; it is written in modified UTF-7 unless [`EncodeOptions::utf8`].
    List {
        attrs: Vec<MailboxAttr>,
        delimiter: Option<char>,
        mailbox: String,
        /// LIST-EXTENDED `("CHILDINFO" ("SUBSCRIBED"))` (RFC 5258 §4).
        child_subscribed: bool,
    },
    Lsub {
        attrs: Vec<MailboxAttr>,
        delimiter: Option<char>,
        mailbox: String,
    },
    Status {
        mailbox: String,
        items: Vec<(StatusItem, u64)>,
    },
    Flags(Vec<Flag>),
    Exists(u32),
    Recent(u32),
    Expunge(u32),
    /// QRESYNC (RFC 7162 §3.2.10).
    Vanished {
        earlier: bool,
        uids: SequenceSet,
    },
    Fetch {
        seq: u32,
        items: Vec<FetchValue>,
    },
    /// Classic SEARCH (RFC 3501 §7.2.5) with CONDSTORE's `(MODSEQ n)`.
    Search {
        numbers: Vec<u32>,
        modseq: Option<u64>,
    },
    /// ESEARCH (RFC 4731, RFC 9051 §7.3.4). Only the options asked for should be `Some`.
    ESearch {
        tag: Option<String>,
        uid: bool,
        min: Option<u32>,
        max: Option<u32>,
        count: Option<u32>,
        all: Option<SequenceSet>,
        modseq: Option<u64>,
    },
    Enabled(Vec<String>),
    Id(Option<Vec<(String, Option<String>)>>),
    /// Each namespace is a prefix and its hierarchy delimiter; an empty group is NIL.
    Namespace {
        personal: Vec<(String, Option<char>)>,
        other: Vec<(String, Option<char>)>,
        shared: Vec<(String, Option<char>)>,
    },
}

/// One item of a FETCH response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchValue {
    Flags(Vec<Flag>),
    InternalDate(DateTime),
    Rfc822Size(u64),
    Uid(u32),
    ModSeq(u64),
    Rfc822(Option<Vec<u8>>),
    Rfc822Header(Option<Vec<u8>>),
    Rfc822Text(Option<Vec<u8>>),
    Envelope(Box<Envelope>),
    BodySection {
        section: Section,
        origin: Option<u32>,
        data: Option<Vec<u8>>,
    },
    /// Sent as a literal8 `~{N}` (RFC 3516 §4.3) so that NULs may appear.
    Binary {
        part: Vec<u32>,
        data: Option<Vec<u8>>,
    },
    BinarySize {
        part: Vec<u32>,
        size: u64,
    },
    /// `BODY`/`BODYSTRUCTURE` (or another item) already encoded by the caller: `name` then
    /// a space then `value` verbatim. The caller answers for the value's syntax.
    Raw {
        name: String,
        value: Vec<u8>,
    },
}

/// ENVELOPE (RFC 3501 §7.4.2): header values as raw bytes, NIL when absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    pub date: Option<Vec<u8>>,
    pub subject: Option<Vec<u8>>,
    pub from: Vec<Address>,
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<Vec<u8>>,
    pub message_id: Option<Vec<u8>>,
}

/// An ENVELOPE address: display name, source route, local part, domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    pub name: Option<Vec<u8>>,
    pub adl: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
}

/// A server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `tag OK [code] text`.
    Tagged {
        tag: String,
        status: Status,
        code: Option<Code>,
        text: String,
    },
    /// `* OK [code] text`, `* BYE …`, `* PREAUTH …`.
    Untagged {
        status: Status,
        code: Option<Code>,
        text: String,
    },
    /// `* data`.
    Data(Data),
    /// `+ text` (text may be base64 for AUTHENTICATE challenges).
    Continuation(String),
}

impl Response {
    /// `tag OK text`.
    pub fn ok(tag: &str, text: &str) -> Response {
        Response::Tagged {
            tag: tag.to_string(),
            status: Status::Ok,
            code: None,
            text: text.to_string(),
        }
    }

    /// `tag NO text`.
    pub fn no(tag: &str, text: &str) -> Response {
        Response::Tagged {
            tag: tag.to_string(),
            status: Status::No,
            code: None,
            text: text.to_string(),
        }
    }

    /// `tag BAD text`, or `* BAD text` when the tag is unknown.
    pub fn bad(tag: Option<&str>, text: &str) -> Response {
        match tag {
            Some(tag) => Response::Tagged {
                tag: tag.to_string(),
                status: Status::Bad,
                code: None,
                text: text.to_string(),
            },
            None => Response::Untagged {
                status: Status::Bad,
                code: None,
                text: text.to_string(),
            },
        }
    }

    /// The response's bytes, CRLF included.
    pub fn encode(&self, opts: EncodeOptions) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out, opts);
        out
    }

    /// Appends the response's bytes, CRLF included, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>, opts: EncodeOptions) {
        match self {
            Response::Tagged {
                tag,
                status,
                code,
                text,
            } => {
                out.extend(tag.bytes().filter(|&b| crate::cursor::is_tag_char(b)));
                out.push(b' ');
                status_line(out, *status, code.as_ref(), text);
            }
            Response::Untagged { status, code, text } => {
                out.extend_from_slice(b"* ");
                status_line(out, *status, code.as_ref(), text);
            }
            Response::Data(d) => {
                out.extend_from_slice(b"* ");
                data(out, d, opts);
            }
            Response::Continuation(text) => {
                out.extend_from_slice(b"+ ");
                write_text(out, text);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn status_line(out: &mut Vec<u8>, status: Status, code: Option<&Code>, text: &str) {
    out.extend_from_slice(match status {
        Status::Ok => b"OK",
        Status::No => b"NO",
        Status::Bad => b"BAD",
        Status::PreAuth => b"PREAUTH",
        Status::Bye => b"BYE",
    });
    if let Some(code) = code {
        out.extend_from_slice(b" [");
        write_code(out, code);
        out.push(b']');
    }
    out.push(b' ');
    // RFC 3501 §9: resp-text needs at least one character.
    if text.is_empty() {
        out.extend_from_slice(b"done");
    } else {
        write_text(out, text);
    }
}

fn write_text(out: &mut Vec<u8>, text: &str) {
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

fn write_code(out: &mut Vec<u8>, code: &Code) {
    let simple: &str = match code {
        Code::Alert => "ALERT",
        Code::ReadWrite => "READ-WRITE",
        Code::ReadOnly => "READ-ONLY",
        Code::TryCreate => "TRYCREATE",
        Code::NonExistent => "NONEXISTENT",
        Code::AlreadyExists => "ALREADYEXISTS",
        Code::NoModSeq => "NOMODSEQ",
        Code::Closed => "CLOSED",
        Code::Parse => "PARSE",
        Code::AuthenticationFailed => "AUTHENTICATIONFAILED",
        Code::AuthorizationFailed => "AUTHORIZATIONFAILED",
        Code::Unavailable => "UNAVAILABLE",
        Code::ServerBug => "SERVERBUG",
        Code::Cannot => "CANNOT",
        Code::Limit => "LIMIT",
        Code::OverQuota => "OVERQUOTA",
        Code::TooBig => "TOOBIG",
        Code::ContactAdmin => "CONTACTADMIN",
        Code::PrivacyRequired => "PRIVACYREQUIRED",
        Code::CompressionActive => "COMPRESSIONACTIVE",
        Code::UseAttr => "USEATTR",
        Code::Capability(caps) => {
            out.extend_from_slice(b"CAPABILITY");
            for c in caps {
                out.push(b' ');
                out.extend_from_slice(c.as_bytes());
            }
            return;
        }
        Code::PermanentFlags {
            flags,
            new_keywords,
        } => {
            out.extend_from_slice(b"PERMANENTFLAGS (");
            write_flags_inner(out, flags);
            if *new_keywords {
                if !flags.is_empty() {
                    out.push(b' ');
                }
                out.extend_from_slice(b"\\*");
            }
            out.push(b')');
            return;
        }
        Code::UidValidity(n) => return out.extend(format!("UIDVALIDITY {n}").bytes()),
        Code::UidNext(n) => return out.extend(format!("UIDNEXT {n}").bytes()),
        Code::Unseen(n) => return out.extend(format!("UNSEEN {n}").bytes()),
        Code::HighestModSeq(n) => return out.extend(format!("HIGHESTMODSEQ {n}").bytes()),
        Code::Modified(set) => return out.extend(format!("MODIFIED {set}").bytes()),
        Code::AppendUid { uid_validity, uids } => {
            return out.extend(format!("APPENDUID {uid_validity} {uids}").bytes())
        }
        Code::CopyUid {
            uid_validity,
            source,
            dest,
        } => return out.extend(format!("COPYUID {uid_validity} {source} {dest}").bytes()),
        Code::Other(s) => {
            return out.extend(s.bytes().filter(|&b| b != b']' && b != b'\r' && b != b'\n'))
        }
    };
    out.extend_from_slice(simple.as_bytes());
}

fn write_flags_inner(out: &mut Vec<u8>, flags: &[Flag]) {
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend(f.to_string().bytes().filter(|&b| b > b' ' && b < 0x7f));
    }
}

fn write_flags(out: &mut Vec<u8>, flags: &[Flag]) {
    out.push(b'(');
    write_flags_inner(out, flags);
    out.push(b')');
}

fn write_mailbox(out: &mut Vec<u8>, name: &str, opts: EncodeOptions) {
    if opts.utf8 {
        write_astring_ext(out, name.as_bytes(), true);
    } else {
        write_astring_ext(out, mutf7_encode(name).as_bytes(), false);
    }
}

fn write_delimiter(out: &mut Vec<u8>, d: Option<char>) {
    match d {
        None => out.extend_from_slice(b"NIL"),
        Some(c) => {
            let mut buf = [0u8; 4];
            write_string_ext(out, c.encode_utf8(&mut buf).as_bytes(), true);
        }
    }
}

fn write_attrs(out: &mut Vec<u8>, attrs: &[MailboxAttr]) {
    out.push(b'(');
    for (i, a) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend(a.to_string().bytes().filter(|&b| b > b' ' && b < 0x7f));
    }
    out.push(b')');
}

fn write_atoms(out: &mut Vec<u8>, words: &[String]) {
    for w in words {
        out.push(b' ');
        out.extend(
            w.bytes()
                .filter(|&b| crate::cursor::is_atom_char(b) || b == b']'),
        );
    }
}

fn data(out: &mut Vec<u8>, d: &Data, opts: EncodeOptions) {
    match d {
        Data::Capability(caps) => {
            out.extend_from_slice(b"CAPABILITY");
            write_atoms(out, caps);
        }
        Data::Enabled(caps) => {
            out.extend_from_slice(b"ENABLED");
            write_atoms(out, caps);
        }
        Data::List {
            attrs,
            delimiter,
            mailbox,
            child_subscribed,
        } => {
            out.extend_from_slice(b"LIST ");
            write_attrs(out, attrs);
            out.push(b' ');
            write_delimiter(out, *delimiter);
            out.push(b' ');
            write_mailbox(out, mailbox, opts);
            if *child_subscribed {
                out.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
        }
        Data::Lsub {
            attrs,
            delimiter,
            mailbox,
        } => {
            out.extend_from_slice(b"LSUB ");
            write_attrs(out, attrs);
            out.push(b' ');
            write_delimiter(out, *delimiter);
            out.push(b' ');
            write_mailbox(out, mailbox, opts);
        }
        Data::Status { mailbox, items } => {
            out.extend_from_slice(b"STATUS ");
            write_mailbox(out, mailbox, opts);
            out.extend_from_slice(b" (");
            for (i, (item, n)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend(format!("{} {n}", item.as_str()).bytes());
            }
            out.push(b')');
        }
        Data::Flags(flags) => {
            out.extend_from_slice(b"FLAGS ");
            write_flags(out, flags);
        }
        Data::Exists(n) => out.extend(format!("{n} EXISTS").bytes()),
        Data::Recent(n) => out.extend(format!("{n} RECENT").bytes()),
        Data::Expunge(n) => out.extend(format!("{n} EXPUNGE").bytes()),
        Data::Vanished { earlier, uids } => {
            out.extend_from_slice(b"VANISHED ");
            if *earlier {
                out.extend_from_slice(b"(EARLIER) ");
            }
            out.extend(uids.to_string().bytes());
        }
        Data::Fetch { seq, items } => {
            out.extend(format!("{seq} FETCH (").bytes());
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                fetch_value(out, item, opts);
            }
            out.push(b')');
        }
        Data::Search { numbers, modseq } => {
            out.extend_from_slice(b"SEARCH");
            for n in numbers {
                out.extend(format!(" {n}").bytes());
            }
            if let Some(m) = modseq {
                out.extend(format!(" (MODSEQ {m})").bytes());
            }
        }
        Data::ESearch {
            tag,
            uid,
            min,
            max,
            count,
            all,
            modseq,
        } => {
            out.extend_from_slice(b"ESEARCH");
            if let Some(tag) = tag {
                out.extend_from_slice(b" (TAG ");
                write_string(out, tag.as_bytes());
                out.push(b')');
            }
            if *uid {
                out.extend_from_slice(b" UID");
            }
            let parts = [
                (SearchReturn::Min, min.map(|n| n.to_string())),
                (SearchReturn::Max, max.map(|n| n.to_string())),
                (SearchReturn::All, all.as_ref().map(|s| s.to_string())),
                (SearchReturn::Count, count.map(|n| n.to_string())),
            ];
            for (what, value) in parts {
                if let Some(v) = value {
                    let name = match what {
                        SearchReturn::Min => "MIN",
                        SearchReturn::Max => "MAX",
                        SearchReturn::All => "ALL",
                        SearchReturn::Count | SearchReturn::Save => "COUNT",
                    };
                    out.extend(format!(" {name} {v}").bytes());
                }
            }
            if let Some(m) = modseq {
                out.extend(format!(" MODSEQ {m}").bytes());
            }
        }
        Data::Id(fields) => {
            out.extend_from_slice(b"ID ");
            match fields {
                None => out.extend_from_slice(b"NIL"),
                Some(fields) if fields.is_empty() => out.extend_from_slice(b"NIL"),
                Some(fields) => {
                    out.push(b'(');
                    for (i, (k, v)) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        write_string(out, k.as_bytes());
                        out.push(b' ');
                        write_nstring(out, v.as_ref().map(|v| v.as_bytes()));
                    }
                    out.push(b')');
                }
            }
        }
        Data::Namespace {
            personal,
            other,
            shared,
        } => {
            out.extend_from_slice(b"NAMESPACE");
            for group in [personal, other, shared] {
                out.push(b' ');
                if group.is_empty() {
                    out.extend_from_slice(b"NIL");
                    continue;
                }
                out.push(b'(');
                for (prefix, delim) in group {
                    out.push(b'(');
                    let encoded;
                    let p = if opts.utf8 {
                        prefix.as_str()
                    } else {
                        encoded = mutf7_encode(prefix);
                        encoded.as_str()
                    };
                    write_string_ext(out, p.as_bytes(), opts.utf8);
                    out.push(b' ');
                    write_delimiter(out, *delim);
                    out.push(b')');
                }
                out.push(b')');
            }
        }
    }
}

fn write_part(out: &mut Vec<u8>, part: &[u32]) {
    for (i, p) in part.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend(p.to_string().bytes());
    }
}

fn write_section(out: &mut Vec<u8>, s: &Section) {
    out.push(b'[');
    write_part(out, &s.part);
    if let Some(text) = &s.text {
        if !s.part.is_empty() {
            out.push(b'.');
        }
        match text {
            SectionText::Header => out.extend_from_slice(b"HEADER"),
            SectionText::Text => out.extend_from_slice(b"TEXT"),
            SectionText::Mime => out.extend_from_slice(b"MIME"),
            SectionText::HeaderFields(f) | SectionText::HeaderFieldsNot(f) => {
                out.extend_from_slice(if matches!(text, SectionText::HeaderFields(_)) {
                    b"HEADER.FIELDS ("
                } else {
                    b"HEADER.FIELDS.NOT ("
                });
                for (i, name) in f.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    write_astring(out, name.as_bytes());
                }
                out.push(b')');
            }
        }
    }
    out.push(b']');
}

fn write_addresses(out: &mut Vec<u8>, list: &[Address]) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        write_nstring(out, a.name.as_deref());
        out.push(b' ');
        write_nstring(out, a.adl.as_deref());
        out.push(b' ');
        write_nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        write_nstring(out, a.host.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

fn fetch_value(out: &mut Vec<u8>, v: &FetchValue, opts: EncodeOptions) {
    let _ = opts;
    match v {
        FetchValue::Flags(f) => {
            out.extend_from_slice(b"FLAGS ");
            write_flags(out, f);
        }
        FetchValue::InternalDate(d) => out.extend(format!("INTERNALDATE \"{d}\"").bytes()),
        FetchValue::Rfc822Size(n) => out.extend(format!("RFC822.SIZE {n}").bytes()),
        FetchValue::Uid(n) => out.extend(format!("UID {n}").bytes()),
        FetchValue::ModSeq(n) => out.extend(format!("MODSEQ ({n})").bytes()),
        FetchValue::Rfc822(d) => {
            out.extend_from_slice(b"RFC822 ");
            write_nstring(out, d.as_deref());
        }
        FetchValue::Rfc822Header(d) => {
            out.extend_from_slice(b"RFC822.HEADER ");
            write_nstring(out, d.as_deref());
        }
        FetchValue::Rfc822Text(d) => {
            out.extend_from_slice(b"RFC822.TEXT ");
            write_nstring(out, d.as_deref());
        }
        FetchValue::Envelope(e) => {
            out.extend_from_slice(b"ENVELOPE (");
            write_nstring(out, e.date.as_deref());
            out.push(b' ');
            write_nstring(out, e.subject.as_deref());
            for list in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
                out.push(b' ');
                write_addresses(out, list);
            }
            out.push(b' ');
            write_nstring(out, e.in_reply_to.as_deref());
            out.push(b' ');
            write_nstring(out, e.message_id.as_deref());
            out.push(b')');
        }
        FetchValue::BodySection {
            section,
            origin,
            data,
        } => {
            out.extend_from_slice(b"BODY");
            write_section(out, section);
            if let Some(o) = origin {
                out.extend(format!("<{o}>").bytes());
            }
            out.push(b' ');
            write_nstring(out, data.as_deref());
        }
        FetchValue::Binary { part, data } => {
            out.extend_from_slice(b"BINARY[");
            write_part(out, part);
            out.extend_from_slice(b"] ");
            match data {
                None => out.extend_from_slice(b"NIL"),
                Some(d) => {
                    out.extend(format!("~{{{}}}\r\n", d.len()).bytes());
                    out.extend_from_slice(d);
                }
            }
        }
        FetchValue::BinarySize { part, size } => {
            out.extend_from_slice(b"BINARY.SIZE[");
            write_part(out, part);
            out.extend(format!("] {size}").bytes());
        }
        FetchValue::Raw { name, value } => {
            out.extend(name.bytes().filter(|&b| b.is_ascii_graphic()));
            out.push(b' ');
            out.extend_from_slice(value);
        }
    }
}

/// Writes an `astring`: an atom when the value is one (and not `NIL`), else a string.
pub fn write_astring(out: &mut Vec<u8>, s: &[u8]) {
    write_astring_ext(out, s, false);
}

fn write_astring_ext(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let atom = !s.is_empty()
        && s.len() <= MAX_QUOTED
        && s.iter().all(|&b| crate::cursor::is_astring_char(b))
        && !s.eq_ignore_ascii_case(b"NIL");
    if atom {
        out.extend_from_slice(s);
    } else {
        write_string_ext(out, s, utf8);
    }
}

/// Writes a `string`: quoted when short 7-bit text without CR/LF/NUL, else a literal.
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    write_string_ext(out, s, false);
}

fn write_string_ext(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let ascii_ok = s.iter().all(|&b| b != 0 && b != b'\r' && b != b'\n');
    let bits_ok = s.is_ascii() || (utf8 && std::str::from_utf8(s).is_ok());
    if s.len() <= MAX_QUOTED && ascii_ok && bits_ok {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend(format!("{{{}}}\r\n", s.len()).bytes());
        out.extend_from_slice(s);
    }
}

/// Writes an `nstring`: `NIL` for `None`, else a string.
pub fn write_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        None => out.extend_from_slice(b"NIL"),
        Some(s) => write_string(out, s),
    }
}
