//! LMTP destinations (RFC 2033; SPEC §5.3): one transaction per recipient to an LMTP server
//! at `HOST:PORT` or a Unix socket path — Dovecot's LMTP above all.
//!
//! The dialogue: greeting, `LHLO`, `MAIL FROM`, one `RCPT TO`, `DATA`, the message in wire
//! form (CRLF, dot-stuffed), and the one reply for our one recipient (RFC 2033 §4.2), then
//! `QUIT`. The message goes as queued: the LMTP server adds `Return-Path:` and
//! `Delivered-To:` itself. Replies are read with `ownmail-smtp-proto`'s [`ReplyParser`].
//!
//! Outcomes: the final 2xx is a delivery; 4xx a temporary and 5xx a permanent failure, at
//! `MAIL`, `RCPT`, `DATA` or the end of data. A refused greeting or `LHLO`, a lost connection,
//! a timeout, or a reply that does not parse is a temporary failure: the server is ours, so
//! trouble with it is something to fix and retry, never a bounce.

use std::time::Duration;

use ownmail_smtp_proto::{dot_stuff, Reply, ReplyParser};
use ownmail_types::{BodyType, DeliveryOutcome, Envelope};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::LocalOptions;

/// The most time spent waiting for the reply to `QUIT`: the delivery is already decided.
const QUIT_WAIT: Duration = Duration::from_secs(5);
/// Message data is written in pieces of this size, each under the timeout.
const WRITE_CHUNK: usize = 64 * 1024;

pub(crate) async fn deliver(
    opts: &LocalOptions,
    env: &Envelope,
    dest: &str,
    rcpt: &str,
    message: &[u8],
) -> DeliveryOutcome {
    let outcome = match check_command_values(opts, env, rcpt) {
        Ok(()) => connect_and_run(opts, env, dest, rcpt, message).await,
        Err(refused) => Err(refused),
    };
    match outcome {
        Ok(reply) => DeliveryOutcome::Delivered {
            detail: format!("lmtp {dest}: {reply}"),
        },
        Err(Failure::Temp(reason)) => DeliveryOutcome::TempFail {
            reason: format!("lmtp {dest}: {reason}"),
        },
        Err(Failure::Perm(reason)) => DeliveryOutcome::PermFail {
            reason: format!("lmtp {dest}: {reason}"),
        },
    }
}

async fn connect_and_run(
    opts: &LocalOptions,
    env: &Envelope,
    dest: &str,
    rcpt: &str,
    message: &[u8],
) -> Result<Reply, Failure> {
    if dest.starts_with('/') {
        match tokio::time::timeout(opts.lmtp_timeout, UnixStream::connect(dest)).await {
            Ok(Ok(stream)) => transaction(stream, opts, env, rcpt, message).await,
            Ok(Err(e)) => Err(Failure::Temp(format!("connecting: {e}"))),
            Err(_) => Err(Failure::Temp(format!(
                "connecting: timed out after {}s",
                opts.lmtp_timeout.as_secs_f64()
            ))),
        }
    } else {
        match host_port(dest) {
            Some((host, port)) => {
                match tokio::time::timeout(opts.lmtp_timeout, TcpStream::connect((host, port)))
                    .await
                {
                    Ok(Ok(stream)) => transaction(stream, opts, env, rcpt, message).await,
                    Ok(Err(e)) => Err(Failure::Temp(format!("connecting: {e}"))),
                    Err(_) => Err(Failure::Temp(format!(
                        "connecting: timed out after {}s",
                        opts.lmtp_timeout.as_secs_f64()
                    ))),
                }
            }
            None => Err(Failure::Temp(
                "destination is neither a /socket/path nor HOST:PORT".to_string(),
            )),
        }
    }
}

/// Values that end up on a command line must not be able to add a command of their own.
fn check_command_values(opts: &LocalOptions, env: &Envelope, rcpt: &str) -> Result<(), Failure> {
    let unsafe_in_command =
        |value: &str| value.is_empty() || value.chars().any(|c| c.is_control() || c == ' ');
    if unsafe_in_command(rcpt) {
        return Err(Failure::Perm(format!(
            "invalid recipient {rcpt:?} for an LMTP command"
        )));
    }
    if unsafe_in_command(&opts.hostname) {
        // Our own configuration: fix it and the retry works.
        return Err(Failure::Temp(format!(
            "invalid hostname {:?} for LHLO",
            opts.hostname
        )));
    }
    let sender = env.mail_from.to_string();
    if sender.chars().any(char::is_control) {
        return Err(Failure::Perm(format!(
            "invalid sender {sender:?} for an LMTP command"
        )));
    }
    Ok(())
}

/// `host:port`, `[v6]:port`.
fn host_port(dest: &str) -> Option<(&str, u16)> {
    let (host, port) = dest.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

enum Failure {
    Temp(String),
    Perm(String),
}

/// Runs the transaction; `Ok` is the server's 2xx for our recipient.
async fn transaction<S>(
    stream: S,
    opts: &LocalOptions,
    env: &Envelope,
    rcpt: &str,
    message: &[u8],
) -> Result<Reply, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let sender = env.mail_from.to_string();
    let mut s = Session {
        stream,
        parser: ReplyParser::new(),
        pending: Vec::new(),
        timeout: opts.lmtp_timeout,
    };
    let greeting = s.reply("the greeting").await?;
    if greeting.code != 220 {
        return Err(Failure::Temp(format!("greeting refused: {greeting}")));
    }
    let lhlo = s.command(&format!("LHLO {}", opts.hostname)).await?;
    if !(200..300).contains(&lhlo.code) {
        return Err(Failure::Temp(format!("LHLO refused: {lhlo}")));
    }
    let has = |ext: &str| {
        lhlo.lines.iter().skip(1).any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case(ext))
        })
    };

    let mut mail = format!("MAIL FROM:<{sender}>");
    // RFC 6152. A BINARYMIME message can only go as 8BITMIME over DATA (no BDAT here).
    if env.body != BodyType::SevenBit && has("8BITMIME") {
        mail.push_str(" BODY=8BITMIME");
    }
    if env.smtputf8 && has("SMTPUTF8") {
        mail.push_str(" SMTPUTF8"); // RFC 6531 §3.4
    }
    let outcome = async {
        expect(s.command(&mail).await?, 200, "MAIL FROM")?;
        // Sent as given: Dovecot takes a bare user name as well as user@domain.
        expect(
            s.command(&format!("RCPT TO:<{rcpt}>")).await?,
            200,
            "RCPT TO",
        )?;
        expect(s.command("DATA").await?, 300, "DATA")?;
        s.send_data(message).await?;
        // RFC 2033 §4.2: after the final dot, one reply per accepted recipient; we have one.
        expect(s.reply("the end of data").await?, 200, "the message")
    }
    .await;
    s.quit().await;
    outcome
}

/// `want` is 200 or 300: the reply's class must match it; otherwise 4xx is temporary, 5xx
/// permanent, and anything else (a 2xx where 354 belonged) a confused server, temporary.
fn expect(reply: Reply, want: u16, what: &str) -> Result<Reply, Failure> {
    match reply.code / 100 {
        c if c == want / 100 => Ok(reply),
        4 => Err(Failure::Temp(format!("{what} failed: {reply}"))),
        5 => Err(Failure::Perm(format!("{what} refused: {reply}"))),
        _ => Err(Failure::Temp(format!("{what}: unexpected reply {reply}"))),
    }
}

struct Session<S> {
    stream: S,
    parser: ReplyParser,
    /// Bytes read but not yet fed to the parser.
    pending: Vec<u8>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn command(&mut self, line: &str) -> Result<Reply, Failure> {
        let verb = line.split([' ', ':']).next().unwrap_or(line);
        self.write(format!("{line}\r\n").as_bytes(), verb).await?;
        self.reply(verb).await
    }

    async fn reply(&mut self, what: &str) -> Result<Reply, Failure> {
        let mut buf = [0u8; 4096];
        loop {
            if !self.pending.is_empty() {
                let (used, done) = self.parser.feed(&self.pending);
                self.pending.drain(..used.min(self.pending.len()));
                match done {
                    Some(Ok(reply)) => return Ok(reply),
                    Some(Err(e)) => return Err(Failure::Temp(format!("reply to {what}: {e}"))),
                    None => {}
                }
            }
            let n = match tokio::time::timeout(self.timeout, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) => {
                    return Err(Failure::Temp(format!(
                        "connection closed while waiting for the reply to {what}"
                    )))
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    return Err(Failure::Temp(format!("reading the reply to {what}: {e}")))
                }
                Err(_) => {
                    let secs = self.timeout.as_secs_f64();
                    return Err(Failure::Temp(format!("no reply to {what} within {secs}s")));
                }
            };
            self.pending
                .extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }

    async fn write(&mut self, bytes: &[u8], what: &str) -> Result<(), Failure> {
        let io = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Temp(format!("sending {what}: {e}"))),
            Err(_) => Err(Failure::Temp(format!(
                "sending {what}: timed out after {}s",
                self.timeout.as_secs_f64()
            ))),
        }
    }

    /// The message, dot-stuffed (RFC 5321 §4.5.2), then `.` on a line of its own.
    async fn send_data(&mut self, message: &[u8]) -> Result<(), Failure> {
        let data = dot_stuff(message);
        for chunk in data.chunks(WRITE_CHUNK) {
            self.write(chunk, "the message").await?;
        }
        Ok(())
    }

    /// Best effort: the outcome is decided, so errors and slowness here change nothing.
    async fn quit(&mut self) {
        let _ = tokio::time::timeout(QUIT_WAIT, async {
            if self.stream.write_all(b"QUIT\r\n").await.is_ok() && self.stream.flush().await.is_ok()
            {
                let mut buf = [0u8; 512];
                let _ = self.stream.read(&mut buf).await;
            }
        })
        .await;
        let _ = tokio::time::timeout(QUIT_WAIT, self.stream.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_host_port_or_bracketed_v6() {
        assert_eq!(host_port("127.0.0.1:24"), Some(("127.0.0.1", 24)));
        assert_eq!(host_port("[::1]:24"), Some(("::1", 24)));
        assert_eq!(host_port("mx.local:24"), Some(("mx.local", 24)));
        assert_eq!(host_port("noport"), None);
        assert_eq!(host_port(":24"), None);
        assert_eq!(host_port("h:99999"), None);
    }
}
