//! Positions and diagnostics: every error `check` prints names `FILE:LINE:COL`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where something was written: a file, a 1-based line and a 1-based column (in characters).
///
/// A position is provenance, not meaning: two model values that differ only in where they
/// were written compare equal (so that `check --print` output re-parses to "the same rule
/// model" although every line moved).
#[derive(Clone, Debug)]
pub struct Pos {
    pub file: Arc<Path>,
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub fn new(file: Arc<Path>, line: u32, col: u32) -> Self {
        Pos { file, line, col }
    }

    /// A position for things that were not read from a file (built-in defaults).
    pub fn builtin() -> Self {
        Pos {
            file: Arc::from(Path::new("<builtin>")),
            line: 0,
            col: 0,
        }
    }

    /// The same file and line, another column.
    pub fn at_col(&self, col: u32) -> Self {
        Pos {
            file: self.file.clone(),
            line: self.line,
            col,
        }
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    pub fn to_path_buf(&self) -> PathBuf {
        self.file.to_path_buf()
    }
}

impl PartialEq for Pos {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}
impl Eq for Pos {}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One message for the administrator, tied to the place in a file that caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub pos: Pos,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn error(pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            pos,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub fn warning(pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            pos,
            severity: Severity::Warning,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: message`, or `FILE:LINE:COL: warning: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.severity {
            Severity::Error => write!(f, "{}: {}", self.pos, self.message),
            Severity::Warning => write!(f, "{}: warning: {}", self.pos, self.message),
        }
    }
}

/// Diagnostics collected while reading a configuration; errors do not stop the reading, so
/// that one `check` run reports every problem it can find.
#[derive(Debug, Default)]
pub struct Diagnostics {
    list: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, d: Diagnostic) {
        self.list.push(d);
    }
    pub fn error(&mut self, pos: &Pos, message: impl Into<String>) {
        self.list.push(Diagnostic::error(pos.clone(), message));
    }
    pub fn warning(&mut self, pos: &Pos, message: impl Into<String>) {
        self.list.push(Diagnostic::warning(pos.clone(), message));
    }
    pub fn has_errors(&self) -> bool {
        self.list.iter().any(Diagnostic::is_error)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.list.iter()
    }
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.list
    }
    pub fn extend(&mut self, other: impl IntoIterator<Item = Diagnostic>) {
        self.list.extend(other);
    }
}
