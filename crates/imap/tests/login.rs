//! Greeting, CAPABILITY, LOGIN, AUTHENTICATE PLAIN, LOGINDISABLED, LOGOUT.

mod common;

use common::{has, last, Client};
use ownmail_imap::ImapCtx;

#[tokio::test]
async fn greeting_lists_capabilities() {
    let c = Client::start().await;
    assert!(
        c.greeting
            .starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2"),
        "{}",
        c.greeting
    );
    assert!(c.greeting.contains("AUTH=PLAIN"));
    assert!(c.greeting.contains("APPENDLIMIT="));
    assert!(c.greeting.ends_with("ownmail ready"));
}

#[tokio::test]
async fn login_ok_then_capability_has_no_auth() {
    let mut c = Client::start().await;
    let r = c.ok("a1 LOGIN alice secret").await;
    assert!(last(&r).starts_with("a1 OK [CAPABILITY"));
    let r = c.ok("a2 CAPABILITY").await;
    assert!(has(&r, "* CAPABILITY IMAP4rev1"));
    assert!(!has(&r, "AUTH=PLAIN"));
    let r = c.cmd("a3 LOGOUT").await;
    assert!(r[0].starts_with("* BYE"), "{r:?}");
    assert!(last(&r).starts_with("a3 OK"));
}

#[tokio::test]
async fn login_bad_password_is_no() {
    let mut c = Client::start().await;
    let r = c.cmd("a1 LOGIN alice wrong").await;
    assert!(
        last(&r).starts_with("a1 NO [AUTHENTICATIONFAILED]"),
        "{r:?}"
    );
    let r = c.cmd("a2 SELECT INBOX").await;
    assert!(last(&r).starts_with("a2 BAD"), "{r:?}");
}

#[tokio::test]
async fn authenticate_plain_with_initial_response() {
    let mut c = Client::start().await;
    // "\0alice\0secret"
    let r = c.ok("a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==").await;
    assert!(last(&r).contains("Logged in"));
}

#[tokio::test]
async fn authenticate_plain_after_continuation() {
    let mut c = Client::start().await;
    c.send("a1 AUTHENTICATE PLAIN\r\n").await;
    let cont = c.line().await;
    assert!(cont.starts_with('+'), "{cont}");
    c.send("AGFsaWNlAHdyb25n\r\n").await;
    let r = c.until("a1").await;
    assert!(last(&r).starts_with("a1 NO"), "{r:?}");
    c.send("a2 AUTHENTICATE PLAIN\r\n").await;
    let _ = c.line().await;
    c.send("*\r\n").await;
    let r = c.until("a2").await;
    assert!(last(&r).starts_with("a2 BAD"), "{r:?}");
}

#[tokio::test]
async fn login_disabled_before_tls_on_tls_require_listener() {
    let mut ctx = ImapCtx::new("mx.example.org");
    ctx.require_tls_for_login = true;
    let mut c = Client::start_with(ctx).await;
    assert!(c.greeting.contains("LOGINDISABLED"), "{}", c.greeting);
    assert!(!c.greeting.contains("AUTH=PLAIN"));
    let r = c.cmd("a1 LOGIN alice secret").await;
    assert!(last(&r).starts_with("a1 NO [PRIVACYREQUIRED]"), "{r:?}");
    let r = c.cmd("a2 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==").await;
    assert!(last(&r).starts_with("a2 NO [PRIVACYREQUIRED]"), "{r:?}");
    let r = c.cmd("a3 LIST \"\" *").await;
    assert!(last(&r).starts_with("a3 BAD"), "{r:?}");
    // No STARTTLS configured: it is refused, not attempted.
    let r = c.cmd("a4 STARTTLS").await;
    assert!(last(&r).starts_with("a4 BAD"), "{r:?}");
}

#[tokio::test]
async fn id_enable_namespace_noop() {
    let mut c = Client::start().await;
    let r = c.ok("a1 ID NIL").await;
    assert!(has(&r, "* ID (\"name\" \"ownmail\")"));
    c.login().await;
    let r = c.ok("a2 ENABLE IMAP4rev2").await;
    assert!(has(&r, "* ENABLED IMAP4rev2"), "{r:?}");
    let r = c.ok("a3 NAMESPACE").await;
    assert!(has(&r, "* NAMESPACE ((\"\" \"/\")) NIL NIL"), "{r:?}");
    c.ok("a4 NOOP").await;
}

#[tokio::test]
async fn shutdown_says_bye() {
    let mut c = Client::start().await;
    c.shutdown.send(true).expect("send");
    let l = c.line().await;
    assert!(l.starts_with("* BYE"), "{l}");
}
