//! STARTTLS on a listener that requires TLS for login: LOGINDISABLED before, LOGIN after,
//! and nothing pipelined in clear text after STARTTLS is run.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ownmail_imap::{run_session, ImapCtx};
use ownmail_mailstore::Maildir;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

fn certs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["mx.example.org".to_string()]).expect("rcgen");
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server cert");
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("root");
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Reads one CRLF line (no literals in this test).
async fn line<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> String {
    loop {
        if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
            let l: Vec<u8> = buf.drain(..p + 2).collect();
            return String::from_utf8_lossy(&l[..p]).into_owned();
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("timeout")
            .expect("read");
        if n == 0 {
            return String::from_utf8_lossy(buf).into_owned();
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn until<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>, tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let l = line(s, buf).await;
        let done = l.starts_with(&format!("{tag} ")) || l.is_empty();
        out.push(l);
        if done {
            return out;
        }
    }
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, text: &str) {
    s.write_all(text.as_bytes()).await.expect("write");
    s.flush().await.expect("flush");
}

#[tokio::test]
async fn starttls_then_login_and_no_injection() {
    let (server_cfg, client_cfg) = certs();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("Maildir");
    Maildir::open(&root).ensure(None).expect("maildir");
    let mut ctx = ImapCtx::new("mx.example.org");
    ctx.require_tls_for_login = true;
    ctx.starttls = Some(server_cfg);
    let auth = Arc::new(common::FakeAuth::new(root));
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (_tx, rx) = watch::channel(false);
    let task = tokio::spawn(run_session(Box::new(server), Arc::new(ctx), auth, rx));

    let mut buf = Vec::new();
    let greeting = line(&mut client, &mut buf).await;
    assert!(
        greeting.contains("STARTTLS") && greeting.contains("LOGINDISABLED"),
        "{greeting}"
    );

    // The LOGIN pipelined after STARTTLS travels in clear text: it must be dropped.
    send(&mut client, "a1 STARTTLS\r\na2 LOGIN alice secret\r\n").await;
    let ok = line(&mut client, &mut buf).await;
    assert!(ok.starts_with("a1 OK"), "{ok}");
    assert!(buf.is_empty());

    let connector = tokio_rustls::TlsConnector::from(client_cfg);
    let name = ServerName::try_from("mx.example.org").expect("name");
    let mut tls = connector.connect(name, client).await.expect("handshake");

    send(&mut tls, "b1 CAPABILITY\r\n").await;
    let r = until(&mut tls, &mut buf, "b1").await;
    assert!(!r.iter().any(|l| l.starts_with("a2")), "{r:?}");
    let caps = &r[0];
    assert!(caps.contains("AUTH=PLAIN"), "{caps}");
    assert!(
        !caps.contains("LOGINDISABLED") && !caps.contains("STARTTLS"),
        "{caps}"
    );

    send(&mut tls, "b2 LOGIN alice secret\r\n").await;
    let r = until(&mut tls, &mut buf, "b2").await;
    assert!(r.last().is_some_and(|l| l.starts_with("b2 OK")), "{r:?}");
    send(&mut tls, "b3 STARTTLS\r\n").await;
    let r = until(&mut tls, &mut buf, "b3").await;
    assert!(r.last().is_some_and(|l| l.starts_with("b3 BAD")), "{r:?}");
    send(&mut tls, "b4 LOGOUT\r\n").await;
    let _ = until(&mut tls, &mut buf, "b4").await;
    drop(tls);
    task.await.expect("session did not panic");
}
