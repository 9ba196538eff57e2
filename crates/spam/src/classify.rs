//! The statistics: Robinson's f(w) per token, Fisher's chi-square combining (as SpamBayes
//! does it), and the `BAYES_*` symbol a probability earns.

use crate::verdict::Symbol;

/// The classifier answers only once the store holds at least this many spam and this many
/// ham messages; before that its guesses would be noise.
pub const MIN_TRAINED: u32 = 10;

/// Robinson's strength of the prior (s) and the prior itself (x).
const S: f64 = 0.45;
const X: f64 = 0.5;
/// Tokens closer than this to 0.5 are not evidence.
const MIN_STRENGTH: f64 = 0.1;
/// At most this many tokens (the most extreme) are combined.
const MAX_CLUES: usize = 150;

/// Robinson's f(w) for a token seen in `spam` of `nspam` spam messages and `ham` of `nham`
/// ham messages (counts beyond the totals, possible in a damaged store, are clamped).
pub(crate) fn token_probability(spam: u32, ham: u32, nspam: u32, nham: u32) -> f64 {
    let sr = if nspam == 0 {
        0.0
    } else {
        (f64::from(spam) / f64::from(nspam)).min(1.0)
    };
    let hr = if nham == 0 {
        0.0
    } else {
        (f64::from(ham) / f64::from(nham)).min(1.0)
    };
    let p = if sr + hr > 0.0 { sr / (sr + hr) } else { X };
    let n = f64::from(spam) + f64::from(ham);
    (S * X + n * p) / (S + n)
}

/// Combines token probabilities into one spam probability in [0, 1] (0.5: no evidence).
pub(crate) fn combine(mut probs: Vec<f64>) -> f64 {
    probs.retain(|p| p.is_finite() && (p - 0.5).abs() >= MIN_STRENGTH);
    probs.sort_by(|a, b| (b - 0.5).abs().total_cmp(&(a - 0.5).abs()));
    probs.truncate(MAX_CLUES);
    if probs.is_empty() {
        return 0.5;
    }
    // Clamp so ln never sees 0 (f(w) never reaches 0 or 1 with s > 0, but be safe).
    let clamp = |p: f64| p.clamp(1e-6, 1.0 - 1e-6);
    let ln_h: f64 = probs.iter().map(|&p| clamp(p).ln()).sum();
    let ln_s: f64 = probs.iter().map(|&p| (1.0 - clamp(p)).ln()).sum();
    let n = probs.len();
    let h = 1.0 - chi2q(-2.0 * ln_h, 2 * n);
    let s = 1.0 - chi2q(-2.0 * ln_s, 2 * n);
    ((s - h + 1.0) / 2.0).clamp(0.0, 1.0)
}

/// P(chi² ≥ x2) for `v` (even) degrees of freedom.
fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

/// The classifier's symbol for spam probability `p`: `BAYES_SPAM` +6.0 at ≥ 0.99, +3.5 at
/// ≥ 0.90 (a user's own classifier is the strongest signal there is: when it is sure, the
/// message reaches the usual junk score of 5 even if its sender passes SPF, DKIM and DMARC,
/// as spammers do for their own domains); `BAYES_HAM` −3.0 at ≤ 0.01, −1.5 at ≤ 0.10; nothing in between (or for NaN).
pub fn bayes_symbol(p: f64) -> Option<Symbol> {
    let detail = format!("p={p:.3}");
    if p >= 0.99 {
        Some(Symbol::new("BAYES_SPAM", 6.0, detail))
    } else if p >= 0.9 {
        Some(Symbol::new("BAYES_SPAM", 3.5, detail))
    } else if p <= 0.01 {
        Some(Symbol::new("BAYES_HAM", -3.0, detail))
    } else if p <= 0.1 {
        Some(Symbol::new("BAYES_HAM", -1.5, detail))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_probability_follows_counts() {
        assert!(token_probability(10, 0, 10, 10) > 0.9);
        assert!(token_probability(0, 10, 10, 10) < 0.1);
        assert!((token_probability(0, 0, 10, 10) - 0.5).abs() < 1e-9);
        assert!((token_probability(5, 5, 10, 10) - 0.5).abs() < 1e-9);
        // One sighting is weaker evidence than ten.
        assert!(token_probability(1, 0, 10, 10) < token_probability(10, 0, 10, 10));
        // Damaged counts stay in range.
        let p = token_probability(u32::MAX, 0, 1, 1);
        assert!((0.0..=1.0).contains(&p));
    }

    #[test]
    fn combine_is_extreme_on_clear_evidence_and_neutral_without() {
        assert!(combine(vec![0.99; 20]) > 0.99);
        assert!(combine(vec![0.01; 20]) < 0.01);
        assert_eq!(combine(vec![]), 0.5);
        assert_eq!(combine(vec![0.5, 0.55, f64::NAN]), 0.5);
        let mixed = combine([vec![0.99; 10], vec![0.01; 10]].concat());
        assert!((mixed - 0.5).abs() < 0.1, "{mixed}");
    }

    #[test]
    fn bayes_symbol_bands() {
        assert_eq!(bayes_symbol(0.995).map(|s| s.score), Some(6.0));
        // Sure spam from a sender passing SPF, DKIM and DMARC still reaches junk-score 5.
        let mut v = crate::Verdict::default();
        for s in crate::auth_symbols("spf=pass dkim=pass dmarc=pass arc=none")
            .into_iter()
            .chain(bayes_symbol(0.999))
        {
            v.add(s);
        }
        assert!(v.score() >= 5.0, "{}", v.score());
        assert_eq!(bayes_symbol(0.95).map(|s| s.score), Some(3.5));
        assert_eq!(bayes_symbol(0.5), None);
        assert_eq!(bayes_symbol(f64::NAN), None);
        assert_eq!(bayes_symbol(0.05).map(|s| s.score), Some(-1.5));
        let ham = bayes_symbol(0.001);
        assert_eq!(ham.as_ref().map(|s| s.name.as_str()), Some("BAYES_HAM"));
        assert_eq!(ham.map(|s| s.score), Some(-3.0));
    }
}
