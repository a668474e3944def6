// Shared by the build scripts of `host-api` and `guests` (`include!`d).
//
// WASI's own WIT is third-party: it is not copied into the repository but
// taken, at build time, from the `wasmtime-wasi` crate this workspace builds
// with (its `src/p2/wit/deps`), and written to `wit/deps/` (git-ignored),
// where every WIT consumer finds it: `bindgen!`, `wit-parser`'s `push_path`
// and the Rust guests' `wit-bindgen`.

/// The `src/p2/wit/deps` directory of the `wasmtime-wasi` package in this
/// workspace's dependency graph (`cargo metadata`).
fn wasmtime_wasi_wit_deps(workspace: &std::path::Path) -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "x86_64-unknown-linux-gnu".into());
    let metadata = |offline: bool| {
        let mut cmd = std::process::Command::new(&cargo);
        cmd.args(["metadata", "--format-version", "1", "--filter-platform", &target, "--manifest-path"])
            .arg(workspace.join("Cargo.toml"));
        if offline {
            cmd.arg("--offline");
        }
        cmd.output().expect("running `cargo metadata`")
    };
    // Offline first (every crate of this build is already here); a graph
    // with crates not yet fetched needs the registry, as the build did.
    let mut out = metadata(true);
    if !out.status.success() {
        out = metadata(false);
    }
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let manifest = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "wasmtime-wasi")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("wasmtime-wasi in the dependency graph");
    std::path::Path::new(manifest).with_file_name("src/p2/wit/deps")
}

/// Fills `<workspace>/wit/deps` with WASI 0.2's WIT packages
/// (`src/p2/wit/deps`), and `<workspace>/wit/p3/deps` (the WASI 0.3
/// interfaces, `wit/p3`) with those, WASI 0.3's (`src/p3/wit/deps`, as
/// `p3-<name>.wit`: one file per package) and `wasm-pin:mm` itself (`mm/`).
/// Rewrites only files that changed, so dependents are not rebuilt
/// needlessly.
fn wasi_wit_deps(workspace: &std::path::Path) {
    let p2 = wasmtime_wasi_wit_deps(workspace);
    let p3 = p2.join("../../../p3/wit/deps");
    let wit = workspace.join("wit");
    copy_wit_files(&p2, &wit.join("deps"), "");
    copy_wit_files(&p2, &wit.join("p3/deps"), "");
    copy_wit_files(&p3, &wit.join("p3/deps"), "p3-");
    copy_wit_files(&wit, &wit.join("p3/deps/mm"), "");
}

fn copy_wit_files(src: &std::path::Path, dst: &std::path::Path, prefix: &str) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "wit") {
            let text = std::fs::read(&path).unwrap();
            let name = format!("{prefix}{}", path.file_name().unwrap().to_str().unwrap());
            let target = dst.join(&name);
            if std::fs::read(&target).ok().as_deref() != Some(&text[..]) {
                // Write-then-rename: two build scripts may do this at once,
                // and a reader must never see half a file.
                let tmp = dst.join(format!(".{}.{name}", std::process::id()));
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, &target).unwrap();
            }
        }
    }
    println!("cargo:rerun-if-changed={}", src.display());
}
