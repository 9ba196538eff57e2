//! A small IMAP client over an in-memory stream, driving `run_session` against a temporary
//! Maildir, with a fake authenticator (alice / secret).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ownmail_imap::{run_session, Authenticator, ImapCtx, MailboxRoot};
use ownmail_mailstore::Maildir;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct FakeAuth {
    root: PathBuf,
}

impl FakeAuth {
    pub fn new(root: PathBuf) -> FakeAuth {
        FakeAuth { root }
    }
}

impl Authenticator for FakeAuth {
    fn login(&self, user: &str, password: &[u8]) -> Option<MailboxRoot> {
        (user == "alice" && password == b"secret").then(|| MailboxRoot {
            path: self.root.clone(),
            owner: None,
        })
    }
}

pub struct Client {
    stream: DuplexStream,
    buf: Vec<u8>,
    pub dir: tempfile::TempDir,
    pub shutdown: watch::Sender<bool>,
    pub task: JoinHandle<()>,
    pub greeting: String,
}

const WAIT: Duration = Duration::from_secs(5);

impl Client {
    pub async fn start() -> Client {
        Client::start_with(ImapCtx::new("mx.example.org")).await
    }

    pub async fn start_with(ctx: ImapCtx) -> Client {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("Maildir");
        Maildir::open(&root).ensure(None).expect("maildir");
        let auth = Arc::new(FakeAuth { root });
        let (client, server) = tokio::io::duplex(1 << 20);
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run_session(Box::new(server), Arc::new(ctx), auth, rx));
        let mut c = Client {
            stream: client,
            buf: Vec::new(),
            dir,
            shutdown: tx,
            task,
            greeting: String::new(),
        };
        c.greeting = c.line().await;
        c
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    /// Delivers a message into INBOX (`None`) or a folder's directory (`Some(".Sent")`).
    pub fn deliver(&self, folder: Option<&str>, msg: &str) {
        let dir = match folder {
            None => self.root(),
            Some(f) => self.root().join(f),
        };
        Maildir::open(&dir)
            .deliver(msg.as_bytes(), None)
            .expect("deliver");
    }

    pub async fn send(&mut self, raw: &str) {
        self.stream.write_all(raw.as_bytes()).await.expect("write");
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("timed out; have {:?}", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// One response, with any literals inline (`{N}\r\n` followed by the N bytes).
    pub async fn line(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                if !self.fill().await {
                    return String::from_utf8_lossy(&out).into_owned();
                }
                continue;
            };
            let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
            let text = &line[..line.len() - 2];
            out.extend_from_slice(&line);
            // A literal at the end of the line: read its bytes, then the rest of the response.
            if text.ends_with(b"}") {
                if let Some(open) = text.iter().rposition(|&b| b == b'{') {
                    if let Ok(n) = std::str::from_utf8(&text[open + 1..text.len() - 1])
                        .unwrap_or("x")
                        .parse::<usize>()
                    {
                        while self.buf.len() < n {
                            assert!(self.fill().await, "eof in literal");
                        }
                        out.extend(self.buf.drain(..n));
                        continue;
                    }
                }
            }
            out.truncate(out.len() - 2);
            return String::from_utf8_lossy(&out).into_owned();
        }
    }

    /// Sends `line` (which starts with its tag) and returns every response up to and including
    /// the tagged one.
    pub async fn cmd(&mut self, line: &str) -> Vec<String> {
        let tag = line.split(' ').next().unwrap_or("").to_string();
        self.send(&format!("{line}\r\n")).await;
        self.until(&tag).await
    }

    pub async fn until(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            if l.is_empty() && self.buf.is_empty() {
                lines.push(l);
                return lines;
            }
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    /// [`Client::cmd`], asserting the tagged answer is `OK`.
    pub async fn ok(&mut self, line: &str) -> Vec<String> {
        let lines = self.cmd(line).await;
        let tag = line.split(' ').next().unwrap_or("");
        let last = lines.last().cloned().unwrap_or_default();
        assert!(
            last.starts_with(&format!("{tag} OK")),
            "{line} -> {lines:#?}"
        );
        lines
    }

    pub async fn login(&mut self) {
        self.ok("l1 LOGIN alice secret").await;
    }

    pub async fn select_inbox(&mut self) -> Vec<String> {
        self.ok("s1 SELECT INBOX").await
    }
}

pub fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

pub fn last(lines: &[String]) -> &str {
    lines.last().map_or("", String::as_str)
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

pub const MSG1: &str = "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: Hello there\r\n\r\nFirst body, with a needle.\r\n";
pub const MSG2: &str = "From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: Lunch\r\n\r\nSecond body.\r\n";
