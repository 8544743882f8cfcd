//! Randomized runs over what callers and flow authors control: request decoding
//! (query strings, JSON, XML, forms, headers) and the flow loader (trigger and
//! `_tenant.yaml` files, the expressions and templates in them). No input may
//! panic, and whatever the edge accepts must read back, stored, as it was.
//!
//! `cargo test` runs a few hundred cases of each. The long run is ignored by
//! default (README, "Development"):
//!
//! ```sh
//! FLOWGATE_CASES=500000 cargo test --release --test api randomized -- --ignored --nocapture
//! ```
//!
//! runs that many cases of each of its two tests (default 500,000: a million in all).

use std::path::Path;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use flowgate::codec::input::{self, Request};
use flowgate::domain::{MessageId, NewMessage, depth};
use flowgate::flow::{Method, Tenant, Trigger};

const PARAMS_TRIGGER: &str = r#"methods: [GET, POST]
auth: { none: true }
params:
  itemId:   { type: string, required: true }
  qty:      { type: integer, default: 1, min: 1, max: 1000 }
  amount:   { type: number, min: -5.5 }
  flag:     { type: boolean }
  currency: { type: string, default: EUR, enum: [EUR, SEK, USD] }
steps:
  - respond: { body: .params }
"#;

fn trigger() -> Trigger {
    let tenant = Tenant::empty(flowgate::domain::TenantName::parse("t").unwrap());
    flowgate::flow::loader::compile_trigger_source(
        &tenant,
        flowgate::domain::TriggerName::parse("T").unwrap(),
        Path::new("t/T.yaml"),
        PARAMS_TRIGGER,
    )
    .expect("the trigger compiles")
}

/// Pieces of query strings and forms, valid and not.
fn pair_text() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("itemId".to_owned()),
        Just("qty".to_owned()),
        Just("amount".to_owned()),
        Just("flag".to_owned()),
        Just("currency".to_owned()),
        "[a-z\\[\\]%0-9]{0,12}",
    ];
    let value = prop_oneof![
        "-?[0-9]{1,20}",
        "-?[0-9]{0,5}\\.[0-9]{0,5}(e[+-]?[0-9]{1,3})?",
        Just("true".to_owned()),
        Just("false".to_owned()),
        "(%[0-9A-Fa-f]{2}){0,6}",
        "%[0-9A-Za-z]{0,2}",
        "[ -~]{0,20}",
        "\\PC{0,10}",
    ];
    (name, prop::option::of(value)).prop_map(|(n, v)| match v {
        Some(v) => format!("{n}={v}"),
        None => n,
    })
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(pair_text(), 0..12).prop_map(|p| p.join("&")),
        "[ -~]{0,60}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(8, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z@#]{0,6}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn xml_text() -> impl Strategy<Value = String> {
    let name = "[a-z][a-z0-9:_.-]{0,5}";
    let text = prop_oneof![
        "[ -~&&[^<&]]{0,10}",
        Just("&amp;&lt;&#65;&#x41;".to_owned()),
        Just("<![CDATA[<x>]]>".to_owned()),
        Just("<!-- c -->".to_owned()),
        Just("&unknown;".to_owned()),
    ];
    let leaf = (name, text).prop_map(|(n, t)| format!("<{n}>{t}</{n}>"));
    leaf.prop_recursive(10, 80, 5, move |inner| {
        (
            "[a-z]{1,4}",
            prop::collection::vec(inner, 0..5),
            "( [a-z]{1,3}=\"[ -~&&[^\"<&]]{0,4}\"){0,2}",
        )
            .prop_map(|(n, kids, attrs)| format!("<{n}{attrs}>{}</{n}>", kids.concat()))
    })
}

/// Bodies: well-formed, nested past every limit, mutated, or just bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (0usize..400, 0usize..400, "[\\[{\"a\":1,]{0,3}").prop_map(|(open, close, mid)| {
            format!("{}{mid}{}", "[".repeat(open), "]".repeat(close)).into_bytes()
        }),
        (0usize..300)
            .prop_map(|n| format!("{}x{}", "<a>".repeat(n), "</a>".repeat(n)).into_bytes()),
        xml_text().prop_map(String::into_bytes),
        prop::collection::vec(pair_text(), 0..8).prop_map(|p| p.join("&").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
        (json_value(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, at, b)| {
            let mut bytes = v.to_string().into_bytes();
            let i = at.index(bytes.len() + 1);
            bytes.insert(i, b);
            bytes
        }),
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        Just("application/json".to_owned()),
        Just("application/vnd.x+json; charset=utf-8".to_owned()),
        Just("application/xml".to_owned()),
        Just("text/xml".to_owned()),
        Just("application/soap+xml".to_owned()),
        Just("application/x-www-form-urlencoded".to_owned()),
        Just("text/plain".to_owned()),
        Just("application/octet-stream".to_owned()),
        "[ -~]{0,30}",
    ])
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("[a-zA-Z0-9-]{1,16}", "\\PC{0,24}"), 0..8)
}

/// One request through the edge: no panic; if accepted, within the depth
/// limit and stored and read back as it was.
/// A query, a content type, a body, headers and `max_input_depth`.
type Case = (
    String,
    Option<String>,
    Vec<u8>,
    Vec<(String, String)>,
    usize,
);

fn decode_one(
    trigger: &Trigger,
    (q, ct, body, headers, max_depth): Case,
) -> Result<(), TestCaseError> {
    let id = MessageId::new();
    let decoded = input::document(
        trigger,
        Request {
            id,
            received_at: 1,
            method: Method::Post,
            query: &q,
            headers,
            content_type: ct.as_deref(),
            body: &body,
            auth: json!({"method": "none"}),
            max_depth,
        },
    );
    let Ok(doc) = decoded else {
        return Ok(());
    };
    prop_assert!(depth::depth(&doc.input["body"]) <= max_depth);
    let message = NewMessage {
        id,
        tenant: flowgate::domain::TenantName::parse("t").unwrap(),
        trigger: flowgate::domain::TriggerName::parse("T").unwrap(),
        lane: None,
        mode: flowgate::domain::Mode::Async,
        received_at: 1,
        idempotency_key: None,
        input: doc.input,
        body_json: doc.json_body.then(|| bytes::Bytes::from(body.clone())),
    };
    let read = depth::parse_stored(&message.input_text());
    prop_assert_eq!(read.as_ref(), Ok(&message.input));
    Ok(())
}

fn run_decoding(cases: u32) {
    let trigger = trigger();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let strategy = (query(), content_type(), body(), headers(), 1usize..200);
    runner
        .run(&strategy, |case| decode_one(&trigger, case))
        .unwrap();
    println!(
        "request decoding: {cases} cases in {:.1?}",
        started.elapsed()
    );
}

/// A jq expression, valid or nearly so.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(".".to_owned()),
        "\\.[a-z]{1,6}",
        "\\.\\[[0-9]{1,3}\\]",
        "-?[0-9]{1,4}",
        "\"[ -~&&[^\"\\\\]]{0,8}\"",
        Just("null".to_owned()),
        Just("$__loc__".to_owned()),
        Just("now".to_owned()),
        Just("env".to_owned()),
        Just("input".to_owned()),
        "[a-z_]{1,10}",
    ];
    leaf.prop_recursive(6, 40, 4, |inner| {
        prop_oneof![
            (
                inner.clone(),
                inner.clone(),
                prop::sample::select(vec![
                    "|", ",", "+", "-", "*", "/", "%", "==", "and", "//", "?//", "as $x |"
                ])
            )
                .prop_map(|(a, b, op)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("[{a}]")),
            (inner.clone(), inner.clone()).prop_map(|(k, v)| format!("{{({k}): {v}}}")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, t, e)| format!("if {c} then {t} else {e} end")),
            (
                inner.clone(),
                prop::sample::select(vec![
                    "length",
                    "keys",
                    "tostring",
                    "tojson",
                    "fromjson",
                    "ascii_downcase",
                    "@uri",
                    "@base64",
                    "not",
                    "first",
                    "add"
                ])
            )
                .prop_map(|(a, f)| format!("{a} | {f}")),
            inner.clone().prop_map(|a| format!("\"s \\({a})\"")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("reduce {a} as $v ({b}; . + $v)")),
            (0usize..300).prop_map(|n| format!("{}1{}", "(".repeat(n), ")".repeat(n))),
            (0usize..300).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
        ]
    })
}

/// YAML text of a trigger: keys known and unknown, values of every kind.
fn trigger_yaml() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        expression().prop_map(|e| format!("'{}'", e.replace('\'', "''"))),
        "[ -~&&[^'\\n]]{0,16}".prop_map(|s| format!("'{s}'")),
        "-?[0-9]{1,6}(ms|s|m|h|d)?",
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("~".to_owned()),
        Just("yes".to_owned()),
    ];
    let step = prop_oneof![
        scalar
            .clone()
            .prop_map(|e| format!("  - set: {{ x: {e} }}\n")),
        scalar
            .clone()
            .prop_map(|e| format!("  - respond: {{ status: 201, body: {e} }}\n")),
        scalar.clone().prop_map(|e| format!("  - log: {e}\n")),
        (scalar.clone(), scalar.clone()).prop_map(|(c, e)| format!(
            "  - if: {c}\n    then: [ {{ fail: {{ status: 409, message: {e} }} }} ]\n"
        )),
        expression().prop_map(|e| format!(
            "  - http: {{ url: \"https://h.example/{{{{ {} }}}}\", into: r }}\n",
            e.replace(['"', '\\'], "")
        )),
        (scalar.clone(), scalar.clone()).prop_map(|(l, e)| format!(
            "  - for_each: {l}\n    as: it\n    do: [ {{ set: {{ y: {e} }} }} ]\n"
        )),
        "[ -~]{0,30}".prop_map(|s| format!("  - {s}\n")),
    ];
    let head = prop_oneof![
        Just("auth: { none: true }\n".to_owned()),
        Just("auth: { api_keys: [k] }\n".to_owned()),
        Just("auth: { hmac: { preset: github, secret: s } }\n".to_owned()),
        Just(String::new()),
    ];
    let extra = prop_oneof![
        Just(String::new()),
        Just("methods: [GET, POST]\n".to_owned()),
        scalar
            .clone()
            .prop_map(|e| format!("delivery: {{ ordered: true, ordering_key: {e} }}\n")),
        Just("response: { mode: sync, timeout: 2s }\n".to_owned()),
        Just("params: { p: { type: integer, min: 1, default: 0 } }\n".to_owned()),
        "[a-z_]{1,8}: [ -~]{0,10}\n",
        "[ -~\\n]{0,40}",
    ];
    (head, extra, prop::collection::vec(step, 0..5))
        .prop_map(|(h, e, steps)| format!("{h}{e}steps:\n{}", steps.concat()))
}

fn tenant_yaml() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("api_keys:\n  k: \"$argon2id$v=19$m=19456,t=2,p=1$yDec7/LCqk4YkPJ/Ut1n1Q$22eAS/r9D0iiP9nwgdMYVs2awa/63PUplsyW8Z7Vrfk\"\n".to_owned()),
        "api_keys:\n  [a-z]{0,4}: \"[ -~&&[^\"]]{0,20}\"\n",
        "connections:\n  c: \\{ http: \\{ base_url: \"[ -~&&[^\"]]{0,20}\" \\} \\}\n",
        "subscriptions:\n  - \\{ name: [a-z]{0,5}, url: \"[ -~&&[^\"]]{0,20}\", events: \\[message.failed\\] \\}\n",
        "secret_headers: \\[[ -~&&[^\\]]]{0,10}\\]\n",
        "[ -~\\n]{0,60}",
    ]
}

fn run_loader(cases: u32) {
    let registry = flowgate::connect::Registry::default();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    runner
        .run(
            &(tenant_yaml(), trigger_yaml()),
            |(tenant_text, trigger_text)| {
                let (tenant, _) = flowgate::flow::loader::compile_tenant_source(
                    flowgate::domain::TenantName::parse("t").unwrap(),
                    Path::new("t/_tenant.yaml"),
                    &tenant_text,
                    &registry,
                );
                let _ = flowgate::flow::loader::compile_trigger_source(
                    &tenant,
                    flowgate::domain::TriggerName::parse("T").unwrap(),
                    Path::new("t/T.yaml"),
                    &trigger_text,
                );
                Ok(())
            },
        )
        .unwrap();
    println!("flow loader: {cases} cases in {:.1?}", started.elapsed());
}

fn long_run_cases() -> u32 {
    std::env::var("FLOWGATE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000)
}

#[test]
fn request_decoding_never_panics_and_reads_back_what_it_accepts() {
    run_decoding(300);
}

#[test]
fn the_flow_loader_never_panics() {
    run_loader(100);
}

#[test]
#[ignore = "the long randomized run: see the module's header"]
fn request_decoding_long_run() {
    run_decoding(long_run_cases());
}

#[test]
#[ignore = "the long randomized run: see the module's header"]
fn flow_loader_long_run() {
    run_loader(long_run_cases());
}
