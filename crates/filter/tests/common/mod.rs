//! Helpers for the filter tests: configurations, fast settings, and a scripted filter.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ownmail_config::diag::Diagnostics;
use ownmail_config::model::Config;
use ownmail_config::table::Table;
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

/// No tables (configurations without built-in filters that name one).
pub fn no_tables() -> Arc<HashMap<String, Table>> {
    Arc::new(HashMap::new())
}

/// The tables of `config`, loaded as `check` loads them; panics on errors.
pub fn tables_of(config: &Config) -> Arc<HashMap<String, Table>> {
    let mut diags = Diagnostics::new();
    let mut out = HashMap::new();
    for decl in &config.tables {
        let t = Table::load(decl, &mut diags).expect("table loads");
        out.insert(decl.name.clone(), t);
    }
    assert!(!diags.has_errors(), "{diags:?}");
    Arc::new(out)
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

/// The scripted filter shared with tests/e2e/test_filters.py; its docstring lists the
/// options, passed as `key=value` arguments (e.g. `phases=mail-from`, `mode=crash`,
/// `act=rcpt-to=reject|550 5.7.1 no`, `log=FILE`).
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripted_filter.py");

/// A temp dir for the scripted filter's logs and marker files.
pub struct Scripted {
    pub dir: tempfile::TempDir,
}

impl Scripted {
    pub fn new() -> Scripted {
        let dir = tempfile::tempdir().expect("tempdir");
        Scripted { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The shell command running the script with these `key=value` arguments (each
    /// single-quoted).
    pub fn command(&self, args: &[&str]) -> String {
        let mut cmd = String::from("exec /usr/bin/python3");
        for a in std::iter::once(&SCRIPT).chain(args) {
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
