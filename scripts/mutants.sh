#!/usr/bin/env bash
# Mutation testing (issue 14): installs cargo-mutants if missing and runs it
# on runtime-mm (no wasmtime needed: --no-default-features), then on
# host-api's logic that runs without guests (quotas, handle tables, errno
# mapping, backends). Not part of .ci/run: it takes tens of minutes on two
# cores. Results land in mutants.out/ (host-api's in
# target/host-api-mutants/mutants.out/, both git-ignored); record the per-file
# scores in docs/SAFETY.md.
#
#   scripts/mutants.sh              # runtime-mm
#   scripts/mutants.sh host-api     # host-api's unit-testable logic
#   scripts/mutants.sh runtime-mm --iterate   # extra arguments go to cargo mutants
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
# Shorter model and stress runs: a surviving mutant must be caught by a
# deterministic test, not by luck in a long random run.
export MODEL_CASES="${MODEL_CASES:-500}" STRESS_SECS="${STRESS_SECS:-1}"
# JOBS=2 halves the wall time on this 2-core machine when nothing else runs.
JOBS="${JOBS:-1}" TIMEOUT="${TIMEOUT:-45}"
what="${1:-runtime-mm}"
shift || true
case "$what" in
runtime-mm)
    cargo mutants -p runtime-mm --no-default-features --timeout "$TIMEOUT" -j "$JOBS" "$@" ;;
host-api)
    # Its own output directory, so runtime-mm's mutants.out/ stays.
    cargo mutants -p host-api --timeout 60 -j "$JOBS" -o target/host-api-mutants \
        -f host-api/src/handles.rs -f host-api/src/quotas.rs \
        -f host-api/src/io/threads.rs -f host-api/src/io/direct.rs -f host-api/src/io/fixed.rs \
        -f host-api/src/bindings.rs \
        "$@" -- --lib ;;
*)
    echo "usage: scripts/mutants.sh [runtime-mm|host-api]" >&2
    exit 2 ;;
esac
