//! Tests of the IMAP-facing store: folder names and isolation, folders, flags, UID lists.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::*;

fn store() -> (tempfile::TempDir, MailStore) {
    let t = tempfile::tempdir().expect("tempdir");
    let s = MailStore::open(t.path().join("Maildir"));
    Maildir::open(s.root()).ensure(None).expect("ensure");
    (t, s)
}

fn flags(seen: bool, kws: &[&str]) -> Flags {
    Flags {
        seen,
        keywords: kws.iter().map(|k| k.to_string()).collect(),
        ..Flags::default()
    }
}

fn uids(st: &FolderState) -> Vec<u32> {
    st.messages.iter().map(|m| m.uid.0).collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn nasty_folder_names_are_refused_with_their_reason() {
    let long = "a".repeat(256);
    let long_total = ["a"; 300].join("/");
    let table: &[(&str, NameError)] = &[
        ("", NameError::Empty),
        ("..", NameError::Dot),
        ("../x", NameError::Dot),
        ("a/../../etc", NameError::Dot),
        ("/etc", NameError::EmptyComponent),
        ("a//b", NameError::EmptyComponent),
        ("a/", NameError::EmptyComponent),
        ("a\0b", NameError::ControlChar),
        ("a\nb", NameError::ControlChar),
        ("a\x7fb", NameError::ControlChar),
        ("a\rb", NameError::ControlChar),
        ("foo%", NameError::Wildcard),
        ("*", NameError::Wildcard),
        (".hidden", NameError::Dot),
        ("a/.b", NameError::Dot),
        ("Lists.rust", NameError::Dot),
        ("cur.", NameError::Dot),
        ("Ünïcode", NameError::NotAscii),
        (&long, NameError::TooLong),
        (&long_total, NameError::TooLong),
        ("INBOX/child", NameError::UnderInbox),
        ("inbox/child", NameError::UnderInbox),
    ];
    let (t, s) = store();
    for (name, why) in table {
        assert_eq!(FolderName::parse(name), Err(*why), "{name:?}");
        match s.create_folder(name, None) {
            Err(StoreError::InvalidName { why: w, .. }) => assert_eq!(w, *why, "{name:?}"),
            other => panic!("{name:?}: {other:?}"),
        }
        assert!(matches!(
            s.folder(name),
            Err(StoreError::InvalidName { .. })
        ));
        assert!(matches!(
            s.rename_folder("x", name),
            Err(StoreError::InvalidName { .. })
        ));
        assert!(s.subscribe(name).is_err());
        assert!(matches!(
            s.delete_folder(name),
            Err(StoreError::InvalidName { .. })
        ));
    }
    // Nothing appeared next to the Maildir, nor inside it but cur/new/tmp.
    assert_eq!(names_in(t.path()), vec!["Maildir"]);
    assert_eq!(names_in(s.root()), vec!["cur", "new", "tmp"]);
}

#[test]
fn folder_names_map_to_maildirplusplus_directories() {
    let n = FolderName::parse("Lists/rust").expect("valid");
    assert_eq!(n.dir_name(), ".Lists.rust");
    assert_eq!(FolderName::from_dir_name(".Lists.rust"), Some(n));
    assert_eq!(FolderName::from_dir_name(".."), None);
    assert_eq!(FolderName::from_dir_name("..deleted.1.2"), None);
    assert_eq!(FolderName::from_dir_name(".INBOX"), None);
    assert_eq!(FolderName::from_dir_name("cur"), None);
    assert_eq!(FolderName::from_dir_name(".a..b"), None);
}

#[test]
fn create_list_rename_delete_folders_with_children_and_subscriptions() {
    let (_t, s) = store();
    s.create_folder("Lists/rust", None).expect("create");
    assert!(s.root().join(".Lists.rust/cur").is_dir());
    assert!(s.root().join(".Lists.rust/maildirfolder").is_file());
    assert!(matches!(
        s.create_folder("Lists/rust", None),
        Err(StoreError::AlreadyExists(_))
    ));
    s.subscribe("Lists/rust").expect("subscribe");
    let list = s.list_folders().expect("list");
    let names: Vec<(&str, bool, bool, bool)> = list
        .iter()
        .map(|f| (f.name.as_str(), f.has_children, f.selectable, f.subscribed))
        .collect();
    assert_eq!(
        names,
        vec![
            ("INBOX", false, true, false),
            ("Lists", true, false, false),
            ("Lists/rust", false, true, true)
        ]
    );

    s.create_folder("Lists", None).expect("create parent");
    s.rename_folder("Lists", "Mail/lists").expect("rename");
    let names: Vec<String> = s
        .list_folders()
        .expect("list")
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        names,
        vec!["INBOX", "Mail", "Mail/lists", "Mail/lists/rust"]
    );
    assert_eq!(
        fs::read_to_string(s.root().join("subscriptions")).expect("subs"),
        "V\t2\n\nMail\tlists\trust\n"
    );
    assert!(matches!(
        s.rename_folder("Mail", "Mail/x"),
        Err(StoreError::NotAllowed(_))
    ));
    assert!(matches!(
        s.rename_folder("Nope", "Other"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.rename_folder("INBOX", "Other"),
        Err(StoreError::NotAllowed(_))
    ));
    s.create_folder("Other", None).expect("create");
    assert!(matches!(
        s.rename_folder("Other", "Mail/lists"),
        Err(StoreError::AlreadyExists(_))
    ));

    s.delete_folder("Mail/lists").expect("delete");
    assert!(!s.root().join(".Mail.lists").exists());
    assert!(s.root().join(".Mail.lists.rust").is_dir(), "children stay");
    assert!(matches!(
        s.delete_folder("Mail/lists"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete_folder("inbox"),
        Err(StoreError::NotAllowed(_))
    ));
    assert!(matches!(s.folder("Gone"), Err(StoreError::NotFound(_))));
}

#[test]
fn special_folders_are_created_subscribed_and_flagged() {
    let t = tempfile::tempdir().expect("tempdir");
    let s = MailStore::open(t.path().join("new-user/Maildir"));
    s.ensure_special_folders(None).expect("ensure");
    s.ensure_special_folders(None).expect("idempotent");
    let list = s.list_folders().expect("list");
    let got: Vec<(String, Option<&str>, bool)> = list
        .iter()
        .map(|f| {
            (
                f.name.clone(),
                f.special_use.map(|u| u.attribute()),
                f.subscribed,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("INBOX".into(), None, false),
            ("Archive".into(), Some("\\Archive"), true),
            ("Drafts".into(), Some("\\Drafts"), true),
            ("Junk".into(), Some("\\Junk"), true),
            ("Sent".into(), Some("\\Sent"), true),
            ("Trash".into(), Some("\\Trash"), true),
        ]
    );
}

#[test]
fn folder_symlink_is_not_followed() {
    let (t, s) = store();
    let outside = t.path().join("outside");
    Maildir::open(&outside).ensure(None).expect("ensure");
    std::os::unix::fs::symlink(&outside, s.root().join(".Evil")).expect("symlink");
    assert!(matches!(s.folder("Evil"), Err(StoreError::NotFound(_))));
    let names: Vec<String> = s
        .list_folders()
        .expect("list")
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, vec!["INBOX"]);
}

/// A Maildir as Dovecot leaves it, with its uidlist and keywords.
fn dovecot_maildir(root: &Path) {
    Maildir::open(root).ensure(None).expect("ensure");
    fs::write(
        root.join("dovecot-uidlist"),
        "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n\
         25019 :1275660000.M1P2.mx,S=5\n\
         25020 W1290 GAAAA :1275660001.M2P2.mx,S=6\n\
         garbage line\n\
         25021 :1275660002.M3P2.mx,S=7\n",
    )
    .expect("uidlist");
    fs::write(root.join("dovecot-keywords"), "0 $Junk\n1 work\n").expect("keywords");
    fs::write(root.join("cur/1275660000.M1P2.mx,S=5:2,RS"), "hello").expect("m1");
    fs::write(root.join("cur/1275660001.M2P2.mx,S=6:2,Pab"), "hello!").expect("m2");
    fs::write(root.join("new/1275660002.M3P2.mx,S=7"), "hello!!").expect("m3");
    // Unknown to the uidlist: gets N and then N+1, older first.
    fs::write(root.join("new/1275660100.M9P2.mx,S=1"), "x").expect("m4");
    fs::write(root.join("cur/1275660099.M8P2.mx,S=1:2,"), "y").expect("m5");
}

#[test]
fn dovecot_maildir_opens_with_its_uids_uidvalidity_and_keywords() {
    let (_t, s) = store();
    dovecot_maildir(s.root());
    let inbox = s.folder("INBOX").expect("inbox");
    let st = inbox.sync().expect("sync");
    assert_eq!(st.uid_validity, UidValidity(1275660208));
    assert_eq!(uids(&st), vec![25019, 25020, 25021, 25022, 25023]);
    assert_eq!(st.uid_next, Uid(25024));
    let by_uid: HashMap<u32, &MessageInfo> = st.messages.iter().map(|m| (m.uid.0, m)).collect();
    assert_eq!(by_uid[&25022].basename, "1275660099.M8P2.mx,S=1");
    assert_eq!(by_uid[&25023].basename, "1275660100.M9P2.mx,S=1");
    let m1 = &by_uid[&25019].flags;
    assert!(m1.seen && m1.answered && !m1.deleted);
    let m2 = &by_uid[&25020].flags;
    let kws: Vec<&str> = m2.keywords.iter().map(String::as_str).collect();
    assert_eq!(kws, vec!["$Forwarded", "$Junk", "work"]);
    assert!(by_uid[&25021].in_new);
    assert_eq!(by_uid[&25021].size, Some(7));

    // Written back in Dovecot's format, extension fields and GUID kept.
    let text = fs::read_to_string(s.root().join("dovecot-uidlist")).expect("read");
    assert!(text.starts_with("3 V1275660208 N25024 G3085f01b7f11094c501100008c4a11c1\n"));
    assert!(text.contains("25020 W1290 GAAAA :1275660001.M2P2.mx,S=6\n"));
    assert!(text.contains("25023 :1275660100.M9P2.mx,S=1\n"));
    assert!(!text.contains("garbage"));
}

#[test]
fn restart_keeps_uidvalidity_and_uids_and_expunged_uids_are_not_reused() {
    let (_t, s) = store();
    let inbox = s.folder("INBOX").expect("inbox");
    let md = Maildir::open(s.root());
    for i in 0..3 {
        md.deliver(format!("m{i}").as_bytes(), None)
            .expect("deliver");
    }
    let first = inbox.sync().expect("sync");
    assert_eq!(uids(&first), vec![1, 2, 3]);
    assert!(first.uid_validity.0 > 1_600_000_000);

    // A new process: a fresh handle on the same directory.
    let again = MailStore::open(s.root()).folder("inbox").expect("inbox");
    let second = again.sync().expect("sync");
    assert_eq!(second, first);

    let last = first.messages.last().expect("three").uid;
    let f = Flags {
        deleted: true,
        ..Flags::default()
    };
    again.set_flags(last, &f).expect("flag");
    assert_eq!(again.expunge().expect("expunge"), vec![last]);
    md.deliver(b"m4", None).expect("deliver");
    let third = again.sync().expect("sync");
    assert_eq!(uids(&third), vec![1, 2, 4]);
    assert_eq!(third.uid_validity, first.uid_validity);
}

#[test]
fn set_flags_moves_new_to_cur_and_keeps_the_uid() {
    let (_t, s) = store();
    let inbox = s.folder("INBOX").expect("inbox");
    let path = Maildir::open(s.root())
        .deliver(b"hi", None)
        .expect("deliver");
    let st = inbox.sync().expect("sync");
    let m = &st.messages[0];
    assert!(m.in_new);
    let mut f = flags(true, &["$Forwarded", "Work", "$Junk"]);
    f.flagged = true;
    let after = inbox.set_flags(m.uid, &f).expect("set");
    assert!(!path.exists());
    assert!(!after.in_new);
    assert_eq!(after.uid, m.uid);
    assert!(after.file_name.ends_with(":2,FPSab"), "{}", after.file_name);
    assert_eq!(after.flags, f);
    assert_eq!(
        fs::read_to_string(s.root().join("dovecot-keywords")).expect("kw"),
        "0 $Junk\n1 Work\n"
    );
    // Same keyword in another case uses the same letter.
    let after2 = inbox
        .set_flags(m.uid, &flags(false, &["work"]))
        .expect("set");
    assert!(after2.file_name.ends_with(":2,b"), "{}", after2.file_name);
    let st2 = inbox.sync().expect("sync");
    assert_eq!(uids(&st2), vec![m.uid.0]);
    assert!(st2.messages[0].flags.keywords.contains("Work"));
    assert!(matches!(
        inbox.set_flags(Uid(99), &f),
        Err(StoreError::NoSuchMessage(Uid(99)))
    ));
    assert!(matches!(
        inbox.set_flags(m.uid, &flags(false, &["bad word"])),
        Err(StoreError::InvalidKeyword(_))
    ));
}

#[test]
fn a_27th_keyword_is_refused() {
    let (_t, s) = store();
    let inbox = s.folder("INBOX").expect("inbox");
    let uid = inbox.append(b"x", &Flags::default(), None).expect("append");
    let many: Vec<String> = (0..26).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    inbox.set_flags(uid, &flags(false, &refs)).expect("26 fit");
    assert!(matches!(
        inbox.set_flags(uid, &flags(false, &["one-more"])),
        Err(StoreError::TooManyKeywords)
    ));
}

#[test]
fn append_sets_flags_internaldate_and_next_uid() {
    let (_t, s) = store();
    let sent = s.create_folder("Sent", None).expect("create");
    let date = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let u1 = sent
        .append(
            b"Subject: a\r\n\r\nbody\r\n",
            &flags(true, &["$Junk"]),
            Some(date),
        )
        .expect("append");
    let u2 = sent
        .append(b"two", &Flags::default(), None)
        .expect("append");
    assert_eq!((u1, u2), (Uid(1), Uid(2)));
    let st = sent.sync().expect("sync");
    let m = &st.messages[0];
    assert!(m.flags.seen && m.flags.keywords.contains("$Junk"));
    assert_eq!(m.size, Some(20));
    assert_eq!(sent.internal_date(m).expect("date"), date);
    let mut body = String::new();
    std::io::Read::read_to_string(&mut sent.open_message(m).expect("open"), &mut body)
        .expect("read");
    assert_eq!(body, "Subject: a\r\n\r\nbody\r\n");
    assert!(names_in(&sent.path().join("tmp")).is_empty());
    assert!(names_in(&sent.path().join("new")).is_empty());
}

#[test]
fn expunge_removes_only_deleted_messages() {
    let (_t, s) = store();
    let inbox = s.folder("INBOX").expect("inbox");
    let del = Flags {
        deleted: true,
        ..Flags::default()
    };
    let a = inbox.append(b"a", &del, None).expect("a");
    let b = inbox.append(b"b", &Flags::default(), None).expect("b");
    let c = inbox.append(b"c", &del, None).expect("c");
    assert_eq!(inbox.expunge_uids(&[c, b]).expect("uid expunge"), vec![c]);
    assert_eq!(inbox.expunge().expect("expunge"), vec![a]);
    assert_eq!(uids(&inbox.sync().expect("sync")), vec![b.0]);
    assert_eq!(names_in(&inbox.path().join("cur")).len(), 1);
}

#[test]
fn copy_and_move_give_new_uids_and_keep_flags_and_date() {
    let (_t, s) = store();
    let inbox = s.folder("INBOX").expect("inbox");
    let archive = s.create_folder("Archive", None).expect("create");
    // The destination already uses letter a for another keyword.
    let pre = archive
        .append(b"old", &flags(false, &["other"]), None)
        .expect("pre");
    let date = UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    let a = inbox
        .append(b"aaa", &flags(true, &["$Junk"]), Some(date))
        .expect("a");
    let b = inbox.append(b"bbb", &Flags::default(), None).expect("b");

    let copied = inbox.copy_to(&[a, Uid(77)], &archive).expect("copy");
    assert_eq!(copied, vec![(a, Uid(pre.0 + 1))]);
    let moved = inbox.move_to(&[a, b], &archive).expect("move");
    assert_eq!(moved, vec![(a, Uid(pre.0 + 2)), (b, Uid(pre.0 + 3))]);
    assert!(inbox.sync().expect("sync").messages.is_empty());

    let st = archive.sync().expect("sync");
    assert_eq!(uids(&st), vec![1, 2, 3, 4]);
    let m = &st.messages[1];
    assert!(m.flags.seen);
    let kws: Vec<&str> = m.flags.keywords.iter().map(String::as_str).collect();
    assert_eq!(kws, vec!["$Junk"]);
    assert!(m.file_name.ends_with(":2,Sb"), "{}", m.file_name);
    assert_eq!(archive.internal_date(m).expect("date"), date);
    // A copy to the same folder gets another UID, too.
    let again = archive.copy_to(&[Uid(2)], &archive).expect("self copy");
    assert_eq!(again, vec![(Uid(2), Uid(5))]);
}

#[test]
fn concurrent_delivery_and_sessions_never_share_or_split_uids() {
    let (_t, s) = store();
    let root = s.root().to_path_buf();
    let mut handles = Vec::new();
    for d in 0..3 {
        let root = root.clone();
        handles.push(std::thread::spawn(move || {
            let md = Maildir::open(&root);
            for i in 0..40 {
                md.deliver(format!("d{d} m{i}").as_bytes(), None)
                    .expect("deliver");
            }
            Vec::new()
        }));
    }
    for _ in 0..3 {
        let root = root.clone();
        handles.push(std::thread::spawn(move || {
            let f = MailStore::open(&root).folder("INBOX").expect("inbox");
            let mut seen = Vec::new();
            for i in 0..30 {
                let st = f.sync().expect("sync");
                if let Some(m) = st.messages.get(i % 7) {
                    // Touch some: new/ → cur/ renames under a concurrent scan.
                    let _ = f.set_flags(m.uid, &flags(i % 2 == 0, &[]));
                }
                seen.extend(st.messages.into_iter().map(|m| (m.uid, m.basename)));
            }
            seen
        }));
    }
    let mut by_name: HashMap<String, Uid> = HashMap::new();
    let mut by_uid: HashMap<Uid, String> = HashMap::new();
    for h in handles {
        for (uid, name) in h.join().expect("thread") {
            assert_eq!(*by_name.entry(name.clone()).or_insert(uid), uid, "{name}");
            assert_eq!(*by_uid.entry(uid).or_insert(name.clone()), name, "{uid:?}");
        }
    }
    let fin = MailStore::open(&root)
        .folder("INBOX")
        .expect("inbox")
        .sync()
        .expect("sync");
    assert_eq!(fin.messages.len(), 120);
    let mut u = uids(&fin);
    u.dedup();
    assert_eq!(u.len(), 120);
    for m in &fin.messages {
        if let Some(uid) = by_name.get(&m.basename) {
            assert_eq!(*uid, m.uid);
        }
    }
}

#[test]
fn stale_lock_is_broken_and_fresh_lock_released() {
    let (_t, s) = store();
    let inbox = s.folder("INBOX").expect("inbox");
    let lock = s.root().join(UIDLIST_LOCK);
    let f = fs::File::create(&lock).expect("lock");
    f.set_modified(SystemTime::now() - Duration::from_secs(600))
        .expect("mtime");
    inbox.sync().expect("sync breaks the stale lock");
    assert!(!lock.exists());
}

#[test]
fn progress_reports_every_file() {
    let (_t, s) = store();
    let md = Maildir::open(s.root());
    for _ in 0..5 {
        md.deliver(b"x", None).expect("deliver");
    }
    let mut calls = Vec::new();
    s.folder("INBOX")
        .expect("inbox")
        .sync_with_progress(&mut |done, total| calls.push((done, total)))
        .expect("sync");
    assert_eq!(calls, (1..=5).map(|i| (i, 5)).collect::<Vec<_>>());
}

#[test]
fn corrupt_uidlist_header_is_rebuilt_and_junk_never_panics() {
    let (_t, s) = store();
    fs::write(s.root().join("dovecot-uidlist"), "3 Vxyz N1\n").expect("write");
    // Strict parsing refuses it; a sync rebuilds it (see migration_tests for the details).
    assert!(matches!(
        UidList::parse("3 Vxyz N1\n", Path::new("x")),
        Err(StoreError::Corrupt { .. })
    ));
    let st = s.folder("INBOX").expect("inbox").sync().expect("rebuilt");
    assert_ne!(st.uid_validity.0, 0);
    // Pseudo-random junk (and a few hand-made edge cases) parse without panicking.
    let p = Path::new("x");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let alphabet = b"0123456789 :VNGW\n\r,.a\xff";
    for _ in 0..2000 {
        let mut text = Vec::new();
        for _ in 0..(seed % 60) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        let _ = UidList::parse(&String::from_utf8_lossy(&text), p);
        let _ = Keywords::parse(&String::from_utf8_lossy(&text));
    }
    for edge in [
        "",
        "3",
        "3 V1 N4294967295\n4294967295 :a\n",
        "1 5 9\n3 x\n",
        "3 V1\n0 :a\n",
    ] {
        let _ = UidList::parse(edge, p);
    }
    let l = UidList::parse("3 V1 N4294967295\n4294967295 :a\n", p).expect("parse");
    let mut l2 = l.clone();
    assert_eq!(l2.assign("b".into()), None);
    let l3 = UidList::parse("1 7 3\n1 old,S=1\n5 other\n", p).expect("v1");
    assert_eq!(l3.uid_validity, UidValidity(7));
    assert_eq!(l3.next_uid, Uid(6));
}

#[test]
fn new_files_get_uids_in_delivery_order_within_one_second() {
    let t = tempfile::tempdir().expect("tmp");
    let s = MailStore::open(t.path().join("Maildir"));
    s.ensure_special_folders(None).expect("ensure");
    let new = s.root().join("new");
    // Not zero-padded: by name, M99 would sort after M100 and Q10 before Q9.
    for name in [
        "1700000000.M100P1Q1.h,S=1",
        "1700000000.M99P1Q0.h,S=1",
        "1700000000.M100P1Q10.h,S=1",
        "1700000000.M100P1Q9.h,S=1",
        "1699999999.M500P1Q0.h,S=1",
    ] {
        fs::write(new.join(name), "x").expect("write");
    }
    let st = s.folder("INBOX").expect("inbox").sync().expect("sync");
    let order: Vec<&str> = st.messages.iter().map(|m| m.basename.as_str()).collect();
    assert_eq!(
        order,
        [
            "1699999999.M500P1Q0.h,S=1",
            "1700000000.M99P1Q0.h,S=1",
            "1700000000.M100P1Q1.h,S=1",
            "1700000000.M100P1Q9.h,S=1",
            "1700000000.M100P1Q10.h,S=1",
        ]
    );
}
