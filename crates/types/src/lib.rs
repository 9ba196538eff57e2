//! Types shared along the mail path (SPEC §2): addresses, queue ids, the envelope a message
//! carries through the queue, and the small traits between the stages — [`MessageSink`]
//! (SMTP hands an accepted message to the queue), [`Courier`] (the queue hands one
//! recipient to a delivery agent), [`OutboundSigner`] (SMTP has outgoing mail of our own
//! users DKIM-signed before it is queued) and [`InboundChecker`] (SMTP has mail from outside
//! checked for SPF/DKIM/DMARC/ARC before it is queued). Nothing here does I/O.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// `Tue, 24 Nov 2026 23:48:00 +0000` (RFC 5322 §3.3), in UTC: for `Date:`, `Received:`
/// and DSN fields, wherever a message header needs a date.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = usize::try_from(days.rem_euclid(7))
        .ok()
        .and_then(|i| WEEKDAYS.get(i))
        .unwrap_or(&"Thu");
    let month = usize::try_from(m - 1)
        .ok()
        .and_then(|i| MONTHS.get(i))
        .unwrap_or(&"Jan");
    format!(
        "{weekday}, {d} {month} {y} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z.saturating_add(719_468);
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

/// A boxed future, so that the traits below can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A queue id: 20 lowercase hex digits, the first 12 the arrival time in microseconds (so ids
/// sort by arrival), the last 8 random. Safe as a file name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId(String);

impl QueueId {
    pub fn new() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let r: u32 = rand::random();
        QueueId(format!("{:012x}{r:08x}", micros & 0xffff_ffff_ffff))
    }

    /// Accepts only what [`QueueId::new`] makes (it names files in the spool).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 20
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| QueueId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for QueueId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mailbox address `local@domain`. The local part keeps its case (RFC 5321 §2.4: it may
/// matter to the receiving host); the domain is lowercased.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    local: String,
    domain: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressError {
    Empty,
    NoAt,
    EmptyLocal,
    EmptyDomain,
    TooLong,
    BadChar(char),
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::Empty => f.write_str("empty address"),
            AddressError::NoAt => f.write_str("address has no @domain"),
            AddressError::EmptyLocal => f.write_str("address has an empty local part"),
            AddressError::EmptyDomain => f.write_str("address has an empty domain"),
            AddressError::TooLong => f.write_str("address too long"),
            AddressError::BadChar(c) => write!(f, "invalid character {c:?} in address"),
        }
    }
}

impl std::error::Error for AddressError {}

impl Address {
    /// Parses `local@domain` (the last `@` splits; a quoted local part may contain `@`).
    /// Limits of RFC 5321 §4.5.3.1: 64 octets of local part, 255 of domain.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(AddressError::NoAt)?;
        if local.is_empty() {
            return Err(AddressError::EmptyLocal);
        }
        if domain.is_empty() {
            return Err(AddressError::EmptyDomain);
        }
        if local.len() > 64 || domain.len() > 255 {
            return Err(AddressError::TooLong);
        }
        if let Some(c) = s
            .chars()
            .find(|c| c.is_control() || *c == ' ' && !local.starts_with('"'))
        {
            return Err(AddressError::BadChar(c));
        }
        if let Some(c) = domain
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':')))
        {
            return Err(AddressError::BadChar(c));
        }
        Ok(Address {
            local: local.to_string(),
            domain: domain.to_lowercase(),
        })
    }

    pub fn new_unchecked(local: &str, domain: &str) -> Self {
        Address {
            local: local.to_string(),
            domain: domain.to_lowercase(),
        }
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// `MAIL FROM:<>` (bounces) or an address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReversePath {
    Null,
    Address(Address),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => Ok(()),
            ReversePath::Address(a) => a.fmt(f),
        }
    }
}

/// The body type declared at MAIL (RFC 6152, RFC 3030).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
    BinaryMime,
}

/// DSN `RET=` (RFC 3461 §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ret {
    Full,
    Hdrs,
}

/// DSN `NOTIFY=` (RFC 3461 §4.1); all false means the default (failures only, per §4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// The system or virtual user a local delivery is made as (from a userbase).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Where one recipient's copy goes, decided when the recipient was accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Destination {
    /// A Maildir (`~` already expanded); `junk` sends spam to its `.Junk` folder.
    Maildir {
        user: LocalUser,
        path: PathBuf,
        junk: bool,
    },
    /// An mbox file, normally `/var/mail/USER`.
    Mbox { user: LocalUser, path: PathBuf },
    /// `/bin/sh -c COMMAND` as the user, the message on stdin.
    Mda { user: LocalUser, command: String },
    /// An LMTP server (`HOST:PORT` or a Unix socket path), given the expanded local user.
    Lmtp { dest: String, rcpt: String },
    /// Out to another host, by the relay action of this name.
    Relay { action: String, to: Address },
}

/// One delivery the message owes: the address the client gave, and where it resolved to.
/// A recipient that an alias expands into several targets gives several `Recipient`s with
/// the same `rcpt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address as given in `RCPT TO`.
    pub rcpt: Address,
    /// DSN `ORCPT=` as given (RFC 3461 §4.2).
    pub orcpt: Option<String>,
    pub notify: Notify,
    pub dest: Destination,
}

/// Everything about a message except its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: QueueId,
    pub mail_from: ReversePath,
    /// The name the client gave in HELO/EHLO.
    pub helo: String,
    /// The client's address; None for local submission.
    pub client: Option<IpAddr>,
    /// The user an authenticated session logged in as.
    pub auth_user: Option<String>,
    /// The listener's tag, if any.
    pub tag: Option<String>,
    /// When the message was accepted, in seconds since the epoch.
    pub received_at: u64,
    pub body: BodyType,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
    pub recipients: Vec<Recipient>,
}

/// What became of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Done; `detail` says where (a file name, the remote reply).
    Delivered { detail: String },
    /// Try again later.
    TempFail { reason: String },
    /// Will never work; the sender gets a bounce.
    PermFail { reason: String },
}

/// A delivery agent. The queue calls it once per pending recipient; the implementer must
/// make the delivery durable (fsynced) before returning `Delivered`, because the queue then
/// forgets the recipient.
pub trait Courier: Send + Sync + 'static {
    fn deliver<'a>(
        &'a self,
        env: &'a Envelope,
        rcpt: &'a Recipient,
        message: &'a [u8],
    ) -> BoxFuture<'a, DeliveryOutcome>;

    /// Several recipients of one message at once, one outcome per recipient in the same
    /// order. A courier that can share work (one SMTP transaction for the recipients of a
    /// domain) overrides this; by default the recipients are delivered one after another.
    fn deliver_batch<'a>(
        &'a self,
        env: &'a Envelope,
        rcpts: &'a [&'a Recipient],
        message: &'a [u8],
    ) -> BoxFuture<'a, Vec<DeliveryOutcome>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(rcpts.len());
            for r in rcpts {
                out.push(self.deliver(env, r, message).await);
            }
            out
        })
    }
}

/// Where SMTP puts a message it accepts. `enqueue` resolves only once the message and its
/// envelope are on disk and fsynced, file and directory (SPEC §5.2): the caller says `250`
/// after that and never before.
pub trait MessageSink: Send + Sync + 'static {
    fn enqueue(&self, env: Envelope, message: Vec<u8>) -> BoxFuture<'_, Result<(), String>>;
}

/// A header field that an [`OutboundSigner`] puts on top of a message, and what it says for
/// the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureField {
    /// The whole field, folded, ending in CRLF (`DKIM-Signature: v=1; …\r\n`).
    pub field: String,
    /// The signing domain (DKIM `d=`).
    pub domain: String,
    /// The DKIM selector (`s=`).
    pub selector: String,
}

/// Signs mail that our own users send out (DKIM, SPEC §5.7). SMTP calls it, before the
/// message is queued, only for authenticated or local senders with at least one recipient
/// relayed to another host; the signer decides from the message itself (its `From:` domain)
/// whether it has a key for it. The message is given with CRLF line ends, as it will be
/// queued; the caller prepends the field unchanged and changes nothing else afterwards.
pub trait OutboundSigner: Send + Sync + 'static {
    /// `Ok(None)`: not ours to sign (no key for the `From:` domain, or no single `From:`
    /// domain). `Err`: a key that should have signed could not.
    fn sign(&self, message: &[u8]) -> Result<Option<SignatureField>, String>;
}

/// What an [`InboundChecker`] is given: a message from outside, as received (CRLF line ends,
/// no `Received:` of ours yet), and the SMTP facts it came with.
#[derive(Clone, Copy, Debug)]
pub struct InboundMessage<'a> {
    /// The client's address.
    pub client: IpAddr,
    /// The name the client gave in HELO/EHLO.
    pub helo: &'a str,
    /// `MAIL FROM`: empty for the null sender `<>`.
    pub mail_from: &'a str,
    pub message: &'a [u8],
}

/// What the checks of an incoming message decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboundVerdict {
    /// Queue it, rewritten: the byte ranges of `remove` (whole header fields of the header
    /// section — forged `Authentication-Results:` — sorted, not overlapping) are left out
    /// and `prepend` (whole fields, each ending in CRLF) goes on top.
    Accept {
        prepend: String,
        remove: Vec<std::ops::Range<usize>>,
        /// One line for the log: `spf=pass dkim=pass dmarc=pass arc=none`, and `junk=…`.
        summary: String,
    },
    /// Refuse at the end of DATA with `550 5.7.1 <reply>`.
    Reject { reply: String, summary: String },
}

impl InboundVerdict {
    /// The message to queue: `before` (our trace fields) on top of the rewritten message.
    /// For `Reject`, the message unchanged.
    pub fn rewrite(&self, before: &[u8], message: &[u8]) -> Vec<u8> {
        let InboundVerdict::Accept {
            prepend, remove, ..
        } = self
        else {
            let mut out = before.to_vec();
            out.extend_from_slice(message);
            return out;
        };
        let mut out = Vec::with_capacity(prepend.len() + before.len() + message.len());
        out.extend_from_slice(prepend.as_bytes());
        out.extend_from_slice(before);
        let mut at = 0;
        for r in remove {
            // Ranges out of order or out of bounds are ignored, never a panic.
            if r.start < at || r.end < r.start {
                continue;
            }
            let (Some(keep), Some(_)) = (message.get(at..r.start), message.get(r.start..r.end))
            else {
                continue;
            };
            out.extend_from_slice(keep);
            at = r.end;
        }
        out.extend_from_slice(message.get(at..).unwrap_or_default());
        out
    }
}

/// Checks mail from outside (SPF, DKIM, DMARC, ARC; SPEC §5.7). SMTP calls it at the end
/// of DATA, before the message is queued and before it answers, only for a client that is
/// neither authenticated nor local (loopback, the local socket). The implementer bounds its
/// own time (DNS included) and never fails: what it cannot find out is a `temperror` or
/// `permerror` result in the header, and the message is accepted unless configured policy
/// says to refuse it.
pub trait InboundChecker: Send + Sync + 'static {
    fn check<'a>(&'a self, msg: InboundMessage<'a>) -> BoxFuture<'a, InboundVerdict>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc5322() {
        use std::time::Duration;
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(UNIX_EPOCH + Duration::from_secs(1_795_564_080)),
            "Tue, 24 Nov 2026 23:48:00 +0000"
        );
        assert_eq!(
            rfc5322_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
    }

    #[test]
    fn queue_ids_are_unique_sortable_file_names() {
        let a = QueueId::new();
        let b = QueueId::new();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 20);
        assert_eq!(QueueId::parse(a.as_str()), Some(a));
        assert_eq!(QueueId::parse("../etc/passwd0000000"), None);
    }

    #[test]
    fn inbound_rewrite_drops_ranges_and_prepends() {
        let msg = b"A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody";
        let v = InboundVerdict::Accept {
            prepend: "X: top\r\n".into(),
            remove: vec![6..12, 100..200, 3..4],
            summary: String::new(),
        };
        assert_eq!(
            v.rewrite(b"R: ours\r\n", msg),
            b"X: top\r\nR: ours\r\nA: 1\r\nC: 3\r\n\r\nbody".to_vec()
        );
    }

    #[test]
    fn addresses_lowercase_the_domain_only() {
        let a = Address::parse("Mayeu@Example.ORG").expect("valid");
        assert_eq!((a.local(), a.domain()), ("Mayeu", "example.org"));
        assert_eq!(a.to_string(), "Mayeu@example.org");
        assert_eq!(Address::parse("nobody"), Err(AddressError::NoAt));
        assert_eq!(Address::parse("@x.org"), Err(AddressError::EmptyLocal));
        assert!(Address::parse("a@b c").is_err());
        assert!(Address::parse(&format!("{}@x.org", "a".repeat(65))).is_err());
    }
}
