//! DNS TXT records that publish a DKIM key (RFC 6376 §3.6.1, RFC 8463 §4.2), as values and
//! as zone-file lines.

use base64::Engine;

use crate::key::KeyKind;

/// The TXT record value: `v=DKIM1; k=rsa; p=BASE64`.
pub fn dkim_txt(kind: KeyKind, public: &[u8]) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        kind.dns_k(),
        base64::engine::general_purpose::STANDARD.encode(public)
    )
}

/// A zone-file line `NAME. IN TXT "…"`. A character-string holds at most 255 bytes
/// (RFC 1035 §3.3), so a longer value (a 2048-bit RSA key) is written as several strings on
/// the line, which resolvers and DKIM verifiers join back together (RFC 6376 §3.6.2.2).
pub fn zone_txt(name: &str, value: &str) -> String {
    let name = name.trim_end_matches('.');
    let mut line = format!("{name}. IN TXT");
    // The values we write are ASCII without quotes or backslashes; split on bytes.
    for chunk in value.as_bytes().chunks(250) {
        line.push_str(" \"");
        line.push_str(&String::from_utf8_lossy(chunk));
        line.push('"');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_one_string() {
        assert_eq!(
            zone_txt("s._domainkey.example.org", "v=DKIM1; k=ed25519; p=AAAA"),
            "s._domainkey.example.org. IN TXT \"v=DKIM1; k=ed25519; p=AAAA\""
        );
        assert_eq!(
            dkim_txt(KeyKind::Ed25519, &[0, 0, 0]),
            "v=DKIM1; k=ed25519; p=AAAA"
        );
    }

    #[test]
    fn long_values_are_split_into_strings_of_at_most_255_bytes() {
        let value = format!("v=DKIM1; k=rsa; p={}", "A".repeat(392));
        let line = zone_txt("s._domainkey.example.org.", &value);
        let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings.len(), 2);
        assert!(strings.iter().all(|s| s.len() <= 255));
        assert_eq!(strings.concat(), value);
        assert!(line.starts_with("s._domainkey.example.org. IN TXT \"v=DKIM1;"));
    }
}
