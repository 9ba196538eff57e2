//! The accept loop of one IMAP listener: bounded connections, implicit TLS (`imaps`) done
//! in the session's own task so a slow handshake holds up nobody, one task per session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn};

use crate::{run_session, Authenticator, ImapCtx};

/// What one listener needs besides the session context.
#[derive(Clone)]
pub struct ListenerOptions {
    /// Implicit TLS (port 993): the handshake comes before the greeting.
    pub implicit_tls: Option<Arc<rustls::ServerConfig>>,
    /// Sessions open at once on this listener; more get `* BYE` and are closed.
    pub max_sessions: usize,
}

/// Accepts connections until `shutdown` turns true; running sessions get their own BYE.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ImapCtx>,
    opts: ListenerOptions,
    auth: Arc<dyn Authenticator>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(opts.max_sessions));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (mut stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: pause a little instead of spinning.
                warn!("imap event=accept-error error=\"{e}\"");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            info!("imap event=refused client={peer} reason=too-many-connections");
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"* BYE Too many connections, try again later\r\n")
                    .await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let ctx = ctx.clone();
        let auth = auth.clone();
        let shutdown = shutdown.clone();
        let tls = opts.implicit_tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            session(stream, peer, tls, ctx, auth, shutdown).await;
        });
    }
}

async fn session(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    ctx: Arc<ImapCtx>,
    auth: Arc<dyn Authenticator>,
    shutdown: watch::Receiver<bool>,
) {
    info!("imap event=accept client={peer}");
    let Some(cfg) = tls else {
        run_session(Box::new(stream), ctx, auth, shutdown).await;
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    match tokio::time::timeout(ctx.preauth_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => run_session(Box::new(tls), ctx, auth, shutdown).await,
        Ok(Err(e)) => info!("imap event=tls-failed client={peer} error=\"{e}\""),
        Err(_) => info!("imap event=tls-timeout client={peer}"),
    }
}
