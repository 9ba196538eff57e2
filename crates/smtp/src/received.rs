//! The `Received:` trace header (RFC 5321 §4.4) and RFC 5322 dates.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// `Tue, 24 Nov 2026 23:48:00 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = WD[days.rem_euclid(7) as usize];
    let mon = MON[(m - 1).clamp(0, 11) as usize];
    format!(
        "{wd}, {d} {mon} {y} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
