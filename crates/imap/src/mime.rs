//! The MIME structure of a message (RFC 2045, RFC 2046): the part tree with byte ranges,
//! what BODY/BODYSTRUCTURE say about it (RFC 3501 §7.4.2), part lookup by section number
//! (RFC 3501 §6.4.5) and Content-Transfer-Encoding decoding for BINARY (RFC 3516).
//!
//! Where the RFCs leave room the parse does what Dovecot does, so that a client sees the same
//! structure and sections it saw from Dovecot on the same Maildir:
//! - a delimiter line is `--` and a boundary at the start of a line, followed by anything;
//!   among the boundaries in force (those of every enclosing multipart) the longest match
//!   wins; the line break before it belongs to the delimiter (RFC 2046 §5.1.1);
//! - a delimiter line may cut a part's header short; a multipart whose close delimiter is
//!   missing ends at an enclosing multipart's delimiter or at the end of the message;
//! - Content-* fields count only in MIME entities: parts of a multipart, or a message that has
//!   MIME-Version or Content-Type; of repeated fields the first counts;
//! - no (or a broken) Content-Type means text/plain (RFC 2045 §5.2), or message/rfc822 inside
//!   multipart/digest (RFC 2046 §5.1.5); RFC 2231 parameter continuations are joined.
//!
//! Invariants: every range lies within the message and a part's header ends where its body
//! starts; nesting stops at [`MAX_DEPTH`] and the tree holds at most [`MAX_PARTS`] parts
//! (what lies beyond stays unsplit inside its parent's body), so hostile input can exhaust
//! neither memory nor stack; each line is scanned once, against at most [`MAX_DEPTH`]
//! boundaries of at most [`MAX_BOUNDARY`] bytes.

use std::ops::Range;

use ownmail_imap_proto::{BodyExtension, BodyFields, BodyStructure, Params, SingleKind};

use crate::message::{self, Lexer};

/// Deepest nesting of multiparts and encapsulated messages that is split into parts.
pub(crate) const MAX_DEPTH: usize = 64;
/// Most parts in one message's tree (Dovecot's default limit too).
pub(crate) const MAX_PARTS: usize = 10_000;
/// Longest boundary honoured (RFC 2046 §5.1.1 allows 70 characters).
pub(crate) const MAX_BOUNDARY: usize = 200;
/// Most parameters kept from one Content-Type or Content-Disposition field.
const MAX_PARAMS: usize = 64;

/// One entity: a message, an encapsulated message or a body part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// The header, with the empty line that ends it when there is one.
    pub header: Range<usize>,
    pub body: Range<usize>,
    pub content: Content,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Leaf,
    /// The parts between the delimiters (none when the boundary is missing or never seen).
    Multipart(Vec<Part>),
    /// message/rfc822: the encapsulated message, which spans the whole body.
    Message(Box<Part>),
}

/// What the Content-* fields say (RFC 2045 §5–6, RFC 2183, RFC 3066, RFC 2557), values as
/// written (unfolded, quotes removed), defaults filled in for the type only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Content {
    pub media_type: Vec<u8>,
    pub subtype: Vec<u8>,
    pub params: Params,
    pub id: Option<Vec<u8>>,
    pub description: Option<Vec<u8>>,
    /// The Content-Transfer-Encoding token; `None` means 7bit.
    pub encoding: Option<Vec<u8>>,
    pub md5: Option<Vec<u8>>,
    pub disposition: Option<(Vec<u8>, Params)>,
    pub language: Vec<Vec<u8>>,
    pub location: Option<Vec<u8>>,
}

impl Content {
    fn is(&self, media_type: &[u8], subtype: &[u8]) -> bool {
        self.media_type.eq_ignore_ascii_case(media_type)
            && self.subtype.eq_ignore_ascii_case(subtype)
    }

    fn param(&self, name: &[u8]) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// The part tree of `msg`.
pub(crate) fn parse(msg: &[u8]) -> Part {
    Parser {
        msg,
        pos: 0,
        boundaries: Vec::new(),
        parts_left: MAX_PARTS,
    }
    .entity(0, false, false)
}

struct Parser<'a> {
    msg: &'a [u8],
    /// Always at the start of a line (or at the end).
    pos: usize,
    /// Boundaries of the enclosing multiparts, innermost last.
    boundaries: Vec<Vec<u8>>,
    parts_left: usize,
}

impl Parser<'_> {
    fn len(&self) -> usize {
        self.msg.len()
    }

    fn next_line(&self, at: usize) -> usize {
        self.msg
            .get(at..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
            .map_or(self.len(), |p| at + p + 1)
    }

    /// Whether the line starting at `at` is a delimiter: which boundary (index into
    /// `boundaries`) and whether it closes (`--boundary--`).
    fn delimiter_at(&self, at: usize) -> Option<(usize, bool)> {
        let rest = self.msg.get(at..)?.strip_prefix(b"--")?;
        let mut best: Option<(usize, usize)> = None;
        // Innermost first: on equal lengths the innermost multipart owns the line.
        for (i, b) in self.boundaries.iter().enumerate().rev() {
            if rest.starts_with(b) && best.is_none_or(|(_, len)| len < b.len()) {
                best = Some((i, b.len()));
            }
        }
        let (i, len) = best?;
        let close = rest.get(len..).is_some_and(|r| r.starts_with(b"--"));
        Some((i, close))
    }

    /// The start of the first delimiter line at or after the line start `from`, or the end.
    fn scan(&self, from: usize) -> usize {
        if self.boundaries.is_empty() {
            return self.len();
        }
        let mut at = from;
        while at < self.len() {
            if self.delimiter_at(at).is_some() {
                return at;
            }
            at = self.next_line(at);
        }
        self.len()
    }

    /// Where content that starts at `start` ends when the next delimiter line starts at `at`
    /// (or `at` is the end): the line break before a delimiter is the delimiter's.
    fn content_end(&self, start: usize, at: usize) -> usize {
        if at >= self.len() {
            return self.len();
        }
        if at <= start {
            return start;
        }
        let mut end = at - 1;
        if end > start && self.msg.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
        end
    }

    /// Reads a header from `pos` to its empty line. Returns where it ends and whether a
    /// delimiter line cut it short; `pos` is then left at that line, else at the body.
    fn header(&mut self) -> (usize, bool) {
        let start = self.pos;
        let mut at = start;
        while at < self.len() {
            let rest = self.msg.get(at..).unwrap_or_default();
            let blank = if rest.starts_with(b"\r\n") {
                2
            } else if rest.starts_with(b"\n") {
                1
            } else {
                0
            };
            if blank > 0 {
                self.pos = at + blank;
                return (self.pos, false);
            }
            if self.delimiter_at(at).is_some() {
                self.pos = at;
                return (self.content_end(start, at), true);
            }
            at = self.next_line(at);
        }
        self.pos = self.len();
        (self.len(), false)
    }

    /// One entity from `pos`; leaves `pos` at the delimiter line that ends it, or at the end.
    fn entity(&mut self, depth: usize, in_multipart: bool, in_digest: bool) -> Part {
        let start = self.pos;
        let (body_start, cut) = self.header();
        let header = start..body_start;
        let mut content = content(
            self.msg.get(header.clone()).unwrap_or_default(),
            in_multipart,
            in_digest,
        );
        let is_message = content.is(b"message", b"rfc822");
        let multipart = content.media_type.eq_ignore_ascii_case(b"multipart");
        let can_nest = depth < MAX_DEPTH && self.parts_left > 0;
        if is_message && !can_nest {
            // Too deep to describe as message/rfc822 (which needs its envelope and
            // structure): say it is opaque data.
            content.media_type = b"application".to_vec();
            content.subtype = b"octet-stream".to_vec();
        }
        if cut {
            let kind = if multipart {
                Kind::Multipart(Vec::new())
            } else if is_message && can_nest {
                self.parts_left -= 1;
                Kind::Message(Box::new(empty_part(body_start)))
            } else {
                Kind::Leaf
            };
            return Part {
                header,
                body: body_start..body_start,
                content,
                kind,
            };
        }
        let boundary = content
            .param(b"boundary")
            .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY)
            .map(<[u8]>::to_vec);
        let (kind, body_end) = match boundary {
            Some(b) if multipart && can_nest => {
                let digest = content.subtype.eq_ignore_ascii_case(b"digest");
                self.multipart(b, body_start, depth, digest)
            }
            _ if is_message && can_nest => {
                self.parts_left -= 1;
                let inner = self.entity(depth + 1, false, false);
                let end = inner.body.end;
                (Kind::Message(Box::new(inner)), end)
            }
            _ => {
                let at = self.scan(body_start);
                self.pos = at;
                let kind = if multipart {
                    Kind::Multipart(Vec::new())
                } else {
                    Kind::Leaf
                };
                (kind, self.content_end(body_start, at))
            }
        };
        Part {
            header,
            body: body_start..body_end,
            content,
            kind,
        }
    }

    /// A multipart body from `body_start`: preamble, parts, close delimiter, epilogue.
    fn multipart(
        &mut self,
        boundary: Vec<u8>,
        body_start: usize,
        depth: usize,
        digest: bool,
    ) -> (Kind, usize) {
        let mine = self.boundaries.len();
        self.boundaries.push(boundary);
        let mut parts = Vec::new();
        let mut at = self.scan(body_start);
        let end_at = loop {
            self.boundaries.truncate(mine + 1);
            if at >= self.len() {
                break self.len();
            }
            let Some((owner, close)) = self.delimiter_at(at) else {
                // Not reached (entities stop only at delimiters); move on regardless.
                at = self.scan(self.next_line(at));
                continue;
            };
            if owner < mine {
                // An enclosing multipart's delimiter: ours was never closed.
                break at;
            }
            let next = self.next_line(at);
            if close {
                // The epilogue runs to an enclosing delimiter or the end.
                self.boundaries.truncate(mine);
                break self.scan(next);
            }
            if self.parts_left > 0 {
                self.parts_left -= 1;
                self.pos = next;
                parts.push(self.entity(depth + 1, true, digest));
                at = self.pos;
            } else {
                at = self.scan(next);
            }
        };
        self.boundaries.truncate(mine);
        self.pos = end_at;
        (Kind::Multipart(parts), self.content_end(body_start, end_at))
    }
}

/// The empty message inside a message/rfc822 part whose header a delimiter cut short.
fn empty_part(at: usize) -> Part {
    Part {
        header: at..at,
        body: at..at,
        content: content(b"", false, false),
        kind: Kind::Leaf,
    }
}

/// A parsed Content-Type: type, subtype, parameters.
type MediaType = (Vec<u8>, Vec<u8>, Params);

/// Reads the Content-* fields of one header (see the module comment for the rules).
fn content(header: &[u8], in_multipart: bool, in_digest: bool) -> Content {
    let mut c = Content::default();
    let mut mime = in_multipart;
    // The first Content-Type field, parsed (`Some(None)` when it is broken).
    let mut ctype: Option<Option<MediaType>> = None;
    for (raw_name, raw) in message::fields(header) {
        let name = message::field_name(raw_name);
        let value = || message::clean_value(raw.get(raw_name.len() + 1..).unwrap_or_default());
        if name.eq_ignore_ascii_case(b"MIME-Version") {
            mime = true;
            continue;
        }
        let Some(what) = name
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case(b"Content-"))
            .and_then(|_| name.get(8..))
        else {
            continue;
        };
        let is = |s: &str| what.eq_ignore_ascii_case(s.as_bytes());
        if is("Type") {
            mime = true;
            if ctype.is_none() {
                ctype = Some(content_type(&value()));
            }
        } else if is("Transfer-Encoding") && c.encoding.is_none() {
            c.encoding = transfer_encoding(&value());
        } else if is("ID") && c.id.is_none() {
            c.id = Some(value());
        } else if is("Description") && c.description.is_none() {
            c.description = Some(value());
        } else if is("MD5") && c.md5.is_none() {
            c.md5 = Some(value());
        } else if is("Disposition") && c.disposition.is_none() {
            c.disposition = disposition(&value());
        } else if is("Language") && c.language.is_empty() {
            c.language = languages(&value());
        } else if is("Location") && c.location.is_none() {
            c.location = Some(value());
        }
    }
    if !mime {
        c = Content::default();
    }
    match ctype.flatten().filter(|_| mime) {
        Some((t, s, p)) => {
            c.media_type = t;
            c.subtype = s;
            c.params = p;
        }
        None if in_digest => {
            c.media_type = b"message".to_vec();
            c.subtype = b"rfc822".to_vec();
        }
        None => {
            c.media_type = b"text".to_vec();
            c.subtype = b"plain".to_vec();
        }
    }
    c
}

/// `type "/" subtype *(";" parameter)` (RFC 2045 §5.1); `None` when type or subtype is
/// missing.
fn content_type(value: &[u8]) -> Option<MediaType> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let t = lx.token().to_vec();
    lx.skip_cfws();
    if t.is_empty() || !lx.eat(b'/') {
        return None;
    }
    lx.skip_cfws();
    let s = lx.token().to_vec();
    if s.is_empty() {
        return None;
    }
    Some((t, s, params(&mut lx)))
}

/// RFC 2045 §6.1: one token, nothing after it.
fn transfer_encoding(value: &[u8]) -> Option<Vec<u8>> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let t = lx.token().to_vec();
    lx.skip_cfws();
    (!t.is_empty() && lx.at_end()).then_some(t)
}

/// RFC 2183: `disposition-type *(";" parameter)`.
fn disposition(value: &[u8]) -> Option<(Vec<u8>, Params)> {
    let mut lx = Lexer::new(value);
    lx.skip_cfws();
    let t = lx.token().to_vec();
    (!t.is_empty()).then(|| (t, params(&mut lx)))
}

/// RFC 3282: a comma-separated list of language tags.
fn languages(value: &[u8]) -> Vec<Vec<u8>> {
    let mut lx = Lexer::new(value);
    let mut out = Vec::new();
    while out.len() < MAX_PARAMS {
        lx.skip_cfws();
        let tag = lx.run(message::is_atext);
        if tag.is_empty() {
            break;
        }
        out.push(tag.to_vec());
        lx.skip_cfws();
        if !lx.eat(b',') {
            break;
        }
    }
    out
}

/// An unquoted parameter value. RFC 2045 wants a token, but `boundary=----=_Part_1` and
/// `name=a/b.pdf` are common: take everything up to the next delimiter.
fn is_value_byte(b: u8) -> bool {
    b > b' ' && b != 0x7f && !b";\"()".contains(&b)
}

/// `*(";" attribute "=" value)` up to the first thing that is not one, then RFC 2231
/// continuations joined.
fn params(lx: &mut Lexer) -> Params {
    let mut raw = Vec::new();
    while raw.len() < MAX_PARAMS {
        lx.skip_cfws();
        if !lx.eat(b';') {
            break;
        }
        lx.skip_cfws();
        let name = lx.token().to_vec();
        if name.is_empty() {
            // `;;` or a trailing `;`: nothing here, look at what follows.
            continue;
        }
        lx.skip_cfws();
        if !lx.eat(b'=') {
            break;
        }
        lx.skip_cfws();
        let value = if lx.peek() == Some(b'"') {
            lx.quoted()
        } else {
            lx.run(is_value_byte).to_vec()
        };
        raw.push((name, value));
    }
    rfc2231(raw)
}

/// Joins RFC 2231 §3 continuations (`name*0`, `name*1*`, …) into one parameter, as Dovecot
/// does: plain parameters first in their order, then the starred ones sorted by name. When
/// any section is extended (`*N*`) the result is `name*` with the sections' raw values
/// (plain sections with `%` escaped, and `''` for a missing charset), for the client to
/// decode.
fn rfc2231(raw: Params) -> Params {
    let mut out = Params::new();
    let mut starred = Vec::new();
    for (name, value) in raw {
        match split_star(&name) {
            Some((base, n, extended)) => starred.push(Section2231 {
                base: base.to_vec(),
                n,
                extended,
                value,
            }),
            None => out.push((name, value)),
        }
    }
    starred.sort_by(|a, b| (&a.base, a.n).cmp(&(&b.base, b.n)));
    for group in starred.chunk_by(|a, b| a.base == b.base) {
        let Some(first) = group.first() else {
            continue;
        };
        let extended = group.iter().any(|s| s.extended);
        let mut name = first.base.clone();
        let mut value = Vec::new();
        if extended {
            name.push(b'*');
            if !first.extended {
                value.extend_from_slice(b"''");
            }
        }
        for s in group {
            if extended && !s.extended {
                for &b in &s.value {
                    if b == b'%' {
                        value.extend_from_slice(b"%25");
                    } else {
                        value.push(b);
                    }
                }
            } else {
                value.extend_from_slice(&s.value);
            }
        }
        out.push((name, value));
    }
    out
}

/// One RFC 2231 parameter section: `base*N=value`, `base*N*=value` or `base*=value`.
struct Section2231 {
    base: Vec<u8>,
    n: Option<u32>,
    extended: bool,
    value: Vec<u8>,
}

/// `base*`, `base*N` or `base*N*` → (base, N, extended); `None` for a plain name.
fn split_star(name: &[u8]) -> Option<(&[u8], Option<u32>, bool)> {
    let (rest, ext) = match name.strip_suffix(b"*") {
        Some(r) => (r, true),
        None => (name, false),
    };
    match rest.iter().rposition(|&b| b == b'*') {
        Some(star) => {
            let digits = rest.get(star + 1..)?;
            if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
            Some((rest.get(..star)?, Some(n), ext))
        }
        None if ext && !rest.is_empty() => Some((rest, None, true)),
        None => None,
    }
}

/// The part a section's numbers name (RFC 3501 §6.4.5), the way Dovecot walks them: in a
/// multipart, N is its Nth part; a single part is its own part 1; after a message/rfc822
/// part, further numbers walk the encapsulated message. `None` when there is no such part.
pub(crate) fn find<'p>(root: &'p Part, path: &[u32]) -> Option<&'p Part> {
    let mut part = root;
    for (i, &n) in path.iter().enumerate() {
        let more = i + 1 < path.len();
        match &part.kind {
            Kind::Multipart(parts) => {
                let idx = usize::try_from(n).ok()?.checked_sub(1)?;
                part = parts.get(idx)?;
            }
            Kind::Leaf | Kind::Message(_) => {
                if n != 1 || (more && !matches!(part.kind, Kind::Message(_))) {
                    return None;
                }
            }
        }
        if more {
            if let Kind::Message(inner) = &part.kind {
                part = inner;
            }
        }
    }
    Some(part)
}

fn lines(body: &[u8]) -> u64 {
    body.iter().filter(|&&b| b == b'\n').count() as u64
}

/// BODYSTRUCTURE of `part` of `msg`, with Dovecot's defaults: text parts always carry a
/// charset (`us-ascii` when none is given), the encoding is `7bit` when none is given,
/// message/rfc822 is written in lower case.
pub(crate) fn structure(msg: &[u8], part: &Part) -> BodyStructure {
    let c = &part.content;
    let body = msg.get(part.body.clone()).unwrap_or_default();
    let ext = BodyExtension {
        md5: c.md5.clone(),
        disposition: c.disposition.clone(),
        language: c.language.clone(),
        location: c.location.clone(),
    };
    let fields = |media_type: &[u8], subtype: &[u8], params: Params| BodyFields {
        media_type: media_type.to_vec(),
        subtype: subtype.to_vec(),
        params,
        id: c.id.clone(),
        description: c.description.clone(),
        encoding: c.encoding.clone().unwrap_or_else(|| b"7bit".to_vec()),
        size: body.len() as u64,
    };
    match &part.kind {
        Kind::Multipart(parts) => BodyStructure::Multipart {
            parts: parts.iter().map(|p| structure(msg, p)).collect(),
            subtype: c.subtype.clone(),
            params: c.params.clone(),
            ext: BodyExtension { md5: None, ..ext },
        },
        Kind::Message(inner) => BodyStructure::Single {
            fields: fields(b"message", b"rfc822", c.params.clone()),
            kind: SingleKind::Message {
                envelope: Box::new(message::envelope(
                    msg.get(inner.header.clone()).unwrap_or_default(),
                )),
                body: Box::new(structure(msg, inner)),
                lines: lines(body),
            },
            ext,
        },
        Kind::Leaf if c.media_type.eq_ignore_ascii_case(b"text") => {
            let mut params = c.params.clone();
            if c.param(b"charset").is_none() {
                params.push((b"charset".to_vec(), b"us-ascii".to_vec()));
            }
            BodyStructure::Single {
                fields: fields(&c.media_type, &c.subtype, params),
                kind: SingleKind::Text { lines: lines(body) },
                ext,
            }
        }
        Kind::Leaf => BodyStructure::Single {
            fields: fields(&c.media_type, &c.subtype, c.params.clone()),
            kind: SingleKind::Basic,
            ext,
        },
    }
}

/// `data` with its Content-Transfer-Encoding undone (RFC 3516 §4.2); `None` for an encoding
/// we do not know, which BINARY answers with `NO [UNKNOWN-CTE]`. Decoding is lenient, as
/// RFC 2045 §6.8 asks of base64 readers: what is not part of the encoding is skipped.
pub(crate) fn decode(encoding: Option<&[u8]>, data: &[u8]) -> Option<Vec<u8>> {
    let Some(e) = encoding else {
        return Some(data.to_vec());
    };
    let is = |s: &str| e.eq_ignore_ascii_case(s.as_bytes());
    if is("7bit") || is("8bit") || is("binary") {
        Some(data.to_vec())
    } else if is("base64") {
        Some(base64_decode(data))
    } else if is("quoted-printable") {
        Some(qp_decode(data))
    } else {
        None
    }
}

fn base64_decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut n = 0;
    let flush = |acc: u32, n: i32, out: &mut Vec<u8>| match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    };
    for &b in data {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                // Padding ends a group; some senders concatenate padded chunks.
                flush(acc, n, &mut out);
                acc = 0;
                n = 0;
                continue;
            }
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    flush(acc, n, &mut out);
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// RFC 2045 §6.7: `=XX` octets, `=` at the end of a line joins it to the next, trailing
/// whitespace is dropped; a malformed `=` is kept as it is.
fn qp_decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for line in data.split_inclusive(|&b| b == b'\n') {
        let (text, eol): (&[u8], &[u8]) = if let Some(t) = line.strip_suffix(b"\r\n") {
            (t, b"\r\n")
        } else if let Some(t) = line.strip_suffix(b"\n") {
            (t, b"\n")
        } else {
            (line, b"")
        };
        let keep = text
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |p| p + 1);
        let text = text.get(..keep).unwrap_or_default();
        let (text, soft) = match text.strip_suffix(b"=") {
            Some(t) => (t, true),
            None => (text, false),
        };
        let mut i = 0;
        while let Some(&b) = text.get(i) {
            if b == b'=' {
                let pair = (
                    text.get(i + 1).copied().and_then(hex),
                    text.get(i + 2).copied().and_then(hex),
                );
                if let (Some(h), Some(l)) = pair {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
            out.push(b);
            i += 1;
        }
        if !soft {
            out.extend_from_slice(eol);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ownmail_imap_proto::{Data, EncodeOptions, FetchValue, Response};
    use proptest::prelude::*;

    fn bs(msg: &str, extensible: bool) -> String {
        let m = msg.as_bytes();
        String::from_utf8_lossy(&structure(m, &parse(m)).encode(extensible)).into_owned()
    }

    fn section<'a>(msg: &'a str, path: &[u32]) -> Option<&'a str> {
        let p = parse(msg.as_bytes());
        let part = find(&p, path)?;
        msg.get(part.body.clone())
    }

    const PLAIN: &str = "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\n\
        Subject: Hello there\r\n\r\nFirst body, with a needle.\r\n";

    const ALTERNATIVE: &str = "From: bob@example.org\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
        This is a MIME message.\r\n\
        --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n\
        --b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
        <p>Hello</p>\r\n\r\n--b1--\r\n";

    const MIXED: &str = "From: bob@example.org\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=XyZ\r\n\r\n\
        --XyZ\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
        --XyZ\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n\
        Content-Transfer-Encoding: base64\r\n\
        Content-Disposition: attachment; filename=\"report.pdf\"\r\n\r\n\
        JVBERi0xLjQKJcfs\r\nj6IKMSAwIG9iago=\r\n--XyZ--\r\n";

    const FORWARD: &str = "From: bob@example.org\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
        --outer\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nForwarded:\r\n\
        --outer\r\nContent-Type: message/rfc822\r\n\r\n\
        From: Carol <carol@example.net>\r\nTo: bob@example.org\r\nSubject: Lunch\r\n\
        Date: Mon, 1 Jan 2024 12:00:00 +0000\r\nMessage-ID: <1@example.net>\r\n\r\n\
        Noon?\r\n\r\n--outer--\r\n";

    #[test]
    fn single_text_part_like_dovecot() {
        assert_eq!(
            bs(PLAIN, true),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 28 1 NIL NIL NIL NIL)"
        );
        assert_eq!(
            bs(PLAIN, false),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 28 1)"
        );
        assert_eq!(section(PLAIN, &[1]), Some("First body, with a needle.\r\n"));
        assert_eq!(section(PLAIN, &[2]), None);
        assert_eq!(section(PLAIN, &[1, 1]), None);
    }

    #[test]
    fn multipart_alternative_like_dovecot() {
        assert_eq!(
            bs(ALTERNATIVE, true),
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)\
             (\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 14 1 NIL NIL NIL NIL) \
             \"alternative\" (\"boundary\" \"b1\") NIL NIL NIL)"
        );
        assert_eq!(
            bs(ALTERNATIVE, false),
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 5 0)\
             (\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 14 1) \
             \"alternative\")"
        );
        assert_eq!(section(ALTERNATIVE, &[1]), Some("Hello"));
        assert_eq!(section(ALTERNATIVE, &[2]), Some("<p>Hello</p>\r\n"));
        let p = parse(ALTERNATIVE.as_bytes());
        let two = find(&p, &[2]).expect("part 2");
        assert_eq!(
            ALTERNATIVE.get(two.header.clone()),
            Some(
                "Content-Type: text/html; charset=utf-8\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            )
        );
    }

    #[test]
    fn multipart_mixed_with_attachment_like_dovecot() {
        assert_eq!(
            bs(MIXED, true),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 0 NIL NIL NIL NIL)\
             (\"application\" \"pdf\" (\"name\" \"report.pdf\") NIL NIL \"base64\" 34 NIL \
             (\"attachment\" (\"filename\" \"report.pdf\")) NIL NIL) \
             \"mixed\" (\"boundary\" \"XyZ\") NIL NIL NIL)"
        );
        let p = parse(MIXED.as_bytes());
        let two = find(&p, &[2]).expect("part 2");
        let data = MIXED.get(two.body.clone()).expect("body").as_bytes();
        assert_eq!(
            decode(two.content.encoding.as_deref(), data).expect("known"),
            b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n1 0 obj\n"
        );
    }

    #[test]
    fn message_rfc822_attachment_like_dovecot() {
        let inner = "From: Carol <carol@example.net>\r\nTo: bob@example.org\r\nSubject: Lunch\r\n\
            Date: Mon, 1 Jan 2024 12:00:00 +0000\r\nMessage-ID: <1@example.net>\r\n\r\nNoon?\r\n";
        assert_eq!(
            bs(FORWARD, true),
            format!(
                "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 0 NIL NIL NIL NIL)\
                 (\"message\" \"rfc822\" NIL NIL NIL \"7bit\" {} \
                 (\"Mon, 1 Jan 2024 12:00:00 +0000\" \"Lunch\" ((\"Carol\" NIL \"carol\" \"example.net\")) \
                 ((\"Carol\" NIL \"carol\" \"example.net\")) ((\"Carol\" NIL \"carol\" \"example.net\")) \
                 ((NIL NIL \"bob\" \"example.org\")) NIL NIL NIL \"<1@example.net>\") \
                 (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1 NIL NIL NIL NIL) 7 \
                 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)",
                inner.len()
            )
        );
        assert_eq!(section(FORWARD, &[2]), Some(inner));
        assert_eq!(section(FORWARD, &[2, 1]), Some("Noon?\r\n"));
        assert_eq!(section(FORWARD, &[2, 2]), None);
        let p = parse(FORWARD.as_bytes());
        let two = find(&p, &[2]).expect("part 2");
        assert!(
            matches!(&two.kind, Kind::Message(m) if FORWARD.get(m.header.clone())
            .is_some_and(|h| h.starts_with("From: Carol") && h.ends_with("\r\n\r\n")))
        );
    }

    #[test]
    fn lf_only_messages_split_the_same_way() {
        let lf = MIXED.replace("\r\n", "\n");
        let p = parse(lf.as_bytes());
        assert_eq!(
            find(&p, &[1]).and_then(|x| lf.get(x.body.clone())),
            Some("See attached.")
        );
        assert!(matches!(&p.kind, Kind::Multipart(v) if v.len() == 2));
    }

    #[test]
    fn nested_multipart_and_missing_close_delimiter() {
        let m = "Content-Type: multipart/mixed; boundary=a\r\n\r\n\
            --a\r\nContent-Type: multipart/alternative; boundary=ab\r\n\r\n\
            --ab\r\n\r\none\r\n--ab\r\n\r\ntwo\r\n\
            --a\r\n\r\nthree\r\n--a--\r\nepilogue\r\n";
        assert_eq!(section(m, &[1, 1]), Some("one"));
        assert_eq!(section(m, &[1, 2]), Some("two"));
        assert_eq!(section(m, &[2]), Some("three"));
        assert_eq!(section(m, &[1, 3]), None);
        let p = parse(m.as_bytes());
        assert_eq!(p.body.end, m.len());
    }

    #[test]
    fn content_fields_need_mime_and_broken_types_default_to_text() {
        let m = "Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n";
        assert_eq!(parse(m.as_bytes()).content.encoding, None);
        let m = "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n";
        assert_eq!(
            parse(m.as_bytes()).content.encoding.as_deref(),
            Some(&b"base64"[..])
        );
        let m = "Content-Type: garbage\r\n\r\nx";
        assert_eq!(
            bs(m, false),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0)"
        );
        let m = "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: x\r\n\r\nhi\r\n--d--\r\n";
        let p = parse(m.as_bytes());
        assert!(matches!(&p.kind, Kind::Multipart(v) if matches!(v[0].kind, Kind::Message(_))));
    }

    #[test]
    fn rfc2231_continuations_are_joined_like_dovecot() {
        let mut lx = Lexer::new(
            b"; key4*=us-ascii''foo; key*2=ba%; key2*0=a; key3*0*=us-ascii'en'xyz; \
              key*0=\"foo\"; key2*1*=b%25; key3*1=plop%; key*1=baz; plain=1",
        );
        let got = params(&mut lx);
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"plain", b"1"),
            (b"key", b"foobazba%"),
            (b"key2*", b"''ab%25"),
            (b"key3*", b"us-ascii'en'xyzplop%25"),
            (b"key4*", b"us-ascii''foo"),
        ];
        let got: Vec<(&[u8], &[u8])> = got
            .iter()
            .map(|(a, b)| (a.as_slice(), b.as_slice()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn unquoted_values_keep_equals_and_slashes() {
        let (_, _, p) =
            content_type(b"multipart/mixed; boundary=----=_Part_1 ; x=a/b").expect("type");
        assert_eq!(
            p,
            vec![
                (b"boundary".to_vec(), b"----=_Part_1".to_vec()),
                (b"x".to_vec(), b"a/b".to_vec())
            ]
        );
    }

    #[test]
    fn transfer_encodings_decode() {
        assert_eq!(base64_decode(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(base64_decode(b"aGk=aGk="), b"hihi");
        assert_eq!(base64_decode(b"a"), b"");
        assert_eq!(
            qp_decode(b"caf=C3=A9  \r\nlong=\r\nline=3D=ZZ=\r\n"),
            "caf\u{e9}\r\nlongline==ZZ".as_bytes()
        );
        assert_eq!(decode(Some(b"x-uuencode"), b"x"), None);
        assert_eq!(decode(Some(b"8BIT"), b"x"), Some(b"x".to_vec()));
        assert_eq!(decode(None, b"x"), Some(b"x".to_vec()));
    }

    #[test]
    fn hostile_nesting_is_bounded() {
        let mut m = String::new();
        for i in 0..500 {
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
            ));
        }
        let p = parse(m.as_bytes());
        let mut depth = 0;
        let mut part = &p;
        while let Kind::Multipart(v) = &part.kind {
            let Some(first) = v.first() else { break };
            part = first;
            depth += 1;
        }
        assert!(depth <= MAX_DEPTH, "{depth}");
        let enc = structure(m.as_bytes(), &p).encode(true);
        assert_eq!(
            enc.iter().filter(|&&b| b == b'(').count(),
            enc.iter().filter(|&&b| b == b')').count()
        );

        let mut many = String::from("Content-Type: multipart/mixed; boundary=x\r\n\r\n");
        for _ in 0..(MAX_PARTS + 50) {
            many.push_str("--x\r\n\r\n.\r\n");
        }
        let p = parse(many.as_bytes());
        assert!(matches!(&p.kind, Kind::Multipart(v) if v.len() == MAX_PARTS));
        assert_eq!(p.body.end, many.len());
    }

    /// Balanced parentheses outside quoted strings and literals, quoted strings without CR
    /// or LF, literals as long as they say.
    fn well_formed(resp: &[u8]) -> bool {
        let mut depth = 0i64;
        let mut i = 0;
        while let Some(&b) = resp.get(i) {
            match b {
                b'"' => {
                    i += 1;
                    loop {
                        match resp.get(i) {
                            None | Some(b'\r' | b'\n') => return false,
                            Some(b'"') => break,
                            Some(b'\\') => i += 2,
                            Some(_) => i += 1,
                        }
                    }
                }
                b'{' => {
                    let Some(close) = resp[i..].iter().position(|&c| c == b'}') else {
                        return false;
                    };
                    let Ok(n) = std::str::from_utf8(&resp[i + 1..i + close])
                        .unwrap_or("x")
                        .parse::<usize>()
                    else {
                        return false;
                    };
                    if resp.get(i + close + 1..i + close + 3) != Some(b"\r\n") {
                        return false;
                    }
                    i += close + 3 + n;
                    if i > resp.len() {
                        return false;
                    }
                    continue;
                }
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth < 0 {
                        return false;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        depth == 0
    }

    fn check_ranges(part: &Part, within: &Range<usize>) {
        assert!(part.header.start <= part.header.end);
        assert_eq!(part.header.end, part.body.start);
        assert!(part.body.start <= part.body.end);
        assert!(within.start <= part.header.start && part.body.end <= within.end);
        match &part.kind {
            Kind::Leaf => {}
            Kind::Multipart(parts) => parts.iter().for_each(|p| check_ranges(p, &part.body)),
            Kind::Message(inner) => {
                assert_eq!(inner.header.start, part.body.start);
                assert_eq!(inner.body.end, part.body.end);
                check_ranges(inner, &part.body);
            }
        }
    }

    fn everything(msg: &[u8]) {
        let p = parse(msg);
        assert_eq!(p.header.start, 0);
        assert_eq!(p.body.end, msg.len());
        check_ranges(&p, &(0..msg.len()));
        for extensible in [true, false] {
            let enc = structure(msg, &p).encode(extensible);
            assert!(well_formed(&enc), "{:?}", String::from_utf8_lossy(&enc));
        }
        let env = Response::Data(Data::Fetch {
            seq: 1,
            items: vec![FetchValue::Envelope(Box::new(message::envelope(
                message::header(msg),
            )))],
        })
        .encode(EncodeOptions::default());
        assert!(well_formed(&env), "{:?}", String::from_utf8_lossy(&env));
        for path in [&[1][..], &[2], &[1, 1], &[2, 1], &[1, 2, 1], &[3, 1, 1]] {
            if let Some(part) = find(&p, path) {
                let body = msg.get(part.body.clone()).unwrap_or_default();
                let _ = decode(part.content.encoding.as_deref(), body);
            }
        }
    }

    fn mime_piece() -> impl Strategy<Value = &'static [u8]> {
        prop_oneof![
            Just(&b"Content-Type: multipart/mixed; boundary=b\r\n"[..]),
            Just(&b"Content-Type: multipart/digest; boundary=\"b\"\r\n"[..]),
            Just(&b"Content-Type: message/rfc822\r\n"[..]),
            Just(&b"Content-Type: text/plain; a*0*=x''%41; a*1=\"(\"\r\n"[..]),
            Just(&b"Content-Transfer-Encoding: quoted-printable\r\n"[..]),
            Just(&b"Content-Disposition: inline; filename=\"\\\"(\"\r\n"[..]),
            Just(&b"Content-Language: en, (x) fi\r\n"[..]),
            Just(&b"From: \"(\" <a@b>, g: c@d;, <@r,@s:e@f> (n\r\n"[..]),
            Just(&b"To: ;:<>@,\"\\\r\n"[..]),
            Just(&b"--b\r\n"[..]),
            Just(&b"--b--\n"[..]),
            Just(&b"\r\n"[..]),
            Just(&b"\n"[..]),
            Just(&b" folded\r\n"[..]),
            Just(&b"\x00\xff{2}\r\n"[..]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_bytes_parse_and_encode_well_formed(
            msg in proptest::collection::vec(any::<u8>(), 0..2000)
        ) {
            everything(&msg);
        }

        #[test]
        fn mime_like_bytes_parse_and_encode_well_formed(
            pieces in proptest::collection::vec(mime_piece(), 0..80)
        ) {
            everything(&pieces.concat());
        }
    }
}
