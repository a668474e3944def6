//! A pinnable WebAssembly linear memory for wasmtime, with the Linux kernel's
//! `pin_user_pages*()` semantics.
//!
//! ```text
//!            wasmtime::Config::with_host_memory
//!                          │
//!                 PinMemoryCreator ──(registry, capture)──► Arc<Mm>
//!                          │ creates: own mapping, or a MemoryPool slot
//!                          ▼ (reset, or quarantined, when the last Arc<Mm> goes)
//!     gup::pin_*/get_*  ──► Mm ◄── grow_to / read / write / discard
//!        │      │           │
//!        │      │           ├── PageTable (AtomicU64 per page, per block, per chunk)
//!        │      │           ├── lock: grow, discard, fault-in, long-term
//!        │      │           └── Stats
//!        │      └──► slow_path (locked, faults in) ──► longterm (mlock chunks, memlock)
//!        └──► fast_path (lock-free CAS walk) ──falls back──┘
//!                          │
//!                          ▼
//!              PinnedPages / GotPages (hold Arc<Mm>; release on drop)
//! ```
//!
//! - [`Mm`]: one address space = one linear memory; reserves its whole range
//!   up front (or takes a pool slot), commits as it grows, never moves.
//! - `page_table`: the per-page entry format and the on-demand radix tree.
//! - `fast_path`: the lock-free walk of `*_fast` calls, and its protocol.
//! - `slow_path`: the locked path that faults pages in.
//! - `longterm`: `FOLL_LONGTERM` residency in chunks ([`LongtermChunks`]),
//!   memlock accounting, and the chunk-word protocol.
//! - `thp`: transparent huge pages, which choose the default chunk.
//! - [`gup`]: the seed's nine entry points and their contracts.
//! - [`PinnedPages`] / [`GotPages`]: what they return, and how it is released.
//! - [`MmStats`]: counters (`nr_foll_pin_acquired`/`released` and more).
//! - `pool`: [`MemoryPool`], slots reserved once and reused; a slot under
//!   pins is quarantined until the last one goes.
//! - [`PinMemoryCreator`]: wasmtime glue (feature `wasmtime`, on by default),
//!   on demand or pooled ([`PinMemoryCreator::pooled`]).
//!
//! ```
//! use runtime_mm::{gup, GupFlags, Mm, MmConfig};
//!
//! let mm = Mm::new(MmConfig { initial_bytes: 64 << 10, ..Default::default() })?;
//! mm.write(0, b"hello")?;
//! let pages = gup::pin_user_pages_fast(&mm, 0, 1, GupFlags::WRITE)?;
//! let mut buf = [0u8; 5];
//! pages.read(0, &mut buf)?;
//! assert_eq!(&buf, b"hello");
//! assert_eq!(mm.discard(0, 4096), Err(runtime_mm::Errno::Busy));
//! pages.unpin();
//! assert_eq!(mm.stats().pins_outstanding(), 0);
//! # Ok::<(), runtime_mm::Errno>(())
//! ```
#![warn(missing_docs)]

mod errno;
// The protocol modules are public for their documentation (entry format,
// fast-path protocol, long-term accounting); their items stay crate-private.
pub mod fast_path;
mod flags;
pub mod gup;
pub mod longterm;
mod mm;
pub mod page_table;
mod pinned;
pub mod pool;
mod primitive;
pub mod slow_path;
mod stats;
mod thp;
#[cfg(feature = "wasmtime")]
mod wasmtime_glue;

pub use errno::Errno;
pub use flags::GupFlags;
pub use longterm::LongtermChunks;
pub use mm::{Mm, MmConfig, PageState};
pub use pinned::{GotPages, PinnedPages};
pub use pool::{MemoryPool, PoolConfig, PoolError, PoolStats};
pub use stats::MmStats;
#[cfg(feature = "wasmtime")]
pub use wasmtime_glue::PinMemoryCreator;
