//! Response encoding: status lines, codes, untagged data, string choice, mailbox names.

use ownmail_imap_proto::{
    mutf7_decode, mutf7_encode, write_astring, write_nstring, write_string, Address, Code, Data,
    Date, DateTime, EncodeOptions, Envelope, FetchValue, Flag, MailboxAttr, Response, Section,
    SectionText, SequenceSet, Status, StatusItem,
};

const REV1: EncodeOptions = EncodeOptions { utf8: false };
const UTF8: EncodeOptions = EncodeOptions { utf8: true };

fn enc(r: Response) -> String {
    String::from_utf8_lossy(&r.encode(REV1)).into_owned()
}

fn data(d: Data) -> String {
    enc(Response::Data(d))
}

fn set(s: &str) -> SequenceSet {
    SequenceSet::parse(s.as_bytes()).expect("set")
}

fn tagged(code: Code, text: &str) -> String {
    enc(Response::Tagged {
        tag: "a1".into(),
        status: Status::Ok,
        code: Some(code),
        text: text.into(),
    })
}

#[test]
fn tagged_status_responses() {
    assert_eq!(
        enc(Response::ok("a1", "LOGIN completed")),
        "a1 OK LOGIN completed\r\n"
    );
    assert_eq!(
        enc(Response::no("a2", "no such mailbox")),
        "a2 NO no such mailbox\r\n"
    );
    assert_eq!(enc(Response::bad(None, "junk")), "* BAD junk\r\n");
    assert_eq!(enc(Response::bad(Some("x"), "")), "x BAD done\r\n");
}

#[test]
fn text_cannot_inject_a_line() {
    assert_eq!(
        enc(Response::ok("a1", "hi\r\n* 1 EXISTS")),
        "a1 OK hi  * 1 EXISTS\r\n"
    );
}

#[test]
fn response_codes() {
    let cases = [
        (
            Code::Capability(vec!["IMAP4rev1".into(), "IDLE".into()]),
            "[CAPABILITY IMAP4rev1 IDLE]",
        ),
        (
            Code::PermanentFlags {
                flags: vec![Flag::Deleted, Flag::Seen],
                new_keywords: true,
            },
            "[PERMANENTFLAGS (\\Deleted \\Seen \\*)]",
        ),
        (Code::UidValidity(3857529045), "[UIDVALIDITY 3857529045]"),
        (Code::UidNext(4392), "[UIDNEXT 4392]"),
        (
            Code::AppendUid {
                uid_validity: 38505,
                uids: set("3955"),
            },
            "[APPENDUID 38505 3955]",
        ),
        (
            Code::CopyUid {
                uid_validity: 38505,
                source: set("304,319:320"),
                dest: set("3956:3958"),
            },
            "[COPYUID 38505 304,319:320 3956:3958]",
        ),
        (Code::ReadWrite, "[READ-WRITE]"),
        (Code::ReadOnly, "[READ-ONLY]"),
        (Code::TryCreate, "[TRYCREATE]"),
        (Code::Alert, "[ALERT]"),
        (Code::NonExistent, "[NONEXISTENT]"),
        (Code::AlreadyExists, "[ALREADYEXISTS]"),
        (
            Code::HighestModSeq(715194045007),
            "[HIGHESTMODSEQ 715194045007]",
        ),
        (
            Code::Modified(SequenceSet::parse(b"7,9").expect("set")),
            "[MODIFIED 7,9]",
        ),
        (Code::Closed, "[CLOSED]"),
    ];
    for (code, want) in cases {
        assert_eq!(tagged(code, "x"), format!("a1 OK {want} x\r\n"));
    }
}

#[test]
fn untagged_status_and_continuation() {
    assert_eq!(
        enc(Response::Untagged {
            status: Status::Bye,
            code: None,
            text: "Logging out".into()
        }),
        "* BYE Logging out\r\n"
    );
    assert_eq!(
        enc(Response::Untagged {
            status: Status::PreAuth,
            code: None,
            text: "hi".into()
        }),
        "* PREAUTH hi\r\n"
    );
    assert_eq!(enc(Response::Continuation("Ready".into())), "+ Ready\r\n");
}

#[test]
fn untagged_data() {
    assert_eq!(
        data(Data::Capability(vec![
            "IMAP4rev1".into(),
            "IMAP4rev2".into()
        ])),
        "* CAPABILITY IMAP4rev1 IMAP4rev2\r\n"
    );
    assert_eq!(
        data(Data::List {
            attrs: vec![MailboxAttr::HasNoChildren, MailboxAttr::Sent],
            delimiter: Some('/'),
            mailbox: "Sent".into(),
            child_subscribed: false,
        }),
        "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"
    );
    assert_eq!(
        data(Data::List {
            attrs: vec![],
            delimiter: None,
            mailbox: "Foo Bar".into(),
            child_subscribed: true,
        }),
        "* LIST () NIL \"Foo Bar\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
    );
    assert_eq!(
        data(Data::Lsub {
            attrs: vec![],
            delimiter: Some('.'),
            mailbox: "INBOX".into(),
        }),
        "* LSUB () \".\" INBOX\r\n"
    );
    assert_eq!(
        data(Data::Status {
            mailbox: "INBOX".into(),
            items: vec![(StatusItem::Messages, 17), (StatusItem::HighestModSeq, 9)],
        }),
        "* STATUS INBOX (MESSAGES 17 HIGHESTMODSEQ 9)\r\n"
    );
    assert_eq!(
        data(Data::Flags(vec![
            Flag::Answered,
            Flag::Keyword("$Junk".into())
        ])),
        "* FLAGS (\\Answered $Junk)\r\n"
    );
    assert_eq!(data(Data::Exists(23)), "* 23 EXISTS\r\n");
    assert_eq!(data(Data::Recent(1)), "* 1 RECENT\r\n");
    assert_eq!(data(Data::Expunge(3)), "* 3 EXPUNGE\r\n");
    assert_eq!(
        data(Data::Vanished {
            earlier: true,
            uids: set("41,43:116")
        }),
        "* VANISHED (EARLIER) 41,43:116\r\n"
    );
    assert_eq!(
        data(Data::Search {
            numbers: vec![2, 84, 882],
            modseq: None
        }),
        "* SEARCH 2 84 882\r\n"
    );
    assert_eq!(
        data(Data::Search {
            numbers: vec![],
            modseq: None
        }),
        "* SEARCH\r\n"
    );
    assert_eq!(
        data(Data::ESearch {
            tag: Some("A285".into()),
            uid: true,
            min: Some(7),
            max: Some(3800),
            count: None,
            all: None,
            modseq: None,
        }),
        "* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800\r\n"
    );
    assert_eq!(
        data(Data::ESearch {
            tag: Some("A1".into()),
            uid: false,
            min: None,
            max: None,
            count: Some(3),
            all: Some(set("1:3")),
            modseq: None,
        }),
        "* ESEARCH (TAG \"A1\") ALL 1:3 COUNT 3\r\n"
    );
    assert_eq!(
        data(Data::Enabled(vec!["CONDSTORE".into()])),
        "* ENABLED CONDSTORE\r\n"
    );
    assert_eq!(
        data(Data::Id(Some(vec![
            ("name".into(), Some("ownmail".into())),
            ("os".into(), None)
        ]))),
        "* ID (\"name\" \"ownmail\" \"os\" NIL)\r\n"
    );
    assert_eq!(data(Data::Id(None)), "* ID NIL\r\n");
    assert_eq!(
        data(Data::Namespace {
            personal: vec![("".into(), Some('/'))],
            other: vec![],
            shared: vec![],
        }),
        "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
    );
}

#[test]
fn fetch_data() {
    let d = Data::Fetch {
        seq: 12,
        items: vec![
            FetchValue::Flags(vec![Flag::Seen]),
            FetchValue::Uid(4827313),
            FetchValue::InternalDate(DateTime {
                date: Date::new(1996, 7, 7).expect("date"),
                hour: 2,
                minute: 44,
                second: 25,
                zone_minutes: -420,
            }),
            FetchValue::Rfc822Size(4286),
            FetchValue::ModSeq(624140003),
            FetchValue::BodySection {
                section: Section {
                    part: vec![],
                    text: Some(SectionText::HeaderFields(vec!["From".into()])),
                },
                origin: None,
                data: Some(b"From: a@b\r\n\r\n".to_vec()),
            },
            FetchValue::BodySection {
                section: Section {
                    part: vec![1, 2],
                    text: None,
                },
                origin: Some(0),
                data: Some(b"hi".to_vec()),
            },
            FetchValue::Binary {
                part: vec![1],
                data: Some(b"a\0b".to_vec()),
            },
            FetchValue::BinarySize {
                part: vec![1],
                size: 3,
            },
        ],
    };
    assert_eq!(
        data(d),
        "* 12 FETCH (FLAGS (\\Seen) UID 4827313 INTERNALDATE \" 7-Jul-1996 02:44:25 -0700\" \
         RFC822.SIZE 4286 MODSEQ (624140003) BODY[HEADER.FIELDS (From)] {13}\r\nFrom: a@b\r\n\r\n \
         BODY[1.2]<0> \"hi\" BINARY[1] ~{3}\r\na\0b BINARY.SIZE[1] 3)\r\n"
    );
}

#[test]
fn envelope_data() {
    let e = Envelope {
        date: Some(b"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)".to_vec()),
        subject: Some(b"IMAP4rev1 WG mtg summary and minutes".to_vec()),
        from: vec![Address {
            name: Some(b"Terry Gray".to_vec()),
            adl: None,
            mailbox: Some(b"gray".to_vec()),
            host: Some(b"cac.washington.edu".to_vec()),
        }],
        message_id: Some(b"<B27397-0100000@cac.washington.edu>".to_vec()),
        ..Envelope::default()
    };
    assert_eq!(
        data(Data::Fetch {
            seq: 1,
            items: vec![FetchValue::Envelope(Box::new(e))]
        }),
        "* 1 FETCH (ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \
         \"IMAP4rev1 WG mtg summary and minutes\" ((\"Terry Gray\" NIL \"gray\" \
         \"cac.washington.edu\")) NIL NIL NIL NIL NIL NIL \
         \"<B27397-0100000@cac.washington.edu>\"))\r\n"
    );
}

fn s(f: impl Fn(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    f(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn string_encoder_chooses_atom_quoted_or_literal() {
    assert_eq!(s(|o| write_astring(o, b"INBOX")), "INBOX");
    assert_eq!(s(|o| write_astring(o, b"a]b")), "a]b");
    assert_eq!(s(|o| write_astring(o, b"")), "\"\"");
    assert_eq!(s(|o| write_astring(o, b"NIL")), "\"NIL\"");
    assert_eq!(s(|o| write_astring(o, b"two words")), "\"two words\"");
    assert_eq!(s(|o| write_astring(o, b"a%b")), "\"a%b\"");
    assert_eq!(s(|o| write_string(o, b"atom")), "\"atom\"");
    assert_eq!(s(|o| write_string(o, b"q\"b\\s")), "\"q\\\"b\\\\s\"");
    assert_eq!(s(|o| write_string(o, b"a\r\nb")), "{4}\r\na\r\nb");
    assert_eq!(s(|o| write_string(o, b"a\nb")), "{3}\r\na\nb");
    assert_eq!(
        s(|o| write_string(o, "caf\u{e9}".as_bytes())),
        "{5}\r\ncaf\u{e9}"
    );
    let long = "x".repeat(2000);
    assert_eq!(
        s(|o| write_string(o, long.as_bytes())),
        format!("{{2000}}\r\n{long}")
    );
    assert_eq!(s(|o| write_nstring(o, None)), "NIL");
    assert_eq!(s(|o| write_nstring(o, Some(b"NIL"))), "\"NIL\"");
}

#[test]
fn mailbox_names_follow_the_session_encoding() {
    let list = |name: &str, opts| {
        String::from_utf8_lossy(
            &Response::Data(Data::List {
                attrs: vec![],
                delimiter: Some('/'),
                mailbox: name.into(),
                child_subscribed: false,
            })
            .encode(opts),
        )
        .into_owned()
    };
    assert_eq!(
        list(
            "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}",
            REV1
        ),
        "* LIST () \"/\" ~peter/mail/&U,BTFw-/&ZeVnLIqe-\r\n"
    );
    assert_eq!(
        list("Entw\u{fc}rfe", UTF8),
        "* LIST () \"/\" \"Entw\u{fc}rfe\"\r\n"
    );
    assert_eq!(
        list("Entw\u{fc}rfe", REV1),
        "* LIST () \"/\" Entw&APw-rfe\r\n"
    );
}

#[test]
fn mutf7_rfc3501_examples_round_trip() {
    let cases = [
        (
            "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}",
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
        ),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("&", "&-"),
        ("INBOX", "INBOX"),
        ("\u{1f600}", "&2D3eAA-"),
        ("Entw\u{fc}rfe", "Entw&APw-rfe"),
        ("", ""),
    ];
    for (utf8, wire) in cases {
        assert_eq!(mutf7_encode(utf8), wire);
        assert_eq!(mutf7_decode(wire).as_deref(), Ok(utf8));
    }
}

#[test]
fn mutf7_refuses_non_canonical_names() {
    for bad in [
        "&",         // unterminated
        "&U,BTFw",   // unterminated
        "&AGE-",     // encodes "a", printable ASCII
        "&Jjo!-",    // bad base64 character
        "&U,BTF-",   // bad length
        "&2D0-",     // lone surrogate
        "caf\u{e9}", // 8-bit outside a shift
        "a\tb",      // control character
    ] {
        assert!(mutf7_decode(bad).is_err(), "{bad:?} should be refused");
    }
}
