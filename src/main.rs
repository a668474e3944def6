//! `wasm-pin run`: runs a WASI command component with the pin imports, like
//! `wasmtime run`, or the built-in demo.
//!
//! ```text
//! wasm-pin run [OPTIONS] [COMPONENT] [ARGS]...
//! ```
//!
//! - A **WASI command** (a component exporting `wasi:cli/run@0.2.x`, with or
//!   without the pin imports) runs under wasmtime-wasi's p2 implementation
//!   plus the pin imports on one linker and one table (`command`): `--dir`
//!   preopens, `--env` variables, the arguments after COMPONENT (argv\[0\] is
//!   its file name), inherited stdio; its exit code becomes this process's (a
//!   trap: the error on stderr and exit code 134, as `wasmtime run` on Unix).
//! - With **no component** it runs the built-in demo (`demo`): the Rust WASI
//!   demo guest streams a file it is given through pinned buffers with
//!   asynchronous zero-copy reads, then through WASI's `input-stream`, and
//!   prints both; the host checks the guest's zero-copy copy of the file.

mod command;
mod demo;

use clap::{Args, Parser, Subcommand, ValueEnum};
use host_api::BackendKind;
use runtime_mm::{PinMemoryCreator, PoolConfig};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use wasmtime::component::Component;
use wasmtime::error::Context as _;
use wasmtime::{bail, Config, Engine};

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
pub struct RunArgs {
    /// Grant the guest the host directory HOST, seen as GUEST (default: HOST); repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    pub dirs: Vec<Preopen>,

    /// Set NAME to VAL in the guest's environment; `--env NAME` passes the host's NAME; repeatable.
    #[arg(long = "env", value_name = "NAME[=VAL]", value_parser = parse_env)]
    pub envs: Vec<(String, Option<String>)>,

    /// Backend of the pin imports' asynchronous I/O (auto: io_uring where allowed, else worker threads).
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,

    /// Size of the built-in demo's input file, in MiB (demo only).
    #[arg(long, value_name = "N", default_value_t = 256, conflicts_with = "component_and_args")]
    pub mib: u64,

    /// Put guest memories on a pool of slots reserved once and reused (PinMemoryCreator::pooled).
    #[arg(long)]
    pub pooled: bool,

    /// Let the guest read the host process's CPU time (wasm-pin:mm `host-cpu-time`); the demo always may.
    #[arg(long)]
    pub allow_cpu_clock: bool,

    /// The component to run, then its arguments (argv[0] is its file name); none: the built-in demo.
    #[arg(value_names = ["COMPONENT", "ARGS"], trailing_var_arg = true)]
    pub component_and_args: Vec<OsString>,
}

/// `--dir HOST[::GUEST]`.
#[derive(Clone, Debug)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
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
pub enum Backend {
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

/// Slots of `--pooled`: one command runs at a time, with a memory per
/// (sub-)component; the rest is address space only.
const POOL_SLOTS: u32 = 64;

/// An engine whose every memory is a pinnable `Mm`: on demand, or on a pool
/// (`--pooled`).
fn engine(pooled: bool) -> wasmtime::Result<(Engine, Arc<PinMemoryCreator>)> {
    let creator = if pooled {
        PinMemoryCreator::pooled(PoolConfig {
            slots: POOL_SLOTS,
            ..PoolConfig::default()
        })?
    } else {
        PinMemoryCreator::new()
    };
    let mut config = Config::new();
    // Synchronous guests: skip component-model-async's per-call task
    // bookkeeping (it more than doubles the cost of an import call).
    config.concurrency_support(false);
    let engine = creator.build_engine(&mut config)?;
    Ok((engine, creator))
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

/// Fails unless `component` is a WASI command (exports `wasi:cli/run`).
fn check_command(engine: &Engine, component: &Component, path: &Path) -> wasmtime::Result<()> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if !exports.iter().any(|n| n.starts_with("wasi:cli/run@0.2.")) {
        bail!(
            "`{}` is not a WASI command: it does not export `wasi:cli/run@0.2.x` (its exports: {exports:?})",
            path.display()
        );
    }
    Ok(())
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

/// `wasm-pin run`: the exit code, or an error to print.
fn run(args: RunArgs) -> wasmtime::Result<ExitCode> {
    check_dirs(&args.dirs)?;
    let (engine, creator) = engine(args.pooled)?;
    let Some((path, rest)) = args.component_and_args.split_first() else {
        demo::run(&engine, creator.pool(), &args)?;
        return Ok(ExitCode::SUCCESS);
    };
    let path = Path::new(path);
    let component = load_component(&engine, path)?;
    check_command(&engine, &component, path)?;
    let rest = guest_args(rest)?;
    let (code, _) = command::run(&engine, &component, path, &args, rest)?;
    Ok(code)
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
