//! Routing one recipient: rule → action → alias/virtual expansion → destinations.
//!
//! Addresses produced by an expansion go through the rules again as an internal envelope
//! (OpenSMTPD matches them as `from local`), so `root: m+root@example.org` in a `for local`
//! table ends in the Maildir that the `for domain example.org` rule gives `m`. The walk is
//! bounded in depth and in results, and an address met twice in one walk is not followed
//! again (so alias cycles end; a walk that yields nothing deliverable is a loop error).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ownmail_config::model::{Action, ActionKind, Expansion, Verdict};
use ownmail_config::table::AliasTarget;
use ownmail_types::{Address, Destination, LocalUser, ReversePath};

use crate::{Ruleset, SessionInfo};

/// How deep expansions may nest (addresses re-routed through the rules, user aliases).
const MAX_DEPTH: usize = 16;
/// How many destinations one recipient may expand into.
const MAX_DESTINATIONS: usize = 1000;

/// Why a recipient is refused: an SMTP reply code, enhanced code and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: String,
}

impl Refusal {
    fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Self {
        Refusal {
            code,
            enhanced,
            text: text.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptDecision {
    /// Accepted: the rule that matched (for the log) and every destination it resolved to.
    Accept {
        rule: usize,
        action: String,
        destinations: Vec<Destination>,
    },
    /// Refused (5xx) or deferred (4xx).
    Refuse(Refusal),
}

struct Walk<'a> {
    rs: &'a Ruleset,
    internal: SessionInfo,
    from: &'a ReversePath,
    seen_addresses: HashSet<String>,
    seen_users: HashSet<String>,
    out: Vec<Destination>,
}

impl Ruleset {
    /// Resolves `rcpt` as given in `RCPT TO` by a client in session `s`.
    pub fn route(&self, s: &SessionInfo, from: &ReversePath, rcpt: &Address) -> RcptDecision {
        // RFC 5321 §4.5.1: `RCPT TO:<postmaster>` without a domain is this host's postmaster.
        let rcpt = if rcpt.domain().is_empty() {
            Address::new_unchecked(rcpt.local(), &self.hostname)
        } else {
            rcpt.clone()
        };
        let Some(rule) = self.first_match(s, from, &rcpt) else {
            return RcptDecision::Refuse(if self.is_local_domain(rcpt.domain()) {
                Refusal::new(
                    550,
                    "5.1.1",
                    format!("<{rcpt}>: Recipient address rejected: User unknown"),
                )
            } else {
                Refusal::new(550, "5.7.1", format!("<{rcpt}>: Relay access denied"))
            });
        };
        let action_name = match &self.config.rules[rule].verdict {
            Verdict::Reject => {
                return RcptDecision::Refuse(Refusal::new(
                    550,
                    "5.7.1",
                    format!("<{rcpt}>: Recipient address rejected"),
                ))
            }
            Verdict::Action(a) => a.clone(),
        };
        let Some(action) = self.config.action(&action_name) else {
            return RcptDecision::Refuse(Refusal::new(
                451,
                "4.3.0",
                "configuration error: action missing",
            ));
        };
        let mut internal = s.clone();
        internal.local = true;
        let mut walk = Walk {
            rs: self,
            internal,
            from,
            seen_addresses: HashSet::new(),
            seen_users: HashSet::new(),
            out: Vec::new(),
        };
        walk.seen_addresses.insert(rcpt.to_string().to_lowercase());
        if let Err(r) = walk.action(action, &rcpt, 0) {
            return RcptDecision::Refuse(r);
        }
        if walk.out.is_empty() {
            return RcptDecision::Refuse(Refusal::new(
                550,
                "5.4.6",
                format!("<{rcpt}>: alias loop, nothing to deliver to"),
            ));
        }
        RcptDecision::Accept {
            rule,
            action: action_name,
            destinations: walk.out,
        }
    }
}

impl Walk<'_> {
    fn push(&mut self, d: Destination) -> Result<(), Refusal> {
        if !self.out.contains(&d) {
            if self.out.len() >= MAX_DESTINATIONS {
                return Err(Refusal::new(
                    550,
                    "5.7.0",
                    "recipient expands to too many destinations",
                ));
            }
            self.out.push(d);
        }
        Ok(())
    }

    /// An address met inside an expansion: through the rules again, as internal mail.
    fn address(&mut self, a: &Address, depth: usize) -> Result<(), Refusal> {
        if depth > MAX_DEPTH {
            return Err(Refusal::new(
                550,
                "5.4.6",
                format!("<{a}>: alias expansion too deep"),
            ));
        }
        if !self.seen_addresses.insert(a.to_string().to_lowercase()) {
            return Ok(());
        }
        let internal = self.internal.clone();
        let Some(rule) = self.rs.first_match(&internal, self.from, a) else {
            return Err(Refusal::new(
                550,
                "5.7.1",
                format!("<{a}>: no rule accepts this alias target"),
            ));
        };
        match &self.rs.config.rules[rule].verdict {
            Verdict::Reject => Err(Refusal::new(
                550,
                "5.7.1",
                format!("<{a}>: alias target rejected"),
            )),
            Verdict::Action(name) => match self.rs.config.action(name) {
                Some(action) => self.action(action, a, depth + 1),
                None => Err(Refusal::new(
                    451,
                    "4.3.0",
                    "configuration error: action missing",
                )),
            },
        }
    }

    /// Applies `action` to recipient `a`: expand it with the action's table, or deliver it.
    fn action(&mut self, action: &Action, a: &Address, depth: usize) -> Result<(), Refusal> {
        if let ActionKind::Relay(_) = action.kind {
            if action.expansion.is_none() {
                return self.push(Destination::Relay {
                    action: action.name.clone(),
                    to: a.clone(),
                });
            }
        }
        let delim = self.rs.sub_addr_delim;
        match &action.expansion {
            None => self.user(action, &strip_sub_address(a.local(), delim), depth),
            Some(exp) => {
                let (table_ref, virtual_) = match exp {
                    Expansion::Alias(t) => (t, false),
                    Expansion::Virtual(t) => (t, true),
                };
                let Some(table) = self.rs.table(&table_ref.name) else {
                    return Err(Refusal::new(
                        451,
                        "4.3.0",
                        format!("table {} is not loaded", table_ref.name),
                    ));
                };
                let targets = if virtual_ {
                    table.address_targets(a.local(), a.domain(), delim)
                } else {
                    table.user_targets(a.local(), delim)
                };
                match targets {
                    None if virtual_ => Err(Refusal::new(
                        550,
                        "5.1.1",
                        format!("<{a}>: Recipient address rejected: User unknown"),
                    )),
                    None => self.user(action, &strip_sub_address(a.local(), delim), depth),
                    Some(targets) => self.targets(action, targets, depth),
                }
            }
        }
    }

    fn targets(
        &mut self,
        action: &Action,
        targets: Vec<AliasTarget>,
        depth: usize,
    ) -> Result<(), Refusal> {
        for t in targets {
            match t {
                AliasTarget::User(u) => self.alias_user(action, &u, depth + 1)?,
                AliasTarget::Address(s) => match Address::parse(&s) {
                    Ok(addr) => self.address(&addr, depth + 1)?,
                    Err(e) => {
                        return Err(Refusal::new(
                            451,
                            "4.3.0",
                            format!("bad alias target {s}: {e}"),
                        ))
                    }
                },
                AliasTarget::Command(cmd) => {
                    let user = self.run_as(action)?;
                    self.push(Destination::Mda { user, command: cmd })?;
                }
                AliasTarget::File(path) => {
                    let user = self.run_as(action)?;
                    self.push(Destination::Mbox {
                        user,
                        path: PathBuf::from(path),
                    })?;
                }
                AliasTarget::Include(path) => {
                    return Err(Refusal::new(
                        451,
                        "4.3.0",
                        format!(":include:{path} is not supported yet"),
                    ));
                }
                AliasTarget::Error(code, text) => {
                    let enhanced = if code >= 500 { "5.0.0" } else { "4.0.0" };
                    return Err(Refusal::new(code, enhanced, text));
                }
            }
        }
        Ok(())
    }

    /// A user name from an alias: aliased further in the same table, or a final local user.
    fn alias_user(&mut self, action: &Action, user: &str, depth: usize) -> Result<(), Refusal> {
        if depth > MAX_DEPTH {
            return Err(Refusal::new(
                550,
                "5.4.6",
                format!("{user}: alias expansion too deep"),
            ));
        }
        let key = user.to_lowercase();
        let first_visit = self.seen_users.insert(key);
        let table = match &action.expansion {
            Some(Expansion::Alias(t)) | Some(Expansion::Virtual(t)) => self.rs.table(&t.name),
            None => None,
        };
        if first_visit {
            if let Some(targets) = table.and_then(|t| t.user_targets(user, self.rs.sub_addr_delim))
            {
                // A user aliased to itself (`m: m, archive@x`) is delivered locally.
                let (own, others): (Vec<AliasTarget>, Vec<AliasTarget>) =
                    targets.into_iter().partition(
                        |t| matches!(t, AliasTarget::User(u) if u.eq_ignore_ascii_case(user)),
                    );
                if !own.is_empty() {
                    self.user(action, user, depth)?;
                }
                return self.targets(action, others, depth);
            }
            return self.user(action, user, depth);
        }
        Ok(())
    }

    /// The user whose rights an alias command or file runs with: the action's `user`, else
    /// the unprivileged `nobody`.
    fn run_as(&self, action: &Action) -> Result<LocalUser, Refusal> {
        let name = action.user.as_deref().unwrap_or("nobody");
        system_user(name)
            .ok_or_else(|| Refusal::new(451, "4.3.0", format!("user {name} does not exist")))
    }

    /// Final delivery to local user `name` with `action`.
    fn user(&mut self, action: &Action, name: &str, _depth: usize) -> Result<(), Refusal> {
        let unknown = || {
            Refusal::new(
                550,
                "5.1.1",
                format!("<{name}>: Recipient address rejected: User unknown"),
            )
        };
        let user = match &action.userbase {
            Some(t) => {
                let table = self.rs.table(&t.name).ok_or_else(unknown)?;
                let e = table.userbase(name).ok_or_else(unknown)?;
                let user = LocalUser {
                    name: e.name,
                    uid: e.uid,
                    gid: e.gid,
                    home: e.home,
                };
                match &action.user {
                    // `user NAME`: deliver with that system user's rights into the userbase home.
                    Some(u) => {
                        let sys = system_user(u).ok_or_else(unknown)?;
                        LocalUser {
                            uid: sys.uid,
                            gid: sys.gid,
                            ..user
                        }
                    }
                    None => user,
                }
            }
            None => match &action.user {
                Some(u) => {
                    let sys = system_user(u).ok_or_else(unknown)?;
                    system_user(name)
                        .map(|own| LocalUser {
                            uid: sys.uid,
                            gid: sys.gid,
                            ..own
                        })
                        .ok_or_else(unknown)?
                }
                None => system_user(name).ok_or_else(unknown)?,
            },
        };
        let dest = match &action.kind {
            ActionKind::Maildir { path, junk } => {
                let p = match path {
                    None => user.home.join("Maildir"),
                    Some(p) => PathBuf::from(expand_format(p, &user)),
                };
                Destination::Maildir {
                    user,
                    path: p,
                    junk: *junk,
                }
            }
            ActionKind::Mbox => {
                let path = Path::new("/var/mail").join(&user.name);
                Destination::Mbox { user, path }
            }
            ActionKind::Mda(cmd) => Destination::Mda {
                command: expand_format(cmd, &user),
                user,
            },
            ActionKind::Lmtp(dest) => Destination::Lmtp {
                dest: dest.clone(),
                rcpt: user.name,
            },
            ActionKind::ForwardOnly | ActionKind::ExpandOnly => {
                return Err(Refusal::new(
                    550,
                    "5.1.1",
                    format!("<{name}>: no local delivery for this address"),
                ))
            }
            ActionKind::Relay(_) => {
                return Err(Refusal::new(
                    550,
                    "5.1.1",
                    format!("<{name}>: not an address to relay"),
                ))
            }
        };
        self.push(dest)
    }
}

/// `user+tag` → `user` at the first delimiter (unchanged if that would leave nothing).
fn strip_sub_address(local: &str, delim: char) -> String {
    match local.split_once(delim) {
        Some((u, _)) if !u.is_empty() => u.to_string(),
        _ => local.to_string(),
    }
}

/// `~` (at the start) is the user's home; `%{user.username}`, `%{user.directory}` and
/// `%{dest.user}` as in OpenSMTPD's format specifiers.
pub(crate) fn expand_format(s: &str, user: &LocalUser) -> String {
    let home = user.home.to_string_lossy();
    let mut out = if s == "~" {
        home.to_string()
    } else if let Some(rest) = s.strip_prefix("~/") {
        format!("{}/{rest}", home.trim_end_matches('/'))
    } else {
        s.to_string()
    };
    for (k, v) in [
        ("%{user.username}", user.name.as_str()),
        ("%{user.directory}", &home),
        ("%{dest.user}", user.name.as_str()),
    ] {
        out = out.replace(k, v);
    }
    out
}

/// A user of the system's passwd database.
pub(crate) fn system_user(name: &str) -> Option<LocalUser> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let lookup = |n: &str| nix::unistd::User::from_name(n).ok().flatten();
    let u = lookup(name).or_else(|| lookup(&name.to_lowercase()))?;
    Some(LocalUser {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir,
    })
}

#[cfg(test)]
mod tests;
