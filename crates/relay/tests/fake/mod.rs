//! Fake peers for the relay tests: a DNS server answering from a table, and an SMTP/LMTP
//! server following a script and recording what it was sent. Both listen on loopback only.

pub mod dns;
pub mod smtp;
