//! xtext (RFC 3461 §4): the encoding of the `ENVID`, `ORCPT` and `AUTH` parameter values.

/// Decodes xtext: `+HH` is the byte with that hex value, any other printable ASCII character
/// except `+` and `=` stands for itself. Lowercase hex is accepted (RFC 3461 asks for
/// uppercase; being lenient costs nothing). Non-ASCII characters pass through unchanged, as
/// RFC 6533 allows UTF-8 in these values once SMTPUTF8 is in use. Returns `None` for a
/// malformed value or one that does not decode to UTF-8.
pub fn xtext_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => {
                let hi = hex_value(bytes.next()?)?;
                let lo = hex_value(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            b'=' => return None,
            33..=126 | 0x80..=0xff => out.push(b),
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a value as xtext: `+`, `=`, controls, space and every non-ASCII byte become `+HH`.
pub fn xtext_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'+' | b'=' => {}
            33..=126 => {
                out.push(char::from(b));
                continue;
            }
            _ => {}
        }
        out.push('+');
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_decodes_hex_escapes() {
        assert_eq!(xtext_decode("a+2Bb").as_deref(), Some("a+b"));
        assert_eq!(
            xtext_decode("rfc822;user+40example.org").as_deref(),
            Some("rfc822;user@example.org")
        );
        assert_eq!(xtext_decode("x+3db").as_deref(), Some("x=b"));
        assert_eq!(xtext_decode("").as_deref(), Some(""));
    }

    #[test]
    fn malformed_xtext_is_refused() {
        assert_eq!(xtext_decode("a+2"), None);
        assert_eq!(xtext_decode("a+zz"), None);
        assert_eq!(xtext_decode("a=b"), None);
        assert_eq!(xtext_decode("a b"), None);
        assert_eq!(xtext_decode("+FF"), None);
    }

    #[test]
    fn xtext_round_trips() {
        for s in ["plain", "a+b=c", "sp ace", "ünï", "<>", "+", ""] {
            let e = xtext_encode(s);
            assert!(
                e.bytes().all(|b| (33..=126).contains(&b) && b != b'='),
                "{e}"
            );
            assert_eq!(xtext_decode(&e).as_deref(), Some(s));
        }
    }
}
