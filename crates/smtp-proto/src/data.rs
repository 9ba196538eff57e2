//! The `DATA` body receiver (RFC 5321 §4.1.1.4, §4.5.2).
//!
//! Only `CRLF . CRLF` ends the data; the 354 reply is sent at the start of a line, so a body
//! that begins with `. CRLF` is an empty message. Every CR must be followed by LF and every
//! LF preceded by CR (RFC 5321 §2.3.8): anything else is reported at once as
//! [`DataState::BareLineEnding`], because receivers that disagree on what ends the data can
//! be made to accept a second, smuggled message (SPEC §5.1). The receiver keeps its position
//! in a small state machine, so input may be split anywhere across calls to
//! [`DataReceiver::feed`].

/// What [`DataReceiver::feed`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataState {
    /// The end marker has not been seen yet: feed more.
    NeedMore,
    /// `CRLF.CRLF` was seen and consumed; the input after it was not consumed (it is the
    /// next pipelined command). The message is complete in `out`.
    Done,
    /// The end marker was seen, but the message was larger than the limit: its bytes past the
    /// limit were discarded. Reply `552 5.3.4` and read the next command.
    TooBig,
    /// A CR not followed by LF, or an LF not preceded by CR. Reply with a 5xx, queue
    /// nothing, and close the connection: the peer's idea of the end of data is not ours.
    BareLineEnding,
}

/// Where the receiver is within the current line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pos {
    /// At the start of a line (after CRLF, or at the very start).
    LineStart,
    /// Inside a line.
    Middle,
    /// After a CR (at a line start or inside a line); LF must follow.
    Cr,
    /// After a `.` at the start of a line.
    Dot,
    /// After `.` CR at the start of a line; LF ends the data.
    DotCr,
}

/// Reads one message body after the 354 reply. Use a new receiver per message.
#[derive(Clone, Debug)]
pub struct DataReceiver {
    max_size: u64,
    size: u64,
    pos: Pos,
    finished: Option<DataState>,
}

impl DataReceiver {
    /// `max_size` bounds the message after dot-unstuffing, CRLFs included.
    pub fn new(max_size: u64) -> Self {
        DataReceiver {
            max_size,
            size: 0,
            pos: Pos::LineStart,
            finished: None,
        }
    }

    /// The message size so far (after unstuffing), including bytes discarded past the limit.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Feeds bytes received after the 354. Returns how many input bytes it consumed and the
    /// state. Message bytes (dot-unstuffed, line endings kept as received, which are CRLF)
    /// are appended to `out`; of an oversized message, only the first `max_size` bytes are. Once
    /// a state other than `NeedMore` has been returned, every later call returns it again
    /// and consumes nothing.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, DataState) {
        if let Some(state) = self.finished {
            return (0, state);
        }
        let mut i = 0;
        while let Some(rest) = input.get(i..).filter(|r| !r.is_empty()) {
            if self.pos == Pos::Middle {
                // Fast path: copy the run of ordinary bytes up to the next CR or LF.
                let run = rest
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(rest.len());
                let (plain, _) = rest.split_at(run);
                self.emit(plain, out);
                i += run;
                // The run stops at a CR (which needs its LF next) or a bare LF.
                if let Some(&b) = rest.get(run) {
                    i += 1;
                    if b == b'\r' {
                        self.pos = Pos::Cr;
                    } else {
                        return self.finish(i, DataState::BareLineEnding);
                    }
                }
                continue;
            }
            let Some(&b) = rest.first() else { break };
            i += 1;
            match (self.pos, b) {
                (Pos::LineStart, b'.') => self.pos = Pos::Dot,
                (Pos::LineStart | Pos::Middle, b'\r') => self.pos = Pos::Cr,
                (Pos::Dot, b'\r') => self.pos = Pos::DotCr,
                (Pos::Cr, b'\n') => {
                    self.emit(b"\r\n", out);
                    self.pos = Pos::LineStart;
                }
                (Pos::DotCr, b'\n') => {
                    let state = if self.size > self.max_size {
                        DataState::TooBig
                    } else {
                        DataState::Done
                    };
                    return self.finish(i, state);
                }
                // LF without CR: `\n.\n`, `\r\n.\n`, `\n.\r\n` all start here.
                (_, b'\n') => return self.finish(i, DataState::BareLineEnding),
                // CR not followed by LF: `\r.\r`, `\r\n.\r` + data.
                (Pos::Cr | Pos::DotCr, _) => return self.finish(i, DataState::BareLineEnding),
                // A line's first byte (after a stuffed dot, for Dot): RFC 5321 §4.5.2.
                (Pos::LineStart | Pos::Dot | Pos::Middle, _) => {
                    self.emit(&[b], out);
                    self.pos = Pos::Middle;
                }
            }
        }
        (i, DataState::NeedMore)
    }

    /// Appends message bytes while they fit: `out` receives exactly the first `max_size`
    /// bytes of an oversized message, however the input was split.
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let room = usize::try_from(self.max_size.saturating_sub(self.size)).unwrap_or(usize::MAX);
        let (fits, _) = bytes.split_at(room.min(bytes.len()));
        out.extend_from_slice(fits);
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        self.size = self.size.saturating_add(len);
    }

    fn finish(&mut self, consumed: usize, state: DataState) -> (usize, DataState) {
        self.finished = Some(state);
        (consumed, state)
    }
}

/// The client side of DATA (RFC 5321 §4.5.2): every line starting with `.` gets another, and
/// the data ends with CRLF then `.` CRLF. Used by the LMTP and SMTP clients.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_marker_alone_is_an_empty_message() {
        let mut out = Vec::new();
        assert_eq!(
            DataReceiver::new(100).feed(b".\r\nQUIT\r\n", &mut out),
            (3, DataState::Done)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn finished_receiver_consumes_nothing_more() {
        let mut out = Vec::new();
        let mut r = DataReceiver::new(100);
        assert_eq!(r.feed(b"a\r\n.\r\n", &mut out), (6, DataState::Done));
        assert_eq!(r.feed(b"b\r\n.\r\n", &mut out), (0, DataState::Done));
        assert_eq!(out, b"a\r\n");
    }
}
