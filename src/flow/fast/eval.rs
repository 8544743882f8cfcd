//! Evaluation of the subset with jaq's own value operations (indexing,
//! arithmetic, ordering, truthiness), under fuel. The values bound by
//! `as $name` are a stack (`env`): a binding pushes its value while its body
//! runs, and `$name` reads the position the parser gave it.

use jaq_core::ValT;
use jaq_json::Val;

use super::builtins::{Builtin, apply, call, push_string};
use super::fuel::Fuel;
use super::parse::{Node, Op, Part};

/// What a path of literal keys (`.a.b.c`) reaches, by reference.
enum Found<'a> {
    Val(&'a Val),
    Null,
}

/// Follows `.a.b.c` (from the input, a literal or a bound value) without
/// copying what it passes through; `None` for any other form, and where jq
/// would fail (indexing a string, say), to let `eval` decide.
fn lookup<'a>(node: &'a Node, input: &'a Val, env: &'a [Val]) -> Option<Found<'a>> {
    match node {
        Node::Identity => Some(Found::Val(input)),
        Node::Lit(v) => Some(Found::Val(v)),
        Node::Var(i) => env.get(*i).map(Found::Val),
        Node::Index(base, key) => {
            let Node::Lit(key @ Val::TStr(_)) = key.as_ref() else {
                return None;
            };
            match lookup(base, input, env)? {
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

pub(super) fn eval(node: &Node, input: &Val, env: &mut Vec<Val>, fuel: &mut Fuel) -> Option<Val> {
    fuel.burn(1)?;
    Some(match node {
        Node::Identity => input.clone(),
        Node::Lit(v) => v.clone(),
        Node::Var(i) => env.get(*i)?.clone(),
        Node::Index(..) if let Some(found) = lookup(node, input, env) => match found {
            Found::Val(v) => v.clone(),
            Found::Null => Val::Null,
        },
        Node::Index(base, index) => {
            let i = eval(index, input, env, fuel)?;
            // Integer indices may be negative or fractional in jq; leave those to jaq.
            let integer = matches!(i, Val::Num(_));
            if let (Val::TStr(_), Some(Found::Val(Val::Obj(o)))) = (&i, lookup(base, input, env)) {
                // A table: `{...}[.k]`, `$t[.k]`, `.vars.t[.k]`.
                return Some(o.get(&i).cloned().unwrap_or(Val::Null));
            }
            let b = eval(base, input, env, fuel)?;
            if integer && !matches!(b, Val::Null) {
                return None;
            }
            b.index(&i).ok()?
        }
        Node::Neg(inner) => {
            let v = eval(inner, input, env, fuel)?;
            if !matches!(v, Val::Num(_)) {
                return None;
            }
            (-v).ok()?
        }
        Node::Bin(l, op, r) => {
            let left = eval(l, input, env, fuel)?;
            match op {
                Op::Alt if left.as_bool() => left,
                Op::Alt => eval(r, input, env, fuel)?,
                Op::And if !left.as_bool() => Val::Bool(false),
                Op::And => Val::Bool(eval(r, input, env, fuel)?.as_bool()),
                Op::Or if left.as_bool() => Val::Bool(true),
                Op::Or => Val::Bool(eval(r, input, env, fuel)?.as_bool()),
                _ => {
                    let right = eval(r, input, env, fuel)?;
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
                let v = eval(v, input, env, fuel)?;
                fuel.nest(&v)?;
                map.insert(k.clone(), v);
            }
            Val::obj(map)
        }
        Node::Pipe(l, r) => {
            let mid = eval(l, input, env, fuel)?;
            eval(r, &mid, env, fuel)?
        }
        Node::Bind(value, body) => {
            let v = eval(value, input, env, fuel)?;
            let depth = env.len();
            env.push(v);
            let out = eval(body, input, env, fuel);
            env.truncate(depth);
            out?
        }
        Node::If(branches, otherwise) => {
            for (cond, then) in branches {
                if eval(cond, input, env, fuel)?.as_bool() {
                    return eval(then, input, env, fuel);
                }
            }
            eval(otherwise, input, env, fuel)?
        }
        Node::Call(f) => call(*f, input, fuel)?,
        // An error is jaq's to report, with its message.
        Node::Apply(Builtin::Error, _) => return None,
        Node::Apply(f, arg) => {
            let arg = eval(arg, input, env, fuel)?;
            apply(*f, input, &arg, fuel)?
        }
        Node::Format(parts) => {
            let mut out = Vec::new();
            for part in parts {
                match part {
                    Part::Text(t) => {
                        fuel.build(t.len() as u64)?;
                        out.extend_from_slice(t.as_bytes())
                    }
                    Part::Expr(e) => push_string(&mut out, &eval(e, input, env, fuel)?, fuel)?,
                }
            }
            Val::utf8_str(out)
        }
        Node::Array(items) => {
            fuel.build(16 * items.len() as u64)?;
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                let v = eval(i, input, env, fuel)?;
                fuel.nest(&v)?;
                out.push(v);
            }
            out.into_iter().collect()
        }
    })
}
