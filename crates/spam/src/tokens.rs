//! What the classifier sees of a message: its tokens, and the digest that identifies it.

use std::collections::HashSet;

use mail_parser::{Message, MessageParser, PartType};
use sha2::{Digest, Sha256};

/// Only this many bytes of a message are parsed and tokenised: enough for any real text,
/// and a bound on the work a huge message can cause.
pub const MAX_SCAN: usize = 2 * 1024 * 1024;
/// At most this many distinct tokens are taken from one message (the first ones found).
pub const MAX_TOKENS_PER_MESSAGE: usize = 2000;
/// Decoded text examined per message, in bytes.
const MAX_TEXT: usize = 512 * 1024;

const MIN_WORD: usize = 3;
const MAX_WORD: usize = 24;

/// Parses the first [`MAX_SCAN`] bytes of `message`.
pub(crate) fn parse(message: &[u8]) -> Option<Message<'_>> {
    let head = message.get(..MAX_SCAN).unwrap_or(message);
    MessageParser::default().parse(head)
}

/// The decoded text of the text parts, HTML with its tags stripped, and the raw HTML (for
/// URLs, which live in attributes).
pub(crate) struct Bodies {
    pub text: String,
    pub html_raw: String,
}

pub(crate) fn bodies(msg: &Message<'_>) -> Bodies {
    let mut b = Bodies {
        text: String::new(),
        html_raw: String::new(),
    };
    for part in &msg.parts {
        if b.text.len() >= MAX_TEXT {
            break;
        }
        match &part.body {
            PartType::Text(t) => {
                push_capped(&mut b.text, t);
                b.text.push('\n');
            }
            PartType::Html(h) => {
                push_capped(&mut b.html_raw, h);
                push_capped(&mut b.text, &strip_html(h));
                b.text.push('\n');
            }
            _ => {}
        }
    }
    b
}

/// Appends at most what keeps `out` under [`MAX_TEXT`], cut at a character boundary.
fn push_capped(out: &mut String, s: &str) {
    let room = MAX_TEXT.saturating_sub(out.len());
    if s.len() <= room {
        out.push_str(s);
        return;
    }
    let mut end = room;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(s.get(..end).unwrap_or(""));
}

/// Text of an HTML document: tags become spaces, `<script>` and `<style>` contents and
/// comments are dropped, the common entities decoded.
pub(crate) fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < bytes.len() {
        let rest_lower = lower.get(i..).unwrap_or("");
        if bytes.get(i) == Some(&b'<') {
            let skip_to = if rest_lower.starts_with("<!--") {
                rest_lower.find("-->").map(|p| i + p + 3)
            } else if rest_lower.starts_with("<script") {
                rest_lower.find("</script").map(|p| i + p + 8)
            } else if rest_lower.starts_with("<style") {
                rest_lower.find("</style").map(|p| i + p + 7)
            } else {
                None
            };
            let from = skip_to.unwrap_or(i);
            // Then to the end of the tag.
            i = match lower.get(from..).and_then(|r| r.find('>')) {
                Some(p) => from + p + 1,
                None => bytes.len(),
            };
            out.push(' ');
            continue;
        }
        // Copy up to the next tag.
        let next = rest_lower.find('<').map_or(bytes.len(), |p| i + p);
        out.push_str(html.get(i..next).unwrap_or(""));
        i = next;
    }
    decode_entities(&out)
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    s.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Host names of `http://` and `https://` URLs in `text`, lower case, checked to be
/// `[a-z0-9.-]` with at least one dot.
pub(crate) fn url_hosts(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut rest = lower.as_str();
    while let Some(p) = rest.find("http") {
        let after = rest.get(p + 4..).unwrap_or("");
        let after = after.strip_prefix('s').unwrap_or(after);
        rest = after;
        let Some(url) = after.strip_prefix("://") else {
            continue;
        };
        let end = url
            .find(|c: char| {
                c.is_whitespace()
                    || matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | ')' | ']')
            })
            .unwrap_or(url.len());
        let authority = url.get(..end).unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        let host = host.split(':').next().unwrap_or("").trim_end_matches('.');
        if valid_host(host) {
            out.push(host.to_string());
        }
        if out.len() >= 200 {
            break;
        }
    }
    out
}

pub(crate) fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.contains('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// Collects tokens, each once, up to [`MAX_TOKENS_PER_MESSAGE`].
struct Collector {
    seen: HashSet<String>,
    order: Vec<String>,
}

impl Collector {
    fn add(&mut self, t: String) {
        if self.order.len() < MAX_TOKENS_PER_MESSAGE && !self.seen.contains(&t) {
            self.seen.insert(t.clone());
            self.order.push(t);
        }
    }

    fn full(&self) -> bool {
        self.order.len() >= MAX_TOKENS_PER_MESSAGE
    }

    fn words(&mut self, prefix: &str, text: &str) {
        for w in text.split(|c: char| !(c.is_alphanumeric() || c == '$')) {
            if self.full() {
                return;
            }
            let n = w.chars().count();
            if n < MIN_WORD {
                continue;
            }
            if n > MAX_WORD {
                let first = w.chars().next().unwrap_or('_').to_lowercase();
                self.add(format!("skip:{first}:{}", n / 10 * 10));
                continue;
            }
            self.add(format!("{prefix}{}", w.to_lowercase()));
        }
    }
}

/// The classifier's tokens of `message` (see the crate documentation). Never contain white
/// space.
pub(crate) fn tokenize(message: &[u8]) -> Vec<String> {
    let mut c = Collector {
        seen: HashSet::new(),
        order: Vec::new(),
    };
    let Some(msg) = parse(message) else {
        let head = message.get(..MAX_TEXT).unwrap_or(message);
        let text = String::from_utf8_lossy(head);
        for h in url_hosts(&text) {
            host_tokens(&mut c, &h);
        }
        c.words("", &text);
        return c.order;
    };
    if let Some(subject) = msg.subject() {
        c.words("subject:", subject);
    }
    if let Some(domain) = from_domain(&msg) {
        c.add(format!("from:{domain}"));
    }
    let b = bodies(&msg);
    for h in url_hosts(&b.text).into_iter().chain(url_hosts(&b.html_raw)) {
        host_tokens(&mut c, &h);
    }
    c.words("", &b.text);
    c.order
}

fn host_tokens(c: &mut Collector, host: &str) {
    c.add(format!("url:{host}"));
    let labels: Vec<&str> = host.rsplitn(3, '.').collect();
    if let (Some(tld), Some(name), Some(_)) = (labels.first(), labels.get(1), labels.get(2)) {
        c.add(format!("url:{name}.{tld}"));
    }
}

/// The domain of the first `From:` address, lower case, if it looks like one.
pub(crate) fn from_domain(msg: &Message<'_>) -> Option<String> {
    let addr = msg.from()?.first()?.address()?;
    let (_, domain) = addr.rsplit_once('@')?;
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    valid_host(&d).then_some(d)
}

/// Identifies a message for "learnt already?": the Message-ID, else the body (what follows
/// the first empty line), hashed. 32 hex digits.
pub(crate) fn digest(message: &[u8]) -> String {
    let mut h = Sha256::new();
    let mid = parse(message).and_then(|m| m.message_id().map(|s| s.trim().to_string()));
    match mid {
        Some(id) if !id.is_empty() => {
            h.update(b"mid:");
            h.update(id.as_bytes());
        }
        _ => {
            h.update(b"body:");
            h.update(body_of(message));
        }
    }
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn body_of(message: &[u8]) -> &[u8] {
    let crlf = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4);
    let lf = message.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let start = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => 0,
    };
    message.get(start..).unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_cover_subject_from_urls_and_words() {
        let m = b"From: Spammer <x@Promo.Example.COM>\r\nSubject: Win a PRIZE now\r\n\
                  Content-Type: text/html\r\n\r\n\
                  <html><style>.x{color:red}</style><body><p>Claim your <b>lottery</b> \
                  winnings at <a href=\"https://www.casino.example.net/x?y\">here</a>\
                  &nbsp;supercalifragilisticexpialidocious</p></body></html>\r\n";
        let t = tokenize(m);
        for want in [
            "subject:win",
            "subject:prize",
            "from:promo.example.com",
            "url:www.casino.example.net",
            "url:example.net",
            "claim",
            "lottery",
            "winnings",
            "skip:s:30",
        ] {
            assert!(t.iter().any(|x| x == want), "{want} missing from {t:?}");
        }
        assert!(!t.iter().any(|x| x.contains("color")), "{t:?}");
        assert!(!t.iter().any(|x| x == "now" || x == "a"), "{t:?}");
        assert!(t.iter().all(|x| !x.contains(char::is_whitespace)));
    }

    #[test]
    fn tokens_are_capped() {
        let mut m = b"Subject: many\r\n\r\n".to_vec();
        for i in 0..10_000 {
            m.extend_from_slice(format!("word{i} ").as_bytes());
        }
        assert_eq!(tokenize(&m).len(), MAX_TOKENS_PER_MESSAGE);
    }

    #[test]
    fn digest_uses_message_id_then_body() {
        let a = b"Message-ID: <1@x>\r\nSubject: a\r\n\r\nbody\r\n";
        let b = b"Message-ID: <1@x>\r\nSubject: b\r\n\r\nother\r\n";
        assert_eq!(digest(a), digest(b));
        let c = b"Subject: a\r\n\r\nbody\r\n";
        let d = b"Subject: b\r\n\r\nbody\r\n";
        let e = b"Subject: b\r\n\r\nbody2\r\n";
        assert_eq!(digest(c), digest(d));
        assert_ne!(digest(c), digest(e));
        assert_eq!(digest(a).len(), 32);
    }

    #[test]
    fn url_hosts_are_checked() {
        assert_eq!(
            url_hosts("see http://user:pw@Evil.Example.org:8080/p and https://x and http://a_b.c"),
            vec!["evil.example.org".to_string()]
        );
    }
}
