//! A WASI command that links the SDK and also uses `std::fs`:
//! `std-fs-probe PATH`.
//!
//! 1. Reads PATH's first 64 KiB zero-copy into a `PinnedBuf` (SDK).
//! 2. Allocates a 1 MiB buffer, reads the clock, and reads all of PATH with
//!    `std::fs` through it.
//!
//! Prints each pass's byte count and FNV-1a 64 checksum:
//!
//! ```text
//! pinned bytes=<n> fnv=<16 hex digits>
//! std bytes=<n> fnv=<16 hex digits>
//! ```
//!
//! Exits with 1 (and a message on stderr) on an error. On Debian's
//! wasi-libc, `std::fs` here failed with ENOTCAPABLE (libc's constructors
//! never ran) until the SDK linked `wasip1-start`.

use std::io::Read;
use std::process::exit;
use std::time::Instant;
use wasm_pin_sdk::{File, PinnedBuf};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

fn pinned(path: &str) -> Result<(), wasm_pin_sdk::Error> {
    let file = File::open(path)?;
    let mut buf = PinnedBuf::new(64 << 10)?;
    let len = buf.len();
    let n = file.read_at(&mut buf, 0..len, 0)?;
    println!("pinned bytes={n} fnv={:016x}", fnv1a(FNV_OFFSET, &buf[..n]));
    Ok(())
}

fn std_fs(path: &str) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut file = std::fs::File::open(path)?;
    let (mut n, mut h) = (0u64, FNV_OFFSET);
    loop {
        let k = file.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h = fnv1a(h, &buf[..k]);
    }
    println!("std bytes={n} fnv={h:016x}");
    eprintln!("std-fs-probe: std::fs pass {:?}", start.elapsed());
    Ok(())
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: std-fs-probe PATH");
        exit(2);
    };
    if let Err(e) = pinned(&path) {
        eprintln!("std-fs-probe: pinned read of {path}: {e}");
        exit(1);
    }
    if let Err(e) = std_fs(&path) {
        eprintln!("std-fs-probe: std::fs read of {path}: {e}");
        exit(1);
    }
}
