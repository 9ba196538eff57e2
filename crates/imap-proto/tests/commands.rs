//! Vector table for `parse_command`: every input is parsed directly and, with CRLF appended,
//! through `CommandReader` (answering continuations), and must give the same result.

use ownmail_imap_proto::{
    parse_command, CommandBody as C, CommandReader, Date, DateTime, FetchAttr as F, Flag,
    ListReturn, ListSelect, Mailbox, MailboxAttr, Partial, Password, ReadState, SearchKey as K,
    SearchReturn, Section, SectionText, SelectParam, SequenceSet, StatusItem, StoreMode,
};

enum Want {
    Ok(C),
    /// A word the error message must contain.
    Err(&'static str),
}

fn set(s: &str) -> SequenceSet {
    SequenceSet::parse(s.as_bytes()).expect("test set")
}

fn mb(s: &str) -> Mailbox {
    Mailbox::new(s)
}

fn date(y: u16, m: u8, d: u8) -> Date {
    Date::new(y, m, d).expect("test date")
}

fn search(criteria: K) -> C {
    C::Search {
        uid: false,
        returns: None,
        charset: None,
        criteria,
    }
}

fn fetch(s: &str, items: Vec<F>) -> C {
    C::Fetch {
        uid: false,
        set: set(s),
        items,
        changed_since: None,
        vanished: false,
    }
}

fn section(part: &[u32], text: Option<SectionText>) -> Section {
    Section {
        part: part.to_vec(),
        text,
    }
}

fn body(peek: bool, section: Section, partial: Option<Partial>) -> F {
    F::BodySection {
        peek,
        section,
        partial,
    }
}

fn list(reference: &str, pattern: &str) -> C {
    C::List {
        selection: vec![],
        reference: reference.into(),
        patterns: vec![pattern.into()],
        returns: vec![],
    }
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn cases() -> Vec<(&'static str, Want)> {
    use Want::{Err as E, Ok as O};
    vec![
        ("a1 CAPABILITY", O(C::Capability)),
        ("a1 capability", O(C::Capability)),
        ("a1 NOOP", O(C::Noop)),
        ("a1 LOGOUT", O(C::Logout)),
        ("a1 STARTTLS", O(C::StartTls)),
        ("a1 NOOP extra", E("Unexpected")),
        ("a1 FROB", E("Unknown command")),
        ("a1", E("space")),
        ("", E("tag")),
        ("+ NOOP", E("tag")),
        (
            "a1 AUTHENTICATE PLAIN",
            O(C::Authenticate {
                mechanism: "PLAIN".into(),
                initial: None,
            }),
        ),
        (
            "a1 AUTHENTICATE plain AGpvZQBzZWNyZXQ=",
            O(C::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some(b("AGpvZQBzZWNyZXQ=")),
            }),
        ),
        (
            "a1 AUTHENTICATE PLAIN =",
            O(C::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some(vec![]),
            }),
        ),
        (
            "a1 LOGIN joe secret",
            O(C::Login {
                username: "joe".into(),
                password: Password(b("secret")),
            }),
        ),
        (
            "a1 LOGIN \"joe\" \"se c\\\"r\\\\et\"",
            O(C::Login {
                username: "joe".into(),
                password: Password(b("se c\"r\\et")),
            }),
        ),
        (
            "a1 LOGIN {3}\r\njoe {6+}\r\nsecret",
            O(C::Login {
                username: "joe".into(),
                password: Password(b("secret")),
            }),
        ),
        ("a1 LOGIN joe", E("space")),
        ("a1 LOGIN \"joe", E("Unterminated")),
        ("a1 LOGIN joe {10}\r\nabc", E("shorter")),
        (
            "a1 ENABLE CONDSTORE UTF8=ACCEPT",
            O(C::Enable(vec!["CONDSTORE".into(), "UTF8=ACCEPT".into()])),
        ),
        ("a1 ENABLE", E("ENABLE")),
        (
            "a1 SELECT inbox",
            O(C::Select {
                mailbox: mb("INBOX"),
                params: vec![],
            }),
        ),
        (
            "a1 SELECT \"Sent Items\" (CONDSTORE)",
            O(C::Select {
                mailbox: mb("Sent Items"),
                params: vec![SelectParam::CondStore],
            }),
        ),
        (
            "a1 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
            O(C::Select {
                mailbox: mb("INBOX"),
                params: vec![SelectParam::QResync {
                    uid_validity: 67890007,
                    modseq: 20050715194045000,
                    known_uids: Some(set("41,43:211,214:541")),
                    seq_match: None,
                }],
            }),
        ),
        (
            // RFC 7162 §3.2.5.2 example: known UIDs and the sequence-match data.
            "a1 EXAMINE INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:20 41:60)))",
            O(C::Examine {
                mailbox: mb("INBOX"),
                params: vec![SelectParam::QResync {
                    uid_validity: 67890007,
                    modseq: 90060115194045000,
                    known_uids: Some(set("41:211,214:541")),
                    seq_match: Some((set("1:20"), set("41:60"))),
                }],
            }),
        ),
        (
            "a1 SELECT INBOX (QRESYNC (1 5 (1,2 7,9)) CONDSTORE)",
            O(C::Select {
                mailbox: mb("INBOX"),
                params: vec![
                    SelectParam::QResync {
                        uid_validity: 1,
                        modseq: 5,
                        known_uids: None,
                        seq_match: Some((set("1,2"), set("7,9"))),
                    },
                    SelectParam::CondStore,
                ],
            }),
        ),
        ("a1 SELECT INBOX (QRESYNC (0 5))", E("")),
        ("a1 SELECT INBOX (QRESYNC (1))", E("")),
        ("a1 SELECT INBOX (QRESYNC (1 5 1:3 (1:2)))", E("")),
        (
            "a1 EXAMINE Archive",
            O(C::Examine {
                mailbox: mb("Archive"),
                params: vec![],
            }),
        ),
        ("a1 SELECT", E("space")),
        (
            "a1 CREATE Lists/rust",
            O(C::Create {
                mailbox: mb("Lists/rust"),
                special_use: vec![],
            }),
        ),
        (
            "a1 CREATE MySent (USE (\\Sent))",
            O(C::Create {
                mailbox: mb("MySent"),
                special_use: vec![MailboxAttr::Sent],
            }),
        ),
        ("a1 DELETE Foo", O(C::Delete(mb("Foo")))),
        (
            "a1 RENAME Foo \"Bar Baz\"",
            O(C::Rename {
                from: mb("Foo"),
                to: mb("Bar Baz"),
            }),
        ),
        ("a1 SUBSCRIBE Foo", O(C::Subscribe(mb("Foo")))),
        ("a1 UNSUBSCRIBE Foo", O(C::Unsubscribe(mb("Foo")))),
        ("a1 LIST \"\" \"*\"", O(list("", "*"))),
        ("a1 LIST \"\" *", O(list("", "*"))),
        ("a1 LIST ~/Mail/ %", O(list("~/Mail/", "%"))),
        ("a1 LIST \"\" \"\"", O(list("", ""))),
        (
            "a1 LIST (SUBSCRIBED SPECIAL-USE) \"\" \"*\"",
            O(C::List {
                selection: vec![ListSelect::Subscribed, ListSelect::SpecialUse],
                reference: "".into(),
                patterns: vec!["*".into()],
                returns: vec![],
            }),
        ),
        (
            "a1 LIST \"\" \"*\" RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))",
            O(C::List {
                selection: vec![],
                reference: "".into(),
                patterns: vec!["*".into()],
                returns: vec![
                    ListReturn::Children,
                    ListReturn::SpecialUse,
                    ListReturn::Status(vec![StatusItem::Messages, StatusItem::Unseen]),
                ],
            }),
        ),
        (
            "a1 LIST () \"\" (INBOX \"Sent\") RETURN ()",
            O(C::List {
                selection: vec![],
                reference: "".into(),
                patterns: vec!["INBOX".into(), "Sent".into()],
                returns: vec![],
            }),
        ),
        ("a1 LIST \"\" \"*\" RETURN (STATUS (BOGUS))", E("status item")),
        (
            "a1 LSUB \"\" *",
            O(C::Lsub {
                reference: "".into(),
                pattern: "*".into(),
            }),
        ),
        ("a1 NAMESPACE", O(C::Namespace)),
        (
            "a1 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT SIZE HIGHESTMODSEQ DELETED)",
            O(C::Status {
                mailbox: mb("INBOX"),
                items: vec![
                    StatusItem::Messages,
                    StatusItem::UidNext,
                    StatusItem::UidValidity,
                    StatusItem::Unseen,
                    StatusItem::Recent,
                    StatusItem::Size,
                    StatusItem::HighestModSeq,
                    StatusItem::Deleted,
                ],
            }),
        ),
        ("a1 STATUS INBOX ()", E("keyword")),
        ("a1 STATUS INBOX MESSAGES", E("(")),
        (
            "a1 APPEND Drafts {5}\r\nHello",
            O(C::Append {
                mailbox: mb("Drafts"),
                flags: vec![],
                date: None,
                message: b("Hello"),
                binary: false,
            }),
        ),
        (
            "a1 APPEND Drafts (\\Seen \\Draft $Forwarded) \" 7-Feb-1994 21:52:25 -0800\" {5+}\r\nHello",
            O(C::Append {
                mailbox: mb("Drafts"),
                flags: vec![Flag::Seen, Flag::Draft, Flag::Keyword("$Forwarded".into())],
                date: Some(DateTime {
                    date: date(1994, 2, 7),
                    hour: 21,
                    minute: 52,
                    second: 25,
                    zone_minutes: -480,
                }),
                message: b("Hello"),
                binary: false,
            }),
        ),
        (
            "a1 APPEND INBOX ~{3}\r\na\0b",
            O(C::Append {
                mailbox: mb("INBOX"),
                flags: vec![],
                date: None,
                message: b"a\0b".to_vec(),
                binary: true,
            }),
        ),
        (
            "a1 APPEND INBOX () {0}\r\n",
            O(C::Append {
                mailbox: mb("INBOX"),
                flags: vec![],
                date: None,
                message: vec![],
                binary: false,
            }),
        ),
        ("a1 APPEND INBOX \"hello\"", E("date")),
        ("a1 APPEND INBOX (\\Recent) {1}\r\nx", E("Recent")),
        ("a1 APPEND INBOX \"31-Feb-2024 00:00:00 +0000\" {1}\r\nx", E("Invalid date")),
        ("a1 IDLE", O(C::Idle)),
        ("a1 CHECK", O(C::Check)),
        ("a1 CLOSE", O(C::Close)),
        ("a1 UNSELECT", O(C::Unselect)),
        ("a1 EXPUNGE", O(C::Expunge)),
        ("a1 UID EXPUNGE 3000:3002", O(C::UidExpunge(set("3000:3002")))),
        ("a1 UID EXPUNGE", E("space")),
        ("a1 SEARCH ALL", O(search(K::All))),
        (
            "a1 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"",
            O(search(K::And(vec![
                K::Flagged,
                K::Since(date(1994, 2, 1)),
                K::Not(Box::new(K::From(b("Smith")))),
            ]))),
        ),
        (
            "a1 SEARCH OR (UNSEEN DELETED) 1:5,7",
            O(search(K::Or(
                Box::new(K::And(vec![K::Unseen, K::Deleted])),
                Box::new(K::SequenceSet(set("1:5,7"))),
            ))),
        ),
        (
            "a1 SEARCH ANSWERED BCC a BEFORE \"1-Jan-2020\" BODY b CC c DELETED DRAFT",
            O(search(K::And(vec![
                K::Answered,
                K::Bcc(b("a")),
                K::Before(date(2020, 1, 1)),
                K::Body(b("b")),
                K::Cc(b("c")),
                K::Deleted,
                K::Draft,
            ]))),
        ),
        (
            "a1 SEARCH HEADER X-Spam yes KEYWORD $Junk LARGER 100 NEW OLD ON 29-Feb-2024 RECENT SEEN",
            O(search(K::And(vec![
                K::Header("X-Spam".into(), b("yes")),
                K::Keyword("$Junk".into()),
                K::Larger(100),
                K::New,
                K::Old,
                K::On(date(2024, 2, 29)),
                K::Recent,
                K::Seen,
            ]))),
        ),
        (
            "a1 SEARCH SENTBEFORE 1-Jan-2000 SENTON 2-Jan-2000 SENTSINCE 3-Jan-2000 SMALLER 5 SUBJECT hi TEXT {3}\r\nx y TO z",
            O(search(K::And(vec![
                K::SentBefore(date(2000, 1, 1)),
                K::SentOn(date(2000, 1, 2)),
                K::SentSince(date(2000, 1, 3)),
                K::Smaller(5),
                K::Subject(b("hi")),
                K::Text(b("x y")),
                K::To(b("z")),
            ]))),
        ),
        (
            "a1 SEARCH UID 1:* UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $Junk UNSEEN",
            O(search(K::And(vec![
                K::Uid(set("1:*")),
                K::Unanswered,
                K::Undeleted,
                K::Undraft,
                K::Unflagged,
                K::Unkeyword("$Junk".into()),
                K::Unseen,
            ]))),
        ),
        (
            "a1 SEARCH MODSEQ 620162338",
            O(search(K::ModSeq {
                entry: None,
                modseq: 620162338,
            })),
        ),
        (
            "a1 SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338",
            O(search(K::ModSeq {
                entry: Some(("/flags/\\draft".into(), "ALL".into())),
                modseq: 620162338,
            })),
        ),
        (
            "a1 SEARCH CHARSET UTF-8 SUBJECT {5}\r\n\u{e9}t\u{e9}",
            O(C::Search {
                uid: false,
                returns: None,
                charset: Some("UTF-8".into()),
                criteria: K::Subject("\u{e9}t\u{e9}".as_bytes().to_vec()),
            }),
        ),
        (
            "a1 SEARCH RETURN (MIN MAX COUNT) UNSEEN",
            O(C::Search {
                uid: false,
                returns: Some(vec![SearchReturn::Min, SearchReturn::Max, SearchReturn::Count]),
                charset: None,
                criteria: K::Unseen,
            }),
        ),
        (
            "a1 UID SEARCH RETURN () ALL",
            O(C::Search {
                uid: true,
                returns: Some(vec![]),
                charset: None,
                criteria: K::All,
            }),
        ),
        ("a1 SEARCH", E("space")),
        ("a1 SEARCH FOO", E("Unknown search key")),
        ("a1 SEARCH BEFORE 32-Jan-2020", E("Invalid date")),
        ("a1 SEARCH (SEEN", E(")")),
        ("a1 SEARCH 0", E("Zero")),
        ("a1 SEARCH RETURN (BOGUS) ALL", E("RETURN option")),
        ("a1 FETCH 1 FLAGS", O(fetch("1", vec![F::Flags]))),
        (
            "a1 FETCH 1:* ALL",
            O(fetch(
                "1:*",
                vec![F::Flags, F::InternalDate, F::Rfc822Size, F::Envelope],
            )),
        ),
        (
            "a1 FETCH 2 FAST",
            O(fetch("2", vec![F::Flags, F::InternalDate, F::Rfc822Size])),
        ),
        (
            "a1 FETCH 2 FULL",
            O(fetch(
                "2",
                vec![F::Flags, F::InternalDate, F::Rfc822Size, F::Envelope, F::Body],
            )),
        ),
        (
            "a1 FETCH 5:3 (UID RFC822.SIZE RFC822 RFC822.HEADER RFC822.TEXT ENVELOPE BODY BODYSTRUCTURE INTERNALDATE MODSEQ)",
            O(fetch(
                "3:5",
                vec![
                    F::Uid,
                    F::Rfc822Size,
                    F::Rfc822,
                    F::Rfc822Header,
                    F::Rfc822Text,
                    F::Envelope,
                    F::Body,
                    F::BodyStructure,
                    F::InternalDate,
                    F::ModSeq,
                ],
            )),
        ),
        (
            "a1 FETCH 1 BODY[]",
            O(fetch("1", vec![body(false, section(&[], None), None)])),
        ),
        (
            "a1 FETCH 1 (BODY.PEEK[HEADER.FIELDS (From Subject \"X-Odd\")] BODY[1.2.3.MIME])",
            O(fetch(
                "1",
                vec![
                    body(
                        true,
                        section(
                            &[],
                            Some(SectionText::HeaderFields(vec![
                                "From".into(),
                                "Subject".into(),
                                "X-Odd".into(),
                            ])),
                        ),
                        None,
                    ),
                    body(false, section(&[1, 2, 3], Some(SectionText::Mime)), None),
                ],
            )),
        ),
        (
            "a1 FETCH 1 (BODY[HEADER.FIELDS.NOT (Received)] BODY[TEXT]<0.2048> BODY[2]<10.5> BODY[HEADER] BODY[1.TEXT])",
            O(fetch(
                "1",
                vec![
                    body(
                        false,
                        section(&[], Some(SectionText::HeaderFieldsNot(vec!["Received".into()]))),
                        None,
                    ),
                    body(
                        false,
                        section(&[], Some(SectionText::Text)),
                        Some(Partial {
                            offset: 0,
                            length: 2048,
                        }),
                    ),
                    body(
                        false,
                        section(&[2], None),
                        Some(Partial {
                            offset: 10,
                            length: 5,
                        }),
                    ),
                    body(false, section(&[], Some(SectionText::Header)), None),
                    body(false, section(&[1], Some(SectionText::Text)), None),
                ],
            )),
        ),
        (
            "a1 FETCH 1 (BINARY[1] BINARY.PEEK[1.2]<0.100> BINARY.SIZE[2])",
            O(fetch(
                "1",
                vec![
                    F::Binary {
                        peek: false,
                        part: vec![1],
                        partial: None,
                    },
                    F::Binary {
                        peek: true,
                        part: vec![1, 2],
                        partial: Some(Partial {
                            offset: 0,
                            length: 100,
                        }),
                    },
                    F::BinarySize { part: vec![2] },
                ],
            )),
        ),
        (
            "a1 FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",
            O(C::Fetch {
                uid: false,
                set: set("1:*"),
                items: vec![F::Flags],
                changed_since: Some(12345),
                vanished: false,
            }),
        ),
        (
            "a1 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
            O(C::Fetch {
                uid: true,
                set: set("300:500"),
                items: vec![F::Flags],
                changed_since: Some(12345),
                vanished: true,
            }),
        ),
        ("a1 FETCH 1 (FLAGS) (VANISHED)", E("VANISHED")),
        ("a1 FETCH 1 BODY[MIME]", E("section")),
        ("a1 FETCH 1 BODY[1", E("]")),
        ("a1 FETCH 1 FROB", E("Unknown FETCH item")),
        ("a1 FETCH 1 (FLAGS", E("space")),
        ("a1 FETCH 1:x FLAGS", E("number")),
        ("a1 FETCH 99999999999 FLAGS", E("too large")),
        (
            "a1 STORE 2:4 +FLAGS (\\Deleted)",
            O(C::Store {
                uid: false,
                set: set("2:4"),
                mode: StoreMode::Add,
                silent: false,
                flags: vec![Flag::Deleted],
                unchanged_since: None,
            }),
        ),
        (
            "a1 STORE 1 -FLAGS.SILENT (\\Seen $Junk)",
            O(C::Store {
                uid: false,
                set: set("1"),
                mode: StoreMode::Remove,
                silent: true,
                flags: vec![Flag::Seen, Flag::Keyword("$Junk".into())],
                unchanged_since: None,
            }),
        ),
        (
            "a1 UID STORE 7 (UNCHANGEDSINCE 320162338) FLAGS \\Answered",
            O(C::Store {
                uid: true,
                set: set("7"),
                mode: StoreMode::Replace,
                silent: false,
                flags: vec![Flag::Answered],
                unchanged_since: Some(320162338),
            }),
        ),
        (
            "a1 STORE 1 FLAGS ()",
            O(C::Store {
                uid: false,
                set: set("1"),
                mode: StoreMode::Replace,
                silent: false,
                flags: vec![],
                unchanged_since: None,
            }),
        ),
        ("a1 STORE 1 +FLAGZ (\\Seen)", E("STORE item")),
        ("a1 STORE 1 +FLAGS (\\Recent)", E("Recent")),
        (
            "a1 COPY 2:4 MEETING",
            O(C::Copy {
                uid: false,
                set: set("2:4"),
                mailbox: mb("MEETING"),
            }),
        ),
        (
            "a1 UID COPY 1,3:5 Trash",
            O(C::Copy {
                uid: true,
                set: set("1,3:5"),
                mailbox: mb("Trash"),
            }),
        ),
        (
            "a1 MOVE *:4 Archive",
            O(C::Move {
                uid: false,
                set: set("4:*"),
                mailbox: mb("Archive"),
            }),
        ),
        (
            "a1 UID MOVE 42 \"Junk\"",
            O(C::Move {
                uid: true,
                set: set("42"),
                mailbox: mb("Junk"),
            }),
        ),
        ("a1 UID FROB 1", E("Unknown UID command")),
        ("a1 ID NIL", O(C::Id(None))),
        (
            "a1 ID (\"name\" \"Thunderbird\" \"version\" NIL)",
            O(C::Id(Some(vec![
                ("name".into(), Some("Thunderbird".into())),
                ("version".into(), None),
            ]))),
        ),
        ("a1 ID (\"name\")", E("space")),
        (
            "a1 COMPRESS DEFLATE",
            O(C::Compress {
                mechanism: "DEFLATE".into(),
            }),
        ),
    ]
}

/// Feeds `input` to a fresh reader, sending the continuation whenever asked.
fn read_whole(input: &[u8]) -> ReadState {
    let mut r = CommandReader::new(4096, 4096);
    let mut rest = input;
    loop {
        let (n, state) = r.feed(rest);
        rest = rest.get(n..).unwrap_or_default();
        match state {
            ReadState::NeedContinuation => continue,
            ReadState::NeedMore if rest.is_empty() => return ReadState::NeedMore,
            ReadState::NeedMore => continue,
            other => return other,
        }
    }
}

#[test]
fn command_vectors() {
    let cases = cases();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    for (input, want) in cases {
        let got = parse_command(input.as_bytes());
        match (&want, &got) {
            (Want::Ok(body), Ok(cmd)) => {
                assert_eq!(&cmd.body, body, "input {input:?}");
                assert_eq!(cmd.tag, "a1", "input {input:?}");
            }
            (Want::Err(word), Err(e)) => {
                assert!(
                    e.message.contains(word),
                    "input {input:?}: error {:?} lacks {word:?}",
                    e.message
                );
                if input.starts_with("a1 ") {
                    assert_eq!(e.tag.as_deref(), Some("a1"), "input {input:?}");
                }
            }
            (_, got) => panic!("input {input:?}: got {got:?}"),
        }
        // The same through the reader, with CRLF and with a bare LF.
        for ending in ["\r\n", "\n"] {
            let wire = format!("{input}{ending}");
            match read_whole(wire.as_bytes()) {
                ReadState::Command(bytes) => {
                    assert_eq!(parse_command(&bytes), got, "input {input:?} via reader")
                }
                other => {
                    // Only a literal shorter than announced may leave the reader waiting.
                    assert!(
                        matches!(want, Want::Err("shorter")),
                        "input {input:?}: reader gave {other:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn password_debug_is_redacted() {
    let cmd = parse_command(b"a1 LOGIN joe hunter2").expect("login");
    assert!(!format!("{cmd:?}").contains("hunter2"));
}

#[test]
fn sequence_sets_normalise_and_resolve() {
    let s = set("5:3,*:7,9");
    assert_eq!(s.to_string(), "3:5,7:*,9");
    assert!(s.contains(4, 100));
    assert!(s.contains(100, 100));
    assert!(!s.contains(6, 100));
    assert!(SequenceSet::parse(b"0").is_none());
    assert!(SequenceSet::parse(b"1:").is_none());
    assert!(SequenceSet::parse(b"1,").is_none());
    let long = vec!["1"; 5000].join(",");
    assert!(SequenceSet::parse(long.as_bytes()).is_none());
    assert_eq!(
        SequenceSet::from_numbers(&[5, 1, 2, 3, 9, 10]).map(|s| s.to_string()),
        Some("1:3,5,9:10".into())
    );
}

#[test]
fn deep_search_nesting_is_refused_not_overflowed() {
    let deep = format!("a1 SEARCH {}ALL{}", "(".repeat(10_000), ")".repeat(10_000));
    let e = parse_command(deep.as_bytes()).expect_err("too deep");
    assert!(e.message.contains("deeply"));
    let nots = format!("a1 SEARCH {}ALL", "NOT ".repeat(10_000));
    assert!(parse_command(nots.as_bytes()).is_err());
}

#[test]
fn idle_done_is_recognised() {
    assert!(ownmail_imap_proto::is_idle_done(b"DONE"));
    assert!(ownmail_imap_proto::is_idle_done(b"done"));
    assert!(!ownmail_imap_proto::is_idle_done(b"a1 DONE"));
}
