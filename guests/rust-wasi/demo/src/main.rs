//! wasm-pin's demo guest, an ordinary WASI program:
//! `demo [--longterm] INPUT COPY`.
//!
//! 1. Copies INPUT to COPY zero-copy (reads and writes on the same pinned
//!    buffers), for the host to compare with INPUT; this also warms the page
//!    cache and the host's I/O backend for both timed passes.
//! 2. Reads INPUT zero-copy: eight pinned 1 MiB buffers, eight asynchronous
//!    reads in flight (the host's io_uring or worker threads write the file's
//!    bytes straight into this program's memory), once with direct I/O
//!    (`open-direct`: device → guest memory, no page cache) where the
//!    filesystem allows it, and once through the page cache. The buffers are
//!    pinned short-term (lock-free); with `--longterm` they are pinned
//!    long-term, which the host may register (io_uring fixed buffers).
//! 3. Reads INPUT again through WASI p2's `input-stream.blocking-read`, which
//!    copies every byte into a fresh list.
//!
//! Prints each pass's throughput and the host CPU time it took (when the
//! host allows `host-cpu-time`), the ratios, and the pin counters.

use std::time::{Duration, Instant};
use wasm_pin_sdk::raw::streams::StreamError;
use wasm_pin_sdk::{raw, Error, File, PinnedBuf};

const CHUNK: usize = 1 << 20;
const DEPTH: usize = 8;

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

/// One timed pass: bytes, throughput and the host's CPU time for it.
#[derive(Clone, Copy)]
struct Pass {
    bytes: u64,
    mib_s: f64,
    cpu: Option<Duration>,
}

/// Runs `read` once and prints what it took.
fn timed(name: &str, read: impl FnOnce() -> Result<u64, Error>) -> Result<Pass, Error> {
    let cpu0 = wasm_pin_sdk::host_cpu_time().ok();
    let t = Instant::now();
    let bytes = read()?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu0.and_then(|c0| Some(wasm_pin_sdk::host_cpu_time().ok()? - c0));
    let mib_s = mib_s(bytes, secs);
    let cpu_text = match cpu {
        Some(c) => format!(", host CPU {:.0} ms ({:.0} ms/GiB)", c.as_secs_f64() * 1e3, c.as_secs_f64() * 1e3 * (1u64 << 30) as f64 / bytes.max(1) as f64),
        None => String::new(),
    };
    println!("  {name:<23}{bytes} bytes in {secs:.3} s, {mib_s:.0} MiB/s{cpu_text}");
    Ok(Pass { bytes, mib_s, cpu })
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
    // The next 4 KiB the same way through registered files (a slot each:
    // no descriptor lent per call).
    let (rin, rout) = (file.register()?, out.register()?);
    let n = rin.read_into(&mut head, 4096)?;
    rout.write_from(&head[..n], 4096)?;
    drop((rin, rout));
    let direct = match file.open_direct() {
        Ok(d) => Some(d),
        Err(e) => {
            println!("  (no direct I/O on this filesystem: {e}; zero-copy reads use the page cache only)");
            None
        }
    };
    let zd = direct
        .as_ref()
        .map(|d| timed("zero-copy, direct I/O:", || zero_copy(d, &mut bufs, None)))
        .transpose()?;
    let zc = timed("zero-copy, page cache:", || zero_copy(&file, &mut bufs, None))?;
    let st = timed("WASI input-stream:", || streamed(&file))?;
    println!("  (the input-stream copies every byte into a fresh list; zero-copy reads land in pinned pages)");
    for (name, p) in [("direct I/O", zd), ("page cache", Some(zc))] {
        let Some(p) = p else { continue };
        let cpu = match (p.cpu, st.cpu) {
            (Some(a), Some(b)) if !a.is_zero() => format!(", {:.1}x less host CPU per byte", b.as_secs_f64() / a.as_secs_f64()),
            _ => String::new(),
        };
        println!("  ratio, zero-copy ({name}) / input-stream: {:.2}x the throughput{cpu}", p.mib_s / st.mib_s);
    }
    drop(bufs);
    let (zc, st) = (zc.bytes, st.bytes);
    let s = wasm_pin_sdk::stats();
    println!(
        "  pins (guest's view):   {} pages acquired, {} released; {} lock-free, {} locked",
        s.foll_pin_acquired, s.foll_pin_released, s.fast_path_pages, s.slow_path_pages
    );
    if zc != size || st != size || copied != size || zd.is_some_and(|p| p.bytes != size) {
        eprintln!("demo: short read: {zc} / {st} / {copied} of {size} bytes");
        std::process::exit(1);
    }
    Ok(())
}
