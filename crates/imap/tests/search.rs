//! SEARCH and UID SEARCH.

mod common;

use common::{has, last, Client};

async fn ready() -> Client {
    let mut c = Client::start().await;
    c.login().await;
    c.deliver(None, common::MSG1);
    c.deliver(None, common::MSG2);
    c.deliver(None, "Subject: big\r\n\r\n".to_string().as_str());
    c.select_inbox().await;
    c.ok("p1 STORE 2 +FLAGS.SILENT (\\Seen \\Flagged)").await;
    c
}

async fn search(c: &mut Client, q: &str) -> String {
    let r = c.ok(&format!("q {q}")).await;
    r.iter()
        .find(|l| l.starts_with("* SEARCH") || l.starts_with("* ESEARCH"))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn flag_keys() {
    let mut c = ready().await;
    assert_eq!(search(&mut c, "SEARCH ALL").await, "* SEARCH 1 2 3");
    assert_eq!(search(&mut c, "SEARCH SEEN").await, "* SEARCH 2");
    assert_eq!(search(&mut c, "SEARCH UNSEEN").await, "* SEARCH 1 3");
    assert_eq!(search(&mut c, "SEARCH FLAGGED").await, "* SEARCH 2");
    assert_eq!(search(&mut c, "SEARCH DELETED").await, "* SEARCH");
    assert_eq!(
        search(&mut c, "SEARCH NOT SEEN UNFLAGGED").await,
        "* SEARCH 1 3"
    );
    assert_eq!(search(&mut c, "SEARCH OR SEEN 3").await, "* SEARCH 2 3");
}

#[tokio::test]
async fn text_keys_are_case_insensitive() {
    let mut c = ready().await;
    assert_eq!(search(&mut c, "SEARCH FROM bob").await, "* SEARCH 1");
    assert_eq!(search(&mut c, "SEARCH FROM EXAMPLE").await, "* SEARCH 1 2");
    assert_eq!(search(&mut c, "SEARCH SUBJECT lunch").await, "* SEARCH 2");
    assert_eq!(search(&mut c, "SEARCH TO alice").await, "* SEARCH 1 2");
    assert_eq!(search(&mut c, "SEARCH BODY NEEDLE").await, "* SEARCH 1");
    assert_eq!(search(&mut c, "SEARCH BODY carol").await, "* SEARCH");
    assert_eq!(search(&mut c, "SEARCH TEXT carol").await, "* SEARCH 2");
    assert_eq!(
        search(&mut c, "SEARCH HEADER Subject big").await,
        "* SEARCH 3"
    );
}

#[tokio::test]
async fn sizes_sets_and_uids() {
    let mut c = ready().await;
    assert_eq!(search(&mut c, "SEARCH SMALLER 30").await, "* SEARCH 3");
    assert_eq!(search(&mut c, "SEARCH LARGER 30").await, "* SEARCH 1 2");
    assert_eq!(search(&mut c, "SEARCH 2:*").await, "* SEARCH 2 3");
    assert_eq!(search(&mut c, "SEARCH UID 1,3").await, "* SEARCH 1 3");
    assert_eq!(search(&mut c, "UID SEARCH UNSEEN").await, "* SEARCH 1 3");
    assert_eq!(
        search(&mut c, "SEARCH SINCE 1-Jan-2000").await,
        "* SEARCH 1 2 3"
    );
    assert_eq!(search(&mut c, "SEARCH BEFORE 1-Jan-2000").await, "* SEARCH");
}

#[tokio::test]
async fn esearch_results() {
    let mut c = ready().await;
    assert_eq!(
        search(&mut c, "SEARCH RETURN (MIN MAX COUNT) UNSEEN").await,
        "* ESEARCH (TAG \"q\") MIN 1 MAX 3 COUNT 2"
    );
    assert_eq!(
        search(&mut c, "UID SEARCH RETURN () ALL").await,
        "* ESEARCH (TAG \"q\") UID ALL 1:3"
    );
}

#[tokio::test]
async fn unsupported_keys_and_charsets() {
    let mut c = ready().await;
    let r = c.cmd("a1 SEARCH SENTBEFORE 1-Jan-2000").await;
    assert!(last(&r).starts_with("a1 BAD"), "{r:?}");
    let r = c.cmd("a2 SEARCH CHARSET KOI8-R ALL").await;
    assert!(last(&r).starts_with("a2 NO [BADCHARSET"), "{r:?}");
    assert!(!has(&r, "* SEARCH"));
}
