//! `db:` tables: the database `ownmail makemap SOURCE` writes to `SOURCE.db`, and reading it.
//!
//! Format, version 1 (UTF-8 text, one record a line, fields separated by one TAB, shown
//! here as `→`):
//!
//! ```text
//! # ownmail-db 1
//! source→/abs/path/of/SOURCE
//! kind→map|aliases|set
//! LINE→COL→VALUECOL→KEY→VALUE
//! ...
//! ```
//!
//! - The first line is the magic; a file that does not start with exactly `# ownmail-db 1`
//!   and a newline is "not an ownmail database" (for example a Berkeley DB that OpenSMTPD's
//!   `makemap` wrote): `load` then reads SOURCE (the path without `.db`) as a `file:` table
//!   and warns once, naming `ownmail makemap`.
//! - LINE, COL and VALUECOL are the entry's 1-based position in SOURCE, so diagnostics about
//!   a `db:` table name the line of the file the administrator edits. VALUECOL is 0 for a
//!   lone key (then VALUE is empty).
//! - In KEY, VALUE and the source path, `\` is written `\\`, TAB `\t`, LF `\n` and CR `\r`;
//!   any other escape is corruption.
//! - Every entry of SOURCE is written in order, duplicates included, so that reading the
//!   database reports what reading SOURCE would (the first of two equal keys wins).
//! - The file is replaced atomically: temp file in the same directory, write, fsync, rename,
//!   fsync the directory. A reader sees the old database or the new one, never a mix. It gets
//!   SOURCE's permission bits, since a credentials database is as secret as its source.
//!
//! Why text and not a hash file: tables are read whole into memory at start and on reload,
//! so a lookup structure on disk buys nothing; text keeps the database inspectable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::file::{self, Mode};
use super::{read_limited, read_source, Entry, Format, Table, TableDecl, Usage};
use crate::diag::{Diagnostics, Pos};

/// The first line of every database of format version 1.
const MAGIC: &str = "# ownmail-db 1";

/// What `makemap -t` says the source holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MakemapKind {
    /// `KEY VALUE` lines (the default), aliases-style `KEY: VALUE` included.
    #[default]
    Map,
    /// An aliases file: like `Map`, and every value must be a list of alias targets.
    Aliases,
    /// Keys only: a value on a line is an error.
    Set,
}

impl MakemapKind {
    fn as_str(self) -> &'static str {
        match self {
            MakemapKind::Map => "map",
            MakemapKind::Aliases => "aliases",
            MakemapKind::Set => "set",
        }
    }
}

/// Compiles `source` into `SOURCE.db` (the name with `.db` appended) and returns that path.
/// Diagnostics name `source`'s lines; on any error nothing is written and `Err(())` returned.
#[allow(clippy::result_unit_err)] // the errors are in `diags`, which the caller prints
pub fn makemap(source: &Path, kind: MakemapKind, diags: &mut Diagnostics) -> Result<PathBuf, ()> {
    let errors_before = diags.iter().filter(|d| d.is_error()).count();
    let file_pos = Pos::new(Arc::from(source), 1, 1);
    let bytes = match read_limited(source) {
        Ok(bytes) => bytes,
        Err(e) => {
            diags.error(&file_pos, format!("cannot read {}: {e}", source.display()));
            return Err(());
        }
    };
    let abs = fs::canonicalize(source)
        .or_else(|_| std::path::absolute(source))
        .unwrap_or_else(|_| source.to_path_buf());
    let mode = if kind == MakemapKind::Set {
        Mode::Set
    } else {
        Mode::Map
    };
    let entries = file::parse(&bytes, &Arc::from(source), mode, diags);
    let name = source.display().to_string();
    let table = Table::build(&name, file_pos.clone(), Format::Text, entries, diags);
    if kind == MakemapKind::Aliases {
        table.validate(Usage::Aliases, diags);
    }
    if diags.iter().filter(|d| d.is_error()).count() > errors_before {
        return Err(());
    }

    let text = encode(&abs, kind, table.entries());
    let mut db_name = source.as_os_str().to_os_string();
    db_name.push(".db");
    let db_path = PathBuf::from(db_name);
    let perms = fs::metadata(source)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o600);
    if let Err(e) = write_durably(&db_path, text.as_bytes(), perms) {
        diags.error(
            &file_pos,
            format!("cannot write {}: {e}", db_path.display()),
        );
        return Err(());
    }
    Ok(db_path)
}

/// The database text for `entries` read from `source`.
fn encode(source: &Path, kind: MakemapKind, entries: &[Entry]) -> String {
    let mut out = format!(
        "{MAGIC}\nsource\t{}\nkind\t{}\n",
        escape(&source.to_string_lossy()),
        kind.as_str()
    );
    for e in entries {
        let value_col = e.value_pos.as_ref().map_or(0, |p| p.col);
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            e.key_pos.line,
            e.key_pos.col,
            value_col,
            escape(&e.key),
            escape(e.value.as_deref().unwrap_or_default())
        ));
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => return Err(format!("unknown escape \\{other}")),
            None => return Err("'\\' at the end of a field".to_string()),
        }
    }
    Ok(out)
}

/// Why a file could not be decoded.
#[derive(Debug, PartialEq, Eq)]
enum DecodeError {
    /// No magic: some other kind of file (a Berkeley DB, a text table).
    NotOurs,
    /// Our magic, broken content, at this 1-based line of the database.
    Corrupt { line: u32, message: String },
}

/// A decoded database: the source path it names and its entries (positioned in the source).
#[derive(Debug)]
struct Decoded {
    source: PathBuf,
    entries: Vec<Entry>,
}

fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let magic = format!("{MAGIC}\n");
    let Some(body) = bytes.strip_prefix(magic.as_bytes()) else {
        return Err(DecodeError::NotOurs);
    };
    let corrupt = |line: usize, message: String| DecodeError::Corrupt {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        message,
    };
    let body = std::str::from_utf8(body).map_err(|e| {
        let line = body
            .get(..e.valid_up_to())
            .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
        corrupt(line + 2, "invalid UTF-8".to_string())
    })?;
    let Some(body) = body
        .strip_suffix('\n')
        .or(if body.is_empty() { Some("") } else { None })
    else {
        return Err(corrupt(
            body.lines().count() + 1,
            "truncated (no newline at the end)".to_string(),
        ));
    };
    let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 2, l));

    let header = |lines: &mut dyn Iterator<Item = (usize, &str)>,
                  name: &str|
     -> Result<String, DecodeError> {
        match lines.next() {
            Some((n, l)) => match l.strip_prefix(name).and_then(|r| r.strip_prefix('\t')) {
                Some(v) => unescape(v).map_err(|m| corrupt(n, m)),
                None => Err(corrupt(n, format!("expected the \"{name}\" header"))),
            },
            None => Err(corrupt(2, format!("missing the \"{name}\" header"))),
        }
    };
    let source = PathBuf::from(header(&mut lines, "source")?);
    let kind = header(&mut lines, "kind")?;
    if !matches!(kind.as_str(), "map" | "aliases" | "set") {
        return Err(corrupt(3, format!("unknown kind \"{kind}\"")));
    }
    let file: Arc<Path> = Arc::from(source.as_path());

    let mut entries = Vec::new();
    for (n, l) in lines {
        if body.is_empty() {
            break;
        }
        let fields: Vec<&str> = l.split('\t').collect();
        let [line, col, vcol, key, value] = fields.as_slice() else {
            return Err(corrupt(
                n,
                format!("expected 5 fields, found {}", fields.len()),
            ));
        };
        let num = |s: &str, what: &str| {
            s.parse::<u32>()
                .map_err(|_| corrupt(n, format!("{what} \"{s}\" is not a number")))
        };
        let (line, col, vcol) = (
            num(line, "line")?,
            num(col, "column")?,
            num(vcol, "value column")?,
        );
        let key = unescape(key).map_err(|m| corrupt(n, m))?;
        let value = unescape(value).map_err(|m| corrupt(n, m))?;
        if key.is_empty() || line == 0 || col == 0 {
            return Err(corrupt(n, "empty key or zero position".to_string()));
        }
        let (value, value_pos) = if vcol == 0 {
            (None, None)
        } else {
            (Some(value), Some(Pos::new(file.clone(), line, vcol)))
        };
        entries.push(Entry {
            key,
            value,
            key_pos: Pos::new(file.clone(), line, col),
            value_pos,
            exact_cols: true,
        });
    }
    Ok(Decoded { source, entries })
}

/// The source file a `db:` path is made from: the path without its `.db` suffix.
fn source_of(path: &Path) -> Option<PathBuf> {
    (path.extension()? == "db").then(|| path.with_extension(""))
}

/// Reads the entries of a `db:` table, falling back to its source file (with one warning)
/// when the database is missing or not ours. `None` when there is nothing to read.
pub(crate) fn load(decl: &TableDecl, path: &Path, diags: &mut Diagnostics) -> Option<Vec<Entry>> {
    let name = &decl.name;
    let source = source_of(path);
    let reason = match read_limited(path) {
        Ok(bytes) => match decode(&bytes) {
            Ok(decoded) => {
                warn_if_stale(decl, path, &decoded.source, diags);
                return Some(decoded.entries);
            }
            Err(DecodeError::NotOurs) => "is not an ownmail database",
            Err(DecodeError::Corrupt { line, message }) => {
                let pos = Pos::new(Arc::from(path), line, 1);
                let again = source
                    .as_ref()
                    .map_or(String::new(), |s| format!(" {}", s.display()));
                diags.error(&pos, format!("table \"{name}\": corrupt ownmail database ({message}); run \"ownmail makemap{again}\""));
                return None;
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound && source.is_some() => "is missing",
        Err(e) => {
            diags.error(
                &decl.source_pos,
                format!("table \"{name}\": cannot read {}: {e}", path.display()),
            );
            return None;
        }
    };
    let source = match source {
        Some(s) if s.is_file() => s,
        Some(s) => {
            let s = s.display();
            diags.error(
                &decl.source_pos,
                format!("table \"{name}\": {} {reason}, and there is no {s} to read instead; run \"ownmail makemap {s}\"", path.display()),
            );
            return None;
        }
        None => {
            diags.error(
                &decl.source_pos,
                format!("table \"{name}\": {} {reason}; make one with \"ownmail makemap SOURCE\" (it writes SOURCE.db)", path.display()),
            );
            return None;
        }
    };
    diags.warning(
        &decl.source_pos,
        format!(
            "table \"{name}\": {} {reason}; reading {} instead — run \"ownmail makemap {}\"",
            path.display(),
            source.display(),
            source.display()
        ),
    );
    let bytes = read_source(name, &source, &decl.source_pos, diags)?;
    Some(file::parse(
        &bytes,
        &Arc::from(source.as_path()),
        Mode::Map,
        diags,
    ))
}

/// Warns when the source was changed after the database was made: the database is used, as
/// OpenSMTPD would, but the administrator probably forgot `makemap`.
fn warn_if_stale(decl: &TableDecl, path: &Path, source: &Path, diags: &mut Diagnostics) {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(db), Some(src)) = (modified(path), modified(source)) {
        if src > db {
            diags.warning(
                &decl.source_pos,
                format!(
                    "table \"{}\": {} is older than {}; run \"ownmail makemap {}\"",
                    decl.name,
                    path.display(),
                    source.display(),
                    source.display()
                ),
            );
        }
    }
}

/// Replaces `path` with `data` atomically and durably: a temp file in the same directory,
/// written and fsynced, renamed over `path`, then the directory fsynced so that the rename
/// itself survives a crash.
fn write_durably(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".{base}.tmp.{}.{nanos}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        for s in ["plain", "a\tb", "back\\slash\\t", "nl\nx\r", "", "é\\"] {
            assert_eq!(unescape(&escape(s)).as_deref(), Ok(s));
        }
        assert!(unescape("a\\x").is_err());
        assert!(unescape("a\\").is_err());
    }

    #[test]
    fn berkeley_db_and_other_files_are_not_ours() {
        // A Berkeley DB hash file: magic 0x00061561 at offset 12, mostly NULs.
        let mut bdb = vec![0u8; 4096];
        bdb[12..16].copy_from_slice(&[0x61, 0x15, 0x06, 0x00]);
        assert!(matches!(decode(&bdb), Err(DecodeError::NotOurs)));
        assert!(matches!(decode(b""), Err(DecodeError::NotOurs)));
        assert!(matches!(
            decode(b"# ownmail-db 2\n"),
            Err(DecodeError::NotOurs)
        ));
        assert!(matches!(decode(b"root: pi\n"), Err(DecodeError::NotOurs)));
    }

    #[test]
    fn corrupt_databases_name_their_line() {
        let cases: [(&[u8], u32); 6] = [
            (b"# ownmail-db 1\nsource\t/x\nkind\tmap\n1\t1\t0\tk\n", 4),
            (
                b"# ownmail-db 1\nsource\t/x\nkind\tmap\n1\t1\t0\tk\t\nx\t1\t0\tk\t\n",
                5,
            ),
            (b"# ownmail-db 1\nsource\t/x\nkind\tweird\n", 3),
            (b"# ownmail-db 1\nkind\tmap\n", 2),
            (
                b"# ownmail-db 1\nsource\t/x\nkind\tmap\n1\t1\t3\tk\tv\\q\n",
                4,
            ),
            (
                b"# ownmail-db 1\nsource\t/x\nkind\tmap\n1\t1\t3\tk\tv\xff\n",
                4,
            ),
        ];
        for (bytes, line) in cases {
            match decode(bytes) {
                Err(DecodeError::Corrupt { line: l, .. }) => {
                    assert_eq!(l, line, "{:?}", String::from_utf8_lossy(bytes))
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
            }
        }
    }

    #[test]
    fn encode_decode_keeps_positions_and_values() {
        let file: Arc<Path> = Arc::from(Path::new("/src/aliases"));
        let e = |key: &str, value: Option<&str>, line, col, vcol| Entry {
            key: key.to_string(),
            value: value.map(str::to_string),
            key_pos: Pos::new(file.clone(), line, col),
            value_pos: value.map(|_| Pos::new(file.clone(), line, vcol)),
            exact_cols: true,
        };
        let entries = vec![
            e("root", Some("pi,\tm"), 3, 1, 18),
            e("lone", None, 4, 2, 0),
            e("a\\b", Some("x\ny"), 9, 5, 9),
        ];
        let text = encode(Path::new("/src/aliases"), MakemapKind::Map, &entries);
        let decoded = decode(text.as_bytes()).expect("decodes");
        assert_eq!(decoded.source, Path::new("/src/aliases"));
        assert_eq!(decoded.entries, entries);
        let cols: Vec<_> = decoded
            .entries
            .iter()
            .map(|e| {
                (
                    e.key_pos.line,
                    e.key_pos.col,
                    e.value_pos.as_ref().map(|p| p.col),
                )
            })
            .collect();
        assert_eq!(cols, vec![(3, 1, Some(18)), (4, 2, None), (9, 5, Some(9))]);
        assert_eq!(
            decoded.entries[0].key_pos.file.as_ref(),
            Path::new("/src/aliases")
        );
    }

    #[test]
    fn empty_database_decodes() {
        let text = encode(Path::new("/e"), MakemapKind::Set, &[]);
        assert_eq!(decode(text.as_bytes()).map(|d| d.entries.len()), Ok(0));
    }
}
