//! An execution's budgets: the time it may run and the memory its values and
//! evaluations may take. Past either, the execution is stopped wherever it is
//! and fails with [`ExecError::Budget`](super::ExecError::Budget); it is not
//! retried (it would only run out again).

use std::time::{Duration, Instant};

/// What an execution may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub time: Duration,
    /// Bytes.
    pub memory: u64,
}

impl Default for Limits {
    /// The defaults of settings `flow_time_limit` and `flow_memory_limit`.
    fn default() -> Self {
        Self {
            time: Duration::from_secs(30),
            memory: 256 << 20,
        }
    }
}

/// Which budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetKind {
    Time,
    Memory,
}

impl BudgetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Time => "time",
            Self::Memory => "memory",
        }
    }
}

impl std::fmt::Display for BudgetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A size for people: `256 MiB`, `1.5 KiB`, `12 bytes`.
pub fn show_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut n = bytes as f64 / 1024.0;
    let mut unit = 0;
    while n >= 1024.0 && unit < UNITS.len() - 1 {
        n /= 1024.0;
        unit += 1;
    }
    if n.fract() == 0.0 {
        format!("{n} {}", UNITS[unit])
    } else {
        format!("{n:.1} {}", UNITS[unit])
    }
}

/// One execution's budget as it runs: the deadline, and the memory its
/// variables hold (each as the size of its value when it was made; names are
/// the flow's, few).
#[derive(Debug)]
pub(crate) struct Budget<'a> {
    pub limits: Limits,
    pub deadline: Instant,
    held: Vec<(&'a str, u64)>,
    total: u64,
}

impl<'a> Budget<'a> {
    pub fn start(limits: Limits) -> Self {
        Self {
            limits,
            deadline: Instant::now() + limits.time,
            held: Vec::new(),
            total: 0,
        }
    }

    /// The limit of a budget, for messages: `2s`, `64 MiB`.
    pub fn limit(&self, kind: BudgetKind) -> String {
        match kind {
            BudgetKind::Time => humantime::format_duration(self.limits.time).to_string(),
            BudgetKind::Memory => show_size(self.limits.memory),
        }
    }

    /// Variable `name` now holds a value of `size` bytes (plus `pending`, made
    /// but not yet assigned); false when that is over the memory budget.
    pub fn hold(&mut self, name: &'a str, size: u64, pending: u64) -> bool {
        match self.held.iter_mut().find(|(n, _)| *n == name) {
            Some((_, held)) => {
                self.total = self.total - *held + size;
                *held = size;
            }
            None => {
                self.total += size;
                self.held.push((name, size));
            }
        }
        self.fits(pending)
    }

    /// Whether `pending` more bytes fit beside what the variables hold.
    pub fn fits(&self, pending: u64) -> bool {
        self.total.saturating_add(pending) <= self.limits.memory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(show_size(12), "12 bytes");
        assert_eq!(show_size(256 << 20), "256 MiB");
        assert_eq!(show_size(1536), "1.5 KiB");
        assert_eq!(show_size(3 << 30), "3 GiB");
    }

    #[test]
    fn variables_count_once_each() {
        let mut b = Budget::start(Limits {
            time: Duration::from_secs(1),
            memory: 100,
        });
        assert!(b.hold("a", 60, 0));
        assert!(b.hold("a", 70, 0), "replacing a value frees the old one");
        assert!(!b.hold("b", 40, 0));
        assert!(b.hold("b", 30, 0));
        assert!(!b.fits(1));
    }
}
