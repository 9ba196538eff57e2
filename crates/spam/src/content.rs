//! Symbols from the message itself: GTUBE and header anomalies (scores in the crate table).

use std::time::{SystemTime, UNIX_EPOCH};

use mail_parser::{Message, PartType};

use crate::tokens::{bodies, parse};
use crate::verdict::Symbol;
use crate::GTUBE;

/// A `Date:` this far ahead of now is `DATE_IN_FUTURE`.
const FUTURE_SLACK: i64 = 24 * 3600;
/// A `Date:` this far behind now is `DATE_IN_PAST` (SpamAssassin's 96 hours).
const PAST_SLACK: i64 = 96 * 3600;
/// More addresses than this in `To:` + `Cc:` is `MANY_RECIPIENTS`.
const MANY_RECIPIENTS: usize = 15;
/// Fewer cased letters than this in a subject never make `SUBJ_ALL_CAPS` ("RE: FYI").
const CAPS_MIN_LETTERS: usize = 10;

/// Symbols found in `message` at time `now`. Never panics, whatever the bytes.
pub fn content_symbols(message: &[u8], now: SystemTime) -> Vec<Symbol> {
    let mut out = Vec::new();
    let mut gtube = contains(message, GTUBE.as_bytes());
    let Some(msg) = parse(message) else {
        if gtube {
            out.push(Symbol::new("GTUBE", 1000.0, ""));
        }
        out.push(Symbol::new("MISSING_HEADERS", 3.0, ""));
        return out;
    };
    let b = bodies(&msg);
    gtube = gtube || b.text.contains(GTUBE);
    if gtube {
        out.push(Symbol::new("GTUBE", 1000.0, ""));
    }
    if msg.headers().is_empty() {
        out.push(Symbol::new("MISSING_HEADERS", 3.0, ""));
        return out;
    }

    let from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .filter(|a| !a.trim().is_empty());
    match from {
        None => out.push(Symbol::new("MISSING_FROM", 2.0, "")),
        Some(addr) => {
            let name = msg.from().and_then(|a| a.first()).and_then(|a| a.name());
            if let Some(other) = name.and_then(|n| foreign_address(n, addr)) {
                out.push(Symbol::new("FROM_NAME_HAS_ADDR", 2.0, other));
            }
        }
    }

    date_symbols(&msg, now, &mut out);

    if msg.message_id().is_none_or(|m| m.trim().is_empty()) {
        out.push(Symbol::new("MISSING_MID", 0.5, ""));
    }
    match msg.subject().map(str::trim) {
        None | Some("") => out.push(Symbol::new("MISSING_SUBJECT", 0.5, "")),
        Some(s) if all_caps(s) => out.push(Symbol::new("SUBJ_ALL_CAPS", 1.5, "")),
        Some(_) => {}
    }

    let has_html = msg
        .parts
        .iter()
        .any(|p| matches!(p.body, PartType::Html(_)));
    let has_text = msg
        .parts
        .iter()
        .any(|p| matches!(p.body, PartType::Text(_)));
    if has_html && !has_text {
        out.push(Symbol::new("HTML_ONLY", 0.7, ""));
    }
    if b.text.trim().is_empty() && msg.attachment_count() == 0 {
        out.push(Symbol::new("EMPTY_BODY", 1.0, ""));
    }

    let recipients =
        msg.to().map_or(0, |a| a.iter().count()) + msg.cc().map_or(0, |a| a.iter().count());
    if recipients > MANY_RECIPIENTS {
        out.push(Symbol::new(
            "MANY_RECIPIENTS",
            1.0,
            format!("n={recipients}"),
        ));
    }
    out
}

fn date_symbols(msg: &Message<'_>, now: SystemTime, out: &mut Vec<Symbol>) {
    if msg.header_raw("Date").is_none() {
        out.push(Symbol::new("MISSING_DATE", 1.0, ""));
        return;
    }
    let Some(date) = msg.date().filter(|d| d.is_valid()) else {
        out.push(Symbol::new("INVALID_DATE", 1.0, ""));
        return;
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let when = date.to_timestamp();
    let ahead = when.saturating_sub(now);
    if ahead > FUTURE_SLACK {
        out.push(Symbol::new(
            "DATE_IN_FUTURE",
            2.0,
            format!("hours={}", ahead / 3600),
        ));
    } else if ahead < -PAST_SLACK {
        out.push(Symbol::new(
            "DATE_IN_PAST",
            1.0,
            format!("hours={}", ahead.saturating_neg() / 3600),
        ));
    }
}

/// An address-like word in a `From:` display name that is not the sender's own address
/// (`"paypal@paypal.com" <x@evil.example>`), lower case.
fn foreign_address(name: &str, addr: &str) -> Option<String> {
    let addr = addr.trim().to_ascii_lowercase();
    name.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '(' | ')' | ','))
        .filter_map(|w| {
            let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            let (local, domain) = w.split_once('@')?;
            (!local.is_empty() && domain.contains('.') && !domain.starts_with('.'))
                .then(|| w.to_ascii_lowercase())
        })
        .find(|w| *w != addr)
}

/// At least [`CAPS_MIN_LETTERS`] cased letters and none of them lower case.
fn all_caps(s: &str) -> bool {
    let mut upper = 0;
    for c in s.chars() {
        if c.is_lowercase() {
            return false;
        }
        if c.is_uppercase() {
            upper += 1;
        }
    }
    upper >= CAPS_MIN_LETTERS
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    hay.iter()
        .enumerate()
        .any(|(i, &b)| b == first && hay.get(i..i + needle.len()).is_some_and(|w| w == needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2024-01-15 12:00:00 UTC.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_705_320_000)
    }

    const GOOD: &str = "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\n\
        Date: Mon, 15 Jan 2024 11:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\
        Subject: Lunch tomorrow\r\n\r\nShall we meet at noon?\r\n";

    fn names(m: &str) -> Vec<String> {
        content_symbols(m.as_bytes(), now())
            .into_iter()
            .map(|s| s.name)
            .collect()
    }

    #[test]
    fn ordinary_message_has_no_symbols() {
        assert!(names(GOOD).is_empty(), "{:?}", names(GOOD));
    }

    #[test]
    fn gtube_scores_1000() {
        let m = format!("{GOOD}{GTUBE}\r\n");
        let s = content_symbols(m.as_bytes(), now());
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "GTUBE");
        assert_eq!(s[0].score, 1000.0);
    }

    #[test]
    fn gtube_found_in_base64_part() {
        let b64 =
            "WEpTKkM0SkRCUUFETjEuTlNCRVNDLUVRVUlWQUxBTlQtQU5USS1VQkUtVEVTVC1FTUFJTCpDLjM0WA==";
        // Not GTUBE itself (typo on purpose) ...
        let m = format!("Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n");
        assert!(!names(&m).contains(&"GTUBE".to_string()));
        // ... this one is.
        let real =
            "WEpTKkM0SkRCUUFETjEuTlNCRVNDLUVRVUlWQUxFTlQtQU5USS1VQkUtVEVTVC1FTUFJTCpDLjM0WA==";
        let m = format!("Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\n{real}\r\n");
        assert!(names(&m).contains(&"GTUBE".to_string()), "{:?}", names(&m));
    }

    #[test]
    fn missing_headers_are_named() {
        let n = names("Subject: hi\r\n\r\nsome text\r\n");
        assert_eq!(n, vec!["MISSING_FROM", "MISSING_DATE", "MISSING_MID"]);
        assert_eq!(names(""), vec!["MISSING_HEADERS"]);
    }

    #[test]
    fn dates_far_off_are_named() {
        let future = GOOD.replace("15 Jan 2024 11:00", "18 Jan 2024 11:00");
        assert_eq!(names(&future), vec!["DATE_IN_FUTURE"]);
        let past = GOOD.replace("15 Jan 2024", "05 Jan 2024");
        assert_eq!(names(&past), vec!["DATE_IN_PAST"]);
        let near = GOOD.replace("15 Jan 2024 11:00", "14 Jan 2024 02:00");
        assert!(names(&near).is_empty());
        let bad = GOOD.replace("Mon, 15 Jan 2024 11:00:00 +0000", "yesterday-ish");
        assert_eq!(names(&bad), vec!["INVALID_DATE"]);
    }

    #[test]
    fn caps_and_empty_subject() {
        let caps = GOOD.replace("Lunch tomorrow", "FREE MONEY WAITING!!!");
        assert_eq!(names(&caps), vec!["SUBJ_ALL_CAPS"]);
        let short = GOOD.replace("Lunch tomorrow", "RE: FYI");
        assert!(names(&short).is_empty());
        let empty = GOOD.replace("Lunch tomorrow", "  ");
        assert_eq!(names(&empty), vec!["MISSING_SUBJECT"]);
    }

    #[test]
    fn display_name_with_other_address() {
        let m = GOOD.replace(
            "Bob <bob@example.org>",
            "\"service@paypal.com\" <bob@example.org>",
        );
        let s = content_symbols(m.as_bytes(), now());
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].name, "FROM_NAME_HAS_ADDR");
        assert_eq!(s[0].detail, "service@paypal.com");
        let same = GOOD.replace(
            "Bob <bob@example.org>",
            "\"bob@example.org\" <bob@example.org>",
        );
        assert!(names(&same).is_empty());
    }

    #[test]
    fn html_only_and_empty_body() {
        let html = GOOD.replace(
            "Subject: Lunch tomorrow\r\n",
            "Subject: Lunch tomorrow\r\nContent-Type: text/html\r\n",
        );
        assert_eq!(names(&html), vec!["HTML_ONLY"]);
        let alt = GOOD.replace(
            "Subject: Lunch tomorrow\r\n\r\nShall we meet at noon?\r\n",
            "Subject: Lunch tomorrow\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nnoon?\r\n\
             --b\r\nContent-Type: text/html\r\n\r\n<p>noon?</p>\r\n--b--\r\n",
        );
        assert!(names(&alt).is_empty(), "{:?}", names(&alt));
        let empty = GOOD.replace("Shall we meet at noon?", " ");
        assert_eq!(names(&empty), vec!["EMPTY_BODY"]);
    }

    #[test]
    fn many_recipients() {
        let to: Vec<String> = (0..20).map(|i| format!("u{i}@example.org")).collect();
        let m = GOOD.replace("To: alice@example.org", &format!("To: {}", to.join(", ")));
        assert_eq!(names(&m), vec!["MANY_RECIPIENTS"]);
    }
}
