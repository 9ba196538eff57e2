//! `listen on ...` (SPEC §4.1): where SMTP is served and with which options.

use super::{Cursor, PResult, Parser};
use crate::diag::{Diagnostic, Pos};
use crate::lexer::TokenKind;
use crate::model::{Family, ListenAuth, ListenOn, ListenTls, Listener};

/// The thing after `on`: `socket`, `any`, or an interface, host name or address.
pub(crate) fn listen_on(c: &mut Cursor) -> PResult<ListenOn> {
    let (w, _) = c.value("an interface, address, \"any\" or \"socket\"")?;
    Ok(match w.as_str() {
        "any" => ListenOn::Any,
        "socket" => ListenOn::Socket,
        _ => ListenOn::Name(w),
    })
}

/// A port number or one of the well-known service names.
pub(crate) fn port(c: &mut Cursor) -> PResult<u16> {
    let (s, pos) = c.value("a port")?;
    let n = match s.as_str() {
        "smtp" => Some(25),
        "submission" => Some(587),
        "smtps" => Some(465),
        "imap" => Some(143),
        "imaps" => Some(993),
        "lmtp" => Some(24),
        _ => s.parse::<u16>().ok().filter(|n| *n > 0),
    };
    n.ok_or_else(|| {
        Diagnostic::error(
            pos,
            format!("invalid port \"{s}\": expected a number from 1 to 65535"),
        )
    })
}

impl Parser<'_> {
    pub(crate) fn listen(&mut self, c: &mut Cursor) -> PResult<()> {
        let pos = c.pos();
        c.expect("listen")?;
        c.expect("on")?;
        let on_pos = c.pos();
        let on = listen_on(c)?;
        let mut l = Listener {
            on,
            family: None,
            port: None,
            tls: ListenTls::None,
            pki: None,
            auth: None,
            tag: None,
            hostname: None,
            senders: None,
            mask_src: false,
            filter: None,
            pos,
            on_pos,
            pki_pos: Pos::builtin(),
        };
        let mut tls_set = false;
        let dup = |p: Pos, what: &str| {
            Diagnostic::error(p, format!("{what} already specified for this listener"))
        };
        while !c.at_end() {
            let opt_pos = c.pos();
            let (w, _) = c.value("a listen option")?;
            match w.as_str() {
                "family" => {
                    if l.family.is_some() {
                        return Err(dup(opt_pos, "family"));
                    }
                    l.family = Some(if c.eat("inet4") {
                        Family::Inet4
                    } else if c.eat("inet6") {
                        Family::Inet6
                    } else {
                        return Err(c.unexpected("\"inet4\" or \"inet6\""));
                    });
                }
                "port" => {
                    if l.port.is_some() {
                        return Err(dup(opt_pos, "port"));
                    }
                    l.port = Some(port(c)?);
                }
                "tls" | "tls-require" | "smtps" => {
                    if tls_set {
                        return Err(dup(opt_pos, "tls mode"));
                    }
                    tls_set = true;
                    let verify = w != "tls" && c.eat("verify");
                    l.tls = match w.as_str() {
                        "tls" => ListenTls::Offer,
                        "tls-require" => ListenTls::Require { verify },
                        _ => ListenTls::Smtps { verify },
                    };
                }
                "pki" | "certificate" => {
                    if l.pki.is_some() {
                        return Err(dup(opt_pos, "pki"));
                    }
                    let (name, npos) = c.value("a certificate name")?;
                    if w == "certificate" {
                        self.implicit_pki(&name, &npos);
                    }
                    l.pki = Some(name);
                    l.pki_pos = npos;
                }
                "auth" | "auth-optional" => {
                    if l.auth.is_some() {
                        return Err(dup(opt_pos, "auth"));
                    }
                    let table = if c
                        .peek()
                        .is_some_and(|t| t.kind == crate::lexer::TokenKind::Lt)
                    {
                        Some(c.table_ref(false)?)
                    } else {
                        None
                    };
                    l.auth = Some(ListenAuth {
                        optional: w == "auth-optional",
                        table,
                    });
                }
                "tag" => {
                    if l.tag.is_some() {
                        return Err(dup(opt_pos, "tag"));
                    }
                    l.tag = Some(tag_name(c)?);
                }
                "hostname" => {
                    if l.hostname.is_some() {
                        return Err(dup(opt_pos, "hostname"));
                    }
                    l.hostname = Some(c.value("a host name")?.0);
                }
                "senders" => {
                    if l.senders.is_some() {
                        return Err(dup(opt_pos, "senders"));
                    }
                    let t = c.table_ref(false)?;
                    let masquerade = c.eat("masquerade");
                    l.senders = Some((t, masquerade));
                }
                "mask-src" => l.mask_src = true,
                "filter" => {
                    if l.filter.is_some() {
                        return Err(dup(opt_pos, "filter"));
                    }
                    if c.peek().is_some_and(|t| t.kind == TokenKind::LBrace) {
                        l.filter = Some(self.implicit_chain(c)?);
                    } else {
                        l.filter = Some(c.value("a filter name")?.0);
                    }
                }
                other => {
                    return Err(Diagnostic::error(
                        opt_pos,
                        format!("unknown listen option \"{other}\""),
                    ))
                }
            }
        }
        if l.tls != ListenTls::None && l.pki.is_none() {
            return Err(Diagnostic::error(
                l.pos,
                "a listener with tls, tls-require or smtps needs a certificate (pki NAME or certificate NAME)",
            ));
        }
        if l.on == ListenOn::Socket && (l.port.is_some() || l.tls != ListenTls::None) {
            return Err(Diagnostic::error(
                l.pos,
                "listen on socket takes no port and no tls",
            ));
        }
        self.config.listeners.push(l);
        Ok(())
    }
}

/// A tag: letters, digits, `_`, `-`, `.`.
pub(crate) fn tag_name(c: &mut Cursor) -> PResult<String> {
    let (t, pos) = c.value("a tag name")?;
    if t.is_empty()
        || !t
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
    {
        return Err(Diagnostic::error(pos, format!("invalid tag \"{t}\"")));
    }
    Ok(t)
}
