//! Helpers over one message's bytes and metadata: flags between store and protocol,
//! INTERNALDATE, header/body split and header fields (RFC 5322 §2.2, §3.5).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ownmail_imap_proto::{Date, DateTime, Flag};
use ownmail_mailstore::Flags;

/// The flags of a message as IMAP names them.
pub(crate) fn to_imap_flags(f: &Flags) -> Vec<Flag> {
    let mut out = Vec::new();
    if f.answered {
        out.push(Flag::Answered);
    }
    if f.flagged {
        out.push(Flag::Flagged);
    }
    if f.deleted {
        out.push(Flag::Deleted);
    }
    if f.seen {
        out.push(Flag::Seen);
    }
    if f.draft {
        out.push(Flag::Draft);
    }
    out.extend(f.keywords.iter().map(|k| Flag::Keyword(k.clone())));
    out
}

/// Sets (`on`) or clears one IMAP flag. `\Recent` and unknown system flags are ignored:
/// neither can be stored (RFC 3501 §2.3.2).
pub(crate) fn apply_flag(f: &mut Flags, flag: &Flag, on: bool) {
    match flag {
        Flag::Answered => f.answered = on,
        Flag::Flagged => f.flagged = on,
        Flag::Deleted => f.deleted = on,
        Flag::Seen => f.seen = on,
        Flag::Draft => f.draft = on,
        Flag::Keyword(k) => {
            if on {
                f.keywords.insert(k.clone());
            } else {
                f.keywords.retain(|x| !x.eq_ignore_ascii_case(k));
            }
        }
        Flag::Recent | Flag::Extension(_) => {}
    }
}

pub(crate) fn from_imap_flags(flags: &[Flag]) -> Flags {
    let mut f = Flags::default();
    for flag in flags {
        apply_flag(&mut f, flag, true);
    }
    f
}

/// Days since 1970-01-01 to (year, month, day) (the civil-from-days algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// INTERNALDATE in UTC.
pub(crate) fn to_datetime(t: SystemTime) -> DateTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    DateTime {
        date: Date {
            year: u16::try_from(y.clamp(0, 9999)).unwrap_or(1970),
            month: u8::try_from(m).unwrap_or(1),
            day: u8::try_from(d).unwrap_or(1),
        },
        hour: u8::try_from(rem / 3600).unwrap_or(0),
        minute: u8::try_from(rem % 3600 / 60).unwrap_or(0),
        second: u8::try_from(rem % 60).unwrap_or(0),
        zone_minutes: 0,
    }
}

/// An APPEND date-time as a point in time (before 1970 is clamped to 1970).
pub(crate) fn from_datetime(dt: &DateTime) -> SystemTime {
    let days = days_from_civil(
        i64::from(dt.date.year),
        u32::from(dt.date.month),
        u32::from(dt.date.day),
    );
    let secs = days * 86_400
        + i64::from(dt.hour) * 3600
        + i64::from(dt.minute) * 60
        + i64::from(dt.second)
        - i64::from(dt.zone_minutes) * 60;
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Where the header ends: the length of the header including the empty line.
pub(crate) fn header_len(msg: &[u8]) -> usize {
    let mut i = 0;
    while i < msg.len() {
        let rest = msg.get(i..).unwrap_or_default();
        if rest.starts_with(b"\r\n") {
            return i + 2;
        }
        if rest.starts_with(b"\n") {
            return i + 1;
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(p) => i += p + 1,
            None => return msg.len(),
        }
    }
    msg.len()
}

pub(crate) fn header(msg: &[u8]) -> &[u8] {
    msg.get(..header_len(msg)).unwrap_or(msg)
}

pub(crate) fn text(msg: &[u8]) -> &[u8] {
    msg.get(header_len(msg)..).unwrap_or_default()
}

/// The header's fields, each as (name, whole raw field with its continuation lines).
pub(crate) fn fields(msg: &[u8]) -> Vec<(&[u8], &[u8])> {
    let h = header(msg);
    let mut out: Vec<(&[u8], &[u8])> = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < h.len() {
        let line_end = h
            .get(i..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
            .map_or(h.len(), |p| i + p + 1);
        let first = h.get(i).copied().unwrap_or(b'\n');
        let blank = first == b'\r' || first == b'\n';
        let cont = first == b' ' || first == b'\t';
        if !cont {
            if let Some(s) = start.take() {
                push_field(h, s, i, &mut out);
            }
            if !blank {
                start = Some(i);
            }
        }
        i = line_end;
    }
    if let Some(s) = start {
        push_field(h, s, h.len(), &mut out);
    }
    out
}

fn push_field<'a>(h: &'a [u8], s: usize, e: usize, out: &mut Vec<(&'a [u8], &'a [u8])>) {
    if let Some(raw) = h.get(s..e) {
        let name_end = raw.iter().position(|&b| b == b':').unwrap_or(0);
        let name = raw.get(..name_end).unwrap_or_default();
        if !name.is_empty() {
            out.push((name, raw));
        }
    }
}

/// The unfolded values of the fields named `name`, joined by newlines.
pub(crate) fn field_values(msg: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, raw) in fields(msg) {
        if n.eq_ignore_ascii_case(name.as_bytes()) {
            let value = raw.get(n.len() + 1..).unwrap_or_default();
            out.extend(value.iter().filter(|&&b| b != b'\r' && b != b'\n'));
            out.push(b'\n');
        }
    }
    out
}

/// HEADER.FIELDS / HEADER.FIELDS.NOT (RFC 3501 §6.4.5): the chosen fields and an empty line.
pub(crate) fn header_fields(msg: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, raw) in fields(msg) {
        let listed = names.iter().any(|x| x.as_bytes().eq_ignore_ascii_case(n));
        if listed != not {
            out.extend_from_slice(raw);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Case-insensitive (ASCII) substring search over raw bytes.
pub(crate) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let dt = to_datetime(t);
        assert_eq!((dt.date.year, dt.date.month, dt.date.day), (2023, 11, 14));
        assert_eq!((dt.hour, dt.minute, dt.second), (22, 13, 20));
        assert_eq!(from_datetime(&dt), t);
    }

    #[test]
    fn header_fields_keep_continuations() {
        let m = b"From: a\r\nSubject: x\r\n  y\r\nTo: b\r\n\r\nbody\r\n";
        assert_eq!(
            header_fields(m, &["subject".into()], false),
            b"Subject: x\r\n  y\r\n\r\n"
        );
        assert_eq!(text(m), b"body\r\n");
        assert_eq!(field_values(m, "SUBJECT"), b" x  y\n");
    }
}
