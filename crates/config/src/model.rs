//! The one internal rule model that both grammars compile into.
//!
//! Invariants: rules are evaluated in order, per recipient, first match wins, no match is a
//! rejection; every rule names an action that exists in `actions` (or rejects); every table a
//! rule, action or listener names is declared in `tables`. Positions (`Pos`) are kept for
//! messages and compare equal everywhere, so a configuration printed by `check --print` and
//! read again is `==` to the one it came from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::diag::Pos;
use crate::table::TableDecl;

/// Which rule grammar a file used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grammar {
    /// OpenSMTPD 5.x: `accept`/`reject` rules with their action inline.
    Legacy,
    /// OpenSMTPD 6.4+: named `action`s and `match` rules.
    Modern,
}

/// A reference to a declared table, `<name>` (or a bare `name` in legacy option positions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRef {
    pub name: String,
    pub pos: Pos,
}

/// Either a table or one literal value (`domain example.org` vs `domain <domains>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableOrValue {
    Table(TableRef),
    Value(String),
}

/// A condition that may be negated with `!`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond<T> {
    pub negated: bool,
    pub value: T,
}

impl<T> Cond<T> {
    pub fn yes(value: T) -> Self {
        Cond {
            negated: false,
            value,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub tables: Vec<TableDecl>,
    pub pkis: Vec<Pki>,
    pub cas: Vec<Ca>,
    pub listeners: Vec<Listener>,
    pub actions: Vec<Action>,
    pub rules: Vec<Rule>,
    pub smtp: SmtpOptions,
    pub queue: QueueOptions,
    pub resolvers: Vec<SocketAddr>,
    pub imap: ImapOptions,
    pub dkim: Vec<DkimSign>,
    pub antispam: AntiSpam,
    pub inbound: InboundAuth,
    pub filters: Vec<Filter>,
}

impl Config {
    pub fn empty() -> Self {
        Config {
            tables: Vec::new(),
            pkis: Vec::new(),
            cas: Vec::new(),
            listeners: Vec::new(),
            actions: Vec::new(),
            rules: Vec::new(),
            smtp: SmtpOptions::default(),
            queue: QueueOptions::default(),
            resolvers: Vec::new(),
            imap: ImapOptions::default(),
            dkim: Vec::new(),
            antispam: AntiSpam::default(),
            inbound: InboundAuth::default(),
            filters: Vec::new(),
        }
    }

    pub fn table(&self, name: &str) -> Option<&TableDecl> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn action(&self, name: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.name == name)
    }

    pub fn pki(&self, name: &str) -> Option<&Pki> {
        self.pkis.iter().find(|p| p.name == name)
    }
}

/// `pki NAME cert FILE` + `pki NAME key FILE`, or the legacy `certificate NAME`
/// (`NAME.crt` and `NAME.key` in the pki directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pki {
    pub name: String,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub pos: Pos,
}

/// `ca NAME cert FILE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ca {
    pub name: String,
    pub cert: PathBuf,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenOn {
    /// An interface (`lo`, `eth0`), a host name or an address: resolved when checked.
    Name(String),
    Any,
    /// The local submission socket (`sendmail`).
    Socket,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Inet4,
    Inet6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenTls {
    /// No STARTTLS.
    None,
    /// `tls`: STARTTLS offered.
    Offer,
    /// `tls-require [verify]`: nothing but STARTTLS before TLS.
    Require { verify: bool },
    /// `smtps [verify]`: implicit TLS (port 465).
    Smtps { verify: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAuth {
    /// `auth-optional`: authentication offered, not required.
    pub optional: bool,
    /// The credentials table; None means the system's users.
    pub table: Option<TableRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub on: ListenOn,
    pub family: Option<Family>,
    pub port: Option<u16>,
    pub tls: ListenTls,
    pub pki: Option<String>,
    pub auth: Option<ListenAuth>,
    pub tag: Option<String>,
    pub hostname: Option<String>,
    pub senders: Option<(TableRef, bool)>,
    pub mask_src: bool,
    pub filter: Option<String>,
    pub pos: Pos,
    /// Where `on` was written (for "no such interface").
    pub on_pos: Pos,
    /// Where the pki or certificate name was written.
    pub pki_pos: Pos,
}

impl Listener {
    /// The port this listener binds: the one given, or 465 for `smtps`, else 25.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            ListenTls::Smtps { .. } => 465,
            _ => 25,
        })
    }
}

/// How an action turns a recipient into mailboxes before delivering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expansion {
    Alias(TableRef),
    Virtual(TableRef),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub name: String,
    pub kind: ActionKind,
    pub expansion: Option<Expansion>,
    pub userbase: Option<TableRef>,
    pub user: Option<String>,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionKind {
    /// `maildir [PATH] [junk]`; PATH None means `~/Maildir`.
    Maildir {
        path: Option<String>,
        junk: bool,
    },
    /// `mbox`: `/var/mail/USER`.
    Mbox,
    /// `mda CMD`: `/bin/sh -c CMD` as the user.
    Mda(String),
    /// `lmtp HOST:PORT|SOCKET`.
    Lmtp(String),
    ForwardOnly,
    ExpandOnly,
    Relay(Box<Relay>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayTls {
    /// STARTTLS when offered, no verification (the internet's default).
    Opportunistic,
    /// `tls no-verify` (legacy `relay tls`): TLS required, certificate not verified.
    Required,
    /// `tls` (legacy `relay tls verify`): TLS required and the certificate verified.
    RequiredVerify,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    /// `backup [mx NAME]`: Some(None) = backup for this host's own name.
    pub backup: Option<Option<String>>,
    /// `host URL` (legacy `via URL`): a smarthost.
    pub host: Option<RelayUrl>,
    /// `auth <secrets>` for the smarthost.
    pub auth: Option<TableRef>,
    pub helo: Option<String>,
    pub tls: RelayTls,
    pub src: Option<TableOrValue>,
    pub pki: Option<String>,
    pub mail_from: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayScheme {
    /// `smtp://`: plain SMTP, opportunistic STARTTLS.
    Smtp,
    /// `smtp+tls://` (also `tls://`): STARTTLS required.
    SmtpTls,
    /// `smtps://` (also `ssl://`): implicit TLS.
    Smtps,
    /// `lmtp://`.
    Lmtp,
}

impl RelayScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            RelayScheme::Smtp => "smtp",
            RelayScheme::SmtpTls => "smtp+tls",
            RelayScheme::Smtps => "smtps",
            RelayScheme::Lmtp => "lmtp",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            RelayScheme::Smtps => 465,
            RelayScheme::Lmtp => 24,
            _ => 25,
        }
    }
}

/// `SCHEME://[LABEL@]HOST[:PORT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayUrl {
    pub scheme: RelayScheme,
    pub label: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl std::fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        if let Some(l) = &self.label {
            write!(f, "{l}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Where a message comes from, as a rule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum From {
    Any,
    /// Loopback connections and the local socket.
    Local,
    Socket,
    /// An authenticated session (optionally: as one of these users).
    Auth(Option<TableOrValue>),
    /// A client address or network.
    Src(TableOrValue),
    MailFrom(TableOrValue),
    Rdns(Option<TableOrValue>),
}

/// Where a recipient goes, as a rule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum For {
    Any,
    /// `localhost`, this host's name and the names of its listen addresses.
    Local,
    Domain(TableOrValue),
    RcptTo(TableOrValue),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Action(String),
    Reject,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub from: Cond<From>,
    pub for_: Cond<For>,
    /// `auth [<t>]`: the session is authenticated (as one of these users).
    pub auth: Option<Cond<Option<TableOrValue>>>,
    pub tag: Option<Cond<String>>,
    /// `tls`: the session is encrypted.
    pub tls: Option<Cond<()>>,
    pub mail_from: Option<Cond<TableOrValue>>,
    pub rcpt_to: Option<Cond<TableOrValue>>,
    pub helo: Option<Cond<TableOrValue>>,
    pub verdict: Verdict,
    pub pos: Pos,
    pub verdict_pos: Pos,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmtpOptions {
    pub max_message_size: Option<u64>,
    pub max_rcpt: Option<u32>,
    pub sub_addr_delim: Option<char>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueOptions {
    pub ttl: Option<Duration>,
    pub warn_intervals: Vec<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImapTls {
    None,
    /// STARTTLS offered.
    Offer,
    /// STARTTLS required before LOGIN (LOGINDISABLED).
    Require,
    /// Implicit TLS (993).
    Imaps,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapListener {
    pub on: ListenOn,
    pub port: Option<u16>,
    pub tls: ImapTls,
    pub pki: Option<String>,
    pub pos: Pos,
    pub on_pos: Pos,
    pub pki_pos: Pos,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImapOptions {
    pub listeners: Vec<ImapListener>,
    pub auth: Option<TableRef>,
    pub userbase: Option<TableRef>,
    pub mailbox: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DkimAlgorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl DkimAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            DkimAlgorithm::RsaSha256 => "rsa-sha256",
            DkimAlgorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimSign {
    pub domain: TableOrValue,
    pub selector: String,
    pub key: PathBuf,
    pub algorithm: Option<DkimAlgorithm>,
    pub pos: Pos,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpamVerdict {
    Reject,
    Junk,
    /// `dnsbl ZONE allow`: a client listed there skips the DNSBL, screen and greylist checks.
    Allow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    Minute,
    Hour,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKey {
    Client,
    User,
    SenderDomain,
}

/// What a `limit` line counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    Messages,
    Connections,
    Recipients,
}

/// `limit (messages|connections|recipients) N per (minute|hour) per (client|user|sender-domain)`
/// (connections only per client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub what: Counted,
    /// N: at most this many in the window.
    pub messages: u32,
    pub per: Per,
    pub key: LimitKey,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dnsbl {
    pub zone: String,
    pub verdict: SpamVerdict,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greylist {
    pub delay: Duration,
    pub expire: Option<Duration>,
    /// `allow <t>`: client networks, and sender domains that skip greylisting when SPF passes.
    pub allow: Option<TableRef>,
}

/// `screen fcrdns (reject|junk)`, `screen helo (reject|junk)`, `screen pregreet DURATION`:
/// connection checks of clients that are neither authenticated nor local.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Screen {
    pub fcrdns: Option<(SpamVerdict, Pos)>,
    pub helo: Option<(SpamVerdict, Pos)>,
    /// Wait this long before the greeting; a client that talks first is refused.
    pub pregreet: Option<(Duration, Pos)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AntiSpam {
    /// `spam junk-score N reject-score M`.
    pub scores: Option<(Score, Score)>,
    pub dnsbl: Vec<Dnsbl>,
    pub greylist: Option<Greylist>,
    pub limits: Vec<RateLimit>,
    pub screen: Screen,
}

/// Checks of mail from outside (SPEC §5.7), each with the line that set it:
/// `auth-results (on|off)`, `dmarc reject`, `spf fail junk`, `dmarc fail junk`.
/// The checks run unless `auth-results off`; the three policies are off unless given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboundAuth {
    /// `auth-results on|off`: Some(false) turns the checks (and the header) off.
    pub enabled: Option<(bool, Pos)>,
    /// `dmarc reject`: a DMARC failure of a domain whose policy is `p=reject` gets 550.
    pub dmarc_reject: Option<Pos>,
    /// `spf fail junk`: an SPF `fail` is marked for the junk folder.
    pub spf_fail_junk: Option<Pos>,
    /// `dmarc fail junk`: a DMARC failure of a domain whose policy is `quarantine` or
    /// `reject` (and that `dmarc reject` did not refuse) is marked for the junk folder.
    pub dmarc_fail_junk: Option<Pos>,
}

impl InboundAuth {
    /// Whether mail from outside is checked (on unless `auth-results off`).
    pub fn checks(&self) -> bool {
        self.enabled.as_ref().is_none_or(|(on, _)| *on)
    }
}

/// A spam score as written (kept as text so that the model stays `Eq` and prints back
/// unchanged); `value()` is the number, validated by the parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Score(pub String);

impl Score {
    pub fn value(&self) -> f64 {
        self.0.parse().unwrap_or(f64::NAN)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterKind {
    ProcExec(String),
    Chain(Vec<String>),
    /// `filter NAME phase PHASE match CONDITIONS DECISION`: evaluated in-process.
    Builtin(Builtin),
}

/// A built-in filter (smtpd.conf(5) "filter filter-name phase phase-name match conditions
/// decision"): at `phase`, if every condition holds, `decision` applies.
///
/// OpenSMTPD's grammar takes exactly one condition; ownmail also takes several, which must
/// all hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Builtin {
    pub phase: BuiltinPhase,
    pub conds: Vec<BuiltinCond>,
    pub decision: BuiltinDecision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinPhase {
    Connect,
    Helo,
    Ehlo,
    Starttls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    Commit,
}

impl BuiltinPhase {
    pub const ALL: [BuiltinPhase; 9] = [
        BuiltinPhase::Connect,
        BuiltinPhase::Helo,
        BuiltinPhase::Ehlo,
        BuiltinPhase::Starttls,
        BuiltinPhase::Auth,
        BuiltinPhase::MailFrom,
        BuiltinPhase::RcptTo,
        BuiltinPhase::Data,
        BuiltinPhase::Commit,
    ];

    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinPhase::Connect => "connect",
            BuiltinPhase::Helo => "helo",
            BuiltinPhase::Ehlo => "ehlo",
            BuiltinPhase::Starttls => "starttls",
            BuiltinPhase::Auth => "auth",
            BuiltinPhase::MailFrom => "mail-from",
            BuiltinPhase::RcptTo => "rcpt-to",
            BuiltinPhase::Data => "data",
            BuiltinPhase::Commit => "commit",
        }
    }

    pub fn from_name(s: &str) -> Option<BuiltinPhase> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Whether the session knows `test`'s value at this phase (OpenSMTPD's parse.y: the
    /// connection facts everywhere; HELO from `helo` on; the user from `auth` on; the
    /// sender from `mail-from` on; the recipient at `rcpt-to` only).
    pub fn allows(self, test: &BuiltinTest) -> bool {
        use BuiltinPhase as P;
        match test {
            BuiltinTest::Fcrdns | BuiltinTest::Rdns(_) | BuiltinTest::Src(_) => true,
            BuiltinTest::Helo(_) => self != P::Connect,
            BuiltinTest::Auth(_) => !matches!(self, P::Connect | P::Helo | P::Ehlo | P::Starttls),
            BuiltinTest::MailFrom(_) => {
                matches!(self, P::MailFrom | P::RcptTo | P::Data | P::Commit)
            }
            BuiltinTest::RcptTo(_) => self == P::RcptTo,
        }
    }

    /// Whether the phase has a parameter that `rewrite` can replace.
    pub fn has_parameter(self) -> bool {
        matches!(
            self,
            BuiltinPhase::Helo | BuiltinPhase::Ehlo | BuiltinPhase::MailFrom | BuiltinPhase::RcptTo
        )
    }
}

/// `[!]TEST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltinCond {
    pub negated: bool,
    pub what: BuiltinTest,
}

/// `[regex] <table>`: the value is looked up in the table, or (with `regex`) searched for
/// each key as a regular expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableMatch {
    pub regex: bool,
    pub table: TableRef,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuiltinTest {
    /// `fcrdns`: the client's reverse name resolves back to its address.
    Fcrdns,
    /// `rdns`: the client has a reverse name; `rdns [regex] <t>`: and it is in the table.
    Rdns(Option<TableMatch>),
    /// `src [regex] <t>`: the client's address is in a network of the table.
    Src(TableMatch),
    /// `helo [regex] <t>`: the HELO/EHLO name.
    Helo(TableMatch),
    /// `auth`: the session is authenticated; `auth [regex] <t>`: as a user of the table.
    Auth(Option<TableMatch>),
    /// `mail-from [regex] <t>`: the sender address.
    MailFrom(TableMatch),
    /// `rcpt-to [regex] <t>`: the recipient address.
    RcptTo(TableMatch),
}

impl BuiltinTest {
    /// The keyword that introduces the test.
    pub fn keyword(&self) -> &'static str {
        match self {
            BuiltinTest::Fcrdns => "fcrdns",
            BuiltinTest::Rdns(_) => "rdns",
            BuiltinTest::Src(_) => "src",
            BuiltinTest::Helo(_) => "helo",
            BuiltinTest::Auth(_) => "auth",
            BuiltinTest::MailFrom(_) => "mail-from",
            BuiltinTest::RcptTo(_) => "rcpt-to",
        }
    }

    /// The table the test names, if any.
    pub fn table(&self) -> Option<&TableMatch> {
        match self {
            BuiltinTest::Fcrdns => None,
            BuiltinTest::Rdns(t) | BuiltinTest::Auth(t) => t.as_ref(),
            BuiltinTest::Src(t)
            | BuiltinTest::Helo(t)
            | BuiltinTest::MailFrom(t)
            | BuiltinTest::RcptTo(t) => Some(t),
        }
    }
}

/// What a built-in filter does when its conditions hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuiltinDecision {
    /// Proceed, and skip the rest of the chain for this phase.
    Bypass,
    /// Send this reply (`4xx`/`5xx ...`) and close the connection.
    Disconnect(String),
    /// Refuse the command with this reply (`4xx`/`5xx ...`).
    Reject(String),
    /// Mark the session or transaction as spam.
    Junk,
    /// Replace the phase's parameter (HELO name, address) with this value.
    Rewrite(String),
    /// Log this text and proceed.
    Report(String),
}

/// Whether `s` is an SMTP reply OpenSMTPD accepts from a filter: a `4xx` or `5xx` code,
/// then a space or the end.
pub fn valid_smtp_reply(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 3
        && matches!(b[0], b'4' | b'5')
        && b[1..3].iter().all(u8::is_ascii_digit)
        && (b.len() == 3 || b[3] == b' ')
}

/// The name a `listen ... filter { a, b }` list gets: an implicit chain of those filters.
pub fn implicit_chain_name(members: &[String]) -> String {
    format!("{{{}}}", members.join(", "))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub kind: FilterKind,
    pub pos: Pos,
}

impl Filter {
    /// Whether this is the chain a `listen ... filter { a, b }` list made.
    pub fn is_implicit(&self) -> bool {
        matches!(&self.kind, FilterKind::Chain(m) if self.name == implicit_chain_name(m))
    }
}
