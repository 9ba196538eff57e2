//! Session-tier tests: the couriers against real files, real processes and an in-test LMTP
//! server.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ownmail_types::{Address, BodyType, Envelope, LocalUser, Notify, QueueId, ReversePath};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};

use super::*;

const MESSAGE: &[u8] = b"Received: from x by y\r\nSubject: test\r\n\r\nHello\r\nFrom the start\r\n>From quoted\r\n.dot line\r\n";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Root delivers as uid 5000 (and the tests check the chown); anyone else as themselves.
fn test_user(home: &Path) -> LocalUser {
    let (uid, gid) = if is_root() {
        (5000, 5000)
    } else {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    };
    LocalUser {
        name: "m".to_string(),
        uid,
        gid,
        home: home.to_path_buf(),
    }
}

/// A home directory the test user may write to.
fn home_in(t: &Path) -> PathBuf {
    let home = t.join("home");
    fs::create_dir(&home).expect("mkdir home");
    if is_root() {
        std::os::unix::fs::chown(&home, Some(5000), Some(5000)).expect("chown home");
    }
    home
}

fn envelope(from: ReversePath) -> Envelope {
    Envelope {
        id: QueueId::new(),
        mail_from: from,
        helo: "client.example".to_string(),
        client: None,
        auth_user: None,
        tag: None,
        received_at: 0,
        body: BodyType::EightBitMime,
        smtputf8: false,
        ret: None,
        envid: None,
        recipients: Vec::new(),
    }
}

fn sender() -> ReversePath {
    ReversePath::Address(Address::new_unchecked("alice", "example.net"))
}

fn recipient(dest: Destination) -> Recipient {
    Recipient {
        rcpt: Address::new_unchecked("Mayeu", "example.org"),
        orcpt: None,
        notify: Notify::default(),
        dest,
    }
}

fn courier() -> LocalCourier {
    LocalCourier::new(LocalOptions {
        hostname: "mx.example.org".to_string(),
        mda_timeout: Duration::from_secs(5),
        lmtp_timeout: Duration::from_secs(5),
    })
}

async fn deliver(
    courier: &LocalCourier,
    from: ReversePath,
    dest: Destination,
    message: &[u8],
) -> DeliveryOutcome {
    let env = envelope(from);
    let rcpt = recipient(dest);
    courier.deliver(&env, &rcpt, message).await
}

const LOCAL_COPY: &str = "Return-Path: <alice@example.net>\nDelivered-To: Mayeu@example.org\nReceived: from x by y\nSubject: test\n\nHello\nFrom the start\n>From quoted\n.dot line\n";

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

fn assert_tempfail(outcome: &DeliveryOutcome, needle: &str) {
    match outcome {
        DeliveryOutcome::TempFail { reason } => {
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
        }
        other => panic!("expected TempFail with {needle:?}, got {other:?}"),
    }
}

fn assert_permfail(outcome: &DeliveryOutcome, needle: &str) {
    match outcome {
        DeliveryOutcome::PermFail { reason } => {
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
        }
        other => panic!("expected PermFail with {needle:?}, got {other:?}"),
    }
}

// ---- the local copy ----

#[test]
fn local_copy_has_return_path_delivered_to_and_lf_line_ends() {
    let env = envelope(sender());
    let rcpt = recipient(Destination::Lmtp {
        dest: "/x".to_string(),
        rcpt: "m".to_string(),
    });
    assert_eq!(
        String::from_utf8(local_copy(&env, &rcpt, MESSAGE)).expect("utf-8"),
        LOCAL_COPY
    );

    let bounce = envelope(ReversePath::Null);
    let copy = local_copy(&bounce, &rcpt, b"a\r\nb\rc\r\n");
    assert_eq!(
        copy,
        b"Return-Path: <>\nDelivered-To: Mayeu@example.org\na\nb\rc\n"
    );
}

// ---- maildir ----

#[tokio::test]
async fn maildir_delivery_lands_in_new_owned_by_the_user() {
    let t = tempfile::tempdir().expect("tempdir");
    let user = test_user(t.path());
    let root = t.path().join("m/Maildir");
    let dest = Destination::Maildir {
        user: user.clone(),
        path: root.clone(),
        junk: false,
    };
    let outcome = deliver(&courier(), sender(), dest, MESSAGE).await;
    let DeliveryOutcome::Delivered { detail } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(detail.contains("/new/"), "{detail}");

    let new = files_in(&root.join("new"));
    assert_eq!(new.len(), 1);
    assert!(files_in(&root.join("tmp")).is_empty());
    let file = new.first().expect("one file");
    assert_eq!(fs::read_to_string(file).expect("read"), LOCAL_COPY);
    let name = file.file_name().and_then(|n| n.to_str()).expect("name");
    let meta = fs::metadata(file).expect("stat");
    assert_eq!(ownmail_mailstore::size_from_name(name), Some(meta.len()));
    assert_eq!((meta.uid(), meta.gid()), (user.uid, user.gid));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    for dir in [
        "m",
        "m/Maildir",
        "m/Maildir/cur",
        "m/Maildir/new",
        "m/Maildir/tmp",
    ] {
        assert_eq!(
            fs::metadata(t.path().join(dir)).expect(dir).uid(),
            user.uid,
            "{dir}"
        );
    }
}

#[tokio::test]
async fn maildir_junk_sends_spam_to_the_junk_folder() {
    let t = tempfile::tempdir().expect("tempdir");
    let user = test_user(t.path());
    let root = t.path().join("Maildir");
    let spam = b"Received: x\r\nx-spam: YES\r\nSubject: buy\r\n\r\nbody\r\n";
    let c = courier();

    let dest = Destination::Maildir {
        user: user.clone(),
        path: root.clone(),
        junk: true,
    };
    assert!(matches!(
        deliver(&c, sender(), dest.clone(), spam).await,
        DeliveryOutcome::Delivered { .. }
    ));
    assert_eq!(files_in(&root.join(".Junk/new")).len(), 1);
    assert!(files_in(&root.join("new")).is_empty());
    assert!(root.join(".Junk/maildirfolder").exists());
    assert_eq!(
        fs::metadata(root.join(".Junk/new")).expect("stat").uid(),
        user.uid
    );

    // Ham stays in the inbox.
    assert!(matches!(
        deliver(&c, sender(), dest, MESSAGE).await,
        DeliveryOutcome::Delivered { .. }
    ));
    assert_eq!(files_in(&root.join("new")).len(), 1);

    // Without `junk`, spam goes to the inbox too.
    let dest = Destination::Maildir {
        user,
        path: root.clone(),
        junk: false,
    };
    assert!(matches!(
        deliver(&c, sender(), dest, spam).await,
        DeliveryOutcome::Delivered { .. }
    ));
    assert_eq!(files_in(&root.join("new")).len(), 2);
    assert_eq!(files_in(&root.join(".Junk/new")).len(), 1);
}

#[test]
fn spam_mark_is_read_from_the_header_section_only() {
    assert!(maildir::is_marked_spam(b"X-Spam: yes\r\n\r\nbody"));
    assert!(maildir::is_marked_spam(b"A: b\nX-SPAM:Yes, score=9\n\n"));
    assert!(maildir::is_marked_spam(b"X-Spam : yes\r\n\r\n"));
    assert!(!maildir::is_marked_spam(b"X-Spam: no\r\n\r\n"));
    assert!(!maildir::is_marked_spam(b"X-Spam-Flag: yes\r\n\r\n"));
    assert!(!maildir::is_marked_spam(b"X-Spam: yesterday\r\n\r\n"));
    assert!(!maildir::is_marked_spam(
        b"Subject: x\r\n\r\nX-Spam: yes\r\n"
    ));
}

#[tokio::test]
async fn maildir_errors_are_temporary_with_the_cause() {
    let t = tempfile::tempdir().expect("tempdir");
    let user = test_user(t.path());
    // A file where the Maildir's parent should be.
    fs::write(t.path().join("blocker"), b"").expect("write");
    let dest = Destination::Maildir {
        user,
        path: t.path().join("blocker/Maildir"),
        junk: false,
    };
    let outcome = deliver(&courier(), sender(), dest, MESSAGE).await;
    assert_tempfail(&outcome, "blocker");
}

// ---- mbox ----

#[tokio::test]
async fn mbox_appends_with_from_lines_and_mboxrd_quoting() {
    let t = tempfile::tempdir().expect("tempdir");
    let user = test_user(t.path());
    let path = t.path().join("m");
    let dest = Destination::Mbox {
        user: user.clone(),
        path: path.clone(),
    };
    let c = courier();
    assert!(matches!(
        deliver(&c, sender(), dest.clone(), MESSAGE).await,
        DeliveryOutcome::Delivered { .. }
    ));
    assert!(matches!(
        deliver(
            &c,
            ReversePath::Null,
            dest,
            b"Subject: 2\r\n\r\nno final newline"
        )
        .await,
        DeliveryOutcome::Delivered { .. }
    ));

    let text = fs::read_to_string(&path).expect("read");
    let entries: Vec<&str> = text.split("\n\nFrom ").collect();
    assert_eq!(entries.len(), 2, "{text}");
    assert!(text.starts_with("From alice@example.net "), "{text}");
    assert!(
        text.contains("\nHello\n>From the start\n>>From quoted\n.dot line\n\nFrom MAILER-DAEMON "),
        "{text}"
    );
    assert!(
        text.contains(
            "Return-Path: <>\nDelivered-To: Mayeu@example.org\nSubject: 2\n\nno final newline\n\n"
        ),
        "{text}"
    );
    assert!(text.ends_with("no final newline\n\n"));
    assert!(!text.contains('\r'));

    let meta = fs::metadata(&path).expect("stat");
    assert_eq!((meta.uid(), meta.gid()), (user.uid, user.gid));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(!t.path().join("m.lock").exists());
}

#[tokio::test]
async fn mbox_that_cannot_be_written_is_tempfail_and_leaves_no_lock() {
    let t = tempfile::tempdir().expect("tempdir");
    let user = test_user(t.path());
    let path = t.path().join("m");
    fs::create_dir(&path).expect("a directory where the mbox should be");
    let outcome = deliver(
        &courier(),
        sender(),
        Destination::Mbox {
            user,
            path: path.clone(),
        },
        MESSAGE,
    )
    .await;
    assert_tempfail(&outcome, "mbox delivery failed");
    assert!(!t.path().join("m.lock").exists());
}

#[tokio::test]
async fn mbox_refuses_a_symlink() {
    let t = tempfile::tempdir().expect("tempdir");
    let user = test_user(t.path());
    let target = t.path().join("target");
    fs::write(&target, b"precious\n").expect("write");
    let path = t.path().join("m");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    let outcome = deliver(
        &courier(),
        sender(),
        Destination::Mbox { user, path },
        MESSAGE,
    )
    .await;
    assert!(
        matches!(outcome, DeliveryOutcome::TempFail { .. }),
        "{outcome:?}"
    );
    assert_eq!(fs::read(&target).expect("read"), b"precious\n");
    assert!(!t.path().join("m.lock").exists());
}

#[tokio::test]
async fn mbox_refuses_a_file_owned_by_someone_else_when_root() {
    if !is_root() {
        return; // only root chowns, and only then is the owner checked
    }
    let t = tempfile::tempdir().expect("tempdir");
    let user = test_user(t.path());
    let path = t.path().join("m");
    fs::write(&path, b"").expect("write"); // owned by root, not uid 5000
    let outcome = deliver(
        &courier(),
        sender(),
        Destination::Mbox { user, path },
        MESSAGE,
    )
    .await;
    assert_tempfail(&outcome, "owned by uid 0");
}

// ---- mda ----

#[tokio::test]
async fn mda_gets_the_local_copy_on_stdin_as_the_user() {
    let t = tempfile::tempdir().expect("tempdir");
    let home = home_in(t.path());
    let user = test_user(&home);
    let command =
        r#"cat > "$HOME/out" && id -u > uid && echo "$USER $LOGNAME $HOME" > env"#.to_string();
    let outcome = deliver(
        &courier(),
        sender(),
        Destination::Mda {
            user: user.clone(),
            command,
        },
        MESSAGE,
    )
    .await;
    assert!(
        matches!(outcome, DeliveryOutcome::Delivered { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        fs::read_to_string(home.join("out")).expect("out"),
        LOCAL_COPY
    );
    assert_eq!(
        fs::read_to_string(home.join("uid")).expect("uid").trim(),
        user.uid.to_string()
    );
    assert_eq!(
        fs::read_to_string(home.join("env")).expect("env").trim(),
        format!("m m {}", home.display())
    );
}

#[tokio::test]
async fn mda_exit_75_is_tempfail() {
    let t = tempfile::tempdir().expect("tempdir");
    let user = test_user(&home_in(t.path()));
    let command = "cat >/dev/null; echo 'mailbox busy' >&2; exit 75".to_string();
    let outcome = deliver(
        &courier(),
        sender(),
        Destination::Mda { user, command },
        MESSAGE,
    )
    .await;
    assert_tempfail(&outcome, "exited 75");
    assert_tempfail(&outcome, "mailbox busy");
}

#[tokio::test]
async fn mda_other_exit_is_permfail_with_stderr() {
    let t = tempfile::tempdir().expect("tempdir");
    let user = test_user(&home_in(t.path()));
    let command = "echo 'no such folder' >&2; exit 1".to_string();
    let outcome = deliver(
        &courier(),
        sender(),
        Destination::Mda { user, command },
        MESSAGE,
    )
    .await;
    assert_permfail(&outcome, "mda exited 1: no such folder");
}

#[tokio::test]
async fn mda_killed_by_a_signal_is_permfail() {
    let t = tempfile::tempdir().expect("tempdir");
    let user = test_user(&home_in(t.path()));
    let command = "kill -TERM $$".to_string();
    let outcome = deliver(
        &courier(),
        sender(),
        Destination::Mda { user, command },
        MESSAGE,
    )
    .await;
    assert_permfail(&outcome, "signal 15");
}

#[tokio::test]
async fn mda_timeout_kills_the_whole_group_and_is_tempfail() {
    let t = tempfile::tempdir().expect("tempdir");
    let user = test_user(&home_in(t.path()));
    let c = LocalCourier::new(LocalOptions {
        mda_timeout: Duration::from_millis(300),
        ..courier().opts
    });
    // The background sleep keeps stdout open: only killing the process group ends it.
    let command = "sleep 30 & sleep 30".to_string();
    let started = Instant::now();
    let outcome = deliver(&c, sender(), Destination::Mda { user, command }, MESSAGE).await;
    assert_tempfail(&outcome, "timed out");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn mda_output_kept_is_bounded() {
    let t = tempfile::tempdir().expect("tempdir");
    let user = test_user(&home_in(t.path()));
    let command = "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 2".to_string();
    let outcome = deliver(
        &courier(),
        sender(),
        Destination::Mda { user, command },
        MESSAGE,
    )
    .await;
    let DeliveryOutcome::PermFail { reason } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(reason.len() < 4200, "{}", reason.len());
}

#[tokio::test]
async fn delivery_as_another_uid_without_root_is_a_clear_tempfail() {
    if is_root() {
        return; // root may deliver as anyone
    }
    let t = tempfile::tempdir().expect("tempdir");
    let mut user = test_user(t.path());
    user.uid += 1;
    let dest = Destination::Maildir {
        user: user.clone(),
        path: t.path().join("Maildir"),
        junk: false,
    };
    let outcome = deliver(&courier(), sender(), dest, MESSAGE).await;
    assert_tempfail(
        &outcome,
        &format!(
            "cannot deliver as uid {}: ownmail is not running as root",
            user.uid
        ),
    );
    assert!(!t.path().join("Maildir").exists());
}

// ---- relay seam ----

struct FakeRelay;

impl Courier for FakeRelay {
    fn deliver<'a>(
        &'a self,
        _: &'a Envelope,
        rcpt: &'a Recipient,
        _: &'a [u8],
    ) -> BoxFuture<'a, DeliveryOutcome> {
        Box::pin(async move {
            DeliveryOutcome::Delivered {
                detail: format!("relayed to {}", rcpt.rcpt),
            }
        })
    }
}

#[tokio::test]
async fn relay_goes_to_the_relay_courier_when_there_is_one() {
    let relay = Destination::Relay {
        action: "out".to_string(),
        to: Address::new_unchecked("x", "example.com"),
    };
    let outcome = deliver(&courier(), sender(), relay.clone(), MESSAGE).await;
    assert_tempfail(&outcome, "relay not available yet");

    let env = envelope(sender());
    let without = Dispatcher::new(courier(), None);
    assert_tempfail(
        &without
            .deliver(&env, &recipient(relay.clone()), MESSAGE)
            .await,
        "relay not available yet",
    );

    let with = Dispatcher::new(courier(), Some(Arc::new(FakeRelay)));
    let outcome = with.deliver(&env, &recipient(relay), MESSAGE).await;
    assert_eq!(
        outcome,
        DeliveryOutcome::Delivered {
            detail: "relayed to Mayeu@example.org".to_string()
        }
    );

    // Local destinations still go to the local courier.
    let t = tempfile::tempdir().expect("tempdir");
    let local = Destination::Maildir {
        user: test_user(t.path()),
        path: t.path().join("Maildir"),
        junk: false,
    };
    assert!(matches!(
        with.deliver(&env, &recipient(local), MESSAGE).await,
        DeliveryOutcome::Delivered { .. }
    ));
}

// ---- lmtp ----

/// Replies a scripted LMTP server gives; `None` means the usual success.
#[derive(Clone, Copy, Default)]
struct Script {
    rcpt: Option<&'static str>,
    end_of_data: Option<&'static str>,
}

/// Serves one LMTP session and returns everything the client sent.
async fn fake_lmtp<S: AsyncRead + AsyncWrite + Unpin>(stream: S, script: Script) -> Vec<u8> {
    let mut stream = BufReader::new(stream);
    let mut seen = Vec::new();
    stream
        .write_all(b"220 fake.example LMTP ready\r\n")
        .await
        .expect("greet");
    let mut in_data = false;
    loop {
        let mut line = Vec::new();
        if !matches!(stream.read_until(b'\n', &mut line).await, Ok(1..)) {
            return seen;
        }
        seen.extend_from_slice(&line);
        let reply: &[u8] = if in_data {
            if line != b".\r\n" {
                continue;
            }
            in_data = false;
            script
                .end_of_data
                .unwrap_or("250 2.0.0 <m> Saved")
                .as_bytes()
        } else if line.starts_with(b"LHLO ") {
            b"250-fake.example\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 PIPELINING"
        } else if line.starts_with(b"MAIL FROM:") {
            b"250 2.1.0 OK"
        } else if line.starts_with(b"RCPT TO:") {
            script.rcpt.unwrap_or("250 2.1.5 OK").as_bytes()
        } else if line == b"DATA\r\n" {
            in_data = true;
            b"354 OK"
        } else if line == b"QUIT\r\n" {
            stream.write_all(b"221 2.0.0 Bye\r\n").await.expect("write");
            return seen;
        } else {
            b"500 5.5.2 what?"
        };
        stream.write_all(reply).await.expect("write");
        stream.write_all(b"\r\n").await.expect("write");
    }
}

async fn lmtp_over_tcp(script: Script) -> (DeliveryOutcome, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        fake_lmtp(stream, script).await
    });
    let dest = Destination::Lmtp {
        dest: addr.to_string(),
        rcpt: "m".to_string(),
    };
    let outcome = deliver(&courier(), sender(), dest, MESSAGE).await;
    let seen = server.await.expect("server");
    (outcome, String::from_utf8(seen).expect("utf-8"))
}

async fn lmtp_over_unix(script: Script) -> (DeliveryOutcome, String) {
    let t = tempfile::tempdir().expect("tempdir");
    let socket = t.path().join("lmtp");
    let listener = UnixListener::bind(&socket).expect("bind");
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        fake_lmtp(stream, script).await
    });
    let dest = Destination::Lmtp {
        dest: socket.display().to_string(),
        rcpt: "m@example.org".to_string(),
    };
    let outcome = deliver(&courier(), sender(), dest, MESSAGE).await;
    let seen = server.await.expect("server");
    (outcome, String::from_utf8(seen).expect("utf-8"))
}

#[tokio::test]
async fn lmtp_2xx_is_delivered_and_the_wire_is_dot_stuffed() {
    let (outcome, seen) = lmtp_over_tcp(Script::default()).await;
    let DeliveryOutcome::Delivered { detail } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        detail.starts_with("lmtp 127.0.0.1:") && detail.ends_with(": 250 2.0.0 <m> Saved"),
        "{detail}"
    );
    let expected = concat!(
        "LHLO mx.example.org\r\n",
        "MAIL FROM:<alice@example.net> BODY=8BITMIME\r\n",
        "RCPT TO:<m>\r\n",
        "DATA\r\n",
        "Received: from x by y\r\nSubject: test\r\n\r\nHello\r\nFrom the start\r\n>From quoted\r\n..dot line\r\n",
        ".\r\n",
        "QUIT\r\n",
    );
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn lmtp_over_a_unix_socket_4xx_is_tempfail() {
    let (outcome, seen) = lmtp_over_unix(Script {
        end_of_data: Some("452 4.2.2 <m@example.org> Mailbox full"),
        ..Script::default()
    })
    .await;
    assert_tempfail(&outcome, "452 4.2.2 <m@example.org> Mailbox full");
    assert!(seen.contains("RCPT TO:<m@example.org>\r\n"), "{seen}");
    assert!(seen.ends_with("QUIT\r\n"), "{seen}");
}

#[tokio::test]
async fn lmtp_over_a_unix_socket_2xx_is_delivered() {
    let (outcome, _) = lmtp_over_unix(Script::default()).await;
    assert!(
        matches!(outcome, DeliveryOutcome::Delivered { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn lmtp_5xx_is_permfail() {
    let (outcome, seen) = lmtp_over_tcp(Script {
        rcpt: Some("550 5.1.1 <m> User doesn't exist: m"),
        ..Script::default()
    })
    .await;
    assert_permfail(
        &outcome,
        "RCPT TO refused: 550 5.1.1 <m> User doesn't exist: m",
    );
    assert!(!seen.contains("DATA"), "{seen}");

    let (outcome, _) = lmtp_over_tcp(Script {
        end_of_data: Some("554 5.6.0 message rejected"),
        ..Script::default()
    })
    .await;
    assert_permfail(&outcome, "554 5.6.0 message rejected");
}

#[tokio::test]
async fn lmtp_unreachable_is_tempfail() {
    let t = tempfile::tempdir().expect("tempdir");
    let dest = Destination::Lmtp {
        dest: t.path().join("nothing").display().to_string(),
        rcpt: "m".to_string(),
    };
    assert_tempfail(
        &deliver(&courier(), sender(), dest, MESSAGE).await,
        "connecting",
    );

    let dest = Destination::Lmtp {
        dest: "no-port".to_string(),
        rcpt: "m".to_string(),
    };
    assert_tempfail(
        &deliver(&courier(), sender(), dest, MESSAGE).await,
        "neither",
    );
}

#[tokio::test]
async fn lmtp_silent_server_times_out_as_tempfail() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(stream);
    });
    let c = LocalCourier::new(LocalOptions {
        lmtp_timeout: Duration::from_millis(200),
        ..courier().opts
    });
    let dest = Destination::Lmtp {
        dest: addr.to_string(),
        rcpt: "m".to_string(),
    };
    assert_tempfail(
        &deliver(&c, sender(), dest, MESSAGE).await,
        "no reply to the greeting",
    );
    server.abort();
}

#[tokio::test]
async fn lmtp_refuses_a_recipient_that_would_inject_a_command() {
    let t = tempfile::tempdir().expect("tempdir");
    let socket = t.path().join("lmtp");
    let _listener = UnixListener::bind(&socket).expect("bind");
    let rcpt = "m>\r\nRCPT TO:<root".to_string();
    let dest = Destination::Lmtp {
        dest: socket.display().to_string(),
        rcpt,
    };
    assert_permfail(
        &deliver(&courier(), sender(), dest, MESSAGE).await,
        "invalid recipient",
    );
}
