//! The DATA receiver, fed every way the network might cut its input.

use ownmail_smtp_proto::{DataReceiver, DataState};

/// Feeds `input` in pieces cut at `cuts`, as a session would: unconsumed bytes stay at the
/// front of its buffer. Returns the final state, the message and the bytes left unconsumed.
fn feed_split(max: u64, input: &[u8], cuts: &[usize]) -> (DataState, Vec<u8>, Vec<u8>) {
    let mut r = DataReceiver::new(max);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut bounds = cuts.to_vec();
    bounds.push(input.len());
    let mut start = 0;
    for end in bounds {
        buf.extend_from_slice(&input[start..end]);
        start = end;
        let (used, state) = r.feed(&buf, &mut out);
        assert!(used <= buf.len());
        buf.drain(..used);
        if state != DataState::NeedMore {
            buf.extend_from_slice(&input[start..]);
            return (state, out, buf);
        }
    }
    (DataState::NeedMore, out, buf)
}

/// Checks `input` at every single split point and at every pair of split points.
fn check_all_splits(max: u64, input: &[u8], state: DataState, message: &[u8], rest: &[u8]) {
    let shown = String::from_utf8_lossy(input);
    let whole = feed_split(max, input, &[]);
    assert_eq!(whole.0, state, "whole: {shown:?}");
    if state != DataState::BareLineEnding {
        assert_eq!(
            (whole.1.as_slice(), whole.2.as_slice()),
            (message, rest),
            "whole: {shown:?}"
        );
    }
    for i in 0..=input.len() {
        let got = feed_split(max, input, &[i]);
        assert_eq!(got.0, state, "split at {i}: {shown:?}");
        if state != DataState::BareLineEnding {
            assert_eq!(
                (got.1.as_slice(), got.2.as_slice()),
                (message, rest),
                "split at {i}: {shown:?}"
            );
        }
        for j in i..=input.len() {
            assert_eq!(
                feed_split(max, input, &[i, j]).0,
                state,
                "split at {i},{j}: {shown:?}"
            );
        }
    }
    // One byte at a time.
    let every: Vec<usize> = (1..input.len()).collect();
    assert_eq!(
        feed_split(max, input, &every).0,
        state,
        "bytewise: {shown:?}"
    );
}

#[test]
fn message_ends_at_crlf_dot_crlf_at_every_split() {
    check_all_splits(
        1000,
        b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
        DataState::Done,
        b"Subject: hi\r\n\r\nbody\r\n",
        b"QUIT\r\n",
    );
}

#[test]
fn data_starting_with_the_end_marker_is_an_empty_message() {
    check_all_splits(
        1000,
        b".\r\nMAIL FROM:<>\r\n",
        DataState::Done,
        b"",
        b"MAIL FROM:<>\r\n",
    );
}

#[test]
fn leading_dots_are_unstuffed_at_every_split() {
    check_all_splits(
        1000,
        b"..\r\n..leading\r\n.x\r\nmid.dle.\r\n...\r\n.\r\n",
        DataState::Done,
        b".\r\n.leading\r\nx\r\nmid.dle.\r\n..\r\n",
        b"",
    );
}

#[test]
fn dot_line_is_not_the_end_unless_alone() {
    check_all_splits(
        100,
        b"a\r\n. \r\n.\r\n",
        DataState::Done,
        b"a\r\n \r\n",
        b"",
    );
    check_all_splits(100, b"a\r\n.\r\n.\r\n", DataState::Done, b"a\r\n", b".\r\n");
}

#[test]
fn incomplete_data_needs_more() {
    for input in [
        &b""[..],
        b"abc",
        b"abc\r\n",
        b"abc\r\n.",
        b"abc\r\n.\r",
        b"\r\n",
    ] {
        let (state, _, rest) = feed_split(100, input, &[]);
        assert_eq!(state, DataState::NeedMore, "{input:?}");
        assert!(
            rest.is_empty(),
            "everything is consumed while waiting: {input:?}"
        );
    }
}

#[test]
fn smuggling_sequences_are_bare_line_endings_never_the_end() {
    let cases: &[&[u8]] = &[
        b"hello\n.\nMAIL FROM:<evil@x>\r\n.\r\n",
        b"hello\r\n.\nMAIL FROM:<evil@x>\r\n.\r\n",
        b"hello\n.\r\nMAIL FROM:<evil@x>\r\n.\r\n",
        b"hello\r.\rMAIL FROM:<evil@x>\r\n.\r\n",
        b"hello\r\n.\rMAIL FROM:<evil@x>\r\n.\r\n",
        b"\n.\n",
        b".\n",
        b".\rx",
        b"a\rb\r\n.\r\n",
        b"a\nb\r\n.\r\n",
        b"a\r\r\n.\r\n",
        b"a\r\n\n.\r\n",
    ];
    for input in cases {
        check_all_splits(1000, input, DataState::BareLineEnding, b"", b"");
    }
}

#[test]
fn bare_line_ending_is_reported_without_waiting_for_more() {
    let mut r = DataReceiver::new(100);
    let mut out = Vec::new();
    assert_eq!(r.feed(b"abc\n", &mut out), (4, DataState::BareLineEnding));
    let mut r = DataReceiver::new(100);
    assert_eq!(r.feed(b"abc\r", &mut out), (4, DataState::NeedMore));
    assert_eq!(r.feed(b"x", &mut out), (1, DataState::BareLineEnding));
    assert_eq!(
        r.feed(b"\r\n.\r\n", &mut out),
        (0, DataState::BareLineEnding)
    );
}

#[test]
fn oversized_message_is_read_to_its_end_then_too_big() {
    let input = b"0123456789\r\n0123456789\r\n.\r\nQUIT\r\n";
    // `out` holds the first max_size bytes, wherever the input was cut.
    check_all_splits(
        15,
        input,
        DataState::TooBig,
        b"0123456789\r\n012",
        b"QUIT\r\n",
    );
    // The limit is inclusive.
    check_all_splits(
        24,
        input,
        DataState::Done,
        b"0123456789\r\n0123456789\r\n",
        b"QUIT\r\n",
    );
    check_all_splits(
        23,
        input,
        DataState::TooBig,
        b"0123456789\r\n0123456789\r",
        b"QUIT\r\n",
    );
    check_all_splits(0, b"x\r\n.\r\n", DataState::TooBig, b"", b"");
    check_all_splits(0, b".\r\n", DataState::Done, b"", b"");
}

#[test]
fn too_big_output_never_exceeds_the_limit() {
    let mut r = DataReceiver::new(1000);
    let mut out = Vec::new();
    let line = [b'x'; 998];
    for _ in 0..50 {
        let (used, state) = r.feed(&line, &mut out);
        assert_eq!((used, state), (line.len(), DataState::NeedMore));
        assert_eq!(r.feed(b"\r\n", &mut out), (2, DataState::NeedMore));
    }
    assert_eq!(out.len(), 1000);
    assert_eq!(r.feed(b".\r\n", &mut out), (3, DataState::TooBig));
    assert_eq!(r.size(), 50 * 1000);
}

#[test]
fn binary_bytes_other_than_cr_and_lf_pass_through() {
    let mut input: Vec<u8> = (0u8..=255).filter(|b| *b != b'\r' && *b != b'\n').collect();
    input.extend_from_slice(b"\r\n.\r\n");
    let mut want: Vec<u8> = (0u8..=255).filter(|b| *b != b'\r' && *b != b'\n').collect();
    want.extend_from_slice(b"\r\n");
    check_all_splits(1000, &input, DataState::Done, &want, b"");
}

#[test]
fn dot_stuffing_doubles_leading_dots_and_terminates() {
    use ownmail_smtp_proto::dot_stuff;
    assert_eq!(
        dot_stuff(b"a\r\n.b\r\n..c\r\n.\r\n"),
        b"a\r\n..b\r\n...c\r\n..\r\n.\r\n"
    );
    assert_eq!(dot_stuff(b".x"), b"..x\r\n.\r\n");
    assert_eq!(dot_stuff(b""), b".\r\n");
}

#[test]
fn stuffed_data_reads_back_through_the_receiver() {
    use ownmail_smtp_proto::{dot_stuff, DataReceiver, DataState};
    let message = b"Subject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n";
    let wire = dot_stuff(message);
    let mut rx = DataReceiver::new(1 << 20);
    let mut out = Vec::new();
    let (used, state) = rx.feed(&wire, &mut out);
    assert_eq!((used, state), (wire.len(), DataState::Done));
    assert_eq!(out, message);
}
