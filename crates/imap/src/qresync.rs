//! What QRESYNC tells a client that comes back (RFC 7162 §3.2): the UIDs expunged since its
//! mod-sequence, as `VANISHED (EARLIER)`, and the `FETCH (UID FLAGS MODSEQ)` of what changed.
//! Used by SELECT/EXAMINE (QRESYNC …) and UID FETCH (CHANGEDSINCE n VANISHED).

use ownmail_imap_proto::{Data, FetchValue, SeqNum, SeqRange, SequenceSet};
use ownmail_mailstore::{Folder, MessageInfo};

use crate::message;

/// The UIDs expunged after `since`, limited to `within` (`*` there being the last UID ever
/// given). When the store no longer remembers that far back, every UID below `uid_next` that
/// is not `present` is reported (RFC 7162 §3.2.5.2 allows reporting UIDs the client never
/// had). `None` when there is nothing to report.
pub(crate) fn vanished(
    folder: &Folder,
    since: u64,
    present: &[MessageInfo],
    uid_next: u32,
    within: Option<&SequenceSet>,
) -> Option<SequenceSet> {
    let last = uid_next.saturating_sub(1);
    let gone: Vec<(u32, u32)> = match folder.expunged_since(since) {
        Ok(Some(uids)) => {
            let nums: Vec<u32> = uids.iter().map(|u| u.0).collect();
            ranges_of(&nums)
        }
        // Not remembered (or unreadable): everything not present may be gone.
        Ok(None) | Err(_) => gaps(present, last),
    };
    let picked = match within {
        Some(set) => intersect(&gone, &normalise(set, last)),
        None => gone,
    };
    let ranges: Vec<SeqRange> = picked
        .into_iter()
        .filter_map(|(a, b)| {
            let a = std::num::NonZeroU32::new(a)?;
            let b = std::num::NonZeroU32::new(b)?;
            Some(SeqRange::new(SeqNum::Value(a), SeqNum::Value(b)))
        })
        .collect();
    (!ranges.is_empty()).then_some(SequenceSet(ranges))
}

/// `* n FETCH (UID u FLAGS (…) MODSEQ (m))` for message index `i`.
pub(crate) fn flags_fetch(i: usize, m: &MessageInfo) -> Data {
    Data::Fetch {
        seq: u32::try_from(i + 1).unwrap_or(u32::MAX),
        items: vec![
            FetchValue::Uid(m.uid.0),
            FetchValue::Flags(message::to_imap_flags(&m.flags)),
            FetchValue::ModSeq(m.modseq),
        ],
    }
}

/// Sorted numbers as inclusive ranges.
fn ranges_of(nums: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &n in nums {
        match out.last_mut() {
            Some((_, b)) if b.checked_add(1) == Some(n) => *b = n,
            Some((_, b)) if *b >= n => {}
            _ => out.push((n, n)),
        }
    }
    out
}

/// The UIDs in 1..=last that no message in `present` (UID order) has.
fn gaps(present: &[MessageInfo], last: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut next = 1u32;
    for m in present {
        let u = m.uid.0;
        if u > next {
            out.push((next, u - 1));
        }
        next = next.max(u.saturating_add(1));
    }
    if next <= last {
        out.push((next, last));
    }
    out
}

/// The set's ranges with `*` as `last`, sorted and merged.
fn normalise(set: &SequenceSet, last: u32) -> Vec<(u32, u32)> {
    let mut r: Vec<(u32, u32)> = set
        .0
        .iter()
        .map(|r| {
            let (a, b) = (r.start.resolve(last), r.end.resolve(last));
            (a.min(b), a.max(b))
        })
        .collect();
    r.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some((_, e)) if a <= e.saturating_add(1) => *e = (*e).max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The intersection of two sorted, disjoint range lists.
fn intersect(x: &[(u32, u32)], y: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while let (Some(&(a1, b1)), Some(&(a2, b2))) = (x.get(i), y.get(j)) {
        let (a, b) = (a1.max(a2), b1.min(b2));
        if a <= b {
            out.push((a, b));
        }
        if b1 < b2 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_gaps_and_intersections() {
        assert_eq!(ranges_of(&[1, 2, 3, 5, 7, 8]), vec![(1, 3), (5, 5), (7, 8)]);
        let set = SequenceSet::parse(b"5:*,1,2").expect("set");
        assert_eq!(normalise(&set, 9), vec![(1, 2), (5, 9)]);
        assert_eq!(
            intersect(&[(1, 3), (6, 20)], &[(2, 7), (9, 9)]),
            vec![(2, 3), (6, 7), (9, 9)]
        );
    }
}
