//! Puts WASI's WIT beside ours (`wit/deps`) before `bindgen!` reads `wit/`.

include!("../build-support/wasi_wit.rs");

fn main() {
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    wasi_wit_deps(&manifest.join(".."));
    println!("cargo:rerun-if-changed=../wit");
    println!("cargo:rerun-if-changed=../build-support/wasi_wit.rs");
}
