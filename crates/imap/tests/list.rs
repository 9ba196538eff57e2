//! LIST, LSUB, CREATE, DELETE, RENAME, SUBSCRIBE, STATUS, and names that try to escape.

mod common;

use common::{has, last, Client};

#[tokio::test]
async fn list_shows_inbox_and_special_use() {
    let mut c = Client::start().await;
    c.login().await;
    let r = c.ok("a1 LIST \"\" *").await;
    assert!(has(&r, "* LIST (\\HasNoChildren) \"/\" INBOX"), "{r:#?}");
    assert!(
        has(&r, "* LIST (\\HasNoChildren \\Sent) \"/\" Sent"),
        "{r:#?}"
    );
    assert!(has(&r, "\\Trash) \"/\" Trash"));
    let r = c.ok("a2 LIST \"\" \"\"").await;
    assert!(has(&r, "* LIST (\\Noselect) \"/\" \"\""), "{r:#?}");
    let r = c.ok("a3 LIST (SPECIAL-USE) \"\" *").await;
    assert!(!has(&r, "INBOX"), "{r:#?}");
    assert!(has(&r, "Junk"));
}

#[tokio::test]
async fn percent_stops_at_the_delimiter_and_children_are_marked() {
    let mut c = Client::start().await;
    c.login().await;
    c.ok("a1 CREATE Lists/rust").await;
    let r = c.ok("a2 LIST \"\" %").await;
    assert!(
        has(&r, "* LIST (\\Noselect \\HasChildren) \"/\" Lists"),
        "{r:#?}"
    );
    assert!(!has(&r, "Lists/rust"));
    let r = c.ok("a3 LIST Lists/ %").await;
    assert!(
        has(&r, "* LIST (\\HasNoChildren) \"/\" Lists/rust"),
        "{r:#?}"
    );
    assert!(c.root().join(".Lists.rust").join("cur").is_dir());
}

#[tokio::test]
async fn create_rename_delete() {
    let mut c = Client::start().await;
    c.login().await;
    c.ok("a1 CREATE Work").await;
    let r = c.cmd("a2 CREATE Work").await;
    assert!(last(&r).starts_with("a2 NO [ALREADYEXISTS]"), "{r:?}");
    c.ok("a3 RENAME Work Play").await;
    let r = c.ok("a4 LIST \"\" *").await;
    assert!(has(&r, "\"/\" Play") && !has(&r, "\"/\" Work"), "{r:#?}");
    c.ok("a5 DELETE Play").await;
    let r = c.cmd("a6 DELETE Play").await;
    assert!(last(&r).starts_with("a6 NO"), "{r:?}");
    let r = c.cmd("a7 DELETE INBOX").await;
    assert!(last(&r).starts_with("a7 NO"), "{r:?}");
}

#[tokio::test]
async fn names_that_step_out_are_refused() {
    let mut c = Client::start().await;
    c.login().await;
    for (i, name) in [
        "../evil",
        "\"../../etc\"",
        "a/../../b",
        "..",
        ".hidden",
        "/abs",
        "x/",
    ]
    .iter()
    .enumerate()
    {
        let r = c.cmd(&format!("c{i} SELECT {name}")).await;
        assert!(
            last(&r).contains(" NO") || last(&r).contains(" BAD"),
            "{name} -> {r:?}"
        );
    }
    let r = c.cmd("d1 CREATE ../evil").await;
    assert!(last(&r).starts_with("d1 NO"), "{r:?}");
    let r = c.cmd("d2 RENAME Sent ../evil").await;
    assert!(last(&r).starts_with("d2 NO"), "{r:?}");
    let r = c.cmd("d3 APPEND ../evil {3+}\r\nabc").await;
    assert!(last(&r).starts_with("d3 NO"), "{r:?}");
    assert!(!c.dir.path().join("evil").exists());
    assert!(!c.root().join("..").join(".evil").exists());
}

#[tokio::test]
async fn subscribe_and_lsub() {
    let mut c = Client::start().await;
    c.login().await;
    c.ok("a1 CREATE News").await;
    c.ok("a2 SUBSCRIBE News").await;
    let r = c.ok("a3 LSUB \"\" *").await;
    assert!(has(&r, "* LSUB () \"/\" News"), "{r:#?}");
    let r = c.ok("a4 LIST (SUBSCRIBED) \"\" *").await;
    assert!(has(&r, "\\Subscribed) \"/\" News"), "{r:#?}");
    c.ok("a5 UNSUBSCRIBE News").await;
    let r = c.ok("a6 LSUB \"\" *").await;
    assert!(!has(&r, "News"));
}

#[tokio::test]
async fn status_and_list_status() {
    let mut c = Client::start().await;
    c.login().await;
    c.deliver(None, common::MSG1);
    c.deliver(None, common::MSG2);
    let r = c
        .ok("a1 STATUS INBOX (MESSAGES UNSEEN UIDNEXT RECENT)")
        .await;
    assert!(
        has(
            &r,
            "* STATUS INBOX (MESSAGES 2 UNSEEN 2 UIDNEXT 3 RECENT 0)"
        ),
        "{r:#?}"
    );
    let r = c.ok("a2 LIST \"\" INBOX RETURN (STATUS (MESSAGES))").await;
    assert!(has(&r, "* STATUS INBOX (MESSAGES 2)"), "{r:#?}");
    let r = c.cmd("a3 STATUS Nope (MESSAGES)").await;
    assert!(last(&r).starts_with("a3 NO"), "{r:?}");
}
