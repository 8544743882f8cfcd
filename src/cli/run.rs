//! `flowgate run`: one flow run in this process on a request given on the
//! command line, without HTTP or a store; prints the result and the trace.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use super::flowtest;
use crate::flow::check_dir;

// The arguments of `flowgate run` (a plain comment: a doc comment would become its help).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// TENANT/TRIGGER
    pub target: String,
    /// Query parameter, repeatable.
    #[arg(long = "param", value_name = "K=V")]
    pub params: Vec<String>,
    /// File with the request body; `-` reads it from standard input.
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// Content type of the body.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    /// HTTP method [default: the trigger's first method]
    #[arg(long)]
    pub method: Option<String>,
    /// Flows directory.
    #[arg(long, env = "FLOWGATE_FLOWS", default_value = "./flows")]
    pub flows: PathBuf,
    /// Run the `sql` statements in transactions rolled back at the end: the
    /// database is left as it was.
    #[arg(long)]
    pub rollback: bool,
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
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
    let method =
        flowtest::method(&t, args.method.as_deref()).map_err(|why| anyhow::anyhow!("--{why}"))?;
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
        Some(path) if path.as_os_str() == "-" => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("cannot read the body from standard input")?;
            body
        }
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => Vec::new(),
    };
    let document = flowtest::local_input(
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
    let runtime = super::current_thread()?;
    let executor = super::local_executor()?;
    let local = crate::engine::Local {
        rollback: args.rollback,
        ..Default::default()
    };
    let ex = runtime.block_on(flowtest::run_local(&executor, &t, &document, &local));
    let id = document["message_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| crate::domain::MessageId::at(crate::domain::now_micros()));
    let out = json!({
        "status": match &ex.result {
            Ok(()) => "succeeded",
            Err(e) if e.is_rejection() => "rejected",
            Err(_) => "failed",
        },
        "error": ex.result.as_ref().err().map(ToString::to_string),
        "error_code": ex.result.as_ref().err().map(crate::engine::ExecError::code),
        // What a caller waiting for the flow would be answered.
        "response": ex.answer(id),
        "vars": ex.vars(),
        // Delivered to the tenant's subscribers only when the run succeeds.
        "emitted": flowtest::emitted_json(&ex.emitted),
        "trace": ex.trace_json(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if ex.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
