//! wasm-pin: the Linux kernel's `pin_user_pages*()` model for WebAssembly
//! linear memory under wasmtime.
//!
//! - [`runtime_mm`]: the pinnable linear memory (`Mm`), its GUP API and the
//!   wasmtime `MemoryCreator`.
//! - [`host_api`]: the pin imports for guests (WIT and core-module ABI).
//! - [`soak`]: the load-and-fault soak (`tests/soak.rs`, the `soak` binary).
#![warn(missing_docs)]

pub use host_api;
pub use runtime_mm;

pub mod soak;

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
