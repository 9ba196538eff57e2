//! IDLE (RFC 2177, RFC 9051 §6.3.13): reports EXISTS/EXPUNGE/FETCH for the selected folder as
//! it changes, until the client sends DONE.
//!
//! SPEC §5.6 wants new mail reported within a second of delivery, whoever delivers it (this
//! process, Dovecot's LMTP, an MDA). For as long as IDLE lasts the folder's `new/` and `cur/`
//! are watched ([`crate::watch`], inotify) and each change is announced as it happens; a
//! re-read every `idle_recheck` catches what a watch cannot see (changes over NFS). Where no
//! watch can be made — not Linux, inotify limits reached, `idle_watch` off — the folder is
//! re-read every `idle_poll` instead, as before watching existed.

use std::io;
use std::time::Instant;

use ownmail_imap_proto::{is_idle_done, ReadState, Response};
use ownmail_mailstore::WatchEvent;
use tracing::debug;

use crate::session::{Session, Stop, Tagged, Woke};
use crate::watch::Watcher;

pub(crate) async fn idle(s: &mut Session) -> Result<Tagged, Stop> {
    // Watch first, then re-read: a change after the previous command's refresh but before
    // the watch started is found by this refresh, any later one by the watch.
    let mut watcher = match &s.selected {
        Some(sel) if s.ctx.idle_watch => Watcher::start(&s.id, sel.folder.path()),
        _ => None,
    };
    s.send(Response::Continuation("idling".into()));
    s.refresh(true);
    let started = Instant::now();
    loop {
        let (n, st) = s.reader.feed_line(&s.input);
        s.input.drain(..n.min(s.input.len()));
        match st {
            ReadState::Command(line) => {
                return Ok(if is_idle_done(&line) {
                    Tagged::ok("IDLE terminated")
                } else {
                    Tagged::bad("Expected DONE")
                });
            }
            ReadState::Error(_) => return Ok(Tagged::bad("Expected DONE")),
            ReadState::NeedMore | ReadState::NeedContinuation => {}
        }
        let idle_for = started.elapsed();
        if idle_for >= s.ctx.idle_timeout {
            s.bye("Autologout; idle for too long");
            let _ = s.flush().await;
            return Err(Stop::Done);
        }
        let every = if s.selected.is_none() {
            s.ctx.idle_timeout // nothing to look at: wait for DONE
        } else if watcher.is_some() {
            s.ctx.idle_recheck
        } else {
            s.ctx.idle_poll
        };
        let wait = every.min(s.ctx.idle_timeout.saturating_sub(idle_for));
        match s.read_or(wait, next_change(watcher.as_ref())).await? {
            Woke::Input => {}
            Woke::Timeout | Woke::Other(Ok(WatchEvent::Changed)) => s.refresh(true),
            Woke::Other(ended) => {
                // The folder's directories went away or the watch failed: poll from here on.
                let why = match ended {
                    Ok(_) => "folder-gone".to_string(),
                    Err(e) => e.to_string(),
                };
                debug!(
                    "imap session={} event=idle-watch-ended fallback=poll reason=\"{why}\"",
                    s.id
                );
                watcher = None;
                s.refresh(true);
            }
        }
    }
}

/// The next change the watcher sees; never, without one.
async fn next_change(watcher: Option<&Watcher>) -> io::Result<WatchEvent> {
    match watcher {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    //! IDLE over an in-memory stream with polling slowed to 30 s: what arrives within a
    //! second can only have come through the folder watch.

    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use ownmail_mailstore::Maildir;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
    use tokio::sync::watch;

    use crate::{run_session, Authenticator, ImapCtx, MailboxRoot};

    struct OneUser(PathBuf);

    impl Authenticator for OneUser {
        fn login(&self, user: &str, password: &[u8]) -> Option<MailboxRoot> {
            (user == "alice" && password == b"secret").then(|| MailboxRoot {
                path: self.0.clone(),
                owner: None,
            })
        }
    }

    struct Client {
        rd: BufReader<ReadHalf<DuplexStream>>,
        wr: WriteHalf<DuplexStream>,
        _shutdown: watch::Sender<bool>,
    }

    impl Client {
        async fn send(&mut self, line: &str) {
            self.wr.write_all(line.as_bytes()).await.expect("write");
            self.wr.write_all(b"\r\n").await.expect("write");
        }

        async fn line(&mut self, within: Duration) -> String {
            let mut l = String::new();
            tokio::time::timeout(within, self.rd.read_line(&mut l))
                .await
                .unwrap_or_else(|_| panic!("no response within {within:?}"))
                .expect("read");
            l.trim_end().to_string()
        }

        /// Reads up to and including the line tagged `tag`.
        async fn until(&mut self, tag: &str) -> Vec<String> {
            let mut lines = Vec::new();
            loop {
                let l = self.line(Duration::from_secs(5)).await;
                assert!(!l.is_empty(), "eof; have {lines:?}");
                let done = l.starts_with(&format!("{tag} "));
                lines.push(l);
                if done {
                    return lines;
                }
            }
        }
    }

    fn slow_polling() -> ImapCtx {
        let mut ctx = ImapCtx::new("mx.example.org");
        ctx.idle_poll = Duration::from_secs(30);
        ctx.idle_recheck = Duration::from_secs(30);
        ctx
    }

    async fn start(ctx: ImapCtx, root: PathBuf) -> Client {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (tx, rx) = watch::channel(false);
        tokio::spawn(run_session(
            Box::new(server),
            Arc::new(ctx),
            Arc::new(OneUser(root)),
            rx,
        ));
        let (rd, wr) = tokio::io::split(client);
        let mut c = Client {
            rd: BufReader::new(rd),
            wr,
            _shutdown: tx,
        };
        let greeting = c.line(Duration::from_secs(5)).await;
        assert!(greeting.starts_with("* OK"), "{greeting}");
        c
    }

    /// Logs in, selects INBOX (holding one message) and enters IDLE.
    async fn idling(ctx: ImapCtx) -> (tempfile::TempDir, Maildir, Client) {
        let t = tempfile::tempdir().expect("tempdir");
        let md = Maildir::open(t.path().join("Maildir"));
        md.ensure(None).expect("maildir");
        md.deliver(b"Subject: one\n\nfirst\n", None)
            .expect("deliver");
        let mut c = start(ctx, md.path().to_path_buf()).await;
        c.send("l1 LOGIN alice secret").await;
        let r = c.until("l1").await;
        assert!(r.last().is_some_and(|l| l.starts_with("l1 OK")), "{r:?}");
        c.send("s1 SELECT INBOX").await;
        let r = c.until("s1").await;
        assert!(r.iter().any(|l| l == "* 1 EXISTS"), "{r:?}");
        c.send("i1 IDLE").await;
        let cont = c.line(Duration::from_secs(5)).await;
        assert!(cont.starts_with("+ "), "{cont}");
        (t, md, c)
    }

    async fn done(c: &mut Client) {
        c.send("DONE").await;
        let r = c.until("i1").await;
        assert!(r.last().is_some_and(|l| l.starts_with("i1 OK")), "{r:?}");
    }

    #[tokio::test]
    async fn idle_reports_a_delivery_within_a_second_without_polling() {
        let (_t, md, mut c) = idling(slow_polling()).await;
        // Delivery from another thread, as another program (LMTP, an MDA) would do it.
        let delivered = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(100));
            md.deliver(b"Subject: two\n\nsecond\n", None)
                .expect("deliver");
            std::time::Instant::now()
        });
        let l = c.line(Duration::from_secs(2)).await;
        let seen = std::time::Instant::now();
        let at = delivered.await.expect("delivery");
        assert_eq!(l, "* 2 EXISTS");
        assert!(seen - at < Duration::from_secs(1), "{:?}", seen - at);
        done(&mut c).await;
    }

    #[tokio::test]
    async fn idle_reports_expunge_and_flag_changes_by_others_without_polling() {
        let (_t, md, mut c) = idling(slow_polling()).await;
        let name = std::fs::read_dir(md.path().join("new"))
            .expect("new")
            .next()
            .expect("one")
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        // Another session marks it \Seen (new/ -> cur/ with the flag) ...
        let cur = md.path().join("cur").join(format!("{name}:2,S"));
        std::fs::rename(md.path().join("new").join(&name), &cur).expect("flag");
        let l = c.line(Duration::from_secs(1)).await;
        assert!(l.starts_with("* 1 FETCH (FLAGS (\\Seen)"), "{l}");
        // ... then expunges it.
        std::fs::remove_file(&cur).expect("expunge");
        let l = c.line(Duration::from_secs(1)).await;
        assert_eq!(l, "* 1 EXPUNGE");
        done(&mut c).await;
    }

    #[tokio::test]
    async fn idle_without_watching_still_polls() {
        let mut ctx = ImapCtx::new("mx.example.org");
        ctx.idle_watch = false;
        ctx.idle_poll = Duration::from_millis(100);
        let (_t, md, mut c) = idling(ctx).await;
        md.deliver(b"Subject: two\n\nsecond\n", None)
            .expect("deliver");
        assert_eq!(c.line(Duration::from_secs(1)).await, "* 2 EXISTS");
        done(&mut c).await;
    }

    #[tokio::test]
    async fn idle_autologout_still_applies_while_watching() {
        let mut ctx = slow_polling();
        ctx.idle_timeout = Duration::from_millis(300);
        let (_t, _md, mut c) = idling(ctx).await;
        let l = c.line(Duration::from_secs(2)).await;
        assert!(l.starts_with("* BYE"), "{l}");
    }
}
