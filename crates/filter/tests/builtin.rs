//! Built-in filters (`filter NAME phase PHASE match CONDITIONS DECISION`), alone and in a
//! chain with the scripted proc-exec filter.

mod common;

use common::{config, fast, log_lines, tables_of, Scripted};
use ownmail_filter::{AuthResult, Decision, Endpoint, Filters, SessionId};

fn endpoints(src: &str) -> (Endpoint, Endpoint) {
    (
        Endpoint::Inet(src.parse().expect("address")),
        Endpoint::Inet("198.51.100.1:25".parse().expect("address")),
    )
}

async fn start(text: &str) -> Filters {
    let c = config(text);
    Filters::start(&c, fast(), tables_of(&c))
        .await
        .expect("filters start")
}

/// The connect decision of a new session on the listener's filter.
async fn connect(filters: &Filters, rdns: &str, fcrdns: bool, src: &str) -> Decision {
    let name = "{a}";
    let mut f = filters.session(name, SessionId(1)).expect("session");
    let (s, d) = endpoints(src);
    f.connect(rdns, fcrdns, &s, &d).await
}

#[tokio::test]
async fn no_rdns_disconnects_only_without_a_reverse_name() {
    let filters = start(
        "filter a phase connect match !rdns disconnect \"550 no rDNS\"\nlisten on lo filter { a }\n",
    )
    .await;
    assert!(filters.healthy("{a}"));
    assert_eq!(
        connect(&filters, "", false, "192.0.2.7:4000").await,
        Decision::Disconnect("550 no rDNS".into())
    );
    assert_eq!(
        connect(&filters, "mail.example.org", true, "192.0.2.7:4000").await,
        Decision::Proceed
    );
}

#[tokio::test]
async fn fcrdns_and_rdns_regex() {
    let filters = start(
        "filter a phase connect match rdns regex { '.*\\.dyn\\..*', '(?i)^dsl-' } reject \"550 residential\"\n\
         listen on lo filter { a }\n",
    )
    .await;
    let no = Decision::Reject("550 residential".into());
    assert_eq!(
        connect(&filters, "host-1.dyn.isp.net", true, "192.0.2.7:1").await,
        no
    );
    assert_eq!(
        connect(&filters, "DSL-7.isp.net", true, "192.0.2.7:1").await,
        no
    );
    assert_eq!(
        connect(&filters, "mail.example.org", true, "192.0.2.7:1").await,
        Decision::Proceed
    );
    // No reverse name: nothing to match.
    assert_eq!(
        connect(&filters, "", false, "192.0.2.7:1").await,
        Decision::Proceed
    );

    let filters = start(
        "filter a phase connect match !fcrdns disconnect \"421 no FCrDNS\"\nlisten on lo filter { a }\n",
    )
    .await;
    assert_eq!(
        connect(&filters, "mail.example.org", false, "192.0.2.7:1").await,
        Decision::Disconnect("421 no FCrDNS".into())
    );
    assert_eq!(
        connect(&filters, "mail.example.org", true, "192.0.2.7:1").await,
        Decision::Proceed
    );
}

#[tokio::test]
async fn src_tables_hold_networks() {
    let filters = start(
        "table nets { 192.0.2.0/24, 2001:db8::/32, 203.0.113.9 }\n\
         filter a phase connect match src <nets> junk\nlisten on lo filter { a }\n",
    )
    .await;
    for (src, want) in [
        ("192.0.2.200:1", Decision::Junk),
        ("203.0.113.9:1", Decision::Junk),
        ("[2001:db8::25]:1", Decision::Junk),
        ("203.0.113.10:1", Decision::Proceed),
        ("[2001:db9::1]:1", Decision::Proceed),
    ] {
        assert_eq!(
            connect(&filters, "x.example", true, src).await,
            want,
            "{src}"
        );
    }
    // A key that is no network is a start error naming the filter.
    let c = config(
        "table nets { 192.0.2.0/24, nonsense }\n\
         filter a phase connect match src <nets> junk\nlisten on lo filter { a }\n",
    );
    let err = Filters::start(&c, fast(), tables_of(&c))
        .await
        .err()
        .expect("must fail");
    assert!(err.contains("\"a\"") && err.contains("nonsense"), "{err}");
}

#[tokio::test]
async fn mail_from_regex_rejects_and_helo_and_auth_tables() {
    let filters = start(
        "filter bad phase mail-from match mail-from regex { '.*@bad\\.test$' } reject \"550 5.7.1 bad sender\"\n\
         filter evil phase helo match helo { '*.evil.test' } disconnect \"421 4.7.0 go away\"\n\
         filter users phase rcpt-to match !auth { alice } reject \"530 5.7.0 alice only\"\n\
         listen on lo filter { bad, evil, users }\n",
    )
    .await;
    let name = "{bad, evil, users}";
    let (s, d) = endpoints("192.0.2.7:1");
    let mut f = filters.session(name, SessionId(2)).expect("session");
    assert_eq!(f.connect("", false, &s, &d).await, Decision::Proceed);
    assert_eq!(f.helo(false, "ok.example").await, Decision::Proceed);
    assert_eq!(
        f.mail_from("someone@bad.test").await,
        Decision::Reject("550 5.7.1 bad sender".into())
    );
    assert_eq!(f.mail_from("someone@good.test").await, Decision::Proceed);
    assert_eq!(
        f.rcpt_to("x@example.org").await,
        Decision::Reject("530 5.7.0 alice only".into())
    );
    f.auth_result("Alice", AuthResult::Pass).await;
    assert_eq!(f.rcpt_to("x@example.org").await, Decision::Proceed);

    let mut g = filters.session(name, SessionId(3)).expect("session");
    assert_eq!(g.connect("", false, &s, &d).await, Decision::Proceed);
    // `phase helo` is HELO only, as in OpenSMTPD; EHLO is `phase ehlo`.
    assert_eq!(g.helo(true, "MX.Evil.Test").await, Decision::Proceed);
    assert_eq!(
        g.helo(false, "MX.Evil.Test").await,
        Decision::Disconnect("421 4.7.0 go away".into())
    );
}

#[tokio::test]
async fn bypass_skips_the_rest_of_the_chain_and_junk_goes_on() {
    let s = Scripted::new();
    let log = s.path("scripted.log");
    let cmd = s.conf_command(&[
        &format!("log={}", log.display()),
        "phases=mail-from,rcpt-to",
        "act=mail-from=reject|550 5.7.1 scripted says no",
    ]);
    let filters = start(&format!(
        "filter trusted phase mail-from match mail-from {{ '@trusted.test' }} bypass\n\
         filter spammy phase rcpt-to match rcpt-to regex {{ '^spam' }} junk\n\
         filter scripted proc-exec \"{cmd}\"\n\
         listen on lo filter {{ trusted, spammy, scripted }}\n"
    ))
    .await;
    let name = "{trusted, spammy, scripted}";
    let (src, dest) = endpoints("192.0.2.7:1");
    let mut f = filters.session(name, SessionId(4)).expect("session");
    assert_eq!(f.connect("", false, &src, &dest).await, Decision::Proceed);
    // The scripted filter rejects every sender, but not those the built-in bypasses.
    assert_eq!(
        f.mail_from("x@other.test").await,
        Decision::Reject("550 5.7.1 scripted says no".into())
    );
    assert_eq!(f.mail_from("x@trusted.test").await, Decision::Proceed);
    // junk is remembered and the chain goes on to the scripted filter.
    assert_eq!(f.rcpt_to("spammer@example.org").await, Decision::Junk);
    assert!(f.is_junk());
    assert_eq!(f.rcpt_to("ok@example.org").await, Decision::Proceed);
    f.disconnect().await;
    let lines = log_lines(&log);
    let mails: Vec<&String> = lines.iter().filter(|l| l.contains("|mail-from|")).collect();
    assert_eq!(mails.len(), 1, "{lines:?}");
    assert!(mails[0].ends_with("|x@other.test"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("|rcpt-to|") && l.ends_with("|spammer@example.org")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn rewrite_and_report() {
    let filters = start(
        "filter a phase mail-from match mail-from { old@example.org } rewrite \"new@example.org\"\n\
         filter b phase mail-from match !fcrdns report \"sender without fcrdns\"\n\
         listen on lo filter { a, b }\n",
    )
    .await;
    let (src, dest) = endpoints("192.0.2.7:1");
    let mut f = filters.session("{a, b}", SessionId(5)).expect("session");
    f.connect("", false, &src, &dest).await;
    assert_eq!(
        f.mail_from("Old@Example.org").await,
        Decision::Rewrite("new@example.org".into())
    );
    assert_eq!(f.mail_from("other@example.org").await, Decision::Proceed);
}
