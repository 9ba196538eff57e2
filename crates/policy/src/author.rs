//! The author domain of a message: the domain of its `From:` addresses (RFC 5322 §3.6.2),
//! which decides which key signs it (and, for DMARC, which policy applies).

use mail_parser::MessageParser;

/// The one domain of every `From:` address of `message`, lowercased, without a trailing dot.
/// None when there is no `From:`, an address without a domain, or addresses of several
/// domains (RFC 7489 §6.6.1 leaves such messages to local policy: we do not sign them).
pub fn author_domain(message: &[u8]) -> Option<String> {
    let parsed = MessageParser::new().parse_headers(message)?;
    let from = parsed.from()?;
    let mut domain: Option<String> = None;
    for addr in from.iter() {
        let address = addr.address()?;
        let (_, d) = address.rsplit_once('@')?;
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty() {
            return None;
        }
        match &domain {
            None => domain = Some(d),
            Some(first) if *first == d => {}
            Some(_) => return None,
        }
    }
    domain
}

#[cfg(test)]
mod tests {
    use super::author_domain;

    #[test]
    fn author_domain_is_the_from_domain_in_every_form() {
        for (msg, want) in [
            ("From: a@Example.ORG\r\n\r\nx", Some("example.org")),
            ("From: \"Doe, J\" <j@x.test>\r\n\r\n", Some("x.test")),
            ("From: J (c) <j@x.test.>\r\n\r\n", Some("x.test")),
            ("From: a@x.test, b@x.test\r\n\r\n", Some("x.test")),
            (
                "Subject: x\r\nFrom:\r\n j@folded.test\r\n\r\n",
                Some("folded.test"),
            ),
        ] {
            assert_eq!(author_domain(msg.as_bytes()).as_deref(), want, "{msg:?}");
        }
    }

    #[test]
    fn no_single_author_domain_is_none() {
        for msg in [
            "Subject: no from\r\n\r\nFrom: body@x.test\r\n",
            "From: a@x.test, b@y.test\r\n\r\n",
            "From: nobody\r\n\r\n",
            "From: <>\r\n\r\n",
            "",
            "\r\n\r\n",
            "From: \u{0}\u{ff}@\r\n\r\n",
        ] {
            assert_eq!(author_domain(msg.as_bytes()), None, "{msg:?}");
        }
        assert_eq!(author_domain(&[0xff, 0xfe, b'\r', b'\n']), None);
    }
}
