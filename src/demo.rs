//! The built-in demo: the Rust WASI demo guest (`guests/rust-wasi/demo`)
//! on a file the host writes, then the host's checks and summary; then the
//! same file through WASI 0.3 streams (`guests/rust-p3/p3-read`) on
//! wasm-pin's zero-copy streams and on wasmtime-wasi's own p3, side by side.

use crate::command::CommandState;
use crate::options::WasiOptions;
use crate::{command, wasi, Preopen, RunArgs};
use runtime_mm::{MemoryPool, MmStats};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p3::bindings::Command;
use wasmtime_wasi::{FsPerms, WasiCtx};

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
    // On disk before the guest reads it with O_DIRECT (which would otherwise
    // first wait for the writeback inside its timed pass).
    f.into_inner().map_err(|e| e.into_error())?.sync_all()
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

/// Writes the input, runs the demo guest on it, checks the guest's
/// zero-copy copy, and prints the summary (with `pool`, also how the guest's
/// slot was held and reset).
pub fn run(engine: &Engine, pool: Option<&Arc<MemoryPool>>, o: &RunArgs) -> wasmtime::Result<()> {
    let Some(bytes) = wasm_pin_guests::wasi_command("demo") else {
        wasmtime::bail!(
            "the demo guest is not built: run `./demo.sh` (or `guests/rust/build.sh`, which installs \
             Debian's rustc-web for the wasm32 guests, then this command again)"
        );
    };
    let component = Component::new(engine, bytes)?;
    // Only the default directory is created; a --dir must exist.
    let dir = match o.dirs.first() {
        Some(d) => d.host.clone(),
        None => {
            let dir = std::env::temp_dir().join("wasm-pin-demo");
            std::fs::create_dir_all(&dir)?;
            dir
        }
    };
    println!("demo: writing a {} MiB input file in {}", o.mib, dir.display());
    let (input, copy) = (dir.join("input.bin"), dir.join("copy.bin"));
    make_input(&input, o.mib)?;
    let _ = std::fs::remove_file(&copy);
    let args = RunArgs {
        dirs: vec![Preopen {
            host: dir.clone(),
            guest: "/data".into(),
        }],
        envs: Vec::new(),
        backend: o.backend,
        mib: o.mib,
        pooled: o.pooled,
        // The demo prints the CPU time of each pass.
        allow_cpu_clock: true,
        wasi: Vec::new(),
        wasm: Vec::new(),
        wasm_and_args: Vec::new(),
    };
    let guest_args = vec!["/data/input.bin".to_string(), "/data/copy.bin".to_string()];
    let opts = WasiOptions::default();
    let (code, pins) = command::run(engine, &component, Path::new("demo.wasm"), &args, &opts, guest_args)?;
    if code != std::process::ExitCode::SUCCESS {
        wasmtime::bail!("the demo guest failed ({code:?})");
    }
    let mm = pins
        .memory()
        .cloned()
        .ok_or_else(|| wasmtime::Error::msg("the demo guest pinned nothing"))?;
    let stats = mm.stats();

    println!("\nhost checks");
    let (a, b) = (fnv1a_file(&input)?, fnv1a_file(&copy)?);
    println!(
        "  copy:   fnv1a of input {a:#010x}, of the guest's zero-copy copy {b:#010x}: {}",
        if a == b { "identical" } else { "DIFFERENT" }
    );
    let io = pins.io_counts();
    println!(
        "  async:  {} transfers, {} on registered fixed buffers",
        io.submitted, io.fixed
    );
    print_stats(&stats);
    if a != b {
        wasmtime::bail!("the copy differs from the input");
    }
    if stats.pins_outstanding() != 0 || stats.locked_bytes != 0 {
        wasmtime::bail!("pins outlived the store");
    }
    if let Some(pool) = pool {
        // The host still holds the guest's memory (`pins`, `mm`): its slot
        // waits in quarantine, and is reset once they go.
        let held = pool.stats();
        drop((mm, pins));
        // The pool's reset worker resets the slot off this thread.
        pool.wait_for_resets(std::time::Duration::from_secs(5));
        let after = pool.stats();
        println!(
            "  pool:   {} slots; {} quarantined while the host held the guest's memory, then reset: {} free, {} resets",
            after.slots, held.quarantined, after.free, after.resets
        );
        if held.quarantined == 0 || after.free != after.slots {
            wasmtime::bail!("the pool did not quarantine and then reset the guest's slot");
        }
    }
    p3_pass(o, &dir, &input)
}

/// Lent buffers of the WASI 0.3 pass.
const P3_BUFFER: usize = 1 << 20;

/// The same file through WASI 0.3 streams: the unmodified `p3-read` reads
/// it with 1 MiB lent buffers (touching two bytes of each read) on
/// wasm-pin's zero-copy streams, then on wasmtime-wasi's own p3
/// (non-blocking: 8 KiB reads on tokio's blocking threads), each in an
/// async store on a multi-thread runtime with no executor thread blocked;
/// prints both throughputs and the ratio, and checks both byte counts.
fn p3_pass(o: &RunArgs, dir: &Path, input: &Path) -> wasmtime::Result<()> {
    let Some(bytes) = wasm_pin_guests::wasi_p3_command("p3-read") else {
        println!("\np3 streams: skipped (the p3-read guest is not built: guests/rust/build.sh builds it)");
        return Ok(());
    };
    let len = std::fs::metadata(input)?.len();
    let (engine, _creator) = crate::engine(o.pooled, true)?;
    let component = Component::new(&engine, bytes)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("failed to start the tokio runtime")?;
    println!(
        "\np3 streams: the WASI 0.3 command p3-read reads the same file through read-via-stream, {} MiB lent buffers, async store (times include instantiation)",
        P3_BUFFER >> 20
    );
    let mut rates = Vec::new();
    for (zero_copy, label) in [
        (true, "wasm-pin streams (zero-copy)"),
        (false, "wasmtime-wasi's own p3"),
    ] {
        let (took, stdout, stderr) = p3_read(&engine, &component, &runtime, dir, zero_copy, o)?;
        let rate = len as f64 / took.as_secs_f64() / f64::from(1u32 << 30);
        println!(
            "  {label:<30} {rate:6.2} GiB/s  {:7.1} ms   {}",
            took.as_secs_f64() * 1e3,
            stderr.trim_end()
        );
        if stdout != format!("bytes={len}\n") {
            wasmtime::bail!(
                "{label}: p3-read read {:?}, the file has {len} bytes",
                stdout.trim_end()
            );
        }
        rates.push(rate);
    }
    println!(
        "  ratio: wasm-pin's streams {:.1}x the throughput of wasmtime-wasi's p3; both read all {len} bytes",
        rates[0] / rates[1]
    );
    Ok(())
}

/// One run of `p3-read /data/input.bin 1048576 touch` with `dir` as
/// `/data`: its wall time (instantiation included), stdout and stderr.
fn p3_read(
    engine: &Engine,
    component: &Component,
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    zero_copy: bool,
    o: &RunArgs,
) -> wasmtime::Result<(Duration, String, String)> {
    let mut linker = Linker::<CommandState>::new(engine);
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    if zero_copy {
        host_api::add_p3_streams_to_linker(&mut linker)?;
    }
    let (stdout, stderr) = (MemoryOutputPipe::new(1 << 10), MemoryOutputPipe::new(1 << 10));
    let size = P3_BUFFER.to_string();
    let mut ctx = WasiCtx::builder();
    ctx.args(&["p3-read", "/data/input.bin", &size, "touch"])
        .stdout(stdout.clone())
        .stderr(stderr.clone());
    ctx.preopened_dir(dir, "/data", FsPerms::ReadOnly)?;
    let state = CommandState::new(ctx.build(), wasi::pins(o, &WasiOptions::default()));
    let (took, ok) = runtime.block_on(async {
        let mut store = Store::new(engine, state);
        let start = Instant::now();
        let command = Command::instantiate_async(&mut store, component, &linker).await?;
        let ok = store
            .run_concurrent(async move |s| command.wasi_cli_run().call_run(s).await)
            .await??;
        let took = start.elapsed();
        drop(store);
        wasmtime::Result::<_>::Ok((took, ok))
    })?;
    let text = |p: &MemoryOutputPipe| String::from_utf8_lossy(&p.contents()).into_owned();
    if ok.is_err() {
        wasmtime::bail!("p3-read failed: {}", text(&stderr));
    }
    Ok((took, text(&stdout), text(&stderr)))
}
