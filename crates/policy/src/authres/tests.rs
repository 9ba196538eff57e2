use super::*;

fn report(spf: AuthResult, dkim: AuthResult, dmarc: AuthResult, p: DmarcPolicy) -> Report {
    Report {
        spf: SpfLine {
            result: spf,
            mail_from: "alice@example.test".into(),
            helo: "mx.example.test".into(),
        },
        dkim: vec![DkimLine {
            result: dkim,
            domain: Some("example.test".into()),
            selector: Some("s1".into()),
            reason: (dkim != AuthResult::Pass).then(|| "signature (bad) mismatch".into()),
        }],
        dmarc: DmarcLine {
            result: dmarc,
            header_from: Some("example.test".into()),
            policy: Some(p),
        },
        arc: AuthResult::None,
    }
}

#[test]
fn authentication_results_field_is_rfc8601() {
    let r = report(
        AuthResult::Pass,
        AuthResult::Pass,
        AuthResult::Pass,
        DmarcPolicy::Reject,
    );
    assert_eq!(
        render("mx.ours.test", &r),
        "Authentication-Results: mx.ours.test;\r\n\
         \tspf=pass smtp.mailfrom=alice@example.test;\r\n\
         \tdkim=pass header.d=example.test header.s=s1;\r\n\
         \tdmarc=pass (p=reject) header.from=example.test;\r\n\
         \tarc=none\r\n"
    );
    assert_eq!(r.summary(), "spf=pass dkim=pass dmarc=pass arc=none");
}

#[test]
fn no_signature_null_sender_and_hostile_values_render_safely() {
    let r = Report {
        spf: SpfLine {
            result: AuthResult::TempError,
            mail_from: String::new(),
            helo: "bad helo;\r\nX-Injected: yes".into(),
        },
        dkim: vec![],
        dmarc: DmarcLine {
            result: AuthResult::None,
            header_from: None,
            policy: None,
        },
        arc: AuthResult::PermError,
    };
    let field = render("mx.ours.test", &r);
    assert_eq!(
        field,
        "Authentication-Results: mx.ours.test;\r\n\
         \tspf=temperror smtp.helo=\"bad helo;X-Injected: yes\";\r\n\
         \tdkim=none;\r\n\
         \tdmarc=none;\r\n\
         \tarc=permerror\r\n"
    );
    // Each line is a continuation but the first: nothing can start a field of its own.
    for line in field.trim_end().split("\r\n").skip(1) {
        assert!(line.starts_with('\t'), "{line:?}");
    }
    let mut bad = report(
        AuthResult::Fail,
        AuthResult::Fail,
        AuthResult::Fail,
        DmarcPolicy::None,
    );
    bad.dkim[0].reason = Some("x) (y\\".repeat(50));
    bad.dkim[0].domain = Some("evil\" domain".into());
    let field = render("h", &bad);
    assert!(field.contains("dkim=fail (x y"), "{field}");
    assert!(field.contains("header.d=\"evil\\\" domain\""), "{field}");
}

#[test]
fn forged_results_with_our_name_are_found_others_kept() {
    let msg = b"Authentication-Results: MX.Ours.Test; spf=pass\r\n\
        Received: from x\r\n\
        Authentication-Results: other.test; dkim=pass\r\n\
        authentication-results:(comment) mx.ours.test.;\r\n\tdkim=pass\r\n\
        Authentication-Results: \"mx.ours.test\"; none\r\n\
        Authentication-Results: mx.ours.test.evil; none\r\n\
        Subject: hi\r\n\r\n\
        Authentication-Results: mx.ours.test; in the body\r\n";
    let ranges = forged_results(msg, "mx.ours.test");
    let removed: Vec<&[u8]> = ranges.iter().map(|r| &msg[r.clone()]).collect();
    assert_eq!(
        removed,
        vec![
            &b"Authentication-Results: MX.Ours.Test; spf=pass\r\n"[..],
            &b"authentication-results:(comment) mx.ours.test.;\r\n\tdkim=pass\r\n"[..],
            &b"Authentication-Results: \"mx.ours.test\"; none\r\n"[..],
        ]
    );
    let v = ownmail_types::InboundVerdict::Accept {
        prepend: "Authentication-Results: mx.ours.test; none\r\n".into(),
        remove: ranges,
        summary: String::new(),
    };
    let out = String::from_utf8(v.rewrite(b"", msg)).expect("ascii");
    assert_eq!(
        out.matches("Authentication-Results: mx.ours.test;").count(),
        2
    );
    assert!(out.contains("Authentication-Results: other.test; dkim=pass\r\n"));
    assert!(out.contains("mx.ours.test.evil"));
    assert!(out.ends_with("Authentication-Results: mx.ours.test; in the body\r\n"));
}

#[test]
fn header_scanning_survives_odd_input() {
    for msg in [
        &b""[..],
        b"\r\n",
        b"no colon at all",
        b" continuation first\r\n\r\n",
        b"A:\r\n\tb\r\n c",
        b"\xff\xfe: \x00\r\n",
    ] {
        let _ = forged_results(msg, "h");
        let _ = header_size(msg);
        let _ = count_fields(msg, "DKIM-Signature");
    }
    let msg =
        b"DKIM-Signature: a\r\n\tb\r\ndkim-signature : c\r\nX: y\r\n\r\nDKIM-Signature: body\r\n";
    assert_eq!(count_fields(msg, "DKIM-Signature"), 2);
    assert_eq!(
        header_size(msg),
        msg.len() - b"\r\nDKIM-Signature: body\r\n".len()
    );
}

#[test]
fn verdicts_map_to_actions() {
    let all = LocalPolicy {
        dmarc_reject: true,
        spf_fail_junk: true,
        dmarc_fail_junk: true,
    };
    let none = LocalPolicy::default();
    use AuthResult::{Fail, Pass, PermError, SoftFail, TempError};
    let cases = [
        // (policy, spf, dmarc, p, expected)
        (
            all,
            Pass,
            Pass,
            DmarcPolicy::Reject,
            Action::Accept { junk: None },
        ),
        (
            all,
            Fail,
            Fail,
            DmarcPolicy::Reject,
            Action::Reject("DMARC policy of example.test rejects this message (p=reject)".into()),
        ),
        (
            none,
            Fail,
            Fail,
            DmarcPolicy::Reject,
            Action::Accept { junk: None },
        ),
        (
            all,
            Pass,
            Fail,
            DmarcPolicy::Quarantine,
            Action::Accept {
                junk: Some("dmarc-fail"),
            },
        ),
        (
            all,
            Pass,
            Fail,
            DmarcPolicy::None,
            Action::Accept { junk: None },
        ),
        (
            all,
            Fail,
            Pass,
            DmarcPolicy::Reject,
            Action::Accept {
                junk: Some("spf-fail"),
            },
        ),
        (
            all,
            SoftFail,
            AuthResult::None,
            DmarcPolicy::None,
            Action::Accept { junk: None },
        ),
        (
            all,
            TempError,
            TempError,
            DmarcPolicy::Reject,
            Action::Accept { junk: None },
        ),
        (
            all,
            PermError,
            PermError,
            DmarcPolicy::Reject,
            Action::Accept { junk: None },
        ),
        (
            LocalPolicy {
                dmarc_fail_junk: true,
                ..none
            },
            Pass,
            Fail,
            DmarcPolicy::Reject,
            Action::Accept {
                junk: Some("dmarc-fail"),
            },
        ),
    ];
    for (policy, spf, dmarc, p, want) in cases {
        let r = report(spf, Fail, dmarc, p);
        assert_eq!(
            policy.decide(&r),
            want,
            "{policy:?} spf={spf:?} dmarc={dmarc:?} p={p:?}"
        );
    }
}

#[test]
fn named_fields_are_whole_fields_of_the_header_section_only() {
    let m = b"Subject: hi\r\nX-Spam-Status: No,\r\n\tscore=-9\r\nx-spam: no\r\nX-Spamd: keep\r\nFrom: a@b\r\n\r\nX-Spam: body line\r\n";
    let names = ["X-Spam", "X-Spam-Status"];
    let cut: Vec<&[u8]> = named_fields(m, &names).into_iter().map(|r| &m[r]).collect();
    assert_eq!(
        cut,
        vec![
            &b"X-Spam-Status: No,\r\n\tscore=-9\r\n"[..],
            &b"x-spam: no\r\n"[..]
        ]
    );
    assert!(named_fields(b"", &names).is_empty());
    assert_eq!(named_fields(b"X-Spam: yes", &names).len(), 1);
}
