//! Unmodified WASI programs on a 256 MiB page-cached file, side by side with
//! native loops (issue 20 item 5, issue 21 item 5). One process, one run.
//!
//! - `p1_read_256mib/<variant>/<buf>`: `p1-read` (`guests/rust-wasi`, std
//!   only: `std::fs::File::read` into one `vec![0u8; buf]`) reads the file,
//!   (a) `native_p1`: its `wasm32-wasip1` core module on wasmtime-wasi's
//!   preview1 as `wasm-pin run` runs it (`src/p1.rs`: the engine of
//!   `src/main.rs`, `host_api::WasiP1PinHost` + `add_to_core_linker`, `_start`),
//!   (b) `adapter_p2`: the same program componentized with the preview1
//!   command adapter on wasmtime-wasi's p2 (sync) + the pin imports
//!   (`src/command.rs`), (c) `native_loop`: a host `File::read` loop into a
//!   page-aligned buffer of the same size.
//! - `p3_read_256mib/<variant>/<buf>`: `p3-read PATH buf touch`
//!   (`guests/rust-p3`, a WASI 0.3 command lending one `buf`-byte buffer to
//!   every `read-via-stream` read), in an async store on a 2-worker tokio
//!   runtime (`run_concurrent`): `wasm_pin_streams` (wasmtime-wasi's p3 with
//!   `host_api::add_p3_streams_to_linker`), `wasmtime_wasi_p3` (its own
//!   streams, non-blocking: 8 KiB reads on `spawn_blocking`),
//!   `wasmtime_wasi_p3_blocking` (`allow_blocking_current_thread(true)`: the
//!   read runs on the executor thread), `native_pread` (a host `pread` loop).
//! - `p3_write_256mib/<variant>/<buf>`: `p3-read PATH buf rewrite 256MiB`
//!   writes a new 256 MiB file (created and truncated per run) through
//!   `write-via-stream`, the same variants against a native `pwrite` loop.
//!
//! All p3 variants share one engine (memories from a `PinMemoryCreator`,
//! component-model async, as `src/main.rs` makes it for WASI 0.3) and one
//! compiled component; only the linker differs. Every iteration makes a new
//! store and instantiates through an `InstancePre`, as `wasm-pin run` does
//! once per program.
//!
//! With `--bench`, after criterion has measured a comparison (one group at
//! one buffer size), its variants also run side by side outside criterion's
//! timing (`compare`): round-robin, `ROUNDS` runs each, under
//! `CLOCK_PROCESS_CPUTIME_ID` (every thread of this process: tokio workers,
//! blocking threads, io_uring workers, the guest's own code), printed as
//! `cpu_per_gib <group>/<variant> <buf>: <ms> ms (... median GiB/s, ratio
//! to the native loop)`. In criterion's test mode (`cargo test --benches`)
//! every variant runs once and nothing else.

#[path = "support/io_common.rs"]
mod io_common;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use host_api::WasiPinHost as State;
use host_api::{IoConfig, PinCtx, Quotas, WasiP1PinHost};
use io_common::{input, AlignedBuf, SIZE};
use runtime_mm::PinMemoryCreator;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, Module, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// The buffer sizes: 64 KiB and 1 MiB.
const BUFS: [(usize, &str); 2] = [(64 << 10, "64KiB"), (1 << 20, "1MiB")];
/// Side-by-side rounds per comparison (`compare`).
const ROUNDS: u32 = 5;

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The filters criterion was given (positional arguments), to run the CPU
/// figures only for the benchmarks it runs (plain substring match on
/// `group/variant/buf`, which is what a filter usually is).
fn filters() -> Vec<String> {
    const TAKES_VALUE: &[&str] = &[
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--save-baseline",
        "-s",
        "--baseline",
        "-b",
        "--baseline-lenient",
        "--load-baseline",
        "--profile-time",
        "--output-format",
        "--color",
        "-c",
        "--plotting-backend",
        "--format",
    ];
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a.starts_with('-') {
            if TAKES_VALUE.contains(&a.as_str()) {
                args.next();
            }
        } else {
            out.push(a);
        }
    }
    out
}

/// This process's CPU time, every thread.
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Whether criterion runs the benchmark `id` (`group/variant/buf`): no
/// filter, or one that is a substring of it.
fn wanted(id: &str) -> bool {
    let filters = filters();
    filters.is_empty() || filters.iter().any(|x| id.contains(x.as_str()))
}

/// One side of a comparison: a name and one run of it (`SIZE` bytes).
struct Variant<'a> {
    name: &'static str,
    run: Box<dyn FnMut() + 'a>,
}

fn variant<'a>(name: &'static str, run: impl FnMut() + 'a) -> Variant<'a> {
    Variant {
        name,
        run: Box::new(run),
    }
}

/// Benchmarks every variant of `group` at buffer size `buf` with criterion;
/// then, with `--bench`, runs them side by side outside criterion's timing:
/// each once to warm up, then `ROUNDS` rounds, one run of each variant per
/// round in turn (so a drift of this shared machine hits all of them alike).
/// Prints per variant its median wall time as throughput, that against the
/// last variant (the native loop), and the process CPU time per GiB (every
/// thread of this process, during its runs):
/// `cpu_per_gib <group>/<variant> <buf>: <ms> ms (...)`.
fn compare(g: &mut BenchmarkGroup<'_, WallTime>, group: &str, buf: &str, variants: &mut [Variant<'_>]) {
    for v in variants.iter_mut() {
        g.bench_function(BenchmarkId::new(v.name, buf), |b| b.iter(|| (v.run)()));
    }
    let mut variants: Vec<&mut Variant<'_>> = variants
        .iter_mut()
        .filter(|v| wanted(&id(group, v.name, buf)))
        .collect();
    if !bench_mode() || variants.is_empty() {
        return;
    }
    let mut walls = vec![Vec::new(); variants.len()];
    let mut cpus = vec![Duration::ZERO; variants.len()];
    for v in variants.iter_mut() {
        (v.run)();
    }
    for _ in 0..ROUNDS {
        for (i, v) in variants.iter_mut().enumerate() {
            let (cpu0, wall0) = (process_cpu(), Instant::now());
            (v.run)();
            walls[i].push(wall0.elapsed());
            cpus[i] += process_cpu() - cpu0;
        }
    }
    let gib = SIZE as f64 / (1u64 << 30) as f64;
    let median = |w: &mut Vec<Duration>| {
        w.sort();
        w[w.len() / 2].as_secs_f64()
    };
    let medians: Vec<f64> = walls.iter_mut().map(median).collect();
    let base = (variants.last().unwrap().name, *medians.last().unwrap());
    for (i, v) in variants.iter().enumerate() {
        println!(
            "cpu_per_gib {group}/{} {buf}: {:.1} ms (side by side, {ROUNDS} rounds: median {:.2} GiB/s, {:.3}x {})",
            v.name,
            cpus[i].as_secs_f64() * 1e3 / (gib * f64::from(ROUNDS)),
            gib / medians[i],
            base.1 / medians[i],
            base.0
        );
    }
}

/// `v`, except in criterion's test mode (`cargo test --benches`, a debug
/// build): there wasmtime-wasi's non-blocking p3 takes 4-7 s per 256 MiB
/// (32768 reads of 8 KiB, each a hop to a blocking thread), so it runs only
/// with `--bench`, and says so.
fn slow_in_debug(mut v: Variant<'_>) -> Variant<'_> {
    if !bench_mode() && cfg!(debug_assertions) {
        let name = v.name;
        println!("{name}: skipped in test mode (slow in a debug build; `cargo bench` runs it)");
        v.run = Box::new(|| {});
    }
    v
}

fn id(group: &str, variant: &str, buf: &str) -> String {
    format!("{group}/{variant}/{buf}")
}

/// The pin context `wasm-pin run` gives a program (`src/wasi.rs`): default
/// quotas, the default backend (io_uring where allowed).
fn cli_pins() -> PinCtx {
    PinCtx::new(Quotas::default()).with_io(IoConfig::default())
}

/// The engine `src/main.rs` makes: memories from a `PinMemoryCreator`,
/// component-model concurrency only for WASI 0.3 (`concurrent`).
fn engine(concurrent: bool) -> (Engine, Arc<PinMemoryCreator>) {
    let creator = PinMemoryCreator::new();
    let mut config = Config::new();
    config.concurrency_support(concurrent);
    config.wasm_component_model_async(concurrent);
    let engine = creator.build_engine(&mut config).unwrap();
    (engine, creator)
}

fn guest_missing(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must build the {what} guest (guests/rust/build.sh)"
    );
    println!("skipped: the {what} guest is not built (run guests/rust/build.sh)");
}

/// The WASI context of a run: `args`, the directory `dir` as `/data`,
/// stdout captured, stderr into `stderr`.
fn wasi_ctx(
    dir: &Path,
    args: &[&str],
    blocking: bool,
    stdout: &MemoryOutputPipe,
    stderr: &MemoryOutputPipe,
) -> WasiCtxBuilder {
    let mut wasi = WasiCtxBuilder::new();
    wasi.args(args)
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_blocking_current_thread(blocking);
    wasi.preopened_dir(dir, "/data", FsPerms::ReadWrite).unwrap();
    wasi
}

fn text(p: &MemoryOutputPipe) -> String {
    String::from_utf8(p.contents().to_vec()).unwrap()
}

// ---------------------------------------------------------------------------
// Issue 20: an unmodified preview1 program.

/// `p1-read` as a core module, linked as `src/p1.rs` links it.
struct P1 {
    engine: Engine,
    pre: wasmtime::InstancePre<WasiP1PinHost>,
}

impl P1 {
    fn new(engine: &Engine, creator: &Arc<PinMemoryCreator>, bytes: &[u8]) -> P1 {
        let module = Module::new(engine, bytes).unwrap();
        let mut linker = wasmtime::Linker::<WasiP1PinHost>::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi).unwrap();
        host_api::add_to_core_linker(&mut linker, creator).unwrap();
        P1 {
            engine: engine.clone(),
            pre: linker.instantiate_pre(&module).unwrap(),
        }
    }

    /// One run of `p1-read /data/<file> <buf>`; the bytes it read.
    fn run(&self, dir: &Path, file: &str, buf: usize) -> String {
        let (stdout, stderr) = (MemoryOutputPipe::new(1 << 10), MemoryOutputPipe::new(1 << 10));
        let path = format!("/data/{file}");
        let size = buf.to_string();
        // `src/wasi.rs`: the CLI lets a program block its own thread.
        let mut wasi = wasi_ctx(dir, &["p1-read", &path, &size], true, &stdout, &stderr);
        let state = WasiP1PinHost::new(wasi.build_p1(), cli_pins());
        let mut store = Store::new(&self.engine, state);
        let instance = self.pre.instantiate(&mut store).unwrap();
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start").unwrap();
        match start.call(&mut store, ()) {
            Ok(()) => {}
            Err(e) if e.downcast_ref::<I32Exit>().is_some_and(|x| x.0 == 0) => {}
            Err(e) => panic!("p1-read: {e:?}; stderr: {}", text(&stderr)),
        }
        text(&stdout)
    }
}

/// `p1-read` componentized (preview1 command adapter), as `src/command.rs`
/// runs a WASI 0.2 command.
struct Adapter {
    engine: Engine,
    pre: wasmtime_wasi::p2::bindings::sync::CommandPre<State>,
}

impl Adapter {
    fn new(engine: &Engine, bytes: &[u8]) -> Adapter {
        let component = Component::new(engine, bytes).unwrap();
        let mut linker = wasmtime::component::Linker::<State>::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        host_api::add_to_linker_sync(&mut linker).unwrap();
        let pre = linker.instantiate_pre(&component).unwrap();
        Adapter {
            engine: engine.clone(),
            pre: wasmtime_wasi::p2::bindings::sync::CommandPre::new(pre).unwrap(),
        }
    }

    fn run(&self, dir: &Path, file: &str, buf: usize) -> String {
        let (stdout, stderr) = (MemoryOutputPipe::new(1 << 10), MemoryOutputPipe::new(1 << 10));
        let path = format!("/data/{file}");
        let size = buf.to_string();
        let mut wasi = wasi_ctx(dir, &["p1-read", &path, &size], true, &stdout, &stderr);
        let mut store = Store::new(&self.engine, State::new(wasi.build(), cli_pins()));
        let command = self.pre.instantiate(&mut store).unwrap();
        let ok = command.wasi_cli_run().call_run(&mut store).unwrap();
        assert_eq!(ok, Ok(()), "p1-read: {}", text(&stderr));
        text(&stdout)
    }
}

/// `File::read` to the end into `buf`, touching the first and last byte of
/// each read, as `p1-read` does.
fn native_read_loop(path: &Path, buf: &mut [u8]) -> usize {
    let mut f = std::fs::File::open(path).unwrap();
    let mut n = 0;
    loop {
        let k = f.read(buf).unwrap();
        if k == 0 {
            return n;
        }
        std::hint::black_box((buf[0], buf[k - 1]));
        n += k;
    }
}

fn p1_read(c: &mut Criterion) {
    const GROUP: &str = "p1_read_256mib";
    let (Some(core), Some(command)) = (
        wasm_pin_guests::wasi_p1_module("p1-read"),
        wasm_pin_guests::wasi_command("p1-read"),
    ) else {
        return guest_missing("p1-read");
    };
    let path = input();
    let dir = path.parent().unwrap().to_path_buf();
    let file = path.file_name().unwrap().to_str().unwrap().to_string();
    let want = format!("bytes={SIZE}\n");

    let (engine, creator) = engine(false);
    let p1 = P1::new(&engine, &creator, core);
    let adapter = Adapter::new(&engine, command);

    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Bytes(SIZE as u64))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(5));
    for (buf, name) in BUFS {
        // Page-aligned, as the guest's pages are (see `benches/io.rs`).
        let mut host = AlignedBuf::new(buf);
        let host = host.as_mut_slice();
        let (p1, adapter, dir, file, path, want) = (&p1, &adapter, &dir, &file, &path, &want);
        compare(
            &mut g,
            GROUP,
            name,
            &mut [
                variant("native_p1", || assert_eq!(&p1.run(dir, file, buf), want)),
                variant("adapter_p2", || assert_eq!(&adapter.run(dir, file, buf), want)),
                variant("native_loop", || assert_eq!(native_read_loop(path, host), SIZE)),
            ],
        );
        if bench_mode() && wanted(&id(GROUP, "native_p1", name)) {
            // What a run costs besides its reads: store, instance, memory
            // (faulted in fresh), `_start`, teardown.
            std::fs::write(dir.join("empty.bin"), b"").unwrap();
            let mut t: Vec<Duration> = (0..21)
                .map(|_| {
                    let t0 = Instant::now();
                    assert_eq!(p1.run(dir, "empty.bin", buf), "bytes=0\n");
                    t0.elapsed()
                })
                .collect();
            t.sort();
            println!(
                "startup {GROUP}/native_p1 {name}: {:?} per run of an empty file (median of 21)",
                t[10]
            );
        }
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// Issue 21: a WASI 0.3 program's file streams.

/// Which streams a p3 run gets.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Streams {
    /// wasmtime-wasi's p3 with `host_api::add_p3_streams_to_linker`.
    WasmPin,
    /// wasmtime-wasi's own p3 streams, non-blocking (`spawn_blocking`).
    Wasmtime,
    /// wasmtime-wasi's own p3 streams with `allow_blocking_current_thread`.
    WasmtimeBlocking,
}

const STREAMS: [Streams; 3] = [Streams::WasmPin, Streams::Wasmtime, Streams::WasmtimeBlocking];

impl Streams {
    fn name(self) -> &'static str {
        match self {
            Streams::WasmPin => "wasm_pin_streams",
            Streams::Wasmtime => "wasmtime_wasi_p3",
            Streams::WasmtimeBlocking => "wasmtime_wasi_p3_blocking",
        }
    }
}

/// `p3-read`, compiled once, pre-instantiated on both linkers.
struct P3 {
    engine: Engine,
    rt: tokio::runtime::Runtime,
    wasm_pin: wasmtime_wasi::p3::bindings::CommandPre<State>,
    wasmtime: wasmtime_wasi::p3::bindings::CommandPre<State>,
}

impl P3 {
    fn new(bytes: &[u8]) -> P3 {
        let (engine, _creator) = engine(true);
        let component = Component::new(&engine, bytes).unwrap();
        let pre = |zero_copy: bool| {
            let mut linker = wasmtime::component::Linker::<State>::new(&engine);
            wasmtime_wasi::p3::add_to_linker(&mut linker).unwrap();
            if zero_copy {
                host_api::add_p3_streams_to_linker(&mut linker).unwrap();
            }
            wasmtime_wasi::p3::bindings::CommandPre::new(linker.instantiate_pre(&component).unwrap()).unwrap()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        P3 {
            wasm_pin: pre(true),
            wasmtime: pre(false),
            engine,
            rt,
        }
    }

    /// One run of `p3-read args` on `streams`, `dir` as `/data`: its stdout
    /// and stderr.
    fn run(&self, streams: Streams, dir: &Path, args: &[&str]) -> (String, String) {
        let (stdout, stderr) = (MemoryOutputPipe::new(1 << 10), MemoryOutputPipe::new(1 << 10));
        let blocking = streams == Streams::WasmtimeBlocking;
        let mut wasi = wasi_ctx(dir, args, blocking, &stdout, &stderr);
        let pre = match streams {
            Streams::WasmPin => &self.wasm_pin,
            Streams::Wasmtime | Streams::WasmtimeBlocking => &self.wasmtime,
        };
        let ok = self.rt.block_on(async {
            let mut store = Store::new(&self.engine, State::new(wasi.build(), cli_pins()));
            let command = pre.instantiate_async(&mut store).await.unwrap();
            let ok = store
                .run_concurrent(async move |s| command.wasi_cli_run().call_run(s).await)
                .await
                .unwrap()
                .unwrap();
            // Inside the runtime, as `src/p3.rs`.
            drop(store);
            ok
        });
        assert_eq!(ok, Ok(()), "p3-read {args:?} on {streams:?}: {}", text(&stderr));
        (text(&stdout), text(&stderr))
    }
}

fn native_pread_loop(f: &std::fs::File, buf: &mut [u8]) -> usize {
    let mut at = 0;
    loop {
        let k = f.read_at(buf, at as u64).unwrap();
        if k == 0 {
            return at;
        }
        std::hint::black_box((buf[0], buf[k - 1]));
        at += k;
    }
}

fn p3_read(c: &mut Criterion) {
    const GROUP: &str = "p3_read_256mib";
    let Some(bytes) = wasm_pin_guests::wasi_p3_command("p3-read") else {
        return guest_missing("p3-read");
    };
    let path = input();
    let dir = path.parent().unwrap().to_path_buf();
    let guest_path = format!("/data/{}", path.file_name().unwrap().to_str().unwrap());
    let want = format!("bytes={SIZE}\n");
    let p3 = P3::new(bytes);

    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Bytes(SIZE as u64))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(5));
    for (buf, name) in BUFS {
        let size = buf.to_string();
        let args = ["p3-read", guest_path.as_str(), size.as_str(), "touch"];
        let (p3, dir, args, want) = (&p3, &dir, &args, &want);
        for streams in STREAMS {
            if bench_mode() && wanted(&id(GROUP, streams.name(), name)) {
                // How the reads arrived (`reads=<r> largest=<m>`), once.
                let (out, err) = p3.run(streams, dir, args);
                assert_eq!(&out, want);
                println!("{GROUP}/{}/{name}: {}", streams.name(), err.trim_end());
            }
        }
        let f = std::fs::File::open(&path).unwrap();
        let mut host = AlignedBuf::new(buf);
        let host = host.as_mut_slice();
        let run = |streams: Streams| move || assert_eq!(&p3.run(streams, dir, args).0, want);
        compare(
            &mut g,
            GROUP,
            name,
            &mut [
                variant(Streams::WasmPin.name(), run(Streams::WasmPin)),
                slow_in_debug(variant(Streams::Wasmtime.name(), run(Streams::Wasmtime))),
                variant(Streams::WasmtimeBlocking.name(), run(Streams::WasmtimeBlocking)),
                variant("native_pread", || assert_eq!(native_pread_loop(&f, host), SIZE)),
            ],
        );
    }
    g.finish();
}

/// A scratch directory for the written files.
fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join("wasm-pin-bench").join("p3-write");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Creates (truncating) `path` and writes `SIZE` bytes from `buf` with
/// `pwrite`, touching its first and last byte before each write, as
/// `p3-read`'s `rewrite` mode does.
fn native_pwrite_loop(path: &Path, buf: &mut [u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut at = 0;
    let mut chunk = 0u8;
    while at < SIZE {
        let len = (SIZE - at).min(buf.len());
        buf[0] = chunk;
        buf[len - 1] = chunk;
        let k = f.write_at(&buf[..len], at as u64).unwrap();
        assert!(k > 0);
        at += k;
        chunk = chunk.wrapping_add(1);
    }
}

/// The first two chunks of what `p3-read ... rewrite` wrote with `n`-byte
/// chunks: `pattern(i % n)`, the first and last byte of chunk `k` being `k`.
fn check_rewrite(out: &Path, n: usize) {
    assert_eq!(std::fs::metadata(out).unwrap().len(), SIZE as u64);
    let mut head = vec![0u8; 2 * n];
    std::fs::File::open(out).unwrap().read_exact(&mut head).unwrap();
    for (k, chunk) in head.chunks(n).enumerate() {
        for (i, &b) in chunk.iter().enumerate() {
            let want = if i == 0 || i == n - 1 {
                k as u8
            } else {
                ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8
            };
            assert_eq!(b, want, "chunk {k} byte {i}");
        }
    }
}

fn p3_write(c: &mut Criterion) {
    const GROUP: &str = "p3_write_256mib";
    let Some(bytes) = wasm_pin_guests::wasi_p3_command("p3-read") else {
        return guest_missing("p3-read");
    };
    let dir = scratch();
    let out = dir.join("out.bin");
    let want = format!("bytes={SIZE}\n");
    let total = SIZE.to_string();
    let p3 = P3::new(bytes);

    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Bytes(SIZE as u64))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(5));
    for (buf, name) in BUFS {
        let size = buf.to_string();
        let args = ["p3-read", "/data/out.bin", size.as_str(), "rewrite", total.as_str()];
        let (p3, dir, args, want, out) = (&p3, &dir, &args, &want, &out);
        let mut host = AlignedBuf::new(buf);
        let host = host.as_mut_slice();
        let run = |streams: Streams| {
            // The written bytes are checked after the first run (outside
            // criterion's timing when it runs the variant again).
            let mut checked = false;
            move || {
                assert_eq!(&p3.run(streams, dir, args).0, want);
                if !checked {
                    check_rewrite(out, buf);
                    checked = true;
                }
            }
        };
        compare(
            &mut g,
            GROUP,
            name,
            &mut [
                variant(Streams::WasmPin.name(), run(Streams::WasmPin)),
                slow_in_debug(variant(Streams::Wasmtime.name(), run(Streams::Wasmtime))),
                variant(Streams::WasmtimeBlocking.name(), run(Streams::WasmtimeBlocking)),
                variant("native_pwrite", || {
                    native_pwrite_loop(out, host);
                    assert_eq!(std::fs::metadata(out).unwrap().len(), SIZE as u64);
                }),
            ],
        );
    }
    g.finish();
    let _ = std::fs::remove_file(&out);
}

criterion_group!(benches, p1_read, p3_read, p3_write);
criterion_main!(benches);
