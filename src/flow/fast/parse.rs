//! The subset's grammar: a recursive-descent parser over the tokens of
//! `lex`, building the program tree `eval` walks. Where the source leaves the
//! subset, parsing gives `None` and jaq answers. A `$name` no binding encloses
//! leaves it too.

use jaq_core::ValT;
use jaq_json::Val;

use super::builtins::Builtin;
use super::lex::{Piece, Tok, lex};

/// A program of the subset, as `eval` walks it.
#[derive(Debug)]
pub(super) enum Node {
    Identity,
    /// A literal, or an array or object of literals built once when the
    /// program is compiled (`fold.rs`).
    Lit(Val),
    /// `$name`: the value of the binding at this position of the bound values
    /// (the outermost binding is 0).
    Var(usize),
    /// `base[index]`, the index evaluated against the same input as the base.
    Index(Box<Node>, Box<Node>),
    /// `-e`
    Neg(Box<Node>),
    Bin(Box<Node>, Op, Box<Node>),
    Object(Vec<(Val, Node)>),
    Array(Vec<Node>),
    /// `left | right`: `right` runs on the output of `left`.
    Pipe(Box<Node>, Box<Node>),
    /// `value as $name | body`: `body` runs on the same input, with `value`'s
    /// output bound.
    Bind(Box<Node>, Box<Node>),
    /// `if c then a elif c2 then b else d end`; a missing `else` is `.`.
    If(Vec<(Node, Node)>, Box<Node>),
    Call(Builtin),
    /// `name(arg)`: a builtin of one argument, evaluated on the same input.
    Apply(Builtin, Box<Node>),
    /// `"text \(expr) text"`
    Format(Vec<Part>),
}

/// Most terms and binding bodies open at once while parsing: the parser
/// recurses on them, on the calling thread, with a dozen frames a level. Past
/// it the source is left to jaq; a program nested that deep would be anyway
/// (`MAX_NODE_DEPTH`), but for plain parentheses.
const MAX_NESTING: usize = 64;

/// Names jaq gives a meaning of its own (`$__loc__`, `$ENV`): left to jaq,
/// bound or not.
const SPECIAL_VARS: &[&str] = &["__loc__", "ENV"];

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
    /// The names bound where the parser is, outermost first.
    scope: Vec<String>,
    /// Terms and binding bodies open where the parser is.
    nesting: usize,
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

    fn word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(x)) if x == w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// `a | b` binds loosest.
    fn pipe(&mut self) -> Option<Node> {
        let mut left = self.bound()?;
        while self.eat(&Tok::Op("|")) {
            left = Node::Pipe(Box::new(left), Box::new(self.bound()?));
        }
        Some(left)
    }

    /// `value as $name | body`, read as jaq reads it: `as` binds looser than
    /// `//` and tighter than `|` on its left (`.a // .b as $x` binds `.a // .b`),
    /// and its body runs to the end of the enclosing pipe.
    fn bound(&mut self) -> Option<Node> {
        let value = self.alt()?;
        if !self.word("as") {
            return Some(value);
        }
        let Some(Tok::Var(name)) = self.next() else {
            return None; // destructuring patterns are left to jaq
        };
        if SPECIAL_VARS.contains(&name.as_str()) || !self.eat(&Tok::Op("|")) {
            return None;
        }
        self.scope.push(name);
        let body = self.nested(Self::pipe);
        self.scope.pop();
        Some(Node::Bind(Box::new(value), Box::new(body?)))
    }

    /// `parse`, one level deeper; `None` past [`MAX_NESTING`].
    fn nested(&mut self, parse: fn(&mut Self) -> Option<Node>) -> Option<Node> {
        if self.nesting >= MAX_NESTING {
            return None;
        }
        self.nesting += 1;
        let node = parse(self);
        self.nesting -= 1;
        node
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

    /// An atom and the paths that follow it (`$x.a`, `{...}[.k]`).
    fn term(&mut self) -> Option<Node> {
        self.nested(Self::atom_path)
    }

    fn atom_path(&mut self) -> Option<Node> {
        let atom = match self.next()? {
            Tok::Dot => match self.peek() {
                Some(Tok::Str(name)) => {
                    let name = name.clone();
                    self.pos += 1;
                    key(Node::Identity, name)
                }
                _ => Node::Identity,
            },
            Tok::Field(name) => key(Node::Identity, name),
            Tok::Var(name) => Node::Var(self.scope.iter().rposition(|n| *n == name)?),
            Tok::Op("-") => Node::Neg(Box::new(self.term()?)),
            Tok::Num(n) => Node::Lit(Val::from_num(&n).ok()?),
            Tok::Str(s) => Node::Lit(Val::utf8_str(s.into_bytes())),
            Tok::Template(pieces) => {
                let parts = pieces
                    .into_iter()
                    .map(|p| match p {
                        Piece::Text(t) => Some(Part::Text(t)),
                        Piece::Source(src) => {
                            Some(Part::Expr(compile_in(&src, &self.scope, self.nesting)?))
                        }
                    })
                    .collect::<Option<Vec<_>>>()?;
                Node::Format(parts)
            }
            Tok::Ident(w) => match w.as_str() {
                "null" => Node::Lit(Val::Null),
                "true" => Node::Lit(Val::Bool(true)),
                "false" => Node::Lit(Val::Bool(false)),
                "if" => self.if_then()?,
                name if self.peek() == Some(&Tok::Open('(')) => {
                    let f = Builtin::with_arg(name)?;
                    self.pos += 1;
                    let arg = self.pipe()?;
                    if !self.eat(&Tok::Close(')')) {
                        return None; // more arguments
                    }
                    Node::Apply(f, Box::new(arg))
                }
                name => Node::Call(Builtin::named(name)?),
            },
            Tok::Open('(') => {
                let inner = self.pipe()?;
                if !self.eat(&Tok::Close(')')) {
                    return None;
                }
                inner
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
                Node::Array(items)
            }
            Tok::Open('{') => self.object()?,
            _ => return None,
        };
        self.path(atom)
    }

    /// `if c then a (elif c then b)* (else d)? end`, after the `if`.
    fn if_then(&mut self) -> Option<Node> {
        let mut branches = Vec::new();
        loop {
            let cond = self.pipe()?;
            if !self.word("then") {
                return None;
            }
            branches.push((cond, self.pipe()?));
            match self.next()? {
                Tok::Ident(w) if w == "elif" => {}
                Tok::Ident(w) if w == "else" => {
                    let otherwise = self.pipe()?;
                    return self
                        .word("end")
                        .then(|| Node::If(branches, Box::new(otherwise)));
                }
                Tok::Ident(w) if w == "end" => {
                    return Some(Node::If(branches, Box::new(Node::Identity)));
                }
                _ => return None,
            }
        }
    }

    /// The paths after an atom, as jaq reads them: `[e]`, `.name`, `."name"`
    /// and `.[e]` in any order.
    fn path(&mut self, mut node: Node) -> Option<Node> {
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

/// `node[name]`
fn key(node: Node, name: String) -> Node {
    let key = Val::utf8_str(name.into_bytes());
    Node::Index(Box::new(node), Box::new(Node::Lit(key)))
}

pub(super) fn compile_node(source: &str) -> Option<Node> {
    compile_in(source, &[], 0)
}

/// `source` where the names of `scope` are bound and `nesting` terms are open
/// (an interpolation's).
fn compile_in(source: &str, scope: &[String], nesting: usize) -> Option<Node> {
    let mut p = Parser {
        toks: lex(source)?,
        pos: 0,
        scope: scope.to_vec(),
        nesting,
    };
    let node = p.pipe()?;
    (p.pos == p.toks.len()).then_some(node)
}
