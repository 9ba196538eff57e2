//! A scripted SMTP/LMTP server. It answers each command with the script's reply, offers
//! STARTTLS when given a TLS configuration, reads DATA with dot-unstuffing, and records every
//! line it receives (prefixed `TLS ` once encrypted), every message and every connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the server does. Replies are whole lines without CRLF.
#[derive(Clone)]
pub struct Script {
    pub greeting: String,
    /// EHLO keywords after the first line (STARTTLS is added when `tls` is set).
    pub extensions: Vec<String>,
    pub tls: Option<Arc<ServerConfig>>,
    pub mail: String,
    pub rcpt: String,
    pub data: String,
    pub end: String,
    pub auth: String,
    /// Answer EHLO with a line that is no reply at all.
    pub garbage_ehlo: bool,
    /// Accept the connection and never say anything.
    pub silent: bool,
    /// Close the connection after the first line of message data.
    pub drop_in_data: bool,
    /// Say 220 to STARTTLS, then close instead of a handshake.
    pub broken_tls: bool,
    /// RCPT replies for particular addresses (matched inside the command line).
    pub rcpt_for: Vec<(String, String)>,
    /// LMTP: the replies after the final dot, one per accepted recipient in order (`end`
    /// for those not listed).
    pub lmtp_end: Vec<String>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            greeting: "220 fake.example.test ESMTP".to_string(),
            extensions: [
                "PIPELINING",
                "SIZE 10000000",
                "8BITMIME",
                "ENHANCEDSTATUSCODES",
                "DSN",
            ]
            .map(String::from)
            .to_vec(),
            tls: None,
            mail: "250 2.1.0 ok".to_string(),
            rcpt: "250 2.1.5 ok".to_string(),
            data: "354 go ahead".to_string(),
            end: "250 2.0.0 queued as FAKE".to_string(),
            auth: "235 2.7.0 authenticated".to_string(),
            garbage_ehlo: false,
            silent: false,
            drop_in_data: false,
            broken_tls: false,
            rcpt_for: Vec::new(),
            lmtp_end: Vec::new(),
        }
    }
}

#[derive(Default)]
pub struct Log {
    pub connections: usize,
    pub lines: Vec<String>,
    pub messages: Vec<Vec<u8>>,
}

pub struct FakeSmtp {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl FakeSmtp {
    /// Listens on `ip:port` (port 0 for any) until the test ends.
    pub async fn start(ip: IpAddr, port: u16, script: Script) -> FakeSmtp {
        let listener = TcpListener::bind((ip, port)).await.expect("bind SMTP");
        let addr = listener.local_addr().expect("SMTP address");
        let log = Arc::new(Mutex::new(Log::default()));
        let accept_log = log.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accept_log.lock().expect("log").connections += 1;
                tokio::spawn(session(
                    Box::new(stream),
                    script.clone(),
                    accept_log.clone(),
                ));
            }
        });
        FakeSmtp { addr, log }
    }

    pub fn connections(&self) -> usize {
        self.log.lock().expect("log").connections
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.lock().expect("log").lines.clone()
    }

    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.log.lock().expect("log").messages.clone()
    }
}

/// A self-signed certificate for `name`, as a server configuration.
pub fn tls_config(name: &str) -> Arc<ServerConfig> {
    let certified = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("rcgen");
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server certificate");
    Arc::new(config)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn write(io: &mut Box<dyn Io>, line: &str) -> Option<()> {
    io.write_all(format!("{line}\r\n").as_bytes()).await.ok()?;
    io.flush().await.ok()
}

async fn read_line(io: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            return Some(line.trim_end_matches(['\r', '\n']).to_string());
        }
        let mut chunk = [0u8; 4096];
        let n = io.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n)?);
    }
}

async fn session(mut io: Box<dyn Io>, script: Script, log: Arc<Mutex<Log>>) -> Option<()> {
    if script.silent {
        let mut sink = [0u8; 1024];
        while io.read(&mut sink).await.ok()? > 0 {}
        return None;
    }
    write(&mut io, &script.greeting).await?;
    let mut buf = Vec::new();
    let mut tls = false;
    let mut accepted = 0usize;
    let mut lmtp = false;
    loop {
        let line = read_line(&mut io, &mut buf).await?;
        let shown = if tls {
            format!("TLS {line}")
        } else {
            line.clone()
        };
        log.lock().expect("log").lines.push(shown);
        let verb = line
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "LHLO" if script.garbage_ehlo => write(&mut io, "hello there").await?,
            "EHLO" | "LHLO" => {
                lmtp = verb == "LHLO";
                let mut lines = vec!["fake.example.test hello".to_string()];
                lines.extend(script.extensions.iter().cloned());
                if script.tls.is_some() && !tls {
                    lines.push("STARTTLS".to_string());
                }
                let last = lines.len() - 1;
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    write(&mut io, &format!("250{sep}{l}")).await?;
                }
            }
            "HELO" => write(&mut io, "250 fake.example.test").await?,
            "STARTTLS" => {
                let config = script.tls.clone()?;
                write(&mut io, "220 2.0.0 ready").await?;
                if script.broken_tls {
                    return None;
                }
                let stream = TlsAcceptor::from(config).accept(io).await.ok()?;
                io = Box::new(stream);
                buf.clear();
                tls = true;
            }
            "AUTH" => write(&mut io, &script.auth).await?,
            "MAIL" => write(&mut io, &script.mail).await?,
            "RCPT" => {
                let reply = script
                    .rcpt_for
                    .iter()
                    .find(|(addr, _)| line.contains(addr.as_str()))
                    .map_or(&script.rcpt, |(_, reply)| reply);
                if reply.starts_with('2') {
                    accepted += 1;
                }
                write(&mut io, reply).await?;
            }
            // RFC 2920 §3.1: no valid recipient, no DATA (a pipelining client counts on it).
            "DATA" if accepted == 0 => write(&mut io, "554 5.5.1 no valid recipients").await?,
            "DATA" => {
                write(&mut io, &script.data).await?;
                if !script.data.starts_with("354") {
                    continue;
                }
                let mut message = Vec::new();
                loop {
                    let line = read_line(&mut io, &mut buf).await?;
                    if script.drop_in_data {
                        return None;
                    }
                    if line == "." {
                        break;
                    }
                    let line = line.strip_prefix('.').unwrap_or(&line);
                    message.extend_from_slice(line.as_bytes());
                    message.extend_from_slice(b"\r\n");
                }
                log.lock().expect("log").messages.push(message);
                if lmtp {
                    for i in 0..accepted {
                        let reply = script.lmtp_end.get(i).unwrap_or(&script.end);
                        write(&mut io, reply).await?;
                    }
                } else {
                    write(&mut io, &script.end).await?;
                }
                accepted = 0;
            }
            "RSET" => {
                accepted = 0;
                write(&mut io, "250 2.0.0 ok").await?;
            }
            "NOOP" => write(&mut io, "250 2.0.0 ok").await?,
            "QUIT" => {
                write(&mut io, "221 2.0.0 bye").await?;
                return Some(());
            }
            _ => write(&mut io, "500 5.5.1 unknown command").await?,
        }
    }
}

/// Waits until `check` holds (the server records asynchronously), at most 2 s.
pub async fn eventually(check: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}
