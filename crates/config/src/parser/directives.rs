//! Directives other than rules and listeners: tables, pki, global limits and ownmail's own
//! directives of SPEC §4.2.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::{parse_duration, parse_size, Cursor, PResult, Parser};
use crate::diag::{Diagnostic, Pos};
use crate::lexer::TokenKind;
use crate::model::{
    implicit_chain_name, valid_smtp_reply, Builtin, BuiltinCond, BuiltinDecision, BuiltinPhase,
    BuiltinTest, Ca, Counted, DkimAlgorithm, DkimSign, Dnsbl, Filter, FilterKind, Greylist,
    ImapListener, ImapTls, InboundAuth, LimitKey, Per, Pki, RateLimit, Score, SpamVerdict,
    TableMatch,
};
use crate::table::{TableDecl, TableSource};

impl Parser<'_> {
    /// `table NAME [TYPE:]PATH` or `table NAME { ... }`.
    pub(crate) fn table(&mut self, c: &mut Cursor) -> PResult<()> {
        let pos = c.pos();
        c.expect("table")?;
        let (name, name_pos) = c.value("a table name")?;
        if self.config.table(&name).is_some() {
            return Err(Diagnostic::error(
                name_pos,
                format!("table \"{name}\" is already defined"),
            ));
        }
        let source_pos = c.pos();
        let source = if c.peek().is_some_and(|t| t.kind == TokenKind::LBrace) {
            inline_table(c)?
        } else {
            let (spec, spec_pos) = c.value("a table source such as file:/etc/aliases")?;
            table_source(&spec, &spec_pos)?
        };
        c.finish()?;
        self.config.tables.push(TableDecl {
            name,
            source,
            pos,
            source_pos,
        });
        Ok(())
    }

    /// A `{ ... }` written where a table is expected: it becomes a table of its own,
    /// named `anonN`, so the rule model only ever names tables.
    pub(crate) fn anonymous_table(&mut self, c: &mut Cursor) -> PResult<crate::model::TableRef> {
        let pos = c.pos();
        let source = inline_table(c)?;
        self.generated += 1;
        let mut name = format!("anon{}", self.generated);
        while self.config.table(&name).is_some() {
            self.generated += 1;
            name = format!("anon{}", self.generated);
        }
        self.config.tables.push(TableDecl {
            name: name.clone(),
            source,
            pos: pos.clone(),
            source_pos: pos.clone(),
        });
        Ok(crate::model::TableRef { name, pos })
    }

    /// `pki NAME cert FILE` / `pki NAME key FILE`.
    pub(crate) fn pki(&mut self, c: &mut Cursor) -> PResult<()> {
        let pos = c.pos();
        c.expect("pki")?;
        let (name, _) = c.value("a pki name")?;
        let what_pos = c.pos();
        let is_cert = if c.eat("cert") {
            true
        } else if c.eat("key") {
            false
        } else {
            return Err(c.unexpected("\"cert\" or \"key\""));
        };
        let (file, pos_of_file) = c.value("a file name")?;
        c.finish()?;
        let idx = match self.config.pkis.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                self.config.pkis.push(Pki {
                    name: name.clone(),
                    cert: None,
                    key: None,
                    pos,
                });
                self.config.pkis.len() - 1
            }
        };
        let entry = &mut self.config.pkis[idx];
        let slot = if is_cert {
            &mut entry.cert
        } else {
            &mut entry.key
        };
        if slot.is_some() {
            return Err(Diagnostic::error(
                what_pos,
                format!(
                    "pki \"{name}\": {} already specified",
                    if is_cert { "cert" } else { "key" }
                ),
            ));
        }
        *slot = Some(relative_to_config(&file, &pos_of_file));
        Ok(())
    }

    /// The legacy `certificate NAME`: a pki of that name from `NAME.crt` and `NAME.key` in
    /// the pki directory, unless a `pki NAME` statement declared it already.
    pub(crate) fn implicit_pki(&mut self, name: &str, pos: &Pos) {
        if self.config.pki(name).is_none() {
            let dir = &self.opts.pki_dir;
            self.config.pkis.push(Pki {
                name: name.to_string(),
                cert: Some(dir.join(format!("{name}.crt"))),
                key: Some(dir.join(format!("{name}.key"))),
                pos: pos.clone(),
            });
        }
    }

    /// `ca NAME cert FILE`.
    pub(crate) fn ca(&mut self, c: &mut Cursor) -> PResult<()> {
        let pos = c.pos();
        c.expect("ca")?;
        let (name, _) = c.value("a ca name")?;
        c.expect("cert")?;
        let (file, fpos) = c.value("a file name")?;
        c.finish()?;
        self.config.cas.push(Ca {
            name,
            cert: relative_to_config(&file, &fpos),
            pos,
        });
        Ok(())
    }

    /// `queue ttl D`, legacy `expire D`, `bounce warn-interval D[, D...]`,
    /// `smtp max-message-size S`, `smtp limit max-rcpt N`, `smtp sub-addr-delim C`,
    /// legacy `max-message-size S`.
    pub(crate) fn global(&mut self, c: &mut Cursor) -> PResult<()> {
        if c.eat("queue") {
            c.expect("ttl")?;
            let d = duration(c)?;
            c.finish()?;
            self.config.queue.ttl = Some(d);
        } else if c.eat("expire") {
            let d = duration(c)?;
            c.finish()?;
            self.config.queue.ttl = Some(d);
        } else if c.eat("bounce") {
            c.expect("warn-interval")?;
            let mut list = vec![duration(c)?];
            while c.eat_kind(&TokenKind::Comma) {
                list.push(duration(c)?);
            }
            c.finish()?;
            self.config.queue.warn_intervals = list;
        } else if c.eat("max-message-size") {
            let n = size(c)?;
            c.finish()?;
            self.config.smtp.max_message_size = Some(n);
        } else {
            c.expect("smtp")?;
            if c.eat("max-message-size") {
                self.config.smtp.max_message_size = Some(size(c)?);
            } else if c.eat("limit") {
                c.expect("max-rcpt")?;
                self.config.smtp.max_rcpt = Some(c.number("recipient limit", 1u32, 1_000_000)?.0);
            } else if c.eat("sub-addr-delim") {
                let (s, pos) = c.value("a delimiter character")?;
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(ch), None) if !ch.is_alphanumeric() && ch != '@' && !ch.is_whitespace() => {
                        self.config.smtp.sub_addr_delim = Some(ch)
                    }
                    _ => {
                        return Err(Diagnostic::error(
                            pos,
                            format!("invalid sub-address delimiter \"{s}\": expected one punctuation character"),
                        ))
                    }
                }
            } else {
                return Err(
                    c.unexpected("\"max-message-size\", \"limit max-rcpt\" or \"sub-addr-delim\"")
                );
            }
            c.finish()?;
        }
        Ok(())
    }

    /// `resolver ADDR[:PORT] ...`.
    pub(crate) fn resolver(&mut self, c: &mut Cursor) -> PResult<()> {
        c.expect("resolver")?;
        let mut list = Vec::new();
        while !c.at_end() {
            let (s, pos) = c.value("a resolver address")?;
            match parse_socket_addr(&s, 53) {
                Some(a) => list.push(a),
                None => {
                    return Err(Diagnostic::error(
                        pos,
                        format!("invalid resolver \"{s}\": expected ADDRESS or ADDRESS:PORT"),
                    ))
                }
            }
        }
        if list.is_empty() {
            return Err(c.unexpected("a resolver address"));
        }
        self.config.resolvers.extend(list);
        Ok(())
    }

    /// `imap listen on ...`, `imap auth <t>`, `imap userbase <t>`, `imap mailbox PATH`.
    pub(crate) fn imap(&mut self, c: &mut Cursor) -> PResult<()> {
        let pos = c.pos();
        c.expect("imap")?;
        if c.eat("listen") {
            c.expect("on")?;
            let on_pos = c.pos();
            let on = super::listen::listen_on(c)?;
            let mut l = ImapListener {
                on,
                port: None,
                tls: ImapTls::None,
                pki: None,
                pos,
                on_pos,
                pki_pos: Pos::builtin(),
            };
            let mut tls_set = false;
            while !c.at_end() {
                let opt_pos = c.pos();
                let (w, _) = c.value("an imap listen option")?;
                match w.as_str() {
                    "port" => {
                        if l.port.is_some() {
                            return Err(Diagnostic::error(opt_pos, "port already specified"));
                        }
                        l.port = Some(super::listen::port(c)?);
                    }
                    "tls" | "tls-require" | "imaps" => {
                        if tls_set {
                            return Err(Diagnostic::error(opt_pos, "tls mode already specified"));
                        }
                        tls_set = true;
                        l.tls = match w.as_str() {
                            "tls" => ImapTls::Offer,
                            "tls-require" => ImapTls::Require,
                            _ => ImapTls::Imaps,
                        };
                    }
                    "pki" | "certificate" => {
                        if l.pki.is_some() {
                            return Err(Diagnostic::error(opt_pos, "pki already specified"));
                        }
                        let (name, npos) = c.value("a pki name")?;
                        if w == "certificate" {
                            self.implicit_pki(&name, &npos);
                        }
                        l.pki = Some(name);
                        l.pki_pos = npos;
                    }
                    other => {
                        return Err(Diagnostic::error(
                            opt_pos,
                            format!("unknown imap listen option \"{other}\""),
                        ))
                    }
                }
            }
            if l.tls != ImapTls::None && l.pki.is_none() {
                return Err(Diagnostic::error(
                    l.pos,
                    "imap listener with TLS needs a pki or certificate",
                ));
            }
            self.config.imap.listeners.push(l);
        } else if c.eat("auth") {
            self.config.imap.auth = Some(c.table_ref(false)?);
        } else if c.eat("userbase") {
            self.config.imap.userbase = Some(c.table_ref(false)?);
        } else if c.eat("mailbox") {
            self.config.imap.mailbox = Some(c.value("a mailbox path")?.0);
        } else {
            return Err(c.unexpected("\"listen\", \"auth\", \"userbase\" or \"mailbox\""));
        }
        c.finish()
    }

    /// `dkim sign domain (NAME|<t>) selector NAME key FILE [algorithm A]`.
    pub(crate) fn dkim(&mut self, c: &mut Cursor) -> PResult<()> {
        let pos = c.pos();
        c.expect("dkim")?;
        c.expect("sign")?;
        c.expect("domain")?;
        let domain = c.table_or_value("a domain")?;
        c.expect("selector")?;
        let (selector, spos) = c.value("a selector")?;
        if selector.is_empty()
            || !selector
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.' || ch == '_')
        {
            return Err(Diagnostic::error(
                spos,
                format!("invalid DKIM selector \"{selector}\""),
            ));
        }
        c.expect("key")?;
        let (key, kpos) = c.value("a key file")?;
        let key = relative_to_config(&key, &kpos);
        let algorithm = if c.eat("algorithm") {
            let (a, apos) = c.value("rsa-sha256 or ed25519-sha256")?;
            Some(match a.as_str() {
                "rsa-sha256" | "rsa" => DkimAlgorithm::RsaSha256,
                "ed25519-sha256" | "ed25519" => DkimAlgorithm::Ed25519Sha256,
                _ => {
                    return Err(Diagnostic::error(
                        apos,
                        format!(
                            "unknown DKIM algorithm \"{a}\": expected rsa-sha256 or ed25519-sha256"
                        ),
                    ))
                }
            })
        } else {
            None
        };
        c.finish()?;
        self.config.dkim.push(DkimSign {
            domain,
            selector,
            key,
            algorithm,
            pos,
        });
        Ok(())
    }

    /// `spam junk-score N reject-score M`, `dnsbl ZONE (reject|junk|allow)`,
    /// `greylist delay D [expire D] [allow <t>]`, `screen (fcrdns|helo) (reject|junk)`,
    /// `screen pregreet D`,
    /// `limit (messages|connections|recipients) N per (minute|hour) per (client|user|sender-domain)`.
    pub(crate) fn antispam(&mut self, c: &mut Cursor) -> PResult<()> {
        let pos = c.pos();
        if c.eat("spam") {
            c.expect("junk-score")?;
            let junk = score(c)?;
            c.expect("reject-score")?;
            let reject_pos = c.pos();
            let reject = score(c)?;
            c.finish()?;
            if reject.value() < junk.value() {
                return Err(Diagnostic::error(
                    reject_pos,
                    "reject-score is lower than junk-score",
                ));
            }
            if self.config.antispam.scores.is_some() {
                return Err(Diagnostic::error(pos, "spam scores already specified"));
            }
            self.config.antispam.scores = Some((junk, reject));
        } else if c.eat("dnsbl") {
            let (zone, zpos) = c.value("a DNSBL zone")?;
            if !looks_like_domain(&zone) {
                return Err(Diagnostic::error(
                    zpos,
                    format!("invalid DNSBL zone \"{zone}\""),
                ));
            }
            let verdict = c.one_of(&[
                ("reject", SpamVerdict::Reject),
                ("junk", SpamVerdict::Junk),
                ("allow", SpamVerdict::Allow),
            ])?;
            c.finish()?;
            self.config
                .antispam
                .dnsbl
                .push(Dnsbl { zone, verdict, pos });
        } else if c.eat("greylist") {
            c.expect("delay")?;
            let delay = duration(c)?;
            let expire = if c.eat("expire") {
                Some(duration(c)?)
            } else {
                None
            };
            let allow = if c.eat("allow") {
                Some(c.table_ref(false)?)
            } else {
                None
            };
            c.finish()?;
            if self.config.antispam.greylist.is_some() {
                return Err(Diagnostic::error(pos, "greylist already specified"));
            }
            self.config.antispam.greylist = Some(Greylist {
                delay,
                expire,
                allow,
            });
        } else if c.eat("screen") {
            let screen = &self.config.antispam.screen;
            if c.eat("pregreet") {
                if screen.pregreet.is_some() {
                    return Err(Diagnostic::error(pos, "screen pregreet already specified"));
                }
                let wait_pos = c.pos();
                let wait = duration(c)?;
                if wait > std::time::Duration::from_secs(30) {
                    return Err(Diagnostic::error(
                        wait_pos,
                        "a pregreet wait over 30s makes legitimate clients give up",
                    ));
                }
                c.finish()?;
                self.config.antispam.screen.pregreet = Some((wait, pos));
                return Ok(());
            }
            let fcrdns = c.one_of(&[("fcrdns", true), ("helo", false)])?;
            let verdict =
                c.one_of(&[("reject", SpamVerdict::Reject), ("junk", SpamVerdict::Junk)])?;
            c.finish()?;
            let slot = if fcrdns {
                &mut self.config.antispam.screen.fcrdns
            } else {
                &mut self.config.antispam.screen.helo
            };
            if slot.is_some() {
                return Err(Diagnostic::error(
                    pos,
                    "this screen check is already specified",
                ));
            }
            *slot = Some((verdict, pos));
        } else {
            c.expect("limit")?;
            let what = c.one_of(&[
                ("messages", Counted::Messages),
                ("connections", Counted::Connections),
                ("recipients", Counted::Recipients),
            ])?;
            let (messages, _) = c.number("count", 1u32, 10_000_000)?;
            c.expect("per")?;
            let per = c.one_of(&[("minute", Per::Minute), ("hour", Per::Hour)])?;
            c.expect("per")?;
            let key = c.one_of(&[
                ("client", LimitKey::Client),
                ("user", LimitKey::User),
                ("sender-domain", LimitKey::SenderDomain),
            ])?;
            c.finish()?;
            if what == Counted::Connections && key != LimitKey::Client {
                return Err(Diagnostic::error(
                    pos,
                    "connections can only be limited per client",
                ));
            }
            self.config.antispam.limits.push(RateLimit {
                what,
                messages,
                per,
                key,
                pos,
            });
        }
        Ok(())
    }

    /// Checks of mail from outside (SPEC §5.7): `auth-results (on|off)`, `dmarc reject`,
    /// `spf fail junk`, `dmarc fail junk`. Each may be given once; a policy together with
    /// `auth-results off` is a contradiction, refused whichever line comes first.
    pub(crate) fn inbound_auth(&mut self, c: &mut Cursor) -> PResult<()> {
        let pos = c.pos();
        let inbound = &self.config.inbound;
        let off_pos = match &inbound.enabled {
            Some((false, p)) => Some(p.clone()),
            _ => None,
        };
        let contradiction = |p: &Pos| {
            Diagnostic::error(
                pos.clone(),
                format!("checks of incoming mail are turned off at {p}"),
            )
        };
        if c.eat("auth-results") {
            let on = if c.eat("on") {
                true
            } else if c.eat("off") {
                false
            } else {
                return Err(c.unexpected("\"on\" or \"off\""));
            };
            c.finish()?;
            if let Some((_, p)) = &inbound.enabled {
                return Err(Diagnostic::error(
                    pos,
                    format!("auth-results already specified at {p}"),
                ));
            }
            if !on {
                if let Some(p) = [
                    &inbound.dmarc_reject,
                    &inbound.spf_fail_junk,
                    &inbound.dmarc_fail_junk,
                ]
                .into_iter()
                .flatten()
                .next()
                {
                    return Err(Diagnostic::error(
                        pos,
                        format!("auth-results off contradicts the check policy at {p}"),
                    ));
                }
            }
            self.config.inbound.enabled = Some((on, pos));
            return Ok(());
        }
        type Slot = fn(&mut InboundAuth) -> &mut Option<Pos>;
        let (slot, what): (Slot, &str) = if c.eat("spf") {
            c.expect("fail")?;
            c.expect("junk")?;
            (|i| &mut i.spf_fail_junk, "spf fail junk")
        } else {
            c.expect("dmarc")?;
            if c.eat("reject") {
                (|i| &mut i.dmarc_reject, "dmarc reject")
            } else if c.eat("fail") {
                c.expect("junk")?;
                (|i| &mut i.dmarc_fail_junk, "dmarc fail junk")
            } else {
                return Err(c.unexpected("\"reject\" or \"fail\""));
            }
        };
        c.finish()?;
        if let Some(p) = off_pos {
            return Err(contradiction(&p));
        }
        let slot = slot(&mut self.config.inbound);
        if let Some(p) = slot {
            return Err(Diagnostic::error(
                pos,
                format!("{what} already specified at {p}"),
            ));
        }
        *slot = Some(pos);
        Ok(())
    }

    /// `filter NAME proc-exec "CMD"` / `filter NAME chain { A, B }` /
    /// `filter NAME phase PHASE match [!]CONDITION... DECISION`.
    pub(crate) fn filter(&mut self, c: &mut Cursor) -> PResult<()> {
        let pos = c.pos();
        c.expect("filter")?;
        let (name, npos) = c.value("a filter name")?;
        if self.config.filters.iter().any(|f| f.name == name) {
            return Err(Diagnostic::error(
                npos,
                format!("filter \"{name}\" is already defined"),
            ));
        }
        if name.starts_with('{') || name.is_empty() {
            return Err(Diagnostic::error(
                npos,
                format!("invalid filter name \"{name}\""),
            ));
        }
        let kind = if c.eat("proc-exec") {
            FilterKind::ProcExec(c.value("a command")?.0)
        } else if c.eat("chain") {
            FilterKind::Chain(self.filter_list(c)?)
        } else if c.eat("phase") {
            FilterKind::Builtin(self.builtin_filter(c)?)
        } else {
            return Err(c.unexpected("\"proc-exec\", \"chain\" or \"phase\""));
        };
        c.finish()?;
        self.config.filters.push(Filter { name, kind, pos });
        Ok(())
    }

    /// `{ A, B }`: names of defined filters that are not chains, each once.
    pub(crate) fn filter_list(&mut self, c: &mut Cursor) -> PResult<Vec<String>> {
        let pos = c.pos();
        if !c.eat_kind(&TokenKind::LBrace) {
            return Err(c.unexpected("'{'"));
        }
        let mut names: Vec<String> = Vec::new();
        loop {
            if c.eat_kind(&TokenKind::RBrace) {
                break;
            }
            if c.at_end() {
                return Err(c.unexpected("'}'"));
            }
            let (n, npos) = c.value("a filter name")?;
            match self.config.filters.iter().find(|f| f.name == n) {
                None => {
                    return Err(Diagnostic::error(
                        npos,
                        format!("filter \"{n}\" is not defined"),
                    ))
                }
                Some(f) if matches!(f.kind, FilterKind::Chain(_)) => {
                    return Err(Diagnostic::error(
                        npos,
                        format!("filter \"{n}\" is a chain; a chain cannot be a member of a chain"),
                    ))
                }
                Some(_) => {}
            }
            if names.contains(&n) {
                return Err(Diagnostic::error(
                    npos,
                    format!("filter \"{n}\" is already in this chain"),
                ));
            }
            names.push(n);
            c.eat_kind(&TokenKind::Comma);
        }
        if names.is_empty() {
            return Err(Diagnostic::error(pos, "empty filter chain"));
        }
        Ok(names)
    }

    /// `listen ... filter { A, B }`: an implicit chain of those filters, named by
    /// [`implicit_chain_name`] (the same list twice is the same chain).
    pub(crate) fn implicit_chain(&mut self, c: &mut Cursor) -> PResult<String> {
        let pos = c.pos();
        let names = self.filter_list(c)?;
        let name = implicit_chain_name(&names);
        if !self.config.filters.iter().any(|f| f.name == name) {
            self.config.filters.push(Filter {
                name: name.clone(),
                kind: FilterKind::Chain(names),
                pos,
            });
        }
        Ok(name)
    }

    /// After `phase`: `PHASE match [!]CONDITION... DECISION`.
    fn builtin_filter(&mut self, c: &mut Cursor) -> PResult<Builtin> {
        let (phase_name, ppos) = c.value("a phase name")?;
        let Some(phase) = BuiltinPhase::from_name(&phase_name) else {
            let names: Vec<&str> = BuiltinPhase::ALL.iter().map(|p| p.name()).collect();
            return Err(Diagnostic::error(
                ppos,
                format!(
                    "unknown filter phase \"{phase_name}\", expected one of {}",
                    names.join(", ")
                ),
            ));
        };
        c.expect("match")?;
        let mut conds: Vec<BuiltinCond> = Vec::new();
        loop {
            let cpos = c.pos();
            let negated = c.bang();
            let what = if c.eat("fcrdns") {
                BuiltinTest::Fcrdns
            } else if c.eat("rdns") {
                BuiltinTest::Rdns(self.optional_filter_table(c)?)
            } else if c.eat("src") {
                BuiltinTest::Src(self.filter_table(c)?)
            } else if c.eat("helo") {
                BuiltinTest::Helo(self.filter_table(c)?)
            } else if c.eat("auth") {
                BuiltinTest::Auth(self.optional_filter_table(c)?)
            } else if c.eat("mail-from") {
                BuiltinTest::MailFrom(self.filter_table(c)?)
            } else if c.eat("rcpt-to") {
                BuiltinTest::RcptTo(self.filter_table(c)?)
            } else if negated || conds.is_empty() {
                return Err(c.unexpected(
                    "a condition (fcrdns, rdns, src, helo, auth, mail-from or rcpt-to)",
                ));
            } else {
                break;
            };
            if !phase.allows(&what) {
                return Err(Diagnostic::error(
                    cpos,
                    format!(
                        "condition \"{}\" cannot be tested at phase {}",
                        what.keyword(),
                        phase.name()
                    ),
                ));
            }
            if conds.iter().any(|x| x.what.keyword() == what.keyword()) {
                return Err(Diagnostic::error(
                    cpos,
                    format!("condition \"{}\" already specified", what.keyword()),
                ));
            }
            conds.push(BuiltinCond { negated, what });
        }
        let dpos = c.pos();
        let reply = |c: &mut Cursor, what: &str| -> PResult<String> {
            let (m, mpos) = c.value("a reply such as \"550 go away\"")?;
            if !valid_smtp_reply(&m) {
                return Err(Diagnostic::error(
                    mpos,
                    format!("invalid {what} message \"{m}\": it must start with a 4xx or 5xx code"),
                ));
            }
            Ok(m)
        };
        let decision = if c.eat("bypass") {
            BuiltinDecision::Bypass
        } else if c.eat("disconnect") {
            BuiltinDecision::Disconnect(reply(c, "disconnect")?)
        } else if c.eat("reject") {
            BuiltinDecision::Reject(reply(c, "reject")?)
        } else if c.eat("junk") {
            if phase == BuiltinPhase::Commit {
                return Err(Diagnostic::error(
                    dpos,
                    "junk cannot be decided at phase commit (the message is already filtered)",
                ));
            }
            BuiltinDecision::Junk
        } else if c.eat("rewrite") {
            if !phase.has_parameter() {
                return Err(Diagnostic::error(
                    dpos,
                    format!(
                        "rewrite needs a phase with a parameter (helo, ehlo, mail-from, rcpt-to), not {}",
                        phase.name()
                    ),
                ));
            }
            let (v, vpos) = c.value("a value")?;
            if v.is_empty() || v.contains(['\r', '\n']) {
                return Err(Diagnostic::error(vpos, "invalid rewrite value"));
            }
            BuiltinDecision::Rewrite(v)
        } else if c.eat("report") {
            BuiltinDecision::Report(c.value("a report text")?.0)
        } else {
            return Err(
                c.unexpected("a decision (bypass, disconnect, reject, junk, rewrite or report)")
            );
        };
        Ok(Builtin {
            phase,
            conds,
            decision,
        })
    }

    /// After `rdns` or `auth`: a table if one follows (not a decision or a condition).
    fn optional_filter_table(&mut self, c: &mut Cursor) -> PResult<Option<TableMatch>> {
        const KEYWORDS: [&str; 13] = [
            "bypass",
            "disconnect",
            "reject",
            "junk",
            "rewrite",
            "report",
            "fcrdns",
            "rdns",
            "src",
            "helo",
            "auth",
            "mail-from",
            "rcpt-to",
        ];
        let Some(t) = c.peek() else {
            return Ok(None);
        };
        let table_next = match &t.kind {
            TokenKind::Lt | TokenKind::LBrace | TokenKind::Quoted(_) => true,
            TokenKind::Word(w) => !KEYWORDS.contains(&w.as_str()),
            _ => false,
        };
        if table_next {
            Ok(Some(self.filter_table(c)?))
        } else {
            Ok(None)
        }
    }

    /// `[regex] <t>`, `[regex] { a, b }` or `[regex] VALUE` (a table of one entry, as in
    /// OpenSMTPD). The keys of an inline table must be valid regular expressions.
    fn filter_table(&mut self, c: &mut Cursor) -> PResult<TableMatch> {
        let regex = c.eat("regex");
        let pos = c.pos();
        let table = match c.peek().map(|t| &t.kind) {
            Some(TokenKind::Lt) => c.table_ref(false)?,
            Some(TokenKind::LBrace) => self.anonymous_table(c)?,
            _ => {
                let (v, vpos) = c.value("a table such as <name> or { value, ... }")?;
                self.generated += 1;
                let mut name = format!("anon{}", self.generated);
                while self.config.table(&name).is_some() {
                    self.generated += 1;
                    name = format!("anon{}", self.generated);
                }
                self.config.tables.push(TableDecl {
                    name: name.clone(),
                    source: TableSource::InlineList(vec![(v, vpos)]),
                    pos: pos.clone(),
                    source_pos: pos.clone(),
                });
                crate::model::TableRef { name, pos }
            }
        };
        if regex {
            if let Some(decl) = self.config.table(&table.name) {
                let keys: Vec<(&String, &Pos)> = match &decl.source {
                    TableSource::InlineList(l) => l.iter().map(|(k, p)| (k, p)).collect(),
                    TableSource::InlineMap(m) => m.iter().map(|(k, _, p)| (k, p)).collect(),
                    _ => Vec::new(),
                };
                for (k, kpos) in keys {
                    if let Err(e) = regex_automata::meta::Regex::new(k) {
                        return Err(Diagnostic::error(
                            kpos.clone(),
                            format!("invalid regular expression \"{k}\": {e}"),
                        ));
                    }
                }
            }
        }
        Ok(TableMatch { regex, table })
    }
}

/// `file:PATH`, `db:PATH`, `passwd:PATH` or a bare absolute or relative path.
fn table_source(spec: &str, pos: &Pos) -> PResult<TableSource> {
    if let Some((kind, rest)) = spec.split_once(':') {
        let path = relative_to_config(rest, pos);
        match kind {
            "file" => return Ok(TableSource::File(path)),
            "db" => return Ok(TableSource::Db(path)),
            "passwd" => return Ok(TableSource::Passwd(path)),
            _ if !kind.contains('/') => {
                return Err(Diagnostic::error(
                    pos.clone(),
                    format!("unsupported table type \"{kind}:\": expected file:, db: or passwd:"),
                ))
            }
            _ => {}
        }
    }
    if spec.is_empty() {
        return Err(Diagnostic::error(pos.clone(), "empty table path"));
    }
    Ok(TableSource::File(relative_to_config(spec, pos)))
}

/// A relative path in a configuration file is relative to that file's directory (as
/// `include` is), made absolute so that it means the same wherever it is printed.
pub(crate) fn relative_to_config(path: &str, pos: &Pos) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() || path.is_empty() {
        return p;
    }
    let dir = pos.file.parent().unwrap_or(std::path::Path::new(""));
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf())
    };
    dir.join(p)
}

/// `{ a, b }` (a list) or `{ k = v, ... }` (a mapping); commas are optional between entries.
fn inline_table(c: &mut Cursor) -> PResult<TableSource> {
    if !c.eat_kind(&TokenKind::LBrace) {
        return Err(c.unexpected("'{'"));
    }
    let mut list = Vec::new();
    let mut map = Vec::new();
    loop {
        if c.eat_kind(&TokenKind::RBrace) {
            break;
        }
        if c.at_end() {
            return Err(c.unexpected("'}'"));
        }
        let (k, kpos) = c.value("a table entry")?;
        if c.eat_kind(&TokenKind::Eq) {
            let (v, _) = c.value("a value")?;
            if !list.is_empty() {
                return Err(Diagnostic::error(
                    kpos,
                    "an inline table is either a list or a mapping, not both",
                ));
            }
            map.push((k, v, kpos));
        } else {
            if !map.is_empty() {
                return Err(Diagnostic::error(
                    kpos,
                    "an inline table is either a list or a mapping, not both",
                ));
            }
            list.push((k, kpos));
        }
        c.eat_kind(&TokenKind::Comma);
    }
    Ok(if map.is_empty() {
        TableSource::InlineList(list)
    } else {
        TableSource::InlineMap(map)
    })
}

fn duration(c: &mut Cursor) -> PResult<std::time::Duration> {
    let (s, pos) = c.value("a duration such as 4d")?;
    parse_duration(&s).ok_or_else(|| {
        Diagnostic::error(
            pos,
            format!("invalid duration \"{s}\": expected e.g. 30s, 10m, 4h, 4d"),
        )
    })
}

fn size(c: &mut Cursor) -> PResult<u64> {
    let (s, pos) = c.value("a size such as 35M")?;
    parse_size(&s).ok_or_else(|| {
        Diagnostic::error(
            pos,
            format!("invalid size \"{s}\": expected e.g. 35M, 512K"),
        )
    })
}

fn score(c: &mut Cursor) -> PResult<Score> {
    let (s, pos) = c.value("a score")?;
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Score(s)),
        _ => Err(Diagnostic::error(
            pos,
            format!("invalid score \"{s}\": expected a number"),
        )),
    }
}

/// `1.2.3.4`, `1.2.3.4:53`, `::1`, `[::1]:53`.
pub(crate) fn parse_socket_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, default_port));
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, default_port));
    }
    None
}

pub(crate) fn looks_like_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|ch| ch.is_alphanumeric() || ch == '-' || ch == '_')
        })
}
