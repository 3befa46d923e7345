//! Lexer and parser of Go's `text/template` syntax: text and `{{ }}` actions
//! (with `{{-`/`-}}` trimming and comments), pipelines with `|`, variables
//! (`$x :=`, `$x =`), fields, literals, parenthesized pipelines, and the
//! `if`/`else if`/`range`/`with`/`else`/`end`/`break`/`continue` controls.
//! `define`/`template`/`block` are refused (alert templates do not use them).

use super::TemplateError;

/// One argument of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `.` or `.A.B` (fields of dot).
    Dot(Vec<String>),
    /// `$x.A.B` (`$` alone is the template's data).
    Var(String, Vec<String>),
    /// A function name.
    Ident(String),
    /// `"…"` or `` `…` ``.
    Str(String),
    /// A number literal as written.
    Num(String),
    /// `true` / `false`.
    Bool(bool),
    /// `nil`.
    Nil,
    /// `( pipeline ).A.B`.
    Pipe(Box<Pipeline>, Vec<String>),
}

/// A pipeline: optional variable declaration or assignment, and commands
/// joined by `|` (each command's result becomes the next one's last argument).
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`).
    pub vars: Vec<String>,
    /// Whether `=` (assignment) rather than `:=`.
    pub assign: bool,
    /// Commands.
    pub cmds: Vec<Vec<Arg>>,
}

/// A node of the template tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Literal text.
    Text(String),
    /// `{{ pipeline }}`.
    Action(Pipeline),
    /// `if`, `range` or `with` with its body and `else` part.
    Control {
        /// `if`, `range` or `with`.
        kind: Ctl,
        /// The condition / ranged / dot pipeline.
        pipe: Pipeline,
        /// Body.
        body: Vec<Node>,
        /// `else` part.
        els: Vec<Node>,
    },
    /// `{{ break }}`.
    Break,
    /// `{{ continue }}`.
    Continue,
}

/// Kind of a control node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctl {
    /// `if`.
    If,
    /// `range`.
    Range,
    /// `with`.
    With,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Arg(Arg),
    Pipe,
    Open,
    Close,
    Declare,
    Assign,
    Comma,
}

fn err(msg: impl Into<String>) -> TemplateError {
    TemplateError::Parse(msg.into())
}

fn fields(s: &str) -> Vec<String> {
    s.split('.')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn unquote(body: &str) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('\'') => out.push('\''),
            Some('a') => out.push('\x07'),
            Some('b') => out.push('\x08'),
            Some('f') => out.push('\x0c'),
            Some('v') => out.push('\x0b'),
            Some('0') => out.push('\0'),
            Some('x') => {
                let h: String = chars.by_ref().take(2).collect();
                let b = u8::from_str_radix(&h, 16).map_err(|_| err("bad \\x escape"))?;
                out.push(b as char);
            }
            Some('u') => {
                let h: String = chars.by_ref().take(4).collect();
                let c = u32::from_str_radix(&h, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| err("bad \\u escape"))?;
                out.push(c);
            }
            other => return Err(err(format!("unknown escape sequence \\{other:?}"))),
        }
    }
    Ok(out)
}

/// Splits the inside of an action into tokens.
fn lex_action(s: &str) -> Result<Vec<Tok>, TemplateError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            b'(' => {
                out.push(Tok::Open);
                i += 1;
            }
            b')' => {
                i += 1;
                let start = i;
                while i < b.len() && (b[i] == b'.' || ident(b[i])) && b[start] == b'.' {
                    i += 1;
                }
                out.push(Tok::Close);
                if i > start {
                    out.push(Tok::Arg(Arg::Dot(fields(&s[start..i]))));
                }
            }
            b',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                out.push(Tok::Declare);
                i += 2;
            }
            b'=' => {
                out.push(Tok::Assign);
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= b.len() {
                    return Err(err("unterminated quoted string"));
                }
                out.push(Tok::Arg(Arg::Str(unquote(&s[start..i])?)));
                i += 1;
            }
            b'`' => {
                let start = i + 1;
                let end = s[start..]
                    .find('`')
                    .ok_or_else(|| err("unterminated raw quoted string"))?;
                out.push(Tok::Arg(Arg::Str(s[start..start + end].to_owned())));
                i = start + end + 1;
            }
            b'\'' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= b.len() {
                    return Err(err("unterminated character constant"));
                }
                let text = unquote(&s[start..i])?;
                let ch = text
                    .chars()
                    .next()
                    .ok_or_else(|| err("empty character constant"))?;
                out.push(Tok::Arg(Arg::Num((ch as u32).to_string())));
                i += 1;
            }
            b'.' | b'$' => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i] == b'.' || ident(b[i])) {
                    i += 1;
                }
                let text = &s[start..i];
                if c == b'.' {
                    if text.len() > 1 && text.as_bytes()[1].is_ascii_digit() {
                        out.push(Tok::Arg(Arg::Num(text.to_owned())));
                    } else {
                        out.push(Tok::Arg(Arg::Dot(fields(text))));
                    }
                } else {
                    let (name, rest) = match text[1..].find('.') {
                        Some(p) => (&text[..p + 1], &text[p + 1..]),
                        None => (text, ""),
                    };
                    out.push(Tok::Arg(Arg::Var(name.to_owned(), fields(rest))));
                }
            }
            b'0'..=b'9' | b'-' | b'+' => {
                let start = i;
                i += 1;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'.'
                        || b[i] == b'_'
                        || ((b[i] == b'-' || b[i] == b'+')
                            && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P')))
                {
                    i += 1;
                }
                out.push(Tok::Arg(Arg::Num(s[start..i].to_owned())));
            }
            c if ident(c) => {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let word = &s[start..i];
                out.push(Tok::Arg(match word {
                    "true" => Arg::Bool(true),
                    "false" => Arg::Bool(false),
                    "nil" => Arg::Nil,
                    _ => Arg::Ident(word.to_owned()),
                }));
            }
            other => return Err(err(format!("unexpected {:?} in command", other as char))),
        }
    }
    Ok(out)
}

/// Deepest nesting of parentheses and control actions a template may have
/// (parsing and executing recurse once per level).
const MAX_DEPTH: usize = 100;

fn parse_pipeline(toks: &[Tok], pos: &mut usize, depth: usize) -> Result<Pipeline, TemplateError> {
    if depth > MAX_DEPTH {
        return Err(err("template nests too deep"));
    }
    let mut pipe = Pipeline {
        vars: Vec::new(),
        assign: false,
        cmds: Vec::new(),
    };
    // Declarations: `$x :=`, `$x, $y :=`, `$x =`.
    let mut look = *pos;
    let mut vars = Vec::new();
    while let Some(Tok::Arg(Arg::Var(name, f))) = toks.get(look) {
        if !f.is_empty() {
            break;
        }
        vars.push(name.clone());
        look += 1;
        match toks.get(look) {
            Some(Tok::Comma) => look += 1,
            Some(Tok::Declare) | Some(Tok::Assign) => break,
            _ => {
                vars.clear();
                break;
            }
        }
    }
    if !vars.is_empty() {
        match toks.get(look) {
            Some(Tok::Declare) => {
                pipe.vars = vars;
                *pos = look + 1;
            }
            Some(Tok::Assign) => {
                pipe.vars = vars;
                pipe.assign = true;
                *pos = look + 1;
            }
            _ => {}
        }
    }
    let mut cmd: Vec<Arg> = Vec::new();
    while let Some(t) = toks.get(*pos) {
        match t {
            Tok::Close => break,
            Tok::Pipe => {
                if cmd.is_empty() {
                    return Err(err("missing command before |"));
                }
                pipe.cmds.push(std::mem::take(&mut cmd));
                *pos += 1;
            }
            Tok::Open => {
                *pos += 1;
                let inner = parse_pipeline(toks, pos, depth + 1)?;
                if toks.get(*pos) != Some(&Tok::Close) {
                    return Err(err("unclosed left paren"));
                }
                *pos += 1;
                let f = match toks.get(*pos) {
                    Some(Tok::Arg(Arg::Dot(f))) if !f.is_empty() => {
                        *pos += 1;
                        f.clone()
                    }
                    _ => Vec::new(),
                };
                cmd.push(Arg::Pipe(Box::new(inner), f));
            }
            Tok::Arg(a) => {
                cmd.push(a.clone());
                *pos += 1;
            }
            Tok::Comma | Tok::Declare | Tok::Assign => {
                return Err(err("unexpected token in operand"));
            }
        }
    }
    if !cmd.is_empty() {
        pipe.cmds.push(cmd);
    }
    if pipe.cmds.is_empty() {
        return Err(err("missing value for command"));
    }
    Ok(pipe)
}

fn pipeline_of(text: &str) -> Result<Pipeline, TemplateError> {
    let toks = lex_action(text)?;
    let mut pos = 0;
    let p = parse_pipeline(&toks, &mut pos, 0)?;
    if pos != toks.len() {
        return Err(err("unexpected \")\" in operand"));
    }
    Ok(p)
}

/// An action or text chunk of the source.
enum Chunk {
    Text(String),
    Action(String),
}

fn chunks(src: &str) -> Result<Vec<Chunk>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_left = after.starts_with("- ")
            || after.starts_with("-\t")
            || after.starts_with("-\n")
            || after.starts_with("-\r");
        if trim_left {
            text = text.trim_end();
        }
        out.push(Chunk::Text(text.to_owned()));
        let inner_start = if trim_left { 1 } else { 0 };
        let inner = &after[inner_start..];
        // A comment may contain "}}"-free text only up to "*/}}".
        let close = if inner.trim_start().starts_with("/*") {
            inner
                .find("*/")
                .and_then(|c| inner[c..].find("}}").map(|d| c + d))
                .ok_or(TemplateError::Parse("unclosed comment".into()))?
        } else {
            find_close(inner)?
        };
        let mut body = &inner[..close];
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") || body == "-" {
            body = &body[..body.len() - 1];
            trim_next = true;
        }
        out.push(Chunk::Action(body.to_owned()));
        rest = &inner[close + 2..];
    }
    let mut text = rest;
    if trim_next {
        text = text.trim_start();
    }
    out.push(Chunk::Text(text.to_owned()));
    Ok(out)
}

/// Position of the `}}` closing an action, skipping string literals.
fn find_close(s: &str) -> Result<usize, TemplateError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    Err(TemplateError::Parse("unclosed action".into()))
}

/// What ended a list of nodes.
enum Stop {
    Eof,
    End,
    Else(Option<String>),
}

/// Parses a template source into nodes.
pub fn parse(src: &str) -> Result<Vec<Node>, TemplateError> {
    let chunks = chunks(src)?;
    let mut pos = 0;
    let (nodes, end) = parse_list(&chunks, &mut pos, 0)?;
    match end {
        Stop::Eof => Ok(nodes),
        Stop::End => Err(err("unexpected {{end}}")),
        Stop::Else(_) => Err(err("unexpected {{else}}")),
    }
}

fn parse_list(
    chunks: &[Chunk],
    pos: &mut usize,
    depth: usize,
) -> Result<(Vec<Node>, Stop), TemplateError> {
    if depth > MAX_DEPTH {
        return Err(err("template nests too deep"));
    }
    let mut out = Vec::new();
    while let Some(c) = chunks.get(*pos) {
        *pos += 1;
        let text = match c {
            Chunk::Text(t) => {
                if !t.is_empty() {
                    out.push(Node::Text(t.clone()));
                }
                continue;
            }
            Chunk::Action(a) => a.trim(),
        };
        if text.starts_with("/*") {
            continue;
        }
        let (word, rest) = match text.find(|c: char| c.is_whitespace()) {
            Some(p) => (&text[..p], text[p..].trim()),
            None => (text, ""),
        };
        match word {
            "end" => return Ok((out, Stop::End)),
            "else" => {
                return Ok((out, Stop::Else((!rest.is_empty()).then(|| rest.to_owned()))));
            }
            "break" => out.push(Node::Break),
            "continue" => out.push(Node::Continue),
            "if" | "range" | "with" => {
                out.push(parse_control(word, rest, chunks, pos, depth)?);
            }
            "define" | "template" | "block" => {
                return Err(err(format!(
                    "{{{{{word}}}}} is not supported in alert templates"
                )))
            }
            _ => out.push(Node::Action(pipeline_of(text)?)),
        }
    }
    Ok((out, Stop::Eof))
}

fn parse_control(
    word: &str,
    rest: &str,
    chunks: &[Chunk],
    pos: &mut usize,
    depth: usize,
) -> Result<Node, TemplateError> {
    let kind = match word {
        "if" => Ctl::If,
        "range" => Ctl::Range,
        _ => Ctl::With,
    };
    let pipe = pipeline_of(rest)?;
    let (body, end) = parse_list(chunks, pos, depth + 1)?;
    let els = match end {
        Stop::Eof => {
            return Err(err(format!(
                "unexpected EOF: {{{{{word}}}}} without {{{{end}}}}"
            )))
        }
        Stop::End => Vec::new(),
        Stop::Else(None) => {
            let (els, end) = parse_list(chunks, pos, depth + 1)?;
            match end {
                Stop::End => els,
                _ => return Err(err("expected {{end}} after {{else}}")),
            }
        }
        Stop::Else(Some(chain)) => {
            // `else if …` / `else with …`: a nested control sharing our {{end}}.
            let (w, r) = match chain.find(|c: char| c.is_whitespace()) {
                Some(p) => (&chain[..p], chain[p..].trim()),
                None => (chain.as_str(), ""),
            };
            if !matches!(w, "if" | "with") {
                return Err(err(format!("unexpected {chain:?} after else")));
            }
            vec![parse_control(w, r, chunks, pos, depth + 1)?]
        }
    };
    Ok(Node::Control {
        kind,
        pipe,
        body,
        els,
    })
}
