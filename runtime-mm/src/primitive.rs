//! The synchronization primitives the lock-free protocol is written against.
//!
//! Every atomic and lock that takes part in the page-table protocol comes
//! through here, so that `--cfg loom` swaps in loom's model-checked types
//! without touching the algorithm (the same arrangement as crossbeam-epoch's
//! `primitive` module). Statistics counters are not part of the protocol and
//! use `std` atomics directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU64};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

pub(crate) use std::sync::atomic::Ordering;
pub(crate) use std::sync::TryLockError;
