//! `ownmail user add|passwd|del|list -f FILE` (SPEC §3): edits a `passwd:` users file, the
//! Dovecot passwd-file format `user:password:uid:gid:gecos:home:shell:extra` that
//! `ownmail-config` reads (SPEC §4.3).
//!
//! Invariants:
//! - Only the line(s) of the named user change. Comments, blank lines, other entries and
//!   lines `ownmail check` would reject are kept byte for byte, line endings included.
//! - A user is found as the reader finds it: the text before the first `:` of a line that is
//!   neither blank nor a `#` comment, compared case-insensitively (table keys match so).
//! - Every change is an atomic replacement: `FILE.tmp.<pid>` in the same directory, with the
//!   original's owner and mode (0600 for a new file), fsynced, renamed over FILE, then the
//!   directory fsynced. A reader (the daemon, Dovecot) sees the old file or the new one.
//! - The read-modify-write holds an exclusive `flock` on the directory, so two `ownmail user`
//!   commands never lose each other's change.
//! - Neither a password nor a hash is ever printed; messages name lines by number only.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Refuses users files larger than this rather than reading them into memory.
const MAX_FILE_BYTES: u64 = 64 << 20;
/// Longer names are surely a mistake (and no mail system would take them).
const MAX_NAME_LEN: usize = 255;
/// Mode of a users file `add` creates: it holds password hashes.
const NEW_FILE_MODE: u32 = 0o600;

#[derive(Clone, Debug, clap::Subcommand)]
pub enum UserAction {
    /// Add NAME; the password is one line of standard input (asked twice on a terminal).
    Add {
        /// The users file (created when missing).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// The uid mail is delivered as.
        #[arg(long, default_value_t = 5000)]
        uid: u32,
        /// The gid mail is delivered as.
        #[arg(long, default_value_t = 5000)]
        gid: u32,
        /// The user's home directory (default /var/vmail/NAME).
        #[arg(long)]
        home: Option<String>,
        name: String,
    },
    /// Change NAME's password (one line of standard input; asked twice on a terminal).
    Passwd {
        /// The users file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        name: String,
    },
    /// Remove NAME.
    Del {
        /// The users file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        name: String,
    },
    /// Print the user names, one a line.
    List {
        /// The users file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

/// Runs one `ownmail user` command; every failure is one line on stderr and exit status 1.
pub fn user_command(action: UserAction) -> ExitCode {
    match run(action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ownmail user: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(action: UserAction) -> Result<(), String> {
    match action {
        UserAction::Add {
            file,
            uid,
            gid,
            home,
            name,
        } => {
            let name = UserName::parse(&name)?;
            let home = match home {
                Some(h) => h,
                None => format!("/var/vmail/{}", name.as_str()),
            };
            check_field("home", &home)?;
            // Fail before asking for a password that would be thrown away.
            if let Some(text) = read_existing(&file)? {
                add_line(&text, &name, "x", uid, gid, &home).map_err(|e| e.describe(&file))?;
            }
            let hash = new_password_hash(name.as_str())?;
            rewrite(&file, |text| {
                add_line(text.unwrap_or_default(), &name, &hash, uid, gid, &home)
                    .map_err(|e| e.describe(&file))
            })?;
            eprintln!("user {} added to {}", name.as_str(), file.display());
        }
        UserAction::Passwd { file, name } => {
            let name = UserName::parse(&name)?;
            let text = read_existing(&file)?.ok_or_else(|| missing(&file))?;
            set_password(&text, &name, "x").map_err(|e| e.describe(&file))?;
            let hash = new_password_hash(name.as_str())?;
            rewrite(&file, |text| {
                set_password(text.ok_or_else(|| missing(&file))?, &name, &hash)
                    .map_err(|e| e.describe(&file))
            })?;
            eprintln!("password of {} changed", name.as_str());
        }
        UserAction::Del { file, name } => {
            let name = UserName::parse(&name)?;
            rewrite(&file, |text| {
                remove_user(text.ok_or_else(|| missing(&file))?, &name)
                    .map_err(|e| e.describe(&file))
            })?;
            eprintln!("user {} deleted from {}", name.as_str(), file.display());
        }
        UserAction::List { file } => {
            let text = read_existing(&file)?.ok_or_else(|| missing(&file))?;
            let mut out = io::stdout().lock();
            for name in user_names(&text) {
                writeln!(out, "{name}").map_err(|e| format!("cannot write: {e}"))?;
            }
            out.flush().map_err(|e| format!("cannot write: {e}"))?;
        }
    }
    Ok(())
}

fn missing(file: &Path) -> String {
    format!("{}: no such file", file.display())
}

// ------------------------------------------------------------------ names and fields

/// A user name that can be written as the first field of a passwd line and read back as
/// the same key.
#[derive(Clone, Debug, PartialEq, Eq)]
struct UserName {
    name: String,
    /// Lowercased, as table lookups compare keys.
    key: String,
}

impl UserName {
    fn parse(name: &str) -> Result<UserName, String> {
        if name.is_empty() {
            return Err("empty user name".to_string());
        }
        if name.len() > MAX_NAME_LEN {
            return Err(format!("user name longer than {MAX_NAME_LEN} bytes"));
        }
        if name.starts_with('#') {
            return Err(format!(
                "user name \"{name}\" starts with '#', which starts a comment line"
            ));
        }
        check_field("user name", name)?;
        Ok(UserName {
            name: name.to_string(),
            key: name.to_lowercase(),
        })
    }

    fn as_str(&self) -> &str {
        &self.name
    }
}

/// A field may hold neither the separator nor whitespace or a control character (which the
/// reader would trim, split on or refuse).
fn check_field(what: &str, value: &str) -> Result<(), String> {
    if let Some(c) = value
        .chars()
        .find(|&c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{what} \"{}\" contains {}",
            value.escape_debug(),
            match c {
                ':' => "':', the field separator".to_string(),
                c if c.is_whitespace() => format!("whitespace (U+{:04X})", u32::from(c)),
                c => format!("a control character (U+{:04X})", u32::from(c)),
            }
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ editing (pure)

/// Why an edit was refused; 1-based line numbers.
#[derive(Debug, PartialEq, Eq)]
enum EditError {
    Exists { name: String, line: usize },
    NoSuchUser { name: String },
    NoPasswordField { name: String, line: usize },
}

impl EditError {
    fn describe(&self, file: &Path) -> String {
        let file = file.display();
        match self {
            EditError::Exists { name, line } => {
                format!("{file}:{line}: user \"{name}\" exists already; nothing changed")
            }
            EditError::NoSuchUser { name } => format!("{file}: no user \"{name}\""),
            EditError::NoPasswordField { name, line } => format!(
                "{file}:{line}: the line of \"{name}\" has no ':' and so no password field; fix it by hand"
            ),
        }
    }
}

/// One line of the file, its line ending included (the last line may have none).
struct Line<'a> {
    /// 1-based.
    number: usize,
    raw: &'a [u8],
}

impl<'a> Line<'a> {
    /// The line without its ending and trailing whitespace (`\r` included), as the reader
    /// trims it.
    fn content(&self) -> &'a [u8] {
        self.raw.trim_ascii_end()
    }

    /// Where the first field starts, or `None` for blank and comment lines.
    fn name_start(&self) -> Option<usize> {
        let content = self.content();
        let start = content.iter().position(|b| !b.is_ascii_whitespace())?;
        (content.get(start) != Some(&b'#')).then_some(start)
    }

    /// The user name the line declares: the text before the first ':' (the whole line when
    /// there is none, as the reader then reports the line but still names it).
    fn name(&self) -> Option<&'a [u8]> {
        let content = self.content();
        let rest = content.get(self.name_start()?..)?;
        Some(rest.split(|&b| b == b':').next().unwrap_or(rest))
    }

    fn is_user(&self, name: &UserName) -> bool {
        self.name()
            .is_some_and(|n| String::from_utf8_lossy(n).to_lowercase() == name.key)
    }

    /// The byte range of the password field within `raw`, if the line has one.
    fn password_range(&self) -> Option<std::ops::Range<usize>> {
        let content = self.content();
        let start = self.name_start()? + self.name()?.len() + 1;
        if content.get(start - 1) != Some(&b':') {
            return None;
        }
        let len = content
            .get(start..)?
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(content.len() - start);
        Some(start..start + len)
    }
}

fn lines(text: &[u8]) -> impl Iterator<Item = Line<'_>> {
    text.split_inclusive(|&b| b == b'\n')
        .enumerate()
        .map(|(i, raw)| Line { number: i + 1, raw })
}

/// `text` with a line for `name` appended; refused when `name` has a line already.
fn add_line(
    text: &[u8],
    name: &UserName,
    hash: &str,
    uid: u32,
    gid: u32,
    home: &str,
) -> Result<Vec<u8>, EditError> {
    if let Some(line) = lines(text).find(|l| l.is_user(name)) {
        return Err(EditError::Exists {
            name: name.as_str().to_string(),
            line: line.number,
        });
    }
    // Keep the file's line endings: CRLF if its last line has one.
    let eol: &[u8] = if text.ends_with(b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut out = Vec::with_capacity(text.len() + 160);
    out.extend_from_slice(text);
    if !text.is_empty() && !text.ends_with(b"\n") {
        out.extend_from_slice(eol);
    }
    // user:password:uid:gid:gecos:home:shell:extra, as Dovecot's passwd-file documents it.
    out.extend_from_slice(format!("{}:{hash}:{uid}:{gid}::{home}::", name.as_str()).as_bytes());
    out.extend_from_slice(eol);
    Ok(out)
}

/// `text` with the password field of every line of `name` replaced by `hash` (the first
/// line is the one that counts; later duplicates get it too, so that deleting the first can
/// never bring an old password back).
fn set_password(text: &[u8], name: &UserName, hash: &str) -> Result<Vec<u8>, EditError> {
    let mut out = Vec::with_capacity(text.len() + hash.len());
    let mut found = false;
    for line in lines(text) {
        if !line.is_user(name) {
            out.extend_from_slice(line.raw);
            continue;
        }
        let Some(range) = line.password_range() else {
            return Err(EditError::NoPasswordField {
                name: name.as_str().to_string(),
                line: line.number,
            });
        };
        found = true;
        out.extend_from_slice(line.raw.get(..range.start).unwrap_or_default());
        out.extend_from_slice(hash.as_bytes());
        out.extend_from_slice(line.raw.get(range.end..).unwrap_or_default());
    }
    if !found {
        return Err(EditError::NoSuchUser {
            name: name.as_str().to_string(),
        });
    }
    Ok(out)
}

/// `text` without the lines of `name` (all of them: a later duplicate would otherwise
/// become the user's entry).
fn remove_user(text: &[u8], name: &UserName) -> Result<Vec<u8>, EditError> {
    let mut out = Vec::with_capacity(text.len());
    let mut found = false;
    for line in lines(text) {
        if line.is_user(name) {
            found = true;
        } else {
            out.extend_from_slice(line.raw);
        }
    }
    if !found {
        return Err(EditError::NoSuchUser {
            name: name.as_str().to_string(),
        });
    }
    Ok(out)
}

/// The user names, in file order.
fn user_names(text: &[u8]) -> Vec<String> {
    lines(text)
        .filter_map(|l| l.name().map(|n| String::from_utf8_lossy(n).into_owned()))
        .collect()
}

// ------------------------------------------------------------------ the file on disk

/// The file's bytes, or `None` when it does not exist.
fn read_existing(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {} MiB; not a users file?",
            path.display(),
            MAX_FILE_BYTES >> 20
        ));
    }
    Ok(Some(bytes))
}

/// Replaces `path` by `edit(current contents)` atomically (see the module invariants).
fn rewrite(
    path: &Path,
    edit: impl FnOnce(Option<&[u8]>) -> Result<Vec<u8>, String>,
) -> Result<(), String> {
    // Through a symbolic link, the file it points to is the one to replace.
    let path = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|e| format!("cannot resolve {}: {e}", path.display()))?
        }
        _ => path.to_path_buf(),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir_file =
        File::open(&dir).map_err(|e| format!("cannot open directory {}: {e}", dir.display()))?;
    let _lock = Flock::lock(dir_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock directory {}: {e}", dir.display()))?;

    let current = read_existing(&path)?;
    let new = edit(current.as_deref())?;
    let (mode, owner) = match fs::metadata(&path) {
        Ok(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (NEW_FILE_MODE, None),
        Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    write_replacement(&tmp, &path, &dir, &new, mode, owner)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write_replacement(
    tmp: &Path,
    path: &Path,
    dir: &Path,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    // We hold the directory lock and the name carries our pid: a file by that name is left
    // over from a crashed run whose pid was the same.
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(NEW_FILE_MODE)
            .open(tmp)?;
        if let Some((uid, gid)) = owner {
            let m = f.metadata()?;
            if (m.uid(), m.gid()) != (uid, gid) {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            }
        }
        // After the chown, which may clear set-id bits.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(tmp, path)?;
        // The rename is durable only once the directory is.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

// ------------------------------------------------------------------ the password

/// Reads the new password and returns its SHA-512-crypt hash.
fn new_password_hash(name: &str) -> Result<String, String> {
    let mut password = read_new_password(name)?;
    let result = if password.is_empty() {
        Err("empty password; nothing changed".to_string())
    } else if password.len() > ownmail_auth::MAX_PASSWORD_LEN {
        Err(format!(
            "password longer than {} bytes; nothing changed",
            ownmail_auth::MAX_PASSWORD_LEN
        ))
    } else {
        Ok(ownmail_auth::hash_sha512_crypt(&password))
    };
    password.fill(0);
    result
}

/// One line of standard input, without its line ending; on a terminal, asked twice on
/// stderr with echo off (SPEC §3: no confirmation when stdin is not a terminal).
fn read_new_password(name: &str) -> Result<Vec<u8>, String> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return read_password_line(&mut stdin.lock(), || false)
            .map_err(|e| format!("cannot read the password from standard input: {e}"));
    }
    let quiet = QuietTerminal::start();
    let ask = |prompt: &str| -> Result<Vec<u8>, String> {
        eprint!("{prompt}");
        let line = read_password_line(&mut stdin.lock(), QuietTerminal::interrupted);
        // The newline the user typed was not echoed.
        eprintln!();
        line.map_err(|e| format!("cannot read the password: {e}; nothing changed"))
    };
    let first = ask(&format!("Password for {name}: "));
    let second = match &first {
        Ok(_) => ask("Retype the password: "),
        Err(_) => Ok(Vec::new()),
    };
    drop(quiet); // restores the terminal, then re-raises a caught signal
    let (mut first, mut second) = (first?, second?);
    let same = first == second;
    second.fill(0);
    if !same {
        first.fill(0);
        return Err("the passwords differ; nothing changed".to_string());
    }
    Ok(first)
}

/// Reads up to a newline or end of input; `\n` and a `\r` before it are not part of the
/// password. At most `MAX_PASSWORD_LEN + 1` bytes are kept (more is refused later).
/// `interrupted` is asked after a read fails with EINTR: true ends the read.
fn read_password_line(
    input: &mut impl BufRead,
    interrupted: impl Fn() -> bool,
) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut saw_input = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                if interrupted() {
                    line.fill(0);
                    return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        saw_input = true;
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        let room = (ownmail_auth::MAX_PASSWORD_LEN + 2).saturating_sub(line.len());
        line.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        let used = done.unwrap_or(buf.len());
        input.consume(used);
        if done.is_some() {
            break;
        }
    }
    if !saw_input {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no input"));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// The signal that arrived while the terminal was quiet, or 0.
static CAUGHT_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember_signal(sig: nix::libc::c_int) {
    // Async-signal-safe: an atomic store only.
    CAUGHT_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Echo turned off on the terminal on standard input, restored on drop — also when
/// SIGINT, SIGTERM or SIGHUP arrive meanwhile: they are caught (interrupting the read),
/// and raised again once the terminal is restored.
///
/// `stty` does the switching: the `nix` termios feature is not enabled in this workspace.
struct QuietTerminal {
    /// `stty -g` output, to restore the settings exactly; `None` if echo could not be
    /// turned off (the password is then read with echo on, and we say so).
    saved: Option<String>,
    old_actions: Vec<(Signal, SigAction)>,
}

const QUIET_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

impl QuietTerminal {
    fn start() -> QuietTerminal {
        CAUGHT_SIGNAL.store(0, Ordering::SeqCst);
        // No SA_RESTART: the blocked read must return EINTR so that we can clean up.
        let catch = SigAction::new(
            SigHandler::Handler(remember_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        let mut old_actions = Vec::new();
        for sig in QUIET_SIGNALS {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            if let Ok(old) = unsafe { signal::sigaction(sig, &catch) } {
                old_actions.push((sig, old));
            }
        }
        let saved = stty(&["-g"])
            .filter(|s| !s.is_empty())
            .filter(|_| stty(&["-echo"]).is_some());
        if saved.is_none() {
            eprintln!("ownmail user: warning: cannot turn off echo; the password will show");
        }
        QuietTerminal { saved, old_actions }
    }

    fn interrupted() -> bool {
        CAUGHT_SIGNAL.load(Ordering::SeqCst) != 0
    }
}

impl Drop for QuietTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = stty(&[saved.as_str()]);
        }
        for (sig, old) in &self.old_actions {
            // SAFETY: restores the action that was in place before `start`.
            let _ = unsafe { signal::sigaction(*sig, old) };
        }
        let caught = CAUGHT_SIGNAL.swap(0, Ordering::SeqCst);
        if let Ok(sig) = Signal::try_from(caught) {
            // Die of the signal as we would have without the terminal to restore.
            let _ = signal::raise(sig);
        }
    }
}

/// Runs `stty ARGS` on the terminal on standard input; its stdout, trimmed, on success.
fn stty(args: &[&str]) -> Option<String> {
    let out = Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn name(s: &str) -> UserName {
        UserName::parse(s).unwrap()
    }

    const SAMPLE: &[u8] = b"# users of example.org\n\
        \n\
        bob:{PLAIN}pw:5000:5000::/var/vmail/bob::userdb_mail=maildir:~/Mail\n   \
        # indented comment  \n\
        carol:$6$salt$hash\r\n\
        broken line without colon\n\
        dave:x:1:1::/home/dave:/bin/sh";

    #[test]
    fn user_names_are_listed_in_file_order() {
        assert_eq!(
            user_names(SAMPLE),
            vec!["bob", "carol", "broken line without colon", "dave"]
        );
    }

    #[test]
    fn add_appends_one_line_and_keeps_everything_else() {
        let out = add_line(
            SAMPLE,
            &name("alice"),
            "$6$s$h",
            5000,
            5001,
            "/var/vmail/alice",
        )
        .unwrap();
        let (head, tail) = out.split_at(SAMPLE.len());
        assert_eq!(head, SAMPLE);
        assert_eq!(tail, b"\nalice:$6$s$h:5000:5001::/var/vmail/alice::\n");
        assert_eq!(
            add_line(b"", &name("a"), "H", 1, 2, "/h").unwrap(),
            b"a:H:1:2::/h::\n"
        );
        assert_eq!(
            add_line(b"x:y\r\n", &name("a"), "H", 1, 2, "/h").unwrap(),
            b"x:y\r\na:H:1:2::/h::\r\n"
        );
    }

    #[test]
    fn add_of_an_existing_name_is_refused_case_insensitively() {
        assert_eq!(
            add_line(SAMPLE, &name("CAROL"), "H", 1, 1, "/h"),
            Err(EditError::Exists {
                name: "CAROL".into(),
                line: 5
            })
        );
    }

    #[test]
    fn passwd_replaces_only_the_password_field() {
        let out = set_password(SAMPLE, &name("Bob"), "$6$new$hash").unwrap();
        let expected =
            String::from_utf8_lossy(SAMPLE).replace("bob:{PLAIN}pw:5000", "bob:$6$new$hash:5000");
        assert_eq!(String::from_utf8_lossy(&out), expected);
        // A two-field line with CRLF: the CR stays.
        let out = set_password(SAMPLE, &name("carol"), "NEW").unwrap();
        assert!(out.windows(11).any(|w| w == b"carol:NEW\r\n"));
        assert_eq!(out.len(), SAMPLE.len() - "$6$salt$hash".len() + 3);
    }

    #[test]
    fn passwd_of_unknown_or_malformed_entries_is_refused() {
        assert_eq!(
            set_password(SAMPLE, &name("zed"), "H"),
            Err(EditError::NoSuchUser { name: "zed".into() })
        );
        let text = b"dave\n";
        assert_eq!(
            set_password(text, &name("dave"), "H"),
            Err(EditError::NoPasswordField {
                name: "dave".into(),
                line: 1
            })
        );
    }

    #[test]
    fn del_removes_every_line_of_the_user_and_nothing_else() {
        let out = remove_user(SAMPLE, &name("carol")).unwrap();
        let expected = String::from_utf8_lossy(SAMPLE).replace("carol:$6$salt$hash\r\n", "");
        assert_eq!(String::from_utf8_lossy(&out), expected);
        let out = remove_user(b"a:1\nb:2\nA:3\n", &name("a")).unwrap();
        assert_eq!(out, b"b:2\n");
        assert_eq!(
            remove_user(SAMPLE, &name("zed")),
            Err(EditError::NoSuchUser { name: "zed".into() })
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "a:b", "a b", "a\tb", "a\u{7}", "#root", "é\u{a0}"] {
            assert!(UserName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(UserName::parse(&"x".repeat(256)).is_err());
        for good in ["alice", "m@example.org", "Élodie", "a.b-c_d+e"] {
            assert!(UserName::parse(good).is_ok(), "{good:?} refused");
        }
        assert!(check_field("home", "/var/vmail/a:b").is_err());
    }

    #[test]
    fn password_line_is_one_line_without_its_ending() {
        let read = |input: &[u8]| read_password_line(&mut io::Cursor::new(input), || false);
        assert_eq!(read(b"secret\nmore\n").unwrap(), b"secret");
        assert_eq!(read(b"secret\r\n").unwrap(), b"secret");
        assert_eq!(read(b"no newline").unwrap(), b"no newline");
        assert_eq!(read(b"\n").unwrap(), b"");
        assert!(read(b"").is_err());
        let long = vec![b'a'; 5000];
        assert!(read(&long).unwrap().len() > ownmail_auth::MAX_PASSWORD_LEN);
    }

    // ---- on disk

    fn users_file(dir: &Path, text: &[u8], mode: u32) -> PathBuf {
        let path = dir.join("users");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn add_on_disk(path: &Path, user: &str, password: &str) -> Result<(), String> {
        let hash = ownmail_auth::hash_sha512_crypt(password.as_bytes());
        let user = name(user);
        rewrite(path, |text| {
            add_line(
                text.unwrap_or_default(),
                &user,
                &hash,
                5000,
                5000,
                "/var/vmail/x",
            )
            .map_err(|e| e.describe(path))
        })
    }

    fn password_field(path: &Path, user: &str) -> String {
        let text = fs::read(path).unwrap();
        let line = lines(&text).find(|l| l.is_user(&name(user))).unwrap();
        let range = line.password_range().unwrap();
        String::from_utf8(line.raw[range].to_vec()).unwrap()
    }

    #[test]
    fn add_on_disk_keeps_mode_and_other_lines_and_the_hash_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = users_file(dir.path(), SAMPLE, 0o640);
        add_on_disk(&path, "alice", "correct horse").unwrap();
        let text = fs::read(&path).unwrap();
        assert!(text.starts_with(SAMPLE));
        let hash = password_field(&path, "alice");
        assert!(hash.starts_with("$6$"));
        let parsed = ownmail_auth::PasswordHash::parse(&hash).unwrap();
        assert!(parsed.verify(b"correct horse"));
        assert!(!parsed.verify(b"wrong"));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        // No temporary file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn duplicate_add_on_disk_fails_and_leaves_the_file_identical() {
        let dir = tempfile::tempdir().unwrap();
        let path = users_file(dir.path(), SAMPLE, 0o600);
        let before = fs::metadata(&path).unwrap();
        let err = add_on_disk(&path, "Bob", "pw").unwrap_err();
        assert!(err.contains("exists already"), "{err}");
        assert!(err.contains(":3:"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), SAMPLE);
        // Not even replaced by an identical copy.
        assert_eq!(fs::metadata(&path).unwrap().ino(), before.ino());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn add_creates_a_missing_file_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new-users");
        add_on_disk(&path, "alice", "pw").unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        let text = String::from_utf8(fs::read(&path).unwrap()).unwrap();
        assert!(text.starts_with("alice:$6$"));
        assert!(text.ends_with(":5000:5000::/var/vmail/x::\n"));
    }

    #[test]
    fn passwd_and_del_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = users_file(dir.path(), SAMPLE, 0o604);
        let hash = ownmail_auth::hash_sha512_crypt(b"new secret");
        rewrite(&path, |t| {
            set_password(t.unwrap(), &name("dave"), &hash).map_err(|e| e.describe(&path))
        })
        .unwrap();
        let stored = password_field(&path, "dave");
        assert!(ownmail_auth::PasswordHash::parse(&stored)
            .unwrap()
            .verify(b"new secret"));
        let expected = String::from_utf8_lossy(SAMPLE).replace("dave:x:", &format!("dave:{hash}:"));
        assert_eq!(
            String::from_utf8(fs::read(&path).unwrap()).unwrap(),
            expected
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o604
        );

        rewrite(&path, |t| {
            remove_user(t.unwrap(), &name("bob")).map_err(|e| e.describe(&path))
        })
        .unwrap();
        let text = fs::read(&path).unwrap();
        assert_eq!(
            user_names(&text),
            vec!["carol", "broken line without colon", "dave"]
        );
        assert!(text.starts_with(b"# users of example.org\n\n   # indented comment  \ncarol:"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn rewrite_through_a_symlink_replaces_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = users_file(dir.path(), b"bob:x\n", 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        add_on_disk(&link, "alice", "pw").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(user_names(&fs::read(&real).unwrap()), vec!["bob", "alice"]);
    }
}
