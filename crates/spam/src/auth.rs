//! Symbols from authentication results (SPF, DKIM, DMARC, ARC), read from ownmail's summary
//! `spf=pass dkim=pass dmarc=pass arc=none` (`ownmail_policy::authres::Report::summary`).

use crate::verdict::Symbol;

/// (method, result) → (symbol, score). Results not listed (temperror, unknown words) say
/// nothing about the message and give no symbol.
const TABLE: &[(&str, &str, &str, f64)] = &[
    ("spf", "pass", "SPF_PASS", -0.1),
    ("spf", "fail", "SPF_FAIL", 2.0),
    ("spf", "softfail", "SPF_SOFTFAIL", 1.0),
    ("spf", "neutral", "SPF_NEUTRAL", 0.3),
    ("spf", "none", "SPF_NONE", 0.5),
    ("spf", "permerror", "SPF_PERMERROR", 0.5),
    ("dkim", "pass", "DKIM_VALID", -0.1),
    ("dkim", "fail", "DKIM_INVALID", 1.5),
    ("dkim", "none", "DKIM_NONE", 0.2),
    ("dkim", "permerror", "DKIM_PERMERROR", 0.5),
    ("dmarc", "pass", "DMARC_PASS", -0.5),
    ("dmarc", "fail", "DMARC_FAIL", 3.5),
    ("dmarc", "none", "DMARC_NONE", 0.2),
    ("arc", "pass", "ARC_PASS", -0.1),
    ("arc", "fail", "ARC_FAIL", 0.5),
];

/// Symbols for the `method=result` pairs in `summary` (separated by white space or `;`,
/// case-insensitive). The first result of each method counts; anything else is ignored.
pub fn auth_symbols(summary: &str) -> Vec<Symbol> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for pair in summary.split(|c: char| c.is_whitespace() || c == ';') {
        let Some((method, result)) = pair.split_once('=') else {
            continue;
        };
        let method = method.to_ascii_lowercase();
        if seen.contains(&method) {
            continue;
        }
        let result = result.to_ascii_lowercase();
        if let Some((_, _, name, score)) = TABLE
            .iter()
            .find(|(m, r, _, _)| *m == method && *r == result)
        {
            out.push(Symbol::new(*name, *score, ""));
        }
        if TABLE.iter().any(|(m, _, _, _)| *m == method) {
            seen.push(method);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(summary: &str) -> Vec<(String, f64)> {
        auth_symbols(summary)
            .into_iter()
            .map(|s| (s.name, s.score))
            .collect()
    }

    #[test]
    fn all_pass_is_slightly_negative() {
        let s = names("spf=pass dkim=pass dmarc=pass arc=none");
        assert_eq!(
            s,
            vec![
                ("SPF_PASS".to_string(), -0.1),
                ("DKIM_VALID".to_string(), -0.1),
                ("DMARC_PASS".to_string(), -0.5),
            ]
        );
    }

    #[test]
    fn failures_score() {
        let s = names("spf=fail dkim=fail dmarc=fail arc=fail");
        let total: f64 = s.iter().map(|(_, x)| x).sum();
        assert_eq!(s.len(), 4);
        assert!((total - 7.5).abs() < 1e-9, "{s:?}");
        assert_eq!(names("SPF=SoftFail;DMARC=none")[0].0, "SPF_SOFTFAIL");
    }

    #[test]
    fn temperror_garbage_and_duplicates_give_nothing_extra() {
        assert!(names("spf=temperror dkim=temperror").is_empty());
        assert!(names("").is_empty());
        assert!(names("=== spf= =pass x=y dkim").is_empty());
        assert_eq!(names("spf=pass spf=fail"), vec![("SPF_PASS".into(), -0.1)]);
    }
}
