//! The jq worker pool with real worker processes (the flowgate binary): values
//! cross exactly, runaway evaluations end at their deadline or memory budget,
//! crashes are reported, a dropped evaluation's worker is killed, and one
//! tenant's evaluations leave workers for the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate::engine::{EvalInput, Failure, Sandbox, SandboxOptions};
use flowgate::flow::value::{Bound, from_json, to_json};
use jaq_json::Val;
use serde_json::{Value, json};

pub fn sandbox(max_workers: usize, tenant_max: usize) -> Sandbox {
    Sandbox::new(SandboxOptions {
        binary: env!("CARGO_BIN_EXE_flowgate").into(),
        max_workers,
        tenant_max,
    })
}

async fn eval(
    s: &Sandbox,
    tenant: &str,
    src: &str,
    input: Value,
    memory: u64,
    within: Duration,
) -> Result<Vec<Value>, Failure> {
    let source: Arc<str> = src.into();
    let (values, _) = s
        .eval(
            tenant,
            &source,
            EvalInput::Whole(from_json(&input).unwrap()),
            10,
            memory,
            Instant::now() + within,
        )
        .await?;
    Ok(values
        .iter()
        .map(|(v, _)| to_json(v, &mut Bound::generous()).unwrap())
        .collect())
}

const MIB: u64 = 1 << 20;

/// The state letter of a /proc stat line (`pid (comm) state ppid ...`) and the ppid.
fn stat_fields(stat: &str) -> Option<(char, u32)> {
    let rest = stat.rsplit_once(") ")?.1;
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// A link to the flowgate binary in `dir`: workers started through it are told
/// apart from those of other tests in this process by their command line.
pub fn own_binary(dir: &std::path::Path) -> std::path::PathBuf {
    let link = dir.join("flowgate-worker");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_flowgate"), &link).unwrap();
    link
}

/// The highest nice value among the threads of process `pid` (a worker whose
/// evaluation ran long has its evaluation thread at 19).
pub fn max_nice(pid: u32) -> i64 {
    let mut nice = i64::MIN;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // After "pid (comm) ": state is field 3; nice is field 19.
        if let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r)
            && let Some(n) = rest.split(' ').nth(16).and_then(|n| n.parse().ok())
        {
            nice = nice.max(n);
        }
    }
    nice
}

/// The jq workers started by process `parent` through `binary` (any, when
/// `None`): (pid, `R` when one of its threads is running, else the state of its
/// main thread).
pub fn workers_of(parent: u32, binary: Option<&std::path::Path>) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.contains("__jq-worker") {
            continue;
        }
        if let Some(b) = binary
            && cmdline.split('\0').next() != Some(&*b.to_string_lossy())
        {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((mut state, ppid)) = stat_fields(&stat) else {
            continue;
        };
        if ppid != parent {
            continue;
        }
        // The evaluation runs on a thread of its own.
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            if stat_fields(&stat).is_some_and(|(s, _)| s == 'R') {
                state = 'R';
            }
        }
        out.push((pid, state));
    }
    out
}

#[tokio::test]
async fn values_cross_exactly_and_errors_are_errors() {
    let s = sandbox(2, 2);
    let input = json!({"a": 1, "s": "é", "big": 12345678901234567890u64, "f": 2.5});
    let got = eval(
        &s,
        "t",
        "{a: (.a + 1), s, big, f, r: [range(3)]}",
        input,
        64 * MIB,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        vec![json!({"a": 2, "s": "é", "big": 12345678901234567890u64, "f": 2.5, "r": [0, 1, 2]})]
    );
    // Generators: up to the number asked for, and whether there were more.
    let source: Arc<str> = "range(100)".into();
    let (values, more) = s
        .eval(
            "t",
            &source,
            EvalInput::Whole(Val::Null),
            10,
            MIB,
            Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!((values.len(), more), (10, true));
    match eval(
        &s,
        "t",
        "error(\"boom\")",
        json!(null),
        MIB,
        Duration::from_secs(10),
    )
    .await
    {
        Err(Failure::Eval(m)) => assert!(m.contains("boom"), "{m}"),
        other => panic!("{other:?}"),
    }
    match eval(
        &s,
        "t",
        "halt_error",
        json!("x"),
        MIB,
        Duration::from_secs(10),
    )
    .await
    {
        Err(Failure::Eval(_)) => {}
        other => panic!("{other:?}"),
    }
    // The worker that reported those errors goes on serving evaluations.
    for i in 0..50 {
        let got = eval(&s, "t", ". * 2", json!(i), MIB, Duration::from_secs(10)).await;
        assert_eq!(got.unwrap(), vec![json!(i * 2)]);
    }
}

/// An execution's input goes to a worker once: later evaluations send only the
/// variables (a base sent again under the same number would be ignored).
#[tokio::test]
async fn a_worker_keeps_an_executions_input() {
    let s = sandbox(1, 1);
    let source: Arc<str> = "[.b, .vars.v]".into();
    let run = |token: u64, b: i64, v: i64| {
        let (s, source) = (s.clone(), source.clone());
        async move {
            let input = EvalInput::Context {
                token,
                base: from_json(&json!({"b": b})).unwrap(),
                vars: from_json(&json!({"v": v})).unwrap(),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let (out, _) = s.eval("t", &source, input, 1, MIB, deadline).await.unwrap();
            to_json(&out[0].0, &mut Bound::generous()).unwrap()
        }
    };
    let (first, second) = (s.token(), s.token());
    assert_eq!(run(first, 1, 1).await, json!([1, 1]));
    assert_eq!(run(first, 99, 2).await, json!([1, 2]), "the base was kept");
    assert_eq!(run(second, 3, 3).await, json!([3, 3]));
    // Past four executions the oldest base is dropped, and sent again when needed.
    for _ in 0..4 {
        let t = s.token();
        assert_eq!(run(t, 5, 5).await, json!([5, 5]));
    }
    assert_eq!(run(first, 7, 7).await, json!([7, 7]));
}

#[tokio::test]
async fn a_loop_ends_at_its_deadline_and_the_next_evaluation_runs() {
    let s = sandbox(1, 1);
    let started = Instant::now();
    let within = Duration::from_millis(400);
    let r = eval(&s, "t", "last(range(1e15))", json!(null), 64 * MIB, within).await;
    let took = started.elapsed();
    assert_eq!(r, Err(Failure::Time));
    assert!(took >= within, "{took:?}");
    assert!(
        took < within + Duration::from_millis(100),
        "stopped {took:?} after its start"
    );
    // The only worker was killed and started again.
    let r = eval(&s, "t", "1 + 1", json!(null), MIB, Duration::from_secs(10)).await;
    assert_eq!(r.unwrap(), vec![json!(2)]);
    let r = eval(
        &s,
        "t",
        "[repeat(1)] | length",
        json!(null),
        64 * MIB,
        within,
    )
    .await;
    assert!(matches!(r, Err(Failure::Time | Failure::Memory)), "{r:?}");
}

#[tokio::test]
async fn recursion_memory_and_huge_values_end_the_worker_not_flowgate() {
    let s = sandbox(2, 2);
    let long = Duration::from_secs(20);
    match eval(&s, "t", "def f: 1 + f; f", json!(null), 64 * MIB, long).await {
        Err(Failure::Crashed(m)) => assert!(m.contains("overflowed the stack"), "{m}"),
        other => panic!("{other:?}"),
    }
    let r = eval(&s, "t", "[range(1e9)] | length", json!(null), 8 * MIB, long).await;
    assert_eq!(r, Err(Failure::Memory));
    // 2^40 values in a few bytes of memory: writing them out is the memory budget.
    let dag = format!("[range(1)] {}| tostring | length", "| [., .] ".repeat(40));
    assert_eq!(
        eval(&s, "t", &dag, json!(null), 8 * MIB, long).await,
        Err(Failure::Memory)
    );
    let r = eval(
        &s,
        "t",
        "[limit(100000000; repeat(\"x\"))]",
        json!(null),
        8 * MIB,
        long,
    )
    .await;
    assert_eq!(r, Err(Failure::Memory));
    // Text nested 10,000 deep: an error of the expression, whatever jaq does with it.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let r = eval(&s, "t", ".s | fromjson", json!({"s": deep}), 64 * MIB, long).await;
    assert!(
        matches!(
            r,
            Err(Failure::TooDeep | Failure::Crashed(_) | Failure::Eval(_))
        ),
        "{r:?}"
    );
    // An input larger than the budget is not even sent.
    let big = "x".repeat(2 * MIB as usize);
    let r = eval(&s, "t", ".s | length", json!({"s": big}), MIB, long).await;
    assert_eq!(r, Err(Failure::Memory));
    // And still: a worker answers.
    let r = eval(&s, "t", "[.[] | . * 10]", json!([1, 2]), MIB, long).await;
    assert_eq!(r.unwrap(), vec![json!([10, 20])]);
}

#[tokio::test]
async fn a_dropped_evaluation_kills_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let binary = own_binary(dir.path());
    let s = Sandbox::new(SandboxOptions {
        binary: binary.clone(),
        max_workers: 1,
        tenant_max: 1,
    });
    let me = std::process::id();
    let spinning = eval(
        &s,
        "t",
        "last(range(1e15))",
        json!(null),
        64 * MIB,
        Duration::from_secs(60),
    );
    let watch = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        workers_of(me, Some(&binary))
    };
    let (r, seen) = tokio::join!(
        tokio::time::timeout(Duration::from_millis(700), spinning),
        watch
    );
    assert!(r.is_err(), "the loop cannot have ended");
    assert!(
        seen.iter().any(|(_, s)| *s == 'R'),
        "the worker spun: {seen:?}"
    );
    // Killed at once; the slot starts a fresh (idle) worker.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let workers = workers_of(me, Some(&binary));
        if workers.iter().all(|(_, state)| *state != 'R') {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a worker still runs: {workers:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = eval(&s, "t", "2 + 2", json!(null), MIB, Duration::from_secs(10)).await;
    assert_eq!(r.unwrap(), vec![json!(4)]);
}

#[tokio::test]
async fn a_tenant_at_its_share_leaves_workers_to_the_others() {
    let s = sandbox(4, 1);
    let spin = {
        let s = s.clone();
        tokio::spawn(async move {
            eval(
                &s,
                "a",
                "last(range(1e15))",
                json!(null),
                64 * MIB,
                Duration::from_secs(3),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Tenant b is answered at once; tenant a's next evaluation waits for its share
    // and, its deadline passing first, ends there.
    let started = Instant::now();
    let b = eval(
        &s,
        "b",
        ".n + 1",
        json!({"n": 1}),
        MIB,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(b.unwrap(), vec![json!(2)]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let a = eval(&s, "a", "1", json!(null), MIB, Duration::from_millis(300)).await;
    assert_eq!(a, Err(Failure::Time));
    assert_eq!(spin.await.unwrap(), Err(Failure::Time));
}

#[tokio::test]
async fn a_program_that_is_not_a_worker_is_reported() {
    let s = Sandbox::new(SandboxOptions {
        binary: "/bin/true".into(),
        max_workers: 1,
        tenant_max: 1,
    });
    match eval(&s, "t", "1", json!(null), MIB, Duration::from_secs(10)).await {
        Err(Failure::Unavailable(m)) => assert!(m.contains("not a flowgate jq worker"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A Stop from outside (a lost lease, a shutdown) ends an execution whose step
/// is in a jq worker, and kills that worker at once.
#[tokio::test]
async fn stopping_an_execution_kills_the_worker_it_waits_on() {
    use flowgate::domain::{TenantName, TriggerName};
    use flowgate::engine::{ExecError, Executor, Limits, Stop, StopReason};
    let dir = tempfile::tempdir().unwrap();
    let binary = own_binary(dir.path());
    let executor = Executor::new(
        Sandbox::new(SandboxOptions {
            binary: binary.clone(),
            max_workers: 1,
            tenant_max: 1,
        }),
        Limits::default(),
    );
    let tenant = flowgate::flow::Tenant::empty(TenantName::parse("t").unwrap());
    let trigger = flowgate::flow::loader::compile_trigger_source(
        &tenant,
        TriggerName::parse("Spin").unwrap(),
        std::path::Path::new("Spin.yaml"),
        "auth: { none: true }\nsteps:\n  - name: spin\n    set: { x: 'last(range(1e15))' }\n",
    )
    .unwrap();
    let stop = Stop::new();
    let stopper = stop.clone();
    let me = std::process::id();
    let input = json!({});
    let watch = async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = workers_of(me, Some(&binary));
        stopper.stop(StopReason::LeaseLost);
        (before, binary)
    };
    let (ex, (before, binary)) = tokio::join!(
        executor.execute(&trigger, &input, None, None, &stop, None),
        watch
    );
    match ex.result {
        Err(ExecError::Stopped { step, reason }) => {
            assert_eq!((step.as_str(), reason), ("spin", StopReason::LeaseLost));
        }
        other => panic!("{other:?}"),
    }
    assert!(before.iter().any(|(_, s)| *s == 'R'), "it spun: {before:?}");
    let idle = || async { workers_of(me, Some(&binary)).iter().all(|(_, s)| *s != 'R') };
    assert!(
        crate::helpers::eventually(Duration::from_secs(5), idle).await,
        "still spinning: {:?}",
        workers_of(me, Some(&binary))
    );
}
