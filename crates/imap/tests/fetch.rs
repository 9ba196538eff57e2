//! FETCH and UID FETCH.

mod common;

use common::{has, Client, MSG1};

async fn ready() -> Client {
    let mut c = Client::start().await;
    c.login().await;
    c.deliver(None, common::MSG1);
    c.deliver(None, common::MSG2);
    c.select_inbox().await;
    c
}

#[tokio::test]
async fn fetch_flags_uid_size_date() {
    let mut c = ready().await;
    let r = c
        .ok("f1 FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE)")
        .await;
    let size = MSG1.len();
    assert!(
        has(
            &r,
            &format!("* 1 FETCH (FLAGS () UID 1 RFC822.SIZE {size} INTERNALDATE \"")
        ),
        "{r:#?}"
    );
    assert!(has(&r, "* 2 FETCH (FLAGS () UID 2"));
}

#[tokio::test]
async fn uid_fetch_adds_uid() {
    let mut c = ready().await;
    let r = c.ok("f1 UID FETCH 2 FLAGS").await;
    assert!(has(&r, "* 2 FETCH (UID 2 FLAGS ())"), "{r:#?}");
    let r = c.ok("f2 UID FETCH 5:* FLAGS").await;
    assert!(has(&r, "* 2 FETCH (UID 2"), "{r:#?}");
    let r = c.ok("f3 UID FETCH 7 FLAGS").await;
    assert_eq!(r.len(), 1, "{r:#?}");
}

#[tokio::test]
async fn body_peek_does_not_set_seen_body_does() {
    let mut c = ready().await;
    let r = c.ok("f1 FETCH 1 BODY.PEEK[]").await;
    assert!(has(&r, &format!("BODY[] {{{}}}", MSG1.len())), "{r:#?}");
    assert!(has(&r, "First body, with a needle."));
    let r = c.ok("f2 FETCH 1 FLAGS").await;
    assert!(has(&r, "FLAGS ()"), "{r:#?}");
    let r = c.ok("f3 FETCH 1 BODY[TEXT]").await;
    assert!(has(&r, "BODY[TEXT] {28}"), "{r:#?}");
    assert!(has(&r, "FLAGS (\\Seen)"), "{r:#?}");
    let r = c.ok("f4 FETCH 2 RFC822.HEADER").await;
    assert!(has(&r, "RFC822.HEADER {"), "{r:#?}");
    assert!(!has(&r, "\\Seen"));
    let r = c.ok("f5 FETCH 2 RFC822").await;
    assert!(has(&r, "Second body.") && has(&r, "\\Seen"), "{r:#?}");
}

#[tokio::test]
async fn header_fields_and_partial() {
    let mut c = ready().await;
    let r = c
        .ok("f1 FETCH 1 BODY.PEEK[HEADER.FIELDS (subject FROM)]")
        .await;
    let want = "From: Bob <bob@example.org>\r\nSubject: Hello there\r\n\r\n";
    assert!(
        has(
            &r,
            &format!(
                "BODY[HEADER.FIELDS (SUBJECT FROM)] {{{}}}\r\n{want}",
                want.len()
            )
        ) || has(&r, want),
        "{r:#?}"
    );
    let r = c
        .ok("f2 FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (From To)]")
        .await;
    assert!(
        has(&r, "Subject: Hello there") && !has(&r, "bob@"),
        "{r:#?}"
    );
    let r = c.ok("f3 FETCH 1 BODY.PEEK[]<6.3>").await;
    assert!(has(&r, "BODY[]<6> \"Bob\""), "{r:#?}");
    let r = c.ok("f4 FETCH 1 BODY.PEEK[HEADER]").await;
    assert!(has(&r, "Subject: Hello there\r\n\r\n"), "{r:#?}");
    let r = c.ok("f5 FETCH 1 BODY.PEEK[]<9999.5>").await;
    assert!(has(&r, "BODY[]<9999> \"\""), "{r:#?}");
}

#[tokio::test]
async fn fetch_follows_a_message_renamed_by_another_session() {
    let mut c = ready().await;
    // Another client moves message 1 from new/ to cur/ with flags.
    let first = std::fs::read_dir(c.root().join("new"))
        .expect("new")
        .map(|e| e.expect("entry").path())
        .min()
        .expect("one");
    let name = first
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    std::fs::rename(&first, c.root().join("cur").join(format!("{name}:2,F"))).expect("mv");
    let r = c.ok("f1 FETCH 1 BODY.PEEK[]").await;
    assert!(has(&r, "First body"), "{r:#?}");
    // The other client's flag change is announced (FETCH responses are allowed here).
    assert!(has(&r, "* 1 FETCH (FLAGS (\\Flagged) UID 1)"), "{r:#?}");
}
