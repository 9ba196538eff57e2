//! One client connection to an SMTP or LMTP server: greeting, EHLO/LHLO (HELO as fallback),
//! STARTTLS (RFC 3207), AUTH PLAIN/LOGIN (RFC 4954, RFC 4616), and mail transactions with
//! PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531) and DSN
//! (RFC 3461) parameters. Replies are read with `ownmail-smtp-proto`'s [`ReplyParser`] and
//! commands written with its [`Command::to_bytes`].
//!
//! Every read and write is bounded by a timeout ([`Timeouts`]); a reply is bounded in size by
//! the parser. The client decides nothing about routing: it reports what the server said
//! ([`Error::Reply`]) or that the dialogue broke down ([`Error::Net`]), and the caller decides
//! whether to try another host. A connection whose dialogue state is uncertain is marked
//! [`Client::broken`] and must not be reused.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ownmail_smtp_proto::{dot_stuff, Command, MailParams, RcptParams, Reply, ReplyParser};
use ownmail_types::{Address, BodyType, Envelope, Notify, ReversePath};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Message data is written in pieces of this size, each under the data timeout.
const WRITE_CHUNK: usize = 64 * 1024;
/// The most time spent on a polite `QUIT`: nothing depends on its answer.
const QUIT_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// Establishing TCP, and a TLS handshake.
    pub connect: Duration,
    /// Each command's reply, the greeting included.
    pub command: Duration,
    /// Writing the message, and the reply after its final dot.
    pub data: Duration,
}

/// The server as we name it in outcomes: `mx.example.org [192.0.2.1]`.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub name: String,
    pub addr: SocketAddr,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.name, self.addr.ip())
    }
}

/// Why a step of the dialogue failed.
#[derive(Debug)]
pub(crate) enum Error {
    /// The server answered `what` with a 4xx or 5xx reply.
    Reply { what: &'static str, reply: Reply },
    /// The network, a timeout, a reply that does not parse or makes no sense here.
    Net(String),
    /// We would not go on: TLS required but not offered, no AUTH mechanism we speak.
    Refused(String),
}

impl Error {
    /// `HOST [IP]: …` for an outcome's reason.
    pub(crate) fn describe(&self, peer: &Peer) -> String {
        match self {
            Error::Reply { what, reply } => format!("{peer}: {reply} (in reply to {what})"),
            Error::Net(e) | Error::Refused(e) => format!("{peer}: {e}"),
        }
    }
}

/// The ESMTP extensions a server announced in its EHLO reply.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extensions {
    pub size: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub pipelining: bool,
    pub starttls: bool,
    pub auth_plain: bool,
    pub auth_login: bool,
}

impl Extensions {
    /// One keyword a line after the first (RFC 5321 §4.1.1.1). `AUTH=PLAIN LOGIN` is the
    /// pre-RFC 4954 form that some servers still send.
    fn parse(reply: &Reply) -> Self {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            let first = first.to_ascii_uppercase();
            let (keyword, inline) = match first.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (first.as_str(), None),
            };
            match keyword {
                "SIZE" => ext.size = true,
                "8BITMIME" => ext.eightbitmime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "DSN" => ext.dsn = true,
                "PIPELINING" => ext.pipelining = true,
                "STARTTLS" => ext.starttls = true,
                "AUTH" => {
                    let rest: Vec<String> = words.map(str::to_ascii_uppercase).collect();
                    for mech in inline.into_iter().chain(rest.iter().map(String::as_str)) {
                        match mech {
                            "PLAIN" => ext.auth_plain = true,
                            "LOGIN" => ext.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        ext
    }
}

/// A plain or TLS connection.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Opens TCP to `addr`, from `src` when given.
pub(crate) async fn connect(
    addr: SocketAddr,
    src: Option<IpAddr>,
    limit: Duration,
) -> Result<TcpStream, String> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("creating a socket: {e}"))?;
    if let Some(src) = src {
        if src.is_ipv4() != addr.is_ipv4() {
            return Err(format!(
                "source address {src} cannot reach an address of the other family"
            ));
        }
        socket
            .bind(SocketAddr::new(src, 0))
            .map_err(|e| format!("binding to source address {src}: {e}"))?;
    }
    match tokio::time::timeout(limit, socket.connect(addr)).await {
        Ok(Ok(stream)) => {
            // Commands are small and each waits for its reply: no Nagle delay.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(format!("connecting: {e}")),
        Err(_) => Err(format!(
            "connecting: no answer within {}s",
            limit.as_secs_f64()
        )),
    }
}

/// A TLS handshake over `tcp` (implicit TLS, or after `STARTTLS`).
pub(crate) async fn handshake(
    tcp: TcpStream,
    connector: &TlsConnector,
    name: ServerName<'static>,
    limit: Duration,
) -> Result<Stream, String> {
    match tokio::time::timeout(limit, connector.connect(name, tcp)).await {
        Ok(Ok(tls)) => Ok(Stream::Tls(Box::new(tls))),
        Ok(Err(e)) => Err(format!("TLS handshake: {e}")),
        Err(_) => Err(format!(
            "TLS handshake: not done within {}s",
            limit.as_secs_f64()
        )),
    }
}

/// One transaction's worth of envelope: one sender, the recipients to give in it.
pub(crate) struct Transaction<'a> {
    pub env: &'a Envelope,
    pub from: &'a ReversePath,
    pub rcpts: Vec<TxRcpt<'a>>,
    pub message: &'a [u8],
}

/// One recipient of a [`Transaction`].
pub(crate) struct TxRcpt<'a> {
    pub to: &'a Address,
    pub orcpt: Option<&'a str>,
    pub notify: Notify,
}

impl TxRcpt<'_> {
    /// A non-ASCII address can only go to a server with SMTPUTF8 (RFC 6531 §3.2).
    pub(crate) fn needs_smtputf8(&self) -> bool {
        !self.to.to_string().is_ascii()
    }
}

/// The server's verdict on one recipient: its final 2xx, or the 4xx/5xx that refused it (at
/// RCPT, DATA, or the end of data).
pub(crate) type RcptResult = Result<Reply, Reply>;

/// What came of `STARTTLS`.
pub(crate) enum StartTls {
    /// Encrypted; the caller must say EHLO again (RFC 3207 §4.2).
    Done(Client),
    /// The server refused the command; the connection goes on in plaintext.
    Refused(Client, Error),
    /// The handshake or the dialogue failed; the connection is gone.
    Failed(Error),
}

pub(crate) struct Client {
    stream: Stream,
    parser: ReplyParser,
    /// Bytes read but not yet parsed (the next replies of a pipelined group).
    pending: Vec<u8>,
    timeouts: Timeouts,
    pub peer: Peer,
    pub lmtp: bool,
    pub ext: Extensions,
    pub tls: bool,
    /// The dialogue's state is unknown: never reuse this connection.
    pub broken: bool,
}

impl Client {
    /// Reads the greeting, which must be 220 (RFC 5321 §4.3.2; 554 means "no service here").
    pub(crate) async fn greet(
        stream: Stream,
        peer: Peer,
        lmtp: bool,
        timeouts: Timeouts,
    ) -> Result<Client, Error> {
        let tls = matches!(stream, Stream::Tls(_));
        let mut client = Client {
            stream,
            parser: ReplyParser::new(),
            pending: Vec::new(),
            timeouts,
            peer,
            lmtp,
            ext: Extensions::default(),
            tls,
            broken: false,
        };
        let greeting = client.reply("the greeting", timeouts.command).await?;
        if greeting.code != 220 {
            // RFC 5321 §3.1: after a 554 greeting the client should still say QUIT.
            client.quit().await;
            return Err(refusal("the greeting", greeting));
        }
        Ok(client)
    }

    /// `EHLO` (`LHLO` for LMTP); an SMTP server that does not know EHLO (5xx) gets `HELO`
    /// and is taken to have no extensions (RFC 5321 §4.1.4).
    pub(crate) async fn hello(&mut self, name: &str) -> Result<(), Error> {
        let verb = if self.lmtp { "LHLO" } else { "EHLO" };
        let reply = self.command(&format!("{verb} {name}"), verb).await?;
        if reply.code / 100 == 2 {
            self.ext = Extensions::parse(&reply);
            return Ok(());
        }
        if self.lmtp || !reply.is_permanent() {
            return Err(refusal(verb, reply));
        }
        let helo = self.command(&format!("HELO {name}"), "HELO").await?;
        if helo.code / 100 != 2 {
            return Err(refusal("HELO", helo));
        }
        self.ext = Extensions::default();
        Ok(())
    }

    /// `STARTTLS` and the handshake. Anything the server sent after its 220 and before the
    /// handshake would be plaintext injected into the TLS session (the STARTTLS command
    /// injection attack): that fails the connection.
    pub(crate) async fn starttls(
        mut self,
        connector: &TlsConnector,
        name: ServerName<'static>,
    ) -> StartTls {
        let reply = match self.command("STARTTLS", "STARTTLS").await {
            Ok(r) => r,
            Err(e) => return StartTls::Failed(e),
        };
        if reply.code != 220 {
            if reply.code / 100 == 2 {
                // A 2xx that is not 220: the server is confused about the state.
                return StartTls::Failed(Error::Net(format!(
                    "unexpected reply to STARTTLS: {reply}"
                )));
            }
            return StartTls::Refused(self, refusal("STARTTLS", reply));
        }
        if !self.pending.is_empty() {
            return StartTls::Failed(Error::Net(
                "the server sent data after its STARTTLS reply (injection attempt?)".to_string(),
            ));
        }
        let Client {
            stream,
            timeouts,
            peer,
            lmtp,
            ..
        } = self;
        let Stream::Plain(tcp) = stream else {
            return StartTls::Failed(Error::Net("STARTTLS on a TLS connection".to_string()));
        };
        match handshake(tcp, connector, name, timeouts.connect).await {
            Ok(stream) => StartTls::Done(Client {
                stream,
                parser: ReplyParser::new(),
                pending: Vec::new(),
                timeouts,
                peer,
                lmtp,
                ext: Extensions::default(),
                tls: true,
                broken: false,
            }),
            Err(e) => StartTls::Failed(Error::Net(e)),
        }
    }

    /// AUTH PLAIN with an initial response (RFC 4616, RFC 4954 §4), or AUTH LOGIN when that
    /// is all the server offers. Credentials never appear in an error.
    pub(crate) async fn auth(&mut self, user: &str, password: &str) -> Result<(), Error> {
        if self.ext.auth_plain {
            let token = BASE64.encode(format!("\0{user}\0{password}"));
            let reply = self.command(&format!("AUTH PLAIN {token}"), "AUTH").await?;
            return expect(reply, 200, "AUTH").map(drop);
        }
        if self.ext.auth_login {
            expect(self.command("AUTH LOGIN", "AUTH").await?, 300, "AUTH")?;
            let reply = self.command(&BASE64.encode(user), "AUTH LOGIN").await?;
            expect(reply, 300, "AUTH LOGIN")?;
            let reply = self.command(&BASE64.encode(password), "AUTH LOGIN").await?;
            return expect(reply, 200, "AUTH LOGIN").map(drop);
        }
        Err(Error::Refused(
            "the server offers neither AUTH PLAIN nor AUTH LOGIN, and credentials are configured"
                .to_string(),
        ))
    }

    /// MAIL, one RCPT per recipient of `rcpts` and DATA (in one write when the server
    /// pipelines), the message, and the reply to its final dot: one for all recipients under
    /// SMTP, one per accepted recipient under LMTP (RFC 2033 §4.2).
    ///
    /// `Err` concerns the whole transaction: a refused MAIL (a [`Error::Reply`]) or a broken
    /// dialogue. `Ok` has one result per recipient, in order.
    pub(crate) async fn transaction(
        &mut self,
        tx: &Transaction<'_>,
        rcpts: &[&TxRcpt<'_>],
    ) -> Result<Vec<RcptResult>, Error> {
        let mail = Command::Mail {
            from: tx.from.clone(),
            params: self.mail_params(tx, rcpts),
        }
        .to_bytes();
        let rcpt_lines: Vec<Vec<u8>> = rcpts
            .iter()
            .map(|r| {
                Command::Rcpt {
                    to: r.to.clone(),
                    params: self.rcpt_params(r),
                }
                .to_bytes()
            })
            .collect();
        let command = self.timeouts.command;
        let mut results: Vec<RcptResult> = Vec::with_capacity(rcpts.len());
        if self.ext.pipelining {
            // RFC 2920 §3.1: DATA may end a pipelined group; the replies come in order.
            let mut group = mail;
            for line in &rcpt_lines {
                group.extend_from_slice(line);
            }
            group.extend_from_slice(b"DATA\r\n");
            self.send(&group, "MAIL FROM", command).await?;
            let mail = self.reply("MAIL FROM", command).await?;
            for _ in rcpts {
                let reply = self.reply("RCPT TO", command).await?;
                results.push(self.verdict(reply, 200, "RCPT TO")?);
            }
            let data = self.reply("DATA", command).await?;
            let refused = mail.code / 100 != 2 || !results.iter().any(Result::is_ok);
            if refused && data.code == 354 {
                // The server wants a message it should not: leave it waiting and drop the
                // connection rather than send an empty message.
                self.broken = true;
            }
            if mail.code / 100 != 2 {
                return Err(self.note(refusal("MAIL FROM", mail)));
            }
            if refused {
                return Ok(results);
            }
            if let Err(e) = self.verdict(data, 300, "DATA")? {
                return Ok(refuse_accepted(results, &e));
            }
        } else {
            let reply = self.exchange(&mail, "MAIL FROM").await?;
            expect(reply, 200, "MAIL FROM").map_err(|e| self.note(e))?;
            for line in &rcpt_lines {
                let reply = self.exchange(line, "RCPT TO").await?;
                results.push(self.verdict(reply, 200, "RCPT TO")?);
            }
            if !results.iter().any(Result::is_ok) {
                return Ok(results);
            }
            let reply = self.exchange(b"DATA\r\n", "DATA").await?;
            if let Err(e) = self.verdict(reply, 300, "DATA")? {
                return Ok(refuse_accepted(results, &e));
            }
        }
        let data = dot_stuff(tx.message);
        for chunk in data.chunks(WRITE_CHUNK) {
            self.send(chunk, "the message", self.timeouts.data).await?;
        }
        if self.lmtp {
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                let reply = self.reply("the message", self.timeouts.data).await?;
                *result = self.verdict(reply, 200, "the message")?;
            }
        } else {
            let reply = self.reply("the message", self.timeouts.data).await?;
            let verdict = self.verdict(reply, 200, "the message")?;
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = verdict.clone();
            }
        }
        Ok(results)
    }

    /// A reply of the `want` class is `Ok(Ok)`, a 4xx/5xx `Ok(Err)`; anything else means the
    /// server and we disagree about the dialogue.
    fn verdict(
        &mut self,
        reply: Reply,
        want: u16,
        what: &'static str,
    ) -> Result<RcptResult, Error> {
        match expect(reply, want, what) {
            Ok(reply) => Ok(Ok(reply)),
            Err(Error::Reply { reply, .. }) => Ok(Err(reply)),
            Err(e) => Err(self.note(e)),
        }
    }

    /// RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 RET and ENVID: each only
    /// when the server announced the extension. An 8-bit message goes to a server without
    /// 8BITMIME as it is: converting it to 7 bit would break signatures, and in practice
    /// such servers take 8-bit data (Postfix and OpenSMTPD do the same).
    fn mail_params(&self, tx: &Transaction<'_>, rcpts: &[&TxRcpt<'_>]) -> MailParams {
        let mut p = MailParams::default();
        if self.ext.size {
            p.size = u64::try_from(tx.message.len()).ok();
        }
        if tx.env.body != BodyType::SevenBit && self.ext.eightbitmime {
            // A BINARYMIME message can only go as 8BITMIME over DATA (we send no BDAT).
            p.body = Some(BodyType::EightBitMime);
        }
        let needs = !tx.from.to_string().is_ascii() || rcpts.iter().any(|r| r.needs_smtputf8());
        p.smtputf8 = self.ext.smtputf8 && (tx.env.smtputf8 || needs);
        if self.ext.dsn {
            p.ret = tx.env.ret;
            p.envid = tx.env.envid.clone();
        }
        p
    }

    /// RFC 3461 NOTIFY and ORCPT, passed on only to a server with DSN. NOTIFY is left out
    /// when the client gave none (all flags false): the default then applies downstream too.
    fn rcpt_params(&self, rcpt: &TxRcpt<'_>) -> RcptParams {
        let mut p = RcptParams::default();
        if self.ext.dsn {
            if rcpt.notify != Notify::default() {
                p.notify = Some(rcpt.notify);
            }
            p.orcpt = rcpt.orcpt.map(str::to_string);
        }
        p
    }

    /// `RSET`: the probe that a pooled connection still works, and a clean state.
    pub(crate) async fn rset(&mut self) -> Result<(), Error> {
        let reply = self.command("RSET", "RSET").await?;
        expect(reply, 200, "RSET")
            .map(drop)
            .map_err(|e| self.note(e))
    }

    /// Best effort: whatever happens here changes nothing.
    pub(crate) async fn quit(mut self) {
        let wait = QUIT_WAIT.min(self.timeouts.command);
        let _ = tokio::time::timeout(wait, async {
            if self.stream.write_all(b"QUIT\r\n").await.is_ok() && self.stream.flush().await.is_ok()
            {
                let mut buf = [0u8; 512];
                let _ = self.stream.read(&mut buf).await;
            }
        })
        .await;
        let _ = tokio::time::timeout(wait, self.stream.shutdown()).await;
    }

    async fn command(&mut self, line: &str, what: &'static str) -> Result<Reply, Error> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.exchange(&bytes, what).await
    }

    async fn exchange(&mut self, bytes: &[u8], what: &'static str) -> Result<Reply, Error> {
        self.send(bytes, what, self.timeouts.command).await?;
        self.reply(what, self.timeouts.command).await
    }

    async fn send(&mut self, bytes: &[u8], what: &str, limit: Duration) -> Result<(), Error> {
        let io = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        let result = match tokio::time::timeout(limit, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Net(format!("sending {what}: {e}"))),
            Err(_) => Err(Error::Net(format!(
                "sending {what}: timed out after {}s",
                limit.as_secs_f64()
            ))),
        };
        result.map_err(|e| self.note(e))
    }

    async fn reply(&mut self, what: &str, limit: Duration) -> Result<Reply, Error> {
        let result = self.read_reply(what, limit).await;
        result.map_err(|e| self.note(e))
    }

    async fn read_reply(&mut self, what: &str, limit: Duration) -> Result<Reply, Error> {
        let mut buf = [0u8; 4096];
        loop {
            if !self.pending.is_empty() {
                let (used, done) = self.parser.feed(&self.pending);
                self.pending.drain(..used.min(self.pending.len()));
                match done {
                    Some(Ok(reply)) => return Ok(reply),
                    Some(Err(e)) => return Err(Error::Net(format!("reply to {what}: {e}"))),
                    None => {}
                }
            }
            let n = match tokio::time::timeout(limit, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) => {
                    return Err(Error::Net(format!(
                        "connection closed while waiting for the reply to {what}"
                    )))
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(Error::Net(format!("reading the reply to {what}: {e}"))),
                Err(_) => {
                    return Err(Error::Net(format!(
                        "no reply to {what} within {}s",
                        limit.as_secs_f64()
                    )))
                }
            };
            self.pending
                .extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }

    /// Marks the connection unusable after anything but a clean 4xx/5xx reply.
    fn note(&mut self, e: Error) -> Error {
        if !matches!(e, Error::Reply { .. }) {
            self.broken = true;
        }
        e
    }
}

/// Every recipient accepted at RCPT shares the fate of `refusal` (a refused DATA).
fn refuse_accepted(results: Vec<RcptResult>, refusal: &Reply) -> Vec<RcptResult> {
    results
        .into_iter()
        .map(|r| r.and_then(|_| Err(refusal.clone())))
        .collect()
}

/// `want` is 200 or 300: the reply's class must match it; 4xx and 5xx are the server's
/// answer; anything else (a 2xx where 354 belonged) is a confused server.
fn expect(reply: Reply, want: u16, what: &'static str) -> Result<Reply, Error> {
    if reply.code / 100 == want / 100 {
        Ok(reply)
    } else {
        Err(refusal(what, reply))
    }
}

fn refusal(what: &'static str, reply: Reply) -> Error {
    if reply.is_transient() || reply.is_permanent() {
        Error::Reply { what, reply }
    } else {
        Error::Net(format!("unexpected reply to {what}: {reply}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_read_from_the_ehlo_reply() {
        let reply = Reply::multi(
            250,
            "",
            vec![
                "mx.example.org hello".to_string(),
                "pipelining".to_string(),
                "SIZE 10240000".to_string(),
                "8BITMIME".to_string(),
                "AUTH=LOGIN".to_string(),
                "STARTTLS".to_string(),
            ],
        );
        let ext = Extensions::parse(&reply);
        assert!(ext.pipelining && ext.size && ext.eightbitmime && ext.starttls);
        assert!(ext.auth_login && !ext.auth_plain && !ext.dsn && !ext.smtputf8);
        let reply = Reply::multi(
            250,
            "",
            vec!["mx".to_string(), "AUTH CRAM-MD5 plain".to_string()],
        );
        assert!(Extensions::parse(&reply).auth_plain);
        // The first line is the server's name, never an extension.
        let reply = Reply::multi(250, "", vec!["STARTTLS".to_string()]);
        assert!(!Extensions::parse(&reply).starttls);
    }
}
