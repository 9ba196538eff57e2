//! The pure half of checking incoming mail: the results as plain values, the
//! `Authentication-Results:` field that states them (RFC 8601), the forged fields that claim
//! our name, and what local policy makes of a verdict. No DNS, no I/O: unit-tested here.

use std::fmt::Write as _;
use std::ops::Range;

/// A result of RFC 8601 §2.7 (the subset SPF, DKIM, DMARC and ARC use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl AuthResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }
}

/// The SPF result of one identity (RFC 7208 §2.3/§2.4: MAIL FROM, or HELO for `<>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpfLine {
    pub result: AuthResult,
    /// `MAIL FROM`, empty for the null sender (then `helo` was checked).
    pub mail_from: String,
    pub helo: String,
}

/// One DKIM signature's result (RFC 6376 §6.1, RFC 8601 §2.7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimLine {
    pub result: AuthResult,
    /// `d=` and `s=` when the signature could be read.
    pub domain: Option<String>,
    pub selector: Option<String>,
    /// Why it is not a pass, for the comment.
    pub reason: Option<String>,
}

/// The domain's published DMARC policy (RFC 7489 §6.3 `p=`/`sp=`), as it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmarcLine {
    pub result: AuthResult,
    /// The RFC 5322 `From:` domain; None when there is no single one.
    pub header_from: Option<String>,
    pub policy: Option<DmarcPolicy>,
}

/// Everything checked about one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub spf: SpfLine,
    /// Empty: no signature (`dkim=none`).
    pub dkim: Vec<DkimLine>,
    pub dmarc: DmarcLine,
    pub arc: AuthResult,
}

impl Report {
    /// `spf=pass dkim=pass dmarc=pass arc=none`, for the log. With several signatures the
    /// best DKIM result is named.
    pub fn summary(&self) -> String {
        let dkim = if self.dkim.iter().any(|d| d.result == AuthResult::Pass) {
            AuthResult::Pass
        } else {
            self.dkim.first().map_or(AuthResult::None, |d| d.result)
        };
        format!(
            "spf={} dkim={} dmarc={} arc={}",
            self.spf.result.as_str(),
            dkim.as_str(),
            self.dmarc.result.as_str(),
            self.arc.as_str()
        )
    }
}

/// RFC 8601 §2.2: a `pvalue` is a `value` (token or quoted-string) or `[local-part@]domain`.
/// Anything else is written as a quoted-string; control characters are dropped.
fn pvalue(out: &mut String, v: &str) {
    let plain = !v.is_empty()
        && v.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '@' | '=' | '/')
        })
        && v.matches('@').count() <= 1;
    if plain {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// An RFC 5322 comment: parentheses and backslashes are dropped rather than escaped, and
/// the text is cut short, so that a hostile value cannot break out of it or grow the field.
fn comment(out: &mut String, text: &str) {
    out.push_str(" (");
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '(' | ')' | '\\'))
        .take(80)
        .collect();
    out.push_str(clean.trim());
    out.push(')');
}

/// The whole `Authentication-Results:` field (RFC 8601 §2.2), folded one method a line,
/// ending in CRLF.
pub fn render(hostname: &str, r: &Report) -> String {
    let mut o = String::with_capacity(256);
    o.push_str("Authentication-Results: ");
    o.push_str(hostname);
    o.push_str(";\r\n\tspf=");
    o.push_str(r.spf.result.as_str());
    if r.spf.mail_from.is_empty() {
        o.push_str(" smtp.helo=");
        pvalue(&mut o, &r.spf.helo);
    } else {
        o.push_str(" smtp.mailfrom=");
        pvalue(&mut o, &r.spf.mail_from);
    }
    if r.dkim.is_empty() {
        o.push_str(";\r\n\tdkim=none");
    }
    for d in &r.dkim {
        o.push_str(";\r\n\tdkim=");
        o.push_str(d.result.as_str());
        if let Some(reason) = &d.reason {
            comment(&mut o, reason);
        }
        if let Some(domain) = &d.domain {
            o.push_str(" header.d=");
            pvalue(&mut o, domain);
        }
        if let Some(s) = &d.selector {
            o.push_str(" header.s=");
            pvalue(&mut o, s);
        }
    }
    o.push_str(";\r\n\tdmarc=");
    o.push_str(r.dmarc.result.as_str());
    if let Some(p) = r.dmarc.policy {
        comment(
            &mut o,
            match p {
                DmarcPolicy::None => "p=none",
                DmarcPolicy::Quarantine => "p=quarantine",
                DmarcPolicy::Reject => "p=reject",
            },
        );
    }
    if let Some(from) = &r.dmarc.header_from {
        o.push_str(" header.from=");
        pvalue(&mut o, from);
    }
    let _ = write!(o, ";\r\n\tarc={}\r\n", r.arc.as_str());
    o
}

/// What local policy (`dmarc reject`, `spf fail junk`, `dmarc fail junk`) asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalPolicy {
    pub dmarc_reject: bool,
    pub spf_fail_junk: bool,
    pub dmarc_fail_junk: bool,
}

/// What becomes of a checked message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Deliver; `junk` names why it is marked for the junk folder, if it is.
    Accept { junk: Option<&'static str> },
    /// Refuse at DATA (550 5.7.1) with this text.
    Reject(String),
}

impl LocalPolicy {
    /// Only a definite `fail` counts: a `temperror` or `permerror` (our DNS, their broken
    /// record) never refuses or junks mail (RFC 7489 §6.6.2 leaves those to local policy; we
    /// prefer not to lose mail over a DNS hiccup).
    pub fn decide(&self, r: &Report) -> Action {
        let dmarc_failed = r.dmarc.result == AuthResult::Fail;
        let policy = r.dmarc.policy.unwrap_or(DmarcPolicy::None);
        if self.dmarc_reject && dmarc_failed && policy == DmarcPolicy::Reject {
            let domain = r
                .dmarc
                .header_from
                .as_deref()
                .unwrap_or("the sender's domain");
            return Action::Reject(format!(
                "DMARC policy of {domain} rejects this message (p=reject)"
            ));
        }
        if self.dmarc_fail_junk && dmarc_failed && policy != DmarcPolicy::None {
            return Action::Accept {
                junk: Some("dmarc-fail"),
            };
        }
        if self.spf_fail_junk && r.spf.result == AuthResult::Fail {
            return Action::Accept {
                junk: Some("spf-fail"),
            };
        }
        Action::Accept { junk: None }
    }
}

/// The fields that mark a message for the junk folder: `X-Spam: yes` is what `maildir …
/// junk` looks for (crates/delivery); `X-Ownmail-Junk:` says why.
pub fn junk_fields(why: &str) -> String {
    format!("X-Spam: yes\r\nX-Ownmail-Junk: {why}\r\n")
}

/// One header field of the header section: its byte range (continuation lines and the
/// final line break included) and its name.
struct Field<'a> {
    range: Range<usize>,
    name: &'a [u8],
    value: &'a [u8],
}

/// The header fields of `message`, up to the empty line (or the end). A line without a
/// colon that is not a continuation is skipped, as mail-parser does.
fn fields(message: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut at = 0;
    while at < message.len() {
        let end = message
            .get(at..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map_or(message.len(), |i| at + i + 1);
        let line = message.get(at..end).unwrap_or_default();
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if content.is_empty() {
            break;
        }
        let continuation = matches!(content.first(), Some(b' ' | b'\t'));
        match out.last_mut() {
            Some(f) if continuation => {
                f.range.end = end;
                f.value = message.get(f.value_start()..end).unwrap_or_default();
            }
            _ => {
                if let Some(colon) = content.iter().position(|&b| b == b':') {
                    out.push(Field {
                        range: at..end,
                        name: content.get(..colon).unwrap_or_default(),
                        value: line.get(colon + 1..).unwrap_or_default(),
                    });
                }
            }
        }
        at = end;
    }
    out
}

impl Field<'_> {
    /// Where the value starts: just after the colon.
    fn value_start(&self) -> usize {
        self.range.start + self.name.len() + 1
    }
}

/// The size of the header section (up to and including the empty line).
pub fn header_size(message: &[u8]) -> usize {
    fields(message).last().map_or(0, |f| f.range.end)
}

/// How many fields named `name` the header has.
pub fn count_fields(message: &[u8], name: &str) -> usize {
    fields(message)
        .iter()
        .filter(|f| {
            f.name
                .trim_ascii_end()
                .eq_ignore_ascii_case(name.as_bytes())
        })
        .count()
}

/// The authserv-id of an `Authentication-Results:` value (RFC 8601 §2.2): the first token
/// after comments and folding white space.
fn authserv_id(value: &[u8]) -> &[u8] {
    let mut i = 0;
    let mut depth = 0u32;
    while let Some(&b) = value.get(i) {
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    let rest = value.get(i..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|&b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'('))
        .unwrap_or(rest.len());
    let id = rest.get(..end).unwrap_or_default();
    // A quoted authserv-id (a `value` may be a quoted-string).
    id.strip_prefix(b"\"")
        .and_then(|s| s.strip_suffix(b"\""))
        .unwrap_or(id)
}

/// The byte ranges of the `Authentication-Results:` fields that claim to come from
/// `hostname` (RFC 8601 §5: a border MTA removes them, they cannot be ours yet). Others
/// are kept: they are another host's claims, for whoever trusts that host.
pub fn forged_results(message: &[u8], hostname: &str) -> Vec<Range<usize>> {
    let host = hostname.trim_end_matches('.').as_bytes();
    fields(message)
        .into_iter()
        .filter(|f| {
            f.name
                .trim_ascii_end()
                .eq_ignore_ascii_case(b"Authentication-Results")
        })
        .filter(|f| {
            let id = authserv_id(f.value);
            let id = id.strip_suffix(b".").unwrap_or(id);
            id.eq_ignore_ascii_case(host)
        })
        .map(|f| f.range)
        .collect()
}

/// The byte ranges (sorted; whole fields with their continuation lines and line break) of
/// the header fields named one of `names`, case-insensitive.
pub fn named_fields(message: &[u8], names: &[&str]) -> Vec<Range<usize>> {
    fields(message)
        .into_iter()
        .filter(|f| {
            let name = f.name.trim_ascii_end();
            names
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        })
        .map(|f| f.range)
        .collect()
}

#[cfg(test)]
mod tests;
