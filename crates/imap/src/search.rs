//! SEARCH and UID SEARCH (RFC 9051 §6.4.4) with ESEARCH results (RFC 4731). Text keys are
//! case-insensitive substring matches over the raw bytes (no MIME decoding yet). The
//! sent-date keys are refused with BAD for now. MODSEQ (RFC 7162 §3.1.5) matches messages
//! changed at or after the mod-sequence (per-flag entries are not kept: the message's
//! mod-sequence stands for all of them) and adds `(MODSEQ n)`, the highest among the hits.

use ownmail_imap_proto::{Code, Data, SearchKey, SearchReturn, SequenceSet};
use ownmail_mailstore::{Folder, MessageInfo};

use crate::fetch::read_message;
use crate::message;
use crate::session::{Session, Tagged};

struct Candidate<'a> {
    folder: &'a Folder,
    m: &'a MessageInfo,
    seq: u32,
    count: u32,
    largest_uid: u32,
    body: Option<Vec<u8>>,
}

impl Candidate<'_> {
    fn body(&mut self) -> &[u8] {
        if self.body.is_none() {
            let mut m = self.m.clone();
            self.body = Some(read_message(self.folder, &mut m).unwrap_or_default());
        }
        self.body.as_deref().unwrap_or_default()
    }

    fn date(&self) -> ownmail_imap_proto::Date {
        let t = self
            .folder
            .internal_date(self.m)
            .unwrap_or(std::time::UNIX_EPOCH);
        message::to_datetime(t).date
    }

    fn header_has(&mut self, name: &str, needle: &[u8]) -> bool {
        let values = message::field_values(self.body(), name);
        !values.is_empty() && message::contains_ci(&values, needle)
    }
}

/// Keys refused for now; checked before any message is read.
fn supported(k: &SearchKey) -> bool {
    match k {
        SearchKey::SentBefore(_) | SearchKey::SentOn(_) | SearchKey::SentSince(_) => false,
        SearchKey::Not(k) => supported(k),
        SearchKey::Or(a, b) => supported(a) && supported(b),
        SearchKey::And(ks) => ks.iter().all(supported),
        _ => true,
    }
}

fn has_modseq(k: &SearchKey) -> bool {
    match k {
        SearchKey::ModSeq { .. } => true,
        SearchKey::Not(k) => has_modseq(k),
        SearchKey::Or(a, b) => has_modseq(a) || has_modseq(b),
        SearchKey::And(ks) => ks.iter().any(has_modseq),
        _ => false,
    }
}

fn eval(k: &SearchKey, c: &mut Candidate) -> bool {
    let f = &c.m.flags;
    match k {
        SearchKey::All => true,
        SearchKey::Answered => f.answered,
        SearchKey::Unanswered => !f.answered,
        SearchKey::Deleted => f.deleted,
        SearchKey::Undeleted => !f.deleted,
        SearchKey::Draft => f.draft,
        SearchKey::Undraft => !f.draft,
        SearchKey::Flagged => f.flagged,
        SearchKey::Unflagged => !f.flagged,
        SearchKey::Seen => f.seen,
        SearchKey::Unseen => !f.seen,
        // \Recent is never set (RFC 9051 drops it): NEW and RECENT match nothing.
        SearchKey::Recent | SearchKey::New => false,
        SearchKey::Old => true,
        SearchKey::Keyword(kw) => f.keywords.iter().any(|x| x.eq_ignore_ascii_case(kw)),
        SearchKey::Unkeyword(kw) => !f.keywords.iter().any(|x| x.eq_ignore_ascii_case(kw)),
        SearchKey::Larger(n) => c.m.vsize.unwrap_or_else(|| c.body().len() as u64) > *n,
        SearchKey::Smaller(n) => c.m.vsize.unwrap_or_else(|| c.body().len() as u64) < *n,
        SearchKey::Uid(set) => set.contains(c.m.uid.0, c.largest_uid),
        SearchKey::SequenceSet(set) => set.contains(c.seq, c.count),
        SearchKey::Before(d) => c.date() < *d,
        SearchKey::On(d) => c.date() == *d,
        SearchKey::Since(d) => c.date() >= *d,
        SearchKey::From(s) => c.header_has("From", s),
        SearchKey::To(s) => c.header_has("To", s),
        SearchKey::Cc(s) => c.header_has("Cc", s),
        SearchKey::Bcc(s) => c.header_has("Bcc", s),
        SearchKey::Subject(s) => c.header_has("Subject", s),
        SearchKey::Header(name, s) => {
            let values = message::field_values(c.body(), name);
            !values.is_empty() && message::contains_ci(&values, s)
        }
        SearchKey::Body(s) => message::contains_ci(message::text(c.body()), s),
        SearchKey::Text(s) => message::contains_ci(c.body(), s),
        SearchKey::Not(k) => !eval(k, c),
        SearchKey::Or(a, b) => eval(a, c) || eval(b, c),
        SearchKey::And(ks) => ks.iter().all(|k| eval(k, c)),
        SearchKey::ModSeq { modseq, .. } => c.m.modseq >= *modseq,
        SearchKey::SentBefore(_) | SearchKey::SentOn(_) | SearchKey::SentSince(_) => false,
    }
}

pub(crate) fn search(
    s: &mut Session,
    tag: &str,
    uid: bool,
    returns: Option<&[SearchReturn]>,
    charset: Option<&str>,
    key: &SearchKey,
) -> Tagged {
    if let Some(cs) = charset {
        if !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII") {
            return Tagged::no("Unsupported charset")
                .code(Code::Other("BADCHARSET (UTF-8 US-ASCII)".into()));
        }
    }
    if !supported(key) {
        return Tagged::bad("SENTBEFORE/SENTON/SENTSINCE are not supported yet");
    }
    let with_modseq = has_modseq(key);
    if with_modseq {
        s.condstore = true;
    }
    let Some(sel) = s.selected.as_ref() else {
        return Tagged::bad("No mailbox selected");
    };
    let count = u32::try_from(sel.msgs.len()).unwrap_or(u32::MAX);
    let largest_uid = sel.msgs.last().map_or(0, |m| m.uid.0);
    let mut hits = Vec::new();
    let mut top_modseq = 0;
    for (i, m) in sel.msgs.iter().enumerate() {
        let seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let mut c = Candidate {
            folder: &sel.folder,
            m,
            seq,
            count,
            largest_uid,
            body: None,
        };
        if eval(key, &mut c) {
            hits.push(if uid { m.uid.0 } else { seq });
            top_modseq = top_modseq.max(m.modseq);
        }
    }
    // RFC 7162 §3.1.5: a search with MODSEQ that found something says the highest
    // mod-sequence among what it found.
    let modseq = (with_modseq && !hits.is_empty()).then_some(top_modseq);
    let esearch = returns.is_some() || s.rev2;
    if !esearch {
        s.data(Data::Search {
            numbers: hits,
            modseq,
        });
        return Tagged::ok("SEARCH completed");
    }
    let asked = returns.unwrap_or_default();
    // RFC 4731 §3.1: RETURN () means RETURN (ALL).
    let all_too = asked.is_empty() || asked.contains(&SearchReturn::All);
    let pick = |r: SearchReturn| asked.contains(&r);
    s.data(Data::ESearch {
        tag: Some(tag.to_string()),
        uid,
        min: if pick(SearchReturn::Min) {
            hits.first().copied()
        } else {
            None
        },
        max: if pick(SearchReturn::Max) {
            hits.last().copied()
        } else {
            None
        },
        count: if pick(SearchReturn::Count) {
            Some(u32::try_from(hits.len()).unwrap_or(u32::MAX))
        } else {
            None
        },
        all: if all_too {
            SequenceSet::from_numbers(&hits)
        } else {
            None
        },
        modseq,
    });
    Tagged::ok("SEARCH completed")
}
