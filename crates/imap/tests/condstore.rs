//! CONDSTORE and QRESYNC (RFC 7162), scripted after the RFC's examples. "Another session"
//! is the mail store used directly on the same Maildir, as a second IMAP server would.

mod common;

use common::{has, last, Client};
use ownmail_mailstore::{Flags, MailStore};

/// Logged in, `n` messages delivered, nothing selected.
async fn with(n: usize) -> Client {
    let mut c = Client::start().await;
    c.login().await;
    for _ in 0..n {
        c.deliver(None, common::MSG1);
    }
    c
}

/// The number after `[HIGHESTMODSEQ ` in the responses.
fn highest(lines: &[String]) -> u64 {
    lines
        .iter()
        .find_map(|l| l.split("[HIGHESTMODSEQ ").nth(1))
        .and_then(|r| r.split(']').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no HIGHESTMODSEQ in {lines:#?}"))
}

/// Another writer on the same Maildir sets `flags` on UID `uid` of INBOX.
fn other_sets(c: &Client, uid: u32, flags: Flags) {
    let f = MailStore::open(c.root()).folder("INBOX").expect("inbox");
    f.set_flags(ownmail_mailstore::Uid(uid), &flags)
        .expect("set flags");
}

/// Another writer expunges UIDs `uids` of INBOX.
fn other_expunges(c: &Client, uids: &[u32]) {
    let f = MailStore::open(c.root()).folder("INBOX").expect("inbox");
    for &u in uids {
        other_sets(
            c,
            u,
            Flags {
                deleted: true,
                ..Flags::default()
            },
        );
    }
    let picked: Vec<_> = uids.iter().map(|&u| ownmail_mailstore::Uid(u)).collect();
    f.expunge_uids(&picked).expect("expunge");
}

fn seen() -> Flags {
    Flags {
        seen: true,
        ..Flags::default()
    }
}

#[tokio::test]
async fn capability_and_enable_offer_condstore_and_qresync() {
    let mut c = with(0).await;
    let r = c.ok("a1 CAPABILITY").await;
    assert!(has(&r, " CONDSTORE") && has(&r, " QRESYNC"), "{r:#?}");
    let r = c.ok("a2 ENABLE QRESYNC").await;
    assert!(has(&r, "* ENABLED QRESYNC"), "{r:#?}");
}

#[tokio::test]
async fn select_condstore_reports_highestmodseq_and_fetch_modseq() {
    // RFC 7162 §3.1.8 example: SELECT INBOX (CONDSTORE) → OK [HIGHESTMODSEQ n].
    let mut c = with(2).await;
    let r = c.ok("a1 SELECT INBOX (CONDSTORE)").await;
    assert_eq!(highest(&r), 1, "a folder without history starts at 1");
    let r = c.ok("a2 FETCH 1:2 (MODSEQ)").await;
    assert!(
        has(&r, "* 1 FETCH (MODSEQ (1))") && has(&r, "* 2 FETCH (MODSEQ (1))"),
        "{r:#?}"
    );
    let r = c.ok("a3 STATUS INBOX (HIGHESTMODSEQ MESSAGES)").await;
    assert!(has(&r, "HIGHESTMODSEQ 1"), "{r:#?}");
}

#[tokio::test]
async fn store_bumps_modseq_and_reports_it_even_when_silent() {
    let mut c = with(2).await;
    c.ok("a1 SELECT INBOX (CONDSTORE)").await;
    let r = c.ok("a2 STORE 1 +FLAGS (\\Flagged)").await;
    assert!(
        has(&r, "* 1 FETCH (FLAGS (\\Flagged) MODSEQ (2))"),
        "{r:#?}"
    );
    // RFC 7162 §3.1.3: .SILENT still gets the new MODSEQ under CONDSTORE.
    let r = c.ok("a3 UID STORE 2 +FLAGS.SILENT (\\Seen)").await;
    assert!(has(&r, "* 2 FETCH (UID 2 MODSEQ (3))"), "{r:#?}");
    let r = c.ok("a4 STATUS INBOX (HIGHESTMODSEQ)").await;
    assert!(has(&r, "HIGHESTMODSEQ 3"), "{r:#?}");
}

#[tokio::test]
async fn fetch_changedsince_returns_only_changed_with_modseq() {
    // RFC 7162 §3.1.4.1 example: FETCH 1:* (FLAGS) (CHANGEDSINCE n).
    let mut c = with(3).await;
    c.ok("a1 SELECT INBOX").await;
    c.ok("a2 STORE 2 +FLAGS.SILENT (\\Answered)").await;
    let r = c.ok("a3 FETCH 1:* (FLAGS) (CHANGEDSINCE 1)").await;
    assert_eq!(r.len(), 2, "{r:#?}");
    assert!(
        has(&r, "* 2 FETCH (FLAGS (\\Answered) MODSEQ (2))"),
        "{r:#?}"
    );
    let r = c.ok("a4 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 2)").await;
    assert_eq!(r.len(), 1, "{r:#?}");
}

#[tokio::test]
async fn store_unchangedsince_fails_for_messages_changed_later() {
    // RFC 7162 §3.1.3 example 7: a conditional STORE on messages changed since → MODIFIED.
    let mut c = with(3).await;
    c.ok("a1 SELECT INBOX (CONDSTORE)").await;
    c.ok("a2 STORE 2 +FLAGS.SILENT (\\Flagged)").await; // 2 is now at modseq 2
    let r = c
        .ok("a3 UID STORE 1:3 (UNCHANGEDSINCE 1) +FLAGS.SILENT (\\Deleted)")
        .await;
    assert!(last(&r).contains("[MODIFIED 2]"), "{r:#?}");
    assert!(
        has(&r, "* 1 FETCH (UID 1 MODSEQ (3))") && has(&r, "* 3 FETCH (UID 3 MODSEQ (3))"),
        "{r:#?}"
    );
    let r = c.ok("a4 FETCH 2 (FLAGS)").await;
    assert!(has(&r, "* 2 FETCH (FLAGS (\\Flagged))"), "{r:#?}");
    // Example 10: UNCHANGEDSINCE 0 always fails, changing nothing.
    let r = c.ok("a5 STORE 1 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)").await;
    assert!(last(&r).contains("[MODIFIED 1]"), "{r:#?}");
}

#[tokio::test]
async fn search_modseq_finds_changes_and_says_the_highest() {
    // RFC 7162 §3.1.5 example: SEARCH MODSEQ n → * SEARCH … (MODSEQ m).
    let mut c = with(3).await;
    c.ok("a1 SELECT INBOX").await;
    c.ok("a2 STORE 3 +FLAGS.SILENT (\\Seen)").await;
    let r = c.ok("a3 SEARCH MODSEQ 2").await;
    assert!(has(&r, "* SEARCH 3 (MODSEQ 2)"), "{r:#?}");
    let r = c.ok("a4 UID SEARCH RETURN (ALL) MODSEQ 1").await;
    assert!(has(&r, "ALL 1:3 MODSEQ 2"), "{r:#?}");
}

#[tokio::test]
async fn other_sessions_changes_carry_modseq_once_condstore_is_on() {
    let mut c = with(2).await;
    c.ok("a1 ENABLE CONDSTORE").await;
    c.ok("a2 SELECT INBOX").await;
    other_sets(&c, 1, seen());
    let r = c.ok("a3 NOOP").await;
    assert!(
        has(&r, "* 1 FETCH (FLAGS (\\Seen) UID 1 MODSEQ (2))"),
        "{r:#?}"
    );
}

#[tokio::test]
async fn qresync_needs_enable_first() {
    let mut c = with(1).await;
    let r = c.cmd("a1 SELECT INBOX (QRESYNC (1 1))").await;
    assert!(last(&r).starts_with("a1 BAD"), "{r:#?}");
    let r = c.cmd("a2 SELECT INBOX").await;
    assert!(last(&r).starts_with("a2 OK"), "{r:#?}");
    let r = c
        .cmd("a3 UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)")
        .await;
    assert!(last(&r).starts_with("a3 BAD"), "{r:#?}");
}

#[tokio::test]
async fn qresync_select_reports_vanished_earlier_and_changed_flags() {
    // RFC 7162 §3.2.5.1: the client comes back with (uidvalidity modseq known-uids).
    let mut c = with(6).await;
    c.ok("a1 ENABLE QRESYNC").await;
    let r = c.ok("a2 SELECT INBOX").await;
    let h = highest(&r);
    let validity: u32 = r
        .iter()
        .find_map(|l| l.split("[UIDVALIDITY ").nth(1))
        .and_then(|v| v.split(']').next())
        .and_then(|v| v.parse().ok())
        .expect("uidvalidity");
    c.ok("a3 UNSELECT").await;
    // Meanwhile: 2 and 5 expunged, 3 flagged, one new message.
    other_expunges(&c, &[2, 5]);
    other_sets(
        &c,
        3,
        Flags {
            flagged: true,
            ..Flags::default()
        },
    );
    c.deliver(None, common::MSG2);
    let r = c
        .ok(&format!("a4 SELECT INBOX (QRESYNC ({validity} {h} 1:6))"))
        .await;
    assert!(has(&r, "* VANISHED (EARLIER) 2,5"), "{r:#?}");
    assert!(has(&r, "FETCH (UID 3 FLAGS (\\Flagged) MODSEQ ("), "{r:#?}");
    assert!(!has(&r, "FETCH (UID 1 "), "{r:#?}");
    // The new message is outside the known UIDs; it shows in EXISTS.
    assert!(has(&r, "* 5 EXISTS"), "{r:#?}");
    // Without known UIDs, the new message counts as a change too.
    let r = c
        .ok(&format!("a5 SELECT INBOX (QRESYNC ({validity} {h}))"))
        .await;
    assert!(has(&r, "* VANISHED (EARLIER) 2,5"), "{r:#?}");
    assert!(has(&r, "FETCH (UID 7 FLAGS () MODSEQ ("), "{r:#?}");
    // Another UIDVALIDITY: nothing but the plain SELECT answers.
    let r = c.ok("a6 SELECT INBOX (QRESYNC (1 1))").await;
    assert!(!has(&r, "VANISHED") && !has(&r, "FETCH"), "{r:#?}");
}

#[tokio::test]
async fn expunge_with_qresync_is_vanished_by_uid() {
    // RFC 7162 §3.2.10: EXPUNGE becomes VANISHED once QRESYNC is on.
    let mut c = with(4).await;
    c.ok("a1 ENABLE QRESYNC").await;
    c.ok("a2 SELECT INBOX").await;
    c.ok("a3 STORE 2:3 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.ok("a4 EXPUNGE").await;
    assert!(has(&r, "* VANISHED 2:3"), "{r:#?}");
    assert!(!r.iter().any(|l| l.ends_with(" EXPUNGE")), "{r:#?}");
    // RFC 7162 §3.2.6: UID FETCH (CHANGEDSINCE n VANISHED) gives the expunged UIDs first.
    let r = c
        .ok("a5 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
        .await;
    let vanished = r.iter().position(|l| l == "* VANISHED (EARLIER) 2:3");
    assert_eq!(vanished, Some(0), "{r:#?}");
    let r = c
        .ok("a6 UID FETCH 3:4 (FLAGS) (CHANGEDSINCE 1 VANISHED)")
        .await;
    assert!(has(&r, "* VANISHED (EARLIER) 3"), "{r:#?}");
}

#[tokio::test]
async fn qresync_from_before_what_is_remembered_vanishes_every_uid_not_present() {
    // RFC 7162 §3.2.5.2: a server that no longer knows which UIDs went after the client's
    // mod-sequence may report every UID that is not there. A damaged state file forgets all.
    let mut c = with(4).await;
    c.ok("a1 ENABLE QRESYNC").await;
    let r = c.ok("a2 SELECT INBOX").await;
    let h = highest(&r);
    c.ok("a3 UNSELECT").await;
    other_expunges(&c, &[2]);
    std::fs::write(c.root().join("ownmail-modseq"), "damaged").expect("write");
    let validity = MailStore::open(c.root())
        .folder("INBOX")
        .expect("inbox")
        .sync()
        .expect("sync")
        .uid_validity
        .0;
    let r = c
        .ok(&format!("a4 SELECT INBOX (QRESYNC ({validity} {h}))"))
        .await;
    assert!(has(&r, "* VANISHED (EARLIER) 2"), "{r:#?}");
    assert!(highest(&r) > h, "{r:#?}");
    // Restricted to the UIDs the client says it knows.
    let r = c
        .ok(&format!("a5 SELECT INBOX (QRESYNC ({validity} {h} 3:4))"))
        .await;
    assert!(!has(&r, "VANISHED"), "{r:#?}");
}
