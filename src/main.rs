//! The `flowgate` command: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use flowgate::cli;
use flowgate::config::Settings;
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
        /// Run each case's `sql` statements in transactions rolled back at its
        /// end: the database is left as it was.
        #[arg(long)]
        rollback: bool,
    },
    /// The log history of a running server, through its admin API.
    Messages {
        #[command(subcommand)]
        command: cli::messages::Command,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// API keys for a tenant's callers (`_tenant.yaml`).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Admin tokens for `/_admin` and `flowgate messages` (`flowgate.toml`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run a flow in this process, without HTTP or a store, and print the result and trace.
    Run(cli::run::RunArgs),
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
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key
    #[arg(long, env = "FLOWGATE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, RSA or SEC1)
    #[arg(long, env = "FLOWGATE_TLS_KEY")]
    tls_key: Option<PathBuf>,
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
enum KeyCommand {
    /// Generate a caller's API key (or hash one given with --key) and print its _tenant.yaml line.
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

#[derive(Subcommand)]
enum TokenCommand {
    /// Generate an admin token (or hash one given with --token) and print its flowgate.toml entry.
    New {
        #[arg(long)]
        label: String,
        /// The tenants it may see, comma-separated; without it, every tenant.
        #[arg(long, value_delimiter = ',', value_name = "TENANT,...")]
        tenants: Option<Vec<String>>,
        /// Hash this token instead of generating one.
        #[arg(long)]
        token: Option<String>,
        /// What it may do: `operate` (replay, skip, unblock, redeliver) or only `read`.
        #[arg(long, default_value = "operate", value_parser = ["read", "operate"])]
        role: String,
        /// Print {"label","token","hash","tenants","role"}.
        #[arg(long)]
        json: bool,
    },
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
        Command::Check { dir } => cli::check::check(&dir),
        Command::Test { dir, rollback } => cli::check::test(&dir, rollback),
        Command::Messages { command, admin } => cli::messages::run(command, admin.url, admin.token),
        Command::Key {
            command: KeyCommand::New { label, key, json },
        } => cli::key::new(&label, key, json),
        Command::Token {
            command:
                TokenCommand::New {
                    label,
                    tenants,
                    token,
                    role,
                    json,
                },
        } => cli::key::new_token(&label, token, tenants, &role, json),
        Command::Run(args) => cli::run::run(args),
        Command::Migrate { store } => cli::migrate::migrate(&store),
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
    if let Some(c) = args.tls_cert {
        settings.tls_cert = Some(c);
    }
    if let Some(k) = args.tls_key {
        settings.tls_key = Some(k);
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
