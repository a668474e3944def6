//! wasm-pin's guest SDK: zero-copy I/O for ordinary WASI programs.
//!
//! A [`PinnedBuf`] is a page-aligned buffer of the program's own memory,
//! pinned for the host (`pin-user-pages`) while it lives and unpinned when it
//! drops. A [`File`] is a WASI file (opened with `wasi:filesystem`'s
//! `open-at` under the host's preopens): [`File::read_at`] and
//! [`File::write_at`] move bytes between the file and a pinned buffer with no
//! copy across the boundary, and [`File::submit_read_at`] starts a read that
//! runs while the program goes on. [`File::read_into`] and
//! [`File::write_from`] do the same on any slice, pinned for the call only;
//! [`File::register`] gives a [`RegisteredFile`] that does them without
//! lending the descriptor on every call.
//! No `unsafe` and no alignment in guest code.
//!
//! ```no_run
//! use wasm_pin_sdk::{File, PinnedBuf};
//!
//! fn main() -> Result<(), wasm_pin_sdk::Error> {
//!     let path = std::env::args().nth(1).expect("usage: sum FILE");
//!     let file = File::open(&path)?;
//!     let size = file.size()?;
//!     let mut bufs = [PinnedBuf::new(1 << 20)?, PinnedBuf::new(1 << 20)?];
//!     let (mut sum, mut at) = (0u64, 0);
//!     while at < size {
//!         // Two reads in flight, each into its own pinned buffer.
//!         let [a, b] = &mut bufs;
//!         let ta = file.submit_read_at(a, 0..a.len(), at)?;
//!         let tb = file.submit_read_at(b, 0..b.len(), at + a.len() as u64)?;
//!         let (na, nb) = (ta.wait()?, tb.wait()?);
//!         for buf in [&a[..na], &b[..nb]] {
//!             sum = buf.iter().fold(sum, |s, &x| s + u64::from(x));
//!         }
//!         at += (na + nb) as u64;
//!         if na + nb == 0 {
//!             break;
//!         }
//!     }
//!     println!("{path}: {size} bytes, byte sum {sum}");
//!     Ok(())
//! }
//! ```
//!
//! Build the program as a `wasm32-wasip1` binary and componentize it with
//! wasmtime's preview1 *command* adapter (`guests/rust/build.sh` does both);
//! `wasm-pin run prog.wasm --dir DATA FILE` runs it.
//!
//! # Ordinary `std` code beside it
//!
//! The program may use `std::fs`, large heap buffers, the clock and the rest
//! of `std` as usual: the SDK links `wasip1-start` (`guests/rust-wasi/`),
//! which on `wasm32-wasip1` defines a strong `__original_main` (running
//! libc's constructors, then `main`, then the destructors) and exports
//! `cabi_realloc` on the program's allocator. Without them, on Debian's
//! wasi-libc (2022-05-10) through the command adapter, `std::fs` failed with
//! `ENOTCAPABLE` (libc's preopen table was never filled: wit-bindgen's
//! runtime references `__wasm_call_ctors`, so `wasm-ld` dropped the
//! constructor-calling export wrappers this libc's `_start` relies on), and a
//! large allocation followed by a WASI call trapped in the adapter (libc's
//! `malloc` handed out the adapter's `State` page). Upstream wasi-libc fixed
//! both (#328, #377/#394); `docs/GUESTS.md` has the details.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// Generated: documented by the WIT it comes from.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        inline: "
            package wasm-pin:sdk;
            world sdk {
                import wasi:filesystem/preopens@0.2.12;
                import wasi:filesystem/types@0.2.12;
                import wasm-pin:mm/gup@0.1.0;
                import wasm-pin:mm/zero-copy-io@0.1.0;
                import wasm-pin:mm/one-call-io@0.1.0;
            }",
        path: "../../../wit",
        generate_all,
    });
}

mod buf;
mod file;

// Linked for its start-up symbols only (see "Ordinary `std` code beside it").
use wasip1_start as _;

pub use buf::PinnedBuf;
pub use file::{File, RegisteredFile, Ticket};

/// The raw bindings, for what the safe API does not cover.
pub mod raw {
    pub use crate::bindings::wasi::filesystem::{preopens, types as filesystem};
    pub use crate::bindings::wasi::io::{poll, streams};
    pub use crate::bindings::wasm_pin::mm::{gup, zero_copy_io};
}

use bindings::wasi::filesystem::types::ErrorCode;
use bindings::wasm_pin::mm::gup::Errno;

/// What went wrong: the pin imports' errno, or WASI's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A `wasm-pin:mm` call failed.
    Pin(Errno),
    /// A `wasi:filesystem` call failed.
    Wasi(ErrorCode),
    /// No preopened directory holds the path.
    NotPreopened,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Pin(e) => write!(f, "wasm-pin: {e:?}"),
            Error::Wasi(e) => write!(f, "wasi: {e:?}"),
            Error::NotPreopened => f.write_str("no preopened directory holds the path"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Errno> for Error {
    fn from(e: Errno) -> Error {
        Error::Pin(e)
    }
}

impl From<ErrorCode> for Error {
    fn from(e: ErrorCode) -> Error {
        Error::Wasi(e)
    }
}

/// The host's page size: pins cover whole pages of it.
pub fn page_size() -> usize {
    bindings::wasm_pin::mm::gup::page_size() as usize
}

/// The host process's CPU time so far (user + system, every host thread),
/// to measure what I/O costs; `perm` unless the host allows it.
pub fn host_cpu_time() -> Result<std::time::Duration, Error> {
    let ns = bindings::wasm_pin::mm::zero_copy_io::host_cpu_time()?;
    Ok(std::time::Duration::from_nanos(ns))
}

/// The pin counters of this program's memory (pages pinned and released,
/// lock-free and locked pages, ...).
pub fn stats() -> raw::gup::MmStats {
    bindings::wasm_pin::mm::gup::stats()
}
