//! Property tests: no input, however cut, makes a receiver panic or break its bounds.

use ownmail_smtp_proto::{
    parse_command, take_line, BdatReceiver, DataReceiver, DataState, Line, ReplyParser,
};
use proptest::prelude::*;

/// Bytes biased towards what matters to the parsers: line endings, dots, brackets, digits.
fn smtp_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => any::<u8>(),
        2 => Just(b'\r'),
        2 => Just(b'\n'),
        2 => Just(b'.'),
        1 => Just(b' '),
        1 => Just(b'<'),
        1 => Just(b'>'),
        1 => Just(b'@'),
        1 => Just(b'"'),
        1 => Just(b'-'),
        1 => b'0'..=b'9',
        1 => b'a'..=b'z',
    ];
    proptest::collection::vec(byte, 0..max)
}

fn command_like() -> impl Strategy<Value = Vec<u8>> {
    let verb = prop_oneof![
        Just("MAIL FROM:"),
        Just("RCPT TO:"),
        Just("EHLO "),
        Just("BDAT "),
        Just("AUTH "),
        Just("VRFY "),
        Just("DATA"),
        Just(""),
    ];
    (verb, smtp_bytes(80)).prop_map(|(v, rest)| {
        let mut line = v.as_bytes().to_vec();
        line.extend(rest);
        line
    })
}

proptest! {
    #[test]
    fn parse_command_never_panics(line in prop_oneof![smtp_bytes(200), command_like()]) {
        if let Err(e) = parse_command(&line) {
            prop_assert!((500..=555).contains(&e.code));
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn parsed_commands_survive_writing_back(line in command_like()) {
        if let Ok(cmd) = parse_command(&line) {
            prop_assert_eq!(parse_command(&cmd.to_bytes()), Ok(cmd));
        }
    }

    #[test]
    fn take_line_stays_within_its_buffer_and_limit(buf in smtp_bytes(300), max in 0usize..100) {
        match take_line(&buf, max) {
            Line::Complete(line, used) => {
                prop_assert!(line.len() <= max);
                prop_assert!(used <= buf.len() && used > line.len());
                prop_assert_eq!(buf.get(used - 1), Some(&b'\n'));
            }
            Line::TooLong(n) => prop_assert!(n > 0 && n <= buf.len()),
            Line::NeedMore => prop_assert!(buf.len() <= max + 1),
        }
    }

    #[test]
    fn data_receiver_gives_the_same_answer_however_the_input_is_cut(
        input in smtp_bytes(400),
        cuts in proptest::collection::vec(0usize..400, 0..8),
        max in 0u64..500,
    ) {
        let whole = {
            let mut r = DataReceiver::new(max);
            let mut out = Vec::new();
            let (used, state) = r.feed(&input, &mut out);
            prop_assert!(used <= input.len());
            prop_assert!(u64::try_from(out.len()).unwrap_or(u64::MAX) <= max);
            (state, out, used)
        };
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= input.len()).collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        let mut r = DataReceiver::new(max);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let mut start = 0;
        let mut total_used = 0;
        let mut state = DataState::NeedMore;
        for end in cuts {
            buf.extend_from_slice(&input[start..end]);
            start = end;
            let (used, s) = r.feed(&buf, &mut out);
            prop_assert!(used <= buf.len());
            buf.drain(..used);
            total_used += used;
            state = s;
            if s != DataState::NeedMore {
                break;
            }
        }
        prop_assert_eq!(state, whole.0);
        prop_assert_eq!(total_used, whole.2);
        if state != DataState::BareLineEnding {
            prop_assert_eq!(out, whole.1);
        }
    }

    #[test]
    fn bdat_receiver_consumes_exactly_the_chunk(
        input in smtp_bytes(300),
        size in 0u64..400,
        max in 0u64..400,
    ) {
        let mut r = BdatReceiver::new(max);
        let mut out = Vec::new();
        r.start_chunk(size, true);
        let (used, _) = r.feed(&input, &mut out);
        prop_assert_eq!(u64::try_from(used).unwrap_or(u64::MAX), size.min(u64::try_from(input.len()).unwrap_or(u64::MAX)));
        prop_assert!(u64::try_from(out.len()).unwrap_or(u64::MAX) <= max);
    }

    #[test]
    fn reply_parser_never_panics_and_always_progresses(
        input in prop_oneof![smtp_bytes(600), proptest::collection::vec(any::<u8>(), 0..600)],
        chunk in 1usize..64,
    ) {
        let mut p = ReplyParser::new();
        for piece in input.chunks(chunk) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (used, _) = p.feed(rest);
                prop_assert!(used > 0 && used <= rest.len());
                rest = &rest[used..];
            }
        }
    }
}
