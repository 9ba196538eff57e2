//! The Debian 12 OpenSMTPD filters, unchanged, driven by ownmail: filter-dkimsign (C,
//! libopensmtpd), filter-rspamd (Go) against a real rspamd on loopback, filter-senderscore
//! (Go). They are installed by the project's setup; a missing one is a failure, not a skip.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{config, fast, no_tables};
use ownmail_filter::{Decision, Endpoint, FilterSession, Filters, Outcome, SessionId, TxId};

const DKIMSIGN: &str = "/usr/libexec/opensmtpd/filter-dkimsign";
const RSPAMD_FILTER: &str = "/usr/libexec/opensmtpd/filter-rspamd";
const SENDERSCORE: &str = "/usr/libexec/opensmtpd/filter-senderscore";

const MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: bob@example.com\r\n\
Subject: filter test\r\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Message-ID: <t1@example.org>\r\n\
\r\n\
Hello Bob,\r\n\
.a line that starts with a dot\r\n\
bye\r\n";

async fn one(cmd: &str) -> Filters {
    let conf = format!("filter f proc-exec \"{cmd}\"\nlisten on lo filter f\n");
    let mut settings = fast();
    settings.request_timeout = Duration::from_secs(20);
    settings.data_timeout = Duration::from_secs(30);
    Filters::start(&config(&conf), settings, no_tables())
        .await
        .expect("filter starts")
}

/// A whole SMTP transaction through the filters; returns the commit decision and message.
async fn transaction(
    f: &mut FilterSession,
    src: Endpoint,
    message: &[u8],
) -> (Decision, Result<Vec<u8>, Decision>) {
    let dest = Endpoint::Inet("127.0.0.1:25".parse().unwrap());
    assert_eq!(
        f.connect("client.example.org", true, &src, &dest).await,
        Decision::Proceed
    );
    f.greeting("mx.example.org").await;
    assert_eq!(f.helo(true, "client.example.org").await, Decision::Proceed);
    let tx = TxId(0x1234abcd);
    assert_eq!(f.mail_from("alice@example.org").await, Decision::Proceed);
    f.mail_reply(tx, "alice@example.org", Outcome::Ok).await;
    assert_eq!(f.rcpt_to("bob@example.com").await, Decision::Proceed);
    f.rcpt_reply(tx, "bob@example.com", Outcome::Ok).await;
    assert_eq!(f.data().await, Decision::Proceed);
    f.data_reply(tx, Outcome::Ok).await;
    let out = f.message(tx, message).await;
    let commit = f.commit(tx).await;
    if commit.passes() {
        f.committed(tx, message.len()).await;
    } else {
        f.rollback(tx).await;
    }
    (commit, out)
}

fn headers(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg);
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run helper");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test]
async fn filter_dkimsign_signs_the_message() {
    assert!(
        Path::new(DKIMSIGN).exists(),
        "{DKIMSIGN} missing: install opensmtpd-filter-dkimsign"
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sel.key");
    run(Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048"));
    let filters = one(&format!(
        "{DKIMSIGN} -d example.org -s sel -k {}",
        key.display()
    ))
    .await;
    let mut f = filters.session("f", SessionId::random()).unwrap();
    let src = Endpoint::Inet("192.0.2.1:4000".parse().unwrap());
    let (commit, out) = transaction(&mut f, src, MESSAGE).await;
    assert_eq!(commit, Decision::Proceed);
    let out = out.expect("signed message");
    let head = headers(&out);
    assert!(head.starts_with("DKIM-Signature:"), "{head}");
    assert!(
        head.contains("d=example.org") && head.contains("s=sel"),
        "{head}"
    );
    // The body came back unstuffed and unchanged.
    assert!(
        out.ends_with(&MESSAGE[MESSAGE.len() - 60..]),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(String::from_utf8_lossy(&out).contains("\r\n.a line that starts with a dot\r\n"));

    // And the signature verifies (dkimpy, the key published through a dnsfunc).
    let pubkey = run(Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&key));
    let verify = r#"
import sys, base64, dkim
p = base64.b64encode(open(sys.argv[1], 'rb').read()).decode()
def dns(name, timeout=5):
    assert name == b'sel._domainkey.example.org.', name
    return ('v=DKIM1; k=rsa; p=' + p).encode()
sys.exit(0 if dkim.verify(sys.stdin.buffer.read(), dnsfunc=dns) else 1)
"#;
    let der = dir.path().join("pub.der");
    std::fs::write(&der, pubkey).unwrap();
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", verify])
        .arg(&der)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&out).unwrap();
    assert!(
        child.wait().unwrap().success(),
        "dkimpy does not verify the signature"
    );
    f.disconnect().await;
}

#[tokio::test]
async fn filter_senderscore_passes_every_phase() {
    assert!(Path::new(SENDERSCORE).exists(), "{SENDERSCORE} missing");
    let filters = one(SENDERSCORE).await;
    let mut f = filters.session("f", SessionId::random()).unwrap();
    // An IPv6 source: the filter looks up no reputation (so no DNS from the test).
    let src = Endpoint::Inet("[2001:db8::7]:4000".parse().unwrap());
    let (commit, out) = transaction(&mut f, src, MESSAGE).await;
    assert_eq!(commit, Decision::Proceed);
    assert_eq!(out.expect("message"), MESSAGE.to_vec());
    assert_eq!(f.quit().await, Decision::Proceed);
}

/// `python3 tests/e2e/rspamd_world.py DIR SCORE`: rspamd on loopback until stdin closes.
struct RspamdWorld {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl RspamdWorld {
    fn start() -> RspamdWorld {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/rspamd_world.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(dir.path())
            .arg("-100")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start rspamd_world.py");
        // The script bounds rspamd's start to 60 s and exits with an error after that.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read rspamd url");
        let url = line.trim().to_string();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "rspamd did not start: {url:?}"
        );
        RspamdWorld {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for RspamdWorld {
    fn drop(&mut self) {
        // Closing stdin makes the script stop rspamd (bounded waits inside).
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn filter_rspamd_adds_headers_and_rejects_gtube() {
    assert!(Path::new(RSPAMD_FILTER).exists(), "{RSPAMD_FILTER} missing");
    let world = tokio::task::spawn_blocking(RspamdWorld::start)
        .await
        .unwrap();
    let filters = one(&format!("{RSPAMD_FILTER} -url {}", world.url)).await;
    let src = Endpoint::Inet("192.0.2.1:4000".parse().unwrap());

    let mut f = filters.session("f", SessionId::random()).unwrap();
    let (commit, out) = transaction(&mut f, src.clone(), MESSAGE).await;
    assert_eq!(commit, Decision::Proceed);
    let out = out.expect("message");
    let head = headers(&out);
    assert!(
        head.contains("X-Spam: yes") && head.contains("X-Spam-Score:"),
        "{head}"
    );
    assert!(head.contains("X-Spam-Status: Yes, score="), "{head}");
    assert!(String::from_utf8_lossy(&out).contains("\r\n.a line that starts with a dot\r\n"));
    f.disconnect().await;

    let gtube = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: gtube\r\n\r\n\
XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n\
-- \r\nalice\r\n";
    // (Not the last line: filter-rspamd sends the body without its final newline, and the
    // rspamd of Debian 12 does not see GTUBE on a last line without one.)
    let mut g = filters.session("f", SessionId::random()).unwrap();
    let (commit, out) = transaction(&mut g, src, gtube).await;
    assert!(out.is_ok());
    match commit {
        Decision::Reject(reply) => assert!(reply.starts_with("550 "), "{reply}"),
        other => panic!("GTUBE must be rejected, got {other:?}"),
    }
    drop(g);
    drop(filters);
    drop(world);
}
