//! SELECT, EXAMINE, CLOSE, UNSELECT.

mod common;

use common::{has, last, Client};

#[tokio::test]
async fn select_reports_the_folder() {
    let mut c = Client::start().await;
    c.login().await;
    c.deliver(None, common::MSG1);
    c.deliver(None, common::MSG2);
    let r = c.select_inbox().await;
    assert!(
        has(
            &r,
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)"
        ),
        "{r:#?}"
    );
    assert!(has(&r, "* 2 EXISTS"));
    assert!(has(&r, "* 0 RECENT"));
    assert!(has(&r, "* OK [UIDVALIDITY "));
    assert!(has(&r, "* OK [UIDNEXT 3]"));
    assert!(has(
        &r,
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]"
    ));
    assert!(last(&r).starts_with("s1 OK [READ-WRITE]"));
}

#[tokio::test]
async fn examine_is_read_only() {
    let mut c = Client::start().await;
    c.login().await;
    c.deliver(None, common::MSG1);
    let r = c.ok("e1 EXAMINE INBOX").await;
    assert!(last(&r).starts_with("e1 OK [READ-ONLY]"), "{r:?}");
    let r = c.cmd("e2 STORE 1 +FLAGS (\\Seen)").await;
    assert!(last(&r).starts_with("e2 NO"), "{r:?}");
    // BODY[] does not set \Seen in a read-only folder.
    let r = c.ok("e3 FETCH 1 (BODY[] FLAGS)").await;
    assert!(!has(&r, "\\Seen"), "{r:#?}");
}

#[tokio::test]
async fn select_missing_fails_and_deselects() {
    let mut c = Client::start().await;
    c.login().await;
    c.select_inbox().await;
    let r = c.cmd("s2 SELECT Nope").await;
    assert!(has(&r, "[CLOSED]"), "{r:?}");
    assert!(last(&r).starts_with("s2 NO"), "{r:?}");
    let r = c.cmd("s3 FETCH 1 FLAGS").await;
    assert!(last(&r).starts_with("s3 BAD"), "{r:?}");
}

#[tokio::test]
async fn close_expunges_unselect_does_not() {
    let mut c = Client::start().await;
    c.login().await;
    c.deliver(None, common::MSG1);
    c.deliver(None, common::MSG2);
    c.select_inbox().await;
    c.ok("a1 STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    c.ok("a2 UNSELECT").await;
    let r = c.ok("a3 STATUS INBOX (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 2)"), "{r:?}");
    c.select_inbox().await;
    let r = c.ok("a4 CLOSE").await;
    assert!(!has(&r, "EXPUNGE"), "{r:?}");
    let r = c.ok("a5 STATUS INBOX (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 1)"), "{r:?}");
}
