//! [`FilterSession`]: one SMTP session as the filters of its listener see it. Each method is
//! one SMTP event; it writes the report events and filter requests OpenSMTPD writes for it,
//! in OpenSMTPD's order (smtp_session.c), to the filters that registered for them.

use std::sync::Arc;

use ownmail_config::model::BuiltinDecision;

use crate::builtin::{Compiled, Facts};
use crate::process::{now, Running};
use crate::protocol::{self, Endpoint, Event, Phase, Registrations, Response, SessionId, TxId};
use crate::Settings;

/// What the session does after a filter phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go on as if there were no filter.
    Proceed,
    /// Go on, and mark the transaction (or session) as spam: add `X-Spam: yes`.
    Junk,
    /// Refuse the command with this reply, as the filter gave it (`4xx`/`5xx` text).
    Reject(String),
    /// Send this reply and close the connection.
    Disconnect(String),
    /// Go on with this parameter instead of the client's (e.g. another MAIL FROM address).
    Rewrite(String),
    /// A filter failed (crash, hang, garbage): answer 421/451; nothing was accepted.
    TempFail,
}

impl Decision {
    /// Whether the command goes on (Proceed, Junk or Rewrite).
    pub fn passes(&self) -> bool {
        matches!(
            self,
            Decision::Proceed | Decision::Junk | Decision::Rewrite(_)
        )
    }
}

/// How the server answered a command, for `tx-mail`, `tx-rcpt` and `tx-data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    PermFail,
    TempFail,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::PermFail => "permfail",
            Outcome::TempFail => "tempfail",
        }
    }
}

/// The result of an authentication attempt, for `link-auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthResult {
    Pass,
    Fail,
    Error,
}

impl AuthResult {
    fn name(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::Error => "error",
        }
    }
}

/// One filter of the session's chain, as it was when the session began.
pub(crate) struct Member {
    pub name: Arc<str>,
    pub registrations: Registrations,
    /// `None` when the filter was down at session start: its phases tempfail.
    pub running: Option<Arc<Running>>,
    /// A built-in filter: evaluated here, no process (`running` is `None`).
    pub builtin: Option<Arc<Compiled>>,
}

/// The filters of one SMTP session. See the crate documentation for the call order.
pub struct FilterSession {
    id: SessionId,
    chain: Vec<Member>,
    settings: Arc<Settings>,
    junk: bool,
    disconnected: bool,
    /// What built-in filters test.
    facts: Facts,
}

impl FilterSession {
    pub(crate) fn new(id: SessionId, chain: Vec<Member>, settings: Arc<Settings>) -> FilterSession {
        FilterSession {
            id,
            chain,
            settings,
            junk: false,
            disconnected: false,
            facts: Facts::default(),
        }
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Whether a filter said `junk` for this session or its current transaction.
    pub fn is_junk(&self) -> bool {
        self.junk
    }

    /// Processes to report to: each distinct running process once, in chain order.
    fn reporters(&self, event: Event) -> Vec<Arc<Running>> {
        let mut out: Vec<Arc<Running>> = Vec::new();
        for m in &self.chain {
            if let Some(r) = &m.running {
                if r.registrations.event(event) && !out.iter().any(|o| Arc::ptr_eq(o, r)) {
                    out.push(r.clone());
                }
            }
        }
        out
    }

    async fn report(&self, event: Event, params: &[&str]) {
        let reporters = self.reporters(event);
        if reporters.is_empty() {
            return;
        }
        let line = protocol::report(&now(), event, self.id, params);
        for r in reporters {
            // A failure marks the filter broken; its next request tempfails.
            let _ = r.send(line.clone(), self.settings.request_timeout).await;
        }
    }

    /// Runs one phase through the chain. `params` ends with the phase's own parameter,
    /// which a `rewrite` replaces for the next filter.
    async fn phase(&mut self, phase: Phase, params: &[&str]) -> Decision {
        let mut params: Vec<String> = params.iter().map(|p| p.to_string()).collect();
        let mut rewritten = false;
        let mut junk = false;
        let mut decision = None;
        for m in &self.chain {
            if let Some(b) = &m.builtin {
                if b.phase != phase || !b.matches(&self.facts) {
                    continue;
                }
                tracing::debug!(session = %self.id, filter = %m.name, phase = phase.name(), decision = ?b.decision, "built-in filter matched");
                match &b.decision {
                    BuiltinDecision::Bypass => break,
                    BuiltinDecision::Junk => junk = true,
                    BuiltinDecision::Report(text) => {
                        tracing::info!(session = %self.id, filter = %m.name, report = %text, "filter report");
                    }
                    BuiltinDecision::Rewrite(value) => {
                        if let Some(last) = params.last_mut() {
                            *last = value.clone();
                        } else {
                            params.push(value.clone());
                        }
                        rewritten = true;
                    }
                    BuiltinDecision::Reject(reply) if reply.starts_with("421") => {
                        decision = Some(Decision::Disconnect(reply.clone()));
                        break;
                    }
                    BuiltinDecision::Reject(reply) => {
                        decision = Some(Decision::Reject(reply.clone()));
                        break;
                    }
                    BuiltinDecision::Disconnect(reply) => {
                        decision = Some(Decision::Disconnect(reply.clone()));
                        break;
                    }
                }
                continue;
            }
            if !m.registrations.phase(phase) {
                continue;
            }
            let Some(running) = &m.running else {
                tracing::warn!(session = %self.id, filter = %m.name, phase = phase.name(), "filter is down: tempfail");
                decision = Some(Decision::TempFail);
                break;
            };
            let refs: Vec<&str> = params.iter().map(String::as_str).collect();
            let response = match running
                .request(self.id, phase, &refs, self.settings.request_timeout)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(session = %self.id, filter = %m.name, phase = phase.name(), error = %e, "filter failed: tempfail");
                    decision = Some(Decision::TempFail);
                    break;
                }
            };
            tracing::debug!(session = %self.id, filter = %m.name, phase = phase.name(), response = ?response, "filter answered");
            match response {
                Response::Proceed => {}
                Response::Report(text) => {
                    tracing::info!(session = %self.id, filter = %m.name, report = %text, "filter report");
                }
                Response::Junk => junk = true,
                Response::Rewrite(value) => {
                    if let Some(last) = params.last_mut() {
                        *last = value;
                    } else {
                        params.push(value);
                    }
                    rewritten = true;
                }
                // OpenSMTPD turns any 421 into a disconnect (smtp_session.c).
                Response::Reject(reply) if reply.starts_with("421") => {
                    decision = Some(Decision::Disconnect(reply));
                    break;
                }
                Response::Reject(reply) => {
                    decision = Some(Decision::Reject(reply));
                    break;
                }
                Response::Disconnect(reply) => {
                    decision = Some(Decision::Disconnect(reply));
                    break;
                }
            }
        }
        if junk {
            self.junk = true;
        }
        let decision = decision.unwrap_or_else(|| match (rewritten, junk) {
            (true, _) => Decision::Rewrite(params.last().cloned().unwrap_or_default()),
            (false, true) => Decision::Junk,
            (false, false) => Decision::Proceed,
        });
        self.report_response(phase, &decision).await;
        decision
    }

    /// `filter-response`: how the phase ended, for filters that follow the others.
    async fn report_response(&self, phase: Phase, decision: &Decision) {
        let (name, param) = match decision {
            Decision::Proceed => ("proceed", None),
            Decision::Junk => ("junk", None),
            Decision::Reject(m) => ("reject", Some(m.as_str())),
            Decision::Disconnect(m) => ("disconnect", Some(m.as_str())),
            Decision::Rewrite(m) => ("rewrite", Some(m.as_str())),
            Decision::TempFail => return,
        };
        let mut params = vec![phase.response_name(), name];
        params.extend(param);
        self.report(Event::FilterResponse, &params).await;
    }

    /// A connection came in: `link-connect`, then the `connect` phase (before the banner).
    /// `rdns` is the reverse name or empty; `fcrdns` whether it resolves back.
    pub async fn connect(
        &mut self,
        rdns: &str,
        fcrdns: bool,
        src: &Endpoint,
        dest: &Endpoint,
    ) -> Decision {
        self.facts.rdns = rdns.to_string();
        self.facts.fcrdns = fcrdns;
        self.facts.src = match src {
            Endpoint::Inet(a) => Some(a.ip()),
            Endpoint::Unix(_) => None,
        };
        let fcrdns = if fcrdns { "pass" } else { "fail" };
        self.report(
            Event::LinkConnect,
            &[rdns, fcrdns, &src.with_port(), &dest.with_port()],
        )
        .await;
        self.phase(Phase::Connect, &[rdns, &src.address()]).await
    }

    /// The banner was sent with this hostname.
    pub async fn greeting(&mut self, hostname: &str) {
        self.report(Event::LinkGreeting, &[hostname]).await;
    }

    /// HELO or EHLO. If it passes, `link-identify` reports the name the session goes on with.
    pub async fn helo(&mut self, ehlo: bool, name: &str) -> Decision {
        let (phase, method) = if ehlo {
            (Phase::Ehlo, "EHLO")
        } else {
            (Phase::Helo, "HELO")
        };
        self.facts.helo = Some(name.to_string());
        let decision = self.phase(phase, &[name]).await;
        if decision.passes() {
            let identity = match &decision {
                Decision::Rewrite(n) => n.clone(),
                _ => name.to_string(),
            };
            self.facts.helo = Some(identity.clone());
            self.report(Event::LinkIdentify, &[method, &identity]).await;
        }
        decision
    }

    /// The STARTTLS command, before `220 Ready to start TLS`.
    pub async fn starttls(&mut self) -> Decision {
        self.phase(Phase::Starttls, &[]).await
    }

    /// TLS is up: `link-tls` with e.g. `version=TLSv1.3, cipher=…, bits=256`.
    pub async fn tls(&mut self, description: &str) {
        self.report(Event::LinkTls, &[description]).await;
    }

    /// The AUTH command. Only the mechanism goes to filters: OpenSMTPD would pass the
    /// initial response too, which may hold the password.
    pub async fn auth(&mut self, mechanism: &str) -> Decision {
        self.phase(Phase::Auth, &[mechanism]).await
    }

    /// An authentication attempt ended: `link-auth` as `user|result` (protocol 0.6 order).
    pub async fn auth_result(&mut self, user: &str, result: AuthResult) {
        if result == AuthResult::Pass {
            self.facts.user = Some(user.to_string());
        }
        self.report(Event::LinkAuth, &[user, result.name()]).await;
    }

    /// MAIL FROM, with the address without `<>` (empty for the null sender).
    pub async fn mail_from(&mut self, address: &str) -> Decision {
        self.facts.mail_from = Some(address.to_string());
        self.facts.rcpt_to = None;
        let decision = self.phase(Phase::MailFrom, &[address]).await;
        if let Decision::Rewrite(a) = &decision {
            self.facts.mail_from = Some(a.clone());
        }
        decision
    }

    /// The server answered MAIL FROM: `tx-begin` (when accepted) and `tx-mail`.
    pub async fn mail_reply(&mut self, tx: TxId, address: &str, outcome: Outcome) {
        let txid = tx.to_string();
        if outcome == Outcome::Ok {
            self.report(Event::TxBegin, &[&txid]).await;
        }
        self.report(Event::TxMail, &[&txid, outcome.name(), address])
            .await;
    }

    /// RCPT TO, with the address without `<>`.
    pub async fn rcpt_to(&mut self, address: &str) -> Decision {
        self.facts.rcpt_to = Some(address.to_string());
        let decision = self.phase(Phase::RcptTo, &[address]).await;
        if let Decision::Rewrite(a) = &decision {
            self.facts.rcpt_to = Some(a.clone());
        }
        decision
    }

    /// The server answered RCPT TO: `tx-rcpt`.
    pub async fn rcpt_reply(&mut self, tx: TxId, address: &str, outcome: Outcome) {
        self.report(Event::TxRcpt, &[&tx.to_string(), outcome.name(), address])
            .await;
    }

    /// An envelope was created for the last recipient: `tx-envelope`.
    pub async fn envelope(&mut self, tx: TxId, envelope_id: u64) {
        self.report(
            Event::TxEnvelope,
            &[&tx.to_string(), &format!("{envelope_id:016x}")],
        )
        .await;
    }

    /// The DATA command, before `354`.
    pub async fn data(&mut self) -> Decision {
        self.phase(Phase::Data, &[]).await
    }

    /// The server answered DATA: `tx-data`.
    pub async fn data_reply(&mut self, tx: TxId, outcome: Outcome) {
        self.report(Event::TxData, &[&tx.to_string(), outcome.name()])
            .await;
    }

    /// The data-line phase: the message (CRLF line ends, not dot-stuffed, as the queue
    /// holds it) goes through every filter that registered `data-line`, in chain order;
    /// what the last one returns is the new message (CRLF, unstuffed). `Err` is always
    /// [`Decision::TempFail`]: a data-line filter cannot reject, only `commit` can.
    pub async fn message(&mut self, tx: TxId, message: &[u8]) -> Result<Vec<u8>, Decision> {
        let mut lines = protocol::message_lines(message);
        let mut filtered = false;
        for m in &self.chain {
            if !m.registrations.phase(Phase::DataLine) {
                continue;
            }
            let Some(running) = &m.running else {
                tracing::warn!(session = %self.id, %tx, filter = %m.name, "filter is down: tempfail");
                return Err(Decision::TempFail);
            };
            let budget = lines
                .iter()
                .map(|l| l.len() + 2)
                .sum::<usize>()
                .saturating_mul(2)
                + (1 << 20);
            match running
                .data(self.id, &lines, self.settings.data_timeout, budget)
                .await
            {
                Ok(out) => lines = out,
                Err(e) => {
                    tracing::warn!(session = %self.id, %tx, filter = %m.name, error = %e, "filter failed in data-line: tempfail");
                    return Err(Decision::TempFail);
                }
            }
            filtered = true;
        }
        if !filtered {
            return Ok(message.to_vec());
        }
        let mut out = Vec::with_capacity(message.len() + 1024);
        for line in &lines {
            protocol::push_unstuffed(&mut out, line);
        }
        Ok(out)
    }

    /// The `commit` phase, after the message came back from the data-line phase and before
    /// the session queues it.
    pub async fn commit(&mut self, _tx: TxId) -> Decision {
        self.phase(Phase::Commit, &[]).await
    }

    /// The message was queued: `tx-commit` with its size, then `tx-reset`.
    pub async fn committed(&mut self, tx: TxId, size: usize) {
        let txid = tx.to_string();
        self.report(Event::TxCommit, &[&txid, &size.to_string()])
            .await;
        self.end_tx(tx).await;
    }

    /// The transaction failed or was abandoned: `tx-rollback`, then `tx-reset`.
    pub async fn rollback(&mut self, tx: TxId) {
        self.report(Event::TxRollback, &[&tx.to_string()]).await;
        self.end_tx(tx).await;
    }

    /// `tx-reset` alone (RSET after a transaction that never began a message).
    pub async fn reset(&mut self, tx: Option<TxId>) {
        match tx {
            Some(tx) => self.end_tx(tx).await,
            None => self.report(Event::TxReset, &[]).await,
        }
    }

    async fn end_tx(&mut self, tx: TxId) {
        self.junk = false;
        self.facts.mail_from = None;
        self.facts.rcpt_to = None;
        self.report(Event::TxReset, &[&tx.to_string()]).await;
    }

    /// The RSET command.
    pub async fn rset(&mut self) -> Decision {
        self.phase(Phase::Rset, &[]).await
    }

    /// The NOOP command.
    pub async fn noop(&mut self) -> Decision {
        self.phase(Phase::Noop, &[]).await
    }

    /// The QUIT command, before `221`.
    pub async fn quit(&mut self) -> Decision {
        self.phase(Phase::Quit, &[]).await
    }

    /// A command line as the client sent it (`protocol-client`; mask AUTH secrets first).
    pub async fn protocol_client(&mut self, line: &str) {
        self.report(Event::ProtocolClient, &[line]).await;
    }

    /// A reply line as the server sent it (`protocol-server`).
    pub async fn protocol_server(&mut self, line: &str) {
        self.report(Event::ProtocolServer, &[line]).await;
    }

    /// The session timed out (`timeout`); call [`FilterSession::disconnect`] after.
    pub async fn timeout(&mut self) {
        self.report(Event::Timeout, &[]).await;
    }

    /// The connection is gone: `link-disconnect`. Done by `Drop` too if not called.
    pub async fn disconnect(&mut self) {
        if self.disconnected {
            return;
        }
        self.disconnected = true;
        self.report(Event::LinkDisconnect, &[]).await;
    }
}

impl Drop for FilterSession {
    fn drop(&mut self) {
        if self.disconnected {
            return;
        }
        let line = protocol::report(&now(), Event::LinkDisconnect, self.id, &[]);
        for r in self.reporters(Event::LinkDisconnect) {
            r.try_send(line.clone());
        }
    }
}
