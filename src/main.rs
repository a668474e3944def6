//! `wasm-pin run`: runs a WASI command component with the pin imports, like
//! `wasmtime run`, or the built-in demo.
//!
//! ```text
//! wasm-pin run [OPTIONS] [COMPONENT] [ARGS]...
//! ```
//!
//! - A **WASI command** (a component exporting `wasi:cli/run@0.2.x`) runs
//!   under wasmtime-wasi's p2 implementation plus the pin imports
//!   (`host_api::add_to_linker`): `--dir` preopens, `--env` variables, the
//!   arguments after COMPONENT (argv\[0\] is its file name), inherited stdio;
//!   its exit code becomes this process's (a trap: the error on stderr and
//!   exit code 134, as `wasmtime run` on Unix).
//! - A **`wasm-pin:mm/guest`** component (exporting `run`) runs as before: its
//!   `zero-copy-io` files live in the first `--dir` (default `.`), its
//!   `environment.args` are ARGS.
//! - With **no component** it runs the built-in demo guest
//!   (`guests/wat/demo_stream.wat`) on a file it creates: the guest streams
//!   the file through long-term pinned buffers with four asynchronous reads in
//!   flight, hashes each chunk through its pin and writes a copy; the host then
//!   checks the copy and the hash and prints a summary.

use clap::{Args, Parser, Subcommand, ValueEnum};
use host_api::{BackendKind, IoConfig, MmHost, Quotas};
use runtime_mm::{MmStats, PinMemoryCreator};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::error::Context as _;
use wasmtime::{bail, Config, Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command as WasiCommand;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// pin_user_pages() for WebAssembly linear memory under wasmtime.
#[derive(Parser, Debug)]
#[command(name = "wasm-pin", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Runs a WASI command component with the pin imports (like `wasmtime run`), or the built-in demo.
    Run(RunArgs),
}

/// `wasm-pin run`'s options. Everything after COMPONENT goes to the guest,
/// as with `wasmtime run`; an unknown option before it is an error.
#[derive(Args, Debug)]
#[command(override_usage = "wasm-pin run [OPTIONS] [COMPONENT] [ARGS]...")]
struct RunArgs {
    /// Grant the guest the host directory HOST, seen as GUEST (default: HOST); repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    dirs: Vec<Preopen>,

    /// Set NAME to VAL in the guest's environment; `--env NAME` passes the host's NAME; repeatable.
    #[arg(long = "env", value_name = "NAME[=VAL]", value_parser = parse_env)]
    envs: Vec<(String, Option<String>)>,

    /// Backend of the pin imports' asynchronous I/O (auto: io_uring where allowed, else worker threads).
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,

    /// Size of the built-in demo's input file, in MiB (demo only).
    #[arg(long, value_name = "N", default_value_t = 256, conflicts_with = "component_and_args")]
    mib: u64,

    /// The component to run, then its arguments (argv[0] is its file name); none: the built-in demo.
    #[arg(value_names = ["COMPONENT", "ARGS"], trailing_var_arg = true)]
    component_and_args: Vec<OsString>,
}

/// `--dir HOST[::GUEST]`.
#[derive(Clone, Debug)]
struct Preopen {
    host: PathBuf,
    guest: String,
}

/// Splits `HOST[::GUEST]` like `wasmtime run --dir`.
fn parse_dir(s: &str) -> Result<Preopen, String> {
    let (host, guest) = s.split_once("::").unwrap_or((s, s));
    if host.is_empty() || guest.is_empty() {
        return Err(format!("`{s}`: expected HOST or HOST::GUEST"));
    }
    Ok(Preopen {
        host: host.into(),
        guest: guest.into(),
    })
}

/// Splits `NAME[=VAL]` like `wasmtime run --env`.
fn parse_env(s: &str) -> Result<(String, Option<String>), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("`{s}`: empty variable name")),
        Some((name, value)) => Ok((name.into(), Some(value.into()))),
        None if s.is_empty() => Err("empty variable name".into()),
        None => Ok((s.into(), None)),
    }
}

/// `--backend` (no per-value docs: they would make `--help` span lines).
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Backend {
    Auto,
    IoUring,
    Threads,
}

impl From<Backend> for BackendKind {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Auto => BackendKind::Auto,
            Backend::IoUring => BackendKind::IoUring,
            Backend::Threads => BackendKind::Threads,
        }
    }
}

/// The exit code `wasmtime run` uses on Unix when the guest traps: the shell's
/// code for a process killed by SIGABRT (128 + 6).
const EXIT_TRAP: u8 = 134;

/// An engine whose every memory is a pinnable `Mm`.
fn engine() -> wasmtime::Result<(Engine, Arc<PinMemoryCreator>)> {
    let creator = PinMemoryCreator::new();
    let mut config = Config::new();
    creator.install(&mut config);
    // Synchronous guests: skip component-model-async's per-call task
    // bookkeeping (it more than doubles the cost of an import call).
    config.concurrency_support(false);
    Ok((Engine::new(&config)?, creator))
}

/// Reads `path` and compiles it as a component; says what it is otherwise.
fn load_component(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    let shown = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("failed to read `{shown}`"))?;
    // The preamble: magic, then a 16-bit version and a 16-bit layer (0 for a
    // core module, 1 for a component).
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 0, 0]) => bail!(
            "`{shown}` is a core WebAssembly module, not a WebAssembly component: `wasm-pin run` needs a component \
             exporting `wasi:cli/run` (componentize a wasm32-wasip1 module with wasmtime's preview1 command adapter, \
             e.g. `wasm-tools component new --adapt`)"
        ),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => {
            Component::new(engine, &bytes).with_context(|| format!("failed to compile the component `{shown}`"))
        }
        _ if bytes.starts_with(b"\0asm") => {
            bail!("`{shown}` is not a WebAssembly component: unknown binary version or layer")
        }
        // Component text (WAT), or anything else.
        _ => Component::new(engine, &bytes).with_context(|| {
            format!("`{shown}` is not a WebAssembly component (neither a component binary nor component text)")
        }),
    }
}

/// What `run` does with a component, from its exports.
enum Kind {
    /// Exports `wasi:cli/run@0.2.x`.
    WasiCommand,
    /// Exports `run` (world `wasm-pin:mm/guest`).
    PinGuest,
}

fn kind(engine: &Engine, component: &Component, path: &Path) -> wasmtime::Result<Kind> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if exports.iter().any(|n| n.starts_with("wasi:cli/run@0.2.")) {
        Ok(Kind::WasiCommand)
    } else if exports.iter().any(|n| n == "run") {
        Ok(Kind::PinGuest)
    } else {
        bail!(
            "`{}` exports neither `wasi:cli/run@0.2.x` (a WASI command) nor `run` (world `wasm-pin:mm/guest`); \
             its exports: {exports:?}",
            path.display()
        )
    }
}

/// The store of a WASI command: wasmtime-wasi's context and table, and the
/// pin imports' state.
struct CommandState {
    wasi: WasiCtx,
    table: ResourceTable,
    pins: MmHost,
}

impl WasiView for CommandState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// argv\[0\] for a component: its file name only, as `wasmtime run` does (the
/// rest of the path is not the guest's business).
fn argv0(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The guest's arguments after argv\[0\]; WASI arguments are strings.
fn guest_args(args: &[OsString]) -> wasmtime::Result<Vec<String>> {
    args.iter()
        .map(|a| {
            a.clone()
                .into_string()
                .map_err(|a| wasmtime::format_err!("argument {a:?} is not valid UTF-8"))
        })
        .collect()
}

/// Fails unless every `--dir` names an existing directory: nothing is ever
/// created for a `--dir`.
fn check_dirs(dirs: &[Preopen]) -> wasmtime::Result<()> {
    for d in dirs {
        let shown = d.host.display();
        let meta = std::fs::metadata(&d.host).with_context(|| format!("failed to open --dir `{shown}`"))?;
        if !meta.is_dir() {
            bail!("failed to open --dir `{shown}`: not a directory");
        }
    }
    Ok(())
}

/// Runs a WASI command component; returns the process's exit code (the
/// guest's, 134 for a trap) or an error that is not the guest's doing.
fn run_command(
    engine: &Engine,
    component: &Component,
    path: &Path,
    args: &RunArgs,
    guest_args: Vec<String>,
) -> wasmtime::Result<ExitCode> {
    let mut linker = Linker::<CommandState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    host_api::add_to_linker(&mut linker, |s: &mut CommandState| &mut s.pins)?;

    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio().arg(argv0(path)).args(&guest_args);
    for (name, value) in &args.envs {
        let value = match value {
            Some(v) => v.clone(),
            None => std::env::var(name).with_context(|| format!("--env {name}: not set on the host"))?,
        };
        wasi.env(name, value);
    }
    for d in &args.dirs {
        wasi.preopened_dir(&d.host, &d.guest, FsPerms::ReadWrite)
            .with_context(|| format!("failed to open --dir `{}`", d.host.display()))?;
    }
    let io = IoConfig {
        dir: args.dirs.first().map(|d| d.host.clone()),
        backend: args.backend.into(),
        args: guest_args,
        ..IoConfig::default()
    };
    let state = CommandState {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        pins: MmHost::new(Quotas::default()).with_io(io),
    };
    let mut store = Store::new(engine, state);

    let result = WasiCommand::instantiate(&mut store, component, &linker)
        .with_context(|| format!("failed to instantiate `{}`", path.display()))
        .and_then(|command| {
            command
                .wasi_cli_run()
                .call_run(&mut store)
                .context("failed to invoke `run` function")
        })
        .with_context(|| format!("failed to run main module `{}`", path.display()));
    drop(store); // releases anything the guest left pinned or in flight
    match result {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        // `run` returned an error: exit code 1, nothing printed (the guest
        // said what went wrong), as `wasmtime run`.
        Ok(Err(())) => Ok(ExitCode::FAILURE),
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                // `exit(code)`: the process's status keeps the low 8 bits, as
                // `std::process::exit` would.
                return Ok(ExitCode::from(exit.0 as u8));
            }
            if e.is::<wasmtime::Trap>() {
                eprintln!("Error: {e:?}");
                return Ok(ExitCode::from(EXIT_TRAP));
            }
            Err(e)
        }
    }
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

/// Runs a `wasm-pin:mm/guest` component, or the built-in demo if `guest` is
/// `None` (the demo writes its input file and checks the copy), and prints a
/// summary with the pin statistics.
fn run_pin_guest(
    engine: &Engine,
    creator: &PinMemoryCreator,
    guest: Option<(&Path, Component)>,
    o: &RunArgs,
    guest_args: Vec<String>,
) -> wasmtime::Result<()> {
    let mut linker = Linker::new(engine);
    host_api::add_to_linker(&mut linker, host)?;

    let demo = guest.is_none();
    let name = guest
        .as_ref()
        .map_or("the demo guest".into(), |(p, _)| p.display().to_string());
    let first_dir = o.dirs.first().map(|d| d.host.clone());
    let (component, dir, args) = match &guest {
        Some((_, component)) => (component.clone(), first_dir.unwrap_or_else(|| ".".into()), guest_args),
        None => {
            // Only the default directory is created; a --dir must exist.
            let dir = match first_dir {
                Some(dir) => dir,
                None => {
                    let dir = std::env::temp_dir().join("wasm-pin-demo");
                    std::fs::create_dir_all(&dir)?;
                    dir
                }
            };
            println!("demo: writing a {} MiB input file in {}", o.mib, dir.display());
            make_input(&dir.join("input.bin"), o.mib)?;
            let bytes = wasm_pin_guests::component("demo_stream").expect("demo guest is built by guests/build.rs");
            (
                Component::new(engine, bytes)?,
                dir,
                vec!["input.bin".into(), "copy.bin".into()],
            )
        }
    };
    let io = IoConfig {
        dir: Some(dir.clone()),
        backend: o.backend.into(),
        args,
        ..IoConfig::default()
    };
    let mut store = Store::new(
        engine,
        State {
            host: MmHost::new(Quotas::default()).with_io(io),
        },
    );
    let guest = host_api::instantiate(&mut store, &linker, &component, creator, host)?;
    let mm = store
        .data()
        .host
        .memory()
        .cloned()
        .expect("instantiate attaches the memory");
    let backend = store.data_mut().host.io_backend().map_err(wasmtime::Error::new)?;
    println!("running {name} ({backend:?} backend)");

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

/// `wasm-pin run`: the exit code, or an error to print.
fn run(args: RunArgs) -> wasmtime::Result<ExitCode> {
    check_dirs(&args.dirs)?;
    let (engine, creator) = engine()?;
    let Some((path, rest)) = args.component_and_args.split_first() else {
        run_pin_guest(&engine, &creator, None, &args, Vec::new())?;
        return Ok(ExitCode::SUCCESS);
    };
    let path = Path::new(path);
    let component = load_component(&engine, path)?;
    let rest = guest_args(rest)?;
    match kind(&engine, &component, path)? {
        Kind::WasiCommand => run_command(&engine, &component, path, &args, rest),
        Kind::PinGuest => {
            run_pin_guest(&engine, &creator, Some((path, component)), &args, rest)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let Cmd::Run(args) = Cli::parse().command;
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}
