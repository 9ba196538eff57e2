use super::*;
use crate::model::{
    ActionKind, Cond, Expansion, For, From, ListenOn, ListenTls, RelayScheme, TableOrValue, Verdict,
};
use crate::print::print_modern;

fn opts() -> ParseOptions {
    ParseOptions {
        pki_dir: PathBuf::from("/pki"),
    }
}

fn parse(text: &str) -> Parsed {
    parse_str("t.conf", text, &opts())
}

fn parse_ok(text: &str) -> Config {
    let p = parse(text);
    let errors: Vec<String> = p
        .diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "unexpected errors: {errors:#?}");
    p.config
}

/// The first error, as `check` prints it.
fn first_error(text: &str) -> String {
    let p = parse(text);
    let e = p.diags.iter().find(|d| d.is_error()).map(|d| d.to_string());
    e.unwrap_or_else(|| panic!("expected an error for {text:?}"))
}

/// `print` then `parse` gives back the same model.
fn assert_round_trip(text: &str) {
    let c = parse_ok(text);
    let printed = print_modern(&c);
    let again = parse_ok(&printed);
    assert_eq!(c, again, "printed:\n{printed}");
    assert_eq!(printed, print_modern(&again), "print is not a fixed point");
}

const ARTICLE_V2: &str = "# Declare the alias table
table aliases file:/etc/aliases

# Declare the vuser
table vusers file:/etc/vusers

# Listen on the local interface
listen on lo

# Listen on the internet interface
listen on eth0 tls certificate example.org

# Deliver example.org e-mail to maildir
accept from any for domain example.org virtual aliases userbase vusers deliver to maildir \"~/\"

# Deliver local accounts
accept for local virtual aliases deliver to mbox

# Relay every other mail
accept for any relay
";

const ARTICLE_V3: &str = "# Setup the alias table
table aliases db:/etc/aliases.db

# Setup the vuser
table vusers db:/etc/vusers.db

# Setup in_auth table
table in_auth db:/etc/smtpdauth.db

# Listenning on local interface
listen on lo
# Listenning on internet interface for relay (port 25)
listen on eth0 tls certificate shoggoth.tc2.fr
# Listenning on internet interface for submission (port 587)
listen on eth0 port 587 tls-require certificate shoggoth.tc2.fr auth <in_auth> tag TO_DKIM
listen on lo port 10029 tag FROM_DKIM

# Deliver tc2.fr mail to maildir
accept from any for domain tc2.fr virtual <aliases> userbase <vusers> deliver to maildir \"~/\"

# Deliver local account
accept for local virtual <aliases> deliver to mbox

# Send to dkim
accept tagged TO_DKIM for any relay via smtp://127.0.0.1:10027

# Backup for example.org mail\u{ac}
accept from any for domain exemple.org relay backup mx2.example.org

# Relay every other mail
accept for any relay
";

#[test]
fn article_v2_compiles_to_actions_and_rules() {
    let c = parse_ok(ARTICLE_V2);
    assert_eq!(c.tables.len(), 2);
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[1].on, ListenOn::Name("eth0".into()));
    assert_eq!(c.listeners[1].tls, ListenTls::Offer);
    assert_eq!(c.listeners[1].pki.as_deref(), Some("example.org"));
    assert_eq!(
        c.pkis[0].cert.as_deref(),
        Some(Path::new("/pki/example.org.crt"))
    );
    assert_eq!(
        c.pkis[0].key.as_deref(),
        Some(Path::new("/pki/example.org.key"))
    );
    assert_eq!(c.actions.len(), 3);
    let maildir = &c.actions[0];
    assert_eq!(
        maildir.kind,
        ActionKind::Maildir {
            path: Some("~/".into()),
            junk: false
        }
    );
    assert!(matches!(&maildir.expansion, Some(Expansion::Virtual(t)) if t.name == "aliases"));
    assert_eq!(
        maildir.userbase.as_ref().map(|t| t.name.as_str()),
        Some("vusers")
    );
    // from any: one rule; no from: local + authenticated, twice.
    assert_eq!(c.rules.len(), 5);
    assert_eq!(c.rules[0].from, Cond::yes(From::Any));
    assert_eq!(
        c.rules[0].for_,
        Cond::yes(For::Domain(TableOrValue::Value("example.org".into())))
    );
    assert_eq!(c.rules[1].from, Cond::yes(From::Local));
    assert_eq!(c.rules[2].from, Cond::yes(From::Auth(None)));
    assert_eq!(c.rules[1].verdict, c.rules[2].verdict);
    assert_eq!(c.rules[3].for_, Cond::yes(For::Any));
    assert!(
        matches!(&c.actions[2].kind, ActionKind::Relay(r) if r.host.is_none() && r.backup.is_none())
    );
}

#[test]
fn article_v3_with_dkimproxy_and_backup_compiles() {
    let c = parse_ok(ARTICLE_V3);
    assert_eq!(c.listeners[2].port, Some(587));
    assert_eq!(c.listeners[2].tls, ListenTls::Require { verify: false });
    assert_eq!(c.listeners[2].tag.as_deref(), Some("TO_DKIM"));
    assert_eq!(
        c.listeners[2]
            .auth
            .as_ref()
            .and_then(|a| a.table.as_ref())
            .map(|t| t.name.as_str()),
        Some("in_auth")
    );
    let relay_via = c.actions.iter().find_map(|a| match &a.kind {
        ActionKind::Relay(r) => r.host.clone(),
        _ => None,
    });
    let url = relay_via.expect("relay via");
    assert_eq!(
        (url.scheme, url.host.as_str(), url.port),
        (RelayScheme::Smtp, "127.0.0.1", Some(10027))
    );
    assert!(c.actions.iter().any(|a| matches!(&a.kind, ActionKind::Relay(r) if r.backup == Some(Some("mx2.example.org".into())))));
    let tagged = c
        .rules
        .iter()
        .find(|r| r.tag.is_some())
        .expect("tagged rule");
    assert_eq!(tagged.tag, Some(Cond::yes("TO_DKIM".to_string())));
}

#[test]
fn printed_configurations_parse_back_to_the_same_model() {
    assert_round_trip(ARTICLE_V2);
    assert_round_trip(ARTICLE_V3);
    assert_round_trip("table aliases file:/etc/aliases\nlisten on lo\naccept for local alias <aliases> deliver to mbox\n");
    assert_round_trip(
        "table s { 192.168.0.0/24, 10.0.0.0/8 }\ntable m { a = \"b c\", d = e }\ntable secrets file:/etc/secrets\n\
         pki mx cert \"/x/mx.crt\"\npki mx key \"/x/mx.key\"\n\
         listen on 127.0.0.1 family inet4 port 2525 smtps pki mx auth-optional <m> tag T hostname mx.test senders <m> masquerade mask-src\n\
         smtp max-message-size 35M\nsmtp limit max-rcpt 100\nsmtp sub-addr-delim \"-\"\nqueue ttl 4d\nbounce warn-interval 1h, 6h\n\
         resolver 127.0.0.1:5353 ::1\nimap listen on lo port 1993 imaps pki mx\nimap auth <m>\nimap userbase <m>\nimap mailbox \"~/Maildir\"\n\
         dkim sign domain example.org selector s1 key \"/k/s1.key\" algorithm ed25519-sha256\n\
         spam junk-score 5 reject-score 10.5\ndnsbl zen.example junk\ngreylist delay 5m expire 30d\nlimit messages 100 per hour per user\n\
         filter f1 proc-exec \"/bin/cat\"\nfilter f2 chain { f1 }\n\
         action \"in\" maildir \"~/Mail dir\" junk virtual <m> userbase <m>\naction out relay host smtp+tls://lbl@[::1]:2525 auth <secrets> helo mx.test tls no-verify src <s> mail-from a@b.c\n\
         action bk relay backup mx mx2.test\naction l lmtp \"/run/dovecot/lmtp\" user vmail\naction d mda \"/usr/bin/procmail -f -\"\n\
         match from src <s> !for domain <m> tls auth tag T mail-from <m> rcpt-to <m> helo <m> action \"in\"\n\
         match !from local for rcpt-to a@b.c action out\nmatch from rdns for any reject\nmatch from auth <m> for local action bk\n\
         match from socket for any action l\nmatch from mail-from <m> for any action d\n",
    );
}

#[test]
fn legacy_rule_without_from_matches_local_and_authenticated() {
    let c = parse_ok("listen on lo\naccept for any relay\n");
    let froms: Vec<&From> = c.rules.iter().map(|r| &r.from.value).collect();
    assert_eq!(froms, vec![&From::Local, &From::Auth(None)]);
}

#[test]
fn modern_match_defaults_to_from_local_for_local() {
    let c = parse_ok("action a mbox\nmatch action a\n");
    assert_eq!(c.rules[0].from, Cond::yes(From::Local));
    assert_eq!(c.rules[0].for_, Cond::yes(For::Local));
}

#[test]
fn macros_expand_where_used() {
    let c = parse_ok("ext = \"eth1\"\nport = 587\nlisten on $ext port $port\n");
    assert_eq!(c.listeners[0].on, ListenOn::Name("eth1".into()));
    assert_eq!(c.listeners[0].port, Some(587));
}

#[test]
fn undefined_macro_is_an_error_at_its_use() {
    assert_eq!(
        first_error("listen on lo\nlisten on $nope\n"),
        "t.conf:2:11: macro \"$nope\" is not defined"
    );
}

#[test]
fn mixing_grammars_is_an_error_at_the_second_grammar() {
    let e = first_error("listen on lo\naccept for any relay\naction a mbox\n");
    assert!(e.starts_with("t.conf:3:1: cannot mix"), "{e}");
    assert!(e.contains("t.conf:2:1"), "{e}");
}

#[test]
fn errors_name_file_line_and_column() {
    assert_eq!(
        first_error("frobnicate yes\n"),
        "t.conf:1:1: unknown keyword \"frobnicate\""
    );
    assert_eq!(
        first_error("listen on lo port 99999\n"),
        "t.conf:1:19: invalid port \"99999\": expected a number from 1 to 65535"
    );
    assert_eq!(
        first_error("table a \"x\n"),
        "t.conf:1:9: unterminated quoted string"
    );
    assert_eq!(
        first_error("listen on lo tag A tag B\n"),
        "t.conf:1:20: tag already specified for this listener"
    );
    assert_eq!(
        first_error("accept from any for any from local relay\n"),
        "t.conf:1:25: from already specified for this rule"
    );
    assert_eq!(
        first_error("accept from any relay\n").split(": ").nth(1),
        Some("rule has no \"for\"")
    );
    assert_eq!(
        first_error("table x sqlite:/x\n"),
        "t.conf:1:9: unsupported table type \"sqlite:\": expected file:, db: or passwd:"
    );
    assert_eq!(
        first_error("listen on lo tls\n").split(':').nth(1),
        Some("1")
    );
    assert_eq!(
        first_error("action a mbox\nmatch for any action b\n"),
        "t.conf:2:15: action \"b\" is not defined"
    );
    assert_eq!(
        first_error("accept for local alias <nope> deliver to mbox\n"),
        "t.conf:1:24: table \"nope\" is not defined"
    );
    assert!(first_error("accept for any relay via ftp://x\n").contains("invalid relay URL"));
    assert!(
        first_error("accept from 10.0.0.0/33 for any relay\n").contains("invalid prefix length")
    );
}

#[test]
fn every_error_of_a_file_is_reported() {
    let p = parse("frobnicate\nlisten on lo port 0\nlisten on lo\naccept for any\n");
    let lines: Vec<u32> = p
        .diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.pos.line)
        .collect();
    assert_eq!(lines, vec![1, 2, 4]);
}

#[test]
fn include_reads_relative_to_the_including_file_and_detects_loops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.conf");
    let b = dir.path().join("b.conf");
    std::fs::write(&a, "listen on lo\ninclude \"b.conf\"\n").expect("write");
    std::fs::write(&b, "listen on 127.0.0.2\ninclude \"a.conf\"\n").expect("write");
    let p = parse_file(&a, &opts());
    assert_eq!(p.config.listeners.len(), 2);
    let e = p.diags.iter().find(|d| d.is_error()).expect("loop error");
    assert_eq!(e.pos.line, 2);
    assert!(e.pos.file.ends_with("b.conf"));
    assert!(e.message.starts_with("include loop:"), "{e}");
}

#[test]
fn durations_and_sizes() {
    assert_eq!(parse_duration("4d"), Some(Duration::from_secs(4 * 86400)));
    assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("x"), None);
    assert_eq!(parse_duration("99999999999999999999w"), None);
    assert_eq!(parse_size("35M"), Some(35 * 1024 * 1024));
    assert_eq!(parse_size("35Q"), None);
    assert_eq!(format_size(35 * 1024 * 1024), "35M");
    assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
}

#[test]
fn reject_rules_take_no_action() {
    let c = parse_ok("reject from any for domain spam.test\n");
    assert_eq!(c.rules[0].verdict, Verdict::Reject);
    assert!(first_error("reject for any deliver to mbox\n").contains("reject rule takes no action"));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const WORDS: &[&str] = &[
        "accept",
        "reject",
        "match",
        "action",
        "from",
        "for",
        "any",
        "local",
        "domain",
        "relay",
        "via",
        "deliver",
        "to",
        "maildir",
        "mbox",
        "listen",
        "on",
        "lo",
        "port",
        "25",
        "tls",
        "table",
        "t",
        "<",
        ">",
        "{",
        "}",
        ",",
        "=",
        "!",
        "\"",
        "\\\n",
        "\n",
        "#",
        "$m",
        "m",
        "include",
        "smtp://x:1",
        "auth",
        "tag",
        "backup",
        "pki",
        "certificate",
        "imap",
        "dkim",
        "sign",
        "filter",
        "chain",
        "%{",
        "userbase",
        "virtual",
        "alias",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let o = ParseOptions::default();
            let mut p = Parser::new(&o);
            let f: Arc<Path> = Arc::from(Path::new("fuzz.conf"));
            p.file(&f, &bytes);
            let _ = p.finish();
        }

        #[test]
        fn random_keyword_soup_never_panics(idx in proptest::collection::vec(0..WORDS.len(), 0..60)) {
            let text: String = idx.iter().map(|i| WORDS[*i]).collect::<Vec<_>>().join(" ");
            let p = parse_str("fuzz.conf", &text, &ParseOptions::default());
            if !p.diags.has_errors() {
                // Whatever parses must print and parse back to itself.
                let printed = print_modern(&p.config);
                let again = parse_str("printed.conf", &printed, &ParseOptions::default());
                prop_assert!(!again.diags.has_errors(), "{printed}");
                prop_assert_eq!(p.config, again.config);
            }
        }
    }
}

#[test]
fn inbound_auth_directives_parse_print_and_round_trip() {
    let c = parse_ok("dmarc reject\nspf fail junk\ndmarc fail junk\n");
    assert!(c.inbound.checks());
    assert!(c.inbound.dmarc_reject.is_some());
    assert!(c.inbound.spf_fail_junk.is_some());
    assert!(c.inbound.dmarc_fail_junk.is_some());
    let printed = print_modern(&c);
    assert!(
        printed.contains("dmarc reject\nspf fail junk\ndmarc fail junk\n"),
        "{printed}"
    );
    assert_round_trip("auth-results on\ndmarc reject\nspf fail junk\ndmarc fail junk\n");
    assert_round_trip("auth-results off\n");
    assert!(!parse_ok("auth-results off\n").inbound.checks());
    assert!(parse_ok("").inbound.checks(), "checks are on by default");
    assert!(!print_modern(&parse_ok("")).contains("auth-results"));
}

#[test]
fn inbound_auth_misuse_is_an_error_at_its_line() {
    for (text, want) in [
        (
            "auth-results\n",
            "t.conf:1:13: expected \"on\" or \"off\" at end of line",
        ),
        ("auth-results maybe\n", "t.conf:1:14: unexpected"),
        ("dmarc\n", "t.conf:1:6: expected \"reject\" or \"fail\""),
        ("dmarc fail\n", "t.conf:1:11: expected \"junk\""),
        ("dmarc reject now\n", "t.conf:1:14: unexpected"),
        ("spf reject\n", "t.conf:1:5: unexpected"),
        (
            "spf fail junk\nspf fail junk\n",
            "t.conf:2:1: spf fail junk already specified at t.conf:1:1",
        ),
        (
            "dmarc reject\ndmarc reject\n",
            "t.conf:2:1: dmarc reject already specified",
        ),
        (
            "auth-results on\nauth-results off\n",
            "t.conf:2:1: auth-results already specified",
        ),
        (
            "auth-results off\ndmarc reject\n",
            "t.conf:2:1: checks of incoming mail are turned off at t.conf:1:1",
        ),
        (
            "spf fail junk\nauth-results off\n",
            "t.conf:2:1: auth-results off contradicts the check policy at t.conf:1:1",
        ),
    ] {
        let e = first_error(text);
        assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
    }
}

#[test]
fn legacy_maildir_takes_junk() {
    let c = parse_ok(
        "accept from any for domain example.org deliver to maildir junk\n\
         accept for local deliver to maildir \"~/Mail\" junk\n",
    );
    let junks: Vec<bool> = c
        .actions
        .iter()
        .map(|a| matches!(a.kind, ActionKind::Maildir { junk: true, .. }))
        .collect();
    assert_eq!(junks, vec![true, true]);
    assert!(first_error("accept for local deliver to mbox junk\n")
        .contains("junk goes after deliver to maildir"));
    assert_round_trip("accept for local deliver to maildir junk\n");
}

const BUILTIN_FILTERS: &str = r#"filter check_dyndns phase connect match rdns regex { '.*\.dyn\..*', '.*\.dsl\..*' } disconnect "550 no residential connections"
filter check_rdns phase connect match !rdns disconnect "550 no rDNS is so 80s"
filter check_fcrdns phase connect match !fcrdns disconnect "550 no FCrDNS is so 80s"
filter rspamd proc-exec "/usr/libexec/opensmtpd/filter-rspamd"
listen on 127.0.0.1 port 2525 filter { check_dyndns, check_rdns, check_fcrdns, rspamd }
"#;

#[test]
fn builtin_filters_and_inline_filter_lists_parse_and_round_trip() {
    use crate::model::{BuiltinDecision, BuiltinPhase, BuiltinTest, FilterKind};
    let c = parse_ok(BUILTIN_FILTERS);
    let find = |n: &str| c.filters.iter().find(|f| f.name == n).map(|f| &f.kind);
    let Some(FilterKind::Builtin(b)) = find("check_dyndns") else {
        panic!("check_dyndns is not a built-in: {:?}", c.filters);
    };
    assert_eq!(b.phase, BuiltinPhase::Connect);
    assert_eq!(b.conds.len(), 1);
    assert!(!b.conds[0].negated);
    let BuiltinTest::Rdns(Some(t)) = &b.conds[0].what else {
        panic!("{:?}", b.conds);
    };
    assert!(t.regex);
    let keys = match &c.table(&t.table.name).map(|d| &d.source) {
        Some(crate::table::TableSource::InlineList(l)) => {
            l.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(keys, [r".*\.dyn\..*", r".*\.dsl\..*"]);
    assert_eq!(
        b.decision,
        BuiltinDecision::Disconnect("550 no residential connections".into())
    );
    let Some(FilterKind::Builtin(b)) = find("check_rdns") else {
        panic!()
    };
    assert!(b.conds[0].negated && b.conds[0].what == BuiltinTest::Rdns(None));
    let name = c.listeners[0].filter.clone().expect("listener filter");
    assert_eq!(
        find(&name),
        Some(&FilterKind::Chain(vec![
            "check_dyndns".into(),
            "check_rdns".into(),
            "check_fcrdns".into(),
            "rspamd".into()
        ]))
    );
    assert_round_trip(BUILTIN_FILTERS);
    let printed = print_modern(&c);
    assert!(
        printed.contains("filter { check_dyndns, check_rdns, check_fcrdns, rspamd }"),
        "{printed}"
    );
    // Every condition and decision, the one-value table form, and a listener after a filter
    // defined later still round-trip.
    assert_round_trip(
        "table nets { 10.0.0.0/8, 192.168.1.1 }\n\
         filter a phase helo match helo evil.test junk\n\
         filter b phase rcpt-to match src <nets> !auth mail-from regex '^x@' rcpt-to { u@example.org } reject \"451 later\"\n\
         filter c phase mail-from match auth <nets> rewrite \"someone@example.org\"\n\
         filter d phase ehlo match !fcrdns report \"no fcrdns\"\n\
         filter e phase commit match rdns <nets> bypass\n\
         listen on lo filter { a, b }\n\
         listen on eth0 filter { a, b }\n\
         filter f phase data match auth regex { '^adm' } disconnect \"421 bye\"\n\
         listen on eth1 filter f\n",
    );
}

#[test]
fn builtin_filter_errors_point_at_the_mistake() {
    let cases = [
        (
            "filter f phase connect match mail-from regex { '.*' } reject \"550 no\"\n",
            "t.conf:1:30: condition \"mail-from\" cannot be tested at phase connect",
        ),
        (
            "filter f phase mail-from match rcpt-to <t> reject \"550 no\"\n",
            "condition \"rcpt-to\" cannot be tested at phase mail-from",
        ),
        (
            "filter f phase connect match !rdns reject \"no rdns\"\n",
            "t.conf:1:43: invalid reject message \"no rdns\": it must start with a 4xx or 5xx code",
        ),
        (
            "filter f phase connect match !rdns disconnect \"250 ok\"\n",
            "invalid disconnect message",
        ),
        (
            "filter f phase connect match !rdns rewrite \"x\"\n",
            "t.conf:1:36: rewrite needs a phase with a parameter",
        ),
        (
            "filter f phase commit match !rdns junk\n",
            "junk cannot be decided at phase commit",
        ),
        (
            "filter f phase quit match !rdns junk\n",
            "t.conf:1:16: unknown filter phase \"quit\"",
        ),
        (
            "filter f phase connect match disconnect \"550 x\"\n",
            "expected a condition",
        ),
        ("filter f phase connect match !rdns\n", "expected a decision"),
        (
            "filter f phase connect match rdns regex { 'a(' } junk\n",
            "t.conf:1:43: invalid regular expression \"a(\"",
        ),
        (
            "filter f phase connect match src <nowhere> junk\n",
            "table \"nowhere\" is not defined",
        ),
        (
            "filter f phase connect match !rdns junk\nlisten on lo filter { f, g }\n",
            "t.conf:2:26: filter \"g\" is not defined",
        ),
        (
            "filter f phase connect match !rdns junk\nlisten on lo filter { f, f }\n",
            "filter \"f\" is already in this chain",
        ),
        (
            "filter f phase connect match !rdns junk\nfilter c chain { f }\nlisten on lo filter { c }\n",
            "filter \"c\" is a chain",
        ),
        (
            "filter f phase connect match !rdns !rdns junk\n",
            "condition \"rdns\" already specified",
        ),
    ];
    for (text, want) in cases {
        let got = first_error(text);
        assert!(got.contains(want), "{text:?}: got {got:?}, want {want:?}");
    }
}
