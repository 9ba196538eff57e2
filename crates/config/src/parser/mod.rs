//! The `smtpd.conf` parser: statements of both grammars into one [`Config`].
//!
//! Like OpenSMTPD's parse.y it rejects contradictions while parsing ("tag already specified
//! for this rule"). Unlike it, an error does not stop the reading: the statement is skipped
//! and the next one read, so that `check` reports every error of a file at once. Nothing here
//! touches the network or the tables' files; `check` does that afterwards.

mod cursor;
mod directives;
mod listen;
mod rules;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::lexer::{self, Token, TokenKind};
use crate::model::{Config, Grammar};

pub use cursor::{Cursor, PResult};

/// How deep `include` may nest: deeper is surely a mistake (loops are caught before).
const MAX_INCLUDE_DEPTH: usize = 16;

/// What reading a configuration needs to know from outside the file.
#[derive(Clone, Debug)]
pub struct ParseOptions {
    /// Where the legacy `certificate NAME` finds `NAME.crt` and `NAME.key`.
    pub pki_dir: PathBuf,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            pki_dir: PathBuf::from("/etc/certs"),
        }
    }
}

/// The result of reading a configuration: the model (complete as far as it could be read),
/// which grammar its rules used, and every diagnostic.
#[derive(Debug)]
pub struct Parsed {
    pub config: Config,
    pub grammar: Option<Grammar>,
    pub diags: Diagnostics,
}

/// Reads `path` and everything it includes.
pub fn parse_file(path: &Path, opts: &ParseOptions) -> Parsed {
    let mut p = Parser::new(opts);
    let file: Arc<Path> = Arc::from(path);
    match std::fs::read(path) {
        Ok(bytes) => p.file(&file, &bytes),
        Err(e) => p.diags.error(
            &Pos::new(file, 0, 0),
            format!("cannot read configuration: {e}"),
        ),
    }
    p.finish()
}

/// Reads configuration text as if it were the file `name` (tests, fuzzing).
pub fn parse_str(name: &str, text: &str, opts: &ParseOptions) -> Parsed {
    let mut p = Parser::new(opts);
    let file: Arc<Path> = Arc::from(Path::new(name));
    p.file(&file, text.as_bytes());
    p.finish()
}

pub(crate) struct Parser<'o> {
    pub(crate) opts: &'o ParseOptions,
    pub(crate) config: Config,
    pub(crate) diags: Diagnostics,
    macros: HashMap<String, String>,
    /// Files being read, outermost first (for include loops).
    include_stack: Vec<PathBuf>,
    /// The grammar of the first rule, and where it was.
    pub(crate) grammar: Option<(Grammar, Pos)>,
    /// Numbers the actions made for legacy rules and anonymous tables.
    pub(crate) generated: usize,
}

impl<'o> Parser<'o> {
    fn new(opts: &'o ParseOptions) -> Self {
        Parser {
            opts,
            config: Config::empty(),
            diags: Diagnostics::new(),
            macros: HashMap::new(),
            include_stack: Vec::new(),
            grammar: None,
            generated: 0,
        }
    }

    fn finish(mut self) -> Parsed {
        // Implicit chains (`listen ... filter { a, b }`) go last, so that the model does not
        // depend on where the listener was written (`check --print` writes them inline).
        let (named, implicit): (Vec<_>, Vec<_>) = std::mem::take(&mut self.config.filters)
            .into_iter()
            .partition(|f| !f.is_implicit());
        self.config.filters = named.into_iter().chain(implicit).collect();
        rules::check_references(&self.config, &mut self.diags);
        Parsed {
            config: self.config,
            grammar: self.grammar.map(|g| g.0),
            diags: self.diags,
        }
    }

    fn file(&mut self, file: &Arc<Path>, bytes: &[u8]) {
        let key = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        self.include_stack.push(key);
        let (tokens, lex_diags) = lexer::lex(file, bytes);
        self.diags.extend(lex_diags);
        let end_line = bytes.iter().filter(|b| **b == b'\n').count() as u32 + 1;
        let eof = Pos::new(file.clone(), end_line, 1);
        for stmt in split_statements(&tokens, &eof) {
            self.statement(stmt);
        }
        self.include_stack.pop();
    }

    /// One statement: expand its macros, then read it.
    fn statement(&mut self, stmt: Statement) {
        let Statement { tokens, end } = stmt;
        // `name = value` defines a macro (its value may use earlier macros).
        if let [Token {
            kind: TokenKind::Word(name),
            pos,
        }, Token {
            kind: TokenKind::Eq,
            ..
        }, rest @ ..] = tokens.as_slice()
        {
            self.define_macro(name, pos, rest, &end);
            return;
        }
        let tokens = match self.expand_macros(tokens) {
            Some(t) => t,
            None => return,
        };
        let Some(first) = tokens.first() else { return };
        let mut c = Cursor::new(&tokens, end);
        let result = match &first.kind {
            TokenKind::Word(w) => match w.as_str() {
                "include" => self.include(&mut c),
                "accept" | "reject" => self.legacy_rule(&mut c),
                "match" => self.match_rule(&mut c),
                "action" => self.action(&mut c),
                "listen" => self.listen(&mut c),
                "table" => self.table(&mut c),
                "pki" => self.pki(&mut c),
                "ca" => self.ca(&mut c),
                "queue" | "expire" | "bounce" | "smtp" | "max-message-size" => self.global(&mut c),
                "resolver" => self.resolver(&mut c),
                "imap" => self.imap(&mut c),
                "dkim" => self.dkim(&mut c),
                "spam" | "dnsbl" | "greylist" | "limit" | "screen" => self.antispam(&mut c),
                "auth-results" | "spf" | "dmarc" => self.inbound_auth(&mut c),
                "filter" => self.filter(&mut c),
                other => Err(Diagnostic::error(
                    first.pos.clone(),
                    format!("unknown keyword \"{other}\""),
                )),
            },
            _ => Err(Diagnostic::error(
                first.pos.clone(),
                format!(
                    "unexpected {} at the start of a statement",
                    first.describe()
                ),
            )),
        };
        if let Err(d) = result {
            self.diags.push(d);
        }
    }

    fn define_macro(&mut self, name: &str, pos: &Pos, rest: &[Token], end: &Pos) {
        if !valid_macro_name(name) {
            self.diags
                .error(pos, format!("invalid macro name \"{name}\""));
            return;
        }
        let Some(rest) = self.expand_macros(rest.to_vec()) else {
            return;
        };
        let mut c = Cursor::new(&rest, end.clone());
        match c.value("a macro value").and_then(|v| c.finish().map(|_| v)) {
            Ok((value, _)) => {
                self.macros.insert(name.to_string(), value);
            }
            Err(d) => self.diags.push(d),
        }
    }

    /// Replaces each unquoted `$name` by the tokens of the macro's value, placed where the
    /// macro was used. None (after reporting) when a macro is not defined.
    fn expand_macros(&mut self, tokens: Vec<Token>) -> Option<Vec<Token>> {
        if !tokens
            .iter()
            .any(|t| matches!(&t.kind, TokenKind::Word(w) if w.starts_with('$')))
        {
            return Some(tokens);
        }
        let mut out = Vec::with_capacity(tokens.len());
        let mut ok = true;
        for t in tokens {
            let name = match &t.kind {
                TokenKind::Word(w) if w.len() > 1 && w.starts_with('$') => w[1..].to_string(),
                _ => {
                    out.push(t);
                    continue;
                }
            };
            match self.macros.get(&name) {
                Some(value) => {
                    let (toks, _) = lexer::lex(&t.pos.file, value.as_bytes());
                    out.extend(
                        toks.into_iter()
                            .filter(|x| x.kind != TokenKind::Newline)
                            .map(|mut x| {
                                x.pos = t.pos.clone();
                                x
                            }),
                    );
                }
                None => {
                    self.diags
                        .error(&t.pos, format!("macro \"${name}\" is not defined"));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// `include "FILE"`: relative paths are relative to the including file's directory.
    fn include(&mut self, c: &mut Cursor) -> PResult<()> {
        c.expect("include")?;
        let (name, pos) = c.value("a file name")?;
        c.finish()?;
        let path = directives::relative_to_config(&name, &pos);
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if self.include_stack.contains(&key) {
            let chain: Vec<String> = self
                .include_stack
                .iter()
                .chain(std::iter::once(&key))
                .map(|p| p.display().to_string())
                .collect();
            return Err(Diagnostic::error(
                pos,
                format!("include loop: {}", chain.join(" -> ")),
            ));
        }
        if self.include_stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(Diagnostic::error(
                pos,
                format!("includes nested deeper than {MAX_INCLUDE_DEPTH}"),
            ));
        }
        let bytes = std::fs::read(&path).map_err(|e| {
            Diagnostic::error(
                pos.clone(),
                format!("cannot include {}: {e}", path.display()),
            )
        })?;
        let file: Arc<Path> = Arc::from(path.as_path());
        self.file(&file, &bytes);
        Ok(())
    }

    /// Records which grammar a rule statement uses; mixing the two is an error.
    pub(crate) fn use_grammar(&mut self, g: Grammar, pos: &Pos) -> PResult<()> {
        match &self.grammar {
            None => {
                self.grammar = Some((g, pos.clone()));
                Ok(())
            }
            Some((first, _)) if *first == g => Ok(()),
            Some((first, first_pos)) => Err(Diagnostic::error(
                pos.clone(),
                format!(
                    "cannot mix the legacy (accept/reject) and modern (action/match) grammars in one \
                     configuration: the first {} statement is at {first_pos}",
                    match first {
                        Grammar::Legacy => "legacy",
                        Grammar::Modern => "modern",
                    }
                ),
            )),
        }
    }
}

fn valid_macro_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Statement {
    tokens: Vec<Token>,
    end: Pos,
}

/// Statements end at a newline, except inside `{ }` (inline tables may span lines).
fn split_statements(tokens: &[Token], eof: &Pos) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut depth = 0usize;
    for t in tokens {
        match t.kind {
            TokenKind::LBrace => depth += 1,
            TokenKind::RBrace => depth = depth.saturating_sub(1),
            TokenKind::Newline if depth == 0 => {
                if !cur.is_empty() {
                    out.push(Statement {
                        tokens: std::mem::take(&mut cur),
                        end: t.pos.clone(),
                    });
                }
                continue;
            }
            TokenKind::Newline => continue,
            _ => {}
        }
        cur.push(t.clone());
    }
    if !cur.is_empty() {
        out.push(Statement {
            tokens: cur,
            end: eof.clone(),
        });
    }
    out
}

/// `4d`, `12h`, `30m`, `10s`, `1w` or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let (num, mult) = match s.char_indices().last()? {
        (i, 's') => (&s[..i], 1),
        (i, 'm') => (&s[..i], 60),
        (i, 'h') => (&s[..i], 3600),
        (i, 'd') => (&s[..i], 86_400),
        (i, 'w') => (&s[..i], 7 * 86_400),
        _ => (s, 1),
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(mult).map(Duration::from_secs)
}

/// Prints a duration in the largest unit that divides it.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, n) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if s != 0 && s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// `35M`, `512K`, `1G`, `10000000` (bytes); suffixes are powers of 1024, either case.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1024),
        'm' | 'M' => (&s[..s.len() - 1], 1024 * 1024),
        'g' | 'G' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        'b' | 'B' => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(mult)
}

/// Prints a size with the largest suffix that divides it.
pub fn format_size(n: u64) -> String {
    for (unit, m) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
        if n != 0 && n.is_multiple_of(m) {
            return format!("{}{unit}", n / m);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests;
