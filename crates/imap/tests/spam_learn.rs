//! Moving mail into and out of Junk trains the user's spam classifier (`learn` module).

mod common;

use common::{has, Client};
use ownmail_spam::{Class, TokenStore, STORE_FILE};

async fn ready() -> Client {
    let mut c = Client::start().await;
    c.login().await;
    c.deliver(None, common::MSG1);
    c.deliver(None, common::MSG2);
    c.select_inbox().await;
    c
}

fn store(c: &Client) -> TokenStore {
    TokenStore::load(&c.root().join(STORE_FILE)).expect("load store")
}

#[tokio::test]
async fn move_into_junk_is_spam_and_back_to_inbox_is_ham() {
    let mut c = ready().await;
    c.ok("a1 MOVE 1 Junk").await;
    let s = store(&c);
    assert_eq!(s.counts(), (1, 0));
    assert_eq!(s.learned_as(common::MSG1.as_bytes()), Some(Class::Spam));
    assert_eq!(s.learned_as(common::MSG2.as_bytes()), None);

    c.ok("a2 SELECT Junk").await;
    c.ok("a3 UID MOVE 1 INBOX").await;
    let s = store(&c);
    assert_eq!(s.counts(), (0, 1));
    assert_eq!(s.learned_as(common::MSG1.as_bytes()), Some(Class::Ham));
}

#[tokio::test]
async fn copy_into_junk_teaches_once() {
    let mut c = ready().await;
    c.ok("a1 UID COPY 1:2 Junk").await;
    assert_eq!(store(&c).counts(), (2, 0));
    // The same messages again: nothing new to learn.
    c.ok("a2 COPY 1:2 Junk").await;
    assert_eq!(store(&c).counts(), (2, 0));
}

#[tokio::test]
async fn junk_to_trash_and_other_moves_teach_nothing() {
    let mut c = ready().await;
    c.ok("a1 MOVE 1 Archive").await;
    c.ok("a2 COPY 1 Trash").await;
    assert!(!c.root().join(STORE_FILE).exists());
    c.ok("a3 MOVE 1 Junk").await;
    assert_eq!(store(&c).counts(), (1, 0));
    c.ok("a4 SELECT Junk").await;
    c.ok("a5 MOVE 1 Trash").await;
    let s = store(&c);
    assert_eq!(s.counts(), (1, 0));
    assert_eq!(s.learned_as(common::MSG2.as_bytes()), Some(Class::Spam));
}

#[tokio::test]
async fn learning_failure_does_not_fail_the_move() {
    let mut c = ready().await;
    // A directory where the store should be: learning cannot read or replace it.
    std::fs::create_dir(c.root().join(STORE_FILE)).expect("mkdir");
    let r = c.ok("a1 MOVE 1 Junk").await;
    assert!(has(&r, "* 1 EXPUNGE"), "{r:#?}");
    let r = c.ok("a2 STATUS Junk (MESSAGES)").await;
    assert!(has(&r, "(MESSAGES 1)"), "{r:?}");
}
