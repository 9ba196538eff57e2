//! `ownmail-modseq`: a folder's CONDSTORE/QRESYNC state (RFC 7162) — the highest
//! mod-sequence, each message's mod-sequence, and the UIDs expunged lately with the
//! mod-sequence at which they went.
//!
//! ```text
//! ownmail-modseq 1 V1275660208 H57 K12
//! M 25020 1 :S
//! M 25021 57 :FRS
//! E 25019 56
//! ```
//! Header: the format version `1`, `V` the UIDVALIDITY the state belongs to, `H` the highest
//! mod-sequence, `K` the mod-sequence from which expunges are fully known (every UID expunged
//! at a mod-sequence above `K` has an `E` line). `M uid modseq :key`: a message, its
//! mod-sequence and the `:2,` letters its file had when last seen (`#` and a hash when the
//! letters are not plain printable ASCII) — a different key at the next sync means someone
//! else (a Dovecot on the same Maildir) changed its flags. `E uid modseq`: an expunge, oldest
//! first; at most [`MAX_EXPUNGED`] are kept, and dropping older ones raises `K`.
//!
//! Invariants (the owner is [`crate::Folder`], which calls in here under the folder's
//! `dovecot-uidlist.lock`; the file is replaced whole with [`write_durable`], like the UID list):
//! - `H` never goes down while `V` stays, and every change to a folder — flags, a new message
//!   (APPEND, COPY/MOVE in, a delivery picked up by a sync), an expunge — gets `H + 1`; all the
//!   changes of one operation share it.
//! - A folder that never had the file starts with every message at mod-sequence 1 — unless
//!   Dovecot served it (its `dovecot.index` files are there): its clients may hold Dovecot's
//!   mod-sequences, and a HIGHESTMODSEQ below theirs would make them trust stale flags, so the
//!   start is taken from the clock, above any count of changes a folder plausibly had. A file
//!   that cannot be read, or that belongs to another UIDVALIDITY, starts over above anything it
//!   may have said (`K` = `H`, so QRESYNC clients from before get a full VANISHED).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{io_at, Result};
use crate::uidlist::{write_durable, Uid, UidValidity};

pub const MODSEQ: &str = "ownmail-modseq";
/// How many expunges are remembered for QRESYNC (RFC 7162 §3.2.5.2); older ones are summed up
/// by `K`.
pub const MAX_EXPUNGED: usize = 10_000;

/// One message's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub modseq: u64,
    /// [`flag_key`] of the `:2,` letters when last seen.
    pub key: String,
}

/// The parsed file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModSeqState {
    pub uid_validity: UidValidity,
    pub highest: u64,
    /// Every expunge at a mod-sequence above this one is in `expunged`.
    pub known_since: u64,
    pub messages: BTreeMap<Uid, Entry>,
    /// (UID, mod-sequence of its expunge), oldest first.
    pub expunged: VecDeque<(Uid, u64)>,
}

/// The letters as stored: themselves when plain (so the file stays readable), else a hash —
/// a file name is outside data and may hold spaces or line breaks.
pub fn flag_key(info: &str) -> String {
    if info.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
        return info.to_string();
    }
    // FNV-1a: stable across runs and versions, which std's hasher does not promise.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in info.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("#{h:016x}")
}

impl ModSeqState {
    /// The state of a folder that had none: every message at `start`, expunges known from there.
    pub fn fresh(uid_validity: UidValidity, start: u64, current: &[(Uid, &str)]) -> ModSeqState {
        let start = start.max(1);
        ModSeqState {
            uid_validity,
            highest: start,
            known_since: start,
            messages: current
                .iter()
                .map(|(u, info)| {
                    (
                        *u,
                        Entry {
                            modseq: start,
                            key: flag_key(info),
                        },
                    )
                })
                .collect(),
            expunged: VecDeque::new(),
        }
    }

    /// Parses the file's text; `None` when it is not in this format (the caller starts over).
    pub fn parse(text: &str) -> Option<ModSeqState> {
        let mut lines = text.lines();
        let mut header = lines.next()?.split_ascii_whitespace();
        if header.next()? != "ownmail-modseq" || header.next()? != "1" {
            return None;
        }
        let (mut v, mut h, mut k) = (None, None, None);
        for f in header {
            if let Some(x) = f.strip_prefix('V') {
                v = x.parse::<u32>().ok().filter(|&x| x != 0);
            } else if let Some(x) = f.strip_prefix('H') {
                h = x.parse::<u64>().ok();
            } else if let Some(x) = f.strip_prefix('K') {
                k = x.parse::<u64>().ok();
            }
        }
        let mut st = ModSeqState {
            uid_validity: UidValidity(v?),
            highest: h?.max(1),
            known_since: k?,
            messages: BTreeMap::new(),
            expunged: VecDeque::new(),
        };
        for line in lines {
            let mut f = line.splitn(4, ' ');
            match (f.next(), f.next(), f.next(), f.next()) {
                (Some("M"), Some(uid), Some(m), Some(key)) => {
                    let (Ok(uid), Ok(modseq), Some(key)) =
                        (uid.parse(), m.parse::<u64>(), key.strip_prefix(':'))
                    else {
                        return None;
                    };
                    if uid == 0 || modseq > st.highest {
                        return None;
                    }
                    st.messages.insert(
                        Uid(uid),
                        Entry {
                            modseq,
                            key: key.to_string(),
                        },
                    );
                }
                (Some("E"), Some(uid), Some(m), None) => {
                    let (Ok(uid), Ok(modseq)) = (uid.parse(), m.parse::<u64>()) else {
                        return None;
                    };
                    if uid == 0 || modseq > st.highest {
                        return None;
                    }
                    st.expunged.push_back((Uid(uid), modseq));
                }
                _ => return None,
            }
        }
        st.known_since = st.known_since.min(st.highest);
        Some(st)
    }

    pub fn render(&self) -> String {
        let mut out = format!(
            "ownmail-modseq 1 V{} H{} K{}\n",
            self.uid_validity.0, self.highest, self.known_since
        );
        for (uid, e) in &self.messages {
            out.push_str(&format!("M {} {} :{}\n", uid.0, e.modseq, e.key));
        }
        for (uid, m) in &self.expunged {
            out.push_str(&format!("E {} {m}\n", uid.0));
        }
        out
    }

    /// Brings the state in line with the folder a sync found (`current`: UID and `:2,`
    /// letters, `""` for a message in `new/`): new UIDs, changed letters and UIDs gone all
    /// get one new mod-sequence. Returns whether anything changed.
    pub fn reconcile(&mut self, current: &[(Uid, &str)]) -> bool {
        let next = self.highest.saturating_add(1);
        let mut changed = false;
        for (uid, info) in current {
            let key = flag_key(info);
            match self.messages.get_mut(uid) {
                Some(e) if e.key == key => {}
                Some(e) => {
                    e.modseq = next;
                    e.key = key;
                    changed = true;
                }
                None => {
                    self.messages.insert(*uid, Entry { modseq: next, key });
                    changed = true;
                }
            }
        }
        if self.messages.len() != current.len() {
            let present: HashSet<Uid> = current.iter().map(|(u, _)| *u).collect();
            let gone: Vec<Uid> = self
                .messages
                .keys()
                .filter(|u| !present.contains(u))
                .copied()
                .collect();
            self.remove(&gone, next);
            changed |= !gone.is_empty();
        }
        if changed {
            self.highest = next;
        }
        changed
    }

    /// Flags set by us: each of `changes` (UID, new `:2,` letters) gets one new mod-sequence,
    /// which is returned.
    pub fn note_flags(&mut self, changes: &[(Uid, &str)]) -> u64 {
        if changes.is_empty() {
            return self.highest;
        }
        self.highest = self.highest.saturating_add(1);
        for (uid, info) in changes {
            self.messages.insert(
                *uid,
                Entry {
                    modseq: self.highest,
                    key: flag_key(info),
                },
            );
        }
        self.highest
    }

    /// Messages expunged by us.
    pub fn note_expunged(&mut self, uids: &[Uid]) {
        let gone: Vec<Uid> = uids
            .iter()
            .filter(|u| self.messages.contains_key(u))
            .copied()
            .collect();
        if gone.is_empty() {
            return;
        }
        self.highest = self.highest.saturating_add(1);
        self.remove(&gone, self.highest);
    }

    fn remove(&mut self, gone: &[Uid], modseq: u64) {
        for u in gone {
            self.messages.remove(u);
            self.expunged.push_back((*u, modseq));
        }
        // Bounded memory: what is dropped is summed up by `known_since`.
        while self.expunged.len() > MAX_EXPUNGED {
            if let Some((_, m)) = self.expunged.pop_front() {
                self.known_since = self.known_since.max(m);
            }
        }
    }

    /// The UIDs expunged after `modseq`, ascending; `None` when that is older than what is
    /// remembered (the caller must then treat every UID not present as possibly expunged).
    pub fn expunged_since(&self, modseq: u64) -> Option<Vec<Uid>> {
        if modseq < self.known_since {
            return None;
        }
        let mut out: Vec<Uid> = self
            .expunged
            .iter()
            .filter(|(_, m)| *m > modseq)
            .map(|(u, _)| *u)
            .collect();
        out.sort();
        out.dedup();
        Some(out)
    }

    pub fn modseq_of(&self, uid: Uid) -> u64 {
        self.messages.get(&uid).map_or(self.highest, |e| e.modseq)
    }
}

/// Reads `dir/ownmail-modseq` for a folder whose UID list has `uid_validity` and whose
/// messages are `current`. A missing file gives a fresh state at 1; an unreadable one, or one
/// of another UIDVALIDITY, a fresh state above whatever it held. The flag says whether the
/// state must be written.
pub fn load(
    dir: &Path,
    uid_validity: UidValidity,
    current: &[(Uid, &str)],
) -> Result<(ModSeqState, bool)> {
    let path = dir.join(MODSEQ);
    let text = match fs::read(&path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dovecot_served = ["dovecot.index", "dovecot.index.log"]
                .iter()
                .any(|f| fs::symlink_metadata(dir.join(f)).is_ok());
            let start = if dovecot_served { clock_start() } else { 1 };
            return Ok((ModSeqState::fresh(uid_validity, start, current), true));
        }
        Err(e) => return Err(io_at(&path)(e)),
    };
    match ModSeqState::parse(&text) {
        Some(st) if st.uid_validity == uid_validity => Ok((st, false)),
        Some(st) => Ok((
            ModSeqState::fresh(uid_validity, st.highest.saturating_add(1), current),
            true,
        )),
        // Whatever the lost file said, a client may hold a mod-sequence from it.
        None => Ok((
            ModSeqState::fresh(uid_validity, clock_start(), current),
            true,
        )),
    }
}

/// A starting mod-sequence above any count of changes a folder plausibly had: the clock's
/// seconds (1.7 × 10^9 in 2024, against 2^63 of room).
fn clock_start() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .max(2)
}

/// Reads the state as it is, whatever UIDVALIDITY it is for; `None` if there is none or it
/// cannot be read (the next sync makes a new one).
pub fn read(dir: &Path) -> Result<Option<ModSeqState>> {
    let path = dir.join(MODSEQ);
    match fs::read(&path) {
        Ok(b) => Ok(ModSeqState::parse(&String::from_utf8_lossy(&b))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(&path)(e)),
    }
}

/// Replaces the file with `st`, durably.
pub fn save(dir: &Path, st: &ModSeqState) -> Result<()> {
    write_durable(dir, MODSEQ, st.render().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: UidValidity = UidValidity(77);

    #[test]
    fn fresh_state_puts_every_message_at_one() {
        let st = ModSeqState::fresh(V, 1, &[(Uid(1), "S"), (Uid(2), "")]);
        assert_eq!(st.highest, 1);
        assert_eq!(st.modseq_of(Uid(1)), 1);
        assert_eq!(st.modseq_of(Uid(2)), 1);
        assert_eq!(st.expunged_since(1), Some(vec![]));
    }

    #[test]
    fn reconcile_bumps_new_changed_and_gone_once() {
        let mut st = ModSeqState::fresh(V, 1, &[(Uid(1), "S"), (Uid(2), ""), (Uid(3), "")]);
        assert!(!st.reconcile(&[(Uid(1), "S"), (Uid(2), ""), (Uid(3), "")]));
        assert_eq!(st.highest, 1);
        // 2 got flagged elsewhere, 3 vanished, 4 was delivered: one new mod-sequence.
        assert!(st.reconcile(&[(Uid(1), "S"), (Uid(2), "F"), (Uid(4), "")]));
        assert_eq!(st.highest, 2);
        assert_eq!(st.modseq_of(Uid(1)), 1);
        assert_eq!(st.modseq_of(Uid(2)), 2);
        assert_eq!(st.modseq_of(Uid(4)), 2);
        assert_eq!(st.expunged_since(1), Some(vec![Uid(3)]));
        assert_eq!(st.expunged_since(2), Some(vec![]));
    }

    #[test]
    fn note_flags_and_expunges_each_take_a_new_modseq() {
        let mut st = ModSeqState::fresh(V, 1, &[(Uid(1), ""), (Uid(2), "")]);
        assert_eq!(st.note_flags(&[(Uid(1), "S"), (Uid(2), "S")]), 2);
        assert_eq!(st.note_flags(&[]), 2);
        st.note_expunged(&[Uid(2), Uid(9)]);
        assert_eq!(st.highest, 3);
        assert_eq!(st.expunged_since(2), Some(vec![Uid(2)]));
        // The rename we made is not a change at the next sync.
        assert!(!st.reconcile(&[(Uid(1), "S")]));
    }

    #[test]
    fn render_parse_round_trip_keeps_everything() {
        let mut st = ModSeqState::fresh(V, 1, &[(Uid(1), "FS"), (Uid(5), "")]);
        st.note_flags(&[(Uid(5), "has space\n")]);
        st.note_expunged(&[Uid(1)]);
        let back = ModSeqState::parse(&st.render()).expect("parses");
        assert_eq!(back, st);
        assert!(back.messages.values().all(|e| !e.key.contains(' ')));
    }

    #[test]
    fn garbage_is_not_parsed() {
        for bad in [
            "",
            "ownmail-modseq 2 V1 H1 K1\n",
            "ownmail-modseq 1 H1 K1\n",
            "ownmail-modseq 1 V1 H1 K1\nM 1 x :S\n",
            "ownmail-modseq 1 V1 H1 K1\nM 1 9 :S\n",
            "ownmail-modseq 1 V1 H1 K1\nQ 1 1\n",
            "ownmail-modseq 1 V1 H1 K1\nE 0 1\n",
        ] {
            assert_eq!(ModSeqState::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn expunge_memory_is_bounded_and_older_clients_get_none() {
        let n = MAX_EXPUNGED as u32 + 50;
        let all: Vec<(Uid, &str)> = (1..=n).map(|u| (Uid(u), "")).collect();
        let mut st = ModSeqState::fresh(V, 1, &all);
        for u in 1..=n {
            st.note_expunged(&[Uid(u)]);
        }
        assert_eq!(st.expunged.len(), MAX_EXPUNGED);
        // Expunge of UID u happened at modseq u + 1; the first 50 were forgotten.
        assert_eq!(st.known_since, 51);
        assert_eq!(st.expunged_since(1), None);
        assert_eq!(st.expunged_since(50), None);
        let since = st.expunged_since(51).expect("known");
        assert_eq!(since.first(), Some(&Uid(51)));
        assert_eq!(since.len(), MAX_EXPUNGED);
    }

    #[test]
    fn load_starts_at_one_then_above_a_lost_or_foreign_file() {
        let t = tempfile::tempdir().expect("tempdir");
        let cur = [(Uid(1), "S")];
        let (st, write) = load(t.path(), V, &cur).expect("load");
        assert!(write);
        assert_eq!(st.highest, 1);
        let mut st = st;
        st.note_flags(&[(Uid(1), "FS")]);
        save(t.path(), &st).expect("save");
        let (again, write) = load(t.path(), V, &cur).expect("load");
        assert!(!write);
        assert_eq!(again, st);
        // Another UIDVALIDITY: start over above the old highest.
        let (other, write) = load(t.path(), UidValidity(78), &cur).expect("load");
        assert!(write);
        assert_eq!(other.highest, 3);
        assert_eq!(other.known_since, 3);
        // A damaged file: start over from the clock.
        fs::write(t.path().join(MODSEQ), b"garbage").expect("write");
        let (lost, _) = load(t.path(), V, &cur).expect("load");
        assert!(lost.highest > 1_000_000);
        assert_eq!(lost.expunged_since(2), None);
    }

    #[test]
    fn a_folder_dovecot_served_starts_above_its_modseqs() {
        let t = tempfile::tempdir().expect("tempdir");
        fs::write(t.path().join("dovecot.index.log"), b"").expect("write");
        let (st, _) = load(t.path(), V, &[(Uid(1), "S")]).expect("load");
        assert!(st.highest > 1_000_000);
        assert_eq!(st.modseq_of(Uid(1)), st.highest);
    }
}

/// The bump rules as a folder applies them (RFC 7162 §3.1.1), and their persistence.
#[cfg(test)]
mod folder_tests {
    use std::fs;

    use crate::*;

    fn inbox() -> (tempfile::TempDir, MailStore, Folder) {
        let t = tempfile::tempdir().expect("tempdir");
        let s = MailStore::open(t.path().join("Maildir"));
        s.ensure_special_folders(None).expect("ensure");
        let f = s.folder("INBOX").expect("inbox");
        (t, s, f)
    }

    fn seen() -> Flags {
        Flags {
            seen: true,
            ..Flags::default()
        }
    }

    #[test]
    fn a_folder_without_state_starts_at_one_and_keeps_it_across_reopen() {
        let (_t, s, f) = inbox();
        let md = Maildir::open(s.root());
        md.deliver(b"a", None).expect("deliver");
        md.deliver(b"b", None).expect("deliver");
        let st = f.sync().expect("sync");
        assert_eq!(st.highest_modseq, 1);
        assert!(st.messages.iter().all(|m| m.modseq == 1));
        assert!(f.path().join(MODSEQ).exists());
        let again = s.folder("INBOX").expect("reopen").sync().expect("sync");
        assert_eq!(again.highest_modseq, 1);
    }

    #[test]
    fn every_change_bumps_highest_modseq() {
        let (_t, s, f) = inbox();
        let a = f.append(b"a", &Flags::default(), None).expect("append");
        let st = f.sync().expect("sync");
        let h0 = st.highest_modseq;
        // Delivery, seen at the next sync.
        Maildir::open(s.root())
            .deliver(b"b", None)
            .expect("deliver");
        let st = f.sync().expect("sync");
        assert_eq!(st.highest_modseq, h0 + 1);
        let b = st.messages.iter().find(|m| m.uid != a).expect("b").clone();
        assert_eq!(b.modseq, h0 + 1);
        // Our flag change.
        let changed = f.set_flags_many(&[(b.clone(), seen())]).expect("store");
        let b2 = changed.first().cloned().flatten().expect("done");
        assert_eq!(b2.modseq, h0 + 2);
        // A no-op store changes nothing.
        let same = f.set_flags_many(&[(b2.clone(), seen())]).expect("store");
        assert_eq!(
            same.first().cloned().flatten().map(|m| m.modseq),
            Some(h0 + 2)
        );
        let st = f.sync().expect("sync");
        assert_eq!(st.highest_modseq, h0 + 2);
        // Another program renames the file: a new mod-sequence at the next sync.
        let old = f.message_path(&b2);
        let new = old.with_file_name(format!("{}:2,FS", b2.basename));
        fs::rename(&old, &new).expect("rename");
        let st = f.sync().expect("sync");
        assert_eq!(st.highest_modseq, h0 + 3);
        let b3 = st
            .messages
            .iter()
            .find(|m| m.uid == b2.uid)
            .expect("b")
            .clone();
        assert_eq!(b3.modseq, h0 + 3);
        assert!(b3.flags.flagged);
        // Expunge.
        let mut del = b3.flags.clone();
        del.deleted = true;
        f.set_flags_many(&[(b3.clone(), del)]).expect("store");
        assert_eq!(f.expunge().expect("expunge"), vec![b3.uid]);
        let st = f.sync().expect("sync");
        assert_eq!(st.highest_modseq, h0 + 5);
        assert_eq!(f.expunged_since(h0 + 4).expect("read"), Some(vec![b3.uid]));
        assert_eq!(f.expunged_since(h0 + 5).expect("read"), Some(vec![]));
        // Copy in: the destination's new message gets its own new mod-sequence.
        let archive = s.folder("Archive").expect("archive");
        let before = archive.sync().expect("sync").highest_modseq;
        f.copy_to(&[a], &archive).expect("copy");
        let after = archive.sync().expect("sync");
        assert_eq!(after.highest_modseq, before + 1);
        // Move out is an expunge here.
        let h = f.sync().expect("sync").highest_modseq;
        f.move_to(&[a], &archive).expect("move");
        assert_eq!(f.sync().expect("sync").highest_modseq, h + 1);
        assert_eq!(f.expunged_since(h).expect("read"), Some(vec![a]));
        // All of it survives a reopen.
        let again = s.folder("INBOX").expect("reopen");
        assert_eq!(again.sync().expect("sync").highest_modseq, h + 1);
        assert_eq!(again.expunged_since(h).expect("read"), Some(vec![a]));
    }

    #[test]
    fn unchangedsince_leaves_messages_changed_later_alone() {
        let (_t, _s, f) = inbox();
        f.append(b"a", &Flags::default(), None).expect("append");
        f.append(b"b", &Flags::default(), None).expect("append");
        let st = f.sync().expect("sync");
        let (a, b) = match st.messages.as_slice() {
            [a, b] => (a.clone(), b.clone()),
            _ => panic!("two messages"),
        };
        // b changes after the client's view (modseq of a).
        f.set_flags_many(&[(b.clone(), seen())]).expect("store");
        let since = a.modseq.max(b.modseq);
        let out = f
            .set_flags_checked(&[(a.clone(), seen()), (b.clone(), seen())], Some(since))
            .expect("store");
        assert!(
            matches!(out.first(), Some(FlagChange::Done(m)) if m.flags.seen && m.modseq > since)
        );
        assert!(matches!(out.get(1), Some(FlagChange::Modified(m)) if m.uid == b.uid));
    }
}
