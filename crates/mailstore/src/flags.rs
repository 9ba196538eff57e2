//! Message flags as Maildir file names carry them, and Dovecot's keyword letters.
//!
//! A file in `cur/` is `<basename>:2,<letters>`: uppercase letters are the Maildir flags in
//! ASCII order (`D` Draft, `F` Flagged, `P` Passed, `R` Replied = \Answered, `S` Seen,
//! `T` Trashed = \Deleted), then lowercase `a`–`z` are keywords, letter *n* standing for the
//! keyword on line *n* of the folder's `dovecot-keywords` (`0 $Junk`).
//!
//! `P` is shown to IMAP as the keyword `$Forwarded` (RFC 5788), the meaning Maildir gives it;
//! setting `$Forwarded` writes `P` and never takes a keyword letter. Unknown uppercase letters
//! are dropped when the file is renamed.

use std::collections::BTreeSet;

use crate::error::{Result, StoreError};

/// The keyword Maildir's `P` (passed) flag stands for.
pub const FORWARDED: &str = "$Forwarded";

/// Most keywords a folder can have: one letter each, `a`–`z`.
pub const MAX_KEYWORDS: usize = 26;

/// The IMAP flags of one message. Keywords keep the case they were defined with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub seen: bool,
    pub answered: bool,
    pub flagged: bool,
    pub deleted: bool,
    pub draft: bool,
    /// Keywords, `$Forwarded` included when the file has `P`.
    pub keywords: BTreeSet<String>,
}

impl Flags {
    /// Flags from the letters after `:2,` (`keywords` maps letter index → name). Letters with
    /// no keyword defined are ignored, as Dovecot does.
    pub fn from_info(letters: &str, keywords: &Keywords) -> Flags {
        let mut f = Flags::default();
        for c in letters.chars() {
            match c {
                'D' => f.draft = true,
                'F' => f.flagged = true,
                'P' => {
                    f.keywords.insert(FORWARDED.to_string());
                }
                'R' => f.answered = true,
                'S' => f.seen = true,
                'T' => f.deleted = true,
                'a'..='z' => {
                    if let Some(k) = keywords.name((c as u8 - b'a') as usize) {
                        f.keywords.insert(k.to_string());
                    }
                }
                _ => {}
            }
        }
        f
    }

    /// The letters to write after `:2,`, in ASCII order. Keywords missing from `keywords` are
    /// added to it (the caller then saves it). Fails only when no letter is left.
    pub fn to_info(&self, keywords: &mut Keywords) -> Result<String> {
        let mut upper = String::new();
        if self.draft {
            upper.push('D');
        }
        if self.flagged {
            upper.push('F');
        }
        if self
            .keywords
            .iter()
            .any(|k| k.eq_ignore_ascii_case(FORWARDED))
        {
            upper.push('P');
        }
        if self.answered {
            upper.push('R');
        }
        if self.seen {
            upper.push('S');
        }
        if self.deleted {
            upper.push('T');
        }
        let mut lower = Vec::new();
        for k in &self.keywords {
            if k.eq_ignore_ascii_case(FORWARDED) {
                continue;
            }
            let idx = keywords.index_or_add(k)?;
            lower.push(b'a' + idx as u8);
        }
        lower.sort_unstable();
        lower.dedup();
        upper.extend(lower.into_iter().map(char::from));
        Ok(upper)
    }
}

/// A folder's `dovecot-keywords`: lines `<index> <name>`, index 0–25.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keywords {
    slots: Vec<Option<String>>,
    changed: bool,
}

impl Keywords {
    /// Reads the file's text. Lines that do not parse, repeat an index or use one over 25 are
    /// skipped: a damaged keywords file loses keyword names, never messages.
    pub fn parse(text: &str) -> Keywords {
        let mut slots: Vec<Option<String>> = Vec::new();
        for line in text.lines() {
            let Some((idx, name)) = line.split_once(' ') else {
                continue;
            };
            let Ok(idx) = idx.parse::<usize>() else {
                continue;
            };
            if idx >= MAX_KEYWORDS || check_keyword(name).is_err() {
                continue;
            }
            if slots.len() <= idx {
                slots.resize(idx + 1, None);
            }
            if let Some(slot) = slots.get_mut(idx) {
                if slot.is_none() {
                    *slot = Some(name.to_string());
                }
            }
        }
        Keywords {
            slots,
            changed: false,
        }
    }

    pub fn name(&self, idx: usize) -> Option<&str> {
        self.slots.get(idx).and_then(|s| s.as_deref())
    }

    /// True when [`Flags::to_info`] added a keyword since this was read.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(name) = s {
                out.push_str(&format!("{i} {name}\n"));
            }
        }
        out
    }

    /// Keywords compare case-insensitively (RFC 3501 §2.3.2).
    fn index_or_add(&mut self, name: &str) -> Result<usize> {
        check_keyword(name)?;
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(name)))
        {
            return Ok(i);
        }
        let free = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.slots.len() < MAX_KEYWORDS => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return Err(StoreError::TooManyKeywords),
        };
        if let Some(slot) = self.slots.get_mut(free) {
            *slot = Some(name.to_string());
        }
        self.changed = true;
        Ok(free)
    }
}

/// An IMAP `flag-keyword` is an atom (RFC 3501 §9): no space, control chars or specials, and
/// not a system flag (those start with `\`).
pub fn check_keyword(name: &str) -> Result<()> {
    let bad = |c: char| {
        c.is_control()
            || !c.is_ascii()
            || matches!(c, ' ' | '(' | ')' | '{' | '%' | '*' | '"' | '\\' | ']')
    };
    if name.is_empty() || name.len() > 200 || name.chars().any(bad) {
        return Err(StoreError::InvalidKeyword(name.to_string()));
    }
    Ok(())
}

/// Splits a Maildir file name into the basename (the UID list's key) and the flag letters
/// after `:2,` (empty when there is no info part, as in `new/`).
pub fn split_info(file_name: &str) -> (&str, &str) {
    match file_name.split_once(':') {
        Some((base, info)) => (base, info.strip_prefix("2,").unwrap_or("")),
        None => (file_name, ""),
    }
}
