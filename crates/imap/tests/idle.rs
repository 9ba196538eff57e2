//! IDLE: new mail shows within a second; DONE ends it.

mod common;

use std::time::{Duration, Instant};

use common::{has, last, Client};

#[tokio::test]
async fn idle_sees_a_delivery_within_a_second() {
    let mut c = Client::start().await;
    c.login().await;
    c.deliver(None, common::MSG1);
    c.select_inbox().await;
    c.send("i1 IDLE\r\n").await;
    let cont = c.line().await;
    assert!(cont.starts_with("+ "), "{cont}");
    let t0 = Instant::now();
    c.deliver(None, common::MSG2);
    let l = c.line().await;
    assert_eq!(l, "* 2 EXISTS");
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    c.send("DONE\r\n").await;
    let r = c.until("i1").await;
    assert!(last(&r).starts_with("i1 OK"), "{r:?}");
    c.ok("i2 NOOP").await;
}

#[tokio::test]
async fn idle_reports_expunge_by_others() {
    let mut c = Client::start().await;
    c.login().await;
    c.deliver(None, common::MSG1);
    c.deliver(None, common::MSG2);
    c.select_inbox().await;
    c.send("i1 IDLE\r\n").await;
    let _ = c.line().await;
    let first = std::fs::read_dir(c.root().join("new"))
        .expect("new")
        .map(|e| e.expect("entry").path())
        .min()
        .expect("one");
    std::fs::remove_file(first).expect("rm");
    let l = c.line().await;
    assert!(l.ends_with(" EXPUNGE"), "{l}");
    c.send("done\r\n").await;
    let r = c.until("i1").await;
    assert!(last(&r).starts_with("i1 OK"), "{r:?}");
}

#[tokio::test]
async fn idle_needs_done() {
    let mut c = Client::start().await;
    c.login().await;
    c.select_inbox().await;
    c.send("i1 IDLE\r\n").await;
    let _ = c.line().await;
    c.send("i2 NOOP\r\n").await;
    let r = c.until("i1").await;
    assert!(last(&r).starts_with("i1 BAD"), "{r:?}");
    assert!(!has(&r, "i2"));
}

#[tokio::test]
async fn idle_without_a_selected_mailbox_is_allowed() {
    let mut c = Client::start().await;
    c.login().await;
    c.send("i1 IDLE\r\n").await;
    let cont = c.line().await;
    assert!(cont.starts_with('+'), "{cont}");
    c.send("DONE\r\n").await;
    let r = c.until("i1").await;
    assert!(last(&r).starts_with("i1 OK"), "{r:?}");
}
