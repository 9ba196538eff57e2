//! Enhanced status codes (RFC 3463) in failure reasons, for the `Status:` field of a delivery
//! status notification (RFC 3464 §2.3.4).

/// The enhanced status code in `reason`, such as `5.1.1` in
/// `mx.example.org [192.0.2.1]: 550 5.1.1 user unknown`.
///
/// A reason that starts with a code is one this crate wrote, and that code is its
/// classification (`4.4.1 no host took the message: …` stays 4.4.1 even if one of the hosts
/// it lists said 554). Otherwise a code right after a reply code of the same class (the remote
/// server's own classification), else the first word that is a code of class 2, 4 or 5.
/// `None` when there is none: the caller then derives a generic `5.0.0`/`4.0.0` from the
/// outcome.
pub fn status_of(reason: &str) -> Option<String> {
    let words: Vec<&str> = reason
        .split_whitespace()
        .map(|w| w.trim_end_matches([':', ',', ';', ')', '.']))
        .collect();
    if let Some(first) = words.first().filter(|w| enhanced_class(w).is_some()) {
        return Some(first.to_string());
    }
    let after_reply_code = words.windows(2).find_map(|pair| match pair {
        [code, status] => {
            let class = reply_class(code)?;
            (enhanced_class(status)? == class).then(|| status.to_string())
        }
        _ => None,
    });
    after_reply_code.or_else(|| {
        words
            .iter()
            .find(|w| enhanced_class(w).is_some())
            .map(|w| w.to_string())
    })
}

/// `550` → `'5'`: a reply code is three digits, the first 2 to 5.
fn reply_class(word: &str) -> Option<char> {
    match word.as_bytes() {
        [c @ b'2'..=b'5', d, e] if d.is_ascii_digit() && e.is_ascii_digit() => Some(char::from(*c)),
        _ => None,
    }
}

/// `5.1.1` → `'5'`: class 2, 4 or 5, subject and detail of 1 to 3 digits (RFC 3463 §2).
fn enhanced_class(word: &str) -> Option<char> {
    let mut parts = word.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let ok = parts.next().is_none()
        && matches!(class, "2" | "4" | "5")
        && digits(subject)
        && digits(detail);
    ok.then(|| class.chars().next()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_comes_from_the_remote_reply() {
        let table = [
            (
                "mx1.example.test [127.0.0.2]: 550 5.1.1 user unknown",
                Some("5.1.1"),
            ),
            ("mx [192.0.2.1]: 452 4.2.2 mailbox full", Some("4.2.2")),
            ("mx [192.0.2.1]: 550 no such user", None),
            (
                "5.1.10 example.org: domain does not accept mail (null MX)",
                Some("5.1.10"),
            ),
            (
                "4.4.1 no host took the message: a [5.5.5.5]: 554 5.3.2 no",
                Some("4.4.1"),
            ),
            (
                "a [192.0.2.1]: 421 4.3.2 busy (in reply to MAIL FROM)",
                Some("4.3.2"),
            ),
            ("mx [5.1.1.1]: connection refused", None),
            ("mx: 550 4.1.1 mismatched class", Some("4.1.1")),
            ("", None),
        ];
        for (reason, want) in table {
            assert_eq!(status_of(reason).as_deref(), want, "{reason}");
        }
    }
}
