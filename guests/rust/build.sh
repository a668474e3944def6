#!/usr/bin/env bash
# Builds the Rust guests with Debian's rustc-web (rustup here has no wasm32
# std; see shared/notes/guest-toolchains.md), each workspace with its own
# lockfile, all three in one target dir, guests/target (their proc-macros and
# build-std are built once, not three times):
# - rust/: the wit-bindgen checksum guest, a wasm32-unknown-unknown core
#   module;
# - rust-wasi/: WASI command programs (bins), wasm32-wasip1 core modules
#   (Debian ships only the preview1 wasi-libc; `-L` finds crt1-command.o and
#   -lc there). Every bin links rust-wasi/wasip1-start (directly, or through
#   wasm-pin-sdk): Debian's wasi-libc (2022-05-10) needs its strong
#   __original_main (runs libc's constructors: without them std::fs gets
#   ENOTCAPABLE) and its cabi_realloc export (without it the adapter's pages
#   are handed out by malloc: a trap at "adapter line 2857"); see
#   docs/GUESTS.md.
# - rust-p3/: WASI 0.3 command programs (cdylibs exporting
#   wasi:cli/run@0.3.0), wasm32-unknown-unknown core modules built with
#   wit-bindgen's async support against WASI 0.3.0's WIT from wasmtime-wasi
#   (which the host build copies into rust-p3/wit/deps).
# The guests crate's build.rs componentizes the results (the WASI commands
# with wasmtime's preview1 command adapter, the WASI 0.3 commands with no
# adapter). Extra arguments go to every cargo build.
set -euo pipefail
cd "$(dirname "$0")"
target="$(cd .. && pwd)/target"
pkgs=(rustc-web cargo-web rust-web-src libstd-rust-web-dev lld-22 wasi-libc)
if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${pkgs[@]}"
fi
# rustup's ~/.cargo/bin would shadow Debian's cargo; call it by path, with
# only the given RUSTFLAGS, the guests' target dir and none of the host
# build's target settings. (RUSTFLAGS reach only the wasm target's crates, so
# the host-side proc-macros are shared by all three workspaces.)
web_cargo() {
    local rustflags=$1 command=$2
    shift 2
    env -u CARGO_BUILD_TARGET -u CARGO_ENCODED_RUSTFLAGS \
        CARGO_TARGET_DIR="$target" RUSTFLAGS="$rustflags" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
        /usr/bin/cargo "$command" "$@"
}
# The guests read ../../wit and ../rust-p3/wit, whose WASI dependencies
# (wit/deps) the host build takes from the wasmtime-wasi crate: make sure
# they are there.
(cd ../.. && cargo build -q -p wasm-pin-guests)
web_cargo "" build --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort "$@"
ls -l "$target"/wasm32-unknown-unknown/release/checksum_guest.wasm

cd ../rust-wasi
web_cargo "-L /usr/lib/wasm32-wasi" \
    build --release --target wasm32-wasip1 -Zbuild-std=std,panic_abort "$@"
ls -l "$target"/wasm32-wasip1/release/*.wasm

cd ../rust-p3
web_cargo "" build --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort "$@"
ls -l "$target"/wasm32-unknown-unknown/release/p3_*.wasm
