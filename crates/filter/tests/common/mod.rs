//! Helpers for the filter tests: configurations, fast settings, and a scripted filter.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ownmail_config::model::Config;
use ownmail_config::{parse_str, ParseOptions};
use ownmail_filter::Settings;

/// A configuration from text; panics on parse errors (they are the test's own).
pub fn config(text: &str) -> Config {
    let parsed = parse_str("test.conf", text, &ParseOptions::default());
    assert!(
        !parsed.diags.has_errors(),
        "test config does not parse: {:?}",
        parsed.diags
    );
    parsed.config
}

/// Short timeouts and backoffs so failure tests run fast.
pub fn fast() -> Settings {
    Settings {
        handshake_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_millis(1500),
        data_timeout: Duration::from_secs(5),
        restart_backoff: Duration::from_millis(100),
        restart_backoff_max: Duration::from_millis(400),
        session_timeout_secs: 300,
        admd: Some("mx.example.org".into()),
    }
}

/// A filter written in Python for tests. Arguments (all optional):
///   --log FILE            append every line received (handshake included)
///   --reports a,b         report events to register
///   --phases a,b          filter phases to register
///   --act PHASE=ANSWER    answer for a phase, e.g. `mail-from=reject|550 5.7.1 no`;
///                         ANSWER `rewrite-if:VALUE:REPLY` answers REPLY when the parameter
///                         is VALUE, else proceed
///   --header "H: v"       data-line: add this line before the message
///   --mode M              garbage | crash | hang | badtoken | badcode: misbehave at the
///                         first filter request
///   --once FILE           misbehave only if FILE does not exist yet (it is then created)
pub const SCRIPT: &str = r#"
import sys, os

args = sys.argv[1:]
opts = {"act": {}}
i = 0
while i < len(args):
    k = args[i][2:]; v = args[i + 1]; i += 2
    if k == "act":
        p, a = v.split("=", 1); opts["act"][p] = a
    else:
        opts[k] = v

logf = open(opts["log"], "ab", buffering=0) if "log" in opts else None
out = sys.stdout.buffer
inp = sys.stdin.buffer

def log(line):
    if logf:
        logf.write(line + b"\n")

def emit(s):
    out.write(s + b"\n"); out.flush()

while True:
    line = inp.readline()
    if not line:
        sys.exit(0)
    line = line.rstrip(b"\n")
    log(line)
    if line == b"config|ready":
        break

for e in filter(None, opts.get("reports", "").split(",")):
    emit(b"register|report|smtp-in|" + e.encode())
for p in filter(None, opts.get("phases", "").split(",")):
    emit(b"register|filter|smtp-in|" + p.encode())
emit(b"register|ready")

mode = opts.get("mode")
if mode and "once" in opts:
    if os.path.exists(opts["once"]):
        mode = None
    else:
        open(opts["once"], "w").close()
first_data = set()

while True:
    line = inp.readline()
    if not line:
        sys.exit(0)
    line = line.rstrip(b"\n")
    log(line)
    f = line.split(b"|")
    if f[0] != b"filter":
        continue
    phase, sid, tok = f[4], f[5], f[6]
    if mode == "crash":
        sys.exit(3)
    if mode == "hang":
        continue
    if mode == "garbage":
        emit(b"this is not the protocol"); continue
    if mode == "badtoken":
        emit(b"filter-result|" + sid + b"|00000000deadbeef|proceed"); continue
    if mode == "badcode":
        emit(b"filter-result|" + sid + b"|" + tok + b"|reject|250 all good"); continue
    if phase == b"data-line":
        payload = line.split(b"|", 7)[7]
        if "header" in opts and (sid, tok) not in first_data:
            first_data.add((sid, tok))
            emit(b"filter-dataline|" + sid + b"|" + tok + b"|" + opts["header"].encode())
        emit(b"filter-dataline|" + sid + b"|" + tok + b"|" + payload)
        continue
    param = b"|".join(f[7:]).decode("utf-8", "replace")
    act = opts["act"].get(phase.decode(), "proceed")
    if act.startswith("rewrite-if:"):
        _, value, reply = act.split(":", 2)
        act = reply if param.split("|")[-1] == value else "proceed"
    emit(b"filter-result|" + sid + b"|" + tok + b"|" + act.encode())
"#;

/// A temp dir holding the scripted filter.
pub struct Scripted {
    pub dir: tempfile::TempDir,
}

impl Scripted {
    pub fn new() -> Scripted {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("filter.py"), SCRIPT).expect("write script");
        Scripted { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The shell command running the script with these arguments (each single-quoted).
    pub fn command(&self, args: &[&str]) -> String {
        let mut cmd = format!("exec /usr/bin/python3 {}", self.path("filter.py").display());
        for a in args {
            cmd.push_str(&format!(" '{}'", a.replace('\'', r"'\''")));
        }
        cmd
    }

    /// `command` quoted for a `proc-exec "…"` in smtpd.conf.
    pub fn conf_command(&self, args: &[&str]) -> String {
        self.command(args)
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    }
}

/// The lines a scripted filter logged.
pub fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read(path)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (bounded) until `cond` holds.
pub async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
