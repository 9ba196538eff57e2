//! IMAP4rev1 (RFC 3501) / IMAP4rev2 (RFC 9051) commands and responses: bytes in, typed values
//! out; no I/O, no async.
//!
//! - [`CommandReader`] cuts whole commands out of the byte stream, literals included. It is
//!   resumable: feed it whatever the socket produced; it says how much it consumed and whether
//!   it needs more, needs the server to send a continuation (`+ Ready`, for a synchronizing
//!   literal `{N}`; LITERAL+ `{N+}` needs none, RFC 7888), or has a whole command.
//! - [`parse_command`] turns a whole command into a typed [`Command`] or a [`ParseError`] that
//!   carries the tag to answer `BAD` with.
//! - [`Response`] encodes server responses; [`write_astring`] and friends choose atom, quoted
//!   string or literal; [`mutf7_encode`]/[`mutf7_decode`] convert mailbox names for IMAP4rev1
//!   clients (RFC 3501 §5.1.3).
//!
//! Invariants: no function panics on any input; the reader's buffer never holds more than the
//! caller's line limit plus its literal limit; parser recursion is bounded
//! ([`MAX_SEARCH_DEPTH`]) and so are sequence sets ([`MAX_SEQUENCE_RANGES`]).

mod bodystructure;
mod command;
mod cursor;
mod fetch;
mod mutf7;
mod reader;
mod response;
mod search;
mod types;

pub use bodystructure::{
    BodyExtension, BodyFields, BodyStructure, Params, SingleKind, MAX_BODY_DEPTH,
};
pub use command::{
    is_idle_done, parse_command, Command, CommandBody, ListReturn, ListSelect, ParseError,
    Password, SelectParam, StoreMode, DEFAULT_MAX_LINE, DEFAULT_MAX_LITERAL,
};
pub use fetch::{FetchAttr, Partial, Section, SectionText};
pub use mutf7::{mutf7_decode, mutf7_encode, Mutf7Error};
pub use reader::{CommandReader, ReadError, ReadErrorKind, ReadState};
pub use response::{
    write_astring, write_nstring, write_string, Address, Code, Data, EncodeOptions, Envelope,
    FetchValue, Response, Status,
};
pub use search::{SearchKey, SearchReturn, MAX_SEARCH_DEPTH};
pub use types::{
    Date, DateTime, Flag, Mailbox, MailboxAttr, SeqNum, SeqRange, SequenceSet, StatusItem,
    MAX_SEQUENCE_RANGES,
};
