//! Sessions over an in-memory stream: a fake queue, the real rules, scripted dialogues.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ownmail_config::table::Table;
use ownmail_config::{parse_str, Diagnostics, ParseOptions};
use ownmail_rules::Ruleset;
use ownmail_smtp::{run_session, Limits, ListenerCtx, Peer, Runtime, Shared, TlsMode};
use ownmail_types::{BoxFuture, Envelope, MessageSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;

#[derive(Default)]
struct FakeQueue {
    messages: Mutex<Vec<(Envelope, Vec<u8>)>>,
}

impl MessageSink for FakeQueue {
    fn enqueue(&self, env: Envelope, message: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.messages.lock().expect("lock").push((env, message));
            Ok(())
        })
    }
}

struct Client {
    io: DuplexStream,
    queue: Arc<FakeQueue>,
    _stop: watch::Sender<bool>,
    buf: Vec<u8>,
}

fn ruleset(dir: &std::path::Path) -> Ruleset {
    std::fs::write(dir.join("virtual"), "m@example.org m\n").expect("write");
    std::fs::write(
        dir.join("vusers"),
        format!("m 5000:5000:{}/m\n", dir.display()),
    )
    .expect("write");
    let conf = format!(
        "table v file:{d}/virtual\ntable u file:{d}/vusers\naction \"in\" maildir \"~/\" virtual <v> userbase <u>\n\
         match from any for domain example.org action \"in\"\n",
        d = dir.display()
    );
    let parsed = parse_str("t.conf", &conf, &ParseOptions::default());
    assert!(!parsed.diags.has_errors());
    let mut diags = Diagnostics::new();
    let tables: HashMap<String, Table> = parsed
        .config
        .tables
        .iter()
        .map(|d| (d.name.clone(), Table::load(d, &mut diags).expect("table")))
        .collect();
    Ruleset::new(
        Arc::new(parsed.config),
        Arc::new(tables),
        "mx.example.org",
        &[],
    )
}

async fn connect(limits: Limits) -> Client {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = Arc::new(ruleset(dir.path()));
    let queue = Arc::new(FakeQueue::default());
    let shared = Shared::new(
        Runtime {
            rules,
            limits,
            signer: None,
            checker: None,
            antispam: None,
            filters: None,
            rdns: None,
        },
        queue.clone(),
    );
    let ctx = Arc::new(ListenerCtx {
        hostname: "mx.example.org".into(),
        tls_mode: TlsMode::None,
        tls: None,
        tag: None,
        auth: None,
        senders: None,
        filter: None,
    });
    let (client, server) = tokio::io::duplex(1 << 20);
    let (stop, stop_rx) = watch::channel(false);
    let peer = "198.51.100.7:40000".parse().expect("addr");
    tokio::spawn(async move {
        run_session(Box::new(server), Peer::Tcp(peer), ctx, shared, stop_rx).await;
        drop(dir);
    });
    let mut c = Client {
        io: client,
        queue,
        _stop: stop,
        buf: Vec::new(),
    };
    c.expect("220 ").await;
    c
}

impl Client {
    async fn send(&mut self, s: &[u8]) {
        self.io.write_all(s).await.expect("write");
    }

    /// Reads until a complete reply line starting with `prefix` (skipping `NNN-` lines).
    async fn expect(&mut self, prefix: &str) -> String {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line).to_string();
                if line.len() > 3 && line.as_bytes()[3] == b'-' {
                    continue;
                }
                assert!(
                    line.starts_with(prefix),
                    "expected {prefix:?}, got {line:?}"
                );
                return line;
            }
            let mut b = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), self.io.read(&mut b))
                .await
                .expect("reply in time")
                .expect("read");
            assert!(n > 0, "connection closed while expecting {prefix:?}");
            self.buf.extend_from_slice(&b[..n]);
        }
    }

    async fn expect_closed(&mut self) {
        let mut b = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), self.io.read(&mut b))
            .await
            .expect("in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "still open: {:?}", String::from_utf8_lossy(&b[..n]));
    }

    fn queued(&self) -> usize {
        self.queue.messages.lock().expect("lock").len()
    }
}

#[tokio::test]
async fn pipelined_transaction_is_queued_with_a_received_header() {
    let mut c = connect(Limits::default()).await;
    c.send(b"EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<m@example.org>\r\nDATA\r\n")
        .await;
    c.expect("250 ").await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("354").await;
    c.send(b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n")
        .await;
    let ok = c.expect("250 2.0.0 Ok: queued as ").await;
    c.expect("221").await;
    let msgs = c.queue.messages.lock().expect("lock");
    let (env, msg) = &msgs[0];
    assert!(ok.contains(env.id.as_str()));
    let text = String::from_utf8_lossy(msg);
    assert!(text.starts_with("Received: from client.test ([198.51.100.7])\r\n\tby mx.example.org (ownmail) with ESMTP id "));
    assert!(
        text.ends_with("\r\nSubject: hi\r\n\r\n.dot\r\nbody\r\n"),
        "{text}"
    );
    assert_eq!(env.recipients.len(), 1);
}

#[tokio::test]
async fn smuggling_sequences_are_refused_and_close_the_session() {
    for seq in [
        &b"\n.\n"[..],
        b"\r\n.\n",
        b"\n.\r\n",
        b"\r.\r",
        b"x\rMAIL FROM:<b@x>",
    ] {
        let mut c = connect(Limits::default()).await;
        c.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<m@example.org>\r\nDATA\r\n")
            .await;
        c.expect("250 ").await;
        c.expect("250 ").await;
        c.expect("250 ").await;
        c.expect("354").await;
        c.send(b"Subject: x\r\n\r\nhello").await;
        c.send(seq).await;
        c.send(b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<m@example.org>\r\nDATA\r\nsmuggled\r\n.\r\n")
            .await;
        c.expect("554 5.5.2").await;
        c.expect_closed().await;
        assert_eq!(c.queued(), 0, "{seq:?}");
    }
}

#[tokio::test]
async fn limits_have_their_replies() {
    let limits = Limits {
        max_message_size: 100,
        max_rcpt: 2,
        ..Limits::default()
    };
    let mut c = connect(limits).await;
    c.send(b"EHLO c\r\n").await;
    c.expect("250 ").await;
    c.send(&[b'A'; 3000]).await;
    c.send(b"\r\n").await;
    c.expect("500 5.5.2").await;
    c.send(b"MAIL FROM:<a@b.test> SIZE=1000\r\n").await;
    c.expect("552 5.3.4").await;
    c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<m@example.org>\r\nRCPT TO:<m@example.org>\r\nRCPT TO:<m@example.org>\r\n").await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("250 2.1.5").await;
    c.expect("452 4.5.3").await;
    c.send(b"RCPT TO:<nobody@example.org>\r\n").await;
    c.expect("452").await;
    c.send(b"DATA\r\n").await;
    c.expect("354").await;
    c.send(&[b'x'; 300]).await;
    c.send(b"\r\n.\r\n").await;
    c.expect("552 5.3.4").await;
    c.send(
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<x@elsewhere.test>\r\n",
    )
    .await;
    c.expect("250").await;
    c.expect("550 5.1.1").await;
    c.expect("550 5.7.1").await;
    assert_eq!(c.queued(), 0);
}

#[tokio::test]
async fn garbage_gets_500_then_421_after_too_many_errors() {
    let mut c = connect(Limits::default()).await;
    for _ in 0..10 {
        c.send(b"\x00\xff\xfe garbage\r\n").await;
        c.expect("500").await;
    }
    c.send(b"more garbage\r\n").await;
    c.expect("500").await;
    c.expect("421 4.7.0").await;
    c.expect_closed().await;
}

#[tokio::test]
async fn bdat_chunks_make_one_message() {
    let mut c = connect(Limits::default()).await;
    c.send(b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<m@example.org>\r\nBDAT 10\r\n0123456789BDAT 5 LAST\r\nabcde").await;
    c.expect("250 ").await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("250 2.0.0 10 octets").await;
    c.expect("250 2.0.0 Ok: queued").await;
    let msgs = c.queue.messages.lock().expect("lock");
    assert!(msgs[0].1.ends_with(b"0123456789abcde"));
}

#[tokio::test]
async fn commands_out_of_order_are_503() {
    let mut c = connect(Limits::default()).await;
    c.send(b"MAIL FROM:<a@b.test>\r\n").await;
    c.expect("503").await;
    c.send(b"HELO c\r\nRCPT TO:<m@example.org>\r\nDATA\r\n")
        .await;
    c.expect("250").await;
    c.expect("503").await;
    c.expect("503").await;
    c.send(b"MAIL FROM:<a@b.test>\r\nDATA\r\n").await;
    c.expect("250").await;
    c.expect("554 5.5.1").await;
}

#[tokio::test]
async fn shutdown_says_421() {
    let mut c = connect(Limits::default()).await;
    c.send(b"EHLO c\r\n").await;
    c.expect("250 ").await;
    let _ = c._stop.send(true);
    c.expect("421 4.3.2").await;
}

#[tokio::test]
async fn the_tail_of_an_overlong_line_is_never_a_command() {
    let mut c = connect(Limits::default()).await;
    c.send(b"EHLO c\r\n").await;
    c.expect("250 ").await;
    // 20 kB of junk whose tail looks like a command, sent in two pieces.
    c.send(&[b'A'; 10_000]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.send(&[b'B'; 10_000]).await;
    c.send(b" QUIT\r\nNOOP\r\n").await;
    c.expect("500 5.5.2").await;
    c.expect("250 2.0.0").await;
}
