//! STORE, EXPUNGE, UID EXPUNGE.

mod common;

use common::{has, Client};

async fn ready(n: usize) -> Client {
    let mut c = Client::start().await;
    c.login().await;
    for _ in 0..n {
        c.deliver(None, common::MSG1);
    }
    c.select_inbox().await;
    c
}

#[tokio::test]
async fn store_add_remove_replace() {
    let mut c = ready(2).await;
    let r = c.ok("a1 STORE 1 +FLAGS (\\Flagged $Work)").await;
    assert!(has(&r, "* 1 FETCH (FLAGS (\\Flagged $Work))"), "{r:#?}");
    let r = c.ok("a2 UID STORE 1 -FLAGS (\\Flagged)").await;
    assert!(has(&r, "* 1 FETCH (FLAGS ($Work) UID 1)"), "{r:#?}");
    let r = c.ok("a3 STORE 1:2 FLAGS.SILENT (\\Seen)").await;
    assert_eq!(r.len(), 1, "{r:#?}");
    let r = c.ok("a4 FETCH 1:2 FLAGS").await;
    assert!(
        has(&r, "* 1 FETCH (FLAGS (\\Seen))") && has(&r, "* 2 FETCH (FLAGS (\\Seen))"),
        "{r:#?}"
    );
    // The flags are in the file name, so a new session sees them.
    let names: Vec<String> = std::fs::read_dir(c.root().join("cur"))
        .expect("cur")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(":2,S")), "{names:?}");
}

#[tokio::test]
async fn expunge_reports_sequence_numbers() {
    let mut c = ready(4).await;
    c.ok("a1 STORE 2:3 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.ok("a2 EXPUNGE").await;
    assert_eq!(&r[..2], ["* 2 EXPUNGE", "* 2 EXPUNGE"], "{r:#?}");
    let r = c.ok("a3 FETCH 1:* UID").await;
    assert!(
        has(&r, "* 1 FETCH (UID 1)") && has(&r, "* 2 FETCH (UID 4)"),
        "{r:#?}"
    );
}

#[tokio::test]
async fn uid_expunge_only_named_uids() {
    let mut c = ready(3).await;
    c.ok("a1 STORE 1:3 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.ok("a2 UID EXPUNGE 3").await;
    assert!(has(&r, "* 3 EXPUNGE") && !has(&r, "* 1 EXPUNGE"), "{r:#?}");
    let r = c.ok("a3 STATUS INBOX (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 2)"), "{r:#?}");
}

#[tokio::test]
async fn other_sessions_expunge_shows_after_noop_not_during_fetch() {
    let mut c = ready(2).await;
    // Someone else removes message 1 behind our back.
    let first = std::fs::read_dir(c.root().join("new"))
        .expect("new")
        .map(|e| e.expect("entry").path())
        .min()
        .expect("one");
    std::fs::remove_file(first).expect("rm");
    let r = c.cmd("a1 FETCH 1:2 FLAGS").await;
    assert!(!has(&r, "EXPUNGE"), "{r:#?}");
    let r = c.ok("a2 NOOP").await;
    assert!(has(&r, "EXPUNGE"), "{r:#?}");
}
