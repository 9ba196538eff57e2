use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use ownmail_config::table::Table;
use ownmail_config::{parse_str, Diagnostics, ParseOptions};

use super::*;

const ALIASES: &str = "# Aliases
mailer-daemon:   postmaster
postmaster:      m+postmaster@example.org
nobody:          root
hostmaster:      root
usenet:          root
news:            root
webmaster:       www
www:             m+www@example.org
ftp:             root
abuse:           m+abuse@example.org
noc:             root
security:        m+security@example.org
root:            m+root@example.org
pi:              m+pi@example.org

# My virtual addresses
example.org:        true
m@example.org       m
mayeu@example.org   m
";

/// The article's version 2 configuration with its tables in `dir`.
fn article_v2(dir: &Path) -> Ruleset {
    std::fs::write(dir.join("aliases"), ALIASES).expect("write");
    std::fs::write(
        dir.join("vusers"),
        "# The virtual user\nm     5000:5000:/var/vmail/m\n",
    )
    .expect("write");
    let conf = format!(
        "table aliases file:{d}/aliases\ntable vusers file:{d}/vusers\nlisten on lo\n\
         accept from any for domain example.org virtual aliases userbase vusers deliver to maildir \"~/\"\n\
         accept for local virtual aliases deliver to mbox\naccept for any relay\n",
        d = dir.display()
    );
    ruleset(&conf)
}

fn ruleset(conf: &str) -> Ruleset {
    let parsed = parse_str("t.conf", conf, &ParseOptions::default());
    assert!(!parsed.diags.has_errors(), "{:?}", parsed.diags);
    let mut diags = Diagnostics::new();
    let mut tables = HashMap::new();
    for decl in &parsed.config.tables {
        let t = Table::load(decl, &mut diags).expect("table loads");
        tables.insert(decl.name.clone(), t);
    }
    Ruleset::new(
        Arc::new(parsed.config),
        Arc::new(tables),
        "mx.example.org",
        &["127.0.0.1".parse().expect("ip")],
    )
}

fn outside() -> SessionInfo {
    SessionInfo {
        client: Some("198.51.100.7".parse().expect("ip")),
        helo: "client.test".into(),
        ..SessionInfo::default()
    }
}

fn local() -> SessionInfo {
    SessionInfo {
        client: Some("127.0.0.1".parse().expect("ip")),
        local: true,
        helo: "localhost".into(),
        ..SessionInfo::default()
    }
}

fn sender() -> ReversePath {
    ReversePath::Address(Address::parse("someone@sender.test").expect("addr"))
}

fn dests(rs: &Ruleset, s: &SessionInfo, rcpt: &str) -> Result<Vec<Destination>, Refusal> {
    match rs.route(s, &sender(), &Address::parse(rcpt).expect("addr")) {
        RcptDecision::Accept { destinations, .. } => Ok(destinations),
        RcptDecision::Refuse(r) => Err(r),
    }
}

fn m_maildir() -> Destination {
    Destination::Maildir {
        user: LocalUser {
            name: "m".into(),
            uid: 5000,
            gid: 5000,
            home: "/var/vmail/m".into(),
        },
        path: "/var/vmail/m/".into(),
        junk: false,
    }
}

#[test]
fn virtual_users_and_their_aliases_land_in_ms_maildir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rs = article_v2(dir.path());
    for rcpt in [
        "m@example.org",
        "mayeu@example.org",
        "m+tag@example.org",
        "MaYeU@Example.ORG",
        "postmaster@example.org",
    ] {
        assert_eq!(
            dests(&rs, &outside(), rcpt),
            Ok(vec![m_maildir()]),
            "{rcpt}"
        );
    }
}

#[test]
fn local_root_follows_aliases_through_the_rules_into_the_same_maildir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rs = article_v2(dir.path());
    assert_eq!(
        dests(&rs, &local(), "root@localhost"),
        Ok(vec![m_maildir()])
    );
    assert_eq!(
        dests(&rs, &local(), "mailer-daemon@localhost"),
        Ok(vec![m_maildir()])
    );
    assert_eq!(
        dests(&rs, &local(), "root@mx.example.org"),
        Ok(vec![m_maildir()])
    );
}

#[test]
fn unknown_user_in_a_served_domain_is_refused_at_rcpt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rs = article_v2(dir.path());
    let r = dests(&rs, &outside(), "nobody-here@example.org").expect_err("refused");
    assert_eq!((r.code, r.enhanced), (550, "5.1.1"));
}

#[test]
fn outsiders_cannot_relay_but_local_and_authenticated_clients_can() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rs = article_v2(dir.path());
    let r = dests(&rs, &outside(), "victim@elsewhere.test").expect_err("no open relay");
    assert_eq!((r.code, r.enhanced), (550, "5.7.1"));
    // An outsider cannot reach local users through `for local` either.
    assert!(dests(&rs, &outside(), "root@localhost").is_err());
    let relay = Destination::Relay {
        action: "relay3".into(),
        to: Address::parse("victim@elsewhere.test").expect("addr"),
    };
    assert_eq!(
        dests(&rs, &local(), "victim@elsewhere.test"),
        Ok(vec![relay.clone()])
    );
    let authed = SessionInfo {
        auth_user: Some("mayeu".into()),
        ..outside()
    };
    assert_eq!(
        dests(&rs, &authed, "victim@elsewhere.test"),
        Ok(vec![relay])
    );
}

#[test]
fn alias_loops_are_refused_not_followed_forever() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("a"),
        "a@x.test b@x.test\nb@x.test a@x.test\nx.test: true\n",
    )
    .expect("write");
    let conf = format!(
        "table a file:{}/a\naction v maildir virtual <a>\nmatch from any for domain x.test action v\n",
        dir.path().display()
    );
    let rs = ruleset(&conf);
    let r = dests(&rs, &outside(), "a@x.test").expect_err("loop");
    assert_eq!((r.code, r.enhanced), (550, "5.4.6"));
}

#[test]
fn mbox_and_lmtp_get_the_expanded_local_user() {
    let conf = "action l lmtp \"127.0.0.1:24\"\naction b mbox\nmatch from any for domain lmtp.test action l\nmatch from any for local action b\n";
    let rs = ruleset(conf);
    assert_eq!(
        dests(&rs, &outside(), "root@lmtp.test"),
        Ok(vec![Destination::Lmtp {
            dest: "127.0.0.1:24".into(),
            rcpt: "root".into()
        }])
    );
    match dests(&rs, &outside(), "Root@localhost")
        .expect("root exists")
        .as_slice()
    {
        [Destination::Mbox { user, path }] => {
            assert_eq!(user.uid, 0);
            assert_eq!(path, Path::new("/var/mail/root"));
        }
        other => panic!("{other:?}"),
    }
    assert!(dests(&rs, &outside(), "no-such-user-xyz@localhost").is_err());
}

#[test]
fn the_article_login_mayeu_owns_what_is_delivered_to_m() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rs = article_v2(dir.path());
    let a = |s: &str| Address::parse(s).expect("addr");
    assert_eq!(
        rs.login_mailboxes("mayeu").into_iter().collect::<Vec<_>>(),
        vec!["m".to_string()]
    );
    for own in [
        "m@example.org",
        "mayeu@example.org",
        "m+tag@example.org",
        "Mayeu@Example.org",
        "root@localhost",
    ] {
        assert!(rs.sender_owned("mayeu", &a(own), None), "{own}");
    }
    for other in ["nobody-here@example.org", "x@elsewhere.test"] {
        assert!(!rs.sender_owned("mayeu", &a(other), None), "{other}");
    }
}

#[test]
fn a_senders_table_lists_what_a_login_may_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("senders"),
        "mayeu m@example.org, @other.test\n",
    )
    .expect("write");
    let conf = format!(
        "table senders file:{}/senders\naction a mbox\nmatch from any for local action a\n",
        dir.path().display()
    );
    let rs = ruleset(&conf);
    let a = |s: &str| Address::parse(s).expect("addr");
    assert!(rs.sender_owned("mayeu", &a("m@example.org"), Some("senders")));
    assert!(rs.sender_owned("mayeu", &a("anyone@other.test"), Some("senders")));
    assert!(!rs.sender_owned("mayeu", &a("mayeu@example.org"), Some("senders")));
    assert!(!rs.sender_owned("stranger", &a("m@example.org"), Some("senders")));
}

#[test]
fn passwords_are_checked_against_the_credentials_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("auth"),
        "# User smtpd auth\nmayeu       mayeu:$6$thesupersalt$NTH5FbDaiFCq93bQbvuBnf8tP.tnUSj8djA8UVO2tYlXPf2/6bbDl8sUDs71Ndx8xmq2n6QcG4Gac50NvHPQM.\n",
    )
    .expect("write");
    let conf = format!(
        "table auth file:{}/auth\nlisten on lo auth <auth>\n",
        dir.path().display()
    );
    let rs = ruleset(&conf);
    assert!(rs.check_password("auth", "mayeu", b"mysupersecretpassword"));
    assert!(!rs.check_password("auth", "mayeu", b"wrong"));
    assert!(!rs.check_password("auth", "nobody", b"mysupersecretpassword"));
    assert!(!rs.check_password("nosuchtable", "mayeu", b"mysupersecretpassword"));
}

#[test]
fn imap_logins_find_the_maildir_the_rules_deliver_to() {
    let t = tempfile::tempdir().expect("tmp");
    let rs = article_v2(t.path());
    // No imap lines: the rules decide both the user and the Maildir (`~/` of vusers).
    let m = rs.imap_account("m").expect("m has a mailbox");
    assert_eq!(m.maildir, Path::new("/var/vmail/m/"));
    assert_eq!((m.user.uid, m.user.gid), (5000, 5000));
    // A login that is an alias of m owns m's mailbox.
    let mayeu = rs.imap_account("mayeu@example.org").expect("alias login");
    assert_eq!(mayeu.maildir, m.maildir);
    assert!(rs.imap_account("../etc").is_none());
    assert!(rs.imap_account("").is_none());
}

#[test]
fn imap_userdb_mail_overrides_imap_mailbox() {
    let t = tempfile::tempdir().expect("tmp");
    let hash = "{PLAIN}secret";
    std::fs::write(
        t.path().join("users"),
        format!(
            "m:{hash}:5000:5000::/var/vmail/m::userdb_mail=maildir:~/Mail\n\
             n:{hash}:5001:5001::/var/vmail/n::\n"
        ),
    )
    .expect("write");
    let rs = ruleset(&format!(
        "table users passwd:{}/users\nlisten on 127.0.0.1\n\
         action \"v\" maildir \"~/\" userbase <users>\n\
         match from any for domain \"example.org\" action \"v\"\n\
         imap listen on 127.0.0.1\nimap auth <users>\nimap userbase <users>\n\
         imap mailbox \"~/Box\"\n",
        t.path().display()
    ));
    let m = rs.imap_login("m", b"secret").expect("m logs in");
    assert_eq!(m.maildir, Path::new("/var/vmail/m/Mail"));
    let n = rs.imap_login("n", b"secret").expect("n logs in");
    assert_eq!(n.maildir, Path::new("/var/vmail/n/Box"));
    assert!(rs.imap_login("n", b"wrong").is_none());
    assert!(rs.imap_login("nobody-here", b"secret").is_none());
    assert_eq!(rs.imap_auth_table().as_deref(), Some("users"));
}
