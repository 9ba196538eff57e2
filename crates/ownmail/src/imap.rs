//! The IMAP side of `ownmail serve`: binds the `imap listen on` lines (SPEC §4.2) and logs
//! users in against the running configuration's tables, so a SIGHUP that changes the
//! users file takes effect at the next login.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ownmail_config::check::resolve_listen;
use ownmail_config::model::{Config, ImapListener, ImapTls};
use ownmail_imap::{Authenticator, ImapCtx, ListenerOptions, MailboxRoot};
use ownmail_smtp::Shared;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// Sessions one IMAP listener serves at once (Dovecot's default process_limit is 1024).
const MAX_SESSIONS: usize = 4096;
/// How long a failed login waits before its NO (Dovecot's auth_failure_delay): slows
/// password guessing without a lockout an attacker could turn against the user.
const FAILURE_DELAY: Duration = Duration::from_secs(2);

/// A bound IMAP socket and what its sessions need.
pub struct Bound {
    listener: TcpListener,
    ctx: Arc<ImapCtx>,
    opts: ListenerOptions,
}

/// The port a listener binds: the one given, else 993 for `imaps`, else 143.
fn port_of(l: &ImapListener) -> u16 {
    l.port.unwrap_or(match l.tls {
        ImapTls::Imaps => 993,
        _ => 143,
    })
}

/// The pki a TLS listener uses: the one it names, else the configuration's only one.
fn pki_of<'a>(config: &'a Config, l: &'a ImapListener) -> Result<Option<&'a str>, String> {
    if l.tls == ImapTls::None {
        return Ok(None);
    }
    if let Some(p) = &l.pki {
        return Ok(Some(p));
    }
    match config.pkis.as_slice() {
        [only] => Ok(Some(&only.name)),
        _ => Err(format!(
            "{}: IMAP with TLS needs a certificate: add `pki NAME` to this line",
            l.pos
        )),
    }
}

/// Binds every `imap listen on` address (before the spool is touched, like SMTP's).
pub async fn bind_all(
    config: &Config,
    host: &str,
    tls_configs: &mut HashMap<String, Arc<rustls::ServerConfig>>,
) -> Result<Vec<Bound>, String> {
    let mut out = Vec::new();
    for l in &config.imap.listeners {
        let addrs = resolve_listen(&l.on, None).map_err(|e| format!("{}: {e}", l.on_pos))?;
        let tls = match pki_of(config, l)? {
            Some(name) => Some(crate::serve::tls_for(config, name, tls_configs)?),
            None => None,
        };
        let mut ctx = ImapCtx::new(host);
        ctx.tls_active_at_start = l.tls == ImapTls::Imaps;
        ctx.require_tls_for_login = l.tls == ImapTls::Require;
        if matches!(l.tls, ImapTls::Offer | ImapTls::Require) {
            ctx.starttls = tls.clone();
        }
        if let Some(max) = config.smtp.max_message_size {
            ctx.max_message = max;
        }
        let ctx = Arc::new(ctx);
        let opts = ListenerOptions {
            implicit_tls: if l.tls == ImapTls::Imaps { tls } else { None },
            max_sessions: MAX_SESSIONS,
        };
        for ip in addrs {
            let addr = SocketAddr::new(ip, port_of(l));
            let listener = crate::serve::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (imap): {e}"))?;
            info!("imap event=listen address={addr} tls={:?}", l.tls);
            out.push(Bound {
                listener,
                ctx: ctx.clone(),
                opts: opts.clone(),
            });
        }
    }
    Ok(out)
}

/// Starts the accept loop of every bound IMAP socket.
pub fn spawn_all(
    bound: Vec<Bound>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let auth: Arc<dyn Authenticator> = Arc::new(RulesAuth { shared });
    bound
        .into_iter()
        .map(|b| {
            tokio::spawn(ownmail_imap::serve(
                b.listener,
                b.ctx,
                b.opts,
                auth.clone(),
                stop.clone(),
            ))
        })
        .collect()
}

/// Logs IMAP users in with the tables of the configuration running now.
struct RulesAuth {
    shared: Arc<Shared>,
}

impl Authenticator for RulesAuth {
    fn login(&self, user: &str, password: &[u8]) -> Option<MailboxRoot> {
        let rules = self.shared.runtime().rules.clone();
        match rules.imap_login(user, password) {
            Some(account) => Some(MailboxRoot {
                path: account.maildir,
                owner: Some((account.user.uid, account.user.gid)),
            }),
            None => {
                // On a blocking thread already (the session's contract): sleeping here
                // holds up no other session.
                std::thread::sleep(FAILURE_DELAY);
                None
            }
        }
    }
}
