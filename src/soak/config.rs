//! What a soak run does: how many tenants, for how long, on what pool,
//! how hard it injects faults. [`SoakConfig::short`] is the `cargo test`
//! size, [`SoakConfig::long`] the one `soak` runs by default.

use super::Fault;
use host_api::BackendKind;
use runtime_mm::PoolConfig;
use std::path::PathBuf;
use std::time::Duration;

/// The settings of one soak run. Build from [`SoakConfig::short`] or
/// [`SoakConfig::long`] and change fields; `tenants` is rounded up to an
/// even number (tenants run in pairs that talk over loopback TCP).
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Tenants alive at once (each a guest instance in its own async
    /// store), in pairs.
    pub tenants: usize,
    /// How long the tenants run their schedules.
    pub duration: Duration,
    /// The memory pool behind the pooled `PinMemoryCreator`
    /// (`PoolConfig::default()`: 1,000 slots of 4 GiB, as in production).
    pub pool: PoolConfig,
    /// Files per tenant, each in the tenant's own preopened directory.
    pub files_per_tenant: u32,
    /// Initial size of each file, bytes.
    pub file_bytes: u64,
    /// Longest transfer, bytes (at most 256 KiB: the guest's buffer layout).
    pub max_transfer: u32,
    /// Chance, in percent, that a tenant's next step is a fault.
    pub fault_percent: u32,
    /// The fault kinds injected (all by default).
    pub faults: Vec<Fault>,
    /// Chance, in percent, that a pair's next step is a TCP exchange.
    pub net_percent: u32,
    /// Every n-th tenant runs with tight quotas (the quota faults run on
    /// those; the others get the memlock fault). 0: none.
    pub tight_every: usize,
    /// Least time between two pool-exhaustion faults (a hog takes every
    /// free slot).
    pub hog_every: Duration,
    /// How long the hog holds the slots.
    pub hog_hold: Duration,
    /// The deadline after which a stalled call's store future is dropped.
    pub deadline: Duration,
    /// Epoch tick of the engine; a spinning guest is interrupted after two.
    pub epoch_tick: Duration,
    /// Worker threads of the multi-thread tokio runtime.
    pub worker_threads: usize,
    /// The tenants' asynchronous I/O backend (`Auto`: io_uring where the
    /// kernel allows it; `Threads`: the shared worker threads, as where a
    /// container's seccomp profile refuses io_uring).
    pub backend: BackendKind,
    /// How long the native pread/pwrite loop runs on the same files after
    /// the soak, for the throughput comparison.
    pub native: Duration,
    /// Fraction (1 in n) of completed writes checked at once against the
    /// file on disk (every file is checked in full at the end).
    pub check_write_every: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Where the tenants' directories go (a fresh directory under the
    /// system's temporary directory if `None`); removed at the end.
    pub dir: Option<PathBuf>,
    /// Bound on peak RSS growth per peak live tenant, bytes
    /// ([`SoakReport::check`](crate::soak::SoakReport::check)).
    pub rss_per_tenant_bound: u64,
    /// Bound on peak RSS growth independent of the tenant count, bytes.
    pub rss_fixed_bound: u64,
    /// Print progress lines to stderr every this often (`None`: quiet).
    pub progress: Option<Duration>,
}

impl SoakConfig {
    /// The `cargo test` size: 32 tenants for 6 s on the production pool,
    /// faults frequent enough that every kind is injected.
    pub fn short() -> Self {
        SoakConfig {
            tenants: 32,
            duration: Duration::from_secs(6),
            pool: PoolConfig::default(),
            files_per_tenant: 2,
            file_bytes: 256 << 10,
            max_transfer: 64 << 10,
            fault_percent: 6,
            faults: Fault::ALL.to_vec(),
            net_percent: 10,
            tight_every: 4,
            hog_every: Duration::from_millis(1500),
            hog_hold: Duration::from_millis(40),
            deadline: Duration::from_millis(30),
            epoch_tick: Duration::from_millis(10),
            worker_threads: 2,
            backend: BackendKind::Auto,
            native: Duration::from_millis(500),
            check_write_every: 2,
            seed: 0x5eed_0022,
            dir: None,
            rss_per_tenant_bound: 8 << 20,
            rss_fixed_bound: 256 << 20,
            progress: None,
        }
    }

    /// The long size: `tenants` (256 or more for the figures) for
    /// `secs` seconds, 1 MiB files, transfers up to 256 KiB.
    pub fn long(tenants: usize, secs: u64) -> Self {
        SoakConfig {
            tenants,
            duration: Duration::from_secs(secs),
            file_bytes: 1 << 20,
            max_transfer: 256 << 10,
            fault_percent: 2,
            hog_every: Duration::from_secs(5),
            hog_hold: Duration::from_millis(100),
            deadline: Duration::from_millis(50),
            native: Duration::from_secs(5),
            check_write_every: 8,
            progress: Some(Duration::from_secs(10)),
            ..SoakConfig::short()
        }
    }

    /// `tenants` rounded up to whole pairs.
    pub(crate) fn pairs(&self) -> usize {
        self.tenants.div_ceil(2).max(1)
    }
}
