//! Guest→host call cost (issue: benchmarks, part d; issue 12.4): a component
//! guest pins and unpins a 64 KiB buffer through the WIT imports
//! (`pin-user-pages-fast`, then a handle drop), the same with the batched
//! imports (16 buffers per `pin-user-pages-fast-batch` and `unpin-batch`),
//! against the same guest loop calling the cheapest import. Each guest `run`
//! makes 10000 pin+unpin pairs (or empty calls); criterion reports per pair.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use host_api::{MmHost, Quotas};
use runtime_mm::PinMemoryCreator;

fn guest_calls(c: &mut Criterion) {
    let creator = PinMemoryCreator::new();
    let mut config = wasmtime::Config::new();
    creator.install(&mut config);
    // These guests are synchronous: skip component-model-async's per-call
    // host-task bookkeeping (measured at ~55% of an import call's cost).
    config.concurrency_support(false);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let mut linker = wasmtime::component::Linker::new(&engine);
    host_api::add_to_linker_sync(&mut linker).unwrap();
    let mut g = c.benchmark_group("guest_call");
    g.throughput(Throughput::Elements(10_000));
    for (name, guest) in [
        ("pin_unpin_64k", "bench_pin_loop"),
        ("pin_unpin_64k_batched_16", "bench_pin_batch"),
        ("empty_import", "bench_empty_loop"),
    ] {
        let component =
            wasmtime::component::Component::new(&engine, wasm_pin_guests::component(guest).unwrap()).unwrap();
        let mut store = wasmtime::Store::new(&engine, MmHost::new(Quotas::default()));
        let instance = host_api::TestGuest::instantiate(&mut store, &component, &linker).unwrap();
        g.bench_function(name, |b| b.iter(|| instance.call_run(&mut store).unwrap().unwrap()));
    }
    g.finish();
}

criterion_group!(benches, guest_calls);
criterion_main!(benches);
