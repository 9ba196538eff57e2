//! The classifier on a generated corpus: trained on 40 spam + 40 ham through the on-disk store,
//! it must classify 20 + 20 held-out messages with at least 90 % accuracy.

use ownmail_spam::{bayes_symbol, learn, Class, StoreCache, TokenStore, STORE_FILE};

const SPAM_WORDS: &[&str] = &[
    "viagra",
    "lottery",
    "winner",
    "crypto",
    "bitcoin",
    "urgent",
    "prize",
    "claim",
    "casino",
    "pharmacy",
    "discount",
    "offer",
    "free",
    "guaranteed",
    "million",
    "investment",
    "wire",
    "beneficiary",
    "unclaimed",
    "exclusive",
    "limited",
    "bonus",
    "jackpot",
    "loan",
    "credit",
    "refinance",
    "pills",
    "cheap",
    "replica",
    "watches",
    "congratulations",
    "selected",
];
const HAM_WORDS: &[&str] = &[
    "meeting",
    "agenda",
    "invoice",
    "attached",
    "rust",
    "compiler",
    "family",
    "dinner",
    "project",
    "review",
    "deadline",
    "report",
    "quarterly",
    "branch",
    "merge",
    "request",
    "weekend",
    "birthday",
    "school",
    "garden",
    "minutes",
    "schedule",
    "draft",
    "proposal",
    "lunch",
    "tomorrow",
    "thanks",
    "regards",
    "budget",
    "release",
    "testing",
    "holiday",
];
const FILLER: &[&str] = &[
    "the",
    "and",
    "you",
    "your",
    "this",
    "that",
    "with",
    "for",
    "have",
    "from",
    "please",
    "about",
    "will",
    "would",
    "could",
    "today",
    "time",
    "here",
    "there",
    "more",
    "information",
    "just",
    "know",
    "let",
    "all",
    "our",
    "best",
    "new",
    "now",
    "see",
    "need",
    "make",
    "good",
    "email",
    "message",
    "below",
    "again",
    "soon",
    "back",
    "people",
    "world",
    "money",
];
const SPAM_DOMAINS: &[&str] = &[
    "promo-deals.example",
    "win-big.example",
    "pharma-online.example",
    "cryptoboost.example",
    "mailer.bulk.example",
];
const HAM_DOMAINS: &[&str] = &[
    "example.org",
    "work.example.com",
    "family.example.net",
    "lists.rust.example",
];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// One message of `class`: its own vocabulary for about a sixth of the words, the other
/// class's for a few (spam talks about "meetings" too), the rest shared filler.
fn message(rng: &mut Rng, class: Class, n: usize) -> Vec<u8> {
    let (own, other, domains) = match class {
        Class::Spam => (SPAM_WORDS, HAM_WORDS, SPAM_DOMAINS),
        Class::Ham => (HAM_WORDS, SPAM_WORDS, HAM_DOMAINS),
    };
    let subject: Vec<&str> = (0..3)
        .map(|_| {
            if rng.below(2) == 0 {
                rng.pick(own)
            } else {
                rng.pick(FILLER)
            }
        })
        .collect();
    let len = 30 + rng.below(60);
    let mut body = Vec::new();
    for i in 0..len {
        let r = rng.below(100);
        let w = if r < 18 {
            rng.pick(own)
        } else if r < 26 {
            rng.pick(other)
        } else {
            rng.pick(FILLER)
        };
        body.push(w.to_string());
        if i % 12 == 11 {
            body.push(".\r\n".into());
        }
    }
    let link = match class {
        Class::Spam => format!("\r\nhttp://{}/click?id={n}\r\n", rng.pick(SPAM_DOMAINS)),
        Class::Ham => String::new(),
    };
    format!(
        "From: Someone <user{n}@{}>\r\nTo: alice@example.org\r\n\
         Date: Mon, 15 Jan 2024 11:00:00 +0000\r\nMessage-ID: <{n}.{}@gen.example>\r\n\
         Subject: {}\r\n\r\n{}{link}\r\n",
        rng.pick(domains),
        rng.next(),
        subject.join(" "),
        body.join(" "),
    )
    .into_bytes()
}

#[test]
fn generated_corpus_is_classified_at_least_90_percent_right() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(STORE_FILE);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut n = 0;
    let mut next = |rng: &mut Rng, class| {
        n += 1;
        message(rng, class, n)
    };
    for _ in 0..40 {
        let s = next(&mut rng, Class::Spam);
        let h = next(&mut rng, Class::Ham);
        assert!(learn(&path, &s, Class::Spam).expect("learn spam"));
        assert!(learn(&path, &h, Class::Ham).expect("learn ham"));
    }
    let store = TokenStore::load(&path).expect("load");
    assert_eq!(store.counts(), (40, 40));

    let cache = StoreCache::new();
    let mut right = 0;
    let mut total = 0;
    let mut symbols_right = 0;
    for i in 0..40 {
        let class = if i % 2 == 0 { Class::Spam } else { Class::Ham };
        let m = next(&mut rng, class);
        let p = cache.probability(&path, &m).expect("trained enough");
        assert_eq!(Some(p), store.spam_probability(&m));
        total += 1;
        if (p >= 0.5) == (class == Class::Spam) {
            right += 1;
        }
        let sym = bayes_symbol(p).map(|s| s.name);
        let want = match class {
            Class::Spam => "BAYES_SPAM",
            Class::Ham => "BAYES_HAM",
        };
        if sym.as_deref() == Some(want) {
            symbols_right += 1;
        }
    }
    let accuracy = f64::from(right) / f64::from(total);
    println!("held-out accuracy {right}/{total} = {accuracy:.3}; decisive symbol {symbols_right}/{total}");
    assert!(accuracy >= 0.9, "accuracy {accuracy}");
    assert!(symbols_right >= 28, "symbols {symbols_right}/{total}");
}
