//! The lines of smtpd-filters(7), protocol version [`PROTOCOL_VERSION`]: what we write to a
//! filter (handshake, report events, filter requests, data lines) and what we accept back
//! (registrations, `filter-result`, `filter-dataline`, `report`). Pure: no I/O, no tokio.
//!
//! Lines are bytes, not `String`s: message lines may carry 8-bit data, and a filter may
//! answer anything. Whatever we write never contains `\r` or `\n` inside a line, so a client
//! cannot inject a protocol line through an EHLO name or an address.

use std::fmt;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The protocol version we speak: the one of OpenSMTPD 6.7 to 7.3. Version 0.7 (OpenSMTPD
/// 7.4) only swapped `link-auth` to `result|user`, which the filter-rspamd of Debian 12
/// (0.1.7) does not know: it would lose the authenticated user. libopensmtpd accepts any
/// `0.x`, filter-senderscore any version at or above 0.5.
pub const PROTOCOL_VERSION: &str = "0.6";
/// The `smtpd-version` we announce: the last OpenSMTPD that spoke [`PROTOCOL_VERSION`].
pub const SMTPD_VERSION: &str = "7.3.0";
/// The only subsystem filters can use for filtering (and the one we report on).
pub const SUBSYSTEM: &str = "smtp-in";
/// Longest line we accept from a filter (OpenSMTPD's SMTP_LINE_MAX plus the protocol prefix).
pub const MAX_LINE: usize = 65_535 + 256;

/// An SMTP session as filters see it: 16 lowercase hex digits, unique per session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl SessionId {
    /// A fresh random id (OpenSMTPD's `generate_uid()` is random too).
    pub fn random() -> SessionId {
        SessionId(rand::random::<u64>() | 1)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A transaction (OpenSMTPD's msgid): 8 lowercase hex digits. libopensmtpd refuses a msgid
/// that does not fit 32 bits, so this is not the queue id if that one is longer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxId(pub u32);

impl TxId {
    /// A fresh random id, never zero (OpenSMTPD reports `00000000` for "no transaction").
    pub fn random() -> TxId {
        TxId(rand::random::<u32>().max(1))
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// The opaque token of one filter request; the answer must repeat it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token(pub u64);

impl Token {
    pub fn random() -> Token {
        Token(rand::random::<u64>() | 1)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

macro_rules! names {
    ($(#[$m:meta])* $ty:ident { $($v:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $ty { $($v,)* }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$v,)*];

            /// The name on the wire.
            pub fn name(self) -> &'static str {
                match self { $($ty::$v => $s,)* }
            }

            pub fn from_name(s: &str) -> Option<$ty> {
                match s { $($s => Some($ty::$v),)* _ => None }
            }

            fn bit(self) -> u32 {
                1 << (self as u32)
            }
        }
    };
}

names!(
    /// A filtering phase (smtpd-filters(7) FILTER REQUESTS; the list of lka_filter.c).
    Phase {
        Connect = "connect",
        Helo = "helo",
        Ehlo = "ehlo",
        Starttls = "starttls",
        Auth = "auth",
        MailFrom = "mail-from",
        RcptTo = "rcpt-to",
        Data = "data",
        DataLine = "data-line",
        Rset = "rset",
        Quit = "quit",
        Noop = "noop",
        Help = "help",
        Wiz = "wiz",
        Commit = "commit",
    }
);

names!(
    /// A report event (smtpd-filters(7) REPORT EVENTS).
    Event {
        LinkConnect = "link-connect",
        LinkDisconnect = "link-disconnect",
        LinkGreeting = "link-greeting",
        LinkIdentify = "link-identify",
        LinkTls = "link-tls",
        LinkAuth = "link-auth",
        TxReset = "tx-reset",
        TxBegin = "tx-begin",
        TxMail = "tx-mail",
        TxRcpt = "tx-rcpt",
        TxEnvelope = "tx-envelope",
        TxData = "tx-data",
        TxCommit = "tx-commit",
        TxRollback = "tx-rollback",
        ProtocolClient = "protocol-client",
        ProtocolServer = "protocol-server",
        FilterReport = "filter-report",
        FilterResponse = "filter-response",
        Timeout = "timeout",
    }
);

impl Phase {
    /// The phase name in a `filter-response` report (lka_report.c renames two of them).
    pub fn response_name(self) -> &'static str {
        match self {
            Phase::Connect => "connected",
            Phase::Starttls => "tls",
            p => p.name(),
        }
    }
}

/// What a filter registered for during the handshake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Registrations {
    events: u32,
    phases: u32,
}

impl Registrations {
    pub fn event(&self, e: Event) -> bool {
        self.events & e.bit() != 0
    }
    pub fn phase(&self, p: Phase) -> bool {
        self.phases & p.bit() != 0
    }
    pub fn add_event(&mut self, e: Event) {
        self.events |= e.bit();
    }
    pub fn add_phase(&mut self, p: Phase) {
        self.phases |= p.bit();
    }
    /// The registrations in wire form, for logs.
    pub fn describe(&self) -> String {
        let mut out: Vec<&str> = Event::ALL
            .iter()
            .filter(|e| self.event(**e))
            .map(|e| e.name())
            .collect();
        out.extend(
            Phase::ALL
                .iter()
                .filter(|p| self.phase(**p))
                .map(|p| p.name()),
        );
        out.join(",")
    }
}

/// One line of a filter's handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Register {
    Report(Event),
    /// `register|report|smtp-in|*`: every event.
    AllReports,
    Filter(Phase),
    Ready,
}

/// Why a line from a filter is garbage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    TooLong,
    NotUtf8,
    Unknown(String),
    Subsystem(String),
    Event(String),
    Phase(String),
    Session(String),
    Token(String),
    Decision(String),
    /// A reject or disconnect whose reply is not `4xx`/`5xx` text.
    Reply(String),
    MissingParameter(String),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong => write!(f, "line longer than {MAX_LINE} bytes"),
            LineError::NotUtf8 => write!(f, "line is not UTF-8"),
            LineError::Unknown(s) => write!(f, "unknown message type {s:?}"),
            LineError::Subsystem(s) => write!(f, "unknown subsystem {s:?}"),
            LineError::Event(s) => write!(f, "unknown report event {s:?}"),
            LineError::Phase(s) => write!(f, "unknown filter phase {s:?}"),
            LineError::Session(s) => write!(f, "bad session id {s:?}"),
            LineError::Token(s) => write!(f, "bad token {s:?}"),
            LineError::Decision(s) => write!(f, "unknown decision {s:?}"),
            LineError::Reply(s) => write!(f, "reply {s:?} is not a 4xx/5xx SMTP reply"),
            LineError::MissingParameter(s) => write!(f, "decision {s:?} needs a parameter"),
        }
    }
}

fn text(line: &[u8]) -> Result<&str, LineError> {
    if line.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    std::str::from_utf8(line).map_err(|_| LineError::NotUtf8)
}

/// Parses one handshake line (after `config|ready`, before and including `register|ready`).
pub fn parse_register(line: &[u8]) -> Result<Register, LineError> {
    let line = text(line)?;
    if line == "register|ready" {
        return Ok(Register::Ready);
    }
    let mut f = line.splitn(4, '|');
    let (kind, stream, sub, name) = (f.next(), f.next(), f.next(), f.next());
    if kind != Some("register") {
        return Err(LineError::Unknown(line.to_string()));
    }
    let (Some(stream), Some(sub), Some(name)) = (stream, sub, name) else {
        return Err(LineError::Unknown(line.to_string()));
    };
    // OpenSMTPD compares the subsystem case-insensitively for filters.
    if !sub.eq_ignore_ascii_case(SUBSYSTEM) {
        return Err(LineError::Subsystem(sub.to_string()));
    }
    match stream {
        "report" if name == "*" => Ok(Register::AllReports),
        "report" => Event::from_name(name)
            .map(Register::Report)
            .ok_or_else(|| LineError::Event(name.to_string())),
        "filter" => Phase::from_name(name)
            .map(Register::Filter)
            .ok_or_else(|| LineError::Phase(name.to_string())),
        _ => Err(LineError::Unknown(line.to_string())),
    }
}

/// The handshake we send: smtpd-filters(7) CONFIGURATION, in lka_proc_config()'s order.
pub fn handshake(session_timeout_secs: u32, admd: Option<&str>) -> Vec<u8> {
    let mut out = format!(
        "config|smtpd-version|{SMTPD_VERSION}\n\
         config|protocol|{PROTOCOL_VERSION}\n\
         config|smtp-session-timeout|{session_timeout_secs}\n\
         config|subsystem|{SUBSYSTEM}\n"
    );
    if let Some(admd) = admd {
        out.push_str(&format!("config|admd|{}\n", clean(admd)));
    }
    out.push_str("config|ready\n");
    out.into_bytes()
}

/// `SECONDS.MICROSECONDS`, as OpenSMTPD prints a `struct timeval`.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

/// A parameter made safe for one protocol line: CR and LF become spaces. Only the last field
/// of a line may contain `|` (smtpd-filters(7)); the callers put free text last.
pub fn clean(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn push_params(out: &mut Vec<u8>, params: &[&str]) {
    for p in params {
        out.push(b'|');
        out.extend_from_slice(clean(p).as_bytes());
    }
    out.push(b'\n');
}

/// `report|VERSION|TIME|smtp-in|EVENT|SESSION[|PARAMS…]`.
pub fn report(time: &str, event: Event, session: SessionId, params: &[&str]) -> Vec<u8> {
    let mut out = format!(
        "report|{PROTOCOL_VERSION}|{time}|{SUBSYSTEM}|{}|{session}",
        event.name()
    )
    .into_bytes();
    push_params(&mut out, params);
    out
}

/// `filter|VERSION|TIME|smtp-in|PHASE|SESSION|TOKEN|PARAMS…`. A phase without parameters
/// still ends with `|` and an empty field, as lka_filter.c writes it.
pub fn filter(
    time: &str,
    phase: Phase,
    session: SessionId,
    token: Token,
    params: &[&str],
) -> Vec<u8> {
    let mut out = format!(
        "filter|{PROTOCOL_VERSION}|{time}|{SUBSYSTEM}|{}|{session}|{token}",
        phase.name()
    )
    .into_bytes();
    if params.is_empty() {
        push_params(&mut out, &[""]);
    } else {
        push_params(&mut out, params);
    }
    out
}

/// One `data-line` request: the line is sent as bytes, dot-stuffed as on the SMTP wire.
pub fn data_line(time: &str, session: SessionId, token: Token, line: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "filter|{PROTOCOL_VERSION}|{time}|{SUBSYSTEM}|{}|{session}|{token}|",
        Phase::DataLine.name()
    )
    .into_bytes();
    out.extend(
        line.iter()
            .map(|b| if *b == b'\r' || *b == b'\n' { b' ' } else { *b }),
    );
    out.push(b'\n');
    out
}

/// The address as smtpd-filters(7) reports it: `ip:port`, `[ipv6]:port` or `unix:/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Inet(SocketAddr),
    Unix(String),
}

impl Endpoint {
    /// `link-connect` form, with the port.
    pub fn with_port(&self) -> String {
        match self {
            Endpoint::Inet(SocketAddr::V4(a)) => format!("{}:{}", a.ip(), a.port()),
            Endpoint::Inet(SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
            Endpoint::Unix(p) => format!("unix:{p}"),
        }
    }
    /// `connect` request form: the address alone, `[ipv6]`, or `local` for a UNIX socket.
    pub fn address(&self) -> String {
        match self {
            Endpoint::Inet(SocketAddr::V4(a)) => a.ip().to_string(),
            Endpoint::Inet(SocketAddr::V6(a)) => format!("[{}]", a.ip()),
            Endpoint::Unix(_) => "local".to_string(),
        }
    }
}

/// A filter's answer to one request (smtpd-filters(7): proceed, junk, reject, disconnect,
/// rewrite, report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Proceed,
    Junk,
    Reject(String),
    Disconnect(String),
    Rewrite(String),
    Report(String),
}

impl Response {
    /// The decision name and parameter, for the `filter-response` report.
    pub fn parts(&self) -> (&'static str, Option<&str>) {
        match self {
            Response::Proceed => ("proceed", None),
            Response::Junk => ("junk", None),
            Response::Reject(m) => ("reject", Some(m)),
            Response::Disconnect(m) => ("disconnect", Some(m)),
            Response::Rewrite(m) => ("rewrite", Some(m)),
            Response::Report(m) => ("report", Some(m)),
        }
    }
}

/// One line a running filter writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Result {
        session: SessionId,
        token: Token,
        response: Response,
    },
    DataLine {
        session: SessionId,
        token: Token,
        line: Vec<u8>,
    },
    /// `report|TIME|smtp-in|SESSION|TEXT`: a filter's own report (lka_report_proc()).
    Report { text: String },
}

fn hex64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// A reply a filter may give with reject or disconnect: `4xx` or `5xx`, then end of line or a
/// space and printable text (OpenSMTPD's valid_smtp_response() plus the 4/5 check).
pub fn valid_reply(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 3
        && matches!(b[0], b'4' | b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && (b.len() == 3 || b[3] == b' ')
        && !s.chars().any(|c| c.is_control())
}

/// Parses one line a filter writes after `register|ready`. The session and token come first
/// (version 0.5 and later), then the decision.
pub fn parse_output(line: &[u8]) -> Result<Output, LineError> {
    if line.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    let (kind, rest) = split_byte(line);
    match kind {
        b"filter-dataline" => {
            let (session, token, payload) = ids(rest)?;
            Ok(Output::DataLine {
                session,
                token,
                line: payload.to_vec(),
            })
        }
        b"filter-result" => {
            let (session, token, payload) = ids(rest)?;
            let payload = text(payload)?;
            let (decision, param) = match payload.split_once('|') {
                Some((d, p)) => (d, Some(p)),
                None => (payload, None),
            };
            let need = |p: Option<&str>| {
                p.map(str::to_string)
                    .ok_or_else(|| LineError::MissingParameter(decision.to_string()))
            };
            let response = match decision {
                "proceed" => Response::Proceed,
                "junk" => Response::Junk,
                "reject" | "disconnect" => {
                    let reply = need(param)?;
                    if !valid_reply(&reply) {
                        return Err(LineError::Reply(reply));
                    }
                    if decision == "reject" {
                        Response::Reject(reply)
                    } else {
                        Response::Disconnect(reply)
                    }
                }
                "rewrite" => Response::Rewrite(need(param)?),
                "report" => Response::Report(need(param)?),
                other => return Err(LineError::Decision(other.to_string())),
            };
            Ok(Output::Result {
                session,
                token,
                response,
            })
        }
        b"report" => Ok(Output::Report {
            text: String::from_utf8_lossy(rest.unwrap_or_default()).into_owned(),
        }),
        other => Err(LineError::Unknown(
            String::from_utf8_lossy(other).into_owned(),
        )),
    }
}

fn split_byte(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|b| *b == b'|') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

fn ids(rest: Option<&[u8]>) -> Result<(SessionId, Token, &[u8]), LineError> {
    let (session, rest) = split_byte(rest.unwrap_or_default());
    let session = std::str::from_utf8(session)
        .ok()
        .and_then(hex64)
        .ok_or_else(|| LineError::Session(String::from_utf8_lossy(session).into_owned()))?;
    let (token, payload) = split_byte(rest.unwrap_or_default());
    let token_val = std::str::from_utf8(token)
        .ok()
        .and_then(hex64)
        .ok_or_else(|| LineError::Token(String::from_utf8_lossy(token).into_owned()))?;
    // The payload (decision or data line) is mandatory, even if empty.
    let payload =
        payload.ok_or_else(|| LineError::Token(String::from_utf8_lossy(token).into_owned()))?;
    Ok((SessionId(session), Token(token_val), payload))
}

/// Splits a message held with CRLF line ends into the lines filters see: without the line
/// end, dot-stuffed as on the SMTP wire (smtpd-filters(7): "raw dot-escaped SMTP DATA
/// input"). A bare LF also ends a line: it cannot travel inside one. A last line without a
/// line end counts as a line.
pub fn message_lines(message: &[u8]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut rest = message;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut out = Vec::with_capacity(line.len() + 1);
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        lines.push(out);
        rest = next;
    }
    lines
}

/// Appends one line a filter returned (dot-stuffed, without line end) to a CRLF message,
/// removing the stuffing dot as smtp_tx_dataline() does.
pub fn push_unstuffed(message: &mut Vec<u8>, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = if line.first() == Some(&b'.') {
        &line[1..]
    } else {
        line
    };
    message.extend_from_slice(line);
    message.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: SessionId = SessionId(0x7641df9771b4ed00);
    const T: Token = Token(0x1ef1c203cc576e5d);

    #[test]
    fn ids_are_fixed_width_lowercase_hex() {
        assert_eq!(SessionId(0xAB).to_string(), "00000000000000ab");
        assert_eq!(TxId(0xABC).to_string(), "00000abc");
        assert_eq!(Token(1).to_string(), "0000000000000001");
        assert_ne!(TxId::random().0, 0);
    }

    #[test]
    fn timestamp_has_six_digit_microseconds() {
        let t = UNIX_EPOCH + Duration::new(1576146008, 6_099_000);
        assert_eq!(timestamp(t), "1576146008.006099");
    }

    #[test]
    fn handshake_lines_in_order() {
        let h = String::from_utf8(handshake(300, Some("mx.example.org"))).unwrap();
        assert_eq!(
            h,
            "config|smtpd-version|7.3.0\nconfig|protocol|0.6\nconfig|smtp-session-timeout|300\n\
             config|subsystem|smtp-in\nconfig|admd|mx.example.org\nconfig|ready\n"
        );
        let h = String::from_utf8(handshake(5, None)).unwrap();
        assert!(!h.contains("admd"));
    }

    #[test]
    fn register_lines() {
        let cases: &[(&str, Result<Register, LineError>)] = &[
            ("register|ready", Ok(Register::Ready)),
            (
                "register|report|smtp-in|link-connect",
                Ok(Register::Report(Event::LinkConnect)),
            ),
            ("register|report|smtp-in|*", Ok(Register::AllReports)),
            (
                "register|filter|smtp-in|data-line",
                Ok(Register::Filter(Phase::DataLine)),
            ),
            (
                "register|filter|SMTP-IN|quit",
                Ok(Register::Filter(Phase::Quit)),
            ),
            (
                "register|filter|smtp-in|bogus",
                Err(LineError::Phase("bogus".into())),
            ),
            (
                "register|report|smtp-in|bogus",
                Err(LineError::Event("bogus".into())),
            ),
            (
                "register|filter|smtp-out|commit",
                Err(LineError::Subsystem("smtp-out".into())),
            ),
            (
                "register|filter",
                Err(LineError::Unknown("register|filter".into())),
            ),
            ("hello", Err(LineError::Unknown("hello".into()))),
        ];
        for (line, want) in cases {
            assert_eq!(&parse_register(line.as_bytes()), want, "{line}");
        }
        assert_eq!(parse_register(b"register|\xff"), Err(LineError::NotUtf8));
    }

    #[test]
    fn registrations_bits() {
        let mut r = Registrations::default();
        r.add_event(Event::Timeout);
        r.add_phase(Phase::Commit);
        assert!(r.event(Event::Timeout) && !r.event(Event::LinkConnect));
        assert!(r.phase(Phase::Commit) && !r.phase(Phase::Connect));
        assert_eq!(r.describe(), "timeout,commit");
    }

    #[test]
    fn report_and_filter_lines() {
        let src = Endpoint::Inet("199.185.178.25:33174".parse().unwrap());
        let dst = Endpoint::Inet("45.77.67.80:25".parse().unwrap());
        let line = report(
            "1576146008.006099",
            Event::LinkConnect,
            S,
            &[
                "mail.openbsd.org",
                "pass",
                &src.with_port(),
                &dst.with_port(),
            ],
        );
        assert_eq!(
            line,
            b"report|0.6|1576146008.006099|smtp-in|link-connect|7641df9771b4ed00|mail.openbsd.org|pass|199.185.178.25:33174|45.77.67.80:25\n"
        );
        assert_eq!(
            report("1.000000", Event::LinkDisconnect, S, &[]),
            b"report|0.6|1.000000|smtp-in|link-disconnect|7641df9771b4ed00\n"
        );
        assert_eq!(
            filter("1.000000", Phase::Connect, S, T, &["mail.openbsd.org", &src.address()]),
            b"filter|0.6|1.000000|smtp-in|connect|7641df9771b4ed00|1ef1c203cc576e5d|mail.openbsd.org|199.185.178.25\n"
        );
        assert_eq!(
            filter("1.000000", Phase::Data, S, T, &[]),
            b"filter|0.6|1.000000|smtp-in|data|7641df9771b4ed00|1ef1c203cc576e5d|\n"
        );
    }

    #[test]
    fn parameters_cannot_inject_lines() {
        let line = filter("1.0", Phase::Helo, S, T, &["evil\r\nfilter|0.6|x"]);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let line = data_line("1.0", S, T, b"a\rb\nc");
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(!line.contains(&b'\r'));
    }

    #[test]
    fn endpoints() {
        let v6 = Endpoint::Inet("[2001:db8::1]:25".parse().unwrap());
        assert_eq!(v6.with_port(), "[2001:db8::1]:25");
        assert_eq!(v6.address(), "[2001:db8::1]");
        let unix = Endpoint::Unix("/var/run/smtpd.sock".into());
        assert_eq!(unix.with_port(), "unix:/var/run/smtpd.sock");
        assert_eq!(unix.address(), "local");
    }

    #[test]
    fn filter_results() {
        let ok = |s: &str| parse_output(s.as_bytes());
        let res = |r: Response| {
            Ok(Output::Result {
                session: S,
                token: T,
                response: r,
            })
        };
        assert_eq!(
            ok("filter-result|7641df9771b4ed00|1ef1c203cc576e5d|proceed"),
            res(Response::Proceed)
        );
        assert_eq!(
            ok("filter-result|7641df9771b4ed00|1ef1c203cc576e5d|junk"),
            res(Response::Junk)
        );
        assert_eq!(
            ok("filter-result|7641df9771b4ed00|1ef1c203cc576e5d|reject|550 nope | really"),
            res(Response::Reject("550 nope | really".into()))
        );
        assert_eq!(
            ok("filter-result|7641df9771b4ed00|1ef1c203cc576e5d|disconnect|421 bye"),
            res(Response::Disconnect("421 bye".into()))
        );
        assert_eq!(
            ok("filter-result|7641df9771b4ed00|1ef1c203cc576e5d|rewrite|<a@b>"),
            res(Response::Rewrite("<a@b>".into()))
        );
        assert_eq!(
            ok("filter-result|7641df9771b4ed00|1ef1c203cc576e5d|report|hi"),
            res(Response::Report("hi".into()))
        );
        // Upper-case hex is what strtoull accepts too.
        assert!(ok("filter-result|7641DF9771B4ED00|1ef1c203cc576e5d|proceed").is_ok());
    }

    #[test]
    fn garbage_results_are_errors() {
        let bad = [
            "filter-result|7641df9771b4ed00|1ef1c203cc576e5d|reject|250 fine",
            "filter-result|7641df9771b4ed00|1ef1c203cc576e5d|reject|55 x",
            "filter-result|7641df9771b4ed00|1ef1c203cc576e5d|reject|550x",
            "filter-result|7641df9771b4ed00|1ef1c203cc576e5d|reject|hello",
            "filter-result|7641df9771b4ed00|1ef1c203cc576e5d|reject",
            "filter-result|7641df9771b4ed00|1ef1c203cc576e5d|rewrite",
            "filter-result|7641df9771b4ed00|1ef1c203cc576e5d|maybe",
            "filter-result|7641df9771b4ed00|1ef1c203cc576e5d",
            "filter-result|nothex|1ef1c203cc576e5d|proceed",
            "filter-result|7641df9771b4ed00|12345678901234567|proceed",
            "filter-result",
            "filter-dataline|7641df9771b4ed00",
            "hello world",
            "",
        ];
        for line in bad {
            assert!(parse_output(line.as_bytes()).is_err(), "{line}");
        }
        assert_eq!(
            parse_output(&vec![b'a'; MAX_LINE + 1]),
            Err(LineError::TooLong)
        );
    }

    #[test]
    fn data_lines_keep_bytes_and_pipes() {
        assert_eq!(
            parse_output(b"filter-dataline|7641df9771b4ed00|1ef1c203cc576e5d|a|b\xe9"),
            Ok(Output::DataLine {
                session: S,
                token: T,
                line: b"a|b\xe9".to_vec()
            })
        );
        assert_eq!(
            parse_output(b"filter-dataline|7641df9771b4ed00|1ef1c203cc576e5d|"),
            Ok(Output::DataLine {
                session: S,
                token: T,
                line: vec![]
            })
        );
    }

    #[test]
    fn valid_replies() {
        for ok in ["550", "550 no", "421 4.7.0 go away", "451 try | later"] {
            assert!(valid_reply(ok), "{ok}");
        }
        for bad in [
            "250 ok",
            "5",
            "55",
            "5a0 x",
            "550-x",
            "550\tx",
            "550 a\u{7}",
            "650 x",
            "",
        ] {
            assert!(!valid_reply(bad), "{bad}");
        }
    }

    #[test]
    fn message_lines_are_dot_stuffed_and_round_trip() {
        let msg = b"Subject: x\r\n\r\n.leading dot\r\n..two\r\nlast";
        let lines = message_lines(msg);
        assert_eq!(
            lines,
            vec![
                b"Subject: x".to_vec(),
                b"".to_vec(),
                b"..leading dot".to_vec(),
                b"...two".to_vec(),
                b"last".to_vec()
            ]
        );
        let mut back = Vec::new();
        for l in &lines {
            push_unstuffed(&mut back, l);
        }
        assert_eq!(back, b"Subject: x\r\n\r\n.leading dot\r\n..two\r\nlast\r\n");
        assert_eq!(
            message_lines(b"a\nb\r\n"),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert!(message_lines(b"").is_empty());
    }

    #[test]
    fn phase_and_event_names_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::from_name(p.name()), Some(*p));
        }
        for e in Event::ALL {
            assert_eq!(Event::from_name(e.name()), Some(*e));
        }
        assert_eq!(Phase::Connect.response_name(), "connected");
        assert_eq!(Phase::Starttls.response_name(), "tls");
    }
}
