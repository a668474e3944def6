//! Guest programs for wasm-pin, built from source by `build.rs`: WAT guests
//! componentized against `wit/` (world `guest`) and core-module guests for
//! the integer ABI. No `.wasm` is committed.
#![warn(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The component guest built from `wat/<name>.wat`.
pub fn component(name: &str) -> Option<&'static [u8]> {
    COMPONENTS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The core-module guest built from `wat-core/<name>.wat`.
pub fn core_module(name: &str) -> Option<&'static [u8]> {
    CORE_MODULES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}
