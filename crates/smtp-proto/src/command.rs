//! SMTP and LMTP commands (RFC 5321 §4.1, RFC 2033 LHLO, RFC 3030 BDAT, RFC 3207 STARTTLS,
//! RFC 4954 AUTH). Paths are parsed in [`crate::path`], MAIL and RCPT parameters in
//! [`crate::params`].
//!
//! [`parse_command`] is a pure function of one line. It checks syntax only; whether a command
//! is allowed now (sequence, extensions advertised, TLS, SMTPUTF8 declared for a non-ASCII
//! address) is the session's decision. [`Command::to_bytes`] writes a command for the client
//! side, and parsing it gives the same command back.

use std::fmt;

use ownmail_types::{Address, ReversePath};

use crate::params::{
    parse_decimal, parse_mail_params, parse_rcpt_params, write_mail_params, write_rcpt_params,
    MailParams, RcptParams,
};
use crate::path::{is_address_literal, is_domain, parse_mailbox, split_path, PathKind};

/// One command line, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `HELO domain`; the argument as given (a domain or an address literal `[…]`).
    Helo(String),
    /// `EHLO domain`.
    Ehlo(String),
    /// `LHLO domain` (LMTP, RFC 2033 §4.1).
    Lhlo(String),
    /// `MAIL FROM:<path> [params]`. The address may be non-ASCII (UTF-8); the session must
    /// refuse that unless `params.smtputf8` (RFC 6531 §3.4).
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    /// `RCPT TO:<path> [params]`. An empty domain means the special, domainless
    /// `<postmaster>` of RFC 5321 §4.5.1; its local part is then always `postmaster`,
    /// lowercased. Any other address has a non-empty domain.
    Rcpt {
        to: Address,
        params: RcptParams,
    },
    Data,
    /// `BDAT size [LAST]` (RFC 3030 §2).
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    /// `NOOP [string]`; the argument is ignored (RFC 5321 §4.1.1.9).
    Noop,
    Quit,
    /// `VRFY string`: the rest of the line.
    Vrfy(String),
    /// `EXPN string`: the rest of the line.
    Expn(String),
    /// `HELP [string]`; the argument is ignored.
    Help,
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4). The mechanism is uppercased; the
    /// initial response is as sent (base64, or `=` for an empty one).
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

/// A command that cannot be accepted, with the reply to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandError {
    pub code: u16,
    pub enhanced: &'static str,
    pub message: String,
}

impl CommandError {
    pub(crate) fn new(code: u16, enhanced: &'static str, message: impl Into<String>) -> Self {
        CommandError {
            code,
            enhanced,
            message: message.into(),
        }
    }

    pub(crate) fn syntax(message: impl Into<String>) -> Self {
        Self::new(501, "5.5.4", message)
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.message)
    }
}

impl std::error::Error for CommandError {}

/// Parses one command line, given without its line ending (a trailing CRLF or LF is
/// tolerated). Verbs and parameter keywords are case-insensitive.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = trim_end_spaces(line);
    if line.is_empty() {
        return Err(CommandError::new(
            500,
            "5.5.2",
            "Syntax error: empty command",
        ));
    }
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(sp) => line.split_at(sp),
        None => (line, &b""[..]),
    };
    let verb =
        Verb::parse(verb).ok_or_else(|| CommandError::new(500, "5.5.1", "Unknown command"))?;
    let rest = std::str::from_utf8(rest)
        .map_err(|_| CommandError::new(501, "5.5.2", "Invalid command encoding (not UTF-8)"))?;
    if rest.chars().any(char::is_control) {
        return Err(CommandError::new(
            501,
            "5.5.2",
            "Invalid character in command",
        ));
    }
    let arg = rest.trim_start_matches(' ');
    match verb {
        Verb::Helo => hello_arg("HELO", arg).map(Command::Helo),
        Verb::Ehlo => hello_arg("EHLO", arg).map(Command::Ehlo),
        Verb::Lhlo => hello_arg("LHLO", arg).map(Command::Lhlo),
        Verb::Mail => parse_mail(arg),
        Verb::Rcpt => parse_rcpt(arg),
        Verb::Data => no_arg("DATA", arg, Command::Data),
        Verb::Bdat => parse_bdat(arg),
        Verb::Rset => no_arg("RSET", arg, Command::Rset),
        Verb::Noop => Ok(Command::Noop),
        Verb::Quit => no_arg("QUIT", arg, Command::Quit),
        Verb::Vrfy => rest_arg("VRFY", arg).map(Command::Vrfy),
        Verb::Expn => rest_arg("EXPN", arg).map(Command::Expn),
        Verb::Help => Ok(Command::Help),
        Verb::StartTls => no_arg("STARTTLS", arg, Command::StartTls),
        Verb::Auth => parse_auth(arg),
    }
}

#[derive(Clone, Copy)]
enum Verb {
    Helo,
    Ehlo,
    Lhlo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    Auth,
}

impl Verb {
    fn parse(word: &[u8]) -> Option<Verb> {
        const VERBS: &[(&[u8], Verb)] = &[
            (b"HELO", Verb::Helo),
            (b"EHLO", Verb::Ehlo),
            (b"LHLO", Verb::Lhlo),
            (b"MAIL", Verb::Mail),
            (b"RCPT", Verb::Rcpt),
            (b"DATA", Verb::Data),
            (b"BDAT", Verb::Bdat),
            (b"RSET", Verb::Rset),
            (b"NOOP", Verb::Noop),
            (b"QUIT", Verb::Quit),
            (b"VRFY", Verb::Vrfy),
            (b"EXPN", Verb::Expn),
            (b"HELP", Verb::Help),
            (b"STARTTLS", Verb::StartTls),
            (b"AUTH", Verb::Auth),
        ];
        VERBS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(word))
            .map(|&(_, v)| v)
    }
}

fn trim_end_spaces(mut s: &[u8]) -> &[u8] {
    while let Some(rest) = s.strip_suffix(b" ") {
        s = rest;
    }
    s
}

fn no_arg(verb: &str, arg: &str, cmd: Command) -> Result<Command, CommandError> {
    if arg.is_empty() {
        Ok(cmd)
    } else {
        Err(CommandError::syntax(format!(
            "Syntax: {verb} takes no argument"
        )))
    }
}

fn rest_arg(verb: &str, arg: &str) -> Result<String, CommandError> {
    if arg.is_empty() {
        Err(CommandError::syntax(format!("Syntax: {verb} string")))
    } else {
        Ok(arg.to_string())
    }
}

/// HELO/EHLO/LHLO take exactly one argument: a domain or an address literal
/// (RFC 5321 §4.1.1.1). Labels may hold `_` and UTF-8 letters: real clients send both.
fn hello_arg(verb: &str, arg: &str) -> Result<String, CommandError> {
    let usage = || CommandError::syntax(format!("Syntax: {verb} domain or address literal"));
    if arg.is_empty() || arg.contains(' ') {
        return Err(usage());
    }
    if is_address_literal(arg) || is_domain(arg) {
        Ok(arg.to_string())
    } else {
        Err(CommandError::syntax(format!(
            "{verb} argument is not a domain or address literal"
        )))
    }
}

fn parse_mail(arg: &str) -> Result<Command, CommandError> {
    let rest = strip_prefix_ignore_case(arg, "FROM:")
        .ok_or_else(|| CommandError::syntax("Syntax: MAIL FROM:<address> [parameters]"))?;
    let (inner, params) = split_path(rest.trim_start_matches(' '), PathKind::Sender)?;
    let from = if inner.is_empty() {
        ReversePath::Null
    } else {
        ReversePath::Address(parse_mailbox(inner).map_err(|e| PathKind::Sender.error(e))?)
    };
    Ok(Command::Mail {
        from,
        params: parse_mail_params(params)?,
    })
}

fn parse_rcpt(arg: &str) -> Result<Command, CommandError> {
    let rest = strip_prefix_ignore_case(arg, "TO:")
        .ok_or_else(|| CommandError::syntax("Syntax: RCPT TO:<address> [parameters]"))?;
    let (inner, params) = split_path(rest.trim_start_matches(' '), PathKind::Recipient)?;
    let to = if inner.eq_ignore_ascii_case("postmaster") {
        // RFC 5321 §4.5.1: every server must accept the domainless <postmaster>.
        Address::new_unchecked("postmaster", "")
    } else if inner.is_empty() {
        return Err(PathKind::Recipient.error("empty address"));
    } else {
        parse_mailbox(inner).map_err(|e| PathKind::Recipient.error(e))?
    };
    Ok(Command::Rcpt {
        to,
        params: parse_rcpt_params(params)?,
    })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

fn parse_bdat(arg: &str) -> Result<Command, CommandError> {
    let usage = || CommandError::syntax("Syntax: BDAT size [LAST]");
    let mut words = arg.split(' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .and_then(parse_decimal)
        .flatten()
        .ok_or_else(usage)?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(usage()),
    };
    if words.next().is_some() {
        return Err(usage());
    }
    Ok(Command::Bdat { size, last })
}

/// RFC 4954 §4: `AUTH mechanism [initial-response]`; a SASL mechanism name is 1 to 20
/// characters of uppercase letters, digits, `-` and `_` (RFC 4422 §3.1).
fn parse_auth(arg: &str) -> Result<Command, CommandError> {
    let usage = || CommandError::syntax("Syntax: AUTH mechanism [initial-response]");
    let mut words = arg.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or_else(usage)?;
    let mech_ok = mechanism.len() <= 20
        && mechanism
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !mech_ok {
        return Err(CommandError::syntax("Bad SASL mechanism name"));
    }
    let initial = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(usage());
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial,
    })
}

impl Command {
    /// The verb, uppercase, for logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Helo(_) => "HELO",
            Command::Ehlo(_) => "EHLO",
            Command::Lhlo(_) => "LHLO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }

    /// The command as a client sends it, CRLF included. Parameter values are xtext-encoded
    /// where RFC 3461 asks for it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::from(self.verb());
        match self {
            Command::Helo(d)
            | Command::Ehlo(d)
            | Command::Lhlo(d)
            | Command::Vrfy(d)
            | Command::Expn(d) => {
                s.push(' ');
                s.push_str(d);
            }
            Command::Mail { from, params } => {
                s.push_str(&format!(" FROM:<{from}>"));
                write_mail_params(params, &mut s);
            }
            Command::Rcpt { to, params } => {
                if to.domain().is_empty() {
                    s.push_str(&format!(" TO:<{}>", to.local()));
                } else {
                    s.push_str(&format!(" TO:<{to}>"));
                }
                write_rcpt_params(params, &mut s);
            }
            Command::Bdat { size, last } => {
                s.push_str(&format!(" {size}"));
                if *last {
                    s.push_str(" LAST");
                }
            }
            Command::Auth { mechanism, initial } => {
                s.push(' ');
                s.push_str(mechanism);
                if let Some(i) = initial {
                    s.push(' ');
                    s.push_str(i);
                }
            }
            Command::Data
            | Command::Rset
            | Command::Noop
            | Command::Quit
            | Command::Help
            | Command::StartTls => {}
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}
