//! A load-and-fault soak (issue #22): many tenants at once on a pooled
//! creator sized like production, each a guest doing zero-copy file and
//! TCP I/O through wasm-pin's imports, with faults injected at random and
//! everything checked: nothing read or written may be lost, nothing the
//! tenants held may leak. The same code runs in two sizes: `tests/soak.rs`
//! ([`SoakConfig::short`], seconds, in `cargo test`) and the `soak` binary
//! ([`SoakConfig::long`], e.g. `cargo run --release --bin soak -- --tenants
//! 512 --secs 300`).
//!
//! ```text
//!   run ── engine (pooled PinMemoryCreator, epochs) + linker (WASI p2, pin imports)
//!    │       + the `soak-tenant` guest (guests/wat-soak), pre-instantiated
//!    ├── epoch ticker thread, monitor task (pool, /proc peaks)
//!    ├── driver::run_pair × tenants/2 on a multi-thread tokio runtime:
//!    │     transfers (one-call, registered, ticket, vectored; direct where
//!    │     allowed), TCP between the two, faults (faults::Fault)
//!    │     every result checked against the ledger (ledger::FileShadow)
//!    ├── the pool back to all-free, files checked on disk, native loop
//!    └── teardown, then /proc back to its baseline (process::ProcSnapshot)
//! ```
//!
//! - [`config`]: [`SoakConfig`], the two sizes.
//! - `tenant`: one tenant (guest instance, store, files) and its ops.
//! - [`driver`]: the schedule of a pair of tenants, its checks.
//! - [`faults`]: the fault kinds, their counters, the pool hog.
//! - [`ledger`]: what the files must hold, the pattern and checksum.
//! - [`process`]: `/proc/self` readings for the leak checks.
//! - [`report`]: [`SoakReport`], its figures and its verdict.

pub mod config;
mod driver;
pub mod faults;
pub mod ledger;
pub mod process;
pub mod report;
mod tenant;

pub use config::SoakConfig;
pub use faults::Fault;
pub use report::{FaultLine, SoakReport};
pub use tenant::Op;

use anyhow::Context as _;
use faults::FaultCounts;
use ledger::{fnv1a32, pattern, OpCount, Violations};
use process::ProcSnapshot;
use runtime_mm::{PinMemoryCreator, PoolStats};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenant::State;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::Engine;

/// What every tenant task shares.
pub(crate) struct Shared {
    pub(crate) config: SoakConfig,
    pub(crate) engine: Engine,
    pub(crate) pre: InstancePre<State>,
    pub(crate) creator: Arc<PinMemoryCreator>,
    pub(crate) root: PathBuf,
    pub(crate) stop: AtomicBool,
    pub(crate) ops: Vec<OpCount>,
    pub(crate) direct_transfers: AtomicU64,
    pub(crate) faults: FaultCounts,
    pub(crate) violations: Violations,
    latencies: Mutex<Vec<Duration>>,
    pub(crate) live_tenants: AtomicUsize,
    peak_live: AtomicUsize,
    peak_mm_page_table: AtomicUsize,
    /// Set while a hog holds the pool; the last hog's end.
    hog_busy: AtomicBool,
    last_hog: Mutex<Option<Instant>>,
    pub(crate) hog_races: AtomicU64,
    /// See [`SoakReport::cut_races`].
    pub(crate) cut_races: AtomicU64,
    /// Every tenant file left on disk at the end, with its length.
    pub(crate) files: Mutex<Vec<(PathBuf, u64)>>,
}

impl Shared {
    pub(crate) fn note_instantiation(&self, d: Duration) {
        self.latencies.lock().unwrap_or_else(|p| p.into_inner()).push(d);
        let live = self.live_tenants.load(Relaxed) + 1;
        self.peak_live.fetch_max(live, Relaxed);
    }

    pub(crate) fn note_page_tables(&self, bytes: usize) {
        self.peak_mm_page_table.fetch_max(bytes, Relaxed);
    }

    /// The next fault for a tenant (`tight`: with tight quotas): half the
    /// time the least injected kind that fits, else any that fits; the pool
    /// fault only if no hog is running and the last ended `hog_every` ago
    /// (it then claims the hog). `None` if no configured kind fits.
    pub(crate) fn pick_fault(&self, rng: &mut driver::Rng, tight: bool) -> Option<Fault> {
        let hog_ok = || {
            let last = self.last_hog.lock().unwrap_or_else(|p| p.into_inner());
            last.is_none_or(|t| t.elapsed() >= self.config.hog_every)
        };
        let fits: Vec<Fault> = (self.config.faults.iter().copied()).filter(|f| f.fits(tight)).collect();
        if fits.is_empty() {
            return None;
        }
        let want = if rng.below(2) == 0 {
            *fits.iter().min_by_key(|f| self.faults.get(**f).0).expect("faults")
        } else {
            fits[rng.below(fits.len() as u64) as usize]
        };
        if want != Fault::PoolExhausted {
            return Some(want);
        }
        if hog_ok() && !self.hog_busy.swap(true, Relaxed) {
            return Some(want);
        }
        let others: Vec<Fault> = fits.into_iter().filter(|f| *f != Fault::PoolExhausted).collect();
        (!others.is_empty()).then(|| others[rng.below(others.len() as u64) as usize])
    }

    pub(crate) fn hog_done(&self) {
        *self.last_hog.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.hog_busy.store(false, Relaxed);
    }
}

/// Samples the pool and `/proc/self` until the soak stops: peak live
/// slots, peak RSS, locked memory and page tables; prints progress.
async fn monitor(sh: Arc<Shared>, start: Instant) -> ProcSnapshot {
    let mut peak = ProcSnapshot::default();
    let mut last_print = Instant::now();
    while !sh.stop.load(Relaxed) {
        let now = ProcSnapshot::now();
        peak.rss = peak.rss.max(now.rss);
        peak.peak_rss = peak.peak_rss.max(now.peak_rss);
        peak.locked = peak.locked.max(now.locked);
        peak.page_tables = peak.page_tables.max(now.page_tables);
        peak.fds = peak.fds.max(now.fds);
        peak.sockets = peak.sockets.max(now.sockets);
        peak.threads = peak.threads.max(now.threads);
        if let Some(every) = sh.config.progress {
            if last_print.elapsed() >= every {
                last_print = Instant::now();
                let ops: u64 = sh.ops.iter().map(|o| o.done.load(Relaxed)).sum();
                let faults: u64 = Fault::ALL.iter().map(|f| sh.faults.get(*f).0).sum();
                let pool = sh.creator.pool().map(|p| p.stats()).unwrap_or_default();
                eprintln!(
                    "soak: {:>5.0} s: {} tenants live ({} slots live, {} quarantined), {ops} ops, {faults} faults, \
                     {} refusals, RSS {} MiB, fds {}, threads {}, {} violations",
                    start.elapsed().as_secs_f64(),
                    sh.live_tenants.load(Relaxed),
                    pool.live,
                    pool.quarantined,
                    sh.faults.refusals.load(Relaxed),
                    now.rss >> 20,
                    now.fds,
                    now.threads,
                    sh.violations.count()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    peak
}

/// A native pread/pwrite loop on `files` for `how_long` on `threads`
/// threads, with the soak's sizes and mix (half reads, hashed with FNV-1a
/// as the guest does; half writes of a pattern): bytes per second.
fn native_loop(files: &[(PathBuf, u64)], config: &SoakConfig) -> std::io::Result<f64> {
    if files.is_empty() || config.native.is_zero() {
        return Ok(0.0);
    }
    let open: Vec<(std::fs::File, u64)> = files
        .iter()
        .map(|(p, len)| Ok((std::fs::OpenOptions::new().read(true).write(true).open(p)?, *len)))
        .collect::<std::io::Result<_>>()?;
    let bytes = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..config.worker_threads.max(1) {
            let (open, bytes) = (&open, &bytes);
            s.spawn(move || {
                let mut rng = driver::Rng::new(config.seed ^ 0xa5a5 ^ t as u64);
                let max = config.max_transfer as usize;
                let data = pattern(rng.u32(), max);
                let mut buf = vec![0u8; max];
                let mut sink = 0u32;
                while start.elapsed() < config.native {
                    let (f, len) = &open[rng.below(open.len() as u64) as usize];
                    let off = rng.below(config.file_bytes.min(*len).max(1));
                    let n = 1 + rng.below(max as u64) as usize;
                    let moved = if rng.below(2) == 0 {
                        let r = f.read_at(&mut buf[..n], off).unwrap_or(0);
                        sink ^= fnv1a32(&buf[..r]);
                        r
                    } else {
                        f.write_at(&data[..n], off).unwrap_or(0)
                    };
                    bytes.fetch_add(moved as u64, Relaxed);
                }
                std::hint::black_box(sink);
            });
        }
    });
    Ok(bytes.load(Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// The bound on peak RSS growth: fixed, per tenant, and what the pool may
/// keep resident in its free slots (`keep_resident_bytes` each, zeroed, for
/// the next tenant: a slot once used, or reset after the hog, keeps it).
fn rss_bound(config: &SoakConfig, tenants: usize) -> u64 {
    config.rss_fixed_bound
        + config.rss_per_tenant_bound * tenants as u64
        + u64::from(config.pool.slots) * config.pool.keep_resident_bytes
}

/// Runs the soak `config` describes and returns its figures and verdict
/// ([`SoakReport::check`]). Errors only if it could not be set up.
pub fn run(config: SoakConfig) -> anyhow::Result<SoakReport> {
    let before = ProcSnapshot::now();
    let root = match &config.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("wasm-pin-soak-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads.max(1))
        .enable_all()
        .build()?;
    let creator = PinMemoryCreator::pooled(config.pool)?;
    let mut wconfig = wasmtime::Config::new();
    wconfig.epoch_interruption(true);
    let engine = creator.build_engine(&mut wconfig)?;
    // The config holds the creator too (`with_host_memory`).
    drop(wconfig);
    let bytes = wasm_pin_guests::component("soak_tenant").context("the soak_tenant guest is not built")?;
    let component = Component::new(&engine, bytes)?;
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    host_api::add_to_linker_async(&mut linker)?;
    let pre = linker.instantiate_pre(&component)?;
    let rss_before_tenants = ProcSnapshot::now().rss;
    let pairs = config.pairs();
    let tenants = pairs * 2;
    let shared = Arc::new(Shared {
        config: config.clone(),
        engine: engine.clone(),
        pre,
        creator: creator.clone(),
        root: root.clone(),
        stop: AtomicBool::new(false),
        ops: (0..Op::COUNT).map(|_| OpCount::default()).collect(),
        direct_transfers: AtomicU64::new(0),
        faults: FaultCounts::default(),
        violations: Violations::default(),
        latencies: Mutex::new(Vec::new()),
        live_tenants: AtomicUsize::new(0),
        peak_live: AtomicUsize::new(0),
        peak_mm_page_table: AtomicUsize::new(0),
        hog_busy: AtomicBool::new(false),
        last_hog: Mutex::new(None),
        hog_races: AtomicU64::new(0),
        cut_races: AtomicU64::new(0),
        files: Mutex::new(Vec::new()),
    });
    let ticker_stop = Arc::new(AtomicBool::new(false));
    let ticker = std::thread::spawn({
        let (engine, stop, tick) = (engine.clone(), ticker_stop.clone(), config.epoch_tick);
        move || {
            while !stop.load(Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        }
    });
    let start = Instant::now();
    let peak = rt.block_on(async {
        let monitor = tokio::spawn(monitor(shared.clone(), start));
        let tasks: Vec<_> = (0..pairs)
            .map(|p| tokio::spawn(driver::run_pair(shared.clone(), p)))
            .collect();
        tokio::time::sleep(config.duration).await;
        shared.stop.store(true, Relaxed);
        for t in tasks {
            if let Err(e) = t.await {
                shared.violations.add(format!("a tenant task panicked: {e}"));
            }
        }
        monitor.await.unwrap_or_default()
    });
    let elapsed = start.elapsed();
    let mut problems = Vec::new();

    // Every tenant is gone: the pool must be whole again and balanced.
    let pool = creator.pool().expect("pooled").clone();
    let settled = Instant::now();
    let pool_stats = loop {
        let s: PoolStats = pool.stats();
        let whole = s.free == s.slots && s.live == 0 && s.quarantined == 0 && s.pending == 0;
        if (whole && s.allocated == s.resets) || settled.elapsed() > Duration::from_secs(10) {
            if !whole {
                problems.push(format!("the pool is not whole once every tenant is gone: {s:?}"));
            }
            if s.allocated != s.resets {
                problems.push(format!(
                    "the pool's counters do not balance: {} allocated, {} resets",
                    s.allocated, s.resets
                ));
            }
            break s;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if creator.live_memories() != 0 {
        problems.push(format!("{} guest memories still alive", creator.live_memories()));
    }
    drop(pool);

    let files = std::mem::take(&mut *shared.files.lock().unwrap_or_else(|p| p.into_inner()));
    let native_throughput = native_loop(&files, &config).context("the native loop")?;

    // The report's counters, then everything down.
    let ops: Vec<_> = Op::all()
        .map(|o| {
            let c = &shared.ops[o as usize];
            (o.name(), c.done.load(Relaxed), c.bytes.load(Relaxed))
        })
        .collect();
    let sum = |which: &[Op]| -> u64 { which.iter().map(|o| shared.ops[*o as usize].bytes.load(Relaxed)).sum() };
    let bytes_read = sum(&Op::TRANSFERS[..4]);
    let bytes_written = sum(&Op::TRANSFERS[4..]);
    let net_bytes = shared.ops[Op::Send as usize].bytes.load(Relaxed);
    let faults: Vec<FaultLine> = Fault::ALL
        .iter()
        .map(|&f| {
            let (injected, survived) = shared.faults.get(f);
            FaultLine {
                fault: f,
                injected,
                survived,
            }
        })
        .collect();
    let mut lat = std::mem::take(&mut *shared.latencies.lock().unwrap_or_else(|p| p.into_inner()));
    lat.sort();
    let pct = |p: usize| {
        lat.get((lat.len() * p / 100).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let (inst_p50, inst_p99) = (pct(50), pct(99));
    let violations = shared.violations.count();
    problems.splice(0..0, shared.violations.list());
    let pool_refusals = shared.faults.refusals.load(Relaxed);
    let hog_races = shared.hog_races.load(Relaxed);
    let cut_races = shared.cut_races.load(Relaxed);
    let direct_transfers = shared.direct_transfers.load(Relaxed);
    let peak_live = shared.peak_live.load(Relaxed);
    let peak_mm_page_table = shared.peak_mm_page_table.load(Relaxed);

    let pool_weak = Arc::downgrade(creator.pool().expect("pooled"));
    ticker_stop.store(true, Relaxed);
    let _ = ticker.join();
    drop(shared);
    drop(linker);
    drop(component);
    drop(engine);
    drop(creator);
    rt.shutdown_timeout(Duration::from_secs(10));
    if pool_weak.strong_count() != 0 {
        problems.push(format!(
            "leak: the pool outlived its creator and engine ({} references)",
            pool_weak.strong_count()
        ));
    }
    let _ = std::fs::remove_dir_all(&root);
    // What the allocator still holds of the soak's heap (the files'
    // ledgers, the tenants' tables) goes back to the kernel, with its page
    // tables, before they are compared.
    // SAFETY: malloc_trim only releases free heap memory; no pointer into
    // it is live.
    unsafe { libc::malloc_trim(0) };
    // Page tables: the allocator may keep some for its arenas; 1 MiB of
    // slack (the pool's 4 TiB reservation alone needs ~8 MiB when touched).
    // The thread backend's shared workers idle for `KEEP_ALIVE` before they
    // exit: ask them to go now (a busy one would be a leak).
    host_api::io::workers::trim(Duration::from_secs(5));
    let (after, leaks) = ProcSnapshot::settle(&before, 1 << 20, Duration::from_secs(10));
    problems.extend(leaks.into_iter().map(|l| format!("leak: {l}")));
    let mut peak = peak;
    peak.peak_rss = peak.peak_rss.max(after.peak_rss);

    Ok(SoakReport {
        tenants,
        peak_live,
        backend: config.backend,
        elapsed,
        ops,
        direct_transfers,
        bytes_read,
        bytes_written,
        net_bytes,
        faults,
        pool_refusals,
        hog_races,
        cut_races,
        instantiations: lat.len() as u64,
        inst_p50,
        inst_p99,
        throughput: (bytes_read + bytes_written) as f64 / elapsed.as_secs_f64(),
        native_throughput,
        before,
        rss_before_tenants,
        peak,
        peak_mm_page_table,
        after,
        pool: pool_stats,
        problems,
        violations,
        rss_bound: rss_bound(&config, tenants),
    })
}
