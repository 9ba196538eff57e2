use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn ensure_creates_cur_new_tmp_and_missing_parents_mode_0700() {
    let t = tempfile::tempdir().expect("tempdir");
    let md = Maildir::open(t.path().join("home/u/Maildir"));
    md.ensure(None).expect("ensure");
    for d in [
        "home",
        "home/u",
        "home/u/Maildir",
        "home/u/Maildir/cur",
        "home/u/Maildir/new",
        "home/u/Maildir/tmp",
    ] {
        let m = fs::metadata(t.path().join(d)).expect(d);
        assert!(m.is_dir(), "{d}");
        assert_eq!(m.permissions().mode() & 0o777, 0o700, "{d}");
    }
    // Idempotent.
    md.ensure(None).expect("ensure again");
}

#[test]
fn delivery_lands_in_new_with_exact_size_in_name_and_empty_tmp() {
    let t = tempfile::tempdir().expect("tempdir");
    let md = Maildir::open(t.path().join("Maildir"));
    md.ensure(None).expect("ensure");
    let msg = b"Subject: hi\n\nbody\n";
    let path = md.deliver(msg, None).expect("deliver");
    assert_eq!(path.parent(), Some(t.path().join("Maildir/new").as_path()));
    assert_eq!(fs::read(&path).expect("read"), msg);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 name");
    let len = fs::metadata(&path).expect("stat").len();
    assert_eq!(size_from_name(name), Some(len));
    assert_eq!(len, msg.len() as u64);
    assert_eq!(
        fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
        0o600
    );
    assert!(files_in(&t.path().join("Maildir/tmp")).is_empty());
    assert!(files_in(&t.path().join("Maildir/cur")).is_empty());

    // A second delivery gets a different name.
    let second = md.deliver(msg, None).expect("deliver");
    assert_ne!(path, second);
    assert_eq!(files_in(&t.path().join("Maildir/new")).len(), 2);
}

#[test]
fn names_have_the_usual_maildir_form() {
    let name = unique_name(42, Some(44));
    let (secs, rest) = name.split_once(".M").expect("secs.M");
    assert!(secs.bytes().all(|b| b.is_ascii_digit()));
    let (usecs, rest) = rest.split_once('P').expect("P");
    assert!(usecs.parse::<u32>().expect("usecs") < 1_000_000);
    let (pid, rest) = rest.split_once('Q').expect("Q");
    assert_eq!(pid, std::process::id().to_string());
    let (counter, rest) = rest.split_once('.').expect("counter");
    assert!(counter.parse::<u64>().is_ok());
    assert!(rest.ends_with(",S=42,W=44"));
    assert!(!rest.contains('/') && !rest.contains(':'));
}

#[test]
fn hostname_slash_and_colon_are_escaped_like_dovecot() {
    assert_eq!(escape_hostname("a/b:c"), "a\\057b\\072c");
    assert_eq!(escape_hostname("mx.example.org"), "mx.example.org");
}

#[test]
fn delivery_chowns_files_and_directories_to_the_owner() {
    if !running_as_root() {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let md = Maildir::open(t.path().join("u/Maildir"));
    md.ensure(Some((5000, 5000))).expect("ensure");
    for d in [
        "u",
        "u/Maildir",
        "u/Maildir/new",
        "u/Maildir/tmp",
        "u/Maildir/cur",
    ] {
        let m = fs::metadata(t.path().join(d)).expect(d);
        assert_eq!((m.uid(), m.gid()), (5000, 5000), "{d}");
    }
    let path = md.deliver(b"x\n", Some((5000, 5000))).expect("deliver");
    let m = fs::metadata(path).expect("stat");
    assert_eq!((m.uid(), m.gid()), (5000, 5000));
}

#[test]
fn junk_folder_is_a_maildirplusplus_sibling_with_marker() {
    let t = tempfile::tempdir().expect("tempdir");
    let md = Maildir::open(t.path().join("Maildir"));
    let junk = md.folder("Junk").expect("valid");
    assert_eq!(junk.path(), t.path().join("Maildir/.Junk"));
    md.ensure(None).expect("ensure");
    junk.ensure(None).expect("ensure junk");
    assert!(t.path().join("Maildir/.Junk/maildirfolder").is_file());
    let p = junk.deliver(b"spam\n", None).expect("deliver");
    assert_eq!(
        p.parent(),
        Some(t.path().join("Maildir/.Junk/new").as_path())
    );

    let nested = md
        .folder("Lists")
        .and_then(|l| l.folder("rust"))
        .expect("valid");
    assert_eq!(nested.path(), t.path().join("Maildir/.Lists.rust"));
}

#[test]
fn invalid_folder_names_are_refused() {
    let md = Maildir::open("/nonexistent/Maildir");
    let long = "a".repeat(255);
    for bad in [
        "",
        "a/b",
        "..",
        "a..b",
        "../etc",
        ".Junk",
        "Junk.",
        "a\0b",
        "a\nb",
        long.as_str(),
    ] {
        let err = md.folder(bad).expect_err(bad);
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
    }
    assert!(md.folder(&"a".repeat(254)).is_ok());
}

#[test]
fn delivery_without_ensure_fails_and_leaves_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let md = Maildir::open(t.path().join("Maildir"));
    let err = md.deliver(b"x", None).expect_err("no maildir");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("Maildir"), "{err}");
}

#[test]
fn symlinked_tmp_is_not_followed() {
    let t = tempfile::tempdir().expect("tempdir");
    let md = Maildir::open(t.path().join("Maildir"));
    md.ensure(None).expect("ensure");
    let elsewhere = t.path().join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    fs::remove_dir(t.path().join("Maildir/tmp")).expect("rmdir");
    std::os::unix::fs::symlink(&elsewhere, t.path().join("Maildir/tmp")).expect("symlink");
    assert!(md.deliver(b"x", None).is_err());
    assert!(files_in(&elsewhere).is_empty());
    assert!(files_in(&t.path().join("Maildir/new")).is_empty());
}

#[test]
fn new_replaced_by_a_file_fails_before_writing_anything() {
    let t = tempfile::tempdir().expect("tempdir");
    let md = Maildir::open(t.path().join("Maildir"));
    md.ensure(None).expect("ensure");
    // Opening new/ as a directory fails before the tmp file is created.
    fs::remove_dir(t.path().join("Maildir/new")).expect("rmdir");
    fs::write(t.path().join("Maildir/new"), b"").expect("file");
    assert!(md.deliver(b"x", None).is_err());
    assert!(files_in(&t.path().join("Maildir/tmp")).is_empty());
}

#[test]
fn size_is_read_back_from_names_with_flags() {
    assert_eq!(size_from_name("1.M2P3Q4.host,S=1234:2,S"), Some(1234));
    assert_eq!(size_from_name("1.M2P3Q4.host,S=1234,W=1300"), Some(1234));
    assert_eq!(size_from_name("1.M2P3Q4.host"), None);
}

#[test]
fn line_endings_round_trip_between_imap_and_maildir() {
    use crate::{crlf_size, from_crlf, to_crlf};
    let imap = b"Subject: x\r\n\r\nbody\r\nbare\rcr\r\n";
    let disk = from_crlf(imap);
    assert_eq!(&*disk, b"Subject: x\n\nbody\nbare\rcr\n");
    assert_eq!(&*to_crlf(&disk), imap);
    assert_eq!(crlf_size(&disk), imap.len() as u64);
    assert!(matches!(to_crlf(imap), std::borrow::Cow::Borrowed(_)));
    assert_eq!(&*to_crlf(b"a\nb\r\n"), b"a\r\nb\r\n");
}
