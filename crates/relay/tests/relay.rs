//! The relay courier against fake DNS and SMTP servers on loopback (tier 2: no external
//! network). Each test uses its own 127.N.0.x addresses, so that the MX hosts of one test can
//! share a port without meeting those of another.

mod fake;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake::dns::FakeDns;
use fake::smtp::{eventually, tls_config, FakeSmtp, Script};
use hickory_resolver::proto::rr::RecordType;
use ownmail_config::model::{RelayScheme, RelayTls, RelayUrl};
use ownmail_relay::{status_of, RelayCourier, RelayOptions, RelayRoute};
use ownmail_types::{
    Address, BodyType, Courier, DeliveryOutcome, Destination, Envelope, Notify, QueueId, Recipient,
    Ret, ReversePath,
};

const MESSAGE: &[u8] = b"Received: from client by relay.example.test\r\n\
Subject: test\r\n\
\r\n\
Hello.\r\n\
.a line with a leading dot\r\n";

/// 127.N.0.last
fn ip(n: u8, last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, n, 0, last))
}

fn options(dns: &FakeDns, port: u16) -> RelayOptions {
    RelayOptions {
        hostname: "relay.example.test".to_string(),
        local_addrs: Vec::new(),
        resolvers: vec![dns.addr],
        port,
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
        data_timeout: Duration::from_secs(2),
        max_received: 100,
    }
}

fn by_mx() -> RelayRoute {
    RelayRoute {
        host: None,
        auth: None,
        helo: None,
        tls: RelayTls::Opportunistic,
        backup: None,
        mail_from: None,
        src: None,
    }
}

fn courier(opts: RelayOptions, route: RelayRoute) -> Arc<RelayCourier> {
    let courier = RelayCourier::new(opts).expect("courier");
    courier.set_routes(HashMap::from([("out".to_string(), route)]));
    courier
}

fn envelope(to: &str) -> (Envelope, Recipient) {
    let rcpt = Recipient {
        rcpt: Address::parse(to).expect("recipient"),
        orcpt: None,
        notify: Notify::default(),
        dest: Destination::Relay {
            action: "out".to_string(),
            to: Address::parse(to).expect("recipient"),
        },
    };
    let env = Envelope {
        id: QueueId::new(),
        mail_from: ReversePath::Address(Address::parse("sender@origin.test").expect("sender")),
        helo: "client.origin.test".to_string(),
        client: None,
        auth_user: None,
        tag: None,
        received_at: 0,
        body: BodyType::SevenBit,
        smtputf8: false,
        ret: None,
        envid: None,
        recipients: vec![rcpt.clone()],
    };
    (env, rcpt)
}

async fn send(courier: &RelayCourier, to: &str, message: &[u8]) -> DeliveryOutcome {
    let (env, rcpt) = envelope(to);
    courier.deliver(&env, &rcpt, message).await
}

fn delivered(outcome: &DeliveryOutcome) -> &str {
    match outcome {
        DeliveryOutcome::Delivered { detail } => detail,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

fn temp_reason(outcome: &DeliveryOutcome) -> &str {
    match outcome {
        DeliveryOutcome::TempFail { reason } => reason,
        other => panic!("expected a temporary failure, got {other:?}"),
    }
}

fn perm_reason(outcome: &DeliveryOutcome) -> &str {
    match outcome {
        DeliveryOutcome::PermFail { reason } => reason,
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

/// One MX host `mx1.example.test` at 127.N.0.2 running `script`.
async fn one_mx(n: u8, script: Script) -> (FakeDns, FakeSmtp) {
    let dns = FakeDns::start().await;
    let smtp = FakeSmtp::start(ip(n, 2), 0, script).await;
    dns.mx("example.test", 10, "mx1.example.test");
    dns.addr("mx1.example.test", ip(n, 2));
    (dns, smtp)
}

#[tokio::test]
async fn mx_order_falls_back_to_the_next_mx_when_the_best_refuses_connections() {
    let dns = FakeDns::start().await;
    let good = FakeSmtp::start(ip(1, 3), 0, Script::default()).await;
    // mx1 (preference 10) has nothing listening on the port: connection refused.
    dns.mx("example.test", 20, "mx2.example.test");
    dns.mx("example.test", 10, "mx1.example.test");
    dns.addr("mx1.example.test", ip(1, 2));
    dns.addr("mx2.example.test", ip(1, 3));
    let c = courier(options(&dns, good.addr.port()), by_mx());
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    assert_eq!(
        delivered(&outcome),
        "mx2.example.test [127.1.0.3]: 250 2.0.0 queued as FAKE"
    );
    assert_eq!(good.messages(), [MESSAGE.to_vec()]);
    let lines = good.lines();
    let mail = format!("MAIL FROM:<sender@origin.test> SIZE={}", MESSAGE.len());
    assert!(lines.contains(&mail), "{lines:?}");
    assert!(
        lines.contains(&"RCPT TO:<user@example.test>".to_string()),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_domain_without_mx_gets_mail_at_its_address() {
    let dns = FakeDns::start().await;
    let smtp = FakeSmtp::start(ip(2, 2), 0, Script::default()).await;
    dns.addr("example.test", ip(2, 2));
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    assert!(delivered(&outcome).starts_with("example.test [127.2.0.2]: 250"));
}

#[tokio::test]
async fn null_mx_fails_permanently_without_looking_up_addresses() {
    let dns = FakeDns::start().await;
    let smtp = FakeSmtp::start(ip(3, 2), 0, Script::default()).await;
    dns.mx("example.test", 0, ".");
    dns.addr("example.test", ip(3, 2));
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    let reason = perm_reason(&outcome);
    assert!(
        reason.contains("domain does not accept mail (null MX)"),
        "{reason}"
    );
    assert_eq!(status_of(reason).as_deref(), Some("5.1.10"));
    assert_eq!(dns.asked("example.test"), [RecordType::MX]);
    assert_eq!(smtp.connections(), 0);
}

#[tokio::test]
async fn a_domain_that_does_not_exist_is_a_permanent_5_1_2() {
    let dns = FakeDns::start().await;
    let c = courier(options(&dns, 25), by_mx());
    let outcome = send(&c, "user@nowhere.test", MESSAGE).await;
    let reason = perm_reason(&outcome);
    assert_eq!(status_of(reason).as_deref(), Some("5.1.2"), "{reason}");
}

#[tokio::test]
async fn dns_servfail_is_temporary() {
    let dns = FakeDns::start().await;
    dns.servfail("example.test");
    let c = courier(options(&dns, 25), by_mx());
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    let reason = temp_reason(&outcome);
    assert!(
        reason.contains("MX lookup for example.test failed"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_dns_server_that_never_answers_is_temporary_within_the_timeout() {
    let dns = FakeDns::start().await;
    dns.silent("example.test");
    let mut opts = options(&dns, 25);
    opts.command_timeout = Duration::from_secs(1);
    let c = courier(opts, by_mx());
    let started = Instant::now();
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    temp_reason(&outcome);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn rcpt_4xx_is_a_temporary_failure_with_the_reply() {
    let script = Script {
        rcpt: "450 4.2.1 mailbox busy".to_string(),
        ..Script::default()
    };
    let (dns, smtp) = one_mx(6, script).await;
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    assert_eq!(
        temp_reason(&outcome),
        "mx1.example.test [127.6.0.2]: 450 4.2.1 mailbox busy"
    );
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn rcpt_5xx_is_a_permanent_failure_with_the_reply_verbatim() {
    let script = Script {
        rcpt: "550 5.1.1 user unknown".to_string(),
        ..Script::default()
    };
    let (dns, smtp) = one_mx(7, script).await;
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    let outcome = send(&c, "nobody@example.test", MESSAGE).await;
    let reason = perm_reason(&outcome);
    assert_eq!(
        reason,
        "mx1.example.test [127.7.0.2]: 550 5.1.1 user unknown"
    );
    assert_eq!(status_of(reason).as_deref(), Some("5.1.1"));
}

#[tokio::test]
async fn a_5xx_at_the_end_of_data_is_permanent() {
    let script = Script {
        end: "554 5.7.1 spam".to_string(),
        extensions: Vec::new(), // no PIPELINING: one command at a time
        ..Script::default()
    };
    let (dns, smtp) = one_mx(24, script).await;
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    assert_eq!(
        perm_reason(&outcome),
        "mx1.example.test [127.24.0.2]: 554 5.7.1 spam"
    );
}

#[tokio::test]
async fn opportunistic_starttls_encrypts_the_transaction() {
    let script = Script {
        tls: Some(tls_config("mx1.example.test")),
        ..Script::default()
    };
    let (dns, smtp) = one_mx(8, script).await;
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    delivered(&outcome);
    let lines = smtp.lines();
    assert_eq!(
        lines.get(..3).map(|l| l.to_vec()),
        Some(vec![
            "EHLO relay.example.test".to_string(),
            "STARTTLS".to_string(),
            "TLS EHLO relay.example.test".to_string()
        ]),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("TLS MAIL FROM:")),
        "{lines:?}"
    );
    assert_eq!(smtp.messages(), [MESSAGE.to_vec()]);
}

#[tokio::test]
async fn required_tls_without_starttls_is_temporary() {
    let (dns, smtp) = one_mx(9, Script::default()).await;
    let route = RelayRoute {
        tls: RelayTls::Required,
        ..by_mx()
    };
    let c = courier(options(&dns, smtp.addr.port()), route);
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    let reason = temp_reason(&outcome);
    assert!(reason.contains("does not offer STARTTLS"), "{reason}");
    assert!(!smtp.lines().iter().any(|l| l.starts_with("MAIL")));
}

#[tokio::test]
async fn tls_verify_refuses_a_self_signed_certificate() {
    let script = Script {
        tls: Some(tls_config("mx1.example.test")),
        ..Script::default()
    };
    let (dns, smtp) = one_mx(10, script).await;
    let route = RelayRoute {
        tls: RelayTls::RequiredVerify,
        ..by_mx()
    };
    let c = courier(options(&dns, smtp.addr.port()), route);
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    let reason = temp_reason(&outcome);
    assert!(reason.contains("TLS handshake"), "{reason}");
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn a_connection_dropped_in_data_is_temporary() {
    let script = Script {
        drop_in_data: true,
        ..Script::default()
    };
    let (dns, smtp) = one_mx(11, script).await;
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    let reason = temp_reason(&outcome);
    assert!(reason.contains("mx1.example.test [127.11.0.2]"), "{reason}");
}

#[tokio::test]
async fn a_garbage_reply_is_temporary() {
    let script = Script {
        garbage_ehlo: true,
        ..Script::default()
    };
    let (dns, smtp) = one_mx(12, script).await;
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    let reason = temp_reason(&outcome);
    assert!(reason.contains("malformed reply"), "{reason}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_temporary_within_the_timeout() {
    let script = Script {
        silent: true,
        ..Script::default()
    };
    let (dns, smtp) = one_mx(13, script).await;
    let mut opts = options(&dns, smtp.addr.port());
    opts.command_timeout = Duration::from_secs(1);
    let c = courier(opts, by_mx());
    let started = Instant::now();
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    let reason = temp_reason(&outcome);
    assert!(reason.contains("no reply to the greeting"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn too_many_received_headers_is_a_mail_loop() {
    let dns = FakeDns::start().await;
    let c = courier(options(&dns, 25), by_mx());
    let mut message = b"Received: from a by b\r\n".repeat(101);
    message.extend_from_slice(b"Subject: loop\r\n\r\nbody\r\n");
    let outcome = send(&c, "user@example.test", &message).await;
    let reason = perm_reason(&outcome);
    assert!(
        reason.contains("mail loop: too many Received: headers"),
        "{reason}"
    );
    assert!(dns.asked("example.test").is_empty());
}

#[tokio::test]
async fn best_mx_being_this_host_is_a_configuration_error() {
    let dns = FakeDns::start().await;
    dns.mx("example.test", 10, "relay.example.test");
    dns.addr("relay.example.test", ip(15, 2));
    dns.mx("other.test", 10, "mx.other.test");
    dns.addr("mx.other.test", ip(15, 3));
    let mut opts = options(&dns, 25);
    opts.local_addrs = vec![ip(15, 3)];
    let c = courier(opts, by_mx());
    for domain in ["example.test", "other.test"] {
        let outcome = send(&c, &format!("user@{domain}"), MESSAGE).await;
        let reason = perm_reason(&outcome);
        assert!(
            reason.contains(&format!(
                "best MX for {domain} is this host: configuration error"
            )),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn a_backup_mx_relays_only_to_better_mx() {
    let dns = FakeDns::start().await;
    let primary = FakeSmtp::start(ip(16, 2), 0, Script::default()).await;
    let port = primary.addr.port();
    let worse = FakeSmtp::start(ip(16, 4), port, Script::default()).await;
    // We are backup.example.test at preference 20.
    for domain in ["example.test", "down.test"] {
        dns.mx(domain, 20, "backup.example.test");
        dns.mx(domain, 30, "worse.example.test");
    }
    dns.mx("example.test", 10, "primary.example.test");
    dns.mx("down.test", 10, "down.example.test");
    dns.addr("primary.example.test", ip(16, 2));
    dns.addr("down.example.test", ip(16, 5)); // nothing listens there
    dns.addr("backup.example.test", ip(16, 3));
    dns.addr("worse.example.test", ip(16, 4));
    let mut opts = options(&dns, port);
    opts.hostname = "backup.example.test".to_string();
    let route = RelayRoute {
        backup: Some(None),
        ..by_mx()
    };
    let c = courier(opts, route);
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    assert!(delivered(&outcome).starts_with("primary.example.test [127.16.0.2]: 250"));
    let outcome = send(&c, "user@down.test", MESSAGE).await;
    let reason = temp_reason(&outcome);
    assert!(
        reason.contains("down.example.test [127.16.0.5]"),
        "{reason}"
    );
    assert_eq!(worse.connections(), 0);

    // `backup mx WORSE.example.test`: better than it are primary and backup.example.test,
    // and the latter is this host, never a target: primary only.
    let route = RelayRoute {
        backup: Some(Some("WORSE.example.test".to_string())),
        ..by_mx()
    };
    c.set_routes(HashMap::from([("out".to_string(), route)]));
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    assert!(delivered(&outcome).starts_with("primary.example.test"));
    assert_eq!(worse.connections(), 0);
}

fn smarthost(scheme: RelayScheme, ip: IpAddr, port: u16) -> RelayUrl {
    RelayUrl {
        scheme,
        label: Some("secret".to_string()),
        host: ip.to_string(),
        port: Some(port),
    }
}

#[tokio::test]
async fn smarthost_auth_plain_sends_base64_credentials() {
    let script = Script {
        extensions: vec!["AUTH PLAIN LOGIN".to_string()],
        ..Script::default()
    };
    let dns = FakeDns::start().await;
    let smtp = FakeSmtp::start(ip(17, 2), 0, script).await;
    let route = RelayRoute {
        host: Some(smarthost(RelayScheme::Smtp, ip(17, 2), smtp.addr.port())),
        auth: Some(("user".to_string(), "pass".to_string())),
        ..by_mx()
    };
    // The MX port is irrelevant for a smarthost.
    let c = courier(options(&dns, 1), route);
    let outcome = send(&c, "someone@elsewhere.test", MESSAGE).await;
    assert!(delivered(&outcome).starts_with("127.17.0.2 [127.17.0.2]: 250"));
    let lines = smtp.lines();
    // base64("\0user\0pass")
    assert!(
        lines.contains(&"AUTH PLAIN AHVzZXIAcGFzcw==".to_string()),
        "{lines:?}"
    );
    assert!(
        dns.asked("elsewhere.test").is_empty(),
        "a smarthost needs no MX"
    );
}

#[tokio::test]
async fn smarthost_over_starttls_authenticates_after_the_handshake() {
    let script = Script {
        extensions: vec!["AUTH PLAIN".to_string()],
        tls: Some(tls_config("smarthost.example.test")),
        ..Script::default()
    };
    let dns = FakeDns::start().await;
    let smtp = FakeSmtp::start(ip(18, 2), 0, script).await;
    dns.addr("smarthost.example.test", ip(18, 2));
    let route = RelayRoute {
        host: Some(RelayUrl {
            scheme: RelayScheme::SmtpTls,
            label: None,
            host: "smarthost.example.test".to_string(),
            port: Some(smtp.addr.port()),
        }),
        auth: Some(("user".to_string(), "pass".to_string())),
        helo: Some("custom.example.test".to_string()),
        ..by_mx()
    };
    let c = courier(options(&dns, 1), route);
    let outcome = send(&c, "someone@elsewhere.test", MESSAGE).await;
    assert!(delivered(&outcome).starts_with("smarthost.example.test [127.18.0.2]: 250"));
    let lines = smtp.lines();
    let auth = lines.iter().position(|l| l.contains("AUTH"));
    let tls = lines.iter().position(|l| l == "STARTTLS");
    assert!(
        matches!((tls, auth), (Some(t), Some(a)) if t < a),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"TLS AUTH PLAIN AHVzZXIAcGFzcw==".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"TLS EHLO custom.example.test".to_string()),
        "{lines:?}"
    );
}

#[tokio::test]
async fn connections_are_reused_for_the_next_message() {
    let (dns, smtp) = one_mx(19, Script::default()).await;
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    for to in ["a@example.test", "b@example.test", "c@example.test"] {
        let outcome = send(&c, to, MESSAGE).await;
        delivered(&outcome);
    }
    assert_eq!(smtp.connections(), 1);
    assert_eq!(smtp.messages().len(), 3);
    let rsets = smtp.lines().iter().filter(|l| *l == "RSET").count();
    assert_eq!(rsets, 2);
}

#[tokio::test]
async fn a_failed_connection_is_not_reused() {
    let script = Script {
        rcpt: "550 5.1.1 user unknown".to_string(),
        ..Script::default()
    };
    let (dns, smtp) = one_mx(25, script).await;
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    perm_reason(&send(&c, "a@example.test", MESSAGE).await);
    // A clean 5xx leaves the connection usable: kept, probed, reused.
    perm_reason(&send(&c, "b@example.test", MESSAGE).await);
    assert_eq!(smtp.connections(), 1);

    let script = Script {
        drop_in_data: true,
        ..Script::default()
    };
    let dropping = FakeSmtp::start(ip(25, 3), 0, script).await;
    dns.addr("drop.example.test", ip(25, 3));
    dns.mx("drop.test", 10, "drop.example.test");
    let c = courier(options(&dns, dropping.addr.port()), by_mx());
    temp_reason(&send(&c, "a@drop.test", MESSAGE).await);
    temp_reason(&send(&c, "b@drop.test", MESSAGE).await);
    assert_eq!(dropping.connections(), 2);
}

#[tokio::test]
async fn lmtp_smarthost_speaks_lhlo() {
    let dns = FakeDns::start().await;
    let smtp = FakeSmtp::start(ip(20, 2), 0, Script::default()).await;
    let route = RelayRoute {
        host: Some(smarthost(RelayScheme::Lmtp, ip(20, 2), smtp.addr.port())),
        ..by_mx()
    };
    let c = courier(options(&dns, 1), route);
    delivered(&send(&c, "user@example.test", MESSAGE).await);
    assert_eq!(
        smtp.lines().first().map(String::as_str),
        Some("LHLO relay.example.test")
    );
}

#[tokio::test]
async fn a_non_ascii_address_needs_smtputf8() {
    let (dns, smtp) = one_mx(21, Script::default()).await;
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    let outcome = send(&c, "jörg@example.test", MESSAGE).await;
    let reason = perm_reason(&outcome);
    assert_eq!(status_of(reason).as_deref(), Some("5.6.7"), "{reason}");
    assert!(!smtp.lines().iter().any(|l| l.starts_with("MAIL")));

    let script = Script {
        extensions: vec!["SMTPUTF8".to_string()],
        ..Script::default()
    };
    let utf8 = FakeSmtp::start(ip(21, 3), 0, script).await;
    dns.mx("utf8.test", 10, "mx.utf8.test");
    dns.addr("mx.utf8.test", ip(21, 3));
    let c = courier(options(&dns, utf8.addr.port()), by_mx());
    delivered(&send(&c, "jörg@utf8.test", MESSAGE).await);
    let lines = utf8.lines();
    assert!(
        lines.contains(&"MAIL FROM:<sender@origin.test> SMTPUTF8".to_string()),
        "{lines:?}"
    );
}

#[tokio::test]
async fn dsn_parameters_are_passed_on_to_a_server_with_dsn() {
    let (dns, smtp) = one_mx(22, Script::default()).await;
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    let (mut env, mut rcpt) = envelope("user@example.test");
    env.ret = Some(Ret::Hdrs);
    env.envid = Some("QQ314159".to_string());
    rcpt.notify = Notify {
        success: true,
        failure: true,
        ..Notify::default()
    };
    rcpt.orcpt = Some("rfc822;orig+x@example.test".to_string());
    delivered(&c.deliver(&env, &rcpt, MESSAGE).await);
    let lines = smtp.lines();
    let mail = lines
        .iter()
        .find(|l| l.starts_with("MAIL"))
        .cloned()
        .unwrap_or_default();
    assert!(mail.ends_with(" RET=HDRS ENVID=QQ314159"), "{mail}");
    assert!(
        lines.contains(
            &"RCPT TO:<user@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bx@example.test"
                .to_string()
        ),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_refusing_greeting_moves_on_to_the_next_mx() {
    let dns = FakeDns::start().await;
    let script = Script {
        greeting: "554 5.3.2 no service".to_string(),
        ..Script::default()
    };
    let refusing = FakeSmtp::start(ip(23, 2), 0, script).await;
    let port = refusing.addr.port();
    let good = FakeSmtp::start(ip(23, 3), port, Script::default()).await;
    dns.mx("example.test", 10, "mx1.example.test");
    dns.mx("example.test", 20, "mx2.example.test");
    dns.addr("mx1.example.test", ip(23, 2));
    dns.addr("mx2.example.test", ip(23, 3));
    let c = courier(options(&dns, port), by_mx());
    let outcome = send(&c, "user@example.test", MESSAGE).await;
    assert!(delivered(&outcome).starts_with("mx2.example.test"));
    assert!(
        eventually(|| refusing.lines() == ["QUIT"]).await,
        "{:?}",
        refusing.lines()
    );
    assert_eq!(good.messages().len(), 1);
}

#[test]
fn the_courier_can_be_built_outside_a_runtime() {
    let mut opts = RelayOptions {
        hostname: "relay.example.test".to_string(),
        local_addrs: Vec::new(),
        resolvers: vec!["127.0.0.1:53".parse().expect("addr")],
        port: 25,
        connect_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(1),
        data_timeout: Duration::from_secs(1),
        max_received: 100,
    };
    RelayCourier::new(opts.clone()).expect("courier with resolvers");
    opts.resolvers.clear();
    // /etc/resolv.conf may be missing in a sandbox: then a clear error, never a panic.
    let _ = RelayCourier::new(opts);
}

#[tokio::test]
async fn other_destinations_and_unknown_actions_are_refused() {
    let dns = FakeDns::start().await;
    let c = courier(options(&dns, 25), by_mx());
    let (env, mut rcpt) = envelope("user@example.test");
    rcpt.dest = Destination::Lmtp {
        dest: "/run/lmtp".to_string(),
        rcpt: "user".to_string(),
    };
    let reason = perm_reason(&c.deliver(&env, &rcpt, MESSAGE).await).to_string();
    assert_eq!(reason, "not a relay destination");
    rcpt.dest = Destination::Relay {
        action: "missing".to_string(),
        to: Address::parse("user@example.test").expect("address"),
    };
    temp_reason(&c.deliver(&env, &rcpt, MESSAGE).await);
}

#[tokio::test]
async fn recipients_share_a_transaction_per_domain_with_their_own_outcomes() {
    let dns = FakeDns::start().await;
    let script = Script {
        rcpt_for: vec![("<nobody@".to_string(), "550 5.1.1 no such user".to_string())],
        ..Script::default()
    };
    let a = FakeSmtp::start(ip(26, 2), 0, script).await;
    let port = a.addr.port();
    let b = FakeSmtp::start(ip(26, 3), port, Script::default()).await;
    dns.mx("remote.test", 10, "mx.remote.test");
    dns.addr("mx.remote.test", ip(26, 2));
    dns.mx("other.test", 10, "mx.other.test");
    dns.addr("mx.other.test", ip(26, 3));
    let c = courier(options(&dns, port), by_mx());
    let (env, x) = envelope("x@remote.test");
    let (_, y) = envelope("y@other.test");
    let (_, z) = envelope("z@remote.test");
    let (_, nobody) = envelope("nobody@remote.test");
    let outcomes = c.deliver_many(&env, &[&x, &y, &nobody, &z], MESSAGE).await;
    assert!(delivered(&outcomes[0]).starts_with("mx.remote.test [127.26.0.2]: 250"));
    assert!(delivered(&outcomes[1]).starts_with("mx.other.test [127.26.0.3]: 250"));
    assert_eq!(
        perm_reason(&outcomes[2]),
        "mx.remote.test [127.26.0.2]: 550 5.1.1 no such user"
    );
    assert!(delivered(&outcomes[3]).starts_with("mx.remote.test"));
    assert_eq!((a.connections(), a.messages().len()), (1, 1));
    assert_eq!((b.connections(), b.messages().len()), (1, 1));
    let rcpts: Vec<String> = a
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("RCPT"))
        .collect();
    assert_eq!(
        rcpts,
        [
            "RCPT TO:<x@remote.test>",
            "RCPT TO:<nobody@remote.test>",
            "RCPT TO:<z@remote.test>"
        ]
    );
}

#[tokio::test]
async fn a_smarthost_gets_all_domains_in_one_transaction() {
    let dns = FakeDns::start().await;
    let smtp = FakeSmtp::start(ip(27, 2), 0, Script::default()).await;
    let route = RelayRoute {
        host: Some(smarthost(RelayScheme::Smtp, ip(27, 2), smtp.addr.port())),
        ..by_mx()
    };
    let c = courier(options(&dns, 1), route);
    let (env, x) = envelope("x@remote.test");
    let (_, y) = envelope("y@other.test");
    for outcome in c.deliver_many(&env, &[&x, &y], MESSAGE).await {
        delivered(&outcome);
    }
    assert_eq!(smtp.messages().len(), 1);
    assert!(dns.asked("remote.test").is_empty() && dns.asked("other.test").is_empty());
}

#[tokio::test]
async fn lmtp_gives_each_recipient_its_own_final_reply() {
    let dns = FakeDns::start().await;
    let script = Script {
        lmtp_end: vec![
            "250 2.0.0 <a> saved".to_string(),
            "452 4.2.2 <b> over quota".to_string(),
        ],
        ..Script::default()
    };
    let smtp = FakeSmtp::start(ip(28, 2), 0, script).await;
    let route = RelayRoute {
        host: Some(smarthost(RelayScheme::Lmtp, ip(28, 2), smtp.addr.port())),
        ..by_mx()
    };
    let c = courier(options(&dns, 1), route);
    let (env, a) = envelope("a@example.test");
    let (_, b) = envelope("b@example.test");
    let outcomes = c.deliver_many(&env, &[&a, &b], MESSAGE).await;
    assert_eq!(
        delivered(&outcomes[0]),
        "127.28.0.2 [127.28.0.2]: 250 2.0.0 <a> saved"
    );
    assert_eq!(
        temp_reason(&outcomes[1]),
        "127.28.0.2 [127.28.0.2]: 452 4.2.2 <b> over quota"
    );
}

#[tokio::test]
async fn a_failed_starttls_handshake_is_retried_in_plaintext_unless_tls_is_required() {
    let script = Script {
        tls: Some(tls_config("mx1.example.test")),
        broken_tls: true,
        ..Script::default()
    };
    let (dns, smtp) = one_mx(29, script).await;
    let c = courier(options(&dns, smtp.addr.port()), by_mx());
    delivered(&send(&c, "user@example.test", MESSAGE).await);
    assert_eq!(smtp.connections(), 2);
    // The first connection tried STARTTLS, the second did without.
    let starttls = smtp.lines().iter().filter(|l| *l == "STARTTLS").count();
    assert_eq!(starttls, 1);

    let route = RelayRoute {
        tls: RelayTls::Required,
        ..by_mx()
    };
    c.set_routes(HashMap::from([("out".to_string(), route)]));
    let reason = temp_reason(&send(&c, "user@example.test", MESSAGE).await).to_string();
    assert!(reason.contains("TLS handshake"), "{reason}");
    assert_eq!(smtp.messages().len(), 1);
}
