//! COPY, MOVE, their UID forms, and APPEND.

mod common;

use common::{has, last, Client};

async fn ready() -> Client {
    let mut c = Client::start().await;
    c.login().await;
    c.deliver(None, common::MSG1);
    c.deliver(None, common::MSG2);
    c.select_inbox().await;
    c
}

#[tokio::test]
async fn copy_answers_copyuid() {
    let mut c = ready().await;
    c.ok("a0 STORE 2 +FLAGS.SILENT (\\Flagged)").await;
    let r = c.ok("a1 COPY 1:2 Archive").await;
    assert!(last(&r).starts_with("a1 OK [COPYUID "), "{r:?}");
    assert!(last(&r).contains(" 1:2 1:2]"), "{r:?}");
    let r = c.ok("a2 STATUS Archive (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 2)"), "{r:?}");
    let r = c.ok("a3 UID COPY 2 Archive").await;
    assert!(last(&r).contains(" 2 3]"), "{r:?}");
    c.ok("a4 SELECT Archive").await;
    let r = c.ok("a5 FETCH 2 FLAGS").await;
    assert!(has(&r, "\\Flagged"), "{r:?}");
}

#[tokio::test]
async fn copy_to_missing_folder_is_trycreate() {
    let mut c = ready().await;
    let r = c.cmd("a1 COPY 1 Nowhere").await;
    assert!(last(&r).starts_with("a1 NO [TRYCREATE]"), "{r:?}");
}

#[tokio::test]
async fn move_expunges_from_source() {
    let mut c = ready().await;
    let r = c.ok("a1 MOVE 1 Trash").await;
    assert!(r[0].starts_with("* OK [COPYUID "), "{r:#?}");
    assert!(has(&r, "* 1 EXPUNGE"), "{r:#?}");
    let r = c.ok("a2 UID MOVE 2 Trash").await;
    assert!(has(&r, "* 1 EXPUNGE"), "{r:#?}");
    let r = c.ok("a3 STATUS Trash (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 2)"), "{r:?}");
    let r = c.ok("a4 STATUS INBOX (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 0)"), "{r:?}");
}

#[tokio::test]
async fn append_answers_appenduid_and_keeps_flags_and_date() {
    let mut c = Client::start().await;
    c.login().await;
    let msg = "Subject: draft\r\n\r\nhi\r\n";
    let r = c
        .ok(&format!(
            "a1 APPEND Drafts (\\Draft \\Seen) \"14-Nov-2023 22:13:20 +0000\" {{{}+}}\r\n{msg}",
            msg.len()
        ))
        .await;
    assert!(last(&r).starts_with("a1 OK [APPENDUID "), "{r:?}");
    assert!(last(&r).contains(" 1]"), "{r:?}");
    c.ok("a2 SELECT Drafts").await;
    let r = c.ok("a3 FETCH 1 (FLAGS INTERNALDATE BODY.PEEK[])").await;
    assert!(has(&r, "FLAGS (\\Seen \\Draft)"), "{r:#?}");
    assert!(
        has(&r, "INTERNALDATE \"14-Nov-2023 22:13:20 +0000\""),
        "{r:#?}"
    );
    assert!(has(&r, "Subject: draft"), "{r:#?}");
}

#[tokio::test]
async fn append_with_synchronizing_literal_and_exists() {
    let mut c = Client::start().await;
    c.login().await;
    c.select_inbox().await;
    c.send("a1 APPEND INBOX {5}\r\n").await;
    let cont = c.line().await;
    assert!(cont.starts_with('+'), "{cont}");
    c.send("hello\r\n").await;
    let r = c.until("a1").await;
    assert!(has(&r, "* 1 EXISTS"), "{r:#?}");
    assert!(last(&r).starts_with("a1 OK [APPENDUID"), "{r:?}");
    let r = c.cmd("a2 APPEND Nope {1+}\r\nx").await;
    assert!(last(&r).starts_with("a2 NO [TRYCREATE]"), "{r:?}");
}
