//! `ownmail maildir sync DIR…`: brings the UID lists of every folder of a Maildir up to date,
//! as the first IMAP login would — for a large Maildir moved in from elsewhere (thousands of
//! files without UIDs yet), done ahead of time in front of the administrator. Progress is
//! drawn on stderr when it is a terminal and nothing is drawn otherwise (cron, logs).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Subcommand;
use ownmail_mailstore::MailStore;

#[derive(Subcommand)]
pub enum MaildirAction {
    /// Give every message of every folder its UID (dovecot-uidlist), showing progress.
    Sync {
        /// The Maildirs (each the INBOX, with `.Folder` directories inside).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
}

pub fn maildir_command(action: MaildirAction) -> ExitCode {
    match action {
        MaildirAction::Sync { dirs } => {
            let tty = std::io::stderr().is_terminal();
            let mut failed = false;
            for dir in dirs {
                let mut bar = Progress::new(tty);
                match sync(&dir, &mut |folder, done, total| {
                    bar.show(folder, done, total)
                }) {
                    Ok((folders, messages)) => {
                        bar.finish();
                        println!("{}: {folders} folders, {messages} messages", dir.display());
                    }
                    Err(e) => {
                        bar.finish();
                        eprintln!("ownmail maildir sync: {}: {e}", dir.display());
                        failed = true;
                    }
                }
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

/// Syncs every selectable folder of the Maildir at `dir`; returns (folders, messages).
pub fn sync(
    dir: &Path,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(usize, usize), String> {
    let md = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !md.is_dir() || !dir.join("cur").is_dir() {
        return Err("not a Maildir (no cur/ directory)".to_string());
    }
    let store = MailStore::open(dir);
    let folders = store.list_folders().map_err(|e| e.to_string())?;
    let (mut n, mut messages) = (0, 0);
    for f in folders.iter().filter(|f| f.selectable) {
        let folder = store
            .folder(&f.name)
            .map_err(|e| format!("{}: {e}", f.name))?;
        let state = folder
            .sync_with_progress(&mut |done, total| progress(&f.name, done, total))
            .map_err(|e| format!("{}: {e}", f.name))?;
        n += 1;
        messages += state.messages.len();
    }
    Ok((n, messages))
}

/// One status line on a terminal, redrawn at most ten times a second.
struct Progress {
    tty: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    fn new(tty: bool) -> Progress {
        Progress {
            tty,
            last: None,
            drawn: false,
        }
    }

    fn show(&mut self, folder: &str, done: usize, total: usize) {
        if !self.tty {
            return;
        }
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if !due && done != total {
            return;
        }
        self.last = Some(Instant::now());
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let width = 30;
        let filled = (done * width).checked_div(total).unwrap_or(width);
        let bar: String = "#".repeat(filled) + &"-".repeat(width.saturating_sub(filled));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{folder}: [{bar}] {done}/{total} ({pct}%)");
        let _ = err.flush();
        self.drawn = true;
    }

    fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr().lock());
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_numbers_every_folder_and_reports_progress() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("Maildir");
        for sub in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        for i in 0..25 {
            std::fs::write(
                root.join("new")
                    .join(format!("{}.M{i}P1.h,S=2", 1_700_000_000 + i)),
                "x\n",
            )
            .expect("write");
        }
        std::fs::write(root.join(".Sent/cur/1700000000.M1P1.h,S=2:2,S"), "y\n").expect("write");
        let mut calls = Vec::new();
        let (folders, messages) =
            sync(&root, &mut |f, d, t| calls.push((f.to_string(), d, t))).expect("sync");
        assert_eq!((folders, messages), (2, 26));
        assert!(calls.contains(&("INBOX".to_string(), 25, 25)));
        assert!(calls.contains(&("Sent".to_string(), 1, 1)));
        assert!(root.join("dovecot-uidlist").is_file());
        assert!(root.join(".Sent/dovecot-uidlist").is_file());
        assert!(sync(t.path(), &mut |_, _, _| {}).is_err());
    }
}
