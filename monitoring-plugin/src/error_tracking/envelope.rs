//! Sentry envelope framing: parse what SDKs send, write what we forward.
//!
//! An envelope is newline-delimited: a JSON header line, then items, each a
//! JSON header line (with `type` and an optional `length`) followed by its
//! payload. With `length` the payload is exactly that many bytes (it may
//! contain newlines) and may be followed by one `\n`; without it the payload
//! runs to the next `\n` or the end. Empty lines between items are tolerated.

use serde_json::{Map, Value};

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The envelope header (`event_id`, `dsn`, `sent_at`, …).
    pub header: Map<String, Value>,
    /// Items in order.
    pub items: Vec<EnvelopeItem>,
}

/// One envelope item.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvelopeItem {
    /// The item's `type` (`event`, `transaction`, `session`, …).
    pub item_type: String,
    /// The full item header.
    pub header: Map<String, Value>,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// Why an envelope could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is empty.
    #[error("empty envelope")]
    Empty,
    /// The envelope header line is not a JSON object.
    #[error("envelope header is not a JSON object: {0}")]
    BadHeader(String),
    /// Item `index` has a header that is not a JSON object.
    #[error("item {index} header is not a JSON object: {reason}")]
    BadItemHeader {
        /// Zero-based item index.
        index: usize,
        /// Parser message.
        reason: String,
    },
    /// Item header without a string `type`.
    #[error("item {0} header has no string \"type\"")]
    MissingType(usize),
    /// `length` is not a non-negative integer.
    #[error("item {0} has an invalid \"length\"")]
    BadLength(usize),
    /// Fewer bytes than `length` remain.
    #[error("item {index} declares {declared} bytes but only {available} remain")]
    Truncated {
        /// Zero-based item index.
        index: usize,
        /// Declared length.
        declared: u64,
        /// Bytes left in the body.
        available: usize,
    },
    /// Something other than `\n` follows a length-delimited payload.
    #[error("item {0} payload is not followed by a newline")]
    MissingNewline(usize),
    /// More items than allowed.
    #[error("more than {0} items")]
    TooManyItems(usize),
}

fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

fn parse_object(line: &[u8]) -> Result<Map<String, Value>, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not an object".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses an envelope body (already decompressed), with at most `max_items`.
pub fn parse_envelope(body: &[u8], max_items: usize) -> Result<Envelope, EnvelopeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(EnvelopeError::Empty);
    }
    let (line, mut rest) = split_line(body);
    let header = parse_object(line).map_err(EnvelopeError::BadHeader)?;
    let mut items = Vec::new();
    loop {
        while let Some(r) = rest
            .strip_prefix(b"\n")
            .or_else(|| rest.strip_prefix(b"\r\n"))
        {
            rest = r;
        }
        if rest.is_empty() {
            break;
        }
        let index = items.len();
        if index >= max_items {
            return Err(EnvelopeError::TooManyItems(max_items));
        }
        let (line, after) = split_line(rest);
        let item_header =
            parse_object(line).map_err(|reason| EnvelopeError::BadItemHeader { index, reason })?;
        let item_type = item_header
            .get("type")
            .and_then(Value::as_str)
            .ok_or(EnvelopeError::MissingType(index))?
            .to_string();
        let payload;
        match item_header.get("length") {
            None | Some(Value::Null) => {
                let (p, r) = split_line(after);
                payload = p.to_vec();
                rest = r;
            }
            Some(len) => {
                let declared = len.as_u64().ok_or(EnvelopeError::BadLength(index))?;
                let n = usize::try_from(declared)
                    .ok()
                    .filter(|n| *n <= after.len())
                    .ok_or(EnvelopeError::Truncated {
                        index,
                        declared,
                        available: after.len(),
                    })?;
                payload = after[..n].to_vec();
                rest = &after[n..];
                match rest.first() {
                    None => {}
                    Some(b'\n') => rest = &rest[1..],
                    Some(b'\r') if rest.get(1) == Some(&b'\n') => rest = &rest[2..],
                    Some(_) => return Err(EnvelopeError::MissingNewline(index)),
                }
            }
        }
        items.push(EnvelopeItem {
            item_type,
            header: item_header,
            payload,
        });
    }
    Ok(Envelope { header, items })
}

/// Serialises an envelope: header line, then each item as a header line with
/// `type` and the exact `length`, a newline, the payload and a newline.
pub fn write_envelope(header: &Map<String, Value>, items: &[EnvelopeItem]) -> Vec<u8> {
    let mut out = serde_json::to_vec(header).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    for item in items {
        let mut h = item.header.clone();
        h.insert("type".into(), Value::from(item.item_type.clone()));
        h.insert("length".into(), Value::from(item.payload.len()));
        out.extend(serde_json::to_vec(&h).unwrap_or_else(|_| b"{}".to_vec()));
        out.push(b'\n');
        out.extend(&item.payload);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_with_and_without_length() {
        let body = b"{\"event_id\":\"abc\"}\n{\"type\":\"attachment\",\"length\":7}\nab\ncd\ne\n{\"type\":\"event\"}\n{\"message\":\"hi\"}\n\n{\"type\":\"session\",\"length\":2}\n{}";
        let env = parse_envelope(body, 10).unwrap();
        assert_eq!(env.items.len(), 3);
        assert_eq!(env.items[0].payload, b"ab\ncd\ne");
        assert_eq!(env.items[1].payload, b"{\"message\":\"hi\"}");
        assert_eq!(env.items[2].payload, b"{}");
        let again = parse_envelope(&write_envelope(&env.header, &env.items), 10).unwrap();
        let strip = |e: &Envelope| -> Vec<(String, Vec<u8>)> {
            e.items
                .iter()
                .map(|i| (i.item_type.clone(), i.payload.clone()))
                .collect()
        };
        assert_eq!(strip(&again), strip(&env));
        assert_eq!(again.header, env.header);
    }

    #[test]
    fn framing_errors() {
        let cases: [(&[u8], EnvelopeError); 8] = [
            (b"", EnvelopeError::Empty),
            (b"[1]\n", EnvelopeError::BadHeader("not an object".into())),
            (b"{}\n{\"length\":1}\nx", EnvelopeError::MissingType(0)),
            (
                b"{}\n{\"type\":\"event\",\"length\":-1}\nx",
                EnvelopeError::BadLength(0),
            ),
            (
                b"{}\n{\"type\":\"event\",\"length\":1.5}\nx",
                EnvelopeError::BadLength(0),
            ),
            (
                b"{}\n{\"type\":\"event\",\"length\":99}\nx",
                EnvelopeError::Truncated {
                    index: 0,
                    declared: 99,
                    available: 1,
                },
            ),
            (
                b"{}\n{\"type\":\"event\",\"length\":1}\nxy",
                EnvelopeError::MissingNewline(0),
            ),
            (
                b"{}\n{\"type\":\"a\"}\n{}\n{\"type\":\"b\"}\n{}",
                EnvelopeError::TooManyItems(1),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse_envelope(body, 1), Err(want.clone()), "{want}");
        }
        assert!(matches!(
            parse_envelope(b"{}\nnot json\n", 5),
            Err(EnvelopeError::BadItemHeader { index: 0, .. })
        ));
    }
}
