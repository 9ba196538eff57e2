//! mda destinations (SPEC §5.3): `/bin/sh -c COMMAND` as the user, the message on stdin.
//!
//! Exit 0 delivered, exit 75 (`EX_TEMPFAIL`, sysexits.h) try again later, any other exit or a
//! signal a permanent failure that quotes what the program said on stderr. A program that
//! runs past the timeout is killed, with everything it started (it runs in its own process
//! group), and the delivery is retried.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use ownmail_types::{DeliveryOutcome, LocalUser};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// sysexits.h `EX_TEMPFAIL`.
const EX_TEMPFAIL: i32 = 75;
/// How much of the program's stdout and stderr is kept for the failure reason; the rest is
/// read and dropped, so a chatty program can neither block on a full pipe nor fill memory.
const KEEP_OUTPUT: usize = 4096;
/// The environment's `PATH`; nothing else of ours is passed on.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Runs `command` with `copy` (already in local form) on its stdin.
pub(crate) async fn deliver(
    user: &LocalUser,
    command: &str,
    copy: Vec<u8>,
    timeout: Duration,
) -> DeliveryOutcome {
    let owner = match crate::owner_for(user) {
        Ok(owner) => owner,
        Err(refused) => return refused,
    };
    let cwd = if user.home.is_dir() {
        user.home.as_path()
    } else {
        Path::new("/")
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .env_clear()
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .env("SHELL", "/bin/sh")
        .env("PATH", DEFAULT_PATH)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some((uid, gid)) = owner {
        // With a uid set and the real uid 0, the standard library also calls setgroups(0)
        // in the child before setuid, so no supplementary group of ours (root's) is kept.
        cmd.uid(uid).gid(gid);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            return DeliveryOutcome::TempFail {
                reason: format!("cannot start mda: {e}"),
            }
        }
    };
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let run = async {
        let feed = async move {
            let Some(mut stdin) = stdin else {
                return Ok(());
            };
            match stdin.write_all(&copy).await {
                // It stopped reading early; its exit status says whether that was fine.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                result => result,
            }
            // stdin dropped here: the program sees end of file.
        };
        let (fed, out, err) = tokio::join!(feed, read_bounded(stdout), read_bounded(stderr));
        let status = child.wait().await;
        (fed, out, err, status)
    };
    let (fed, out, err, status) = match tokio::time::timeout(timeout, run).await {
        Ok(done) => done,
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            let _ = child.kill().await;
            return DeliveryOutcome::TempFail {
                reason: format!(
                    "mda timed out after {}s and was killed",
                    timeout.as_secs_f64()
                ),
            };
        }
    };
    match status {
        Ok(status) => outcome(status, fed.err(), &out, &err),
        Err(e) => DeliveryOutcome::TempFail {
            reason: format!("waiting for mda failed: {e}"),
        },
    }
}

fn outcome(
    status: ExitStatus,
    feed_error: Option<std::io::Error>,
    stdout: &[u8],
    stderr: &[u8],
) -> DeliveryOutcome {
    let said = said(stdout, stderr);
    match (status.code(), status.signal()) {
        (Some(0), _) => match feed_error {
            None => DeliveryOutcome::Delivered {
                detail: "mda exited 0".to_string(),
            },
            // Exit 0 after we could not hand over the whole message is not a delivery.
            Some(e) => DeliveryOutcome::TempFail {
                reason: format!("writing to mda failed: {e}"),
            },
        },
        (Some(EX_TEMPFAIL), _) => DeliveryOutcome::TempFail {
            reason: format!("mda exited {EX_TEMPFAIL} (temporary failure){said}"),
        },
        (Some(code), _) => DeliveryOutcome::PermFail {
            reason: format!("mda exited {code}{said}"),
        },
        (None, Some(signal)) => DeliveryOutcome::PermFail {
            reason: format!("mda killed by signal {signal}{said}"),
        },
        (None, None) => DeliveryOutcome::PermFail {
            reason: format!("mda ended with {status}{said}"),
        },
    }
}

/// `": <stderr>"` (or stdout when stderr is empty), on one line, printable, or nothing.
fn said(stdout: &[u8], stderr: &[u8]) -> String {
    let text = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        stderr
    } else {
        stdout
    };
    let text = String::from_utf8_lossy(text);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// Reads to end of file, keeping the first [`KEEP_OUTPUT`] bytes.
async fn read_bounded<R: AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else { return kept };
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = KEEP_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
            }
        }
    }
}
