//! A cursor over one statement's tokens, with the small readers every statement uses.

use crate::diag::{Diagnostic, Pos};
use crate::lexer::{Token, TokenKind};
use crate::model::{Cond, TableOrValue, TableRef};

pub type PResult<T> = Result<T, Diagnostic>;

pub struct Cursor<'a> {
    toks: &'a [Token],
    i: usize,
    /// Where the statement ends, for "expected X at end of line".
    end: Pos,
}

impl<'a> Cursor<'a> {
    pub fn new(toks: &'a [Token], end: Pos) -> Self {
        Cursor { toks, i: 0, end }
    }

    pub fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.i)
    }

    pub fn peek2(&self) -> Option<&'a Token> {
        self.toks.get(self.i + 1)
    }

    pub fn at_end(&self) -> bool {
        self.i >= self.toks.len()
    }

    /// The position of the next token, or of the end of the statement.
    pub fn pos(&self) -> Pos {
        self.peek()
            .map_or_else(|| self.end.clone(), |t| t.pos.clone())
    }

    /// Consumes the unquoted word `kw` when it is next.
    pub fn eat(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_word(kw)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub fn eat_kind(&mut self, kind: &TokenKind) -> bool {
        if self.peek().is_some_and(|t| &t.kind == kind) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// An error at the next token: `unexpected "x", expected WHAT` (or at end of line).
    /// One of the keywords `choices`, as its value; otherwise an error listing them
    /// (`expected "a", "b" or "c"`).
    pub fn one_of<T: Copy>(&mut self, choices: &[(&str, T)]) -> PResult<T> {
        if let Some(&(_, v)) = choices
            .iter()
            .find(|(kw, _)| self.peek().is_some_and(|t| t.is_word(kw)))
        {
            self.i += 1;
            return Ok(v);
        }
        let names: Vec<String> = choices.iter().map(|(kw, _)| format!("\"{kw}\"")).collect();
        let expected = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        Err(self.unexpected(&expected))
    }

    pub fn unexpected(&self, expected: &str) -> Diagnostic {
        match self.peek() {
            Some(t) => Diagnostic::error(
                t.pos.clone(),
                format!("unexpected {}, expected {expected}", t.describe()),
            ),
            None => Diagnostic::error(
                self.end.clone(),
                format!("expected {expected} at end of line"),
            ),
        }
    }

    pub fn expect(&mut self, kw: &str) -> PResult<()> {
        if self.eat(kw) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("\"{kw}\"")))
        }
    }

    /// A word or a quoted string, as a value.
    pub fn value(&mut self, what: &str) -> PResult<(String, Pos)> {
        match self.peek() {
            Some(t) => match t.text() {
                Some(s) => {
                    self.i += 1;
                    Ok((s.to_string(), t.pos.clone()))
                }
                None => Err(self.unexpected(what)),
            },
            None => Err(self.unexpected(what)),
        }
    }

    /// A number in `range`, e.g. a port.
    pub fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
        &mut self,
        what: &str,
        min: T,
        max: T,
    ) -> PResult<(T, Pos)> {
        let (s, pos) = self.value(what)?;
        match s.parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok((n, pos)),
            _ => Err(Diagnostic::error(
                pos,
                format!("invalid {what} \"{s}\": expected a number from {min} to {max}"),
            )),
        }
    }

    /// `!` before a condition.
    pub fn bang(&mut self) -> bool {
        self.eat_kind(&TokenKind::Bang)
    }

    /// `<name>`; with `bare_ok`, also a bare `name` (the legacy grammar allows both).
    pub fn table_ref(&mut self, bare_ok: bool) -> PResult<TableRef> {
        let pos = self.pos();
        if self.eat_kind(&TokenKind::Lt) {
            let (name, _) = self.value("a table name")?;
            if !self.eat_kind(&TokenKind::Gt) {
                return Err(self.unexpected("'>'"));
            }
            return Ok(TableRef { name, pos });
        }
        if bare_ok {
            if let Some(TokenKind::Word(w)) = self.peek().map(|t| &t.kind) {
                self.i += 1;
                return Ok(TableRef {
                    name: w.clone(),
                    pos,
                });
            }
        }
        Err(self.unexpected("a table such as <name>"))
    }

    /// `<table>` or one literal value.
    pub fn table_or_value(&mut self, what: &str) -> PResult<TableOrValue> {
        if self.peek().is_some_and(|t| t.kind == TokenKind::Lt) {
            return Ok(TableOrValue::Table(self.table_ref(false)?));
        }
        Ok(TableOrValue::Value(self.value(what)?.0))
    }

    /// `[!]` followed by whatever `read` reads.
    pub fn cond<T>(&mut self, read: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<Cond<T>> {
        let negated = self.bang();
        Ok(Cond {
            negated,
            value: read(self)?,
        })
    }

    /// The statement must end here.
    pub fn finish(&self) -> PResult<()> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(Diagnostic::error(
                t.pos.clone(),
                format!("unexpected {}", t.describe()),
            )),
        }
    }
}
