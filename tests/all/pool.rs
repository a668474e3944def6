//! Issue 11 at the embedding level: components, WASI commands and core-ABI
//! guests pin on the pooled `PinMemoryCreator`; a slot whose memory the host
//! still holds is quarantined; the pin imports refuse an engine on wasmtime's
//! own pooling allocator at linker setup. (The pool's own rules are tested in
//! `runtime-mm/tests/pool.rs`, the spec scripts on it in `tests/spec.rs`.)

use host_api::{IoConfig, MmHost, PinCtx, PinCtxView, PinView, Quotas};
use runtime_mm::{gup, GupFlags, LongtermChunks, PinMemoryCreator, PoolConfig};
use std::sync::Arc;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{FsPerms, WasiCtx};

const MIB: u64 = 1 << 20;

fn pooled(slots: u32) -> (Engine, Arc<PinMemoryCreator>) {
    let creator = PinMemoryCreator::pooled(PoolConfig {
        slots,
        max_memory_bytes: 16 * MIB,
        guard_bytes: MIB,
        keep_resident_bytes: 256 << 10,
        // gup_all checks the seed's per-page accounting through `stats`.
        longterm_chunks: LongtermChunks::PerPage,
        ..PoolConfig::default()
    })
    .unwrap();
    let engine = creator.build_engine(&mut Config::new()).unwrap();
    (engine, creator)
}

struct Host {
    mm: MmHost,
}

impl PinView for Host {
    fn pins(&mut self) -> PinCtxView<'_> {
        self.mm.pins()
    }
}

#[test]
fn components_pin_on_the_pool_and_a_held_memory_keeps_its_slot() {
    let (engine, creator) = pooled(3);
    let pool = creator.pool().unwrap().clone();
    let component = Component::new(&engine, wasm_pin_guests::component("gup_all").unwrap()).unwrap();
    let mut linker = Linker::new(&engine);
    host_api::add_to_linker_sync(&mut linker).unwrap();
    // The granted peer is a pool memory too.
    let peer = pool.alloc(64 << 10, None).unwrap();

    let mut bases = Vec::new();
    let mut held = None;
    for round in 0..4 {
        let mut host = MmHost::new(Quotas::default());
        host.grant("peer", peer.clone());
        let mut store = Store::new(&engine, Host { mm: host });
        let (guest, mms) = creator.capture(|| host_api::TestGuest::instantiate(&mut store, &component, &linker));
        let guest = guest.unwrap();
        let mm = mms[0].clone();
        assert_eq!(guest.call_run(&mut store).unwrap(), Ok(()), "round {round}");
        let s = mm.stats();
        assert_eq!(
            (s.foll_pin_acquired, s.pins_outstanding()),
            (8, 0),
            "round {round}: {s:?}"
        );
        bases.push(mm.base());
        let mut b = [1u8; 7];
        mm.read(0, &mut b).unwrap();
        assert_eq!(b, [0; 7], "round {round}: a reused slot reads zeros");
        mm.write(0, format!("round {round}").as_bytes()).unwrap();
        if round == 0 {
            // The host keeps a pin past the store, as I/O in flight would.
            held = Some(gup::pin_longterm_pages(&mm, 0, 1, GupFlags::WRITE).unwrap());
        } else {
            assert_ne!(mm.base(), bases[0], "round {round} got the quarantined slot");
        }
        drop((store, mm));
    }
    let s = pool.stats();
    assert_eq!((s.quarantined, s.live), (1, 1), "round 0's slot, and the peer: {s:?}");
    let pin = held.take().unwrap();
    let mut b = [0u8; 7];
    pin.read(0, &mut b).unwrap();
    assert_eq!(&b, b"round 0", "the bytes under the pin outlived the store");
    drop((pin, peer));
    assert!(pool.wait_for_resets(std::time::Duration::from_secs(5)));
    let s = pool.stats();
    assert_eq!((s.quarantined, s.live, s.free), (0, 0, 3), "{s:?}");
}

#[test]
fn a_wasi_component_reads_zero_copy_on_the_pool() {
    let dir = std::env::temp_dir().join(format!("wasm-pin-pool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input: Vec<u8> = (0..0x10000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(dir.join("input.bin"), &input).unwrap();
    let (engine, creator) = pooled(2);
    let component = Component::new(&engine, wasm_pin_guests::component("read_file").unwrap()).unwrap();
    let mut linker = Linker::<host_api::WasiPinHost>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    host_api::add_to_linker_sync(&mut linker).unwrap();
    for _ in 0..3 {
        let mut wasi = WasiCtx::builder();
        wasi.preopened_dir(&dir, "/", FsPerms::ReadWrite).unwrap();
        let pins = PinCtx::default().with_io(IoConfig::default());
        let mut store = Store::new(&engine, host_api::WasiPinHost::new(wasi.build(), pins));
        let guest = host_api::TestGuest::instantiate(&mut store, &component, &linker).unwrap();
        assert_eq!(guest.call_run(&mut store).unwrap(), Ok(()));
        let mm = store.data().pins.memory().expect("the guest pinned").clone();
        let mut got = vec![0u8; 0x10000];
        mm.read(0x10000, &mut got).unwrap();
        assert_eq!(got, input, "the guest's pinned pages hold the file");
        drop((store, mm));
    }
    let s = creator.pool().unwrap().stats();
    assert_eq!((s.live, s.quarantined), (0, 0), "{s:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_core_abi_pins_on_the_pool() {
    let (engine, creator) = pooled(2);
    let module = wasmtime::Module::new(&engine, wasm_pin_guests::core_module("core_pin").unwrap()).unwrap();
    let mut linker = wasmtime::Linker::new(&engine);
    host_api::add_to_core_linker(&mut linker, &creator).unwrap();
    let peer = creator.pool().unwrap().alloc(64 << 10, None).unwrap();
    for _ in 0..3 {
        let mut host = MmHost::new(Quotas::default());
        host.grant("peer", peer.clone());
        let mut store = Store::new(&engine, Host { mm: host });
        let instance = linker.instantiate(&mut store, &module).unwrap();
        let run = instance.get_typed_func::<(), i32>(&mut store, "run").unwrap();
        assert_eq!(run.call(&mut store, ()).unwrap(), 0, "core_pin failed at that check");
    }
    assert_eq!(creator.pool().unwrap().stats().live, 1, "only the peer");
}

#[test]
fn the_pin_imports_refuse_wasmtimes_pooling_allocator_at_linker_setup() {
    let creator = PinMemoryCreator::new();
    let mut config = Config::new();
    creator.install(&mut config);
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_memories(2)
        .total_core_instances(2)
        .total_component_instances(2)
        .max_memory_size(MIB as usize);
    config
        .memory_reservation(MIB)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    let engine = Engine::new(&config).unwrap();
    let cause = |e: wasmtime::Error| {
        let e = e.to_string();
        assert!(
            e.contains("pooling allocator") && e.contains("PinMemoryCreator::pooled"),
            "names the cause and the fix: {e}"
        );
    };
    cause(host_api::add_to_linker_sync(&mut Linker::<Host>::new(&engine)).unwrap_err());
    cause(host_api::add_to_linker_async(&mut Linker::<Host>::new(&engine)).unwrap_err());
    cause(host_api::add_to_core_linker(&mut wasmtime::Linker::<Host>::new(&engine), &creator).unwrap_err());
    cause(creator.check(&engine).unwrap_err());
}
