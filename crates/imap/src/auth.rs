//! STARTTLS, LOGIN and AUTHENTICATE PLAIN (RFC 9051 §6.2, RFC 4616, SASL-IR RFC 4959).

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ownmail_imap_proto::{Code, Response};
use ownmail_mailstore::MailStore;
use tracing::info;

use crate::session::{Session, Stop, Tagged, User};

/// STARTTLS: answers OK, then runs the TLS handshake on the same stream.
/// `Ok(None)`: the tagged OK has been sent already (before the handshake).
pub(crate) async fn starttls(s: &mut Session, tag: &str) -> Result<Option<Tagged>, Stop> {
    let Some(cfg) = s.ctx.starttls.clone() else {
        return Ok(Some(Tagged::bad("STARTTLS not available")));
    };
    if s.tls {
        return Ok(Some(Tagged::bad("TLS already active")));
    }
    if s.user.is_some() {
        return Ok(Some(Tagged::bad("Already logged in")));
    }
    s.send(Response::ok(tag, "Begin TLS negotiation now"));
    s.flush().await?;
    // RFC 9051 §6.2.1 (and CVE-2011-0411 in SMTP): anything pipelined after STARTTLS was
    // sent in clear text and must not be run as if it came over TLS.
    s.discard_input();
    let Some(io) = s.swap_io() else {
        return Err(Stop::Lost);
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    match tokio::time::timeout(s.ctx.preauth_timeout, acceptor.accept(io)).await {
        Ok(Ok(tls)) => {
            s.set_io(Box::new(tls));
            s.tls = true;
            info!("imap session={} event=starttls", s.id);
            // The tagged OK was already sent; nothing more to say for this command.
            Ok(None)
        }
        Ok(Err(e)) => {
            info!("imap session={} event=tls-failed error=\"{e}\"", s.id);
            Err(Stop::Lost)
        }
        Err(_) => Err(Stop::Lost),
    }
}

/// LOGIN (RFC 9051 §6.2.3).
pub(crate) async fn login(s: &mut Session, user: &str, password: Vec<u8>) -> Tagged {
    if s.user.is_some() {
        return Tagged::bad("Already logged in");
    }
    if s.login_disabled() {
        return Tagged::no("Use STARTTLS first").code(Code::PrivacyRequired);
    }
    check(s, user, password).await
}

/// AUTHENTICATE PLAIN, with the initial response inline (SASL-IR) or after `+ `.
pub(crate) async fn authenticate(
    s: &mut Session,
    mechanism: &str,
    initial: Option<Vec<u8>>,
) -> Result<Tagged, Stop> {
    if s.user.is_some() {
        return Ok(Tagged::bad("Already logged in"));
    }
    if s.login_disabled() {
        return Ok(Tagged::no("Use STARTTLS first").code(Code::PrivacyRequired));
    }
    if mechanism != "PLAIN" {
        return Ok(Tagged::no("Unsupported mechanism").code(Code::Cannot));
    }
    let b64 = match initial {
        Some(b) => b,
        None => {
            s.send(Response::Continuation(String::new()));
            match s.read_line().await? {
                Some(line) => line,
                None => return Ok(Tagged::bad("Response too long")),
            }
        }
    };
    if b64 == b"*" {
        return Ok(Tagged::bad("Authentication cancelled"));
    }
    let Ok(plain) = STANDARD.decode(&b64) else {
        return Ok(Tagged::bad("Invalid base64"));
    };
    let mut parts = plain.split(|&b| b == 0);
    let (Some(authz), Some(authc), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(Tagged::bad("Invalid PLAIN response"));
    };
    let Ok(authc) = std::str::from_utf8(authc) else {
        return Ok(Tagged::no("Invalid credentials").code(Code::AuthenticationFailed));
    };
    if !authz.is_empty() && authz != authc.as_bytes() {
        return Ok(Tagged::no("Cannot act as another user").code(Code::AuthorizationFailed));
    }
    Ok(check(s, authc, pass.to_vec()).await)
}

/// Asks the authenticator (on a blocking thread: it may hash) and opens the user's store.
async fn check(s: &mut Session, user: &str, password: Vec<u8>) -> Tagged {
    let auth = Arc::clone(&s.auth);
    let name = user.to_string();
    let found = tokio::task::spawn_blocking(move || auth.login(&name, &password))
        .await
        .ok()
        .flatten();
    let Some(root) = found else {
        info!("imap session={} event=login-failed user={user:?}", s.id);
        return Tagged::no("Invalid credentials").code(Code::AuthenticationFailed);
    };
    let store = MailStore::open(&root.path);
    if let Err(e) = store.ensure_special_folders(root.owner) {
        tracing::warn!("imap session={} event=store-error error=\"{e}\"", s.id);
        return Tagged::no("Mailbox unavailable").code(Code::Unavailable);
    }
    info!("imap session={} event=login user={user:?}", s.id);
    s.user = Some(User {
        name: user.to_string(),
        store,
        owner: root.owner,
    });
    let caps = s.capabilities();
    Tagged::ok("Logged in").code(Code::Capability(caps))
}
