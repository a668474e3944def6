//! `p3-read`, a WASI 0.3 command: `p3-read PATH BUFFER-SIZE MODE [TOTAL]`.
//!
//! PATH lies under a preopened directory (found with
//! `wasi:filesystem/preopens`, opened with `descriptor.open-at`).
//!
//! - `read`: reads PATH with `descriptor.read-via-stream(0)`, lending the
//!   stream a buffer of exactly BUFFER-SIZE bytes per read
//!   (`reader.read(Vec::with_capacity(n))`), touches two bytes of each read
//!   (its first and last, as a program that only inspects its data would),
//!   folds every byte into an FNV-1a 64 checksum, then awaits the stream's
//!   result future. Prints `bytes=<n> fnv=<16 hex digits>` on stdout and
//!   `reads=<r> largest=<m>` (the largest single read) on stderr.
//! - `touch`: as `read`, but lends the same buffer again for every read
//!   and only touches the first and last byte of each (no checksum: what a
//!   program that streams data past itself costs, for the benchmarks).
//!   Prints `bytes=<n>` on stdout and `reads=<r> largest=<m>` on stderr.
//! - `cancel`: as `read`, but polls each read once and cancels it if it is
//!   not done then, keeping what the cancel reports as read; adds
//!   `cancels=<c> cancelled=<k>` (cancels that read nothing) on stderr.
//! - `write`: creates (or truncates) PATH and writes TOTAL bytes of
//!   [`pattern`] to it with `write-via-stream(_, 0)`, in BUFFER-SIZE chunks,
//!   then awaits the result. Prints `bytes=<n>`.
//! - `append`: the same with `append-via-stream`, creating PATH if needed
//!   and keeping what it holds. Prints `bytes=<n>`.
//! - `rewrite`: as `write`, but writes one BUFFER-SIZE buffer (bytes
//!   `pattern(0..n)`) over and over, setting only its first and last byte to
//!   the chunk's index (mod 256) before each write (what `touch` is to
//!   `read`: no per-byte work in the guest). Byte `i` of the file is
//!   `pattern(i % n)`, except the first and last of each chunk `k`, which
//!   are `k as u8`. Prints `bytes=<n>`.
//!
//! Output goes through `wasi:cli/stdout` (`write-via-stream`). On an error
//! it prints what failed (with WASI's error code) on stderr and `run`
//! returns `Err`, so the command exits with 1.

wit_bindgen::generate!({
    path: "../wit",
    world: "wasm-pin:p3-guests/command",
    generate_all,
});

use exports::wasi::cli::run::Guest;
use wasi::filesystem::types::{Descriptor, DescriptorFlags, ErrorCode, OpenFlags, PathFlags};
use wit_bindgen::StreamResult;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Byte `i` of what `write` and `append` write: `(i * 2654435761 mod
/// 2^32) >> 13`, truncated to a byte (the tests compute the same).
pub fn pattern(i: u64) -> u8 {
    ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8
}

struct P3Read;

export!(P3Read);

impl Guest for P3Read {
    async fn run() -> Result<(), ()> {
        let args = wasi::cli::environment::get_arguments();
        match command(&args).await {
            Ok((out, err)) => {
                print(false, out).await;
                if let Some(err) = err {
                    print(true, err).await;
                }
                Ok(())
            }
            Err(e) => {
                print(true, format!("p3-read: {e}\n")).await;
                Err(())
            }
        }
    }
}

/// Writes `text` to stdout (or stderr) through a `wasi:cli` stream and
/// waits until the host has taken it.
async fn print(stderr: bool, text: String) {
    let (mut tx, rx) = wit_stream::new::<u8>();
    let done = if stderr {
        wasi::cli::stderr::write_via_stream(rx)
    } else {
        wasi::cli::stdout::write_via_stream(rx)
    };
    // What the host does not take (it hung up) is lost, as with any closed
    // stdout.
    let _ = tx.write_all(text.into_bytes()).await;
    drop(tx);
    let _ = done.await;
}

/// Runs the command; returns its stdout and, maybe, a line for stderr.
async fn command(args: &[String]) -> Result<(String, Option<String>), String> {
    let usage = || "usage: p3-read PATH BUFFER-SIZE read|touch|cancel|write|rewrite|append [TOTAL]".to_string();
    let (path, size, mode) = match args {
        [_, path, size, mode, ..] => (path, size, mode),
        _ => return Err(usage()),
    };
    let n: usize = size.parse().map_err(|_| format!("bad buffer size {size:?}"))?;
    if n == 0 {
        return Err("the buffer size must not be 0".into());
    }
    let total = || -> Result<u64, String> {
        let t = args.get(4).ok_or_else(usage)?;
        t.parse().map_err(|_| format!("bad total {t:?}"))
    };
    match mode.as_str() {
        "read" | "cancel" => {
            let file = open(path, OpenFlags::empty(), DescriptorFlags::READ).await?;
            let r = read(&file, n, mode == "cancel")
                .await
                .map_err(|e| format!("reading {path}: {e:?}"))?;
            let mut err = format!("reads={} largest={}", r.reads, r.largest);
            if mode == "cancel" {
                err += &format!(" cancels={} cancelled={}", r.cancels, r.cancelled);
            }
            Ok((format!("bytes={} fnv={:016x}\n", r.bytes, r.fnv), Some(err + "\n")))
        }
        "touch" => {
            let file = open(path, OpenFlags::empty(), DescriptorFlags::READ).await?;
            let r = touch(&file, n).await.map_err(|e| format!("reading {path}: {e:?}"))?;
            let err = format!("reads={} largest={}\n", r.reads, r.largest);
            Ok((format!("bytes={}\n", r.bytes), Some(err)))
        }
        "rewrite" => {
            let file = open(path, OpenFlags::CREATE | OpenFlags::TRUNCATE, DescriptorFlags::WRITE).await?;
            let bytes = rewrite(&file, n, total()?)
                .await
                .map_err(|e| format!("writing {path}: {e}"))?;
            Ok((format!("bytes={bytes}\n"), None))
        }
        "write" | "append" => {
            let append = mode == "append";
            let open_flags = if append {
                OpenFlags::CREATE
            } else {
                OpenFlags::CREATE | OpenFlags::TRUNCATE
            };
            let file = open(path, open_flags, DescriptorFlags::WRITE).await?;
            let bytes = write(&file, n, total()?, append)
                .await
                .map_err(|e| format!("writing {path}: {e}"))?;
            Ok((format!("bytes={bytes}\n"), None))
        }
        _ => Err(usage()),
    }
}

/// Opens `path` under the preopen that holds it: the longest guest
/// directory that is a whole-component prefix of it (the `.` preopen for a
/// relative path).
async fn open(path: &str, open_flags: OpenFlags, flags: DescriptorFlags) -> Result<Descriptor, String> {
    let mut best: Option<(Descriptor, String, usize)> = None;
    for (dir, name) in wasi::filesystem::preopens::get_directories() {
        let trimmed = name.trim_end_matches('/');
        let rest = if name == "." && !path.starts_with('/') {
            Some(path.trim_start_matches("./"))
        } else if trimmed.is_empty() {
            path.strip_prefix('/')
        } else {
            path.strip_prefix(trimmed).and_then(|r| r.strip_prefix('/'))
        };
        if let Some(rest) = rest {
            if best.as_ref().is_none_or(|(_, _, len)| name.len() > *len) {
                best = Some((dir, rest.to_string(), name.len()));
            }
        }
    }
    let (dir, rest, _) = best.ok_or_else(|| format!("no preopened directory holds {path}"))?;
    dir.open_at(PathFlags::SYMLINK_FOLLOW, rest, open_flags, flags)
        .await
        .map_err(|e| format!("opening {path}: {e:?}"))
}

/// What a `read` pass saw.
struct Read {
    bytes: u64,
    fnv: u64,
    reads: u64,
    largest: usize,
    /// Reads cancelled (`cancel` mode), and of those, how many the host
    /// reported cancelled with nothing read.
    cancels: u64,
    cancelled: u64,
}

/// Reads all of `file` through its stream, `n` bytes lent per read. With
/// `cancel`, each read is polled once and, if the host has not finished it
/// then, cancelled (`stream.cancel-read`): what the cancel reports as read
/// is kept, and the next read goes on from there.
async fn read(file: &Descriptor, n: usize, cancel: bool) -> Result<Read, ErrorCode> {
    let (mut rx, result) = file.read_via_stream(0);
    let mut r = Read {
        bytes: 0,
        fnv: FNV_OFFSET,
        reads: 0,
        largest: 0,
        cancels: 0,
        cancelled: 0,
    };
    loop {
        let (status, buf) = if cancel {
            let mut read = std::pin::pin!(rx.read(Vec::with_capacity(n)));
            let first = std::future::poll_fn(|cx| std::task::Poll::Ready(std::future::Future::poll(read.as_mut(), cx))).await;
            match first {
                std::task::Poll::Ready(done) => done,
                std::task::Poll::Pending => {
                    r.cancels += 1;
                    let (status, buf) = read.as_mut().cancel();
                    if matches!(status, StreamResult::Cancelled) {
                        r.cancelled += 1;
                        continue;
                    }
                    (status, buf)
                }
            }
        } else {
            rx.read(Vec::with_capacity(n)).await
        };
        if let (Some(first), Some(last)) = (buf.first(), buf.last()) {
            std::hint::black_box((*first, *last));
            r.reads += 1;
            r.largest = r.largest.max(buf.len());
            r.bytes += buf.len() as u64;
            r.fnv = buf.iter().fold(r.fnv, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME));
        }
        match status {
            StreamResult::Complete(_) => {}
            StreamResult::Dropped | StreamResult::Cancelled => break,
        }
    }
    drop(rx);
    result.await?;
    Ok(r)
}

/// Reads all of `file` through its stream, lending the same `n`-byte buffer
/// to every read and touching only the first and last byte of each.
async fn touch(file: &Descriptor, n: usize) -> Result<Read, ErrorCode> {
    let (mut rx, result) = file.read_via_stream(0);
    let mut r = Read {
        bytes: 0,
        fnv: FNV_OFFSET,
        reads: 0,
        largest: 0,
        cancels: 0,
        cancelled: 0,
    };
    let mut buf = Vec::with_capacity(n);
    loop {
        buf.clear();
        let status;
        (status, buf) = rx.read(buf).await;
        if let (Some(first), Some(last)) = (buf.first(), buf.last()) {
            std::hint::black_box((*first, *last));
            r.reads += 1;
            r.largest = r.largest.max(buf.len());
            r.bytes += buf.len() as u64;
        }
        match status {
            StreamResult::Complete(_) => {}
            StreamResult::Dropped | StreamResult::Cancelled => break,
        }
    }
    drop(rx);
    result.await?;
    Ok(r)
}

/// Writes `total` bytes through a `write-via-stream` at offset 0 from one
/// `n`-byte buffer of [`pattern`] bytes, written again and again with only
/// its first and last byte changed (to the chunk's index) each time; returns
/// the bytes written.
async fn rewrite(file: &Descriptor, n: usize, total: u64) -> Result<u64, String> {
    let (mut tx, rx) = wit_stream::new::<u8>();
    let result = file.write_via_stream(rx, 0);
    let mut buf: Vec<u8> = (0..n as u64).map(pattern).collect();
    let mut written = 0u64;
    let mut chunk = 0u64;
    while written < total {
        let len = (total - written).min(n as u64) as usize;
        // SAFETY: `buf`'s storage holds `n` initialised bytes: filled above,
        // and a completed write only hands it back with its written bytes
        // drained from the front (`AbiBuffer::into_vec`), which moves no byte
        // out of the storage (`u8` is `Copy`) and overwrites none.
        unsafe { buf.set_len(len) };
        buf[0] = chunk as u8;
        buf[len - 1] = chunk as u8;
        buf = tx.write_all(buf).await;
        if !buf.is_empty() {
            // The host hung up: its result says why.
            written += (len - buf.len()) as u64;
            break;
        }
        written += len as u64;
        chunk += 1;
    }
    drop(tx);
    result.await.map_err(|e| format!("{e:?} after {written} bytes"))?;
    if written < total {
        return Err(format!("the stream closed after {written} of {total} bytes"));
    }
    Ok(written)
}

/// Writes `total` bytes of [`pattern`] in `n`-byte chunks through a
/// `write-via-stream` at offset 0 (or an `append-via-stream`); returns the
/// bytes written.
async fn write(file: &Descriptor, n: usize, total: u64, append: bool) -> Result<u64, String> {
    let (mut tx, rx) = wit_stream::new::<u8>();
    let result = if append {
        file.append_via_stream(rx)
    } else {
        file.write_via_stream(rx, 0)
    };
    let mut written = 0u64;
    while written < total {
        let len = (total - written).min(n as u64);
        let chunk: Vec<u8> = (written..written + len).map(pattern).collect();
        let left = tx.write_all(chunk).await;
        written += len - left.len() as u64;
        if !left.is_empty() {
            // The host hung up: its result says why.
            break;
        }
    }
    drop(tx);
    result.await.map_err(|e| format!("{e:?} after {written} bytes"))?;
    if written < total {
        return Err(format!("the stream closed after {written} of {total} bytes"));
    }
    Ok(written)
}
