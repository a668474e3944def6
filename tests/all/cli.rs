//! `wasm-pin run` as a process: options, errors, every program form (WASI
//! preview1 core modules, with and without the core-ABI pin imports; WASI
//! 0.2 commands: WAT components always, the Rust `hello-wasi` guest when
//! `guests/rust/build.sh` has built it, compared with running the same
//! component in-process through wasmtime-wasi alone; WASI 0.3 commands);
//! and the built-in demo.

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
        help.contains("Usage: wasm-pin run [OPTIONS] [WASM] [ARGS]..."),
        "{help}"
    );
    for option in [
        "--dir <HOST[::GUEST]>",
        "--env <NAME[=VAL]>",
        "--backend <BACKEND>",
        "--mib <N>",
        "--pooled",
        "-S <KEY[=VAL[,..]]>",
        "-W <KEY[=VAL[,..]]>",
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
fn files_that_are_not_wasm_are_refused() {
    let dir = scratch("not-wasm");
    std::fs::write(dir.join("notes.txt"), "hello\n").unwrap();
    std::fs::write(dir.join("future.wasm"), b"\0asm\x01\0\x02\0").unwrap();
    // A component that is no command: it exports no `wasi:cli/run`.
    std::fs::write(
        dir.join("lib.wat"),
        "(component (core module $m) (core instance (instantiate $m)))",
    )
    .unwrap();
    for (file, what) in [
        (
            "notes.txt",
            "not a WebAssembly module or component (neither binary nor text",
        ),
        ("future.wasm", "unknown binary version or layer"),
        (
            "lib.wat",
            "is not a WASI command: it exports neither `wasi:cli/run@0.2.x` nor `wasi:cli/run@0.3.x`",
        ),
    ] {
        let out = wasm_pin(&dir, &["run", file], &[]);
        let err = text(&out.stderr);
        assert_eq!(code(&out), 1, "{file}: {err}");
        assert!(err.contains(what), "{file}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wasmtime_run_s_and_w_options_are_parsed_and_unknown_ones_refused() {
    let dir = scratch("options");
    std::fs::write(dir.join("exit.wat"), exit_with_code_wat(5)).unwrap();
    // As the wasi-testsuite adapter passes them, before the other options.
    let out = wasm_pin(
        &dir,
        &[
            "run",
            "-Wcomponent-model-async",
            "-Sp3,inherit-network",
            "--env",
            "A=1",
            "exit.wat",
        ],
        &[],
    );
    assert_eq!(code(&out), 5, "{}", text(&out.stderr));
    for (flag, what) in [
        ("-Sbogus", "-Sbogus: unknown WASI option"),
        ("-Shttp", "-Shttp: wasi-http is not provided by wasm-pin run"),
        ("-Sp3=maybe", "expected y, yes, true, n, no or false"),
        ("-Wgc", "-Wgc: unknown WebAssembly option"),
    ] {
        let out = wasm_pin(&dir, &["run", flag, "exit.wat"], &[]);
        assert_eq!(code(&out), 1, "{flag}");
        assert!(text(&out.stderr).contains(what), "{flag}: {}", text(&out.stderr));
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
    // Then the same file through WASI 0.3 streams (p3-read, built with the
    // demo guest): on wasm-pin's and on wasmtime-wasi's own, both reading
    // every byte.
    if wasm_pin_guests::wasi_p3_command("p3-read").is_some() {
        assert!(
            stdout.contains("wasm-pin streams (zero-copy)")
                && stdout.contains("wasmtime-wasi's own p3")
                && stdout.contains("both read all 1048576 bytes"),
            "{stdout}"
        );
    } else {
        assert!(stdout.contains("p3 streams: skipped"), "{stdout}");
    }
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

/// Writes the test program `tests/programs/<file>` (text) to `dir`.
fn program(dir: &Path, file: &str, wat: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, wat).unwrap();
    path
}

#[test]
fn p1_module_gets_args_env_a_preopen_and_its_exact_exit_code() {
    let dir = scratch("p1");
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("data.txt"), "file contents\n").unwrap();
    let wat = include_str!("../programs/p1_hello.wat");
    program(&dir, "p1_hello.wat", wat);
    // The same program as a binary module.
    std::fs::write(dir.join("p1_hello.wasm"), wat::parse_str(wat).unwrap()).unwrap();
    let data_arg = format!("{}::/data", data.display());
    for file in ["p1_hello.wat", "p1_hello.wasm"] {
        for mode in [&["run"][..], &["run", "--pooled"]] {
            let args = [
                mode,
                &["--dir", &data_arg, "--env", "GREETING=hi", file, "x", "two words"],
            ]
            .concat();
            let out = wasm_pin(&dir, &args, &[("NOT_PASSED", "1")]);
            assert_eq!(code(&out), 33, "{args:?}: {}", text(&out.stderr));
            assert_eq!(
                text(&out.stdout),
                format!("{file}\nx\ntwo words\nGREETING=hi\nfile contents\n"),
                "{args:?}"
            );
            assert_eq!(text(&out.stderr), "");
        }
    }
    // Without the preopen, path_open fails and the program says so (5).
    let out = wasm_pin(&dir, &["run", "p1_hello.wasm"], &[]);
    assert_eq!(code(&out), 5, "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// #20: a Rust `wasm32-wasip1` program (`std-fs-read`: std only, a 256 KiB
/// allocation, `Instant::now()`, `std::fs` reads through 256 KiB and 1 MiB
/// buffers) runs natively as a core module, on demand and pooled, and reads
/// the right bytes; as a component (the adapter route) it prints the same.
#[test]
fn a_rust_p1_program_runs_natively_and_as_a_component() {
    let (Some(module), Some(component)) = (
        wasm_pin_guests::wasi_p1_module("std-fs-read"),
        rust_command("std-fs-read"),
    ) else {
        return;
    };
    let dir = scratch("p1-rust");
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    let input: Vec<u8> = (0..(3u32 << 20) + 77)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(data.join("in.bin"), &input).unwrap();
    std::fs::write(dir.join("std-fs-read.wasm"), module).unwrap();
    std::fs::write(dir.join("std-fs-read.component.wasm"), component).unwrap();
    let fnv = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let line = format!("bytes={} fnv={fnv:016x}", input.len());
    let want = format!("read256k {line}\nread1m {line}\n");
    let data_arg = format!("{}::/data", data.display());
    for (file, pooled) in [
        ("std-fs-read.wasm", false),
        ("std-fs-read.wasm", true),
        ("std-fs-read.component.wasm", false),
    ] {
        let mut args = vec!["run"];
        if pooled {
            args.push("--pooled");
        }
        args.extend(["--dir", &data_arg, file, "/data/in.bin"]);
        let out = wasm_pin(&dir, &args, &[]);
        assert_eq!(code(&out), 0, "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), want, "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn p1_module_traps_reactors_and_default_exports_as_wasmtime_run() {
    let dir = scratch("p1-forms");
    let print = r#"(import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
                   (memory (export "memory") 1)
                   (data (i32.const 16) "init\nmain\n")
                   (func $say (param i32)
                     (i32.store (i32.const 0) (local.get 0)) (i32.store (i32.const 4) (i32.const 5))
                     (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))"#;
    let cases = [
        (
            "trap.wat",
            r#"(module (func (export "_start") unreachable))"#.to_string(),
            134,
            "",
        ),
        // A reactor: `_initialize`, and nothing else to run.
        (
            "reactor.wat",
            format!(r#"(module {print} (func (export "_initialize") (call $say (i32.const 16))))"#),
            0,
            "init\n",
        ),
        // `_initialize`, then the default export `""` before `_start`.
        (
            "default.wat",
            format!(
                r#"(module {print} (func (export "_initialize") (call $say (i32.const 16)))
                     (func (export "") (call $say (i32.const 21))) (func (export "_start") unreachable))"#
            ),
            0,
            "init\nmain\n",
        ),
        // Nothing to run at all.
        ("empty.wat", "(module)".to_string(), 0, ""),
        // proc_exit outside WASI's range is an error, not an exit code.
        (
            "exit200.wat",
            r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                 (func (export "_start") (call $exit (i32.const 200))))"#
                .to_string(),
            1,
            "",
        ),
    ];
    for (file, wat, want, stdout) in cases {
        program(&dir, file, &wat);
        let out = wasm_pin(&dir, &["run", file], &[]);
        let err = text(&out.stderr);
        assert_eq!(code(&out), want, "{file}: {err}");
        assert_eq!(text(&out.stdout), stdout, "{file}");
        match want {
            134 => assert!(err.contains("unreachable"), "{file}: {err}"),
            1 => assert!(err.contains("Error:"), "{file}: {err}"),
            _ => assert_eq!(err, "", "{file}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn p1_module_pins_its_own_memory_through_the_core_abi() {
    let dir = scratch("p1-pin");
    program(&dir, "p1_pin.wat", include_str!("../programs/p1_pin.wat"));
    for mode in [&["run"][..], &["run", "--pooled"]] {
        let out = wasm_pin(&dir, &[mode, &["p1_pin.wat"]].concat(), &[]);
        assert_eq!(code(&out), 0, "{mode:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "pinned 2 pages at 0x4000, same checksum, unpinned\n");
    }
    // The existing core-ABI guest too: it exports `run`, not `_start`, so
    // (as under `wasmtime run`) nothing of it runs, but it links.
    std::fs::write(
        dir.join("core_pin.wasm"),
        wasm_pin_guests::core_module("core_pin").unwrap(),
    )
    .unwrap();
    let out = wasm_pin(&dir, &["run", "core_pin.wasm"], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A WASI 0.3 command whose `run` (an async func, lifted synchronously) has
/// the given core body (returning the `result` discriminant).
fn p3_run_body_wat(body: &str) -> String {
    format!(
        r#"(component
             (core module $m (func (export "run") (result i32) {body}))
             (core instance $i (instantiate $m))
             (type $status (result))
             (type $run_t (func async (result $status)))
             (func $run (type $run_t) (canon lift (core func $i "run")))
             (instance $run_instance (export "run" (func $run)))
             (export "wasi:cli/run@0.3.0" (instance $run_instance)))"#
    )
}

#[test]
fn p3_commands_get_args_env_and_exit_codes() {
    let dir = scratch("p3");
    program(&dir, "p3_env_exit.wat", include_str!("../programs/p3_env_exit.wat"));
    for mode in [
        &["run"][..],
        &["run", "--pooled"],
        &["run", "-Wcomponent-model-async", "-Sp3"],
    ] {
        // 3 arguments (argv[0] included), 2 variables: exit-with-code(32).
        let args = [mode, &["--env", "A=1", "--env", "B=2", "p3_env_exit.wat", "x", "y"]].concat();
        let out = wasm_pin(&dir, &args, &[("NOT_PASSED", "1")]);
        assert_eq!(code(&out), 32, "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "");
    }
    let out = wasm_pin(&dir, &["run", "p3_env_exit.wat"], &[]);
    assert_eq!(code(&out), 10, "{}", text(&out.stderr));

    for (file, body, want) in [
        ("ok.wat", "i32.const 0", 0),
        ("err.wat", "i32.const 1", 1),
        ("trap.wat", "unreachable", 134),
    ] {
        program(&dir, file, &p3_run_body_wat(body));
        let out = wasm_pin(&dir, &["run", file], &[]);
        let err = text(&out.stderr);
        assert_eq!(code(&out), want, "{file}: {err}");
        if want == 134 {
            assert!(err.contains("unreachable"), "{file}: {err}");
        } else {
            assert_eq!(err, "", "{file}");
        }
    }
    // WASI 0.3 switched off: this command exports nothing else to run.
    let out = wasm_pin(&dir, &["run", "-Sp3=n", "ok.wat"], &[]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("-Sp3=n disables WASI 0.3"),
        "{}",
        text(&out.stderr)
    );
    let out = wasm_pin(&dir, &["run", "-Wcomponent-model-async=n", "ok.wat"], &[]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("needs -Wcomponent-model-async"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn p3_command_gets_the_pin_interfaces() {
    let dir = scratch("p3-gup");
    program(&dir, "p3_gup.wat", include_str!("../programs/p3_gup.wat"));
    for mode in [&["run"][..], &["run", "--pooled"]] {
        let out = wasm_pin(&dir, &[mode, &["p3_gup.wat"]].concat(), &[]);
        // page-size 4096 / 512, and its page not pinned.
        assert_eq!(code(&out), 8, "{mode:?}: {}", text(&out.stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
