//! Arrays, objects and negations of literals, built when the program is
//! compiled: a table written in the program (`{"A-100": 12.5, ...}[.k]`) is not
//! built again on each run. Built by `eval` itself, so the value is the one a
//! run would build; what `eval` would not build (out of fuel, an error) stays
//! a node, for each run to leave to jaq.

use jaq_json::Val;

use super::eval::eval;
use super::fuel::Fuel;
use super::parse::{Node, Part};

/// `node` with its constant parts built, innermost first.
pub(super) fn fold(node: Node) -> Node {
    let folded = |n: Box<Node>| Box::new(fold(*n));
    let node = match node {
        Node::Index(a, b) => Node::Index(folded(a), folded(b)),
        Node::Neg(a) => Node::Neg(folded(a)),
        Node::Bin(a, op, b) => Node::Bin(folded(a), op, folded(b)),
        Node::Object(fields) => {
            Node::Object(fields.into_iter().map(|(k, v)| (k, fold(v))).collect())
        }
        Node::Array(items) => Node::Array(items.into_iter().map(fold).collect()),
        Node::Pipe(a, b) => Node::Pipe(folded(a), folded(b)),
        Node::Bind(a, b) => Node::Bind(folded(a), folded(b)),
        Node::If(branches, otherwise) => Node::If(
            branches
                .into_iter()
                .map(|(c, t)| (fold(c), fold(t)))
                .collect(),
            folded(otherwise),
        ),
        Node::Apply(f, a) => Node::Apply(f, folded(a)),
        Node::Format(parts) => Node::Format(
            parts
                .into_iter()
                .map(|p| match p {
                    Part::Expr(e) => Part::Expr(fold(e)),
                    text => text,
                })
                .collect(),
        ),
        leaf @ (Node::Identity | Node::Lit(_) | Node::Var(_) | Node::Call(_)) => leaf,
    };
    let lit = |n: &Node| matches!(n, Node::Lit(_));
    let constant = match &node {
        Node::Array(items) => items.iter().all(lit),
        Node::Object(fields) => fields.iter().all(|(_, v)| lit(v)),
        Node::Neg(inner) => lit(inner),
        _ => false,
    };
    let built = constant
        .then(|| eval(&node, &Val::Null, &mut Vec::new(), &mut Fuel::default()))
        .flatten();
    built.map_or(node, Node::Lit)
}
