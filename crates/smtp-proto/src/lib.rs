//! SMTP and LMTP commands and replies: bytes in, typed values out. No I/O, no async, no
//! allocation that the input can make unbounded.
//!
//! Every receiver here is pure and resumable: it is fed whatever bytes the socket produced,
//! says how many it consumed, and answers "need more" until it has a whole value. Bytes it did
//! not consume belong to the next value (SMTP pipelining, RFC 2920), so the caller keeps them.
//!
//! - [`take_line`] cuts one command line (bounded by the caller's limit) out of a buffer;
//!   [`parse_command`] turns it into a [`Command`] or a [`CommandError`] that already carries
//!   the reply code to send.
//! - [`DataReceiver`] reads a `DATA` body up to `CRLF.CRLF` with dot-unstuffing, and refuses
//!   bare CR and bare LF so that no smuggled end-of-data is ever honoured (RFC 5321 §4.1.1.4,
//!   §2.3.8; SPEC §5.1).
//! - [`BdatReceiver`] reads `BDAT` chunks (RFC 3030).
//! - [`Reply`] formats server replies; [`ReplyParser`] reads them on the client side.
//!
//! Invariants: no function panics on any input; every buffer grows by at most a limit the
//! caller chose (line length, message size) or a fixed bound stated beside it.

mod bdat;
mod command;
mod data;
mod line;
mod params;
mod path;
mod reply;
mod xtext;

pub use bdat::{BdatReceiver, BdatState};
pub use command::{parse_command, Command, CommandError};
pub use data::{dot_stuff, DataReceiver, DataState};
pub use line::{discard_line, take_line, Line};
pub use params::{MailParams, RcptParams};
pub use reply::{ehlo_reply, Reply, ReplyError, ReplyParser, MAX_REPLY_BYTES, MAX_REPLY_LINES};
pub use xtext::{xtext_decode, xtext_encode};
