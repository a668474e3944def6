#!/usr/bin/env bash
# Runs the WebAssembly/wasi-testsuite prebuilt tests (branch
# prod/testsuite-base: wasm32-wasip1 Rust, C and AssemblyScript; wasm32-wasip3
# Rust) against `wasm-pin run`, through the testsuite's own runner and its
# wasmtime adapter (adapters/wasmtime.py), exactly as that adapter runs
# `wasmtime`: WASMTIME="wasm-pin run". See docs/CONFORMANCE.md.
#
#   scripts/wasi-testsuite.sh [WASM_PIN_BINARY] [TESTSUITE_DIR]
#
# WASM_PIN_BINARY defaults to target/release/wasm-pin, else target/debug/wasm-pin
# (build one first: `cargo build --release --bin wasm-pin`). TESTSUITE_DIR
# defaults to /tmp/wasi-testsuite, cloned there if missing: nothing of the
# testsuite is ever put in this repository. The runner needs Python >= 3.12
# with `colorama` and `requests` (PYTHON=... picks the interpreter). Extra
# `wasm-pin run` options go in WASM_PIN_OPTIONS (e.g. "-Stcp,udp"); the
# adapter puts its own before them. The JSON report is written to
# $TESTSUITE_DIR/wasm-pin-results.json, and a summary per suite printed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-}
if [[ -z $bin ]]; then
    for b in "$repo/target/release/wasm-pin" "$repo/target/debug/wasm-pin"; do
        if [[ -x $b ]]; then bin=$b; break; fi
    done
fi
[[ -x ${bin:-} ]] || { echo "no wasm-pin binary: cargo build --release --bin wasm-pin" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
suite=${2:-/tmp/wasi-testsuite}
python=${PYTHON:-python3}

if [[ ! -d $suite ]]; then
    git clone --depth 1 --branch prod/testsuite-base https://github.com/WebAssembly/wasi-testsuite "$suite"
fi
"$python" -c 'import sys, colorama, requests; assert sys.version_info >= (3, 12), sys.version' || {
    echo "the runner needs Python >= 3.12 with colorama and requests (set PYTHON=...)" >&2
    exit 2
}

# The tests leave `parent.cleanup` symlinks in their fixture directories and
# the runner's cleanup skips symlinks: start every run from clean fixtures.
find "$suite/tests" -name '*.cleanup' -type l -delete

report=$suite/wasm-pin-results.json
cd "$suite"
status=0
WASMTIME="$bin run ${WASM_PIN_OPTIONS:-}" "$python" run-tests \
    --runtime-adapter adapters/wasmtime.py --disable-colors --json-output-location "$report" || status=$?

"$python" - "$report" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
for suite in report["results"]:
    failed = [t["name"] for t in suite["tests"] if t["failures"]]
    print(f'{suite["name"]}: {suite["passed"]} passed, {suite["failed"]} failed, {suite["skipped"]} skipped')
    for name in sorted(failed):
        print(f"  failed: {name}")
EOF
exit $status
