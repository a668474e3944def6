//! What the tests of the Rust guests share: the guests themselves (a skip,
//! with a note, where `guests/rust/build.sh` has not built them; CI always
//! builds them), a scratch directory, the byte pattern the guests write and
//! the FNV-1a 64 checksum they print.

#![allow(dead_code)] // each test uses its own subset

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `bytes`, or `None` and a note that `name` is not built (never in CI).
fn built(name: &str, bytes: Option<&'static [u8]>) -> Option<&'static [u8]> {
    if bytes.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must build the {name} guest (guests/rust/build.sh)"
        );
        println!("skipped: the {name} guest is not built (run guests/rust/build.sh)");
    }
    bytes
}

/// The WASI 0.2 command `name` of `guests/rust-wasi/` (componentized).
pub fn wasi_command(name: &str) -> Option<&'static [u8]> {
    built(name, wasm_pin_guests::wasi_command(name))
}

/// The WASI 0.3 command `name` of `guests/rust-p3/`.
pub fn p3_command(name: &str) -> Option<&'static [u8]> {
    built(name, wasm_pin_guests::wasi_p3_command(name))
}

/// A fresh, empty directory for this call: several test files share this
/// process and use the same names.
pub fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("wasm-pin-guests-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The bytes `p3-read` writes (and the tests' inputs, no two nearby pages
/// alike): byte `i` is `(i * 2654435761 mod 2^32) >> 13`.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// FNV-1a 64, as the guests compute it.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
