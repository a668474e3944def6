//! Issue 21: an unmodified WASI 0.3 program's file streams go straight
//! between the file and its own buffers. `p3-read` (`guests/rust-p3`) runs
//! on wasmtime-wasi's p3 with `host_api::add_p3_streams_to_linker` in an
//! async store whose memory is an `Mm`: every lent buffer is filled whole by
//! one transfer (no 8 KiB cap, no host buffer): from the page cache inline
//! by default, else on the backend (the tests of the backend path turn
//! `IoConfig::stream_reads_inline` off), writes and appends
//! land, no pin outlives its transfer, another task runs while a 256 MiB
//! file streams in, and a store dropped mid-stream leaves nothing behind.

use host_api::{BackendKind, IoConfig, IoCounts, PinCtx};
use runtime_mm::{Mm, PinMemoryCreator, PoolConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p3::bindings::Command;
use wasmtime_wasi::{FsPerms, WasiCtx};

use crate::support::backends;
use crate::support::rust_guests;

use host_api::WasiPinHost as State;

fn guest() -> Option<&'static [u8]> {
    p3_guest("p3-read")
}

use rust_guests::{fnv1a, p3_command as p3_guest, pattern, scratch};

/// A p3 engine whose memories are `Mm`s of `creator` (with epoch
/// interruption, which `run_guest` uses to make guests yield, as embedders
/// sharing executor threads do), and the linker with WASI 0.3 and the
/// zero-copy streams.
fn setup(creator: &Arc<PinMemoryCreator>) -> (Engine, Linker<State>) {
    let mut config = Config::new();
    config.wasm_component_model_async(true).epoch_interruption(true);
    let engine = creator.build_engine(&mut config).unwrap();
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p3::add_to_linker(&mut linker).unwrap();
    host_api::add_p3_streams_to_linker(&mut linker).unwrap();
    host_api::add_to_linker_async(&mut linker).unwrap();
    (engine, linker)
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
    counts: IoCounts,
    memory: Arc<Mm>,
}

/// Runs `p3-read args` with `dir` as `/data` on `backend`, on `rt`; every
/// stream read a backend transfer (`stream_reads_inline` off: what these
/// tests check is the backend path).
fn run(rt: &tokio::runtime::Runtime, backend: BackendKind, dir: &Path, args: &[&str]) -> Option<Ran> {
    let io = IoConfig {
        backend,
        stream_reads_inline: false,
        ..IoConfig::default()
    };
    run_guest(guest()?, rt, io, dir, args)
}

fn run_guest(bytes: &[u8], rt: &tokio::runtime::Runtime, io: IoConfig, dir: &Path, args: &[&str]) -> Option<Ran> {
    let creator = PinMemoryCreator::new();
    let (engine, linker) = setup(&creator);
    let component = Component::new(&engine, bytes).unwrap();
    let (stdout, stderr) = (MemoryOutputPipe::new(1 << 16), MemoryOutputPipe::new(1 << 16));
    let mut wasi = WasiCtx::builder();
    wasi.preopened_dir(dir, "/data", FsPerms::ReadWrite).unwrap();
    wasi.args(args).stdout(stdout.clone()).stderr(stderr.clone());
    let state = State::new(wasi.build(), PinCtx::default().with_io(io));
    // The guest yields to the executor at every epoch tick (1 ms).
    let ticker = {
        let engine = engine.clone();
        EveryMs::start(move || engine.increment_epoch())
    };
    let (ok, counts, memory) = rt.block_on(async {
        let mut store = Store::new(&engine, state);
        store.epoch_deadline_async_yield_and_update(1);
        let (command, mms) = creator.capture(|| {
            // The memory is made while the instantiation future is first
            // polled; drive it here so the capture sees it.
            futures_lite_block(Command::instantiate_async(&mut store, &component, &linker))
        });
        let command = command.unwrap();
        let ok = store
            .run_concurrent(async move |s| command.wasi_cli_run().call_run(s).await)
            .await
            .unwrap()
            .unwrap()
            .is_ok();
        let counts = store.data().pins.io_counts();
        (ok, counts, mms[0].clone())
    });
    drop(ticker);
    let text = |p: &MemoryOutputPipe| String::from_utf8(p.contents().to_vec()).unwrap();
    Some(Ran {
        ok,
        stdout: text(&stdout),
        stderr: text(&stderr),
        counts,
        memory,
    })
}

/// Runs `f` every millisecond on a thread of its own until dropped (the
/// drop stops and joins it).
struct EveryMs(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl EveryMs {
    fn start(f: impl Fn() + Send + 'static) -> EveryMs {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    f();
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        EveryMs(stop, Some(thread))
    }
}

impl Drop for EveryMs {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(t) = self.1.take() {
            t.join().unwrap();
        }
    }
}

/// Drives a future that needs no other task to completion on this thread
/// (instantiation: compiled code runs, nothing waits on I/O).
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// Polls `f` until `until()` holds after a poll (then drops it: `None`),
/// or until it completes (`Some`, its output).
async fn poll_until<F: std::future::Future>(f: F, until: impl Fn() -> bool) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending if until() => std::task::Poll::Ready(None),
        std::task::Poll::Pending => std::task::Poll::Pending,
    })
    .await
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `reads=<r> largest=<m>` from the guest's stderr.
fn reads(stderr: &str) -> (usize, usize) {
    let f: Vec<usize> = stderr
        .split_whitespace()
        .map(|f| f.split_once('=').unwrap().1.parse().unwrap())
        .collect();
    (f[0], f[1])
}

/// Every lent buffer is filled whole by one transfer on the backend,
/// whatever its size: 4 MiB arrive in 64 reads of 64 KiB or 4 of 1 MiB
/// (wasmtime-wasi's own p3 takes 512 reads of 8 KiB for either), on io_uring
/// and on the worker threads, and no pin is left afterwards.
#[test]
fn reads_fill_each_lent_buffer_with_one_transfer() {
    let rt = rt();
    let dir = scratch("read");
    let input = pattern(4 << 20);
    std::fs::write(dir.join("in.bin"), &input).unwrap();
    for backend in backends::backends() {
        for n in [64 << 10, 1 << 20] {
            let size = n.to_string();
            let Some(ran) = run(&rt, backend, &dir, &["p3-read", "/data/in.bin", &size, "read"]) else {
                return;
            };
            assert!(ran.ok, "{backend:?} {n}: {}", ran.stderr);
            assert_eq!(
                ran.stdout,
                format!("bytes={} fnv={:016x}\n", input.len(), fnv1a(&input))
            );
            assert_eq!(reads(&ran.stderr), (input.len() / n, n), "{backend:?} {n}");
            // One transfer per read, plus the read that finds the end.
            assert!(
                ran.counts.submitted > (input.len() / n) as u64,
                "{backend:?}: {:?}",
                ran.counts
            );
            assert_eq!(ran.memory.stats().pins_outstanding(), 0);
            assert!(ran.memory.stats().foll_pin_acquired > 0, "the buffers were pinned");
        }
    }
}

/// Page-cached data is read inline (the default `stream_reads_inline`): each
/// lent buffer is filled by one `preadv2(RWF_NOWAIT)` on the store's thread,
/// under a pin, and a cached file needs no backend transfer at all. A file
/// evicted from the page cache goes to the backend for what would block.
/// The bytes are the file's either way, and no pin is left.
#[test]
fn cached_stream_reads_are_served_inline_and_the_rest_on_the_backend() {
    let Some(bytes) = guest() else { return };
    let rt = rt();
    let dir = scratch("inline");
    let input = pattern(4 << 20);
    let path = dir.join("in.bin");
    std::fs::write(&path, &input).unwrap();
    let want = format!("bytes={} fnv={:016x}\n", input.len(), fnv1a(&input));
    let args = ["p3-read", "/data/in.bin", "65536", "read"];
    for backend in backends::backends() {
        let io = IoConfig {
            backend,
            ..IoConfig::default()
        };
        let ran = run_guest(bytes, &rt, io.clone(), &dir, &args).unwrap();
        assert!(
            ran.ok && ran.stdout == want,
            "{backend:?}: {} {}",
            ran.stdout,
            ran.stderr
        );
        assert_eq!(reads(&ran.stderr), (64, 65536), "{backend:?}");
        // 64 reads and the one that finds the end, none submitted.
        assert_eq!((ran.counts.inline_reads, ran.counts.submitted), (65, 0), "{backend:?}");
        assert_eq!(ran.memory.stats().pins_outstanding(), 0);
        assert!(ran.memory.stats().foll_pin_acquired >= 64, "inline reads pin too");

        // Evicted: the reads that would block go to the backend.
        let f = std::fs::File::open(&path).unwrap();
        f.sync_all().unwrap();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let ran = run_guest(bytes, &rt, io, &dir, &args).unwrap();
        assert!(
            ran.ok && ran.stdout == want,
            "{backend:?}: {} {}",
            ran.stdout,
            ran.stderr
        );
        assert!(ran.counts.submitted > 0, "{backend:?} cold: {:?}", ran.counts);
        assert_eq!(ran.memory.stats().pins_outstanding(), 0);
    }
}

/// Cancellation (`finish`): the guest polls each read once and cancels it
/// if it is not done. The host asks the backend to cancel and answers only
/// once the kernel has let go of the buffer: `cancelled` with nothing read,
/// or the bytes that had landed. Either way no byte is lost or repeated (the
/// whole file arrives, checksum intact) and no pin is left.
#[test]
fn cancelled_reads_lose_and_repeat_nothing() {
    let rt = rt();
    let dir = scratch("cancel");
    let input = pattern(8 << 20);
    std::fs::write(dir.join("in.bin"), &input).unwrap();
    for backend in backends::backends() {
        let Some(ran) = run(&rt, backend, &dir, &["p3-read", "/data/in.bin", "262144", "cancel"]) else {
            return;
        };
        assert!(ran.ok, "{backend:?}: {}", ran.stderr);
        assert_eq!(
            ran.stdout,
            format!("bytes={} fnv={:016x}\n", input.len(), fnv1a(&input))
        );
        let fields: Vec<u64> = ran
            .stderr
            .split_whitespace()
            .map(|f| f.split_once('=').unwrap().1.parse().unwrap())
            .collect();
        let [_reads, largest, cancels, _cancelled] = fields[..] else {
            panic!("{}", ran.stderr)
        };
        assert!(largest <= 262_144);
        // Every read is still in the kernel when first polled, so each one
        // went through a cancel.
        assert!(cancels > 0, "{backend:?}: no read was cancelled: {}", ran.stderr);
        assert_eq!(ran.memory.stats().pins_outstanding(), 0);
        println!("{backend:?}: {}", ran.stderr.trim_end());
    }
}

/// #21.2: a WASI 0.3 program chooses `O_DIRECT` and explicit transfers
/// (`wasm-pin:p3/one-call-io`, `wit/p3`) on its `wasi:filesystem@0.3.0`
/// descriptors as a 0.2 program does: `open-direct` (where the filesystem
/// allows it), 1 MiB `read-into`s into its own aligned buffer, a misaligned
/// direct read refused with `inval`, and a registered slot.
#[test]
fn a_p3_program_chooses_direct_io_and_explicit_transfers() {
    let Some(bytes) = p3_guest("p3-direct") else { return };
    // Beside the build, not in /tmp: tmpfs refuses O_DIRECT.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("p3-direct-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = pattern((3 << 20) + 8192);
    std::fs::write(dir.join("in.bin"), &input).unwrap();
    let rt = rt();
    let ran = run_guest(bytes, &rt, IoConfig::default(), &dir, &["p3-direct", "in.bin"]).unwrap();
    assert!(ran.ok, "{}", ran.stderr);
    let direct = ran.stdout.split_whitespace().next().unwrap();
    let (expect_direct, misaligned) = if direct == "direct=yes" {
        ("direct=yes", "inval")
    } else {
        println!("O_DIRECT is refused here: {direct}");
        assert_eq!(direct, "direct=opnotsupp");
        ("direct=opnotsupp", "-")
    };
    assert_eq!(
        ran.stdout,
        format!(
            "{expect_direct} bytes={} fnv={:016x} misaligned={misaligned} fixed=4096\n",
            input.len(),
            fnv1a(&input)
        )
    );
    assert_eq!(ran.memory.stats().pins_outstanding(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes and appends go from the guest's buffers to the file on the
/// backend; the file holds exactly what was written.
#[test]
fn writes_and_appends_land_from_the_guests_buffers() {
    let rt = rt();
    let dir = scratch("write");
    for backend in backends::backends() {
        let total = (3 << 20) + 123;
        let t = total.to_string();
        let Some(ran) = run(&rt, backend, &dir, &["p3-read", "/data/out.bin", "65536", "write", &t]) else {
            return;
        };
        assert!(ran.ok, "{}", ran.stderr);
        assert_eq!(ran.stdout, format!("bytes={total}\n"));
        assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), pattern(total));
        assert!(ran.counts.submitted >= (total / 65536) as u64, "{:?}", ran.counts);

        std::fs::write(dir.join("log.bin"), vec![9u8; 1000]).unwrap();
        let more = (2 << 20) + 7;
        let m = more.to_string();
        let ran = run(
            &rt,
            backend,
            &dir,
            &["p3-read", "/data/log.bin", "1048576", "append", &m],
        )
        .unwrap();
        assert!(ran.ok, "{}", ran.stderr);
        let got = std::fs::read(dir.join("log.bin")).unwrap();
        assert_eq!(got.len(), 1000 + more);
        assert_eq!(&got[..1000], &[9u8; 1000][..]);
        assert_eq!(&got[1000..], &pattern(more)[..]);
        assert_eq!(ran.memory.stats().pins_outstanding(), 0);
    }
}

/// No executor thread blocks: on a current-thread runtime, another task
/// keeps ticking while the guest streams 256 MiB in 1 MiB reads.
#[test]
fn another_task_runs_while_a_large_file_streams_in() {
    let Some(bytes) = guest() else { return };
    let dir = scratch("big");
    let input = pattern(256 << 20);
    std::fs::write(dir.join("big.bin"), &input).unwrap();
    let args = ["p3-read", "/data/big.bin", "1048576", "read"];
    // On the backend, and read inline from the page cache (CPU work of the
    // store's task, as the guest's own code; epochs make both yield); each
    // on a fresh one-thread runtime with a task that counts the turns the
    // executor gives it.
    for inline in [false, true] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Another thread pulses every millisecond; the task counts the
        // pulses it got a turn for (a pulse while it waits for its turn
        // coalesces with the next).
        let ticks = Arc::new(AtomicU64::new(0));
        let pulse = Arc::new(tokio::sync::Notify::new());
        let pulser = {
            let pulse = pulse.clone();
            EveryMs::start(move || pulse.notify_one())
        };
        let t = ticks.clone();
        let ticker = rt.spawn(async move {
            loop {
                pulse.notified().await;
                t.fetch_add(1, Ordering::Relaxed);
            }
        });
        let io = IoConfig {
            stream_reads_inline: inline,
            ..IoConfig::default()
        };
        let start = Instant::now();
        let ran = run_guest(bytes, &rt, io, &dir, &args).unwrap();
        let took = start.elapsed();
        ticker.abort();
        drop(pulser);
        assert!(ran.ok, "{}", ran.stderr);
        assert_eq!(
            ran.stdout,
            format!("bytes={} fnv={:016x}\n", input.len(), fnv1a(&input))
        );
        assert_eq!(ran.counts.inline_reads > 0, inline, "{:?}", ran.counts);
        let ticks = ticks.load(Ordering::Relaxed);
        // The guest yields at every epoch tick (1 ms): many turns, inline
        // reads and all.
        let want = 32;
        assert!(
            ticks >= want,
            "inline {inline}: the other task ran {ticks} times in {took:?}"
        );
        println!("inline {inline}: {ticks} turns of the other task in {took:?}");
    }
}

/// A store dropped while its guest streams a file in (the embedder's
/// deadline): nothing is left pinned, and its pooled slot comes back for
/// the next tenant once the transfer in flight has ended.
#[test]
fn a_store_dropped_mid_stream_leaves_nothing_behind() {
    let Some(bytes) = guest() else { return };
    let dir = scratch("drop");
    std::fs::write(dir.join("big.bin"), pattern(256 << 20)).unwrap();
    let creator = PinMemoryCreator::pooled(PoolConfig {
        slots: 1,
        max_memory_bytes: 64 << 20,
        guard_bytes: 1 << 20,
        keep_resident_bytes: 64 << 10,
        ..PoolConfig::default()
    })
    .unwrap();
    let (engine, linker) = setup(&creator);
    let component = Component::new(&engine, bytes).unwrap();
    let rt = rt();
    let tenant = |args: &[&str]| {
        let mut wasi = WasiCtx::builder();
        wasi.preopened_dir(&dir, "/data", FsPerms::ReadWrite).unwrap();
        wasi.args(args);
        // A backend transfer in flight is what this test drops.
        let io = IoConfig {
            stream_reads_inline: false,
            ..IoConfig::default()
        };
        State::new(wasi.build(), PinCtx::default().with_io(io))
    };
    rt.block_on(async {
        let mut store = Store::new(&engine, tenant(&["p3-read", "/data/big.bin", "65536", "read"]));
        // The engine interrupts by epoch; nothing ticks here.
        store.epoch_deadline_async_yield_and_update(1);
        let (command, mms) =
            creator.capture(|| futures_lite_block(Command::instantiate_async(&mut store, &component, &linker)));
        let (command, mm) = (command.unwrap(), mms.into_iter().next().unwrap());
        let run = store.run_concurrent(async move |s| command.wasi_cli_run().call_run(s).await);
        // Dropped as soon as a stream transfer is seen holding the guest's
        // buffer, or else 20 ms in (wasmtime may drive many reads inside one
        // poll of `run`, so a transfer is not always seen), mid-stream all
        // the same: 256 MiB in 64 KiB reads take far longer.
        let start = Instant::now();
        let in_flight = || mm.stats().pins_outstanding() > 0 || start.elapsed() > Duration::from_millis(20);
        if let Some(r) = poll_until(run, in_flight).await {
            panic!("the read finished first: {:?}", r.map(|r| r.map(drop)));
        }
        drop(store);
        // The transfer in flight still holds its pin (and so the slot)
        // until the kernel is done; then nothing is left.
        let deadline = Instant::now() + Duration::from_secs(2);
        while mm.stats().pins_outstanding() != 0 {
            assert!(Instant::now() < deadline, "the transfer's pin was never released");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(mm);
        let pool = creator.pool().unwrap();
        while pool.stats().free != 1 {
            assert!(
                Instant::now() < deadline,
                "the slot never came back: {:?}",
                pool.stats()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The next tenant runs to completion on the same slot.
        let mut store = Store::new(&engine, tenant(&["p3-read", "/data/big.bin", "1048576", "read"]));
        // The engine interrupts by epoch; nothing ticks here.
        store.epoch_deadline_async_yield_and_update(1);
        let command = Command::instantiate_async(&mut store, &component, &linker)
            .await
            .unwrap();
        let r = store
            .run_concurrent(async move |s| command.wasi_cli_run().call_run(s).await)
            .await
            .unwrap()
            .unwrap();
        assert!(r.is_ok());
    });
}
