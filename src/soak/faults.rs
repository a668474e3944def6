//! The faults the soak injects, their counters, and the pool hog.
//!
//! A fault is *injected* when the soak has made it happen and *survived*
//! when everything checked afterwards holds: the errno or trap was the
//! expected one, nothing the tenant held outlived it (pins, its memory's
//! slot), and the tenant (restarted if it died) goes on working.

use runtime_mm::{MemoryPool, Mm, PoolError};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The guest traps with reads in flight into a long-term pin whose
    /// handle it dropped.
    TrapMidIo,
    /// The store's future is dropped by a deadline while the guest waits
    /// in `recv` with ticketed reads in flight; then the store is dropped.
    DeadlineDrop,
    /// A spinning guest is interrupted by the engine's epoch deadline.
    EpochInterrupt,
    /// The host truncates a file while the guest reads it.
    TruncateUnderRead,
    /// The host removes a file while the guest reads it.
    RemoveUnderRead,
    /// A long-term pin past the memory's memlock limit: `nomem`, then a
    /// small one works.
    Memlock,
    /// Pin handles until `max_pins` refuses (`again`).
    QuotaPins,
    /// 256 KiB pins until `max_pinned_bytes` refuses (`nomem`).
    QuotaPinnedBytes,
    /// 64 KiB long-term pins until `max_longterm_bytes` refuses (`nomem`).
    QuotaLongterm,
    /// Registered files until `max_files` refuses (`mfile`).
    QuotaFiles,
    /// Listeners until `max_sockets` refuses (`mfile`).
    QuotaSockets,
    /// Ticketed reads until `max_tickets` refuses (`mfile`).
    QuotaTickets,
    /// Every free slot is taken by a hog: the restarted tenant's
    /// instantiation is refused with the pool's exhausted error and retried
    /// until the hog lets go.
    PoolExhausted,
}

impl Fault {
    /// Every kind, in report order.
    pub const ALL: [Fault; 13] = [
        Fault::TrapMidIo,
        Fault::DeadlineDrop,
        Fault::EpochInterrupt,
        Fault::TruncateUnderRead,
        Fault::RemoveUnderRead,
        Fault::Memlock,
        Fault::QuotaPins,
        Fault::QuotaPinnedBytes,
        Fault::QuotaLongterm,
        Fault::QuotaFiles,
        Fault::QuotaSockets,
        Fault::QuotaTickets,
        Fault::PoolExhausted,
    ];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Fault::TrapMidIo => "trap mid-I/O",
            Fault::DeadlineDrop => "deadline drop",
            Fault::EpochInterrupt => "epoch interrupt",
            Fault::TruncateUnderRead => "truncate under read",
            Fault::RemoveUnderRead => "remove under read",
            Fault::Memlock => "memlock limit",
            Fault::QuotaPins => "quota: pins",
            Fault::QuotaPinnedBytes => "quota: pinned bytes",
            Fault::QuotaLongterm => "quota: long-term bytes",
            Fault::QuotaFiles => "quota: files",
            Fault::QuotaSockets => "quota: sockets",
            Fault::QuotaTickets => "quota: tickets",
            Fault::PoolExhausted => "pool exhausted",
        }
    }

    /// Its key on the `soak` command line (`--faults trap,pool`).
    pub fn key(self) -> &'static str {
        match self {
            Fault::TrapMidIo => "trap",
            Fault::DeadlineDrop => "deadline",
            Fault::EpochInterrupt => "epoch",
            Fault::TruncateUnderRead => "truncate",
            Fault::RemoveUnderRead => "remove",
            Fault::Memlock => "memlock",
            Fault::QuotaPins => "quota-pins",
            Fault::QuotaPinnedBytes => "quota-bytes",
            Fault::QuotaLongterm => "quota-longterm",
            Fault::QuotaFiles => "quota-files",
            Fault::QuotaSockets => "quota-sockets",
            Fault::QuotaTickets => "quota-tickets",
            Fault::PoolExhausted => "pool",
        }
    }

    /// The kind whose [`key`](Self::key) is `key`.
    pub fn from_key(key: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.key() == key)
    }

    fn index(self) -> usize {
        // `ALL` lists the kinds in declaration order.
        debug_assert_eq!(Fault::ALL[self as usize], self);
        self as usize
    }

    /// Whether it runs on tenants with tight quotas (the quota faults), on
    /// the others (the memlock fault), or on any.
    pub(crate) fn fits(self, tight: bool) -> bool {
        match self {
            Fault::QuotaPins
            | Fault::QuotaPinnedBytes
            | Fault::QuotaLongterm
            | Fault::QuotaFiles
            | Fault::QuotaSockets
            | Fault::QuotaTickets => tight,
            Fault::Memlock => !tight,
            _ => true,
        }
    }
}

/// Injected and survived, per kind.
#[derive(Debug, Default)]
pub struct FaultCounts {
    injected: [AtomicU64; 13],
    survived: [AtomicU64; 13],
    /// Instantiations the pool refused (each retried).
    pub refusals: AtomicU64,
}

impl FaultCounts {
    /// Counts one injected.
    pub fn injected(&self, f: Fault) {
        self.injected[f.index()].fetch_add(1, Relaxed);
    }

    /// Counts one survived.
    pub fn survived(&self, f: Fault) {
        self.survived[f.index()].fetch_add(1, Relaxed);
    }

    /// (injected, survived) of `f`.
    pub fn get(&self, f: Fault) -> (u64, u64) {
        (
            self.injected[f.index()].load(Relaxed),
            self.survived[f.index()].load(Relaxed),
        )
    }
}

/// Takes every free slot of `pool` (a 64 KiB memory each) until it says
/// exhausted; the slots go back with [`release`].
pub(crate) fn hog(pool: &Arc<MemoryPool>) -> Result<Vec<Arc<Mm>>, String> {
    let mut held = Vec::new();
    loop {
        match pool.alloc(64 << 10, None) {
            Ok(mm) => held.push(mm),
            Err(PoolError::Exhausted { .. }) => return Ok(held),
            Err(e) => {
                release(pool, held);
                return Err(format!(
                    "the hog's alloc failed with something else than exhaustion: {e}"
                ));
            }
        }
    }
}

/// Gives the hog's slots back.
pub(crate) fn release(pool: &MemoryPool, held: Vec<Arc<Mm>>) {
    for mm in held {
        pool.release(mm);
    }
}

/// Whether an instantiation failed because the pool had no free slot (the
/// creator's error carries the pool's `Exhausted` message).
pub(crate) fn is_pool_exhausted(e: &wasmtime::Error) -> bool {
    format!("{e:?}").contains("maximum concurrent memories reached")
}
