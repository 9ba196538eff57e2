//! Property tests: no input, however cut, makes the reader or the parser panic or break its
//! bounds; encoders round-trip.

use ownmail_imap_proto::{mutf7_decode, mutf7_encode, parse_command, CommandReader, ReadState};
use proptest::prelude::*;

/// Bytes biased towards IMAP syntax: brackets, braces, quotes, digits, line ends.
fn imap_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => any::<u8>(),
        2 => Just(b'\r'),
        2 => Just(b'\n'),
        2 => Just(b' '),
        1 => Just(b'{'),
        1 => Just(b'}'),
        1 => Just(b'+'),
        1 => Just(b'~'),
        1 => Just(b'('),
        1 => Just(b')'),
        1 => Just(b'['),
        1 => Just(b']'),
        1 => Just(b'<'),
        1 => Just(b'"'),
        1 => Just(b'\\'),
        1 => Just(b'*'),
        1 => Just(b':'),
        1 => b'0'..=b'9',
        1 => b'A'..=b'Z',
    ];
    proptest::collection::vec(byte, 0..max)
}

fn command_like() -> impl Strategy<Value = Vec<u8>> {
    let verb = prop_oneof![
        Just("a1 FETCH "),
        Just("a1 UID FETCH 1:* "),
        Just("a1 SEARCH "),
        Just("a1 UID SEARCH RETURN ("),
        Just("a1 STORE 1 "),
        Just("a1 LIST "),
        Just("a1 APPEND INBOX "),
        Just("a1 SELECT "),
        Just("a1 STATUS INBOX ("),
        Just("a1 LOGIN "),
        Just("a1 ID ("),
        Just("a1 CREATE x (USE ("),
        Just(""),
    ];
    (verb, imap_bytes(80)).prop_map(|(v, rest)| {
        let mut line = v.as_bytes().to_vec();
        line.extend(rest);
        line
    })
}

proptest! {
    #[test]
    fn parser_never_panics(input in prop_oneof![imap_bytes(200), command_like()]) {
        let _ = parse_command(&input);
    }

    #[test]
    fn reader_never_panics_and_stays_bounded(
        input in imap_bytes(400),
        cuts in proptest::collection::vec(0usize..400, 0..6),
        max_line in 1usize..64,
        max_literal in 0u64..64,
    ) {
        let mut r = CommandReader::new(max_line, max_literal);
        let mut pieces = Vec::new();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut last = 0;
        for c in cuts {
            let c = c.min(input.len());
            pieces.push(&input[last..c.max(last)]);
            last = c.max(last);
        }
        pieces.push(&input[last..]);
        for piece in pieces {
            let mut rest = piece;
            while !rest.is_empty() {
                let (n, state) = r.feed(rest);
                prop_assert!(n <= rest.len());
                if let ReadState::Command(cmd) = &state {
                    // Line bytes plus literal bytes, never more than the limits allow.
                    prop_assert!(cmd.len() as u64 <= max_line as u64 + max_literal);
                    let _ = parse_command(cmd);
                }
                if n == 0 {
                    prop_assert!(!matches!(state, ReadState::NeedMore));
                }
                rest = &rest[n..];
            }
        }
    }

    #[test]
    fn mutf7_round_trips(name in "\\PC{0,20}") {
        let wire = mutf7_encode(&name);
        prop_assert!(wire.bytes().all(|b| (0x20..0x7f).contains(&b)));
        prop_assert_eq!(mutf7_decode(&wire), Ok(name));
    }

    #[test]
    fn mutf7_decode_never_panics(s in "[&A-Za-z0-9+,\\- ]{0,30}") {
        let _ = mutf7_decode(&s);
    }
}
