//! FETCH data items (RFC 3501 §6.4.5, RFC 9051 §6.4.5, BINARY from RFC 3516, MODSEQ from
//! RFC 7162).

use crate::cursor::{Cursor, PResult};

/// One FETCH data item. The macros ALL, FAST and FULL are expanded when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAttr {
    Flags,
    InternalDate,
    Rfc822Size,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    Envelope,
    /// `BODY` without a section: the non-extensible BODYSTRUCTURE.
    Body,
    BodyStructure,
    Uid,
    ModSeq,
    /// `BODY[section]<partial>` and `BODY.PEEK[…]` (peek: do not set `\Seen`).
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<Partial>,
    },
    /// `BINARY[part]<partial>` and `BINARY.PEEK[…]`.
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<Partial>,
    },
    /// `BINARY.SIZE[part]`.
    BinarySize {
        part: Vec<u32>,
    },
}

/// `<offset.length>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    pub offset: u32,
    pub length: u32,
}

/// A body section: part numbers (`1.2.3`, empty for the whole message) and what of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

/// What of a part a section names (RFC 3501 §6.4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// Field names as sent (compare case-insensitively).
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    /// Only with a part number.
    Mime,
}

/// Most part-number levels accepted in a section (`1.2.3…`).
const MAX_PART_DEPTH: usize = 64;
/// Most header field names in one HEADER.FIELDS list.
const MAX_FIELDS: usize = 256;

/// `fetch-att` list or macro, as after `FETCH set SP`.
pub(crate) fn fetch_items(c: &mut Cursor) -> PResult<Vec<FetchAttr>> {
    if c.eat(b'(') {
        let mut items = Vec::new();
        loop {
            items.push(fetch_att(c)?);
            if c.eat(b')') {
                return Ok(items);
            }
            c.sp()?;
            if items.len() > 64 {
                return Err("Too many FETCH items".into());
            }
        }
    }
    for (word, expansion) in [
        (
            "ALL",
            &[
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
            ][..],
        ),
        (
            "FAST",
            &[
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
            ][..],
        ),
        (
            "FULL",
            &[
                FetchAttr::Flags,
                FetchAttr::InternalDate,
                FetchAttr::Rfc822Size,
                FetchAttr::Envelope,
                FetchAttr::Body,
            ][..],
        ),
    ] {
        if c.eat_word(word) {
            return Ok(expansion.to_vec());
        }
    }
    Ok(vec![fetch_att(c)?])
}

fn fetch_att(c: &mut Cursor) -> PResult<FetchAttr> {
    let name = c.keyword()?;
    let simple = match name.as_str() {
        "FLAGS" => Some(FetchAttr::Flags),
        "INTERNALDATE" => Some(FetchAttr::InternalDate),
        "RFC822.SIZE" => Some(FetchAttr::Rfc822Size),
        "RFC822" => Some(FetchAttr::Rfc822),
        "RFC822.HEADER" => Some(FetchAttr::Rfc822Header),
        "RFC822.TEXT" => Some(FetchAttr::Rfc822Text),
        "ENVELOPE" => Some(FetchAttr::Envelope),
        "BODYSTRUCTURE" => Some(FetchAttr::BodyStructure),
        "UID" => Some(FetchAttr::Uid),
        "MODSEQ" => Some(FetchAttr::ModSeq),
        _ => None,
    };
    if let Some(a) = simple {
        return Ok(a);
    }
    match name.as_str() {
        "BODY" if c.peek() != Some(b'[') => Ok(FetchAttr::Body),
        "BODY" | "BODY.PEEK" => {
            c.expect(b'[', "[")?;
            let section = section(c)?;
            c.expect(b']', "]")?;
            Ok(FetchAttr::BodySection {
                peek: name == "BODY.PEEK",
                section,
                partial: partial(c)?,
            })
        }
        "BINARY" | "BINARY.PEEK" => {
            let part = binary_part(c)?;
            Ok(FetchAttr::Binary {
                peek: name == "BINARY.PEEK",
                part,
                partial: partial(c)?,
            })
        }
        "BINARY.SIZE" => Ok(FetchAttr::BinarySize {
            part: binary_part(c)?,
        }),
        _ => Err(format!("Unknown FETCH item {name}")),
    }
}

fn binary_part(c: &mut Cursor) -> PResult<Vec<u32>> {
    c.expect(b'[', "[")?;
    let mut part = Vec::new();
    if c.peek() != Some(b']') {
        loop {
            part.push(c.nz_number()?.get());
            if part.len() > MAX_PART_DEPTH {
                return Err("Section part too deep".into());
            }
            if !c.eat(b'.') {
                break;
            }
        }
    }
    c.expect(b']', "]")?;
    Ok(part)
}

/// The inside of `[…]` (RFC 3501 §9 `section-spec`).
fn section(c: &mut Cursor) -> PResult<Section> {
    let mut s = Section::default();
    if c.peek() == Some(b']') {
        return Ok(s);
    }
    while c.peek().is_some_and(|b| b.is_ascii_digit()) {
        s.part.push(c.nz_number()?.get());
        if s.part.len() > MAX_PART_DEPTH {
            return Err("Section part too deep".into());
        }
        if !c.eat(b'.') {
            return Ok(s);
        }
    }
    let word = c.keyword()?;
    s.text = Some(match word.as_str() {
        "HEADER" => SectionText::Header,
        "TEXT" => SectionText::Text,
        "MIME" if !s.part.is_empty() => SectionText::Mime,
        "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
            c.sp()?;
            c.expect(b'(', "( before header field names")?;
            let mut fields = Vec::new();
            loop {
                fields.push(c.astring_utf8()?);
                if fields.len() > MAX_FIELDS {
                    return Err("Too many header fields".into());
                }
                if c.eat(b')') {
                    break;
                }
                c.sp()?;
            }
            if word == "HEADER.FIELDS" {
                SectionText::HeaderFields(fields)
            } else {
                SectionText::HeaderFieldsNot(fields)
            }
        }
        _ => return Err(format!("Invalid section {word}")),
    });
    Ok(s)
}

fn partial(c: &mut Cursor) -> PResult<Option<Partial>> {
    if !c.eat(b'<') {
        return Ok(None);
    }
    let offset = c.number()?;
    c.expect(b'.', ". in partial")?;
    let length = c.nz_number()?.get();
    c.expect(b'>', "> after partial")?;
    Ok(Some(Partial { offset, length }))
}
