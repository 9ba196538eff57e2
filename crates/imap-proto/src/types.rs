//! Small value types shared by commands and responses.

use std::fmt;
use std::num::NonZeroU32;

/// Most ranges one sequence set may hold: bounds the work a `1,2,3,…` set can ask for.
pub const MAX_SEQUENCE_RANGES: usize = 4096;

/// One end of a sequence range: a number or `*` (the largest in use, RFC 3501 §9 seq-number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqNum {
    Value(NonZeroU32),
    Star,
}

impl SeqNum {
    /// Resolves `*` to `largest`.
    pub fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNum::Value(v) => v.get(),
            SeqNum::Star => largest,
        }
    }
}

/// An inclusive range; `start <= end` after parsing (`5:3` becomes `3:5`, `*:4` becomes `4:*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqRange {
    pub start: SeqNum,
    pub end: SeqNum,
}

/// A sequence set (RFC 3501 §9 `sequence-set`, used for both message numbers and UIDs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceSet(pub Vec<SeqRange>);

impl SequenceSet {
    /// Parses a whole sequence set such as `1:*,5:3` (normalised, bounded).
    pub fn parse(text: &[u8]) -> Option<Self> {
        let mut c = crate::cursor::Cursor::new(text);
        let set = c.sequence_set().ok()?;
        c.end().ok()?;
        Some(set)
    }

    /// A set of one number (0 gives `*`'s meaning never: it is refused with `None`).
    pub fn single(n: u32) -> Option<Self> {
        let v = SeqNum::Value(NonZeroU32::new(n)?);
        Some(SequenceSet(vec![SeqRange { start: v, end: v }]))
    }

    /// A set of one range `a:b`, normalised.
    pub fn range(a: SeqNum, b: SeqNum) -> Self {
        SequenceSet(vec![SeqRange::new(a, b)])
    }

    /// Builds the shortest set naming exactly `numbers` (sorted and merged), e.g. for
    /// `COPYUID`/`VANISHED`/ESEARCH `ALL`. Empty input gives `None`.
    pub fn from_numbers(numbers: &[u32]) -> Option<Self> {
        let mut sorted: Vec<u32> = numbers.iter().copied().filter(|&n| n > 0).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for n in sorted {
            match ranges.last_mut() {
                Some((_, end)) if end.checked_add(1) == Some(n) => *end = n,
                _ => ranges.push((n, n)),
            }
        }
        let out: Vec<SeqRange> = ranges
            .into_iter()
            .filter_map(|(a, b)| {
                Some(SeqRange {
                    start: SeqNum::Value(NonZeroU32::new(a)?),
                    end: SeqNum::Value(NonZeroU32::new(b)?),
                })
            })
            .collect();
        if out.is_empty() {
            None
        } else {
            Some(SequenceSet(out))
        }
    }

    /// Whether `n` is in the set, where `*` stands for `largest`.
    pub fn contains(&self, n: u32, largest: u32) -> bool {
        self.0.iter().any(|r| {
            let (a, b) = (r.start.resolve(largest), r.end.resolve(largest));
            let (a, b) = if a <= b { (a, b) } else { (b, a) };
            a <= n && n <= b
        })
    }
}

impl SeqRange {
    /// A range with its ends put in order (RFC 3501 §9: `5:3` is `3:5`).
    pub fn new(a: SeqNum, b: SeqNum) -> Self {
        match (a, b) {
            (SeqNum::Star, v @ SeqNum::Value(_)) => SeqRange {
                start: v,
                end: SeqNum::Star,
            },
            (SeqNum::Value(x), SeqNum::Value(y)) if x > y => SeqRange { start: b, end: a },
            _ => SeqRange { start: a, end: b },
        }
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeqNum::Value(v) => write!(f, "{v}"),
            SeqNum::Star => f.write_str("*"),
        }
    }
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start == r.end {
                write!(f, "{}", r.start)?;
            } else {
                write!(f, "{}:{}", r.start, r.end)?;
            }
        }
        Ok(())
    }
}

/// A message flag (RFC 3501 §2.3.2): system flags, keywords, and other `\` flags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Flag {
    Answered,
    Flagged,
    Deleted,
    Seen,
    Draft,
    /// `\Recent`: only ever sent by the server (IMAP4rev1).
    Recent,
    /// A keyword atom, such as `$Junk` or `NonJunk`.
    Keyword(String),
    /// Another `\`-flag, stored without its backslash.
    Extension(String),
}

impl Flag {
    /// Parses `\Seen` (any case) or a keyword.
    pub fn parse(s: &str) -> Flag {
        match s.strip_prefix('\\') {
            Some(name) => match name.to_ascii_lowercase().as_str() {
                "answered" => Flag::Answered,
                "flagged" => Flag::Flagged,
                "deleted" => Flag::Deleted,
                "seen" => Flag::Seen,
                "draft" => Flag::Draft,
                "recent" => Flag::Recent,
                _ => Flag::Extension(name.to_string()),
            },
            None => Flag::Keyword(s.to_string()),
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flag::Answered => f.write_str("\\Answered"),
            Flag::Flagged => f.write_str("\\Flagged"),
            Flag::Deleted => f.write_str("\\Deleted"),
            Flag::Seen => f.write_str("\\Seen"),
            Flag::Draft => f.write_str("\\Draft"),
            Flag::Recent => f.write_str("\\Recent"),
            Flag::Keyword(k) => f.write_str(k),
            Flag::Extension(e) => write!(f, "\\{e}"),
        }
    }
}

/// A mailbox attribute in LIST responses and `CREATE … (USE (…))` (RFC 9051 §7.3.1,
/// RFC 6154 special-use, RFC 5258 LIST-EXTENDED).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MailboxAttr {
    NoInferiors,
    NoSelect,
    Marked,
    Unmarked,
    HasChildren,
    HasNoChildren,
    NonExistent,
    Subscribed,
    Remote,
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
    /// Another attribute, without its backslash.
    Other(String),
}

impl MailboxAttr {
    /// Parses `\Sent` (any case); a missing backslash is tolerated.
    pub fn parse(s: &str) -> MailboxAttr {
        let name = s.strip_prefix('\\').unwrap_or(s);
        match name.to_ascii_lowercase().as_str() {
            "noinferiors" => MailboxAttr::NoInferiors,
            "noselect" => MailboxAttr::NoSelect,
            "marked" => MailboxAttr::Marked,
            "unmarked" => MailboxAttr::Unmarked,
            "haschildren" => MailboxAttr::HasChildren,
            "hasnochildren" => MailboxAttr::HasNoChildren,
            "nonexistent" => MailboxAttr::NonExistent,
            "subscribed" => MailboxAttr::Subscribed,
            "remote" => MailboxAttr::Remote,
            "all" => MailboxAttr::All,
            "archive" => MailboxAttr::Archive,
            "drafts" => MailboxAttr::Drafts,
            "flagged" => MailboxAttr::Flagged,
            "junk" => MailboxAttr::Junk,
            "sent" => MailboxAttr::Sent,
            "trash" => MailboxAttr::Trash,
            _ => MailboxAttr::Other(name.to_string()),
        }
    }
}

impl fmt::Display for MailboxAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            MailboxAttr::NoInferiors => "Noinferiors",
            MailboxAttr::NoSelect => "Noselect",
            MailboxAttr::Marked => "Marked",
            MailboxAttr::Unmarked => "Unmarked",
            MailboxAttr::HasChildren => "HasChildren",
            MailboxAttr::HasNoChildren => "HasNoChildren",
            MailboxAttr::NonExistent => "NonExistent",
            MailboxAttr::Subscribed => "Subscribed",
            MailboxAttr::Remote => "Remote",
            MailboxAttr::All => "All",
            MailboxAttr::Archive => "Archive",
            MailboxAttr::Drafts => "Drafts",
            MailboxAttr::Flagged => "Flagged",
            MailboxAttr::Junk => "Junk",
            MailboxAttr::Sent => "Sent",
            MailboxAttr::Trash => "Trash",
            MailboxAttr::Other(o) => o,
        };
        write!(f, "\\{s}")
    }
}

/// A mailbox name as the client sent it (modified UTF-7 from IMAP4rev1 clients, UTF-8 once
/// UTF8=ACCEPT or IMAP4rev2 is enabled: the session decodes with [`crate::mutf7_decode`]).
/// `INBOX` in any case is normalised to `INBOX` (RFC 3501 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox(String);

impl Mailbox {
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        if name.eq_ignore_ascii_case("INBOX") {
            Mailbox("INBOX".to_string())
        } else {
            Mailbox(name)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }
}

/// A STATUS data item (RFC 9051 §6.3.11; SIZE and DELETED from RFC 9051/8438, HIGHESTMODSEQ
/// from RFC 7162, APPENDLIMIT from RFC 7889).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    HighestModSeq,
    AppendLimit,
}

impl StatusItem {
    pub fn parse(s: &str) -> Option<StatusItem> {
        Some(match s.to_ascii_uppercase().as_str() {
            "MESSAGES" => StatusItem::Messages,
            "RECENT" => StatusItem::Recent,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "SIZE" => StatusItem::Size,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "APPENDLIMIT" => StatusItem::AppendLimit,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::AppendLimit => "APPENDLIMIT",
        }
    }
}

/// A calendar date as in SEARCH `BEFORE 1-Feb-1994` (RFC 3501 §9 `date`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// An INTERNALDATE (RFC 3501 §9 `date-time`): local time and its offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Offset from UTC in minutes, e.g. `-0700` is -420.
    pub zone_minutes: i16,
}

pub(crate) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Date {
    /// A valid date, or `None` (day checked against the month, leap years included).
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (day >= 1 && day <= days).then_some(Date { year, month, day })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = MONTHS
            .get(usize::from(self.month).wrapping_sub(1))
            .unwrap_or(&"Jan");
        write!(f, "{}-{}-{:04}", self.day, m, self.year)
    }
}

impl fmt::Display for DateTime {
    /// The quoted-less form `17-Jul-1996 02:44:25 -0700` (date-day-fixed: space padded).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = MONTHS
            .get(usize::from(self.date.month).wrapping_sub(1))
            .unwrap_or(&"Jan");
        let sign = if self.zone_minutes < 0 { '-' } else { '+' };
        let z = self.zone_minutes.unsigned_abs();
        write!(
            f,
            "{:>2}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}",
            self.date.day,
            m,
            self.date.year,
            self.hour,
            self.minute,
            self.second,
            sign,
            z / 60,
            z % 60
        )
    }
}
