//! The jq worker process: `flowgate __jq-worker <server pid>`, started by the
//! server with an empty environment. It reads requests on stdin and answers on
//! stdout, one at a time, until stdin closes.
//!
//! It evaluates on a thread with a large stack, counts its allocations against
//! each request's memory budget (an allocation past it ends the process), dies
//! with the thread of the server that started it (`PR_SET_PDEATHSIG`) and
//! writes no core dump. Its hello names the evaluation thread, whose priority
//! the server lowers when one evaluation runs long. A panic inside jaq becomes
//! an error reply.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use jaq_json::Val;

use super::alloc;
use super::wire::{self, Received};
use crate::flow::expr::Program;

/// The hidden subcommand that makes `flowgate` a worker.
pub const SUBCOMMAND: &str = "__jq-worker";
/// The evaluation thread's stack: deep recursion in a flow's jq ends in a
/// reported stack overflow, legitimate recursion has room.
const EVAL_STACK: usize = 64 << 20;
/// Compiled programs kept (compiling costs about a millisecond).
const PROGRAMS: usize = 256;
/// Bases of execution contexts kept, the oldest dropped first; the server keeps
/// the same account of them (`process::Bases`).
pub const BASES: usize = 4;

/// Runs the worker; `parent` is the server's pid (the worker exits if it is
/// already gone).
pub fn main(parent: Option<u32>) -> ExitCode {
    alloc::start_counting();
    // SAFETY: plain system calls with constant arguments; neither touches memory
    // of this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    }
    // The server may have died before the death signal was asked for.
    // SAFETY: getppid has no arguments and cannot fail.
    if parent.is_some_and(|p| unsafe { libc::getppid() } as u32 != p) {
        return ExitCode::FAILURE;
    }
    let served = std::thread::Builder::new()
        .name("jq".into())
        .stack_size(EVAL_STACK)
        .spawn(serve)
        .map(|h| h.join());
    match served {
        Ok(Ok(Ok(()))) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

fn serve() -> io::Result<()> {
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    // The evaluation thread's id: the server lowers its priority when an
    // evaluation runs long.
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() } as u64;
    let mut hello = wire::HELLO.to_vec();
    hello.extend_from_slice(&tid.to_le_bytes());
    write_frame(&mut output, &hello)?;
    let mut programs: HashMap<String, Arc<Program>> = HashMap::new();
    let mut bases: VecDeque<(u64, Val)> = VecDeque::new();
    loop {
        let mut len = [0u8; 8];
        match input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = usize::try_from(u64::from_le_bytes(len))
            .map_err(|_| io::Error::other("a frame too large for this machine"))?;
        let mut frame = vec![0u8; len];
        input.read_exact(&mut frame)?;
        let answer = answer(&frame, &mut programs, &mut bases);
        drop(frame);
        write_frame(&mut output, &answer)?;
    }
}

/// One request's reply frame.
fn answer(
    frame: &[u8],
    programs: &mut HashMap<String, Arc<Program>>,
    bases: &mut VecDeque<(u64, Val)>,
) -> Vec<u8> {
    let (source, max_outputs, memory, received) = match wire::read_request(frame) {
        Ok(r) => r,
        Err(e) => return wire::reply(Err(&format!("a bad request: {e}")), 0),
    };
    let input = match received {
        Received::Whole(v) => v,
        Received::Context { token, base, vars } => {
            if let Some(base) = base {
                bases.retain(|(t, _)| *t != token);
                if bases.len() == BASES {
                    bases.pop_front();
                }
                bases.push_back((token, base));
            }
            match bases.iter().find(|(t, _)| *t == token) {
                Some((_, base)) => with_vars(base, vars),
                None => return wire::need_base(),
            }
        }
    };
    let program = match programs.get(source) {
        Some(p) => p.clone(),
        None => match Program::compile(source) {
            Ok(p) => {
                if programs.len() >= PROGRAMS {
                    programs.clear();
                }
                let p = Arc::new(p);
                programs.insert(source.to_owned(), p.clone());
                p
            }
            Err(errs) => {
                let message: Vec<String> = errs.into_iter().map(|e| e.message).collect();
                return wire::reply(Err(&message.join("; ")), 0);
            }
        },
    };
    alloc::limit_to(Some(memory));
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        program.run(input, max_outputs as usize)
    }));
    // The reply is bounded by its own writer; the outputs are already counted.
    alloc::limit_to(None);
    let reply_room = memory.saturating_add(64);
    match ran {
        Ok(Ok((values, more))) => wire::reply(Ok((&values, more)), reply_room),
        Ok(Err(e)) => wire::reply(Err(&e.0), 0),
        Err(_) => wire::reply(Err("the expression's evaluation failed (a panic in jq)"), 0),
    }
}

/// An execution's context: its input document's fields and `vars`.
fn with_vars(base: &Val, vars: Val) -> Val {
    let mut m = match base {
        Val::Obj(m) => (**m).clone(),
        _ => jaq_json::Map::default(),
    };
    m.insert(crate::flow::value::string("vars"), vars);
    Val::obj(m)
}

fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    out.write_all(&(payload.len() as u64).to_le_bytes())?;
    out.write_all(payload)?;
    out.flush()
}
