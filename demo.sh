#!/usr/bin/env bash
# The demo on a fresh machine: builds the Rust demo guest from source
# (guests/rust/build.sh installs Debian's rustc-web for the wasm32 guests if
# missing), then runs `wasm-pin run` (the built-in demo). Arguments go to
# `wasm-pin run`, e.g. `./demo.sh --backend threads --mib 64`.
set -euo pipefail
cd "$(dirname "$0")"
echo "demo.sh: building the guests (the first run installs Debian's rustc-web: a few minutes)" >&2
guests/rust/build.sh >/dev/null
exec cargo run --release -- run "$@"
