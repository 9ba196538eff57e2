//! Replies (RFC 5321 §4.2) with enhanced status codes (RFC 2034, RFC 3463): formatting on the
//! server side, a resumable parser on the client side.

use std::fmt;

use crate::command::CommandError;

/// The most bytes [`ReplyParser`] accepts for one (multi-line) reply.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// The most lines [`ReplyParser`] accepts for one reply.
pub const MAX_REPLY_LINES: usize = 1000;

/// One reply: a three-digit code, an optional enhanced status code, one or more lines of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `class.subject.detail`, e.g. `2.1.0`.
    pub enhanced: Option<String>,
    /// The text of each line, without code, enhanced code or line ending.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply. An empty `enhanced` means none (the EHLO reply, the greeting).
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Self {
        Self::multi(code, enhanced, vec![text.into()])
    }

    /// A reply of several lines; an empty list is taken as one empty line.
    pub fn multi(code: u16, enhanced: &str, lines: Vec<String>) -> Self {
        let lines = if lines.is_empty() {
            vec![String::new()]
        } else {
            lines
        };
        let enhanced = (!enhanced.is_empty()).then(|| enhanced.to_string());
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// The reply on the wire: `250-first\r\n250 last\r\n`, the enhanced code after the number on
    /// every line (RFC 2034 §4). CR and LF inside the text become spaces, so text taken from
    /// elsewhere cannot inject reply lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let count = self.lines.len().max(1);
        let empty = String::new();
        for i in 0..count {
            let text = self.lines.get(i).unwrap_or(&empty);
            let sep = if i + 1 == count { ' ' } else { '-' };
            let mut line = format!("{:03}", self.code);
            let mut rest = String::new();
            if let Some(e) = &self.enhanced {
                rest.push_str(e);
            }
            if !text.is_empty() {
                if !rest.is_empty() {
                    rest.push(' ');
                }
                rest.extend(
                    text.chars()
                        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
                );
            }
            // `250` alone is a valid last line; a continuation needs its dash.
            if !rest.is_empty() || sep == '-' {
                line.push(sep);
            }
            line.push_str(&rest);
            line.push_str("\r\n");
            out.extend_from_slice(line.as_bytes());
        }
        out
    }

    /// 2yz or 3yz: positive completion or positive intermediate (RFC 5321 §4.2.1).
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 4yz: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5yz: will never work.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

/// `552 5.3.4 Message too big` style: one line per error.
impl From<CommandError> for Reply {
    fn from(e: CommandError) -> Self {
        Reply::new(e.code, e.enhanced, e.message)
    }
}

/// One line, for logs and bounce messages: `550 5.1.1 first line second line`.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.code)?;
        if let Some(e) = &self.enhanced {
            write!(f, " {e}")?;
        }
        for line in self.lines.iter().filter(|l| !l.is_empty()) {
            write!(f, " {line}")?;
        }
        Ok(())
    }
}

/// The EHLO reply (RFC 5321 §4.1.1.1): `250-hostname greeting`, then one line per extension.
/// No enhanced code: RFC 2034 §3 leaves it off this reply, and clients parse keywords here.
pub fn ehlo_reply(hostname: &str, greeting: &str, extensions: &[String]) -> Reply {
    let first = if greeting.is_empty() {
        hostname.to_string()
    } else {
        format!("{hostname} {greeting}")
    };
    let mut lines = Vec::with_capacity(extensions.len() + 1);
    lines.push(first);
    lines.extend(extensions.iter().cloned());
    Reply::multi(250, "", lines)
}

/// Why a reply could not be read. The connection should be dropped after any of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// A line that does not start with a reply code `[2-5][0-5][0-9]` followed by space,
    /// dash or the end of the line. Holds the line (lossily decoded, cut to 200 bytes).
    Syntax(String),
    /// Lines of one reply with different codes.
    MixedCodes { first: u16, then: u16 },
    /// More than [`MAX_REPLY_BYTES`].
    TooLong,
    /// More than [`MAX_REPLY_LINES`].
    TooManyLines,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Syntax(line) => write!(f, "malformed reply line {line:?}"),
            ReplyError::MixedCodes { first, then } => write!(
                f,
                "reply code changed from {first} to {then} within a reply"
            ),
            ReplyError::TooLong => write!(f, "reply longer than {MAX_REPLY_BYTES} bytes"),
            ReplyError::TooManyLines => write!(f, "reply of more than {MAX_REPLY_LINES} lines"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Reads replies from a server, resumably. Lines may end in CRLF or a bare LF; text that is
/// not UTF-8 is decoded lossily (servers send Latin-1 in the wild).
#[derive(Clone, Debug, Default)]
pub struct ReplyParser {
    /// The current, unfinished line.
    partial: Vec<u8>,
    /// Bytes of the complete lines of the current reply.
    total: usize,
    code: Option<u16>,
    enhanced: Option<String>,
    lines: Vec<String>,
}

impl ReplyParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes from the server. Returns how many it consumed and, once a reply is
    /// complete, the reply; bytes after it are not consumed (the next reply of a pipelined
    /// exchange). After an error the parser starts afresh, but the caller should give up the
    /// connection.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<Result<Reply, ReplyError>>) {
        let mut consumed = 0;
        while let Some(rest) = input.get(consumed..).filter(|r| !r.is_empty()) {
            let lf = rest.iter().position(|&b| b == b'\n');
            let take = lf.map_or(rest.len(), |i| i + 1);
            let (part, _) = rest.split_at(take);
            consumed += take;
            if self.total + self.partial.len() + part.len() > MAX_REPLY_BYTES {
                self.reset();
                return (consumed, Some(Err(ReplyError::TooLong)));
            }
            self.partial.extend_from_slice(part);
            if lf.is_none() {
                break;
            }
            let line = std::mem::take(&mut self.partial);
            self.total += line.len();
            match self.line(&line) {
                Ok(None) => {}
                Ok(Some(reply)) => {
                    self.reset();
                    return (consumed, Some(Ok(reply)));
                }
                Err(e) => {
                    self.reset();
                    return (consumed, Some(Err(e)));
                }
            }
        }
        (consumed, None)
    }

    fn reset(&mut self) {
        *self = Self::default();
    }

    /// Takes one complete line (with its LF); returns the reply if it was the last line.
    fn line(&mut self, raw: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let syntax = || {
            let shown = line.get(..200).unwrap_or(line);
            ReplyError::Syntax(String::from_utf8_lossy(shown).into_owned())
        };
        let (digits, after) = line.split_at(line.len().min(3));
        let code = match *digits {
            [a @ b'2'..=b'5', b @ b'0'..=b'5', c @ b'0'..=b'9'] => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(syntax()),
        };
        let (last, text) = match after.split_first() {
            None => (true, &b""[..]),
            Some((b' ', text)) => (true, text),
            Some((b'-', text)) => (false, text),
            Some(_) => return Err(syntax()),
        };
        if let Some(first) = self.code {
            if first != code {
                return Err(ReplyError::MixedCodes { first, then: code });
            }
        }
        self.code = Some(code);
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let text = String::from_utf8_lossy(text);
        let text = match split_enhanced(&text, code / 100) {
            Some((enhanced, rest)) => {
                self.enhanced.get_or_insert_with(|| enhanced.to_string());
                rest.to_string()
            }
            None => text.into_owned(),
        };
        self.lines.push(text);
        if !last {
            return Ok(None);
        }
        Ok(Some(Reply {
            code,
            enhanced: self.enhanced.take(),
            lines: std::mem::take(&mut self.lines),
        }))
    }
}

/// Splits a leading `class.subject.detail` (RFC 3463 §2: 1-3 digits each) off `text` when its
/// class is 2, 4 or 5 and matches the reply code's first digit.
fn split_enhanced(text: &str, class: u16) -> Option<(&str, &str)> {
    let end = text.find(' ').unwrap_or(text.len());
    let (code, rest) = text.split_at(end);
    let mut parts = code.split('.');
    let c = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    let ok = parts.next().is_none()
        && digits(c, 1)
        && digits(subject, 3)
        && digits(detail, 3)
        && matches!(c, "2" | "4" | "5")
        && c.parse::<u16>().ok() == Some(class);
    ok.then(|| (code, rest.strip_prefix(' ').unwrap_or(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_code_of_another_class_stays_in_the_text() {
        assert_eq!(
            split_enhanced("5.1.1 no such user", 5),
            Some(("5.1.1", "no such user"))
        );
        assert_eq!(split_enhanced("5.1.1 no such user", 4), None);
        assert_eq!(split_enhanced("mx.example.org ESMTP", 2), None);
        assert_eq!(split_enhanced("2.0.0", 2), Some(("2.0.0", "")));
        assert_eq!(split_enhanced("2.0.0.1 x", 2), None);
    }
}
