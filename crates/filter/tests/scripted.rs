//! The filter protocol against small Python filters: decisions, chains, reports, data lines,
//! and what happens when a filter crashes, hangs or writes garbage.

mod common;

use std::time::{Duration, Instant};

use common::{config, eventually, fast, log_lines, no_tables, Scripted};
use ownmail_filter::{AuthResult, Decision, Endpoint, Filters, Outcome, SessionId, TxId};

fn endpoints() -> (Endpoint, Endpoint) {
    (
        Endpoint::Inet("192.0.2.7:40000".parse().unwrap()),
        Endpoint::Inet("198.51.100.1:25".parse().unwrap()),
    )
}

async fn start_one(s: &Scripted, args: &[&str]) -> Filters {
    let conf = format!(
        "filter f proc-exec \"{}\"\nlisten on lo filter f\n",
        s.conf_command(args)
    );
    Filters::start(&config(&conf), fast(), no_tables())
        .await
        .expect("filters start")
}

#[tokio::test]
async fn chain_rewrite_feeds_next_filter_and_first_reject_wins() {
    let s = Scripted::new();
    let a_log = s.path("a.log");
    let b_log = s.path("b.log");
    let a = s.conf_command(&[
        &format!("log={}", a_log.display()),
        "phases=helo,ehlo,mail-from,rcpt-to",
        "act=ehlo=rewrite|renamed.example",
        "act=mail-from=rewrite|rewritten@example.org",
        "act=rcpt-to=reject|550 5.7.1 first says no",
    ]);
    let b = s.conf_command(&[
        &format!("log={}", b_log.display()),
        "reports=link-identify",
        "phases=ehlo,mail-from,rcpt-to",
        "act=mail-from=if:rewritten@example.org:reject|553 5.7.1 saw the rewrite",
        "act=rcpt-to=reject|550 second must not run",
    ]);
    let conf = format!(
        "filter a proc-exec \"{a}\"\nfilter b proc-exec \"{b}\"\nfilter both chain {{ a, b }}\n\
         listen on lo filter both\n"
    );
    let filters = Filters::start(&config(&conf), fast(), no_tables())
        .await
        .expect("start");
    let mut f = filters.session("both", SessionId(0xabc)).expect("session");

    assert_eq!(
        f.helo(true, "client.example").await,
        Decision::Rewrite("renamed.example".into())
    );
    assert_eq!(
        f.mail_from("sender@example.net").await,
        Decision::Reject("553 5.7.1 saw the rewrite".into())
    );
    assert_eq!(
        f.rcpt_to("rcpt@example.org").await,
        Decision::Reject("550 5.7.1 first says no".into())
    );
    f.disconnect().await;

    // Each filter logs a line before answering it, so the logs are complete by now.
    let b_lines = log_lines(&b_log);
    // b saw the rewritten EHLO name and sender, and link-identify with the rewritten name.
    assert!(
        b_lines
            .iter()
            .any(|l| l.contains("|ehlo|0000000000000abc|") && l.ends_with("|renamed.example")),
        "{b_lines:?}"
    );
    assert!(
        b_lines
            .iter()
            .any(|l| l.contains("|mail-from|") && l.ends_with("|rewritten@example.org")),
        "{b_lines:?}"
    );
    assert!(
        b_lines
            .iter()
            .any(|l| l.contains("|link-identify|0000000000000abc|EHLO|renamed.example")),
        "{b_lines:?}"
    );
    // The first reject ended the rcpt-to phase: b never saw it.
    assert!(
        !b_lines.iter().any(|l| l.contains("|rcpt-to|")),
        "{b_lines:?}"
    );
    // a got the client's own values.
    let a_lines = log_lines(&a_log);
    assert!(
        a_lines
            .iter()
            .any(|l| l.contains("|mail-from|") && l.ends_with("|sender@example.net")),
        "{a_lines:?}"
    );
}

#[tokio::test]
async fn junk_marks_the_transaction_and_421_reject_disconnects() {
    let s = Scripted::new();
    let filters = start_one(
        &s,
        &[
            "phases=rcpt-to,data,mail-from",
            "act=rcpt-to=junk",
            "act=data=reject|421 4.7.0 go away",
            "act=mail-from=disconnect|550 5.7.1 bye",
        ],
    )
    .await;
    let mut f = filters.session("f", SessionId::random()).unwrap();
    assert!(!f.is_junk());
    assert_eq!(f.rcpt_to("a@example.org").await, Decision::Junk);
    assert!(f.is_junk());
    assert_eq!(
        f.data().await,
        Decision::Disconnect("421 4.7.0 go away".into())
    );
    assert_eq!(
        f.mail_from("x@example.org").await,
        Decision::Disconnect("550 5.7.1 bye".into())
    );
    f.committed(TxId(1), 10).await;
    assert!(!f.is_junk(), "junk ends with the transaction");
}

#[tokio::test]
async fn reports_go_only_to_registered_filters_in_protocol_0_6_form() {
    let s = Scripted::new();
    let log = s.path("f.log");
    let filters = start_one(
        &s,
        &[
            &format!("log={}", log.display()),
            "reports=link-connect,link-auth,tx-begin,tx-mail,tx-rcpt,tx-commit,tx-reset,link-disconnect,filter-response",
            "phases=connect,commit",
        ],
    )
    .await;
    let (src, dest) = endpoints();
    let mut f = filters.session("f", SessionId(0x0123456789abcdef)).unwrap();
    assert_eq!(
        f.connect("client.example", true, &src, &dest).await,
        Decision::Proceed
    );
    f.greeting("mx.example.org").await;
    assert_eq!(f.helo(false, "client.example").await, Decision::Proceed);
    f.auth_result("alice", AuthResult::Pass).await;
    assert_eq!(f.mail_from("a@example.org").await, Decision::Proceed);
    f.mail_reply(TxId(0xabcd), "a@example.org", Outcome::Ok)
        .await;
    f.rcpt_reply(TxId(0xabcd), "b|c@example.com", Outcome::PermFail)
        .await;
    assert_eq!(f.commit(TxId(0xabcd)).await, Decision::Proceed);
    f.committed(TxId(0xabcd), 1234).await;
    drop(f);

    eventually("link-disconnect", Duration::from_secs(5), || {
        log_lines(&log)
            .iter()
            .any(|l| l.contains("|link-disconnect|"))
    })
    .await;
    let lines = log_lines(&log);
    let strip = |l: &str| {
        // Drop the timestamp field.
        let f: Vec<&str> = l.splitn(4, '|').collect();
        if f.len() == 4 && (f[0] == "report" || f[0] == "filter") {
            assert!(
                f[2].len() > 7 && f[2].as_bytes()[f[2].len() - 7] == b'.',
                "timestamp {l}"
            );
            format!("{}|{}|{}", f[0], f[1], f[3])
        } else {
            l.to_string()
        }
    };
    let got: Vec<String> = lines
        .iter()
        .map(|l| strip(l))
        // (the script's own `pid|…` line is not protocol)
        .filter(|l| !l.starts_with("filter|") && !l.starts_with("pid|"))
        .collect();
    let sid = "0123456789abcdef";
    let want = vec![
        "config|smtpd-version|7.3.0".to_string(),
        "config|protocol|0.6".into(),
        "config|smtp-session-timeout|300".into(),
        "config|subsystem|smtp-in".into(),
        "config|admd|mx.example.org".into(),
        "config|ready".into(),
        format!("report|0.6|smtp-in|link-connect|{sid}|client.example|pass|192.0.2.7:40000|198.51.100.1:25"),
        format!("report|0.6|smtp-in|filter-response|{sid}|connected|proceed"),
        format!("report|0.6|smtp-in|filter-response|{sid}|helo|proceed"),
        format!("report|0.6|smtp-in|link-auth|{sid}|alice|pass"),
        format!("report|0.6|smtp-in|filter-response|{sid}|mail-from|proceed"),
        format!("report|0.6|smtp-in|tx-begin|{sid}|0000abcd"),
        format!("report|0.6|smtp-in|tx-mail|{sid}|0000abcd|ok|a@example.org"),
        format!("report|0.6|smtp-in|tx-rcpt|{sid}|0000abcd|permfail|b|c@example.com"),
        format!("report|0.6|smtp-in|filter-response|{sid}|commit|proceed"),
        format!("report|0.6|smtp-in|tx-commit|{sid}|0000abcd|1234"),
        format!("report|0.6|smtp-in|tx-reset|{sid}|0000abcd"),
        format!("report|0.6|smtp-in|link-disconnect|{sid}"),
    ];
    assert_eq!(got, want);
    // Not registered: never sent.
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("link-greeting")
                || (l.starts_with("filter|") && l.contains("|helo|"))),
        "{lines:?}"
    );
    let requests: Vec<&String> = lines.iter().filter(|l| l.starts_with("filter|")).collect();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests[0].contains(&format!("|smtp-in|connect|{sid}|"))
            && requests[0].ends_with("|client.example|192.0.2.7")
    );
    assert!(requests[1].contains(&format!("|smtp-in|commit|{sid}|")) && requests[1].ends_with('|'));
}

#[tokio::test]
async fn data_lines_round_trip_dot_stuffed_through_a_chain() {
    let s = Scripted::new();
    let log = s.path("one.log");
    let one = s.conf_command(&[
        &format!("log={}", log.display()),
        "phases=data-line",
        "header=X-One: 1",
    ]);
    let two = s.conf_command(&["phases=data-line", "header=X-Two: 2"]);
    let conf = format!(
        "filter one proc-exec \"{one}\"\nfilter two proc-exec \"{two}\"\nfilter c chain {{ one, two }}\n\
         listen on lo filter c\n"
    );
    let filters = Filters::start(&config(&conf), fast(), no_tables())
        .await
        .expect("start");
    let mut f = filters.session("c", SessionId::random()).unwrap();
    let msg = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\nbyte \xe9 | pipe\r\n";
    let out = f.message(TxId(7), msg).await.expect("message");
    assert_eq!(
        out,
        b"X-Two: 2\r\nX-One: 1\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\nbyte \xe9 | pipe\r\n".to_vec()
    );
    let lines = log_lines(&log);
    assert!(
        lines.iter().any(|l| l.ends_with("|..leading dot")),
        "sent dot-stuffed: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with("|...two dots")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("|data-line|") && l.ends_with("|.")),
        "{lines:?}"
    );

    // An empty message is just the dot.
    let out = f.message(TxId(8), b"").await.expect("empty");
    assert_eq!(out, b"X-Two: 2\r\nX-One: 1\r\n".to_vec());
}

#[tokio::test]
async fn message_without_data_line_filters_is_unchanged() {
    let s = Scripted::new();
    let filters = start_one(&s, &["phases=commit"]).await;
    let mut f = filters.session("f", SessionId::random()).unwrap();
    let msg = b"Subject: x\r\n\r\nbody\r\n";
    assert_eq!(f.message(TxId(1), msg).await.unwrap(), msg.to_vec());
}

async fn misbehaves_then_recovers(mode: &str) {
    let s = Scripted::new();
    let once = s.path("once");
    let filters = start_one(
        &s,
        &[
            "phases=mail-from",
            &format!("mode={mode}"),
            &format!("once={}", once.display()),
        ],
    )
    .await;
    let mut f = filters.session("f", SessionId::random()).unwrap();
    let start = Instant::now();
    assert_eq!(
        f.mail_from("a@example.org").await,
        Decision::TempFail,
        "mode {mode}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "mode {mode}: took {:?}",
        start.elapsed()
    );
    // The same session stays on the broken process.
    assert_eq!(
        f.mail_from("a@example.org").await,
        Decision::TempFail,
        "mode {mode}"
    );
    drop(f);
    eventually("restart", Duration::from_secs(10), || filters.healthy("f")).await;
    let mut g = filters.session("f", SessionId::random()).unwrap();
    assert_eq!(
        g.mail_from("a@example.org").await,
        Decision::Proceed,
        "mode {mode} after restart"
    );
}

#[tokio::test]
async fn garbage_tempfails_and_the_filter_restarts() {
    misbehaves_then_recovers("garbage").await;
}

#[tokio::test]
async fn crash_tempfails_and_the_filter_restarts() {
    misbehaves_then_recovers("crash").await;
}

#[tokio::test]
async fn hang_tempfails_within_the_timeout_and_the_filter_restarts() {
    misbehaves_then_recovers("hang").await;
}

#[tokio::test]
async fn unknown_token_tempfails_and_the_filter_restarts() {
    misbehaves_then_recovers("badtoken").await;
}

#[tokio::test]
async fn non_error_reply_code_tempfails_and_the_filter_restarts() {
    misbehaves_then_recovers("badcode").await;
}

#[tokio::test]
async fn hung_data_line_tempfails() {
    let s = Scripted::new();
    let filters = start_one(&s, &["phases=data-line", "mode=hang"]).await;
    let mut f = filters.session("f", SessionId::random()).unwrap();
    let start = Instant::now();
    assert_eq!(f.message(TxId(1), b"a\r\n").await, Err(Decision::TempFail));
    assert!(start.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn a_session_started_while_the_filter_is_down_tempfails_its_phases() {
    let s = Scripted::new();
    let filters = start_one(&s, &["phases=mail-from", "mode=crash"]).await;
    let mut f = filters.session("f", SessionId::random()).unwrap();
    assert_eq!(f.mail_from("a@example.org").await, Decision::TempFail);
    // Immediately after: the restart (100 ms backoff) may not have happened yet.
    let mut g = filters.session("f", SessionId::random()).unwrap();
    let d = g.mail_from("a@example.org").await;
    assert_eq!(d, Decision::TempFail);
    // Phases it did not register still proceed.
    assert_eq!(g.rcpt_to("b@example.org").await, Decision::Proceed);
}

#[tokio::test]
async fn startup_failure_names_the_filter() {
    let conf = config("filter broken proc-exec \"exit 1\"\nlisten on lo filter broken\n");
    let err = Filters::start(&conf, fast(), no_tables())
        .await
        .err()
        .expect("must fail");
    assert!(err.contains("\"broken\""), "{err}");

    let conf =
        config("filter chatty proc-exec \"echo hello; sleep 5\"\nlisten on lo filter chatty\n");
    let err = Filters::start(&conf, fast(), no_tables())
        .await
        .err()
        .expect("must fail");
    assert!(
        err.contains("\"chatty\"") && err.contains("handshake"),
        "{err}"
    );

    let mut settings = fast();
    settings.handshake_timeout = Duration::from_millis(300);
    let conf = config("filter mute proc-exec \"sleep 5\"\nlisten on lo filter mute\n");
    let start = Instant::now();
    let err = Filters::start(&conf, settings, no_tables())
        .await
        .err()
        .expect("must fail");
    assert!(
        err.contains("\"mute\"") && err.contains("register|ready"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn unknown_filter_name_has_no_session() {
    let s = Scripted::new();
    let filters = start_one(&s, &["phases=commit"]).await;
    assert!(filters.session("nope", SessionId::random()).is_none());
}

#[tokio::test]
async fn many_sessions_share_one_process() {
    let s = Scripted::new();
    let log = s.path("f.log");
    let filters = std::sync::Arc::new(
        start_one(
            &s,
            &[
                &format!("log={}", log.display()),
                "phases=rcpt-to",
                "act=rcpt-to=if:bad@x:reject|550 no",
            ],
        )
        .await,
    );
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let filters = filters.clone();
        tasks.push(tokio::spawn(async move {
            let mut f = filters.session("f", SessionId(i + 1)).unwrap();
            let addr = if i % 2 == 0 { "bad@x" } else { "good@x" };
            (i, f.rcpt_to(addr).await)
        }));
    }
    for t in tasks {
        let (i, d) = t.await.unwrap();
        if i % 2 == 0 {
            assert_eq!(d, Decision::Reject("550 no".into()));
        } else {
            assert_eq!(d, Decision::Proceed);
        }
    }
    // One handshake: one process served them all.
    let lines = log_lines(&log);
    assert_eq!(lines.iter().filter(|l| *l == "config|ready").count(), 1);
}
