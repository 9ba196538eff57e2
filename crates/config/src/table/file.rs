//! The text table format (`file:PATH`, and the source of `makemap`):
//!
//! ```text
//! # a comment; '#' also starts one after whitespace
//! KEY VALUE            value = the rest of the line, trimmed, inner whitespace kept
//! KEY: VALUE           aliases style: a first token ending in ':' loses it
//! KEY                  a lone key (a list entry); "KEY:" too
//! ```
//!
//! Only a first token *ending* in `:` is aliases style, so list entries such as `::1` or
//! `fe80::/10` keep their colons. Blank lines are skipped; CRLF line ends are accepted.

use std::path::Path;
use std::sync::Arc;

use super::Entry;
use crate::diag::{Diagnostics, Pos};

/// What a line may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `KEY [VALUE]`.
    Map,
    /// Keys only: a value is an error (`makemap -t set`).
    Set,
}

/// Parses a text table. Never fails as a whole: a bad line is reported and skipped.
pub(crate) fn parse(
    bytes: &[u8],
    file: &Arc<Path>,
    mode: Mode,
    diags: &mut Diagnostics,
) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = u32::try_from(n + 1).unwrap_or(u32::MAX);
        let Some(line) = utf8_line(raw, file, line_no, diags) else {
            continue;
        };
        if let Some(entry) = parse_line(line, file, line_no, mode, diags) {
            entries.push(entry);
        }
    }
    entries
}

/// The line as text; a comment line is accepted in any encoding (it is skipped anyway), any
/// other line with bad UTF-8 is reported at the first bad character and skipped.
pub(crate) fn utf8_line<'a>(
    raw: &'a [u8],
    file: &Arc<Path>,
    line_no: u32,
    diags: &mut Diagnostics,
) -> Option<&'a str> {
    match std::str::from_utf8(raw) {
        Ok(line) => Some(line),
        Err(e) => {
            let first = raw.iter().find(|b| !b.is_ascii_whitespace());
            if first != Some(&b'#') {
                let valid = raw.get(..e.valid_up_to()).unwrap_or_default();
                let col = String::from_utf8_lossy(valid).chars().count() + 1;
                let col = u32::try_from(col).unwrap_or(u32::MAX);
                diags.error(
                    &Pos::new(file.clone(), line_no, col),
                    "invalid UTF-8; the line is ignored",
                );
            }
            None
        }
    }
}

/// The line without its comment: `#` at the start or after whitespace begins one.
pub(crate) fn strip_comment(line: &str) -> &str {
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return line.get(..i).unwrap_or_default();
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// One line → one entry, or `None` for blank/comment lines and reported errors.
fn parse_line(
    line: &str,
    file: &Arc<Path>,
    line_no: u32,
    mode: Mode,
    diags: &mut Diagnostics,
) -> Option<Entry> {
    let content = strip_comment(line);
    let key_start = content.find(|c: char| !c.is_whitespace())?;
    let rest = content.get(key_start..).unwrap_or_default().trim_end();
    let key_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let token = rest.get(..key_end).unwrap_or_default();
    let after = rest.get(key_end..).unwrap_or_default();

    let col = |byte: usize| {
        let n = line.get(..byte).map_or(0, |s| s.chars().count()) + 1;
        u32::try_from(n).unwrap_or(u32::MAX)
    };
    let key_pos = Pos::new(file.clone(), line_no, col(key_start));

    let key = token.strip_suffix(':').unwrap_or(token);
    if key.is_empty() {
        diags.error(&key_pos, "empty key before ':'");
        return None;
    }

    let value_rel = after.find(|c: char| !c.is_whitespace());
    let (value, value_pos) = match value_rel {
        Some(rel) => {
            let start = key_start + key_end + rel;
            let value = after.get(rel..).unwrap_or_default().to_string();
            (
                Some(value),
                Some(Pos::new(file.clone(), line_no, col(start))),
            )
        }
        None => (None, None),
    };

    if mode == Mode::Set {
        if let Some(pos) = &value_pos {
            diags.error(
                pos,
                format!("unexpected value after \"{key}\": a set holds keys only"),
            );
        }
    }
    Some(Entry {
        key: key.to_string(),
        value,
        key_pos,
        value_pos,
        exact_cols: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str, mode: Mode) -> (Vec<Entry>, Diagnostics) {
        let mut diags = Diagnostics::new();
        let file: Arc<Path> = Arc::from(Path::new("/t"));
        let entries = parse(text.as_bytes(), &file, mode, &mut diags);
        (entries, diags)
    }

    fn kv(e: &Entry) -> (&str, Option<&str>, u32, u32, Option<u32>) {
        (
            e.key.as_str(),
            e.value.as_deref(),
            e.key_pos.line,
            e.key_pos.col,
            e.value_pos.as_ref().map(|p| p.col),
        )
    }

    #[test]
    fn key_value_forms_and_columns() {
        let (e, d) = parse_str(
            "# c\n\nroot:   pi\n  m@example.org\tm # note\nlone\nlone2:\n::1\nk v  with   spaces \r\n",
            Mode::Map,
        );
        assert_eq!(d.iter().count(), 0);
        let got: Vec<_> = e.iter().map(kv).collect();
        assert_eq!(
            got,
            vec![
                ("root", Some("pi"), 3, 1, Some(9)),
                ("m@example.org", Some("m"), 4, 3, Some(17)),
                ("lone", None, 5, 1, None),
                ("lone2", None, 6, 1, None),
                ("::1", None, 7, 1, None),
                ("k", Some("v  with   spaces"), 8, 1, Some(3)),
            ]
        );
    }

    #[test]
    fn hash_inside_a_token_is_not_a_comment() {
        let (e, _) = parse_str("a b#c #real comment\n", Mode::Map);
        assert_eq!(e[0].value.as_deref(), Some("b#c"));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let (e, _) = parse_str("é  ü\n", Mode::Map);
        assert_eq!(kv(&e[0]), ("é", Some("ü"), 1, 1, Some(4)));
    }

    #[test]
    fn set_mode_rejects_values() {
        let (e, d) = parse_str("a\nb c\n", Mode::Set);
        assert_eq!(e.len(), 2);
        let msgs: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            vec!["/t:2:3: unexpected value after \"b\": a set holds keys only"]
        );
    }

    #[test]
    fn empty_key_is_an_error() {
        let (e, d) = parse_str("  : x\n", Mode::Map);
        assert!(e.is_empty());
        assert_eq!(
            d.iter().next().map(ToString::to_string).as_deref(),
            Some("/t:1:3: empty key before ':'")
        );
    }

    #[test]
    fn bad_utf8_is_reported_at_its_column_and_comments_may_be_latin1() {
        let mut diags = Diagnostics::new();
        let file: Arc<Path> = Arc::from(Path::new("/t"));
        let e = parse(
            b"# caf\xe9\nab\xffc d\nok v\n",
            &file,
            Mode::Map,
            &mut diags,
        );
        assert_eq!(e.len(), 1);
        let msgs: Vec<String> = diags.iter().map(ToString::to_string).collect();
        assert_eq!(msgs, vec!["/t:2:3: invalid UTF-8; the line is ignored"]);
    }
}
