//! Reply formatting (server side) and parsing (client side).

use ownmail_smtp_proto::{
    ehlo_reply, Reply, ReplyError, ReplyParser, MAX_REPLY_BYTES, MAX_REPLY_LINES,
};

fn parse_all(input: &[u8]) -> Vec<Result<Reply, ReplyError>> {
    let mut p = ReplyParser::new();
    let mut replies = Vec::new();
    let mut rest = input;
    loop {
        let (used, got) = p.feed(rest);
        rest = &rest[used..];
        match got {
            Some(r) => replies.push(r),
            None => break,
        }
    }
    replies
}

#[test]
fn one_line_reply_carries_its_enhanced_code() {
    assert_eq!(
        Reply::new(250, "2.1.0", "Ok").to_bytes(),
        b"250 2.1.0 Ok\r\n"
    );
    assert_eq!(Reply::new(221, "", "Bye").to_bytes(), b"221 Bye\r\n");
    assert_eq!(Reply::new(250, "", "").to_bytes(), b"250\r\n");
    assert_eq!(Reply::new(250, "2.0.0", "").to_bytes(), b"250 2.0.0\r\n");
}

#[test]
fn multi_line_reply_repeats_code_and_enhanced_code_on_every_line() {
    let r = Reply::multi(
        550,
        "5.7.1",
        vec!["first".into(), "second".into(), "third".into()],
    );
    assert_eq!(
        r.to_bytes(),
        b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"
    );
}

#[test]
fn ehlo_reply_has_no_enhanced_code() {
    let r = ehlo_reply(
        "mx.example.org",
        "Hello",
        &[
            "PIPELINING".into(),
            "SIZE 10240000".into(),
            "8BITMIME".into(),
        ],
    );
    assert_eq!(
        r.to_bytes(),
        b"250-mx.example.org Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"
    );
    assert_eq!(
        ehlo_reply("mx.example.org", "", &[]).to_bytes(),
        b"250 mx.example.org\r\n"
    );
}

#[test]
fn reply_text_cannot_inject_lines() {
    let r = Reply::new(550, "5.1.1", "no\r\n250 ok");
    assert_eq!(r.to_bytes(), b"550 5.1.1 no  250 ok\r\n");
}

#[test]
fn reply_classes() {
    let r = |code| Reply::new(code, "", "");
    assert!(r(250).is_positive() && r(354).is_positive() && !r(250).is_transient());
    assert!(r(421).is_transient() && !r(421).is_positive() && !r(421).is_permanent());
    assert!(r(554).is_permanent() && !r(554).is_positive());
}

#[test]
fn formatted_replies_parse_back_at_every_split() {
    let replies = vec![
        Reply::new(220, "", "mx.example.org ESMTP ownmail"),
        ehlo_reply(
            "mx.example.org",
            "Hello",
            &["PIPELINING".into(), "STARTTLS".into()],
        ),
        Reply::new(250, "2.1.0", "Ok"),
        Reply::multi(
            451,
            "4.7.1",
            vec!["greylisted".into(), "try again later".into()],
        ),
        Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"),
        Reply::new(250, "", ""),
        Reply::new(550, "5.1.1", ""),
    ];
    let wire: Vec<u8> = replies.iter().flat_map(Reply::to_bytes).collect();
    for cut in 0..=wire.len() {
        let mut p = ReplyParser::new();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        for piece in [&wire[..cut], &wire[cut..]] {
            buf.extend_from_slice(piece);
            loop {
                let (used, r) = p.feed(&buf);
                buf.drain(..used);
                match r {
                    Some(r) => got.push(r.expect("valid reply")),
                    None => break,
                }
            }
        }
        assert_eq!(got, replies, "cut at {cut}");
        assert!(buf.is_empty());
    }
}

#[test]
fn parser_stops_after_one_reply() {
    let mut p = ReplyParser::new();
    let (used, r) = p.feed(b"250 2.1.5 Ok\r\n354 go\r\n");
    assert_eq!(used, 14);
    assert_eq!(r, Some(Ok(Reply::new(250, "2.1.5", "Ok"))));
}

#[test]
fn parser_tolerates_lf_only_and_latin1_text() {
    let got = parse_all(b"250-mx.example.org\n250 2.0.0 caf\xe9\n");
    let want = Reply {
        code: 250,
        enhanced: Some("2.0.0".into()),
        lines: vec!["mx.example.org".into(), "caf\u{fffd}".into()],
    };
    assert_eq!(got, vec![Ok(want)]);
}

#[test]
fn enhanced_code_must_match_the_reply_class() {
    let got = parse_all(b"550 4.1.1 odd\r\n");
    assert_eq!(
        got,
        vec![Ok(Reply {
            code: 550,
            enhanced: None,
            lines: vec!["4.1.1 odd".into()]
        })]
    );
    let got = parse_all(b"354 3.0.0 go\r\n");
    assert_eq!(
        got,
        vec![Ok(Reply {
            code: 354,
            enhanced: None,
            lines: vec!["3.0.0 go".into()]
        })]
    );
}

#[test]
fn bare_code_is_a_complete_reply() {
    assert_eq!(parse_all(b"250\r\n"), vec![Ok(Reply::new(250, "", ""))]);
}

#[test]
fn malformed_replies_are_errors() {
    for input in [
        &b"hello\r\n"[..],
        b"25\r\n",
        b"2500 x\r\n",
        b"650 x\r\n",
        b"160 x\r\n",
        b"260 x\r\n",
        b"250_x\r\n",
        b"\r\n",
    ] {
        let got = parse_all(input);
        assert!(
            matches!(got.as_slice(), [Err(ReplyError::Syntax(_))]),
            "{input:?}: {got:?}"
        );
    }
    assert_eq!(
        parse_all(b"250-a\r\n251 b\r\n"),
        vec![Err(ReplyError::MixedCodes {
            first: 250,
            then: 251
        })]
    );
}

#[test]
fn oversized_replies_are_refused() {
    let mut p = ReplyParser::new();
    let long = vec![b'x'; MAX_REPLY_BYTES + 1];
    let (used, r) = p.feed(&long);
    assert!(used <= long.len());
    assert_eq!(r, Some(Err(ReplyError::TooLong)));

    let many: Vec<u8> = (0..=MAX_REPLY_LINES)
        .flat_map(|_| b"250-x\r\n".to_vec())
        .collect();
    assert_eq!(parse_all(&many), vec![Err(ReplyError::TooManyLines)]);

    let mut p = ReplyParser::new();
    let mut total = 0;
    let line = b"250-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    loop {
        let (used, r) = p.feed(line);
        total += used;
        if let Some(r) = r {
            assert_eq!(r, Err(ReplyError::TooLong));
            break;
        }
        assert!(total <= MAX_REPLY_BYTES, "bounded");
    }
}

#[test]
fn parser_is_reusable_after_an_error() {
    let mut p = ReplyParser::new();
    assert!(matches!(p.feed(b"junk\r\n"), (6, Some(Err(_)))));
    assert_eq!(
        p.feed(b"250 ok\r\n"),
        (8, Some(Ok(Reply::new(250, "", "ok"))))
    );
}

#[test]
fn display_is_one_line_for_logs() {
    let r = Reply::multi(550, "5.7.1", vec!["rejected".into(), "see policy".into()]);
    assert_eq!(r.to_string(), "550 5.7.1 rejected see policy");
}
