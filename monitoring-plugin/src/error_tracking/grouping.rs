//! Grouping: decides which events are "the same bug" and names the group.
//!
//! # Algorithm
//!
//! An event's *fingerprint* is a list of strings; its issue id is the first
//! 16 hex characters (64 bits) of SHA-256 over the length-prefixed components
//! (`"{len}:{component}\n"` each), so the id is stable across restarts,
//! machines and versions of this crate as long as the components are.
//!
//! 1. **Custom fingerprint.** If the event carries `fingerprint` (non-empty),
//!    it is used verbatim, prefixed with `custom`. An entry equal to
//!    `{{ default }}` (whitespace and case ignored), Sentry's placeholder, is
//!    replaced by the default components below, so `["{{ default }}", "db"]`
//!    splits the default group by `db`.
//! 2. **Exception.** If the event has exceptions, for every exception of the
//!    chain (innermost first) the components are `type:{type}` followed by
//!    its normalised frames. When any frame of that exception is marked
//!    `in_app`, only in-app frames count; otherwise all frames count. A frame
//!    becomes `frame:{module or filename}:{function}` where
//!      * the module is preferred to the filename (filenames move between
//!        checkouts and machines; modules do not), and a filename is reduced to
//!        its last path segment;
//!      * Rust symbol hashes (`::h0123456789abcdef`), hex addresses and digit
//!        runs are replaced (`<hex>`, `<num>`) so build ids, lambda counters and
//!        generated names do not split groups;
//!      * **line numbers and instruction addresses are not included**: an
//!        unrelated edit above a function moves its lines, and addresses change
//!        with every build and ASLR; including them would open a new issue per
//!        release for one bug. The price is that two different failure sites
//!        inside one function share an issue, which Sentry accepts too.
//!
//!    Frames with neither a function nor a module/filename (bare addresses)
//!    are skipped. If an exception has no usable frame, its normalised value
//!    (the message template below) is used instead, so stackless errors of the
//!    same type but different messages stay apart.
//! 3. **Message.** Otherwise the component is `message:{template}` where the
//!    template is [`normalize_message`] of the message: quoted strings,
//!    UUIDs, hex numbers, long hex ids, IPv4/IPv6 addresses, URLs, file paths
//!    and numbers are replaced by placeholders, and whitespace is collapsed;
//!    `"timeout after 5023 ms on 0x7f..."` and `"timeout after 17 ms on
//!    0x55..."` both become `"timeout after <num> ms on <hex>..."`.
//! 4. An event with none of the above groups as `empty:{level}`.
//!
//! The plugin is **not** part of the fingerprint: one bug in a shared library
//! hitting several plugins is one issue whose "plugins affected" lists them.

use sha2::{Digest, Sha256};

use super::event::{truncate_chars, ErrorEvent, ExceptionInfo, Frame};

/// Maximum number of frames per exception that take part in grouping
/// (the innermost ones, closest to the crash).
const MAX_GROUPING_FRAMES: usize = 64;

/// At most this many fingerprint components are kept (hostile input bound).
pub const MAX_COMPONENTS: usize = 64;
/// Each component is cut to this many characters.
pub const MAX_COMPONENT_CHARS: usize = 256;

/// The fingerprint components of an event (see the module docs), at most
/// [`MAX_COMPONENTS`] of at most [`MAX_COMPONENT_CHARS`] characters each.
pub fn fingerprint(event: &ErrorEvent) -> Vec<String> {
    let mut parts = raw_fingerprint(event);
    parts.truncate(MAX_COMPONENTS);
    for p in &mut parts {
        if p.chars().count() > MAX_COMPONENT_CHARS {
            *p = truncate_chars(p, MAX_COMPONENT_CHARS);
        }
    }
    parts
}

fn raw_fingerprint(event: &ErrorEvent) -> Vec<String> {
    match event.fingerprint.as_deref() {
        Some(custom) if !custom.is_empty() => {
            let mut out = vec!["custom".to_string()];
            for part in custom {
                if is_default_placeholder(part) {
                    out.extend(default_fingerprint(event));
                } else {
                    out.push(part.clone());
                }
            }
            out
        }
        _ => default_fingerprint(event),
    }
}

/// Whether a fingerprint entry is Sentry's `{{ default }}` placeholder.
fn is_default_placeholder(part: &str) -> bool {
    let compact: String = part.chars().filter(|c| !c.is_whitespace()).collect();
    compact.eq_ignore_ascii_case("{{default}}")
}

/// The default components, ignoring any custom fingerprint.
pub fn default_fingerprint(event: &ErrorEvent) -> Vec<String> {
    if !event.exception.is_empty() {
        let mut out = Vec::new();
        for exc in &event.exception {
            exception_components(exc, &mut out);
        }
        return out;
    }
    match event.message.as_deref() {
        Some(m) if !m.trim().is_empty() => vec![format!("message:{}", normalize_message(m))],
        _ => vec![format!("empty:{}", event.level.as_str())],
    }
}

fn exception_components(exc: &ExceptionInfo, out: &mut Vec<String>) {
    let ty = if exc.ty.trim().is_empty() {
        "<unknown>"
    } else {
        exc.ty.trim()
    };
    out.push(format!("type:{}", normalize_symbol(ty)));
    let any_in_app = exc.frames.iter().any(|f| f.in_app == Some(true));
    let frames: Vec<String> = exc
        .frames
        .iter()
        .filter(|f| !any_in_app || f.in_app == Some(true))
        .filter_map(normalize_frame)
        .collect();
    if frames.is_empty() {
        let value = exc.value.as_deref().unwrap_or("");
        out.push(format!("value:{}", normalize_message(value)));
    } else {
        let skip = frames.len().saturating_sub(MAX_GROUPING_FRAMES);
        out.extend(frames.into_iter().skip(skip));
    }
}

/// A frame's grouping component, or `None` when it has nothing stable
/// (only an address).
pub fn normalize_frame(frame: &Frame) -> Option<String> {
    let function = frame
        .function
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty() && *f != "?" && *f != "<unknown>")
        .map(normalize_symbol);
    let location = frame
        .module
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(normalize_symbol)
        .or_else(|| {
            frame
                .filename
                .as_deref()
                .or(frame.abs_path.as_deref())
                .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f).trim())
                .filter(|f| !f.is_empty())
                .map(normalize_symbol)
        });
    match (location, function) {
        (None, None) => None,
        (loc, func) => Some(format!(
            "frame:{}:{}",
            loc.unwrap_or_default(),
            func.unwrap_or_default()
        )),
    }
}

/// Normalises a symbol (type, module, function): removes Rust symbol hashes,
/// replaces hex addresses and digit runs.
pub fn normalize_symbol(symbol: &str) -> String {
    // Rust legacy mangling suffix `::h` + 16 hex digits.
    let trimmed = match symbol.rfind("::h") {
        Some(i)
            if symbol.len() - i == 19 && symbol[i + 3..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            &symbol[..i]
        }
        _ => symbol,
    };
    let mut out = String::with_capacity(trimmed.len());
    let chars: Vec<char> = trimmed.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '0' && matches!(chars.get(i + 1), Some('x' | 'X')) {
            let n = count_while(&chars[i + 2..], |c| c.is_ascii_hexdigit());
            if n > 0 {
                out.push_str("<hex>");
                i += 2 + n;
                continue;
            }
        }
        if c.is_ascii_digit() {
            i += count_while(&chars[i..], |c| c.is_ascii_digit());
            out.push_str("<num>");
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

fn count_while(chars: &[char], pred: impl Fn(char) -> bool) -> usize {
    chars.iter().take_while(|c| pred(**c)).count()
}

/// Characters trimmed off the ends of a word before classifying it.
fn is_edge_punct(c: char) -> bool {
    matches!(
        c,
        '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | ',' | ';' | '.' | ':' | '!' | '?'
    )
}

/// Replaces variable parts of a message with placeholders (see module docs).
/// Output is at most 1024 characters of input, whitespace collapsed.
pub fn normalize_message(message: &str) -> String {
    let limited: String = message.chars().take(1024).collect();
    let unquoted = replace_quoted(&limited);
    let mut out = String::with_capacity(unquoted.len());
    for word in unquoted.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let start = word.find(|c: char| !is_edge_punct(c)).unwrap_or(word.len());
        let (lead, rest) = word.split_at(start);
        let end = rest.rfind(|c: char| !is_edge_punct(c)).map_or(0, |i| {
            i + rest[i..].chars().next().map_or(1, char::len_utf8)
        });
        let (core, trail) = rest.split_at(end);
        let class = classify_word(core);
        // `[fe80::1]:443`: the bracket belongs to the address.
        let lead = if class == "<ip>" {
            lead.strip_suffix('[').unwrap_or(lead)
        } else {
            lead
        };
        out.push_str(lead);
        out.push_str(&class);
        out.push_str(trail);
    }
    out
}

/// Replaces `'…'`, `"…"` and `` `…` `` spans that start at a word boundary.
fn replace_quoted(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at_boundary = i == 0 || !chars[i - 1].is_alphanumeric();
        if matches!(c, '"' | '\'' | '`') && at_boundary {
            if let Some(len) = chars[i + 1..].iter().position(|&q| q == c) {
                let after = chars.get(i + 2 + len);
                if after.is_none_or(|a| !a.is_alphanumeric()) {
                    out.push_str("<str>");
                    i += len + 2;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn is_uuid(w: &str) -> bool {
    let b = w.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_ipv4(w: &str) -> bool {
    let host = match w.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => w,
    };
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_ipv6(w: &str) -> bool {
    let w = w.trim_start_matches('[');
    let w = w.split(']').next().unwrap_or(w);
    w.matches(':').count() >= 2
        && w.len() >= 3
        && w.bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        && w.bytes().any(|b| b.is_ascii_hexdigit())
}

fn is_path(w: &str) -> bool {
    let b = w.as_bytes();
    let unix =
        (w.starts_with('/') || w.starts_with("./") || w.starts_with("../") || w.starts_with("~/"))
            && w.len() > 1;
    let windows = b.len() > 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\';
    unix || windows
}

fn classify_word(word: &str) -> String {
    if word.is_empty() {
        return String::new();
    }
    if word.contains("://") {
        return "<url>".into();
    }
    if is_uuid(word) {
        return "<uuid>".into();
    }
    if is_ipv4(word) || is_ipv6(word) {
        return "<ip>".into();
    }
    if is_path(word) {
        return "<path>".into();
    }
    let hexish = word.len() >= 8
        && word.bytes().all(|b| b.is_ascii_hexdigit())
        && word.bytes().any(|b| b.is_ascii_digit());
    if hexish {
        return "<hex>".into();
    }
    // Inside the word: 0x… → <hex>; digit runs not glued to a preceding
    // letter (so `utf8`, `sha256` stay) → <num>, including decimals.
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::with_capacity(word.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev_alpha = i > 0 && (chars[i - 1].is_alphabetic() || chars[i - 1] == '_');
        if c == '0' && !prev_alpha && matches!(chars.get(i + 1), Some('x' | 'X')) {
            let n = count_while(&chars[i + 2..], |c| c.is_ascii_hexdigit());
            if n > 0 {
                out.push_str("<hex>");
                i += 2 + n;
                continue;
            }
        }
        if c.is_ascii_digit() && prev_alpha {
            // Digits glued to a word (`sha256`, `utf8`) are part of a name.
            let n = count_while(&chars[i..], |c| c.is_ascii_digit());
            out.extend(&chars[i..i + n]);
            i += n;
            continue;
        }
        if c.is_ascii_digit() {
            let mut n = count_while(&chars[i..], |c| c.is_ascii_digit());
            if chars.get(i + n) == Some(&'.')
                && chars.get(i + n + 1).is_some_and(char::is_ascii_digit)
            {
                n += 1 + count_while(&chars[i + n + 1..], |c| c.is_ascii_digit());
            }
            if i == 1 && out == "-" {
                out.clear();
            }
            out.push_str("<num>");
            i += n;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The issue id for fingerprint components: 16 lowercase hex characters.
pub fn group_id(components: &[String]) -> String {
    let mut hasher = Sha256::new();
    for c in components {
        hasher.update(c.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(c.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_tracking::event::Level;

    #[test]
    fn message_templates() {
        let a = normalize_message("timeout after 5023 ms on 0x7f3a00c1...");
        let b = normalize_message("timeout after 17 ms on 0x55e1...");
        assert_eq!(a, b);
        assert_eq!(a, "timeout after <num> ms on <hex>...");
        let cases = [
            ("user 'alice' not found", "user <str> not found"),
            (
                "can't open \"my file.txt\": denied",
                "can't open <str>: denied",
            ),
            ("conn to 10.0.0.7:8080 refused", "conn to <ip> refused"),
            ("peer [fe80::1]:443 reset", "peer <ip> reset"),
            (
                "bad id 123e4567-e89b-12d3-a456-426614174000.",
                "bad id <uuid>.",
            ),
            ("open /var/lib/hc/state.db failed", "open <path> failed"),
            ("GET http://x.local/a?b=1 -> 503", "GET <url> -> <num>"),
            (
                "took 1.25s (limit 2s), utf8 sha256",
                "took <num>s (limit <num>s), utf8 sha256",
            ),
            ("commit deadbeef12 missing", "commit <hex> missing"),
            ("  spaced \t out  ", "spaced out"),
            ("retry=3 of -4", "retry=<num> of <num>"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_message(input), want, "{input}");
        }
        // Hostile input never panics.
        for s in [
            "'",
            "\"unterminated",
            "0x",
            "é'é'",
            "::",
            "[]]",
            "-",
            "1.",
            "ß0x1ß",
        ] {
            let _ = normalize_message(s);
        }
    }

    #[test]
    fn frames_ignore_lines_addresses_and_hashes() {
        let f1 = Frame {
            function: Some("hc::poll::h0123456789abcdef".into()),
            module: Some("hc".into()),
            lineno: Some(10),
            instruction_addr: Some("0x1000".into()),
            ..Frame::default()
        };
        let f2 = Frame {
            function: Some("hc::poll::hfedcba9876543210".into()),
            module: Some("hc".into()),
            lineno: Some(99),
            instruction_addr: Some("0x2000".into()),
            ..Frame::default()
        };
        assert_eq!(normalize_frame(&f1), normalize_frame(&f2));
        assert_eq!(normalize_frame(&f1).unwrap(), "frame:hc:hc::poll");
        let bare = Frame {
            instruction_addr: Some("0x1".into()),
            ..Frame::default()
        };
        assert_eq!(normalize_frame(&bare), None);
        let by_file = Frame {
            function: Some("lambda_42".into()),
            filename: Some("/srv/app/src/main.py".into()),
            ..Frame::default()
        };
        assert_eq!(
            normalize_frame(&by_file).unwrap(),
            "frame:main.py:lambda_<num>"
        );
    }

    #[test]
    fn custom_and_default_placeholder() {
        let mut e = ErrorEvent::message("p", Level::Error, "boom 1");
        let default_id = group_id(&fingerprint(&e));
        e.fingerprint = Some(vec!["{{ default }}".into()]);
        let wrapped = fingerprint(&e);
        assert_eq!(
            wrapped,
            vec!["custom".to_string(), "message:boom <num>".into()]
        );
        assert_ne!(group_id(&wrapped), default_id);
        e.fingerprint = Some(vec!["{{default}}".into(), "db".into()]);
        assert_eq!(fingerprint(&e).last().unwrap(), "db");
        e.fingerprint = Some(vec![]);
        assert_eq!(group_id(&fingerprint(&e)), default_id);
        assert_eq!(group_id(&["a".into()]).len(), 16);
        assert_ne!(
            group_id(&["ab".into()]),
            group_id(&["a".into(), "b".into()])
        );
    }
}
