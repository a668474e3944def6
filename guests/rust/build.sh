#!/usr/bin/env bash
# Builds the Rust guest as a core wasm module with Debian's rustc-web
# (rustup here has no wasm32 std; see shared/notes/guest-toolchains.md).
# The guests crate's build.rs componentizes the result.
set -euo pipefail
cd "$(dirname "$0")"
pkgs=(rustc-web cargo-web rust-web-src libstd-rust-web-dev lld-22 wasi-libc)
if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${pkgs[@]}"
fi
# rustup's ~/.cargo/bin would shadow Debian's cargo; call it by path, without
# the host build's flags or target dir.
env -u RUSTFLAGS -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET \
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    /usr/bin/cargo build --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort "$@"
ls -l target/wasm32-unknown-unknown/release/checksum_guest.wasm
