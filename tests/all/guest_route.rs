//! Issue 20.3: ordinary programs on the Rust guest route (a `wasm32-wasip1`
//! core module from Debian's rustc-web and wasi-libc, componentized with
//! wasmtime 48.0.8's preview1 command adapter) run under wasmtime-wasi p2
//! beside the pin imports:
//!
//! - `std-fs-probe` links the SDK: a zero-copy read into a `PinnedBuf`, then
//!   `std::fs` on a preopened directory through a 1 MiB buffer (this failed
//!   with ENOTCAPABLE, os error 76, while libc's constructors never ran);
//! - `std-fs-read` is std only: a 256 KiB allocation, a clock call, then
//!   `std::fs` reads through 256 KiB and 1 MiB buffers (this trapped at
//!   "adapter line 2857" while the program exported no `cabi_realloc`).
//!
//! Both link `guests/rust-wasi/wasip1-start`; `docs/GUESTS.md` has the causes.
//! Each prints byte counts and FNV-1a 64 checksums, compared with the host's.

use host_api::PinCtx;
use host_api::WasiPinHost as State;
use runtime_mm::PinMemoryCreator;
use std::path::Path;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx};

use crate::support::rust_guests;

use rust_guests::{fnv1a, pattern, scratch, wasi_command as guest};

/// The line a guest prints for `bytes`: `<what> bytes=<n> fnv=<hex>`.
fn line(what: &str, bytes: &[u8]) -> String {
    format!("{what} bytes={} fnv={:016x}", bytes.len(), fnv1a(bytes))
}

/// Runs the command `bytes` with `args` in a sync store (p2 and the pin
/// imports in one linker), `dir` preopened as `/data` (read-only); returns
/// whether `run` succeeded, and its stdout.
fn run(bytes: &[u8], dir: &Path, args: &[&str]) -> (Result<(), ()>, String) {
    let creator = PinMemoryCreator::new();
    let mut config = Config::new();
    creator.install(&mut config);
    let engine = Engine::new(&config).unwrap();
    let component = Component::new(&engine, bytes).unwrap();
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    host_api::add_to_linker_sync(&mut linker).unwrap();

    let stdout = MemoryOutputPipe::new(1 << 20);
    let mut wasi = WasiCtx::builder();
    wasi.preopened_dir(dir, "/data", FsPerms::ReadOnly).unwrap();
    wasi.args(args).stdout(stdout.clone()).inherit_stderr();
    let mut store = Store::new(&engine, State::new(wasi.build(), PinCtx::default()));
    let cmd = Command::instantiate(&mut store, &component, &linker).unwrap();
    let result = cmd.wasi_cli_run().call_run(&mut store).unwrap();
    drop(store);
    (result, String::from_utf8(stdout.contents().to_vec()).unwrap())
}

/// A program that links the SDK reads with pinned buffers and with
/// `std::fs` (1 MiB buffers, a clock call after the allocation).
#[test]
fn an_sdk_program_also_reads_with_std_fs() {
    let Some(bytes) = guest("std-fs-probe") else { return };
    let dir = scratch("probe");
    let input = pattern((3 << 20) + 4321);
    std::fs::write(dir.join("input.bin"), &input).unwrap();
    let (result, out) = run(bytes, &dir, &["std-fs-probe", "/data/input.bin"]);
    assert_eq!(result, Ok(()), "stdout: {out}");
    let want = [line("pinned", &input[..64 << 10]), line("std", &input)];
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

/// A std-only program (no SDK) allocates 256 KiB, reads the clock and reads
/// a file through 256 KiB and 1 MiB buffers.
#[test]
fn a_std_only_program_reads_through_large_buffers() {
    let Some(bytes) = guest("std-fs-read") else { return };
    let dir = scratch("std");
    let input = pattern((5 << 20) + 777);
    std::fs::write(dir.join("input.bin"), &input).unwrap();
    let (result, out) = run(bytes, &dir, &["std-fs-read", "/data/input.bin"]);
    assert_eq!(result, Ok(()), "stdout: {out}");
    let want = [line("read256k", &input), line("read1m", &input)];
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

/// `p1-read` (std only, the benchmarks' unmodified program) reads a file
/// with `File::read` into one buffer, componentized here as on the route.
#[test]
fn a_std_only_program_reads_with_file_read() {
    let Some(bytes) = guest("p1-read") else { return };
    assert!(
        wasm_pin_guests::wasi_p1_module("p1-read").is_some(),
        "its core module too"
    );
    let dir = scratch("p1-read");
    let input = pattern((2 << 20) + 99);
    std::fs::write(dir.join("input.bin"), &input).unwrap();
    for size in ["65536", "1048576"] {
        let (result, out) = run(bytes, &dir, &["p1-read", "/data/input.bin", size]);
        assert_eq!(result, Ok(()), "stdout: {out}");
        assert_eq!(out, format!("bytes={}\n", input.len()));
    }
}
