//! Every configuration of the article, as printed there, compiles to one rule model, and
//! `check --print` of it reads back to exactly that model (SPEC §6.3).

use std::path::{Path, PathBuf};

use ownmail_config::print::print_modern;
use ownmail_config::{parse_file, parse_str, ParseOptions};

fn article_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/article")
}

fn round_trip(name: &str, extra: &str) {
    let text = std::fs::read_to_string(article_dir().join(name)).expect("article fixture");
    let opts = ParseOptions {
        pki_dir: PathBuf::from("/etc/certs"),
    };
    let first = parse_str(name, &format!("{text}{extra}"), &opts);
    let errors: Vec<String> = first
        .diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}");
    assert!(!first.config.rules.is_empty(), "{name}: no rules");
    let printed = print_modern(&first.config);
    assert!(
        !printed.lines().any(|l| l.starts_with("accept ")),
        "{name}: legacy rule printed"
    );
    let second = parse_str("printed.conf", &printed, &opts);
    assert!(
        !second.diags.has_errors(),
        "{name}: printed config has errors:\n{printed}"
    );
    assert_eq!(first.config, second.config, "{name}: printed:\n{printed}");
}

#[test]
fn article_configurations_print_back_to_the_same_rule_model() {
    for name in [
        "smtpd.conf.v1",
        "smtpd.conf.v1b",
        "smtpd.conf.v2",
        "smtpd.conf.v3",
    ] {
        round_trip(name, "");
    }
    let dkim = std::fs::read_to_string(article_dir().join("dkimproxy.snippet")).expect("snippet");
    let backup = std::fs::read_to_string(article_dir().join("backup.snippet")).expect("snippet");
    round_trip("smtpd.conf.v3", &format!("\n{dkim}\n{backup}\n"));
}

#[test]
fn a_missing_configuration_file_is_an_error_naming_it() {
    let p = parse_file(
        Path::new("/nonexistent/smtpd.conf"),
        &ParseOptions::default(),
    );
    let e = p.diags.iter().next().expect("an error").to_string();
    assert!(e.starts_with("/nonexistent/smtpd.conf:"), "{e}");
}
