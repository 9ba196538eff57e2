//! The `smtpd.conf` lexer: bytes in, tokens out, each with its `FILE:LINE:COL`.
//!
//! It follows OpenSMTPD's parse.y lexer: `#` starts a comment where a token could start, a
//! backslash before a newline joins two lines, `"…"` and `'…'` are strings (never keywords,
//! never macro-expanded), and `{ } < > , = !` are tokens of their own. Newlines end statements
//! and are tokens too. `%{…}` inside a word (OpenSMTPD's format specifiers) stays in the word.
//! Macros (`$name`) and `include` are handled by the parser, which knows the definitions.

use std::path::Path;
use std::sync::Arc;

use crate::diag::{Diagnostic, Pos};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An unquoted word: a keyword, a name, a number, a path, `$macro`...
    Word(String),
    /// A quoted string, without its quotes and with `\"`, `\\` resolved.
    Quoted(String),
    LBrace,
    RBrace,
    Lt,
    Gt,
    Comma,
    Eq,
    Bang,
    Newline,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub kind: TokenKind,
    pub pos: Pos,
}

impl Token {
    /// The text of a word or a quoted string.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            TokenKind::Word(s) | TokenKind::Quoted(s) => Some(s),
            _ => None,
        }
    }

    /// True for the unquoted word `kw` (keywords are never quoted).
    pub fn is_word(&self, kw: &str) -> bool {
        matches!(&self.kind, TokenKind::Word(s) if s == kw)
    }

    /// How the token reads in a message: `"foo"`, `end of line`, `'{'`.
    pub fn describe(&self) -> String {
        match &self.kind {
            TokenKind::Word(s) => format!("\"{s}\""),
            TokenKind::Quoted(s) => format!("string \"{s}\""),
            TokenKind::LBrace => "'{'".into(),
            TokenKind::RBrace => "'}'".into(),
            TokenKind::Lt => "'<'".into(),
            TokenKind::Gt => "'>'".into(),
            TokenKind::Comma => "','".into(),
            TokenKind::Eq => "'='".into(),
            TokenKind::Bang => "'!'".into(),
            TokenKind::Newline => "end of line".into(),
        }
    }
}

/// Characters that end an unquoted word.
fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, '{' | '}' | '<' | '>' | ',' | '=' | '"' | '\'' | '#')
}

/// Splits `src` (the contents of `file`) into tokens. Errors (an unterminated string, bytes
/// that are not UTF-8) are returned with the tokens read so far, so that the caller can still
/// report every problem in the rest of the configuration.
pub fn lex(file: &Arc<Path>, src: &[u8]) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let text = match std::str::from_utf8(src) {
        Ok(t) => t,
        Err(e) => {
            let good = &src[..e.valid_up_to()];
            let line = good.iter().filter(|b| **b == b'\n').count() as u32 + 1;
            let col_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let col = String::from_utf8_lossy(&good[col_start..]).chars().count() as u32 + 1;
            diags.push(Diagnostic::error(
                Pos::new(file.clone(), line, col),
                "invalid UTF-8 in configuration file",
            ));
            return (Vec::new(), diags);
        }
    };
    let mut lx = Lexer {
        file: file.clone(),
        chars: text.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
    };
    let tokens = lx.run(&mut diags);
    (tokens, diags)
}

struct Lexer {
    file: Arc<Path>,
    chars: Vec<char>,
    i: usize,
    line: u32,
    col: u32,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn pos(&self) -> Pos {
        Pos::new(self.file.clone(), self.line, self.col)
    }

    /// A backslash followed by a newline (optionally `\r\n`) joins lines.
    fn at_continuation(&self) -> bool {
        self.peek() == Some('\\')
            && (self.peek_at(1) == Some('\n')
                || (self.peek_at(1) == Some('\r') && self.peek_at(2) == Some('\n')))
    }

    fn skip_continuation(&mut self) {
        self.bump();
        if self.peek() == Some('\r') {
            self.bump();
        }
        self.bump();
    }

    fn run(&mut self, diags: &mut Vec<Diagnostic>) -> Vec<Token> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            let pos = self.pos();
            let single = match c {
                '{' => Some(TokenKind::LBrace),
                '}' => Some(TokenKind::RBrace),
                '<' => Some(TokenKind::Lt),
                '>' => Some(TokenKind::Gt),
                ',' => Some(TokenKind::Comma),
                '=' => Some(TokenKind::Eq),
                '!' => Some(TokenKind::Bang),
                '\n' => Some(TokenKind::Newline),
                _ => None,
            };
            if let Some(kind) = single {
                self.bump();
                out.push(Token { kind, pos });
                continue;
            }
            if self.at_continuation() {
                self.skip_continuation();
                continue;
            }
            if c.is_whitespace() {
                self.bump();
                continue;
            }
            if c == '#' {
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.bump();
                }
                continue;
            }
            if c == '"' || c == '\'' {
                match self.quoted(c) {
                    Some(s) => out.push(Token {
                        kind: TokenKind::Quoted(s),
                        pos,
                    }),
                    None => {
                        diags.push(Diagnostic::error(pos, "unterminated quoted string"));
                        // Resynchronise at the next line: the rest of this one is unreadable.
                        while let Some(c) = self.peek() {
                            if c == '\n' {
                                break;
                            }
                            self.bump();
                        }
                    }
                }
                continue;
            }
            out.push(Token {
                kind: TokenKind::Word(self.word()),
                pos,
            });
        }
        out
    }

    /// Reads a quoted string after its opening quote; None when the line or file ends first.
    fn quoted(&mut self, quote: char) -> Option<String> {
        self.bump();
        let mut s = String::new();
        loop {
            match self.peek()? {
                '\n' => return None,
                c if c == quote => {
                    self.bump();
                    return Some(s);
                }
                '\\' if self.at_continuation() => self.skip_continuation(),
                '\\' if matches!(self.peek_at(1), Some(c) if c == quote || c == '\\') => {
                    self.bump();
                    s.push(self.bump()?);
                }
                c => {
                    self.bump();
                    s.push(c);
                }
            }
        }
    }

    fn word(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if self.at_continuation() {
                break;
            }
            if c == '%' && self.peek_at(1) == Some('{') {
                // `%{user.directory}`: keep the braces in the word, up to the closing one.
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    s.push(c);
                    self.bump();
                    if c == '}' {
                        break;
                    }
                }
                continue;
            }
            if ends_word(c) || (c == '!' && s.is_empty()) {
                break;
            }
            s.push(c);
            self.bump();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        let f: Arc<Path> = Arc::from(Path::new("t.conf"));
        let (toks, diags) = lex(&f, src.as_bytes());
        assert!(diags.is_empty(), "{diags:?}");
        toks.into_iter().map(|t| t.kind).collect()
    }

    fn w(s: &str) -> TokenKind {
        TokenKind::Word(s.into())
    }

    #[test]
    fn words_punctuation_and_newlines() {
        assert_eq!(
            kinds("accept for local virtual <aliases> deliver to mbox\n"),
            vec![
                w("accept"),
                w("for"),
                w("local"),
                w("virtual"),
                TokenKind::Lt,
                w("aliases"),
                TokenKind::Gt,
                w("deliver"),
                w("to"),
                w("mbox"),
                TokenKind::Newline
            ]
        );
    }

    #[test]
    fn comments_and_continuations_vanish() {
        assert_eq!(
            kinds("listen on lo \\\n  port 25 # the port\n"),
            vec![
                w("listen"),
                w("on"),
                w("lo"),
                w("port"),
                w("25"),
                TokenKind::Newline
            ]
        );
    }

    #[test]
    fn quoted_strings_keep_spaces_and_escapes() {
        assert_eq!(
            kinds(r#"deliver to maildir "~/Mail dir" 'a\'b'"#),
            vec![
                w("deliver"),
                w("to"),
                w("maildir"),
                TokenKind::Quoted("~/Mail dir".into()),
                TokenKind::Quoted("a'b".into())
            ]
        );
    }

    #[test]
    fn urls_and_format_specifiers_stay_whole() {
        assert_eq!(
            kinds(
                "relay via smtp+tls://lbl@127.0.0.1:10027 maildir /v/%{dest.domain}/%{dest.user}"
            ),
            vec![
                w("relay"),
                w("via"),
                w("smtp+tls://lbl@127.0.0.1:10027"),
                w("maildir"),
                w("/v/%{dest.domain}/%{dest.user}")
            ]
        );
    }

    #[test]
    fn bang_is_a_prefix_token() {
        assert_eq!(
            kinds("tagged !TAG"),
            vec![w("tagged"), TokenKind::Bang, w("TAG")]
        );
    }

    #[test]
    fn positions_are_line_and_column() {
        let f: Arc<Path> = Arc::from(Path::new("t.conf"));
        let (toks, _) = lex(&f, b"# c\n  listen on\tlo\n");
        let p: Vec<(u32, u32)> = toks.iter().map(|t| (t.pos.line, t.pos.col)).collect();
        assert_eq!(p, vec![(1, 4), (2, 3), (2, 10), (2, 13), (2, 15)]);
    }

    #[test]
    fn unterminated_string_is_an_error_at_its_quote() {
        let f: Arc<Path> = Arc::from(Path::new("t.conf"));
        let (_, diags) = lex(&f, b"table a \"x\nlisten on lo\n");
        assert_eq!(diags.len(), 1);
        assert_eq!(
            diags[0].to_string(),
            "t.conf:1:9: unterminated quoted string"
        );
    }

    #[test]
    fn invalid_utf8_is_reported_with_its_position() {
        let f: Arc<Path> = Arc::from(Path::new("t.conf"));
        let (_, diags) = lex(&f, b"listen on lo\nab\xff\n");
        assert_eq!(
            diags[0].to_string(),
            "t.conf:2:3: invalid UTF-8 in configuration file"
        );
    }
}
