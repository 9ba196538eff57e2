//! Modified UTF-7 mailbox names (RFC 3501 §5.1.3), for clients that have not enabled
//! UTF8=ACCEPT or IMAP4rev2 (RFC 9051 §5.1 then sends UTF-8 as is).
//!
//! Printable US-ASCII stands for itself except `&`, written `&-`; other characters are UTF-16
//! in modified base64 (`,` for `/`, no padding) between `&` and `-`. Decoding is strict: names
//! that a conforming encoder would not produce are refused, so one name has one spelling.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Why a name is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutf7Error(&'static str);

impl fmt::Display for Mutf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid modified UTF-7: {}", self.0)
    }
}

impl std::error::Error for Mutf7Error {}

fn printable(c: u32) -> bool {
    (0x20..=0x7e).contains(&c)
}

/// Encodes a UTF-8 mailbox name for an IMAP4rev1 client.
pub fn mutf7_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for ch in name.chars() {
        if printable(u32::from(ch)) {
            flush(&mut out, &mut pending);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut pending);
    out
}

fn flush(out: &mut String, pending: &mut Vec<u16>) {
    if pending.is_empty() {
        return;
    }
    out.push('&');
    let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 63) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 63) as usize]));
    }
    out.push('-');
    pending.clear();
}

fn sextet(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == b).map(|p| p as u32)
}

/// Decodes a modified UTF-7 mailbox name from an IMAP4rev1 client.
pub fn mutf7_decode(name: &str) -> Result<String, Mutf7Error> {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        if b != b'&' {
            if !printable(u32::from(b)) {
                return Err(Mutf7Error("character outside printable US-ASCII"));
            }
            out.push(char::from(b));
            continue;
        }
        let rest = bytes.get(i..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|&c| c == b'-')
            .ok_or(Mutf7Error("unterminated shift"))?;
        let run = rest.get(..end).unwrap_or_default();
        i += end + 1;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        let mut units = Vec::new();
        let mut acc: u32 = 0;
        let mut bits = 0;
        let mut byte_hi: Option<u8> = None;
        for &c in run {
            let v = sextet(c).ok_or(Mutf7Error("invalid base64 character"))?;
            acc = ((acc << 6) | v) & 0xffff;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                let byte = ((acc >> bits) & 0xff) as u8;
                match byte_hi.take() {
                    None => byte_hi = Some(byte),
                    Some(hi) => units.push(u16::from_be_bytes([hi, byte])),
                }
            }
        }
        if byte_hi.is_some() || bits >= 6 || (acc & ((1 << bits) - 1)) != 0 {
            return Err(Mutf7Error("bad base64 length or padding bits"));
        }
        for ch in char::decode_utf16(units) {
            let ch = ch.map_err(|_| Mutf7Error("invalid UTF-16"))?;
            if printable(u32::from(ch)) {
                return Err(Mutf7Error("printable ASCII must not be encoded"));
            }
            out.push(ch);
        }
    }
    Ok(out)
}
