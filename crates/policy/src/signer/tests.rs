//! Signing, checked with mail-auth's own verifier (fed the DNS record through its TXT cache)
//! and against a body hash computed by hand; e2e tests check the same with dkimpy.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};
use ownmail_config::diag::Diagnostics;
use ownmail_config::table::Table;
use ownmail_config::{parse_str, ParseOptions};
use ownmail_types::OutboundSigner;
use rsa::pkcs1::EncodeRsaPrivateKey;

use super::*;
use crate::{dkim_txt, generate, KeyKind};

struct Txts(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for Txts {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().ok()?.get(name).cloned()
    }
    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().ok()?.remove(name)
    }
    fn insert(&self, key: Box<str>, value: Txt, _: std::time::Instant) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key, value);
        }
    }
}

struct World {
    _dir: tempfile::TempDir,
    signer: DkimSigner,
    txt: Txts,
}

fn write_key(dir: &Path, name: &str, kind: KeyKind) -> (PathBuf, String) {
    let g = generate(kind).expect("keygen");
    let path = dir.join(name);
    std::fs::write(&path, &g.pem).expect("write key");
    (path, dkim_txt(g.key.kind, &g.key.public))
}

fn config(text: &str) -> Result<DkimSigner, Vec<ConfigError>> {
    let parsed = parse_str(
        "/etc/ownmail/smtpd.conf",
        text,
        &ParseOptions {
            pki_dir: PathBuf::from("/nonexistent"),
        },
    );
    assert!(!parsed.diags.has_errors(), "{:?}", parsed.diags);
    let mut diags = Diagnostics::new();
    let mut tables = HashMap::new();
    for decl in &parsed.config.tables {
        tables.insert(
            decl.name.clone(),
            Table::load(decl, &mut diags).expect("table"),
        );
    }
    DkimSigner::from_config(&parsed.config, &tables)
}

/// example.org signs with an RSA key (selector rsa), example.net and example.com (a table)
/// with an Ed25519 key (selector ed).
fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rsa, rsa_txt) = write_key(dir.path(), "rsa.key", KeyKind::Rsa);
    let (ed, ed_txt) = write_key(dir.path(), "ed.key", KeyKind::Ed25519);
    let signer = config(&format!(
        "table doms {{ example.net, example.com }}\n\
         dkim sign domain example.org selector rsa key \"{}\"\n\
         dkim sign domain <doms> selector ed key \"{}\" algorithm ed25519-sha256\n\
         dkim sign domain example.org selector ignored key \"{}\"\n",
        rsa.display(),
        ed.display(),
        ed.display(),
    ))
    .expect("signer");
    let txt = Txts(Mutex::new(HashMap::new()));
    for (name, record) in [
        ("rsa._domainkey.example.org.", &rsa_txt),
        ("ed._domainkey.example.net.", &ed_txt),
        ("ed._domainkey.example.com.", &ed_txt),
    ] {
        let key = DomainKey::parse(record.as_bytes()).expect("record");
        txt.0
            .lock()
            .expect("lock")
            .insert(name.into(), Txt::DomainKey(key.into()));
    }
    World {
        _dir: dir,
        signer,
        txt,
    }
}

fn message(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "Received: from x by y; Tue, 24 Nov 2026 23:48:00 +0000\r\n\
         From: Alice <{from}>\r\nTo: bob@remote.test\r\nSubject: {subject}\r\n\
         Date: Tue, 24 Nov 2026 23:48:00 +0000\r\nMessage-ID: <1@x>\r\n\r\n{body}"
    )
    .into_bytes()
}

fn signed(w: &World, msg: &[u8]) -> (SignatureField, Vec<u8>) {
    let sig = w.signer.sign(msg).expect("sign").expect("signed");
    let mut out = sig.field.clone().into_bytes();
    out.extend_from_slice(msg);
    (sig, out)
}

async fn verify(w: &World, msg: &[u8]) -> Vec<DkimResult> {
    let auth = MessageAuthenticator::new_cloudflare().expect("resolver");
    let parsed = AuthenticatedMessage::parse(msg).expect("parse");
    auth.verify_dkim(Parameters::new(&parsed).with_txt_cache(&w.txt))
        .await
        .iter()
        .map(|o| o.result().clone())
        .collect()
}

/// The value of tag `name` in a DKIM-Signature field, whitespace removed.
fn tag(field: &str, name: &str) -> String {
    let flat: String = field
        .split_once(':')
        .map_or("", |(_, v)| v)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    flat.split(';')
        .find_map(|t| t.strip_prefix(&format!("{name}=")).map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test]
async fn rsa_and_ed25519_signatures_verify_and_name_their_key() {
    let w = world();
    for (from, a, d, s) in [
        ("alice@example.org", "rsa-sha256", "example.org", "rsa"),
        ("alice@Example.NET", "ed25519-sha256", "example.net", "ed"),
        ("carol@example.com", "ed25519-sha256", "example.com", "ed"),
    ] {
        let (sig, msg) = signed(&w, &message(from, "hello", "Hi.\r\n"));
        assert!(sig.field.starts_with("DKIM-Signature: "), "{}", sig.field);
        assert!(sig.field.ends_with("\r\n"));
        assert_eq!((sig.domain.as_str(), sig.selector.as_str()), (d, s));
        assert_eq!(tag(&sig.field, "a"), a);
        assert_eq!(tag(&sig.field, "d"), d);
        assert_eq!(tag(&sig.field, "s"), s);
        assert_eq!(tag(&sig.field, "c"), "relaxed/relaxed");
        assert_eq!(verify(&w, &msg).await, vec![DkimResult::Pass], "{from}");
    }
}

#[test]
fn from_is_oversigned_and_trace_fields_are_not_signed() {
    let w = world();
    let (sig, _) = signed(&w, &message("alice@example.org", "x", "y\r\n"));
    let h: Vec<String> = tag(&sig.field, "h")
        .split(':')
        .map(str::to_ascii_lowercase)
        .collect();
    assert_eq!(h.iter().filter(|n| *n == "from").count(), 2, "{h:?}");
    for name in ["to", "subject", "date", "message-id"] {
        assert!(h.iter().any(|n| n == name), "{name} not in {h:?}");
    }
    assert!(!h.iter().any(|n| n == "received"), "{h:?}");
}

#[tokio::test]
async fn tampering_with_body_or_subject_breaks_the_signature() {
    let w = world();
    let (_, msg) = signed(&w, &message("alice@example.org", "hello", "Hi.\r\n"));
    let text = String::from_utf8(msg).expect("utf8");
    for tampered in [
        text.replace("Hi.", "Ho."),
        text.replace("Subject: hello", "Subject: hullo"),
        text.replace("From: Alice", "From: Mallory"),
    ] {
        // mail-auth says `neutral` for a body hash mismatch (RFC 6376 §6.3 allows either).
        let got = verify(&w, tampered.as_bytes()).await;
        assert!(
            matches!(
                got.as_slice(),
                [DkimResult::Fail(_) | DkimResult::Neutral(_)]
            ),
            "{got:?}"
        );
    }
}

#[test]
fn other_domains_and_unclear_authors_are_not_signed() {
    let w = world();
    for msg in [
        message("alice@elsewhere.test", "x", "y\r\n"),
        message("alice@sub.example.org", "x", "y\r\n"),
        b"To: bob@remote.test\r\n\r\nno From\r\n".to_vec(),
        b"From: a@example.org, b@elsewhere.test\r\n\r\n".to_vec(),
        Vec::new(),
        vec![0xff; 100],
    ] {
        assert_eq!(w.signer.sign(&msg), Ok(None));
    }
    assert!(w.signer.signs("EXAMPLE.org") && !w.signer.signs("elsewhere.test"));
}

/// RFC 6376 §3.4.4: a line of only whitespace at the end of the body is an empty line and is
/// not hashed. mail-auth 0.13.3 hashed it (upstream #62); the vendored copy must not.
#[tokio::test]
async fn body_ending_in_whitespace_only_lines_hashes_as_rfc_6376_says() {
    use sha2::Digest;
    let w = world();
    let body = "Hi.\r\n \r\n\t\r\n  \t \r\n\r\n";
    let (sig, msg) = signed(&w, &message("alice@example.org", "ws", body));
    let want = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"Hi.\r\n"));
    assert_eq!(tag(&sig.field, "bh"), want);
    assert_eq!(verify(&w, &msg).await, vec![DkimResult::Pass]);
    // Whitespace lines in the middle stay (as empty lines); leading whitespace becomes one SP.
    let (sig, _) = signed(
        &w,
        &message("alice@example.org", "ws", "a\r\n \r\n  b \r\n \r\n"),
    );
    let want =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"a\r\n\r\n b\r\n"));
    assert_eq!(tag(&sig.field, "bh"), want);
}

#[test]
fn weak_missing_and_mismatched_keys_are_errors_naming_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weak = dir.path().join("weak.key");
    let k = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).expect("rsa");
    let pem = k.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).expect("pem");
    std::fs::write(&weak, pem.as_bytes()).expect("write");
    let (ed, _) = write_key(dir.path(), "ed.key", KeyKind::Ed25519);
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key\n").expect("write");
    let errors = config(&format!(
        "dkim sign domain a.test selector s key \"{}\"\n\
         dkim sign domain b.test selector s key \"{}\" algorithm rsa-sha256\n\
         dkim sign domain c.test selector s key \"{}\"\n\
         dkim sign domain d.test selector s key \"{}\"\n\
         dkim sign domain e.test selector s key \"{}\"\n",
        weak.display(),
        ed.display(),
        garbage.display(),
        dir.path().join("missing.key").display(),
        ed.display(),
    ))
    .expect_err("bad keys");
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].starts_with("/etc/ownmail/smtpd.conf:1:1: DKIM key "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("1024-bit RSA key") && lines[0].contains("keygen"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("/etc/ownmail/smtpd.conf:2:1:") && lines[1].contains("ed25519 key"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("/etc/ownmail/smtpd.conf:3:1:")
            && lines[2].contains("no PEM private key"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].starts_with("/etc/ownmail/smtpd.conf:4:1:") && lines[3].contains("cannot read"),
        "{}",
        lines[3]
    );
}

#[test]
fn openssl_style_pkcs1_rsa_keys_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("genrsa.key");
    let k = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa");
    let pem = k.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).expect("pem");
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    std::fs::write(&path, pem.as_bytes()).expect("write");
    let signer = config(&format!(
        "dkim sign domain example.org selector s key \"{}\"\n",
        path.display()
    ))
    .expect("signer");
    let sig = signer
        .sign(&message("a@example.org", "x", "y\r\n"))
        .expect("sign")
        .expect("signed");
    assert_eq!(tag(&sig.field, "a"), "rsa-sha256");
}
