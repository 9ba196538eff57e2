//! SEARCH keys (RFC 3501 §6.4.4, RFC 9051 §6.4.4), ESEARCH return options (RFC 4731,
//! RFC 9051) and the CONDSTORE MODSEQ key (RFC 7162 §3.1.5).

use crate::cursor::{Cursor, PResult};
use crate::types::{Date, SequenceSet};

/// Deepest nesting of parentheses, NOT and OR accepted: bounds the parser's recursion.
pub const MAX_SEARCH_DEPTH: usize = 32;

/// A search criterion. Several keys in a row (and parenthesised groups) are an [`SearchKey::And`].
/// Strings are bytes in the command's CHARSET (UTF-8 unless the client named another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Answered,
    Bcc(Vec<u8>),
    Before(Date),
    Body(Vec<u8>),
    Cc(Vec<u8>),
    Deleted,
    Draft,
    Flagged,
    From(Vec<u8>),
    Header(String, Vec<u8>),
    Keyword(String),
    Larger(u64),
    New,
    Not(Box<SearchKey>),
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u64),
    Subject(Vec<u8>),
    Text(Vec<u8>),
    To(Vec<u8>),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
    /// Message sequence numbers.
    SequenceSet(SequenceSet),
    And(Vec<SearchKey>),
    /// `MODSEQ ["/flags/\\seen" all|priv|shared] n`: the entry, if given, is kept as sent.
    ModSeq {
        entry: Option<(String, String)>,
        modseq: u64,
    },
}

/// An ESEARCH return option (`SEARCH RETURN (MIN MAX COUNT ALL SAVE)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
}

/// `RETURN (…)` after SEARCH: `Some(vec![])` means `RETURN ()`, which is `ALL` (RFC 4731 §3.1).
pub(crate) fn search_return(c: &mut Cursor) -> PResult<Vec<SearchReturn>> {
    c.expect(b'(', "( after RETURN")?;
    let mut out = Vec::new();
    if c.eat(b')') {
        return Ok(out);
    }
    loop {
        let w = c.keyword()?;
        out.push(match w.as_str() {
            "MIN" => SearchReturn::Min,
            "MAX" => SearchReturn::Max,
            "ALL" => SearchReturn::All,
            "COUNT" => SearchReturn::Count,
            "SAVE" => SearchReturn::Save,
            _ => return Err(format!("Unknown RETURN option {w}")),
        });
        if c.eat(b')') {
            return Ok(out);
        }
        c.sp()?;
        if out.len() > 16 {
            return Err("Too many RETURN options".into());
        }
    }
}

/// One or more keys separated by spaces, up to the end of the command.
pub(crate) fn search_keys(c: &mut Cursor) -> PResult<SearchKey> {
    let mut keys = vec![search_key(c, 0)?];
    while c.eat(b' ') {
        keys.push(search_key(c, 0)?);
    }
    Ok(and(keys))
}

fn and(mut keys: Vec<SearchKey>) -> SearchKey {
    if keys.len() == 1 {
        keys.pop().unwrap_or(SearchKey::All)
    } else {
        SearchKey::And(keys)
    }
}

fn text(c: &mut Cursor) -> PResult<Vec<u8>> {
    c.sp()?;
    c.astring()
}

fn date(c: &mut Cursor) -> PResult<Date> {
    c.sp()?;
    c.date()
}

fn search_key(c: &mut Cursor, depth: usize) -> PResult<SearchKey> {
    if depth > MAX_SEARCH_DEPTH {
        return Err("Search criteria nested too deeply".into());
    }
    if c.eat(b'(') {
        let mut keys = vec![search_key(c, depth + 1)?];
        while c.eat(b' ') {
            keys.push(search_key(c, depth + 1)?);
        }
        c.expect(b')', ") after search keys")?;
        return Ok(and(keys));
    }
    if c.peek_is_seq_start() {
        return c.sequence_set().map(SearchKey::SequenceSet);
    }
    let w = c.keyword()?;
    Ok(match w.as_str() {
        "ALL" => SearchKey::All,
        "ANSWERED" => SearchKey::Answered,
        "BCC" => SearchKey::Bcc(text(c)?),
        "BEFORE" => SearchKey::Before(date(c)?),
        "BODY" => SearchKey::Body(text(c)?),
        "CC" => SearchKey::Cc(text(c)?),
        "DELETED" => SearchKey::Deleted,
        "DRAFT" => SearchKey::Draft,
        "FLAGGED" => SearchKey::Flagged,
        "FROM" => SearchKey::From(text(c)?),
        "HEADER" => {
            c.sp()?;
            let name = c.astring_utf8()?;
            SearchKey::Header(name, text(c)?)
        }
        "KEYWORD" => {
            c.sp()?;
            SearchKey::Keyword(c.atom()?)
        }
        "LARGER" => {
            c.sp()?;
            SearchKey::Larger(c.number64()?)
        }
        "NEW" => SearchKey::New,
        "NOT" => {
            c.sp()?;
            SearchKey::Not(Box::new(search_key(c, depth + 1)?))
        }
        "OLD" => SearchKey::Old,
        "ON" => SearchKey::On(date(c)?),
        "OR" => {
            c.sp()?;
            let a = search_key(c, depth + 1)?;
            c.sp()?;
            let b = search_key(c, depth + 1)?;
            SearchKey::Or(Box::new(a), Box::new(b))
        }
        "RECENT" => SearchKey::Recent,
        "SEEN" => SearchKey::Seen,
        "SENTBEFORE" => SearchKey::SentBefore(date(c)?),
        "SENTON" => SearchKey::SentOn(date(c)?),
        "SENTSINCE" => SearchKey::SentSince(date(c)?),
        "SINCE" => SearchKey::Since(date(c)?),
        "SMALLER" => {
            c.sp()?;
            SearchKey::Smaller(c.number64()?)
        }
        "SUBJECT" => SearchKey::Subject(text(c)?),
        "TEXT" => SearchKey::Text(text(c)?),
        "TO" => SearchKey::To(text(c)?),
        "UID" => {
            c.sp()?;
            SearchKey::Uid(c.sequence_set()?)
        }
        "UNANSWERED" => SearchKey::Unanswered,
        "UNDELETED" => SearchKey::Undeleted,
        "UNDRAFT" => SearchKey::Undraft,
        "UNFLAGGED" => SearchKey::Unflagged,
        "UNKEYWORD" => {
            c.sp()?;
            SearchKey::Unkeyword(c.atom()?)
        }
        "UNSEEN" => SearchKey::Unseen,
        "MODSEQ" => {
            c.sp()?;
            let entry = if c.peek() == Some(b'"') {
                let name = String::from_utf8(c.string()?)
                    .map_err(|_| "Invalid UTF-8 in MODSEQ entry".to_string())?;
                c.sp()?;
                let kind = c.keyword()?;
                if !matches!(kind.as_str(), "PRIV" | "SHARED" | "ALL") {
                    return Err("Invalid MODSEQ entry type".into());
                }
                c.sp()?;
                Some((name, kind))
            } else {
                None
            };
            SearchKey::ModSeq {
                entry,
                modseq: c.number64()?,
            }
        }
        _ => return Err(format!("Unknown search key {w}")),
    })
}
