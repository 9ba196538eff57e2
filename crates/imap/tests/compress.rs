//! COMPRESS=DEFLATE (RFC 4978): a session that compresses both ways after the tagged OK,
//! pipelined input right after the command, a second COMPRESS, garbage, and large transfers
//! both ways at once (the "inflate blocking bug" another server shipped).
//!
//! The client side here is written against flate2 directly, not the server's wrapper, so
//! the two implementations check each other.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{FakeAuth, MSG1, MSG2};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use ownmail_imap::{run_session, ImapCtx};
use ownmail_mailstore::Maildir;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);

/// The client's receiving side: raw bytes, inflated once compression is on.
struct Rx {
    rd: ReadHalf<DuplexStream>,
    inflate: Option<Decompress>,
    /// Plain text not yet returned.
    plain: Vec<u8>,
}

impl Rx {
    /// Turns inflation on; anything already read past the tagged OK was compressed.
    fn compress(&mut self) {
        let raw = std::mem::take(&mut self.plain);
        self.inflate = Some(Decompress::new(false));
        self.push(&raw);
    }

    fn push(&mut self, raw: &[u8]) {
        let Some(d) = self.inflate.as_mut() else {
            self.plain.extend_from_slice(raw);
            return;
        };
        let mut pos = 0;
        loop {
            self.plain.reserve(64 * 1024);
            let before = d.total_in();
            d.decompress_vec(&raw[pos..], &mut self.plain, FlushDecompress::Sync)
                .expect("server sent bad deflate data");
            pos += (d.total_in() - before) as usize;
            if pos == raw.len() && self.plain.len() < self.plain.capacity() {
                return;
            }
        }
    }

    /// Reads more; false at end of stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout(WAIT, self.rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.push(&chunk[..n]);
                true
            }
            Err(_) => panic!(
                "timed out; have {:?}",
                String::from_utf8_lossy(&self.plain[..self.plain.len().min(300)])
            ),
        }
    }

    /// One response with its literals inline; empty at end of stream.
    async fn line(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let Some(pos) = self.plain[from..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|p| p + from)
            else {
                from = self.plain.len().saturating_sub(1);
                if !self.fill().await {
                    return out;
                }
                continue;
            };
            from = 0;
            let line: Vec<u8> = self.plain.drain(..pos + 2).collect();
            let text = &line[..line.len() - 2];
            out.extend_from_slice(&line);
            if text.ends_with(b"}") {
                if let Some(open) = text.iter().rposition(|&b| b == b'{') {
                    let n: usize = std::str::from_utf8(&text[open + 1..text.len() - 1])
                        .expect("literal length")
                        .parse()
                        .expect("literal length");
                    while self.plain.len() < n {
                        assert!(self.fill().await, "eof in literal");
                    }
                    out.extend(self.plain.drain(..n));
                    continue;
                }
            }
            out.truncate(out.len() - 2);
            return out;
        }
    }

    /// Responses up to and including the tagged one (or the end of the stream).
    async fn until(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = String::from_utf8_lossy(&self.line().await).into_owned();
            let done = l.is_empty() || l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }
}

/// The client's sending side: every send is one sync-flushed batch once compression is on.
struct Tx {
    wr: WriteHalf<DuplexStream>,
    deflate: Option<Compress>,
}

/// Deflates `data` ending with a sync flush.
fn deflate(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut pos = 0;
    loop {
        let before = c.total_in();
        c.compress_vec(&data[pos..], &mut out, FlushCompress::Sync)
            .expect("deflate");
        pos += (c.total_in() - before) as usize;
        if pos == data.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

impl Tx {
    fn compress(&mut self) {
        // Level 1: the client's speed does not matter here, and tests run unoptimised.
        self.deflate = Some(Compress::new(Compression::fast(), false));
    }

    fn encode(&mut self, data: &[u8]) -> Vec<u8> {
        match self.deflate.as_mut() {
            Some(c) => deflate(c, data),
            None => data.to_vec(),
        }
    }

    async fn send(&mut self, data: &[u8]) {
        let wire = self.encode(data);
        self.wr.write_all(&wire).await.expect("write");
    }
}

struct Conn {
    rx: Rx,
    tx: Tx,
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    task: JoinHandle<()>,
    _shutdown: watch::Sender<bool>,
}

impl Conn {
    async fn start(pipe: usize) -> Conn {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("Maildir");
        Maildir::open(&root).ensure(None).expect("maildir");
        let auth = Arc::new(FakeAuth::new(root.clone()));
        let (client, server) = tokio::io::duplex(pipe);
        let (tx, rx) = watch::channel(false);
        let ctx = Arc::new(ImapCtx::new("mx.example.org"));
        let task = tokio::spawn(run_session(Box::new(server), ctx, auth, rx));
        let (rd, wr) = tokio::io::split(client);
        let mut c = Conn {
            rx: Rx {
                rd,
                inflate: None,
                plain: Vec::new(),
            },
            tx: Tx { wr, deflate: None },
            _dir: dir,
            root,
            task,
            _shutdown: tx,
        };
        let greeting = c.rx.line().await;
        assert!(greeting.starts_with(b"* OK"));
        c
    }

    fn deliver(&self, msg: &[u8]) {
        Maildir::open(&self.root)
            .deliver(msg, None)
            .expect("deliver");
    }

    async fn cmd(&mut self, line: &str) -> Vec<String> {
        let tag = line.split(' ').next().unwrap_or("").to_string();
        self.tx.send(format!("{line}\r\n").as_bytes()).await;
        self.rx.until(&tag).await
    }

    async fn ok(&mut self, line: &str) -> Vec<String> {
        let r = self.cmd(line).await;
        let tag = line.split(' ').next().unwrap_or("");
        assert!(
            last(&r).starts_with(&format!("{tag} OK")),
            "{line} -> {r:#?}"
        );
        r
    }

    /// LOGIN, then COMPRESS DEFLATE; both directions compressed afterwards.
    async fn login_and_compress(&mut self) {
        let r = self.ok("l1 LOGIN alice secret").await;
        assert!(last(&r).contains("COMPRESS=DEFLATE"), "{r:?}");
        self.tx.send(b"z1 COMPRESS DEFLATE\r\n").await;
        let r = self.rx.until("z1").await;
        assert!(last(&r).starts_with("z1 OK"), "{r:?}");
        self.rx.compress();
        self.tx.compress();
    }
}

fn last(lines: &[String]) -> &str {
    lines.last().map_or("", String::as_str)
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

#[tokio::test]
async fn compressed_login_select_fetch_append() {
    let mut c = Conn::start(1 << 16).await;
    let r = c.ok("c0 CAPABILITY").await;
    assert!(!has(&r, "COMPRESS=DEFLATE"), "not before login: {r:?}");
    c.deliver(MSG1.as_bytes());
    c.deliver(MSG2.as_bytes());
    c.login_and_compress().await;

    let r = c.ok("s1 SELECT INBOX").await;
    assert!(has(&r, "* 2 EXISTS"), "{r:#?}");
    let r = c.ok("f1 FETCH 1:* (BODY.PEEK[])").await;
    assert!(has(&r, MSG1) && has(&r, MSG2), "{r:#?}");

    // A synchronizing literal: the continuation request comes back compressed too.
    let msg = "From: a@example.org\r\nSubject: zipped\r\n\r\nsqueezed body\r\n";
    c.tx.send(format!("a1 APPEND INBOX {{{}}}\r\n", msg.len()).as_bytes())
        .await;
    let cont = c.rx.line().await;
    assert!(
        cont.starts_with(b"+"),
        "{:?}",
        String::from_utf8_lossy(&cont)
    );
    c.tx.send(format!("{msg}\r\n").as_bytes()).await;
    let mut r = c.rx.until("a1").await;
    assert!(last(&r).starts_with("a1 OK [APPENDUID"), "{r:?}");
    r.extend(c.ok("n1 NOOP").await);
    assert!(has(&r, "* 3 EXISTS"), "{r:#?}");
    let r = c.ok("f2 FETCH 3 BODY.PEEK[]").await;
    assert!(has(&r, msg), "{r:#?}");

    let r = c.ok("c1 CAPABILITY").await;
    assert!(!has(&r, "COMPRESS=DEFLATE"), "not once active: {r:?}");
    let r = c.cmd("o1 LOGOUT").await;
    assert!(has(&r, "* BYE"), "{r:?}");
    tokio::time::timeout(WAIT, c.task)
        .await
        .expect("session ends")
        .expect("no panic");
}

#[tokio::test]
async fn input_pipelined_after_compress_is_inflated() {
    let mut c = Conn::start(1 << 16).await;
    c.ok("l1 LOGIN alice secret").await;
    // The command and the compressed commands after it in one write (RFC 4978 §3).
    let mut z = Compress::new(Compression::default(), false);
    let mut wire = b"z1 COMPRESS DEFLATE\r\n".to_vec();
    wire.extend(deflate(&mut z, b"n1 NOOP\r\nn2 SELECT INBOX\r\n"));
    c.tx.wr.write_all(&wire).await.expect("write");
    let r = c.rx.until("z1").await;
    assert!(last(&r).starts_with("z1 OK"), "{r:?}");
    c.rx.compress();
    c.tx.deflate = Some(z);
    let r = c.rx.until("n1").await;
    assert!(last(&r).starts_with("n1 OK"), "{r:?}");
    let r = c.rx.until("n2").await;
    assert!(last(&r).starts_with("n2 OK"), "{r:?}");
    c.ok("n3 NOOP").await;
}

#[tokio::test]
async fn second_compress_is_no_compressionactive() {
    let mut c = Conn::start(1 << 16).await;
    c.login_and_compress().await;
    let r = c.cmd("z2 COMPRESS DEFLATE").await;
    assert_eq!(last(&r), "z2 NO [COMPRESSIONACTIVE] DEFLATE already active");
    // Still compressed, still working.
    c.ok("n1 NOOP").await;
}

#[tokio::test]
async fn compress_before_login_or_unknown_mechanism_is_refused() {
    let mut c = Conn::start(1 << 16).await;
    let r = c.cmd("z1 COMPRESS DEFLATE").await;
    assert!(last(&r).starts_with("z1 BAD"), "{r:?}");
    c.ok("l1 LOGIN alice secret").await;
    let r = c.cmd("z2 COMPRESS LZW").await;
    assert!(last(&r).starts_with("z2 BAD"), "{r:?}");
    // Nothing changed: plain text still works.
    c.ok("n1 NOOP").await;
}

#[tokio::test]
async fn garbage_compressed_input_ends_the_session() {
    let mut c = Conn::start(1 << 16).await;
    c.login_and_compress().await;
    c.tx.wr
        .write_all(&[0xff, 0xfe, 0x00, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef])
        .await
        .expect("write");
    // The server closes the connection (no response it could compress makes sense).
    let rest = tokio::time::timeout(WAIT, async {
        let mut raw = Vec::new();
        let _ = c.rx.rd.read_to_end(&mut raw).await;
        raw
    })
    .await
    .expect("session closes");
    let _ = rest;
    tokio::time::timeout(WAIT, c.task)
        .await
        .expect("session ends")
        .expect("no panic");
}

#[tokio::test]
async fn truncated_compressed_input_ends_the_session() {
    let mut c = Conn::start(1 << 16).await;
    c.login_and_compress().await;
    let mut z = Compress::new(Compression::default(), false);
    let wire = deflate(&mut z, b"n1 NOOP\r\nn2 NOOP\r\n");
    c.tx.wr
        .write_all(&wire[..wire.len() / 2])
        .await
        .expect("write");
    c.tx.wr.shutdown().await.expect("shutdown");
    tokio::time::timeout(WAIT, c.task)
        .await
        .expect("session ends")
        .expect("no panic");
}

/// Text that compresses like mail does (words, not one repeated byte).
fn body(seed: u32, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "mail", "server", "deflate", "window", "Lorem", "ipsum", "quux", "0x1f3a", "sync",
        "flush", "inflate", "IMAP", "literal", "pipeline", "reseau",
    ];
    let mut out = Vec::with_capacity(len + 80);
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut col = 0;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let w = WORDS[(x as usize) % WORDS.len()];
        out.extend_from_slice(w.as_bytes());
        col += w.len() + 1;
        if col > 70 {
            out.extend_from_slice(b"\r\n");
            col = 0;
        } else {
            out.push(b' ');
        }
        if x % 97 == 0 {
            out.extend_from_slice(format!("{x:08x}").as_bytes());
        }
    }
    out.truncate(len);
    out.extend_from_slice(b"\r\n");
    out
}

/// The client writes a 20 MB APPEND while the server is still writing a large FETCH
/// answer, through a small pipe: both directions are full at once. Neither side may wait on
/// the other (the inflate blocking bug), and everything arrives intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pipelined_transfers_both_ways_do_not_deadlock() {
    let mut c = Conn::start(16 * 1024).await;
    let mut bodies = Vec::new();
    for i in 0..40u32 {
        let mut m = format!("From: bulk@example.org\r\nSubject: bulk {i}\r\n\r\n").into_bytes();
        m.extend(body(i, 100_000));
        c.deliver(&m);
        bodies.push(m);
    }
    c.login_and_compress().await;
    c.ok("s1 SELECT INBOX").await;

    let big = body(9999, 20 << 20);
    let Conn { mut rx, mut tx, .. } = c;
    let sent = big.clone();
    let writer = tokio::spawn(async move {
        // One pipeline: FETCH everything, APPEND 20 MB (LITERAL+, no waiting), FETCH again.
        tx.send(b"f1 FETCH 1:* (BODY.PEEK[])\r\n").await;
        let head = format!("a1 APPEND INBOX {{{}+}}\r\n", sent.len());
        tx.send(head.as_bytes()).await;
        for chunk in sent.chunks(256 * 1024) {
            tx.send(chunk).await;
        }
        tx.send(b"\r\nf2 FETCH 1:* (RFC822.SIZE)\r\nf3 FETCH 41 (BODY.PEEK[])\r\n")
            .await;
        tx
    });
    let work = async {
        let r = rx.until("f1").await;
        assert!(last(&r).starts_with("f1 OK"), "{:?}", last(&r));
        assert_eq!(r.len(), bodies.len() + 1, "one response per message");
        for (i, b) in bodies.iter().enumerate() {
            let want = format!("BODY[] {{{}}}\r\n{}", b.len(), String::from_utf8_lossy(b));
            assert!(has(&r, &want), "message {i} intact");
        }
        let r = rx.until("a1").await;
        assert!(last(&r).starts_with("a1 OK [APPENDUID"), "{r:?}");
        let r = rx.until("f2").await;
        assert!(last(&r).starts_with("f2 OK"), "{r:?}");
        assert!(
            has(&r, &format!("* 41 FETCH (RFC822.SIZE {})", big.len())),
            "{r:?}"
        );
        // And the 20 MB come back intact, compressed the other way.
        let r = rx.until("f3").await;
        assert!(last(&r).starts_with("f3 OK"), "{:?}", last(&r));
        let want = format!(
            "BODY[] {{{}}}\r\n{}",
            big.len(),
            String::from_utf8_lossy(&big)
        );
        assert!(has(&r, &want), "the 20 MB message is stored intact");
    };
    tokio::time::timeout(Duration::from_secs(240), work)
        .await
        .expect("no deadlock");
    let mut tx = writer.await.expect("writer");
    tx.send(b"o1 LOGOUT\r\n").await;
    let r = rx.until("o1").await;
    assert!(has(&r, "* BYE"), "{r:?}");
}
