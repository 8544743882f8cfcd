//! A slot of the pool: one worker process and the thread that drives it. The
//! thread starts the process (so the process's death signal is tied to a
//! thread that lives as long as the slot), runs the jobs sent to it one at a
//! time, starts a new process after one died or was killed, and retires the
//! slot when it has been idle for a while.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::process::{Bases, KillSwitch, Process};
use super::{Failure, Job, Pool};

/// A slot unused this long stops its worker process and ends.
pub const IDLE_RETIRE: Duration = Duration::from_secs(30);

pub struct Slot {
    pub id: u64,
    pub jobs: mpsc::Sender<Job>,
    pub switch: Arc<KillSwitch>,
    /// The execution contexts whose base its worker holds.
    pub bases: Arc<Bases>,
}

impl Slot {
    /// Starts the slot's thread (which starts its worker process).
    pub fn start(id: u64, binary: PathBuf, pool: Weak<Pool>) -> Result<Self, Failure> {
        let (jobs, rx) = mpsc::channel();
        let switch = Arc::new(KillSwitch::default());
        let bases = Arc::new(Bases::default());
        let (s, b) = (switch.clone(), bases.clone());
        std::thread::Builder::new()
            .name("flowgate-jq".into())
            .spawn(move || drive(id, &binary, &rx, &s, &b, &pool))
            .map_err(|e| Failure::Unavailable(format!("cannot start a worker thread: {e}")))?;
        Ok(Self {
            id,
            jobs,
            switch,
            bases,
        })
    }
}

fn drive(
    id: u64,
    binary: &std::path::Path,
    jobs: &mpsc::Receiver<Job>,
    switch: &Arc<KillSwitch>,
    bases: &Arc<Bases>,
    pool: &Weak<Pool>,
) {
    let mut process: Result<Process, super::process::StartError> =
        Process::start(binary, switch.clone(), bases.clone());
    loop {
        let job = match jobs.recv_timeout(IDLE_RETIRE) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => match pool.upgrade() {
                Some(p) if !p.retire(id) => continue,
                _ => break,
            },
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if job.reply.is_closed() {
            // Its evaluation was dropped while it waited here.
            continue;
        }
        if Instant::now() >= job.deadline {
            let _ = job.reply.send(Err(Failure::Time));
            continue;
        }
        if process.is_err() {
            // It could not start before: try again for this job.
            process = Process::start(binary, switch.clone(), bases.clone());
        }
        let (result, alive) = match &mut process {
            Ok(p) => match p.run(&job) {
                Ok(out) => (Ok(out), true),
                Err((failure, alive)) => (Err(failure), alive),
            },
            Err(why) => (Err(Failure::Unavailable(why.to_string())), true),
        };
        let _ = job.reply.send(result);
        let demoted = process.as_ref().is_ok_and(Process::demoted);
        if demoted && let Ok(p) = &mut process {
            p.stop();
        }
        if !alive || demoted {
            // Ready for the next job before it comes.
            process = Process::start(binary, switch.clone(), bases.clone());
        }
    }
    if let Ok(mut p) = process {
        p.stop();
    }
}
