//! `wasm-pin run`: runs a WASI program with the pin imports, like
//! `wasmtime run`, or the built-in demo.
//!
//! ```text
//! wasm-pin run [OPTIONS] [WASM] [ARGS]...
//! ```
//!
//! The program's form is found from its bytes (`form`; binary or text), with
//! no flag, and each runs as `wasmtime run` runs it:
//!
//! - A **core module** (a `wasm32-wasip1` program) runs natively on
//!   wasmtime-wasi's preview1 (`p1`): `_initialize` if exported, then the
//!   export `""` or `_start`. Its own memory is pinnable, and it may import
//!   the core-ABI pin functions (`wasm-pin:mm/gup@0.1.0`).
//! - A **WASI 0.2 command** (a component exporting `wasi:cli/run@0.2.x`) runs
//!   under wasmtime-wasi's p2 plus the pin imports on one linker and one
//!   table (`command`).
//! - A **WASI 0.3 command** (exporting `wasi:cli/run@0.3.x`) runs under
//!   wasmtime-wasi's p3 (and p2) plus the pin imports on an asynchronous
//!   store (`p3`).
//!
//! All of them get `--dir` preopens, `--env` variables, the arguments after
//! WASM (argv\[0\] is its file name), inherited stdio, and the `-S` options
//! `wasmtime run` takes for them (`options`); the guest's exit code becomes
//! this process's (a trap: the error on stderr and exit code 134, as
//! `wasmtime run` on Unix).
//!
//! With **no program** it runs the built-in demo (`demo`): the Rust WASI
//! demo guest streams a file it is given through pinned buffers with
//! asynchronous zero-copy reads, then through WASI's `input-stream`, and
//! prints both; the host checks the guest's zero-copy copy of the file.

mod command;
mod demo;
mod form;
mod options;
mod p1;
mod p3;
mod wasi;

use clap::{Args, Parser, Subcommand, ValueEnum};
use form::Program;
use host_api::BackendKind;
use options::{OptionList, WasiOptions, WasmOptions};
use runtime_mm::{PinMemoryCreator, PoolConfig};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use wasmtime::component::Component;
use wasmtime::error::Context as _;
use wasmtime::{bail, format_err, Config, Engine, Module};

/// pin_user_pages() for WebAssembly linear memory under wasmtime.
#[derive(Parser, Debug)]
#[command(name = "wasm-pin", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Runs a WASI program (p1 module, 0.2 or 0.3 command) with the pin imports, like `wasmtime run`; none: the demo.
    Run(RunArgs),
}

/// `wasm-pin run`'s options. Everything after WASM goes to the guest, as
/// with `wasmtime run`; an unknown option before it is an error.
#[derive(Args, Debug)]
#[command(override_usage = "wasm-pin run [OPTIONS] [WASM] [ARGS]...")]
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
    #[arg(long, value_name = "N", default_value_t = 256, conflicts_with = "wasm_and_args")]
    pub mib: u64,

    /// Put guest memories on a pool of slots reserved once and reused (PinMemoryCreator::pooled).
    #[arg(long)]
    pub pooled: bool,

    /// Let the guest read the host process's CPU time (wasm-pin:mm `host-cpu-time`); the demo always may.
    #[arg(long)]
    pub allow_cpu_clock: bool,

    /// WASI options as `wasmtime run -S`: p3, preview0, inherit-network, tcp, udp, allow-ip-name-lookup, ...
    #[arg(short = 'S', value_name = "KEY[=VAL[,..]]", value_parser = options::parse_list)]
    pub wasi: Vec<OptionList>,

    /// WebAssembly options as `wasmtime run -W`: component-model-async (on by default).
    #[arg(short = 'W', value_name = "KEY[=VAL[,..]]", value_parser = options::parse_list)]
    pub wasm: Vec<OptionList>,

    /// The program (core module or component, binary or text), then its arguments; none: the demo.
    #[arg(value_names = ["WASM", "ARGS"], trailing_var_arg = true)]
    pub wasm_and_args: Vec<OsString>,
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
/// (`--pooled`); with component-model concurrency (the async ABI of WASI 0.3
/// components) if `concurrent`.
fn engine(pooled: bool, concurrent: bool) -> wasmtime::Result<(Engine, Arc<PinMemoryCreator>)> {
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
    // bookkeeping (it more than doubles the cost of an import call). WASI
    // 0.3 components need it; wasmtime refuses the async ABI without it.
    config.concurrency_support(concurrent);
    config.wasm_component_model_async(concurrent);
    let engine = creator.build_engine(&mut config)?;
    Ok((engine, creator))
}

/// Which command a component is, from the `wasi:cli/run` it exports and
/// the options: WASI 0.3 where exported and `-Sp3` (the default) allows it,
/// as `wasmtime run`, else WASI 0.2; `None` for neither.
fn command_kind(run: form::RunExports, wasi: &WasiOptions) -> Option<bool> {
    if run.p3 && wasi.p3 {
        Some(true)
    } else if run.p2 {
        Some(false)
    } else {
        None
    }
}

/// The error for a component that is no command `wasm-pin run` can run:
/// names its exports (compiled with `engine` to list them).
fn not_a_command(engine: &Engine, bytes: &[u8], path: &Path, run: form::RunExports) -> wasmtime::Error {
    let shown = path.display();
    let exports: Vec<String> = match Component::new(engine, bytes) {
        Ok(c) => c.component_type().exports(engine).map(|(n, _)| n.to_string()).collect(),
        Err(e) => return e.context(format!("failed to compile the component `{shown}`")),
    };
    if run.p3 {
        format_err!("`{shown}` exports `wasi:cli/run@0.3.x` only, and -Sp3=n disables WASI 0.3")
    } else {
        format_err!(
            "`{shown}` is not a WASI command: it exports neither `wasi:cli/run@0.2.x` nor `wasi:cli/run@0.3.x` \
             (its exports: {exports:?})"
        )
    }
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
    let wasi = WasiOptions::from_lists(&args.wasi).map_err(wasmtime::Error::msg)?;
    let wasm = WasmOptions::from_lists(&args.wasm).map_err(wasmtime::Error::msg)?;
    check_dirs(&args.dirs)?;
    let Some((path, rest)) = args.wasm_and_args.split_first() else {
        let (engine, creator) = engine(args.pooled, false)?;
        demo::run(&engine, creator.pool(), &args)?;
        return Ok(ExitCode::SUCCESS);
    };
    let path = Path::new(path);
    let program = form::load(path)?;
    let rest = guest_args(rest)?;
    let shown = path.display();
    match program {
        Program::Core(bytes) => {
            let (engine, creator) = engine(args.pooled, false)?;
            let module =
                Module::new(&engine, &bytes).with_context(|| format!("failed to compile the module `{shown}`"))?;
            p1::run(&engine, &creator, &module, path, &args, &wasi, rest)
        }
        Program::Component { bytes, run } => {
            let kind = command_kind(run, &wasi);
            if kind == Some(true) && !wasm.component_model_async {
                bail!("`{shown}` is a WASI 0.3 command: it needs -Wcomponent-model-async");
            }
            // Neither: compiled as `wasmtime run` would, to list its exports.
            let (engine, _) = engine(args.pooled, kind.unwrap_or(wasm.component_model_async))?;
            let Some(p3) = kind else {
                return Err(not_a_command(&engine, &bytes, path, run));
            };
            let component = Component::new(&engine, &bytes)
                .with_context(|| format!("failed to compile the component `{shown}`"))?;
            if p3 {
                p3::run(&engine, &component, path, &args, &wasi, rest)
            } else {
                Ok(command::run(&engine, &component, path, &args, &wasi, rest)?.0)
            }
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
