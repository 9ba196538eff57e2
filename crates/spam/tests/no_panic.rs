//! Hostile input never panics: arbitrary bytes as messages, as store files, and in learning.

use std::time::{Duration, UNIX_EPOCH};

use ownmail_spam::{
    auth_symbols, content_symbols, learn, Class, TokenStore, Verdict, MIN_TRAINED, STORE_FILE,
};
use proptest::prelude::*;

/// A store that answers, so `spam_probability` really runs on the input.
fn trained() -> TokenStore {
    let mut s = TokenStore::default();
    for i in 0..MIN_TRAINED {
        let spam = format!("Message-ID: <s{i}@x>\r\nSubject: prize\r\n\r\nlottery winner\r\n");
        let ham = format!("Message-ID: <h{i}@x>\r\nSubject: notes\r\n\r\nmeeting agenda\r\n");
        s.learn_message(spam.as_bytes(), Class::Spam);
        s.learn_message(ham.as_bytes(), Class::Ham);
    }
    s
}

/// Bytes that look somewhat like mail, so the parser goes deep.
fn mailish() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::collection::vec(
        prop_oneof![
            Just(b"From: ".to_vec()),
            Just(b"Subject: =?utf-8?b?w6k=?= ".to_vec()),
            Just(b"Date: Mon, 99 Foo 2024 25:61:61 +9999\r\n".to_vec()),
            Just(b"Content-Type: multipart/mixed; boundary=b\r\n".to_vec()),
            Just(b"Content-Type: text/html\r\n".to_vec()),
            Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
            Just(b"\r\n--b\r\n".to_vec()),
            Just(b"\r\n\r\n".to_vec()),
            Just(b"<script><a href=\"http://x.y:99/\">&amp;".to_vec()),
            Just(b"\"a@b.c\" <d@e.f>, ".to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
        ],
        0..40,
    );
    pieces.prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn content_and_classifier_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let now = UNIX_EPOCH + Duration::from_secs(1_705_320_000);
        let _ = content_symbols(&bytes, now);
        let p = trained().spam_probability(&bytes);
        prop_assert!(p.is_some_and(|p| (0.0..=1.0).contains(&p)));
    }

    #[test]
    fn mail_like_input_never_panics(bytes in mailish()) {
        let _ = content_symbols(&bytes, UNIX_EPOCH);
        let _ = content_symbols(&bytes, UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 8));
        let mut s = trained();
        let p = s.spam_probability(&bytes);
        prop_assert!(p.is_some_and(|p| (0.0..=1.0).contains(&p)));
        s.learn_message(&bytes, Class::Spam);
        s.learn_message(&bytes, Class::Ham);
        // Whatever was learnt, the store writes out a file that reads back the same.
        let back = TokenStore::parse(&s.to_bytes());
        prop_assert_eq!(back.counts(), s.counts());
        prop_assert_eq!(back.to_bytes(), s.to_bytes());
    }

    #[test]
    fn any_store_file_loads_and_learns(
        file in prop::collection::vec(any::<u8>(), 0..2000),
        message in prop::collection::vec(any::<u8>(), 0..500),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(STORE_FILE);
        std::fs::write(&path, &file).expect("write");
        let s = TokenStore::load(&path).expect("load");
        let _ = s.spam_probability(&message);
        learn(&path, &message, Class::Spam).expect("learn");
        prop_assert_eq!(TokenStore::load(&path).expect("reload").learned_as(&message), Some(Class::Spam));
    }

    #[test]
    fn auth_and_headers_never_panic(summary in ".{0,200}", scores in prop::collection::vec(any::<f64>(), 0..50)) {
        let _ = auth_symbols(&summary);
        let mut v = Verdict::default();
        for (i, sc) in scores.iter().enumerate() {
            v.add(ownmail_spam::Symbol::new(format!("{summary}{i}"), *sc, ""));
        }
        let h = v.header_fields(5.0, 15.0, false);
        prop_assert!(h.ends_with("\r\n"));
        for line in h.split("\r\n") {
            prop_assert!(line.len() < 998);
            prop_assert!(!line.contains('\n') && !line.contains('\r'));
        }
    }
}
