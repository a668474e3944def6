//! `wasm-pin run` as a process: options, errors, WASI commands (a WAT
//! component always; the Rust `hello-wasi` guest when `guests/rust/build.sh`
//! has built it), compared with running the same component in-process
//! through wasmtime-wasi alone; and the built-in demo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wasm-pin-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `wasm-pin` with `args` in `cwd`.
fn wasm_pin(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasm-pin"));
    cmd.current_dir(cwd).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn wasm-pin")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The exit code, and stderr for the failure messages.
fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

#[test]
fn help_lists_every_option_on_one_line() {
    let out = wasm_pin(Path::new("."), &["run", "--help"], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let help = text(&out.stdout);
    assert!(
        help.contains("Usage: wasm-pin run [OPTIONS] [COMPONENT] [ARGS]..."),
        "{help}"
    );
    for option in [
        "--dir <HOST[::GUEST]>",
        "--env <NAME[=VAL]>",
        "--backend <BACKEND>",
        "--mib <N>",
        "--pooled",
        "--help",
    ] {
        let line = help
            .lines()
            .find(|l| l.contains(option))
            .unwrap_or_else(|| panic!("no {option} in:\n{help}"));
        // The option's description is on its own line, after the option.
        assert!(line.trim_end().len() > option.len() + 12, "{line:?}");
    }
}

#[test]
fn unknown_flag_before_the_component_is_an_error() {
    let dir = scratch("unknown-flag");
    let out = wasm_pin(&dir, &["run", "--bogus", "x.wasm"], &[]);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("unexpected argument '--bogus'"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_component_names_the_os_reason() {
    let dir = scratch("missing");
    let out = wasm_pin(&dir, &["run", "no-such.wasm"], &[]);
    assert_eq!(code(&out), 1);
    let err = text(&out.stderr);
    assert!(
        err.contains("no-such.wasm") && err.contains("No such file or directory"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_wasm_and_core_modules_are_refused() {
    let dir = scratch("not-components");
    std::fs::write(dir.join("notes.txt"), "hello\n").unwrap();
    std::fs::write(dir.join("core.wat"), "(module)").unwrap();
    std::fs::write(dir.join("core.wasm"), wasm_pin_guests::core_module("core_pin").unwrap()).unwrap();
    for (file, what) in [
        ("notes.txt", "not a WebAssembly component"),
        ("core.wat", "not a WebAssembly component"),
        ("core.wasm", "is a core WebAssembly module, not a WebAssembly component"),
    ] {
        let out = wasm_pin(&dir, &["run", file], &[]);
        let err = text(&out.stderr);
        assert_eq!(code(&out), 1, "{file}: {err}");
        assert!(err.contains(what), "{file}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nonexistent_dir_is_an_error_and_is_not_created() {
    let dir = scratch("nodir");
    let missing = dir.join("missing");
    let missing_arg = missing.to_str().unwrap();
    let component = dir.join("exit.wat");
    std::fs::write(&component, exit_with_code_wat(0)).unwrap();
    // With a component, and with none (the demo must not create it either).
    for args in [
        vec!["run", "--dir", missing_arg, component.to_str().unwrap()],
        vec![
            "run",
            "--dir",
            &format!("{missing_arg}::/data"),
            component.to_str().unwrap(),
        ],
        vec!["run", "--dir", missing_arg, "--mib", "1"],
    ] {
        let out = wasm_pin(&dir, &args, &[]);
        let err = text(&out.stderr);
        assert_eq!(code(&out), 1, "{args:?}: {err}");
        assert!(
            err.contains("--dir") && err.contains("No such file or directory"),
            "{args:?}: {err}"
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A WASI command written as component text: `run` calls
/// `wasi:cli/exit.exit-with-code(code)`.
fn exit_with_code_wat(code: u8) -> String {
    command_wat(
        r#"(import "wasi:cli/exit@0.2.12" (instance $exit (export "exit-with-code" (func (param "status-code" u8)))))"#,
        &format!(
            r#"(import "exit" "exit-with-code" (func $exit (param i32)))
               (func (export "run") (result i32) i32.const {code} call $exit i32.const 0)"#
        ),
        r#"(core func $exit_code (canon lower (func $exit "exit-with-code")))
           (core instance $exit_core (export "exit-with-code" (func $exit_code)))"#,
        r#"(with "exit" (instance $exit_core))"#,
    )
}

/// A WASI command whose `run` has the given core body (returning the
/// `result` discriminant: 0 ok, 1 error), with no imports.
fn run_body_wat(body: &str) -> String {
    command_wat("", &format!(r#"(func (export "run") (result i32) {body})"#), "", "")
}

fn command_wat(imports: &str, core: &str, lowered: &str, with: &str) -> String {
    format!(
        r#"(component
             {imports}
             (core module $m {core})
             {lowered}
             (core instance $i (instantiate $m {with}))
             (type $status (result))
             (func $run (result $status) (canon lift (core func $i "run")))
             (instance $run_instance (export "run" (func $run)))
             (export "wasi:cli/run@0.2.12" (instance $run_instance)))"#
    )
}

/// The store of the in-process reference runs: wasmtime-wasi alone.
struct Reference {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Reference {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Runs a WASI command (binary or text) in-process with wasmtime-wasi alone
/// (stock engine, no pin imports) and maps the outcome to an exit code the way `wasmtime run`
/// does: returns (exit code, stdout, stderr).
fn reference_run(
    component: &[u8],
    argv: &[&str],
    env: &[(&str, &str)],
    dir: Option<(&Path, &str)>,
) -> (i32, String, String) {
    let engine = Engine::default();
    let component = Component::new(&engine, component).unwrap();
    let mut linker = Linker::<Reference>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let (stdout, stderr) = (MemoryOutputPipe::new(1 << 20), MemoryOutputPipe::new(1 << 20));
    let mut wasi = WasiCtxBuilder::new();
    wasi.args(argv).envs(env).stdout(stdout.clone()).stderr(stderr.clone());
    if let Some((host, guest)) = dir {
        wasi.preopened_dir(host, guest, FsPerms::ReadWrite).unwrap();
    }
    let mut store = Store::new(
        &engine,
        Reference {
            wasi: wasi.build(),
            table: ResourceTable::new(),
        },
    );
    let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker).unwrap();
    let code = match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => 0,
        Ok(Err(())) => 1,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => exit.0,
            None if e.is::<wasmtime::Trap>() => 134,
            None => panic!("{e:?}"),
        },
    };
    drop(store);
    (code, text(&stdout.contents()), text(&stderr.contents()))
}

#[test]
fn wat_commands_exit_codes_and_traps_match_wasmtime_wasi() {
    let dir = scratch("wat-commands");
    let cases = [
        ("exit7.wat", exit_with_code_wat(7), 7),
        ("exit0.wat", exit_with_code_wat(0), 0),
        ("ok.wat", run_body_wat("i32.const 0"), 0),
        ("err.wat", run_body_wat("i32.const 1"), 1),
        ("trap.wat", run_body_wat("unreachable"), 134),
    ];
    for (file, wat, want) in cases {
        std::fs::write(dir.join(file), &wat).unwrap();
        // On demand and on the pool (`--pooled`), the same outcome.
        for mode in [&["run"][..], &["run", "--pooled"]] {
            let out = wasm_pin(&dir, &[mode, &[file, "ignored", "--flag"]].concat(), &[]);
            let err = text(&out.stderr);
            assert_eq!(code(&out), want, "{file} {mode:?}: {err}");
            assert_eq!(text(&out.stdout), "", "{file}");
            if want == 134 {
                assert!(err.contains("unreachable"), "{file}: {err}");
            } else {
                assert_eq!(err, "", "{file}");
            }
        }
        let (reference, _, _) = reference_run(wat.as_bytes(), &[file, "ignored", "--flag"], &[], None);
        assert_eq!(reference, want, "{file}: in-process wasmtime-wasi");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Rust WASI command `name`, or `None` (and a note) if
/// `guests/rust/build.sh` has not built it.
fn rust_command(name: &str) -> Option<&'static [u8]> {
    let bytes = wasm_pin_guests::wasi_command(name);
    if bytes.is_none() {
        // .ci/run always builds the Rust guests: CI must never get here.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must build the {name} guest (guests/rust/build.sh)"
        );
        eprintln!("skipped: the {name} guest is not built (run guests/rust/build.sh)");
    }
    bytes
}

fn hello_wasi() -> Option<&'static [u8]> {
    rust_command("hello-wasi")
}

#[test]
fn hello_wasi_imports_wasi_0_2_12_only() {
    let Some(bytes) = hello_wasi() else { return };
    let engine = Engine::default();
    let component = Component::new(&engine, bytes).unwrap();
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
    assert!(!imports.is_empty());
    for name in &imports {
        assert!(name.starts_with("wasi:") && name.ends_with("@0.2.12"), "{imports:?}");
    }
    let exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
    assert_eq!(exports, ["wasi:cli/run@0.2.12"]);
}

#[test]
fn hello_wasi_runs_with_args_env_and_dir_like_wasmtime_wasi() {
    let Some(bytes) = hello_wasi() else { return };
    let dir = scratch("hello-wasi");
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(dir.join("hello-wasi.wasm"), bytes).unwrap();
    let data_arg = format!("{}::/data", data.display());

    let out = wasm_pin(
        &dir,
        &[
            "run",
            "--dir",
            &data_arg,
            "--env",
            "HELLO_WASI=hi there",
            "hello-wasi.wasm",
            "--file",
            "/data",
            "two words",
            "--dir",
        ],
        &[],
    );
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(
        stdout,
        "arg[0]=hello-wasi.wasm\narg[1]=--file\narg[2]=/data\narg[3]=two words\narg[4]=--dir\n\
         env HELLO_WASI=hi there\nfile /data/hello-wasi.txt: hello from hello-wasi.wasm\n"
    );
    assert_eq!(text(&out.stderr), "hello-wasi: done, exit code 0\n");
    assert_eq!(
        std::fs::read_to_string(data.join("hello-wasi.txt")).unwrap(),
        "hello from hello-wasi.wasm\n"
    );

    // The same run in-process through wasmtime-wasi alone: same output.
    std::fs::remove_file(data.join("hello-wasi.txt")).unwrap();
    let (reference, ref_out, ref_err) = reference_run(
        bytes,
        &["hello-wasi.wasm", "--file", "/data", "two words", "--dir"],
        &[("HELLO_WASI", "hi there")],
        Some((&data, "/data")),
    );
    assert_eq!(
        (reference, ref_out.as_str(), ref_err.as_str()),
        (0, stdout.as_str(), "hello-wasi: done, exit code 0\n")
    );

    // `--env NAME` inherits the host's value; a path outside the preopens
    // is refused by WASI (ENOTCAPABLE), and the guest exits with 3.
    let out = wasm_pin(
        &dir,
        &[
            "run",
            "--dir",
            &data_arg,
            "--env",
            "HELLO_WASI",
            "hello-wasi.wasm",
            "--file",
            "/elsewhere",
        ],
        &[("HELLO_WASI", "inherited")],
    );
    assert!(
        text(&out.stdout).contains("env HELLO_WASI=inherited\n"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("write /elsewhere/hello-wasi.txt: Capabilities insufficient"),
        "{}",
        text(&out.stderr)
    );
    let (reference, _, _) = reference_run(
        bytes,
        &["hello-wasi.wasm", "--file", "/elsewhere"],
        &[],
        Some((&data, "/data")),
    );
    assert_eq!(
        (code(&out), reference),
        (1, 1),
        "exit(3) through the preview1 adapter is exit(err)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hello_wasi_exit_code_matches_wasmtime_wasi() {
    let Some(bytes) = hello_wasi() else { return };
    let dir = scratch("hello-exit");
    std::fs::write(dir.join("hello-wasi.wasm"), bytes).unwrap();
    // wasmtime 48's preview1 adapter turns proc_exit(n != 0) into
    // `wasi:cli/exit.exit(err)`: exit code 1, as under `wasmtime run`.
    for (arg, want) in [("0", 0), ("1", 1), ("42", 1)] {
        let out = wasm_pin(&dir, &["run", "hello-wasi.wasm", "--exit", arg], &[]);
        let (reference, ref_out, _) = reference_run(bytes, &["hello-wasi.wasm", "--exit", arg], &[], None);
        assert_eq!((code(&out), reference), (want, want), "--exit {arg}");
        assert_eq!(text(&out.stdout), ref_out);
        assert!(
            text(&out.stderr).ends_with(&format!("hello-wasi: done, exit code {arg}\n")),
            "{}",
            text(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The demo guest is an ordinary WASI command: `wasm-pin run` runs it like
/// any other, and with no component runs it as the built-in demo.
#[test]
fn the_demo_guest_runs_as_a_command_and_as_the_builtin_demo() {
    let Some(bytes) = rust_command("demo") else { return };
    let dir = scratch("demo");
    let input: Vec<u8> = (0..(3u32 << 20) + 777)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(dir.join("in.bin"), &input).unwrap();
    std::fs::write(dir.join("demo.wasm"), bytes).unwrap();
    let data = format!("{}::/data", dir.to_str().unwrap());
    for backend in ["io-uring", "threads"] {
        let out = wasm_pin(
            &dir,
            &[
                "run",
                "--backend",
                backend,
                "--dir",
                &data,
                "demo.wasm",
                "/data/in.bin",
                "/data/out.bin",
            ],
            &[],
        );
        let stdout = text(&out.stdout);
        if backend == "io-uring" && code(&out) != 0 && text(&out.stderr).contains("io_uring") {
            println!("io_uring skipped: {}", text(&out.stderr));
            continue;
        }
        assert_eq!(code(&out), 0, "{stdout}{}", text(&out.stderr));
        assert!(
            stdout.contains("zero-copy, page cache:") && stdout.contains("WASI input-stream:"),
            "{stdout}"
        );
        assert_eq!(std::fs::read(dir.join("out.bin")).unwrap(), input, "{backend}");
    }
    // No component: the built-in demo, on a 1 MiB file in --dir.
    let dir_arg = dir.to_str().unwrap();
    let out = wasm_pin(
        &dir,
        &["run", "--dir", dir_arg, "--mib", "1", "--backend", "threads"],
        &[],
    );
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 0, "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("identical") && stdout.contains("balanced"), "{stdout}");
    // Side by side: each pass with its host CPU time (the demo may read the
    // CPU clock), direct I/O where /tmp's filesystem allows it, the ratios.
    assert!(
        stdout.contains("ratio, zero-copy (page cache) / input-stream:"),
        "{stdout}"
    );
    assert!(stdout.contains("less host CPU per byte"), "{stdout}");
    let passes = stdout.lines().filter(|l| l.contains(", host CPU ")).count();
    assert_eq!(
        passes,
        2 + stdout.contains("zero-copy, direct I/O:") as usize,
        "{stdout}"
    );
    assert!(
        stdout.contains("zero-copy, direct I/O:") || stdout.contains("no direct I/O on this filesystem"),
        "{stdout}"
    );
    // The same on the pool: the guest's slot is held while the host holds
    // its memory, then reset.
    let out = wasm_pin(
        &dir,
        &[
            "run",
            "--pooled",
            "--dir",
            dir_arg,
            "--mib",
            "1",
            "--backend",
            "threads",
        ],
        &[],
    );
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 0, "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("identical") && stdout.contains("balanced"), "{stdout}");
    assert!(
        stdout.contains("pool:   64 slots; 1 quarantined while the host held the guest's memory, then reset: 64 free"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_command_gets_the_pin_imports_on_its_own_memory() {
    let Some(bytes) = rust_command("pin-probe") else { return };
    let dir = scratch("pin-probe");
    std::fs::write(dir.join("pin-probe.wasm"), bytes).unwrap();
    for mode in [&["run"][..], &["run", "--pooled"]] {
        let out = wasm_pin(&dir, &[mode, &["pin-probe.wasm"]].concat(), &[]);
        assert_eq!(code(&out), 0, "{mode:?}: {}{}", text(&out.stdout), text(&out.stderr));
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        let hash = host_api::fnv1a(&(0u8..16).collect::<Vec<_>>());
        assert_eq!(lines.len(), 3, "{stdout}");
        assert!(
            lines[0].starts_with("pinned 2 pages of ") && lines[0].ends_with(" bytes at the buffer: true"),
            "{stdout}"
        );
        assert_eq!(lines[1], format!("checksum {hash:#010x}"));
        assert_eq!(lines[2], "pins acquired 2, released 2");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
