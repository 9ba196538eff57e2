//! Bounces (SPEC §5.4): the queue's [`Notifier`]. For a recipient that failed for good, or
//! is long delayed, it builds the RFC 3464 notice (`ownmail_delivery::dsn`), routes the
//! original sender through the current rules as local mail from the null sender — as
//! OpenSMTPD does, so a bounce to a local user lands in their mailbox and one to a remote
//! sender is relayed by whatever rule relays local mail — and queues the notice as a new
//! message with `MAIL FROM:<>` (RFC 5321 §4.5.5), so it can never bounce in turn.
//!
//! The queue calls the notifier from a delivery round and must not wait on it: the enqueue
//! runs in a task of its own. One notice per recipient and event: the queue reports
//! recipients one at a time.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ownmail_delivery::dsn::{build_dsn, status_for, DsnKind, DsnRecipient};
use ownmail_queue::Notifier;
use ownmail_rules::{RcptDecision, SessionInfo};
use ownmail_smtp::Shared;
use ownmail_types::{
    Address, BodyType, Envelope, MessageSink, Notify, QueueId, Recipient, ReversePath,
};
use tracing::{debug, error, info, warn};

/// Builds and queues delivery status notifications.
pub struct Bouncer {
    hostname: String,
    shared: Arc<Shared>,
    sink: Arc<dyn MessageSink>,
}

impl Bouncer {
    /// `hostname` names us in the notice (`Reporting-MTA`, `MAILER-DAEMON@…`); `shared`
    /// gives the rules in force (they change on SIGHUP); `sink` is the queue.
    pub fn new(hostname: String, shared: Arc<Shared>, sink: Arc<dyn MessageSink>) -> Self {
        Bouncer {
            hostname,
            shared,
            sink,
        }
    }

    fn notify(
        &self,
        env: &Envelope,
        rcpt: &Recipient,
        reason: &str,
        kind: DsnKind,
        message: &[u8],
    ) {
        let ReversePath::Address(sender) = &env.mail_from else {
            debug!(
                "bounce id={} kind={} result=none reason=\"null sender\"",
                env.id,
                kind_name(kind)
            );
            return;
        };
        let (remote_mta, diagnostic) = split_remote(reason);
        let status = match kind {
            DsnKind::Failed => failure_status(reason),
            DsnKind::Delayed => status_for(reason, false),
        };
        let report = DsnRecipient {
            rcpt: rcpt.rcpt.clone(),
            orcpt: rcpt.orcpt.clone(),
            status,
            diagnostic: diagnostic.to_string(),
            remote_mta: remote_mta.map(str::to_string),
        };
        let now = SystemTime::now();
        let Some(dsn) = build_dsn(
            &self.hostname,
            env,
            kind,
            &[report],
            &rcpt.notify,
            message,
            now,
        ) else {
            debug!(
                "bounce id={} to=<{sender}> kind={} result=none reason=\"not requested (NOTIFY)\"",
                env.id,
                kind_name(kind)
            );
            return;
        };

        // The sender, routed as a local user's mail to them would be.
        let session = SessionInfo {
            local: true,
            helo: self.hostname.clone(),
            ..SessionInfo::default()
        };
        let runtime = self.shared.runtime();
        let destinations = match runtime.rules.route(&session, &ReversePath::Null, sender) {
            RcptDecision::Accept { destinations, .. } => destinations,
            RcptDecision::Refuse(r) => {
                warn!(
                    "bounce id={} to=<{sender}> kind={} result=undeliverable reason=\"{} {} {}\"",
                    env.id,
                    kind_name(kind),
                    r.code,
                    r.enhanced,
                    r.text
                );
                return;
            }
        };
        let bounce = Envelope {
            id: QueueId::new(),
            mail_from: ReversePath::Null,
            helo: self.hostname.clone(),
            client: None,
            auth_user: None,
            tag: None,
            received_at: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            // 8bit only if the returned original brought it (RFC 6152).
            body: if dsn.is_ascii() {
                BodyType::SevenBit
            } else {
                BodyType::EightBitMime
            },
            // An internationalized sender address needs SMTPUTF8 to be reached (RFC 6531).
            smtputf8: !sender.to_string().is_ascii(),
            ret: None,
            envid: None,
            recipients: destinations
                .into_iter()
                .map(|dest| Recipient {
                    rcpt: sender.clone(),
                    orcpt: None,
                    notify: Notify::default(),
                    dest,
                })
                .collect(),
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            error!(
                "bounce id={} to=<{sender}> kind={} result=error error=\"no runtime to queue it\"",
                env.id,
                kind_name(kind)
            );
            return;
        };
        let sink = self.sink.clone();
        let (original, to) = (env.id.clone(), sender.clone());
        handle.spawn(enqueue(sink, bounce, dsn, original, to, kind));
    }
}

/// Queues one notice and logs the outcome.
async fn enqueue(
    sink: Arc<dyn MessageSink>,
    bounce: Envelope,
    dsn: Vec<u8>,
    original: QueueId,
    to: Address,
    kind: DsnKind,
) {
    let id = bounce.id.clone();
    match sink.enqueue(bounce, dsn).await {
        Ok(()) => info!(
            "bounce id={original} dsn={id} to=<{to}> kind={}",
            kind_name(kind)
        ),
        Err(e) => error!(
            "bounce id={original} dsn={id} to=<{to}> kind={} result=error error=\"{e}\"",
            kind_name(kind)
        ),
    }
}

impl Notifier for Bouncer {
    fn failed(&self, env: &Envelope, rcpt: &Recipient, reason: &str, message: &[u8]) {
        self.notify(env, rcpt, reason, DsnKind::Failed, message);
    }

    fn delayed(
        &self,
        env: &Envelope,
        rcpt: &Recipient,
        reason: &str,
        _after: Duration,
        message: &[u8],
    ) {
        self.notify(env, rcpt, reason, DsnKind::Delayed, message);
    }
}

fn kind_name(kind: DsnKind) -> &'static str {
    match kind {
        DsnKind::Failed => "failed",
        DsnKind::Delayed => "delayed",
    }
}

/// The status of a recipient given up on: the code in the reason; for a ttl expiry without
/// one (the queue says "no delivery within …"), 4.4.7 "delivery time expired" (RFC 3463).
fn failure_status(reason: &str) -> String {
    let status = status_for(reason, true);
    if status == "5.0.0" && reason.starts_with("no delivery within") {
        "4.4.7".to_string()
    } else {
        status
    }
}

/// Splits the relay courier's `HOST [IP]: reply` into the host and the reply; other
/// reasons are ours, with no remote host.
fn split_remote(reason: &str) -> (Option<&str>, &str) {
    let Some((prefix, reply)) = reason.split_once("]: ") else {
        return (None, reason);
    };
    match prefix.split_once(" [") {
        Some((host, ip))
            if !host.is_empty()
                && !host.contains(char::is_whitespace)
                && !ip.is_empty()
                && !ip.contains(char::is_whitespace) =>
        {
            (Some(host), reply)
        }
        _ => (None, reason),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use ownmail_config::table::Table;
    use ownmail_config::{parse_str, Diagnostics, ParseOptions};
    use ownmail_rules::Ruleset;
    use ownmail_smtp::{Limits, Runtime};
    use ownmail_types::{BoxFuture, Destination};

    use super::*;

    #[derive(Default)]
    struct FakeSink {
        queued: Mutex<Vec<(Envelope, Vec<u8>)>>,
    }

    impl MessageSink for FakeSink {
        fn enqueue(&self, env: Envelope, message: Vec<u8>) -> BoxFuture<'_, Result<(), String>> {
            self.queued.lock().expect("queued").push((env, message));
            Box::pin(async { Ok(()) })
        }
    }

    fn bouncer(dir: &std::path::Path) -> (Bouncer, Arc<FakeSink>) {
        std::fs::write(dir.join("vusers"), "sender 5000:5000:/var/vmail/sender\n").expect("write");
        let conf = format!(
            "table vusers file:{d}/vusers\nlisten on lo\n\
             accept for domain example.org userbase vusers deliver to maildir \"~/\"\n",
            d = dir.display()
        );
        let parsed = parse_str("t.conf", &conf, &ParseOptions::default());
        assert!(!parsed.diags.has_errors(), "{:?}", parsed.diags);
        let mut diags = Diagnostics::new();
        let mut tables = HashMap::new();
        for decl in &parsed.config.tables {
            tables.insert(
                decl.name.clone(),
                Table::load(decl, &mut diags).expect("table"),
            );
        }
        let rules = Ruleset::new(
            Arc::new(parsed.config),
            Arc::new(tables),
            "mx.example.org",
            &["127.0.0.1".parse().expect("ip")],
        );
        let sink = Arc::new(FakeSink::default());
        let shared = Shared::new(
            Runtime {
                rules: Arc::new(rules),
                limits: Limits::default(),
                signer: None,
                checker: None,
                antispam: None,
                filters: None,
                rdns: None,
            },
            sink.clone(),
        );
        (
            Bouncer::new("mx.example.org".into(), shared, sink.clone()),
            sink,
        )
    }

    fn envelope(from: &str) -> Envelope {
        let rcpt = Address::parse("nobody@remote.test").expect("addr");
        Envelope {
            id: QueueId::new(),
            mail_from: if from.is_empty() {
                ReversePath::Null
            } else {
                ReversePath::Address(Address::parse(from).expect("addr"))
            },
            helo: "client".into(),
            client: None,
            auth_user: None,
            tag: None,
            received_at: 1_795_564_080,
            body: BodyType::SevenBit,
            smtputf8: false,
            ret: None,
            envid: None,
            recipients: vec![Recipient {
                rcpt: rcpt.clone(),
                orcpt: None,
                notify: Notify::default(),
                dest: Destination::Relay {
                    action: "out".into(),
                    to: rcpt,
                },
            }],
        }
    }

    const ORIGINAL: &[u8] = b"Subject: hi\r\n\r\nbody\r\n";

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn failure_is_bounced_to_the_sender_from_the_null_sender() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (bouncer, sink) = bouncer(dir.path());
        let env = envelope("sender@example.org");
        let reason = "mx.remote.test [127.0.0.2]: 550 5.1.1 user unknown";
        bouncer.failed(&env, &env.recipients[0], reason, ORIGINAL);
        settle().await;

        let queued = sink.queued.lock().expect("queued");
        assert_eq!(queued.len(), 1);
        let (bounce, dsn) = &queued[0];
        assert_eq!(bounce.mail_from, ReversePath::Null);
        assert_eq!(bounce.recipients.len(), 1);
        assert_eq!(bounce.recipients[0].rcpt.to_string(), "sender@example.org");
        assert!(matches!(
            bounce.recipients[0].dest,
            Destination::Maildir { .. }
        ));
        let dsn = String::from_utf8_lossy(dsn);
        assert!(dsn.contains("Status: 5.1.1\r\n"));
        assert!(dsn.contains("Remote-MTA: dns; mx.remote.test\r\n"));
        assert!(dsn.contains("Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"));
    }

    #[tokio::test]
    async fn no_bounce_for_a_bounce_nor_to_an_unroutable_sender() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (bouncer, sink) = bouncer(dir.path());
        let null = envelope("");
        bouncer.failed(&null, &null.recipients[0], "550 no", ORIGINAL);
        let elsewhere = envelope("someone@elsewhere.test");
        bouncer.failed(&elsewhere, &elsewhere.recipients[0], "550 no", ORIGINAL);
        settle().await;
        assert!(sink.queued.lock().expect("queued").is_empty());
    }

    #[test]
    fn remote_host_is_split_from_the_relay_reason() {
        assert_eq!(
            split_remote("mx.example.test [127.0.0.2]: 550 5.1.1 user unknown"),
            (Some("mx.example.test"), "550 5.1.1 user unknown")
        );
        assert_eq!(split_remote("451 try later"), (None, "451 try later"));
        assert_eq!(
            split_remote("cannot connect [x]: y z [1]: w"),
            (None, "cannot connect [x]: y z [1]: w")
        );
        assert_eq!(
            failure_status("no delivery within 4d; last error: timeout"),
            "4.4.7"
        );
        assert_eq!(
            failure_status("no delivery within 4d; last error: h [1.2.3.4]: 451 4.4.1 x"),
            "4.4.1"
        );
    }
}
