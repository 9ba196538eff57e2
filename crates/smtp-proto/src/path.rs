//! The path of MAIL and RCPT: `<[source-route:]local@domain>` (RFC 5321 §4.1.2), with the
//! reply codes of RFC 3463 §3.2 for a sender (5.1.7) or a recipient (5.1.3) that does not
//! parse. The local part is kept as sent, quotes included; the domain is lowercased by
//! [`Address`].

use std::fmt;

use ownmail_types::{Address, AddressError};

use crate::command::CommandError;

/// Which path is being parsed, for the reply codes of RFC 3463 §3.2.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathKind {
    Sender,
    Recipient,
}

impl PathKind {
    pub(crate) fn error(self, detail: impl fmt::Display) -> CommandError {
        match self {
            PathKind::Sender => {
                CommandError::new(501, "5.1.7", format!("Bad sender address syntax: {detail}"))
            }
            PathKind::Recipient => CommandError::new(
                501,
                "5.1.3",
                format!("Bad recipient address syntax: {detail}"),
            ),
        }
    }
}

/// Splits `<path> params` into the text between the angle brackets and the parameters. A `>`
/// inside a quoted local part does not close the path.
pub(crate) fn split_path(s: &str, kind: PathKind) -> Result<(&str, &str), CommandError> {
    let body = s
        .strip_prefix('<')
        .ok_or_else(|| kind.error("the address must be in angle brackets"))?;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => {
                let (inner, after) = body.split_at(i);
                let after = after.get(1..).unwrap_or("");
                if !after.is_empty() && !after.starts_with(' ') {
                    return Err(kind.error("unexpected text after the address"));
                }
                return Ok((inner, after));
            }
            _ => {}
        }
    }
    Err(kind.error("missing closing angle bracket"))
}

/// Why a mailbox was refused; shown in the reply.
#[derive(Debug)]
pub(crate) enum MailboxError {
    Syntax(&'static str),
    Address(AddressError),
}

impl fmt::Display for MailboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxError::Syntax(s) => f.write_str(s),
            MailboxError::Address(e) => e.fmt(f),
        }
    }
}

/// Parses what was inside the angle brackets: `[A-d-l ":"] Mailbox` (RFC 5321 §4.1.2). A
/// source route is checked and dropped (RFC 5321 §4.1.1.3 and appendix C). The local part is
/// kept as sent, quotes included.
pub(crate) fn parse_mailbox(path: &str) -> Result<Address, MailboxError> {
    let mailbox = if path.starts_with('@') {
        // A-d-l holds plain domains only, so the first `:` ends it.
        let (route, mailbox) = path
            .split_once(':')
            .ok_or(MailboxError::Syntax("bad source route"))?;
        let route_ok = route
            .split(',')
            .all(|hop| hop.strip_prefix('@').is_some_and(is_domain));
        if !route_ok {
            return Err(MailboxError::Syntax("bad source route"));
        }
        mailbox
    } else {
        path
    };
    let (local, domain) = split_local_part(mailbox)?;
    let domain_ok = is_domain(domain) || is_address_literal(domain);
    if !domain_ok {
        return Err(MailboxError::Syntax("bad domain"));
    }
    Address::parse(mailbox)
        .map_err(MailboxError::Address)
        .and_then(|a| {
            // Address::parse splits at the last `@`; make sure it agrees with the syntax above.
            if a.local() == local {
                Ok(a)
            } else {
                Err(MailboxError::Syntax("bad local part"))
            }
        })
}

/// Splits `local@domain` where local is a dot-string or a quoted string.
fn split_local_part(mailbox: &str) -> Result<(&str, &str), MailboxError> {
    let bad_local = MailboxError::Syntax("bad local part");
    let at = if let Some(body) = mailbox.strip_prefix('"') {
        let mut escaped = false;
        let mut close = None;
        for (i, c) in body.char_indices() {
            if escaped {
                // quoted-pairSMTP: backslash then any printable ASCII or a UTF-8 character.
                if c.is_ascii() && !matches!(c, ' '..='~') {
                    return Err(bad_local);
                }
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                '"' => {
                    close = Some(i);
                    break;
                }
                // qtextSMTP: printable ASCII but `"` and `\`, space included; UTF-8 too.
                c if c.is_ascii() && !matches!(c, ' '..='~') => return Err(bad_local),
                _ => {}
            }
        }
        // Position of the `@` in `mailbox`: one for the opening quote, one past the closing.
        let at = close.ok_or(MailboxError::Syntax("unterminated quoted local part"))? + 2;
        if mailbox.get(at..at + 1) != Some("@") {
            return Err(MailboxError::Syntax(
                "quoted local part must be followed by @",
            ));
        }
        at
    } else {
        let at = mailbox
            .find('@')
            .ok_or(MailboxError::Address(AddressError::NoAt))?;
        // Dot-string of atext (RFC 5322 §3.2.3) and UTF-8. Dots are not checked for
        // position: like Postfix we take `first..last@` which some providers hand out.
        let local = mailbox.get(..at).unwrap_or("");
        if !local.chars().all(|c| {
            !c.is_ascii() || c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
        }) {
            return Err(bad_local);
        }
        at
    };
    let local = mailbox.get(..at).unwrap_or("");
    let domain = mailbox.get(at + 1..).unwrap_or("");
    if local.is_empty() {
        return Err(MailboxError::Address(AddressError::EmptyLocal));
    }
    if domain.is_empty() {
        return Err(MailboxError::Address(AddressError::EmptyDomain));
    }
    Ok((local, domain))
}

/// `[` dcontent `]`, RFC 5321 §4.1.3; the content is checked only for its characters.
pub(crate) fn is_address_literal(s: &str) -> bool {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .is_some_and(|inner| {
            !inner.is_empty() && inner.bytes().all(|b| matches!(b, 33..=90 | 94..=126))
        })
}

/// Dot-separated, non-empty labels of letters, digits, `-` and `_`, at most 255 octets.
pub(crate) fn is_domain(s: &str) -> bool {
    s.len() <= 255
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_local_part_may_hold_at_and_angle_bracket() {
        let (inner, rest) = split_path("<\"a>@b\"@x.org> SIZE=1", PathKind::Sender).expect("path");
        assert_eq!((inner, rest), ("\"a>@b\"@x.org", " SIZE=1"));
        let a = parse_mailbox(inner).expect("mailbox");
        assert_eq!((a.local(), a.domain()), ("\"a>@b\"", "x.org"));
    }

    #[test]
    fn source_route_is_dropped() {
        let a = parse_mailbox("@one.example,@two.example:u@Three.Example").expect("mailbox");
        assert_eq!(a.to_string(), "u@three.example");
        assert!(parse_mailbox("@one.example,two.example:u@x.example").is_err());
        assert!(parse_mailbox("@:u@x.example").is_err());
    }

    #[test]
    fn unterminated_quote_is_refused() {
        assert!(split_path("<\"ab@x.org>", PathKind::Sender).is_err());
        assert!(parse_mailbox("\"ab@x.org").is_err());
        assert!(parse_mailbox("\"a\"b@x.org").is_err());
    }
}
