//! Builds the guests from source: every `wat/*.wat` becomes a component of
//! world `test-guest` (from `../wit`), every `wat-soak/*.wat` one of world
//! `soak-tenant` (the soak's tenant), every `wat-core/*.wat` a core module,
//! and every WASI command that `rust/build.sh` built from `rust-wasi/` (a
//! `wasm32-wasip1` core module, which must link `rust-wasi/wasip1-start`) a
//! `wasi:cli/command` component (its core module is kept too, to run natively
//! on preview1); every WASI 0.3 command it built from
//! `rust-p3/` (a `wasm32-unknown-unknown` cdylib) a component with no
//! adapter. `rust/build.sh` builds all three Rust workspaces into `target/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
};
use wit_component::{embed_component_metadata, ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

fn wat_files(dir: &Path) -> Vec<PathBuf> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wat"))
        .collect();
    files.sort();
    files
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_str().unwrap().to_string()
}

/// Encodes a core module that carries its component type as a component.
fn encode(core: &[u8], what: &Path) -> Vec<u8> {
    ComponentEncoder::default()
        .validate(true)
        .module(core)
        .and_then(|mut e| e.encode())
        .unwrap_or_else(|e| panic!("componentizing {}: {e:?}", what.display()))
}

/// Encodes a `wasm32-wasip1` command module as a component through wasmtime
/// 48.0.8's preview1 command adapter (which imports `wasi:*@0.2.12`, the
/// version wasmtime-wasi 48.0.8 provides). Metadata the module embedded
/// (e.g. wit-bindgen's, for the pin imports) is merged in by the encoder.
fn encode_wasi_command(core: &[u8], what: &Path) -> Vec<u8> {
    ComponentEncoder::default()
        .module(core)
        .and_then(|e| {
            e.adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
            )
        })
        .and_then(|e| e.validate(true).encode())
        .unwrap_or_else(|e| panic!("componentizing {} with the command adapter: {e:?}", what.display()))
}

/// Warns (at build time, not as a trap at run time) when a WASI command
/// module lacks the exports `rust-wasi/wasip1-start` gives it: without
/// `__original_main` libc's constructors may never run (`std::fs` then fails
/// with ENOTCAPABLE), without `cabi_realloc` the adapter takes pages that
/// Debian's wasi-libc `malloc` later hands out (a trap at "adapter line
/// 2857"). See `docs/GUESTS.md`.
fn check_wasip1_start(core: &[u8], name: &str) {
    let mut exports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        if let Ok(wasmparser::Payload::ExportSection(s)) = payload {
            exports.extend(s.into_iter().filter_map(|e| e.ok()).map(|e| e.name));
        }
    }
    for want in ["__original_main", "cabi_realloc"] {
        if !exports.contains(&want) {
            println!(
                "cargo:warning=rust-wasi command {name} exports no `{want}`: depend on wasip1-start \
                 (`use wasip1_start as _;`) or the SDK, or it may trap or fail std::fs (docs/GUESTS.md)"
            );
        }
    }
}

/// The WASI command modules `rust/build.sh` built in `rust-wasi/`, by bin
/// name; none if it has not run (the host build never needs rustc-web).
fn wasi_commands(manifest: &Path) -> Vec<(String, PathBuf)> {
    let release = guest_release(manifest, "wasm32-wasip1");
    let Ok(dir) = std::fs::read_dir(&release) else {
        return Vec::new();
    };
    let mut bins: Vec<_> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "wasm"))
        .map(|p| (stem(&p), p))
        .collect();
    bins.sort();
    bins
}

/// Copies WASI 0.3.0's WIT (wasmtime-wasi's `src/p3/wit/deps`, beside the
/// `src/p2/wit/deps` the host build uses) into `rust-p3/wit/deps`
/// (git-ignored), where the WASI 0.3 guests' `wit-bindgen` finds it. Only
/// changed files are rewritten.
fn wasi_p3_wit_deps(manifest: &Path) {
    let p2 = wasmtime_wasi_wit_deps(&manifest.join(".."));
    let src = p2.join("../../../p3/wit/deps");
    let dst = manifest.join("rust-p3/wit/deps");
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "wit") {
            let text = std::fs::read(&path).unwrap();
            let target = dst.join(path.file_name().unwrap());
            if std::fs::read(&target).ok().as_deref() != Some(&text[..]) {
                std::fs::write(&target, text).unwrap();
            }
        }
    }
    println!("cargo:rerun-if-changed={}", src.display());
}

/// The release directory for `triple` in `target/`, where `rust/build.sh`
/// builds all three Rust guest workspaces. Cargo rescans a watched directory
/// for any newer file: it watches the release directory once it exists,
/// else the nearest directory that does.
fn guest_release(manifest: &Path, triple: &str) -> PathBuf {
    let release = manifest.join("target").join(triple).join("release");
    let watch = [release.clone(), manifest.join("target"), manifest.to_path_buf()]
        .into_iter()
        .find(|d| d.is_dir())
        .unwrap();
    println!("cargo:rerun-if-changed={}", watch.display());
    release
}

/// The WASI 0.3 command modules (`wasm32-unknown-unknown` cdylibs) that
/// `rust/build.sh` built from the `rust-p3/` workspace's members, by crate
/// name (`p3_read.wasm` is `p3-read`); none if it has not run. (The
/// checksum guest of `rust/` shares their release directory.)
fn wasi_p3_commands(manifest: &Path) -> Vec<(String, PathBuf)> {
    let release = guest_release(manifest, "wasm32-unknown-unknown");
    let workspace = manifest.join("rust-p3");
    println!("cargo:rerun-if-changed={}", workspace.join("Cargo.toml").display());
    let mut libs: Vec<_> = std::fs::read_dir(&workspace)
        .unwrap_or_else(|e| panic!("{}: {e}", workspace.display()))
        .map(|e| e.unwrap().path())
        .filter(|member| member.join("Cargo.toml").is_file())
        .map(|member| {
            let name = stem(&member);
            let wasm = release.join(format!("{}.wasm", name.replace('-', "_")));
            (name, wasm)
        })
        .filter(|(_, wasm)| wasm.is_file())
        .collect();
    libs.sort();
    libs
}

/// Writes `bytes` to `OUT_DIR/file` and adds a `(name, bytes)` row to `table`.
fn emit(table: &mut String, out: &Path, name: &str, file: &str, bytes: &[u8]) {
    let dst = out.join(file);
    std::fs::write(&dst, bytes).unwrap();
    writeln!(
        table,
        "    ({name:?}, include_bytes!({:?})),",
        dst.display().to_string()
    )
    .unwrap();
}

include!("../build-support/wasi_wit.rs");

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    wasi_wit_deps(&manifest.join(".."));
    wasi_p3_wit_deps(&manifest);
    let wit = manifest.join("../wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    println!("cargo:rerun-if-changed=../build-support/wasi_wit.rs");

    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_path(&wit)
        .expect("parse wit/ (with WASI's WIT in wit/deps)");
    let world = resolve
        .select_world(&[pkg], Some("test-guest"))
        .expect("world test-guest");

    let mut table = String::from(
        "/// Component guests (world `test-guest`; `wat-soak/`: `soak-tenant`), by file stem.\npub static COMPONENTS: &[(&str, &[u8])] = &[\n",
    );
    for path in wat_files(&manifest.join("wat")) {
        println!("cargo:rerun-if-changed={}", path.display());
        let mut core = wat::parse_file(&path).unwrap_or_else(|e| panic!("{e}"));
        embed_component_metadata(&mut core, &resolve, world, StringEncoding::UTF8).unwrap();
        let name = stem(&path);
        emit(&mut table, &out, &name, &format!("{name}.wasm"), &encode(&core, &path));
    }
    // The soak's tenant (`wat-soak/`, world `soak-tenant`): parameterised
    // exports the host's schedule drives (`wasm_pin::soak`).
    let soak = resolve
        .select_world(&[pkg], Some("soak-tenant"))
        .expect("world soak-tenant");
    for path in wat_files(&manifest.join("wat-soak")) {
        println!("cargo:rerun-if-changed={}", path.display());
        let mut core = wat::parse_file(&path).unwrap_or_else(|e| panic!("{e}"));
        embed_component_metadata(&mut core, &resolve, soak, StringEncoding::UTF8).unwrap();
        let name = stem(&path);
        emit(&mut table, &out, &name, &format!("{name}.wasm"), &encode(&core, &path));
    }
    // The Rust guest, if `rust/build.sh` has built it (it needs Debian's
    // rustc-web, which `.ci/run` installs): wit-bindgen already embedded the
    // component type, so it only needs encoding.
    let rust = manifest.join("target/wasm32-unknown-unknown/release/checksum_guest.wasm");
    println!("cargo:rerun-if-changed={}", rust.display());
    if let Ok(core) = std::fs::read(&rust) {
        emit(
            &mut table,
            &out,
            "rust_checksum",
            "rust_checksum.wasm",
            &encode(&core, &rust),
        );
    }
    table.push_str("];\n\n/// WASI command components (`wasi:cli/command`), by bin name.\npub static WASI_COMMANDS: &[(&str, &[u8])] = &[\n");
    let commands = wasi_commands(&manifest);
    let mut p1_table = String::from(
        "/// The same WASI commands as `wasm32-wasip1` core modules, as built (no\n\
         /// adapter), by bin name.\npub static WASI_P1_MODULES: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in &commands {
        let core = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check_wasip1_start(&core, name);
        let file = format!("{name}.command.wasm");
        emit(&mut table, &out, name, &file, &encode_wasi_command(&core, path));
        emit(&mut p1_table, &out, name, &format!("{name}.p1.wasm"), &core);
    }
    p1_table.push_str("];\n\n");
    table.push_str("];\n\n");
    table.push_str(&p1_table);
    table.push_str("/// WASI 0.3 command components (`wasi:cli/run@0.3.0`), by crate name.\npub static WASI_P3_COMMANDS: &[(&str, &[u8])] = &[\n");
    for (name, path) in wasi_p3_commands(&manifest) {
        // wit-bindgen embedded the component type; no adapter: the module
        // imports nothing of preview1.
        let core = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = format!("{name}.p3.wasm");
        emit(&mut table, &out, &name, &file, &encode(&core, &path));
    }
    table.push_str("];\n\n/// Core-module guests (`add_to_core_linker` ABI), by file stem.\npub static CORE_MODULES: &[(&str, &[u8])] = &[\n");
    for path in wat_files(&manifest.join("wat-core")) {
        println!("cargo:rerun-if-changed={}", path.display());
        let core = wat::parse_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let name = stem(&path);
        emit(&mut table, &out, &name, &format!("{name}.core.wasm"), &core);
    }
    table.push_str("];\n");
    std::fs::write(out.join("guests.rs"), table).unwrap();
}
