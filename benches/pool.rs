//! The instantiation cycle (issue 11): instantiate a small component, call
//! its `run` (which checks that its memory starts zeroed and fills 64 KiB of
//! it), drop the store. One process, one component, four allocators:
//!
//! - (a) `a_pin_pooled`: our pooled `PinMemoryCreator` (pinnable memories
//!   on a `MemoryPool`, wasmtime's on-demand allocator for the rest);
//! - (b) `b_wasmtime_pooling`: wasmtime's pooling allocator (memories not
//!   pinnable; copy-on-write images on, its default);
//! - (c) `c_wasmtime_on_demand`: wasmtime's default allocator;
//! - (d) `d_pin_on_demand`: our on-demand `PinMemoryCreator`.
//!
//! (a) and (b) are measured at the same `keep_resident`: 0 (wasmtime's
//! default: every reset decommits, the next tenant faults its pages back in)
//! and 2 MiB (Spin's: the 64 KiB are zeroed with `memset` and stay resident).
//! `a_pin_pooled_and_pin` adds a host pin and unpin of the 64 KiB to (a).
//! Every engine turns `concurrency_support` off (synchronous guests) and
//! instantiates through an `InstancePre`. Criterion reports instantiation
//! cycles per second.
//!
//! Group `memory` isolates the linear memory's share of a cycle, without
//! wasmtime: take a 64 KiB memory, write all of it, give it back, on a pool
//! (both `keep_resident` values) and on demand (`Mm::new`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use runtime_mm::{gup, GupFlags, MemoryPool, Mm, MmConfig, PinMemoryCreator, PoolConfig};
use std::sync::Arc;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

const COMPONENT: &str = r#"
(component
  (core module $m
    (memory (export "memory") 1)
    (func (export "run") (result i32)
      ;; A tenant must find its memory zeroed.
      (if (i32.or (i32.load (i32.const 0)) (i32.load (i32.const 65532))) (then unreachable))
      (memory.fill (i32.const 0) (i32.const 0x5a) (i32.const 65536))
      (i32.load8_u (i32.const 65535))))
  (core instance $i (instantiate $m))
  (func (export "run") (result u32) (canon lift (core func $i "run"))))
"#;

/// Slots (and instances) in each pool: far more than the cycle needs.
const SLOTS: u32 = 100;

fn config() -> Config {
    let mut c = Config::new();
    c.concurrency_support(false);
    c
}

fn pin_pooled(keep: u64) -> (Engine, Arc<PinMemoryCreator>) {
    let creator = PinMemoryCreator::pooled(PoolConfig {
        slots: SLOTS,
        keep_resident_bytes: keep,
        ..PoolConfig::default()
    })
    .unwrap();
    let engine = creator.build_engine(&mut config()).unwrap();
    (engine, creator)
}

fn wasmtime_pooling(keep: u64) -> Engine {
    let mut p = PoolingAllocationConfig::default();
    p.total_memories(SLOTS)
        .total_tables(SLOTS)
        .total_core_instances(SLOTS)
        .total_component_instances(SLOTS)
        .total_gc_heaps(SLOTS)
        .linear_memory_keep_resident(keep as usize);
    let mut c = config();
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    Engine::new(&c).unwrap()
}

fn pin_on_demand() -> Engine {
    PinMemoryCreator::new().build_engine(&mut config()).unwrap()
}

fn pre(engine: &Engine) -> InstancePre<()> {
    let component = Component::new(engine, COMPONENT).unwrap();
    Linker::new(engine).instantiate_pre(&component).unwrap()
}

/// One cycle: a store, an instance, one call, and the drop of it all.
fn cycle(engine: &Engine, pre: &InstancePre<()>) {
    let mut store = Store::new(engine, ());
    let instance = pre.instantiate(&mut store).unwrap();
    let run = instance.get_typed_func::<(), (u32,)>(&mut store, "run").unwrap();
    assert_eq!(run.call(&mut store, ()).unwrap().0, 0x5a);
}

fn instantiation_cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("cycle");
    g.throughput(Throughput::Elements(1));
    for (keep, label) in [(2 << 20, "keep_2MiB"), (0, "keep_0")] {
        let (engine, creator) = pin_pooled(keep);
        let p = pre(&engine);
        g.bench_function(format!("a_pin_pooled/{label}"), |b| b.iter(|| cycle(&engine, &p)));
        if keep != 0 {
            g.bench_function(format!("a_pin_pooled_and_pin/{label}"), |b| {
                b.iter(|| {
                    let mut store = Store::new(&engine, ());
                    let (instance, mms) = creator.capture(|| p.instantiate(&mut store));
                    let instance = instance.unwrap();
                    let run = instance.get_typed_func::<(), (u32,)>(&mut store, "run").unwrap();
                    assert_eq!(run.call(&mut store, ()).unwrap().0, 0x5a);
                    let pin = gup::pin_user_pages_fast(&mms[0], 0, 16, GupFlags::WRITE).unwrap();
                    assert_eq!(pin.len(), 16);
                })
            });
        }
        let s = creator.pool().unwrap().stats();
        assert_eq!((s.live, s.quarantined, s.refused), (0, 0, 0), "{s:?}");

        let engine = wasmtime_pooling(keep);
        let p = pre(&engine);
        g.bench_function(format!("b_wasmtime_pooling/{label}"), |b| b.iter(|| cycle(&engine, &p)));
    }
    let engine = Engine::new(&config()).unwrap();
    let p = pre(&engine);
    g.bench_function("c_wasmtime_on_demand", |b| b.iter(|| cycle(&engine, &p)));
    let engine = pin_on_demand();
    let p = pre(&engine);
    g.bench_function("d_pin_on_demand", |b| b.iter(|| cycle(&engine, &p)));
    g.finish();
}

/// Writes every byte of `mm`'s first 64 KiB, as the guest does.
fn touch(mm: &Mm) {
    static FILL: [u8; 64 << 10] = [0x5a; 64 << 10];
    mm.write(0, &FILL).unwrap();
}

fn memory_only(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory");
    g.throughput(Throughput::Elements(1));
    for (keep, label) in [(2 << 20, "keep_2MiB"), (0, "keep_0")] {
        let pool = MemoryPool::new(PoolConfig {
            slots: 4,
            keep_resident_bytes: keep,
            ..PoolConfig::default()
        })
        .unwrap();
        g.bench_function(format!("pool_alloc_touch_release/{label}"), |b| {
            b.iter(|| {
                let mm = pool.alloc(64 << 10, None).unwrap();
                touch(&mm);
                pool.release(mm);
            })
        });
    }
    g.bench_function("mm_new_touch_drop", |b| {
        b.iter(|| {
            let mm = Mm::new(MmConfig {
                initial_bytes: 64 << 10,
                ..MmConfig::default()
            })
            .unwrap();
            touch(&mm);
        })
    });
    g.finish();
}

criterion_group!(benches, instantiation_cycle, memory_only);
criterion_main!(benches);
