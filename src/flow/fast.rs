//! A native evaluator for the simplest jq forms flows use most: paths
//! (`.vars.prices[.params.itemId]`), literals, comparisons, `and`/`or`/`//`,
//! arithmetic, object/array construction, pipes, string interpolation and a few
//! builtins (`length`, `type`, `not`, `tostring`, `ascii_downcase`, `ascii_upcase`). A jaq evaluation costs ~5 µs even for
//! `.a.b`, which dominated the request path of lookup flows.
//!
//! It composes jaq's own value operations (indexing, arithmetic, ordering,
//! truthiness), so values are identical; and it answers only when it is sure: any
//! error, or any source outside the subset, is left to jaq (`None`).
//!
//! It runs on the calling thread (a lookup pays no hop to a worker process), so
//! it is bounded: programs nest at most [`MAX_NODE_DEPTH`] deep, and each
//! evaluation spends [`Fuel`]: a step per value visited and per 64 bytes of text
//! handled. Values jq shares (`[.,.] | [.,.]`) are weighed before anything
//! walks them (comparisons, `tostring`). Out of fuel, or where an operation could
//! build without bound (`"x" * 1e9`), the expression is left to jaq, which runs
//! under the execution's budgets in a worker process.

use std::collections::BTreeSet;
use std::sync::Arc;

use jaq_core::ValT;
use jaq_json::Val;

use super::value::{MAX_DEPTH, measure};

/// Programs nested deeper than this (an operator chain counts a level per
/// operator) are left to jaq: evaluation recurses on the program.
pub const MAX_NODE_DEPTH: usize = 64;

/// The steps one native evaluation may take: well under a millisecond.
pub const FUEL: u64 = 200_000;

/// What one native evaluation may still spend, and what it built.
#[derive(Debug, Clone)]
pub struct Fuel {
    left: u64,
    built: u64,
}

impl Default for Fuel {
    fn default() -> Self {
        Self::new(FUEL)
    }
}

impl Fuel {
    pub fn new(steps: u64) -> Self {
        Self {
            left: steps,
            built: 0,
        }
    }

    /// Bytes of new values built so far (approximately).
    pub fn built(&self) -> u64 {
        self.built
    }

    fn burn(&mut self, steps: u64) -> Option<()> {
        self.left = self.left.checked_sub(steps)?;
        Some(())
    }

    /// Pays for `bytes` of new text or values.
    fn build(&mut self, bytes: u64) -> Option<()> {
        self.burn(1 + bytes / 64)?;
        self.built += bytes;
        Some(())
    }

    /// Pays for walking `v`, or `None` when it is too big.
    fn weigh(&mut self, v: &Val) -> Option<()> {
        if matches!(v, Val::Arr(_) | Val::Obj(_)) {
            measure(v, &mut self.left)?;
        }
        Some(())
    }

    /// Takes `v` into a new array or object: it must stay within `MAX_DEPTH`
    /// levels there, and what it holds counts as built (a value made by
    /// gathering others holds them all).
    fn nest(&mut self, v: &Val) -> Option<()> {
        if matches!(v, Val::Arr(_) | Val::Obj(_)) {
            let m = measure(v, &mut self.left)?;
            if m.depth >= MAX_DEPTH {
                return None;
            }
            self.built += m.bytes;
        }
        Some(())
    }
}

/// A compiled program of the subset.
#[derive(Debug, Clone)]
pub struct Fast(Arc<Node>);

#[derive(Debug)]
enum Node {
    Identity,
    Lit(Val),
    /// `base[index]`, the index evaluated against the same input as the base.
    Index(Box<Node>, Box<Node>),
    Bin(Box<Node>, Op, Box<Node>),
    Object(Vec<(Val, Node)>),
    Array(Vec<Node>),
    /// `left | right`: `right` runs on the output of `left`.
    Pipe(Box<Node>, Box<Node>),
    Call(Builtin),
    /// `"text \(expr) text"`
    Format(Vec<Part>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Builtin {
    Length,
    Type,
    Not,
    ToString,
    Downcase,
    Upcase,
}

impl Builtin {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "length" => Self::Length,
            "type" => Self::Type,
            "not" => Self::Not,
            "tostring" => Self::ToString,
            "ascii_downcase" => Self::Downcase,
            "ascii_upcase" => Self::Upcase,
            _ => return None,
        })
    }
}

#[derive(Debug)]
enum Part {
    Text(String),
    Expr(Node),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Alt,
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

/// A piece of a string literal: text, or the source of an interpolation.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Source(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Dot,
    Ident(String),
    Str(String),
    /// A string literal with escapes or interpolations.
    Template(Vec<Piece>),
    Num(String),
    Op(&'static str),
    Open(char),
    Close(char),
    Comma,
    Colon,
}

fn lex(src: &str) -> Option<Vec<Tok>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '.' => {
                out.push(Tok::Dot);
                i += 1;
            }
            '"' => {
                let (pieces, end) = string_literal(src, i + 1)?;
                out.push(match pieces.as_slice() {
                    [] => Tok::Str(String::new()),
                    [Piece::Text(t)] => Tok::Str(t.clone()),
                    _ => Tok::Template(pieces),
                });
                i = end;
            }
            '0'..='9' => {
                let end = src[i..]
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .map_or(b.len(), |e| e + i);
                out.push(Tok::Num(src[i..end].to_owned()));
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let end = src[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(b.len(), |e| e + i);
                out.push(Tok::Ident(src[i..end].to_owned()));
                i = end;
            }
            '(' | '[' | '{' => {
                out.push(Tok::Open(c));
                i += 1;
            }
            ')' | ']' | '}' => {
                out.push(Tok::Close(c));
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            ':' => {
                out.push(Tok::Colon);
                i += 1;
            }
            _ => {
                let two = src.get(i..i + 2).unwrap_or("");
                let op = ["//", "==", "!=", "<=", ">="]
                    .into_iter()
                    .find(|o| *o == two);
                let (op, len) = match op {
                    Some(o) => (o, 2),
                    None => (
                        ["<", ">", "+", "-", "*", "/", "|"]
                            .into_iter()
                            .find(|o| o.starts_with(c))?,
                        1,
                    ),
                };
                out.push(Tok::Op(op));
                i += len;
            }
        }
    }
    Some(out)
}

/// Reads a string literal whose opening quote is just before `start`; returns
/// its pieces and the position after the closing quote. Escapes are JSON's;
/// `\(...)` holds an expression (its parentheses and strings may nest).
fn string_literal(src: &str, start: usize) -> Option<(Vec<Piece>, usize)> {
    let b = src.as_bytes();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = start;
    loop {
        match *b.get(i)? {
            b'"' => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(text));
                }
                return Some((pieces, i + 1));
            }
            b'\\' => {
                let escaped = match *b.get(i + 1)? {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'n' => '\n',
                    b't' => '\t',
                    b'r' => '\r',
                    b'(' => {
                        let end = interpolation_end(src, i + 2)?;
                        if !text.is_empty() {
                            pieces.push(Piece::Text(std::mem::take(&mut text)));
                        }
                        pieces.push(Piece::Source(src[i + 2..end].to_owned()));
                        i = end + 1;
                        continue;
                    }
                    _ => return None, // \uXXXX and the like are left to jaq
                };
                text.push(escaped);
                i += 2;
            }
            _ => {
                let c = src[i..].chars().next()?;
                text.push(c);
                i += c.len_utf8();
            }
        }
    }
}

/// The position of the `)` that closes an interpolation starting at `start`.
fn interpolation_end(src: &str, start: usize) -> Option<usize> {
    let b = src.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    loop {
        match *b.get(i)? {
            b'(' => depth += 1,
            b')' if depth == 0 => return Some(i),
            b')' => depth -= 1,
            b'"' => {
                let (_, end) = string_literal(src, i + 1)?;
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// `a | b` binds loosest.
    fn pipe(&mut self) -> Option<Node> {
        let mut left = self.alt()?;
        while self.eat(&Tok::Op("|")) {
            left = Node::Pipe(Box::new(left), Box::new(self.alt()?));
        }
        Some(left)
    }

    /// `a // b` binds loosest after `|`, and to the right.
    fn alt(&mut self) -> Option<Node> {
        let left = self.or()?;
        if self.eat(&Tok::Op("//")) {
            let right = self.alt()?;
            return Some(Node::Bin(Box::new(left), Op::Alt, Box::new(right)));
        }
        Some(left)
    }

    fn or(&mut self) -> Option<Node> {
        let mut left = self.and()?;
        while self.eat(&Tok::Ident("or".into())) {
            left = Node::Bin(Box::new(left), Op::Or, Box::new(self.and()?));
        }
        Some(left)
    }

    fn and(&mut self) -> Option<Node> {
        let mut left = self.cmp()?;
        while self.eat(&Tok::Ident("and".into())) {
            left = Node::Bin(Box::new(left), Op::And, Box::new(self.cmp()?));
        }
        Some(left)
    }

    /// Comparisons do not chain.
    fn cmp(&mut self) -> Option<Node> {
        let left = self.sum()?;
        let op = match self.peek() {
            Some(Tok::Op("==")) => Op::Eq,
            Some(Tok::Op("!=")) => Op::Ne,
            Some(Tok::Op("<")) => Op::Lt,
            Some(Tok::Op("<=")) => Op::Le,
            Some(Tok::Op(">")) => Op::Gt,
            Some(Tok::Op(">=")) => Op::Ge,
            _ => return Some(left),
        };
        self.pos += 1;
        Some(Node::Bin(Box::new(left), op, Box::new(self.sum()?)))
    }

    fn sum(&mut self) -> Option<Node> {
        let mut left = self.product()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("+")) => Op::Add,
                Some(Tok::Op("-")) => Op::Sub,
                _ => return Some(left),
            };
            self.pos += 1;
            left = Node::Bin(Box::new(left), op, Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Option<Node> {
        let mut left = self.term()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("*")) => Op::Mul,
                Some(Tok::Op("/")) => Op::Div,
                _ => return Some(left),
            };
            self.pos += 1;
            left = Node::Bin(Box::new(left), op, Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> Option<Node> {
        match self.next()? {
            Tok::Dot => self.path(),
            Tok::Num(n) => Some(Node::Lit(Val::from_num(&n).ok()?)),
            Tok::Str(s) => Some(Node::Lit(Val::utf8_str(s.into_bytes()))),
            Tok::Template(pieces) => {
                let parts = pieces
                    .into_iter()
                    .map(|p| match p {
                        Piece::Text(t) => Some(Part::Text(t)),
                        Piece::Source(src) => Some(Part::Expr(compile_node(&src)?)),
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some(Node::Format(parts))
            }
            Tok::Ident(w) => match w.as_str() {
                "null" => Some(Node::Lit(Val::Null)),
                "true" => Some(Node::Lit(Val::Bool(true))),
                "false" => Some(Node::Lit(Val::Bool(false))),
                name => Builtin::named(name).map(Node::Call),
            },
            Tok::Open('(') => {
                let inner = self.pipe()?;
                self.eat(&Tok::Close(')')).then_some(inner)
            }
            Tok::Open('[') => {
                let mut items = Vec::new();
                if !self.eat(&Tok::Close(']')) {
                    loop {
                        items.push(self.alt()?);
                        if self.eat(&Tok::Close(']')) {
                            break;
                        }
                        if !self.eat(&Tok::Comma) {
                            return None;
                        }
                    }
                }
                Some(Node::Array(items))
            }
            Tok::Open('{') => self.object(),
            _ => None,
        }
    }

    /// After the leading `.`: `.`, `.a`, `."a"`, `.[e]`, `.a.b[e]...`
    fn path(&mut self) -> Option<Node> {
        let mut node = Node::Identity;
        let mut want_key = true;
        loop {
            match self.peek() {
                Some(Tok::Ident(name)) if want_key && !matches!(name.as_str(), "and" | "or") => {
                    let key = Val::utf8_str(name.clone().into_bytes());
                    self.pos += 1;
                    node = Node::Index(Box::new(node), Box::new(Node::Lit(key)));
                }
                Some(Tok::Str(name)) if want_key => {
                    let key = Val::utf8_str(name.clone().into_bytes());
                    self.pos += 1;
                    node = Node::Index(Box::new(node), Box::new(Node::Lit(key)));
                }
                Some(Tok::Open('[')) => {
                    self.pos += 1;
                    if self.eat(&Tok::Close(']')) {
                        return None; // `.[]` iterates
                    }
                    let index = self.alt()?;
                    if !self.eat(&Tok::Close(']')) {
                        return None; // slices and the like
                    }
                    node = Node::Index(Box::new(node), Box::new(index));
                }
                Some(Tok::Dot) if !want_key => {}
                _ => return Some(node),
            }
            want_key = false;
            if self.peek() == Some(&Tok::Dot) {
                self.pos += 1;
                want_key = true;
                if !matches!(
                    self.peek(),
                    Some(Tok::Ident(_) | Tok::Str(_) | Tok::Open('['))
                ) {
                    return None; // `..` or a dangling dot
                }
            }
        }
    }

    /// `{a: term, "b": term, c}`; values are single terms, as jq requires.
    fn object(&mut self) -> Option<Node> {
        let mut fields = Vec::new();
        if self.eat(&Tok::Close('}')) {
            return Some(Node::Object(fields));
        }
        loop {
            let key = match self.next()? {
                Tok::Ident(k) | Tok::Str(k) => k,
                _ => return None,
            };
            let key_val = Val::utf8_str(key.clone().into_bytes());
            let value = if self.eat(&Tok::Colon) {
                self.term()?
            } else {
                Node::Index(
                    Box::new(Node::Identity),
                    Box::new(Node::Lit(key_val.clone())),
                )
            };
            fields.push((key_val, value));
            if self.eat(&Tok::Close('}')) {
                return Some(Node::Object(fields));
            }
            if !self.eat(&Tok::Comma) {
                return None;
            }
        }
    }
}

impl Fast {
    /// `None` when `source` is not entirely within the subset, or nests deeper
    /// than [`MAX_NODE_DEPTH`].
    pub fn compile(source: &str) -> Option<Self> {
        let node = compile_node(source)?;
        (depth(&node) <= MAX_NODE_DEPTH).then(|| Self(Arc::new(node)))
    }

    /// The value jaq would give, or `None` to let jaq answer (errors included,
    /// and when `fuel` runs out).
    pub fn eval(&self, input: &Val, fuel: &mut Fuel) -> Option<Val> {
        eval(&self.0, input, fuel)
    }

    /// Adds to `keys` the top-level fields of its input the program reads; false
    /// when it reads the input otherwise (`.`, a computed key, a builtin on it).
    pub fn root_keys(&self, keys: &mut BTreeSet<String>) -> bool {
        root_keys(&self.0, keys)
    }
}

fn root_keys(node: &Node, keys: &mut BTreeSet<String>) -> bool {
    match node {
        Node::Lit(_) => true,
        Node::Identity | Node::Call(_) => false,
        Node::Index(base, index) => match (base.as_ref(), index.as_ref()) {
            (Node::Identity, Node::Lit(Val::TStr(k))) => match std::str::from_utf8(k) {
                Ok(k) => {
                    keys.insert(k.to_owned());
                    true
                }
                Err(_) => false,
            },
            (base, index) => root_keys(base, keys) && root_keys(index, keys),
        },
        Node::Bin(l, _, r) => root_keys(l, keys) && root_keys(r, keys),
        Node::Object(fields) => fields.iter().all(|(_, v)| root_keys(v, keys)),
        Node::Array(items) => items.iter().all(|i| root_keys(i, keys)),
        // The right side reads what the left gives, not the input.
        Node::Pipe(l, _) => root_keys(l, keys),
        Node::Format(parts) => parts.iter().all(|p| match p {
            Part::Text(_) => true,
            Part::Expr(e) => root_keys(e, keys),
        }),
    }
}

/// How deep a program nests (a leaf is 1).
fn depth(node: &Node) -> usize {
    1 + match node {
        Node::Identity | Node::Lit(_) | Node::Call(_) => 0,
        Node::Index(a, b) | Node::Bin(a, _, b) | Node::Pipe(a, b) => depth(a).max(depth(b)),
        Node::Object(fields) => fields.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        Node::Array(items) => items.iter().map(depth).max().unwrap_or(0),
        Node::Format(parts) => parts
            .iter()
            .map(|p| match p {
                Part::Text(_) => 0,
                Part::Expr(e) => depth(e),
            })
            .max()
            .unwrap_or(0),
    }
}

fn compile_node(source: &str) -> Option<Node> {
    let mut p = Parser {
        toks: lex(source)?,
        pos: 0,
    };
    let node = p.pipe()?;
    (p.pos == p.toks.len()).then_some(node)
}

/// A string's text, for the builtins that take strings.
fn text(v: &Val) -> Option<&[u8]> {
    match v {
        Val::TStr(b) => Some(b),
        _ => None,
    }
}

/// `tostring`: strings as they are, anything else as JSON text.
fn push_string(out: &mut Vec<u8>, v: &Val, fuel: &mut Fuel) -> Option<()> {
    match v {
        Val::TStr(b) => {
            fuel.build(b.len() as u64)?;
            out.extend_from_slice(b)
        }
        Val::BStr(_) => return None,
        other => {
            fuel.weigh(other)?;
            let text = other.to_string();
            fuel.build(text.len() as u64)?;
            out.extend_from_slice(text.as_bytes())
        }
    }
    Some(())
}

fn call(f: Builtin, input: &Val, fuel: &mut Fuel) -> Option<Val> {
    Some(match f {
        Builtin::Not => Val::Bool(!input.as_bool()),
        Builtin::Length => match input {
            Val::Null => Val::from(0isize),
            Val::TStr(b) => {
                fuel.burn(b.len() as u64 / 64)?;
                Val::from(std::str::from_utf8(b).ok()?.chars().count() as isize)
            }
            Val::Arr(a) => Val::from(a.len() as isize),
            Val::Obj(o) => Val::from(o.len() as isize),
            _ => return None,
        },
        Builtin::Type => Val::utf8_str(
            match input {
                Val::Null => "null",
                Val::Bool(_) => "boolean",
                Val::Num(_) => "number",
                Val::TStr(_) => "string",
                Val::Arr(_) => "array",
                Val::Obj(_) => "object",
                Val::BStr(_) => return None,
            }
            .as_bytes()
            .to_vec(),
        ),
        Builtin::ToString => {
            if let Val::TStr(_) = input {
                return Some(input.clone());
            }
            let mut out = Vec::new();
            push_string(&mut out, input, fuel)?;
            Val::utf8_str(out)
        }
        Builtin::Downcase => {
            let t = text(input)?;
            fuel.build(t.len() as u64)?;
            Val::utf8_str(t.to_ascii_lowercase())
        }
        Builtin::Upcase => {
            let t = text(input)?;
            fuel.build(t.len() as u64)?;
            Val::utf8_str(t.to_ascii_uppercase())
        }
    })
}

/// What a path of literal keys (`.a.b.c`) reaches, by reference.
enum Found<'a> {
    Val(&'a Val),
    Null,
}

/// Follows `.a.b.c` without copying what it passes through; `None` for any other
/// form, and where jq would fail (indexing a string, say), to let `eval` decide.
fn lookup<'a>(node: &Node, input: &'a Val) -> Option<Found<'a>> {
    match node {
        Node::Identity => Some(Found::Val(input)),
        Node::Index(base, key) => {
            let Node::Lit(key @ Val::TStr(_)) = key.as_ref() else {
                return None;
            };
            match lookup(base, input)? {
                Found::Null | Found::Val(Val::Null) => Some(Found::Null),
                Found::Val(Val::Obj(o)) => Some(o.get(key).map_or(Found::Null, Found::Val)),
                Found::Val(_) => None,
            }
        }
        _ => None,
    }
}

/// What `left op right` costs and whether the native evaluator does it at all:
/// only operations whose cost is the size of what they build; others (string
/// repetition, array difference, deep merge, ...) are left to jaq.
fn charge(op: Op, left: &Val, right: &Val, fuel: &mut Fuel) -> Option<()> {
    let compound = |v: &Val| matches!(v, Val::Arr(_) | Val::Obj(_));
    match op {
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            fuel.weigh(left)?;
            fuel.weigh(right)
        }
        Op::Add => match (left, right) {
            (Val::TStr(a), Val::TStr(b)) => fuel.build((a.len() + b.len()) as u64),
            (Val::Arr(_), Val::Arr(_)) | (Val::Obj(_), Val::Obj(_)) => {
                fuel.nest(left)?;
                fuel.nest(right)
            }
            (Val::Num(_) | Val::Null, Val::Num(_) | Val::Null) => Some(()),
            (Val::Null, v) | (v, Val::Null) if compound(v) || matches!(v, Val::TStr(_)) => Some(()),
            _ => None,
        },
        Op::Sub | Op::Mul | Op::Div => {
            (matches!(left, Val::Num(_)) && matches!(right, Val::Num(_))).then_some(())
        }
        Op::Alt | Op::And | Op::Or => Some(()),
    }
}

fn eval(node: &Node, input: &Val, fuel: &mut Fuel) -> Option<Val> {
    fuel.burn(1)?;
    Some(match node {
        Node::Identity => input.clone(),
        Node::Lit(v) => v.clone(),
        Node::Index(..) if let Some(found) = lookup(node, input) => match found {
            Found::Val(v) => v.clone(),
            Found::Null => Val::Null,
        },
        Node::Index(base, index) => {
            let b = eval(base, input, fuel)?;
            let i = eval(index, input, fuel)?;
            // Integer indices may be negative or fractional in jq; leave those to jaq.
            if matches!(i, Val::Num(_)) && !matches!(b, Val::Null) {
                return None;
            }
            b.index(&i).ok()?
        }
        Node::Bin(l, op, r) => {
            let left = eval(l, input, fuel)?;
            match op {
                Op::Alt if left.as_bool() => left,
                Op::Alt => eval(r, input, fuel)?,
                Op::And if !left.as_bool() => Val::Bool(false),
                Op::And => Val::Bool(eval(r, input, fuel)?.as_bool()),
                Op::Or if left.as_bool() => Val::Bool(true),
                Op::Or => Val::Bool(eval(r, input, fuel)?.as_bool()),
                _ => {
                    let right = eval(r, input, fuel)?;
                    charge(*op, &left, &right, fuel)?;
                    match op {
                        Op::Eq => Val::Bool(left == right),
                        Op::Ne => Val::Bool(left != right),
                        Op::Lt => Val::Bool(left < right),
                        Op::Le => Val::Bool(left <= right),
                        Op::Gt => Val::Bool(left > right),
                        Op::Ge => Val::Bool(left >= right),
                        Op::Add => (left + right).ok()?,
                        Op::Sub => (left - right).ok()?,
                        Op::Mul => (left * right).ok()?,
                        Op::Div => (left / right).ok()?,
                        Op::Alt | Op::And | Op::Or => return None,
                    }
                }
            }
        }
        Node::Object(fields) => {
            fuel.build(48 * fields.len() as u64)?;
            let mut map = jaq_json::Map::default();
            for (k, v) in fields {
                let v = eval(v, input, fuel)?;
                fuel.nest(&v)?;
                map.insert(k.clone(), v);
            }
            Val::obj(map)
        }
        Node::Pipe(l, r) => eval(r, &eval(l, input, fuel)?, fuel)?,
        Node::Call(f) => call(*f, input, fuel)?,
        Node::Format(parts) => {
            let mut out = Vec::new();
            for part in parts {
                match part {
                    Part::Text(t) => {
                        fuel.build(t.len() as u64)?;
                        out.extend_from_slice(t.as_bytes())
                    }
                    Part::Expr(e) => push_string(&mut out, &eval(e, input, fuel)?, fuel)?,
                }
            }
            Val::utf8_str(out)
        }
        Node::Array(items) => {
            fuel.build(16 * items.len() as u64)?;
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                let v = eval(i, input, fuel)?;
                fuel.nest(&v)?;
                out.push(v);
            }
            out.into_iter().collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::expr::tests::jaq;
    use crate::flow::value::{Bound, from_json};
    use serde_json::json;

    fn to_json(v: &Val) -> serde_json::Value {
        crate::flow::value::to_json(v, &mut Bound::generous()).unwrap()
    }

    const IN_SUBSET: &[&str] = &[
        ".",
        ".a",
        ".a.b",
        ".\"a\"",
        ".a[\"b\"]",
        ".[\"a\"]",
        ".a[.k]",
        ".a[.k][.j]",
        ".vars.prices[.params.itemId][.params.currency]",
        ".missing.deeper",
        "null",
        "true",
        "false",
        "1",
        "12.5",
        "0.1",
        "\"text\"",
        ".n == 1",
        ".n != 1",
        ".n == 1.0",
        ".f == 2.5",
        ".s == \"x\"",
        ".a == null",
        ".missing == null",
        ".n < 2",
        ".n <= 1",
        ".n > .f",
        ".n >= 3",
        ".s < .n",
        "null < false",
        ".arr < .a",
        ".n + 1",
        ".n + .f",
        ".n * 3",
        ".n * .f",
        ".f * 2",
        ".n / 2",
        ".n - 5",
        ".f - .n",
        ".s + \"y\"",
        "null + .n",
        ".arr + .arr",
        ".a + .a",
        ".missing // 5",
        ".n // 5",
        ".no // .s // 1",
        "false // 2",
        ".t and .n",
        ".t and .missing",
        ".missing or .n",
        ".t or false",
        "(.n + 1) * 2",
        ".n + 1 * 2",
        "{a: .n, b: .s}",
        "{a: (.n * 2), \"b c\": .s, n}",
        "{}",
        "[.n, .s, 1]",
        "[]",
        "{item: .params.itemId, total: (.vars.price * .params.qty)}",
        ".a.b == 1 and .n == 1",
        ".arr[0]",
        ".arr[5]",
        ".n[0]",
        ".a | .b",
        ".a | .b | .x",
        "(.a | .b) == 1",
        ".s | ascii_downcase",
        ".s | ascii_upcase",
        "length",
        ".s | length",
        ".arr | length",
        ".a | length",
        ".missing | length",
        ".n | length",
        ".t | length",
        "type",
        ".n | type",
        ".s | type",
        ".missing | type",
        ".a | type",
        ".arr | type",
        ".t | type",
        "not",
        ".t | not",
        ".missing | not",
        "tostring",
        ".s | tostring",
        ".n | tostring",
        ".f | tostring",
        ".a | tostring",
        ".arr | tostring",
        "\"\\(.x)\"",
        "\"n=\\(.n) s=\\(.s) a=\\(.a) f=\\(.f)\"",
        "\"customer \\(.a.b // \"?\") done\"",
        "\"nested \\(\"in \\(.n)\")\"",
        "\"a\\\"b\"",
        "\"tab\\tnew\\nline\\\\\"",
        "\"é and ü\"",
        "(.body | type) != \"object\" or (.body.name // \"\" | length) == 0",
        "{id: (.body.id // .n), name: (.body.name | ascii_downcase), email: .body.email}",
    ];

    const OUT_OF_SUBSET: &[&str] = &[
        ".a[]",
        ".a?",
        "\"\\u00e9\"",
        ".a |= 1",
        "[.a | .b]",
        "keys",
        "if . then 1 else 2 end",
        ".a as $x | $x",
        "-1",
        ".[-1]",
        ".a[1:2]",
        "..",
        "$x",
        ".a, .b",
        "{(.k): 1}",
        "{a: .n + 1}",
        "[.arr[]]",
        ".a.",
        "reduce .[] as $x (0; . + $x)",
    ];

    fn inputs() -> Vec<serde_json::Value> {
        vec![
            json!(null),
            json!({"a": {"b": 1}, "k": "b", "j": "x", "n": 1, "f": 2.5, "s": "x", "t": true, "arr": [1, 2]}),
            json!({"a": {"b": {"x": 7}}, "k": "b", "j": "x", "n": 3, "f": -1.0, "s": "", "t": false, "arr": []}),
            json!({"a": [1, 2], "k": 0, "n": "str", "s": 5}),
            json!({"a": "text", "n": null, "f": 0, "s": [1], "arr": {"x": 1}}),
            json!({"vars": {"prices": {"A": {"EUR": 12.5}}, "price": 12.5}, "params": {"itemId": "A", "currency": "EUR", "qty": 3}}),
            json!({"vars": {"prices": {}}, "params": {"itemId": "Z", "currency": "SEK", "qty": 0}}),
            json!({"n": 9223372036854775807i64, "f": 1e300}),
            json!({"n": 0, "f": 0.0}),
            json!([1, 2, 3]),
            json!("string"),
            json!(42),
            json!({"a": {"b": null}, "missing": false, "no": null}),
            json!({"a": {"a": 1}, "n": 1.0, "s": "x", "t": 1}),
            json!({"arr": [[1], {"a": 1}], "a": [[1]]}),
            json!({"s": "MiXeD Ünï", "x": "y", "n": -2, "f": 1.5e10, "a": {"b": "B"}}),
            json!({"body": {"name": "Ada LOVELACE", "email": "a@b"}, "n": 7, "x": [1, {"y": null}]}),
            json!({"body": {"id": 5, "name": ""}, "x": true}),
            json!({"body": "text", "x": 1.0}),
            json!({"body": {"name": 3}, "s": "", "x": {"k": [1, 2.5, "z"]}}),
        ]
    }

    #[test]
    fn agrees_with_jaq_on_every_input() {
        let mut answered = 0;
        for src in IN_SUBSET {
            let fast =
                Fast::compile(src).unwrap_or_else(|| panic!("`{src}` should be in the subset"));
            let program = crate::flow::expr::Program::compile(src)
                .unwrap_or_else(|e| panic!("jaq rejects `{src}`: {e:?}"));
            for input in inputs() {
                let v = from_json(&input).unwrap();
                if let Some(f) = fast.eval(&v, &mut Fuel::default()) {
                    answered += 1;
                    let j = program
                        .run(v.clone(), 1)
                        .map(|(mut o, _)| o.pop().unwrap_or(Val::Null));
                    let j = j.unwrap_or_else(|e| {
                        panic!("`{src}` on {input}: fast gave {f:?}, jaq failed: {e}")
                    });
                    assert_eq!(to_json(&f), to_json(&j), "`{src}` on {input}");
                    assert_eq!(
                        format!("{f}"),
                        format!("{j}"),
                        "`{src}` on {input}: same representation"
                    );
                }
            }
        }
        assert!(
            answered > 400,
            "the fast path answered only {answered} times"
        );
    }

    #[test]
    fn pipes_builtins_and_interpolation_answer_natively() {
        let input = from_json(&json!({
            "message_id": "m1",
            "body": {"name": "Ada LOVELACE", "email": "ada@example.com", "tags": [1, 2]},
            "vars": {"customer": {"id": "c-1"}},
        }))
        .unwrap();
        let cases = [
            (
                "(.body | type) != \"object\" or (.body.name // \"\" | length) == 0",
                json!(false),
            ),
            (
                "{id: (.body.id // .message_id), name: (.body.name | ascii_downcase)}",
                json!({"id": "m1", "name": "ada lovelace"}),
            ),
            (
                "\"customer \\(.vars.customer.id) has \\(.body.tags) and \\(.body.tags | length)\"",
                json!("customer c-1 has [1,2] and 2"),
            ),
            (".body | tostring | length > 10", json!(true)),
        ];
        for (src, want) in cases {
            let fast = Fast::compile(src).unwrap_or_else(|| panic!("`{src}` not in the subset"));
            let got = fast
                .eval(&input, &mut Fuel::default())
                .unwrap_or_else(|| panic!("`{src}` was left to jaq"));
            assert_eq!(to_json(&got), want, "`{src}`");
        }
    }

    #[test]
    fn everything_else_is_left_to_jaq() {
        for src in OUT_OF_SUBSET {
            assert!(
                Fast::compile(src).is_none(),
                "`{src}` must not be in the subset"
            );
        }
    }

    #[test]
    fn the_top_level_fields_a_program_reads() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            (".params.itemId", Some(&["params"])),
            (
                ".vars.prices[.params.itemId][.params.currency]",
                Some(&["params", "vars"]),
            ),
            (
                "{id: (.body.id // .message_id)}",
                Some(&["body", "message_id"]),
            ),
            ("\"item \\(.params.itemId)\"", Some(&["params"])),
            (".body | length", Some(&["body"])),
            (".body.items | .[.k]", Some(&["body"])),
            ("[.a, .b.c] == null", Some(&["a", "b"])),
            ("42", Some(&[])),
            (".", None),
            ("length", None),
            (". == null", None),
            (".[.k]", None),
            (".[0]", None),
            ("\"all: \\(.)\"", None),
        ];
        for (src, want) in cases {
            let fast = Fast::compile(src).unwrap_or_else(|| panic!("`{src}` not in the subset"));
            let mut keys = BTreeSet::new();
            let got = fast
                .root_keys(&mut keys)
                .then(|| keys.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(got.as_deref(), *want, "`{src}`");
        }
    }

    /// 2^n leaves held in n shared levels.
    fn shared(n: usize) -> Val {
        let mut v = Val::from(1isize);
        for _ in 0..n {
            v = [v.clone(), v].into_iter().collect();
        }
        v
    }

    #[test]
    fn what_could_run_without_bound_is_left_to_jaq() {
        let mut m = jaq_json::Map::default();
        m.insert(crate::flow::value::string("d"), shared(60));
        m.insert(
            crate::flow::value::string("s"),
            crate::flow::value::string("x"),
        );
        m.insert(
            crate::flow::value::string("n"),
            Val::from(1_000_000_000isize),
        );
        let input = Val::obj(m);
        for src in [
            ".d == .d",
            ".d | tostring",
            "\"\\(.d)\"",
            ".d < .d",
            ".s * .n",
            ".d - .d",
        ] {
            let fast = Fast::compile(src).unwrap_or_else(|| panic!("`{src}` not in the subset"));
            let mut fuel = Fuel::default();
            assert!(fast.eval(&input, &mut fuel).is_none(), "`{src}`");
        }
        // Small shared values are fine.
        let small = Fast::compile("[.d, .d] | tostring | length").unwrap();
        let mut m = jaq_json::Map::default();
        m.insert(crate::flow::value::string("d"), shared(4));
        let input = Val::obj(m);
        let mut fuel = Fuel::default();
        assert_eq!(
            to_json(&small.eval(&input, &mut fuel).unwrap()),
            to_json(&jaq("[.d, .d] | tostring | length", &input).unwrap())
        );
        assert!(fuel.built() > 60);
    }

    #[test]
    fn values_built_natively_stay_within_the_depth_limit() {
        let mut v = Val::from(1isize);
        for _ in 0..MAX_DEPTH - 1 {
            v = [v].into_iter().collect();
        }
        let wrap = Fast::compile("[.]").unwrap();
        let once = wrap.eval(&v, &mut Fuel::default()).unwrap();
        assert!(wrap.eval(&once, &mut Fuel::default()).is_none());
        assert!(
            Fast::compile("{a: .}")
                .unwrap()
                .eval(&once, &mut Fuel::default())
                .is_none()
        );
    }

    #[test]
    fn deep_programs_are_left_to_jaq() {
        let chain = vec![".n"; MAX_NODE_DEPTH + 1].join(" + ");
        assert!(Fast::compile(&chain).is_none());
        let short = vec![".n"; MAX_NODE_DEPTH / 2].join(" + ");
        assert!(Fast::compile(&short).is_some());
    }
}
