//! `check --print`: the rule model written back in the modern `action`/`match` grammar.
//!
//! Invariant (tested): `parse(print(c)) == c` for every configuration `c` that parses without
//! errors, so the output is a faithful migration of a legacy file.

use std::fmt::Write;

use crate::model::{
    ActionKind, Builtin, BuiltinDecision, Cond, Config, Counted, Expansion, FilterKind, For, From,
    ImapTls, LimitKey, ListenAuth, ListenOn, ListenTls, Per, RelayTls, SpamVerdict, TableOrValue,
    TableRef, Verdict,
};
use crate::parser::{format_duration, format_size};
use crate::table::TableSource;

/// A value as a token: bare when it is plainly a word, else quoted.
fn q(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.starts_with('$')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@+%~".contains(c));
    if plain {
        s.to_string()
    } else {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }
}

/// A value that could be mistaken for a keyword where it stands: always quoted.
fn qq(s: &str) -> String {
    let mut out = q(s);
    if !out.starts_with('"') {
        out = format!("\"{out}\"");
    }
    out
}

fn tref(t: &TableRef) -> String {
    format!("<{}>", q(&t.name))
}

fn filter_list(names: &[String]) -> String {
    let names: Vec<String> = names.iter().map(|n| q(n)).collect();
    format!("{{ {} }}", names.join(", "))
}

/// `phase PHASE match CONDITIONS DECISION`.
fn builtin(b: &Builtin) -> String {
    let mut out = format!("phase {} match", b.phase.name());
    for cond in &b.conds {
        out.push(' ');
        if cond.negated {
            out.push('!');
        }
        out.push_str(cond.what.keyword());
        if let Some(t) = cond.what.table() {
            if t.regex {
                out.push_str(" regex");
            }
            let _ = write!(out, " {}", tref(&t.table));
        }
    }
    let _ = match &b.decision {
        BuiltinDecision::Bypass => write!(out, " bypass"),
        BuiltinDecision::Junk => write!(out, " junk"),
        BuiltinDecision::Disconnect(m) => write!(out, " disconnect {}", qq(m)),
        BuiltinDecision::Reject(m) => write!(out, " reject {}", qq(m)),
        BuiltinDecision::Rewrite(m) => write!(out, " rewrite {}", qq(m)),
        BuiltinDecision::Report(m) => write!(out, " report {}", qq(m)),
    };
    out
}

fn tov(v: &TableOrValue) -> String {
    match v {
        TableOrValue::Table(t) => tref(t),
        TableOrValue::Value(s) => qq(s),
    }
}

fn bang<T>(c: &Cond<T>) -> &'static str {
    if c.negated {
        "!"
    } else {
        ""
    }
}

fn on(o: &ListenOn) -> String {
    match o {
        ListenOn::Any => "any".into(),
        ListenOn::Socket => "socket".into(),
        ListenOn::Name(n) if n == "any" || n == "socket" => qq(n),
        ListenOn::Name(n) => q(n),
    }
}

pub fn print_modern(c: &Config) -> String {
    let mut o = String::new();
    // `write!` into a String cannot fail; the results are ignored deliberately.
    for t in &c.tables {
        let _ = match &t.source {
            TableSource::File(p) => writeln!(
                o,
                "table {} {}",
                q(&t.name),
                q(&format!("file:{}", p.display()))
            ),
            TableSource::Db(p) => writeln!(
                o,
                "table {} {}",
                q(&t.name),
                q(&format!("db:{}", p.display()))
            ),
            TableSource::Passwd(p) => writeln!(
                o,
                "table {} {}",
                q(&t.name),
                q(&format!("passwd:{}", p.display()))
            ),
            TableSource::InlineList(l) => {
                let items: Vec<String> = l.iter().map(|(v, _)| qq(v)).collect();
                writeln!(o, "table {} {{ {} }}", q(&t.name), items.join(", "))
            }
            TableSource::InlineMap(m) => {
                let items: Vec<String> = m
                    .iter()
                    .map(|(k, v, _)| format!("{} = {}", qq(k), qq(v)))
                    .collect();
                writeln!(o, "table {} {{ {} }}", q(&t.name), items.join(", "))
            }
        };
    }
    for p in &c.pkis {
        if let Some(cert) = &p.cert {
            let _ = writeln!(
                o,
                "pki {} cert {}",
                q(&p.name),
                qq(&cert.display().to_string())
            );
        }
        if let Some(key) = &p.key {
            let _ = writeln!(
                o,
                "pki {} key {}",
                q(&p.name),
                qq(&key.display().to_string())
            );
        }
    }
    for ca in &c.cas {
        let _ = writeln!(
            o,
            "ca {} cert {}",
            q(&ca.name),
            qq(&ca.cert.display().to_string())
        );
    }
    if let Some(n) = c.smtp.max_message_size {
        let _ = writeln!(o, "smtp max-message-size {}", format_size(n));
    }
    if let Some(n) = c.smtp.max_rcpt {
        let _ = writeln!(o, "smtp limit max-rcpt {n}");
    }
    if let Some(d) = c.smtp.sub_addr_delim {
        let _ = writeln!(o, "smtp sub-addr-delim {}", qq(&d.to_string()));
    }
    if let Some(t) = c.queue.ttl {
        let _ = writeln!(o, "queue ttl {}", format_duration(t));
    }
    if !c.queue.warn_intervals.is_empty() {
        let l: Vec<String> = c
            .queue
            .warn_intervals
            .iter()
            .map(|d| format_duration(*d))
            .collect();
        let _ = writeln!(o, "bounce warn-interval {}", l.join(", "));
    }
    if !c.resolvers.is_empty() {
        let l: Vec<String> = c.resolvers.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(o, "resolver {}", l.join(" "));
    }
    for f in &c.filters {
        if f.is_implicit() {
            // Written inline where a listener uses it.
            continue;
        }
        let _ = match &f.kind {
            FilterKind::ProcExec(cmd) => writeln!(o, "filter {} proc-exec {}", q(&f.name), qq(cmd)),
            FilterKind::Chain(l) => writeln!(o, "filter {} chain {}", q(&f.name), filter_list(l)),
            FilterKind::Builtin(b) => writeln!(o, "filter {} {}", q(&f.name), builtin(b)),
        };
    }
    for l in &c.listeners {
        let mut line = format!("listen on {}", on(&l.on));
        match l.family {
            Some(crate::model::Family::Inet4) => line.push_str(" family inet4"),
            Some(crate::model::Family::Inet6) => line.push_str(" family inet6"),
            None => {}
        }
        if let Some(p) = l.port {
            let _ = write!(line, " port {p}");
        }
        match l.tls {
            ListenTls::None => {}
            ListenTls::Offer => line.push_str(" tls"),
            ListenTls::Require { verify } => line.push_str(if verify {
                " tls-require verify"
            } else {
                " tls-require"
            }),
            ListenTls::Smtps { verify } => {
                line.push_str(if verify { " smtps verify" } else { " smtps" })
            }
        }
        if let Some(p) = &l.pki {
            let _ = write!(line, " pki {}", q(p));
        }
        if let Some(ListenAuth { optional, table }) = &l.auth {
            line.push_str(if *optional { " auth-optional" } else { " auth" });
            if let Some(t) = table {
                let _ = write!(line, " {}", tref(t));
            }
        }
        if let Some(t) = &l.tag {
            let _ = write!(line, " tag {}", q(t));
        }
        if let Some(h) = &l.hostname {
            let _ = write!(line, " hostname {}", qq(h));
        }
        if let Some((t, masq)) = &l.senders {
            let _ = write!(
                line,
                " senders {}{}",
                tref(t),
                if *masq { " masquerade" } else { "" }
            );
        }
        if l.mask_src {
            line.push_str(" mask-src");
        }
        if let Some(f) = &l.filter {
            match c.filters.iter().find(|x| &x.name == f) {
                Some(x) if x.is_implicit() => {
                    if let FilterKind::Chain(m) = &x.kind {
                        let _ = write!(line, " filter {}", filter_list(m));
                    }
                }
                _ => {
                    let _ = write!(line, " filter {}", q(f));
                }
            }
        }
        let _ = writeln!(o, "{line}");
    }
    for l in &c.imap.listeners {
        let mut line = format!("imap listen on {}", on(&l.on));
        if let Some(p) = l.port {
            let _ = write!(line, " port {p}");
        }
        line.push_str(match l.tls {
            ImapTls::None => "",
            ImapTls::Offer => " tls",
            ImapTls::Require => " tls-require",
            ImapTls::Imaps => " imaps",
        });
        if let Some(p) = &l.pki {
            let _ = write!(line, " pki {}", q(p));
        }
        let _ = writeln!(o, "{line}");
    }
    if let Some(t) = &c.imap.auth {
        let _ = writeln!(o, "imap auth {}", tref(t));
    }
    if let Some(t) = &c.imap.userbase {
        let _ = writeln!(o, "imap userbase {}", tref(t));
    }
    if let Some(m) = &c.imap.mailbox {
        let _ = writeln!(o, "imap mailbox {}", qq(m));
    }
    for d in &c.dkim {
        let _ = write!(
            o,
            "dkim sign domain {} selector {} key {}",
            tov(&d.domain),
            q(&d.selector),
            qq(&d.key.display().to_string())
        );
        if let Some(a) = d.algorithm {
            let _ = write!(o, " algorithm {}", a.as_str());
        }
        o.push('\n');
    }
    let a = &c.antispam;
    if let Some((j, r)) = &a.scores {
        let _ = writeln!(o, "spam junk-score {} reject-score {}", j.0, r.0);
    }
    let verdict = |v: &SpamVerdict| match v {
        SpamVerdict::Reject => "reject",
        SpamVerdict::Junk => "junk",
        SpamVerdict::Allow => "allow",
    };
    for d in &a.dnsbl {
        let _ = writeln!(o, "dnsbl {} {}", q(&d.zone), verdict(&d.verdict));
    }
    if let Some((v, _)) = &a.screen.fcrdns {
        let _ = writeln!(o, "screen fcrdns {}", verdict(v));
    }
    if let Some((v, _)) = &a.screen.helo {
        let _ = writeln!(o, "screen helo {}", verdict(v));
    }
    if let Some((d, _)) = &a.screen.pregreet {
        let _ = writeln!(o, "screen pregreet {}", format_duration(*d));
    }
    if let Some(g) = &a.greylist {
        let _ = write!(o, "greylist delay {}", format_duration(g.delay));
        if let Some(e) = g.expire {
            let _ = write!(o, " expire {}", format_duration(e));
        }
        if let Some(t) = &g.allow {
            let _ = write!(o, " allow {}", tref(t));
        }
        o.push('\n');
    }
    for l in &a.limits {
        let per = match l.per {
            Per::Minute => "minute",
            Per::Hour => "hour",
        };
        let key = match l.key {
            LimitKey::Client => "client",
            LimitKey::User => "user",
            LimitKey::SenderDomain => "sender-domain",
        };
        let what = match l.what {
            Counted::Messages => "messages",
            Counted::Connections => "connections",
            Counted::Recipients => "recipients",
        };
        let _ = writeln!(o, "limit {what} {} per {per} per {key}", l.messages);
    }
    let inbound = &c.inbound;
    if let Some((on, _)) = &inbound.enabled {
        let _ = writeln!(o, "auth-results {}", if *on { "on" } else { "off" });
    }
    if inbound.dmarc_reject.is_some() {
        o.push_str("dmarc reject\n");
    }
    if inbound.spf_fail_junk.is_some() {
        o.push_str("spf fail junk\n");
    }
    if inbound.dmarc_fail_junk.is_some() {
        o.push_str("dmarc fail junk\n");
    }
    for act in &c.actions {
        let mut line = format!("action {} ", qq(&act.name));
        match &act.kind {
            ActionKind::Maildir { path, junk } => {
                line.push_str("maildir");
                if let Some(p) = path {
                    let _ = write!(line, " {}", qq(p));
                }
                if *junk {
                    line.push_str(" junk");
                }
            }
            ActionKind::Mbox => line.push_str("mbox"),
            ActionKind::Mda(cmd) => {
                let _ = write!(line, "mda {}", qq(cmd));
            }
            ActionKind::Lmtp(d) => {
                let _ = write!(line, "lmtp {}", qq(d));
            }
            ActionKind::ForwardOnly => line.push_str("forward-only"),
            ActionKind::ExpandOnly => line.push_str("expand-only"),
            ActionKind::Relay(r) => {
                line.push_str("relay");
                match &r.backup {
                    Some(Some(mx)) => {
                        let _ = write!(line, " backup mx {}", qq(mx));
                    }
                    Some(None) => line.push_str(" backup"),
                    None => {}
                }
                if let Some(h) = &r.host {
                    let _ = write!(line, " host {}", qq(&h.to_string()));
                }
                if let Some(t) = &r.auth {
                    let _ = write!(line, " auth {}", tref(t));
                }
                if let Some(h) = &r.helo {
                    let _ = write!(line, " helo {}", qq(h));
                }
                match r.tls {
                    RelayTls::Opportunistic => {}
                    RelayTls::Required => line.push_str(" tls no-verify"),
                    RelayTls::RequiredVerify => line.push_str(" tls"),
                }
                if let Some(s) = &r.src {
                    let _ = write!(line, " src {}", tov(s));
                }
                if let Some(p) = &r.pki {
                    let _ = write!(line, " pki {}", qq(p));
                }
                if let Some(m) = &r.mail_from {
                    let _ = write!(line, " mail-from {}", qq(m));
                }
            }
        }
        match &act.expansion {
            Some(Expansion::Alias(t)) => {
                let _ = write!(line, " alias {}", tref(t));
            }
            Some(Expansion::Virtual(t)) => {
                let _ = write!(line, " virtual {}", tref(t));
            }
            None => {}
        }
        if let Some(t) = &act.userbase {
            let _ = write!(line, " userbase {}", tref(t));
        }
        if let Some(u) = &act.user {
            let _ = write!(line, " user {}", qq(u));
        }
        let _ = writeln!(o, "{line}");
    }
    for r in &c.rules {
        let mut line = String::from("match");
        let from = match &r.from.value {
            From::Any => "any".to_string(),
            From::Local => "local".to_string(),
            From::Socket => "socket".to_string(),
            From::Auth(None) => "auth".to_string(),
            From::Auth(Some(v)) => format!("auth {}", tov(v)),
            From::Src(v) => format!("src {}", tov(v)),
            From::MailFrom(v) => format!("mail-from {}", tov(v)),
            From::Rdns(None) => "rdns".to_string(),
            From::Rdns(Some(v)) => format!("rdns {}", tov(v)),
        };
        let _ = write!(line, " {}from {from}", bang(&r.from));
        let for_ = match &r.for_.value {
            For::Any => "any".to_string(),
            For::Local => "local".to_string(),
            For::Domain(v) => format!("domain {}", tov(v)),
            For::RcptTo(v) => format!("rcpt-to {}", tov(v)),
        };
        let _ = write!(line, " {}for {for_}", bang(&r.for_));
        if let Some(a) = &r.auth {
            let _ = write!(line, " {}auth", bang(a));
            if let Some(v) = &a.value {
                let _ = write!(line, " {}", tov(v));
            }
        }
        if let Some(t) = &r.tag {
            let _ = write!(line, " {}tag {}", bang(t), q(&t.value));
        }
        if let Some(t) = &r.tls {
            let _ = write!(line, " {}tls", bang(t));
        }
        for (kw, c) in [
            ("mail-from", &r.mail_from),
            ("rcpt-to", &r.rcpt_to),
            ("helo", &r.helo),
        ] {
            if let Some(c) = c {
                let _ = write!(line, " {}{kw} {}", bang(c), tov(&c.value));
            }
        }
        match &r.verdict {
            Verdict::Action(a) => {
                let _ = write!(line, " action {}", qq(a));
            }
            Verdict::Reject => line.push_str(" reject"),
        }
        let _ = writeln!(o, "{line}");
    }
    o
}
