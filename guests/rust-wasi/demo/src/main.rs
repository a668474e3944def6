//! wasm-pin's demo guest, an ordinary WASI program:
//! `demo [--longterm] INPUT COPY`.
//!
//! 1. Copies INPUT to COPY zero-copy (reads and writes on the same pinned
//!    buffers), for the host to compare with INPUT; this also warms the page
//!    cache and the host's I/O backend for both timed passes.
//! 2. Reads INPUT zero-copy: four pinned 1 MiB buffers, four asynchronous
//!    reads in flight (the host's io_uring or worker threads write the file's
//!    bytes straight into this program's memory). The buffers are pinned
//!    short-term (lock-free); with `--longterm` they are pinned long-term,
//!    which the host may register (io_uring fixed buffers) but whose first
//!    pin of a page must lock it resident.
//! 3. Reads INPUT again through WASI p2's `input-stream.blocking-read`, which
//!    copies every byte into a fresh list.
//!
//! Prints both read throughputs and their ratio, and the pin counters.

use std::time::Instant;
use wasm_pin_sdk::raw::streams::StreamError;
use wasm_pin_sdk::{raw, Error, File, PinnedBuf};

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 4;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let longterm = args.first().is_some_and(|a| a == "--longterm");
    if longterm {
        args.remove(0);
    }
    let [input, copy] = &args[..] else {
        eprintln!("usage: demo [--longterm] INPUT COPY");
        std::process::exit(2);
    };
    if let Err(e) = run(input, copy, longterm) {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}

/// Reads all of `file` with `DEPTH` reads in flight; with `copy`, writes
/// every chunk there from the same buffer. Returns the bytes read.
fn zero_copy(file: &File, bufs: &mut [PinnedBuf], copy: Option<&File>) -> Result<u64, Error> {
    let size = file.size()?;
    let mut at = 0;
    while at < size {
        let mut batch = Vec::with_capacity(bufs.len());
        for (i, buf) in bufs.iter_mut().enumerate() {
            let off = at + (i * CHUNK) as u64;
            if off < size {
                batch.push((off, file.submit_read_at(buf, 0..CHUNK, off)?));
            }
        }
        let done: Vec<(u64, usize)> = batch
            .into_iter()
            .map(|(off, t)| t.wait().map(|n| (off, n)))
            .collect::<Result<_, _>>()?;
        if let Some(copy) = copy {
            for ((off, n), buf) in done.iter().zip(bufs.iter()) {
                copy.write_at(buf, 0..*n, *off)?;
            }
        }
        let read: usize = done.iter().map(|(_, n)| n).sum();
        if read == 0 {
            break;
        }
        at += read as u64;
    }
    Ok(at)
}

/// Reads all of `file` through WASI p2's `input-stream`; returns the bytes.
fn streamed(file: &File) -> Result<u64, Error> {
    let stream = file.descriptor().read_via_stream(0)?;
    let mut total = 0u64;
    loop {
        match stream.blocking_read(CHUNK as u64) {
            Ok(bytes) => total += bytes.len() as u64,
            Err(StreamError::Closed) => return Ok(total),
            Err(StreamError::LastOperationFailed(e)) => {
                eprintln!("demo: stream read failed: {}", e.to_debug_string());
                return Err(Error::NotPreopened);
            }
        }
    }
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

fn run(input: &str, copy: &str, longterm: bool) -> Result<(), Error> {
    let file = File::open(input)?;
    let size = file.size()?;
    let pin = if longterm { PinnedBuf::new_longterm } else { PinnedBuf::new };
    let mut bufs = (0..DEPTH).map(|_| pin(CHUNK)).collect::<Result<Vec<_>, _>>()?;
    let backend = raw::zero_copy_io::io_backend();
    println!(
        "demo: {input}, {} MiB; {DEPTH} {} pinned {} KiB buffers, {DEPTH} reads in flight ({backend:?})",
        size >> 20,
        if longterm { "long-term" } else { "short-term" },
        CHUNK >> 10
    );

    let out = File::create(copy)?;
    let t = Instant::now();
    let copied = zero_copy(&file, &mut bufs, Some(&out))?;
    println!(
        "  zero-copy copy:        {copied} bytes to {copy} in {:.3} s",
        t.elapsed().as_secs_f64()
    );
    // One-call transfers on a plain Vec: its first 4 KiB read into it and
    // written back over the copy's (the host's comparison checks them).
    let mut head = vec![0u8; 4096];
    let n = file.read_into(&mut head, 0)?;
    out.write_from(&head[..n], 0)?;
    let t = Instant::now();
    let zc = zero_copy(&file, &mut bufs, None)?;
    let zc_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let st = streamed(&file)?;
    let st_secs = t.elapsed().as_secs_f64();
    let (a, b) = (mib_s(zc, zc_secs), mib_s(st, st_secs));
    println!("  zero-copy read:        {zc} bytes in {zc_secs:.3} s, {a:.0} MiB/s");
    println!("  WASI input-stream:     {st} bytes in {st_secs:.3} s, {b:.0} MiB/s (copies every byte)");
    println!("  ratio:                 {:.2}x", a / b);
    drop(bufs);
    let s = wasm_pin_sdk::stats();
    println!(
        "  pins (guest's view):   {} pages acquired, {} released; {} lock-free, {} locked",
        s.foll_pin_acquired, s.foll_pin_released, s.fast_path_pages, s.slow_path_pages
    );
    if zc != size || st != size || copied != size {
        eprintln!("demo: short read: {zc} / {st} / {copied} of {size} bytes");
        std::process::exit(1);
    }
    Ok(())
}
