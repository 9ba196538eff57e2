//! Delivery status notifications (SPEC §5.4): the bounce a sender gets when a recipient fails
//! for good, and the warning when one is long delayed, in the format of RFC 3464 as requested
//! by the DSN extension (RFC 3461). Pure: an envelope, reasons and the original in, the bytes
//! of a new message out; the caller decides where it goes and queues it.
//!
//! The notice is a `multipart/report; report-type=delivery-status` (RFC 6522) of three parts:
//! a human explanation, the machine-readable `message/delivery-status` (RFC 3464 §2), and
//! the original message — whole with `RET=FULL`, its header section otherwise (RFC 3461
//! §4.3; the header section is also the fallback for originals that are not safe to return
//! as 8bit text, or too big).
//!
//! Output invariants: CRLF line ends, no line over 998 octets (RFC 5322 §2.1.1), no CR or LF
//! from a reason or an address anywhere but where we put it, 8bit only where the original
//! brought it (and then declared), a boundary that occurs nowhere in the content.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ownmail_types::{Address, BodyType, Envelope, Notify, Ret, ReversePath};

/// RFC 5322 §2.1.1: at most 998 octets before the CRLF.
const MAX_LINE: usize = 998;
/// Header and report lines are folded to this width where there is a space to fold at.
const FOLD_AT: usize = 76;
/// A diagnostic longer than this is cut (a remote reply can be long; the notice stays short).
const MAX_DIAGNOSTIC: usize = 900;
/// `RET=FULL` returns at most this much; a bigger original comes back as its headers.
const MAX_FULL_RETURN: usize = 10 << 20;

/// Which notice: the recipient failed for good, or is still being retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsnKind {
    Failed,
    Delayed,
}

/// One recipient a notice reports on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The address as given in `RCPT TO` (RFC 3464 §2.3.2 Final-Recipient).
    pub rcpt: Address,
    /// The `ORCPT=` parameter as stored, `addr-type;address` xtext-decoded (RFC 3461 §4.2).
    pub orcpt: Option<String>,
    /// An RFC 3463 status code such as `5.1.1` or `4.4.1` (see [`status_for`]).
    pub status: String,
    /// The remote reply (`550 5.1.1 user unknown`) or our own reason.
    pub diagnostic: String,
    /// The host that gave the reply, when a remote host did.
    pub remote_mta: Option<String>,
}

/// The notice for `rcpts` of the message `env` (whose bytes are `original`), or None when
/// none is due: a null sender (never bounce a bounce, RFC 3461 §6.2), `NOTIFY=NEVER`, or a
/// `NOTIFY` list without `FAILURE` (for [`DsnKind::Failed`]) or without `DELAY` (for
/// [`DsnKind::Delayed`]). An absent `NOTIFY` (all flags false) reports both (RFC 3461 §4.1
/// leaves the default to the MTA; Postfix and Exim send delay warnings too). `notify` is
/// the recipients' common `NOTIFY`; the caller groups recipients by it.
pub fn build_dsn(
    hostname: &str,
    env: &Envelope,
    kind: DsnKind,
    rcpts: &[DsnRecipient],
    notify: &Notify,
    original: &[u8],
    now: SystemTime,
) -> Option<Vec<u8>> {
    let ReversePath::Address(sender) = &env.mail_from else {
        return None;
    };
    if rcpts.is_empty() || !notice_due(kind, notify) {
        return None;
    }
    let host = clean_host(hostname);
    let returned = Returned::of(env, original);
    let text = human_part(&host, env, kind, rcpts, &returned);
    let report = report_part(&host, env, kind, rcpts, now);
    let boundary = boundary_for(&[&returned.bytes, text.as_bytes(), report.as_bytes()]);
    let eight_bit = !returned.bytes.is_ascii();

    let subject = match kind {
        DsnKind::Failed => "Undelivered Mail Returned to Sender",
        DsnKind::Delayed => "Delayed Mail (still being retried)",
    };
    let mut head = String::new();
    head.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n"
    ));
    head.push_str(&format!("To: <{}>\r\n", header_text(&sender.to_string())));
    head.push_str(&format!("Subject: {subject}\r\n"));
    head.push_str(&format!("Date: {}\r\n", rfc5322_date(now)));
    head.push_str(&format!(
        "Message-ID: <{}.{}@{host}>\r\n",
        unix_secs(now),
        random_token()
    ));
    // RFC 3834 §5: automatic responders must not answer this.
    head.push_str("Auto-Submitted: auto-replied\r\n");
    head.push_str("MIME-Version: 1.0\r\n");
    head.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
    ));
    head.push_str(&format!(
        "Content-Transfer-Encoding: {}\r\n",
        if eight_bit { "8bit" } else { "7bit" }
    ));
    head.push_str("\r\nThis is a MIME-encapsulated message.\r\n\r\n");

    let mut out = head.into_bytes();
    // Part 1: for people.
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\
             Content-Description: Notification\r\n\r\n{text}\r\n\r\n"
        )
        .as_bytes(),
    );
    // Part 2: for programs (RFC 3464 §2).
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Type: message/delivery-status\r\n\
             Content-Description: Delivery report\r\n\r\n{report}\r\n"
        )
        .as_bytes(),
    );
    // Part 3: the original, or what of it we return.
    let (content_type, description) = if returned.full {
        ("message/rfc822", "Undelivered Message")
    } else {
        ("text/rfc822-headers", "Undelivered Message Headers")
    };
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Description: {description}\r\n"
        )
        .as_bytes(),
    );
    if eight_bit {
        out.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&returned.bytes);
    // The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Some(out)
}

/// The RFC 3463 status of a failure: the first enhanced code of class 4 or 5 in `reason`
/// (`550 5.1.1 user unknown` → `5.1.1`), else `5.0.0` for a permanent failure and `4.0.0`
/// for a temporary one.
pub fn status_for(reason: &str, permanent: bool) -> String {
    find_status(reason).unwrap_or_else(|| if permanent { "5.0.0" } else { "4.0.0" }.to_string())
}

/// RFC 3461 §4.1 as ownmail reads it (see [`build_dsn`]).
fn notice_due(kind: DsnKind, notify: &Notify) -> bool {
    if notify.never {
        return false;
    }
    let given = notify.success || notify.failure || notify.delay;
    match kind {
        DsnKind::Failed => !given || notify.failure,
        DsnKind::Delayed => !given || notify.delay,
    }
}

/// The first `class.subject.detail` (RFC 3463 §2: class 4 or 5, then 1–3 digits twice) that
/// stands alone: not part of a longer dotted number such as an IP address.
fn find_status(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let digits = |from: usize| {
        b.get(from..)
            .map_or(0, |t| t.iter().take_while(|c| c.is_ascii_digit()).count())
    };
    for start in 0..b.len() {
        if !matches!(b.get(start), Some(b'4' | b'5')) {
            continue;
        }
        if start > 0
            && b.get(start - 1)
                .is_some_and(|c| c.is_ascii_digit() || *c == b'.')
        {
            continue;
        }
        if b.get(start + 1) != Some(&b'.') {
            continue;
        }
        let subject = digits(start + 2);
        if !(1..=3).contains(&subject) || b.get(start + 2 + subject) != Some(&b'.') {
            continue;
        }
        let detail_at = start + 3 + subject;
        let detail = digits(detail_at);
        if !(1..=3).contains(&detail) {
            continue;
        }
        let end = detail_at + detail;
        // "5.1.1." ends a sentence; "5.1.1.7" is something else.
        let next_is_digit = |i: usize| b.get(i).is_some_and(|c| c.is_ascii_digit());
        if b.get(end).is_some_and(|c| c.is_ascii_digit())
            || (b.get(end) == Some(&b'.') && next_is_digit(end + 1))
        {
            continue;
        }
        return s.get(start..end).map(str::to_string);
    }
    None
}

/// What part 3 carries.
struct Returned {
    /// The whole message, or only its header section.
    full: bool,
    /// Normalized: CRLF line ends, every line short enough, ending in CRLF (or empty).
    bytes: Vec<u8>,
    /// Why a requested full return became headers only.
    downgraded: Option<&'static str>,
}

impl Returned {
    fn of(env: &Envelope, original: &[u8]) -> Returned {
        if env.ret == Some(Ret::Full) {
            let why_not = if original.len() > MAX_FULL_RETURN {
                Some("the message is too large to be returned whole")
            } else if env.body == BodyType::BinaryMime || !safe_as_text(original) {
                Some("the message cannot be returned whole as text")
            } else {
                None
            };
            if why_not.is_none() {
                return Returned {
                    full: true,
                    bytes: crlf_lines(original),
                    downgraded: None,
                };
            }
            return Returned {
                full: false,
                bytes: headers_only(original),
                downgraded: why_not,
            };
        }
        Returned {
            full: false,
            bytes: headers_only(original),
            downgraded: None,
        }
    }
}

/// True if the bytes can travel as 7bit/8bit MIME content (RFC 2045 §2.7, §2.8): no NUL, no
/// CR outside a CRLF, no line over 998 octets.
fn safe_as_text(bytes: &[u8]) -> bool {
    bytes.split(|&b| b == b'\n').all(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.len() <= MAX_LINE && !line.iter().any(|&b| b == b'\r' || b == 0)
    })
}

/// The lines of `bytes` with CRLF ends (a bare LF counts as a line end too), ending in CRLF.
fn crlf_lines(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return out;
    }
    for line in body.split(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The header section of `original` (our `Received:` included), without the blank line
/// that ends it; a stray CR or NUL dropped, an overlong line cut, so that it is valid text.
fn headers_only(original: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in original.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let clean: Vec<u8> = line
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != 0)
            .take(MAX_LINE)
            .collect();
        out.extend_from_slice(&clean);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Part 1: what happened, for the person who sent the message.
fn human_part(
    host: &str,
    env: &Envelope,
    kind: DsnKind,
    rcpts: &[DsnRecipient],
    returned: &Returned,
) -> String {
    let arrived = rfc5322_date(UNIX_EPOCH + Duration::from_secs(env.received_at));
    let mut paragraphs = vec![format!("This is the mail system at {host}.")];
    paragraphs.push(match kind {
        DsnKind::Failed => format!(
            "Your message of {arrived} could not be delivered to the recipients \
             below. The mail system has given up on them."
        ),
        DsnKind::Delayed => format!(
            "Your message of {arrived} has not been delivered yet to the \
             recipients below. The mail system is still trying and will tell you if \
             it gives up; you do not need to send the message again."
        ),
    });
    let mut out: Vec<String> = Vec::new();
    for p in &paragraphs {
        out.extend(wrap(p, FOLD_AT, ""));
        out.push(String::new());
    }
    for r in rcpts {
        let said = match &r.remote_mta {
            Some(mta) => format!(
                "<{}>: host {} said: {}",
                ascii_text(&r.rcpt.to_string()),
                clean_host(mta),
                diagnostic_text(&r.diagnostic)
            ),
            None => format!(
                "<{}>: {}",
                ascii_text(&r.rcpt.to_string()),
                diagnostic_text(&r.diagnostic)
            ),
        };
        out.extend(wrap(&said, FOLD_AT, "    "));
        out.push(String::new());
    }
    let attached = match (returned.full, returned.downgraded) {
        (true, _) => "The original message is attached.".to_string(),
        (false, Some(why)) => {
            format!("Only the headers of the original message are attached: {why}.")
        }
        (false, None) => "The headers of the original message are attached.".to_string(),
    };
    out.extend(wrap(&attached, FOLD_AT, ""));
    out.join("\r\n")
}

/// Part 2: the `message/delivery-status` fields (RFC 3464 §2.2, §2.3), per-message group
/// first, then one group per recipient, groups separated by a blank line.
fn report_part(
    host: &str,
    env: &Envelope,
    kind: DsnKind,
    rcpts: &[DsnRecipient],
    now: SystemTime,
) -> String {
    let mut groups = Vec::new();
    let mut message = vec![format!("Reporting-MTA: dns; {host}")];
    if let Some(envid) = &env.envid {
        message.push(format!("Original-Envelope-Id: {}", xtext_printable(envid)));
    }
    message.push(format!(
        "Arrival-Date: {}",
        rfc5322_date(UNIX_EPOCH + Duration::from_secs(env.received_at))
    ));
    groups.push(message.join("\r\n"));

    for r in rcpts {
        let mut g = Vec::new();
        if let Some(orcpt) = &r.orcpt {
            // §2.3.1: the address type as given, then the address.
            let (addr_type, addr) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
            let addr_type = if !addr_type.is_empty()
                && addr_type
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                addr_type
            } else {
                "rfc822"
            };
            g.push(format!(
                "Original-Recipient: {addr_type}; {}",
                xtext_printable(addr.trim())
            ));
        }
        g.push(format!("Final-Recipient: {}", final_recipient(&r.rcpt)));
        let (action, status) = match kind {
            DsnKind::Failed => ("failed", report_status(&r.status, '5')),
            DsnKind::Delayed => ("delayed", report_status(&r.status, '4')),
        };
        g.push(format!("Action: {action}"));
        g.push(format!("Status: {status}"));
        if let Some(mta) = &r.remote_mta {
            g.push(format!("Remote-MTA: dns; {}", clean_host(mta)));
        }
        let diagnostic = diagnostic_text(&r.diagnostic);
        // §2.3.6: the diagnostic type names the protocol that gave the code.
        let diagnostic_type = if looks_like_smtp_reply(&diagnostic) {
            "smtp"
        } else {
            "X-ownmail"
        };
        g.extend(fold_field(&format!(
            "Diagnostic-Code: {diagnostic_type}; {diagnostic}"
        )));
        g.push(format!("Last-Attempt-Date: {}", rfc5322_date(now)));
        groups.push(g.join("\r\n"));
    }
    // The last group ends in CRLF, the one before the delimiter is the delimiter's.
    let mut report = groups.join("\r\n\r\n");
    report.push_str("\r\n");
    report
}

/// `Status:` for the report: the caller's code if well-formed, in the class the action
/// needs (a delay is never 5.x.x; a failure may be 4.x.x: a persistent transient failure,
/// RFC 3463 §3.1, which is what an expired ttl is).
fn report_status(status: &str, class: char) -> String {
    let given = find_status(status).filter(|s| s.len() == status.trim().len());
    match (given, class) {
        (Some(s), '4') => format!("4{}", s.get(1..).unwrap_or(".0.0")),
        (Some(s), _) => s,
        (None, c) => format!("{c}.0.0"),
    }
}

/// `Final-Recipient:` value: `rfc822; addr`, or for an address with non-ASCII characters the
/// `utf-8` address type with its `\x{HEX}` escapes (RFC 6533 §3), so the field stays ASCII.
fn final_recipient(rcpt: &Address) -> String {
    let addr = rcpt.to_string();
    if addr.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return format!("rfc822; {addr}");
    }
    let mut out = String::from("utf-8; ");
    for c in addr.chars() {
        if ('\x21'..'\x7f').contains(&c) && !matches!(c, '+' | '\\' | '=') {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
        }
    }
    out
}

/// A value decoded from xtext, shown in a report field: printable ASCII as is, anything else
/// (and `+`) as xtext `+HH` (RFC 3461 §4), so no CR, LF or 8bit reaches the report.
fn xtext_printable(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (0x21..0x7f).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// A reason made safe for a header or text line: ASCII only, whitespace runs (CR and LF
/// among them) made one space, control characters dropped, cut to [`MAX_DIAGNOSTIC`].
fn diagnostic_text(s: &str) -> String {
    let mut out = ascii_text(s);
    if out.len() > MAX_DIAGNOSTIC {
        out.truncate(MAX_DIAGNOSTIC);
        out.push_str("...");
    }
    if out.is_empty() {
        out.push_str("no reason given");
    }
    out
}

/// One line of printable ASCII: whitespace runs become one space, other control characters
/// go, non-ASCII becomes `?`.
fn ascii_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            c if c.is_whitespace() => {
                if !out.is_empty() && !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c if c.is_control() => {}
            c if c.is_ascii() => out.push(c),
            _ => out.push('?'),
        }
    }
    out.trim_end().to_string()
}

/// Text for a header where UTF-8 may stand (an SMTPUTF8 address): control characters gone.
fn header_text(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// A host name for `Reporting-MTA`/`Remote-MTA`: letters, digits and `.-_:[]` only.
fn clean_host(s: &str) -> String {
    let host: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
        .take(255)
        .collect();
    if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    }
}

/// `250 …`, `550-…`, `451` alone: an SMTP reply, so `Diagnostic-Code: smtp;`.
fn looks_like_smtp_reply(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(b.first(), Some(b'2'..=b'5'))
        && b.get(1..3)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        && matches!(b.get(3), None | Some(b' ' | b'-'))
}

/// Folds a header-style field at spaces (RFC 5322 §2.2.3): lines of about [`FOLD_AT`]
/// columns, continuation lines starting with a space; a word too long for a line is cut
/// so that no line exceeds [`MAX_LINE`].
fn fold_field(field: &str) -> Vec<String> {
    let mut lines = wrap(field, FOLD_AT, " ");
    for l in &mut lines {
        if l.len() > MAX_LINE {
            l.truncate(MAX_LINE);
        }
    }
    lines
}

/// Greedy word wrap of one line of text at spaces; continuation lines start with `indent`.
/// A word longer than a whole line is cut, so that no line exceeds [`MAX_LINE`].
fn wrap(text: &str, width: usize, indent: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    // `line` holds nothing but the indent (or nothing, on the first line).
    let mut fresh = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !fresh && line.len() + 1 + word.len() > width {
            lines.push(std::mem::replace(&mut line, indent.to_string()));
            fresh = true;
        }
        if !fresh {
            line.push(' ');
            line.push_str(word);
            continue;
        }
        let mut rest = word;
        loop {
            let room = MAX_LINE.saturating_sub(line.len()).max(1);
            if rest.len() <= room {
                line.push_str(rest);
                fresh = false;
                break;
            }
            let (cut, tail) = rest.split_at(char_boundary_at_most(rest, room));
            line.push_str(cut);
            lines.push(std::mem::replace(&mut line, indent.to_string()));
            rest = tail;
        }
    }
    if !fresh {
        lines.push(line);
    }
    lines
}

/// The largest char boundary of `s` at or below `i`, but past the first character.
fn char_boundary_at_most(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    if i == 0 {
        s.chars().next().map_or(0, char::len_utf8)
    } else {
        i
    }
}

/// A boundary found in none of `contents` (RFC 2046 §5.1.1).
fn boundary_for(contents: &[&[u8]]) -> String {
    loop {
        let b = format!("=_ownmail_{}{}", random_token(), random_token());
        if !contents
            .iter()
            .any(|c| c.windows(b.len()).any(|w| w == b.as_bytes()))
        {
            return b;
        }
    }
}

/// 16 hex digits nobody can guess in advance: std's per-process random hash keys over the
/// time and a counter (this crate has no random number generator of its own).
fn random_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

use ownmail_types::rfc5322_date;

#[cfg(test)]
mod tests {
    use super::*;
    use ownmail_types::QueueId;

    const ORIGINAL: &[u8] = b"Received: from client (local)\r\n\tby mx.example.org (ownmail) id 1;\r\n\tTue, 24 Nov 2026 23:48:00 +0000\r\nFrom: Sender <sender@example.org>\r\nSubject: hello\r\n\r\nSecret body line.\r\n";

    fn addr(s: &str) -> Address {
        Address::parse(s).expect("test address")
    }

    fn envelope(ret: Option<Ret>) -> Envelope {
        Envelope {
            id: QueueId::new(),
            mail_from: ReversePath::Address(addr("sender@example.org")),
            helo: "client".into(),
            client: None,
            auth_user: None,
            tag: None,
            received_at: 1_795_564_080,
            body: BodyType::SevenBit,
            smtputf8: false,
            ret,
            envid: None,
            recipients: Vec::new(),
        }
    }

    fn rcpt(to: &str, status: &str, diagnostic: &str) -> DsnRecipient {
        DsnRecipient {
            rcpt: addr(to),
            orcpt: None,
            status: status.into(),
            diagnostic: diagnostic.into(),
            remote_mta: None,
        }
    }

    fn unknown_user() -> DsnRecipient {
        DsnRecipient {
            remote_mta: Some("mx.x.org".into()),
            ..rcpt("a@x.org", "5.1.1", "550 5.1.1 user unknown")
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_564_200)
    }

    fn build(env: &Envelope, kind: DsnKind, rcpts: &[DsnRecipient], notify: Notify) -> String {
        let dsn = build_dsn("mx.example.org", env, kind, rcpts, &notify, ORIGINAL, now())
            .expect("a notice is due");
        String::from_utf8(dsn).expect("utf-8")
    }

    /// Top-level header section, then each part as (its headers, its content).
    fn parts(dsn: &str) -> (String, Vec<(String, String)>) {
        let (head, body) = dsn.split_once("\r\n\r\n").expect("header section");
        let boundary = head
            .split("boundary=\"")
            .nth(1)
            .and_then(|b| b.split('"').next())
            .expect("boundary parameter");
        let delimiter = format!("\r\n--{boundary}");
        let (_preamble, rest) = body.split_once(&delimiter).expect("first delimiter");
        let rest = rest
            .strip_suffix(&format!("{delimiter}--\r\n"))
            .expect("close delimiter at the end");
        let parts = rest
            .split(&delimiter)
            .map(|p| {
                let p = p.strip_prefix("\r\n").expect("CRLF after the delimiter");
                let (h, c) = p.split_once("\r\n\r\n").expect("part headers");
                (h.to_string(), c.to_string())
            })
            .collect();
        (head.to_string(), parts)
    }

    #[test]
    fn failed_notice_is_a_multipart_report_with_three_parts() {
        let dsn = build(
            &envelope(None),
            DsnKind::Failed,
            &[unknown_user()],
            Notify::default(),
        );
        let (head, parts) = parts(&dsn);
        for field in [
            "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n",
            "To: <sender@example.org>\r\n",
            "Subject: Undelivered Mail Returned to Sender\r\n",
            "Date: Tue, 24 Nov 2026 23:50:00 +0000\r\n",
            "Auto-Submitted: auto-replied\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"",
            "Content-Transfer-Encoding: 7bit",
        ] {
            assert!(head.contains(field), "{field:?} missing in\n{head}");
        }
        assert!(head.starts_with("From: "));
        assert!(head.contains("Message-ID: <") && head.contains("@mx.example.org>"));
        assert_eq!(parts.len(), 3, "{dsn}");

        let (h, text) = &parts[0];
        assert!(h.starts_with("Content-Type: text/plain; charset=us-ascii\r\n"));
        assert!(text.contains("<a@x.org>: host mx.x.org said: 550 5.1.1 user unknown"));
        assert!(text.contains("headers of the original message are attached"));

        let (h, report) = &parts[1];
        assert!(h.starts_with("Content-Type: message/delivery-status\r\n"));
        let groups: Vec<&str> = report.trim_end().split("\r\n\r\n").collect();
        assert_eq!(
            groups,
            [
                "Reporting-MTA: dns; mx.example.org\r\n\
                 Arrival-Date: Tue, 24 Nov 2026 23:48:00 +0000",
                "Final-Recipient: rfc822; a@x.org\r\n\
                 Action: failed\r\n\
                 Status: 5.1.1\r\n\
                 Remote-MTA: dns; mx.x.org\r\n\
                 Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\
                 Last-Attempt-Date: Tue, 24 Nov 2026 23:50:00 +0000"
            ]
        );

        let (h, returned) = &parts[2];
        assert_eq!(
            h,
            "Content-Type: text/rfc822-headers\r\nContent-Description: Undelivered Message Headers"
        );
        assert!(returned.starts_with("Received: from client (local)\r\n\tby mx.example.org"));
        assert!(returned.contains("Subject: hello\r\n"));
        assert!(
            !returned.contains("Secret body"),
            "RET=HDRS returns no body"
        );
    }

    #[test]
    fn ret_hdrs_returns_the_header_section_only() {
        let dsn = build(
            &envelope(Some(Ret::Hdrs)),
            DsnKind::Failed,
            &[unknown_user()],
            Notify::default(),
        );
        let (_, parts) = parts(&dsn);
        assert!(parts[2]
            .0
            .starts_with("Content-Type: text/rfc822-headers\r\n"));
        assert!(!parts[2].1.contains("Secret body"));
    }

    #[test]
    fn ret_full_returns_the_whole_message() {
        let dsn = build(
            &envelope(Some(Ret::Full)),
            DsnKind::Failed,
            &[unknown_user()],
            Notify::default(),
        );
        let (_, parts) = parts(&dsn);
        assert!(parts[2].0.starts_with("Content-Type: message/rfc822\r\n"));
        assert_eq!(parts[2].1.as_bytes(), ORIGINAL);
        assert!(parts[0].1.contains("The original message is attached."));
    }

    #[test]
    fn ret_full_of_an_overlong_line_returns_the_headers() {
        let mut original = b"Subject: long\r\n\r\n".to_vec();
        original.extend(vec![b'x'; 1200]);
        original.extend_from_slice(b"\r\n");
        let dsn = build_dsn(
            "mx.example.org",
            &envelope(Some(Ret::Full)),
            DsnKind::Failed,
            &[unknown_user()],
            &Notify::default(),
            &original,
            now(),
        )
        .expect("due");
        let dsn = String::from_utf8(dsn).expect("utf-8");
        let (_, parts) = parts(&dsn);
        assert!(parts[2]
            .0
            .starts_with("Content-Type: text/rfc822-headers\r\n"));
        assert_eq!(parts[2].1, "Subject: long\r\n");
        assert!(parts[0].1.contains("Only the headers"));
    }

    #[test]
    fn an_8bit_original_is_declared_8bit() {
        let original = "Subject: caf\u{e9}\r\n\r\nd\u{e9}j\u{e0} vu\r\n".as_bytes();
        let dsn = build_dsn(
            "mx.example.org",
            &envelope(Some(Ret::Full)),
            DsnKind::Failed,
            &[unknown_user()],
            &Notify::default(),
            original,
            now(),
        )
        .expect("due");
        let dsn = String::from_utf8(dsn).expect("utf-8");
        let (head, parts) = parts(&dsn);
        assert!(head.ends_with("Content-Transfer-Encoding: 8bit"));
        assert!(parts[2].0.contains("Content-Transfer-Encoding: 8bit"));
        assert!(parts[2].1.contains("d\u{e9}j\u{e0} vu"));
        assert!(parts[0].1.is_ascii() && parts[1].1.is_ascii());
    }

    #[test]
    fn delayed_notice_says_delayed_with_a_4xx_status() {
        let delayed = DsnRecipient {
            remote_mta: Some("mx.x.org".into()),
            ..rcpt("a@x.org", "4.4.1", "451 4.4.1 no answer from host")
        };
        let dsn = build(
            &envelope(None),
            DsnKind::Delayed,
            &[delayed],
            Notify::default(),
        );
        let (head, parts) = parts(&dsn);
        assert!(head.contains("Subject: Delayed Mail (still being retried)\r\n"));
        assert!(parts[0].1.contains("has not been delivered yet"));
        assert!(parts[1].1.contains("Action: delayed\r\nStatus: 4.4.1\r\n"));
        // A delay is never reported with a permanent status.
        let odd = build(
            &envelope(None),
            DsnKind::Delayed,
            &[rcpt("a@x.org", "5.1.1", "x")],
            Notify::default(),
        );
        assert!(odd.contains("Status: 4.1.1\r\n"));
    }

    #[test]
    fn orcpt_and_envid_are_reported_only_when_given() {
        let mut env = envelope(None);
        env.envid = Some("QQ314159".into());
        let with_orcpt = DsnRecipient {
            orcpt: Some("rfc822;Orig+tag@x.org".into()),
            ..rcpt("a@x.org", "5.1.1", "550 5.1.1 user unknown")
        };
        let other_type = DsnRecipient {
            orcpt: Some("x-local;bob".into()),
            ..rcpt("b@x.org", "5.1.1", "550 5.1.1 user unknown")
        };
        let dsn = build(
            &env,
            DsnKind::Failed,
            &[with_orcpt, other_type, rcpt("c@x.org", "5.0.0", "refused")],
            Notify::default(),
        );
        let (_, parts) = parts(&dsn);
        let report = &parts[1].1;
        assert!(report.starts_with(
            "Reporting-MTA: dns; mx.example.org\r\nOriginal-Envelope-Id: QQ314159\r\nArrival-Date: "
        ));
        assert!(report.contains(
            "\r\n\r\nOriginal-Recipient: rfc822; Orig+2Btag@x.org\r\nFinal-Recipient: rfc822; a@x.org\r\n"
        ));
        assert!(report.contains(
            "\r\n\r\nOriginal-Recipient: x-local; bob\r\nFinal-Recipient: rfc822; b@x.org\r\n"
        ));
        assert!(report.contains("\r\n\r\nFinal-Recipient: rfc822; c@x.org\r\n"));
        assert_eq!(report.matches("Original-Recipient:").count(), 2);
        assert!(report.contains("Diagnostic-Code: X-ownmail; refused\r\n"));
        assert!(parts[0].1.contains("<c@x.org>: refused"));

        let plain = build(
            &envelope(None),
            DsnKind::Failed,
            &[unknown_user()],
            Notify::default(),
        );
        assert!(!plain.contains("Original-Envelope-Id") && !plain.contains("Original-Recipient"));
    }

    #[test]
    fn notify_and_null_sender_decide_whether_a_notice_is_due() {
        let due = |env: &Envelope, kind, notify: Notify| {
            build_dsn(
                "mx.example.org",
                env,
                kind,
                &[unknown_user()],
                &notify,
                ORIGINAL,
                now(),
            )
            .is_some()
        };
        let env = envelope(None);
        let n = |never, success, failure, delay| Notify {
            never,
            success,
            failure,
            delay,
        };
        let table = [
            // (notify, failed due, delayed due)
            (Notify::default(), true, true),
            (n(true, false, false, false), false, false),
            (n(false, true, false, false), false, false),
            (n(false, false, true, false), true, false),
            (n(false, false, false, true), false, true),
            (n(false, true, true, true), true, true),
        ];
        for (notify, failed, delayed) in table {
            assert_eq!(due(&env, DsnKind::Failed, notify), failed, "{notify:?}");
            assert_eq!(due(&env, DsnKind::Delayed, notify), delayed, "{notify:?}");
        }
        let mut bounce = envelope(None);
        bounce.mail_from = ReversePath::Null;
        assert!(!due(&bounce, DsnKind::Failed, Notify::default()));
        assert!(!due(&bounce, DsnKind::Delayed, Notify::default()));
        assert!(build_dsn(
            "h",
            &env,
            DsnKind::Failed,
            &[],
            &Notify::default(),
            ORIGINAL,
            now()
        )
        .is_none());
    }

    #[test]
    fn hostile_reasons_cannot_break_lines_or_grow_them() {
        let long_word = "y".repeat(3000);
        let hostile = DsnRecipient {
            remote_mta: Some("mx.x.org\r\nX-Evil: 1".into()),
            ..rcpt(
                "a@x.org",
                "5.1.1\r\nX-Evil: 2",
                &format!("550 5.1.1 no\r\nX-Evil: 3\r\n\r\n--x caf\u{e9} {long_word}"),
            )
        };
        let many_words = rcpt("b@x.org", "5.0.0", &"word ".repeat(400));
        let dsn = build(
            &envelope(None),
            DsnKind::Failed,
            &[hostile, many_words],
            Notify::default(),
        );
        for line in dsn.split("\r\n") {
            assert!(line.len() <= MAX_LINE, "line of {} octets", line.len());
            assert!(!line.contains('\n') && !line.contains('\r'));
            assert!(!line.starts_with("X-Evil"), "injected: {line}");
        }
        let (_, parts) = parts(&dsn);
        assert_eq!(parts.len(), 3);
        let report = &parts[1].1;
        assert!(report.contains("Status: 5.0.0\r\n"), "{report}");
        assert!(report.contains("Remote-MTA: dns; mx.x.orgX-Evil:1\r\n"));
        assert!(report.contains("Diagnostic-Code: smtp; 550 5.1.1 no X-Evil: 3 --x caf?\r\n yyyy"));
        assert!(dsn.is_ascii());
    }

    #[test]
    fn status_for_finds_the_enhanced_code() {
        let table = [
            (
                "mx.example.test [127.0.0.2]: 550 5.1.1 user unknown",
                true,
                "5.1.1",
            ),
            ("550-5.7.1 blocked\r\n550 5.7.1 really", true, "5.7.1"),
            ("host [5.6.7.8]: 451 4.7.1 greylisted", false, "4.7.1"),
            (
                "no delivery within 4d; last error: 421 4.4.2 timeout",
                true,
                "4.4.2",
            ),
            ("250 2.0.0 ok but weird", true, "5.0.0"),
            ("connection refused by 1.2.3.4", false, "4.0.0"),
            ("see 5.1.10.", true, "5.1.10"),
            ("version 5.1.1.7", true, "5.0.0"),
            ("", false, "4.0.0"),
        ];
        for (reason, permanent, want) in table {
            assert_eq!(status_for(reason, permanent), want, "{reason:?}");
        }
    }

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}
