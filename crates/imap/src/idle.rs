//! IDLE (RFC 2177, RFC 9051 §6.3.13): polls the selected folder every `idle_poll` and
//! reports EXISTS/EXPUNGE/FETCH until the client sends DONE.

use std::time::Instant;

use ownmail_imap_proto::{is_idle_done, ReadState, Response};

use crate::session::{Session, Stop, Tagged};

pub(crate) async fn idle(s: &mut Session) -> Result<Tagged, Stop> {
    s.send(Response::Continuation("idling".into()));
    let started = Instant::now();
    loop {
        let (n, st) = s.reader.feed_line(&s.input);
        s.input.drain(..n.min(s.input.len()));
        match st {
            ReadState::Command(line) => {
                return Ok(if is_idle_done(&line) {
                    Tagged::ok("IDLE terminated")
                } else {
                    Tagged::bad("Expected DONE")
                });
            }
            ReadState::Error(_) => return Ok(Tagged::bad("Expected DONE")),
            ReadState::NeedMore | ReadState::NeedContinuation => {}
        }
        if started.elapsed() > s.ctx.idle_timeout {
            s.bye("Autologout; idle for too long");
            let _ = s.flush().await;
            return Err(Stop::Done);
        }
        let poll = s.ctx.idle_poll;
        if !s.read_some(poll).await? {
            s.refresh(true);
        }
    }
}
