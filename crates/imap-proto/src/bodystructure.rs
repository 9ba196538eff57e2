//! BODY and BODYSTRUCTURE (RFC 3501 §7.4.2, RFC 9051 §7.5.2): a typed part tree and its
//! encoder.
//!
//! The caller builds the tree from its own MIME parse; defaults such as text's
//! `("charset" "us-ascii")` are its policy, not this module's. This module only writes the
//! tree, through [`write_string`]/[`write_nstring`], so no value can break the syntax. The
//! bytes go out as [`FetchValue::Raw`](crate::FetchValue::Raw) named `BODY` or
//! `BODYSTRUCTURE`.
//!
//! Invariants: the output always has balanced parentheses; a multipart without parts is
//! written with one empty text/plain part (the grammar wants `1*body`), as Dovecot does;
//! nesting deeper than [`MAX_BODY_DEPTH`] is cut the same way, so no tree exhausts the stack.

use crate::response::{write_nstring, write_string, Address, Envelope};

/// Deepest part nesting written; deeper parts become an empty text/plain part.
pub const MAX_BODY_DEPTH: usize = 100;

/// A MIME parameter list, `(name value)` pairs as they appear in the header.
pub type Params = Vec<(Vec<u8>, Vec<u8>)>;

/// One body part as BODY/BODYSTRUCTURE describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStructure {
    /// `body-type-1part`: a leaf, a text part, or an encapsulated message.
    Single {
        fields: BodyFields,
        kind: SingleKind,
        ext: BodyExtension,
    },
    /// `body-type-mpart`. `ext.md5` is not written for multiparts.
    Multipart {
        parts: Vec<BodyStructure>,
        subtype: Vec<u8>,
        /// Written in BODYSTRUCTURE only, NIL when empty.
        params: Params,
        ext: BodyExtension,
    },
}

/// `body-fields` plus the media type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BodyFields {
    pub media_type: Vec<u8>,
    pub subtype: Vec<u8>,
    /// NIL when empty.
    pub params: Params,
    pub id: Option<Vec<u8>>,
    pub description: Option<Vec<u8>>,
    /// `body-fld-enc`: the Content-Transfer-Encoding as written, `7bit` when absent.
    pub encoding: Vec<u8>,
    /// `body-fld-octets`: the size of the body in octets, as it is sent.
    pub size: u64,
}

/// What follows `body-fields` in a single part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SingleKind {
    /// `body-type-basic`: nothing more.
    Basic,
    /// `body-type-text`: the body's line count.
    Text { lines: u64 },
    /// `body-type-msg` (message/rfc822): the encapsulated message's envelope and structure,
    /// and the line count of the whole encapsulated message.
    Message {
        envelope: Box<Envelope>,
        body: Box<BodyStructure>,
        lines: u64,
    },
}

/// Extension data, written in BODYSTRUCTURE only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BodyExtension {
    /// `body-fld-md5` (single parts only).
    pub md5: Option<Vec<u8>>,
    /// `body-fld-dsp`: the disposition type and its parameters.
    pub disposition: Option<(Vec<u8>, Params)>,
    /// `body-fld-lang`: NIL when empty.
    pub language: Vec<Vec<u8>>,
    /// `body-fld-loc`.
    pub location: Option<Vec<u8>>,
}

impl BodyStructure {
    /// The encoded structure: BODYSTRUCTURE when `extensible`, else the shorter BODY
    /// (RFC 3501 §7.4.2: "BODY … the non-extensible form").
    pub fn encode(&self, extensible: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out, extensible);
        out
    }

    /// Appends the encoded structure to `out`.
    pub fn write(&self, out: &mut Vec<u8>, extensible: bool) {
        write_body(out, self, extensible, 0);
    }
}

/// What Dovecot writes for a multipart that has no parts: one empty text/plain part.
fn write_empty(out: &mut Vec<u8>, extensible: bool) {
    out.extend_from_slice(b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0");
    if extensible {
        out.extend_from_slice(b" NIL NIL NIL NIL");
    }
    out.push(b')');
}

fn write_body(out: &mut Vec<u8>, b: &BodyStructure, extensible: bool, depth: usize) {
    if depth >= MAX_BODY_DEPTH {
        write_empty(out, extensible);
        return;
    }
    out.push(b'(');
    match b {
        BodyStructure::Multipart {
            parts,
            subtype,
            params,
            ext,
        } => {
            if parts.is_empty() {
                write_empty(out, extensible);
            }
            // RFC 3501 §9: `body-type-mpart = 1*body SP media-subtype`, no space between parts.
            for p in parts {
                write_body(out, p, extensible, depth + 1);
            }
            out.push(b' ');
            write_string(out, subtype);
            if extensible {
                out.push(b' ');
                write_params(out, params);
                write_common_ext(out, ext);
            }
        }
        BodyStructure::Single { fields, kind, ext } => {
            write_string(out, &fields.media_type);
            out.push(b' ');
            write_string(out, &fields.subtype);
            out.push(b' ');
            write_params(out, &fields.params);
            out.push(b' ');
            write_nstring(out, fields.id.as_deref());
            out.push(b' ');
            write_nstring(out, fields.description.as_deref());
            out.push(b' ');
            write_string(out, &fields.encoding);
            out.extend(format!(" {}", fields.size).bytes());
            match kind {
                SingleKind::Basic => {}
                SingleKind::Text { lines } => out.extend(format!(" {lines}").bytes()),
                SingleKind::Message {
                    envelope,
                    body,
                    lines,
                } => {
                    out.push(b' ');
                    write_envelope(out, envelope);
                    out.push(b' ');
                    write_body(out, body, extensible, depth + 1);
                    out.extend(format!(" {lines}").bytes());
                }
            }
            if extensible {
                out.push(b' ');
                write_nstring(out, ext.md5.as_deref());
                write_common_ext(out, ext);
            }
        }
    }
    out.push(b')');
}

fn write_params(out: &mut Vec<u8>, params: &Params) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_string(out, name);
        out.push(b' ');
        write_string(out, value);
    }
    out.push(b')');
}

/// ` disposition language location`, common to single parts and multiparts.
fn write_common_ext(out: &mut Vec<u8>, ext: &BodyExtension) {
    out.push(b' ');
    match &ext.disposition {
        None => out.extend_from_slice(b"NIL"),
        Some((kind, params)) => {
            out.push(b'(');
            write_string(out, kind);
            out.push(b' ');
            write_params(out, params);
            out.push(b')');
        }
    }
    out.push(b' ');
    if ext.language.is_empty() {
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b'(');
        for (i, lang) in ext.language.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            write_string(out, lang);
        }
        out.push(b')');
    }
    out.push(b' ');
    write_nstring(out, ext.location.as_deref());
}

/// The envelope list, exactly as the `ENVELOPE` FETCH item writes it (a test holds the two
/// together).
fn write_envelope(out: &mut Vec<u8>, e: &Envelope) {
    out.push(b'(');
    write_nstring(out, e.date.as_deref());
    out.push(b' ');
    write_nstring(out, e.subject.as_deref());
    for list in [&e.from, &e.sender, &e.reply_to, &e.to, &e.cc, &e.bcc] {
        out.push(b' ');
        write_addresses(out, list);
    }
    out.push(b' ');
    write_nstring(out, e.in_reply_to.as_deref());
    out.push(b' ');
    write_nstring(out, e.message_id.as_deref());
    out.push(b')');
}

fn write_addresses(out: &mut Vec<u8>, list: &[Address]) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in list {
        out.push(b'(');
        write_nstring(out, a.name.as_deref());
        out.push(b' ');
        write_nstring(out, a.adl.as_deref());
        out.push(b' ');
        write_nstring(out, a.mailbox.as_deref());
        out.push(b' ');
        write_nstring(out, a.host.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{Data, EncodeOptions, FetchValue, Response};

    fn text_plain(size: u64, lines: u64) -> BodyStructure {
        BodyStructure::Single {
            fields: BodyFields {
                media_type: b"text".to_vec(),
                subtype: b"plain".to_vec(),
                params: vec![(b"charset".to_vec(), b"us-ascii".to_vec())],
                encoding: b"7bit".to_vec(),
                size,
                ..BodyFields::default()
            },
            kind: SingleKind::Text { lines },
            ext: BodyExtension::default(),
        }
    }

    fn enc(b: &BodyStructure, ext: bool) -> String {
        String::from_utf8_lossy(&b.encode(ext)).into_owned()
    }

    #[test]
    fn text_part_with_and_without_extension_data() {
        let b = text_plain(28, 1);
        assert_eq!(
            enc(&b, true),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 28 1 NIL NIL NIL NIL)"
        );
        assert_eq!(
            enc(&b, false),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 28 1)"
        );
    }

    #[test]
    fn multipart_parts_are_adjacent_and_params_follow_the_subtype() {
        let b = BodyStructure::Multipart {
            parts: vec![text_plain(1, 1), text_plain(2, 1)],
            subtype: b"alternative".to_vec(),
            params: vec![(b"boundary".to_vec(), b"x y".to_vec())],
            ext: BodyExtension {
                disposition: Some((b"inline".to_vec(), vec![])),
                language: vec![b"en".to_vec(), b"fi".to_vec()],
                location: Some(b"http://example.com/".to_vec()),
                md5: Some(b"ignored for multiparts".to_vec()),
            },
        };
        let one = "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 1";
        let two = "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 2 1";
        assert_eq!(
            enc(&b, true),
            format!(
                "({one} NIL NIL NIL NIL){two} NIL NIL NIL NIL) \"alternative\" \
                 (\"boundary\" \"x y\") (\"inline\" NIL) (\"en\" \"fi\") \"http://example.com/\")"
            )
        );
        assert_eq!(enc(&b, false), format!("({one}){two}) \"alternative\")"));
    }

    #[test]
    fn empty_multipart_gets_one_empty_text_part() {
        let b = BodyStructure::Multipart {
            parts: vec![],
            subtype: b"mixed".to_vec(),
            params: vec![],
            ext: BodyExtension::default(),
        };
        assert_eq!(
            enc(&b, true),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \
             \"mixed\" NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn values_that_cannot_be_quoted_become_literals() {
        let mut b = text_plain(0, 0);
        if let BodyStructure::Single { fields, ext, .. } = &mut b {
            fields.description = Some("caf\u{e9}".as_bytes().to_vec());
            fields.params.push((b"name".to_vec(), b"a\"b".to_vec()));
            ext.disposition = Some((
                b"attachment".to_vec(),
                vec![(b"filename".to_vec(), b"x.pdf".to_vec())],
            ));
        }
        assert_eq!(
            enc(&b, true),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\" \"name\" \"a\\\"b\") NIL {5}\r\ncaf\u{e9} \
             \"7bit\" 0 0 NIL (\"attachment\" (\"filename\" \"x.pdf\")) NIL NIL)"
        );
    }

    #[test]
    fn message_part_envelope_matches_the_envelope_item() {
        let envelope = Envelope {
            date: Some(b"Mon, 7 Feb 1994 21:52:25 -0800".to_vec()),
            subject: Some(b"hi".to_vec()),
            from: vec![Address {
                name: Some(b"Fred".to_vec()),
                adl: None,
                mailbox: Some(b"fred".to_vec()),
                host: Some(b"example.org".to_vec()),
            }],
            to: vec![
                Address {
                    mailbox: Some(b"team".to_vec()),
                    ..Address::default()
                },
                Address::default(),
            ],
            message_id: Some(b"<1@example.org>".to_vec()),
            ..Envelope::default()
        };
        let item = Response::Data(Data::Fetch {
            seq: 1,
            items: vec![FetchValue::Envelope(Box::new(envelope.clone()))],
        })
        .encode(EncodeOptions::default());
        let item = String::from_utf8_lossy(&item);
        let mut ours = Vec::new();
        write_envelope(&mut ours, &envelope);
        let ours = String::from_utf8_lossy(&ours);
        assert_eq!(item, format!("* 1 FETCH (ENVELOPE {ours})\r\n"));

        let b = BodyStructure::Single {
            fields: BodyFields {
                media_type: b"message".to_vec(),
                subtype: b"rfc822".to_vec(),
                encoding: b"7bit".to_vec(),
                size: 100,
                ..BodyFields::default()
            },
            kind: SingleKind::Message {
                envelope: Box::new(envelope),
                body: Box::new(text_plain(10, 2)),
                lines: 7,
            },
            ext: BodyExtension::default(),
        };
        assert_eq!(
            enc(&b, false),
            format!(
                "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 100 {ours} \
                 (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 2) 7)"
            )
        );
    }

    #[test]
    fn nesting_is_cut_at_the_depth_limit() {
        let mut b = text_plain(1, 1);
        for _ in 0..MAX_BODY_DEPTH * 3 {
            b = BodyStructure::Multipart {
                parts: vec![b],
                subtype: b"mixed".to_vec(),
                params: vec![],
                ext: BodyExtension::default(),
            };
        }
        let out = b.encode(true);
        let open = out.iter().filter(|&&c| c == b'(').count();
        let close = out.iter().filter(|&&c| c == b')').count();
        assert_eq!(open, close);
        assert!(!String::from_utf8_lossy(&out).contains(" 1 1 "));
    }
}
