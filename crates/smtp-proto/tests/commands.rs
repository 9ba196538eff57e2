//! Vector table for `parse_command`: every line is tried with CRLF, with a bare LF (both through
//! `take_line`) and bare, and must give the same result.

use ownmail_smtp_proto::{parse_command, take_line, Command, Line, MailParams, RcptParams};
use ownmail_types::{Address, BodyType, Notify, Ret, ReversePath};

/// What a line must parse to.
enum Want {
    Ok(Command),
    /// Reply code and enhanced code of the error.
    Err(u16, &'static str),
}

fn addr(local: &str, domain: &str) -> Address {
    Address::new_unchecked(local, domain)
}

fn mail(local: &str, domain: &str) -> Command {
    Command::Mail {
        from: ReversePath::Address(addr(local, domain)),
        params: MailParams::default(),
    }
}

fn mail_with(local: &str, domain: &str, params: MailParams) -> Command {
    Command::Mail {
        from: ReversePath::Address(addr(local, domain)),
        params,
    }
}

fn rcpt(local: &str, domain: &str) -> Command {
    Command::Rcpt {
        to: addr(local, domain),
        params: RcptParams::default(),
    }
}

fn rcpt_with(local: &str, domain: &str, params: RcptParams) -> Command {
    Command::Rcpt {
        to: addr(local, domain),
        params,
    }
}

fn notify(never: bool, success: bool, failure: bool, delay: bool) -> Option<Notify> {
    Some(Notify {
        never,
        success,
        failure,
        delay,
    })
}

fn vectors() -> Vec<(&'static [u8], Want)> {
    use Want::{Err, Ok};
    vec![
        // HELO / EHLO / LHLO
        (
            b"HELO mx.example.org",
            Ok(Command::Helo("mx.example.org".into())),
        ),
        (
            b"helo mx.example.org",
            Ok(Command::Helo("mx.example.org".into())),
        ),
        (b"EHLO [192.0.2.1]", Ok(Command::Ehlo("[192.0.2.1]".into()))),
        (
            b"EHLO [IPv6:2001:db8::1]",
            Ok(Command::Ehlo("[IPv6:2001:db8::1]".into())),
        ),
        (
            b"eHlO client_1.example",
            Ok(Command::Ehlo("client_1.example".into())),
        ),
        (
            b"EHLO   spaced.example   ",
            Ok(Command::Ehlo("spaced.example".into())),
        ),
        (b"LHLO localhost", Ok(Command::Lhlo("localhost".into()))),
        (b"EHLO", Err(501, "5.5.4")),
        (b"HELO ", Err(501, "5.5.4")),
        (b"EHLO two words", Err(501, "5.5.4")),
        (b"EHLO bad..domain", Err(501, "5.5.4")),
        (b"EHLO bad/char", Err(501, "5.5.4")),
        (b"EHLO []", Err(501, "5.5.4")),
        // MAIL
        (
            b"MAIL FROM:<user@example.org>",
            Ok(mail("user", "example.org")),
        ),
        (
            b"mail from:<User@Example.ORG>",
            Ok(mail("User", "example.org")),
        ),
        (
            b"MAIL FROM: <user@example.org>",
            Ok(mail("user", "example.org")),
        ),
        (
            b"MAIL  FROM:   <user@example.org>",
            Ok(mail("user", "example.org")),
        ),
        (
            b"MAIL FROM:<>",
            Ok(Command::Mail {
                from: ReversePath::Null,
                params: MailParams::default(),
            }),
        ),
        (
            b"MAIL FROM:<@relay.example,@other.example:user@example.org>",
            Ok(mail("user", "example.org")),
        ),
        (
            b"MAIL FROM:<\"john doe\"@example.org>",
            Ok(mail("\"john doe\"", "example.org")),
        ),
        (
            b"MAIL FROM:<\"a\\\"b\"@example.org>",
            Ok(mail("\"a\\\"b\"", "example.org")),
        ),
        (
            b"MAIL FROM:<first..last@example.org>",
            Ok(mail("first..last", "example.org")),
        ),
        (
            b"MAIL FROM:<user+tag=x@example.org>",
            Ok(mail("user+tag=x", "example.org")),
        ),
        (
            b"MAIL FROM:<user@[192.0.2.1]>",
            Ok(mail("user", "[192.0.2.1]")),
        ),
        (
            "MAIL FROM:<jöran@exämple.org> SMTPUTF8".as_bytes(),
            Ok(mail_with(
                "jöran",
                "exämple.org",
                MailParams {
                    smtputf8: true,
                    ..Default::default()
                },
            )),
        ),
        (
            b"MAIL FROM:<a@b.example> SIZE=12345 BODY=8BITMIME",
            Ok(mail_with(
                "a",
                "b.example",
                MailParams {
                    size: Some(12345),
                    body: Some(BodyType::EightBitMime),
                    ..Default::default()
                },
            )),
        ),
        (
            b"MAIL FROM:<a@b.example> size=0 body=binarymime smtputf8 ret=hdrs",
            Ok(mail_with(
                "a",
                "b.example",
                MailParams {
                    size: Some(0),
                    body: Some(BodyType::BinaryMime),
                    smtputf8: true,
                    ret: Some(Ret::Hdrs),
                    ..Default::default()
                },
            )),
        ),
        (
            b"MAIL FROM:<a@b.example> BODY=7BIT",
            Ok(mail_with(
                "a",
                "b.example",
                MailParams {
                    body: Some(BodyType::SevenBit),
                    ..Default::default()
                },
            )),
        ),
        (
            b"MAIL FROM:<a@b.example> RET=FULL ENVID=QQ+2B314",
            Ok(mail_with(
                "a",
                "b.example",
                MailParams {
                    ret: Some(Ret::Full),
                    envid: Some("QQ+314".into()),
                    ..Default::default()
                },
            )),
        ),
        (
            b"MAIL FROM:<a@b.example> AUTH=<>",
            Ok(mail_with(
                "a",
                "b.example",
                MailParams {
                    auth: Some("<>".into()),
                    ..Default::default()
                },
            )),
        ),
        (
            b"MAIL FROM:<a@b.example> AUTH=e+2Bmc2@example.org",
            Ok(mail_with(
                "a",
                "b.example",
                MailParams {
                    auth: Some("e+mc2@example.org".into()),
                    ..Default::default()
                },
            )),
        ),
        (
            b"MAIL FROM:<a@b.example> SIZE=99999999999999999999999",
            Ok(mail_with(
                "a",
                "b.example",
                MailParams {
                    size: Some(u64::MAX),
                    ..Default::default()
                },
            )),
        ),
        (b"MAIL FROM:<a@b.example>   ", Ok(mail("a", "b.example"))),
        (b"MAIL FROM:a@b.example", Err(501, "5.1.7")),
        (b"MAIL FROM:<a@b.example", Err(501, "5.1.7")),
        (b"MAIL FROM:<a@b.example>SIZE=10", Err(501, "5.1.7")),
        (b"MAIL FROM:<nobody>", Err(501, "5.1.7")),
        (b"MAIL FROM:<postmaster>", Err(501, "5.1.7")),
        (b"MAIL FROM:<@example.org>", Err(501, "5.1.7")),
        (b"MAIL FROM:<a@>", Err(501, "5.1.7")),
        (b"MAIL FROM:<a b@example.org>", Err(501, "5.1.7")),
        (b"MAIL FROM:<a@exa mple.org>", Err(501, "5.1.7")),
        (b"MAIL FROM:<a@example..org>", Err(501, "5.1.7")),
        (b"MAIL FROM:<a@example.org.>", Err(501, "5.1.7")),
        (
            b"MAIL FROM:<@relay.example user@example.org>",
            Err(501, "5.1.7"),
        ),
        (b"MAIL FROM:<\"unterminated@example.org>", Err(501, "5.1.7")),
        (b"MAIL FROM:<a@b@example.org>", Err(501, "5.1.7")),
        (
            b"MAIL FROM:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.org>",
            Err(501, "5.1.7"),
        ),
        (b"MAIL FROM:<a@b.example> SIZE=abc", Err(501, "5.5.4")),
        (b"MAIL FROM:<a@b.example> SIZE=-1", Err(501, "5.5.4")),
        (b"MAIL FROM:<a@b.example> SIZE", Err(501, "5.5.4")),
        (b"MAIL FROM:<a@b.example> SIZE=", Err(501, "5.5.4")),
        (b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2", Err(501, "5.5.4")),
        (
            b"MAIL FROM:<a@b.example> SMTPUTF8 smtputf8",
            Err(501, "5.5.4"),
        ),
        (b"MAIL FROM:<a@b.example> SMTPUTF8=yes", Err(501, "5.5.4")),
        (b"MAIL FROM:<a@b.example> BODY=9BIT", Err(501, "5.5.4")),
        (b"MAIL FROM:<a@b.example> RET=ALL", Err(501, "5.5.4")),
        (b"MAIL FROM:<a@b.example> ENVID=a+zz", Err(501, "5.5.4")),
        (b"MAIL FROM:<a@b.example> =x", Err(501, "5.5.4")),
        (b"MAIL FROM:<a@b.example> FOO=BAR", Err(555, "5.5.4")),
        (b"MAIL FROM:<a@b.example> NOTIFY=NEVER", Err(555, "5.5.4")),
        (b"MAIL FROM:<a@b.example> XVERP", Err(555, "5.5.4")),
        (b"MAIL TO:<a@b.example>", Err(501, "5.5.4")),
        (b"MAIL", Err(501, "5.5.4")),
        (b"MAIL FROM", Err(501, "5.5.4")),
        (b"MAIL FROM:<\xff@example.org>", Err(501, "5.5.2")),
        // RCPT
        (
            b"RCPT TO:<user@example.org>",
            Ok(rcpt("user", "example.org")),
        ),
        (
            b"rcpt to: <User@EXAMPLE.org>",
            Ok(rcpt("User", "example.org")),
        ),
        (b"RCPT TO:<postmaster>", Ok(rcpt("postmaster", ""))),
        (b"RCPT TO:<PostMaster>", Ok(rcpt("postmaster", ""))),
        (
            b"RCPT TO:<Postmaster@example.org>",
            Ok(rcpt("Postmaster", "example.org")),
        ),
        (
            b"RCPT TO:<@hop.example:user@example.org>",
            Ok(rcpt("user", "example.org")),
        ),
        (
            "RCPT TO:<用户@例子.广告>".as_bytes(),
            Ok(rcpt("用户", "例子.广告")),
        ),
        (
            b"RCPT TO:<a@b.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b.example",
            Ok(rcpt_with(
                "a",
                "b.example",
                RcptParams {
                    notify: notify(false, true, true, false),
                    orcpt: Some("rfc822;a@b.example".into()),
                },
            )),
        ),
        (
            b"RCPT TO:<a@b.example> notify=never",
            Ok(rcpt_with(
                "a",
                "b.example",
                RcptParams {
                    notify: notify(true, false, false, false),
                    orcpt: None,
                },
            )),
        ),
        (
            b"RCPT TO:<a@b.example> NOTIFY=delay",
            Ok(rcpt_with(
                "a",
                "b.example",
                RcptParams {
                    notify: notify(false, false, false, true),
                    orcpt: None,
                },
            )),
        ),
        (b"RCPT TO:<>", Err(501, "5.1.3")),
        (b"RCPT TO:<nobody>", Err(501, "5.1.3")),
        (b"RCPT TO:user@example.org", Err(501, "5.1.3")),
        (
            b"RCPT TO:<a@b.example> NOTIFY=NEVER,SUCCESS",
            Err(501, "5.5.4"),
        ),
        (
            b"RCPT TO:<a@b.example> NOTIFY=SUCCESS,,DELAY",
            Err(501, "5.5.4"),
        ),
        (b"RCPT TO:<a@b.example> NOTIFY=SOMETIMES", Err(501, "5.5.4")),
        (
            b"RCPT TO:<a@b.example> NOTIFY=NEVER NOTIFY=NEVER",
            Err(501, "5.5.4"),
        ),
        (
            b"RCPT TO:<a@b.example> ORCPT=a@b.example",
            Err(501, "5.5.4"),
        ),
        (
            b"RCPT TO:<a@b.example> ORCPT=;a@b.example",
            Err(501, "5.5.4"),
        ),
        (b"RCPT TO:<a@b.example> SIZE=10", Err(555, "5.5.4")),
        (b"RCPT FROM:<a@b.example>", Err(501, "5.5.4")),
        // No-argument verbs
        (b"DATA", Ok(Command::Data)),
        (b"data", Ok(Command::Data)),
        (b"DATA now", Err(501, "5.5.4")),
        (b"RSET", Ok(Command::Rset)),
        (b"RSET x", Err(501, "5.5.4")),
        (b"QUIT", Ok(Command::Quit)),
        (b"QUIT now", Err(501, "5.5.4")),
        (b"STARTTLS", Ok(Command::StartTls)),
        (b"starttls ", Ok(Command::StartTls)),
        (b"STARTTLS x", Err(501, "5.5.4")),
        (b"NOOP", Ok(Command::Noop)),
        (b"NOOP anything at all", Ok(Command::Noop)),
        (b"HELP", Ok(Command::Help)),
        (b"HELP MAIL", Ok(Command::Help)),
        // VRFY / EXPN
        (b"VRFY postmaster", Ok(Command::Vrfy("postmaster".into()))),
        (
            b"VRFY John Doe <jd@example.org>",
            Ok(Command::Vrfy("John Doe <jd@example.org>".into())),
        ),
        (b"EXPN staff", Ok(Command::Expn("staff".into()))),
        (b"VRFY", Err(501, "5.5.4")),
        (b"EXPN ", Err(501, "5.5.4")),
        // BDAT
        (
            b"BDAT 1000",
            Ok(Command::Bdat {
                size: 1000,
                last: false,
            }),
        ),
        (
            b"BDAT 0 LAST",
            Ok(Command::Bdat {
                size: 0,
                last: true,
            }),
        ),
        (
            b"bdat 12 last",
            Ok(Command::Bdat {
                size: 12,
                last: true,
            }),
        ),
        (b"BDAT", Err(501, "5.5.4")),
        (b"BDAT x", Err(501, "5.5.4")),
        (b"BDAT +5", Err(501, "5.5.4")),
        (b"BDAT 5 FIRST", Err(501, "5.5.4")),
        (b"BDAT 5 LAST more", Err(501, "5.5.4")),
        (b"BDAT 99999999999999999999999", Err(501, "5.5.4")),
        // AUTH
        (
            b"AUTH PLAIN",
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: None,
            }),
        ),
        (
            b"auth plain AGpvZQBzZWNyZXQ=",
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGpvZQBzZWNyZXQ=".into()),
            }),
        ),
        (
            b"AUTH PLAIN =",
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("=".into()),
            }),
        ),
        (
            b"AUTH LOGIN",
            Ok(Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None,
            }),
        ),
        (b"AUTH", Err(501, "5.5.4")),
        (b"AUTH PL/AIN", Err(501, "5.5.4")),
        (b"AUTH PLAIN a b", Err(501, "5.5.4")),
        (b"AUTH ABCDEFGHIJKLMNOPQRSTU", Err(501, "5.5.4")),
        // Unknown, empty, encoding
        (b"", Err(500, "5.5.2")),
        (b"   ", Err(500, "5.5.2")),
        (b"FOO", Err(500, "5.5.1")),
        (b"ETRN example.org", Err(500, "5.5.1")),
        (b"MAILFROM:<a@b.example>", Err(500, "5.5.1")),
        (b" HELO x.example", Err(500, "5.5.1")),
        (b"\xff\xfe", Err(500, "5.5.1")),
        (b"VRFY \xc3\x28", Err(501, "5.5.2")),
        (b"HELO x.example\rQUIT", Err(501, "5.5.2")),
        (b"VRFY a\x00b", Err(501, "5.5.2")),
        (b"VRFY a\tb", Err(501, "5.5.2")),
    ]
}

fn check(
    input: &[u8],
    got: Result<Command, ownmail_smtp_proto::CommandError>,
    want: &Want,
    how: &str,
) {
    let shown = String::from_utf8_lossy(input);
    match (got, want) {
        (Ok(got), Want::Ok(want)) => assert_eq!(&got, want, "{how}: {shown:?}"),
        (Err(e), Want::Err(code, enhanced)) => {
            assert_eq!(
                (e.code, e.enhanced),
                (*code, *enhanced),
                "{how}: {shown:?} gave {e}"
            );
            assert!(!e.message.is_empty());
        }
        (got, _) => panic!("{how}: {shown:?} gave {got:?}"),
    }
}

#[test]
fn command_vectors_parse_the_same_with_every_line_ending() {
    let vectors = vectors();
    assert!(vectors.len() >= 60);
    for (input, want) in &vectors {
        check(input, parse_command(input), want, "bare");
        for ending in [&b"\r\n"[..], b"\n"] {
            let mut wire = input.to_vec();
            wire.extend_from_slice(ending);
            wire.extend_from_slice(b"NOOP\r\n");
            match take_line(&wire, 512) {
                Line::Complete(line, used) => {
                    assert_eq!(used, input.len() + ending.len());
                    check(input, parse_command(&line), want, "take_line");
                }
                other => panic!(
                    "{:?}: take_line gave {other:?}",
                    String::from_utf8_lossy(input)
                ),
            }
        }
    }
}

#[test]
fn parsed_commands_written_back_parse_to_themselves() {
    for (input, want) in vectors() {
        let Want::Ok(cmd) = want else { continue };
        let wire = cmd.to_bytes();
        assert!(wire.ends_with(b"\r\n"));
        let again = parse_command(&wire)
            .unwrap_or_else(|e| panic!("{:?} -> {e}", String::from_utf8_lossy(input)));
        assert_eq!(again, cmd, "{:?}", String::from_utf8_lossy(&wire));
    }
}

#[test]
fn client_commands_are_written_in_wire_form() {
    let cmd = Command::Mail {
        from: ReversePath::Address(addr("a", "b.example")),
        params: MailParams {
            size: Some(10),
            body: Some(BodyType::EightBitMime),
            envid: Some("x=y".into()),
            ..Default::default()
        },
    };
    assert_eq!(
        cmd.to_bytes(),
        b"MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME ENVID=x+3Dy\r\n"
    );
    let cmd = Command::Rcpt {
        to: addr("postmaster", ""),
        params: RcptParams {
            notify: notify(false, true, true, false),
            orcpt: Some("rfc822;a+b@c".into()),
        },
    };
    assert_eq!(
        cmd.to_bytes(),
        b"RCPT TO:<postmaster> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c\r\n"
    );
    assert_eq!(
        Command::Bdat {
            size: 5,
            last: true
        }
        .to_bytes(),
        b"BDAT 5 LAST\r\n"
    );
    assert_eq!(
        Command::Mail {
            from: ReversePath::Null,
            params: MailParams::default()
        }
        .to_bytes(),
        b"MAIL FROM:<>\r\n"
    );
}

#[test]
fn long_envid_is_refused() {
    let line = format!("MAIL FROM:<a@b.example> ENVID={}", "x".repeat(101));
    let e = parse_command(line.as_bytes()).expect_err("too long");
    assert_eq!((e.code, e.enhanced), (501, "5.5.4"));
    let line = format!("MAIL FROM:<a@b.example> ENVID={}", "x".repeat(100));
    assert!(parse_command(line.as_bytes()).is_ok());
}

#[test]
fn command_error_becomes_its_reply() {
    let e = parse_command(b"XYZZY").expect_err("unknown");
    let reply = ownmail_smtp_proto::Reply::from(e);
    assert_eq!(reply.to_bytes(), b"500 5.5.1 Unknown command\r\n");
}
