//! wasmtime runs core modules and components on `Mm`, and the embedder finds
//! the `Arc<Mm>` behind an instance's memory.

use runtime_mm::{gup, GupFlags, PinMemoryCreator};
use std::sync::Arc;
use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{Config, Engine, Instance, Module, Store};

fn engine(creator: &Arc<PinMemoryCreator>) -> Engine {
    let mut config = Config::new();
    config.wasm_threads(true).shared_memory(true);
    creator.install(&mut config);
    Engine::new(&config).unwrap()
}

const CORE: &str = r#"
(module
  (memory (export "memory") 1 4)
  (data (i32.const 16) "seeded")
  (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "store") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
"#;

/// A store with one instance of `CORE` on a fresh creator, and its memory's
/// `Mm`.
fn core_instance() -> (Arc<PinMemoryCreator>, Store<()>, Arc<runtime_mm::Mm>) {
    let creator = PinMemoryCreator::new();
    let engine = engine(&creator);
    let module = Module::new(&engine, CORE).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let mm = creator.mm_of_memory(&store, &memory).unwrap();
    (creator, store, mm)
}

#[test]
fn core_module_runs_on_mm() {
    let creator = PinMemoryCreator::new();
    let engine = engine(&creator);
    let module = Module::new(&engine, CORE).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let mm = creator.mm_of_memory(&store, &memory).expect("memory is an Mm");
    assert_eq!(mm.base(), memory.data_ptr(&store));
    // Data segments landed in our memory (memory_init_cow is off).
    let mut b = [0u8; 6];
    mm.read(16, &mut b).unwrap();
    assert_eq!(&b, b"seeded");
    // The guest's stores are visible through a pin, and the host's writes to
    // the guest.
    let store_fn = instance.get_typed_func::<(i32, i32), ()>(&mut store, "store").unwrap();
    let load = instance.get_typed_func::<i32, i32>(&mut store, "load").unwrap();
    store_fn.call(&mut store, (100, 77)).unwrap();
    let p = gup::pin_user_pages_fast(&mm, 0, 1, GupFlags::WRITE).unwrap();
    let mut x = [0u8];
    p.read(100, &mut x).unwrap();
    assert_eq!(x[0], 77);
    p.write(101, &[88]).unwrap();
    assert_eq!(load.call(&mut store, 101).unwrap(), 88);
    drop(p);
    // memory.grow goes through Mm::grow_to; the base never moves.
    let grow = instance.get_typed_func::<i32, i32>(&mut store, "grow").unwrap();
    assert_eq!(grow.call(&mut store, 3).unwrap(), 1);
    assert_eq!(mm.len(), 4 * 65536);
    assert_eq!(grow.call(&mut store, 1).unwrap(), -1, "past the maximum");
    assert_eq!(memory.data_ptr(&store), mm.base());
    // A pin past the old size works now.
    assert_eq!(
        gup::pin_user_pages(&mm, 3 * 65536, 16, GupFlags::empty())
            .unwrap()
            .len(),
        16
    );
}

#[test]
fn store_drop_with_pins_outstanding_keeps_the_mapping() {
    let (creator, store, mm) = core_instance();
    let base = mm.base();
    let p = gup::pin_longterm_pages(&mm, 0, 16, GupFlags::WRITE).unwrap();
    let weak = Arc::downgrade(&mm);
    drop(mm);
    drop(store);
    // The wasm memory is gone from the registry, but the mapping lives on.
    assert!(creator.mm_for_base(base).is_none());
    assert_eq!(creator.live_memories(), 0);
    assert!(weak.upgrade().is_some());
    let mut b = [0u8; 6];
    p.read(16, &mut b).unwrap();
    assert_eq!(&b, b"seeded");
    p.write(0, b"still mapped").unwrap();
    drop(p);
    assert!(weak.upgrade().is_none(), "the last pin unmaps");
}

#[test]
fn component_memory_is_found_by_capture() {
    let creator = PinMemoryCreator::new();
    let engine = engine(&creator);
    let component = Component::new(
        &engine,
        r#"(component
            (core module $m
              (memory (export "memory") 1)
              (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0))))
            (core instance $i (instantiate $m))
            (func (export "peek") (param "addr" u32) (result u32) (canon lift (core func $i "peek"))))"#,
    )
    .unwrap();
    let linker = ComponentLinker::<()>::new(&engine);
    let mut store = Store::new(&engine, ());
    let (instance, mms) = creator.capture(|| linker.instantiate(&mut store, &component));
    let instance = instance.unwrap();
    assert_eq!(mms.len(), 1);
    mms[0].write(40, &[123]).unwrap();
    let peek = instance.get_typed_func::<(u32,), (u32,)>(&mut store, "peek").unwrap();
    assert_eq!(peek.call(&mut store, (40,)).unwrap().0, 123);
}

#[test]
fn concurrent_instantiation_attributes_each_memory_to_its_store() {
    let creator = PinMemoryCreator::new();
    let engine = engine(&creator);
    let module = Module::new(&engine, CORE).unwrap();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let (creator, engine, module) = (creator.clone(), engine.clone(), module.clone());
            std::thread::spawn(move || {
                for round in 0..25u8 {
                    let mut store = Store::new(&engine, ());
                    let (instance, mms) = creator.capture(|| Instance::new(&mut store, &module, &[]));
                    let instance = instance.unwrap();
                    assert_eq!(mms.len(), 1);
                    let memory = instance.get_memory(&mut store, "memory").unwrap();
                    assert_eq!(mms[0].base(), memory.data_ptr(&store), "thread {t} round {round}");
                    let store_fn = instance.get_typed_func::<(i32, i32), ()>(&mut store, "store").unwrap();
                    store_fn.call(&mut store, (8, (t * 50 + round) as i32)).unwrap();
                    let mut b = [0u8];
                    mms[0].read(8, &mut b).unwrap();
                    assert_eq!(b[0], t * 50 + round);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(creator.memories_created(), 100);
    assert_eq!(creator.live_memories(), 0);
}

#[test]
fn shared_memory_runs_on_mm() {
    let creator = PinMemoryCreator::new();
    let engine = engine(&creator);
    let module = Module::new(
        &engine,
        r#"(module
            (memory (export "memory") 1 8 shared)
            (func (export "add") (param i32 i32) (result i32)
              (i32.atomic.rmw.add (local.get 0) (local.get 1)))
            (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let shared = instance.get_shared_memory(&mut store, "memory").unwrap();
    let mm = creator.mm_of_shared_memory(&shared).expect("shared memory is an Mm");
    let pinned = gup::pin_user_pages_fast(&mm, 0, 1, GupFlags::WRITE).unwrap();
    // Other threads with their own stores run atomics on the same memory
    // while the host holds a pin on it.
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (engine, module, shared) = (engine.clone(), module.clone(), shared.clone());
            std::thread::spawn(move || {
                let mut store = Store::new(&engine, ());
                let m = Module::new(
                    &engine,
                    r#"(module (import "env" "memory" (memory 1 8 shared))
                        (func (export "add") (param i32 i32) (result i32)
                          (i32.atomic.rmw.add (local.get 0) (local.get 1))))"#,
                )
                .unwrap();
                drop(module);
                let i = Instance::new(&mut store, &m, &[shared.into()]).unwrap();
                let add = i.get_typed_func::<(i32, i32), i32>(&mut store, "add").unwrap();
                for _ in 0..1000 {
                    add.call(&mut store, (64, 1)).unwrap();
                }
            })
        })
        .collect();
    let grow = instance.get_typed_func::<i32, i32>(&mut store, "grow").unwrap();
    assert_eq!(grow.call(&mut store, 2).unwrap(), 1);
    for w in workers {
        w.join().unwrap();
    }
    let mut b = [0u8; 4];
    pinned.read(64, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), 3000);
    assert_eq!(mm.len(), 3 * 65536);
    assert_eq!(shared.data().as_ptr().cast::<u8>(), mm.base().cast_const());
}

/// A memory of 1-byte pages under a reservation that is not a multiple of
/// the host page: our reservation is rounded up to pages, but the memory
/// never grows past the reservation wasmtime asked for, which its compiled
/// code assumes (the class of bug wasmtime 48.0.10 fixed for its own
/// memories). The byte past the end traps.
#[test]
fn growth_stops_at_an_unaligned_reservation() {
    let creator = PinMemoryCreator::new();
    let mut config = Config::new();
    config
        .wasm_custom_page_sizes(true)
        .memory_reservation(10_000)
        .memory_guard_size(65536);
    creator.install(&mut config);
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(
        &engine,
        r#"(module
             (memory (export "memory") 100 (pagesize 1))
             (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
             (func (export "size") (result i32) (memory.size))
             (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let grow = instance.get_typed_func::<i32, i32>(&mut store, "grow").unwrap();
    let size = instance.get_typed_func::<(), i32>(&mut store, "size").unwrap();
    let load = instance.get_typed_func::<i32, i32>(&mut store, "load").unwrap();
    assert_eq!(
        grow.call(&mut store, 9_900).unwrap(),
        100,
        "up to the reservation exactly"
    );
    assert_eq!(size.call(&mut store, ()).unwrap(), 10_000);
    for step in [1, 100, 2_288] {
        assert_eq!(
            grow.call(&mut store, step).unwrap(),
            -1,
            "{step} bytes past the reservation"
        );
    }
    assert_eq!(size.call(&mut store, ()).unwrap(), 10_000);
    assert_eq!(load.call(&mut store, 9_999).unwrap(), 0);
    assert!(load.call(&mut store, 10_000).is_err(), "the byte past the end traps");
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    assert_eq!(creator.mm_of_memory(&store, &memory).unwrap().capacity(), 10_000);
}

/// `find_containing` finds the memory that holds a whole range, by any
/// address inside it, and nothing for a range that runs past its length or
/// for host memory.
#[test]
fn a_range_finds_the_memory_that_holds_it() {
    let (_creator, _store, mm) = core_instance(); // both kept alive
    let base = mm.base();
    let len = mm.len() as usize;
    let found = |off: usize, n: usize| PinMemoryCreator::find_containing(base.wrapping_add(off), n);
    assert!(Arc::ptr_eq(&found(0, len).unwrap(), &mm));
    assert!(Arc::ptr_eq(&found(4097, 100).unwrap(), &mm));
    assert!(found(len - 1, 2).is_none(), "past the length");
    assert!(
        found(len, 0).is_some_and(|m| Arc::ptr_eq(&m, &mm)),
        "an empty range at the end"
    );
    let host = [0u8; 16];
    assert!(PinMemoryCreator::find_containing(host.as_ptr(), 16).is_none());
}
