//! Guest-driven tests of the `gup` imports: every import from WAT component
//! guests and a core-module guest, and every bad input a guest can pass.

use host_api::{MmHost, PinCtxView, PinView, Quotas};
use runtime_mm::{LongtermChunks, Mm, MmConfig, PinMemoryCreator};
use std::sync::Arc;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

struct State {
    mm: MmHost,
}

impl PinView for State {
    fn pins(&mut self) -> PinCtxView<'_> {
        self.mm.pins()
    }
}

struct Run {
    result: wasmtime::Result<Result<(), String>>,
    store: Store<State>,
    mm: Arc<Mm>,
    peer: Arc<Mm>,
}

/// The guests check the seed's per-page long-term accounting through
/// `stats` (by default a THP-backed memory charges 2 MiB chunks).
fn engine() -> (Engine, Arc<PinMemoryCreator>) {
    let creator =
        PinMemoryCreator::with_longterm_chunks(MmConfig::default().memlock_limit_bytes, LongtermChunks::PerPage);
    let mut config = Config::new();
    creator.install(&mut config);
    (Engine::new(&config).unwrap(), creator)
}

fn peer() -> Arc<Mm> {
    Mm::new(MmConfig {
        initial_bytes: 64 << 10,
        ..Default::default()
    })
    .unwrap()
}

fn run_component(name: &str, quotas: Quotas) -> Run {
    let (engine, creator) = engine();
    let component = Component::new(&engine, wasm_pin_guests::component(name).unwrap()).unwrap();
    let mut linker = Linker::new(&engine);
    host_api::add_to_linker_sync(&mut linker).unwrap();
    let peer = peer();
    let mut host = MmHost::new(quotas);
    host.grant("peer", peer.clone());
    let mut store = Store::new(&engine, State { mm: host });
    // The creator's capture is only the test's way to see the memory: the
    // imports find it themselves.
    let (guest, mms) = creator.capture(|| host_api::TestGuest::instantiate(&mut store, &component, &linker));
    let guest = guest.unwrap();
    let mm = mms[0].clone();
    let result = guest.call_run(&mut store);
    Run {
        result,
        store,
        mm,
        peer,
    }
}

/// After the store is dropped, nothing stays pinned, charged or locked.
fn assert_clean_after_drop(run: Run) {
    let Run { store, mm, peer, .. } = run;
    drop(store);
    for m in [&mm, &peer] {
        let s = m.stats();
        assert_eq!(s.pins_outstanding(), 0, "{s:?}");
        assert_eq!((s.longterm_pinned_pages, s.locked_bytes), (0, 0), "{s:?}");
    }
    assert!(!mm.page_maybe_dma_pinned(0));
}

#[test]
fn wat_guest_uses_every_import() {
    let run = run_component("gup_all", Quotas::default());
    assert_eq!(run.result.as_ref().unwrap(), &Ok(()));
    let (s, p) = (run.mm.stats(), run.peer.stats());
    assert_eq!((s.foll_pin_acquired, s.foll_pin_released), (8, 8));
    assert_eq!(s.dirtied_pages, 2);
    assert_eq!((p.foll_pin_acquired, p.foll_pin_released, p.remote_pages), (2, 2, 2));
    assert!(
        run.peer.page_state(0).unwrap().dirty,
        "the remote dirty unpin marked the page"
    );
    assert_eq!(run.store.data().mm.usage(), (0, 0, 0));
    assert_clean_after_drop(run);
}

#[test]
fn bad_inputs_get_error_values() {
    let run = run_component("bad_inputs", Quotas::default());
    assert_eq!(run.result.as_ref().unwrap(), &Ok(()));
    let s = run.mm.stats();
    assert_eq!((s.foll_pin_acquired, s.pins_outstanding()), (1 + 32, 0));
    assert_eq!(run.store.data().mm.usage(), (0, 0, 0));
    assert_clean_after_drop(run);
}

#[test]
fn quota_exhaustion_pins_nothing() {
    let quotas = Quotas {
        max_pins: 4,
        max_pinned_bytes: 16 * 4096,
        max_longterm_bytes: 4 * 4096,
        ..Default::default()
    };
    let run = run_component("quotas", quotas);
    assert_eq!(run.result.as_ref().unwrap(), &Ok(()));
    // b (1 page), c (4 long-term), d (1) are still held by the guest.
    assert_eq!(run.store.data().mm.usage(), (3, 6 * 4096, 4 * 4096));
    assert_eq!(run.mm.stats().pins_outstanding(), 6);
    assert_eq!(run.mm.stats().locked_bytes, 4 * 4096);
    assert_clean_after_drop(run);
}

fn assert_traps(run: &Run) {
    let err = run.result.as_ref().expect_err("the guest must trap");
    assert!(
        format!("{err:?}").contains("unknown handle") || format!("{err:?}").contains("handle"),
        "unexpected error: {err:?}"
    );
}

#[test]
fn double_unpin_traps_and_unpins_once() {
    let run = run_component("double_unpin", Quotas::default());
    assert_traps(&run);
    let s = run.mm.stats();
    assert_eq!((s.foll_pin_acquired, s.foll_pin_released, s.dirtied_pages), (4, 4, 4));
    assert_eq!(run.store.data().mm.usage(), (0, 0, 0));
    assert_clean_after_drop(run);
}

#[test]
fn use_after_unpin_traps() {
    let run = run_component("use_after_unpin", Quotas::default());
    assert_traps(&run);
    assert_eq!(run.mm.stats().pins_outstanding(), 0);
    assert_clean_after_drop(run);
}

#[test]
fn forged_handle_traps_and_leaves_the_real_pin_alone() {
    let run = run_component("forged_handle", Quotas::default());
    assert_traps(&run);
    assert_eq!(run.mm.stats().pins_outstanding(), 1);
    assert_eq!(run.store.data().mm.usage().0, 1);
    assert_clean_after_drop(run);
}

#[test]
fn trap_with_pins_outstanding_releases_them_with_the_store() {
    let run = run_component("trap_with_pins", Quotas::default());
    let err = run.result.as_ref().expect_err("unreachable traps");
    assert!(format!("{err:?}").contains("unreachable"), "{err:?}");
    let s = run.mm.stats();
    assert_eq!(
        (s.pins_outstanding(), s.longterm_pinned_pages, s.locked_bytes),
        (16, 8, 4 * 4096)
    );
    assert_clean_after_drop(run);
}

#[test]
fn core_module_guest_pins_through_the_integer_abi() {
    let (engine, creator) = engine();
    let module = wasmtime::Module::new(&engine, wasm_pin_guests::core_module("core_pin").unwrap()).unwrap();
    let mut linker = wasmtime::Linker::new(&engine);
    host_api::add_to_core_linker(&mut linker, &creator).unwrap();
    let peer = peer();
    let mut host = MmHost::new(Quotas::default());
    host.grant("peer", peer.clone());
    let mut store = Store::new(&engine, State { mm: host });
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run = instance.get_typed_func::<(), i32>(&mut store, "run").unwrap();
    assert_eq!(run.call(&mut store, ()).unwrap(), 0, "core_pin failed at that check");
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let mm = creator.mm_of_memory(&store, &memory).unwrap();
    let s = mm.stats();
    assert_eq!((s.foll_pin_acquired, s.pins_outstanding()), (22, 0));
    let p = peer.stats();
    assert_eq!((p.remote_pages, p.pins_outstanding(), p.locked_bytes), (3, 0, 0));
    assert_eq!(store.data().mm.usage(), (0, 0, 0));
}

#[test]
fn rust_guest_pins_checksums_and_unpins_dirty() {
    if wasm_pin_guests::component("rust_checksum").is_none() {
        // Built by guests/rust/build.sh, which needs Debian's rustc-web;
        // .ci/run always builds it, so CI must never get here.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must build the Rust guest (guests/rust/build.sh)"
        );
        println!("skipped: run guests/rust/build.sh to build the Rust guest");
        return;
    }
    let run = run_component("rust_checksum", Quotas::default());
    assert_eq!(run.result.as_ref().unwrap(), &Ok(()));
    let s = run.mm.stats();
    assert_eq!(
        (s.foll_pin_acquired, s.foll_pin_released, s.dirtied_pages),
        (16, 16, 16)
    );
    assert_clean_after_drop(run);
}

/// Issue 12.4: the batched pins pin each range on the caller's memory, and
/// `unpin-batch` releases them all.
#[test]
fn batched_pins_and_unpins() {
    let run = run_component("bench_pin_batch", Quotas::default());
    assert_eq!(run.result.as_ref().unwrap(), &Ok(()));
    let s = run.mm.stats();
    assert_eq!((s.foll_pin_acquired, s.foll_pin_released), (10_000 * 16, 10_000 * 16));
    assert_eq!(run.store.data().mm.usage(), (0, 0, 0));
    // Past the handle quota, a range is refused and the others still pin.
    let quotas = Quotas {
        max_pins: 8,
        ..Default::default()
    };
    let run = run_component("bench_pin_batch", quotas);
    let err = run.result.unwrap_err();
    assert!(
        format!("{err:?}").contains("unreachable"),
        "the guest saw a refused range: {err:?}"
    );
    assert_eq!(run.mm.stats().foll_pin_acquired, 8 * 16);
}

/// The combined import from a component: 625 vectors of 16 ranges, each
/// checked whole by the guest, all released.
#[test]
fn pin_vectors_from_a_component() {
    let run = run_component("bench_pin_vec", Quotas::default());
    assert_eq!(run.result.as_ref().unwrap(), &Ok(()));
    let s = run.mm.stats();
    assert_eq!((s.foll_pin_acquired, s.foll_pin_released), (10_000 * 16, 10_000 * 16));
    assert_eq!(run.store.data().mm.usage(), (0, 0, 0));
    assert_clean_after_drop(run);
}
