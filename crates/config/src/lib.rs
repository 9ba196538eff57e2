//! Configuration: the `smtpd.conf` language of both OpenSMTPD grammars, read into one rule
//! model, with the tables it names; `check` validates it all and reports `FILE:LINE:COL`.

pub mod diag;
pub mod table;
