//! Malformed input gets BAD, never a panic; too much of it closes the session.

mod common;

use common::{last, Client};

#[tokio::test]
async fn garbage_lines_are_bad_and_session_survives() {
    let mut c = Client::start().await;
    for junk in [
        "",
        "a1",
        "a1 FOO",
        "a2 FETCH",
        "* LOGIN a b",
        "a3 LOGIN",
        "a4 SELECT \"unterminated",
        "a5 UID FROB 1",
        "a6 FETCH 1:* (BODY[HEADER.FIELDS ()])",
    ] {
        c.send(&format!("{junk}\r\n")).await;
        let l = c.line().await;
        assert!(l.contains("BAD"), "{junk:?} -> {l}");
    }
    c.send("\u{1}\u{2}\u{ff} \r\n").await;
    let l = c.line().await;
    assert!(l.contains("BAD"), "{l}");
    c.ok("z1 NOOP").await;
}

#[tokio::test]
async fn garbage_after_login_and_select_is_bad() {
    let mut c = Client::start().await;
    c.login().await;
    c.deliver(None, common::MSG1);
    c.select_inbox().await;
    for junk in [
        "b1 FETCH 99 FLAGS",
        "b2 FETCH 0 FLAGS",
        "b3 STORE 1 +FLAGS (\\Recent)",
        "b4 SEARCH FROBNICATE",
        "b5 COPY 1:5 Sent",
        "b6 FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)",
    ] {
        let r = c.cmd(junk).await;
        assert!(last(&r).contains(" BAD"), "{junk} -> {r:?}");
    }
    c.ok("b9 NOOP").await;
}

#[tokio::test]
async fn too_many_errors_close_the_session() {
    let mut c = Client::start().await;
    for i in 0..30 {
        c.send(&format!("x{i} NONSENSE\r\n")).await;
    }
    let mut saw_bye = false;
    for _ in 0..40 {
        let l = c.line().await;
        if l.is_empty() {
            break;
        }
        if l.starts_with("* BYE") {
            saw_bye = true;
        }
    }
    assert!(saw_bye);
}

#[tokio::test]
async fn huge_literal_is_refused() {
    let mut c = Client::start().await;
    c.login().await;
    let r = c.cmd("a1 APPEND INBOX {999999999999}").await;
    assert!(last(&r).starts_with("a1 NO [TOOBIG]"), "{r:?}");
    c.ok("a2 NOOP").await;
}
