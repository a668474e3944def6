//! An unmodified std-only WASI command (no SDK, no pin imports):
//! `p1-read PATH BUFSIZE`.
//!
//! Opens PATH with `std::fs::File::open` and reads it to the end with
//! `File::read` into one `vec![0u8; BUFSIZE]`, touching the first and last
//! byte of each read (`black_box`, as a program that only inspects its data
//! would); prints `bytes=<n>`. Exits with 1 (and a message on stderr) if a
//! read fails, with 2 on bad arguments.
//!
//! `benches/wasi_reads.rs` runs it as a core module on wasmtime-wasi's p1
//! (`wasm_pin_guests::wasi_p1_module`), as `wasm-pin run` runs a
//! `wasm32-wasip1` program, and componentized through the preview1 command
//! adapter (`wasm_pin_guests::wasi_command`).

use std::hint::black_box;
use std::io::Read;
use std::process::exit;
use wasip1_start as _;

fn read_all(path: &str, buf: &mut [u8]) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut n = 0u64;
    loop {
        let k = file.read(buf)?;
        if k == 0 {
            return Ok(n);
        }
        black_box((buf[0], buf[k - 1]));
        n += k as u64;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (path, size) = match &args[..] {
        [_, path, size] => (path, size),
        _ => {
            eprintln!("usage: p1-read PATH BUFSIZE");
            exit(2);
        }
    };
    let size: usize = match size.parse() {
        Ok(n) if n > 0 => n,
        _ => {
            eprintln!("p1-read: bad buffer size {size:?}");
            exit(2);
        }
    };
    let mut buf = vec![0u8; size];
    match read_all(path, &mut buf) {
        Ok(n) => println!("bytes={n}"),
        Err(e) => {
            eprintln!("p1-read: {path}: {e}");
            exit(1);
        }
    }
}
