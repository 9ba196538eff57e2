//! The IMAP-facing side of a user's Maildir: folders ([`MailStore`]) and the messages in one
//! folder ([`Folder`]).
//!
//! Ownership (see the crate header): this module is the only one that moves files out of
//! `new/`, renames files in `cur/`, removes messages, and writes `dovecot-uidlist`,
//! `dovecot-keywords` and `subscriptions`. Every change to a folder's messages happens while
//! holding that folder's `dovecot-uidlist.lock`, so two IMAP sessions (or ownmail and a
//! Dovecot on the same Maildir) serialise; delivery takes no lock — it only adds complete
//! files to `new/`, which the next sync picks up.
//!
//! Only one folder lock is held at a time (COPY/MOVE link under the destination's lock, then
//! remove under the source's), so two sessions copying in opposite directions cannot deadlock.
//! A crash between the two halves of a MOVE leaves the message in both folders, never in none.
//!
//! Folder directories are used only if they are real directories, not symbolic links.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::error::{io_at, Result, StoreError};
use crate::flags::{split_info, Flags, Keywords};
use crate::modseq::{self, ModSeqState};
use crate::name::{is_inbox, FolderName, SpecialUse};
use crate::uidlist::{
    self, libc_nofollow, sync_dir, write_durable, DotLock, Uid, UidList, UidValidity, LOCK_WAIT,
    STALE_AFTER,
};
use crate::{unique_name, Maildir, Owner};

const KEYWORDS: &str = "dovecot-keywords";
const SUBSCRIPTIONS: &str = "subscriptions";
const SUBSCRIPTIONS_LOCK: &str = "subscriptions.lock";
const INBOX: &str = "INBOX";

/// One user's mail: the Maildir at `root` (the INBOX) and its Maildir++ folders.
#[derive(Clone, Debug)]
pub struct MailStore {
    root: PathBuf,
}

/// One line of LIST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderInfo {
    /// IMAP name: `INBOX`, `Lists/rust`.
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub has_children: bool,
    pub subscribed: bool,
    /// False for a level that exists only because a folder below it does (`Lists` when only
    /// `.Lists.rust` is on disk): `\NoSelect` / `\NonExistent` in LIST.
    pub selectable: bool,
}

impl MailStore {
    pub fn open(root: impl Into<PathBuf>) -> MailStore {
        MailStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder `name` (IMAP form; `INBOX` in any case is the root). It must exist.
    pub fn folder(&self, name: &str) -> Result<Folder> {
        let (dir, name) = if is_inbox(name) {
            (self.root.clone(), INBOX.to_string())
        } else {
            let n = parse_name(name)?;
            (self.root.join(n.dir_name()), n.to_string())
        };
        match fs::symlink_metadata(dir.join("cur")) {
            Ok(m) if m.is_dir() && is_real_dir(&dir) => Ok(Folder { name, dir }),
            Ok(_) => Err(StoreError::NotFound(name)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(name)),
            Err(e) => Err(io_at(&dir)(e)),
        }
    }

    /// Creates folder `name` (a Maildir with `maildirfolder`). Levels above it need no
    /// directory in Maildir++. Refuses INBOX and existing folders.
    pub fn create_folder(&self, name: &str, owner: Option<Owner>) -> Result<Folder> {
        if is_inbox(name) {
            return Err(StoreError::AlreadyExists(INBOX.to_string()));
        }
        let n = parse_name(name)?;
        Maildir::open(&self.root)
            .ensure(owner)
            .map_err(io_at(&self.root))?;
        let dir = self.root.join(n.dir_name());
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists(n.to_string()))
            }
            Err(e) => return Err(io_at(&dir)(e)),
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&dir, Some(uid), Some(gid)).map_err(io_at(&dir))?;
        }
        let dotted = n.as_str().replace('/', ".");
        Maildir::open(&self.root)
            .folder(&dotted)
            .and_then(|m| m.ensure(owner))
            .map_err(io_at(&dir))?;
        sync_dir(&self.root)?;
        Ok(Folder {
            name: n.to_string(),
            dir,
        })
    }

    /// Deletes folder `name` and its messages (not the folders below it, which are separate
    /// directories in Maildir++ and stay). The directory is first renamed out of sight, so a
    /// crash half-way leaves no half-deleted folder in LIST.
    pub fn delete_folder(&self, name: &str) -> Result<()> {
        if is_inbox(name) {
            return Err(StoreError::NotAllowed("INBOX cannot be deleted".into()));
        }
        let n = parse_name(name)?;
        let dir = self.root.join(n.dir_name());
        if !is_real_dir(&dir) {
            return Err(StoreError::NotFound(n.to_string()));
        }
        static N: AtomicU64 = AtomicU64::new(0);
        // Starts with `..`: never a valid folder, so LIST skips it.
        let trash = self.root.join(format!(
            "..deleted.{}.{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::rename(&dir, &trash).map_err(io_at(&dir))?;
        sync_dir(&self.root)?;
        // remove_dir_all does not follow symbolic links inside the tree.
        fs::remove_dir_all(&trash).map_err(io_at(&trash))
    }

    /// Renames `from` to `to`, with every folder below it (`A/x` → `B/x`), and carries their
    /// subscriptions along. INBOX cannot be renamed (RFC 3501's move-the-messages special case
    /// is left to the IMAP layer). The renames are one per directory, not atomic as a group.
    pub fn rename_folder(&self, from: &str, to: &str) -> Result<()> {
        if is_inbox(from) || is_inbox(to) {
            return Err(StoreError::NotAllowed("INBOX cannot be renamed".into()));
        }
        let from = parse_name(from)?;
        let to = parse_name(to)?;
        if to == from || to.is_under(&from) {
            return Err(StoreError::NotAllowed(format!(
                "cannot rename {from} below itself"
            )));
        }
        let all = self.disk_folders()?;
        if all.iter().any(|f| *f == to || f.is_under(&to)) {
            return Err(StoreError::AlreadyExists(to.to_string()));
        }
        let moving: Vec<&FolderName> = all
            .iter()
            .filter(|f| **f == from || f.is_under(&from))
            .collect();
        if moving.is_empty() {
            return Err(StoreError::NotFound(from.to_string()));
        }
        // Check every new name first, so a too-long one fails before anything moves.
        let mut plan = Vec::new();
        for f in moving {
            let new = renamed(f.as_str(), &from, &to);
            let new = parse_name(&new)?;
            plan.push((self.root.join(f.dir_name()), self.root.join(new.dir_name())));
        }
        for (old, new) in &plan {
            if fs::symlink_metadata(new).is_ok() {
                return Err(StoreError::AlreadyExists(to.to_string()));
            }
            fs::rename(old, new).map_err(io_at(old))?;
        }
        sync_dir(&self.root)?;
        self.edit_subscriptions(|subs| {
            for s in subs.iter_mut() {
                if let Ok(n) = FolderName::parse(s) {
                    if n == from || n.is_under(&from) {
                        *s = renamed(s, &from, &to);
                    }
                }
            }
        })
    }

    /// INBOX, every folder on disk, and the levels above them that have no directory, with
    /// their LIST attributes; INBOX first, then by name.
    pub fn list_folders(&self) -> Result<Vec<FolderInfo>> {
        let on_disk: BTreeSet<FolderName> = self.disk_folders()?.into_iter().collect();
        let mut all: BTreeMap<FolderName, bool> = BTreeMap::new();
        for f in &on_disk {
            all.insert(f.clone(), true);
            let mut p = f.parent();
            while let Some(parent) = p {
                p = parent.parent();
                all.entry(parent).or_insert(false);
            }
        }
        let subs = self.subscriptions()?;
        let subscribed = |name: &str| {
            subs.iter()
                .any(|s| s == name || (is_inbox(name) && is_inbox(s)))
        };
        let mut out = vec![FolderInfo {
            name: INBOX.to_string(),
            special_use: None,
            has_children: false,
            subscribed: subscribed(INBOX),
            selectable: true,
        }];
        for (name, selectable) in &all {
            out.push(FolderInfo {
                name: name.to_string(),
                special_use: name.special_use(),
                has_children: all.keys().any(|c| c.is_under(name)),
                subscribed: subscribed(name.as_str()),
                selectable: *selectable,
            });
        }
        Ok(out)
    }

    /// Creates the Maildir itself and Sent, Drafts, Trash, Junk and Archive where missing,
    /// and subscribes them (as Dovecot's `auto = subscribe` does).
    pub fn ensure_special_folders(&self, owner: Option<Owner>) -> Result<()> {
        Maildir::open(&self.root)
            .ensure(owner)
            .map_err(io_at(&self.root))?;
        for s in SpecialUse::ALL {
            match self.create_folder(s.folder_name(), owner) {
                Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.edit_subscriptions(|subs| {
            for s in SpecialUse::ALL {
                if !subs.iter().any(|x| x == s.folder_name()) {
                    subs.push(s.folder_name().to_string());
                }
            }
        })
    }

    /// The subscribed names, from the `subscriptions` file (one IMAP name per line; Dovecot's
    /// newer `V\t2` header is skipped and its tab separators read as `/`). Invalid names are
    /// ignored.
    pub fn subscriptions(&self) -> Result<Vec<String>> {
        let path = self.root.join(SUBSCRIPTIONS);
        let text = match fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let mut out: Vec<String> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if i == 0 && line.starts_with("V\t") {
                continue;
            }
            let name = line.replace('\t', "/");
            let valid = is_inbox(&name) || FolderName::parse(&name).is_ok();
            if valid && !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }

    pub fn subscribe(&self, name: &str) -> Result<()> {
        let name = checked_any(name)?;
        self.edit_subscriptions(|subs| {
            if !subs.contains(&name) {
                subs.push(name.clone());
            }
        })
    }

    pub fn unsubscribe(&self, name: &str) -> Result<()> {
        let name = checked_any(name)?;
        self.edit_subscriptions(|subs| subs.retain(|s| *s != name))
    }

    fn edit_subscriptions(&self, edit: impl FnOnce(&mut Vec<String>)) -> Result<()> {
        let _lock = DotLock::acquire(&self.root, SUBSCRIPTIONS_LOCK, LOCK_WAIT, STALE_AFTER)?;
        let mut subs = self.subscriptions()?;
        let before = subs.clone();
        edit(&mut subs);
        if subs == before {
            return Ok(());
        }
        // Dovecot's version 2 format: a `V\t2` line, an empty line, then one name a line with
        // its hierarchy levels separated by tabs (so the name does not depend on the
        // separator; Dovecot drops a `Lists/rust` line as a name with an invalid character).
        let mut text = String::from("V\t2\n\n");
        for s in &subs {
            text.push_str(&s.replace('/', "\t"));
            text.push('\n');
        }
        write_durable(&self.root, SUBSCRIPTIONS, text.as_bytes())
    }

    /// Every valid `.Name` directory (not a link) in the root.
    fn disk_folders(&self) -> Result<Vec<FolderName>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&self.root)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_at(&self.root))?;
            let Some(file) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Some(name) = FolderName::from_dir_name(&file) else {
                continue;
            };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }
}

fn parse_name(name: &str) -> Result<FolderName> {
    FolderName::parse(name).map_err(|why| StoreError::InvalidName {
        name: name.to_string(),
        why,
    })
}

/// A subscribable name: INBOX or a valid folder name.
fn checked_any(name: &str) -> Result<String> {
    if is_inbox(name) {
        Ok(INBOX.to_string())
    } else {
        parse_name(name).map(|n| n.to_string())
    }
}

/// `name` with its prefix `from` replaced by `to` (`A/x`, `A` → `B`: `B/x`).
fn renamed(name: &str, from: &FolderName, to: &FolderName) -> String {
    format!("{to}{}", name.get(from.as_str().len()..).unwrap_or(""))
}

fn is_real_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// One message as a sync found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    pub uid: Uid,
    /// The file name without `:2,…`: the UID list's key.
    pub basename: String,
    /// The full file name (in `new/` or `cur/`).
    pub file_name: String,
    /// Still in `new/` (never touched by an IMAP client: RFC 3501 `\Recent` candidates).
    pub in_new: bool,
    pub flags: Flags,
    /// From the name's `,S=` field, when present.
    pub size: Option<u64>,
    /// The size with CRLF line endings (RFC822.SIZE): the name's `,W=` field, else the UID
    /// list's `W` field (Dovecot's cache of it), when present.
    pub vsize: Option<u64>,
    /// The mod-sequence of its last change (RFC 7162 §3.1.1), from `ownmail-modseq`.
    pub modseq: u64,
}

/// A folder after a sync: its messages in UID order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderState {
    pub uid_validity: UidValidity,
    pub uid_next: Uid,
    /// HIGHESTMODSEQ (RFC 7162 §3.1.2).
    pub highest_modseq: u64,
    pub messages: Vec<MessageInfo>,
}

/// One folder's messages. Got from [`MailStore::folder`] / [`MailStore::create_folder`].
#[derive(Clone, Debug)]
pub struct Folder {
    name: String,
    dir: PathBuf,
}

/// What a sync under the lock produces: the list as now on disk, the keywords, the messages.
struct Synced {
    list: UidList,
    keywords: Keywords,
    messages: Vec<MessageInfo>,
    modseq: ModSeqState,
}

impl Folder {
    /// IMAP name (`INBOX`, `Lists/rust`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder's Maildir directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads `new/` and `cur/`, gives new files UIDs and drops vanished ones from the UID list
    /// (creating it, with a fresh UIDVALIDITY, the first time).
    pub fn sync(&self) -> Result<FolderState> {
        self.sync_with_progress(&mut |_, _| {})
    }

    /// [`Folder::sync`], calling `progress(done, total)` as files are examined — for
    /// rebuilding the UID list of a large Maildir in front of a person (SPEC §5.8).
    pub fn sync_with_progress(
        &self,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<FolderState> {
        let _lock = self.lock()?;
        let s = self.sync_locked(progress)?;
        Ok(state(s))
    }

    /// Where the message's file is now (it moves when its flags change).
    pub fn message_path(&self, m: &MessageInfo) -> PathBuf {
        self.dir
            .join(if m.in_new { "new" } else { "cur" })
            .join(&m.file_name)
    }

    /// Opens the message for reading (not following a symbolic link).
    pub fn open_message(&self, m: &MessageInfo) -> Result<File> {
        let path = self.message_path(m);
        OpenOptions::new()
            .read(true)
            .custom_flags(libc_nofollow())
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::NoSuchMessage(m.uid),
                _ => io_at(&path)(e),
            })
    }

    /// INTERNALDATE: the file's mtime, as Dovecot keeps it.
    pub fn internal_date(&self, m: &MessageInfo) -> Result<SystemTime> {
        let path = self.message_path(m);
        fs::symlink_metadata(&path)
            .and_then(|md| md.modified())
            .map_err(io_at(&path))
    }

    /// Replaces the flags of message `uid` by renaming its file into `cur/` with the new
    /// `:2,` letters (a message in `new/` moves to `cur/`). Returns the message as it is now.
    pub fn set_flags(&self, uid: Uid, flags: &Flags) -> Result<MessageInfo> {
        let _lock = self.lock()?;
        let mut s = self.sync_locked(&mut |_, _| {})?;
        let m = s
            .messages
            .iter()
            .find(|m| m.uid == uid)
            .cloned()
            .ok_or(StoreError::NoSuchMessage(uid))?;
        let info = flags.to_info(&mut s.keywords)?;
        self.save_keywords(&s.keywords)?;
        let new_name = format!("{}:2,{info}", m.basename);
        let from = self.message_path(&m);
        let to = self.dir.join("cur").join(&new_name);
        if from != to {
            fs::rename(&from, &to).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::NoSuchMessage(uid),
                _ => io_at(&from)(e),
            })?;
            sync_dir(&self.dir.join("cur"))?;
            if m.in_new {
                sync_dir(&self.dir.join("new"))?;
            }
        }
        let modseq = if from != to {
            let n = s.modseq.note_flags(&[(uid, info.as_str())]);
            modseq::save(&self.dir, &s.modseq)?;
            n
        } else {
            m.modseq
        };
        Ok(MessageInfo {
            file_name: new_name,
            in_new: false,
            flags: Flags::from_info(&info, &s.keywords),
            modseq,
            ..m
        })
    }

    /// Sets the flags of many messages at once (STORE on a range, FETCH setting `\Seen`):
    /// one lock, renames from the names the caller knows, one directory fsync. A message
    /// renamed meanwhile by someone else is found with one sync; one that is gone gives
    /// `None` in its place. Returns the messages as they are now, in the order given.
    pub fn set_flags_many(
        &self,
        changes: &[(MessageInfo, Flags)],
    ) -> Result<Vec<Option<MessageInfo>>> {
        Ok(self
            .set_flags_checked(changes, None)?
            .into_iter()
            .map(|c| match c {
                FlagChange::Done(m) => Some(m),
                FlagChange::Gone | FlagChange::Modified(_) => None,
            })
            .collect())
    }

    /// [`Folder::set_flags_many`] for STORE (UNCHANGEDSINCE n) (RFC 7162 §3.1.3): with
    /// `unchanged_since`, the folder is synced first under the lock and a message whose
    /// mod-sequence is above `n` is left alone ([`FlagChange::Modified`]), so the test and the
    /// change are one step for every other writer that takes the lock.
    pub fn set_flags_checked(
        &self,
        changes: &[(MessageInfo, Flags)],
        unchanged_since: Option<u64>,
    ) -> Result<Vec<FlagChange>> {
        let _lock = self.lock()?;
        let mut keywords = self.read_keywords()?;
        let mut infos = Vec::with_capacity(changes.len());
        for (_, f) in changes {
            infos.push(f.to_info(&mut keywords)?);
        }
        self.save_keywords(&keywords)?;
        let mut fresh: Option<HashMap<Uid, MessageInfo>> = None;
        if unchanged_since.is_some() {
            let s = self.sync_locked(&mut |_, _| {})?;
            fresh = Some(s.messages.into_iter().map(|x| (x.uid, x)).collect());
        }
        let mut out = Vec::with_capacity(changes.len());
        let mut touched_new = false;
        let mut touched = false;
        for ((m, _), info) in changes.iter().zip(infos) {
            let new_name = format!("{}:2,{info}", m.basename);
            let to = self.dir.join("cur").join(&new_name);
            let mut current = m.clone();
            if let Some(since) = unchanged_since {
                match fresh.as_ref().and_then(|f| f.get(&m.uid)) {
                    None => {
                        out.push((FlagChange::Gone, false));
                        continue;
                    }
                    Some(x) if x.modseq > since => {
                        out.push((FlagChange::Modified(x.clone()), false));
                        continue;
                    }
                    Some(x) => current = x.clone(),
                }
            }
            let mut done = false;
            let mut renamed = false;
            for attempt in 0..2 {
                let from = self.message_path(&current);
                if from == to {
                    done = true;
                    break;
                }
                match fs::rename(&from, &to) {
                    Ok(()) => {
                        touched = true;
                        touched_new |= current.in_new;
                        done = true;
                        renamed = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound && attempt == 0 => {
                        if fresh.is_none() {
                            let s = self.sync_locked(&mut |_, _| {})?;
                            fresh = Some(s.messages.into_iter().map(|x| (x.uid, x)).collect());
                        }
                        match fresh.as_ref().and_then(|f| f.get(&m.uid)) {
                            Some(x) => current = x.clone(),
                            None => break,
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) => return Err(io_at(&from)(e)),
                }
            }
            if !done {
                out.push((FlagChange::Gone, false));
                continue;
            }
            let now = MessageInfo {
                file_name: new_name,
                in_new: false,
                flags: Flags::from_info(&info, &keywords),
                ..current
            };
            out.push((FlagChange::Done(now), renamed));
        }
        if touched {
            sync_dir(&self.dir.join("cur"))?;
        }
        if touched_new {
            sync_dir(&self.dir.join("new"))?;
        }
        self.note_flag_changes(out)
    }

    /// Gives the messages just renamed (flagged `true`) one new mod-sequence (RFC 7162
    /// §3.1.1). Without a readable state, a sync makes one (and sees the new letters as
    /// changes, which is the same outcome). The caller holds the lock.
    fn note_flag_changes(&self, out: Vec<(FlagChange, bool)>) -> Result<Vec<FlagChange>> {
        let renamed: Vec<(Uid, &str)> = out
            .iter()
            .filter_map(|(c, renamed)| match c {
                FlagChange::Done(m) if *renamed => Some((m.uid, info_of(m))),
                _ => None,
            })
            .collect();
        if renamed.is_empty() {
            return Ok(out.into_iter().map(|(c, _)| c).collect());
        }
        let modseqs: HashMap<Uid, u64> = match modseq::read(&self.dir)? {
            Some(mut st) => {
                let n = st.note_flags(&renamed);
                modseq::save(&self.dir, &st)?;
                renamed.iter().map(|(u, _)| (*u, n)).collect()
            }
            None => {
                let s = self.sync_locked(&mut |_, _| {})?;
                s.messages.iter().map(|m| (m.uid, m.modseq)).collect()
            }
        };
        Ok(out
            .into_iter()
            .map(|(c, renamed)| match c {
                FlagChange::Done(mut m) if renamed => {
                    m.modseq = modseqs.get(&m.uid).copied().unwrap_or(m.modseq);
                    FlagChange::Done(m)
                }
                c => c,
            })
            .collect())
    }

    /// The UIDs expunged from this folder after mod-sequence `since`, for QRESYNC's
    /// VANISHED (EARLIER) (RFC 7162 §3.2.5). `None` when `since` is older than what is
    /// remembered (or nothing is): every UID below UIDNEXT not present may have gone.
    pub fn expunged_since(&self, since: u64) -> Result<Option<Vec<Uid>>> {
        Ok(modseq::read(&self.dir)?.and_then(|st| st.expunged_since(since)))
    }

    /// Remembers the CRLF sizes of messages whose names have no `,W=` in the UID list's `W`
    /// fields (as Dovecot does), so RFC822.SIZE needs no read next time. Best effort: the
    /// sizes are a cache, a message gone meanwhile is skipped.
    pub fn remember_vsizes(&self, sizes: &[(Uid, u64)]) -> Result<()> {
        if sizes.is_empty() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let Some(mut list) = uidlist::read(&self.dir)? else {
            return Ok(());
        };
        let wanted: HashMap<Uid, u64> = sizes.iter().copied().collect();
        let mut changed = false;
        for r in &mut list.records {
            if let Some(&w) = wanted.get(&r.uid) {
                if r.vsize() != Some(w) {
                    r.set_vsize(w);
                    changed = true;
                }
            }
        }
        if changed {
            self.save_list(&list)?;
        }
        Ok(())
    }

    /// Removes every message with `\Deleted`; returns their UIDs, ascending.
    pub fn expunge(&self) -> Result<Vec<Uid>> {
        self.expunge_where(|_| true)
    }

    /// UID EXPUNGE (RFC 4315): removes the messages among `uids` that have `\Deleted`.
    pub fn expunge_uids(&self, uids: &[Uid]) -> Result<Vec<Uid>> {
        let wanted: BTreeSet<Uid> = uids.iter().copied().collect();
        self.expunge_where(|u| wanted.contains(&u))
    }

    fn expunge_where(&self, pick: impl Fn(Uid) -> bool) -> Result<Vec<Uid>> {
        let _lock = self.lock()?;
        let mut s = self.sync_locked(&mut |_, _| {})?;
        let mut gone = Vec::new();
        for m in &s.messages {
            if !(m.flags.deleted && pick(m.uid)) {
                continue;
            }
            let path = self.message_path(m);
            match fs::remove_file(&path) {
                Ok(()) => gone.push(m.uid),
                // Someone else removed it: it is gone all the same.
                Err(e) if e.kind() == io::ErrorKind::NotFound => gone.push(m.uid),
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
        if gone.is_empty() {
            return Ok(gone);
        }
        sync_dir(&self.dir.join("cur"))?;
        sync_dir(&self.dir.join("new"))?;
        s.list.records.retain(|r| !gone.contains(&r.uid));
        self.save_list(&s.list)?;
        s.modseq.note_expunged(&gone);
        modseq::save(&self.dir, &s.modseq)?;
        Ok(gone)
    }

    /// APPEND: writes `bytes` to `tmp/`, sets its mtime to `internal_date` (INTERNALDATE),
    /// fsyncs, renames it into `cur/` with `flags` and fsyncs `cur/`; then gives it a UID.
    pub fn append(
        &self,
        bytes: &[u8],
        flags: &Flags,
        internal_date: Option<SystemTime>,
    ) -> Result<Uid> {
        let _lock = self.lock()?;
        let mut keywords = self.read_keywords()?;
        let info = flags.to_info(&mut keywords)?;
        self.save_keywords(&keywords)?;
        let basename = unique_name(bytes.len() as u64, Some(crate::crlf_size(bytes)));
        let tmp = self.dir.join("tmp").join(&basename);
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc_nofollow())
                .open(&tmp)?;
            uidlist::own_like_dir(&f, &self.dir)?;
            f.write_all(bytes)?;
            if let Some(t) = internal_date {
                f.set_modified(t)?;
            }
            f.sync_all()
        })();
        let dest = self.dir.join("cur").join(format!("{basename}:2,{info}"));
        let placed = written.and_then(|()| fs::rename(&tmp, &dest));
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(io_at(&tmp)(e));
        }
        sync_dir(&self.dir.join("cur"))?;
        let s = self.sync_locked(&mut |_, _| {})?;
        uid_of(&s, &basename)
    }

    /// COPY: puts each of `uids` (those that still exist) into `dest` as a new file — a hard
    /// link when possible, else a copy keeping the mtime — with the same flags, and returns
    /// (source UID, new UID in `dest`) pairs for COPYUID (RFC 4315).
    pub fn copy_to(&self, uids: &[Uid], dest: &Folder) -> Result<Vec<(Uid, Uid)>> {
        let picked = self.pick(uids)?;
        dest.take_in(self, &picked)
    }

    /// MOVE (RFC 6851): [`Folder::copy_to`], then the originals are removed from this folder.
    pub fn move_to(&self, uids: &[Uid], dest: &Folder) -> Result<Vec<(Uid, Uid)>> {
        let picked = self.pick(uids)?;
        let pairs = dest.take_in(self, &picked)?;
        let moved: BTreeSet<Uid> = pairs.iter().map(|(s, _)| *s).collect();
        let _lock = self.lock()?;
        let mut s = self.sync_locked(&mut |_, _| {})?;
        let mut gone = Vec::new();
        for m in s.messages.iter().filter(|m| moved.contains(&m.uid)) {
            let path = self.message_path(m);
            match fs::remove_file(&path) {
                Ok(()) => gone.push(m.uid),
                Err(e) if e.kind() == io::ErrorKind::NotFound => gone.push(m.uid),
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
        sync_dir(&self.dir.join("cur"))?;
        sync_dir(&self.dir.join("new"))?;
        s.list.records.retain(|r| !gone.contains(&r.uid));
        self.save_list(&s.list)?;
        s.modseq.note_expunged(&gone);
        modseq::save(&self.dir, &s.modseq)?;
        Ok(pairs)
    }

    /// The current state of `uids` (sorted, missing ones left out), read under our lock.
    fn pick(&self, uids: &[Uid]) -> Result<Vec<MessageInfo>> {
        let wanted: BTreeSet<Uid> = uids.iter().copied().collect();
        let _lock = self.lock()?;
        let s = self.sync_locked(&mut |_, _| {})?;
        Ok(s.messages
            .into_iter()
            .filter(|m| wanted.contains(&m.uid))
            .collect())
    }

    /// Links or copies `msgs` of folder `src` into this folder's `cur/` under fresh names,
    /// under this folder's lock only.
    fn take_in(&self, src: &Folder, msgs: &[MessageInfo]) -> Result<Vec<(Uid, Uid)>> {
        let _lock = self.lock()?;
        let mut keywords = self.read_keywords()?;
        // Keyword letters are per folder: re-encode the flags for this one, and save any new
        // letters before a file name uses them.
        let mut infos = Vec::with_capacity(msgs.len());
        for m in msgs {
            infos.push(m.flags.to_info(&mut keywords)?);
        }
        self.save_keywords(&keywords)?;
        let mut placed = Vec::new();
        for (m, info) in msgs.iter().zip(infos) {
            let from = match src.locate(&m.basename)? {
                Some(p) => p,
                None => continue, // expunged meanwhile
            };
            let size = m
                .size
                .or_else(|| fs::symlink_metadata(&from).ok().map(|md| md.len()))
                .unwrap_or(0);
            let basename = unique_name(size, m.vsize);
            let to = self.dir.join("cur").join(format!("{basename}:2,{info}"));
            if let Err(e) = fs::hard_link(&from, &to) {
                if e.kind() == io::ErrorKind::NotFound {
                    continue;
                }
                copy_keeping_mtime(&from, &to, &self.dir.join("tmp").join(&basename))?;
            }
            placed.push((m.uid, basename));
        }
        sync_dir(&self.dir.join("cur"))?;
        let s = self.sync_locked(&mut |_, _| {})?;
        placed
            .into_iter()
            .map(|(src_uid, b)| uid_of(&s, &b).map(|u| (src_uid, u)))
            .collect()
    }

    /// The current path of the message with `basename` (its flags, and so its name, may have
    /// changed since it was listed).
    fn locate(&self, basename: &str) -> Result<Option<PathBuf>> {
        for sub in ["cur", "new"] {
            let dir = self.dir.join(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_at(&dir))?;
                if let Some(name) = entry.file_name().to_str() {
                    if split_info(name).0 == basename {
                        return Ok(Some(entry.path()));
                    }
                }
            }
        }
        Ok(None)
    }

    fn lock(&self) -> Result<DotLock> {
        DotLock::acquire(&self.dir, uidlist::LOCK, LOCK_WAIT, STALE_AFTER)
    }

    fn read_keywords(&self) -> Result<Keywords> {
        let path = self.dir.join(KEYWORDS);
        match fs::read(&path) {
            Ok(b) => Ok(Keywords::parse(&String::from_utf8_lossy(&b))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Keywords::default()),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// Writes `dovecot-keywords` if a keyword was added — before any file name uses its
    /// letter, so a reader never meets a letter it cannot name.
    fn save_keywords(&self, k: &Keywords) -> Result<()> {
        if k.changed() {
            write_durable(&self.dir, KEYWORDS, k.render().as_bytes())?;
        }
        Ok(())
    }

    fn save_list(&self, list: &UidList) -> Result<()> {
        write_durable(&self.dir, uidlist::UIDLIST, list.render().as_bytes())
    }

    /// The message file names in `new/` (flagged `true`) and `cur/`. `new/` is read first: a
    /// file moved to `cur/` during the scan is then seen at least once.
    fn scan(&self) -> Result<Vec<(String, bool)>> {
        let mut names = Vec::new();
        for (sub, in_new) in [("new", true), ("cur", false)] {
            let dir = self.dir.join(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_at(&dir))?;
                if !entry.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                // Names that are not UTF-8 or start with `.` are not messages we can key.
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if !name.starts_with('.') {
                    names.push((name, in_new));
                }
            }
        }
        Ok(names)
    }

    /// The sync proper; the caller holds the lock. New files are numbered in delivery order:
    /// by the seconds, microseconds and delivery counter in their names, then by name.
    fn sync_locked(&self, progress: &mut dyn FnMut(usize, usize)) -> Result<Synced> {
        let existing = uidlist::read_repairing(&self.dir)?;
        let is_new_list = existing.is_none();
        // A damaged list was repaired in memory (and logged): write it back below.
        let repaired = existing.as_ref().is_some_and(|(_, r)| *r);
        let mut list = existing.map_or_else(UidList::fresh, |(l, _)| l);
        let keywords = self.read_keywords()?;

        let mut files = index(self.scan()?, progress);
        // readdir may miss a file that another program (a Dovecot on the same Maildir, which
        // renames without our lock) renames while we read. Before dropping a UID for good,
        // look once more: a file seen in either pass exists.
        if list
            .records
            .iter()
            .any(|r| !files.contains_key(&r.basename))
        {
            for (base, found) in index(self.scan()?, &mut |_, _| {}) {
                files.entry(base).or_insert(found);
            }
        }

        let before = list.records.len();
        list.records.retain(|r| files.contains_key(&r.basename));
        if list.records.len() != before {
            tracing::info!(
                "mailstore event=uids-retired path={} count={} reason=\"files gone\"",
                self.dir.display(),
                before - list.records.len()
            );
        }
        let mut changed = is_new_list || repaired || list.records.len() != before;
        let known: BTreeSet<&str> = list.records.iter().map(|r| r.basename.as_str()).collect();
        let mut fresh: Vec<&String> = files
            .keys()
            .filter(|b| !known.contains(b.as_str()))
            .collect();
        fresh.sort_by(|a, b| delivery_order(a).cmp(&delivery_order(b)).then(a.cmp(b)));
        let fresh: Vec<String> = fresh.into_iter().cloned().collect();
        for b in fresh {
            if list.assign(b.clone()).is_none() {
                // RFC 3501 §2.3.1.1: with the UIDs used up, a new UIDVALIDITY is unavoidable.
                list.renumber();
                tracing::warn!(
                    "mailstore event=uidlist-renumbered path={} uidvalidity={} \
                     reason=\"UIDs used up\"",
                    self.dir.join(uidlist::UIDLIST).display(),
                    list.uid_validity.0
                );
                if list.assign(b).is_none() {
                    return Err(StoreError::Corrupt {
                        path: self.dir.join(uidlist::UIDLIST),
                        why: "UIDs used up".into(),
                    });
                }
            }
            changed = true;
        }
        if changed {
            self.save_list(&list)?;
        }
        let mut messages: Vec<MessageInfo> = list
            .records
            .iter()
            .filter_map(|r| {
                let (in_new, name) = files.get(&r.basename)?;
                let letters = if *in_new { "" } else { split_info(name).1 };
                Some(MessageInfo {
                    uid: r.uid,
                    basename: r.basename.clone(),
                    file_name: name.clone(),
                    in_new: *in_new,
                    flags: Flags::from_info(letters, &keywords),
                    size: crate::size_from_name(name),
                    vsize: crate::vsize_from_name(name).or_else(|| r.vsize()),
                    modseq: 0,
                })
            })
            .collect();
        let modseq = self.sync_modseq(&list, &mut messages)?;
        Ok(Synced {
            list,
            keywords,
            messages,
            modseq,
        })
    }
}

impl Folder {
    /// Loads the mod-sequence state for what a sync found, notes what changed since (new
    /// UIDs, letters changed by another program, UIDs gone), writes it back if anything did,
    /// and fills in each message's mod-sequence. The caller holds the lock.
    fn sync_modseq(&self, list: &UidList, messages: &mut [MessageInfo]) -> Result<ModSeqState> {
        let current: Vec<(Uid, &str)> = messages.iter().map(|m| (m.uid, info_of(m))).collect();
        let (mut st, mut dirty) = modseq::load(&self.dir, list.uid_validity, &current)?;
        dirty |= st.reconcile(&current);
        if dirty {
            modseq::save(&self.dir, &st)?;
        }
        for m in messages.iter_mut() {
            m.modseq = st.modseq_of(m.uid);
        }
        Ok(st)
    }
}

/// What became of one message of [`Folder::set_flags_checked`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlagChange {
    /// The message as it is now (with its new mod-sequence if its flags changed).
    Done(MessageInfo),
    /// Expunged meanwhile.
    Gone,
    /// Changed after the UNCHANGEDSINCE mod-sequence: left alone; as it is now.
    Modified(MessageInfo),
}

/// Basename → (in `new/`, file name), reporting progress per file. A name in both `new/`
/// and `cur/` (moved during the scan) keeps its `cur/` entry, which was read last.
fn index(
    names: Vec<(String, bool)>,
    progress: &mut dyn FnMut(usize, usize),
) -> HashMap<String, (bool, String)> {
    let total = names.len();
    let mut files = HashMap::with_capacity(total);
    for (done, (name, in_new)) in names.into_iter().enumerate() {
        let base = split_info(&name).0.to_string();
        if !base.is_empty() {
            files.insert(base, (in_new, name));
        }
        progress(done + 1, total);
    }
    files
}

fn state(s: Synced) -> FolderState {
    FolderState {
        uid_validity: s.list.uid_validity,
        uid_next: s.list.next_uid,
        highest_modseq: s.modseq.highest,
        messages: s.messages,
    }
}

/// The `:2,` letters of a message as the mod-sequence state keys them (none while in `new/`).
fn info_of(m: &MessageInfo) -> &str {
    if m.in_new {
        ""
    } else {
        split_info(&m.file_name).1
    }
}

fn uid_of(s: &Synced, basename: &str) -> Result<Uid> {
    s.list
        .records
        .iter()
        .find(|r| r.basename == basename)
        .map(|r| r.uid)
        .ok_or_else(|| StoreError::Io {
            path: PathBuf::from(basename),
            source: io::Error::new(io::ErrorKind::NotFound, "message vanished after saving"),
        })
}

/// The delivery order of a Maildir name: its leading seconds, then the microseconds of a
/// `.M<usecs>` part and the delivery counter of a `Q<n>` part when present
/// (`1275660000.M1234P2Q7.host`; the numbers are not zero-padded, so the names themselves do
/// not sort in delivery order). Names without leading seconds sort last.
fn delivery_order(name: &str) -> (u64, u64, u64) {
    let number = |s: &str| -> Option<u64> {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let Some(secs) = number(name) else {
        return (u64::MAX, 0, 0);
    };
    let unique = name.split('.').nth(1).unwrap_or_default();
    let usecs = unique.strip_prefix('M').and_then(number).unwrap_or(0);
    let q = unique
        .split_once('Q')
        .and_then(|(_, rest)| number(rest))
        .unwrap_or(0);
    (secs, usecs, q)
}

/// Copies `from` via `tmp` to `to` (no hard links across file systems), keeping the mtime.
fn copy_keeping_mtime(from: &Path, to: &Path, tmp: &Path) -> Result<()> {
    let done = (|| {
        let mtime = fs::symlink_metadata(from)?.modified()?;
        let mut src = OpenOptions::new()
            .read(true)
            .custom_flags(libc_nofollow())
            .open(from)?;
        let mut dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc_nofollow())
            .open(tmp)?;
        if let Some(dir) = tmp.parent() {
            uidlist::own_like_dir(&dst, dir)?;
        }
        io::copy(&mut src, &mut dst)?;
        dst.set_modified(mtime)?;
        dst.sync_all()?;
        fs::rename(tmp, to)
    })();
    if let Err(e) = done {
        let _ = fs::remove_file(tmp);
        return Err(io_at(from)(e));
    }
    Ok(())
}
