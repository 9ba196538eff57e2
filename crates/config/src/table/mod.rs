//! Tables (SPEC §4.3): `file:`, `db:`, `passwd:` and inline `{ ... }` tables, read into memory
//! with the position of every entry, validated for the use the configuration makes of them,
//! and looked up case-insensitively.
//!
//! CONTRACT (filled in by the table work; the parser relies on these names):
//! - `TableDecl` is what a `table NAME [TYPE:]PATH` / `table NAME { ... }` statement says.
//! - `Table::load(&TableDecl, &mut Diagnostics) -> Option<Table>` reads the source; errors in
//!   the file are reported at `FILE:LINE:COL` of the table file itself.
//! - `Table::validate(&self, Usage, &mut Diagnostics)` checks entries for one use.

use std::path::PathBuf;

use crate::diag::{Diagnostics, Pos};

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
