//! One jq worker process seen from the server: starting it, sending it a
//! request and reading its answer before a deadline (its pipes are
//! non-blocking and waited on with `poll`), killing it, and telling why it died.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::wire::{self, Input, Reply, Request};
use super::{EvalInput, Failure, Job, Outputs};
use crate::flow::value::TooBig;

/// How long a new worker may take to say hello.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// What a reply may take beyond the evaluation's memory (framing, error text).
const REPLY_SLACK: u64 = 64 << 10;
/// The end of a worker's stderr kept to tell why it died.
const STDERR_TAIL: usize = 4096;
/// An evaluation that has used this much CPU is lowered to the least priority
/// (nice 19): fresh evaluations and the server come first. CPU time, not time
/// waited: on a busy machine a short evaluation may wait long for a core.
const DEMOTE_AFTER: Duration = Duration::from_millis(50);
/// How often a running evaluation's CPU time is looked at.
const DEMOTE_CHECK: Duration = Duration::from_millis(20);
const DEMOTED_NICE: i32 = 19;

/// Lets other threads kill the worker while it runs a given job, and only then
/// (never a process reaped already, whose pid may belong to another by now).
#[derive(Default)]
pub struct KillSwitch(Mutex<Armed>);

#[derive(Default)]
struct Armed {
    pid: Option<u32>,
    job: u64,
}

impl KillSwitch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Armed> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kills the worker if it is running `job`.
    pub fn kill(&self, job: u64) {
        let a = self.lock();
        if a.job == job
            && let Some(pid) = a.pid
        {
            // SAFETY: `pid` is our child and not yet reaped (the driver clears it
            // under this lock before it waits for the child).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }

    fn running(&self, job: u64) {
        self.lock().job = job;
    }
}

/// The execution contexts whose base a worker holds, oldest first: the same
/// account the worker keeps (`worker::BASES` of them). Shared with the pool,
/// which lends a slot to the execution whose base it holds when it can.
#[derive(Default)]
pub struct Bases(Mutex<std::collections::VecDeque<u64>>);

impl Bases {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn holds(&self, token: u64) -> bool {
        self.lock().contains(&token)
    }

    fn hold(&self, token: u64) {
        let mut b = self.lock();
        b.retain(|t| *t != token);
        if b.len() == super::worker::BASES {
            b.pop_front();
        }
        b.push_back(token);
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

pub struct Process {
    bases: Arc<Bases>,
    /// The worker's evaluation thread (lowered when an evaluation runs long).
    eval_tid: u64,
    /// Its priority was lowered: the worker is replaced after its job (raising
    /// it again needs a privilege).
    demoted: bool,
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    tail: Arc<Mutex<Vec<u8>>>,
    drain: Option<JoinHandle<()>>,
    switch: Arc<KillSwitch>,
}

enum IoEnd {
    Timeout,
    Closed,
    /// The worker announced a frame longer than allowed (and was stopped).
    TooLong,
}

/// Why a worker process did not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    #[error("cannot start `{}`: {error}", binary.display())]
    Spawn {
        binary: std::path::PathBuf,
        #[source]
        error: Arc<io::Error>,
    },
    #[error("the worker's pipes are missing")]
    Pipes,
    #[error("`{}` is not a flowgate jq worker (it answered something else)", .0.display())]
    NotAWorker(std::path::PathBuf),
    #[error("`{}` did not start within {START_TIMEOUT:?}", .0.display())]
    Slow(std::path::PathBuf),
    /// It ended before its hello: how it died.
    #[error("`{}` is not a flowgate jq worker: {why:?}", binary.display())]
    Died {
        binary: std::path::PathBuf,
        why: Failure,
    },
}

impl Process {
    /// Starts `binary` as a worker and waits for its hello; it holds no base.
    pub fn start(
        binary: &Path,
        switch: Arc<KillSwitch>,
        bases: Arc<Bases>,
    ) -> Result<Self, StartError> {
        bases.clear();
        let mut child = Command::new(binary)
            .arg(super::worker::SUBCOMMAND)
            .arg(std::process::id().to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| StartError::Spawn {
                binary: binary.to_owned(),
                error: Arc::new(e),
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(StartError::Pipes);
        };
        switch.lock().pid = Some(child.id());
        let tail = Arc::new(Mutex::new(Vec::new()));
        let drain = {
            let tail = tail.clone();
            std::thread::Builder::new()
                .name("flowgate-jq-stderr".into())
                .spawn(move || drain(stderr, &tail))
                .ok()
        };
        let mut p = Self {
            bases,
            eval_tid: 0,
            demoted: false,
            child,
            stdin,
            stdout,
            tail,
            drain,
            switch,
        };
        for fd in [p.stdin.as_raw_fd(), p.stdout.as_raw_fd()] {
            // SAFETY: fcntl on descriptors this process owns.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        match p.read_frame(64, Instant::now() + START_TIMEOUT) {
            Ok(hello) if hello.len() == wire::HELLO.len() + 8 && hello.starts_with(wire::HELLO) => {
                let mut tid = [0u8; 8];
                tid.copy_from_slice(&hello[wire::HELLO.len()..]);
                p.eval_tid = u64::from_le_bytes(tid);
                Ok(p)
            }
            Ok(_) => Err(StartError::NotAWorker(binary.to_owned())),
            Err(IoEnd::Timeout) => {
                p.stop();
                Err(StartError::Slow(binary.to_owned()))
            }
            Err(IoEnd::Closed | IoEnd::TooLong) => Err(StartError::Died {
                binary: binary.to_owned(),
                why: p.died(),
            }),
        }
    }

    /// Whether the worker should be replaced after its job (its priority was
    /// lowered during a long evaluation).
    pub fn demoted(&self) -> bool {
        self.demoted
    }

    /// Runs one job. `Err((failure, alive))`: whether the process survived.
    pub fn run(&mut self, job: &Job) -> Result<Outputs, (Failure, bool)> {
        self.switch.running(job.id);
        let result = self.run_job(job);
        self.switch.running(0);
        result
    }

    fn run_job(&mut self, job: &Job) -> Result<Outputs, (Failure, bool)> {
        let token = match &job.input {
            EvalInput::Whole(_) => None,
            EvalInput::Context { token, .. } => Some(*token),
        };
        // An execution's base goes to a worker once; if the worker lost it after
        // all, it says so and gets it again.
        let mut with_base = token.is_some_and(|t| !self.bases.holds(t));
        loop {
            let input = match &job.input {
                EvalInput::Whole(v) => Input::Whole(v),
                EvalInput::Context { token, base, vars } => Input::Context {
                    token: *token,
                    base: with_base.then_some(base),
                    vars,
                },
            };
            let request = Request {
                source: &job.source,
                max_outputs: job.max_outputs,
                memory: job.memory,
                input,
            };
            let frame =
                wire::request(&request, Some(job.deadline)).map_err(|e| (e.into(), true))?;
            let reply = self.exchange(&frame, job.memory, job.deadline)?;
            if let (Some(t), true) = (token, with_base) {
                self.bases.hold(t);
            }
            return match reply {
                Reply::Values(values, more) => Ok((values, more)),
                Reply::Failed(message) => Err((Failure::Eval(message), true)),
                Reply::TooBig(why) => Err((why.into(), true)),
                Reply::NeedBase if !with_base => {
                    with_base = true;
                    continue;
                }
                Reply::NeedBase => {
                    self.stop();
                    Err((
                        Failure::Crashed("the worker lost its context".into()),
                        false,
                    ))
                }
            };
        }
    }

    fn exchange(
        &mut self,
        frame: &[u8],
        memory: u64,
        deadline: Instant,
    ) -> Result<Reply, (Failure, bool)> {
        let sent = self
            .write_all(&(frame.len() as u64).to_le_bytes(), deadline)
            .and_then(|()| self.write_all(frame, deadline));
        let cpu_at_start = self.cpu_time();
        let answer = sent.and_then(|()| {
            self.read_frame_demoting(memory.saturating_add(REPLY_SLACK), deadline, cpu_at_start)
        });
        let reply = match answer {
            Ok(reply) => reply,
            Err(IoEnd::Timeout) => {
                self.stop();
                return Err((Failure::Time, false));
            }
            Err(IoEnd::Closed) => return Err((self.died(), false)),
            Err(IoEnd::TooLong) => return Err((Failure::Memory, false)),
        };
        match wire::read_reply(&reply) {
            Ok(reply) => Ok(reply),
            Err(e) => {
                self.stop();
                Err((
                    Failure::Crashed(format!("the worker's answer is unreadable: {e}")),
                    false,
                ))
            }
        }
    }

    fn write_all(&mut self, mut buf: &[u8], deadline: Instant) -> Result<(), IoEnd> {
        while !buf.is_empty() {
            match self.stdin.write(buf) {
                Ok(0) => return Err(IoEnd::Closed),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(self.stdin.as_raw_fd(), libc::POLLOUT, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(IoEnd::Closed),
            }
        }
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), IoEnd> {
        let mut done = 0;
        while done < buf.len() {
            match self.stdout.read(&mut buf[done..]) {
                Ok(0) => return Err(IoEnd::Closed),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(self.stdout.as_raw_fd(), libc::POLLIN, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(IoEnd::Closed),
            }
        }
        Ok(())
    }

    /// As `read_frame`, lowering the worker's priority once the evaluation has
    /// used `DEMOTE_AFTER` of CPU since `cpu_at_start` (before its answer began).
    fn read_frame_demoting(
        &mut self,
        max: u64,
        deadline: Instant,
        cpu_at_start: Option<Duration>,
    ) -> Result<Vec<u8>, IoEnd> {
        if let Some(start) = cpu_at_start {
            loop {
                let next = (Instant::now() + DEMOTE_CHECK).min(deadline);
                match wait(self.stdout.as_raw_fd(), libc::POLLIN, next) {
                    Err(IoEnd::Timeout) if next < deadline => {}
                    _ => break,
                }
                if self
                    .cpu_time()
                    .is_some_and(|now| now >= start + DEMOTE_AFTER)
                {
                    self.demote();
                    break;
                }
            }
        }
        self.read_frame(max, deadline)
    }

    /// The CPU time the worker process has used.
    fn cpu_time(&self) -> Option<Duration> {
        let mut clock: libc::clockid_t = 0;
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: both calls write only to the locals passed; the pid is our
        // child's (alive while we hold it).
        let ok = unsafe {
            libc::clock_getcpuclockid(self.child.id() as libc::pid_t, &mut clock) == 0
                && libc::clock_gettime(clock, &mut t) == 0
        };
        ok.then(|| Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
    }

    fn demote(&mut self) {
        if self.eval_tid == 0 || self.demoted {
            return;
        }
        // SAFETY: setpriority on the worker's own thread, by id; raising a nice
        // value needs no privilege.
        unsafe {
            libc::setpriority(
                libc::PRIO_PROCESS,
                self.eval_tid as libc::id_t,
                DEMOTED_NICE,
            )
        };
        self.demoted = true;
    }

    /// A frame of at most `max` bytes; a longer one ends the worker.
    fn read_frame(&mut self, max: u64, deadline: Instant) -> Result<Vec<u8>, IoEnd> {
        let mut len = [0u8; 8];
        self.read_exact(&mut len, deadline)?;
        let len = u64::from_le_bytes(len);
        if len > max {
            self.stop();
            return Err(IoEnd::TooLong);
        }
        let mut frame = vec![0u8; len as usize];
        self.read_exact(&mut frame, deadline)?;
        Ok(frame)
    }

    /// Kills the worker (if alive) and reaps it.
    pub fn stop(&mut self) {
        self.switch.lock().pid = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
    }

    /// Why the worker ended (it closed its pipe): from its exit and the last
    /// lines it wrote to stderr.
    fn died(&mut self) -> Failure {
        self.switch.lock().pid = None;
        let _ = self.child.kill();
        let status = self.child.wait();
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&tail);
        if text.contains("memory allocation of") {
            return Failure::Memory;
        }
        if text.contains("has overflowed its stack") {
            return Failure::Crashed(
                "the expression recursed too deep: its evaluation overflowed the stack".into(),
            );
        }
        let how = match status {
            Ok(s) => match std::os::unix::process::ExitStatusExt::signal(&s) {
                Some(sig) => format!("signal {sig}"),
                None => format!("exit status {}", s.code().unwrap_or(-1)),
            },
            Err(e) => e.to_string(),
        };
        Failure::Crashed(format!("the expression's worker process ended ({how})"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.drain.is_some() {
            self.stop();
        }
    }
}

impl From<TooBig> for Failure {
    fn from(why: TooBig) -> Self {
        match why {
            TooBig::Depth => Failure::TooDeep,
            TooBig::Size => Failure::Memory,
            TooBig::Time => Failure::Time,
        }
    }
}

/// Waits until `fd` is ready for `events` (or has an error, which the next
/// read or write reports), at most until `deadline`.
fn wait(fd: i32, events: libc::c_short, deadline: Instant) -> Result<(), IoEnd> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(IoEnd::Timeout);
        }
        let mut p = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let ms = left
            .as_nanos()
            .div_ceil(1_000_000)
            .clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one pollfd on the stack, counted as one.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n > 0 || (n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted) {
            return Ok(());
        }
        // Timed out (perhaps a little early) or interrupted: look at the clock again.
    }
}

/// Reads a worker's stderr to its end: each line goes to the log (jq's `stderr`
/// and panics land here), the last bytes are kept to tell why it died.
fn drain(mut stderr: std::process::ChildStderr, tail: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let chunk = &buf[..n];
                for line in String::from_utf8_lossy(chunk).lines() {
                    tracing::debug!(target: "flowgate::jq", "{line}");
                }
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                t.extend_from_slice(chunk);
                if t.len() > STDERR_TAIL {
                    let cut = t.len() - STDERR_TAIL;
                    t.drain(..cut);
                }
            }
        }
    }
}
