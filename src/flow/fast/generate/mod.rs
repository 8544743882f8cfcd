//! Programs of the native subset and JSON inputs of every shape, generated for
//! the property test in `agree.rs`. Programs are built as trees and written out
//! (`write.rs`) with the parentheses their operators' levels need (`parse.rs`)
//! and with generated whitespace, so that each one is in the subset by
//! construction (but for a `$name` outside any binding, now and then).

mod write;

use proptest::prelude::*;
use serde_json::Value;

pub(super) use write::source;

/// The field names most programs read and most inputs hold.
const CORE: &[&str] = &["a", "b", "n", "s"];

/// Other field names: what inputs hold less often, and words jq reserves.
const NAMES: &[&str] = &[
    "arr", "k", "x", "_1", "A", "and", "or", "not", "if", "then", "end", "as", "def", "reduce",
    "null", "true", "length",
];

/// The subset's builtins and literals written as words.
const WORDS: &[&str] = &[
    "null",
    "true",
    "false",
    "length",
    "type",
    "not",
    "tostring",
    "ascii_downcase",
    "ascii_upcase",
    "tojson",
    "tonumber",
    "keys",
    "keys_unsorted",
    "utf8bytelength",
];

/// The subset's builtins of one argument.
const CALLS: &[&str] = &[
    "has",
    "select",
    "startswith",
    "endswith",
    "ltrimstr",
    "rtrimstr",
];

/// Names bound with `as`, words jq reserves among them.
const VARS: &[&str] = &["x", "y", "p", "as", "end"];

/// Number literals: small, with leading zeros, fractional, and past `i64`.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "10",
    "007",
    "0.5",
    "1.0",
    "2.50",
    "0.1",
    "3.14159",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "123456789012345678901234567890",
    "100000000000000000000.5",
    "1e3",
    "2.5E-3",
    "1e+2",
    "0e0",
    "1E400",
];

#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    Pipe,
    Alt,
    Or,
    And,
    Cmp(&'static str),
    Sum(&'static str),
    Product(&'static str),
}

impl Op {
    /// The operator's level in the subset's grammar (`parse.rs`), and the
    /// levels its left and right operands need to stand without parentheses.
    fn levels(self) -> (u8, u8, u8) {
        match self {
            Op::Pipe => (0, 0, 1),
            Op::Alt => (1, 2, 1),
            Op::Or => (2, 2, 3),
            Op::And => (3, 3, 4),
            Op::Cmp(_) => (4, 5, 5),
            Op::Sum(_) => (5, 5, 6),
            Op::Product(_) => (6, 6, 7),
        }
    }

    fn text(self) -> &'static str {
        match self {
            Op::Pipe => "|",
            Op::Alt => "//",
            Op::Or => "or",
            Op::And => "and",
            Op::Cmp(s) | Op::Sum(s) | Op::Product(s) => s,
        }
    }
}

/// A generated program, before it is written out.
#[derive(Debug, Clone)]
pub(super) enum Ex {
    /// `.`, `.a`, `."a b"`, `.[e]`, `.a.[e]`, ...
    Path(Vec<Seg>),
    Num(&'static str),
    Str(Lit),
    Interp(Vec<Piece>),
    Word(&'static str),
    Bin(Box<Ex>, Op, Box<Ex>),
    Arr(Vec<Ex>),
    Obj(Vec<(Key, Option<Ex>)>),
    /// Parentheses the precedence does not need.
    Paren(Box<Ex>),
    /// `$name`: the (n mod bound)-th innermost binding (`write.rs` says what
    /// it is outside any).
    Var(u8),
    /// `value as $name | body`
    Bind(Box<Ex>, &'static str, Box<Ex>),
    /// `if c then a (elif c then b)* (else d)? end`
    If(Vec<(Ex, Ex)>, Option<Box<Ex>>),
    /// `error`, `error(m)`
    Error(Option<Box<Ex>>),
    /// `-e`
    Neg(Box<Ex>),
    /// `name(arg)`
    Call(&'static str, Box<Ex>),
    /// An atom, then paths: `$x.a`, `{...}[.k]`, `(e).a[0]`
    Post(Box<Ex>, Vec<Seg>),
}

#[derive(Debug, Clone)]
pub(super) enum Seg {
    Field(&'static str),
    Quoted(Lit),
    /// `[e]`, written `.[e]` after another segment when the flag is set.
    Index(Ex, bool),
}

#[derive(Debug, Clone)]
pub(super) enum Key {
    Word(&'static str),
    Quoted(Lit),
}

#[derive(Debug, Clone)]
pub(super) enum Piece {
    Text(Lit),
    Expr(Ex),
}

/// String literal text, with how each character is written: `true` picks the
/// other spelling where there are two (`\/` for `/`, a raw newline for `\n`).
#[derive(Debug, Clone)]
pub(super) struct Lit(Vec<(char, bool)>);

/// A field name, mostly one of [`CORE`].
fn name() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => prop::sample::select(CORE),
        1 => prop::sample::select(NAMES),
    ]
}

fn text_char() -> impl Strategy<Value = (char, bool)> {
    let c = prop_oneof![
        8 => prop::sample::select(vec!['a', 'b', 'Z', 'x', '0', '9', ' ', '_', '.']),
        4 => prop::sample::select(vec!['é', 'É', 'ß', 'ı', 'Ω', '日', '😀', '\u{7f}', '\u{1}', '\u{a0}']),
        3 => prop::sample::select(vec!['"', '\\', '/', '\n', '\t', '\r', '(', ')', '{', '#']),
    ];
    (c, any::<bool>())
}

fn lit() -> impl Strategy<Value = Lit> {
    prop_oneof![
        3 => name().prop_map(|n| Lit(n.chars().map(|c| (c, false)).collect())),
        2 => prop::collection::vec(text_char(), 0..6).prop_map(Lit),
    ]
}

fn key() -> impl Strategy<Value = Key> {
    prop_oneof![
        3 => name().prop_map(Key::Word),
        1 => lit().prop_map(Key::Quoted),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Pipe),
        2 => Just(Op::Alt),
        1 => Just(Op::Or),
        1 => Just(Op::And),
        4 => prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]).prop_map(Op::Cmp),
        3 => prop::sample::select(vec!["+", "-"]).prop_map(Op::Sum),
        2 => prop::sample::select(vec!["*", "/"]).prop_map(Op::Product),
    ]
}

/// Paths whose keys are all literal: what flows read most.
fn simple_path() -> impl Strategy<Value = Ex> {
    let seg = prop_oneof![
        4 => name().prop_map(Seg::Field),
        1 => lit().prop_map(Seg::Quoted),
        1 => (lit(), any::<bool>()).prop_map(|(l, dot)| Seg::Index(Ex::Str(l), dot)),
        1 => (prop::sample::select(NUMBERS), any::<bool>())
            .prop_map(|(n, dot)| Seg::Index(Ex::Num(n), dot)),
    ];
    prop::collection::vec(seg, 0..4).prop_map(Ex::Path)
}

fn leaf() -> impl Strategy<Value = Ex> {
    prop_oneof![
        6 => simple_path(),
        2 => prop::sample::select(NUMBERS).prop_map(Ex::Num),
        2 => lit().prop_map(Ex::Str),
        3 => prop::sample::select(WORDS).prop_map(Ex::Word),
        // A builtin on what a path reaches, whatever its type.
        3 => (simple_path(), prop::sample::select(&WORDS[3..])).prop_map(|(p, w)| {
            Ex::Bin(Box::new(p), Op::Pipe, Box::new(Ex::Word(w)))
        }),
        2 => any::<u8>().prop_map(Ex::Var),
    ]
}

/// A literal: what a table in a program holds.
fn constant() -> impl Strategy<Value = Ex> {
    prop_oneof![
        3 => prop::sample::select(NUMBERS).prop_map(Ex::Num),
        2 => lit().prop_map(Ex::Str),
        1 => prop::sample::select(&WORDS[..3]).prop_map(Ex::Word),
        1 => prop::sample::select(NUMBERS).prop_map(|n| Ex::Neg(Box::new(Ex::Num(n)))),
    ]
}

/// `{"k": literal, ...}[e]`: a table written in the program, looked up.
fn table(index: impl Strategy<Value = Ex>) -> impl Strategy<Value = Ex> {
    let fields = prop::collection::vec((key(), constant().prop_map(Some)), 0..5);
    (fields, index, any::<bool>())
        .prop_map(|(fields, i, dot)| Ex::Post(Box::new(Ex::Obj(fields)), vec![Seg::Index(i, dot)]))
}

pub(super) fn expression() -> impl Strategy<Value = Ex> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        let seg = prop_oneof![
            3 => name().prop_map(Seg::Field),
            1 => lit().prop_map(Seg::Quoted),
            2 => (inner.clone(), any::<bool>()).prop_map(|(e, dot)| Seg::Index(e, dot)),
        ];
        let piece = prop_oneof![
            lit().prop_map(Piece::Text),
            inner.clone().prop_map(Piece::Expr),
        ];
        // A body that mostly reads what was bound.
        let body = prop_oneof![
            2 => inner.clone(),
            1 => any::<u8>().prop_map(Ex::Var),
            2 => (any::<u8>(), op(), inner.clone())
                .prop_map(|(k, op, r)| Ex::Bin(Box::new(Ex::Var(k)), op, Box::new(r))),
        ];
        let branch = (inner.clone(), inner.clone());
        prop_oneof![
            8 => (inner.clone(), op(), inner.clone())
                .prop_map(|(l, op, r)| Ex::Bin(Box::new(l), op, Box::new(r))),
            3 => (inner.clone(), prop::sample::select(VARS), body)
                .prop_map(|(v, name, b)| Ex::Bind(Box::new(v), name, Box::new(b))),
            2 => (prop::collection::vec(branch, 1..3), prop::option::of(inner.clone()))
                .prop_map(|(b, e)| Ex::If(b, e.map(Box::new))),
            1 => prop::option::of(inner.clone()).prop_map(|m| Ex::Error(m.map(Box::new))),
            1 => inner.clone().prop_map(|e| Ex::Neg(Box::new(e))),
            2 => (prop::sample::select(CALLS), inner.clone())
                .prop_map(|(f, a)| Ex::Call(f, Box::new(a))),
            2 => (inner.clone(), prop::collection::vec(seg.clone(), 1..3))
                .prop_map(|(b, s)| Ex::Post(Box::new(b), s)),
            1 => table(inner.clone()),
            2 => prop::collection::vec(seg, 1..4).prop_map(Ex::Path),
            2 => prop::collection::vec(inner.clone(), 0..4).prop_map(Ex::Arr),
            2 => prop::collection::vec((key(), prop::option::weighted(0.8, inner.clone())), 0..4)
                .prop_map(Ex::Obj),
            2 => prop::collection::vec(piece, 0..4).prop_map(Ex::Interp),
            1 => inner.prop_map(|e| Ex::Paren(Box::new(e))),
        ]
    })
}

/// JSON values of every shape; objects mostly hold the names programs read.
pub(super) fn json() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        4 => (-3i64..12).prop_map(Value::from),
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, -1 << 53, 1 << 53]).prop_map(Value::from),
        1 => prop::sample::select(vec![u64::MAX, 1 << 63]).prop_map(Value::from),
        2 => prop::sample::select(vec![
            0.5, -2.5, 1.0, -0.0, 0.1, 1e300, -1e300, 1e-300, 1.5e10, 3.0e-7,
            f64::MAX, f64::MIN_POSITIVE, 9007199254740993.0,
        ])
        .prop_map(Value::from),
        1 => (prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO)
            .prop_map(Value::from),
    ];
    let string = prop_oneof![
        1 => name().prop_map(Value::from),
        3 => prop::collection::vec(text_char(), 0..8)
            .prop_map(|cs| Value::from(cs.into_iter().map(|(c, _)| c).collect::<String>())),
        1 => prop::sample::select(vec!["MiXeD Ünï", "ÀÉÎ", "", "1", "null", "A-Z_a-z"])
            .prop_map(Value::from),
    ];
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        3 => number,
        3 => string,
    ];
    let value = leaf.prop_recursive(3, 12, 4, |inner| {
        let name = prop_oneof![
            5 => name().prop_map(str::to_owned),
            1 => prop::collection::vec(text_char(), 0..4)
                .prop_map(|cs| cs.into_iter().map(|(c, _)| c).collect::<String>()),
        ];
        prop_oneof![
            1 => prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            2 => prop::collection::vec((name, inner), 0..4)
                .prop_map(|kvs| Value::Object(kvs.into_iter().collect())),
        ]
    });
    prop_oneof![
        1 => value.clone(),
        3 => prop::collection::vec((name(), value), 0..6).prop_map(|kvs| {
            Value::Object(kvs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_programs_are_what_they_say() {
        let e = Ex::Bin(
            Box::new(Ex::Bin(
                Box::new(Ex::Path(vec![Seg::Field("and")])),
                Op::Sum("+"),
                Box::new(Ex::Num("1")),
            )),
            Op::Product("*"),
            Box::new(Ex::Obj(vec![(
                Key::Word("a"),
                Some(Ex::Path(vec![Seg::Index(Ex::Word("null"), false)])),
            )])),
        );
        let src = source(&e, 0);
        let squeezed: String = src.split_whitespace().collect();
        assert_eq!(squeezed, "(.and+1)*{a:.[null]}", "{src}");
    }
}
