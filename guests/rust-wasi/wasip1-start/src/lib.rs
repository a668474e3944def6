//! Start-up code for `wasm32-wasip1` commands built on this project's guest
//! route (Debian's rustc-web and its wasi-libc snapshot of 2022-05-10,
//! componentized with wasmtime 48.0.8's preview1 *command* adapter). Every
//! command of the route links it (`use wasip1_start as _;` in the bin, or
//! through `wasm-pin-sdk`, which links it); on any other target it is empty.
//!
//! It defines two symbols:
//!
//! - **`__original_main`**, strong, overriding libc's weak one: runs
//!   `__wasm_call_ctors`, then `__main_void` (Rust's `main`), then
//!   `__wasm_call_dtors` when `main` returned 0 (else `_start` calls
//!   `exit`, which runs them). This libc's `crt1-command.o` `_start` calls
//!   only `__original_main` and `exit`; it relies on `wasm-ld` wrapping each
//!   export with a constructor call, and `wasm-ld` drops those wrappers once
//!   any input references `__wasm_call_ctors` (wit-bindgen 0.61.1's
//!   `run_ctors_once` does). Without the constructors libc's preopen table
//!   stays empty and `std::fs` fails with `ENOTCAPABLE` (os error 76).
//!   Upstream wasi-libc's `_start` runs the constructors itself since
//!   wasi-libc #328 (2022-09); it no longer calls `__original_main`, so
//!   there this definition is simply unused.
//! - **`cabi_realloc`**, exported, allocating with the program's global
//!   allocator (libc's `malloc` under std). The command adapter takes its
//!   own pages through it. Without it the adapter takes them with
//!   `memory.grow`, and this libc's `malloc` later claims everything from
//!   `__heap_base` to the end of memory as heap, the adapter's `State` page
//!   included: a program that allocates a large buffer (256 KiB) and then
//!   makes a WASI call traps with "assertion failed at adapter line 2857".
//!   Upstream fixed that in wasi-libc #377/#394 (2023). Linked beside
//!   wit-bindgen (whose runtime defines a *weak* `cabi_realloc` that does
//!   the same), this strong definition is the one kept.
//!
//! It has to be a library crate the program links: the same definition in
//! the bin's own source did not take effect in the measured builds.
#![no_std]

#[cfg(all(target_arch = "wasm32", target_os = "wasi", target_env = "p1"))]
mod imp {
    extern crate alloc;

    use alloc::alloc::{alloc, dealloc, realloc, Layout};
    use core::arch::wasm32::unreachable;

    extern "C" {
        /// Synthesized by `wasm-ld`: runs the static constructors (libc's
        /// preopen table, environment, ...).
        fn __wasm_call_ctors();
        /// Runs the destructors and `atexit` functions (libc's `exit.o`).
        fn __wasm_call_dtors();
        /// The program's `main` (what rustc names `fn main` on WASI).
        fn __main_void() -> i32;
    }

    /// Called by `crt1-command.o`'s `_start`; returns `main`'s exit code
    /// (`_start` calls `exit` with it when it is not 0).
    #[no_mangle]
    pub extern "C" fn __original_main() -> i32 {
        // SAFETY: called once, by `_start`, before any other code of the
        // program runs: the constructors run exactly once, as the linker's
        // own command wrapper would have run them.
        unsafe { __wasm_call_ctors() };
        // SAFETY: the program's entry point, called once after the
        // constructors, as libc's `__original_main` would call it.
        let code = unsafe { __main_void() };
        if code == 0 {
            // SAFETY: `main` has returned; `_start` returns without `exit`
            // on 0, so this is the one place the destructors run.
            unsafe { __wasm_call_dtors() };
        }
        code
    }

    /// The canonical ABI's allocator (`cabi_realloc`), on the program's
    /// global allocator. Traps when it cannot allocate or is given an
    /// invalid alignment, as the canonical ABI expects.
    ///
    /// # Safety
    ///
    /// As the canonical ABI calls it: `old` with `old_len` and `align` is
    /// an allocation this function returned (or `old_len` is 0).
    #[no_mangle]
    pub unsafe extern "C" fn cabi_realloc(old: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
        let Ok(new) = Layout::from_size_align(new_len, align) else {
            unreachable()
        };
        let ptr = if old_len == 0 {
            if new_len == 0 {
                // A zero-sized allocation: any aligned, non-null pointer.
                return align as *mut u8;
            }
            // SAFETY: `new` has a non-zero size.
            unsafe { alloc(new) }
        } else {
            // SAFETY: the caller passes a live allocation of `old_len` bytes
            // at `align` (the layout it was made with).
            let old_layout = unsafe { Layout::from_size_align_unchecked(old_len, align) };
            if new_len == 0 {
                // SAFETY: as above; freed once, the caller drops it.
                unsafe { dealloc(old, old_layout) };
                return align as *mut u8;
            }
            // SAFETY: as above, and `new_len` is non-zero and fits the
            // alignment (`Layout::from_size_align` checked it).
            unsafe { realloc(old, old_layout, new_len) }
        };
        if ptr.is_null() {
            unreachable()
        }
        ptr
    }
}
