//! The forms added for flows written as one expression: bindings (`as
//! $name`), `$name`, `if`, `error`, negation, paths after any atom, literal
//! tables built once, and the builtins of one argument.

use std::path::Path;

use serde_json::json;

use super::parse::Node;
use super::*;
use crate::domain::{TenantName, TriggerName};
use crate::flow::Tenant;
use crate::flow::expr::Program;
use crate::flow::expr::tests::jaq;
use crate::flow::loader::compile_trigger_source;
use crate::flow::model::StepKind;
use crate::flow::value::{Bound, from_json, to_json};

/// The respond body of the benchmark's ItemPriceExpr flow.
const ITEM_PRICE_EXPR: &str = r#"{"A-100": 12.5, "A-200": 7.25, "B-300": 99.0}[.params.itemId] as $p
| if $p == null then error("unknown item") else {item: .params.itemId, price: $p, currency: .params.currency} end
"#;

fn json_of(v: &Val) -> serde_json::Value {
    to_json(v, &mut Bound::generous()).unwrap()
}

fn keys_of(src: &str) -> Option<Vec<String>> {
    let fast = Fast::compile(src).unwrap_or_else(|| panic!("`{src}` not in the subset"));
    let mut keys = BTreeSet::new();
    fast.root_keys(&mut keys)
        .then(|| keys.into_iter().collect())
}

/// Each program reads the top-level fields given (`None`: the whole input).
fn assert_reads(cases: &[(&str, Option<&[&str]>)]) {
    for (src, want) in cases {
        let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(keys_of(src), want, "`{src}`");
    }
}

/// The native answer for `src` on `input`, held to jaq's wherever it answers:
/// the same value, written the same.
fn native(src: &str, input: &serde_json::Value) -> Option<serde_json::Value> {
    let v = from_json(input).unwrap();
    let fast = Fast::compile(src).unwrap_or_else(|| panic!("`{src}` not in the subset"));
    let program = Program::compile(src).unwrap_or_else(|e| panic!("jaq rejects `{src}`: {e:?}"));
    let got = fast.eval(&v, &mut Fuel::default())?;
    let (outputs, more) = program
        .run(v, 2)
        .unwrap_or_else(|e| panic!("`{src}` on {input}: native gave {got}, jaq failed: {e}"));
    assert!(
        outputs.len() == 1 && !more,
        "`{src}` on {input}: {outputs:?}"
    );
    assert_eq!(
        format!("{got}"),
        format!("{}", outputs[0]),
        "`{src}` on {input}"
    );
    assert_eq!(json_of(&got), json_of(&outputs[0]), "`{src}` on {input}");
    Some(json_of(&got))
}

#[test]
fn the_item_price_expression_runs_natively() {
    let fast = Fast::compile(ITEM_PRICE_EXPR).expect("ItemPriceExpr is in the subset");
    let mut keys = BTreeSet::new();
    assert!(fast.root_keys(&mut keys));
    assert_eq!(keys.into_iter().collect::<Vec<_>>(), ["params"]);
    let known = json!({"params": {"itemId": "A-200", "currency": "SEK"}});
    assert_eq!(
        native(ITEM_PRICE_EXPR, &known),
        Some(json!({"item": "A-200", "price": 7.25, "currency": "SEK"}))
    );
    // An unknown item is an error: jaq's to report, with its message.
    let unknown = from_json(&json!({"params": {"itemId": "Z", "currency": "EUR"}})).unwrap();
    assert!(fast.eval(&unknown, &mut Fuel::default()).is_none());
    let e = jaq(ITEM_PRICE_EXPR, &unknown).unwrap_err();
    assert!(e.0.contains("unknown item"), "{e}");
}

#[test]
fn a_trigger_written_as_one_expression_responds_natively() {
    let yaml = format!(
        "auth: {{ none: true }}\nmethods: [GET]\nparams:\n  itemId: {{ type: string, required: true }}\n  currency: {{ type: string, default: EUR }}\nresponse: {{ mode: sync, timeout: 5s }}\nsteps:\n  - respond:\n      body: |\n{}",
        ITEM_PRICE_EXPR
            .lines()
            .map(|l| format!("        {l}\n"))
            .collect::<String>()
    );
    let t = compile_trigger_source(
        &Tenant::empty(TenantName::parse("t").unwrap()),
        TriggerName::parse("ItemPriceExpr").unwrap(),
        Path::new("ItemPriceExpr.yaml"),
        &yaml,
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let StepKind::Respond {
        body: Some(body), ..
    } = &t.steps[0].kind
    else {
        panic!("a respond step with a body: {:?}", t.steps[0].kind);
    };
    assert!(body.is_native(), "{body:?} runs on jaq");
    assert_eq!(t.reads.as_deref(), Some(&["params".to_owned()][..]));
}

#[test]
fn literal_tables_are_built_when_compiled() {
    for src in [
        r#"{"a": 1, "b": [2, {"c": -3}]}[.k]"#,
        "[1, \"x\", null, -2.5][.i]",
    ] {
        let fast = Fast::compile(src).unwrap();
        let Node::Index(base, _) = fast.0.as_ref() else {
            panic!("`{src}`: {:?}", fast.0);
        };
        assert!(matches!(base.as_ref(), Node::Lit(_)), "`{src}`: {base:?}");
    }
    assert_eq!(
        native(r#"{"a": 1, "b": [2, {"c": -3}]}[.k]"#, &json!({"k": "b"})),
        Some(json!([2, {"c": -3}]))
    );
    assert_eq!(
        native(r#"{"a": 1}[.k]"#, &json!({"k": "z"})),
        Some(json!(null))
    );
    // A table indexed by what is not a string is jaq's to answer.
    assert_eq!(native(r#"{"a": 1}[.k]"#, &json!({"k": 0})), None);
    // What is not all literals is built on each run.
    let fast = Fast::compile("{a: .x}[.k]").unwrap();
    let Node::Index(base, _) = fast.0.as_ref() else {
        panic!()
    };
    assert!(matches!(base.as_ref(), Node::Object(_)));
}

#[test]
fn bindings_scope_and_shadow_as_in_jaq() {
    let input = json!({"a": {"b": 2}, "c": 3, "s": "x"});
    for (src, want) in [
        (".a as $x | $x", json!({"b": 2})),
        (".a as $x | $x.b", json!(2)),
        (".a as $x | $x[\"b\"] + .c", json!(5)),
        (".a as $x | .c as $y | [$x.b, $y]", json!([2, 3])),
        ("1 as $x | 2 as $x | $x", json!(2)),
        ("1 as $x | (2 as $x | $x) + $x", json!(3)),
        (".a as $x | .a | $x.b + .b", json!(4)),
        (".c | . as $n | $n * $n", json!(9)),
        // `as` binds all that is left of it up to a `|`.
        ("1 + 1 as $x | $x * 10", json!(20)),
        (".none // .c as $x | $x", json!(3)),
        (".a | .b as $x | $x", json!(2)),
        ("\"\\(.c as $x | $x + 1) and \\(.s)\"", json!("4 and x")),
        (".c as $x | \"\\($x)\"", json!("3")),
        (
            ".c as $x | {v: $x, w: ($x | . * 2)}",
            json!({"v": 3, "w": 6}),
        ),
        (". as $as | $as.c", json!(3)),
    ] {
        assert_eq!(native(src, &input), Some(want), "`{src}`");
    }
    let cases: &[(&str, Option<&[&str]>)] = &[
        (".a as $x | $x", Some(&["a"])),
        (".a as $x | .c", Some(&["a", "c"])),
        (".a as $x | $x | .z", Some(&["a"])),
        (".a as $x | . | $x", None),
        ("1 as $x | $x", Some(&[])),
        (
            ".a as $x | if $x then error(\"no \\(.c)\") else 1 end",
            Some(&["a", "c"]),
        ),
        ("error", None),
        ("select(.a)", None),
    ];
    assert_reads(cases);
}

#[test]
fn conditionals_as_in_jaq() {
    for (src, input, want) in [
        ("if .a then 1 else 2 end", json!({"a": true}), json!(1)),
        ("if .a then 1 else 2 end", json!({"a": null}), json!(2)),
        (
            "if .a then 1 elif .b then 2 else 3 end",
            json!({"b": 0}),
            json!(2),
        ),
        (
            "if .a then 1 elif .b then 2 else 3 end",
            json!({}),
            json!(3),
        ),
        // Without `else`, the input as it is.
        (
            "if .a then 1 end",
            json!({"a": false, "z": [1]}),
            json!({"a": false, "z": [1]}),
        ),
        ("if .a then 1 elif .b then 2 end", json!({"a": 0}), json!(1)),
        ("if .a then 1 end.z", json!({"z": 5}), json!(5)),
        (
            "[if .a == 1 then \"one\" else .a end, 0]",
            json!({"a": 1}),
            json!(["one", 0]),
        ),
    ] {
        assert_eq!(native(src, &input), Some(want), "`{src}` on {input}");
    }
    let cases: &[(&str, Option<&[&str]>)] = &[
        ("if .a then .b else .c end", Some(&["a", "b", "c"])),
        (
            "if .a then .b elif .d then 1 else .c end",
            Some(&["a", "b", "c", "d"]),
        ),
        ("if .a then .b end", None),
    ];
    assert_reads(cases);
}

#[test]
fn errors_and_empty_results_are_left_to_jaq() {
    let input = json!({"a": 1});
    for src in [
        "error",
        "error(\"boom\")",
        "error(.a)",
        "if .a then error(\"x\") else 1 end",
        ".a as $x | error($x)",
        "select(.a == 2)",
        "error(\"x\") // 1",
    ] {
        assert_eq!(native(src, &input), None, "`{src}`");
    }
    for (src, want) in [
        ("if .a then 1 else error(\"x\") end", json!(1)),
        ("false and error", json!(false)),
        ("select(.a == 1)", json!({"a": 1})),
        ("select(.a == 1) | .a", json!(1)),
    ] {
        assert_eq!(native(src, &input), Some(want), "`{src}`");
    }
}

#[test]
fn builtins_as_in_jaq() {
    let input =
        json!({"o": {"b": 1, "a": null}, "arr": [3, 4], "s": "item-42", "n": "12.50", "i": -1});
    for (src, want) in [
        (".o | keys", json!(["a", "b"])),
        (".o | keys_unsorted", json!(["b", "a"])),
        (".arr | keys", json!([0, 1])),
        (".o | has(\"a\")", json!(true)),
        (".o | has(\"z\")", json!(false)),
        (".arr | has(1)", json!(true)),
        (".arr | has(2)", json!(false)),
        // jaq counts a negative index from the end (jq would say false).
        (".i as $i | .arr | has($i)", json!(true)),
        (".s | startswith(\"item-\")", json!(true)),
        (".s | endswith(\"43\")", json!(false)),
        (".s | ltrimstr(\"item-\")", json!("42")),
        (".s | rtrimstr(\"-42\")", json!("item")),
        (".s | ltrimstr(\"x\")", json!("item-42")),
        (".s | ltrimstr(\"item-\") | tonumber", json!(42)),
        (".n | tonumber", json!(12.5)),
        (".arr | tojson", json!("[3,4]")),
        (".s | tojson", json!("\"item-42\"")),
        (".s | utf8bytelength", json!(7)),
        ("-.o.b", json!(-1)),
        ("[-1, - .i]", json!([-1, 1])),
    ] {
        assert_eq!(native(src, &input), Some(want), "`{src}`");
    }
    for src in [
        ".s | tonumber",
        ".o | tonumber",
        ".s | has(\"a\")",
        "-.s",
        ".i | keys",
    ] {
        assert_eq!(native(src, &input), None, "`{src}`");
    }
}

#[test]
fn what_jaq_reads_otherwise_is_left_to_it() {
    for src in [
        "$x",
        ".a as $x | $y",
        "(.a as $x | $x) | $x",
        "\"\\($x)\"",
        ".a as [$x] | $x",
        ".a as {$x} | $x",
        "$__loc__",
        "1 as $__loc__ | $__loc__",
        "1 as $ENV | $ENV",
        "if . then 1, 2 end",
        "if . then 1",
        "if . then 1 else 2",
        "has(1; 2)",
        "keys(1)",
        "select",
        "{$x}",
        ".a as $x | $x, 1",
        "[.a as $x | $x]",
    ] {
        assert!(Fast::compile(src).is_none(), "`{src}` is in the subset");
    }
}

#[test]
fn deep_bindings_are_left_to_jaq() {
    let deep = format!("{}1", ". as $x | ".repeat(MAX_NODE_DEPTH + 1));
    assert!(Fast::compile(&deep).is_none());
    let short = format!("{}$x", ". as $x | ".repeat(MAX_NODE_DEPTH / 2));
    assert!(Fast::compile(&short).is_some());
    // The deepest sources `Expr` loads are left to jaq before the parser's
    // recursion runs out of stack.
    for deepest in [
        format!("{}1{}", "if . then ".repeat(600), " else 2 end".repeat(600)),
        format!("{}1", "-".repeat(crate::flow::expr::MAX_TOKENS - 1)),
        format!(
            "{}.",
            ". as $x | ".repeat(crate::flow::expr::MAX_TOKENS / 5)
        ),
        format!("{}1{}", "(".repeat(256), ")".repeat(256)),
    ] {
        assert!(Fast::compile(&deepest).is_none(), "{}", &deepest[..20]);
    }
    // A bound value shared many times is weighed before it is walked.
    let mut src = String::from(".d as $x | ");
    for _ in 0..50 {
        src.push_str("[$x, $x] as $x | ");
    }
    src.push_str("$x | tostring");
    let fast = Fast::compile(&src).unwrap();
    let input = from_json(&json!({"d": 1})).unwrap();
    assert!(fast.eval(&input, &mut Fuel::default()).is_none());
}
