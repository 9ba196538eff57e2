//! The command reader: literals, continuations, limits, and input cut at every byte.

use ownmail_imap_proto::{CommandReader, ReadError, ReadErrorKind, ReadState};

/// Feeds `input` in the given pieces; returns every non-NeedMore state in order, with the
/// count of continuations requested folded in as `NeedContinuation` entries.
fn run_pieces(r: &mut CommandReader, pieces: &[&[u8]]) -> Vec<ReadState> {
    let mut out = Vec::new();
    for piece in pieces {
        let mut rest = *piece;
        while !rest.is_empty() {
            let (n, state) = r.feed(rest);
            assert!(n <= rest.len());
            rest = rest.get(n..).unwrap_or_default();
            match state {
                ReadState::NeedMore => assert!(rest.is_empty(), "NeedMore left input"),
                other => out.push(other),
            }
        }
    }
    out
}

fn cmd(s: &[u8]) -> ReadState {
    ReadState::Command(s.to_vec())
}

const PIPELINE: &[u8] =
    b"a1 LOGIN {3}\r\njoe {6+}\r\nsecret\r\na2 APPEND INBOX ~{5}\r\nab\r\nc\r\na3 NOOP\n";

fn pipeline_expected() -> Vec<ReadState> {
    vec![
        ReadState::NeedContinuation,
        cmd(b"a1 LOGIN {3}\r\njoe {6+}\r\nsecret"),
        ReadState::NeedContinuation,
        cmd(b"a2 APPEND INBOX ~{5}\r\nab\r\nc"),
        cmd(b"a3 NOOP"),
    ]
}

#[test]
fn pipeline_in_one_piece() {
    let mut r = CommandReader::new(1000, 1000);
    assert_eq!(run_pieces(&mut r, &[PIPELINE]), pipeline_expected());
}

#[test]
fn pipeline_split_at_every_byte() {
    for cut in 0..=PIPELINE.len() {
        let (a, b) = PIPELINE.split_at(cut);
        let mut r = CommandReader::new(1000, 1000);
        assert_eq!(
            run_pieces(&mut r, &[a, b]),
            pipeline_expected(),
            "cut at {cut}"
        );
    }
}

#[test]
fn pipeline_one_byte_at_a_time() {
    let pieces: Vec<&[u8]> = PIPELINE.chunks(1).collect();
    let mut r = CommandReader::new(1000, 1000);
    assert_eq!(run_pieces(&mut r, &pieces), pipeline_expected());
}

#[test]
fn literal_with_braces_and_crlf_inside_is_opaque() {
    let input = b"a1 LOGIN {8}\r\n{2}\r\nxy\n pw\r\n";
    let mut r = CommandReader::new(100, 100);
    assert_eq!(
        run_pieces(&mut r, &[input]),
        vec![
            ReadState::NeedContinuation,
            cmd(b"a1 LOGIN {8}\r\n{2}\r\nxy\n pw")
        ]
    );
}

#[test]
fn zero_length_synchronizing_literal_still_asks_for_continuation() {
    let mut r = CommandReader::new(100, 100);
    assert_eq!(
        run_pieces(&mut r, &[b"a1 LOGIN {0}\r\n pw\r\n"]),
        vec![ReadState::NeedContinuation, cmd(b"a1 LOGIN {0}\r\n pw")]
    );
}

#[test]
fn over_long_line_is_discarded_and_reported_with_its_tag() {
    let mut r = CommandReader::new(10, 100);
    let states = run_pieces(&mut r, &[b"t7 NOOP 0123456789abcdef\r\nt8 NOOP\r\n"]);
    assert_eq!(
        states,
        vec![
            ReadState::Error(ReadError {
                tag: Some("t7".into()),
                kind: ReadErrorKind::LineTooLong
            }),
            cmd(b"t8 NOOP"),
        ]
    );
}

#[test]
fn over_long_line_split_everywhere_resyncs() {
    let input: &[u8] = b"t7 NOOP 0123456789abcdef\r\nt8 NOOP\r\n";
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        let mut r = CommandReader::new(10, 100);
        let states = run_pieces(&mut r, &[a, b]);
        assert_eq!(states.last(), Some(&cmd(b"t8 NOOP")), "cut {cut}");
        assert_eq!(states.len(), 2, "cut {cut}");
    }
}

#[test]
fn synchronizing_literal_too_large_is_refused_at_once() {
    let mut r = CommandReader::new(100, 10);
    let (n, state) = r.feed(b"a1 APPEND INBOX {11}\r\n");
    assert_eq!(n, 22);
    assert_eq!(
        state,
        ReadState::Error(ReadError {
            tag: Some("a1".into()),
            kind: ReadErrorKind::LiteralTooLarge { size: 11 }
        })
    );
    // The client did not send the literal; the next command reads normally.
    assert_eq!(r.feed(b"a2 NOOP\r\n"), (9, cmd(b"a2 NOOP")));
}

#[test]
fn non_synchronizing_literal_too_large_is_skipped_then_reported() {
    let mut r = CommandReader::new(100, 10);
    let input = b"a1 APPEND INBOX {12+}\r\nhello\r\na2 NOOP\r\na3 NOOP\r\n";
    let states = run_pieces(&mut r, &[input]);
    assert_eq!(
        states,
        vec![
            ReadState::Error(ReadError {
                tag: Some("a1".into()),
                kind: ReadErrorKind::LiteralTooLarge { size: 12 }
            }),
            cmd(b"a3 NOOP"),
        ],
        "the 12 literal bytes, which look like a command, must be skipped"
    );
}

#[test]
fn literal_sizes_add_up_against_the_limit() {
    let mut r = CommandReader::new(100, 10);
    let states = run_pieces(&mut r, &[b"a1 LOGIN {6+}\r\nabcdef {6+}\r\nghijkl\r\n"]);
    assert_eq!(
        states,
        vec![ReadState::Error(ReadError {
            tag: Some("a1".into()),
            kind: ReadErrorKind::LiteralTooLarge { size: 6 }
        })]
    );
}

#[test]
fn huge_literal_size_does_not_overflow() {
    let mut r = CommandReader::new(100, 10);
    let (_, state) = r.feed(b"a1 X {99999999999999999999999999}\r\n");
    assert!(matches!(state, ReadState::Error(_)));
}

#[test]
fn feed_line_ignores_literal_syntax() {
    let mut r = CommandReader::new(100, 10);
    assert_eq!(r.feed_line(b"abc{5}\r\nDONE\r\n"), (8, cmd(b"abc{5}")));
    assert_eq!(r.feed_line(b"DONE\r\n"), (6, cmd(b"DONE")));
}

#[test]
fn cr_inside_a_literal_before_a_bare_lf_is_kept() {
    let mut r = CommandReader::new(100, 100);
    assert_eq!(
        run_pieces(&mut r, &[b"a1 X {1+}\r\n\r\n"]),
        vec![cmd(b"a1 X {1+}\r\n\r")]
    );
}
