//! Delivering to the targets in turn: a kept connection or a new one (greeting, EHLO,
//! STARTTLS, AUTH), then the transaction, and each recipient's outcome from the replies.

use std::net::IpAddr;

use ownmail_smtp_proto::Reply;
use ownmail_types::DeliveryOutcome;

use crate::client::{self, Client, Error, Peer, StartTls, Stream, Timeouts, Transaction, TxRcpt};
use crate::targets::Target;
use crate::{no_outcome, perm, pool, temp, tls, RelayCourier, TlsPolicy};

/// What a route asks of each connection.
pub(crate) struct Session<'a> {
    pub policy: TlsPolicy,
    pub lmtp: bool,
    pub helo: &'a str,
    pub auth: Option<(&'a str, &'a str)>,
    pub src: Option<IpAddr>,
}

impl RelayCourier {
    /// Tries each target until one gives an answer; `failures` are the reasons gathered so
    /// far, reported when none does.
    pub(crate) async fn try_targets(
        &self,
        targets: &[Target],
        mut failures: Vec<String>,
        session: &Session<'_>,
        tx: &Transaction<'_>,
    ) -> Vec<DeliveryOutcome> {
        for target in targets {
            match self.try_target(target, session, tx).await {
                Step::Done(outcome) => return outcome,
                Step::Next(reason) => failures.push(reason),
            }
        }
        if failures.is_empty() {
            failures.push("no address to connect to".to_string());
        }
        let reason = format!("4.4.1 no host took the message: {}", summary(&failures));
        vec![temp(reason); tx.rcpts.len()]
    }

    async fn try_target(
        &self,
        target: &Target,
        session: &Session<'_>,
        tx: &Transaction<'_>,
    ) -> Step {
        let key = pool::Key {
            addr: target.addr,
            name: target.name.clone(),
            tls: session.policy,
            lmtp: session.lmtp,
            helo: session.helo.to_string(),
            src: session.src,
            user: session.auth.map(|(user, _)| user.to_string()),
        };
        if let Some(client) = self.checkout(&key).await {
            match self.transact(client, key.clone(), tx).await {
                // The kept connection failed under us: a new one deserves its own chance.
                Step::Next(_) => {}
                done => return done,
            }
        }
        let peer = Peer {
            name: target.name.clone(),
            addr: target.addr,
        };
        match self.open(&peer, session).await {
            Ok(client) => self.transact(client, key, tx).await,
            Err(reason) => Step::Next(reason),
        }
    }

    /// A kept connection for `key` that still answers RSET.
    async fn checkout(&self, key: &pool::Key) -> Option<Client> {
        loop {
            let mut client = self.pool.take(key)?;
            if client.rset().await.is_ok() {
                return Some(client);
            }
        }
    }

    async fn transact(&self, mut client: Client, key: pool::Key, tx: &Transaction<'_>) -> Step {
        let peer = client.peer.clone();
        let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; tx.rcpts.len()];
        if !client.ext.smtputf8 {
            // RFC 6531 §3.2: a non-ASCII address cannot be given to this server in any form.
            let refuse = |what: &str| {
                perm(format!(
                    "{peer}: 5.6.7 the server does not support SMTPUTF8, \
                     which this non-ASCII {what} needs"
                ))
            };
            if !tx.from.to_string().is_ascii() {
                self.pool.put(key, client);
                return Step::Done(vec![refuse("sender"); tx.rcpts.len()]);
            }
            for (slot, rcpt) in outcomes.iter_mut().zip(&tx.rcpts) {
                if rcpt.needs_smtputf8() {
                    *slot = Some(refuse("address"));
                }
            }
        }
        let (sendable, rcpts): (Vec<usize>, Vec<&TxRcpt<'_>>) = tx
            .rcpts
            .iter()
            .enumerate()
            .filter(|(i, _)| outcomes.get(*i).is_some_and(Option::is_none))
            .unzip();
        if rcpts.is_empty() {
            self.pool.put(key, client);
            return Step::Done(
                outcomes
                    .into_iter()
                    .map(|o| o.unwrap_or_else(no_outcome))
                    .collect(),
            );
        }
        let set = |outcomes: &mut Vec<Option<DeliveryOutcome>>, i: usize, o: DeliveryOutcome| {
            if let Some(slot) = outcomes.get_mut(i) {
                *slot = Some(o);
            }
        };
        match client.transaction(tx, &rcpts).await {
            Ok(results) => {
                self.pool.put(key, client);
                if results.iter().any(Result::is_ok) {
                    self.delivered(peer.addr.ip());
                }
                for (&i, result) in sendable.iter().zip(results) {
                    let outcome = match result {
                        Ok(reply) => DeliveryOutcome::Delivered {
                            detail: format!("{peer}: {reply}"),
                        },
                        Err(reply) => refused(&peer, &reply),
                    };
                    set(&mut outcomes, i, outcome);
                }
            }
            Err(Error::Reply { what, reply }) if reply.code == 421 => {
                // RFC 5321 §3.8: 421 closes the channel, whatever the command.
                return Step::Next(Error::Reply { what, reply }.describe(&peer));
            }
            Err(Error::Reply { reply, .. }) => {
                self.pool.put(key, client);
                for &i in &sendable {
                    set(&mut outcomes, i, refused(&peer, &reply));
                }
            }
            Err(e) => return Step::Next(e.describe(&peer)),
        }
        Step::Done(
            outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(no_outcome))
                .collect(),
        )
    }

    /// A new connection, ready for a transaction. With opportunistic TLS, a failed
    /// handshake is followed by one more try without STARTTLS.
    async fn open(&self, peer: &Peer, session: &Session<'_>) -> Result<Client, String> {
        match self.open_once(peer, session, true).await {
            Ok(client) => Ok(client),
            Err(Open::TlsFailed(reason)) if !session.policy.required => {
                match self.open_once(peer, session, false).await {
                    Ok(client) => Ok(client),
                    Err(Open::TlsFailed(again) | Open::Failed(again)) => {
                        Err(format!("{reason}; then without STARTTLS: {again}"))
                    }
                }
            }
            Err(Open::TlsFailed(reason) | Open::Failed(reason)) => Err(reason),
        }
    }

    async fn open_once(
        &self,
        peer: &Peer,
        session: &Session<'_>,
        starttls: bool,
    ) -> Result<Client, Open> {
        let timeouts = Timeouts {
            connect: self.opts.connect_timeout,
            command: self.opts.command_timeout,
            data: self.opts.data_timeout,
        };
        let failed = |e: Error| Open::Failed(e.describe(peer));
        let connector = if session.policy.verify {
            &self.tls.verify
        } else {
            &self.tls.no_verify
        };
        let server_name = tls::server_name(&peer.name, peer.addr.ip());
        let tcp = client::connect(peer.addr, session.src, timeouts.connect)
            .await
            .map_err(|e| Open::Failed(format!("{peer}: {e}")))?;
        let stream = if session.policy.implicit {
            client::handshake(tcp, connector, server_name.clone(), timeouts.connect)
                .await
                .map_err(|e| Open::Failed(format!("{peer}: {e}")))?
        } else {
            Stream::Plain(tcp)
        };
        let mut c = Client::greet(stream, peer.clone(), session.lmtp, timeouts)
            .await
            .map_err(failed)?;
        if let Err(e) = c.hello(session.helo).await {
            return Err(give_up(c, e).await);
        }
        if !c.tls {
            if c.ext.starttls && starttls {
                c = match c.starttls(connector, server_name).await {
                    StartTls::Done(mut c) => match c.hello(session.helo).await {
                        Ok(()) => c,
                        Err(e) => return Err(give_up(c, e).await),
                    },
                    StartTls::Refused(c, e) if session.policy.required => {
                        return Err(give_up(c, e).await)
                    }
                    // RFC 3207 §4: after a refused STARTTLS the session goes on as it was.
                    StartTls::Refused(c, _) => c,
                    StartTls::Failed(e) => return Err(Open::TlsFailed(e.describe(peer))),
                };
            } else if session.policy.required {
                let e = Error::Refused(
                    "TLS is required, and the server does not offer STARTTLS".to_string(),
                );
                return Err(give_up(c, e).await);
            }
        }
        if let Some((user, password)) = session.auth {
            if !c.tls && !peer.addr.ip().is_loopback() {
                let e = Error::Refused(
                    "refusing to send credentials over an unencrypted connection".to_string(),
                );
                return Err(give_up(c, e).await);
            }
            if let Err(e) = c.auth(user, password).await {
                return Err(give_up(c, e).await);
            }
        }
        Ok(c)
    }
}

/// The result of one target.
enum Step {
    /// The server answered: the outcome of each recipient.
    Done(Vec<DeliveryOutcome>),
    /// No answer worth keeping (and why): try the next target.
    Next(String),
}

/// Why a connection could not be made ready.
enum Open {
    /// The STARTTLS handshake failed (the connection is gone).
    TlsFailed(String),
    Failed(String),
}

/// Ends a connection that will not carry the message: `QUIT` when the dialogue is still in
/// step (RFC 5321 §4.1.1.10), and the reason.
async fn give_up(client: Client, e: Error) -> Open {
    let reason = e.describe(&client.peer);
    if !client.broken {
        client.quit().await;
    }
    Open::Failed(reason)
}

/// The first few reasons, and how many more there were.
fn summary(failures: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut out = failures
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("; ");
    if failures.len() > SHOWN {
        out.push_str(&format!("; and {} more", failures.len() - SHOWN));
    }
    out
}

/// A server's refusal of a recipient: `HOST [IP]: REPLY`, permanent for a 5xx.
fn refused(peer: &Peer, reply: &Reply) -> DeliveryOutcome {
    let reason = format!("{peer}: {reply}");
    if reply.is_permanent() {
        perm(reason)
    } else {
        temp(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_bounded() {
        let many: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
        assert_eq!(summary(&many), "r0; r1; r2; r3; r4; r5; and 4 more");
    }
}
