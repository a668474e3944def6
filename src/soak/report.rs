//! The soak's figures and verdict: [`SoakReport`], printed with `Display`
//! and checked with [`SoakReport::check`].

use super::faults::Fault;
use super::process::ProcSnapshot;
use runtime_mm::PoolStats;
use std::fmt;
use std::time::Duration;

/// Injected and survived counts of one fault kind.
#[derive(Debug, Clone)]
pub struct FaultLine {
    /// The kind.
    pub fault: Fault,
    /// Times injected.
    pub injected: u64,
    /// Times survived (everything checked afterwards held).
    pub survived: u64,
}

/// Everything a soak run measured and found.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// Tenants configured (live at once, except while one restarts).
    pub tenants: usize,
    /// Most tenants live at once.
    pub peak_live: usize,
    /// The tenants' I/O backend, as configured.
    pub backend: host_api::BackendKind,
    /// How long the schedules ran.
    pub elapsed: Duration,
    /// Completed operations per kind, with the bytes they moved.
    pub ops: Vec<(&'static str, u64, u64)>,
    /// File transfers on direct (`O_DIRECT`) reopens.
    pub direct_transfers: u64,
    /// Bytes read from files and checked.
    pub bytes_read: u64,
    /// Bytes written to files and recorded.
    pub bytes_written: u64,
    /// Bytes sent over loopback TCP between tenants (each also received
    /// and checked).
    pub net_bytes: u64,
    /// Faults of each kind.
    pub faults: Vec<FaultLine>,
    /// Instantiations the pool refused (each retried until it succeeded).
    pub pool_refusals: u64,
    /// Pool faults where a slot came free before the hogged tenant's first
    /// attempt (injected and survived, but not refused).
    pub hog_races: u64,
    /// Reads that straddled a truncation and returned bytes past the new
    /// end that were neither the old ones nor zeros (content POSIX leaves
    /// undefined; their length and the bytes below the new end are checked).
    pub cut_races: u64,
    /// Successful instantiations, and their p50 and p99 latency.
    pub instantiations: u64,
    /// p50 instantiation latency.
    pub inst_p50: Duration,
    /// p99 instantiation latency.
    pub inst_p99: Duration,
    /// File bytes per second through the guests (reads and writes).
    pub throughput: f64,
    /// File bytes per second of a native pread/pwrite loop on the same
    /// files after the soak (same sizes, same mix, `worker_threads`
    /// threads, FNV-1a of what it reads).
    pub native_throughput: f64,
    /// `/proc/self` before the soak.
    pub before: ProcSnapshot,
    /// Resident memory once the engine was built and the guest compiled,
    /// before the first tenant.
    pub rss_before_tenants: u64,
    /// Peak of resident memory, locked memory and page tables during the
    /// soak (sampled), and peak RSS (`VmHWM`).
    pub peak: ProcSnapshot,
    /// Largest page table of a tenant's memory seen at its retirement.
    pub peak_mm_page_table: usize,
    /// `/proc/self` after everything was dropped and the runtime shut
    /// down.
    pub after: ProcSnapshot,
    /// The pool at the end, once every tenant was gone.
    pub pool: PoolStats,
    /// Every failed check: violations during the run, leaks at the end.
    pub problems: Vec<String>,
    /// Violations found during the run (`problems` keeps the first 100).
    pub violations: u64,
    /// The configured bound on peak RSS growth.
    pub rss_bound: u64,
}

impl SoakReport {
    /// RSS growth per peak live tenant, bytes.
    pub fn per_tenant_overhead(&self) -> u64 {
        self.peak
            .peak_rss
            .saturating_sub(self.rss_before_tenants)
            .checked_div(self.peak_live as u64)
            .unwrap_or(0)
    }

    /// The soak's verdict: every problem found, empty if nothing was lost
    /// or leaked. With `every_fault`, a fault kind never injected is one.
    pub fn check(&self, every_fault: bool) -> Result<(), Vec<String>> {
        let mut p = self.problems.clone();
        for f in &self.faults {
            if f.survived != f.injected {
                p.push(format!(
                    "{}: {} injected, {} survived",
                    f.fault.name(),
                    f.injected,
                    f.survived
                ));
            }
            if every_fault && f.injected == 0 {
                p.push(format!("{}: never injected", f.fault.name()));
            }
        }
        if every_fault && self.pool_refusals == 0 {
            p.push("the pool never refused an instantiation".into());
        }
        if self.peak_live < self.tenants {
            p.push(format!(
                "at most {} tenants were live at once, not {}",
                self.peak_live, self.tenants
            ));
        }
        let growth = self.peak.peak_rss.saturating_sub(self.before.rss);
        if growth > self.rss_bound {
            p.push(format!(
                "peak RSS grew by {} MiB, over the bound of {} MiB",
                growth >> 20,
                self.rss_bound >> 20
            ));
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(p)
        }
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "soak: {} tenants configured, {} live at peak, {:.1} s, {:?} I/O backend, peak {} threads",
            self.tenants,
            self.peak_live,
            self.elapsed.as_secs_f64(),
            self.backend,
            self.peak.threads
        )?;
        writeln!(f, "operations:")?;
        for (name, n, bytes) in self.ops.iter().filter(|o| o.1 > 0) {
            if *bytes > 0 {
                writeln!(f, "  {name:<20} {n:>10}  {:>10.1} MiB", mib(*bytes))?;
            } else {
                writeln!(f, "  {name:<20} {n:>10}")?;
            }
        }
        writeln!(
            f,
            "bytes: {:.1} MiB read and checked, {:.1} MiB written and recorded ({} transfers direct), \
             {:.1} MiB over TCP",
            mib(self.bytes_read),
            mib(self.bytes_written),
            self.direct_transfers,
            mib(self.net_bytes)
        )?;
        writeln!(f, "faults (injected / survived):")?;
        for l in &self.faults {
            writeln!(f, "  {:<24} {:>7} / {:<7}", l.fault.name(), l.injected, l.survived)?;
        }
        writeln!(
            f,
            "  pool refusals: {} instantiations refused and retried ({} hog races)",
            self.pool_refusals, self.hog_races
        )?;
        writeln!(
            f,
            "  reads across a truncation with an undefined tail: {}",
            self.cut_races
        )?;
        writeln!(
            f,
            "throughput: {:.1} MiB/s through the guests, {:.1} MiB/s native pread/pwrite on the same files ({:.2}x)",
            self.throughput / (1 << 20) as f64,
            self.native_throughput / (1 << 20) as f64,
            if self.native_throughput > 0.0 {
                self.throughput / self.native_throughput
            } else {
                0.0
            }
        )?;
        writeln!(
            f,
            "instantiation under load: {} done, p50 {:.2} ms, p99 {:.2} ms",
            self.instantiations,
            self.inst_p50.as_secs_f64() * 1e3,
            self.inst_p99.as_secs_f64() * 1e3
        )?;
        writeln!(
            f,
            "memory: RSS {:.1} MiB before, {:.1} MiB before tenants, peak {:.1} MiB (bound {:.0} MiB growth); \
             {:.2} MiB per tenant; peak VmLck {:.1} MiB, peak VmPTE {:.1} MiB, largest tenant page table {} KiB",
            mib(self.before.rss),
            mib(self.rss_before_tenants),
            mib(self.peak.peak_rss),
            mib(self.rss_bound),
            mib(self.per_tenant_overhead()),
            mib(self.peak.locked),
            mib(self.peak.page_tables),
            self.peak_mm_page_table >> 10
        )?;
        writeln!(
            f,
            "at the end: fds {} (before {}), sockets {} ({}), threads {} ({}), VmLck {} KiB ({}), VmPTE {} KiB ({}), \
             RSS {:.1} MiB",
            self.after.fds,
            self.before.fds,
            self.after.sockets,
            self.before.sockets,
            self.after.threads,
            self.before.threads,
            self.after.locked >> 10,
            self.before.locked >> 10,
            self.after.page_tables >> 10,
            self.before.page_tables >> 10,
            mib(self.after.rss)
        )?;
        let s = &self.pool;
        writeln!(
            f,
            "pool at the end: {} slots, {} free, {} live, {} quarantined, {} pending; {} allocated, {} resets, \
             {} refused",
            s.slots, s.free, s.live, s.quarantined, s.pending, s.allocated, s.resets, s.refused
        )?;
        match self.check(false) {
            Ok(()) => writeln!(f, "verdict: nothing lost, nothing leaked"),
            Err(p) => {
                writeln!(
                    f,
                    "verdict: {} problems ({} violations during the run):",
                    p.len(),
                    self.violations
                )?;
                for l in p.iter().take(20) {
                    writeln!(f, "  {l}")?;
                }
                Ok(())
            }
        }
    }
}
