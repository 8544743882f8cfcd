//! Load generator: starts flowgate in this process on loopback (SQLite store in a
//! temporary directory, or `--store postgres://...` in a schema of its own that is
//! dropped afterwards; the repository's `flows/`) and drives it with many
//! keep-alive HTTP/1.1 connections from a hand-written client, then prints
//! requests/s, p50/p99/max latency and each scenario's ratio to `/_health`.
//!
//! ```sh
//! cargo run --release --example loadgen
//! cargo run --release --example loadgen -- --scenario itemprice --duration 10 --connections 64
//! cargo run --release --example loadgen -- --store postgres://postgres@127.0.0.1/test \
//!     --scenario accept --drain 10000
//! ```
//!
//! `--drain N` first stores N messages for one ordered trigger with a trivial flow,
//! then starts the server and times how long their execution takes (messages/s).
//! With `--lanes L` the trigger is ordered by key and the N messages are spread
//! over L keys (lanes), interleaved as they would arrive: `--drain 100000
//! --lanes 1000` is 1,000 lanes of 100 messages each.
//!
//! Scenarios: `health` (the in-run ceiling), `itemprice` (sync GET with an API key),
//! `itemprice-db` (the same answer read from PostgreSQL by an `sql` step; the
//! tables of examples/sql/acme.sql are created in `ACME_DATABASE_URL`, default
//! the local `postgres` database), `accept` (durable async accept of a 1 KB JSON
//! body; every accepted message is also executed during the run, and `backlog`
//! counts those not yet executed when the window closed). `itemprice-keyed` and
//! `itemprice-limited` are ItemPrice with a key with an id (`fg_<id>_<secret>`),
//! its consumer without limits and with a `rate` and a `quota` too high to be
//! hit: the cost of holding a request against its limits and counting it
//! (tenants `keyed` and `limited`, written at start). `itemprice-expr` asks
//! tenant `keyed` for the same price from ItemPriceExpr, a flow written as one
//! expression (a table in the expression, `as $p`, `if`, `error`). Run them in
//! one run, interleaved:
//!
//! ```sh
//! cargo run --release --example loadgen -- \
//!     --scenario itemprice-keyed,itemprice-limited,itemprice-keyed,itemprice-limited
//! cargo run --release --example loadgen -- \
//!     --scenario itemprice-keyed,itemprice-expr,itemprice-keyed,itemprice-expr
//! ```
//!
//! The server and the client run on separate runtimes; on a 2-core machine they
//! share the cores.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "flowgate load generator")]
struct Args {
    /// Seconds measured per scenario (after a 1 s warm-up).
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Scenarios to run, comma separated (one may come again): health, itemprice,
    /// itemprice-keyed, itemprice-limited, itemprice-expr, itemprice-db, accept.
    #[arg(long, default_value = "health,itemprice,accept")]
    scenario: String,
    /// Client runtime threads.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Per-trigger backlog (high, so accept measures storage, not admission control).
    #[arg(long, default_value_t = 1_000_000)]
    max_backlog: usize,
    /// Print one JSON object per scenario.
    #[arg(long)]
    json: bool,
    /// Store: a temporary SQLite file, or postgres://... (a fresh schema in that database).
    #[arg(long)]
    store: Option<String>,
    /// Messages drained through one ordered trigger before the scenarios (0: none).
    #[arg(long, default_value_t = 0)]
    drain: usize,
    /// Lanes the drained messages are spread over (1: the trigger's one lane).
    #[arg(long, default_value_t = 1)]
    lanes: usize,
    /// HTTP worker threads of the server (0: one per core, as `flowgate serve`).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

/// ItemPrice written as one expression, as many integrators would.
const ITEM_PRICE_EXPR_FLOW: &str = r#"methods: [GET]
auth: { api_keys: [webshop] }
params:
  itemId:   { type: string, required: true }
  currency: { type: string, default: EUR }
response: { mode: sync, timeout: 5s }
steps:
  - respond:
      body: |
        {"A-100": 12.5, "A-200": 7.25, "B-300": 99.0}[.params.itemId] as $p
        | if $p == null then error("unknown item") else {item: .params.itemId, price: $p, currency: .params.currency} end
"#;

/// A flow that does almost nothing, for the drain rate.
const DRAIN_FLOW: &str = "auth: { none: true }\ndelivery: { ordered: true }\nresponse: { mode: async }\nsteps:\n  - set: { n: .body.n }\n";
/// The same, ordered per key: one lane per `.body.k`.
const DRAIN_KEYED_FLOW: &str = "auth: { none: true }\ndelivery: { ordered: true, ordering_key: .body.k }\nresponse: { mode: async }\nsteps:\n  - set: { n: .body.n }\n";

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Runs SQL on a connection of its own.
async fn sql(url: &str, text: &str) -> Result<()> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(conn);
    client.batch_execute(text).await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// Stores `n` messages for the drain trigger (over `lanes` lanes), starts a
/// server and waits until the last message of every lane (so, in lane order,
/// all) finished, then stops that server (the scenarios run on a node of their
/// own, not beside it). Returns messages/s.
async fn drain(settings: &flowgate::config::Settings, n: usize, lanes: usize) -> Result<f64> {
    use flowgate::domain::{MessageId, Mode, NewMessage, TenantName, TriggerName, now_micros};
    let lanes = lanes.max(1);
    let trigger = if lanes == 1 { "Drain" } else { "DrainKeyed" };
    let store = flowgate::store::Store::connect(&settings.store, settings.pg_options()).await?;
    let mut last = vec![None; lanes];
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<NewMessage> = chunk
            .iter()
            .map(|i| {
                let k = i % lanes;
                NewMessage {
                    id: MessageId::new(),
                    tenant: TenantName::parse("acme").expect("name"),
                    trigger: TriggerName::parse(trigger).expect("name"),
                    // The lane as the enqueuer names it: the key's JSON text.
                    lane: Some(if lanes == 1 {
                        String::new()
                    } else {
                        k.to_string()
                    }),
                    mode: Mode::Async,
                    received_at: now_micros(),
                    idempotency_key: None,
                    input: serde_json::json!({"body": {"n": i, "k": k}}),
                    body_json: None,
                }
            })
            .collect();
        for m in &batch {
            let k = m.lane.as_deref().and_then(|l| l.parse().ok()).unwrap_or(0);
            last[k] = Some(m.id);
        }
        store.enqueue(&batch).await?;
    }
    store.close().await?;
    let last: Vec<MessageId> = last.into_iter().flatten().collect();
    if last.is_empty() {
        bail!("nothing to drain");
    }
    let started = Instant::now();
    let mut s = settings.clone();
    s.listen = "127.0.0.1:0".into();
    let app = flowgate::startup::Application::build(s).await?;
    let (queue, handle) = (app.queue(), app.handle());
    let running = tokio::spawn(app.run_until_stopped());
    for id in last {
        loop {
            if let Some(v) = queue.message(id).await?
                && v.head.status.is_final()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    handle.stop(true).await;
    running.await??;
    Ok(rate)
}

struct Scenario {
    name: &'static str,
    request: Vec<u8>,
    expect: u16,
}

/// The keys of the `keyed` and `limited` tenants' consumer `webshop`.
struct Keys {
    keyed: String,
    limited: String,
}

/// Tenant `tenant`: ItemPrice as acme has it, its consumers' keys with ids,
/// `limits` added to `webshop`'s entry. Returns `webshop`'s key.
fn keyed_tenant(flows: &std::path::Path, tenant: &str, limits: &[&str]) -> Result<String> {
    let dir = flows.join(tenant);
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(
        flows.join("acme/ItemPrice.yaml"),
        dir.join("ItemPrice.yaml"),
    )?;
    let mut yaml = String::from("api_keys:\n");
    let mut webshop = String::new();
    for label in ["webshop", "erp"] {
        let (id, key) = flowgate::auth::keys::generate();
        let hash = flowgate::auth::keys::hash(&key).context("hashing a key")?;
        yaml.push_str(&format!(
            "  {label}:\n    keys:\n      - id: {id}\n        hash: \"{hash}\"\n"
        ));
        if label == "webshop" {
            for line in limits {
                yaml.push_str(&format!("    {line}\n"));
            }
            webshop = key;
        }
    }
    std::fs::write(dir.join("_tenant.yaml"), yaml)?;
    Ok(webshop)
}

fn item_price(host: &str, tenant: &str, key: &str) -> Vec<u8> {
    format!(
        "GET /{tenant}/ItemPrice?itemId=A-100&currency=SEK&qty=3 HTTP/1.1\r\nHost: {host}\r\nX-Api-Key: {key}\r\n\r\n"
    )
    .into_bytes()
}

fn scenario(name: &str, addr: SocketAddr, keys: &Keys) -> Result<Scenario> {
    let host = addr.to_string();
    Ok(match name {
        "health" => Scenario {
            name: "health",
            request: format!("GET /_health HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
            expect: 200,
        },
        "itemprice" => Scenario {
            name: "itemprice",
            request: format!(
                "GET /acme/ItemPrice?itemId=A-100&currency=SEK&qty=3 HTTP/1.1\r\nHost: {host}\r\nX-Api-Key: fg_acme_webshop_example\r\n\r\n"
            )
            .into_bytes(),
            expect: 200,
        },
        "itemprice-keyed" => Scenario {
            name: "itemprice-keyed",
            request: item_price(&host, "keyed", &keys.keyed),
            expect: 200,
        },
        "itemprice-expr" => Scenario {
            name: "itemprice-expr",
            request: format!(
                "GET /keyed/ItemPriceExpr?itemId=A-100&currency=SEK&qty=3 HTTP/1.1\r\nHost: {host}\r\nX-Api-Key: {}\r\n\r\n",
                keys.keyed
            )
            .into_bytes(),
            expect: 200,
        },
        "itemprice-limited" => Scenario {
            name: "itemprice-limited",
            request: item_price(&host, "limited", &keys.limited),
            expect: 200,
        },
        "itemprice-db" => Scenario {
            name: "itemprice-db",
            request: format!(
                "GET /acme/ItemPriceDb?itemId=A-100&currency=SEK&qty=3 HTTP/1.1\r\nHost: {host}\r\nX-Api-Key: fg_acme_webshop_example\r\n\r\n"
            )
            .into_bytes(),
            expect: 200,
        },
        "accept" => {
            let body = one_kb_body();
            let mut request = format!(
                "POST /acme/CreateCustomerRecord HTTP/1.1\r\nHost: {host}\r\nX-Api-Key: fg_acme_erp_example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            request.extend_from_slice(body.as_bytes());
            Scenario {
                name: "accept",
                request,
                expect: 202,
            }
        }
        other => bail!(
            "unknown scenario `{other}` (health, itemprice, itemprice-keyed, itemprice-limited, itemprice-expr, itemprice-db, accept)"
        ),
    })
}

/// A customer record padded to about 1 KB.
fn one_kb_body() -> String {
    let mut v = serde_json::json!({
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "address": {"street": "1 Analytical Way", "city": "London", "zip": "N1 9GU"},
        "notes": "",
    });
    let len = v.to_string().len();
    v["notes"] = serde_json::Value::String("x".repeat(1024usize.saturating_sub(len)));
    v.to_string()
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    too_many: u64,
    other: u64,
    io_errors: u64,
    /// Unexpected answers by status code, to tell what the errors were.
    statuses: std::collections::BTreeMap<u16, u64>,
}

/// Reads one response; returns its status code.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let mut length = None;
    for line in head.split("\r\n") {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                bail!("chunked responses are not expected");
            }
        }
    }
    let total = head_end + length.context("no Content-Length")?;
    while buf.len() < total {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

async fn connection(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    expect: u16,
    record: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut stream = None;
    while !stop.load(Ordering::Relaxed) {
        if stream.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(_) => {
                    tally.io_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let started = Instant::now();
        let result = match s.write_all(&request).await {
            Ok(()) => read_response(s, &mut buf).await,
            Err(e) => Err(e.into()),
        };
        let took = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
        let counting = record.load(Ordering::Relaxed);
        match result {
            Ok(status) if counting => {
                tally.latencies_us.push(took);
                match status {
                    s if s == expect => tally.ok += 1,
                    429 => tally.too_many += 1,
                    other => {
                        tally.other += 1;
                        let seen = tally.statuses.entry(other).or_default();
                        if *seen == 0 && std::env::var_os("LOADGEN_SHOW_ERRORS").is_some() {
                            eprintln!("{}", String::from_utf8_lossy(&buf));
                        }
                        *seen += 1;
                    }
                }
            }
            Ok(_) => {}
            Err(_) => {
                stream = None;
                if counting {
                    tally.io_errors += 1;
                }
            }
        }
    }
    tally
}

/// CPU time (microseconds, user + system) of this process's threads, split into
/// the load generator's own client threads and everything else (the server).
fn cpu_split() -> (u64, u64) {
    let tick_us = 1_000_000 / 100; // USER_HZ is 100 on Linux
    let (mut client, mut server) = (0, 0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks: u64 = fields
            .get(11..13)
            .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
        if comm.starts_with("loadgen-client") {
            client += ticks * tick_us;
        } else {
            server += ticks * tick_us;
        }
    }
    (client, server)
}

/// CPU time (microseconds) of the local PostgreSQL's processes, which share the
/// cores: what a query costs the database, next to what it costs flowgate.
fn postgres_cpu() -> u64 {
    let tick_us = 1_000_000 / 100;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for p in procs.flatten() {
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != "postgres" {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        total += fields.get(11..13).map_or(0, |f| {
            f.iter().filter_map(|v| v.parse::<u64>().ok()).sum::<u64>()
        }) * tick_us;
    }
    total
}

struct Figures {
    name: &'static str,
    server_cpu_us: f64,
    client_cpu_us: f64,
    /// Local PostgreSQL processes (0 when it runs elsewhere).
    postgres_cpu_us: f64,
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    too_many: u64,
    errors: u64,
    /// `errors` spelled out: status codes and broken connections.
    error_kinds: String,
    /// Accepted messages not yet executed when the measured window closed (accept
    /// only): a rate that outran execution would show here as a growing backlog.
    backlog: Option<u64>,
}

/// Messages queued, running or waiting for a retry, in the store.
async fn unfinished(queue: &flowgate::queue::Queue) -> Option<u64> {
    let counts = queue.store().status_counts(None).await.ok()?;
    Some(
        counts
            .iter()
            .filter(|c| !c.status.is_final())
            .map(|c| c.count)
            .sum(),
    )
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn run(
    addr: SocketAddr,
    s: &Scenario,
    args: &Args,
    queue: Option<&flowgate::queue::Queue>,
) -> Figures {
    let request = Arc::new(s.request.clone());
    let record = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| {
            tokio::spawn(connection(
                addr,
                request.clone(),
                s.expect,
                record.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    record.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let cpu_before = cpu_split();
    let pg_before = postgres_cpu();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    record.store(false, Ordering::Relaxed);
    let cpu_after = cpu_split();
    let pg_after = postgres_cpu();
    let elapsed = started.elapsed().as_secs_f64();
    let backlog = match queue {
        Some(q) => unfinished(q).await,
        None => None,
    };
    stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for t in tasks {
        if let Ok(t) = t.await {
            all.latencies_us.extend(t.latencies_us);
            all.ok += t.ok;
            all.too_many += t.too_many;
            all.other += t.other;
            all.io_errors += t.io_errors;
            for (status, n) in t.statuses {
                *all.statuses.entry(status).or_default() += n;
            }
        }
    }
    all.latencies_us.sort_unstable();
    let per_request = |before: u64, after: u64| {
        let n = all.latencies_us.len().max(1) as f64;
        after.saturating_sub(before) as f64 / n
    };
    Figures {
        name: s.name,
        client_cpu_us: per_request(cpu_before.0, cpu_after.0),
        server_cpu_us: per_request(cpu_before.1, cpu_after.1),
        postgres_cpu_us: per_request(pg_before, pg_after),
        requests: all.ok,
        rps: all.ok as f64 / elapsed,
        p50_ms: percentile(&all.latencies_us, 0.50),
        p99_ms: percentile(&all.latencies_us, 0.99),
        max_ms: percentile(&all.latencies_us, 1.0),
        too_many: all.too_many,
        errors: all.other + all.io_errors,
        error_kinds: {
            let mut kinds: Vec<String> = all
                .statuses
                .iter()
                .map(|(s, n)| format!("{s}x{n}"))
                .collect();
            if all.io_errors > 0 {
                kinds.push(format!("io x{}", all.io_errors));
            }
            kinds.join(",")
        },
        backlog,
    }
}

/// Creates and fills the example tables where ItemPriceDb's connection points.
async fn prepare_database() -> Result<()> {
    let url = std::env::var("ACME_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .context("itemprice-db needs PostgreSQL at ACME_DATABASE_URL")?;
    tokio::spawn(conn);
    let sql = include_str!("sql/acme.sql");
    client
        .batch_execute(sql)
        .await
        .context("examples/sql/acme.sql")?;
    Ok(())
}

/// The `flowgate` binary built beside this one (`target/<profile>/flowgate`),
/// which runs the jq workers: this program has no `__jq-worker` mode, so
/// without it expressions left to jaq fail (the scenarios' flows run natively).
fn executor_binary() -> Option<PathBuf> {
    let flowgate = std::env::current_exe()
        .ok()?
        .parent()?
        .parent()?
        .join("flowgate");
    if flowgate.is_file() {
        Some(flowgate)
    } else {
        eprintln!(
            "note: {} is missing (cargo build --release --bin flowgate): expressions left to jaq will fail",
            flowgate.display()
        );
        None
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir().context("temporary directory")?;
    let flows = dir.path().join("flows");
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("flows"),
        &flows,
    )?;
    std::fs::write(flows.join("acme").join("Drain.yaml"), DRAIN_FLOW)?;
    std::fs::write(flows.join("acme").join("DrainKeyed.yaml"), DRAIN_KEYED_FLOW)?;
    // Limits far above what one machine sends: held against, never hit.
    let keys = Keys {
        keyed: keyed_tenant(&flows, "keyed", &[])?,
        limited: keyed_tenant(
            &flows,
            "limited",
            &["rate: 10000000/s", "quota: 100000000000/day"],
        )?,
    };
    std::fs::write(
        flows.join("keyed").join("ItemPriceExpr.yaml"),
        ITEM_PRICE_EXPR_FLOW,
    )?;
    let schema = format!("flowgate_loadgen_{}", std::process::id());
    let (store, kind) = match &args.store {
        Some(url) if flowgate::store::is_postgres(url) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            (
                format!("{url}{sep}options=-csearch_path%3D{schema}"),
                "postgres",
            )
        }
        Some(url) => (url.clone(), "sqlite"),
        None => (
            format!("sqlite://{}", dir.path().join("loadgen.db").display()),
            "sqlite (temporary file)",
        ),
    };

    // As `flowgate serve` sizes it: half the cores (HTTP workers are actix's own).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((cores / 2).max(1))
        .enable_all()
        .build()?;
    let settings = flowgate::config::Settings {
        listen: "127.0.0.1:0".into(),
        flows,
        store: store.clone(),
        max_backlog: args.max_backlog,
        workers: args.workers,
        executor_binary: executor_binary(),
        ..Default::default()
    };
    let base_url = args.store.clone().unwrap_or_default();
    if kind == "postgres" {
        server_rt.block_on(sql(&base_url, &format!("CREATE SCHEMA {schema}")))?;
    }
    let drained = if args.drain > 0 {
        Some(server_rt.block_on(drain(&settings, args.drain, args.lanes))?)
    } else {
        None
    };
    if args.scenario.contains("itemprice-db") {
        server_rt.block_on(prepare_database())?;
    }
    let (addr, queue) = server_rt.block_on(async {
        let app = flowgate::startup::Application::build(settings).await?;
        let (addr, queue) = (app.local_addr(), app.queue());
        tokio::spawn(app.run_until_stopped());
        Ok::<_, anyhow::Error>((addr, queue))
    })?;

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .thread_name("loadgen-client")
        .enable_all()
        .build()?;
    if !args.json {
        println!(
            "flowgate loadgen: {cores} cores, store {kind}, {} connections, {} s per scenario",
            args.connections, args.duration
        );
    }
    if let Some(rate) = drained {
        if args.json {
            println!(
                "{}",
                serde_json::json!({"scenario": "drain", "messages": args.drain, "lanes": args.lanes, "rps": rate})
            );
        } else {
            println!(
                "drain      messages={} through {} ordered lane(s): {rate:.1} messages/s",
                args.drain, args.lanes
            );
        }
    }
    let mut health_rps = None;
    for name in args
        .scenario
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let s = scenario(name, addr, &keys)?;
        let counted = (name == "accept").then_some(&queue);
        let f = client_rt.block_on(run(addr, &s, &args, counted));
        if f.name == "health" {
            health_rps = Some(f.rps);
        }
        let ratio = health_rps.filter(|_| f.name != "health").map(|h| f.rps / h);
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "scenario": f.name, "connections": args.connections, "requests": f.requests,
                    "rps": f.rps, "p50_ms": f.p50_ms, "p99_ms": f.p99_ms, "max_ms": f.max_ms,
                    "status_429": f.too_many, "errors": f.errors, "error_kinds": f.error_kinds,
                    "ratio_to_health": ratio,
                    "server_cpu_us_per_request": f.server_cpu_us,
                    "client_cpu_us_per_request": f.client_cpu_us,
                    "postgres_cpu_us_per_request": f.postgres_cpu_us,
                    "backlog_at_end": f.backlog,
                })
            );
        } else {
            println!(
                "{:<10} conns={} requests={} rps={:.1} p50={:.2}ms p99={:.2}ms max={:.1}ms 429s={} errors={}{}{} cpu/req: server={:.1}us client={:.1}us{}{}",
                f.name,
                args.connections,
                f.requests,
                f.rps,
                f.p50_ms,
                f.p99_ms,
                f.max_ms,
                f.too_many,
                f.errors,
                if f.error_kinds.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", f.error_kinds)
                },
                f.backlog.map_or(String::new(), |n| format!(" backlog={n}")),
                f.server_cpu_us,
                f.client_cpu_us,
                if f.postgres_cpu_us >= 0.05 {
                    format!(" postgres={:.1}us", f.postgres_cpu_us)
                } else {
                    String::new()
                },
                ratio.map_or(String::new(), |r| format!(" ratio_to_health={r:.2}"))
            );
        }
    }
    if kind == "postgres" {
        server_rt.block_on(sql(&base_url, &format!("DROP SCHEMA {schema} CASCADE")))?;
    }
    Ok(())
}
