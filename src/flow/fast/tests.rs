use super::*;
use crate::flow::expr::tests::jaq;
use crate::flow::value::{Bound, MAX_DEPTH, from_json};
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
        let fast = Fast::compile(src).unwrap_or_else(|| panic!("`{src}` should be in the subset"));
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

/// What jaq and the native evaluator give for `src` on `input`; the native
/// evaluator must answer.
fn both(src: &str, input: &serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    let v = from_json(input).unwrap();
    let fast = Fast::compile(src).unwrap_or_else(|| panic!("`{src}` not in the subset"));
    let native = fast
        .eval(&v, &mut Fuel::default())
        .unwrap_or_else(|| panic!("`{src}` was left to jaq"));
    let jaq = jaq(src, &v).unwrap_or_else(|e| panic!("`{src}`: jaq fails: {e}"));
    assert_eq!(format!("{native}"), format!("{jaq}"), "`{src}` on {input}");
    (to_json(&native), to_json(&jaq))
}

/// Found by the property test (`agree.rs`): jaq reads `.name` as one token,
/// so `.and` and `.or` are fields, and `.and .b` is the path `.and.b`. The
/// native parser read a dot and the operator: `. and .b`, true or false.
#[test]
fn keywords_after_a_dot_are_fields() {
    let input = json!({"and": {"b": 5}, "or": [1], "a": {"or": {"x": "y"}}, "b": false});
    for (src, want) in [
        (".and .b", json!(5)),
        (".and", json!({"b": 5})),
        (".or", json!([1])),
        (".a.or .x", json!("y")),
        (".a.or", json!({"x": "y"})),
        ("[.and .b, .b]", json!([5, false])),
        ("{v: .and .b}", json!({"v": 5})),
        ("\"\\(.and .b)\"", json!("5")),
        (".b and .and", json!(false)),
        (".b or .or", json!(true)),
    ] {
        let (native, jaq) = both(src, &input);
        assert_eq!(native, jaq, "`{src}`");
        assert_eq!(native, want, "`{src}`");
    }
}

/// Found by the property test: the native lexer read text jaq's rejects, a
/// dot and a name apart (`. a`, `.a . b`) as a path and digits with any dots
/// (`1.`, `1.2.3`) as a number. Now numbers are read as jaq reads them,
/// exponents included.
#[test]
fn only_what_jaq_reads_is_in_the_subset() {
    for src in [". a", ".a . b", "1.", "1.2.3", "1.e3", "1e", "..a", ".a. b"] {
        assert!(
            crate::flow::expr::Program::compile(src).is_err(),
            "jaq reads `{src}`"
        );
        assert!(Fast::compile(src).is_none(), "`{src}` is in the subset");
    }
    let input = json!({"a": {"b": 1.5}});
    for (src, want) in [
        ("1e3", json!(1000.0)),
        ("2.5E-1 + .a.b", json!(1.75)),
        ("1e+2 == 100", json!(true)),
        (". \"a\"", json!({"b": 1.5})),
        (". .a", json!({"b": 1.5})),
        (".a .b", json!(1.5)),
        (".a . [\"b\"]", json!(1.5)),
        (".a . \"b\"", json!(1.5)),
    ] {
        let (native, jaq) = both(src, &input);
        assert_eq!(native, jaq, "`{src}`");
        assert_eq!(native, want, "`{src}`");
    }
}
