//! Alias and virtual expansion (SPEC §4.3): a recipient → the local users, addresses, files,
//! commands, includes and errors its table entry leads to, recursively.
//!
//! Lookup order for an address, as OpenSMTPD's virtual lookups do: `user+tag@domain`,
//! `user@domain` (the sub-address stripped at the first delimiter), `user+tag`, `user`, then
//! the `@domain` catch-all. For a plain user name (alias tables): `user+tag`, then `user`.
//!
//! Rules of the walk:
//! - A bare-user target that is itself a key is expanded again; one without an entry is a
//!   final local user (its sub-address stripped, since it names a userbase entry).
//! - An address target whose domain the table serves (`example.org: true`) is expanded again
//!   with the address lookup order; in a served domain with no entry it becomes a 550 error
//!   (relaying it would send the mail back to ourselves); any other address is relayed.
//! - A target that leads back to the very entry being expanded (`m: m`, `m: m+box`) is the
//!   user itself: delivered locally, as Postfix and OpenSMTPD do. Any longer cycle is a loop
//!   and an error: no mail is delivered to half an expansion.
//! - The walk is bounded: `MAX_DEPTH` nested entries, `MAX_RESULTS` results, and a bound on
//!   the entries visited, so a table with many paths to the same entries cannot explode.
//! - Results are deduplicated (users and addresses case-insensitively), first one kept.
//! - Pure: `:include:` files are returned, not read.

use std::collections::HashSet;
use std::fmt;

use super::lookup::is_domain_marker;
use super::Table;

/// How the recipient is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpandMode {
    /// `alias <t>`: the key is a local user name; a domain in the recipient is ignored.
    Alias,
    /// `virtual <t>`: the key is the full address (with the fallbacks above).
    Virtual,
}

/// What a recipient expands to. Every list is deduplicated and in first-seen order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    /// Local users, to look up in the userbase.
    pub users: Vec<String>,
    /// Addresses to relay.
    pub addresses: Vec<String>,
    /// `/path/file` targets: append the message to the file.
    pub files: Vec<String>,
    /// `|command` targets (without the `|`).
    pub commands: Vec<String>,
    /// `:include:/path` targets (the path), for the caller to read.
    pub includes: Vec<String>,
    /// `error:CODE text` targets, and addresses in a served domain that have no entry.
    pub errors: Vec<(u16, String)>,
}

impl Expansion {
    fn total(&self) -> usize {
        self.users.len()
            + self.addresses.len()
            + self.files.len()
            + self.commands.len()
            + self.includes.len()
            + self.errors.len()
    }
}

/// Why a recipient could not be expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpandError {
    /// The entries that form a cycle, the first repeated at the end: `root -> pi -> root`.
    Loop(Vec<String>),
    /// More than `MAX_DEPTH` nested entries.
    TooDeep,
    /// More than `MAX_RESULTS` results (or too many entries visited).
    TooMany,
    /// The recipient has no entry.
    NotFound,
    /// An entry on the way has a target that is not one (`check` reports it at its line).
    Invalid {
        key: String,
        target: String,
        message: String,
    },
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Loop(chain) => write!(f, "alias loop: {}", chain.join(" -> ")),
            ExpandError::TooDeep => write!(
                f,
                "alias expansion nested more than {MAX_DEPTH} levels deep"
            ),
            ExpandError::TooMany => {
                write!(f, "alias expansion yields more than {MAX_RESULTS} results")
            }
            ExpandError::NotFound => write!(f, "no such user or alias"),
            ExpandError::Invalid {
                key,
                target,
                message,
            } => {
                write!(
                    f,
                    "invalid target \"{target}\" in the entry for \"{key}\": {message}"
                )
            }
        }
    }
}

impl std::error::Error for ExpandError {}

/// Nested entries followed at most.
pub const MAX_DEPTH: usize = 32;
/// Results returned at most.
pub const MAX_RESULTS: usize = 1000;
/// Entries visited at most in one expansion (guards against many paths to the same entries).
const MAX_VISITS: usize = 10_000;

/// Expands `recipient` (`user` or `user@domain`) through `table`. See the module docs.
pub fn expand(
    table: &Table,
    mode: ExpandMode,
    recipient: &str,
    sub_addr_delim: char,
) -> Result<Expansion, ExpandError> {
    let recipient = recipient.trim();
    let start = match (mode, recipient.rsplit_once('@')) {
        (ExpandMode::Alias, Some((user, _))) => table.lookup_user(user, sub_addr_delim),
        (ExpandMode::Virtual, Some((local, domain))) => {
            table.lookup_address(local, domain, sub_addr_delim)
        }
        (_, None) => table.lookup_user(recipient, sub_addr_delim),
    };
    let start = start.ok_or(ExpandError::NotFound)?;
    let mut walker = Walker::new(table, sub_addr_delim);
    walker.entry(start, None).map_err(|f| f.error)?;
    Ok(walker.out)
}

/// One target of an alias or virtual entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    User(&'a str),
    Address {
        full: &'a str,
        local: &'a str,
        domain: &'a str,
    },
    Command(&'a str),
    File(&'a str),
    Include(&'a str),
    Error(u16, &'a str),
}

/// The targets of a value: split at commas outside double quotes, each trimmed (and
/// unquoted), with its byte offset in the value. Empty targets are kept (and are errors).
pub(crate) fn split_targets(value: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut push = |start: usize, end: usize| {
        let piece = value.get(start..end).unwrap_or_default();
        let lead = piece.len() - piece.trim_start().len();
        let t = piece.trim();
        match t.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) => out.push((start + lead + 1, inner)),
            None => out.push((start + lead, t)),
        }
    };
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                push(start, i);
                start = i + 1;
            }
            _ => {}
        }
    }
    push(start, value.len());
    out
}

/// Classifies one (trimmed, non-empty) target.
pub(crate) fn parse_target(t: &str) -> Result<Target<'_>, String> {
    if t.is_empty() {
        return Err("empty target (two commas, or a comma at the end?)".to_string());
    }
    if t.contains('"') {
        return Err("unbalanced '\"'".to_string());
    }
    if let Some(cmd) = t.strip_prefix('|') {
        let cmd = cmd.trim();
        return if cmd.is_empty() {
            Err("empty command after '|'".to_string())
        } else {
            Ok(Target::Command(cmd))
        };
    }
    if t.starts_with('/') {
        return Ok(Target::File(t));
    }
    if let Some(path) = strip_prefix_ci(t, ":include:") {
        let path = path.trim();
        return if path.starts_with('/') {
            Ok(Target::Include(path))
        } else {
            Err(":include: needs an absolute path".to_string())
        };
    }
    if let Some(rest) = strip_prefix_ci(t, "error:") {
        let rest = rest.trim_start();
        let digits = rest
            .get(..3)
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
        let code = digits
            .and_then(|d| d.parse::<u16>().ok())
            .filter(|c| (400..600).contains(c));
        let text = rest.get(3..).unwrap_or_default();
        return match code {
            Some(code) if text.is_empty() || text.starts_with(char::is_whitespace) => {
                Ok(Target::Error(code, text.trim()))
            }
            _ => Err("expected error:CODE text, with a 4xx or 5xx CODE".to_string()),
        };
    }
    if t.contains(char::is_whitespace) {
        return Err("whitespace inside a target; separate targets with ','".to_string());
    }
    if let Some((local, domain)) = t.rsplit_once('@') {
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return Err("malformed address (expected local@domain)".to_string());
        }
        return Ok(Target::Address {
            full: t,
            local,
            domain,
        });
    }
    Ok(Target::User(t))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..).unwrap_or_default())
}

/// `user+tag` → `user` (at the first delimiter); unchanged without one, or when stripping
/// would leave nothing.
pub(crate) fn strip_sub_address(local: &str, delim: char) -> &str {
    match local.split_once(delim) {
        Some((user, _)) if !user.is_empty() => user,
        _ => local,
    }
}

impl Table {
    /// The entry a key leads to in an expansion: it must have a value and not mark a domain.
    fn alias_entry(&self, key: &str) -> Option<usize> {
        let i = self.index_of(key)?;
        let e = self.entries.get(i)?;
        (e.value.is_some() && !is_domain_marker(&e.key, e.value.as_deref())).then_some(i)
    }

    /// `user+tag`, then `user`.
    pub(crate) fn lookup_user(&self, user: &str, delim: char) -> Option<usize> {
        let stripped = strip_sub_address(user, delim);
        self.alias_entry(user).or_else(|| {
            (stripped != user)
                .then(|| self.alias_entry(stripped))
                .flatten()
        })
    }

    /// `user+tag@domain`, `user@domain`, `user+tag`, `user`, `@domain`.
    pub(crate) fn lookup_address(&self, local: &str, domain: &str, delim: char) -> Option<usize> {
        let stripped = strip_sub_address(local, delim);
        self.alias_entry(&format!("{local}@{domain}"))
            .or_else(|| {
                (stripped != local)
                    .then(|| self.alias_entry(&format!("{stripped}@{domain}")))
                    .flatten()
            })
            .or_else(|| self.lookup_user(local, delim))
            .or_else(|| self.alias_entry(&format!("@{domain}")))
    }
}

/// A failed walk, with where it failed: the entry and the byte offset in its value of the
/// target that closed the loop (or that is invalid), for `validate`.
pub(crate) struct Failure {
    pub error: ExpandError,
    pub at: Option<(usize, usize)>,
}

/// The depth-first walk of one expansion.
pub(crate) struct Walker<'t> {
    table: &'t Table,
    delim: char,
    pub out: Expansion,
    seen: HashSet<(u8, String)>,
    stack: Vec<usize>,
    visits: usize,
}

impl<'t> Walker<'t> {
    pub fn new(table: &'t Table, delim: char) -> Self {
        Walker {
            table,
            delim,
            out: Expansion::default(),
            seen: HashSet::new(),
            stack: Vec::new(),
            visits: 0,
        }
    }

    fn key(&self, i: usize) -> String {
        self.table
            .entries
            .get(i)
            .map(|e| e.key.clone())
            .unwrap_or_default()
    }

    /// Expands entry `idx`, reached from target `via` (entry, offset) if not the start.
    pub fn entry(&mut self, idx: usize, via: Option<(usize, usize)>) -> Result<(), Failure> {
        if let Some(first) = self.stack.iter().position(|&i| i == idx) {
            let mut chain: Vec<String> = self
                .stack
                .iter()
                .skip(first)
                .map(|&i| self.key(i))
                .collect();
            chain.push(self.key(idx));
            return Err(Failure {
                error: ExpandError::Loop(chain),
                at: via,
            });
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(Failure {
                error: ExpandError::TooDeep,
                at: via,
            });
        }
        self.visits += 1;
        if self.visits > MAX_VISITS {
            return Err(Failure {
                error: ExpandError::TooMany,
                at: via,
            });
        }
        let table = self.table;
        let Some(entry) = table.entries.get(idx) else {
            return Ok(());
        };
        let Some(value) = entry.value.as_deref() else {
            return Ok(());
        };
        self.stack.push(idx);
        for (offset, text) in split_targets(value) {
            let target = parse_target(text).map_err(|message| Failure {
                error: ExpandError::Invalid {
                    key: entry.key.clone(),
                    target: text.to_string(),
                    message,
                },
                at: Some((idx, offset)),
            })?;
            let via = Some((idx, offset));
            match target {
                Target::User(user) => match table.lookup_user(user, self.delim) {
                    Some(next) if next != idx => self.entry(next, via)?,
                    _ => self.add(0, strip_sub_address(user, self.delim)),
                },
                Target::Address {
                    full,
                    local,
                    domain,
                } if table.serves_domain(domain) => {
                    match table.lookup_address(local, domain, self.delim) {
                        Some(next) if next != idx => self.entry(next, via)?,
                        Some(_) => self.add(0, strip_sub_address(local, self.delim)),
                        None => self.add_error(550, format!("5.1.1 <{full}>: no such user")),
                    }
                }
                Target::Address { full, .. } => self.add(1, full),
                Target::File(path) => self.add(2, path),
                Target::Command(cmd) => self.add(3, cmd),
                Target::Include(path) => self.add(4, path),
                Target::Error(code, text) => self.add_error(code, text.to_string()),
            }
            if self.out.total() > MAX_RESULTS {
                return Err(Failure {
                    error: ExpandError::TooMany,
                    at: via,
                });
            }
        }
        self.stack.pop();
        Ok(())
    }

    /// Adds a result of kind 0 users, 1 addresses, 2 files, 3 commands, 4 includes.
    fn add(&mut self, kind: u8, value: &str) {
        let folded = if kind <= 1 {
            value.to_lowercase()
        } else {
            value.to_string()
        };
        if !self.seen.insert((kind, folded)) {
            return;
        }
        let list = match kind {
            0 => &mut self.out.users,
            1 => &mut self.out.addresses,
            2 => &mut self.out.files,
            3 => &mut self.out.commands,
            _ => &mut self.out.includes,
        };
        list.push(value.to_string());
    }

    fn add_error(&mut self, code: u16, text: String) {
        if !self
            .out
            .errors
            .iter()
            .any(|(c, t)| *c == code && *t == text)
        {
            self.out.errors.push((code, text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_with_offsets_and_quotes() {
        assert_eq!(split_targets("a, b,c"), vec![(0, "a"), (3, "b"), (5, "c")]);
        assert_eq!(
            split_targets("\"|cmd a,b\", x"),
            vec![(1, "|cmd a,b"), (12, "x")]
        );
        assert_eq!(split_targets("a,,"), vec![(0, "a"), (2, ""), (3, "")]);
    }

    #[test]
    fn targets_classify() {
        assert_eq!(parse_target("pi"), Ok(Target::User("pi")));
        assert_eq!(
            parse_target("m+root@example.org"),
            Ok(Target::Address {
                full: "m+root@example.org",
                local: "m+root",
                domain: "example.org"
            })
        );
        assert_eq!(
            parse_target("| /usr/bin/procmail -d m"),
            Ok(Target::Command("/usr/bin/procmail -d m"))
        );
        assert_eq!(
            parse_target("/var/mail/log"),
            Ok(Target::File("/var/mail/log"))
        );
        assert_eq!(
            parse_target(":include:/etc/mail/list"),
            Ok(Target::Include("/etc/mail/list"))
        );
        assert_eq!(
            parse_target("error:550 gone away"),
            Ok(Target::Error(550, "gone away"))
        );
        assert_eq!(parse_target("ERROR:421"), Ok(Target::Error(421, "")));
        for bad in [
            "",
            "error:250 ok",
            "error:55",
            "error:5500",
            ":include:rel",
            "|",
            "m pi",
            "@x",
            "a@",
            "\"a",
        ] {
            assert!(parse_target(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sub_address_strips_at_first_delimiter() {
        assert_eq!(strip_sub_address("m+a+b", '+'), "m");
        assert_eq!(strip_sub_address("m-box", '-'), "m");
        assert_eq!(strip_sub_address("+x", '+'), "+x");
        assert_eq!(strip_sub_address("plain", '+'), "plain");
    }
}
