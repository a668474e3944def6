//! The core-ABI fuzz harness, shared by the proptest twin
//! (`tests/all/fuzz_core_abi.rs`, in CI) and the cargo-fuzz target
//! (`fuzz/fuzz_targets/core_abi.rs`).
//!
//! A sequence of calls with arbitrary arguments goes to every import through
//! `guests/wat-core/fuzz_trampoline.wat`. Whatever the arguments: no call
//! traps or panics, every result is a value or a known `-errno`, the granted
//! peer memory is never written, and after the store drops nothing stays
//! pinned, locked or charged.

use host_api::{MmHost, Quotas};
use runtime_mm::{Errno, Mm, MmConfig, PinMemoryCreator};
use std::sync::{Arc, OnceLock};

/// One call: the import (mod 15) and up to five arguments.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub func: u32,
    pub args: [i64; 5],
}

struct Env {
    engine: wasmtime::Engine,
    creator: Arc<PinMemoryCreator>,
    linker: wasmtime::Linker<MmHost>,
    module: wasmtime::Module,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let creator = PinMemoryCreator::new();
        let mut config = wasmtime::Config::new();
        creator.install(&mut config);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let mut linker = wasmtime::Linker::new(&engine);
        host_api::add_to_core_linker(&mut linker, &creator).unwrap();
        let module = wasmtime::Module::new(&engine, wasm_pin_guests::core_module("fuzz_trampoline").unwrap()).unwrap();
        Env {
            engine,
            creator,
            linker,
            module,
        }
    })
}

/// Runs `calls`; panics on any broken invariant.
pub fn run(calls: &[Call]) {
    let env = env();
    let peer = Mm::new(MmConfig {
        initial_bytes: 64 << 10,
        memlock_limit_bytes: 16 << 12,
        ..Default::default()
    })
    .unwrap();
    let pattern: Vec<u8> = (0..64u32 << 10).map(|i| (i * 7 + 3) as u8).collect();
    peer.write(0, &pattern).unwrap();
    let quotas = Quotas {
        max_pins: 8,
        max_pinned_bytes: 64 << 12,
        max_longterm_bytes: 8 << 12,
        ..Default::default()
    };
    let mut host = MmHost::new(quotas);
    host.grant("peer", peer.clone());
    let mut store = wasmtime::Store::new(&env.engine, host);
    let instance = env.linker.instantiate(&mut store, &env.module).unwrap();
    let call = instance
        .get_typed_func::<(i32, i64, i64, i64, i64, i64), i64>(&mut store, "call")
        .unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let mm = env.creator.mm_of_memory(&store, &memory).unwrap();
    for c in calls {
        let [a, b, cc, d, e] = c.args;
        let r = call
            .call(&mut store, (c.func as i32, a, b, cc, d, e))
            .unwrap_or_else(|t| panic!("{c:?} trapped: {t:?}"));
        if r < 0 {
            let errno = i32::try_from(-r).ok().and_then(Errno::from_raw);
            assert!(errno.is_some(), "{c:?} returned {r}, not a -errno");
        }
        let (pins, bytes, lt) = store.data().usage();
        assert!(pins <= quotas.max_pins && bytes <= quotas.max_pinned_bytes && lt <= quotas.max_longterm_bytes);
    }
    drop(store);
    for m in [&mm, &peer] {
        let s = m.stats();
        assert_eq!(
            (s.pins_outstanding(), s.longterm_pinned_pages, s.locked_bytes),
            (0, 0, 0),
            "{s:?}"
        );
    }
    let mut after = vec![0u8; 64 << 10];
    peer.read(0, &mut after).unwrap();
    assert!(after == pattern, "the peer memory was written");
}
