//! A Dovecot Maildir moving in (issue 11 item 4) and what a damaged `dovecot-uidlist` does
//! (issue 11 "bad input"): every case keeps every message, keeps UIDVALIDITY and the UIDs it
//! can trust, never hands out a UID twice, and logs one warning naming the file. Plus two
//! handles on one folder with a delivery in between (item 5): a consistent view, no UID reused.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::*;

/// The log lines written while `f` runs (tracing's fmt layer, no colours).
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let sink = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let out = tracing::subscriber::with_default(sub, f);
    let text = buf
        .0
        .lock()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    (out, text)
}

/// An INBOX with messages `a`…`e` (`cur/NAME:2,S`) and `uidlist` as its dovecot-uidlist.
fn inbox_with(uidlist: &str, names: &[&str]) -> (tempfile::TempDir, Folder) {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("Maildir");
    Maildir::open(&root).ensure(None).expect("ensure");
    for (i, n) in names.iter().enumerate() {
        fs::write(
            root.join("cur").join(format!("{n}:2,S")),
            format!("msg {i}"),
        )
        .expect("msg");
    }
    fs::write(root.join("dovecot-uidlist"), uidlist).expect("uidlist");
    let f = MailStore::open(&root).folder("INBOX").expect("inbox");
    (t, f)
}

const NAMES: [&str; 5] = [
    "1700000001.M1P1.mx,S=5",
    "1700000002.M2P1.mx,S=5",
    "1700000003.M3P1.mx,S=5",
    "1700000004.M4P1.mx,S=5",
    "1700000005.M5P1.mx,S=5",
];

fn good_list() -> String {
    let mut s = "3 V1700000000 N11 G3085f01b7f11094c501100008c4a11c1\n".to_string();
    for (i, n) in NAMES.iter().enumerate() {
        s.push_str(&format!("{} :{n}\n", 2 * i + 1)); // UIDs 1 3 5 7 9
    }
    s
}

/// basename → UID after a sync.
fn by_name(st: &FolderState) -> BTreeMap<String, u32> {
    st.messages
        .iter()
        .map(|m| (m.basename.clone(), m.uid.0))
        .collect()
}

/// Every message on disk is listed once, with distinct UIDs.
fn assert_all_listed(st: &FolderState) {
    let got = by_name(st);
    for n in NAMES {
        assert!(got.contains_key(n), "{n} lost: {got:?}");
    }
    let mut uids: Vec<u32> = got.values().copied().collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), NAMES.len(), "a UID given twice: {got:?}");
}

/// The second sync of a repaired folder is quiet and changes nothing: the rewrite stuck.
fn assert_repaired_for_good(f: &Folder, first: &FolderState) {
    let (again, log) = logged(|| f.sync().expect("sync again"));
    assert_eq!(&again, first);
    assert!(!log.contains("WARN"), "warned again:\n{log}");
    let text = fs::read_to_string(f.path().join("dovecot-uidlist")).expect("read");
    assert!(
        text.starts_with("3 V"),
        "not rewritten as version 3: {text}"
    );
    assert!(UidList::parse(&text, Path::new("x")).is_ok(), "{text}");
}

fn warned(log: &str, f: &Folder, what: &str) {
    let path = f.path().join("dovecot-uidlist");
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains(&path.display().to_string())
            && l.contains(what)),
        "no warning naming {} and {what:?}:\n{log}",
        path.display()
    );
}

#[test]
fn a_clean_dovecot_uidlist_keeps_everything_and_logs_nothing() {
    let (_t, f) = inbox_with(&good_list(), &NAMES);
    let (st, log) = logged(|| f.sync().expect("sync"));
    assert_eq!(st.uid_validity, UidValidity(1_700_000_000));
    assert_eq!(st.uid_next, Uid(11));
    assert_eq!(
        by_name(&st).values().copied().collect::<Vec<_>>(),
        [1, 3, 5, 7, 9]
    );
    assert!(log.is_empty(), "{log}");
    // Not rewritten: a Dovecot reading it sees its own bytes.
    let text = fs::read_to_string(f.path().join("dovecot-uidlist")).expect("read");
    assert_eq!(text, good_list());
}

#[test]
fn truncated_uidlist_keeps_uidvalidity_and_the_uids_before_the_cut() {
    let full = good_list();
    // Cut in the middle of the fourth record's name.
    let cut_at = full.find("1700000004.M4").expect("rec") + 6;
    let (_t, f) = inbox_with(&full[..cut_at], &NAMES);
    let (st, log) = logged(|| f.sync().expect("sync"));
    warned(&log, &f, "cut short");
    assert_eq!(st.uid_validity, UidValidity(1_700_000_000));
    assert_all_listed(&st);
    let got = by_name(&st);
    assert_eq!((got[NAMES[0]], got[NAMES[1]], got[NAMES[2]]), (1, 3, 5));
    // The two after the cut: new UIDs from N on, never one below it.
    assert_eq!((got[NAMES[3]], got[NAMES[4]]), (11, 12));
    assert_repaired_for_good(&f, &st);
}

#[test]
fn truncated_header_is_the_one_case_for_a_new_uidvalidity() {
    // "N11" cut to "N1": trusting it would give UIDs 1… again under the same UIDVALIDITY.
    let (_t, f) = inbox_with("3 V1700000000 N1", &NAMES);
    let (st, log) = logged(|| f.sync().expect("sync"));
    warned(&log, &f, "new UIDVALIDITY");
    assert_ne!(st.uid_validity, UidValidity(1_700_000_000));
    assert!(st.uid_validity.0 > 1_700_000_000, "UIDVALIDITY must grow");
    assert_all_listed(&st);
    assert_repaired_for_good(&f, &st);
}

#[test]
fn unreadable_header_rebuilds_with_new_uidvalidity_and_loses_no_message() {
    for header in ["", "garbage", "3 Vxyz N11", "3 N11 Gabc", "x V1 N2"] {
        let mut text = format!("{header}\n");
        text.push_str(&good_list().lines().skip(1).collect::<Vec<_>>().join("\n"));
        text.push('\n');
        let (_t, f) = inbox_with(&text, &NAMES);
        let (st, log) = logged(|| f.sync().expect("sync"));
        warned(&log, &f, "uidlist-rebuilt");
        assert_ne!(st.uid_validity, UidValidity(1_700_000_000), "{header:?}");
        assert_all_listed(&st);
        assert_repaired_for_good(&f, &st);
    }
}

#[test]
fn garbage_lines_are_skipped_and_logged_with_their_line_number() {
    let mut text = good_list();
    text.insert_str(
        text.find("5 :").expect("rec"),
        "what is this\n\u{fffd}\u{0}\n0 :zero\n",
    );
    let (_t, f) = inbox_with(&text, &NAMES);
    let (st, log) = logged(|| f.sync().expect("sync"));
    warned(&log, &f, "unreadable record on line 4");
    assert_eq!(st.uid_validity, UidValidity(1_700_000_000));
    assert_eq!(
        by_name(&st).values().copied().collect::<Vec<_>>(),
        [1, 3, 5, 7, 9]
    );
    assert_repaired_for_good(&f, &st);
}

#[test]
fn a_uid_given_twice_names_neither_message_afterwards() {
    // UID 3 for two different files: which one a client saw is unknown, so both get new
    // UIDs (3 then looks expunged), rather than risk UID 3 showing another message's body.
    let text = good_list().replace("5 :1700000003", "3 :1700000003");
    let (_t, f) = inbox_with(&text, &NAMES);
    let (st, log) = logged(|| f.sync().expect("sync"));
    warned(&log, &f, "UID 3 given twice");
    assert_eq!(st.uid_validity, UidValidity(1_700_000_000));
    assert_all_listed(&st);
    let got = by_name(&st);
    assert_eq!((got[NAMES[0]], got[NAMES[3]], got[NAMES[4]]), (1, 7, 9));
    let mut twice = [got[NAMES[1]], got[NAMES[2]]];
    twice.sort_unstable();
    assert_eq!(twice, [11, 12]);
    assert_repaired_for_good(&f, &st);
}

#[test]
fn a_file_listed_twice_gets_one_new_uid() {
    let text = good_list().replace(&format!("5 :{}", NAMES[2]), &format!("5 :{}", NAMES[1]));
    let (_t, f) = inbox_with(&text, &NAMES);
    let (st, log) = logged(|| f.sync().expect("sync"));
    warned(&log, &f, "listed twice");
    assert_all_listed(&st);
    let got = by_name(&st);
    // NAMES[1] had 3 and 5; NAMES[2] lost its line: both new, in delivery order.
    assert_eq!((got[NAMES[1]], got[NAMES[2]]), (11, 12));
    assert_repaired_for_good(&f, &st);
}

#[test]
fn a_newer_uidlist_version_is_read_with_its_uidvalidity_and_uids() {
    let text = good_list()
        .replacen("3 V", "4 V", 1)
        .replacen(" G3085", " Xfuture-field G3085", 1);
    let (_t, f) = inbox_with(&text, &NAMES);
    let (st, log) = logged(|| f.sync().expect("sync"));
    warned(&log, &f, "unknown version 4");
    assert_eq!(st.uid_validity, UidValidity(1_700_000_000));
    assert_eq!(st.uid_next, Uid(11));
    assert_eq!(
        by_name(&st).values().copied().collect::<Vec<_>>(),
        [1, 3, 5, 7, 9]
    );
    assert_repaired_for_good(&f, &st);
    let text = fs::read_to_string(f.path().join("dovecot-uidlist")).expect("read");
    assert!(
        text.contains("Xfuture-field"),
        "unknown header field dropped: {text}"
    );
}

#[test]
fn uids_above_next_uid_raise_it_so_none_is_given_twice() {
    // Real Dovecot 2.3 writes this: records appended under a header still saying `N1` (its
    // index keeps the next UID). Normal, so no warning and no rewrite; N is raised in memory.
    let text = good_list().replace("N11", "N1");
    let (_t, f) = inbox_with(&text, &NAMES);
    let (st, log) = logged(|| f.sync().expect("sync"));
    assert!(log.is_empty(), "{log}");
    assert_eq!(st.uid_validity, UidValidity(1_700_000_000));
    assert_eq!(
        by_name(&st).values().copied().collect::<Vec<_>>(),
        [1, 3, 5, 7, 9]
    );
    assert_eq!(st.uid_next, Uid(10));
    let on_disk = fs::read_to_string(f.path().join("dovecot-uidlist")).expect("read");
    assert_eq!(on_disk, text, "Dovecot's file rewritten for no damage");
    // A new message takes 10, not 4.
    Maildir::open(f.path())
        .deliver(b"new\n", None)
        .expect("deliver");
    let st = f.sync().expect("sync");
    assert_eq!(st.messages.last().map(|m| m.uid), Some(Uid(10)));
}

#[test]
fn used_up_uids_renumber_under_a_greater_uidvalidity() {
    let text = format!("3 V1700000000 N4294967295\n4294967294 :{}\n", NAMES[0]);
    let (_t, f) = inbox_with(&text, &NAMES[..2]);
    let (st, log) = logged(|| f.sync().expect("sync"));
    assert!(log.contains("uidlist-renumbered"), "{log}");
    assert!(st.uid_validity.0 > 1_700_000_000);
    assert_eq!(by_name(&st).values().copied().collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn records_of_vanished_files_retire_their_uids() {
    // NAMES[2] (UID 5) and NAMES[4] (UID 9) are gone from disk.
    let (_t, f) = inbox_with(&good_list(), &[NAMES[0], NAMES[1], NAMES[3]]);
    let (st, log) = logged(|| f.sync().expect("sync"));
    assert!(
        log.contains("uids-retired") && log.contains("count=2"),
        "{log}"
    );
    assert_eq!(
        by_name(&st).values().copied().collect::<Vec<_>>(),
        [1, 3, 7]
    );
    assert_eq!(st.uid_next, Uid(11));
    Maildir::open(f.path())
        .deliver(b"new\n", None)
        .expect("deliver");
    let st = f.sync().expect("sync");
    assert_eq!(st.messages.last().map(|m| m.uid), Some(Uid(11)));
}

#[test]
fn courier_v1_uidlist_is_read_and_written_back_as_version_3() {
    let mut text = "1 1700000000 11\n".to_string();
    for (i, n) in NAMES.iter().enumerate() {
        text.push_str(&format!("{} {n}\n", 2 * i + 1));
    }
    let (_t, f) = inbox_with(&text, &NAMES);
    let (st, log) = logged(|| f.sync().expect("sync"));
    assert!(!log.contains("WARN"), "{log}");
    assert_eq!(st.uid_validity, UidValidity(1_700_000_000));
    assert_eq!(
        by_name(&st).values().copied().collect::<Vec<_>>(),
        [1, 3, 5, 7, 9]
    );
}

#[test]
fn uidlist_damage_never_panics_and_never_repeats_a_uid() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let alphabet = b"0123456789 :VNGW34\n\n\r,.ab\xff";
    for _ in 0..3000 {
        let mut text = Vec::new();
        for _ in 0..(seed % 80) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        let p = UidList::parse_repairing(&String::from_utf8_lossy(&text));
        let l = &p.list;
        assert_ne!(l.uid_validity.0, 0);
        let mut seen = std::collections::HashSet::new();
        for r in &l.records {
            assert!(r.uid < l.next_uid || l.next_uid.0 == u32::MAX, "{l:?}");
            assert!(seen.insert(r.uid), "{l:?}");
        }
        // What we write back reads back the same.
        let again = UidList::parse(&l.render(), Path::new("x")).expect("own output");
        assert_eq!(&again, l);
    }
}

#[test]
fn two_handles_and_a_delivery_see_one_history_and_no_uid_comes_back() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("Maildir");
    let md = Maildir::open(&root);
    md.ensure(None).expect("ensure");
    for i in 0..3 {
        md.deliver(format!("m{i}\n").as_bytes(), None)
            .expect("deliver");
    }
    let a = MailStore::open(&root).folder("INBOX").expect("a");
    let b = MailStore::open(&root).folder("INBOX").expect("b");
    let st = a.sync().expect("sync a");
    assert_eq!(b.sync().expect("sync b"), st);
    let first = st.messages.first().expect("m0").uid;
    let second = st.messages.get(1).expect("m1").uid;

    // A flags one and deletes + expunges another; a delivery lands meanwhile.
    let flagged = Flags {
        flagged: true,
        keywords: ["work".to_string()].into(),
        ..Flags::default()
    };
    a.set_flags(second, &flagged).expect("flag");
    let deleted = Flags {
        deleted: true,
        ..Flags::default()
    };
    a.set_flags(first, &deleted).expect("delete");
    md.deliver(b"late\n", None).expect("deliver");
    assert_eq!(a.expunge().expect("expunge"), vec![first]);

    let seen_by_b = b.sync().expect("sync b");
    assert_eq!(seen_by_b, a.sync().expect("sync a"));
    assert!(seen_by_b.messages.iter().all(|m| m.uid != first));
    let m = seen_by_b
        .messages
        .iter()
        .find(|m| m.uid == second)
        .expect("m1");
    assert!(m.flags.flagged && m.flags.keywords.contains("work"));
    let late = seen_by_b.messages.last().expect("late").uid;
    assert!(late > st.messages.last().expect("m2").uid);

    // "Restart": a fresh store on the same directory numbers on, never reusing `first`.
    md.deliver(b"after restart\n", None).expect("deliver");
    let fresh = MailStore::open(&root).folder("INBOX").expect("fresh");
    let st2 = fresh.sync().expect("sync");
    assert_eq!(st2.uid_validity, st.uid_validity);
    let newest = st2.messages.last().expect("newest").uid;
    assert!(newest > late && newest != first);
}
