//! Configuration: the `smtpd.conf` language of both OpenSMTPD grammars (SPEC §4), read into
//! one rule model ([`model::Config`]), with the tables it names (SPEC §4.3); [`check`]
//! validates it all and reports every problem at its `FILE:LINE:COL`.
//!
//! The flow is lexer → parser (both grammars, macros, includes) → model → check (tables,
//! certificates, interfaces); [`print`] writes the model back in the modern grammar.

pub mod check;
pub mod diag;
pub mod lexer;
pub mod model;
pub mod parser;
pub mod print;
pub mod table;

pub use check::{check_file, Checked};
pub use diag::{Diagnostic, Diagnostics, Pos, Severity};
pub use model::Config;
pub use parser::{parse_file, parse_str, ParseOptions, Parsed};
