//! Generated programs written out: with the parentheses their operators'
//! levels need (`parse.rs`), generated whitespace between tokens, and each
//! `$name` resolved against the bindings around it.

use super::{Ex, Key, Lit, Piece, Seg};

impl Lit {
    fn write(&self, out: &mut String) {
        for &(c, alt) in &self.0 {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '/' if alt => out.push_str("\\/"),
                '\n' if !alt => out.push_str("\\n"),
                '\t' if !alt => out.push_str("\\t"),
                '\r' if !alt => out.push_str("\\r"),
                c => out.push(c),
            }
        }
    }
}

/// Writes a program token by token, with generated whitespace between tokens
/// (a space where two words would otherwise run together).
struct Writer {
    out: String,
    seed: u64,
    /// The names bound where the writer is, outermost first.
    scope: Vec<&'static str>,
}

impl Writer {
    fn space(&mut self) -> &'static str {
        // xorshift: whitespace is part of the case, so it shrinks with it.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        match self.seed % 16 {
            0..=7 => "",
            8..=12 => " ",
            13 => "\n",
            14 => "\t",
            _ => "  ",
        }
    }

    fn tok(&mut self, t: &str) {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let joined = self
            .out
            .ends_with(|c: char| word(c) || c == '.' || c == '$')
            && t.starts_with(word)
            || self.out.ends_with(word) && t.starts_with('.');
        let space = self.space();
        if !self.out.is_empty() {
            self.out.push_str(if joined && space.is_empty() {
                " "
            } else {
                space
            });
        }
        self.out.push_str(t);
    }

    fn lit(&mut self, l: &Lit) {
        let mut s = String::from("\"");
        l.write(&mut s);
        s.push('"');
        self.tok(&s);
    }

    /// Writes `e`, in parentheses when its level is below `min`.
    fn ex(&mut self, e: &Ex, min: u8) {
        let paren = level(e) < min;
        if paren {
            self.tok("(");
        }
        match e {
            Ex::Path(segs) => {
                if segs.is_empty() {
                    self.tok(".");
                } else {
                    self.segs(segs, true);
                }
            }
            Ex::Num(n) => self.tok(n),
            Ex::Str(l) => self.lit(l),
            Ex::Interp(pieces) => {
                // The string is one token; what is interpolated gets its own spaces.
                let mut s = String::from("\"");
                for p in pieces {
                    match p {
                        Piece::Text(l) => l.write(&mut s),
                        Piece::Expr(e) => {
                            let mut inner = Writer {
                                out: String::new(),
                                seed: self.seed,
                                scope: self.scope.clone(),
                            };
                            inner.ex(e, 0);
                            self.seed = inner.seed;
                            s.push_str("\\(");
                            s.push_str(&inner.out);
                            s.push(')');
                        }
                    }
                }
                s.push('"');
                self.tok(&s);
            }
            Ex::Word(w) => self.tok(w),
            Ex::Bin(l, op, r) => {
                let (_, mut left, mut right) = op.levels();
                // A binding on the left would take in what follows it.
                if matches!(**l, Ex::Bind(..)) {
                    left = left.max(1);
                }
                // `a | b as $x | c` is `a | (b as $x | c)`.
                if matches!(op, super::Op::Pipe) && matches!(**r, Ex::Bind(..)) {
                    right = 0;
                }
                self.ex(l, left);
                self.tok(op.text());
                self.ex(r, right);
            }
            Ex::Arr(items) => {
                self.tok("[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.tok(",");
                    }
                    self.ex(item, 1);
                }
                self.tok("]");
            }
            Ex::Obj(fields) => {
                self.tok("{");
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        self.tok(",");
                    }
                    match k {
                        Key::Word(w) => self.tok(w),
                        Key::Quoted(l) => self.lit(l),
                    }
                    if let Some(v) = v {
                        self.tok(":");
                        self.ex(v, 7);
                    }
                }
                self.tok("}");
            }
            Ex::Paren(inner) => {
                self.tok("(");
                self.ex(inner, 0);
                self.tok(")");
            }
            Ex::Var(k) => match self.scope.len() {
                // Outside any binding: now and then unbound (left to jaq),
                // else a number.
                0 if k % 16 == 0 => self.tok("$u"),
                0 => self.tok(&k.to_string()),
                n => {
                    let name = self.scope[n - 1 - usize::from(*k) % n];
                    self.tok(&format!("${name}"));
                }
            },
            Ex::Bind(value, name, body) => {
                self.ex(value, 1);
                self.tok("as");
                self.tok(&format!("${name}"));
                self.tok("|");
                self.scope.push(name);
                self.ex(body, 0);
                self.scope.pop();
            }
            Ex::If(branches, otherwise) => {
                for (i, (cond, then)) in branches.iter().enumerate() {
                    self.tok(if i == 0 { "if" } else { "elif" });
                    self.ex(cond, 0);
                    self.tok("then");
                    self.ex(then, 0);
                }
                if let Some(e) = otherwise {
                    self.tok("else");
                    self.ex(e, 0);
                }
                self.tok("end");
            }
            Ex::Error(None) => self.tok("error"),
            Ex::Error(Some(m)) => self.call("error", m),
            Ex::Call(name, arg) => self.call(name, arg),
            Ex::Neg(inner) => {
                self.tok("-");
                self.ex(inner, 7);
            }
            Ex::Post(base, segs) => {
                self.ex(base, 7);
                self.segs(segs, false);
            }
        }
        if paren {
            self.tok(")");
        }
    }

    fn call(&mut self, name: &str, arg: &Ex) {
        self.tok(name);
        self.tok("(");
        self.ex(arg, 0);
        self.tok(")");
    }

    /// Path segments; `first`: they start a path (`.[e]`, not `[e]`).
    fn segs(&mut self, segs: &[Seg], first: bool) {
        for (i, seg) in segs.iter().enumerate() {
            match seg {
                Seg::Field(name) => self.tok(&format!(".{name}")),
                Seg::Quoted(l) => {
                    self.tok(".");
                    self.lit(l);
                }
                Seg::Index(e, dot) => {
                    if (first && i == 0) || *dot {
                        self.tok(".");
                    }
                    self.tok("[");
                    self.ex(e, 1);
                    self.tok("]");
                }
            }
        }
    }
}

/// The level of `e` as written (7: an atom).
fn level(e: &Ex) -> u8 {
    match e {
        Ex::Bin(_, op, _) => op.levels().0,
        Ex::Bind(..) => 0,
        _ => 7,
    }
}

/// `e` written out, with whitespace from `seed`.
pub(in crate::flow::fast) fn source(e: &Ex, seed: u64) -> String {
    let mut w = Writer {
        out: String::new(),
        seed: seed | 1,
        scope: Vec::new(),
    };
    w.ex(e, 0);
    w.out
}
