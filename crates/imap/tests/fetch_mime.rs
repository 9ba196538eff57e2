//! FETCH of the MIME structure: ENVELOPE, BODY, BODYSTRUCTURE, part sections, BINARY.

mod common;

use common::{has, last, Client};
use proptest::prelude::*;

const ATTACH: &str = "From: \"Bob Smith\" <bob@example.org>\r\n\
    To: alice@example.org, Carol <carol@example.net>\r\n\
    Cc: friends: dave@example.com, \"Eve\" <eve@example.com>;\r\n\
    Subject: =?utf-8?q?Caf=C3=A9?=\r\n report\r\n\
    Date: Tue, 2 Jan 2024 10:00:00 +0100\r\n\
    Message-ID: <abc@example.org>\r\n\
    In-Reply-To: <xyz@example.org>\r\n\
    MIME-Version: 1.0\r\n\
    Content-Type: multipart/mixed; boundary=\"=_sep\"\r\n\
    \r\n\
    --=_sep\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    \r\n\
    See the attachment.\r\n\
    --=_sep\r\n\
    Content-Type: text/plain; name=\"hello.txt\"\r\n\
    Content-Transfer-Encoding: base64\r\n\
    Content-Disposition: attachment; filename=\"hello.txt\"\r\n\
    \r\n\
    SGVsbG8sIGF0dGFjaG1lbnQhDQo=\r\n\
    --=_sep--\r\n";

const FORWARD: &str = "From: bob@example.org\r\nSubject: Fwd: Lunch\r\nMIME-Version: 1.0\r\n\
    Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
    --outer\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nForwarded:\r\n\
    --outer\r\nContent-Type: message/rfc822\r\n\r\n\
    From: Carol <carol@example.net>\r\nSubject: Lunch\r\n\r\nNoon?\r\n\r\n--outer--\r\n";

const UUENCODED: &str = "From: bob@example.org\r\nMIME-Version: 1.0\r\n\
    Content-Type: multipart/mixed; boundary=b\r\n\r\n\
    --b\r\nContent-Type: application/octet-stream\r\n\
    Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n--b--\r\n";

async fn ready() -> Client {
    let mut c = Client::start().await;
    c.login().await;
    c.deliver(None, ATTACH);
    c.deliver(None, FORWARD);
    c.deliver(None, UUENCODED);
    // Maildir files usually hold LF line endings; IMAP sends CRLF.
    c.deliver(None, &common::MSG1.replace("\r\n", "\n"));
    c.select_inbox().await;
    c
}

#[tokio::test]
async fn envelope_has_addresses_groups_and_defaults() {
    let mut c = ready().await;
    let r = c.ok("f1 FETCH 1 ENVELOPE").await;
    let want = "* 1 FETCH (ENVELOPE (\"Tue, 2 Jan 2024 10:00:00 +0100\" \
        \"=?utf-8?q?Caf=C3=A9?= report\" \
        ((\"Bob Smith\" NIL \"bob\" \"example.org\")) \
        ((\"Bob Smith\" NIL \"bob\" \"example.org\")) \
        ((\"Bob Smith\" NIL \"bob\" \"example.org\")) \
        ((NIL NIL \"alice\" \"example.org\")(\"Carol\" NIL \"carol\" \"example.net\")) \
        ((NIL NIL \"friends\" NIL)(NIL NIL \"dave\" \"example.com\")\
        (\"Eve\" NIL \"eve\" \"example.com\")(NIL NIL NIL NIL)) \
        NIL \"<xyz@example.org>\" \"<abc@example.org>\"))";
    assert_eq!(r.first().map(String::as_str), Some(want), "{r:#?}");
    // ENVELOPE does not set \Seen.
    let r = c.ok("f2 FETCH 1 FLAGS").await;
    assert!(has(&r, "FLAGS ()"), "{r:#?}");
}

#[tokio::test]
async fn bodystructure_and_body_of_a_mixed_message() {
    let mut c = ready().await;
    let r = c.ok("f1 FETCH 1 BODYSTRUCTURE").await;
    let want = "* 1 FETCH (BODYSTRUCTURE (\
        (\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 19 0 NIL NIL NIL NIL)\
        (\"text\" \"plain\" (\"name\" \"hello.txt\" \"charset\" \"us-ascii\") NIL NIL \"base64\" 28 0 \
        NIL (\"attachment\" (\"filename\" \"hello.txt\")) NIL NIL) \
        \"mixed\" (\"boundary\" \"=_sep\") NIL NIL NIL))";
    assert_eq!(r.first().map(String::as_str), Some(want), "{r:#?}");
    let r = c.ok("f2 FETCH 1 BODY").await;
    let want = "* 1 FETCH (BODY (\
        (\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 19 0)\
        (\"text\" \"plain\" (\"name\" \"hello.txt\" \"charset\" \"us-ascii\") NIL NIL \"base64\" 28 0) \
        \"mixed\"))";
    assert_eq!(r.first().map(String::as_str), Some(want), "{r:#?}");
    // FULL asks for ENVELOPE and BODY too.
    let r = c.ok("f3 FETCH 1 FULL").await;
    assert!(has(&r, "ENVELOPE (\"Tue,") && has(&r, "BODY (("), "{r:#?}");
}

#[tokio::test]
async fn part_sections_and_mime_headers() {
    let mut c = ready().await;
    let r = c.ok("f1 FETCH 1 BODY.PEEK[1]").await;
    assert!(has(&r, "BODY[1] \"See the attachment.\""), "{r:#?}");
    let r = c.ok("f2 FETCH 1 BODY.PEEK[2.MIME]").await;
    let mime = "Content-Type: text/plain; name=\"hello.txt\"\r\n\
        Content-Transfer-Encoding: base64\r\n\
        Content-Disposition: attachment; filename=\"hello.txt\"\r\n\r\n";
    assert!(
        has(&r, &format!("BODY[2.MIME] {{{}}}\r\n{mime})", mime.len())),
        "{r:#?}"
    );
    let r = c.ok("f3 FETCH 1 BODY.PEEK[2]<0.5>").await;
    assert!(has(&r, "BODY[2]<0> \"SGVsb\""), "{r:#?}");
    // No part 3; a text part has no part 2; HEADER needs a message/rfc822 part.
    let r = c
        .ok("f4 FETCH 1 (BODY.PEEK[3] BODY.PEEK[1.2] BODY.PEEK[1.HEADER])")
        .await;
    assert!(
        has(&r, "BODY[3] NIL BODY[1.2] NIL BODY[1.HEADER] NIL"),
        "{r:#?}"
    );
    // Nothing above set \Seen; a BODY[1] does.
    let r = c.ok("f5 FETCH 1 BODY[1]").await;
    assert!(has(&r, "FLAGS (\\Seen)"), "{r:#?}");
}

#[tokio::test]
async fn encapsulated_message_sections() {
    let mut c = ready().await;
    let r = c.ok("f1 FETCH 2 BODY.PEEK[2.HEADER]").await;
    assert!(
        has(
            &r,
            "From: Carol <carol@example.net>\r\nSubject: Lunch\r\n\r\n"
        ),
        "{r:#?}"
    );
    let r = c.ok("f2 FETCH 2 (BODY.PEEK[2.TEXT] BODY.PEEK[2.1])").await;
    assert!(
        has(
            &r,
            "BODY[2.TEXT] {7}\r\nNoon?\r\n BODY[2.1] {7}\r\nNoon?\r\n"
        ),
        "{r:#?}"
    );
    let r = c
        .ok("f3 FETCH 2 BODY.PEEK[2.HEADER.FIELDS (Subject)]")
        .await;
    assert!(
        has(
            &r,
            "BODY[2.HEADER.FIELDS (Subject)] {18}\r\nSubject: Lunch\r\n\r\n)"
        ),
        "{r:#?}"
    );
    let r = c.ok("f4 FETCH 2 BODYSTRUCTURE").await;
    assert!(
        has(
            &r,
            "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 58 (NIL \"Lunch\" \
             ((\"Carol\" NIL \"carol\" \"example.net\")) ((\"Carol\" NIL \"carol\" \"example.net\")) \
             ((\"Carol\" NIL \"carol\" \"example.net\")) NIL NIL NIL NIL NIL) \
             (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1 NIL NIL NIL NIL) 4 \
             NIL NIL NIL NIL)"
        ),
        "{r:#?}"
    );
}

#[tokio::test]
async fn binary_decodes_the_attachment() {
    let mut c = ready().await;
    let r = c.ok("f1 FETCH 1 BINARY.PEEK[2]").await;
    assert!(
        has(&r, "BINARY[2] ~{20}\r\nHello, attachment!\r\n)"),
        "{r:#?}"
    );
    let r = c.ok("f2 FETCH 1 (BINARY.SIZE[2] BINARY.SIZE[1])").await;
    assert!(has(&r, "BINARY.SIZE[2] 20 BINARY.SIZE[1] 19"), "{r:#?}");
    let r = c.ok("f3 FETCH 1 BINARY.PEEK[2]<7.10>").await;
    assert!(has(&r, "BINARY[2]<7> ~{10}\r\nattachment"), "{r:#?}");
    let r = c.ok("f4 FETCH 1 BINARY.PEEK[9]").await;
    assert!(has(&r, "BINARY[9] NIL"), "{r:#?}");
    let r = c.ok("f5 FETCH 1 FLAGS").await;
    assert!(has(&r, "FLAGS ()"), "{r:#?}");
    let r = c.ok("f6 FETCH 1 BINARY[2]").await;
    assert!(has(&r, "FLAGS (\\Seen)"), "{r:#?}");
}

#[tokio::test]
async fn binary_of_an_unknown_encoding_is_no_unknown_cte() {
    let mut c = ready().await;
    let r = c.cmd("f1 FETCH 3 BINARY[1]").await;
    assert!(last(&r).starts_with("f1 NO [UNKNOWN-CTE]"), "{r:#?}");
    let r = c.ok("f2 FETCH 3 FLAGS").await;
    assert!(
        has(&r, "FLAGS ()"),
        "a failed BINARY must not set \\Seen: {r:#?}"
    );
    // The raw part is still there for BODY.
    let r = c.ok("f3 FETCH 3 BODY.PEEK[1]").await;
    assert!(has(&r, "begin 644 x"), "{r:#?}");
}

#[tokio::test]
async fn lf_files_are_sent_with_crlf() {
    let mut c = ready().await;
    let r = c
        .ok("f1 FETCH 4 (RFC822.SIZE BODYSTRUCTURE BODY.PEEK[TEXT])")
        .await;
    let size = common::MSG1.len();
    assert!(
        has(
            &r,
            &format!(
                "RFC822.SIZE {size} BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") \
                 NIL NIL \"7bit\" 28 1 NIL NIL NIL NIL) BODY[TEXT] {{28}}\r\nFirst body, with a needle.\r\n"
            )
        ),
        "{r:#?}"
    );
}

#[tokio::test]
async fn modseq_is_fetched_with_condstore() {
    let mut c = ready().await;
    let r = c.ok("f1 FETCH 1 MODSEQ").await;
    assert!(has(&r, "* 1 FETCH (MODSEQ (1))"), "{r:?}");
}

/// Balanced parentheses outside quoted strings and literals, quoted strings without CR or LF,
/// and literals whose length is right.
fn well_formed(resp: &[u8]) -> bool {
    let mut depth = 0i64;
    let mut i = 0;
    while let Some(&b) = resp.get(i) {
        match b {
            b'"' => {
                i += 1;
                loop {
                    match resp.get(i) {
                        None | Some(b'\r' | b'\n') => return false,
                        Some(b'"') => break,
                        Some(b'\\') => i += 2,
                        Some(_) => i += 1,
                    }
                }
            }
            b'{' => {
                let Some(close) = resp[i..].iter().position(|&c| c == b'}') else {
                    return false;
                };
                let Ok(n) = std::str::from_utf8(&resp[i + 1..i + close])
                    .unwrap_or("x")
                    .parse::<usize>()
                else {
                    return false;
                };
                if resp.get(i + close + 1..i + close + 3) != Some(b"\r\n") {
                    return false;
                }
                i += close + 3 + n;
                if i > resp.len() {
                    return false;
                }
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    depth == 0
}

/// Messages built from the pieces MIME parsers trip over.
fn hostile_message() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("Content-Type: multipart/mixed; boundary=b\r\n"),
            Just("Content-Type: multipart/digest; boundary=\"b b\"\r\n"),
            Just("Content-Type: message/rfc822\r\n"),
            Just("Content-Type: text/plain; charset*0*=utf-8''%C3; charset*1=x\r\n"),
            Just("Content-Transfer-Encoding: base64\r\n"),
            Just("Content-Disposition: attachment; filename=\"a\\\"(b\"\r\n"),
            Just("From: \"a(\" <x@y>, g: ;, <@r:z@w (c)\r\n"),
            Just("Subject: (\r\n \"{5}\r\n"),
            Just("MIME-Version: 1.0\r\n"),
            Just("--b\r\n"),
            Just("--b--\r\n"),
            Just("--b b\r\n"),
            Just("\r\n"),
            Just("\n"),
            Just("text )( \"\\ {3}\r\n"),
            Just("=?utf-8?b?KA==?="),
            Just("x"),
        ],
        0..40,
    )
    .prop_map(|v| v.concat())
}

fn fetch_everything(msg: String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut c = Client::start().await;
        c.login().await;
        c.deliver(None, &msg);
        c.select_inbox().await;
        let r = c
            .cmd("f1 FETCH 1 (ENVELOPE BODY BODYSTRUCTURE BODY.PEEK[1.MIME] BODY.PEEK[2.1] BINARY.SIZE[1])")
            .await;
        let tagged = last(&r);
        assert!(
            tagged.starts_with("f1 OK") || tagged.starts_with("f1 NO [UNKNOWN-CTE]"),
            "{r:#?}"
        );
        for line in &r {
            assert!(well_formed(line.as_bytes()), "{line:?}");
        }
        let _ = c.shutdown.send(true);
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn hostile_mime_never_breaks_the_session(msg in hostile_message()) {
        fetch_everything(msg);
    }
}
