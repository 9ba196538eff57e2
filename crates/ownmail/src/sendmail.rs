//! `ownmail sendmail` (also the binary called as `sendmail`): local submission, like
//! `/usr/sbin/sendmail` (SPEC §3).
//!
//! It reads one message on standard input and hands it to the running daemon through
//! `SPOOL/sendmail.sock`, as an ordinary ESMTP client. The daemon learns the caller's uid from
//! the socket (SO_PEERCRED) and applies its `from local` rules: this command decides nothing
//! about routing or permission, and never writes the spool. When the daemon is not running,
//! nothing is accepted and the exit status is EX_TEMPFAIL, so that the caller (cron, a script)
//! can tell.
//!
//! Contract with the caller:
//! - exit 0 only after the daemon's `250` to the end of data, which it sends once the message
//!   is durable (SPEC §5.2);
//! - all or nothing: if the daemon refuses any recipient, the message is sent to nobody, so
//!   that a retry cannot deliver twice;
//! - nothing on stdout; diagnostics on stderr, each starting with `sendmail:`.
//!
//! What happens to the message: line endings become CRLF (a bare CR counts as one); a leading
//! mbox `From ` line is dropped; `Bcc:` and `Resent-Bcc:` fields are removed, with or without
//! `-t` (as sendmail and Postfix do: a blind copy must not show); a missing `From:`, `Date:` or
//! `Message-ID:` is added at the end of the header section; every other byte is passed on
//! unchanged. `-i`/`-oi` have no effect: here a line holding a lone dot never ends the input,
//! only the end of file does.
//!
//! Recipients are the arguments, each read as an address list (`a@x, Name <b@y>`), plus with
//! `-t` the addresses of `To:`, `Cc:` and `Bcc:` (of `Resent-To:`, `Resent-Cc:` and
//! `Resent-Bcc:` instead when the message has any, RFC 5322 §3.6.6). With `-t`, arguments are
//! added to the header recipients, as Postfix does (sendmail 8 would remove them). Addresses
//! without a domain (`root`, cron's `MAILTO`) get `@HOSTNAME`.
//!
//! Flags accepted for compatibility, without effect: `-i`, `-o<anything>` (`-oi`, `-oem`,
//! `-odi`, `-oQ…`), `-bm` (the default mode), `-B TYPE` (the body type is detected from the
//! message), `-U`, `-m`, `-n`, `-G`, `-C FILE`, `-L TAG`, `-O OPT=VALUE`, `-X LOG`, `-A c|m`.
//! `-r FROM` is `-f FROM`. `-N`, `-R` and `-V` are passed on as the DSN parameters NOTIFY,
//! RET and ENVID (RFC 3461). `-v` prints the dialogue with the daemon on stderr. `-bp` lists
//! the queue (`mailq`) and `-q` retries it now (`ownmail queue flush`); other `-b` modes are
//! refused.
//!
//! Exit codes (sysexits.h):
//! - 0: sent (the daemon answered 250 to the end of data);
//! - 1: the message is larger than 64 MiB;
//! - 64 EX_USAGE: bad arguments, a sender or recipient argument that does not parse, no
//!   recipients;
//! - 65 EX_DATAERR: an address in the headers that does not parse, or the daemon's 501;
//! - 67 EX_NOUSER: no login name for the default sender (give `-f`);
//! - 69 EX_UNAVAILABLE: the daemon refused the sender, a recipient or the message (its reply
//!   is printed);
//! - 74 EX_IOERR: standard input could not be read;
//! - 75 EX_TEMPFAIL: the daemon is not running, answered 4xx, or the connection broke or
//!   timed out;
//! - 76 EX_PROTOCOL: a reply that makes no sense;
//! - 77 EX_NOPERM: the socket may not be opened.

use std::collections::HashSet;
use std::io::{BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::ArgAction;
use ownmail_smtp_proto::{parse_command, Command, MailParams, RcptParams, Reply, ReplyParser};
use ownmail_types::{Address, BodyType, Notify, Ret, ReversePath};

use crate::queue_cmd::{queue_command, QueueAction};

/// The largest message read from standard input.
const MAX_MESSAGE: u64 = 64 * 1024 * 1024;
/// Each command and its reply; the daemon's own command timeout is longer.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// RFC 5321 §4.5.3.2.6: the reply to the end of data may take ten minutes (the daemon fsyncs
/// before it answers).
const DATA_END_TIMEOUT: Duration = Duration::from_secs(600);
/// The socket's name in the spool.
const SOCKET: &str = "sendmail.sock";

// sysexits.h
const EX_TOO_BIG: u8 = 1;
const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_NOUSER: u8 = 67;
const EX_UNAVAILABLE: u8 = 69;
const EX_IOERR: u8 = 74;
const EX_TEMPFAIL: u8 = 75;
const EX_PROTOCOL: u8 = 76;
const EX_NOPERM: u8 = 77;

/// The command line of `ownmail sendmail` and of `sendmail`. Real sendmail's single-dash
/// options with attached values (`-oi`, `-FCronDaemon`, `-fme@x`) parse as short options with
/// values, so no pre-parsing is needed; a recipient that starts with `-` goes after `--`.
#[derive(clap::Args, Debug)]
#[command(args_override_self = true)]
pub struct SendmailArgs {
    /// The spool holding the daemon's sendmail.sock.
    #[arg(long, value_name = "DIR", default_value = "/var/spool/ownmail")]
    spool: PathBuf,
    /// Also send to the addresses in To:, Cc: and Bcc: (Resent-To:, Resent-Cc:, Resent-Bcc:
    /// when present); arguments are added to them.
    #[arg(short = 't')]
    extract: bool,
    /// Accepted for compatibility: a lone dot never ends the input anyway.
    #[arg(short = 'i')]
    ignore_dots: bool,
    /// The envelope sender; '' or '<>' for the null sender [default: LOGIN@HOSTNAME].
    #[arg(short = 'f', short_alias = 'r', value_name = "FROM")]
    from: Option<String>,
    /// The full name for an added From: header [default: from the password database].
    #[arg(short = 'F', value_name = "NAME")]
    full_name: Option<String>,
    /// DSN NOTIFY: never, or a comma-separated list of success, failure, delay.
    #[arg(short = 'N', value_name = "WHEN")]
    notify: Option<String>,
    /// DSN RET: full or hdrs.
    #[arg(short = 'R', value_name = "WHAT")]
    ret: Option<String>,
    /// DSN ENVID: an envelope id for delivery status notifications.
    #[arg(short = 'V', value_name = "ENVID")]
    envid: Option<String>,
    /// Print the dialogue with the daemon on stderr.
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,
    /// Mode: m submits (the default), p lists the queue like mailq.
    #[arg(short = 'b', value_name = "MODE")]
    mode: Option<String>,
    /// Retry the queue now, like `ownmail queue flush` (an interval is ignored).
    #[arg(short = 'q', value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "")]
    queue_run: Option<String>,
    /// Sendmail options -oXVALUE (-oi, -oem, -odi, …): accepted and ignored.
    #[arg(short = 'o', value_name = "OPTION", action = ArgAction::Append)]
    options: Vec<String>,
    /// The body type (7BIT, 8BITMIME): accepted; it is detected from the message.
    #[arg(short = 'B', value_name = "TYPE")]
    body_type: Option<String>,
    /// -C FILE, -L TAG, -O OPTION=VALUE, -X LOG, -A c|m: accepted and ignored.
    #[arg(
        short = 'C',
        short_aliases = ['L', 'O', 'X', 'A'],
        action = ArgAction::Append,
        hide = true
    )]
    ignored_values: Vec<String>,
    /// -U, -m, -n, -G: accepted and ignored.
    #[arg(short = 'U', short_aliases = ['m', 'n', 'G'], action = ArgAction::Count, hide = true)]
    ignored_flags: u8,
    /// Recipients, each an address list ("a@x, Name <b@y>"); put them after `--` if one
    /// starts with a dash.
    #[arg(value_name = "RCPT")]
    recipients: Vec<String>,
}

/// Runs `sendmail`: submits standard input, or for `-bp`/`-q` hands over to the queue
/// command.
pub fn sendmail(args: SendmailArgs) -> ExitCode {
    match args.mode.as_deref() {
        None | Some("m") => {}
        Some("p") => return queue_command(&args.spool, QueueAction::List),
        Some(other) => {
            eprintln!("sendmail: mode -b{other} is not supported (only -bm and -bp)");
            return ExitCode::from(EX_USAGE);
        }
    }
    if args.queue_run.is_some() {
        return queue_command(&args.spool, QueueAction::Flush { id: None });
    }
    let env = Environment::current();
    match submit_from(&args, std::io::stdin().lock(), &env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("sendmail: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Why nothing was sent: an exit status and a line for stderr.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A reply that was not the one wanted. `what` names the step, e.g. `recipient <a@b>`.
    fn from_reply(what: &str, reply: &Reply) -> Self {
        let shown = printable(&reply.to_string());
        match reply.code {
            400..=499 => Failure::new(
                EX_TEMPFAIL,
                format!(
                    "{what} deferred by the daemon: {shown}; nothing was sent, try again later"
                ),
            ),
            // 501: the syntax of what we took from the caller.
            501 => Failure::new(EX_DATAERR, format!("{what} refused: {shown}")),
            500..=599 => Failure::new(EX_UNAVAILABLE, format!("{what} refused: {shown}")),
            _ => Failure::new(EX_PROTOCOL, format!("{what}: unexpected reply {shown}")),
        }
    }
}

/// What this process knows about its caller, gathered once (tests make their own).
struct Environment {
    /// For EHLO, `Message-ID:` and addresses without a domain.
    hostname: String,
    /// The caller's login name and full name, or why there is none.
    login: Result<Login, String>,
    now: SystemTime,
}

struct Login {
    name: String,
    full_name: Option<String>,
}

impl Environment {
    fn current() -> Self {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .map(|h| h.trim_end_matches('.').to_string())
            .filter(|h| is_host_name(h))
            .unwrap_or_else(|| "localhost".to_string());
        let uid = nix::unistd::getuid();
        let login = match nix::unistd::User::from_uid(uid) {
            Ok(Some(user)) => Ok(Login {
                full_name: user
                    .gecos
                    .to_str()
                    .ok()
                    .and_then(|g| gecos_name(g, &user.name)),
                name: user.name,
            }),
            Ok(None) => Err(format!(
                "uid {uid} has no login name; give the sender with -f"
            )),
            Err(e) => Err(format!(
                "cannot look up uid {uid}: {e}; give the sender with -f"
            )),
        };
        Environment {
            hostname,
            login,
            now: SystemTime::now(),
        }
    }

    /// `LOGIN@HOSTNAME`: the default sender.
    fn login_address(&self) -> Result<Address, Failure> {
        let login = self
            .login
            .as_ref()
            .map_err(|e| Failure::new(EX_NOUSER, e.clone()))?;
        let spec = AddrSpec {
            local: login.name.clone(),
            domain: None,
        };
        spec.to_address(&self.hostname)
            .map_err(|e| Failure::new(EX_NOUSER, format!("login name {:?}: {e}", login.name)))
    }
}

/// The full name in a GECOS field: its first comma-separated part, `&` standing for the
/// capitalised login name (the BSD convention).
fn gecos_name(gecos: &str, login: &str) -> Option<String> {
    let first = gecos.split(',').next().unwrap_or("").trim();
    let mut chars = login.chars();
    let capitalised: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    let name = first.replace('&', &capitalised);
    (!name.is_empty()).then_some(name)
}

/// A name usable in EHLO and after `@`: dot-separated labels of letters, digits, `-`, `_`.
fn is_host_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Everything but the reading of stdin's bytes and the printing of the outcome.
fn submit_from(
    args: &SendmailArgs,
    mut input: impl Read,
    env: &Environment,
) -> Result<(), Failure> {
    let dsn = Dsn::from_args(args)?;
    let sender = match args.from.as_deref() {
        Some(f) => parse_sender(f, &env.hostname)?,
        None => ReversePath::Address(env.login_address()?),
    };
    let mut recipients = Recipients::default();
    for arg in &args.recipients {
        let specs = address_list(arg.as_bytes())
            .map_err(|e| Failure::new(EX_USAGE, format!("bad recipient {arg:?}: {e}")))?;
        if specs.is_empty() {
            return Err(Failure::new(EX_USAGE, format!("bad recipient {arg:?}")));
        }
        for spec in specs {
            let a = spec
                .to_address(&env.hostname)
                .map_err(|e| Failure::new(EX_USAGE, format!("bad recipient {arg:?}: {e}")))?;
            recipients.add(a);
        }
    }
    if !args.extract && recipients.list.is_empty() {
        return Err(Failure::new(EX_USAGE, "no recipients"));
    }

    // The whole message first, then the connection: a slow producer must not hold a session
    // open until the daemon's command timeout.
    let raw = read_message(&mut input)?;
    let added = AddedFields {
        from: from_field(args, &sender, env),
        date: rfc5322_date(env.now),
        message_id: message_id(env.now, &env.hostname),
    };
    let prepared = prepare(&raw, args.extract, &added).map_err(|e| Failure::new(EX_DATAERR, e))?;
    drop(raw);
    for (field, spec) in prepared.recipients {
        let a = spec
            .to_address(&env.hostname)
            .map_err(|e| Failure::new(EX_DATAERR, format!("bad address in {field}: {e}")))?;
        recipients.add(a);
    }
    if recipients.list.is_empty() {
        return Err(Failure::new(EX_USAGE, "no recipients"));
    }

    let transaction = Transaction {
        hostname: &env.hostname,
        sender: &sender,
        recipients: &recipients.list,
        message: &prepared.message,
        header_8bit: prepared.header_8bit,
        dsn: &dsn,
    };
    submit(&args.spool.join(SOCKET), &transaction, args.verbose > 0)
}

/// Recipients in the order first given, each once.
#[derive(Default)]
struct Recipients {
    list: Vec<Address>,
    seen: HashSet<Address>,
}

impl Recipients {
    fn add(&mut self, a: Address) {
        if self.seen.insert(a.clone()) {
            self.list.push(a);
        }
    }
}

/// `-f`: an address, or the null sender for `''` and `<>`.
fn parse_sender(arg: &str, hostname: &str) -> Result<ReversePath, Failure> {
    let trimmed = arg.trim();
    if trimmed.is_empty() || trimmed == "<>" {
        return Ok(ReversePath::Null);
    }
    let bad = |e: String| Failure::new(EX_USAGE, format!("bad sender {arg:?}: {e}"));
    let mut specs = address_list(trimmed.as_bytes()).map_err(bad)?;
    match (specs.pop(), specs.is_empty()) {
        (Some(spec), true) => Ok(ReversePath::Address(
            spec.to_address(hostname).map_err(bad)?,
        )),
        _ => Err(bad("expected one address".to_string())),
    }
}

/// The DSN parameters of RFC 3461 from `-N`, `-R` and `-V`; sent only when offered.
#[derive(Debug, Default)]
struct Dsn {
    notify: Option<Notify>,
    ret: Option<Ret>,
    envid: Option<String>,
}

impl Dsn {
    fn from_args(args: &SendmailArgs) -> Result<Self, Failure> {
        let usage = |m: String| Failure::new(EX_USAGE, m);
        let notify = match args.notify.as_deref() {
            None => None,
            Some(list) => {
                let mut n = Notify::default();
                for word in list.split(',').map(str::trim) {
                    match word.to_ascii_lowercase().as_str() {
                        "never" => n.never = true,
                        "success" => n.success = true,
                        "failure" => n.failure = true,
                        "delay" => n.delay = true,
                        _ => {
                            return Err(usage(format!(
                                "-N {list}: expected never, or success, failure, delay"
                            )))
                        }
                    }
                }
                // RFC 3461 §4.1: NEVER stands alone.
                if n.never && (n.success || n.failure || n.delay) {
                    return Err(usage(format!("-N {list}: never cannot be combined")));
                }
                Some(n)
            }
        };
        let ret = match args.ret.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("full") => Some(Ret::Full),
            Some("hdrs") => Some(Ret::Hdrs),
            Some(other) => return Err(usage(format!("-R {other}: expected full or hdrs"))),
        };
        // RFC 3461 §4.4: printable ASCII, at most 100 characters.
        if let Some(e) = &args.envid {
            if e.is_empty() || e.len() > 100 || !e.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(usage(format!(
                    "-V {e:?}: expected up to 100 printable ASCII characters"
                )));
            }
        }
        Ok(Dsn {
            notify,
            ret,
            envid: args.envid.clone(),
        })
    }
}

fn read_message(input: &mut impl Read) -> Result<Vec<u8>, Failure> {
    let mut raw = Vec::new();
    input
        .take(MAX_MESSAGE + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Failure::new(EX_IOERR, format!("cannot read the message: {e}")))?;
    if u64::try_from(raw.len()).unwrap_or(u64::MAX) > MAX_MESSAGE {
        return Err(Failure::new(
            EX_TOO_BIG,
            "message larger than 64 MiB; nothing was sent",
        ));
    }
    Ok(raw)
}

// ---------------------------------------------------------------------------------------
// The message: line endings, header fields, added fields.

/// The header fields added when missing, already formatted (values only).
struct AddedFields {
    from: String,
    date: String,
    message_id: String,
}

/// The message as it goes on the wire (before dot-stuffing), and what `-t` found.
#[derive(Debug)]
struct Prepared {
    /// CRLF line endings, ending in CRLF unless empty.
    message: Vec<u8>,
    /// With `-t`: (field name as written, address) for each address of the recipient fields.
    recipients: Vec<(String, AddrSpec)>,
    /// The header section holds non-ASCII bytes (SMTPUTF8, RFC 6531 §3.4).
    header_8bit: bool,
}

/// One header field of a CRLF message, by byte offsets.
struct Field {
    /// From the field name to the CRLF of its last continuation line, inclusive.
    start: usize,
    end: usize,
    name_end: usize,
    /// The position of the colon; the value follows it.
    colon: usize,
}

/// Normalises, extracts recipients (with `extract`), removes Bcc and adds missing fields.
fn prepare(raw: &[u8], extract: bool, added: &AddedFields) -> Result<Prepared, String> {
    let mut msg = to_crlf(raw);
    // An mbox `From ` separator line is not part of the message (sendmail and Postfix drop it).
    if msg.starts_with(b"From ") {
        let first = msg
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(msg.len(), |i| i + 2);
        if field_name(msg.get(..first).unwrap_or_default()).is_none() {
            msg.drain(..first);
        }
    }
    let (fields, body_start, separated) = split_header(&msg);
    let name_of = |f: &Field| msg.get(f.start..f.name_end).unwrap_or_default();
    let value_of = |f: &Field| msg.get(f.colon + 1..f.end).unwrap_or_default();
    let is = |f: &Field, names: &[&str]| {
        names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name_of(f)))
    };

    let mut recipients = Vec::new();
    if extract {
        // RFC 5322 §3.6.6: a resent message goes to its Resent- recipients.
        const RESENT: &[&str] = &["resent-to", "resent-cc", "resent-bcc"];
        let resent = fields.iter().any(|f| is(f, RESENT));
        let wanted = if resent {
            RESENT
        } else {
            &["to", "cc", "bcc"][..]
        };
        for f in fields.iter().filter(|f| is(f, wanted)) {
            let name = String::from_utf8_lossy(name_of(f)).into_owned();
            let value = value_of(f);
            let specs = address_list(value).map_err(|e| {
                format!(
                    "bad address list in {name}: {e}: {}",
                    printable(String::from_utf8_lossy(value).trim())
                )
            })?;
            recipients.extend(specs.into_iter().map(|s| (name.clone(), s)));
        }
    }

    let header_end = fields.last().map_or(0, |f| f.end);
    let header_8bit = !msg.get(..header_end).unwrap_or_default().is_ascii();
    let mut out = Vec::with_capacity(msg.len() + 256);
    for f in fields.iter().filter(|f| !is(f, &["bcc", "resent-bcc"])) {
        out.extend_from_slice(msg.get(f.start..f.end).unwrap_or_default());
    }
    for (name, value) in [
        ("From", &added.from),
        ("Date", &added.date),
        ("Message-ID", &added.message_id),
    ] {
        if !fields.iter().any(|f| is(f, &[name])) {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
    }
    let body = msg.get(body_start..).unwrap_or_default();
    // A body that did not start with the empty line (no header section, or a line that is
    // not a field) needs one, or it would read as more header.
    if !separated && !body.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(body);
    Ok(Prepared {
        message: out,
        recipients,
        header_8bit,
    })
}

/// LF, CRLF and a bare CR each become CRLF; a last line without one gets it. The daemon
/// refuses bare CR and LF in DATA (SPEC §5.1), and RFC 5322 §2.3 allows neither.
fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32 + 2);
    let mut bytes = raw.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' => {
                bytes.next_if_eq(&b'\n');
                out.extend_from_slice(b"\r\n");
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The header fields of a CRLF message, where its body starts, and whether the header
/// section ended with the empty line (the body then starts with that line's CRLF). The header
/// section ends at the empty line or at the first line that is neither a field nor a
/// continuation (RFC 5322 §2.2, §2.2.3).
fn split_header(msg: &[u8]) -> (Vec<Field>, usize, bool) {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = 0;
    loop {
        let rest = msg.get(pos..).unwrap_or_default();
        if rest.is_empty() {
            return (fields, pos, false);
        }
        if rest.starts_with(b"\r\n") {
            return (fields, pos, true);
        }
        let len = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(rest.len(), |i| i + 2);
        let line = rest.get(..len).unwrap_or_default();
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        match (continuation, fields.last_mut(), field_name(line)) {
            (true, Some(last), _) => last.end = pos + len,
            (false, _, Some((name_len, colon))) => fields.push(Field {
                start: pos,
                end: pos + len,
                name_end: pos + name_len,
                colon: pos + colon,
            }),
            _ => return (fields, pos, false),
        }
        pos += len;
    }
}

/// `name:` at the start of a line (RFC 5322 §3.6.8: printable ASCII but colon; §4.5 allows
/// blanks before the colon): the name's length and the colon's position.
fn field_name(line: &[u8]) -> Option<(usize, usize)> {
    let name_len = line
        .iter()
        .position(|&b| !(33..=126).contains(&b) || b == b':')
        .unwrap_or(line.len());
    if name_len == 0 {
        return None;
    }
    let colon = name_len
        + line
            .get(name_len..)?
            .iter()
            .position(|&b| b != b' ' && b != b'\t')?;
    (line.get(colon) == Some(&b':')).then_some((name_len, colon))
}

/// The value of an added `From:`: `Name <address>` when a name is known (`-F`, or the
/// password database for the default sender), else the address. The address is the sender,
/// or for the null sender the caller's own (`MAILER-DAEMON@HOSTNAME` if there is none).
fn from_field(args: &SendmailArgs, sender: &ReversePath, env: &Environment) -> String {
    let address = match sender {
        ReversePath::Address(a) => a.to_string(),
        ReversePath::Null => env.login_address().map_or_else(
            |_| format!("MAILER-DAEMON@{}", env.hostname),
            |a| a.to_string(),
        ),
    };
    let name = match (&args.full_name, &args.from, &env.login) {
        (Some(name), _, _) => Some(name.clone()),
        (None, None, Ok(login)) => login.full_name.clone(),
        _ => None,
    };
    match name.map(|n| display_name(&n)).filter(|n| !n.is_empty()) {
        Some(n) => format!("{n} <{address}>"),
        None => address,
    }
}

/// A display name as a phrase (RFC 5322 §3.2.5): as is when it is atoms and spaces, quoted
/// when it holds other ASCII, RFC 2047 encoded words when it is not ASCII. Control
/// characters are dropped, so that no name can add a header line.
fn display_name(name: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let name = name.trim();
    if !name.is_ascii() {
        return encoded_words(name);
    }
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~ ".contains(&b);
    if name.bytes().all(atext) {
        return name.to_string();
    }
    let mut quoted = String::from("\"");
    for c in name.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// RFC 2047 §4.2 "Q" encoded words, each at most 75 characters (§2), split between
/// characters, never inside one.
fn encoded_words(text: &str) -> String {
    const MAX_ENCODED: usize = 75 - "=?UTF-8?Q??=".len();
    let mut words = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        let mut piece = String::new();
        if c == ' ' {
            piece.push('_');
        } else if c.is_ascii_alphanumeric() || "!*+-/".contains(c) {
            // RFC 2047 §5 (3): the characters allowed as themselves in a phrase.
            piece.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                piece.push_str(&format!("={b:02X}"));
            }
        }
        if current.len() + piece.len() > MAX_ENCODED {
            words.push(std::mem::take(&mut current));
        }
        current.push_str(&piece);
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
        .iter()
        .map(|w| format!("=?UTF-8?Q?{w}?="))
        .collect::<Vec<_>>()
        .join(" ")
}

use ownmail_types::rfc5322_date;

/// `<SECONDS.NANOSECONDS.PID@HOSTNAME>`: unique, since one process makes one per run.
fn message_id(now: SystemTime, hostname: &str) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "<{}.{:09}.{}@{hostname}>",
        d.as_secs(),
        d.subsec_nanos(),
        std::process::id()
    )
}

// ---------------------------------------------------------------------------------------
// Address lists (RFC 5322 §3.4), as far as finding the addresses: display names, comments,
// quoted strings and groups are understood and dropped; obsolete routes (§4.4) are dropped.

/// An addr-spec as written: the local part (quotes kept) and the domain if there was one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AddrSpec {
    local: String,
    domain: Option<String>,
}

impl AddrSpec {
    /// The envelope address, `@hostname` added when there is no domain. Checked with the
    /// daemon's own parser (smtp-proto), so that what we send is what it accepts.
    fn to_address(&self, hostname: &str) -> Result<Address, String> {
        let domain = self.domain.as_deref().unwrap_or(hostname);
        let line = format!("RCPT TO:<{}@{domain}>", self.local);
        match parse_command(line.as_bytes()) {
            Ok(Command::Rcpt { to, .. }) => Ok(to),
            Ok(_) => Err("not an address".to_string()),
            Err(e) => Err(format!("{}@{domain}: {}", self.local, e.message)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    /// A run of atext (UTF-8 included) between delimiters.
    Atom(&'a [u8]),
    /// A quoted string, quotes and backslashes kept.
    Quoted(&'a [u8]),
    /// A domain literal, brackets kept.
    Literal(&'a [u8]),
    /// One of `< > @ , ; : .`.
    Special(u8),
}

/// Splits a field value into tokens; blanks, line breaks and comments go.
fn tokenize(s: &[u8]) -> Result<Vec<Token<'_>>, String> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => i = skip_comment(s, i)?,
            b'"' | b'[' => {
                let close = if b == b'"' { b'"' } else { b']' };
                let end = closing(s, i, close)?;
                let text = s.get(i..end).unwrap_or_default();
                tokens.push(if b == b'"' {
                    Token::Quoted(text)
                } else {
                    Token::Literal(text)
                });
                i = end;
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' | b'.' => {
                tokens.push(Token::Special(b));
                i += 1;
            }
            _ if is_atom_byte(b) => {
                let len = s
                    .get(i..)
                    .unwrap_or_default()
                    .iter()
                    .position(|&c| !is_atom_byte(c))
                    .unwrap_or(s.len() - i);
                tokens.push(Token::Atom(s.get(i..i + len).unwrap_or_default()));
                i += len;
            }
            _ => return Err(format!("unexpected character {:?}", char::from(b))),
        }
    }
    Ok(tokens)
}

/// atext (RFC 5322 §3.2.3) and any non-ASCII byte (RFC 6532 §3.2).
fn is_atom_byte(b: u8) -> bool {
    !b.is_ascii() || (b.is_ascii_graphic() && !b"()<>[]:;@\\,.\"".contains(&b))
}

/// The position after the `close` that ends the quoted string or literal at `start`.
fn closing(s: &[u8], start: usize, close: u8) -> Result<usize, String> {
    let mut i = start + 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'\\' => i += 2,
            _ if b == close => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("missing closing {:?}", char::from(close)))
}

/// The position after the comment at `start`; comments nest (RFC 5322 §3.2.2).
fn skip_comment(s: &[u8], start: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut i = start;
    while let Some(&b) = s.get(i) {
        match b {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err("unterminated comment".to_string())
}

/// The addresses of an address list: `a@x, "Doe, J" <j@y> (c), Group: b@z;`. Empty items
/// are skipped (`a@x,,b@y`); a name without an address is an error, not a local user.
fn address_list(value: &[u8]) -> Result<Vec<AddrSpec>, String> {
    let tokens = tokenize(value)?;
    let mut found = Vec::new();
    // The tokens of the current mailbox since the last separator.
    let mut pending: Vec<Token> = Vec::new();
    // The current mailbox had its `<address>`; only a separator may follow.
    let mut angled = false;
    let mut in_group = false;
    let mut iter = tokens.iter().copied();
    while let Some(t) = iter.next() {
        match t {
            Token::Special(b'<') => {
                if angled {
                    return Err("two <addresses> in one mailbox".to_string());
                }
                let mut inner = Vec::new();
                loop {
                    match iter.next() {
                        Some(Token::Special(b'>')) => break,
                        Some(t) => inner.push(t),
                        None => return Err("missing '>'".to_string()),
                    }
                }
                // RFC 5322 §4.4 obs-route: `<@a,@b:user@c>` is `user@c`.
                let start = inner
                    .iter()
                    .rposition(|t| *t == Token::Special(b':'))
                    .map_or(0, |i| i + 1);
                let spec = inner.get(start..).unwrap_or_default();
                if spec.is_empty() {
                    return Err("empty <>".to_string());
                }
                found.push(addr_spec(spec)?);
                pending.clear();
                angled = true;
            }
            // RFC 5322 §3.4: `display-name ":" [group-list] ";"`.
            Token::Special(b':') if !in_group && !angled => {
                pending.clear();
                in_group = true;
            }
            Token::Special(b',' | b';') => {
                if !pending.is_empty() {
                    found.push(addr_spec(&pending)?);
                    pending.clear();
                }
                angled = false;
                if t == Token::Special(b';') {
                    in_group = false;
                }
            }
            _ if angled => return Err("text after <address>".to_string()),
            _ => pending.push(t),
        }
    }
    if !pending.is_empty() {
        found.push(addr_spec(&pending)?);
    }
    Ok(found)
}

/// `local@domain` or a bare local part, from its tokens (blanks and comments between them
/// were CFWS, RFC 5322 §3.4.1).
fn addr_spec(tokens: &[Token]) -> Result<AddrSpec, String> {
    let mut local = Vec::new();
    let mut domain: Option<Vec<u8>> = None;
    let mut after_word = false;
    for t in tokens {
        let part = domain.as_mut().unwrap_or(&mut local);
        match *t {
            Token::Atom(w) | Token::Quoted(w) | Token::Literal(w) => {
                if after_word {
                    return Err("a name without an <address>".to_string());
                }
                part.extend_from_slice(w);
                after_word = true;
            }
            Token::Special(b'.') => {
                part.push(b'.');
                after_word = false;
            }
            Token::Special(b'@') if domain.is_none() => {
                domain = Some(Vec::new());
                after_word = false;
            }
            Token::Special(c) => return Err(format!("unexpected {:?}", char::from(c))),
        }
    }
    let text = |v: Vec<u8>| String::from_utf8(v).map_err(|_| "address is not UTF-8".to_string());
    Ok(AddrSpec {
        local: text(local)?,
        domain: domain.map(text).transpose()?,
    })
}

// ---------------------------------------------------------------------------------------
// The SMTP client.

/// One message for the daemon.
struct Transaction<'a> {
    hostname: &'a str,
    sender: &'a ReversePath,
    recipients: &'a [Address],
    /// CRLF, not yet dot-stuffed.
    message: &'a [u8],
    header_8bit: bool,
    dsn: &'a Dsn,
}

/// Connects to the daemon's socket, runs the transaction, and says QUIT whatever happened.
fn submit(socket: &Path, t: &Transaction, trace: bool) -> Result<(), Failure> {
    let mut client = Client::connect(socket, trace)?;
    let result = client.transaction(t);
    client.quit();
    result
}

/// What the EHLO reply offered (RFC 5321 §4.1.1.1), as far as we use it.
#[derive(Debug, Default)]
struct Extensions {
    size: bool,
    eight_bit_mime: bool,
    smtputf8: bool,
    dsn: bool,
}

impl Extensions {
    fn from_ehlo(reply: &Reply) -> Self {
        let mut ext = Extensions::default();
        for line in reply.lines.iter().skip(1) {
            let keyword = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match keyword.as_str() {
                "SIZE" => ext.size = true,
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "DSN" => ext.dsn = true,
                _ => {}
            }
        }
        ext
    }
}

struct Client {
    stream: UnixStream,
    /// Bytes read but not yet given to the parser.
    input: Vec<u8>,
    parser: ReplyParser,
    trace: bool,
}

impl Client {
    fn connect(socket: &Path, trace: bool) -> Result<Self, Failure> {
        let stream = UnixStream::connect(socket).map_err(|e| {
            let code = match e.kind() {
                std::io::ErrorKind::PermissionDenied => EX_NOPERM,
                _ => EX_TEMPFAIL,
            };
            let why = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    "the ownmail daemon is not running"
                }
                _ => "cannot reach the ownmail daemon",
            };
            Failure::new(
                code,
                format!("{why} ({}: {e}); nothing was sent", socket.display()),
            )
        })?;
        let client = Client {
            stream,
            input: Vec::new(),
            parser: ReplyParser::new(),
            trace,
        };
        client.set_timeout(IO_TIMEOUT)?;
        Ok(client)
    }

    fn set_timeout(&self, t: Duration) -> Result<(), Failure> {
        self.stream
            .set_read_timeout(Some(t))
            .and_then(|()| self.stream.set_write_timeout(Some(t)))
            .map_err(|e| lost(&e))
    }

    fn transaction(&mut self, t: &Transaction) -> Result<(), Failure> {
        let greeting = self.reply()?;
        expect(&greeting, 220, "the session")?;
        let ehlo = self.call(&Command::Ehlo(t.hostname.to_string()))?;
        let ext = if ehlo.code == 250 {
            Extensions::from_ehlo(&ehlo)
        } else if ehlo.is_permanent() {
            // RFC 5321 §3.2: a server that does not know EHLO still knows HELO.
            let helo = self.call(&Command::Helo(t.hostname.to_string()))?;
            expect(&helo, 250, "HELO")?;
            Extensions::default()
        } else {
            return Err(Failure::from_reply("EHLO", &ehlo));
        };

        let envelope_8bit = !t.sender.to_string().is_ascii()
            || t.recipients.iter().any(|r| !r.to_string().is_ascii());
        let params = MailParams {
            size: ext
                .size
                .then(|| u64::try_from(t.message.len()).unwrap_or(u64::MAX)),
            body: (ext.eight_bit_mime && !t.message.is_ascii()).then_some(BodyType::EightBitMime),
            // RFC 6531 §3.4: needed for a UTF-8 envelope or header section.
            smtputf8: ext.smtputf8 && (envelope_8bit || t.header_8bit),
            ret: t.dsn.ret.filter(|_| ext.dsn),
            envid: t.dsn.envid.clone().filter(|_| ext.dsn),
            auth: None,
        };
        let mail = self.call(&Command::Mail {
            from: t.sender.clone(),
            params,
        })?;
        expect(&mail, 250, &format!("sender <{}>", t.sender))?;
        for to in t.recipients {
            let rcpt = self.call(&Command::Rcpt {
                to: to.clone(),
                params: RcptParams {
                    notify: t.dsn.notify.filter(|_| ext.dsn),
                    orcpt: None,
                },
            })?;
            // 251: not local, will forward (RFC 5321 §3.4).
            if rcpt.code != 251 {
                expect(&rcpt, 250, &format!("recipient <{to}>"))?;
            }
        }
        let data = self.call(&Command::Data)?;
        expect(&data, 354, "DATA")?;
        self.send_data(t.message)?;
        self.set_timeout(DATA_END_TIMEOUT)?;
        let end = self.reply()?;
        self.set_timeout(IO_TIMEOUT)?;
        expect(&end, 250, "the message")
    }

    /// Writes the message with dot-stuffing (RFC 5321 §4.5.2) and the end-of-data line.
    /// `message` is CRLF-terminated lines, so every line start follows a CRLF.
    fn send_data(&mut self, message: &[u8]) -> Result<(), Failure> {
        if self.trace {
            eprintln!("> ({} bytes of message)", message.len());
            eprintln!("> .");
        }
        let mut w = BufWriter::with_capacity(64 * 1024, &self.stream);
        for line in message.split_inclusive(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                w.write_all(b".").map_err(|e| lost(&e))?;
            }
            w.write_all(line).map_err(|e| lost(&e))?;
        }
        w.write_all(b".\r\n").map_err(|e| lost(&e))?;
        w.flush().map_err(|e| lost(&e))
    }

    fn call(&mut self, command: &Command) -> Result<Reply, Failure> {
        let line = command.to_bytes();
        if self.trace {
            eprintln!("> {}", String::from_utf8_lossy(&line).trim_end());
        }
        (&self.stream).write_all(&line).map_err(|e| lost(&e))?;
        self.reply()
    }

    /// The next reply; bytes after it stay for the next call.
    fn reply(&mut self) -> Result<Reply, Failure> {
        let mut buf = [0u8; 4096];
        loop {
            let (used, reply) = self.parser.feed(&self.input);
            self.input.drain(..used.min(self.input.len()));
            match reply {
                Some(Ok(reply)) => {
                    if self.trace {
                        eprintln!("< {}", printable(&reply.to_string()));
                    }
                    return Ok(reply);
                }
                Some(Err(e)) => {
                    return Err(Failure::new(
                        EX_PROTOCOL,
                        format!("bad reply from the daemon: {e}"),
                    ))
                }
                None => {}
            }
            let n = (&self.stream).read(&mut buf).map_err(|e| lost(&e))?;
            if n == 0 {
                return Err(Failure::new(
                    EX_TEMPFAIL,
                    "the daemon closed the connection; nothing was sent",
                ));
            }
            self.input
                .extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    }

    /// Ends the session politely; its outcome changes nothing (the message was accepted or
    /// refused already), so errors are ignored and the wait is short.
    fn quit(&mut self) {
        let _ = self.set_timeout(Duration::from_secs(5));
        if self.call(&Command::Quit).is_err() && self.trace {
            eprintln!("(no reply to QUIT)");
        }
    }
}

fn expect(reply: &Reply, code: u16, what: &str) -> Result<(), Failure> {
    if reply.code == code {
        Ok(())
    } else {
        Err(Failure::from_reply(what, reply))
    }
}

/// The connection broke or timed out: nothing was accepted.
fn lost(e: &std::io::Error) -> Failure {
    let why = match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "the daemon did not answer in time".to_string()
        }
        _ => format!("connection to the daemon failed: {e}"),
    };
    Failure::new(EX_TEMPFAIL, format!("{why}; nothing was sent"))
}

/// Text from the daemon or the message, with control characters made harmless for a terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Cursor};
    use std::os::unix::net::UnixListener;
    use std::thread::JoinHandle;

    use clap::{Parser, Subcommand};

    use super::*;

    /// The command line as main.rs wires it.
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Cmd,
    }

    #[derive(Subcommand)]
    enum Cmd {
        Sendmail(Box<SendmailArgs>),
    }

    fn args(argv: &[&str]) -> SendmailArgs {
        let mut full = vec!["ownmail", "sendmail"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full) {
            Ok(Cli {
                command: Cmd::Sendmail(a),
            }) => *a,
            Err(e) => panic!("{argv:?}: {e}"),
        }
    }

    fn env() -> Environment {
        Environment {
            hostname: "host.example".to_string(),
            login: Ok(Login {
                name: "alice".to_string(),
                full_name: Some("Alice Liddell".to_string()),
            }),
            now: UNIX_EPOCH + Duration::from_secs(1_795_564_080),
        }
    }

    fn added() -> AddedFields {
        AddedFields {
            from: "alice@host.example".to_string(),
            date: "Tue, 24 Nov 2026 23:48:00 +0000".to_string(),
            message_id: "<1@host.example>".to_string(),
        }
    }

    fn specs(value: &str) -> Result<Vec<String>, String> {
        address_list(value.as_bytes()).map(|v| {
            v.into_iter()
                .map(|s| match s.domain {
                    Some(d) => format!("{}@{d}", s.local),
                    None => s.local,
                })
                .collect()
        })
    }

    #[test]
    fn sendmail_command_lines_parse() {
        let a = args(&["-oi", "-t"]);
        assert!(a.extract && !a.ignore_dots && a.options == ["i"]);
        let a = args(&["-f", "a@b", "--", "rcpt"]);
        assert_eq!(
            (a.from.as_deref(), &a.recipients[..]),
            (Some("a@b"), &["rcpt".to_string()][..])
        );
        let a = args(&["-t"]);
        assert!(a.extract && a.recipients.is_empty());
        let a = args(&["rcpt@x"]);
        assert_eq!(a.recipients, ["rcpt@x"]);
        // What cron (Debian and cronie) and mutt pass.
        let a = args(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]);
        assert_eq!(a.full_name.as_deref(), Some("CronDaemon"));
        assert_eq!(a.recipients, ["root"]);
        let a = args(&[
            "-oem",
            "-oi",
            "-N",
            "success,delay",
            "-R",
            "hdrs",
            "--",
            "-odd@x",
        ]);
        assert_eq!(a.recipients, ["-odd@x"]);
        // Flags given twice, -r for -f, an empty -f, ignored options.
        let a = args(&[
            "-i", "-i", "-t", "-t", "-rme@x", "-bm", "-v", "-odi", "-U", "-m", "x@y",
        ]);
        assert_eq!(a.from.as_deref(), Some("me@x"));
        assert_eq!(args(&["-f", "", "x@y"]).from.as_deref(), Some(""));
        assert_eq!(args(&["--spool", "/s", "-t"]).spool, PathBuf::from("/s"));
        assert_eq!(args(&["-q"]).queue_run.as_deref(), Some(""));
        assert_eq!(args(&["-bp"]).mode.as_deref(), Some("p"));
    }

    #[test]
    fn address_lists_yield_their_addresses() {
        let cases: &[(&str, &[&str])] = &[
            ("a@b.example", &["a@b.example"]),
            (
                " a@b.example , c@d.example ",
                &["a@b.example", "c@d.example"],
            ),
            (
                "\"Doe, John\" <john@x.example>, jane@y.example (Jane)",
                &["john@x.example", "jane@y.example"],
            ),
            ("John (the (nested) man) <j@x.example>", &["j@x.example"]),
            ("=?UTF-8?Q?J=C3=B6rg?= <j@x.example>", &["j@x.example"]),
            ("J. R. Smith <jrs@x.example>", &["jrs@x.example"]),
            ("Jörg <jörg@bücher.example>", &["jörg@bücher.example"]),
            ("undisclosed-recipients:;", &[]),
            ("", &[]),
            ("a@x.example,,b@x.example,", &["a@x.example", "b@x.example"]),
            (
                "Friends: a@x.example, \"B\" <b@x.example>;, c@y.example",
                &["a@x.example", "b@x.example", "c@y.example"],
            ),
            ("<@route.example,@r2.example:u@x.example>", &["u@x.example"]),
            (
                "\"quoted local\"@x.example",
                &["\"quoted local\"@x.example"],
            ),
            ("\"a@b\"", &["\"a@b\""]),
            ("u@[IPv6:2001:db8::1]", &["u@[IPv6:2001:db8::1]"]),
            ("first . last @ x.example", &["first.last@x.example"]),
            ("root", &["root"]),
            (
                "a@x.example,\r\n\tb@x.example",
                &["a@x.example", "b@x.example"],
            ),
        ];
        for (value, want) in cases {
            let got = specs(value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
            assert_eq!(got, *want, "{value:?}");
        }
    }

    #[test]
    fn address_lists_that_do_not_parse_are_errors() {
        for bad in [
            "John Smith",
            "<a@x.example",
            "\"unterminated@x.example",
            "(comment a@x.example",
            "a@b@c",
            "<a@x.example> junk",
            "<a@x.example> <b@x.example>",
            "<>",
            "a@x.example\u{1}",
        ] {
            assert!(specs(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn unqualified_addresses_get_the_host_name() {
        let a = AddrSpec {
            local: "root".into(),
            domain: None,
        };
        assert_eq!(
            a.to_address("host.example").map(|a| a.to_string()),
            Ok("root@host.example".into())
        );
        let bad = AddrSpec {
            local: "a b".into(),
            domain: Some("x.example".into()),
        };
        assert!(bad.to_address("host.example").is_err());
    }

    #[test]
    fn t_takes_to_cc_bcc_with_folding_and_removes_bcc() {
        let raw = b"Subject: hi\n\
            To: \"Doe, J\" <j@x.example>,\n  k@x.example (K)\n\
            cc: Group: l@y.example, m@y.example;\n\
            To: n@z.example\n\
            Bcc: secret@z.example,\n\tsecret2@z.example\n\
            X-Other: kept  as   is\n\
            \n\
            Body line\nBcc: not a header\n";
        let p = prepare(raw, true, &added()).expect("prepare");
        let got: Vec<(String, String)> = p
            .recipients
            .iter()
            .map(|(f, s)| {
                (
                    f.clone(),
                    format!("{}@{}", s.local, s.domain.clone().unwrap_or_default()),
                )
            })
            .collect();
        let want = [
            ("To", "j@x.example"),
            ("To", "k@x.example"),
            ("cc", "l@y.example"),
            ("cc", "m@y.example"),
            ("To", "n@z.example"),
            ("Bcc", "secret@z.example"),
            ("Bcc", "secret2@z.example"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        );
        let text = String::from_utf8(p.message).expect("utf8");
        assert_eq!(
            text,
            "Subject: hi\r\n\
             To: \"Doe, J\" <j@x.example>,\r\n  k@x.example (K)\r\n\
             cc: Group: l@y.example, m@y.example;\r\n\
             To: n@z.example\r\n\
             X-Other: kept  as   is\r\n\
             From: alice@host.example\r\n\
             Date: Tue, 24 Nov 2026 23:48:00 +0000\r\n\
             Message-ID: <1@host.example>\r\n\
             \r\n\
             Body line\r\nBcc: not a header\r\n"
        );
    }

    #[test]
    fn resent_fields_take_over_when_present() {
        let raw = b"To: old@x.example\r\nResent-To: new@x.example\r\n\
            Resent-Bcc: hidden@x.example\r\n\r\nb\r\n";
        let p = prepare(raw, true, &added()).expect("prepare");
        let got: Vec<&str> = p.recipients.iter().map(|(_, s)| s.local.as_str()).collect();
        assert_eq!(got, ["new", "hidden"]);
        assert!(!String::from_utf8_lossy(&p.message).contains("hidden"));
    }

    #[test]
    fn bcc_is_removed_without_t_and_recipients_not_read() {
        let p = prepare(b"Bcc: a@x.example\nSubject: s\n\nb\n", false, &added()).expect("prepare");
        assert!(p.recipients.is_empty());
        assert!(p.message.starts_with(b"Subject: s\r\nFrom: "));
    }

    #[test]
    fn existing_from_date_message_id_are_kept() {
        let raw = b"FROM: Bob <bob@x.example>\r\ndate: Mon, 1 Jan 2024 00:00:00 +0100\r\n\
            Message-Id: <m@x>\r\n\r\nbody\r\n";
        let p = prepare(raw, false, &added()).expect("prepare");
        assert_eq!(p.message, raw.to_vec());
    }

    #[test]
    fn a_message_without_header_gets_fields_and_the_empty_line() {
        let p = prepare(b"just a body\nsecond: line\n", false, &added()).expect("prepare");
        let text = String::from_utf8(p.message).expect("utf8");
        assert!(text.starts_with("From: alice@host.example\r\n"), "{text}");
        assert!(
            text.ends_with("Message-ID: <1@host.example>\r\n\r\njust a body\r\nsecond: line\r\n")
        );
        // A header that ends at a non-field line: the body is separated, nothing lost.
        let p = prepare(b"Subject: s\nnot a field\n", false, &added()).expect("prepare");
        assert!(p.message.ends_with(b">\r\n\r\nnot a field\r\n"));
        // Only header, no body: no empty line is invented.
        let p = prepare(b"Subject: s", false, &added()).expect("prepare");
        assert!(p.message.ends_with(b"Message-ID: <1@host.example>\r\n"));
        let p = prepare(b"", false, &added()).expect("prepare");
        assert!(p.message.starts_with(b"From: "));
    }

    #[test]
    fn line_endings_become_crlf_and_mbox_from_line_goes() {
        assert_eq!(to_crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(to_crlf(b"a\r\r\n"), b"a\r\n\r\n");
        assert_eq!(to_crlf(b""), b"");
        let p = prepare(
            b"From alice Tue Nov 24 23:48:00 2026\nSubject: s\n\nb\n",
            false,
            &added(),
        )
        .expect("prepare");
        assert!(p.message.starts_with(b"Subject: s\r\n"));
    }

    #[test]
    fn bad_header_address_is_an_error_naming_the_field() {
        let e = prepare(b"To: John Smith\n\nb\n", true, &added()).expect_err("bad");
        assert!(e.contains("To") && e.contains("John Smith"), "{e}");
    }

    #[test]
    fn display_names_are_quoted_or_encoded() {
        assert_eq!(display_name("Cron Daemon"), "Cron Daemon");
        assert_eq!(display_name("Doe, \"J\""), "\"Doe, \\\"J\\\"\"");
        assert_eq!(display_name("Jörg"), "=?UTF-8?Q?J=C3=B6rg?=");
        assert_eq!(display_name("evil\r\nBcc: x@y"), "\"evilBcc: x@y\"");
        let long = "é".repeat(40);
        let words = display_name(&long);
        assert!(
            words
                .split(' ')
                .all(|w| w.len() <= 75 && w.starts_with("=?UTF-8?Q?")),
            "{words}"
        );
    }

    #[test]
    fn from_field_uses_f_name_or_gecos() {
        let e = env();
        let a = args(&["x@y.example"]);
        let sender = ReversePath::Address(e.login_address().expect("login"));
        assert_eq!(
            from_field(&a, &sender, &e),
            "Alice Liddell <alice@host.example>"
        );
        let a = args(&["-F", "Cron Daemon", "x@y.example"]);
        assert_eq!(
            from_field(&a, &sender, &e),
            "Cron Daemon <alice@host.example>"
        );
        let a = args(&["-f", "b@x.example", "x@y.example"]);
        let b = parse_sender("b@x.example", "host.example").expect("sender");
        assert_eq!(from_field(&a, &b, &e), "b@x.example");
        assert_eq!(from_field(&a, &ReversePath::Null, &e), "alice@host.example");
        assert_eq!(
            gecos_name("& Liddell,Room 1,,", "alice").as_deref(),
            Some("Alice Liddell")
        );
        assert_eq!(gecos_name(",,,", "bob"), None);
    }

    #[test]
    fn senders_parse() {
        assert_eq!(parse_sender("", "h.example").ok(), Some(ReversePath::Null));
        assert_eq!(
            parse_sender("<>", "h.example").ok(),
            Some(ReversePath::Null)
        );
        let s = |f| {
            parse_sender(f, "h.example")
                .map(|p| p.to_string())
                .map_err(|e| e.code)
        };
        assert_eq!(s("<me@x.example>"), Ok("me@x.example".into()));
        assert_eq!(s("Me <me@x.example>"), Ok("me@x.example".into()));
        assert_eq!(s("me"), Ok("me@h.example".into()));
        assert_eq!(s("a@x.example, b@x.example"), Err(EX_USAGE));
    }

    #[test]
    fn dates_are_rfc5322_utc() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_564_080);
        assert_eq!(rfc5322_date(t), "Tue, 24 Nov 2026 23:48:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert!(message_id(t, "h.example").ends_with("@h.example>"));
    }

    // --- Dialogues against a fake daemon on a Unix socket.

    /// What the fake daemon saw: command lines (without CRLF) and the raw DATA lines
    /// (still dot-stuffed, end marker excluded).
    #[derive(Debug, Default)]
    struct Seen {
        commands: Vec<String>,
        data: Vec<u8>,
    }

    /// Accepts one session on `SPOOL/sendmail.sock`; `answer` gives the reply to each command
    /// line (None: the usual positive one).
    fn fake_daemon(spool: &Path, answer: fn(&str) -> Option<&'static str>) -> JoinHandle<Seen> {
        let listener = UnixListener::bind(spool.join(SOCKET)).expect("bind");
        std::thread::spawn(move || {
            let mut seen = Seen::default();
            let (stream, _) = listener.accept().expect("accept");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut out = &stream;
            let mut input = BufReader::new(&stream);
            out.write_all(b"220 host.example ESMTP ownmail\r\n")
                .expect("greet");
            loop {
                let mut line = Vec::new();
                if input.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                    break;
                }
                let cmd = String::from_utf8_lossy(&line).trim_end().to_string();
                seen.commands.push(cmd.clone());
                let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
                let reply = answer(&cmd).unwrap_or(match verb.as_str() {
                    "EHLO" => {
                        "250-host.example\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n\
                         250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250 CHUNKING"
                    }
                    "MAIL" | "RCPT" => "250 2.0.0 OK",
                    "DATA" => "354 Go ahead",
                    "QUIT" => "221 2.0.0 Bye",
                    _ => "500 5.5.1 Unknown command",
                });
                out.write_all(format!("{reply}\r\n").as_bytes())
                    .expect("reply");
                if verb == "QUIT" {
                    break;
                }
                if verb == "DATA" && reply.starts_with("354") {
                    loop {
                        let mut l = Vec::new();
                        if input.read_until(b'\n', &mut l).unwrap_or(0) == 0 || l == b".\r\n" {
                            break;
                        }
                        seen.data.extend_from_slice(&l);
                    }
                    out.write_all(b"250 2.0.0 Ok: queued as 0123\r\n")
                        .expect("queued");
                }
            }
            seen
        })
    }

    fn run(
        argv: &[&str],
        stdin: &[u8],
        answer: fn(&str) -> Option<&'static str>,
    ) -> (Result<(), Failure>, Seen) {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().to_str().expect("path").to_string();
        let daemon = fake_daemon(dir.path(), answer);
        let mut full = vec!["--spool", spool.as_str()];
        full.extend_from_slice(argv);
        let result = submit_from(&args(&full), Cursor::new(stdin.to_vec()), &env());
        // The client has said QUIT or hung up, so the daemon thread ends.
        (result, daemon.join().expect("daemon"))
    }

    #[test]
    fn t_dialogue_sends_envelope_and_dot_stuffed_data() {
        let msg = b"To: Bob <bob@x.example>\nCc: carol@y.example\nBcc: dave@z.example\n\
            Subject: dots\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <a@b>\n\
            From: me@x.example\n\n.leading dot\n..two\n.\nend\n";
        let (result, seen) = run(
            &["-oi", "-t", "-f", "me@x.example", "extra@w.example"],
            msg,
            |_| None,
        );
        assert!(result.is_ok(), "{result:?}");
        // Bcc gone, CRLF, every line starting with a dot doubled (RFC 5321 §4.5.2).
        let stuffed = "To: Bob <bob@x.example>\r\nCc: carol@y.example\r\nSubject: dots\r\n\
             Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <a@b>\r\nFrom: me@x.example\r\n\
             \r\n..leading dot\r\n...two\r\n..\r\nend\r\n";
        assert_eq!(String::from_utf8_lossy(&seen.data), stuffed);
        // SIZE counts the message before stuffing (RFC 1870 §3): three dots fewer.
        let size = format!("MAIL FROM:<me@x.example> SIZE={}", stuffed.len() - 3);
        assert_eq!(
            seen.commands,
            [
                "EHLO host.example",
                size.as_str(),
                "RCPT TO:<extra@w.example>",
                "RCPT TO:<bob@x.example>",
                "RCPT TO:<carol@y.example>",
                "RCPT TO:<dave@z.example>",
                "DATA",
                "QUIT",
            ]
        );
    }

    #[test]
    fn eight_bit_message_declares_8bitmime_and_utf8_header_smtputf8() {
        let (result, seen) = run(
            &[
                "-f",
                "",
                "-N",
                "failure,delay",
                "-R",
                "hdrs",
                "-V",
                "env1",
                "root",
            ],
            "Subject: Grüße\n\nÄ\n".as_bytes(),
            |_| None,
        );
        assert!(result.is_ok(), "{result:?}");
        let size = seen.commands.get(1).expect("MAIL");
        assert!(size.starts_with("MAIL FROM:<> SIZE="), "{size}");
        assert!(
            size.ends_with(" BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=env1"),
            "{size}"
        );
        assert_eq!(
            seen.commands.get(2).map(String::as_str),
            Some("RCPT TO:<root@host.example> NOTIFY=FAILURE,DELAY")
        );
    }

    #[test]
    fn refused_recipient_sends_nothing_and_is_unavailable() {
        let (result, seen) = run(
            &["a@x.example", "no@x.example"],
            b"Subject: s\n\nb\n",
            |cmd| {
                cmd.contains("no@")
                    .then_some("550 5.1.1 <no@x.example>: no such user")
            },
        );
        let f = result.expect_err("refused");
        assert_eq!(f.code, EX_UNAVAILABLE);
        assert!(
            f.message.contains("550 5.1.1 <no@x.example>: no such user"),
            "{}",
            f.message
        );
        assert_eq!(seen.commands.last().map(String::as_str), Some("QUIT"));
        assert!(!seen.commands.iter().any(|c| c == "DATA"));
    }

    #[test]
    fn deferred_sender_is_tempfail() {
        let (result, _) = run(&["a@x.example"], b"b\n", |cmd| {
            cmd.starts_with("MAIL").then_some("451 4.3.0 try later")
        });
        assert_eq!(result.expect_err("deferred").code, EX_TEMPFAIL);
    }

    #[test]
    fn syntax_refusal_is_dataerr_and_refused_message_unavailable() {
        let (result, _) = run(&["a@x.example"], b"b\n", |cmd| {
            cmd.starts_with("RCPT")
                .then_some("501 5.1.3 Bad recipient address syntax")
        });
        assert_eq!(result.expect_err("501").code, EX_DATAERR);
        let (result, _) = run(&["a@x.example"], b"b\n", |cmd| {
            cmd.starts_with("DATA").then_some("554 5.7.1 no")
        });
        assert_eq!(result.expect_err("554").code, EX_UNAVAILABLE);
    }

    #[test]
    fn missing_daemon_is_tempfail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().to_str().expect("path");
        let f = submit_from(
            &args(&["--spool", spool, "a@x.example"]),
            Cursor::new(b"b\n".to_vec()),
            &env(),
        )
        .expect_err("no daemon");
        assert_eq!(f.code, EX_TEMPFAIL);
        assert!(f.message.contains("not running"), "{}", f.message);
    }

    #[test]
    fn no_recipients_is_usage() {
        let f = submit_from(&args(&[]), Cursor::new(Vec::new()), &env()).expect_err("none");
        assert_eq!((f.code, f.message.as_str()), (EX_USAGE, "no recipients"));
        let f = submit_from(
            &args(&["-t"]),
            Cursor::new(b"To: undisclosed-recipients:;\n\nb\n".to_vec()),
            &env(),
        )
        .expect_err("none");
        assert_eq!(f.code, EX_USAGE);
    }

    #[test]
    fn oversized_input_is_refused_before_connecting() {
        let mut input = std::io::repeat(b'x').take(MAX_MESSAGE + 1);
        let f = read_message(&mut input).expect_err("too big");
        assert_eq!(f.code, EX_TOO_BIG);
    }
}
