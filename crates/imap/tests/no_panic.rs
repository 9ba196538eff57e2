//! Arbitrary input to a logged-in, selected session never panics it.

mod common;

use common::Client;
use proptest::prelude::*;

fn run(input: Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut c = Client::start().await;
        c.login().await;
        c.deliver(None, common::MSG1);
        c.select_inbox().await;
        let mut text = String::from_utf8_lossy(&input).into_owned();
        // Never leave a literal or an IDLE open forever: end with a line the session must
        // answer however it read the junk.
        text.push_str("\r\nDONE\r\nzz NOOP\r\n");
        c.send(&text).await;
        let _ = c.shutdown.send(true);
        let task = std::mem::replace(&mut c.task, tokio::spawn(async {}));
        drop(c);
        task.await.expect("session must not panic");
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        run(input);
    }

    #[test]
    fn random_commands(
        words in proptest::collection::vec(
            prop_oneof![
                Just("a FETCH"), Just("b UID FETCH"), Just("c STORE"), Just("d SEARCH"),
                Just("e COPY"), Just("f MOVE"), Just("g LIST"), Just("h APPEND"), Just("i IDLE"),
                Just("1:*"), Just("*"), Just("0"), Just("4294967295"), Just("(BODY[]<0.1>)"),
                Just("BODY.PEEK[HEADER.FIELDS (a)]"), Just("+FLAGS"), Just("(\\Seen)"),
                Just("INBOX"), Just("\"../x\""), Just("{3}"), Just("{2+}"), Just("\r\n"),
                Just("NOT"), Just("OR"), Just("FROM"), Just("x"), Just("%"), Just("("), Just(")"),
            ],
            0..40,
        )
    ) {
        run(words.join(" ").into_bytes());
    }
}
