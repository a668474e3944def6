//! wasm-pin's host functions: pins as imports for wasmtime guests.
#![warn(missing_docs)]
