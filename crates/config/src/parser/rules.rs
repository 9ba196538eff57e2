//! Rules of both grammars, compiled into the same `Action` + `Rule` model.
//!
//! Legacy `accept … ACTION` becomes one generated action (named after its kind and a number,
//! e.g. `maildir1`) and one or two `match` rules: a legacy rule with no `from` (or with
//! `from local`) matches local connections *and* authenticated sessions (SPEC §4.1), which
//! the modern grammar spells as two rules, `from local` and `from auth`, with the same action.

use super::listen::tag_name;
use super::{Cursor, PResult, Parser};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::lexer::TokenKind;
use crate::model::{
    Action, ActionKind, Cond, Config, Expansion, FilterKind, For, From, Grammar, Relay,
    RelayScheme, RelayTls, RelayUrl, Rule, TableOrValue, TableRef, Verdict,
};
use crate::table::Usage;

/// Words that end an optional argument (a maildir path, a backup host) in legacy rules.
const LEGACY_KEYWORDS: &[&str] = &[
    "tagged",
    "from",
    "sender",
    "for",
    "alias",
    "virtual",
    "userbase",
    "recipient",
    "deliver",
    "relay",
    "as",
    "hostname",
    "pki",
    "source",
    "auth",
    "tls",
    "via",
    "backup",
    "verify",
    "junk",
];

/// Words that end an optional argument in `action` statements.
const ACTION_KEYWORDS: &[&str] = &[
    "alias",
    "virtual",
    "userbase",
    "user",
    "junk",
    "backup",
    "host",
    "auth",
    "helo",
    "tls",
    "src",
    "pki",
    "mail-from",
    "no-verify",
    "mx",
];

/// Where an optional argument may be: a quoted string, or a word that is not a keyword.
fn optional_arg(c: &Cursor, keywords: &[&str]) -> bool {
    match c.peek().map(|t| &t.kind) {
        Some(TokenKind::Quoted(_)) => true,
        Some(TokenKind::Word(w)) => !keywords.contains(&w.as_str()),
        _ => false,
    }
}

fn dup(pos: Pos, what: &str) -> Diagnostic {
    Diagnostic::error(pos, format!("{what} already specified for this rule"))
}

fn set<T>(slot: &mut Option<T>, value: T, pos: Pos, what: &str) -> PResult<()> {
    if slot.is_some() {
        return Err(dup(pos, what));
    }
    *slot = Some(value);
    Ok(())
}

impl Parser<'_> {
    /// `<t>`, `{ inline }` (an anonymous table) or one value.
    fn table_or_value(&mut self, c: &mut Cursor, what: &str) -> PResult<TableOrValue> {
        if c.peek().is_some_and(|t| t.kind == TokenKind::LBrace) {
            return Ok(TableOrValue::Table(self.anonymous_table(c)?));
        }
        c.table_or_value(what)
    }

    /// `accept|reject [tagged [!]TAG] [from [!]…] [sender <t>] for [!]… [alias|virtual <t>]
    /// [userbase <t>] [recipient <t>] ACTION [as ADDR] [hostname NAME] [pki NAME] [source <t>]`.
    pub(crate) fn legacy_rule(&mut self, c: &mut Cursor) -> PResult<()> {
        let pos = c.pos();
        let accept = c.eat("accept");
        if !accept {
            c.expect("reject")?;
        }
        self.use_grammar(Grammar::Legacy, &pos)?;
        let mut tag = None;
        let mut from: Option<Cond<From>> = None;
        let mut sender = None;
        let mut for_: Option<Cond<For>> = None;
        let mut expansion = None;
        let mut userbase = None;
        let mut recipient = None;
        let mut kind: Option<ActionKind> = None;
        let mut verdict_pos = pos.clone();
        let mut relay = Relay::default_opportunistic();
        let mut relay_opt_pos: Option<Pos> = None;
        while !c.at_end() {
            let opt_pos = c.pos();
            let (w, _) = c.value("a rule option")?;
            match w.as_str() {
                "tagged" => {
                    let t = c.cond(tag_name)?;
                    set(&mut tag, t, opt_pos, "tagged")?;
                }
                "from" => {
                    let f = self.legacy_from(c)?;
                    set(&mut from, f, opt_pos, "from")?;
                }
                "sender" => {
                    let negated = c.bang();
                    let v = self.table_or_value(c, "a sender table")?;
                    set(&mut sender, Cond { negated, value: v }, opt_pos, "sender")?;
                }
                "for" => {
                    let negated = c.bang();
                    let f = self.for_dest(c, true)?;
                    set(&mut for_, Cond { negated, value: f }, opt_pos, "for")?;
                }
                "alias" | "virtual" => {
                    let t = c.table_ref(true)?;
                    let e = if w == "alias" {
                        Expansion::Alias(t)
                    } else {
                        Expansion::Virtual(t)
                    };
                    set(&mut expansion, e, opt_pos, "alias or virtual")?;
                }
                "userbase" => set(&mut userbase, c.table_ref(true)?, opt_pos, "userbase")?,
                "recipient" => {
                    let negated = c.bang();
                    let v = self.table_or_value(c, "a recipient table")?;
                    set(
                        &mut recipient,
                        Cond { negated, value: v },
                        opt_pos,
                        "recipient",
                    )?;
                }
                "deliver" => {
                    if !accept {
                        return Err(Diagnostic::error(opt_pos, "a reject rule takes no action"));
                    }
                    c.expect("to")?;
                    let k = self.deliver_to(c, LEGACY_KEYWORDS)?;
                    set(&mut kind, k, opt_pos.clone(), "action")?;
                    verdict_pos = opt_pos;
                }
                "relay" => {
                    if !accept {
                        return Err(Diagnostic::error(opt_pos, "a reject rule takes no action"));
                    }
                    set(
                        &mut kind,
                        ActionKind::Relay(Box::new(Relay::default_opportunistic())),
                        opt_pos.clone(),
                        "action",
                    )?;
                    verdict_pos = opt_pos;
                }
                // `deliver to maildir … junk`: the legacy spelling of the action option.
                "junk" => match &mut kind {
                    Some(ActionKind::Maildir { junk, .. }) if !*junk => *junk = true,
                    Some(ActionKind::Maildir { .. }) => return Err(dup(opt_pos, "junk")),
                    _ => {
                        return Err(Diagnostic::error(
                            opt_pos,
                            "junk goes after deliver to maildir",
                        ))
                    }
                },
                "via" | "backup" | "tls" | "as" | "hostname" | "pki" | "source" | "auth" => {
                    relay_opt_pos.get_or_insert(opt_pos.clone());
                    self.legacy_relay_option(c, &w, &mut relay, opt_pos)?;
                }
                other => {
                    return Err(Diagnostic::error(
                        opt_pos,
                        format!("unknown rule option \"{other}\""),
                    ))
                }
            }
        }
        let Some(for_) = for_ else {
            return Err(Diagnostic::error(
                pos,
                "rule has no \"for\": expected for any, for local or for domain …",
            ));
        };
        let verdict = if accept {
            let Some(mut kind) = kind else {
                return Err(Diagnostic::error(
                    pos,
                    "accept rule has no action: expected deliver to … or relay",
                ));
            };
            match (&mut kind, relay_opt_pos) {
                (ActionKind::Relay(r), _) => **r = relay,
                (_, Some(p)) => {
                    return Err(Diagnostic::error(
                        p,
                        "this option applies only to relay rules",
                    ))
                }
                _ => {}
            }
            let name = self.generated_action_name(&kind);
            self.config.actions.push(Action {
                name: name.clone(),
                kind,
                expansion,
                userbase,
                user: None,
                pos: verdict_pos.clone(),
            });
            Verdict::Action(name)
        } else {
            if expansion.is_some() || userbase.is_some() || relay_opt_pos.is_some() {
                return Err(Diagnostic::error(
                    pos,
                    "a reject rule takes no alias, virtual, userbase or relay option",
                ));
            }
            Verdict::Reject
        };
        // No `from` (or `from local`): local connections and authenticated sessions.
        let froms = match from {
            None
            | Some(Cond {
                negated: false,
                value: From::Local,
            }) => {
                vec![Cond::yes(From::Local), Cond::yes(From::Auth(None))]
            }
            Some(f) => vec![f],
        };
        for from in froms {
            self.config.rules.push(Rule {
                from,
                for_: for_.clone(),
                auth: None,
                tag: tag.clone(),
                tls: None,
                mail_from: sender.clone(),
                rcpt_to: recipient.clone(),
                helo: None,
                verdict: verdict.clone(),
                pos: pos.clone(),
                verdict_pos: verdict_pos.clone(),
            });
        }
        Ok(())
    }

    fn legacy_relay_option(
        &mut self,
        c: &mut Cursor,
        w: &str,
        r: &mut Relay,
        pos: Pos,
    ) -> PResult<()> {
        match w {
            "via" => {
                let (u, upos) = c.value("a relay URL such as smtp://host:port")?;
                set(&mut r.host, parse_relay_url(&u, &upos)?, pos, "via")?;
            }
            "backup" => {
                let host = if optional_arg(c, LEGACY_KEYWORDS) {
                    Some(c.value("a host name")?.0)
                } else {
                    None
                };
                set(&mut r.backup, host, pos, "backup")?;
            }
            "tls" => {
                if r.tls != RelayTls::Opportunistic {
                    return Err(dup(pos, "tls"));
                }
                r.tls = if c.eat("verify") {
                    RelayTls::RequiredVerify
                } else {
                    RelayTls::Required
                };
            }
            "as" => set(&mut r.mail_from, c.value("an address")?.0, pos, "as")?,
            "hostname" => set(&mut r.helo, c.value("a host name")?.0, pos, "hostname")?,
            "pki" => set(&mut r.pki, c.value("a pki name")?.0, pos, "pki")?,
            "source" => {
                let v = self.table_or_value(c, "a source table")?;
                set(&mut r.src, v, pos, "source")?;
            }
            _ => set(&mut r.auth, c.table_ref(true)?, pos, "auth")?,
        }
        Ok(())
    }

    /// Legacy `from`: `any`, `local`, `socket`, `source <t>` or an address/network.
    fn legacy_from(&mut self, c: &mut Cursor) -> PResult<Cond<From>> {
        let negated = c.bang();
        let value = if c.eat("any") {
            From::Any
        } else if c.eat("local") {
            From::Local
        } else if c.eat("socket") {
            From::Socket
        } else if c.eat("source")
            || c.peek()
                .is_some_and(|t| matches!(t.kind, TokenKind::Lt | TokenKind::LBrace))
        {
            From::Src(self.table_or_value(c, "a source table")?)
        } else {
            let (a, apos) = c.value("any, local, source <table> or an address")?;
            check_network(&a, &apos)?;
            From::Src(TableOrValue::Value(a))
        };
        Ok(Cond { negated, value })
    }

    /// `any`, `local`, `domain NAME|<t>` and, in the modern grammar, `rcpt-to …`.
    fn for_dest(&mut self, c: &mut Cursor, legacy: bool) -> PResult<For> {
        if c.eat("any") {
            Ok(For::Any)
        } else if c.eat("local") {
            Ok(For::Local)
        } else if c.eat("domain") {
            Ok(For::Domain(self.table_or_value(c, "a domain or <table>")?))
        } else if !legacy && c.eat("rcpt-to") {
            Ok(For::RcptTo(
                self.table_or_value(c, "an address or <table>")?,
            ))
        } else {
            Err(c.unexpected(if legacy {
                "any, local or domain"
            } else {
                "any, local, domain or rcpt-to"
            }))
        }
    }

    /// After `deliver to` (legacy) or `action NAME` (modern, without `deliver to`):
    /// `maildir [PATH]`, `mbox`, `mda CMD`, `lmtp DEST`.
    fn deliver_to(&mut self, c: &mut Cursor, keywords: &[&str]) -> PResult<ActionKind> {
        if c.eat("maildir") {
            let path = if optional_arg(c, keywords) {
                Some(c.value("a path")?.0)
            } else {
                None
            };
            Ok(ActionKind::Maildir { path, junk: false })
        } else if c.eat("mbox") {
            Ok(ActionKind::Mbox)
        } else if c.eat("mda") {
            Ok(ActionKind::Mda(c.value("a command")?.0))
        } else if c.eat("lmtp") {
            let (dest, dpos) = c.value("HOST:PORT or a socket path")?;
            check_lmtp_dest(&dest, &dpos)?;
            Ok(ActionKind::Lmtp(dest))
        } else {
            Err(c.unexpected("maildir, mbox, mda or lmtp"))
        }
    }

    fn generated_action_name(&mut self, kind: &ActionKind) -> String {
        let base = match kind {
            ActionKind::Maildir { .. } => "maildir",
            ActionKind::Mbox => "mbox",
            ActionKind::Mda(_) => "mda",
            ActionKind::Lmtp(_) => "lmtp",
            ActionKind::ForwardOnly => "forward",
            ActionKind::ExpandOnly => "expand",
            ActionKind::Relay(_) => "relay",
        };
        loop {
            self.generated += 1;
            let name = format!("{base}{}", self.generated);
            if self.config.action(&name).is_none() {
                return name;
            }
        }
    }

    /// `action NAME KIND [options]`.
    pub(crate) fn action(&mut self, c: &mut Cursor) -> PResult<()> {
        let pos = c.pos();
        c.expect("action")?;
        self.use_grammar(Grammar::Modern, &pos)?;
        let (name, npos) = c.value("an action name")?;
        if self.config.action(&name).is_some() {
            return Err(Diagnostic::error(
                npos,
                format!("action \"{name}\" is already defined"),
            ));
        }
        let mut kind = if c.eat("forward-only") {
            ActionKind::ForwardOnly
        } else if c.eat("expand-only") {
            ActionKind::ExpandOnly
        } else if c.eat("relay") {
            ActionKind::Relay(Box::new(Relay::default_opportunistic()))
        } else {
            self.deliver_to(c, ACTION_KEYWORDS)?
        };
        let mut expansion = None;
        let mut userbase = None;
        let mut user = None;
        while !c.at_end() {
            let opt_pos = c.pos();
            let (w, _) = c.value("an action option")?;
            match (w.as_str(), &mut kind) {
                ("alias" | "virtual", _) => {
                    let t = c.table_ref(true)?;
                    let e = if w == "alias" {
                        Expansion::Alias(t)
                    } else {
                        Expansion::Virtual(t)
                    };
                    set(&mut expansion, e, opt_pos, "alias or virtual")?;
                }
                ("userbase", _) => set(&mut userbase, c.table_ref(true)?, opt_pos, "userbase")?,
                ("user", _) => set(&mut user, c.value("a user name")?.0, opt_pos, "user")?,
                ("junk", ActionKind::Maildir { junk, .. }) => {
                    if *junk {
                        return Err(dup(opt_pos, "junk"));
                    }
                    *junk = true;
                }
                ("backup", ActionKind::Relay(r)) => {
                    let mx = if c.eat("mx") {
                        Some(c.value("an MX host name")?.0)
                    } else {
                        None
                    };
                    set(&mut r.backup, mx, opt_pos, "backup")?;
                }
                ("host", ActionKind::Relay(r)) => {
                    let (u, upos) = c.value("a relay URL such as smtp://host:port")?;
                    set(&mut r.host, parse_relay_url(&u, &upos)?, opt_pos, "host")?;
                }
                ("auth", ActionKind::Relay(r)) => {
                    set(&mut r.auth, c.table_ref(true)?, opt_pos, "auth")?
                }
                ("helo", ActionKind::Relay(r)) => {
                    set(&mut r.helo, c.value("a host name")?.0, opt_pos, "helo")?
                }
                ("tls", ActionKind::Relay(r)) => {
                    if r.tls != RelayTls::Opportunistic {
                        return Err(dup(opt_pos, "tls"));
                    }
                    r.tls = if c.eat("no-verify") {
                        RelayTls::Required
                    } else {
                        RelayTls::RequiredVerify
                    };
                }
                ("src", ActionKind::Relay(r)) => {
                    let v = self.table_or_value(c, "an address or <table>")?;
                    set(&mut r.src, v, opt_pos, "src")?;
                }
                ("pki", ActionKind::Relay(r)) => {
                    set(&mut r.pki, c.value("a pki name")?.0, opt_pos, "pki")?
                }
                ("mail-from", ActionKind::Relay(r)) => set(
                    &mut r.mail_from,
                    c.value("an address")?.0,
                    opt_pos,
                    "mail-from",
                )?,
                (other, _) => {
                    return Err(Diagnostic::error(
                        opt_pos,
                        format!("unknown or misplaced action option \"{other}\""),
                    ))
                }
            }
        }
        self.config.actions.push(Action {
            name,
            kind,
            expansion,
            userbase,
            user,
            pos,
        });
        Ok(())
    }

    /// `match [!]from … [!]for … [auth [<t>]] [tag T] [tls] [mail-from …] [rcpt-to …]
    /// [helo …] (action NAME | reject)`.
    pub(crate) fn match_rule(&mut self, c: &mut Cursor) -> PResult<()> {
        let pos = c.pos();
        c.expect("match")?;
        self.use_grammar(Grammar::Modern, &pos)?;
        let mut from: Option<Cond<From>> = None;
        let mut for_: Option<Cond<For>> = None;
        let mut auth = None;
        let mut tag = None;
        let mut tls = None;
        let mut mail_from = None;
        let mut rcpt_to = None;
        let mut helo = None;
        let verdict;
        let verdict_pos;
        loop {
            let opt_pos = c.pos();
            let negated = c.bang();
            let Some(t) = c.peek() else {
                return Err(c.unexpected("\"action NAME\" or \"reject\""));
            };
            let (w, _) = c.value("a match option")?;
            match w.as_str() {
                "from" => {
                    let f = self.modern_from(c)?;
                    set(&mut from, Cond { negated, value: f }, opt_pos, "from")?;
                }
                "for" => {
                    let f = self.for_dest(c, false)?;
                    set(&mut for_, Cond { negated, value: f }, opt_pos, "for")?;
                }
                "auth" => {
                    let t = if c
                        .peek()
                        .is_some_and(|t| matches!(t.kind, TokenKind::Lt | TokenKind::LBrace))
                    {
                        Some(self.table_or_value(c, "a table")?)
                    } else {
                        None
                    };
                    set(&mut auth, Cond { negated, value: t }, opt_pos, "auth")?;
                }
                "tag" => set(
                    &mut tag,
                    Cond {
                        negated,
                        value: tag_name(c)?,
                    },
                    opt_pos,
                    "tag",
                )?,
                "tls" => set(&mut tls, Cond { negated, value: () }, opt_pos, "tls")?,
                "mail-from" => {
                    let v = self.table_or_value(c, "an address or <table>")?;
                    set(
                        &mut mail_from,
                        Cond { negated, value: v },
                        opt_pos,
                        "mail-from",
                    )?;
                }
                "rcpt-to" => {
                    let v = self.table_or_value(c, "an address or <table>")?;
                    set(&mut rcpt_to, Cond { negated, value: v }, opt_pos, "rcpt-to")?;
                }
                "helo" => {
                    let v = self.table_or_value(c, "a name or <table>")?;
                    set(&mut helo, Cond { negated, value: v }, opt_pos, "helo")?;
                }
                "action" | "reject" if !negated => {
                    verdict = if w == "action" {
                        Verdict::Action(c.value("an action name")?.0)
                    } else {
                        Verdict::Reject
                    };
                    verdict_pos = t.pos.clone();
                    c.finish()?;
                    break;
                }
                other => {
                    return Err(Diagnostic::error(
                        opt_pos,
                        format!("unknown match option \"{other}\""),
                    ))
                }
            }
        }
        self.config.rules.push(Rule {
            from: from.unwrap_or(Cond::yes(From::Local)),
            for_: for_.unwrap_or(Cond::yes(For::Local)),
            auth,
            tag,
            tls,
            mail_from,
            rcpt_to,
            helo,
            verdict,
            pos,
            verdict_pos,
        });
        Ok(())
    }

    /// Modern `from`: `any`, `local`, `socket`, `auth [<t>]`, `src …`, `mail-from …`, `rdns [<t>]`.
    fn modern_from(&mut self, c: &mut Cursor) -> PResult<From> {
        let has_table = |c: &Cursor| {
            c.peek()
                .is_some_and(|t| matches!(t.kind, TokenKind::Lt | TokenKind::LBrace))
        };
        if c.eat("any") {
            Ok(From::Any)
        } else if c.eat("local") {
            Ok(From::Local)
        } else if c.eat("socket") {
            Ok(From::Socket)
        } else if c.eat("auth") {
            Ok(From::Auth(if has_table(c) {
                Some(self.table_or_value(c, "a table")?)
            } else {
                None
            }))
        } else if c.eat("src") {
            let v = self.table_or_value(c, "an address, a network or <table>")?;
            if let TableOrValue::Value(a) = &v {
                check_network(a, &c.pos())?;
            }
            Ok(From::Src(v))
        } else if c.eat("mail-from") {
            Ok(From::MailFrom(
                self.table_or_value(c, "an address or <table>")?,
            ))
        } else if c.eat("rdns") {
            Ok(From::Rdns(if has_table(c) {
                Some(self.table_or_value(c, "a table")?)
            } else {
                None
            }))
        } else {
            Err(c.unexpected("any, local, socket, auth, src, mail-from or rdns"))
        }
    }
}

impl Relay {
    /// A relay by MX with no options: opportunistic STARTTLS.
    pub fn default_opportunistic() -> Self {
        Relay {
            backup: None,
            host: None,
            auth: None,
            helo: None,
            tls: RelayTls::Opportunistic,
            src: None,
            pki: None,
            mail_from: None,
        }
    }
}

/// `SCHEME://[LABEL@]HOST[:PORT]` with the schemes OpenSMTPD accepts.
pub fn parse_relay_url(u: &str, pos: &Pos) -> PResult<RelayUrl> {
    let err = |m: &str| Diagnostic::error(pos.clone(), format!("invalid relay URL \"{u}\": {m}"));
    let (scheme, rest) = u
        .split_once("://")
        .ok_or_else(|| err("expected SCHEME://HOST[:PORT]"))?;
    let scheme = match scheme {
        "smtp" => RelayScheme::Smtp,
        "smtp+tls" | "tls" => RelayScheme::SmtpTls,
        "smtps" | "ssl" => RelayScheme::Smtps,
        "lmtp" => RelayScheme::Lmtp,
        _ => {
            return Err(err(
                "unknown scheme; expected smtp://, smtp+tls://, smtps:// or lmtp://",
            ))
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (label, hostport) = match rest.rsplit_once('@') {
        Some((l, h)) if !l.is_empty() => (Some(l.to_string()), h),
        Some(_) => return Err(err("empty label before '@'")),
        None => (None, rest),
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (h, after) = inner.split_once(']').ok_or_else(|| err("missing ']'"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(err("unexpected text after ']'")),
        };
        (h.to_string(), port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(err("missing host"));
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| err("invalid port"))?,
        ),
        None => None,
    };
    Ok(RelayUrl {
        scheme,
        label,
        host,
        port,
    })
}

/// An IPv4/IPv6 address, optionally with a `/prefix`.
fn check_network(a: &str, pos: &Pos) -> PResult<()> {
    let (addr, prefix) = match a.split_once('/') {
        Some((x, p)) => (x, Some(p)),
        None => (a, None),
    };
    let ip: std::net::IpAddr = addr.parse().map_err(|_| {
        Diagnostic::error(pos.clone(), format!("invalid address or network \"{a}\""))
    })?;
    if let Some(p) = prefix {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match p.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => {
                return Err(Diagnostic::error(
                    pos.clone(),
                    format!("invalid prefix length in \"{a}\""),
                ))
            }
        }
    }
    Ok(())
}

/// `HOST:PORT` or an absolute socket path.
fn check_lmtp_dest(d: &str, pos: &Pos) -> PResult<()> {
    if d.starts_with('/') {
        return Ok(());
    }
    match d.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|n| n > 0) => Ok(()),
        _ => Err(Diagnostic::error(
            pos.clone(),
            format!("invalid lmtp destination \"{d}\": expected HOST:PORT or /path/to/socket"),
        )),
    }
}

impl Config {
    /// Every table the configuration names, with the use it makes of it.
    pub fn table_uses(&self) -> Vec<(&TableRef, Usage)> {
        let mut out = Vec::new();
        fn list<'a>(v: Option<&'a TableOrValue>, out: &mut Vec<(&'a TableRef, Usage)>) {
            if let Some(TableOrValue::Table(t)) = v {
                out.push((t, Usage::List));
            }
        }
        for a in &self.actions {
            match &a.expansion {
                Some(Expansion::Alias(t)) => out.push((t, Usage::Aliases)),
                Some(Expansion::Virtual(t)) => out.push((t, Usage::Virtual)),
                None => {}
            }
            if let Some(t) = &a.userbase {
                out.push((t, Usage::Userbase));
            }
            if let ActionKind::Relay(r) = &a.kind {
                if let Some(t) = &r.auth {
                    out.push((t, Usage::Secrets));
                }
                list(r.src.as_ref(), &mut out);
            }
        }
        for l in &self.listeners {
            if let Some(t) = l.auth.as_ref().and_then(|a| a.table.as_ref()) {
                out.push((t, Usage::Credentials));
            }
            if let Some((t, _)) = &l.senders {
                out.push((t, Usage::List));
            }
        }
        for r in &self.rules {
            match &r.from.value {
                From::Src(v) | From::MailFrom(v) => list(Some(v), &mut out),
                From::Auth(v) | From::Rdns(v) => list(v.as_ref(), &mut out),
                _ => {}
            }
            match &r.for_.value {
                For::Domain(v) | For::RcptTo(v) => list(Some(v), &mut out),
                _ => {}
            }
            list(r.auth.as_ref().and_then(|a| a.value.as_ref()), &mut out);
            for c in [&r.mail_from, &r.rcpt_to, &r.helo].into_iter().flatten() {
                list(Some(&c.value), &mut out);
            }
        }
        if let Some(t) = &self.imap.auth {
            out.push((t, Usage::Credentials));
        }
        if let Some(t) = &self.imap.userbase {
            out.push((t, Usage::Userbase));
        }
        for d in &self.dkim {
            list(Some(&d.domain), &mut out);
        }
        for f in &self.filters {
            if let FilterKind::Builtin(b) = &f.kind {
                for cond in &b.conds {
                    if let Some(t) = cond.what.table() {
                        out.push((&t.table, Usage::List));
                    }
                }
            }
        }
        if let Some(t) = self
            .antispam
            .greylist
            .as_ref()
            .and_then(|g| g.allow.as_ref())
        {
            out.push((t, Usage::List));
        }
        out
    }
}

/// References that must resolve within the configuration: tables, actions, pkis, filters.
pub(crate) fn check_references(config: &Config, diags: &mut Diagnostics) {
    for (t, _) in config.table_uses() {
        if config.table(&t.name).is_none() {
            diags.error(&t.pos, format!("table \"{}\" is not defined", t.name));
        }
    }
    for r in &config.rules {
        if let Verdict::Action(a) = &r.verdict {
            if config.action(a).is_none() {
                diags.error(&r.verdict_pos, format!("action \"{a}\" is not defined"));
            }
        }
    }
    for a in &config.actions {
        if !config
            .rules
            .iter()
            .any(|r| r.verdict == Verdict::Action(a.name.clone()))
        {
            diags.warning(
                &a.pos,
                format!("action \"{}\" is not used by any match rule", a.name),
            );
        }
        if let ActionKind::Relay(r) = &a.kind {
            if let Some(p) = &r.pki {
                if config.pki(p).is_none() {
                    diags.error(&a.pos, format!("pki \"{p}\" is not defined"));
                }
            }
        }
    }
    for l in &config.listeners {
        if let Some(p) = &l.pki {
            if config.pki(p).is_none() {
                diags.error(&l.pki_pos, format!("pki \"{p}\" is not defined"));
            }
        }
        if let Some(f) = &l.filter {
            if !config.filters.iter().any(|x| &x.name == f) {
                diags.error(&l.pos, format!("filter \"{f}\" is not defined"));
            }
        }
    }
    for l in &config.imap.listeners {
        if let Some(p) = &l.pki {
            if config.pki(p).is_none() {
                diags.error(&l.pki_pos, format!("pki \"{p}\" is not defined"));
            }
        }
    }
    for p in &config.pkis {
        if p.cert.is_none() {
            diags.error(&p.pos, format!("pki \"{}\" has no cert", p.name));
        }
        if p.key.is_none() {
            diags.error(&p.pos, format!("pki \"{}\" has no key", p.name));
        }
    }
}
