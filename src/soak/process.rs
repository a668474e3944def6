//! What the process holds, from `/proc/self`: descriptors (and how many are
//! sockets), threads, locked memory (`VmLck`), page tables (`VmPTE`),
//! resident memory (`VmRSS`, peak `VmHWM`). The soak takes one snapshot
//! before it starts and compares one taken after everything it made is
//! gone.

use std::time::{Duration, Instant};

/// One reading of `/proc/self`. Sizes in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcSnapshot {
    /// Open descriptors (`/proc/self/fd`).
    pub fds: usize,
    /// Of which sockets.
    pub sockets: usize,
    /// Threads (`/proc/self/task`, io_uring's io-wq workers included).
    pub threads: usize,
    /// Memory locked resident (`VmLck`).
    pub locked: u64,
    /// Page-table memory (`VmPTE`).
    pub page_tables: u64,
    /// Resident memory now (`VmRSS`).
    pub rss: u64,
    /// Peak resident memory (`VmHWM`).
    pub peak_rss: u64,
}

/// `field:   N kB` of `/proc/self/status`, in bytes.
fn status_field(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib << 10)
}

impl ProcSnapshot {
    /// Reads `/proc/self` now.
    pub fn now() -> ProcSnapshot {
        let mut fds = 0usize;
        let mut sockets = 0;
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            for e in dir.flatten() {
                fds += 1;
                if std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")) {
                    sockets += 1;
                }
            }
        }
        // The read_dir's own descriptor was counted.
        fds = fds.saturating_sub(1);
        let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        ProcSnapshot {
            fds,
            sockets,
            threads,
            locked: status_field(&status, "VmLck"),
            page_tables: status_field(&status, "VmPTE"),
            rss: status_field(&status, "VmRSS"),
            peak_rss: status_field(&status, "VmHWM"),
        }
    }

    /// Waits up to `wait` for the process to hold no more than `base` of
    /// each resource (page tables: `base` plus `pte_slack`), and returns the
    /// last reading with what is still over.
    pub fn settle(base: &ProcSnapshot, pte_slack: u64, wait: Duration) -> (ProcSnapshot, Vec<String>) {
        let start = Instant::now();
        loop {
            let now = ProcSnapshot::now();
            let mut over = Vec::new();
            let mut check = |what: &str, now: u64, base: u64| {
                if now > base {
                    over.push(format!("{what}: {now} now, {base} before the soak"));
                }
            };
            check("descriptors", now.fds as u64, base.fds as u64);
            check("sockets", now.sockets as u64, base.sockets as u64);
            check("VmLck bytes", now.locked, base.locked);
            check("VmPTE bytes", now.page_tables, base.page_tables + pte_slack);
            if now.threads > base.threads {
                over.push(format!(
                    "threads: {} now, {} before the soak ({})",
                    now.threads,
                    base.threads,
                    thread_names().join(", ")
                ));
            }
            if over.is_empty() || start.elapsed() >= wait {
                return (now, over);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The names (`comm`) of the process's threads now.
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}
