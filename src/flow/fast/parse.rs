//! The subset's grammar: a recursive-descent parser over the tokens of
//! `lex`, building the program tree `eval` walks. Where the source leaves the
//! subset, parsing gives `None` and jaq answers.

use jaq_core::ValT;
use jaq_json::Val;

use super::builtins::Builtin;
use super::lex::{Piece, Tok, lex};

/// A program of the subset, as `eval` walks it.
#[derive(Debug)]
pub(super) enum Node {
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

/// A piece of an interpolated string.
#[derive(Debug)]
pub(super) enum Part {
    Text(String),
    Expr(Node),
}

/// The binary operators of the subset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Op {
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
        self.left_assoc(&[("+", Op::Add), ("-", Op::Sub)], Self::product)
    }

    fn product(&mut self) -> Option<Node> {
        self.left_assoc(&[("*", Op::Mul), ("/", Op::Div)], Self::term)
    }

    /// `operand (op operand)*` for the operators of one level, left to right.
    fn left_assoc(
        &mut self,
        ops: &[(&str, Op)],
        operand: fn(&mut Self) -> Option<Node>,
    ) -> Option<Node> {
        let mut left = operand(self)?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op(t)) => ops.iter().find(|(s, _)| s == t).map(|(_, op)| *op),
                _ => None,
            };
            let Some(op) = op else {
                return Some(left);
            };
            self.pos += 1;
            left = Node::Bin(Box::new(left), op, Box::new(operand(self)?));
        }
    }

    fn term(&mut self) -> Option<Node> {
        match self.next()? {
            Tok::Dot => self.path(None),
            Tok::Field(name) => self.path(Some(name)),
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

    /// A path, as jaq reads one: `.` or `.name`, then `[e]`, `.name`,
    /// `."name"` and `.[e]` in any order (`."a"` also right after the `.`).
    fn path(&mut self, first: Option<String>) -> Option<Node> {
        let key = |node, name: String| {
            let key = Val::utf8_str(name.into_bytes());
            Node::Index(Box::new(node), Box::new(Node::Lit(key)))
        };
        let mut node = Node::Identity;
        match first {
            Some(name) => node = key(node, name),
            None => {
                if let Some(Tok::Str(name)) = self.peek() {
                    node = key(node, name.clone());
                    self.pos += 1;
                }
            }
        }
        loop {
            match self.next() {
                Some(Tok::Open('[')) => {
                    if self.eat(&Tok::Close(']')) {
                        return None; // `.[]` iterates
                    }
                    let index = self.alt()?;
                    if !self.eat(&Tok::Close(']')) {
                        return None; // slices and the like
                    }
                    node = Node::Index(Box::new(node), Box::new(index));
                }
                Some(Tok::Field(name)) => node = key(node, name),
                Some(Tok::Dot) => match self.peek() {
                    Some(Tok::Str(name)) => {
                        node = key(node, name.clone());
                        self.pos += 1;
                    }
                    Some(Tok::Open('[')) => {}
                    _ => return None, // a dangling dot
                },
                _ => {
                    self.pos -= 1;
                    return Some(node);
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

pub(super) fn compile_node(source: &str) -> Option<Node> {
    let mut p = Parser {
        toks: lex(source)?,
        pos: 0,
    };
    let node = p.pipe()?;
    (p.pos == p.toks.len()).then_some(node)
}
