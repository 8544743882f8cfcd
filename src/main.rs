//! The `flowgate` command: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use flowgate::config::Settings;
use flowgate::flow::check_dir;
use flowgate::startup::{Application, StartupError};

/// Requests allocate on the HTTP workers and are freed on the store's writer
/// thread; glibc's arenas serialise that on a lock, mimalloc does not. The
/// counter around it bounds a jq worker's memory (off in the server).
#[global_allocator]
static GLOBAL: flowgate::engine::sandbox::Counting<mimalloc::MiMalloc> =
    flowgate::engine::sandbox::Counting(mimalloc::MiMalloc);

#[derive(Parser)]
#[command(
    name = "flowgate",
    version,
    about = "Webhook trigger runtime: flows as files, durable ordered queues"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the trigger endpoints.
    Serve(ServeArgs),
    /// Check every flow file and report every problem.
    Check {
        /// The flows directory.
        #[arg(default_value = "./flows")]
        dir: PathBuf,
    },
    /// Run the flow tests (`<tenant>/<Trigger>.test.yaml`) and report every case.
    Test {
        /// The flows directory.
        #[arg(default_value = "./flows")]
        dir: PathBuf,
    },
    /// The log history of a running server, through its admin API.
    Messages {
        #[command(subcommand)]
        command: MessagesCommand,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Run a flow in this process, without HTTP or a store, and print the result and trace.
    Run(RunArgs),
    /// Create or update the store's tables.
    Migrate {
        #[arg(long, env = "FLOWGATE_STORE", default_value = "sqlite://flowgate.db")]
        store: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on [default: 0.0.0.0:8080]
    #[arg(long, env = "FLOWGATE_LISTEN")]
    listen: Option<String>,
    /// Flows directory [default: ./flows]
    #[arg(long, env = "FLOWGATE_FLOWS")]
    flows: Option<PathBuf>,
    /// Store URL: sqlite://PATH or postgres://... [default: sqlite://flowgate.db]
    #[arg(long, env = "FLOWGATE_STORE")]
    store: Option<String>,
    /// Settings file [default: ./flowgate.toml when it exists]
    #[arg(long, env = "FLOWGATE_CONFIG")]
    config: Option<PathBuf>,
}

/// Where the admin API is and how to open it.
#[derive(Args)]
struct AdminArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "FLOWGATE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// An admin token (see docs/settings.md, `admin_tokens`).
    #[arg(
        long,
        env = "FLOWGATE_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    token: Option<String>,
}

#[derive(Subcommand)]
enum MessagesCommand {
    /// One page of the log history, newest first.
    List {
        #[command(flatten)]
        filter: flowgate::cli::messages::ListFilter,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One message: input, trace, response and every attempt (JSON).
    Show { id: String },
    /// Queue a message again, as a new message linked to it.
    Replay { id: String },
    /// Mark the message that blocks its ordered lane skipped; the lane goes on.
    Skip { id: String },
    /// Let the lane a message blocks go on; the message keeps its status.
    Unblock { id: String },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Generate a key (or hash one given with --key) and print the _tenant.yaml line.
    New {
        #[arg(long)]
        label: String,
        /// Hash this key instead of generating one.
        #[arg(long)]
        key: Option<String>,
        /// Print {"label","key","hash"}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// TENANT/TRIGGER
    target: String,
    /// Query parameter, repeatable.
    #[arg(long = "param", value_name = "K=V")]
    params: Vec<String>,
    /// File with the request body.
    #[arg(long)]
    body: Option<PathBuf>,
    /// Content type of the body [default: application/json]
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// HTTP method [default: the trigger's first method]
    #[arg(long)]
    method: Option<String>,
    /// Flows directory.
    #[arg(long, env = "FLOWGATE_FLOWS", default_value = "./flows")]
    flows: PathBuf,
}

fn main() -> ExitCode {
    // A worker starts with the least work possible: no argument parser, no logs.
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some(flowgate::engine::sandbox::worker::SUBCOMMAND) {
        let parent = args.next().and_then(|p| p.parse().ok());
        return flowgate::engine::sandbox::worker::main(parent);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check { dir } => check(&dir),
        Command::Test { dir } => test(&dir),
        Command::Messages { command, admin } => messages(command, admin),
        Command::Key {
            command: KeyCommand::New { label, key, json },
        } => key_new(&label, key, json),
        Command::Run(args) => run(args),
        Command::Migrate { store } => migrate(&store),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Every cause, each said once (a driver's message often repeats its cause).
            let said = flowgate::domain::chain::describe_links(e.chain().map(|c| c.to_string()));
            eprintln!("error: {said}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    flowgate::ops::telemetry::init();
    let mut settings = match Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("settings: {e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(l) = args.listen {
        settings.listen = l;
    }
    if let Some(f) = args.flows {
        settings.flows = f;
    }
    if let Some(s) = args.store {
        settings.store = s;
    }
    // HTTP has its own worker per core; queued executions and the enqueuer get
    // half the cores, so the two pools do not oversubscribe the machine (measured:
    // a second queue thread on 2 cores halved throughput).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((cores / 2).max(1))
        .enable_all()
        .thread_name("flowgate")
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        match Application::build(settings).await {
            Ok(app) => {
                app.run_until_stopped()
                    .await
                    .context("server stopped with an error")?;
                Ok(ExitCode::SUCCESS)
            }
            Err(StartupError::Flows(diagnostics)) => {
                for d in &diagnostics {
                    eprintln!("{d}");
                }
                eprintln!(
                    "flowgate: not starting: {} problem(s) in the flow files",
                    diagnostics.len()
                );
                Ok(ExitCode::FAILURE)
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// Runs flows in this process (`run`, `test`) as `serve` does: budgets and jq
/// workers from the settings (`flowgate.toml`, `FLOWGATE_*`).
fn local_executor() -> Result<flowgate::engine::Executor> {
    let settings =
        Settings::load(None).map_err(|e| anyhow::anyhow!("settings: {}", e.join("; ")))?;
    let options = settings.sandbox_options().map_err(anyhow::Error::msg)?;
    Ok(flowgate::engine::Executor::new(
        flowgate::engine::Sandbox::new(options),
        settings.flow_limits(),
    ))
}

fn check(dir: &std::path::Path) -> Result<ExitCode> {
    let report = check_dir(dir);
    for d in &report.diagnostics {
        println!("{d}");
    }
    if report.diagnostics.is_empty() {
        println!(
            "ok: {} trigger(s) in {}",
            report.catalog.trigger_count(),
            dir.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{} problem(s)", report.diagnostics.len());
        Ok(ExitCode::FAILURE)
    }
}

fn test(dir: &std::path::Path) -> Result<ExitCode> {
    let report = check_dir(dir);
    if !report.diagnostics.is_empty() {
        for d in &report.diagnostics {
            eprintln!("{d}");
        }
        eprintln!(
            "flowgate: no tests run: {} problem(s) in the flow files",
            report.diagnostics.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let files = &report.tests;
    if files.is_empty() {
        println!("no flow tests in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let executor = local_executor()?;
    let (mut passed, mut failed, mut broken) = (0, 0, 0);
    for file in files {
        println!("{}", file.path.display());
        let cases = std::fs::read_to_string(&file.path)
            .map_err(Into::into)
            .and_then(|text| flowgate::cli::flowtest::parse(&text));
        let (trigger, cases) = match (
            flowgate::cli::flowtest::trigger(&report.catalog, file),
            cases,
        ) {
            (Ok(t), Ok(c)) => (t, c),
            (Err(why), _) | (_, Err(why)) => {
                println!("  BROKEN {why}");
                broken += 1;
                continue;
            }
        };
        for case in &cases {
            match runtime.block_on(flowgate::cli::flowtest::answer(&executor, trigger, case)) {
                Ok(got) => {
                    let diffs = flowgate::cli::flowtest::differences(&case.expect, &got);
                    if diffs.is_empty() {
                        println!("  ok     {}", case.name);
                        passed += 1;
                    } else {
                        println!("  FAIL   {}", case.name);
                        for d in diffs {
                            println!("         {d}");
                        }
                        failed += 1;
                    }
                }
                Err(why) => {
                    println!("  FAIL   {}", case.name);
                    println!("         {why}");
                    failed += 1;
                }
            }
        }
    }
    let mut summary = format!("{passed} passed, {failed} failed");
    if broken > 0 {
        summary.push_str(&format!(", {broken} test file(s) broken"));
    }
    println!("{summary}");
    Ok(if failed == 0 && broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn messages(command: MessagesCommand, args: AdminArgs) -> Result<ExitCode> {
    let Some(token) = args.token else {
        bail!("an admin token is needed: --token or FLOWGATE_ADMIN_TOKEN");
    };
    let admin = flowgate::cli::messages::Admin {
        url: args.url,
        token,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let pretty = |v: serde_json::Value| format!("{v:#}\n");
    let answer = runtime.block_on(async {
        match command {
            MessagesCommand::List { filter, json } => {
                let page = admin.list(&filter).await?;
                Ok(if json {
                    pretty(page)
                } else {
                    flowgate::cli::messages::table(&page)
                })
            }
            MessagesCommand::Show { id } => admin.show(&id).await.map(pretty),
            MessagesCommand::Replay { id } => admin.act(&id, "replay").await.map(|r| {
                format!(
                    "replayed {} as {}\n",
                    r["replay_of"].as_str().unwrap_or(&id),
                    r["message_id"].as_str().unwrap_or("?")
                )
            }),
            MessagesCommand::Skip { id } => admin
                .act(&id, "skip")
                .await
                .map(|r| format!("skipped {id}; lane {} goes on\n", r["lane"])),
            MessagesCommand::Unblock { id } => admin
                .act(&id, "unblock")
                .await
                .map(|r| format!("unblocked lane {} held by {id}\n", r["lane"])),
        }
    });
    match answer {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("flowgate messages: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn key_new(label: &str, key: Option<String>, as_json: bool) -> Result<ExitCode> {
    if label.is_empty()
        || !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("--label may only contain letters, digits, `_` and `-`");
    }
    let key = match key {
        Some(k) if k.trim().is_empty() => bail!("--key is empty"),
        Some(k) => k,
        None => flowgate::auth::keys::generate(),
    };
    let hash = flowgate::auth::keys::hash(&key).map_err(anyhow::Error::msg)?;
    if as_json {
        println!("{}", json!({"label": label, "key": key, "hash": hash}));
    } else {
        println!("key: {key}");
        println!("(shown once: only its hash is kept)");
        println!();
        println!("add to _tenant.yaml under api_keys:");
        println!("  {label}: \"{hash}\"");
    }
    Ok(ExitCode::SUCCESS)
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let (tenant, trigger) = args
        .target
        .split_once('/')
        .context("the target is TENANT/TRIGGER")?;
    let report = check_dir(&args.flows);
    for d in &report.diagnostics {
        eprintln!("{d}");
    }
    let t = report
        .catalog
        .trigger(tenant, trigger)
        .with_context(|| format!("no trigger {tenant}/{trigger} in {}", args.flows.display()))?
        .clone();
    let method = flowgate::cli::flowtest::method(&t, args.method.as_deref())
        .map_err(|why| anyhow::anyhow!("--{why}"))?;
    let params = args
        .params
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .with_context(|| format!("--param {p}: expected K=V"))?;
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect::<Result<Vec<_>>>()?;
    let body = match &args.body {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => Vec::new(),
    };
    let document = flowgate::cli::flowtest::local_input(
        &t,
        method,
        &params,
        Vec::new(),
        Some(&args.content_type),
        &body,
    );
    let document = match document {
        Ok(d) => d,
        Err(errors) => {
            for e in errors {
                eprintln!("{}: {}", e.code, e.message);
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let executor = local_executor()?;
    let ex = runtime.block_on(flowgate::cli::flowtest::run_local(&executor, &t, &document));
    let out = json!({
        "status": if ex.result.is_ok() { "succeeded" } else { "failed" },
        "error": ex.result.as_ref().err().map(ToString::to_string),
        "error_code": ex.result.as_ref().err().map(flowgate::engine::ExecError::code),
        "response": ex.response,
        "vars": ex.vars(),
        "trace": ex.trace_json(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if ex.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn migrate(store: &str) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let options = Settings::default().pg_options();
        let opened = flowgate::store::Store::connect(store, options)
            .await
            .with_context(|| format!("cannot migrate {}", flowgate::store::redact_url(store)))?;
        opened.close().await.ok();
        println!("ok: {} is up to date", flowgate::store::redact_url(store));
        Ok(ExitCode::SUCCESS)
    })
}
