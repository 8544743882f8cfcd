//! A native evaluator for the single-output jq forms flows use most: paths
//! (`.vars.prices[.params.itemId]`, `$t[.k]`), literals, comparisons,
//! `and`/`or`/`//`, arithmetic and negation, object/array construction, pipes,
//! `E as $name | body` and `$name`, `if ... elif ... else ... end`, string
//! interpolation, `error` and a few builtins (`builtins.rs`). A jaq
//! evaluation costs ~5 µs even for `.a.b`, and more in a worker process, which
//! dominated the request path of lookup flows. Arrays and objects of literals
//! (`{"A-100": 12.5, ...}[.params.itemId]`) are built once, when the program is
//! compiled.
//!
//! It composes jaq's own value operations (indexing, arithmetic, ordering,
//! truthiness), so values are identical; and it answers only when it is sure: any
//! error, or any source outside the subset, is left to jaq (`None`). Its lexer
//! and parser read text as jaq's do (`.and` is a field). A property test
//! (`agree.rs`) runs programs generated from this grammar (`generate.rs`) with
//! both evaluators and holds the native answers to jaq's.
//!
//! Files: `lex` (tokens), `parse` (the grammar, to a `Node` tree; `$name`
//! resolved to the binding it names), `fold` (constants built once), `eval`
//! (the tree on a value, with the bound values), `builtins`, `fuel` (the
//! bounds).
//!
//! It runs on the calling thread (a lookup pays no hop to a worker process), so
//! it is bounded: programs nest at most [`MAX_NODE_DEPTH`] deep, and each
//! evaluation spends [`Fuel`]: a step per value visited and per 64 bytes of text
//! handled. Values jq shares (`[.,.] | [.,.]`) are weighed before anything
//! walks them (comparisons, `tostring`). Out of fuel, or where an operation could
//! build without bound (`"x" * 1e9`), the expression is left to jaq, which runs
//! under the execution's budgets in a worker process.

#[cfg(test)]
mod agree;
mod builtins;
mod eval;
mod fold;
mod fuel;
#[cfg(test)]
mod generate;
mod lex;
mod parse;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_forms;

use std::collections::BTreeSet;
use std::sync::Arc;

use jaq_json::Val;

use builtins::Builtin;
pub use fuel::{FUEL, Fuel};
use parse::{Node, Part, compile_node};

/// Programs nested deeper than this (an operator chain counts a level per
/// operator) are left to jaq: evaluation recurses on the program.
pub const MAX_NODE_DEPTH: usize = 64;

/// A compiled program of the subset.
#[derive(Debug, Clone)]
pub struct Fast(Arc<Node>);

impl Fast {
    /// `None` when `source` is not entirely within the subset, or nests deeper
    /// than [`MAX_NODE_DEPTH`].
    pub fn compile(source: &str) -> Option<Self> {
        let node = compile_node(source)?;
        (depth(&node) <= MAX_NODE_DEPTH).then(|| Self(Arc::new(fold::fold(node))))
    }

    /// The value jaq would give, or `None` to let jaq answer (errors included,
    /// and when `fuel` runs out).
    pub fn eval(&self, input: &Val, fuel: &mut Fuel) -> Option<Val> {
        eval::eval(&self.0, input, &mut Vec::new(), fuel)
    }

    /// Adds to `keys` the top-level fields of its input the program reads; false
    /// when it reads the input otherwise (`.`, a computed key, a builtin on it).
    pub fn root_keys(&self, keys: &mut BTreeSet<String>) -> bool {
        root_keys(&self.0, keys)
    }
}

fn root_keys(node: &Node, keys: &mut BTreeSet<String>) -> bool {
    match node {
        // A bound value was read where it was bound.
        Node::Lit(_) | Node::Var(_) => true,
        // `error(m)` reports what `m` gives (read where the error is raised).
        Node::Apply(Builtin::Error, m) => root_keys(m, keys),
        // `error`, `select(f)`, `has(k)`, ... read their input whole.
        Node::Identity | Node::Call(_) | Node::Apply(..) => false,
        Node::Neg(e) => root_keys(e, keys),
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
        // The body runs on the input too.
        Node::Bind(value, body) => root_keys(value, keys) && root_keys(body, keys),
        // A missing `else` is `.`, which reads it all.
        Node::If(branches, otherwise) => {
            branches
                .iter()
                .all(|(c, t)| root_keys(c, keys) && root_keys(t, keys))
                && root_keys(otherwise, keys)
        }
        Node::Format(parts) => parts.iter().all(|p| match p {
            Part::Text(_) => true,
            Part::Expr(e) => root_keys(e, keys),
        }),
    }
}

/// How deep a program nests (a leaf is 1), before its constants are built.
fn depth(node: &Node) -> usize {
    1 + match node {
        Node::Identity | Node::Lit(_) | Node::Var(_) | Node::Call(_) => 0,
        Node::Neg(a) | Node::Apply(_, a) => depth(a),
        Node::Index(a, b) | Node::Bin(a, _, b) | Node::Pipe(a, b) | Node::Bind(a, b) => {
            depth(a).max(depth(b))
        }
        Node::If(branches, otherwise) => branches
            .iter()
            .map(|(c, t)| depth(c).max(depth(t)))
            .fold(depth(otherwise), usize::max),
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
