//! Where jq runs: worker processes that can be killed. jaq has no fuel and
//! recurses on the Rust stack, so an expression can loop forever, overflow the
//! stack or allocate without end; here any of that ends one worker process,
//! never flowgate.
//!
//! - Each worker is the `flowgate` binary re-executed with a hidden subcommand
//!   ([`worker`]), talking over its stdin and stdout ([`wire`]). A worker runs one
//!   evaluation at a time; a thread of the server drives each ([`slot`]).
//! - An evaluation carries its execution's deadline and memory budget. Past the
//!   deadline the worker is killed (SIGKILL) and started again; past the memory
//!   budget its allocation fails and it ends ([`alloc`]). Dropping an evaluation
//!   (its execution was stopped or dropped) kills its worker at once.
//! - At most `max_workers` evaluate at once, and at most `tenant_max` of one
//!   tenant's: one tenant's runaway expressions leave workers for the others.
//!   Workers start when needed and stop after [`slot::IDLE_RETIRE`] unused.
//!
//! The server's side never blocks an async thread: waits are on channels, the
//! work of encoding and decoding values is done by the slot's thread.

pub mod alloc;
pub mod codec;
mod process;
mod slot;
pub mod wire;
pub mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use jaq_json::Val;
use tokio::sync::{Semaphore, oneshot};

pub use alloc::Counting;
use slot::Slot;

/// The outputs of an evaluation, each with the size of its encoding in bytes,
/// and whether there were more than asked for.
pub type Outputs = (Vec<(Val, u64)>, bool);

/// What an evaluation runs on.
#[derive(Debug)]
pub enum EvalInput {
    /// This value.
    Whole(Val),
    /// An execution's context: its input document's fields (`base`, the same
    /// all through the execution `token`, sent to a worker only once) and its
    /// variables, which go under `vars`.
    Context { token: u64, base: Val, vars: Val },
}

/// One evaluation for a slot's worker.
pub struct Job {
    pub id: u64,
    pub source: Arc<str>,
    pub input: EvalInput,
    pub max_outputs: u32,
    pub memory: u64,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<Outputs, Failure>>,
}

/// Why an evaluation gave no outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The program failed: a jq error (or it could not be compiled).
    Eval(String),
    /// It was still running at the deadline.
    Time,
    /// It took more memory than its budget, or its input or outputs are larger.
    Memory,
    /// Its outputs nest deeper than values may.
    TooDeep,
    /// Its worker process died (most likely a stack overflow of deep recursion).
    Crashed(String),
    /// No worker process could be started.
    Unavailable(String),
}

/// How the pool is sized and where the worker binary is.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// The `flowgate` binary to run as a worker.
    pub binary: PathBuf,
    /// Evaluations (worker processes) at once.
    pub max_workers: usize,
    /// Evaluations at once of one tenant.
    pub tenant_max: usize,
}

/// A cheap handle on the pool of jq workers.
#[derive(Clone)]
pub struct Sandbox(Arc<Pool>);

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Sandbox").field(&self.0.options).finish()
    }
}

pub struct Pool {
    options: SandboxOptions,
    idle: Mutex<Vec<Slot>>,
    permits: Semaphore,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
    next: AtomicU64,
    /// Tests of the engine evaluate in this process instead (see `inline`).
    #[cfg(test)]
    inline: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// Takes slot `id` out of the idle ones to end it; false when it is in use.
    fn retire(&self, id: u64) -> bool {
        let mut idle = lock(&self.idle);
        match idle.iter().position(|s| s.id == id) {
            Some(i) => {
                idle.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

/// A slot lent to one evaluation; back to the idle ones when dropped.
struct Lease<'a> {
    pool: &'a Pool,
    slot: Option<Slot>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.slot.take() {
            lock(&self.pool.idle).push(s);
        }
    }
}

/// Kills the worker of a job that is dropped before its answer came.
struct Armed<'a> {
    slot: &'a Slot,
    job: u64,
    done: bool,
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.slot.switch.kill(self.job);
        }
    }
}

impl Sandbox {
    pub fn new(options: SandboxOptions) -> Self {
        Self(Arc::new(Pool {
            permits: Semaphore::new(options.max_workers.max(1)),
            options,
            idle: Mutex::new(Vec::new()),
            tenants: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            #[cfg(test)]
            inline: false,
        }))
    }

    /// For tests of the engine: evaluates on a thread of this process (the test
    /// binary cannot be a worker), with no kill and no memory limit.
    #[cfg(test)]
    pub fn inline() -> Self {
        Self(Arc::new(Pool {
            options: SandboxOptions {
                binary: PathBuf::new(),
                max_workers: 8,
                tenant_max: 8,
            },
            permits: Semaphore::new(8),
            idle: Mutex::new(Vec::new()),
            tenants: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            inline: true,
        }))
    }

    pub fn options(&self) -> &SandboxOptions {
        &self.0.options
    }

    /// A number no other execution on this pool has: workers keep an
    /// execution's input under it ([`EvalInput::Context`]).
    pub fn token(&self) -> u64 {
        self.0.next.fetch_add(1, Ordering::Relaxed)
    }

    fn tenant(&self, tenant: &str) -> Arc<Semaphore> {
        let mut t = lock(&self.0.tenants);
        if let Some(s) = t.get(tenant) {
            return s.clone();
        }
        let s = Arc::new(Semaphore::new(self.0.options.tenant_max.max(1)));
        t.insert(tenant.to_owned(), s.clone());
        s
    }

    /// Runs `source` on `input` in a worker: up to `max_outputs` outputs, within
    /// `memory` bytes and before `deadline`. Waits for a worker first (this
    /// tenant's share, then the pool's; not past the deadline); dropping the
    /// future kills the worker.
    pub async fn eval(
        &self,
        tenant: &str,
        source: &Arc<str>,
        input: EvalInput,
        max_outputs: u32,
        memory: u64,
        deadline: Instant,
    ) -> Result<Outputs, Failure> {
        let share = self.tenant(tenant);
        // Waiting for a worker counts against the deadline like the rest.
        let until = tokio::time::Instant::from_std(deadline);
        let waited = tokio::time::timeout_at(until, async {
            let share = share.acquire().await;
            let permit = self.0.permits.acquire().await;
            (share, permit)
        });
        let (_share, _permit) = waited.await.map_err(|_| Failure::Time)?;
        #[cfg(test)]
        if self.0.inline {
            return inline(source, input, max_outputs).await;
        }
        // A worker that holds this execution's base, else the last returned.
        let idle = {
            let mut idle = lock(&self.0.idle);
            let held = match &input {
                EvalInput::Context { token, .. } => {
                    idle.iter().rposition(|s| s.bases.holds(*token))
                }
                EvalInput::Whole(_) => None,
            };
            match held {
                Some(i) => Some(idle.remove(i)),
                None => idle.pop(),
            }
        };
        let slot = match idle {
            Some(s) => s,
            None => Slot::start(
                self.0.next.fetch_add(1, Ordering::Relaxed),
                self.0.options.binary.clone(),
                Arc::downgrade(&self.0),
            )?,
        };
        let mut lease = Lease {
            pool: &self.0,
            slot: Some(slot),
        };
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            id,
            source: source.clone(),
            input,
            max_outputs,
            memory,
            deadline,
            reply,
        };
        let ended = || Failure::Unavailable("the worker's thread has ended".into());
        let answer = {
            let Some(slot) = lease.slot.as_ref() else {
                return Err(ended());
            };
            if slot.jobs.send(job).is_err() {
                Err(ended())
            } else {
                let mut armed = Armed {
                    slot,
                    job: id,
                    done: false,
                };
                // The worker is killed at the deadline by its slot's thread; this
                // side does not wait past it either (a worker may still be starting).
                let Ok(answer) = tokio::time::timeout_at(until, answer).await else {
                    return Err(Failure::Time);
                };
                armed.done = true;
                answer.map_err(|_| ended())
            }
        };
        match answer {
            Ok(result) => result,
            Err(gone) => {
                // A slot whose thread has ended is not lent again.
                lease.slot = None;
                Err(gone)
            }
        }
    }
}

#[cfg(test)]
async fn inline(source: &Arc<str>, input: EvalInput, max_outputs: u32) -> Result<Outputs, Failure> {
    let input = match input {
        EvalInput::Whole(v) => v,
        EvalInput::Context { base, vars, .. } => {
            let mut m = match base {
                Val::Obj(m) => (*m).clone(),
                _ => jaq_json::Map::default(),
            };
            m.insert(crate::flow::value::string("vars"), vars);
            Val::obj(m)
        }
    };
    let source = source.clone();
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let out = crate::flow::expr::Program::compile(&source)
                .map_err(|e| Failure::Eval(format!("{e:?}")))
                .and_then(|p| {
                    p.run(input, max_outputs as usize)
                        .map_err(|e| Failure::Eval(e.0))
                })
                .map(|(values, more)| (values.into_iter().map(|v| (v, 64)).collect(), more));
            let _ = tx.send(out);
        })
        .map_err(|e| Failure::Unavailable(e.to_string()))?;
    rx.await
        .unwrap_or_else(|_| Err(Failure::Crashed("the evaluation thread panicked".into())))
}
