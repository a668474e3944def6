//! The integration tests, as one binary (wasmtime's own `tests/all` layout).
//!
//! Each test binary links wasmtime, about 100 MB in a debug build, and CI's
//! disk is shared: one binary for these fifteen files saves some 1.3 GB and
//! fourteen links. Run one file's tests with `cargo test --test all
//! zero_copy_io::`.
//!
//! Tests that measure the whole process keep a binary of their own, where no
//! other test runs beside them: `host_allocations` (a global allocator),
//! `guest_boundary` (counts the process's descriptors) and `soak` (thread,
//! descriptor and memlock baselines).

mod cli;
mod fuzz_component;
mod fuzz_core_abi;
mod guest_imports;
mod guest_route;
mod killed_guests;
mod p3_guest;
mod p3_streams;
mod pin_vec;
mod pool;
mod socket_policy;
mod spec;
// Where the separate test binaries kept it, for tests written against that layout.
#[path = "../support/mod.rs"]
mod support;
mod wasi_embed;
mod wasmtime_memory;
mod zero_copy_io;
