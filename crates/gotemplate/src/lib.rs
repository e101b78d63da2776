//! A small implementation of the subset of Go's `text/template` that Docker users
//! type in `docker inspect -f`, `docker ps --format` and friends. Dot is always a
//! `serde_json::Value`.
//!
//! Supported:
//! - text, `{{pipeline}}`, trim markers `{{- ` / ` -}}`, comments `{{/* ... */}}`;
//! - pipelines `cmd | cmd ...` (each value becomes the last argument of the next
//!   command), operands `.`, `.A.B`, `$`, `$v.A`, `(pipeline).A`, string literals
//!   (`"..."` with Go escapes, `` `raw` ``), integers (also `0x..`, `0o..`, `1_000`),
//!   floats, `true`, `false`, `nil`;
//! - `{{if}}`/`{{else if}}`, `{{with}}`/`{{else with}}`, `{{range}}` (with `$v :=` or
//!   `$k, $v :=`, `{{break}}`, `{{continue}}`, `{{else}}`), `{{$x := p}}`, `{{$x = p}}`;
//! - functions `and or not eq ne lt le gt ge len index slice print printf println`
//!   (Go builtins) and `json join split lower upper title truncate pad` (Docker's).
//!
//! As in Go, `range` over an object visits the keys in sorted order, a missing object
//! key evaluates to a value printed as `<no value>`, and maps/slices print as
//! `map[k:v]` / `[a b]`. Nesting depth, output size and execution steps are bounded.
//!
//! Deviations from Go, on purpose or for size: `eq`/`ne` across types are false rather than
//! an error (numbers compare by value, arrays and objects deeply); `len`/`index` of null give
//! 0 / missing; string functions print non-strings as `%v`; `%s` formats any value as `%v`,
//! `%q` escapes as JSON; no `define`, `template`, `block`, `call`, `html`, `js`, character
//! constants or method calls; variables of one branch are rejected at parse time; errors carry
//! no template name or position.
//!
//! Owns: lexing, parsing and rendering templates over `serde_json::Value`, within the bounds
//! above. Must not: read files or the environment, print, or know what the data means (the
//! CLI builds the Docker-shaped objects it renders). Errors are one line starting with
//! `template: ` and never panic, whatever the input (see the fuzz target in `fuzz/`).
#![forbid(unsafe_code)]
// A library reports through its return values and `tracing`, never by printing.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

#[doc(hidden)]
pub mod fuzz;

use serde_json::{Number, Value};
use std::cmp::Ordering;
use std::rc::Rc;

/// Maximum nesting of control structures and parentheses.
const MAX_DEPTH: usize = 100;
/// Maximum size of the rendered output and of any single intermediate string.
const MAX_OUTPUT: usize = 16 << 20;
/// Maximum total bytes of strings produced by function calls during one render.
const MAX_PRODUCED: usize = 16 * MAX_OUTPUT;
/// Maximum evaluation steps, so hostile nested ranges terminate.
const MAX_STEPS: u64 = 10_000_000;
const FUNCS: &[&str] = &[
    "and", "eq", "ge", "gt", "index", "join", "json", "le", "len", "lower", "lt", "ne", "not", "or", "pad", "print",
    "printf", "println", "slice", "split", "title", "truncate", "upper",
];
const KEYWORDS: &[&str] = &["if", "else", "end", "range", "with", "break", "continue", "define", "template", "block"];
const WS: [char; 4] = [' ', '\t', '\r', '\n'];
static NULL: Value = Value::Null;

/// A template that does not parse, or fails while rendering; the message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Parse(String),
    #[error("{0}")]
    Render(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn err<T>(msg: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("template: {msg}"))
}

/// `{{name}}`, for error messages.
fn act(name: &str) -> String {
    format!("{{{{{name}}}}}")
}

/// Cuts `s` to about 40 characters for error messages.
fn clip(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Compact JSON of `v`, clipped, for error messages.
fn short(v: &Value) -> String {
    clip(&serde_json::to_string(v).unwrap_or_default())
}

fn tname(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Dot,
    Field(String),
    Var(String),
    Ident(String),
    Lit(Value),
    LParen,
    RParen,
    Pipe,
    Comma,
    Declare,
    Assign,
}

/// A token and whether whitespace preceded it (`.A.B` vs `.A .B`).
#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    space: bool,
}

enum Item {
    Text(String),
    Action(Vec<Token>),
}

fn lex(src: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let (mut pos, mut trim_next) = (0, false);
    loop {
        let rest = &src[pos..];
        let open = rest.find("{{");
        let mut text = &rest[..open.unwrap_or(rest.len())];
        if trim_next {
            text = text.trim_start_matches(WS);
        }
        let Some(open) = open else {
            items.extend((!text.is_empty()).then(|| Item::Text(text.to_string())));
            return Ok(items);
        };
        let mut i = pos + open + 2;
        if src[i..].starts_with('-') && src[i + 1..].starts_with(WS) {
            text = text.trim_end_matches(WS);
            i += 1;
        }
        items.extend((!text.is_empty()).then(|| Item::Text(text.to_string())));
        let body = src[i..].trim_start_matches(WS);
        if body.starts_with("/*") {
            let start = src.len() - body.len() + 2;
            let Some(end) = src[start..].find("*/") else { return err("unclosed comment") };
            let after = src[start + end + 2..].trim_start_matches(WS);
            let Some(trim) = ["}}", "-}}"].iter().position(|d| after.starts_with(d)) else {
                return err("comment ends before closing delimiter");
            };
            let (skip, trim) = (2 + trim, trim == 1);
            pos = src.len() - after.len() + skip;
            trim_next = trim;
            continue;
        }
        let (toks, end, trim) = lex_action(src, i)?;
        items.push(Item::Action(toks));
        pos = end;
        trim_next = trim;
    }
}

fn ident_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len())
}

/// Lexes one action starting at byte `start`; returns tokens, end offset, right trim.
fn lex_action(src: &str, start: usize) -> Result<(Vec<Token>, usize, bool), String> {
    let (mut toks, mut i, mut space) = (Vec::new(), start, false);
    loop {
        let rest = &src[i..];
        let Some(c) = rest.chars().next() else { return err("unclosed action") };
        if WS.contains(&c) && rest[1..].starts_with("-}}") {
            return Ok((toks, i + 4, true));
        } else if WS.contains(&c) {
            (space, i) = (true, i + 1);
            continue;
        } else if rest.starts_with("}}") {
            return Ok((toks, i + 2, false));
        }
        let digit_next = rest[c.len_utf8()..].starts_with(|d: char| d.is_ascii_digit());
        let (tok, len) = match c {
            '|' => (Tok::Pipe, 1),
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            '=' => (Tok::Assign, 1),
            ':' if rest.starts_with(":=") => (Tok::Declare, 2),
            '"' => lex_quoted(rest)?,
            '`' => match rest[1..].find('`') {
                Some(e) => (Tok::Lit(Value::from(&rest[1..=e])), e + 2),
                None => return err("unterminated raw quoted string"),
            },
            '$' => {
                let n = 1 + ident_len(&rest[1..]);
                (Tok::Var(rest[..n].to_string()), n)
            }
            '.' if digit_next => lex_number(rest)?,
            '.' => match ident_len(&rest[1..]) {
                0 => (Tok::Dot, 1),
                n => (Tok::Field(rest[1..=n].to_string()), n + 1),
            },
            '0'..='9' => lex_number(rest)?,
            '+' | '-' if digit_next || rest[1..].starts_with('.') => lex_number(rest)?,
            c if c.is_alphabetic() || c == '_' => {
                let n = ident_len(rest);
                (Tok::Ident(rest[..n].to_string()), n)
            }
            c => return err(format!("unexpected {c:?} in action")),
        };
        toks.push(Token { tok, space });
        (space, i) = (false, i + len);
    }
}

fn lex_quoted(s: &str) -> Result<(Tok, usize), String> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chars = s.char_indices().skip(1);
    let mut tmp = [0u8; 4];
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((Tok::Lit(Value::from(String::from_utf8_lossy(&buf))), i + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                if let Some(p) = "abfnrtv\\\"".find(e) {
                    buf.push(b"\x07\x08\x0c\n\r\t\x0b\\\""[p]);
                    continue;
                }
                let (digits, radix, mut code) = match e {
                    'x' => (2, 16, 0),
                    'u' => (4, 16, 0),
                    'U' => (8, 16, 0),
                    '0'..='7' => (2, 8, e as u32 - '0' as u32),
                    _ => return err("invalid escape in quoted string"),
                };
                for _ in 0..digits {
                    let Some(d) = chars.next().and_then(|(_, d)| d.to_digit(radix)) else {
                        return err("invalid escape in quoted string");
                    };
                    code = code * radix + d;
                }
                match (e, char::from_u32(code), u8::try_from(code)) {
                    ('u' | 'U', Some(c), _) => buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes()),
                    ('x' | '0'..='7', _, Ok(b)) => buf.push(b),
                    _ => return err("invalid escape in quoted string"),
                }
            }
            c => buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes()),
        }
    }
    err("unterminated quoted string")
}

fn lex_number(s: &str) -> Result<(Tok, usize), String> {
    let b = s.as_bytes();
    let sign = usize::from(b[0] == b'+' || b[0] == b'-');
    let hex = s[sign..].starts_with("0x") || s[sign..].starts_with("0X");
    let mut n = sign;
    while let Some(&c) = b.get(n) {
        let exp = if hex { [b'p', b'P'] } else { [b'e', b'E'] };
        let exp_sign = (c == b'+' || c == b'-') && n > 0 && exp.contains(&b[n - 1]);
        if !(c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exp_sign) {
            break;
        }
        n += 1;
    }
    match parse_number(&s[..n]) {
        Some(v) => Ok((Tok::Lit(v), n)),
        None => err(format!("bad number syntax: {:?}", clip(&s[..n]))),
    }
}

fn parse_number(text: &str) -> Option<Value> {
    let t = text.replace('_', "");
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(&t)),
    };
    let radix = [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)]
        .iter()
        .find_map(|(p, r)| body.strip_prefix(p).map(|b| (b, *r)));
    let int = match radix {
        Some((b, r)) => Some(i128::from_str_radix(b, r).ok()?),
        None if body.len() > 1 && body.starts_with('0') && body.bytes().all(|c| c.is_ascii_digit()) => {
            i128::from_str_radix(&body[1..], 8).ok()
        }
        None => body.parse::<i128>().ok(),
    };
    if let Some(i) = int.map(|i| if neg { -i } else { i }) {
        match (i64::try_from(i), u64::try_from(i)) {
            (Ok(v), _) => return Some(Value::from(v)),
            (_, Ok(v)) => return Some(Value::from(v)),
            _ => {}
        }
    }
    if radix.is_some() || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let f: f64 = body.parse().ok()?;
    Number::from_f64(if neg { -f } else { f }).map(Value::Number)
}

// ---------------------------------------------------------------- parser

/// An operand. `Dot` carries a field chain (`.` is an empty chain).
#[derive(Debug, Clone)]
enum Term {
    Dot(Vec<String>),
    Var(String, Vec<String>),
    Lit(Value),
    Paren(Box<Pipe>, Vec<String>),
    Func(String),
}

/// `$a, $b := cmd | cmd`; a command is a function followed by arguments, or one operand.
#[derive(Debug, Clone)]
struct Pipe {
    decl: Vec<String>,
    assign: bool,
    cmds: Vec<Vec<Term>>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    /// `if`/`with` with its `else if`/`else with` branches.
    Cond {
        with: bool,
        branches: Vec<(Pipe, Vec<Node>)>,
        els: Vec<Node>,
    },
    Range {
        pipe: Pipe,
        body: Vec<Node>,
        els: Vec<Node>,
    },
    Break,
    Continue,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

enum Stop {
    Eof,
    End,
    Else(Vec<Token>),
}

struct Cur<'t> {
    toks: &'t [Token],
    pos: usize,
}

impl<'t> Cur<'t> {
    fn peek(&self) -> Option<&'t Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn bump(&mut self) -> Option<&'t Token> {
        self.pos += 1;
        self.toks.get(self.pos - 1)
    }
    /// Field names directly attached (no space) to the previous operand.
    fn chain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Token { tok: Tok::Field(f), space: false }) = self.toks.get(self.pos) {
            out.push(f.clone());
            self.pos += 1;
        }
        out
    }
}

/// Recursive-descent parser; `vars` are the variables in scope (checked at parse time, as Go does).
struct Parser {
    items: std::vec::IntoIter<Item>,
    vars: Vec<String>,
    depth: usize,
    in_range: usize,
}

impl Parser {
    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            err(format!("nesting too deep (max {MAX_DEPTH})"))
        } else {
            Ok(())
        }
    }

    fn list(&mut self) -> Result<(Vec<Node>, Stop), String> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let toks = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action(t) => t,
            };
            let kw = match toks.first() {
                Some(Token { tok: Tok::Ident(s), .. }) => s.as_str(),
                _ => "",
            };
            match kw {
                "end" | "break" | "continue" if toks.len() > 1 => {
                    return err(format!("unexpected tokens after {}", act(kw)))
                }
                "end" => return Ok((nodes, Stop::End)),
                "else" => return Ok((nodes, Stop::Else(toks[1..].to_vec()))),
                "if" | "with" | "range" => nodes.push(self.control(kw, &toks[1..])?),
                "break" | "continue" if self.in_range == 0 => {
                    return err(format!("{} outside {}", act(kw), act("range")))
                }
                "break" => nodes.push(Node::Break),
                "continue" => nodes.push(Node::Continue),
                "define" | "template" | "block" => return err(format!("{} is not supported", act(kw))),
                _ => nodes.push(Node::Action(self.pipeline(&toks, 1, "command")?)),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    /// Parses a list that must be closed by `{{end}}` (an `{{else}}` branch).
    fn end_list(&mut self) -> Result<Vec<Node>, String> {
        let mark = self.vars.len();
        let (nodes, stop) = self.list()?;
        self.vars.truncate(mark);
        match stop {
            Stop::End => Ok(nodes),
            Stop::Else(_) => err(format!("expected {}; found {}", act("end"), act("else"))),
            Stop::Eof => err("unexpected EOF"),
        }
    }

    fn control(&mut self, kind: &str, toks: &[Token]) -> Result<Node, String> {
        self.enter()?;
        let mark = self.vars.len();
        let mut pipe = self.pipeline(toks, if kind == "range" { 2 } else { 1 }, kind)?;
        let node = if kind == "range" {
            self.in_range += 1;
            let (body, stop) = self.list()?;
            self.in_range -= 1;
            self.vars.truncate(mark);
            let els = match stop {
                Stop::End => Vec::new(),
                Stop::Else(rest) if rest.is_empty() => self.end_list()?,
                Stop::Else(_) => return err(format!("unexpected tokens after {}", act("else"))),
                Stop::Eof => return err("unexpected EOF"),
            };
            Node::Range { pipe, body, els }
        } else {
            let mut branches = Vec::new();
            loop {
                let vmark = self.vars.len();
                let (body, stop) = self.list()?;
                self.vars.truncate(vmark);
                branches.push((pipe, body));
                match stop {
                    Stop::End => break Node::Cond { with: kind == "with", branches, els: Vec::new() },
                    Stop::Else(rest) if rest.is_empty() => {
                        let els = self.end_list()?;
                        break Node::Cond { with: kind == "with", branches, els };
                    }
                    Stop::Else(rest) if matches!(&rest[0].tok, Tok::Ident(s) if s == kind) => {
                        pipe = self.pipeline(&rest[1..], 1, kind)?;
                    }
                    Stop::Else(_) => return err(format!("unexpected tokens after {}", act("else"))),
                    Stop::Eof => return err("unexpected EOF"),
                }
            }
        };
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(node)
    }

    fn pipeline(&mut self, toks: &[Token], decl_max: usize, ctx: &str) -> Result<Pipe, String> {
        let at = |i: usize| toks.get(i).map(|t| &t.tok);
        let is_op = |t: Option<&Tok>| matches!(t, Some(Tok::Declare | Tok::Assign));
        let (decl, assign, start) = match (at(0), at(1), at(2)) {
            (Some(Tok::Var(a)), op, _) if is_op(op) => (vec![a.clone()], op == Some(&Tok::Assign), 2),
            (Some(Tok::Var(a)), Some(Tok::Comma), Some(Tok::Var(b))) if is_op(at(3)) => {
                (vec![a.clone(), b.clone()], at(3) == Some(&Tok::Assign), 4)
            }
            (Some(Tok::Var(_)), Some(Tok::Comma), ..) => return err(format!("bad declaration in {ctx}")),
            _ => (Vec::new(), false, 0),
        };
        if decl.len() > decl_max {
            return err(format!("too many declarations in {ctx}"));
        }
        if decl.iter().any(|n| n == "$") {
            return err("cannot assign to $");
        }
        if let Some(n) = decl.iter().find(|n| assign && !self.vars.contains(n)) {
            return err(format!("undefined variable \"{}\"", clip(n)));
        }
        let mut cur = Cur { toks: &toks[start..], pos: 0 };
        if cur.peek().is_none() {
            return err(format!("missing value for {ctx}"));
        }
        let cmds = self.cmds(&mut cur)?;
        if cur.peek().is_some() {
            return err("unexpected right paren");
        }
        if !assign {
            self.vars.extend(decl.iter().cloned());
        }
        Ok(Pipe { decl, assign, cmds })
    }

    fn cmds(&mut self, cur: &mut Cur) -> Result<Vec<Vec<Term>>, String> {
        let mut cmds: Vec<Vec<Term>> = Vec::new();
        loop {
            let mut cmd = Vec::new();
            while !matches!(cur.peek(), None | Some(Tok::Pipe | Tok::RParen)) {
                cmd.push(self.term(cur)?);
            }
            match cmd.first() {
                None => return err("missing value for command"),
                Some(Term::Func(_)) => {}
                Some(_) if cmd.len() > 1 => return err("can't give argument to non-function"),
                Some(_) if !cmds.is_empty() => {
                    return err(format!("non executable command in pipeline stage {}", cmds.len() + 1))
                }
                Some(Term::Lit(Value::Null)) => return err("nil is not a command"),
                Some(_) => {}
            }
            cmds.push(cmd);
            if cur.peek() != Some(&Tok::Pipe) {
                return Ok(cmds);
            }
            cur.pos += 1;
        }
    }

    fn term(&mut self, cur: &mut Cur) -> Result<Term, String> {
        let Some(t) = cur.bump() else { return err("unexpected end of action") };
        Ok(match &t.tok {
            Tok::Dot => Term::Dot(cur.chain()),
            Tok::Field(f) => Term::Dot([vec![f.clone()], cur.chain()].concat()),
            Tok::Var(n) if !self.vars.contains(n) => return err(format!("undefined variable \"{}\"", clip(n))),
            Tok::Var(n) => Term::Var(n.clone(), cur.chain()),
            Tok::Lit(v) => Term::Lit(v.clone()),
            Tok::Ident(id) => match id.as_str() {
                "true" | "false" => Term::Lit(Value::Bool(id == "true")),
                "nil" => Term::Lit(Value::Null),
                f if FUNCS.contains(&f) => Term::Func(id.clone()),
                k if KEYWORDS.contains(&k) => return err(format!("unexpected keyword {k:?} in command")),
                f => return err(format!("function \"{}\" not defined", clip(f))),
            },
            Tok::LParen => {
                self.enter()?;
                let cmds = self.cmds(cur)?;
                if cur.bump().map(|t| &t.tok) != Some(&Tok::RParen) {
                    return err("unclosed left paren");
                }
                self.depth -= 1;
                Term::Paren(Box::new(Pipe { decl: Vec::new(), assign: false, cmds }), cur.chain())
            }
            Tok::RParen => return err("unexpected right paren"),
            Tok::Pipe => return err("unexpected \"|\""),
            Tok::Comma => return err("unexpected \",\" in command"),
            Tok::Declare => return err("unexpected \":=\" in command"),
            Tok::Assign => return err("unexpected \"=\" in command"),
        })
    }
}

impl Template {
    /// Parses `text`; errors are one line, e.g. `template: unclosed action` or
    /// `template: function "foo" not defined`.
    pub fn parse(text: &str) -> Result<Template> {
        Template::parse_text(text).map_err(Error::Parse)
    }

    /// Renders with `data` as dot. Errors are one line, e.g. `template: index out of range: 5`.
    pub fn render(&self, data: &Value) -> Result<String> {
        self.render_value(data).map_err(Error::Render)
    }

    fn parse_text(text: &str) -> Result<Template, String> {
        let items = lex(text)?;
        let mut p = Parser { items: items.into_iter(), vars: vec!["$".into()], depth: 0, in_range: 0 };
        match p.list()? {
            (nodes, Stop::Eof) => Ok(Template { nodes }),
            (_, Stop::End) => err(format!("unexpected {}", act("end"))),
            (_, Stop::Else(_)) => err(format!("unexpected {}", act("else"))),
        }
    }

    fn render_value(&self, data: &Value) -> Result<String, String> {
        let vars = vec![("$", Val::Ref(data))];
        let mut ex = Exec { vars, out: String::new(), steps: 0, produced: 0 };
        ex.walk(&self.nodes, &Val::Ref(data))?;
        Ok(ex.out)
    }
}

// ---------------------------------------------------------------- values

/// A value during execution: `Missing` is Go's "no value" for an absent map key.
#[derive(Debug, Clone)]
enum Val<'a> {
    Missing,
    Ref(&'a Value),
    Own(Rc<Value>),
}

fn val<'a>(v: impl Into<Value>) -> Val<'a> {
    Val::Own(Rc::new(v.into()))
}

impl Val<'_> {
    fn get(&self) -> Option<&Value> {
        match self {
            Val::Missing => None,
            Val::Ref(r) => Some(r),
            Val::Own(rc) => Some(rc),
        }
    }
    /// The JSON value, with missing treated as null.
    fn jv(&self) -> &Value {
        self.get().unwrap_or(&NULL)
    }
    fn truthy(&self) -> bool {
        match self.jv() {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(m) => !m.is_empty(),
        }
    }
}

enum Key<'k> {
    Name(&'k str),
    Idx(usize),
}

fn child<'a>(v: &Val<'a>, key: Key) -> Option<Val<'a>> {
    fn pick<'x>(v: &'x Value, key: &Key) -> Option<&'x Value> {
        match (v, key) {
            (Value::Object(m), Key::Name(n)) => m.get(*n),
            (Value::Array(a), Key::Idx(i)) => a.get(*i),
            _ => None,
        }
    }
    match v {
        Val::Missing => None,
        Val::Ref(r) => pick(r, &key).map(Val::Ref),
        Val::Own(rc) => pick(rc, &key).map(|x| val(x.clone())),
    }
}

fn field<'a>(v: Val<'a>, name: &str) -> Result<Val<'a>, String> {
    match v.get() {
        Some(Value::Object(_)) => Ok(child(&v, Key::Name(name)).unwrap_or(Val::Missing)),
        Some(o) => err(format!("can't evaluate field {} in type {}", clip(name), tname(o))),
        None => err(format!("nil pointer evaluating field {} of missing value", clip(name))),
    }
}

/// Elements of an array (index, element) or object (key, value, sorted by key).
fn entries(v: &Value) -> Option<Vec<(Value, &Value)>> {
    match v {
        Value::Array(a) => Some(a.iter().enumerate().map(|(i, e)| (Value::from(i), e)).collect()),
        Value::Object(m) => {
            let mut e: Vec<(&String, &Value)> = m.iter().collect();
            e.sort_by(|a, b| a.0.cmp(b.0));
            Some(e.into_iter().map(|(k, v)| (Value::from(k.as_str()), v)).collect())
        }
        _ => None,
    }
}

/// Appends `v` formatted like Go's `%v`.
fn write_go(out: &mut String, v: &Value, depth: usize) {
    if out.len() > MAX_OUTPUT {
        return;
    }
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&num_str(n)),
        Value::String(s) => out.push_str(s),
        _ if depth > MAX_DEPTH => out.push_str("..."),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                out.push_str(if i > 0 { " " } else { "" });
                write_go(out, e, depth + 1);
            }
            out.push(']');
        }
        Value::Object(_) => {
            out.push_str("map[");
            for (i, (k, e)) in entries(v).unwrap_or_default().into_iter().enumerate() {
                out.push_str(if i > 0 { " " } else { "" });
                write_go(out, &k, depth + 1);
                out.push(':');
                write_go(out, e, depth + 1);
            }
            out.push(']');
        }
    }
}

fn go_fmt(v: &Value) -> String {
    let mut s = String::new();
    write_go(&mut s, v, 0);
    s
}

fn num_str(n: &Number) -> String {
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => i.to_string(),
        (_, Some(u)) => u.to_string(),
        _ => go_float(n.as_f64().unwrap_or(0.0)),
    }
}

/// Formats like Go's `%v` for float64: shortest repr, exponent form when the decimal
/// exponent is < -4 or >= 6 (so `1000000.0` prints `1e+06`, as in Go).
fn go_float(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return format!("{f}");
    }
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{f}")
    } else {
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// String argument of a string function: strings raw, null/missing empty, else `%v`.
fn to_str(v: &Val) -> String {
    match v.jv() {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        o => go_fmt(o),
    }
}

fn to_count(v: &Val) -> Result<usize, String> {
    match v.jv().as_i64().and_then(|i| usize::try_from(i).ok()) {
        Some(n) => Ok(n),
        None => err(format!("expected a non-negative integer, got {}", short(v.jv()))),
    }
}

fn num_cmp(x: &Number, y: &Number) -> Ordering {
    let int = |n: &Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (int(x), int(y)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Ordering::Equal,
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Result<Ordering, String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Ok(num_cmp(x, y)),
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => err(format!("incompatible types for comparison: {} and {}", tname(a), tname(b))),
    }
}

fn title(s: &str) -> String {
    let (mut out, mut sep) = (String::with_capacity(s.len()), true);
    for c in s.chars() {
        if sep {
            out.extend(c.to_uppercase())
        } else {
            out.push(c)
        }
        sep = if c.is_ascii() { !(c.is_ascii_alphanumeric() || c == '_') } else { c.is_whitespace() };
    }
    out
}

/// Formats one printf verb; `None` means the verb does not apply to the value.
fn fmt_verb(verb: char, v: &Value, prec: Option<usize>, plus: bool) -> Option<(String, bool)> {
    let int = v.as_i64().map(i128::from).or_else(|| v.as_u64().map(i128::from));
    let sign = |s: String, neg: bool| if plus && !neg { format!("+{s}") } else { s };
    Some(match verb {
        'v' | 's' => {
            let s = go_fmt(v);
            match prec {
                Some(p) if verb == 's' || v.is_string() => (s.chars().take(p).collect(), false),
                _ => (s, v.is_number()),
            }
        }
        'd' => (sign(int?.to_string(), int? < 0), true),
        'x' | 'X' => {
            let s = match (v, int) {
                (Value::String(s), _) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                (_, Some(i)) if i < 0 => format!("-{:x}", i.unsigned_abs()),
                (_, i) => format!("{:x}", i?),
            };
            (if verb == 'X' { s.to_uppercase() } else { s }, !v.is_string())
        }
        'f' | 'F' => (sign(format!("{:.*}", prec.unwrap_or(6), v.as_f64()?), v.as_f64()? < 0.0), true),
        'g' => (sign(go_fmt(v), v.as_f64()? < 0.0), v.is_number()),
        'q' => (serde_json::to_string(v.as_str()?).ok()?, false),
        't' => (v.as_bool()?.to_string(), false),
        _ => return None,
    })
}

fn bad_arg(v: &Value) -> String {
    if v.is_null() {
        "<nil>".into()
    } else {
        format!("{}={}", go_type(v), go_fmt(v))
    }
}

/// The largest printf width or precision: Rust's formatter panics past `u16::MAX` (found by
/// the fuzz target: `{{printf "%.3444444f" 1}}` panicked), and Go's own bound is 1e6.
const MAX_FMT_NUM: usize = u16::MAX as usize;

/// Go's `fmt.Sprintf` for the verbs `%v %s %d %x %X %f %g %q %t %%`, flags `- + 0`,
/// width and precision.
fn sprintf(f: &str, args: &[&Value]) -> Result<String, String> {
    fn digits(it: &mut std::iter::Peekable<std::str::Chars>) -> Result<Option<usize>, String> {
        let mut n: Option<usize> = None;
        while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
            it.next();
            n = Some(n.unwrap_or(0) * 10 + d as usize);
            if n > Some(MAX_FMT_NUM) {
                return err("printf width or precision too large (at most 65535)");
            }
        }
        Ok(n)
    }
    let (mut out, mut next) = (String::new(), 0);
    let mut it = f.chars().peekable();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero) = (false, false, false);
        while let Some(&fl) = it.peek() {
            match fl {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' | '#' => {}
                _ => break,
            }
            it.next();
        }
        let width = digits(&mut it)?.unwrap_or(0);
        let prec = if it.peek() == Some(&'.') {
            it.next();
            Some(digits(&mut it)?.unwrap_or(0))
        } else {
            None
        };
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let Some((s, numeric)) = fmt_verb(verb, arg, prec, plus) else {
            out.push_str(&format!("%!{verb}({})", bad_arg(arg)));
            continue;
        };
        let pad = width.saturating_sub(s.chars().count());
        if minus {
            out.push_str(&s);
            out.push_str(&" ".repeat(pad));
        } else if zero && numeric {
            let (sign, digits) = s.split_at(usize::from(s.starts_with(['-', '+'])));
            out.push_str(sign);
            out.push_str(&"0".repeat(pad));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&s);
        }
        if out.len() > MAX_OUTPUT {
            return err("printf output too large");
        }
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..].iter().map(|v| bad_arg(v)).collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    Ok(out)
}

fn index<'a>(base: Val<'a>, key: &Val) -> Result<Val<'a>, String> {
    let k = key.jv();
    let pos = |len: usize| match k.as_i64() {
        Some(i) => match usize::try_from(i) {
            Ok(u) if u < len => Ok(u),
            _ => err(format!("index out of range: {i}")),
        },
        None => err(format!("cannot index with {}", tname(k))),
    };
    match (base.get(), k) {
        (None | Some(Value::Null), _) => Ok(Val::Missing),
        (Some(Value::Object(_)), Value::String(s)) => Ok(child(&base, Key::Name(s)).unwrap_or(Val::Missing)),
        (Some(Value::Array(a)), _) => Ok(child(&base, Key::Idx(pos(a.len())?)).unwrap_or(Val::Missing)),
        (Some(Value::String(s)), _) => Ok(val(s.as_bytes()[pos(s.len())?])),
        (Some(o), _) => err(format!("can't index item of type {} with {}", tname(o), tname(k))),
    }
}

fn slice<'a>(a: &[Val<'a>]) -> Result<Val<'a>, String> {
    let idx = a[1..].iter().map(to_count).collect::<Result<Vec<usize>, String>>()?;
    let bounds = |len: usize| {
        let at = |n: usize, default: usize| idx.get(n).copied().unwrap_or(default);
        let (i, j, k) = (at(0, 0), at(1, len), at(2, len));
        if i <= j && j <= k && k <= len {
            Ok((i, j))
        } else {
            err(format!("slice index out of range: {i}:{j} of {len}"))
        }
    };
    match a[0].jv() {
        Value::String(_) if idx.len() > 2 => err("cannot 3-index slice a string"),
        Value::String(s) => {
            let (i, j) = bounds(s.len())?;
            s.get(i..j).map(val).ok_or_else(|| "template: slice splits a UTF-8 character".into())
        }
        Value::Array(items) => {
            let (i, j) = bounds(items.len())?;
            Ok(val(items.get(i..j).unwrap_or_default().to_vec()))
        }
        o => err(format!("can't slice item of type {}", tname(o))),
    }
}

fn call_func<'a>(name: &str, a: Vec<Val<'a>>) -> Result<Val<'a>, String> {
    let (min, max) = match name {
        "json" | "len" | "lower" | "upper" | "title" | "not" => (1, 1),
        "join" | "split" | "truncate" | "ne" | "lt" | "le" | "gt" | "ge" => (2, 2),
        "pad" => (3, 3),
        "slice" => (1, 3),
        "eq" => (2, usize::MAX),
        "index" | "printf" => (1, usize::MAX),
        _ => (0, usize::MAX),
    };
    if a.len() < min || a.len() > max {
        let want = if min == max { min.to_string() } else { format!("at least {min}") };
        return err(format!("wrong number of args for {name}: want {want} got {}", a.len()));
    }
    if name == "index" {
        let mut it = a.into_iter();
        let mut cur = it.next().unwrap_or(Val::Missing);
        for k in it {
            cur = index(cur, &k)?;
        }
        return Ok(cur);
    }
    let s = |i: usize| to_str(&a[i]);
    let cmp = || compare(a[0].jv(), a[1].jv());
    Ok(match name {
        "json" => val(serde_json::to_string(a[0].jv()).map_err(|e| format!("template: json: {e}"))?),
        "len" => val(match a[0].jv() {
            Value::Null => 0,
            Value::String(s) => s.len(),
            Value::Array(v) => v.len(),
            Value::Object(m) => m.len(),
            o => return err(format!("len of type {}", tname(o))),
        }),
        "slice" => slice(&a)?,
        "join" => {
            let (sep, mut out) = (s(1), String::new());
            match a[0].jv() {
                Value::Array(items) => {
                    for (i, e) in items.iter().enumerate() {
                        out.push_str(if i > 0 { &sep } else { "" });
                        write_go(&mut out, e, 0);
                        if out.len() > MAX_OUTPUT {
                            return err("join result too large");
                        }
                    }
                }
                Value::Null => {}
                o => return err(format!("join: expected array, got {}", tname(o))),
            }
            val(out)
        }
        "split" => {
            let (src, sep) = (s(0), s(1));
            let parts: Vec<Value> = if sep.is_empty() {
                src.chars().take(1_000_001).map(|c| Value::from(c.to_string())).collect()
            } else {
                src.split(sep.as_str()).take(1_000_001).map(Value::from).collect()
            };
            if parts.len() > 1_000_000 {
                return err("split: too many parts");
            }
            val(parts)
        }
        "lower" => val(s(0).to_lowercase()),
        "upper" => val(s(0).to_uppercase()),
        "title" => val(title(&s(0))),
        "print" => {
            let (mut out, mut prev_str) = (String::new(), true);
            for v in &a {
                let is_str = v.jv().is_string();
                out.push_str(if !is_str && !prev_str { " " } else { "" });
                write_go(&mut out, v.jv(), 0);
                prev_str = is_str;
            }
            val(out)
        }
        "println" => val(a.iter().map(|v| go_fmt(v.jv())).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => val(sprintf(&s(0), &a[1..].iter().map(Val::jv).collect::<Vec<_>>())?),
        "eq" => val(a[1..].iter().any(|b| equal(a[0].jv(), b.jv()))),
        "ne" => val(!equal(a[0].jv(), a[1].jv())),
        "lt" => val(cmp()? == Ordering::Less),
        "le" => val(cmp()? != Ordering::Greater),
        "gt" => val(cmp()? == Ordering::Greater),
        "ge" => val(cmp()? != Ordering::Less),
        "not" => val(!a[0].truthy()),
        "truncate" => val(s(0).chars().take(to_count(&a[1])?).collect::<String>()),
        "pad" => {
            let (src, l, r) = (s(0), to_count(&a[1])?, to_count(&a[2])?);
            if l.saturating_add(r) > MAX_OUTPUT {
                return err("pad too large");
            }
            val(if src.is_empty() { src } else { format!("{}{src}{}", " ".repeat(l), " ".repeat(r)) })
        }
        _ => return err(format!("function \"{}\" not defined", clip(name))),
    })
}

// ---------------------------------------------------------------- execution

enum Flow {
    Normal,
    Break,
    Continue,
}

type RangeNode<'a> = (&'a Pipe, &'a [Node], &'a [Node]);

/// Execution state; `vars` is a stack truncated at the end of each control structure.
struct Exec<'a> {
    vars: Vec<(&'a str, Val<'a>)>,
    out: String,
    steps: u64,
    produced: usize,
}

impl<'a> Exec<'a> {
    fn tick(&mut self) -> Result<(), String> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            err("execution exceeds step limit")
        } else {
            Ok(())
        }
    }

    fn check_out(&self) -> Result<(), String> {
        if self.out.len() > MAX_OUTPUT {
            err("output exceeds 16 MiB limit")
        } else {
            Ok(())
        }
    }

    fn bind(&mut self, name: &'a str, v: Val<'a>, assign: bool) -> Result<(), String> {
        if !assign {
            self.vars.push((name, v));
        } else if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
            slot.1 = v;
        } else {
            return err(format!("undefined variable \"{}\"", clip(name)));
        }
        Ok(())
    }

    fn walk(&mut self, nodes: &'a [Node], dot: &Val<'a>) -> Result<Flow, String> {
        for node in nodes {
            self.tick()?;
            let flow = match node {
                Node::Text(t) => {
                    self.out.push_str(t);
                    self.check_out()?;
                    Flow::Normal
                }
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    match p.decl.first() {
                        Some(name) => self.bind(name, v, p.assign)?,
                        None => match v.get() {
                            None => self.out.push_str("<no value>"),
                            Some(j) => write_go(&mut self.out, j, 0),
                        },
                    }
                    self.check_out()?;
                    Flow::Normal
                }
                Node::Cond { with, branches, els } => {
                    let mark = self.vars.len();
                    let mut flow = None;
                    for (p, body) in branches {
                        let v = self.pipe(p, dot)?;
                        if let Some(name) = p.decl.first() {
                            self.bind(name, v.clone(), p.assign)?;
                        }
                        if v.truthy() {
                            flow = Some(self.walk(body, if *with { &v } else { dot })?);
                            break;
                        }
                    }
                    let flow = match flow {
                        Some(f) => f,
                        None => self.walk(els, dot)?,
                    };
                    self.vars.truncate(mark);
                    flow
                }
                Node::Range { pipe, body, els } => {
                    let mark = self.vars.len();
                    let v = self.pipe(pipe, dot)?;
                    let flow = self.range((pipe, body, els), v, dot)?;
                    self.vars.truncate(mark);
                    flow
                }
                Node::Break => Flow::Break,
                Node::Continue => Flow::Continue,
            };
            if !matches!(flow, Flow::Normal) {
                return Ok(flow);
            }
        }
        Ok(Flow::Normal)
    }

    /// Runs a `{{range}}` over `v`: arrays, objects (sorted keys), non-negative integers.
    fn range(&mut self, node: RangeNode<'a>, v: Val<'a>, dot: &Val<'a>) -> Result<Flow, String> {
        let (p, body, els) = node;
        let pairs: Option<Vec<(Val<'a>, Val<'a>)>> = match &v {
            Val::Ref(r) => entries(r).map(|es| es.into_iter().map(|(k, e)| (val(k), Val::Ref(e))).collect()),
            Val::Own(rc) => entries(rc).map(|es| es.into_iter().map(|(k, e)| (val(k), val(e.clone()))).collect()),
            Val::Missing => None,
        };
        let mut ran = false;
        if let Some(pairs) = pairs {
            for (k, e) in pairs {
                ran = true;
                if let Flow::Break = self.iteration(p, body, k, e)? {
                    break;
                }
            }
        } else if let Some(n) = v.jv().as_i64() {
            for i in 0..n {
                ran = true;
                if let Flow::Break = self.iteration(p, body, val(i), val(i))? {
                    break;
                }
            }
        } else if !v.jv().is_null() {
            return err(format!("range can't iterate over {} (type {})", short(v.jv()), tname(v.jv())));
        }
        if ran {
            Ok(Flow::Normal)
        } else {
            self.walk(els, dot)
        }
    }

    fn iteration(&mut self, p: &'a Pipe, body: &'a [Node], key: Val<'a>, elem: Val<'a>) -> Result<Flow, String> {
        self.tick()?;
        let mark = self.vars.len();
        match p.decl.as_slice() {
            [v] => self.bind(v, elem.clone(), p.assign)?,
            [k, v] => {
                self.bind(k, key, p.assign)?;
                self.bind(v, elem.clone(), p.assign)?;
            }
            _ => {}
        }
        let flow = self.walk(body, &elem)?;
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn pipe(&mut self, p: &'a Pipe, dot: &Val<'a>) -> Result<Val<'a>, String> {
        let mut v: Option<Val<'a>> = None;
        for cmd in &p.cmds {
            v = Some(match cmd.first() {
                Some(Term::Func(name)) => self.call(name, &cmd[1..], v, dot)?,
                Some(t) => self.term(t, dot)?,
                None => Val::Missing,
            });
        }
        Ok(v.unwrap_or(Val::Missing))
    }

    fn term(&mut self, t: &'a Term, dot: &Val<'a>) -> Result<Val<'a>, String> {
        self.tick()?;
        let (base, chain) = match t {
            Term::Dot(chain) => (dot.clone(), chain),
            Term::Var(name, chain) => match self.vars.iter().rev().find(|(n, _)| n == name) {
                Some((_, v)) => (v.clone(), chain),
                None => return err(format!("undefined variable \"{}\"", clip(name))),
            },
            Term::Lit(v) => return Ok(Val::Ref(v)),
            Term::Paren(p, chain) => (self.pipe(p, dot)?, chain),
            Term::Func(name) => return self.call(name, &[], None, dot),
        };
        chain.iter().try_fold(base, |v, name| field(v, name))
    }

    /// Calls function `name` with `args` and, from a pipeline, the previous value `fin`.
    fn call(&mut self, name: &str, args: &'a [Term], fin: Option<Val<'a>>, dot: &Val<'a>) -> Result<Val<'a>, String> {
        if name == "and" || name == "or" {
            if args.is_empty() && fin.is_none() {
                return err(format!("wrong number of args for {name}: want at least 1 got 0"));
            }
            let mut last = Val::Missing;
            for a in args {
                last = self.term(a, dot)?;
                if last.truthy() == (name == "or") {
                    return Ok(last);
                }
            }
            return Ok(fin.unwrap_or(last));
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            vals.push(self.term(a, dot)?);
        }
        vals.extend(fin);
        let v = call_func(name, vals)?;
        if let Some(Value::String(s)) = v.get() {
            self.produced += s.len();
            if s.len() > MAX_OUTPUT || self.produced > MAX_PRODUCED {
                return err(format!("{name} produced too much data"));
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> Value {
        json!({
            "Name": "web", "Id": "0123456789abcdef",
            "State": {"Pid": 42, "Running": true, "Status": "running"},
            "Args": ["a", "b", "c"],
            "Config": {"Labels": {"com.example.x": "yes", "b": "2"}, "Env": null},
            "NetworkSettings": {"Networks": {
                "b": {"IPAddress": "10.0.0.2"}, "a": {"IPAddress": "10.0.0.1"}
            }},
            "M": {"z": 1, "y": "two", "x": [1, 2]},
            "F": 1.5, "Big": 1000000.0, "Zero": 0, "Empty": "", "Nil": null, "Arr": [3, 1, 2]
        })
    }

    fn run(t: &str) -> Result<String, String> {
        Template::parse_text(t)?.render_value(&data())
    }

    #[track_caller]
    fn ok(t: &str, want: &str) {
        assert_eq!(run(t).as_deref(), Ok(want), "template {t:?}");
    }

    #[track_caller]
    fn fails(t: &str, needle: &str) {
        match run(t) {
            Ok(s) => panic!("template {t:?} rendered {s:?}, wanted error"),
            Err(e) => {
                assert!(e.starts_with("template: ") && !e.contains('\n') && e.len() < 160, "{e:?}");
                assert!(e.contains(needle), "template {t:?}: error {e:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn fields() {
        ok("{{.State.Pid}}", "42");
        ok("pid={{ .State.Pid }}!", "pid=42!");
        ok("{{.Missing}}", "<no value>");
        ok("{{.Config.Env}}", "<nil>");
        fails("{{.State.Pid.X}}", "can't evaluate field X in type number");
        fails("{{.Name.X}}", "in type string");
        fails("{{.Args.X}}", "in type array");
        fails("{{.Nil.X}}", "in type null");
        fails("{{.Missing.X}}", "missing value");
        ok("{{(index .NetworkSettings.Networks \"a\").IPAddress}}", "10.0.0.1");
        ok("{{$n := .NetworkSettings}}{{$n.Networks.b.IPAddress}}", "10.0.0.2");
        ok("{{$.Name}}", "web");
    }

    #[test]
    fn printing() {
        ok("{{.F}} {{.Big}} {{.Zero}} {{.Empty}}|{{.Nil}}", "1.5 1e+06 0 |<nil>");
        ok("{{.Args}} {{.M}}", "[a b c] map[x:[1 2] y:two z:1]");
        ok("{{0.0001}} {{0.00001}} {{123456.5}} {{1234567.0}} {{-2.5}}", "0.0001 1e-05 123456.5 1.234567e+06 -2.5");
        ok("{{true}} {{false}} {{0x1F}} {{1_000}} {{-3}} {{1e3}} {{.5}}", "true false 31 1000 -3 1000 0.5");
        ok(r#"{{"a\tb\x41\u00e9\"\\"}}|{{`raw\n`}}"#, "a\tbAé\"\\|raw\\n");
        ok("{{print nil}}", "<nil>");
    }

    #[test]
    fn range_sorted_and_vars() {
        ok("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", "10.0.0.1 10.0.0.2 ");
        ok("{{range $k, $v := .M}}{{$k}}={{$v}};{{end}}", "x=[1 2];y=two;z=1;");
        ok("{{range $i, $a := .Args}}{{$i}}{{$a}}{{end}}", "0a1b2c");
        ok("{{range $a := .Args}}{{$a}}{{.}}{{end}}", "aabbcc");
        ok("{{range .Args}}{{.}}:{{$.Name}},{{end}}", "a:web,b:web,c:web,");
        ok("{{range $a := .Args}}{{range $.Arr}}{{$a}}{{.}}{{end}}-{{end}}", "a3a1a2-b3b1b2-c3c1c2-");
        ok("{{range .Nil}}x{{else}}empty{{end}}{{range .Nope}}x{{else}}none{{end}}", "emptynone");
        ok("{{range (slice .Args 0 0)}}x{{else}}e{{end}}", "e");
        fails("{{range .Empty}}x{{end}}", "type string");
        fails("{{range .Name}}{{end}}", "range can't iterate over \"web\"");
        ok("{{range $i := 3}}{{$i}}{{end}}", "012");
        ok("{{range .Arr}}{{if eq . 1}}{{continue}}{{end}}{{if eq . 2}}{{break}}{{end}}{{.}}{{end}}", "3");
        ok("{{range split \"x,y\" \",\"}}<{{.}}>{{end}}", "<x><y>");
    }

    #[test]
    fn variables_and_scoping() {
        ok("{{$x := 1}}{{if true}}{{$x = 2}}{{$y := 3}}{{$y}}{{end}}{{$x}}", "32");
        ok("{{$n := 0}}{{range .Args}}{{$n = .}}{{end}}{{$n}}", "c");
        ok("{{with $s := .State}}{{$s.Pid}}{{.Status}}{{end}}", "42running");
        ok("{{if $x := .Zero}}a{{else if $y := .Name}}{{$x}}{{$y}}{{end}}", "0web");
        fails("{{if true}}{{$y := 3}}{{end}}{{$y}}", "undefined variable \"$y\"");
        fails("{{range $v := .Args}}{{else}}{{$v}}{{end}}", "undefined variable");
        fails("{{$x = 1}}", "undefined variable");
    }

    #[test]
    fn control() {
        ok("{{if .State.Running}}up{{else}}down{{end}}", "up");
        ok("{{if .Zero}}up{{else}}down{{end}}", "down");
        ok("{{if eq .Zero 1}}one{{else if eq .Zero 0}}zero{{else}}other{{end}}", "zero");
        ok("{{with .State}}{{.Pid}}{{end}}", "42");
        ok("{{with .Nope}}x{{else}}{{.Name}}{{end}}", "web");
        ok("{{with .Nope}}x{{else with .Name}}{{.}}{{end}}", "web");
        let falsy = [".Zero", ".Empty", ".Nil", ".Nope", "false", "0.0", "(slice .Args 0 0)", "(index .M \"q\")"];
        for falsy in falsy {
            ok(&format!("{{{{if {falsy}}}}}t{{{{else}}}}f{{{{end}}}}"), "f");
        }
    }

    #[test]
    fn trim_and_comments() {
        ok("x {{- 1 -}} y", "x1y");
        ok("a  \n\t{{- .Name}}\n  b", "aweb\n  b");
        ok("{{-3}} {{3 -}}  \n x", "-3 3x");
        ok("a{{/* c */}}b|a {{- /* c */ -}} b", "ab|ab");
        ok("{{range .Args -}}\n  {{.}}\n{{- end}}", "abc");
    }

    #[test]
    fn functions() {
        ok("{{index .Config.Labels \"com.example.x\"}}", "yes");
        ok(
            "{{index .M \"x\" 1}} {{index .Args 0}} {{index .M \"q\"}} {{index .Config.Env \"k\"}}",
            "2 a <no value> <no value>",
        );
        fails("{{index .Args 5}}", "index out of range: 5");
        ok("{{json .State}}", r#"{"Pid":42,"Running":true,"Status":"running"}"#);
        ok("{{json .Nope}} {{.Name | json}} {{json .Args}}", r#"null "web" ["a","b","c"]"#);
        ok("{{join .Args \",\"}}|{{join .Arr \"-\"}}|{{join .Nil \",\"}}", "a,b,c|3-1-2|");
        ok("{{.Name | upper}} {{lower \"ABC\"}} {{title \"hello wide-world\"}}", "WEB abc Hello Wide-World");
        ok("{{split \"a,b,c\" \",\"}} {{len (split \"abc\" \"\")}}", "[a b c] 3");
        ok("{{len .Args}} {{len .M}} {{len \"héllo\"}} {{len .Nil}}", "3 3 6 0");
        fails("{{len .Zero}}", "len of type number");
        ok(
            "{{truncate .Id 4}}|{{pad \"x\" 2 1}}|{{pad \"\" 2 1}}|{{slice .Id 0 4}}|{{slice .Args 1}}",
            "0123|  x ||0123|[b c]",
        );
        ok("{{print \"a\" 1 2 \"b\"}}|{{println 1 \"a\"}}|", "a1 2b|1 a\n|");
        ok(
            "{{or .Empty \"default\"}} {{and .Name .Zero}} {{and .Zero (index .Arr 99)}} {{not .Empty}}",
            "default 0 0 true",
        );
        fails("{{upper}}", "wrong number of args for upper: want 1 got 0");
    }

    #[test]
    fn docker_idioms() {
        ok("{{range $i, $e := .Args}}{{if $i}}, {{end}}{{$e}}{{end}}", "a, b, c");
        ok("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}\n{{end}}", "b=2\ncom.example.x=yes\n");
        ok("{{with index .Config.Labels \"nope\"}}{{.}}{{else}}none{{end}}", "none");
        ok(
            "{{\"a\" | printf \"%s-%s\" \"b\"}} {{.Id | printf \"%.12s\"}} {{.State.Status | title}}",
            "b-a 0123456789ab Running",
        );
        ok("{{.Config.Labels}}", "map[b:2 com.example.x:yes]");
        let all = run("{{json .}}").unwrap_or_default();
        assert!(all.starts_with(r#"{"Args":["a","b","c"],"Arr":[3,1,2],"Big":1000000.0,"#), "{all}");
    }

    #[test]
    fn comparisons() {
        ok("{{eq .State.Status \"running\"}} {{eq .State.Status \"exited\" \"running\"}}", "true true");
        ok("{{eq 1 1.0}} {{ne 1 2}} {{eq .Nope nil}} {{eq .Name 1}}", "true true true false");
        ok("{{lt 1 2}} {{le 2 2.0}} {{gt \"b\" \"a\"}} {{ge 1 2}}", "true true true false");
        fails("{{lt 1 \"a\"}}", "incompatible types for comparison");
    }

    #[test]
    fn printf() {
        ok("{{printf \"%-6s|\" .Name}}", "web   |");
        ok(
            r#"{{printf "%5d|%05d|%x|%q|%v|%.2f|%t|%%" 42 -42 255 "a\"b" .Args 3.14159 true}}"#,
            "   42|-0042|ff|\"a\\\"b\"|[a b c]|3.14|true|%",
        );
        ok("{{printf \"%s %s\" \"a\"}}", "a %!s(MISSING)");
        ok("{{printf \"%s\" \"a\" 1}}", "a%!(EXTRA int=1)");
        ok("{{printf \"%d\" \"x\"}}", "%!d(string=x)");
        ok("{{.State.Pid | printf \"pid %d\"}} {{printf \"%.3s\" .Id}}", "pid 42 012");
        // Rust's formatter panics past u16::MAX: an error, never a panic.
        assert_eq!(run("{{printf \"%.65535f\" 1.5}}").map(|s| s.len()), Ok(65537));
        for t in ["{{printf \"%.65536f\" 1.5}}", "{{printf \"%70000d\" 1}}", "{{printf \"%.3444444f\" 1}}"] {
            fails(t, "printf width or precision too large");
        }
    }

    #[test]
    fn malformed() {
        for (t, needle) in [
            ("{{.A", "unclosed action"),
            ("{{end}}", "unexpected {{end}}"),
            ("{{else}}", "unexpected {{else}}"),
            ("{{if}}{{end}}", "missing value for if"),
            ("{{\"abc}}", "unterminated quoted string"),
            ("{{`abc}}", "unterminated raw quoted string"),
            ("{{range .X}}", "unexpected EOF"),
            ("{{ | }}", "missing value for command"),
            ("{{}}", "missing value for command"),
            ("{{if 1}}{{else}}{{else}}{{end}}", "expected {{end}}"),
            ("{{foo}}", "function \"foo\" not defined"),
            ("{{$x}}", "undefined variable \"$x\""),
            ("{{(1}}", "unclosed left paren"),
            ("{{1)}}", "unexpected right paren"),
            ("{{.A | .B}}", "non executable command"),
            ("{{\"x\" 1}}", "can't give argument to non-function"),
            ("{{nil}}", "nil is not a command"),
            ("{{break}}", "outside {{range}}"),
            ("{{/* x", "unclosed comment"),
            ("{{/* x */ .A}}", "comment ends before closing delimiter"),
            ("{{define \"x\"}}{{end}}", "not supported"),
            ("{{1.2.3}}", "bad number syntax"),
            ("{{\"\\q\"}}", "invalid escape"),
            ("{{range $a, $b, $c := .}}{{end}}", "bad declaration"),
            ("{{with $a, $b := .}}{{end}}", "too many declarations"),
            ("{{:}}", "unexpected ':'"),
            ("{{print end}}", "unexpected keyword"),
            ("{{end 1}}", "unexpected tokens"),
        ] {
            fails(t, needle);
        }
        let e = Template::parse_text("{{foo}}").err();
        assert_eq!(e.as_deref(), Some("template: function \"foo\" not defined"));
        assert_eq!(Template::parse_text("{{.A").err().as_deref(), Some("template: unclosed action"));
    }

    #[test]
    fn limits() {
        let deep = "{{(".repeat(10_000);
        fails(&deep, "template: ");
        let parens = format!("{{{{{}1{}}}}}", "(".repeat(10_000), ")".repeat(10_000));
        fails(&parens, "nesting too deep");
        fails(&format!("{}{}", "{{if 1}}".repeat(10_000), "{{end}}".repeat(10_000)), "nesting too deep");
        ok(&format!("{{{{{}1{}}}}}", "(".repeat(99), ")".repeat(99)), "1");
        ok(&format!("{}x{}", "{{with .}}".repeat(100), "{{end}}".repeat(100)), "x");
        fails("{{range 200}}{{pad \"x\" 100000 0}}{{end}}", "16 MiB");
        fails("{{range 100000}}{{range 100000}}{{end}}{{end}}", "step limit");
        fails("{{pad \"x\" 99999999999 0}}", "too large");
        fails("{{printf \"%999999999999d\" 1}}", "too large");
        let big = json!({"S": "x".repeat(10_000)});
        for t in ["{{.S.X}}", "{{range .S}}{{end}}", "{{index .S \"k\"}}", "{{truncate .S .S}}"] {
            let e = Template::parse_text(t).and_then(|t| t.render_value(&big)).err().unwrap_or_default();
            assert!(e.starts_with("template: ") && e.len() < 120, "{e:?}");
        }
    }

    #[test]
    fn public_errors_say_which_step_failed() {
        assert_eq!(Template::parse("{{.A").unwrap_err(), Error::Parse("template: unclosed action".into()));
        let e = Template::parse("{{index .Arr 9}}").unwrap().render(&data()).unwrap_err();
        assert!(matches!(&e, Error::Render(m) if m.starts_with("template: ")), "{e:?}");
        assert_eq!(Template::parse("{{.Name}}").unwrap().render(&data()).unwrap(), "web");
    }

    #[test]
    fn fuzz_no_panic() {
        const FRAGS: &[&str] = &[
            "{{",
            "}}",
            "{{- ",
            " -}}",
            ".",
            ".A",
            ".State.Pid",
            "$",
            "$x",
            "$x := ",
            " = ",
            "|",
            "(",
            ")",
            "\"s\"",
            "`r`",
            "1",
            "-2.5",
            "if ",
            "else ",
            "end",
            "range ",
            "with ",
            "break",
            "continue",
            "{{end}}",
            "{{else}}",
            "index ",
            "printf ",
            "\"%5d %s %q %v %!\"",
            "json ",
            "len ",
            "join ",
            "split ",
            "eq ",
            "and ",
            "or ",
            "not ",
            "slice ",
            "pad ",
            "truncate ",
            "title ",
            " ",
            "text",
            "\n",
            "/*",
            "*/",
            "\\",
            "\"",
            "$k, $v := ",
            "nil",
            "true",
            ",",
            ":=",
            "0x1F",
            "1e3",
            "{{.}}",
            "print ",
            "lt ",
            ".M",
            ".Args",
            ".Arr",
            "{{range .Arr}}",
            "{{if .M}}",
            "{{$x := .Args}}",
            "é",
            "{{/* c */}}",
            "\"\\x",
            "'",
            "}",
            "{",
            "5 ",
            "日本",
            "{{-日",
            "é -}}",
            "{{`é",
            "-é",
            "$é",
            ".é",
            "\"é\"",
            "\u{1F600}",
        ];
        let d = data();
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % n
        };
        let mut rendered = 0;
        for _ in 0..20_000 {
            let len = 1 + next(16);
            let t: String = (0..len).map(|_| FRAGS[next(FRAGS.len())]).collect();
            let res = Template::parse_text(&t).and_then(|tm| {
                rendered += 1;
                tm.render_value(&d)
            });
            if let Err(e) = res {
                assert!(e.starts_with("template: ") && !e.contains('\n'), "{t:?} -> {e:?}");
            }
        }
        assert!(rendered > 1000, "only {rendered} templates parsed");
    }
}
