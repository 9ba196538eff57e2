//! Symbols, their sum, and the `X-Spam-*` header fields that state them.

use std::fmt::Write as _;

/// One named reason for (positive score) or against (negative) calling a message spam.
#[derive(Clone, Debug, PartialEq)]
pub struct Symbol {
    /// UPPER_SNAKE name (see the table in the crate documentation).
    pub name: String,
    pub score: f64,
    /// For the log (e.g. `p=0.998`); may be empty. Never written into a header field.
    pub detail: String,
}

impl Symbol {
    pub fn new(name: impl Into<String>, score: f64, detail: impl Into<String>) -> Self {
        Symbol {
            name: name.into(),
            score,
            detail: detail.into(),
        }
    }
}

/// All symbols found for one message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    pub symbols: Vec<Symbol>,
}

/// Header lines are folded before this many characters (RFC 5322 §2.1.1 recommends 78).
const FOLD_AT: usize = 78;
/// Longest symbol name written into a header field.
const MAX_NAME: usize = 64;

impl Verdict {
    /// The sum of the scores, rounded to one decimal (what the header fields show, and what
    /// the thresholds are compared with). Non-finite scores count as 0.
    pub fn score(&self) -> f64 {
        let sum: f64 = self
            .symbols
            .iter()
            .map(|s| if s.score.is_finite() { s.score } else { 0.0 })
            .sum();
        round1(sum)
    }

    pub fn add(&mut self, s: Symbol) {
        self.symbols.push(s);
    }

    /// True when the message goes to Junk: score ≥ `junk`, or `forced_junk`.
    pub fn is_junk(&self, junk: f64, forced_junk: bool) -> bool {
        forced_junk || self.score() >= junk
    }

    /// `X-Spam-Score`, `X-Spam-Status` (SpamAssassin-like:
    /// `Yes, score=6.5 required=5.0 reject=15.0 tests=A(1.0),B(2.5)`) and, when the message is
    /// junk (score ≥ `junk` or `forced_junk`), `X-Spam: yes`. Each field ends in CRLF; the
    /// test list is folded so that no line exceeds 78 characters (symbol names are cut to 64
    /// characters of `[A-Za-z0-9_]`). Tests are listed by name.
    pub fn header_fields(&self, junk: f64, reject: f64, forced_junk: bool) -> String {
        let score = self.score();
        let is_junk = self.is_junk(junk, forced_junk);
        let mut tests: Vec<String> = self
            .symbols
            .iter()
            .map(|s| {
                let name: String = s
                    .name
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(MAX_NAME)
                    .collect();
                let name = if name.is_empty() {
                    "UNNAMED".to_string()
                } else {
                    name
                };
                let sc = if s.score.is_finite() { s.score } else { 0.0 };
                format!("{name}({})", fmt1(sc))
            })
            .collect();
        tests.sort();

        let mut out = String::new();
        let _ = write!(out, "X-Spam-Score: {}\r\n", fmt1(score));
        let mut line = format!(
            "X-Spam-Status: {}, score={} required={} reject={} tests=",
            if is_junk { "Yes" } else { "No" },
            fmt1(score),
            fmt1(junk),
            fmt1(reject),
        );
        if tests.is_empty() {
            line.push_str("none");
        }
        for (i, t) in tests.iter().enumerate() {
            let piece = if i + 1 < tests.len() {
                format!("{t},")
            } else {
                t.clone()
            };
            // Fold between tests (RFC 5322 §2.2.3): the next line starts with a tab.
            if line.len() + piece.len() > FOLD_AT && !line.ends_with('=') {
                out.push_str(&line);
                out.push_str("\r\n");
                line = String::from("\t");
            }
            line.push_str(&piece);
        }
        out.push_str(&line);
        out.push_str("\r\n");
        if is_junk {
            out.push_str("X-Spam: yes\r\n");
        }
        out
    }
}

fn round1(x: f64) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    // `+ 0.0` turns -0.0 into 0.0, so nothing displays as "-0.0".
    (x * 10.0).round() / 10.0 + 0.0
}

/// One decimal, never `-0.0`, never `NaN`.
fn fmt1(x: f64) -> String {
    format!("{:.1}", round1(x))
}

/// The header fields a verdict writes: the same names coming with a message from outside
/// are not ours, and the session drops them before adding its own (a sender must not be able
/// to say `X-Spam-Status: No` for us).
pub const VERDICT_FIELDS: [&str; 4] = ["X-Spam", "X-Spam-Score", "X-Spam-Status", "X-Ownmail-Junk"];

#[cfg(test)]
mod tests {
    use super::*;

    fn v(symbols: &[(&str, f64)]) -> Verdict {
        Verdict {
            symbols: symbols
                .iter()
                .map(|(n, s)| Symbol::new(*n, *s, ""))
                .collect(),
        }
    }

    #[test]
    fn score_is_rounded_sum() {
        assert_eq!(v(&[("A", 1.04), ("B", 2.5)]).score(), 3.5);
        assert_eq!(v(&[("A", 0.04), ("B", -0.08)]).score(), 0.0);
        assert_eq!(v(&[("A", f64::NAN), ("B", 1.0)]).score(), 1.0);
        assert_eq!(v(&[]).score(), 0.0);
    }

    #[test]
    fn header_fields_spamassassin_like_when_junk() {
        let h = v(&[("B", 2.5), ("A", 4.0)]).header_fields(5.0, 15.0, false);
        assert_eq!(
            h,
            "X-Spam-Score: 6.5\r\n\
             X-Spam-Status: Yes, score=6.5 required=5.0 reject=15.0 tests=A(4.0),B(2.5)\r\n\
             X-Spam: yes\r\n"
        );
    }

    #[test]
    fn header_fields_not_junk_has_no_x_spam() {
        let h = v(&[("DKIM_VALID", -0.1)]).header_fields(5.0, 15.0, false);
        assert_eq!(
            h,
            "X-Spam-Score: -0.1\r\n\
             X-Spam-Status: No, score=-0.1 required=5.0 reject=15.0 tests=DKIM_VALID(-0.1)\r\n"
        );
        let h = v(&[]).header_fields(5.0, 15.0, false);
        assert!(h.contains("tests=none\r\n"), "{h}");
    }

    #[test]
    fn forced_junk_says_yes_whatever_the_score() {
        let h = v(&[("A", 0.5)]).header_fields(5.0, 15.0, true);
        assert!(h.contains("X-Spam-Status: Yes, score=0.5"), "{h}");
        assert!(h.ends_with("X-Spam: yes\r\n"), "{h}");
    }

    #[test]
    fn long_test_list_is_folded_and_names_sanitised() {
        let many: Vec<(String, f64)> = (0..200)
            .map(|i| (format!("SYMBOL_NUMBER_{i}\r\nX-Evil: 1"), 0.1))
            .collect();
        let verdict = Verdict {
            symbols: many.iter().map(|(n, s)| Symbol::new(n, *s, "")).collect(),
        };
        let h = verdict.header_fields(5.0, 15.0, false);
        assert!(!h.contains("X-Evil:"), "{h}");
        let lines: Vec<&str> = h.split("\r\n").collect();
        assert!(lines.len() > 10);
        for l in &lines {
            assert!(l.len() <= FOLD_AT + MAX_NAME + 10, "{l:?}");
            assert!(!l.contains('\n') && !l.contains('\r'));
        }
        // Continuation lines start with white space; field lines with a name.
        for l in lines.iter().filter(|l| !l.is_empty()) {
            assert!(l.starts_with('\t') || l.starts_with("X-Spam"), "{l:?}");
        }
        assert!(h.contains("SYMBOL_NUMBER_199X"), "{h}");
        assert_eq!(verdict.score(), 20.0);
        assert!(h.ends_with("X-Spam: yes\r\n"));
    }
}
