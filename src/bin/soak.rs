//! The soak's long mode (issue #22): many tenants at once, faults injected
//! at random, everything checked; prints the figures and exits non-zero if
//! anything was lost or leaked.
//!
//! ```text
//! cargo run --release --bin soak -- --tenants 512 --secs 300
//! ```

use clap::Parser;
use host_api::BackendKind;
use std::time::Duration;
use wasm_pin::soak::{self, Fault, SoakConfig};

/// Runs the load-and-fault soak (`wasm_pin::soak`).
#[derive(Parser, Debug)]
#[command(
    name = "soak",
    about = "wasm-pin's load-and-fault soak: many tenants, faults, nothing lost or leaked"
)]
struct Args {
    /// Tenants alive at once (in pairs).
    #[arg(long, default_value_t = 256)]
    tenants: usize,
    /// Seconds the tenants run.
    #[arg(long, default_value_t = 300)]
    secs: u64,
    /// Pool slots (default: PoolConfig::default(), 1,000 of 4 GiB).
    #[arg(long)]
    slots: Option<u32>,
    /// Chance in percent that a tenant's next step is a fault.
    #[arg(long)]
    fault_percent: Option<u32>,
    /// Tokio worker threads.
    #[arg(long)]
    workers: Option<usize>,
    /// Seed of the schedule.
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds between progress lines (0: none).
    #[arg(long, default_value_t = 10)]
    progress: u64,
    /// Only these fault kinds, comma-separated: trap, deadline, epoch,
    /// truncate, remove, memlock, quota-pins, quota-bytes, quota-longterm,
    /// quota-files, quota-sockets, quota-tickets, pool (default: all).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Fail unless every fault kind was injected.
    #[arg(long)]
    every_fault: bool,
    /// The tenants' I/O backend: auto (io_uring where the kernel allows
    /// it) or threads (the shared worker threads).
    #[arg(long, default_value = "auto", value_parser = ["auto", "threads"])]
    backend: String,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut c = SoakConfig::long(a.tenants, a.secs);
    if let Some(s) = a.slots {
        c.pool.slots = s;
    }
    if let Some(p) = a.fault_percent {
        c.fault_percent = p;
    }
    if let Some(w) = a.workers {
        c.worker_threads = w;
    }
    if let Some(s) = a.seed {
        c.seed = s;
    }
    if a.backend == "threads" {
        c.backend = BackendKind::Threads;
    }
    if !a.faults.is_empty() {
        c.faults = a
            .faults
            .iter()
            .map(|k| Fault::from_key(k).ok_or_else(|| anyhow::anyhow!("no fault kind {k:?}")))
            .collect::<anyhow::Result<_>>()?;
    }
    c.progress = (a.progress > 0).then(|| Duration::from_secs(a.progress));
    eprintln!(
        "soak: {} tenants for {} s on {} slots of {} GiB, {}% faults, {} workers, {:?} I/O",
        c.tenants,
        a.secs,
        c.pool.slots,
        c.pool.max_memory_bytes >> 30,
        c.fault_percent,
        c.worker_threads,
        c.backend
    );
    let report = soak::run(c)?;
    print!("{report}");
    if let Err(problems) = report.check(a.every_fault) {
        eprintln!("soak: FAILED: {} problems", problems.len());
        std::process::exit(1);
    }
    Ok(())
}
