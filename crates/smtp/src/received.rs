//! The `Received:` trace header (RFC 5321 §4.4) and RFC 5322 dates.

use std::net::IpAddr;
use std::time::SystemTime;

pub use ownmail_types::rfc5322_date;

pub struct Trace<'a> {
    pub helo: &'a str,
    pub client: Option<IpAddr>,
    /// For local submission: the submitting program's uid.
    pub local_uid: Option<u32>,
    pub hostname: &'a str,
    /// `SMTP`, `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA`, `UTF8SMTPS`… (RFC 3848, RFC 6531).
    pub with: String,
    pub id: &'a str,
    /// Named only when there is exactly one recipient (RFC 5321 §4.4 privacy note).
    pub single_rcpt: Option<String>,
    pub now: SystemTime,
}

/// A header with folded continuation lines, ending in CRLF.
pub fn received(t: &Trace) -> String {
    let from = match t.client {
        Some(ip) => format!("from {} ([{}])", sanitize(t.helo), ip),
        None => match t.local_uid {
            Some(uid) => format!("from {} (local, uid {uid})", sanitize(t.helo)),
            None => format!("from {} (local)", sanitize(t.helo)),
        },
    };
    let mut h = format!(
        "Received: {from}\r\n\tby {} (ownmail) with {} id {}",
        t.hostname, t.with, t.id
    );
    if let Some(r) = &t.single_rcpt {
        h.push_str(&format!("\r\n\tfor <{}>", sanitize(r)));
    }
    h.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(t.now)));
    h
}

/// A HELO name or address as it may appear in a header: printable, no CR/LF, bounded.
fn sanitize(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(255).collect();
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_564_080);
        assert_eq!(rfc5322_date(t), "Tue, 24 Nov 2026 23:48:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn received_names_client_helo_and_id() {
        let h = received(&Trace {
            helo: "client.test\r\nX-Evil: 1",
            client: Some("192.0.2.1".parse().expect("ip")),
            local_uid: None,
            hostname: "mx.example.org",
            with: "ESMTPS".into(),
            id: "0123456789abcdef0123",
            single_rcpt: Some("m@example.org".into()),
            now: UNIX_EPOCH,
        });
        assert!(h.starts_with("Received: from client.testX-Evil: 1 ([192.0.2.1])\r\n\tby mx.example.org (ownmail) with ESMTPS id 0123456789abcdef0123\r\n\tfor <m@example.org>;\r\n\t"));
        assert!(h.ends_with("+0000\r\n"));
        assert_eq!(h.matches("\r\n").count(), 4);
    }
}
