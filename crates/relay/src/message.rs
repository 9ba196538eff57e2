//! What the relay reads in the message itself: only the `Received:` fields of its header, to
//! detect mail loops (RFC 5321 §6.3).

/// The number of `Received:` fields in the header section (up to the first empty line).
/// Continuation lines start with white space and are not counted; `Received :` (the obsolete
/// syntax of RFC 5322 §4.5, space before the colon) is.
pub(crate) fn received_count(message: &[u8]) -> usize {
    let mut count = 0;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(name) = line.get(..8) else { continue };
        if !name.eq_ignore_ascii_case(b"received") {
            continue;
        }
        let rest = line.get(8..).unwrap_or_default();
        let after_space = rest.iter().find(|&&b| b != b' ' && b != b'\t');
        if after_space == Some(&b':') {
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_fields_of_the_header_only_are_counted() {
        let m = b"Received: from a\r\n\tby b\r\nreceived : x\r\nReceived-SPF: pass\r\n\
X-Received: y\r\nSubject: s\r\n\r\nReceived: in the body\r\n";
        assert_eq!(received_count(m), 2);
        assert_eq!(received_count(b""), 0);
        assert_eq!(received_count(b"\r\nReceived: x\r\n"), 0);
        assert_eq!(received_count(b"Received:"), 1);
    }
}
