//! BDAT chunks (RFC 3030).

use ownmail_smtp_proto::{BdatReceiver, BdatState};

#[test]
fn chunk_takes_exactly_its_size_and_leaves_the_next_command() {
    let mut r = BdatReceiver::new(100);
    let mut out = Vec::new();
    r.start_chunk(7, false);
    assert_eq!(r.feed(b"abc", &mut out), (3, BdatState::NeedMore));
    assert_eq!(
        r.feed(b"\r\n.\r\nBDAT 0 LAST\r\n", &mut out),
        (4, BdatState::ChunkDone { last: false })
    );
    assert_eq!(out, b"abc\r\n.\r", "no unstuffing, no end marker");
    r.start_chunk(0, true);
    assert_eq!(
        r.feed(b"", &mut out),
        (0, BdatState::ChunkDone { last: true })
    );
    assert_eq!(r.total(), 7);
}

#[test]
fn chunks_accumulate_at_every_split() {
    let body: &[u8] = b"line one\r\n.dot stays\r\nbare\nlf and \r cr\x00\xff";
    for cut in 0..=body.len() {
        let mut r = BdatReceiver::new(1000);
        let mut out = Vec::new();
        let (first, second) = body.split_at(cut);
        r.start_chunk(u64::try_from(first.len()).expect("small"), false);
        let mut input = first.to_vec();
        input.extend_from_slice(b"BDAT");
        assert_eq!(
            r.feed(&input, &mut out),
            (first.len(), BdatState::ChunkDone { last: false })
        );
        r.start_chunk(u64::try_from(second.len()).expect("small"), true);
        for b in second {
            let (used, _) = r.feed(std::slice::from_ref(b), &mut out);
            assert_eq!(used, 1);
        }
        assert_eq!(
            r.feed(b"QUIT\r\n", &mut out),
            (0, BdatState::ChunkDone { last: true })
        );
        assert_eq!(out, body, "cut at {cut}");
    }
}

#[test]
fn chunk_past_the_limit_is_consumed_whole_then_too_big() {
    let mut r = BdatReceiver::new(10);
    let mut out = Vec::new();
    r.start_chunk(8, false);
    assert_eq!(
        r.feed(b"12345678", &mut out),
        (8, BdatState::ChunkDone { last: false })
    );
    r.start_chunk(8, true);
    assert_eq!(r.feed(b"abcd", &mut out), (4, BdatState::NeedMore));
    assert_eq!(r.feed(b"efghNOOP\r\n", &mut out), (4, BdatState::TooBig));
    assert!(out.len() <= 10);
    assert_eq!(r.total(), 16);
    // The message stays too big for the rest of its chunks.
    r.start_chunk(0, true);
    assert_eq!(r.feed(b"", &mut out), (0, BdatState::TooBig));
}

#[test]
fn chunk_of_exactly_the_limit_is_accepted() {
    let mut r = BdatReceiver::new(4);
    let mut out = Vec::new();
    r.start_chunk(4, true);
    assert_eq!(
        r.feed(b"abcdQUIT", &mut out),
        (4, BdatState::ChunkDone { last: true })
    );
    assert_eq!(out, b"abcd");
}

#[test]
fn huge_announced_chunk_only_consumes_what_arrives() {
    let mut r = BdatReceiver::new(10);
    let mut out = Vec::new();
    r.start_chunk(u64::MAX, true);
    assert_eq!(r.feed(&[0u8; 64], &mut out), (64, BdatState::NeedMore));
    assert!(out.is_empty());
}
