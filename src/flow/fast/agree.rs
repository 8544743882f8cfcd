//! The native evaluator means what jaq means: a property test that generates
//! programs from the subset's grammar and JSON inputs of every shape
//! (`generate.rs`), and runs each program on its input with both.
//!
//! The native evaluator answers a value or declines (`None`: an error, or a
//! form or value it leaves to jaq). Wherever it answers, jaq must answer that
//! same value as its only output, written out identically, and no error; a
//! decline is never a divergence. Every program the native parser accepts must
//! compile in jaq as well: `Expr::compile` asks jaq first, but a looser
//! grammar here could read the same text differently. And where the native
//! evaluator says which top-level fields a program reads (`Fast::root_keys`,
//! what `Trigger::reads` keeps of a flow's input), jaq must give the same
//! answer from those fields alone.
//!
//! `cargo test` runs [`CASES`] cases; the long run is ignored by default
//! (README, "Development"):
//!
//! ```sh
//! cargo test --release --lib -- --ignored agrees_with_jaq_long --nocapture
//! ```
//!
//! runs `FLOWGATE_CASES` cases (default [`LONG_CASES`]).
//!
//! Compiling a jq program in jaq takes milliseconds (jaq compiles its standard
//! library each time), so the cases are checked in batches: one jaq program
//! runs many generated programs, each on its own input and under `try`. A case
//! that diverges there is run again alone, where proptest shrinks it to the
//! smallest divergent case and reports that.
//!
//! Failures are not persisted to regression files: each divergence found is
//! kept as a unit test in `tests.rs`, named for what it fixed.

use std::collections::BTreeSet;
use std::time::Instant;

use jaq_json::Val;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use super::generate::{Ex, expression, json, source};
use super::{Fast, Fuel};
use crate::flow::expr::{MAX_TOKENS, Program};
use crate::flow::value::{Bound, from_json, to_json};

/// Cases in the default run: seconds in a debug build.
const CASES: u32 = 10_000;
/// Cases in the long run.
const LONG_CASES: u32 = 100_000;

/// What a run of cases saw.
#[derive(Debug, Default)]
struct Tally {
    cases: u32,
    /// Programs outside the subset (not counted as agreeing or not).
    declined: u32,
    /// Cases the native evaluator answered (the others it left to jaq).
    answered: u32,
}

/// A case in the subset, waiting for jaq.
struct Pending<T> {
    tree: T,
    src: String,
    /// The case's input, and the fields of it the program says it reads.
    inputs: Vec<Val>,
    native: Option<Val>,
}

fn json_of(v: &Val) -> Value {
    to_json(v, &mut Bound::generous()).unwrap_or(Value::Null)
}

/// Whether what jaq gave (`[true, outputs]`, or `[false, error]`) agrees
/// with what the native evaluator gave.
fn agrees(native: Option<&Val>, jaq: &Val) -> bool {
    let Some(native) = native else {
        return true;
    };
    let Val::Arr(pair) = jaq else {
        return false;
    };
    match pair.as_slice() {
        [Val::Bool(true), Val::Arr(outputs)] => match outputs.as_slice() {
            [one] => one.to_string() == native.to_string() && json_of(one) == json_of(native),
            _ => false,
        },
        _ => false,
    }
}

/// `input` with only the top-level fields `fast` says it reads (what
/// `Trigger::reads` keeps of a flow's input), or `None` when it does not say
/// or `input` is not an object.
fn restricted(fast: &Fast, input: &Val) -> Option<Val> {
    let mut keys = BTreeSet::new();
    let Val::Obj(fields) = input else {
        return None;
    };
    if !fast.root_keys(&mut keys) {
        return None;
    }
    let read = |k: &Val| match k {
        Val::TStr(k) => std::str::from_utf8(k).is_ok_and(|k| keys.contains(k)),
        _ => false,
    };
    let kept = fields.iter().filter(|(k, _)| read(k));
    Some(Val::obj(
        kept.map(|(k, v)| (k.clone(), v.clone())).collect(),
    ))
}

/// Runs `src` on `input` with both evaluators, and with jaq again on the
/// fields of `input` the native evaluator says it reads: the check of one case
/// alone, which proptest shrinks.
fn one(src: &str, input: &Value) -> Result<(), TestCaseError> {
    let Some(fast) = Fast::compile(src) else {
        return Ok(());
    };
    let program = Program::compile(src).map_err(|e| {
        TestCaseError::fail(format!(
            "`{src}` is in the native subset, but jaq rejects it: {e:?}"
        ))
    })?;
    let v = from_json(input).map_err(|e| TestCaseError::fail(format!("input: {e}")))?;
    let Some(native) = fast.eval(&v, &mut Fuel::default()) else {
        return Ok(());
    };
    let fields = restricted(&fast, &v).map(|f| (f, "on only the fields it says it reads, "));
    for (v, only) in std::iter::once((v.clone(), "")).chain(fields) {
        let jaq = program.run(v.clone(), 2);
        let answer = format!("`{src}` {only}on {v}: native gave {native}, jaq gave {jaq:?}");
        let Ok((outputs, more)) = jaq else {
            return Err(TestCaseError::fail(answer));
        };
        prop_assert!(outputs.len() == 1 && !more, "{}", answer);
        prop_assert_eq!(native.to_string(), outputs[0].to_string(), "{}", answer);
        prop_assert_eq!(json_of(&native), json_of(&outputs[0]), "{}", answer);
    }
    Ok(())
}

/// Checks a batch of cases with two jaq programs: one that only compiles
/// every program of the batch, one that runs those the native evaluator
/// answered. (jaq is not run on the others: some, such as `"x" * 1e18`,
/// would exhaust this process's memory; the sandbox bounds them in service.)
/// A case that does not agree is run again alone, shrunk and reported.
fn check<T>(runner: &mut TestRunner, batch: Vec<Pending<T>>)
where
    T: ValueTree<Value = (Ex, u64, Value)>,
{
    if batch.is_empty() {
        return;
    }
    let all = batch.iter().map(|p| format!("[{}]", p.src));
    if let Err(e) = Program::compile(&all.collect::<Vec<_>>().join(",\n")) {
        // Some program is rejected: find which, alone.
        for p in batch {
            alone(runner, p);
        }
        panic!("jaq rejects a batch, but each of its programs alone: {e:?}");
    }
    let answered: Vec<_> = batch.into_iter().filter(|p| p.native.is_some()).collect();
    // One entry for each input of each case answered natively.
    let entries: Vec<(usize, &Val)> = answered
        .iter()
        .enumerate()
        .flat_map(|(case, p)| p.inputs.iter().map(move |v| (case, v)))
        .collect();
    if entries.is_empty() {
        return;
    }
    let src = entries
        .iter()
        .enumerate()
        .map(|(i, (case, _))| {
            let src = &answered[*case].src;
            format!("(.[{i}] | try ([{src}] | [true, .]) catch [false, .])")
        })
        .collect::<Vec<_>>()
        .join(",\n");
    let program = Program::compile(&src).expect("the batch's programs compile");
    let inputs: Val = entries.iter().map(|(_, v)| (*v).clone()).collect();
    let (outputs, _) = program
        .run(inputs, entries.len())
        .expect("each program's errors are caught");
    assert_eq!(outputs.len(), entries.len(), "one output for each case");
    let disagree: BTreeSet<usize> = entries
        .iter()
        .zip(&outputs)
        .filter(|((case, _), out)| !agrees(answered[*case].native.as_ref(), out))
        .map(|((case, _), _)| *case)
        .collect();
    for (case, p) in answered.into_iter().enumerate() {
        if disagree.contains(&case) {
            let src = p.src.clone();
            alone(runner, p);
            panic!("`{src}` disagrees in a batch but agrees alone: the batch changed it");
        }
    }
}

/// Runs `p` alone; when it diverges, shrinks it and panics with the smallest
/// divergent case.
fn alone<T>(runner: &mut TestRunner, p: Pending<T>)
where
    T: ValueTree<Value = (Ex, u64, Value)>,
{
    if let Err(e) = runner.run_one(p.tree, |(e, seed, input)| one(&source(&e, seed), &input)) {
        panic!("the native evaluator and jaq disagree: {e}");
    }
}

fn run(cases: u32) {
    let mut runner = TestRunner::new(Config {
        cases,
        // Each divergence found is kept as a unit test instead (`tests.rs`).
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (expression(), any::<u64>(), json());
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut batch = Vec::new();
    // jaq's loader refuses more than MAX_TOKENS tokens (a non-blank byte is
    // at most one); the batch adds some 24 to each program, run on at most
    // two inputs.
    let mut batch_tokens = 0;
    for _ in 0..cases {
        let tree = strategy.new_tree(&mut runner).expect("a case");
        let (e, seed, input) = tree.current();
        let src = source(&e, seed);
        tally.cases += 1;
        let Some(fast) = Fast::compile(&src) else {
            tally.declined += 1;
            continue;
        };
        let input = from_json(&input).expect("inputs are within the depth limit");
        let native = fast.eval(&input, &mut Fuel::default());
        tally.answered += u32::from(native.is_some());
        let tokens = src.bytes().filter(|b| !b.is_ascii_whitespace()).count() + 24;
        if batch_tokens + 2 * tokens > MAX_TOKENS {
            check(&mut runner, std::mem::take(&mut batch));
            batch_tokens = 0;
        }
        batch_tokens += 2 * tokens;
        // Where the program says which fields it reads, jaq must answer the
        // same from those fields alone.
        let fields = native.as_ref().and_then(|_| restricted(&fast, &input));
        batch.push(Pending {
            tree,
            src,
            inputs: std::iter::once(input).chain(fields).collect(),
            native,
        });
    }
    check(&mut runner, batch);
    println!(
        "native evaluator vs jaq: {} cases in {:.1?}: {} outside the subset, {} answered natively",
        tally.cases,
        started.elapsed(),
        tally.declined,
        tally.answered,
    );
    // The generator aims at the subset, and the subset mostly answers.
    assert!(
        tally.declined * 20 < tally.cases,
        "{tally:?}: too many programs outside the subset"
    );
    assert!(
        tally.answered * 3 > tally.cases,
        "{tally:?}: too few answered natively"
    );
}

#[test]
fn agrees_with_jaq() {
    run(CASES);
}

#[test]
#[ignore = "long: cargo test --release --lib -- --ignored agrees_with_jaq_long"]
fn agrees_with_jaq_long() {
    let cases = std::env::var("FLOWGATE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(LONG_CASES);
    run(cases);
}
