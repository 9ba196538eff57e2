//! ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2 esmtp-param): RFC 1870 SIZE,
//! RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 4954 AUTH and the DSN parameters of RFC 3461.
//! Keywords are case-insensitive; a keyword given twice is a syntax error (501), an unknown
//! one is `555 5.5.4` (RFC 5321 §4.1.1.11).

use ownmail_types::{BodyType, Notify, Ret};

use crate::command::CommandError;
use crate::xtext::{xtext_decode, xtext_encode};

/// The parameters of `MAIL FROM`. `envid` and `auth` are xtext-decoded; encode them again
/// with [`xtext_encode`] when relaying.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=` (RFC 1870); a number too big for u64 reads as `u64::MAX` (still "too big").
    pub size: Option<u64>,
    pub body: Option<BodyType>,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    pub envid: Option<String>,
    /// `AUTH=` (RFC 4954 §5); `<>` when the client does not know the original submitter.
    pub auth: Option<String>,
}

/// The parameters of `RCPT TO` (RFC 3461). `orcpt` is xtext-decoded but keeps its address
/// type: `rfc822;user@example.org`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptParams {
    pub notify: Option<Notify>,
    pub orcpt: Option<String>,
}

/// RFC 3461 §4.4: an ENVID is at most 100 characters.
const MAX_ENVID: usize = 100;
/// RFC 3461 §4.2: an ORCPT value is at most 500 characters.
const MAX_ORCPT: usize = 500;

/// Parses the parameters after `MAIL FROM:<…>`.
pub(crate) fn parse_mail_params(s: &str) -> Result<MailParams, CommandError> {
    let mut p = MailParams::default();
    for (key, value) in params_iter(s)? {
        let dup = || CommandError::syntax(format!("Duplicate MAIL parameter {key}"));
        match key.to_ascii_uppercase().as_str() {
            "SIZE" => {
                let v = need_value(key, value)?;
                let size = parse_decimal(v)
                    .ok_or_else(|| CommandError::syntax("Bad SIZE parameter syntax"))?;
                set_once(&mut p.size, size.unwrap_or(u64::MAX), dup)?;
            }
            "BODY" => {
                let body = match need_value(key, value)?.to_ascii_uppercase().as_str() {
                    "7BIT" => BodyType::SevenBit,
                    "8BITMIME" => BodyType::EightBitMime,
                    "BINARYMIME" => BodyType::BinaryMime,
                    _ => {
                        return Err(CommandError::syntax(
                            "Bad BODY parameter: expected 7BIT, 8BITMIME or BINARYMIME",
                        ))
                    }
                };
                set_once(&mut p.body, body, dup)?;
            }
            "SMTPUTF8" => {
                if value.is_some() {
                    return Err(CommandError::syntax("SMTPUTF8 takes no value"));
                }
                if p.smtputf8 {
                    return Err(dup());
                }
                p.smtputf8 = true;
            }
            "RET" => {
                let ret = match need_value(key, value)?.to_ascii_uppercase().as_str() {
                    "FULL" => Ret::Full,
                    "HDRS" => Ret::Hdrs,
                    _ => {
                        return Err(CommandError::syntax(
                            "Bad RET parameter: expected FULL or HDRS",
                        ))
                    }
                };
                set_once(&mut p.ret, ret, dup)?;
            }
            "ENVID" => {
                let envid = xtext_param(key, value)?;
                if envid.chars().count() > MAX_ENVID {
                    return Err(CommandError::syntax("ENVID is longer than 100 characters"));
                }
                set_once(&mut p.envid, envid, dup)?;
            }
            "AUTH" => set_once(&mut p.auth, xtext_param(key, value)?, dup)?,
            _ => return Err(unsupported("MAIL", key)),
        }
    }
    Ok(p)
}

/// Parses the parameters after `RCPT TO:<…>`.
pub(crate) fn parse_rcpt_params(s: &str) -> Result<RcptParams, CommandError> {
    let mut p = RcptParams::default();
    for (key, value) in params_iter(s)? {
        let dup = || CommandError::syntax(format!("Duplicate RCPT parameter {key}"));
        match key.to_ascii_uppercase().as_str() {
            "NOTIFY" => {
                let notify = parse_notify(need_value(key, value)?)?;
                set_once(&mut p.notify, notify, dup)?;
            }
            "ORCPT" => {
                let orcpt = parse_orcpt(need_value(key, value)?)?;
                set_once(&mut p.orcpt, orcpt, dup)?;
            }
            _ => return Err(unsupported("RCPT", key)),
        }
    }
    Ok(p)
}

fn unsupported(verb: &str, key: &str) -> CommandError {
    CommandError::new(555, "5.5.4", format!("Unsupported {verb} parameter {key}"))
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    dup: impl FnOnce() -> CommandError,
) -> Result<(), CommandError> {
    if slot.is_some() {
        return Err(dup());
    }
    *slot = Some(value);
    Ok(())
}

fn need_value<'a>(key: &str, value: Option<&'a str>) -> Result<&'a str, CommandError> {
    value.ok_or_else(|| CommandError::syntax(format!("{key} needs a value")))
}

fn xtext_param(key: &str, value: Option<&str>) -> Result<String, CommandError> {
    xtext_decode(need_value(key, value)?)
        .ok_or_else(|| CommandError::syntax(format!("Bad xtext in {key}")))
}

/// RFC 3461 §4.1: `NEVER`, or a comma-separated list of `SUCCESS`, `FAILURE`, `DELAY`.
fn parse_notify(v: &str) -> Result<Notify, CommandError> {
    let bad = || CommandError::syntax("Bad NOTIFY parameter: NEVER, or SUCCESS,FAILURE,DELAY");
    let mut n = Notify::default();
    for item in v.split(',') {
        match item.to_ascii_uppercase().as_str() {
            "NEVER" => n.never = true,
            "SUCCESS" => n.success = true,
            "FAILURE" => n.failure = true,
            "DELAY" => n.delay = true,
            _ => return Err(bad()),
        }
    }
    if n.never && (n.success || n.failure || n.delay) {
        return Err(bad());
    }
    Ok(n)
}

/// RFC 3461 §4.2: `addr-type ";" xtext`; returned decoded, address type kept.
fn parse_orcpt(v: &str) -> Result<String, CommandError> {
    let bad = || CommandError::syntax("Bad ORCPT parameter: expected addr-type;xtext");
    if v.len() > MAX_ORCPT {
        return Err(CommandError::syntax("ORCPT is longer than 500 characters"));
    }
    let (addr_type, addr) = v.split_once(';').ok_or_else(bad)?;
    if addr_type.is_empty()
        || !addr_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        || addr.is_empty()
    {
        return Err(bad());
    }
    let addr = xtext_decode(addr).ok_or_else(bad)?;
    Ok(format!("{addr_type};{addr}"))
}

/// Digits only, no sign. `Some(None)` when the number does not fit in u64.
pub(crate) fn parse_decimal(s: &str) -> Option<Option<u64>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().ok())
}

/// Splits the parameter list into `(keyword, value)` pairs (RFC 5321 §4.1.2 esmtp-param).
fn params_iter(s: &str) -> Result<Vec<(&str, Option<&str>)>, CommandError> {
    let mut out = Vec::new();
    for param in s.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        let key_ok = key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        // esmtp-value: printable ASCII but `=` (UTF-8 also allowed, RFC 6531 §3.3).
        let value_ok = value.is_none_or(|v| {
            !v.is_empty()
                && v.chars()
                    .all(|c| !c.is_ascii() || matches!(c, '!'..='<' | '>'..='~'))
        });
        if !key_ok || !value_ok {
            return Err(CommandError::syntax(format!(
                "Bad parameter syntax: {param}"
            )));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// Appends ` SIZE=… BODY=…` in wire form, values xtext-encoded where RFC 3461 asks for it.
pub(crate) fn write_mail_params(params: &MailParams, s: &mut String) {
    if let Some(size) = params.size {
        s.push_str(&format!(" SIZE={size}"));
    }
    if let Some(body) = params.body {
        s.push_str(match body {
            BodyType::SevenBit => " BODY=7BIT",
            BodyType::EightBitMime => " BODY=8BITMIME",
            BodyType::BinaryMime => " BODY=BINARYMIME",
        });
    }
    if params.smtputf8 {
        s.push_str(" SMTPUTF8");
    }
    if let Some(ret) = params.ret {
        s.push_str(match ret {
            Ret::Full => " RET=FULL",
            Ret::Hdrs => " RET=HDRS",
        });
    }
    if let Some(envid) = &params.envid {
        s.push_str(&format!(" ENVID={}", xtext_encode(envid)));
    }
    if let Some(auth) = &params.auth {
        s.push_str(&format!(" AUTH={}", xtext_encode(auth)));
    }
}

/// Appends ` NOTIFY=… ORCPT=…` in wire form.
pub(crate) fn write_rcpt_params(params: &RcptParams, s: &mut String) {
    if let Some(n) = params.notify {
        let mut items = Vec::new();
        for (on, name) in [
            (n.never, "NEVER"),
            (n.success, "SUCCESS"),
            (n.failure, "FAILURE"),
            (n.delay, "DELAY"),
        ] {
            if on {
                items.push(name);
            }
        }
        // All false is the RFC 3461 default, which FAILURE states explicitly.
        if items.is_empty() {
            items.push("FAILURE");
        }
        s.push_str(&format!(" NOTIFY={}", items.join(",")));
    }
    if let Some(orcpt) = &params.orcpt {
        match orcpt.split_once(';') {
            Some((t, a)) => s.push_str(&format!(" ORCPT={t};{}", xtext_encode(a))),
            None => s.push_str(&format!(" ORCPT=rfc822;{}", xtext_encode(orcpt))),
        }
    }
}
