//! Cutting command lines out of the input buffer.
//!
//! A command line ends at LF; a CR just before it is part of the terminator (RFC 5321 §2.3.8
//! asks for CRLF, but like Postfix we take a bare LF on command lines: smuggling is only a
//! concern inside DATA, which [`crate::DataReceiver`] handles strictly).

/// What [`take_line`] found at the start of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// One line, without its CRLF or LF, and how many bytes it took from the buffer
    /// (terminator included).
    Complete(Vec<u8>, usize),
    /// No LF yet and still within the limit: read more.
    NeedMore,
    /// The line is longer than the limit. The value is how many bytes to discard: up to and
    /// including the next LF if the buffer holds one (then the next line is in sync), else
    /// everything buffered; in that case keep discarding with [`discard_line`] until it finds
    /// the LF, then reply `500 5.5.2 Line too long` once.
    TooLong(usize),
}

/// Takes the first line of `buf`. `max_len` bounds the line *without* its terminator
/// (RFC 5321 §4.5.3.1.4 gives 512 octets including CRLF as the minimum a server must accept,
/// so a server passes at least 510).
pub fn take_line(buf: &[u8], max_len: usize) -> Line {
    // Only the first max_len + 2 bytes can hold the terminator of an acceptable line.
    let window = buf.get(..max_len.saturating_add(2)).unwrap_or(buf);
    if let Some(lf) = window.iter().position(|&b| b == b'\n') {
        let (line, _) = buf.split_at(lf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > max_len {
            return Line::TooLong(lf + 1);
        }
        return Line::Complete(line.to_vec(), lf + 1);
    }
    // No LF within reach. The line is too long once the buffer holds more than max_len
    // bytes, unless the only extra byte is a CR that may be followed by LF.
    let too_long = buf.len() > max_len.saturating_add(1)
        || (buf.len() == max_len.saturating_add(1) && buf.last() != Some(&b'\r'));
    if too_long {
        let (n, _) = discard_line(buf);
        Line::TooLong(n)
    } else {
        Line::NeedMore
    }
}

/// Skips the rest of an over-long line: returns how many bytes to discard and whether the
/// LF that ends the line was among them (if not, discard them all and call again with more).
pub fn discard_line(buf: &[u8]) -> (usize, bool) {
    match buf.iter().position(|&b| b == b'\n') {
        Some(lf) => (lf + 1, true),
        None => (buf.len(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_and_lf_both_end_a_line() {
        assert_eq!(
            take_line(b"NOOP\r\nQUIT\r\n", 512),
            Line::Complete(b"NOOP".to_vec(), 6)
        );
        assert_eq!(
            take_line(b"NOOP\nQUIT\r\n", 512),
            Line::Complete(b"NOOP".to_vec(), 5)
        );
    }

    #[test]
    fn partial_line_needs_more() {
        assert_eq!(take_line(b"", 10), Line::NeedMore);
        assert_eq!(take_line(b"NOOP", 10), Line::NeedMore);
        assert_eq!(take_line(b"NOOP\r", 10), Line::NeedMore);
    }

    #[test]
    fn line_of_exactly_max_len_is_accepted() {
        assert_eq!(
            take_line(b"abcd\r\n", 4),
            Line::Complete(b"abcd".to_vec(), 6)
        );
        assert_eq!(take_line(b"abcd\n", 4), Line::Complete(b"abcd".to_vec(), 5));
        assert_eq!(take_line(b"abcd\r", 4), Line::NeedMore);
    }

    #[test]
    fn over_long_line_is_discarded_through_its_lf() {
        assert_eq!(take_line(b"abcde\r\nNOOP\r\n", 4), Line::TooLong(7));
        assert_eq!(take_line(b"abcde\nNOOP\r\n", 4), Line::TooLong(6));
        assert_eq!(take_line(b"abcdefgh\nNOOP\r\n", 4), Line::TooLong(9));
    }

    #[test]
    fn over_long_line_without_lf_discards_all_buffered() {
        assert_eq!(take_line(b"abcde", 4), Line::TooLong(5));
        assert_eq!(take_line(b"abcdefghij", 4), Line::TooLong(10));
        assert_eq!(discard_line(b"rest of it"), (10, false));
        assert_eq!(discard_line(b"tail\r\nNOOP"), (6, true));
    }
}
