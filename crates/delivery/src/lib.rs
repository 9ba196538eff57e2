//! Couriers (SPEC §5.3, §5.4): the delivery agents, one per kind of [`Destination`]. The queue
//! knows only the [`Courier`] trait of `ownmail-types`; the binary builds a [`Dispatcher`] and
//! hands it over.
//!
//! - [`LocalCourier`] delivers to the local destinations: a Maildir (`maildir.rs`, through
//!   `ownmail-mailstore`), an mbox file (`mbox.rs`), a program (`mda.rs`) and an LMTP server
//!   (`lmtp.rs`).
//! - [`Dispatcher`] routes `Relay` destinations to the relay courier (a later module) and
//!   everything else to the [`LocalCourier`].
//!
//! Contract with the queue:
//! - The message arrives as queued: CRLF line ends, our `Received:` on top. Files on disk
//!   (Maildir, mbox) and the input of an mda get LF line ends, as Dovecot writes them, plus
//!   `Return-Path:` and `Delivered-To:` on top; LMTP gets the wire form unchanged (the LMTP
//!   server adds its own).
//! - `Delivered` is returned only once the copy is durable: fsynced file and directory, the
//!   mda's exit 0, or the LMTP server's 2xx for this recipient.
//! - Every failure comes back as a precise `reason`; nothing here logs (the queue logs one
//!   line per attempt with the message id).
//!
//! Ownership: a local copy belongs to the destination's user. Running as root, files are
//! created and then chowned to the user, and an mda runs with the user's uid/gid. Running as
//! anyone else, only deliveries to our own uid are possible; any other is a clear `TempFail`
//! (SPEC §5.3), never a silently root-or-daemon-owned file.

use std::sync::Arc;
use std::time::Duration;

use ownmail_types::{
    BoxFuture, Courier, DeliveryOutcome, Destination, Envelope, LocalUser, Recipient,
};

pub mod dsn;
mod lmtp;
mod maildir;
mod mbox;
mod mda;

/// Settings for [`LocalCourier`].
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Our name, sent in `LHLO`.
    pub hostname: String,
    /// How long an mda may run before it is killed (and the delivery retried).
    pub mda_timeout: Duration,
    /// The limit for connecting to an LMTP server and for each of its replies.
    pub lmtp_timeout: Duration,
}

/// Delivers to maildir, mbox, mda and lmtp destinations. `Relay` destinations are refused
/// with a `TempFail`; route them through a [`Dispatcher`].
pub struct LocalCourier {
    opts: LocalOptions,
}

impl LocalCourier {
    pub fn new(opts: LocalOptions) -> Self {
        LocalCourier { opts }
    }
}

impl Courier for LocalCourier {
    fn deliver<'a>(
        &'a self,
        env: &'a Envelope,
        rcpt: &'a Recipient,
        message: &'a [u8],
    ) -> BoxFuture<'a, DeliveryOutcome> {
        Box::pin(async move {
            match &rcpt.dest {
                Destination::Maildir { user, path, junk } => {
                    let to_junk = *junk && maildir::is_marked_spam(message);
                    maildir::deliver(user, path, to_junk, local_copy(env, rcpt, message)).await
                }
                Destination::Mbox { user, path } => {
                    mbox::deliver(user, path, &env.mail_from, local_copy(env, rcpt, message)).await
                }
                Destination::Mda { user, command } => {
                    mda::deliver(
                        user,
                        command,
                        local_copy(env, rcpt, message),
                        self.opts.mda_timeout,
                    )
                    .await
                }
                Destination::Lmtp { dest, rcpt: to } => {
                    lmtp::deliver(&self.opts, env, dest, to, message).await
                }
                Destination::Relay { .. } => DeliveryOutcome::TempFail {
                    reason: "relay not available yet".to_string(),
                },
            }
        })
    }
}

/// The courier the queue is given: `Relay` destinations go to `relay` (when one is
/// configured), all others to the [`LocalCourier`].
pub struct Dispatcher {
    local: LocalCourier,
    relay: Option<Arc<dyn Courier>>,
}

impl Dispatcher {
    pub fn new(local: LocalCourier, relay: Option<Arc<dyn Courier>>) -> Self {
        Dispatcher { local, relay }
    }
}

impl Courier for Dispatcher {
    fn deliver<'a>(
        &'a self,
        env: &'a Envelope,
        rcpt: &'a Recipient,
        message: &'a [u8],
    ) -> BoxFuture<'a, DeliveryOutcome> {
        match (&rcpt.dest, &self.relay) {
            (Destination::Relay { .. }, Some(relay)) => relay.deliver(env, rcpt, message),
            _ => self.local.deliver(env, rcpt, message),
        }
    }

    /// Relay recipients go to the relay courier together (it groups them into transactions);
    /// local ones one after another.
    fn deliver_batch<'a>(
        &'a self,
        env: &'a Envelope,
        rcpts: &'a [&'a Recipient],
        message: &'a [u8],
    ) -> BoxFuture<'a, Vec<DeliveryOutcome>> {
        Box::pin(async move {
            let all_relay = rcpts
                .iter()
                .all(|r| matches!(r.dest, Destination::Relay { .. }));
            match &self.relay {
                Some(relay) if all_relay => relay.deliver_batch(env, rcpts, message).await,
                _ => {
                    let mut out = Vec::with_capacity(rcpts.len());
                    for r in rcpts {
                        out.push(self.deliver(env, r, message).await);
                    }
                    out
                }
            }
        })
    }
}

/// The copy written to local files and mda input: `Return-Path:` (RFC 5322 §3.6.7, `<>` for
/// the null sender), `Delivered-To:` (the address as given in `RCPT TO`, as Postfix and
/// Dovecot write it), then the message with CRLF turned into LF.
fn local_copy(env: &Envelope, rcpt: &Recipient, message: &[u8]) -> Vec<u8> {
    let head = format!(
        "Return-Path: <{}>\nDelivered-To: {}\n",
        env.mail_from, rcpt.rcpt
    );
    let mut out = Vec::with_capacity(head.len() + message.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&crlf_to_lf(message));
    out
}

/// CRLF → LF. A lone CR is kept (SMTP refuses them, so only a local submission has one).
fn crlf_to_lf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut rest = message;
    while let Some(pos) = rest.windows(2).position(|w| w == b"\r\n") {
        let (line, tail) = rest.split_at(pos);
        out.extend_from_slice(line);
        out.push(b'\n');
        rest = tail.get(2..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    out
}

/// The uid/gid to give new files and processes: `Some` when running as root, `None` when the
/// user is ourselves (files simply are ours), and a `TempFail` otherwise — the admin has to
/// start ownmail as root, or deliver only to its own uid.
fn owner_for(user: &LocalUser) -> Result<Option<(u32, u32)>, DeliveryOutcome> {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        Ok(Some((user.uid, user.gid)))
    } else if euid.as_raw() == user.uid {
        Ok(None)
    } else {
        Err(DeliveryOutcome::TempFail {
            reason: format!(
                "cannot deliver as uid {}: ownmail is not running as root",
                user.uid
            ),
        })
    }
}

#[cfg(test)]
mod tests;
