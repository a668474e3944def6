//! Issue 21: a Rust WASI 0.3 command built from source (`guests/rust-p3/`,
//! `p3-read`: wit-bindgen's async bindings, no adapter) runs on
//! wasmtime-wasi's own p3 (an async store on a multi-thread tokio runtime,
//! `run_concurrent`): file reads through `read-via-stream` with lent
//! buffers of 64 KiB and 1 MiB, and writes and appends through
//! `write-via-stream` / `append-via-stream`, checked on the host.

use std::path::Path;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p3::bindings::Command;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

use crate::support::rust_guests;

use rust_guests::{fnv1a, pattern, scratch};

fn guest() -> Option<&'static [u8]> {
    rust_guests::p3_command("p3-read")
}

/// What a run gave: `run`'s result, stdout and stderr.
struct Ran {
    result: Result<(), ()>,
    stdout: String,
    stderr: String,
}

/// Runs `p3-read` with `args` on wasmtime-wasi's p3, `dir` preopened
/// read-write as `/data`, in an async store on a multi-thread runtime.
fn run(bytes: &[u8], dir: &Path, args: &[&str]) -> Ran {
    let mut config = Config::new();
    config.wasm_component_model_async(true);
    let engine = Engine::new(&config).unwrap();
    let component = Component::new(&engine, bytes).unwrap();
    let mut linker = Linker::<State>::new(&engine);
    wasmtime_wasi::p3::add_to_linker(&mut linker).unwrap();

    let (stdout, stderr) = (MemoryOutputPipe::new(1 << 16), MemoryOutputPipe::new(1 << 16));
    let mut wasi = WasiCtx::builder();
    wasi.preopened_dir(dir, "/data", FsPerms::ReadWrite).unwrap();
    wasi.args(args).stdout(stdout.clone()).stderr(stderr.clone());
    let state = State {
        wasi: wasi.build(),
        table: ResourceTable::new(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async {
        let mut store = Store::new(&engine, state);
        let command = Command::instantiate_async(&mut store, &component, &linker)
            .await
            .unwrap();
        store
            .run_concurrent(async move |s| command.wasi_cli_run().call_run(s).await)
            .await
            .unwrap()
            .unwrap()
    });
    let text = |p: &MemoryOutputPipe| String::from_utf8(p.contents().to_vec()).unwrap();
    Ran {
        result,
        stdout: text(&stdout),
        stderr: text(&stderr),
    }
}

/// A 4 MiB file read through `read-via-stream` with 64 KiB and 1 MiB lent
/// buffers: every byte arrives, and no read is larger than the buffer.
#[test]
fn reads_a_file_through_lent_buffers() {
    let Some(bytes) = guest() else { return };
    let dir = scratch("read");
    let input = pattern(4 << 20);
    std::fs::write(dir.join("in.bin"), &input).unwrap();
    for n in [64 << 10, 1 << 20] {
        let size = n.to_string();
        let ran = run(bytes, &dir, &["p3-read", "/data/in.bin", &size, "read"]);
        assert_eq!(ran.result, Ok(()), "{n}: {}", ran.stderr);
        assert_eq!(
            ran.stdout,
            format!("bytes={} fnv={:016x}\n", input.len(), fnv1a(&input)),
            "{n}"
        );
        // `reads=<r> largest=<m>`: the lent buffer bounds every read.
        let fields: Vec<usize> = ran
            .stderr
            .split_whitespace()
            .map(|f| f.split_once('=').unwrap().1.parse().unwrap())
            .collect();
        let [reads, largest] = fields[..] else {
            panic!("stderr: {}", ran.stderr)
        };
        assert!(largest > 0 && largest <= n, "{n}: {}", ran.stderr);
        assert!(reads >= input.len() / n, "{n}: {}", ran.stderr);
        println!("{n}-byte buffers: {}", ran.stderr.trim_end());
    }
}

/// `write-via-stream` at offset 0 into a new file, in 64 KiB chunks.
#[test]
fn writes_a_new_file_through_a_stream() {
    let Some(bytes) = guest() else { return };
    let dir = scratch("write");
    let total = (3 << 20) + 123;
    let ran = run(
        bytes,
        &dir,
        &["p3-read", "/data/out.bin", "65536", "write", &total.to_string()],
    );
    assert_eq!(ran.result, Ok(()), "{}", ran.stderr);
    assert_eq!(ran.stdout, format!("bytes={total}\n"));
    assert!(std::fs::read(dir.join("out.bin")).unwrap() == pattern(total), "out.bin");
}

/// `append-via-stream` after what the file holds, in 1 MiB chunks.
#[test]
fn appends_to_a_file_through_a_stream() {
    let Some(bytes) = guest() else { return };
    let dir = scratch("append");
    let prefix = vec![0xab; 1000];
    std::fs::write(dir.join("log.bin"), &prefix).unwrap();
    let total = (2 << 20) + 7;
    let ran = run(
        bytes,
        &dir,
        &["p3-read", "/data/log.bin", "1048576", "append", &total.to_string()],
    );
    assert_eq!(ran.result, Ok(()), "{}", ran.stderr);
    assert_eq!(ran.stdout, format!("bytes={total}\n"));
    let got = std::fs::read(dir.join("log.bin")).unwrap();
    assert!(got[..1000] == prefix[..], "the prefix is kept");
    assert!(got[1000..] == pattern(total)[..], "the appended bytes follow it");
}

/// A missing file: `run` returns `Err` and the error code is printed.
#[test]
fn a_missing_file_is_an_error() {
    let Some(bytes) = guest() else { return };
    let dir = scratch("missing");
    let ran = run(bytes, &dir, &["p3-read", "/data/nothing.bin", "4096", "read"]);
    assert_eq!(ran.result, Err(()));
    assert_eq!(ran.stdout, "");
    assert!(ran.stderr.contains("NoEntry"), "{}", ran.stderr);
}

/// The benchmarks' modes: `touch` lends one buffer to every read and only
/// counts; `rewrite` writes one buffer again and again, its first and last
/// byte set to the chunk's index (a short last chunk included).
#[test]
fn touch_and_rewrite_modes() {
    let Some(bytes) = guest() else { return };
    let dir = scratch("touch");
    let input = pattern((4 << 20) + 5);
    std::fs::write(dir.join("in.bin"), &input).unwrap();
    let ran = run(bytes, &dir, &["p3-read", "/data/in.bin", "65536", "touch"]);
    assert_eq!(ran.result, Ok(()), "{}", ran.stderr);
    assert_eq!(ran.stdout, format!("bytes={}\n", input.len()));

    let (n, total) = (65536, (3 << 20) + 77);
    let ran = run(
        bytes,
        &dir,
        &[
            "p3-read",
            "/data/out.bin",
            &n.to_string(),
            "rewrite",
            &total.to_string(),
        ],
    );
    assert_eq!(ran.result, Ok(()), "{}", ran.stderr);
    assert_eq!(ran.stdout, format!("bytes={total}\n"));
    let chunk = pattern(n);
    let want: Vec<u8> = (0..total)
        .map(|i| {
            let (k, j) = (i / n, i % n);
            let len = n.min(total - k * n);
            if j == 0 || j == len - 1 {
                k as u8
            } else {
                chunk[j]
            }
        })
        .collect();
    assert!(std::fs::read(dir.join("out.bin")).unwrap() == want, "out.bin");
}
