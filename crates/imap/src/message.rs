//! Helpers over one message's bytes and metadata: flags between store and protocol,
//! INTERNALDATE, header/body split and header fields (RFC 5322 §2.2, §3.5), the lexical
//! tokens of structured fields (§3.2) and the ENVELOPE built from them (RFC 3501 §7.4.2).
//!
//! Everything here takes any bytes: malformed headers give partial or defaulted values,
//! never a panic, and every loop advances by at least one byte.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ownmail_imap_proto::{Address, Date, DateTime, Envelope, Flag};
use ownmail_mailstore::Flags;

/// The flags of a message as IMAP names them.
pub(crate) fn to_imap_flags(f: &Flags) -> Vec<Flag> {
    let mut out = Vec::new();
    if f.answered {
        out.push(Flag::Answered);
    }
    if f.flagged {
        out.push(Flag::Flagged);
    }
    if f.deleted {
        out.push(Flag::Deleted);
    }
    if f.seen {
        out.push(Flag::Seen);
    }
    if f.draft {
        out.push(Flag::Draft);
    }
    out.extend(f.keywords.iter().map(|k| Flag::Keyword(k.clone())));
    out
}

/// Sets (`on`) or clears one IMAP flag. `\Recent` and unknown system flags are ignored:
/// neither can be stored (RFC 3501 §2.3.2).
pub(crate) fn apply_flag(f: &mut Flags, flag: &Flag, on: bool) {
    match flag {
        Flag::Answered => f.answered = on,
        Flag::Flagged => f.flagged = on,
        Flag::Deleted => f.deleted = on,
        Flag::Seen => f.seen = on,
        Flag::Draft => f.draft = on,
        Flag::Keyword(k) => {
            if on {
                f.keywords.insert(k.clone());
            } else {
                f.keywords.retain(|x| !x.eq_ignore_ascii_case(k));
            }
        }
        Flag::Recent | Flag::Extension(_) => {}
    }
}

pub(crate) fn from_imap_flags(flags: &[Flag]) -> Flags {
    let mut f = Flags::default();
    for flag in flags {
        apply_flag(&mut f, flag, true);
    }
    f
}

/// Days since 1970-01-01 to (year, month, day) (the civil-from-days algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// INTERNALDATE in UTC.
pub(crate) fn to_datetime(t: SystemTime) -> DateTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    DateTime {
        date: Date {
            year: u16::try_from(y.clamp(0, 9999)).unwrap_or(1970),
            month: u8::try_from(m).unwrap_or(1),
            day: u8::try_from(d).unwrap_or(1),
        },
        hour: u8::try_from(rem / 3600).unwrap_or(0),
        minute: u8::try_from(rem % 3600 / 60).unwrap_or(0),
        second: u8::try_from(rem % 60).unwrap_or(0),
        zone_minutes: 0,
    }
}

/// An APPEND date-time as a point in time (before 1970 is clamped to 1970).
pub(crate) fn from_datetime(dt: &DateTime) -> SystemTime {
    let days = days_from_civil(
        i64::from(dt.date.year),
        u32::from(dt.date.month),
        u32::from(dt.date.day),
    );
    let secs = days * 86_400
        + i64::from(dt.hour) * 3600
        + i64::from(dt.minute) * 60
        + i64::from(dt.second)
        - i64::from(dt.zone_minutes) * 60;
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Where the header ends: the length of the header including the empty line.
pub(crate) fn header_len(msg: &[u8]) -> usize {
    let mut i = 0;
    while i < msg.len() {
        let rest = msg.get(i..).unwrap_or_default();
        if rest.starts_with(b"\r\n") {
            return i + 2;
        }
        if rest.starts_with(b"\n") {
            return i + 1;
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(p) => i += p + 1,
            None => return msg.len(),
        }
    }
    msg.len()
}

pub(crate) fn header(msg: &[u8]) -> &[u8] {
    msg.get(..header_len(msg)).unwrap_or(msg)
}

pub(crate) fn text(msg: &[u8]) -> &[u8] {
    msg.get(header_len(msg)..).unwrap_or_default()
}

/// The header's fields, each as (name, whole raw field with its continuation lines).
pub(crate) fn fields(msg: &[u8]) -> Vec<(&[u8], &[u8])> {
    let h = header(msg);
    let mut out: Vec<(&[u8], &[u8])> = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < h.len() {
        let line_end = h
            .get(i..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
            .map_or(h.len(), |p| i + p + 1);
        let first = h.get(i).copied().unwrap_or(b'\n');
        let blank = first == b'\r' || first == b'\n';
        let cont = first == b' ' || first == b'\t';
        if !cont {
            if let Some(s) = start.take() {
                push_field(h, s, i, &mut out);
            }
            if !blank {
                start = Some(i);
            }
        }
        i = line_end;
    }
    if let Some(s) = start {
        push_field(h, s, h.len(), &mut out);
    }
    out
}

fn push_field<'a>(h: &'a [u8], s: usize, e: usize, out: &mut Vec<(&'a [u8], &'a [u8])>) {
    if let Some(raw) = h.get(s..e) {
        let name_end = raw.iter().position(|&b| b == b':').unwrap_or(0);
        let name = raw.get(..name_end).unwrap_or_default();
        if !name.is_empty() {
            out.push((name, raw));
        }
    }
}

/// The unfolded values of the fields named `name`, joined by newlines.
pub(crate) fn field_values(msg: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, raw) in fields(msg) {
        if n.eq_ignore_ascii_case(name.as_bytes()) {
            let value = raw.get(n.len() + 1..).unwrap_or_default();
            out.extend(value.iter().filter(|&&b| b != b'\r' && b != b'\n'));
            out.push(b'\n');
        }
    }
    out
}

/// HEADER.FIELDS / HEADER.FIELDS.NOT (RFC 3501 §6.4.5): the chosen fields and an empty line.
pub(crate) fn header_fields(msg: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, raw) in fields(msg) {
        let listed = names.iter().any(|x| x.as_bytes().eq_ignore_ascii_case(n));
        if listed != not {
            out.extend_from_slice(raw);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The name of a raw field: what precedes the colon, without the whitespace some senders
/// put before it (RFC 5322 §4.5.1 obs-optional).
pub(crate) fn field_name(name: &[u8]) -> &[u8] {
    let end = name
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |p| p + 1);
    name.get(..end).unwrap_or_default()
}

/// The value of the first field named `name` in `header`, unfolded for display in a
/// response: CR and LF removed (RFC 5322 §2.2.3), the whitespace after the colon dropped,
/// NUL written as 0x80 (IMAP strings may not carry NUL, RFC 3501 §9 CHAR8; Dovecot does the
/// same). `None` when there is no such field.
pub(crate) fn first_field(header: &[u8], name: &str) -> Option<Vec<u8>> {
    let (n, raw) = fields(header)
        .into_iter()
        .find(|(n, _)| field_name(n).eq_ignore_ascii_case(name.as_bytes()))?;
    let value = raw.get(n.len() + 1..).unwrap_or_default();
    Some(clean_value(value))
}

/// Unfolds and cleans a raw field value (see [`first_field`]).
pub(crate) fn clean_value(value: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = value
        .iter()
        .filter(|&&b| b != b'\r' && b != b'\n')
        .map(|&b| if b == 0 { 0x80 } else { b })
        .collect();
    let lead = out
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(out.len());
    out.drain(..lead);
    out
}

/// RFC 5322 §3.2.3 `atext`, plus 8-bit bytes (RFC 6532 allows UTF-8; older mail has raw
/// Latin-1 — either way it is text, not a delimiter).
pub(crate) fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// RFC 2045 §5.1 `token`: no space, no control, no tspecial. (Dovecot's MIME token is the
/// same set: atext and `.`, without `/`, `?` and `=`.)
pub(crate) fn is_mime_token(b: u8) -> bool {
    (is_atext(b) || b == b'.') && b != b'/' && b != b'?' && b != b'='
}

/// A cursor over one unfolded structured field value (RFC 5322 §3.2, RFC 2045 §5.1).
/// Lenient: an unterminated comment or quoted string runs to the end of the value.
pub(crate) struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    /// The text of the last comment skipped (an address's display name when it has no phrase:
    /// `bob@example.org (Bob)`).
    pub last_comment: Vec<u8>,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Lexer<'a> {
        Lexer {
            s,
            pos: 0,
            last_comment: Vec::new(),
        }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos.min(self.s.len());
    }

    /// Consumes `b` if it is next.
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips whitespace and comments (CFWS). Comments nest; the nesting is counted, not
    /// recursed into.
    pub(crate) fn skip_cfws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => self.comment(),
                _ => return,
            }
        }
    }

    fn comment(&mut self) {
        let mut depth = 0usize;
        let mut text = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'(' => {
                    if depth > 0 {
                        text.push(b);
                    }
                    depth += 1;
                }
                b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                    text.push(b);
                }
                b'\\' => {
                    if let Some(n) = self.peek() {
                        text.push(n);
                        self.pos += 1;
                    }
                }
                _ => text.push(b),
            }
        }
        self.last_comment = text;
    }

    /// A quoted string at the cursor (which must be at `"`), unescaped.
    pub(crate) fn quoted(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.eat(b'"') {
            return out;
        }
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.pos += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        out
    }

    /// The longest run of bytes for which `ok` holds (possibly empty).
    pub(crate) fn run(&mut self, ok: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&ok) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or_default()
    }

    /// An RFC 2045 token (possibly empty).
    pub(crate) fn token(&mut self) -> &'a [u8] {
        self.run(is_mime_token)
    }

    /// A phrase (RFC 5322 §3.2.5, with obs-phrase's `.`): words joined by one space, quoted
    /// strings unquoted, encoded-words left as they are (clients decode them).
    fn phrase(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            self.skip_cfws();
            let word = match self.peek() {
                Some(b'"') => self.quoted(),
                Some(b) if is_atext(b) || b == b'.' => {
                    self.run(|b| is_atext(b) || b == b'.').to_vec()
                }
                _ => return out,
            };
            if !out.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(&word);
        }
    }

    /// `local-part` (dot-atom, quoted string, or obs-local-part's words and dots).
    fn local_part(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            self.skip_cfws();
            match self.peek() {
                Some(b'"') => out.extend(self.quoted()),
                Some(b) if is_atext(b) => out.extend_from_slice(self.run(is_atext)),
                _ => return out,
            }
            self.skip_cfws();
            if !self.eat(b'.') {
                return out;
            }
            out.push(b'.');
        }
    }

    /// `domain` after the `@`: a dot-atom or a `[domain literal]`.
    fn domain(&mut self) -> Vec<u8> {
        self.skip_cfws();
        if self.peek() == Some(b'[') {
            let mut v = self.run(|b| b != b']').to_vec();
            if self.eat(b']') {
                v.push(b']');
            }
            return v;
        }
        let mut out = Vec::new();
        loop {
            self.skip_cfws();
            out.extend_from_slice(self.run(is_atext));
            self.skip_cfws();
            if !self.eat(b'.') {
                return out;
            }
            out.push(b'.');
        }
    }
}

/// Most addresses taken from one field; the rest are dropped.
const MAX_ADDRESSES: usize = 1000;

/// An address list (RFC 5322 §3.4) as ENVELOPE writes it (RFC 3501 §7.4.2): each mailbox
/// as (name adl mailbox host); a group as (NIL NIL "name" NIL), its members, then
/// (NIL NIL NIL NIL). Missing parts are filled in as Dovecot does (`MISSING_MAILBOX`,
/// `MISSING_DOMAIN`; a broken `<…>` gets host `SYNTAX_ERROR`) so clients still see
/// something.
pub(crate) fn addresses(value: &[u8]) -> Vec<Address> {
    let mut lx = Lexer::new(value);
    let mut out = Vec::new();
    while out.len() < MAX_ADDRESSES {
        lx.skip_cfws();
        if lx.at_end() {
            break;
        }
        if lx.eat(b',') {
            continue;
        }
        let start = lx.pos();
        let name = lx.phrase();
        lx.skip_cfws();
        if lx.eat(b':') {
            // group = display-name ":" [group-list] ";"
            out.push(Address {
                mailbox: Some(name),
                ..Address::default()
            });
            loop {
                lx.skip_cfws();
                if lx.at_end() || lx.eat(b';') || out.len() >= MAX_ADDRESSES {
                    break;
                }
                if lx.eat(b',') {
                    continue;
                }
                push_mailbox(&mut lx, &mut out);
            }
            out.push(Address::default());
        } else {
            lx.set_pos(start);
            push_mailbox(&mut lx, &mut out);
        }
    }
    out
}

/// Parses one mailbox into `out`; a byte that cannot start one is skipped instead.
fn push_mailbox(lx: &mut Lexer, out: &mut Vec<Address>) {
    let start = lx.pos();
    let a = mailbox(lx);
    if lx.pos() == start {
        lx.set_pos(start + 1);
    } else {
        out.push(a);
    }
}

/// One `mailbox`: `[display-name] <[@route:]local@domain>` or `local@domain (comment)`.
fn mailbox(lx: &mut Lexer) -> Address {
    let start = lx.pos();
    let phrase = lx.phrase();
    lx.skip_cfws();
    let mut a = Address::default();
    if lx.eat(b'<') {
        a.name = (!phrase.is_empty()).then_some(phrase);
        lx.skip_cfws();
        if lx.peek() == Some(b'@') {
            // obs-route = obs-domain-list ":"
            let mut route = Vec::new();
            while lx.eat(b'@') {
                if !route.is_empty() {
                    route.push(b',');
                }
                route.push(b'@');
                route.extend(lx.domain());
                lx.skip_cfws();
                while lx.eat(b',') {
                    lx.skip_cfws();
                }
            }
            lx.eat(b':');
            a.adl = Some(route);
        }
        let local = lx.local_part();
        a.mailbox = (!local.is_empty()).then_some(local);
        lx.skip_cfws();
        if lx.eat(b'@') {
            let d = lx.domain();
            a.host = (!d.is_empty()).then_some(d);
        }
        lx.skip_cfws();
        if !lx.eat(b'>') {
            a.host = Some(b"SYNTAX_ERROR".to_vec());
            // Resynchronise at the end of the broken address.
            lx.run(|b| b != b',' && b != b'>' && b != b';');
            lx.eat(b'>');
        }
    } else {
        lx.set_pos(start);
        lx.last_comment.clear();
        let local = lx.local_part();
        a.mailbox = (!local.is_empty()).then_some(local);
        lx.skip_cfws();
        if lx.eat(b'@') {
            let d = lx.domain();
            a.host = (!d.is_empty()).then_some(d);
        }
        lx.skip_cfws();
        if !lx.last_comment.is_empty() {
            a.name = Some(std::mem::take(&mut lx.last_comment));
        }
    }
    if a.mailbox.is_none() {
        a.mailbox = Some(b"MISSING_MAILBOX".to_vec());
    }
    if a.host.is_none() {
        a.host = Some(b"MISSING_DOMAIN".to_vec());
    }
    a
}

/// ENVELOPE of a message (or of an encapsulated message) from its header (RFC 3501
/// §7.4.2). The first of repeated fields counts. Sender and Reply-To default to From when
/// absent or empty, as RFC 3501 asks.
pub(crate) fn envelope(header: &[u8]) -> Envelope {
    let addrs = |name| {
        first_field(header, name)
            .map(|v| addresses(&v))
            .unwrap_or_default()
    };
    let from = addrs("From");
    let mut sender = addrs("Sender");
    if sender.is_empty() {
        sender.clone_from(&from);
    }
    let mut reply_to = addrs("Reply-To");
    if reply_to.is_empty() {
        reply_to.clone_from(&from);
    }
    Envelope {
        date: first_field(header, "Date"),
        subject: first_field(header, "Subject"),
        from,
        sender,
        reply_to,
        to: addrs("To"),
        cc: addrs("Cc"),
        bcc: addrs("Bcc"),
        in_reply_to: first_field(header, "In-Reply-To"),
        message_id: first_field(header, "Message-ID"),
    }
}

/// Case-insensitive (ASCII) substring search over raw bytes.
pub(crate) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let dt = to_datetime(t);
        assert_eq!((dt.date.year, dt.date.month, dt.date.day), (2023, 11, 14));
        assert_eq!((dt.hour, dt.minute, dt.second), (22, 13, 20));
        assert_eq!(from_datetime(&dt), t);
    }

    #[test]
    fn header_fields_keep_continuations() {
        let m = b"From: a\r\nSubject: x\r\n  y\r\nTo: b\r\n\r\nbody\r\n";
        assert_eq!(
            header_fields(m, &["subject".into()], false),
            b"Subject: x\r\n  y\r\n\r\n"
        );
        assert_eq!(text(m), b"body\r\n");
        assert_eq!(field_values(m, "SUBJECT"), b" x  y\n");
    }

    fn addr(
        name: Option<&str>,
        adl: Option<&str>,
        mailbox: Option<&str>,
        host: Option<&str>,
    ) -> Address {
        let b = |s: Option<&str>| s.map(|s| s.as_bytes().to_vec());
        Address {
            name: b(name),
            adl: b(adl),
            mailbox: b(mailbox),
            host: b(host),
        }
    }

    #[test]
    fn addresses_of_every_shape() {
        let cases: &[(&str, Vec<Address>)] = &[
            (
                "\"Smith, Bob\" <bob@example.org>",
                vec![addr(
                    Some("Smith, Bob"),
                    None,
                    Some("bob"),
                    Some("example.org"),
                )],
            ),
            (
                "bob@example.org (Bob Smith), <alice@example.net>",
                vec![
                    addr(Some("Bob Smith"), None, Some("bob"), Some("example.org")),
                    addr(None, None, Some("alice"), Some("example.net")),
                ],
            ),
            (
                "=?utf-8?q?J=C3=B6rg?= <\"j. r\"@[192.0.2.1]>",
                vec![addr(
                    Some("=?utf-8?q?J=C3=B6rg?="),
                    None,
                    Some("j. r"),
                    Some("[192.0.2.1]"),
                )],
            ),
            (
                "Old <@relay.example,@b.example:joe@example.com>",
                vec![addr(
                    Some("Old"),
                    Some("@relay.example,@b.example"),
                    Some("joe"),
                    Some("example.com"),
                )],
            ),
            (
                "undisclosed-recipients:;",
                vec![
                    addr(None, None, Some("undisclosed-recipients"), None),
                    Address::default(),
                ],
            ),
            (
                "team: a@x, B <b@y>; c@z",
                vec![
                    addr(None, None, Some("team"), None),
                    addr(None, None, Some("a"), Some("x")),
                    addr(Some("B"), None, Some("b"), Some("y")),
                    Address::default(),
                    addr(None, None, Some("c"), Some("z")),
                ],
            ),
            (
                "alice, John Q. Public <jqp@example.org>",
                vec![
                    addr(None, None, Some("alice"), Some("MISSING_DOMAIN")),
                    addr(
                        Some("John Q. Public"),
                        None,
                        Some("jqp"),
                        Some("example.org"),
                    ),
                ],
            ),
            (
                "Broken <bob@example.org",
                vec![addr(
                    Some("Broken"),
                    None,
                    Some("bob"),
                    Some("SYNTAX_ERROR"),
                )],
            ),
            ("", vec![]),
            (" (just a comment) ", vec![]),
        ];
        for (value, want) in cases {
            assert_eq!(&addresses(value.as_bytes()), want, "{value}");
        }
    }

    #[test]
    fn envelope_defaults_sender_and_reply_to_to_from() {
        let h = b"Subject: a\r\n\tb\r\nFrom: x@y\r\nReply-To:\r\nDate:  Mon, 1 Jan 2024\r\n\r\n";
        let e = envelope(h);
        assert_eq!(e.subject.as_deref(), Some(&b"a\tb"[..]));
        assert_eq!(e.date.as_deref(), Some(&b"Mon, 1 Jan 2024"[..]));
        assert_eq!(e.from, vec![addr(None, None, Some("x"), Some("y"))]);
        assert_eq!(e.sender, e.from);
        assert_eq!(e.reply_to, e.from);
        assert!(e.to.is_empty() && e.message_id.is_none());
    }

    #[test]
    fn garbage_addresses_end() {
        let junk: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let list = addresses(&junk);
        assert!(list.len() <= MAX_ADDRESSES);
        let many = "a@b,".repeat(5000);
        assert_eq!(addresses(many.as_bytes()).len(), MAX_ADDRESSES);
    }
}
