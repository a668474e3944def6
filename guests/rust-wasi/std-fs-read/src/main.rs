//! A plain `std` WASI command of the guest route (no SDK): `std-fs-read PATH`.
//!
//! Allocates a 256 KiB buffer, then makes WASI calls (the clock, `std::fs`):
//! reads PATH through that buffer and again through a 1 MiB one, and prints
//! each pass's byte count and FNV-1a 64 checksum:
//!
//! ```text
//! read256k bytes=<n> fnv=<16 hex digits>
//! read1m bytes=<n> fnv=<16 hex digits>
//! ```
//!
//! Exits with 1 (and a message on stderr) if a read fails. Without
//! `wasip1-start` this program traps in the preview1 adapter on Debian's
//! wasi-libc (its `malloc` hands out the adapter's `State` page).

use std::io::Read;
use std::process::exit;
use std::time::Instant;
use wasip1_start as _;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// Reads all of `path` through `buf`; returns the bytes and their checksum.
fn read_all(path: &str, buf: &mut [u8]) -> std::io::Result<(u64, u64)> {
    let mut file = std::fs::File::open(path)?;
    let (mut n, mut h) = (0u64, FNV_OFFSET);
    loop {
        let k = file.read(buf)?;
        if k == 0 {
            return Ok((n, h));
        }
        n += k as u64;
        h = fnv1a(h, &buf[..k]);
    }
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: std-fs-read PATH");
        exit(2);
    };
    let mut small = vec![0u8; 256 << 10];
    let start = Instant::now();
    for (name, buf) in [("read256k", &mut small), ("read1m", &mut vec![0u8; 1 << 20])] {
        match read_all(&path, buf) {
            Ok((n, h)) => println!("{name} bytes={n} fnv={h:016x}"),
            Err(e) => {
                eprintln!("std-fs-read: {path}: {e}");
                exit(1);
            }
        }
    }
    eprintln!("std-fs-read: {:?}", start.elapsed());
}
