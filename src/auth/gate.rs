//! Where argon2 work is admitted, for API keys, Basic passwords and admin tokens
//! alike, so that a flood of wrong credentials cannot delay valid callers:
//!
//! - a fixed set of threads (`key_verify_parallel`) runs verifications, never
//!   the request threads or tokio's blocking pool;
//! - waiting work is queued per client address and served round-robin across
//!   addresses, so one address with many connections gets one turn in N, not
//!   the whole pool; the queue is bounded per address and in all (beyond it:
//!   503 `auth_busy`, no work);
//! - each address has a budget of failed verifications (`auth_failure_budget`
//!   per minute, a token bucket); once spent its unknown credentials get 429
//!   with `Retry-After` and no work. Credentials already verified (cached) are
//!   answered whatever the budget.
//!
//! IPv6 addresses count by their /64, the block one host is usually given.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Verifications waiting for one address, at most.
const PER_CLIENT_QUEUE: usize = 4;
/// Verifications waiting in all, at most.
const QUEUE: usize = 256;
/// Addresses whose budgets are remembered before full buckets are forgotten
/// (and then again each time the count doubles, so that many addresses cost
/// one sweep per doubling, not one per request).
const BUDGETS_KEPT: usize = 10_000;
/// A refusal is answered after this (or its `Retry-After`, when shorter): a
/// client that retries at once cannot spin on cheap answers and take the
/// request threads from everyone else.
const REFUSAL_DELAY: Duration = Duration::from_secs(1);

/// Who the budget and the queue count: an IPv4 address, an IPv6 /64, or
/// "unknown" (no peer address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(Option<IpAddr>);

impl Client {
    /// This process itself (`flowgate run`, tests).
    pub const LOCAL: Self = Self(Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)));

    pub fn new(ip: Option<IpAddr>) -> Self {
        Self(ip.map(|ip| match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let s = v6.segments();
                    IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
            v4 => v4,
        }))
    }
}

/// Why no verification was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address spent its budget of failures: retry after this many seconds.
    Throttled { retry_after: u64 },
    /// The queue is full.
    Busy,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    /// Each address's jobs, and whether the address was clean when each came.
    waiting: HashMap<Client, VecDeque<(Job, bool)>>,
    /// Addresses without recent failures that have work waiting, in turn order.
    clean: VecDeque<Client>,
    /// The others, in turn order.
    turns: VecDeque<Client>,
    total: usize,
    stopped: bool,
}

impl Queue {
    /// The next job: clean addresses first; `reserved` threads take no other.
    fn next(&mut self, reserved: bool) -> Option<Job> {
        let client = match self.clean.pop_front() {
            Some(c) => c,
            None if reserved => return None,
            None => self.turns.pop_front()?,
        };
        let jobs = self.waiting.get_mut(&client)?;
        let job = jobs.pop_front().map(|(job, _)| job);
        match jobs.front() {
            None => {
                self.waiting.remove(&client);
            }
            Some((_, true)) => self.clean.push_back(client),
            Some((_, false)) => self.turns.push_back(client),
        }
        self.total -= usize::from(job.is_some());
        job
    }
}

#[derive(Default)]
struct Budgets {
    by_client: HashMap<Client, Bucket>,
    /// How many entries start the next sweep.
    sweep_at: usize,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// When a verification for the address last failed.
    failed: Option<Instant>,
}

/// An address with no failed verification for this long is clean again.
const CLEAN_AFTER: Duration = Duration::from_secs(60);

/// What a verification cache counts, for `/_metrics` and tests.
#[derive(Debug, Default)]
pub struct KeyStats {
    pub verifications: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
}

/// The shared pool, queue and budgets.
pub struct Gate {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    budgets: Mutex<Budgets>,
    /// Failures allowed per minute and address.
    budget: f64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Gate {
    /// Starts `threads` verification threads. With two or more, one is kept
    /// for addresses without recent failures: a flood from addresses that keep
    /// failing shares the others, and a new valid caller finds a thread free.
    pub fn new(threads: usize, failures_per_minute: u32) -> Arc<Self> {
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let threads = threads.max(1);
        for i in 0..threads {
            let reserved = i == 0 && threads > 1;
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("flowgate-argon2-{i}"))
                .spawn(move || {
                    if !reserved {
                        lower_priority();
                    }
                    loop {
                        let job = {
                            let (m, ready) = &*queue;
                            let mut q = lock(m);
                            loop {
                                if q.stopped {
                                    return;
                                }
                                if let Some(job) = q.next(reserved) {
                                    break job;
                                }
                                q = ready.wait(q).unwrap_or_else(|p| p.into_inner());
                            }
                        };
                        job();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a key verification thread");
            }
        }
        Arc::new(Self {
            queue,
            budgets: Mutex::new(Budgets {
                by_client: HashMap::new(),
                sweep_at: BUDGETS_KEPT,
            }),
            budget: f64::from(failures_per_minute.max(1)),
        })
    }

    /// Whether `client` may cause another verification now. One failure is
    /// reserved from its budget until the verification ends ([`Gate::matched`]
    /// gives it back), so that verifications already queued cannot overdraw it.
    fn admit(&self, client: Client) -> Result<bool, Refused> {
        let mut guard = lock(&self.budgets);
        let Budgets {
            by_client: budgets,
            sweep_at,
        } = &mut *guard;
        if budgets.len() >= *sweep_at {
            // Full buckets say nothing a new one would not.
            let now = Instant::now();
            let (budget, per_minute) = (self.budget, self.budget / 60.0);
            budgets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_minute < budget
            });
            *sweep_at = BUDGETS_KEPT.max(2 * budgets.len());
        }
        let budget = self.budget;
        let b = budgets.entry(client).or_insert(Bucket {
            tokens: budget,
            at: Instant::now(),
            failed: None,
        });
        let tokens = self.refill(b);
        if tokens >= 1.0 {
            let clean = b.failed.is_none_or(|at| at.elapsed() > CLEAN_AFTER);
            b.tokens -= 1.0;
            return Ok(clean);
        }
        let per_second = self.budget / 60.0;
        let retry_after = ((1.0 - tokens) / per_second).ceil().max(1.0) as u64;
        Err(Refused::Throttled { retry_after })
    }

    /// A verification admitted for `client` matched, or was never made: its
    /// reserved failure goes back to the budget.
    pub fn matched(&self, client: Client) {
        if let Some(b) = lock(&self.budgets).by_client.get_mut(&client) {
            b.tokens = (b.tokens + 1.0).min(self.budget);
        }
    }

    /// A verification for `client` failed: its reserved failure stays spent,
    /// and the address waits its turn with the others that fail.
    pub fn failed(&self, client: Client) {
        if let Some(b) = lock(&self.budgets).by_client.get_mut(&client) {
            b.failed = Some(Instant::now());
        }
    }

    fn refill(&self, b: &mut Bucket) -> f64 {
        let now = Instant::now();
        let earned = now.duration_since(b.at).as_secs_f64() * self.budget / 60.0;
        b.tokens = (b.tokens + earned).min(self.budget);
        b.at = now;
        b.tokens
    }

    /// Runs `work` on a verification thread in `client`'s turn: its answer, or
    /// why it was not run. The run counts as a failure against `client`'s
    /// budget unless the caller says it [`Gate::matched`]; the caller says
    /// [`Gate::failed`] otherwise.
    pub async fn run<T: Send + 'static>(
        &self,
        client: Client,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Refused> {
        match self.queue_work(client, work) {
            Ok(rx) => rx.await.map_err(|_| Refused::Busy),
            Err(refused) => {
                let wait = match refused {
                    Refused::Throttled { retry_after } => {
                        REFUSAL_DELAY.min(Duration::from_secs(retry_after))
                    }
                    Refused::Busy => REFUSAL_DELAY,
                };
                tokio::time::sleep(wait).await;
                Err(refused)
            }
        }
    }

    fn queue_work<T: Send + 'static>(
        &self,
        client: Client,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<T>, Refused> {
        let clean = self.admit(client)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let (m, ready) = &*self.queue;
            let mut q = lock(m);
            let mine = q.waiting.get(&client).map_or(0, VecDeque::len);
            if q.total >= QUEUE || mine >= PER_CLIENT_QUEUE {
                drop(q);
                self.matched(client);
                return Err(Refused::Busy);
            }
            if mine == 0 {
                if clean {
                    q.clean.push_back(client);
                } else {
                    q.turns.push_back(client);
                }
            }
            q.waiting.entry(client).or_default().push_back((
                Box::new(move || {
                    let _ = tx.send(work());
                }),
                clean,
            ));
            q.total += 1;
            // Any thread may be the one that can take it.
            ready.notify_all();
        }
        Ok(rx)
    }

    /// A cache's miss: checks `secret` against each candidate's hash in
    /// `client`'s turn, the owner of the first that matches. Counts the miss and
    /// the hashes tried in `stats`, and tells the gate whether `client` matched.
    pub async fn find_hash<T: Clone + Send + Sync + 'static>(
        &self,
        client: Client,
        candidates: Arc<[(T, String)]>,
        secret: &str,
        stats: &KeyStats,
    ) -> Result<Option<T>, Refused> {
        stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        let secret = secret.to_owned();
        let tried = candidates.len() as u64;
        let found = self
            .run(client, move || {
                candidates
                    .iter()
                    .find(|(_, phc)| crate::auth::keys::verify(&secret, phc))
                    .map(|(owner, _)| owner.clone())
            })
            .await?;
        stats.verifications.fetch_add(tried, Ordering::Relaxed);
        if found.is_some() {
            self.matched(client);
        } else {
            self.failed(client);
        }
        Ok(found)
    }
}

/// Verification threads for addresses that keep failing yield the CPU to
/// request threads: on a small machine argon2 would otherwise take every core
/// while a flood lasts, and cached credentials would wait behind it. (Linux
/// gives each thread its own nice value.)
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its arguments; `0` is the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let (m, ready) = &*self.queue;
        lock(m).stopped = true;
        ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Client {
        Client::new(Some(s.parse().unwrap()))
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2::5"), ip("2001:db8:1:2:ffff::1"));
        assert_ne!(ip("2001:db8:1:2::5"), ip("2001:db8:1:3::5"));
        assert_eq!(ip("::ffff:10.0.0.1"), ip("10.0.0.1"));
    }

    #[tokio::test]
    async fn a_spent_budget_refuses_without_work_and_refills() {
        let gate = Gate::new(1, 3);
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            assert_eq!(gate.run(a, || 1).await, Ok(1));
            gate.failed(a);
        }
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = ran.clone();
        let refused = gate
            .run(a, move || {
                r.store(true, std::sync::atomic::Ordering::SeqCst)
            })
            .await;
        // 3 a minute: one more in 20 s.
        assert_eq!(refused, Err(Refused::Throttled { retry_after: 20 }));
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(gate.run(ip("10.0.0.2"), || 2).await, Ok(2));
        gate.matched(ip("10.0.0.2"));
        // Refilled (as if 20 s had passed).
        if let Some(b) = lock(&gate.budgets).by_client.get_mut(&a) {
            b.at -= Duration::from_secs(21);
        }
        assert_eq!(gate.run(a, || 3).await, Ok(3));
    }

    #[test]
    fn many_addresses_are_forgotten_once_their_budgets_are_full() {
        let gate = Gate::new(1, 20);
        for i in 0..BUDGETS_KEPT as u32 {
            let c = Client::new(Some(IpAddr::V4(i.into())));
            assert!(gate.admit(c).is_ok());
            if i % 2 == 0 {
                gate.matched(c);
            }
        }
        assert_eq!(lock(&gate.budgets).by_client.len(), BUDGETS_KEPT);
        assert!(gate.admit(ip("10.9.9.9")).is_ok());
        let kept = lock(&gate.budgets);
        // The full half went; the next sweep waits for twice what is left.
        assert_eq!(kept.by_client.len(), BUDGETS_KEPT / 2 + 1);
        assert_eq!(kept.sweep_at, BUDGETS_KEPT);
    }

    #[tokio::test]
    async fn addresses_take_turns_and_queues_are_bounded() {
        let gate = Gate::new(1, 1000);
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let order = Arc::new(Mutex::new(Vec::new()));
        // The one thread is held, so what follows queues.
        let g = gate.clone();
        let first = tokio::spawn(async move {
            g.run(ip("10.0.0.9"), move || {
                let _ = hold_rx.recv();
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut waiting = Vec::new();
        for (who, n) in [("10.0.0.1", 4), ("10.0.0.2", 1)] {
            for i in 0..n {
                let (g, order) = (gate.clone(), order.clone());
                waiting.push(tokio::spawn(async move {
                    g.run(ip(who), move || lock(&order).push((who, i))).await
                }));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        // A fifth for 10.0.0.1 finds its queue full.
        assert_eq!(gate.run(ip("10.0.0.1"), || ()).await, Err(Refused::Busy));
        hold_tx.send(()).unwrap();
        first.await.unwrap().unwrap();
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        let order = lock(&order).clone();
        // 10.0.0.2 queued last but ran second: one turn each.
        assert_eq!(order[0], ("10.0.0.1", 0));
        assert_eq!(order[1], ("10.0.0.2", 0));
    }
}
