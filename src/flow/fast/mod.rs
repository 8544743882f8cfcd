//! A native evaluator for the simplest jq forms flows use most: paths
//! (`.vars.prices[.params.itemId]`), literals, comparisons, `and`/`or`/`//`,
//! arithmetic, object/array construction, pipes, string interpolation and a few
//! builtins (`length`, `type`, `not`, `tostring`, `ascii_downcase`, `ascii_upcase`). A jaq evaluation costs ~5 µs even for
//! `.a.b`, which dominated the request path of lookup flows.
//!
//! It composes jaq's own value operations (indexing, arithmetic, ordering,
//! truthiness), so values are identical; and it answers only when it is sure: any
//! error, or any source outside the subset, is left to jaq (`None`). Its lexer
//! and parser read text as jaq's do (`.and` is a field). A property test
//! (`agree.rs`) runs programs generated from this grammar (`generate.rs`) with
//! both evaluators and holds the native answers to jaq's.
//!
//! Files: `lex` (tokens), `parse` (the grammar, to a `Node` tree), `eval` (the
//! tree on a value), `builtins`, `fuel` (the bounds).
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
mod fuel;
#[cfg(test)]
mod generate;
mod lex;
mod parse;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;

use jaq_json::Val;

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
        (depth(&node) <= MAX_NODE_DEPTH).then(|| Self(Arc::new(node)))
    }

    /// The value jaq would give, or `None` to let jaq answer (errors included,
    /// and when `fuel` runs out).
    pub fn eval(&self, input: &Val, fuel: &mut Fuel) -> Option<Val> {
        eval::eval(&self.0, input, fuel)
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
