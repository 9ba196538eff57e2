//! Tables (SPEC §4.3): `file:`, `db:`, `passwd:` and inline `{ ... }` tables, read into memory
//! with the position of every entry, validated for the use the configuration makes of them,
//! and looked up case-insensitively.
//!
//! CONTRACT (the parser relies on these names):
//! - `TableDecl` is what a `table NAME [TYPE:]PATH` / `table NAME { ... }` statement says.
//! - `Table::load(&TableDecl, &mut Diagnostics) -> Option<Table>` reads the source; errors in
//!   the file are reported at `FILE:LINE:COL` of the table file itself.
//! - `Table::validate(&self, Usage, &mut Diagnostics)` checks entries for one use.
//!
//! Invariants:
//! - A loaded `Table` never changes; a reload builds a new one.
//! - Every entry keeps the position of its key and of its value in the file an administrator
//!   edits: for `db:` tables that is the *source* file `makemap` read, not the database, so
//!   `check` points at the line to fix.
//! - Keys are unique after lowercasing: the first of two entries with the same key wins and
//!   the second draws a warning naming the first's line (OpenSMTPD keeps the first, too).
//! - A value is kept whole, inner whitespace included; nothing is silently truncated. Whether
//!   a value is legal depends on the use, and `validate` says so at the exact column (the
//!   article's `/etc/smtpdauth` with a space inside a hash is an error on its line 2).
//! - Reading never panics on any input: bad UTF-8, binary files (a Berkeley DB) and absurd
//!   lines are diagnostics.
//! - Lookups (`lookup.rs`) and expansion (`expand.rs`) are pure functions of the loaded table;
//!   they never touch the file system (`:include:` targets are returned, not read).
//!
//! Files: `file.rs` parses the text format, `db.rs` the `makemap` database (and writes it),
//! `passwd.rs` the passwd-file format, `validate.rs` checks a table for one use, `lookup.rs`
//! answers typed lookups, `expand.rs` expands aliases and virtual addresses.

mod db;
mod expand;
mod file;
mod lookup;
mod passwd;
mod step;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diagnostics, Pos};
use passwd::PasswdRecord;

pub use db::{makemap, MakemapKind};
pub use expand::{expand, ExpandError, ExpandMode, Expansion, MAX_DEPTH, MAX_RESULTS};
pub use lookup::{Credential, UserEntry};
pub use step::AliasTarget;

/// Where a table's entries come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableSource {
    /// `file:PATH` or a bare `PATH`.
    File(PathBuf),
    /// `db:PATH` (PATH normally ends in `.db`, made by `ownmail makemap`).
    Db(PathBuf),
    /// `passwd:PATH`: Dovecot passwd-file / `/etc/passwd` format.
    Passwd(PathBuf),
    /// `{ a, b }`: each value with its position.
    InlineList(Vec<(String, Pos)>),
    /// `{ k = v, ... }`.
    InlineMap(Vec<(String, String, Pos)>),
}

/// One `table` statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDecl {
    pub name: String,
    pub source: TableSource,
    /// Position of the `table` keyword.
    pub pos: Pos,
    /// Position of the path (or the `{`).
    pub source_pos: Pos,
}

/// How the configuration uses a table; a table may have several uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Usage {
    /// `alias <t>`: `name: target, target`.
    Aliases,
    /// `virtual <t>`: `ADDRESS target`, `@DOMAIN target`, `DOMAIN: true`.
    Virtual,
    /// `userbase <t>`: `NAME UID:GID:HOME`.
    Userbase,
    /// `auth <t>`: `USER HASH` or `USER USER:HASH`.
    Credentials,
    /// `relay ... auth <t>`: `LABEL USER:PASSWORD`.
    Secrets,
    /// Lists of domains, addresses or networks (`for domain <t>`, `from source <t>`, ...).
    List,
}

/// One entry of a table: a key, maybe a value, and where both were written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key as written (a trailing `:` of the aliases style removed).
    pub key: String,
    /// The rest of the line, trimmed, inner whitespace kept; `None` for a lone key.
    pub value: Option<String>,
    pub key_pos: Pos,
    pub value_pos: Option<Pos>,
    /// Whether `value_pos` plus a character offset into the value is the column of that
    /// character. False for inline `{ k = v }` entries, whose position is the entry's only.
    pub(crate) exact_cols: bool,
}

impl Entry {
    /// The position of the character at byte offset `offset` of the value (clamped to the
    /// value), or of the key when there is no value.
    pub fn value_pos_at(&self, offset: usize) -> Pos {
        match (&self.value_pos, &self.value) {
            (Some(pos), Some(value)) if self.exact_cols => {
                pos.at_col(pos.col.saturating_add(char_count_before(value, offset)))
            }
            (Some(pos), _) => pos.clone(),
            _ => self.key_pos.clone(),
        }
    }
}

/// The number of characters of `text` that start before byte `offset` (any offset is fine).
pub(crate) fn char_count_before(text: &str, offset: usize) -> u32 {
    let n = text.char_indices().take_while(|(i, _)| *i < offset).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Which format the entries were read from; `passwd:` tables keep their parsed fields.
#[derive(Clone, Debug)]
enum Format {
    Text,
    Inline,
    /// One record per entry, same order.
    Passwd(Vec<PasswdRecord>),
}

/// A table read into memory. See the module documentation for its invariants.
///
/// `Debug` shows the name and size only: values may be password hashes or relay secrets.
#[derive(Clone)]
pub struct Table {
    name: String,
    /// Position of the path (or `{`) in the configuration, for table-wide messages.
    source_pos: Pos,
    format: Format,
    entries: Vec<Entry>,
    /// Lowercased key → index into `entries` (the first entry with that key).
    index: HashMap<String, usize>,
}

/// Files larger than this are refused rather than read into memory (no unbounded buffers).
const MAX_TABLE_BYTES: u64 = 256 * 1024 * 1024;

impl Table {
    /// Reads the table `decl` describes. Problems inside the file are pushed at their
    /// `FILE:LINE:COL` and the rest of the file is still read; `None` only when the source
    /// cannot be read at all (reported at `decl.source_pos`).
    pub fn load(decl: &TableDecl, diags: &mut Diagnostics) -> Option<Table> {
        let (format, entries) = match &decl.source {
            TableSource::File(path) => {
                let bytes = read_source(&decl.name, path, &decl.source_pos, diags)?;
                (
                    Format::Text,
                    file::parse(&bytes, &file_arc(path), file::Mode::Map, diags),
                )
            }
            TableSource::Db(path) => (Format::Text, db::load(decl, path, diags)?),
            TableSource::Passwd(path) => {
                let bytes = read_source(&decl.name, path, &decl.source_pos, diags)?;
                let (entries, records) = passwd::parse(&bytes, &file_arc(path), diags);
                (Format::Passwd(records), entries)
            }
            TableSource::InlineList(items) => {
                let entries = items
                    .iter()
                    .map(|(key, pos)| Entry {
                        key: key.clone(),
                        value: None,
                        key_pos: pos.clone(),
                        value_pos: None,
                        exact_cols: false,
                    })
                    .collect();
                (Format::Inline, entries)
            }
            TableSource::InlineMap(items) => {
                let entries = items
                    .iter()
                    .map(|(key, value, pos)| Entry {
                        key: key.clone(),
                        value: Some(value.clone()),
                        key_pos: pos.clone(),
                        value_pos: Some(pos.clone()),
                        exact_cols: false,
                    })
                    .collect();
                (Format::Inline, entries)
            }
        };
        Some(Table::build(
            &decl.name,
            decl.source_pos.clone(),
            format,
            entries,
            diags,
        ))
    }

    /// Indexes `entries`, warning about duplicate keys (the first one wins).
    fn build(
        name: &str,
        source_pos: Pos,
        format: Format,
        entries: Vec<Entry>,
        diags: &mut Diagnostics,
    ) -> Table {
        let mut index = HashMap::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let lower = entry.key.to_lowercase();
            if let Some(&first) = index.get(&lower) {
                let first: &Entry = &entries[first];
                diags.warning(
                    &entry.key_pos,
                    format!(
                        "duplicate key \"{}\" in table \"{name}\" (first at {}); the first one is used",
                        entry.key, first.key_pos
                    ),
                );
            } else {
                index.insert(lower, i);
            }
        }
        Table {
            name: name.to_string(),
            source_pos,
            format,
            entries,
            index,
        }
    }

    /// The table's name in the configuration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the table's source was named in the configuration.
    pub fn source_pos(&self) -> &Pos {
        &self.source_pos
    }

    /// Every entry in file order, duplicates included.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether the table was read from a `passwd:` file.
    pub fn is_passwd(&self) -> bool {
        matches!(self.format, Format::Passwd(_))
    }

    /// The entry for `key` (case-insensitive).
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.index_of(key).and_then(|i| self.entries.get(i))
    }

    /// The index of the entry for `key` (case-insensitive).
    fn index_of(&self, key: &str) -> Option<usize> {
        self.index.get(&key.to_lowercase()).copied()
    }

    /// The parsed passwd fields of entry `i`, for `passwd:` tables.
    fn passwd_record(&self, i: usize) -> Option<&PasswdRecord> {
        match &self.format {
            Format::Passwd(records) => records.get(i),
            Format::Text | Format::Inline => None,
        }
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.name)
            .field("passwd", &self.is_passwd())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// The path as an `Arc<Path>` for the positions of its entries.
fn file_arc(path: &Path) -> Arc<Path> {
    Arc::from(path)
}

/// Reads a whole text table file, or reports why not at `pos`.
pub(crate) fn read_source(
    name: &str,
    path: &Path,
    pos: &Pos,
    diags: &mut Diagnostics,
) -> Option<Vec<u8>> {
    match read_limited(path) {
        // A NUL never occurs in a text table; without this check a Berkeley DB named as
        // `file:` would give one "invalid UTF-8" error per line of binary.
        Ok(bytes) if bytes.contains(&0) => {
            diags.error(
                pos,
                format!(
                    "table \"{name}\": {} is a binary file, not a text table (a database? name it as db:PATH)",
                    path.display()
                ),
            );
            None
        }
        Ok(bytes) => Some(bytes),
        Err(e) => {
            diags.error(
                pos,
                format!("table \"{name}\": cannot read {}: {e}", path.display()),
            );
            None
        }
    }
}

/// Reads `path` into memory, refusing files over `MAX_TABLE_BYTES`.
fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = File::open(path)?;
    if file.metadata()?.is_dir() {
        return Err(std::io::Error::other("is a directory"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_TABLE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TABLE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB",
            MAX_TABLE_BYTES / 1024 / 1024
        )));
    }
    Ok(bytes)
}
