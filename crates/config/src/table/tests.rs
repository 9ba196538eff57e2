//! Tests across the table modules, with the article's files as fixtures (exact contents,
//! copied from `seed/000_f94fd90a98f97022.txt`), written into temporary directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::diag::{Diagnostic, Severity};

// The article's files, byte for byte (hence not indented).
mod fixtures {
    /// Article code block 5.
    pub const ALIASES_LOCAL: &str = r"# Aliases
mailer-daemon:   postmaster
postmaster:      root
nobody:          root
hostmaster:      root
usenet:          root
news:            root
webmaster:       www
www:             root
ftp:             root
abuse:           root
noc:             root
security:        root
root:            pi
";

    /// Article code block 10.
    pub const ALIASES_RELAYED: &str = r"# Aliases
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
";

    /// Article code block 14.
    pub const ETC_PASSWD_VMAIL: &str = r"vmail:x:5000:5000::/var/vmail:/usr/sbin/nologin
";

    /// Article code block 21.
    pub const ALIASES_CURRENT: &str = r"# Aliases
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

    /// Article code block 22.
    pub const VUSERS_CURRENT: &str = r"# The virtual user
m     5000:5000:/var/vmail/m
";

    /// Article code block 24.
    pub const SMTPDAUTH_FIRST: &str = r"#User smtpd auth
mayeu => mayeu:hashpassword}
";

    /// Article code block 27.
    pub const ALIASES_RECAP: &str = r"# Classic alias
mailer-daemon:   postmaster
postmaster:      m+pipostmaster@6x9.fr
nobody:          root
hostmaster:      root
usenet:          root
news:            root
webmaster:       www
www:             m+piwww@6x9.fr
ftp:             root
abuse:           m+piabuse@6x9.fr
noc:             root
security:        m+pisecurity@6x9.fr
root:            m+piroot@6x9.fr
pi:              m+pi@6x9.fr

# My virtual addresses
tc2.fr:         true
m@tc2.fr        m
mayeu@tc2.fr    m
";

    /// Article code block 28.
    pub const VUSERS_RECAP: &str = r"# The virtual user
m               5000:5000:/var/vmail/m
";

    /// Article code block 29.
    pub const SMTPDAUTH_RECAP: &str = r"# User smtpd auth
mayeu       mayeu:$6$thesupersalt$NTH5FbDaiFCq93bQbvuBnf8tP.tnUSj8djA8UVO2tYlXPf2/    6bbDl8sUDs71Ndx8xmq2n6QcG4Gac50NvHPQM.
";
}
use fixtures::*;

fn conf_pos() -> Pos {
    Pos::new(Arc::from(Path::new("/etc/smtpd.conf")), 2, 15)
}

fn decl(name: &str, source: TableSource) -> TableDecl {
    TableDecl {
        name: name.to_string(),
        source,
        pos: conf_pos().at_col(1),
        source_pos: conf_pos(),
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).expect("write fixture");
    path
}

fn messages(diags: &Diagnostics) -> Vec<String> {
    diags.iter().map(Diagnostic::to_string).collect()
}

/// Loads `content` as a `file:` table named `name`, asserting it loads.
fn load_text(dir: &Path, name: &str, content: &str) -> (Table, PathBuf, Diagnostics) {
    let path = write(dir, name, content);
    let mut diags = Diagnostics::new();
    let table =
        Table::load(&decl(name, TableSource::File(path.clone())), &mut diags).expect("loads");
    (table, path, diags)
}

fn table_of(content: &str) -> Table {
    let dir = tempfile::tempdir().expect("tempdir");
    load_text(dir.path(), "t", content).0
}

fn validated(table: &Table, usage: Usage) -> Vec<String> {
    let mut diags = Diagnostics::new();
    table.validate(usage, &mut diags);
    messages(&diags)
}

fn users(table: &Table, mode: ExpandMode, rcpt: &str) -> Result<Vec<String>, ExpandError> {
    expand(table, mode, rcpt, '+').map(|e| e.users)
}

// --- loading and positions ---------------------------------------------------------------

#[test]
fn article_aliases_load_with_key_and_value_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t, path, diags) = load_text(dir.path(), "aliases", ALIASES_CURRENT);
    assert!(messages(&diags).is_empty());
    assert_eq!(t.len(), 17);
    let root = t.entry("ROOT").expect("root");
    assert_eq!(root.value.as_deref(), Some("m+root@example.org"));
    assert_eq!((root.key_pos.line, root.key_pos.col), (14, 1));
    assert_eq!(
        root.value_pos.as_ref().map(|p| (p.line, p.col)),
        Some((14, 18))
    );
    assert_eq!(root.key_pos.path(), path.as_path());
    let m = t.entry("m@example.org").expect("m");
    assert_eq!(
        m.value_pos.as_ref().map(|p| (p.line, p.col)),
        Some((19, 21))
    );
    assert_eq!(t.get("example.org"), Some("true"));
    assert_eq!(t.served_domains(), vec!["example.org"]);
    assert!(t.serves_domain("EXAMPLE.org"));
    assert_eq!(t.keys().next(), Some("mailer-daemon"));
}

#[test]
fn unreadable_file_is_an_error_at_the_table_statement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aliases");
    let mut diags = Diagnostics::new();
    assert!(Table::load(
        &decl("aliases", TableSource::File(path.clone())),
        &mut diags
    )
    .is_none());
    assert_eq!(
        messages(&diags),
        vec![format!(
            "/etc/smtpd.conf:2:15: table \"aliases\": cannot read {}: No such file or directory (os error 2)",
            path.display()
        )]
    );
}

#[test]
fn duplicate_key_warns_at_the_second_and_the_first_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t, path, diags) = load_text(dir.path(), "a", "root: pi\n# x\n  Root: other\n");
    assert_eq!(
        messages(&diags),
        vec![format!(
            "{p}:3:3: warning: duplicate key \"Root\" in table \"a\" (first at {p}:1:1); the first one is used",
            p = path.display()
        )]
    );
    assert_eq!(t.get("root"), Some("pi"));
    assert_eq!(t.len(), 1);
    assert_eq!(t.entries().len(), 2);
    assert_eq!(t.keys().collect::<Vec<_>>(), vec!["root"]);
}

#[test]
fn inline_tables_load() {
    let mut diags = Diagnostics::new();
    let list = TableSource::InlineList(vec![
        ("example.org".into(), conf_pos()),
        ("Example.net".into(), conf_pos()),
    ]);
    let t = Table::load(&decl("domains", list), &mut diags).expect("loads");
    assert!(t.contains("example.NET"));
    assert_eq!(t.served_domains(), vec!["example.org", "example.net"]);
    let map = TableSource::InlineMap(vec![("relay".into(), "user:pass word".into(), conf_pos())]);
    let t = Table::load(&decl("secrets", map), &mut diags).expect("loads");
    assert_eq!(
        t.secret("RELAY"),
        Some(("user".to_string(), "pass word".to_string()))
    );
    assert!(messages(&diags).is_empty());
}

// --- credentials -------------------------------------------------------------------------

#[test]
fn article_smtpdauth_with_a_space_in_the_hash_is_an_error_on_line_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t, path, _) = load_text(dir.path(), "smtpdauth", SMTPDAUTH_RECAP);
    let mut diags = Diagnostics::new();
    t.validate(Usage::Credentials, &mut diags);
    let list = diags.into_vec();
    assert_eq!(list.len(), 1, "{list:?}");
    let d = &list[0];
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(
        (d.pos.path(), d.pos.line, d.pos.col),
        (path.as_path(), 2, 83)
    );
    assert!(
        d.message
            .starts_with("malformed password hash for \"mayeu\": whitespace"),
        "{}",
        d.message
    );
    // Never a silently truncated entry.
    assert!(t.credentials("mayeu").is_none());
}

#[test]
fn article_first_smtpdauth_is_an_error_not_a_login() {
    let t = table_of(SMTPDAUTH_FIRST);
    let msgs = validated(&t, Usage::Credentials);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0]
            .contains(":2:9: malformed credentials for \"mayeu\": whitespace inside the user name"),
        "{msgs:?}"
    );
    assert!(t.credentials("mayeu").is_none());
}

#[test]
fn good_credentials_in_both_forms_verify() {
    let hash = ownmail_auth::hash_sha512_crypt(b"secret");
    let t = table_of(&format!("mayeu mayeu:{hash}\nbob {hash}\n"));
    assert!(validated(&t, Usage::Credentials).is_empty());
    for user in ["mayeu", "MAYEU", "bob"] {
        let c = t.credentials(user).expect("credential");
        assert!(c.hash.verify(b"secret"));
        assert!(!c.hash.verify(b"wrong"));
    }
    assert_eq!(
        t.credentials("Mayeu").map(|c| c.user),
        Some("mayeu".to_string())
    );
    assert!(t.credentials("nobody").is_none());
}

#[test]
fn plain_text_passwords_warn_and_missing_ones_are_errors() {
    let t = table_of("alice  secret\nbob {PLAIN}pw\ncarol\ndave  eve:$6$x\n");
    let msgs = validated(&t, Usage::Credentials);
    assert_eq!(msgs.len(), 5, "{msgs:?}");
    assert!(msgs[0].ends_with(
        ":1:8: warning: plain-text password for \"alice\"; hash it with \"ownmail encrypt\""
    ));
    assert!(msgs[1].ends_with(
        ":2:5: warning: plain-text password for \"bob\"; hash it with \"ownmail encrypt\""
    ));
    assert!(msgs[2].ends_with(":3:1: no password for \"carol\" (expected USER HASH)"));
    assert!(
        msgs[3].contains(":4:7: warning: the credentials of \"dave\" name another user \"eve\"")
    );
    assert!(
        msgs[4].contains(":4:1") && msgs[4].contains("malformed password hash for \"dave\""),
        "{msgs:?}"
    );
    assert!(t
        .credentials("alice")
        .is_some_and(|c| c.hash.is_plain_text() && c.hash.verify(b"secret")));
}

// --- userbase, secrets -------------------------------------------------------------------

#[test]
fn article_vusers_are_a_userbase() {
    for content in [VUSERS_CURRENT, VUSERS_RECAP] {
        let t = table_of(content);
        assert!(validated(&t, Usage::Userbase).is_empty());
        let u = t.userbase("M").expect("m");
        assert_eq!(
            u,
            UserEntry {
                name: "m".into(),
                uid: 5000,
                gid: 5000,
                home: PathBuf::from("/var/vmail/m"),
                mail: None
            }
        );
    }
}

#[test]
fn userbase_errors_point_at_the_bad_field() {
    let t = table_of("m     5000:50x0:/var/vmail/m\nn 1:2:var/n\no 1:2\np\n");
    let msgs = validated(&t, Usage::Userbase);
    let tails: Vec<&str> = msgs
        .iter()
        .map(|m| m.split_once(':').map_or("", |(_, r)| r))
        .collect();
    assert_eq!(
        tails,
        vec![
            "1:12: userbase entry \"m\": gid \"50x0\" is not a number",
            "2:7: userbase entry \"n\": home \"var/n\" is not an absolute path",
            "3:3: userbase entry \"o\": expected UID:GID:HOME, found \"1:2\"",
            "4:1: no UID:GID:HOME for user \"p\"",
        ]
    );
    assert!(t.userbase("m").is_none());
}

#[test]
fn relay_secrets() {
    let t = table_of("smarthost  user@example.org:pa:ss\nbad nocolon\n");
    assert_eq!(
        t.secret("SMARTHOST"),
        Some(("user@example.org".into(), "pa:ss".into()))
    );
    assert_eq!(t.secret("bad"), None);
    let msgs = validated(&t, Usage::Secrets);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].ends_with(":2:5: relay secret \"bad\": expected USER:PASSWORD"));
}

// --- passwd ------------------------------------------------------------------------------

#[test]
fn passwd_table_is_credentials_and_userbase() {
    let hash = ownmail_auth::hash_sha512_crypt(b"pw");
    let content = format!(
        "# Dovecot users\nm:{{SHA512-CRYPT}}{hash}:5000:5000::/var/vmail/m::userdb_mail=maildir:~/\n{ETC_PASSWD_VMAIL}bad:$6$x y:1:1::/h\nshort:{hash}\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "users", &content);
    let mut diags = Diagnostics::new();
    let t = Table::load(&decl("users", TableSource::Passwd(path)), &mut diags).expect("loads");
    assert!(messages(&diags).is_empty(), "{:?}", messages(&diags));
    assert!(t.is_passwd());
    assert_eq!(t.len(), 4);

    let u = t.userbase("m").expect("m");
    assert_eq!(
        (u.uid, u.gid, u.home.as_path()),
        (5000, 5000, Path::new("/var/vmail/m"))
    );
    assert_eq!(u.mail.as_deref(), Some("maildir:~/"));
    assert!(t.credentials("m").is_some_and(|c| c.hash.verify(b"pw")));
    assert!(
        t.credentials("vmail").is_none(),
        "x means no password login"
    );
    assert!(t.userbase("vmail").is_some());
    assert!(t.userbase("short").is_none());

    let msgs = validated(&t, Usage::Credentials);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].contains(":4:9: malformed password hash for \"bad\": whitespace"),
        "{msgs:?}"
    );
    let msgs = validated(&t, Usage::Userbase);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].contains(":5:1: warning: \"short\" has no uid"),
        "{msgs:?}"
    );
    assert_eq!(validated(&t, Usage::Aliases).len(), 1);
}

// --- aliases and virtual: validation -----------------------------------------------------

#[test]
fn article_alias_files_validate_cleanly() {
    for (content, usage) in [
        (ALIASES_LOCAL, Usage::Aliases),
        (ALIASES_RELAYED, Usage::Aliases),
        (ALIASES_RELAYED, Usage::Virtual),
        (ALIASES_CURRENT, Usage::Virtual),
        (ALIASES_RECAP, Usage::Virtual),
    ] {
        let t = table_of(content);
        assert_eq!(
            validated(&t, usage),
            Vec::<String>::new(),
            "{usage:?}: {content}"
        );
    }
}

#[test]
fn alias_loop_is_an_error_at_the_entry_that_closes_it() {
    let t = table_of("mailer-daemon: root\nroot:   pi\npi:     x, root\n");
    let msgs = validated(&t, Usage::Aliases);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].ends_with(":3:12: alias loop: root -> pi -> root"),
        "{msgs:?}"
    );
    assert_eq!(
        users(&t, ExpandMode::Alias, "mailer-daemon"),
        Err(ExpandError::Loop(vec![
            "root".into(),
            "pi".into(),
            "root".into()
        ]))
    );
}

#[test]
fn virtual_loop_through_addresses_is_detected() {
    let t =
        table_of("example.org: true\na@example.org b@example.org\nb@example.org a+x@example.org\n");
    let msgs = validated(&t, Usage::Virtual);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].ends_with(":3:15: alias loop: a@example.org -> b@example.org -> a@example.org"),
        "{msgs:?}"
    );
}

#[test]
fn alias_target_errors_are_at_their_column() {
    let t = table_of("a: b,, c\nb: error:250 ok\nc: m pi\nroot:pi\nd: :include:rel, |\n");
    let msgs = validated(&t, Usage::Aliases);
    let tails: Vec<String> = msgs
        .iter()
        .map(|m| {
            m.split_once(':')
                .map_or(String::new(), |(_, r)| r.to_string())
        })
        .collect();
    assert_eq!(tails.len(), 6, "{tails:?}");
    assert!(tails[0].starts_with("1:6: invalid target \"\" for \"a\": empty target"));
    assert!(tails[1].starts_with("2:4: invalid target \"error:250 ok\""));
    assert!(
        tails[2].starts_with("3:4: invalid target \"m pi\" for \"c\": whitespace inside a target")
    );
    assert_eq!(
        tails[3],
        "4:1: alias \"root:pi\" has no target (write \"root: pi\")"
    );
    assert!(tails[4].starts_with("5:4: invalid target \":include:rel\""));
    assert!(tails[5].starts_with("5:18: invalid target \"|\""));
}

#[test]
fn address_keys_in_an_alias_table_warn_and_served_addresses_without_entry_warn() {
    let t = table_of("root: m@example.org\nm@example.org m\n");
    let msgs = validated(&t, Usage::Aliases);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains(":2:1: warning: alias tables are looked up by user name"));
    let t = table_of("example.org: true\nroot: ghost@example.org\n");
    let msgs = validated(&t, Usage::Virtual);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].contains(
        ":2:7: warning: \"ghost@example.org\" is in served domain example.org but has no entry"
    ));
}

// --- expansion ---------------------------------------------------------------------------

#[test]
fn article_current_aliases_expand_as_a_virtual_table() {
    let t = table_of(ALIASES_CURRENT);
    let v = ExpandMode::Virtual;
    assert_eq!(
        users(&t, v, "postmaster@example.org"),
        Ok(vec!["m".to_string()])
    );
    assert_eq!(users(&t, v, "mayeu@example.org"), Ok(vec!["m".to_string()]));
    assert_eq!(users(&t, v, "MAYEU@Example.ORG"), Ok(vec!["m".to_string()]));
    assert_eq!(users(&t, v, "root"), Ok(vec!["m".to_string()]));
    assert_eq!(users(&t, v, "mailer-daemon"), Ok(vec!["m".to_string()]));
    assert_eq!(
        users(&t, v, "nobody-here@example.org"),
        Err(ExpandError::NotFound)
    );
    let e = expand(&t, v, "m+postmaster@example.org", '+').expect("expands");
    assert_eq!(
        e,
        Expansion {
            users: vec!["m".into()],
            ..Expansion::default()
        }
    );
}

#[test]
fn sub_addressing_uses_the_exact_entry_first_and_the_delimiter() {
    let t = table_of("example.org: true\nm@example.org m\nm+spam@example.org /dev/null\nj: jay\n");
    let e = expand(&t, ExpandMode::Virtual, "m+spam@example.org", '+').expect("exact");
    assert_eq!(e.files, vec!["/dev/null"]);
    assert!(e.users.is_empty());
    assert_eq!(
        users(&t, ExpandMode::Virtual, "m+other@example.org"),
        Ok(vec!["m".into()])
    );
    assert_eq!(
        users(&t, ExpandMode::Virtual, "m-other@example.org"),
        Err(ExpandError::NotFound)
    );
    assert_eq!(
        users(&t, ExpandMode::Alias, "j-list"),
        Err(ExpandError::NotFound)
    );
    assert_eq!(
        expand(&t, ExpandMode::Alias, "j-list-x", '-').map(|e| e.users),
        Ok(vec!["jay".into()])
    );
}

#[test]
fn alias_mode_relays_addresses_outside_served_domains() {
    let t = table_of(ALIASES_RELAYED);
    let e = expand(&t, ExpandMode::Alias, "mailer-daemon", '+').expect("expands");
    assert_eq!(e.addresses, vec!["m+postmaster@example.org"]);
    assert!(e.users.is_empty());
    let e = expand(&t, ExpandMode::Alias, "root@localhost", '+').expect("domain ignored");
    assert_eq!(e.addresses, vec!["m+root@example.org"]);
    let t = table_of(ALIASES_LOCAL);
    assert_eq!(
        users(&t, ExpandMode::Alias, "webmaster"),
        Ok(vec!["pi".into()])
    );
    let t = table_of(ALIASES_RECAP);
    let e = expand(&t, ExpandMode::Virtual, "root@tc2.fr", '+').expect("expands");
    assert_eq!(e.addresses, vec!["m+piroot@6x9.fr"]);
    assert_eq!(
        users(&t, ExpandMode::Virtual, "mayeu@tc2.fr"),
        Ok(vec!["m".into()])
    );
}

#[test]
fn catch_all_self_reference_diamonds_and_all_target_kinds() {
    let t = table_of(concat!(
        "example.org: true\n",
        "@example.org postmaster\n",
        "postmaster: m\n",
        "m: m, m@elsewhere.net, M@ELSEWHERE.NET\n",
        "list: a, b\na: m\nb: m, \"|/usr/bin/vacation m\", /var/log/list, :include:/etc/list, error:550 5.1.1 gone\n",
    ));
    assert!(
        validated(&t, Usage::Virtual).is_empty(),
        "{:?}",
        validated(&t, Usage::Virtual)
    );
    let e = expand(&t, ExpandMode::Virtual, "anyone@example.org", '+').expect("catch-all");
    assert_eq!(e.users, vec!["m"]);
    assert_eq!(e.addresses, vec!["m@elsewhere.net"]);
    let e = expand(&t, ExpandMode::Virtual, "list@example.org", '+').expect("diamond");
    assert_eq!(
        e,
        Expansion {
            users: vec!["m".into()],
            addresses: vec!["m@elsewhere.net".into()],
            files: vec!["/var/log/list".into()],
            commands: vec!["/usr/bin/vacation m".into()],
            includes: vec!["/etc/list".into()],
            errors: vec![(550, "5.1.1 gone".into())],
        }
    );
}

#[test]
fn expansion_is_bounded() {
    let mut deep = String::new();
    for i in 0..40 {
        deep.push_str(&format!("a{i}: a{}\n", i + 1));
    }
    let t = table_of(&deep);
    assert_eq!(
        users(&t, ExpandMode::Alias, "a0"),
        Err(ExpandError::TooDeep)
    );
    assert_eq!(users(&t, ExpandMode::Alias, "a20"), Ok(vec!["a40".into()]));
    let msgs = validated(&t, Usage::Aliases);
    assert_eq!(msgs.len(), 1, "{msgs:?}");

    let wide: Vec<String> = (0..=MAX_RESULTS).map(|i| format!("u{i}")).collect();
    let t = table_of(&format!("big: {}\n", wide.join(", ")));
    assert_eq!(
        users(&t, ExpandMode::Alias, "big"),
        Err(ExpandError::TooMany)
    );

    // Many paths to the same entries: 2^30 paths if walked naively.
    let mut fan = String::new();
    for i in 0..30 {
        fan.push_str(&format!("f{i}: f{n}, f{n}+x\n", n = i + 1));
    }
    let t = table_of(&fan);
    assert_eq!(
        users(&t, ExpandMode::Alias, "f0"),
        Err(ExpandError::TooMany)
    );
}

// --- db: makemap and loading -------------------------------------------------------------

fn load_db(db: &Path) -> (Option<Table>, Vec<String>) {
    let mut diags = Diagnostics::new();
    let t = Table::load(&decl("t", TableSource::Db(db.to_path_buf())), &mut diags);
    (t, messages(&diags))
}

#[test]
fn makemap_round_trip_keeps_source_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (from_text, source, _) = load_text(dir.path(), "aliases", ALIASES_CURRENT);
    let mut diags = Diagnostics::new();
    let db = makemap(&source, MakemapKind::Map, &mut diags).expect("makemap");
    assert!(messages(&diags).is_empty());
    assert_eq!(db, dir.path().join("aliases.db"));
    let text = fs::read_to_string(&db).expect("db");
    assert!(text.starts_with("# ownmail-db 1\nsource\t"), "{text}");

    let (t, msgs) = load_db(&db);
    assert!(msgs.is_empty(), "{msgs:?}");
    let t = t.expect("loads");
    assert_eq!(t.entries(), from_text.entries());
    let canonical = fs::canonicalize(&source).expect("canonical");
    for (a, b) in t.entries().iter().zip(from_text.entries()) {
        assert_eq!(a.key_pos.path(), canonical.as_path());
        assert_eq!(
            (a.key_pos.line, a.key_pos.col),
            (b.key_pos.line, b.key_pos.col)
        );
        assert_eq!(
            a.value_pos.as_ref().map(|p| p.col),
            b.value_pos.as_ref().map(|p| p.col)
        );
    }
    assert_eq!(
        users(&t, ExpandMode::Virtual, "postmaster@example.org"),
        Ok(vec!["m".into()])
    );
}

#[test]
fn makemap_of_the_article_smtpdauth_still_errors_on_its_line_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = write(dir.path(), "smtpdauth", SMTPDAUTH_RECAP);
    let mut diags = Diagnostics::new();
    let db = makemap(&source, MakemapKind::Map, &mut diags).expect("makemap");
    let (t, msgs) = load_db(&db);
    assert!(msgs.is_empty(), "{msgs:?}");
    let t = t.expect("loads");
    let msgs = validated(&t, Usage::Credentials);
    let canonical = fs::canonicalize(&source).expect("canonical");
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(
        msgs[0].starts_with(&format!(
            "{}:2:83: malformed password hash for \"mayeu\"",
            canonical.display()
        )),
        "{msgs:?}"
    );
    assert!(t.credentials("mayeu").is_none());
}

#[test]
fn makemap_keeps_the_source_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let source = write(dir.path(), "smtpdauth", "mayeu $6$x\n");
    fs::set_permissions(&source, fs::Permissions::from_mode(0o640)).expect("chmod");
    let db = makemap(&source, MakemapKind::Map, &mut Diagnostics::new()).expect("makemap");
    let mode = fs::metadata(&db).expect("db").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

#[test]
fn makemap_set_and_aliases_kinds_check_their_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = write(dir.path(), "domains", "example.org\nexample.net oops\n");
    let mut diags = Diagnostics::new();
    assert_eq!(makemap(&source, MakemapKind::Set, &mut diags), Err(()));
    assert!(messages(&diags)[0]
        .ends_with("domains:2:13: unexpected value after \"example.net\": a set holds keys only"));
    assert!(!dir.path().join("domains.db").exists());

    let source = write(dir.path(), "aliases", ALIASES_LOCAL);
    let mut diags = Diagnostics::new();
    assert!(makemap(&source, MakemapKind::Aliases, &mut diags).is_ok());
    assert!(messages(&diags).is_empty());
    let source = write(dir.path(), "loops", "root: pi\npi: root\n");
    assert_eq!(
        makemap(&source, MakemapKind::Aliases, &mut Diagnostics::new()),
        Err(())
    );
    let mut diags = Diagnostics::new();
    assert_eq!(
        makemap(&dir.path().join("missing"), MakemapKind::Map, &mut diags),
        Err(())
    );
    assert!(messages(&diags)[0].contains("cannot read"));
}

#[test]
fn berkeley_db_is_not_ours_and_the_source_is_read_with_one_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = write(dir.path(), "aliases", ALIASES_CURRENT);
    let db = dir.path().join("aliases.db");
    let mut bdb = vec![0u8; 8192];
    bdb[12..16].copy_from_slice(&[0x61, 0x15, 0x06, 0x00]);
    bdb[100..110].copy_from_slice(b"postmaster");
    fs::write(&db, &bdb).expect("write");
    let (t, msgs) = load_db(&db);
    assert_eq!(
        msgs,
        vec![format!(
            "/etc/smtpd.conf:2:15: warning: table \"t\": {} is not an ownmail database; reading {s} instead — run \"ownmail makemap {s}\"",
            db.display(),
            s = source.display()
        )]
    );
    let t = t.expect("source read");
    assert_eq!(t.len(), 17);
    assert_eq!(t.entry("root").map(|e| e.key_pos.line), Some(14));
}

#[test]
fn missing_db_reads_the_source_or_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("vusers.db");
    let (t, msgs) = load_db(&db);
    assert!(t.is_none());
    assert_eq!(msgs.len(), 1);
    let src = dir.path().join("vusers");
    assert_eq!(
        msgs[0],
        format!(
            "/etc/smtpd.conf:2:15: table \"t\": {} is missing, and there is no {s} to read instead; run \"ownmail makemap {s}\"",
            db.display(),
            s = src.display()
        )
    );

    let source = write(dir.path(), "vusers", VUSERS_CURRENT);
    let (t, msgs) = load_db(&db);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains(&format!(
        "{} is missing; reading {} instead",
        db.display(),
        source.display()
    )));
    assert!(t.is_some_and(|t| t.userbase("m").is_some()));

    let not_db = write(dir.path(), "plain.txt", "x y\n");
    let (t, msgs) = load_db(&not_db);
    assert!(t.is_none());
    assert!(msgs[0].ends_with("plain.txt is not an ownmail database; make one with \"ownmail makemap SOURCE\" (it writes SOURCE.db)"), "{msgs:?}");
}

#[test]
fn stale_db_is_used_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = write(dir.path(), "vusers", VUSERS_CURRENT);
    let db = makemap(&source, MakemapKind::Map, &mut Diagnostics::new()).expect("makemap");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&db)
        .and_then(|f| f.set_modified(old))
        .expect("touch");
    let (t, msgs) = load_db(&db);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].contains("is older than"), "{msgs:?}");
    assert!(t.is_some());
}

// --- robustness --------------------------------------------------------------------------

/// A small deterministic generator, so that a failure reproduces.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, alphabet: &[u8]) -> Vec<u8> {
        let len = (self.next() % 200) as usize;
        (0..len)
            .map(|_| {
                let r = self.next();
                if r.is_multiple_of(4) {
                    (r >> 8) as u8
                } else {
                    alphabet
                        .get((r >> 8) as usize % alphabet.len())
                        .copied()
                        .unwrap_or(b'x')
                }
            })
            .collect()
    }
}

#[test]
fn random_bytes_never_panic_the_parsers() {
    let alphabet = b"ab@.:+,#|/\\\"$ {}\t\n\r:519e";
    let file: Arc<Path> = Arc::from(Path::new("/fuzz"));
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let input = rng.bytes(alphabet);
        let mut diags = Diagnostics::new();
        let entries = file::parse(&input, &file, file::Mode::Map, &mut diags);
        let _ = file::parse(&input, &file, file::Mode::Set, &mut diags);
        let (p_entries, records) = passwd::parse(&input, &file, &mut diags);
        let t = Table::build("fuzz", conf_pos(), Format::Text, entries, &mut diags);
        let p = Table::build(
            "fuzz",
            conf_pos(),
            Format::Passwd(records),
            p_entries,
            &mut diags,
        );
        for table in [&t, &p] {
            for usage in [
                Usage::Aliases,
                Usage::Virtual,
                Usage::Userbase,
                Usage::Credentials,
                Usage::Secrets,
                Usage::List,
            ] {
                table.validate(usage, &mut diags);
            }
            let keys: Vec<String> = table.keys().map(str::to_string).collect();
            for key in keys {
                let _ = expand(table, ExpandMode::Virtual, &key, '+');
                let _ = expand(table, ExpandMode::Alias, &key, '+');
                let _ = table.credentials(&key);
                let _ = table.userbase(&key);
                let _ = table.secret(&key);
            }
        }
    }
}

#[test]
fn a_binary_file_named_as_a_text_table_is_one_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aliases.db");
    fs::write(&path, b"\x00\x06\x15\x61\n\xff\xfe\nroot\x00pi\n").expect("write");
    let mut diags = Diagnostics::new();
    assert!(Table::load(
        &decl("aliases", TableSource::File(path.clone())),
        &mut diags
    )
    .is_none());
    assert_eq!(
        messages(&diags),
        vec![format!(
            "/etc/smtpd.conf:2:15: table \"aliases\": {} is a binary file, not a text table (a database? name it as db:PATH)",
            path.display()
        )]
    );
}

#[test]
fn debug_output_never_shows_values() {
    let t = table_of(SMTPDAUTH_RECAP);
    let shown = format!("{t:?}");
    assert!(!shown.contains("thesupersalt"), "{shown}");
    assert!(
        shown.contains("smtpdauth") || shown.contains("\"t\""),
        "{shown}"
    );
}
