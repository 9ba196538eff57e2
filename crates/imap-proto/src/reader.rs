//! Cutting whole commands, literals included, out of the client's byte stream.
//!
//! An IMAP command is a line that may end in a literal marker `{N}` (synchronizing), `{N+}`
//! (LITERAL+, RFC 7888) or `~{N}` (binary, RFC 3516); the N bytes follow the marker's CRLF and
//! the command line continues after them (RFC 3501 §4.3, §7.5). The reader hands back the whole
//! command exactly as sent (markers and literal bytes inline, final CRLF removed), which
//! [`crate::parse_command`] then reads.
//!
//! Limits: `max_line` bounds the line bytes of one command (all its line parts, terminators
//! included); `max_literal` bounds the sum of its literals. Over a limit, the reader discards
//! the rest of the command by itself (following literal markers so that a LITERAL+ payload is
//! not mistaken for commands) and reports [`ReadState::Error`] once, at the end of the command,
//! or at once when a synchronizing literal is refused (the client then waits for our tagged
//! `BAD`/`NO` instead of a continuation and sends nothing more for that command).

/// The longest literal marker we need to recognise: `{18446744073709551615+}\r` plus room.
const TAIL: usize = 32;

/// A resumable reader of IMAP commands. See the module documentation.
#[derive(Debug, Clone)]
pub struct CommandReader {
    max_line: usize,
    max_literal: u64,
    buf: Vec<u8>,
    line_bytes: usize,
    literal_bytes: u64,
    literal_left: u64,
    tail: Vec<u8>,
    error: Option<ReadErrorKind>,
    tag: Option<String>,
}

/// What [`CommandReader::feed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadState {
    /// All input was consumed and the command is not complete yet: read more.
    NeedMore,
    /// A synchronizing literal `{N}` was announced: send `+ Ready` (a continuation request),
    /// then feed the literal as it arrives. The reader already consumed the marker line.
    NeedContinuation,
    /// One whole command, as sent (literals inline), without its final CRLF. Bytes after it
    /// were not consumed and belong to the next command.
    Command(Vec<u8>),
    /// The command broke a limit and has been discarded; answer `tag BAD …` (or `* BAD` when
    /// no tag could be read). Bytes after it belong to the next command.
    Error(ReadError),
}

/// A command refused by the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// The command's tag, when it was read before the limit was hit.
    pub tag: Option<String>,
    /// Which limit.
    pub kind: ReadErrorKind,
}

/// Which limit a command broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadErrorKind {
    /// The command's line parts exceed `max_line` bytes.
    LineTooLong,
    /// Its literals add up to more than `max_literal` bytes (`size` is the refused literal's).
    LiteralTooLarge { size: u64 },
}

impl std::fmt::Display for ReadErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadErrorKind::LineTooLong => f.write_str("Command line too long"),
            ReadErrorKind::LiteralTooLarge { size } => {
                write!(f, "Literal of {size} bytes too large")
            }
        }
    }
}

struct Marker {
    size: u64,
    sync: bool,
}

impl Default for CommandReader {
    /// [`crate::DEFAULT_MAX_LINE`] and [`crate::DEFAULT_MAX_LITERAL`].
    fn default() -> Self {
        CommandReader::new(crate::DEFAULT_MAX_LINE, crate::DEFAULT_MAX_LITERAL)
    }
}

impl CommandReader {
    /// A reader with the given limits (see the module documentation).
    pub fn new(max_line: usize, max_literal: u64) -> Self {
        CommandReader {
            max_line,
            max_literal,
            buf: Vec::new(),
            line_bytes: 0,
            literal_bytes: 0,
            literal_left: 0,
            tail: Vec::with_capacity(TAIL),
            error: None,
            tag: None,
        }
    }

    /// Feeds bytes; returns how many were consumed and what was found. Call again with the
    /// unconsumed rest after acting on a `Command`, `Error` or `NeedContinuation`.
    pub fn feed(&mut self, input: &[u8]) -> (usize, ReadState) {
        self.run(input, true)
    }

    /// Like [`feed`](Self::feed), but for lines that are not commands and have no literals:
    /// SASL responses during AUTHENTICATE (RFC 3501 §6.2.2) and `DONE` after IDLE.
    pub fn feed_line(&mut self, input: &[u8]) -> (usize, ReadState) {
        self.run(input, false)
    }

    /// Whether part of a command is buffered (for an idle timeout's choice of words).
    pub fn is_mid_command(&self) -> bool {
        self.line_bytes > 0 || self.literal_left > 0
    }

    fn run(&mut self, input: &[u8], literals: bool) -> (usize, ReadState) {
        let mut i = 0;
        while i < input.len() {
            if self.literal_left > 0 {
                let rest = input.get(i..).unwrap_or_default();
                let take = usize::try_from(self.literal_left)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                let chunk = rest.get(..take).unwrap_or_default();
                if self.error.is_none() {
                    self.buf.extend_from_slice(chunk);
                }
                i += take;
                self.literal_left -= take as u64;
                continue;
            }
            let Some(&b) = input.get(i) else { break };
            i += 1;
            if self.error.is_none() {
                self.line_bytes += 1;
                if self.line_bytes > self.max_line {
                    self.fail(ReadErrorKind::LineTooLong);
                } else {
                    self.buf.push(b);
                }
            } else {
                self.line_bytes = self.line_bytes.saturating_add(1);
            }
            if b != b'\n' {
                if self.tail.len() >= TAIL {
                    self.tail.remove(0);
                }
                self.tail.push(b);
                continue;
            }
            let marker = if literals {
                literal_marker(&self.tail)
            } else {
                None
            };
            let cr = self.tail.last() == Some(&b'\r');
            self.tail.clear();
            let Some(Marker { size, sync }) = marker else {
                return (i, self.finish(cr));
            };
            if self.error.is_none() {
                let total = self.literal_bytes.saturating_add(size);
                if total > self.max_literal {
                    self.fail(ReadErrorKind::LiteralTooLarge { size });
                } else {
                    self.literal_bytes = total;
                }
            }
            if sync && self.error.is_some() {
                // We will not send "+": the client abandons the command (RFC 3501 §7.5).
                return (i, self.finish(false));
            }
            self.literal_left = size;
            if sync {
                return (i, ReadState::NeedContinuation);
            }
        }
        (i, ReadState::NeedMore)
    }

    fn fail(&mut self, kind: ReadErrorKind) {
        if self.error.is_none() {
            self.tag = tag_of(&self.buf);
            self.error = Some(kind);
            self.buf = Vec::new();
        }
    }

    fn finish(&mut self, cr: bool) -> ReadState {
        let mut buf = std::mem::take(&mut self.buf);
        let error = self.error.take();
        let tag = self.tag.take();
        self.line_bytes = 0;
        self.literal_bytes = 0;
        self.literal_left = 0;
        self.tail.clear();
        if let Some(kind) = error {
            return ReadState::Error(ReadError { tag, kind });
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if cr && buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        ReadState::Command(buf)
    }
}

/// The tag at the start of a partial command, if it is complete and valid.
fn tag_of(buf: &[u8]) -> Option<String> {
    let end = buf.iter().position(|&b| b == b' ')?;
    let tag = buf.get(..end)?;
    if tag.is_empty() || !tag.iter().all(|&b| crate::cursor::is_tag_char(b)) {
        return None;
    }
    String::from_utf8(tag.to_vec()).ok()
}

/// Recognises `{N}`, `{N+}` at the end of a line (before its CR, if any).
fn literal_marker(line: &[u8]) -> Option<Marker> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let body = inner.get(open + 1..)?;
    let (digits, sync) = match body.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (body, true),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut size: u64 = 0;
    for &d in digits {
        size = size.saturating_mul(10).saturating_add(u64::from(d - b'0'));
    }
    Some(Marker { size, sync })
}
