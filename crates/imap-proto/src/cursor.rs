//! The lexical layer: atoms, strings, literals, numbers, sequence sets, dates (RFC 3501 §9,
//! RFC 9051 §9). Every method checks bounds; errors are short messages for a `BAD` reply.

use crate::types::{Date, DateTime, SeqNum, SeqRange, SequenceSet, MAX_SEQUENCE_RANGES, MONTHS};
use std::num::NonZeroU32;

pub(crate) type PResult<T> = Result<T, String>;

/// ATOM-CHAR: any CHAR except atom-specials (RFC 3501 §9).
pub(crate) fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// ASTRING-CHAR: ATOM-CHAR or resp-specials.
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// Tag characters: ASTRING-CHAR except "+".
pub(crate) fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn peek_at(&self, off: usize) -> Option<u8> {
        self.buf.get(self.pos.saturating_add(off)).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, b: u8, what: &str) -> PResult<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!("Expected {what}"))
        }
    }

    pub(crate) fn sp(&mut self) -> PResult<()> {
        self.expect(b' ', "space")
    }

    pub(crate) fn end(&self) -> PResult<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err("Unexpected characters at end of command".into())
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.buf.get(start..self.pos).unwrap_or_default()
    }

    /// Whether the next bytes are `word` (ASCII case-insensitive) followed by a non-atom byte.
    pub(crate) fn peek_word(&self, word: &str) -> bool {
        let end = self.pos.saturating_add(word.len());
        match self.buf.get(self.pos..end) {
            Some(s) if s.eq_ignore_ascii_case(word.as_bytes()) => {
                !self.buf.get(end).is_some_and(|&b| is_atom_char(b))
            }
            _ => false,
        }
    }

    pub(crate) fn eat_word(&mut self, word: &str) -> bool {
        if self.peek_word(word) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// A keyword or item name: letters, digits, `.`, `-`, `_`, `$`, uppercased. Stops at `[`.
    pub(crate) fn keyword(&mut self) -> PResult<String> {
        let w = self.take_while(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'$' | b'=')
        });
        if w.is_empty() {
            return Err("Expected a keyword".into());
        }
        Ok(String::from_utf8_lossy(w).to_ascii_uppercase())
    }

    pub(crate) fn atom(&mut self) -> PResult<String> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return Err("Expected an atom".into());
        }
        Ok(String::from_utf8_lossy(a).into_owned())
    }

    pub(crate) fn tag(&mut self) -> PResult<String> {
        let t = self.take_while(is_tag_char);
        if t.is_empty() {
            return Err("Missing or invalid tag".into());
        }
        Ok(String::from_utf8_lossy(t).into_owned())
    }

    /// A flag: `\Name`, `\*` (only where the caller allows) or a keyword atom.
    pub(crate) fn flag_text(&mut self) -> PResult<String> {
        let slash = self.eat(b'\\');
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return Err("Expected a flag".into());
        }
        let s = String::from_utf8_lossy(a);
        Ok(if slash {
            format!("\\{s}")
        } else {
            s.into_owned()
        })
    }

    /// `string`: quoted or literal (`~{N}` binary literals only if `binary`).
    pub(crate) fn string_ext(&mut self, binary: bool) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            Some(b'~') if binary && self.peek_at(1) == Some(b'{') => {
                self.pos += 1;
                self.literal()
            }
            _ => Err("Expected a string".into()),
        }
    }

    pub(crate) fn string(&mut self) -> PResult<Vec<u8>> {
        self.string_ext(false)
    }

    fn quoted(&mut self) -> PResult<Vec<u8>> {
        self.expect(b'"', "a quote")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("Unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return Err("Invalid escape in quoted string".into()),
                    }
                }
                Some(b'\r' | b'\n' | 0) => return Err("Invalid character in quoted string".into()),
                Some(c) => {
                    // 8-bit bytes: UTF-8 in quoted strings is IMAP4rev2 (RFC 9051 §4.3);
                    // the caller checks UTF-8 where it needs text.
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> PResult<Vec<u8>> {
        self.expect(b'{', "a literal")?;
        let digits = self.take_while(|b| b.is_ascii_digit());
        let mut size: usize = 0;
        if digits.is_empty() {
            return Err("Invalid literal size".into());
        }
        for &d in digits {
            size = size
                .checked_mul(10)
                .and_then(|s| s.checked_add(usize::from(d - b'0')))
                .ok_or("Literal size too large")?;
        }
        self.eat(b'+');
        self.expect(b'}', "} after literal size")?;
        self.eat(b'\r');
        self.expect(b'\n', "CRLF after literal size")?;
        let end = self.pos.checked_add(size).ok_or("Literal size too large")?;
        let data = self
            .buf
            .get(self.pos..end)
            .ok_or("Literal shorter than announced")?;
        self.pos = end;
        Ok(data.to_vec())
    }

    /// `astring`: 1*ASTRING-CHAR or string.
    pub(crate) fn astring(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let a = self.take_while(is_astring_char);
                if a.is_empty() {
                    Err("Expected an atom or string".into())
                } else {
                    Ok(a.to_vec())
                }
            }
        }
    }

    pub(crate) fn astring_utf8(&mut self) -> PResult<String> {
        String::from_utf8(self.astring()?).map_err(|_| "Invalid UTF-8".to_string())
    }

    /// `nstring`: NIL or string.
    pub(crate) fn nstring(&mut self) -> PResult<Option<Vec<u8>>> {
        if self.eat_word("NIL") {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    /// `list-mailbox`: 1*list-char or string.
    pub(crate) fn list_mailbox(&mut self) -> PResult<String> {
        let raw = match self.peek() {
            Some(b'"' | b'{') => self.string()?,
            _ => {
                let a = self.take_while(is_list_char);
                if a.is_empty() {
                    return Err("Expected a mailbox pattern".into());
                }
                a.to_vec()
            }
        };
        String::from_utf8(raw).map_err(|_| "Invalid UTF-8 in mailbox pattern".to_string())
    }

    pub(crate) fn number64(&mut self) -> PResult<u64> {
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.is_empty() {
            return Err("Expected a number".into());
        }
        let mut n: u64 = 0;
        for &c in d {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(c - b'0')))
                .ok_or("Number too large")?;
        }
        Ok(n)
    }

    pub(crate) fn number(&mut self) -> PResult<u32> {
        u32::try_from(self.number64()?).map_err(|_| "Number too large".to_string())
    }

    pub(crate) fn nz_number(&mut self) -> PResult<NonZeroU32> {
        NonZeroU32::new(self.number()?).ok_or_else(|| "Zero is not allowed here".to_string())
    }

    fn seq_num(&mut self) -> PResult<SeqNum> {
        if self.eat(b'*') {
            Ok(SeqNum::Star)
        } else {
            self.nz_number().map(SeqNum::Value)
        }
    }

    /// `sequence-set` (RFC 3501 §9), normalised and bounded by [`MAX_SEQUENCE_RANGES`].
    pub(crate) fn sequence_set(&mut self) -> PResult<SequenceSet> {
        let mut ranges = Vec::new();
        loop {
            let a = self.seq_num()?;
            let b = if self.eat(b':') { self.seq_num()? } else { a };
            if ranges.len() >= MAX_SEQUENCE_RANGES {
                return Err("Sequence set too long".into());
            }
            ranges.push(SeqRange::new(a, b));
            if !self.eat(b',') {
                return Ok(SequenceSet(ranges));
            }
        }
    }

    pub(crate) fn peek_is_seq_start(&self) -> bool {
        matches!(self.peek(), Some(b'0'..=b'9' | b'*'))
    }

    fn month(&mut self) -> PResult<u8> {
        let m = self
            .buf
            .get(self.pos..self.pos.saturating_add(3))
            .ok_or("Invalid month")?;
        let i = MONTHS
            .iter()
            .position(|name| name.as_bytes().eq_ignore_ascii_case(m))
            .ok_or("Invalid month")?;
        self.pos += 3;
        u8::try_from(i + 1).map_err(|_| "Invalid month".to_string())
    }

    fn date_text(&mut self) -> PResult<Date> {
        let day = self.take_while(|b| b.is_ascii_digit());
        if day.is_empty() || day.len() > 2 {
            return Err("Invalid date".into());
        }
        let day = day.iter().fold(0u8, |n, &c| n * 10 + (c - b'0'));
        self.expect(b'-', "- in date")?;
        let month = self.month()?;
        self.expect(b'-', "- in date")?;
        let year = self.fixed_digits(4)?;
        let year = u16::try_from(year).map_err(|_| "Invalid year".to_string())?;
        Date::new(year, month, day).ok_or_else(|| "Invalid date".into())
    }

    /// `date`: date-text or the same in quotes.
    pub(crate) fn date(&mut self) -> PResult<Date> {
        if self.eat(b'"') {
            let d = self.date_text()?;
            self.expect(b'"', "closing quote")?;
            Ok(d)
        } else {
            self.date_text()
        }
    }

    fn fixed_digits(&mut self, n: usize) -> PResult<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            match self.peek() {
                Some(c) if c.is_ascii_digit() => {
                    v = v * 10 + u32::from(c - b'0');
                    self.pos += 1;
                }
                _ => return Err("Expected digits".into()),
            }
        }
        Ok(v)
    }

    /// `date-time`: `"dd-Mon-yyyy hh:mm:ss +zzzz"`, the day possibly space-padded.
    pub(crate) fn date_time(&mut self) -> PResult<DateTime> {
        self.expect(b'"', "a quoted date-time")?;
        self.eat(b' ');
        let date = self.date_text()?;
        self.sp()?;
        let hour = self.fixed_digits(2)?;
        self.expect(b':', ": in time")?;
        let minute = self.fixed_digits(2)?;
        self.expect(b':', ": in time")?;
        let second = self.fixed_digits(2)?;
        self.sp()?;
        let neg = match self.peek() {
            Some(b'+') => false,
            Some(b'-') => true,
            _ => return Err("Expected zone".into()),
        };
        self.pos += 1;
        let zh = self.fixed_digits(2)?;
        let zm = self.fixed_digits(2)?;
        self.expect(b'"', "closing quote")?;
        if hour > 23 || minute > 59 || second > 60 || zh > 23 || zm > 59 {
            return Err("Invalid date-time".into());
        }
        let z = i16::try_from(zh * 60 + zm).map_err(|_| "Invalid zone".to_string())?;
        Ok(DateTime {
            date,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            zone_minutes: if neg { -z } else { z },
        })
    }
}
