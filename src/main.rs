//! The demo host: runs a guest component with the `gup`, `zero-copy-io` and
//! `environment` imports on a pinnable memory.
//!
//! ```text
//! wasm-pin run [GUEST.wasm] [--dir DIR] [--backend auto|io-uring|threads] [--mib N] [-- ARGS...]
//! ```
//!
//! With no guest it runs the built-in demo guest (`guests/wat/demo_stream.wat`)
//! on a file it creates: the guest streams the file through long-term pinned
//! buffers with four asynchronous reads in flight, hashes each chunk through
//! its pin and writes a copy; the host then checks the copy and the hash and
//! prints a summary.

use host_api::{BackendKind, IoConfig, MmHost, Quotas};
use runtime_mm::{MmStats, PinMemoryCreator};
use std::path::{Path, PathBuf};
use std::time::Instant;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

struct Options {
    guest: Option<PathBuf>,
    dir: Option<PathBuf>,
    backend: BackendKind,
    mib: u64,
    args: Vec<String>,
}

const USAGE: &str =
    "usage: wasm-pin run [GUEST.wasm] [--dir DIR] [--backend auto|io-uring|threads] [--mib N] [-- ARGS...]";

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Options, String> {
    if argv.next().as_deref() != Some("run") {
        return Err(USAGE.into());
    }
    let mut o = Options {
        guest: None,
        dir: None,
        backend: BackendKind::Auto,
        mib: 256,
        args: Vec::new(),
    };
    while let Some(a) = argv.next() {
        let mut value = || argv.next().ok_or_else(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--dir" => o.dir = Some(value()?.into()),
            "--backend" => {
                o.backend = match value()?.as_str() {
                    "auto" => BackendKind::Auto,
                    "io-uring" => BackendKind::IoUring,
                    "threads" => BackendKind::Threads,
                    other => return Err(format!("unknown backend {other}\n{USAGE}")),
                }
            }
            "--mib" => o.mib = value()?.parse().map_err(|e| format!("--mib: {e}"))?,
            "--" => o.args.extend(argv.by_ref()),
            "-h" | "--help" => return Err(USAGE.into()),
            _ if o.guest.is_none() && !a.starts_with('-') => o.guest = Some(a.into()),
            _ => o.args.push(a),
        }
    }
    Ok(o)
}

struct State {
    host: MmHost,
}

fn host(s: &mut State) -> &mut MmHost {
    &mut s.host
}

/// Writes `mib` MiB of pseudo-random bytes to `path` unless it already has
/// that size.
fn make_input(path: &Path, mib: u64) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == mib << 20) {
        return Ok(());
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut chunk = vec![0u8; 1 << 20];
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for _ in 0..mib {
        for w in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        std::io::Write::write_all(&mut f, &chunk)?;
    }
    std::io::Write::flush(&mut f)
}

fn fnv1a_file(path: &Path) -> std::io::Result<u32> {
    let mut h = 0x811c_9dc5u32;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            return Ok(h);
        }
        h = buf[..n]
            .iter()
            .fold(h, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    }
}

fn print_stats(s: &MmStats) {
    println!(
        "  pins:   {} pages acquired, {} released ({}), {} long-term now, {} bytes locked",
        s.foll_pin_acquired,
        s.foll_pin_released,
        if s.foll_pin_acquired == s.foll_pin_released {
            "balanced"
        } else {
            "UNBALANCED"
        },
        s.longterm_pinned_pages,
        s.locked_bytes
    );
    println!(
        "  paths:  {} pages fast (lock-free), {} slow (locked), {} fallbacks, {} pages dirtied",
        s.fast_path_pages, s.slow_path_pages, s.fast_fallbacks, s.dirtied_pages
    );
}

fn run(o: Options) -> wasmtime::Result<()> {
    let creator = PinMemoryCreator::new();
    let mut config = Config::new();
    creator.install(&mut config);
    // Synchronous guests: skip component-model-async's per-call task
    // bookkeeping (it more than doubles the cost of an import call).
    config.concurrency_support(false);
    let engine = Engine::new(&config)?;
    let mut linker = Linker::new(&engine);
    host_api::add_to_linker(&mut linker, host)?;

    let demo = o.guest.is_none();
    let (component, dir, args) = match &o.guest {
        Some(path) => (
            Component::from_file(&engine, path)?,
            o.dir.clone().unwrap_or_else(|| ".".into()),
            o.args.clone(),
        ),
        None => {
            let dir = o
                .dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("wasm-pin-demo"));
            std::fs::create_dir_all(&dir)?;
            println!("demo: writing a {} MiB input file in {}", o.mib, dir.display());
            make_input(&dir.join("input.bin"), o.mib)?;
            let bytes = wasm_pin_guests::component("demo_stream").expect("demo guest is built by guests/build.rs");
            (
                Component::new(&engine, bytes)?,
                dir,
                vec!["input.bin".into(), "copy.bin".into()],
            )
        }
    };
    let io = IoConfig {
        dir: Some(dir.clone()),
        backend: o.backend,
        args,
        ..IoConfig::default()
    };
    let mut store = Store::new(
        &engine,
        State {
            host: MmHost::new(Quotas::default()).with_io(io),
        },
    );
    let guest = host_api::instantiate(&mut store, &linker, &component, &creator, host)?;
    let mm = store
        .data()
        .host
        .memory()
        .cloned()
        .expect("instantiate attaches the memory");
    let backend = store.data_mut().host.io_backend().map_err(wasmtime::Error::new)?;
    println!(
        "running {} ({backend:?} backend)",
        o.guest
            .as_ref()
            .map_or("the demo guest".into(), |p| p.display().to_string())
    );

    let start = Instant::now();
    let outcome = guest.call_run(&mut store)?;
    let elapsed = start.elapsed();
    let io = store.data().host.io_counts();
    drop(store); // releases anything the guest left pinned or in flight
    let stats = mm.stats();

    println!("\nsummary");
    match &outcome {
        Ok(()) => println!("  guest:  ok in {:.3} s", elapsed.as_secs_f64()),
        Err(e) => println!("  guest:  failed: {e}"),
    }
    if demo && outcome.is_ok() {
        let (input, copy) = (dir.join("input.bin"), dir.join("copy.bin"));
        let bytes = std::fs::metadata(&input)?.len();
        let mib = bytes as f64 / (1 << 20) as f64;
        println!(
            "  bytes:  {bytes} ({mib:.0} MiB) read and {} written, {:.0} MiB/s each way",
            std::fs::metadata(&copy)?.len(),
            mib / elapsed.as_secs_f64()
        );
        let (a, b) = (fnv1a_file(&input)?, fnv1a_file(&copy)?);
        println!(
            "  check:  host fnv1a of input {a:#010x}, of copy {b:#010x}: {}",
            if a == b { "identical" } else { "DIFFERENT" }
        );
        if a != b {
            return Err(wasmtime::Error::msg("the copy differs from the input"));
        }
    }
    println!(
        "  async:  {} transfers ({backend:?}), {} on registered fixed buffers",
        io.submitted, io.fixed
    );
    print_stats(&stats);
    if stats.pins_outstanding() != 0 || stats.locked_bytes != 0 {
        return Err(wasmtime::Error::msg("pins outlived the store"));
    }
    outcome.map_err(wasmtime::Error::msg)
}

fn main() -> std::process::ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(usage) => {
            eprintln!("{usage}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}
