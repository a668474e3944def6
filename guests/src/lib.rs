//! Guest programs for wasm-pin, built from source by `build.rs`: WAT guests
//! componentized against `wit/` (world `guest`), core-module guests for the
//! integer ABI and, once `rust/build.sh` has built them, Rust WASI command
//! components (`rust-wasi/`, WASI 0.2 through the preview1 adapter) and Rust
//! WASI 0.3 command components (`rust-p3/`). No `.wasm` is committed.
#![warn(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The component guest built from `wat/<name>.wat` (or `wat-soak/<name>.wat`).
pub fn component(name: &str) -> Option<&'static [u8]> {
    COMPONENTS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The core-module guest built from `wat-core/<name>.wat`.
pub fn core_module(name: &str) -> Option<&'static [u8]> {
    CORE_MODULES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The WASI command component (`wasi:cli/command`, runnable with
/// `wasm-pin run` or through `wasmtime_wasi::p2::bindings::sync::Command`)
/// built from the bin `<name>` of `rust-wasi/`; `None` if `rust/build.sh` has
/// not built it.
pub fn wasi_command(name: &str) -> Option<&'static [u8]> {
    WASI_COMMANDS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The `wasm32-wasip1` core module of the WASI command `<name>` of
/// `rust-wasi/`, as built (no adapter): what `wasm-pin run` runs natively on
/// wasmtime-wasi's preview1 (`wasmtime_wasi::p1`); `None` if `rust/build.sh`
/// has not built it. [`wasi_command`] is the same program componentized.
pub fn wasi_p1_module(name: &str) -> Option<&'static [u8]> {
    WASI_P1_MODULES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The WASI 0.3 command component (exports `wasi:cli/run@0.3.0`; run it on
/// wasmtime-wasi's p3 through `wasmtime_wasi::p3::bindings::Command` or with
/// `wasm-pin run`) built from the crate `<name>` of `rust-p3/`; `None` if
/// `rust/build.sh` has not built it.
pub fn wasi_p3_command(name: &str) -> Option<&'static [u8]> {
    WASI_P3_COMMANDS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}
