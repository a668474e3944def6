//! The memory pool (`runtime_mm::pool`): slot reuse with zeroed contents,
//! quarantine under pins, exhaustion, memlock and page-table reset,
//! concurrency, and the pooled `PinMemoryCreator` under wasmtime (core
//! modules and shared memories; components are in the workspace's
//! `tests/pool.rs`).

use runtime_mm::gup::{self, pin_longterm_pages, pin_user_pages};
use runtime_mm::{Errno, GupFlags, MemoryPool, Mm, MmStats, PageState, PoolConfig, PoolError, PoolStats};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

/// Tests that lock memory (long-term pins) run one at a time, so that the
/// one reading the process's `VmLck` sees only its own.
static MLOCK: Mutex<()> = Mutex::new(());

fn mlock_guard() -> std::sync::MutexGuard<'static, ()> {
    MLOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn small(slots: u32) -> PoolConfig {
    PoolConfig {
        slots,
        max_memory_bytes: MIB,
        guard_bytes: 64 * KIB,
        keep_resident_bytes: 64 * KIB,
        memlock_limit_bytes: 256 * KIB,
        decommit_batch_size: 1,
        ..PoolConfig::default()
    }
}

/// The protection of the mapping holding `addr`, as `/proc/self/maps` shows
/// it (`rw-p`, `---p`, ...).
fn protection(addr: *const u8) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let a = addr as usize;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (range, perms) = (f.next().unwrap(), f.next().unwrap());
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).unwrap(),
            usize::from_str_radix(hi, 16).unwrap(),
        );
        if (lo..hi).contains(&a) {
            return perms.to_string();
        }
    }
    panic!("{addr:p} is not mapped");
}

/// `VmLck` of this process, in KiB.
fn vm_locked_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmLck:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn assert_zero(mm: &Mm, len: u64) {
    let mut buf = vec![0xffu8; len as usize];
    mm.read(0, &mut buf).unwrap();
    if let Some(i) = buf.iter().position(|&b| b != 0) {
        panic!("byte {i:#x} of a reused slot is {:#x}, not 0", buf[i]);
    }
}

fn balanced(s: PoolStats) -> bool {
    s.free + s.live + s.quarantined + s.resetting + s.pending == s.slots
}

/// Waits for the pool's reset worker to reset every released slot.
fn settle(pool: &MemoryPool) {
    assert!(pool.wait_for_resets(Duration::from_secs(5)), "{:?}", pool.stats());
}

#[test]
fn a_reused_slot_reads_only_zeros_and_hides_what_the_last_tenant_grew() {
    // Kept resident (memset), decommitted (madvise), in between, and batched.
    for (keep, batch) in [(0, 1), (64 * KIB, 1), (MIB, 1), (64 * KIB, 2)] {
        let pool = MemoryPool::new(PoolConfig {
            keep_resident_bytes: keep,
            decommit_batch_size: batch,
            ..small(1)
        })
        .unwrap();
        let a = pool.alloc(64 * KIB, None).unwrap();
        let base = a.base();
        a.grow_to(512 * KIB).unwrap();
        a.write(0, &vec![0xab; 512 * KIB as usize]).unwrap();
        // A pin leaves entries in the page table; they must not survive.
        drop(pin_user_pages(&a, 0, 4, GupFlags::WRITE).unwrap());
        assert!(a.page_state(0).unwrap().present);
        pool.release(a);
        settle(&pool);
        let s = pool.stats();
        assert!(balanced(s), "{s:?}");
        assert_eq!(
            (s.resets, s.live, s.quarantined),
            (1, 0, 0),
            "keep {keep} batch {batch}: {s:?}"
        );

        // A smaller tenant: same slot, zeros, and the rest of what the last
        // tenant had committed is inaccessible again (P3).
        let b = pool.alloc(128 * KIB, None).unwrap();
        assert_eq!(b.base(), base, "one slot: the same one");
        assert_eq!(b.len(), 128 * KIB);
        assert_zero(&b, 128 * KIB);
        assert_eq!(protection(base), "rw-p");
        // SAFETY (of the arithmetic): inside the pool's mapping.
        assert_eq!(protection(unsafe { base.add(128 * KIB as usize) }), "---p");
        assert_eq!(b.page_state(0).unwrap(), PageState::default(), "a fresh page table");
        assert_eq!(b.stats(), MmStats::default());
        b.grow_to(512 * KIB).unwrap();
        assert_zero(&b, 512 * KIB);
        pool.release(b);
        settle(&pool);
        let s = pool.stats();
        assert!(balanced(s), "{s:?}");
        assert_eq!((s.allocated, s.resets, s.free + s.pending), (2, 2, 1), "{s:?}");
    }
}

#[test]
fn a_slot_under_a_pin_is_quarantined_until_the_last_release() {
    let _g = mlock_guard();
    let pool = MemoryPool::new(small(2)).unwrap();
    let a = pool.alloc(64 * KIB, None).unwrap();
    let base_a = a.base();
    a.write(0, b"tenant A's bytes").unwrap();
    let pin = pin_longterm_pages(&a, 0, 1, GupFlags::WRITE).unwrap();
    pool.release(a);
    let s = pool.stats();
    assert_eq!((s.live, s.quarantined, s.free, s.resets), (0, 1, 1, 0), "{s:?}");

    // The quarantined slot goes to nobody: the other slot, then refusal.
    let b = pool.alloc(64 * KIB, None).unwrap();
    assert_ne!(b.base(), base_a);
    let started = Instant::now();
    let err = pool.alloc(64 * KIB, None).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once, never waits"
    );
    assert_eq!(
        err,
        PoolError::Exhausted {
            slots: 2,
            live: 1,
            quarantined: 1,
            resetting: 0
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("all 2 slots") && msg.contains("1 quarantined") && msg.contains("PoolConfig::slots"),
        "{msg}"
    );

    // The bytes under the pin are intact, mapped and still writable (P2).
    let mut buf = [0u8; 16];
    pin.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"tenant A's bytes");
    pin.write(0, b"written by a dev").unwrap();
    pin.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"written by a dev");
    assert_eq!(pin.mm().stats().locked_bytes, PAGE);

    // B's slot comes back; A's still does not.
    let base_b = b.base();
    pool.release(b);
    let c = pool.alloc(64 * KIB, None).unwrap();
    assert_eq!(c.base(), base_b);
    pool.release(c);

    // The last reference goes: A's slot is reset and reused, zeroed.
    drop(pin);
    settle(&pool);
    let s = pool.stats();
    assert_eq!((s.live, s.quarantined, s.free), (0, 0, 2), "{s:?}");
    let d = pool.alloc(64 * KIB, None).unwrap();
    assert_eq!(d.base(), base_a, "the most recently reset slot");
    assert_zero(&d, 64 * KIB);
}

#[test]
fn a_get_and_a_plain_arc_quarantine_too() {
    let pool = MemoryPool::new(small(1)).unwrap();
    let a = pool.alloc(64 * KIB, None).unwrap();
    let got = gup::get_user_pages(&a, 0, 2, GupFlags::empty()).unwrap();
    let extra = a.clone();
    pool.release(a);
    assert_eq!(pool.stats().quarantined, 1);
    drop(got);
    assert_eq!(pool.stats().quarantined, 1, "the extra Arc still holds it");
    assert!(matches!(pool.alloc(0, None), Err(PoolError::Exhausted { .. })));
    drop(extra);
    settle(&pool);
    let s = pool.stats();
    assert_eq!((s.quarantined, s.free, s.refused), (0, 1, 1), "{s:?}");
}

#[test]
fn memlock_and_the_page_table_reset_with_the_slot() {
    let _g = mlock_guard();
    let before = vm_locked_kib();
    let pool = MemoryPool::new(small(1)).unwrap();
    let a = pool.alloc(MIB, None).unwrap();
    let base = a.base();
    let lt = pin_longterm_pages(&a, 0, 64, GupFlags::WRITE).unwrap();
    assert_eq!(a.stats().locked_bytes, 256 * KIB);
    assert_eq!(
        pin_longterm_pages(&a, 64 * PAGE, 1, GupFlags::empty()).unwrap_err(),
        Errno::NoMem,
        "at the limit"
    );
    assert!(vm_locked_kib() >= before + 256, "the pages are mlocked");
    let table = a.page_table_bytes();
    pool.release(a);
    assert_eq!(pool.stats().quarantined, 1);
    assert!(vm_locked_kib() >= before + 256, "still locked while pinned");
    drop(lt);
    assert_eq!(vm_locked_kib(), before, "munlocked before the reset");

    let b = pool.alloc(MIB, None).unwrap();
    assert_eq!(b.base(), base);
    assert_eq!(b.stats(), MmStats::default(), "nothing charged, nothing counted");
    assert!(b.page_table_bytes() <= table, "{} vs {table}", b.page_table_bytes());
    for page in 0..MIB / PAGE {
        assert_eq!(b.page_state(page * PAGE).unwrap(), PageState::default(), "page {page}");
    }
    // The full limit is available again.
    let lt = pin_longterm_pages(&b, 0, 64, GupFlags::WRITE).unwrap();
    assert_eq!(b.stats().locked_bytes, 256 * KIB);
    drop(lt);
    assert_eq!(b.stats().locked_bytes, 0);
    drop(b);
    assert_eq!(vm_locked_kib(), before);
}

#[test]
fn bad_sizes_are_refused_before_taking_a_slot() {
    let pool = MemoryPool::new(small(1)).unwrap();
    let err = pool.alloc(2 * MIB, None).unwrap_err();
    assert!(matches!(err, PoolError::TooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("does not fit a pool slot"), "{err}");
    assert_eq!(
        pool.alloc(128 * KIB, Some(64 * KIB)).unwrap_err(),
        PoolError::Mm(Errno::Inval)
    );
    // A maximum above the slot is clamped to it, as a reservation clamps.
    let m = pool.alloc(0, Some(8 * MIB)).unwrap();
    assert_eq!(m.capacity(), MIB);
    assert_eq!(m.grow_to(MIB + PAGE), Err(Errno::NoMem));
    drop(m);
    settle(&pool);
    let s = pool.stats();
    assert_eq!((s.allocated, s.free), (1, 1), "{s:?}");
    assert_eq!(
        MemoryPool::new(PoolConfig { slots: 0, ..small(1) }).unwrap_err(),
        PoolError::Mm(Errno::Inval)
    );
}

#[test]
fn a_full_batch_is_decommitted_when_no_slot_is_free() {
    let pool = MemoryPool::new(PoolConfig {
        keep_resident_bytes: 0,
        decommit_batch_size: 4,
        ..small(2)
    })
    .unwrap();
    for _ in 0..3 {
        let (a, b) = (pool.alloc(MIB, None).unwrap(), pool.alloc(MIB, None).unwrap());
        a.write(0, &[7; 4096]).unwrap();
        b.write(MIB - 4096, &[9; 4096]).unwrap();
        pool.release(a);
        pool.release(b);
        settle(&pool);
        let s = pool.stats();
        assert_eq!((s.pending, s.free), (2, 0), "waiting for the batch: {s:?}");
        // No free slot: the batch is decommitted now, not refused.
        let c = pool.alloc(MIB, None).unwrap();
        assert_zero(&c, MIB);
        let s = pool.stats();
        assert_eq!((s.pending, s.free, s.live, s.refused), (0, 1, 1, 0), "{s:?}");
        pool.release(c);
    }
}

/// The pooled creator under wasmtime.
#[cfg(feature = "wasmtime")]
mod creator {
    use super::*;
    use runtime_mm::PinMemoryCreator;
    use wasmtime::{Config, Engine, Instance, InstanceAllocationStrategy, Module, PoolingAllocationConfig, Store};

    const CORE: &str = r#"
(module
  (memory (export "memory") 1 16)
  (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "store") (param i32 i32) (i32.store8 (local.get 0) (local.get 1)))
  ;; 0 if the first 64 KiB are all zero; then fills them with `tag`.
  (func (export "check_and_fill") (param $tag i32) (result i32)
    (local $i i32) (local $dirty i32)
    (loop $l
      (local.set $dirty (i32.or (local.get $dirty) (i32.load (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 65536))))
    (memory.fill (i32.const 0) (local.get $tag) (i32.const 65536))
    (local.get $dirty)))
"#;

    fn pooled_engine(config: PoolConfig) -> (Engine, Arc<PinMemoryCreator>) {
        let creator = PinMemoryCreator::pooled(config).unwrap();
        let mut c = Config::new();
        c.wasm_threads(true).shared_memory(true);
        let engine = creator.build_engine(&mut c).unwrap();
        (engine, creator)
    }

    struct Tenant {
        store: Store<()>,
        instance: Instance,
        mm: Arc<Mm>,
    }

    fn instantiate(engine: &Engine, creator: &PinMemoryCreator, module: &Module) -> wasmtime::Result<Tenant> {
        let mut store = Store::new(engine, ());
        let instance = Instance::new(&mut store, module, &[])?;
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        let mm = creator.mm_of_memory(&store, &memory).expect("memory is an Mm");
        Ok(Tenant { store, instance, mm })
    }

    impl Tenant {
        fn call(&mut self, name: &str, args: &[i32]) -> i32 {
            let f = self.instance.get_func(&mut self.store, name).unwrap();
            let params: Vec<wasmtime::Val> = args.iter().map(|&a| a.into()).collect();
            let mut out = [wasmtime::Val::I32(0)];
            let n = f.ty(&self.store).results().len();
            f.call(&mut self.store, &params, &mut out[..n]).unwrap();
            out[0].unwrap_i32()
        }
    }

    #[test]
    fn a_store_dropped_under_a_longterm_pin_keeps_its_slot_quarantined() {
        let _g = mlock_guard();
        let (engine, creator) = pooled_engine(small(2));
        let pool = creator.pool().unwrap().clone();
        let module = Module::new(&engine, CORE).unwrap();

        let mut a = instantiate(&engine, &creator, &module).unwrap();
        for (i, b) in b"guest data".iter().enumerate() {
            a.call("store", &[i as i32, i32::from(*b)]);
        }
        let base_a = a.mm.base();
        let pin = pin_longterm_pages(&a.mm, 0, 1, GupFlags::WRITE).unwrap();
        drop(a); // the store, its instance and memory, and our Arc
        let s = pool.stats();
        assert_eq!((s.quarantined, s.live, s.free), (1, 0, 1), "{s:?}");

        // The quarantined slot is handed to no new instance.
        let mut b = instantiate(&engine, &creator, &module).unwrap();
        assert_ne!(b.mm.base(), base_a);
        assert_eq!(b.call("check_and_fill", &[1]), 0, "a fresh tenant reads zeros");
        let err = instantiate(&engine, &creator, &module).err().expect("no slot left");
        let msg = format!("{err:?}");
        assert!(
            msg.contains("all 2 slots") && msg.contains("1 quarantined"),
            "a clear instantiation error: {msg}"
        );
        // The bytes under the pin are the guest's, intact.
        let mut buf = [0u8; 10];
        pin.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"guest data");
        assert!(pin.mm().page_maybe_dma_pinned(0));

        // Dropping B frees B's slot, not A's.
        let base_b = b.mm.base();
        drop(b);
        let c = instantiate(&engine, &creator, &module).unwrap();
        assert_eq!(c.mm.base(), base_b);

        // The pin's release resets A's slot, which the next instance gets.
        drop(pin);
        assert_eq!(pool.stats().quarantined, 0);
        let mut d = instantiate(&engine, &creator, &module).unwrap();
        assert_eq!(d.mm.base(), base_a);
        assert_eq!(d.call("load", &[0]), 0, "the guest's bytes are gone");
        assert_eq!(d.call("check_and_fill", &[2]), 0);
        drop((c, d));
        settle(&pool);
        let s = pool.stats();
        assert_eq!((s.free, s.live, s.quarantined), (2, 0, 0), "{s:?}");
        assert_eq!(creator.live_memories(), 0);
    }

    #[test]
    fn exhaustion_is_an_instantiation_error_not_a_hang() {
        let (engine, creator) = pooled_engine(small(1));
        let module = Module::new(&engine, CORE).unwrap();
        let held = instantiate(&engine, &creator, &module).unwrap();
        let started = Instant::now();
        let err = instantiate(&engine, &creator, &module).err().expect("one slot");
        assert!(started.elapsed() < Duration::from_secs(1));
        let msg = format!("{err:?}");
        assert!(
            msg.contains("maximum concurrent memories reached") && msg.contains("1 live"),
            "{msg}"
        );
        assert_eq!(creator.pool().unwrap().stats().refused, 1);
        drop(held);
        instantiate(&engine, &creator, &module).expect("the slot came back");
    }

    #[test]
    fn misconfiguration_is_caught_with_the_cause_and_the_fix() {
        // wasmtime's pooling allocator bypasses any creator.
        let wasmtime_pool = || {
            let mut p = PoolingAllocationConfig::default();
            p.total_memories(4)
                .total_core_instances(4)
                .total_component_instances(4)
                .max_memory_size(MIB as usize);
            InstanceAllocationStrategy::Pooling(p)
        };
        for creator in [PinMemoryCreator::new(), PinMemoryCreator::pooled(small(2)).unwrap()] {
            // Strategy set after install: install cannot see it, check does.
            let mut config = Config::new();
            config.memory_reservation(MIB).memory_guard_size(64 * KIB);
            creator.install(&mut config);
            config.allocation_strategy(wasmtime_pool());
            let engine = Engine::new(&config).unwrap();
            let err = creator.check(&engine).unwrap_err().to_string();
            assert!(
                err.contains("pooling allocator") && err.contains("PinMemoryCreator::pooled"),
                "names the cause and the fix: {err}"
            );
            // Set before: build_engine refuses it.
            let mut config = Config::new();
            config
                .memory_reservation(MIB)
                .memory_guard_size(64 * KIB)
                .allocation_strategy(wasmtime_pool());
            let err = creator.build_engine(&mut config).unwrap_err().to_string();
            assert!(err.contains("InstanceAllocationStrategy::Pooling"), "{err}");
            // The memories really are wasmtime's there: no pin could work.
            let module = Module::new(&engine, CORE).unwrap();
            let mut store = Store::new(&engine, ());
            let instance = Instance::new(&mut store, &module, &[]).unwrap();
            let memory = instance.get_memory(&mut store, "memory").unwrap();
            assert!(creator.mm_of_memory(&store, &memory).is_none());
        }

        // Not installed, or replaced by another creator.
        let creator = PinMemoryCreator::pooled(small(2)).unwrap();
        let err = creator.check(&Engine::default()).unwrap_err().to_string();
        assert!(
            err.contains("not made by this PinMemoryCreator") && err.contains("install"),
            "{err}"
        );
        let mut config = Config::new();
        creator.install(&mut config);
        PinMemoryCreator::new().install(&mut config);
        let err = creator.check(&Engine::new(&config).unwrap()).unwrap_err().to_string();
        assert!(err.contains("not made by this PinMemoryCreator"), "{err}");

        // Slots smaller than what the engine's code assumes: refused, not unsound.
        let mut config = Config::new();
        creator.install(&mut config);
        config.memory_reservation(4 * MIB);
        let err = creator.check(&Engine::new(&config).unwrap()).unwrap_err();
        let err = format!("{err:?}");
        assert!(
            err.contains("does not fit a pool slot") && err.contains("memory_reservation"),
            "{err}"
        );

        // Right: the probe's memory came and went.
        let (engine, creator) = pooled_engine(small(2));
        creator.check(&engine).unwrap();
        settle(creator.pool().unwrap());
        let s = creator.pool().unwrap().stats();
        assert_eq!((s.free, s.allocated), (2, 2), "{s:?}");
    }

    #[test]
    fn shared_memories_live_on_the_pool() {
        let (engine, creator) = pooled_engine(small(2));
        let pool = creator.pool().unwrap().clone();
        let module = Module::new(
            &engine,
            r#"(module (memory (export "memory") 1 8 shared)
             (func (export "load") (param i32) (result i32) (i32.atomic.load (local.get 0))))"#,
        )
        .unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let shared = instance.get_shared_memory(&mut store, "memory").unwrap();
        let mm = creator.mm_of_shared_memory(&shared).expect("an Mm");
        assert_eq!(pool.stats().live, 1);
        shared.grow(2).unwrap();
        assert_eq!(mm.len(), 3 * 64 * KIB);
        mm.write(2 * 64 * KIB, &7u32.to_le_bytes()).unwrap();
        let load = instance.get_typed_func::<i32, i32>(&mut store, "load").unwrap();
        assert_eq!(load.call(&mut store, 2 * 64 * 1024).unwrap(), 7);
        let base = mm.base();
        drop((store, mm));
        assert_eq!(pool.stats().live, 1, "the shared memory outlives the store");
        drop(shared);
        settle(&pool);
        let s = pool.stats();
        assert_eq!((s.live, s.free), (0, 2), "{s:?}");
        let mut t = instantiate(&engine, &creator, &Module::new(&engine, CORE).unwrap()).unwrap();
        assert_eq!(t.mm.base(), base);
        assert_eq!(t.call("check_and_fill", &[3]), 0);
    }

    #[test]
    fn concurrent_tenants_never_share_a_slot_or_see_each_other() {
        let _g = mlock_guard();
        const THREADS: usize = 4;
        // A live and a quarantined memory per thread at most.
        let (engine, creator) = pooled_engine(small(2 * THREADS as u32));
        let module = Module::new(&engine, CORE).unwrap();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (engine, creator, module) = (&engine, &creator, &module);
                s.spawn(move || {
                    for i in 0..60 {
                        let tag = (t * 60 + i) as i32 % 255 + 1;
                        let mut x = instantiate(engine, creator, module).unwrap();
                        assert_eq!(x.call("check_and_fill", &[tag]), 0, "thread {t} iteration {i}");
                        if i % 3 == 0 {
                            // Quarantine: the slot goes to no other thread meanwhile.
                            let flags = GupFlags::empty();
                            let pin = if i % 2 == 0 {
                                pin_longterm_pages(&x.mm, 0, 16, flags)
                            } else {
                                pin_user_pages(&x.mm, 0, 16, flags)
                            }
                            .unwrap();
                            drop(x);
                            std::thread::yield_now();
                            let mut buf = vec![0u8; 64 << 10];
                            pin.read(0, &mut buf).unwrap();
                            assert!(buf.iter().all(|&b| b == tag as u8), "thread {t}: another tenant wrote");
                        }
                    }
                });
            }
        });
        settle(creator.pool().unwrap());
        let s = creator.pool().unwrap().stats();
        assert_eq!((s.live, s.quarantined, s.free), (0, 0, 2 * THREADS as u32), "{s:?}");
        assert_eq!(s.allocated, s.resets);
        assert_eq!(s.refused, 0);
    }
}

/// The pool's Debug output names its configuration and live counts (what an
/// embedder logs when instantiation fails for want of a slot).
#[test]
fn debug_output_shows_config_and_stats() {
    let pool = MemoryPool::new(small(2)).unwrap();
    // `config` is what was asked, sizes already page multiples here.
    assert_eq!(pool.config(), &small(2));
    let a = pool.alloc(64 * KIB, None).unwrap();
    let text = format!("{pool:?}");
    for want in ["MemoryPool", "slots: 2", "live: 1", "free: 1", "memlock_limit_bytes"] {
        assert!(text.contains(want), "{want} missing in {text}");
    }
    pool.release(a);
}

/// A pending decommit batch waits while free slots remain: allocating from
/// the free list leaves it alone (it is decommitted when full, or when no
/// free slot is left).
#[test]
fn a_pending_batch_waits_while_free_slots_remain() {
    let pool = MemoryPool::new(PoolConfig {
        decommit_batch_size: 4,
        ..small(4)
    })
    .unwrap();
    // Past `keep_resident_bytes` (64 KiB): their slots need a decommit.
    let (a, b) = (
        pool.alloc(256 * KIB, None).unwrap(),
        pool.alloc(256 * KIB, None).unwrap(),
    );
    pool.release(a);
    pool.release(b);
    settle(&pool);
    let s = pool.stats();
    assert_eq!((s.pending, s.free), (2, 2), "{s:?}");
    let c = pool.alloc(64 * KIB, None).unwrap();
    let s = pool.stats();
    assert_eq!((s.pending, s.free, s.live), (2, 1, 1), "{s:?}");
    pool.release(c);
}

/// A batch is decommitted as soon as it is full, not one release later.
#[test]
fn a_full_batch_is_decommitted_at_once() {
    let pool = MemoryPool::new(PoolConfig {
        decommit_batch_size: 2,
        ..small(4)
    })
    .unwrap();
    let (a, b) = (
        pool.alloc(256 * KIB, None).unwrap(),
        pool.alloc(256 * KIB, None).unwrap(),
    );
    pool.release(a);
    settle(&pool);
    assert_eq!(pool.stats().pending, 1);
    pool.release(b);
    settle(&pool);
    let s = pool.stats();
    assert_eq!((s.pending, s.free, s.resets), (0, 4, 2), "{s:?}");
}

/// Resetting a slot touches that slot only: the decommit after a tenant
/// that grew to the maximum, and hiding its excess from the next, smaller
/// tenant, leave the neighbouring slot's live memory readable and intact;
/// the whole excess (not only its first page) is inaccessible again (found
/// by mutation testing: a decommit or a hide of the wrong length).
#[test]
fn a_slot_reset_stays_inside_its_slot() {
    let pool = MemoryPool::new(small(2)).unwrap();
    let (x, y) = (pool.alloc(64 * KIB, None).unwrap(), pool.alloc(64 * KIB, None).unwrap());
    // The lower slot is reset; its neighbour above it stays live.
    let (a, c) = if x.base() < y.base() { (x, y) } else { (y, x) };
    let base = a.base();
    c.write(0, &[0xcd; 64 * KIB as usize]).unwrap();
    a.grow_to(MIB).unwrap();
    a.write(0, &vec![0xab; MIB as usize]).unwrap();
    pool.release(a); // decommit batch 1: [keep, 1 MiB) dropped now
    let check_neighbour = || {
        assert_eq!(protection(c.base()), "rw-p");
        let mut got = vec![0u8; 64 * KIB as usize];
        c.read(0, &mut got).unwrap();
        assert!(got.iter().all(|&b| b == 0xcd), "the neighbour's bytes survive");
    };
    check_neighbour();
    let b = pool.alloc(128 * KIB, None).unwrap();
    assert_eq!(b.base(), base, "the only free slot");
    check_neighbour();
    for off in [128 * KIB, 512 * KIB, MIB - 1] {
        // SAFETY (of the arithmetic): inside the pool's mapping.
        assert_eq!(
            protection(unsafe { base.add(off as usize) }),
            "---p",
            "excess at {off:#x}"
        );
    }
    assert_zero(&b, 128 * KIB);
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A tenant that committed `bytes`, all of them dirty.
fn dirty_tenant(pool: &Arc<MemoryPool>, bytes: u64) -> Arc<Mm> {
    let m = pool.alloc(bytes, None).unwrap();
    m.write(0, &vec![0x5a; bytes as usize]).unwrap();
    m
}

/// #22.3: the thread that drops a tenant's last reference pays no reset:
/// zeroing 256 MiB (kept resident) costs the reset worker tens of ms of CPU
/// and the dropping thread almost none; the worker then frees the slot.
#[test]
fn the_reset_runs_on_the_pools_worker_not_the_dropping_thread() {
    const BIG: u64 = 256 * MIB;
    let pool = MemoryPool::new(PoolConfig {
        slots: 2,
        max_memory_bytes: BIG,
        keep_resident_bytes: BIG,
        ..PoolConfig::default()
    })
    .unwrap();
    let m = dirty_tenant(&pool, BIG);
    let cpu = thread_cpu();
    drop(m);
    let dropping = thread_cpu() - cpu;
    let s = pool.stats();
    assert!(s.resetting + s.free == 2 && s.live == 0, "{s:?}");
    settle(&pool);
    // memset of 256 MiB: >= ~10 ms of CPU wherever it runs.
    assert!(
        dropping < Duration::from_millis(2),
        "the dropping thread spent {dropping:?}"
    );
    let s = pool.stats();
    assert_eq!((s.free, s.resetting, s.resets), (2, 0, 1), "{s:?}");
    let workers = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|c| c.trim() == "wasm-pin-pool-r")
        .count();
    assert!(workers >= 1, "the pool's reset worker thread (comm is cut to 15 bytes)");
}

/// #22.3: an `alloc` that finds no free slot but one being reset waits for
/// it (counted in `waited`) and gets it zeroed; with a `reset_wait` shorter
/// than the reset it is refused after that wait, naming the slot resetting.
#[test]
fn alloc_waits_for_a_reset_in_progress_bounded_by_reset_wait() {
    const BIG: u64 = 512 * MIB;
    let big = |wait| PoolConfig {
        slots: 1,
        max_memory_bytes: BIG,
        keep_resident_bytes: BIG,
        reset_wait: wait,
        ..PoolConfig::default()
    };
    let pool = MemoryPool::new(big(Duration::from_secs(5))).unwrap();
    drop(dirty_tenant(&pool, BIG));
    let m = pool.alloc(64 * KIB, None).expect("waits for the reset");
    assert_zero(&m, 64 * KIB);
    let s = pool.stats();
    assert_eq!((s.waited, s.refused, s.live), (1, 0, 1), "{s:?}");
    drop(m);

    let pool = MemoryPool::new(big(Duration::from_millis(1))).unwrap();
    drop(dirty_tenant(&pool, BIG));
    let started = Instant::now();
    let err = pool.alloc(64 * KIB, None).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(
        err,
        PoolError::Exhausted {
            slots: 1,
            live: 0,
            quarantined: 0,
            resetting: 1
        }
    );
    assert!(err.to_string().contains("1 being reset"), "{err}");
    settle(&pool);
    pool.alloc(64 * KIB, None).expect("free once reset");
}

/// #22.3: at `max_quarantined` quarantined slots every `alloc` is refused
/// with `QuarantineFull` (free slots or not) until a pin is released; the
/// stats show the quarantine and its peak.
#[test]
fn the_quarantine_limit_refuses_new_memories_until_pins_go() {
    let _g = mlock_guard();
    let pool = MemoryPool::new(PoolConfig {
        max_quarantined: 1,
        ..small(3)
    })
    .unwrap();
    let a = pool.alloc(64 * KIB, None).unwrap();
    let pin = pin_user_pages(&a, 0, 1, GupFlags::WRITE).unwrap();
    pool.release(a);
    let err = pool.alloc(64 * KIB, None).unwrap_err();
    assert_eq!(
        err,
        PoolError::QuarantineFull {
            quarantined: 1,
            limit: 1
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("never released") && msg.contains("max_quarantined"),
        "{msg}"
    );
    let s = pool.stats();
    assert_eq!(
        (s.quarantined, s.peak_quarantined, s.free, s.refused),
        (1, 1, 2, 1),
        "{s:?}"
    );
    drop(pin);
    settle(&pool);
    let b = pool.alloc(64 * KIB, None).expect("the pin went");
    let s = pool.stats();
    assert_eq!((s.quarantined, s.peak_quarantined, s.live), (0, 1, 1), "{s:?}");
    drop(b);

    // A limit of 0: memories come while nothing is quarantined.
    let pool = MemoryPool::new(PoolConfig {
        max_quarantined: 0,
        ..small(2)
    })
    .unwrap();
    let a = pool.alloc(64 * KIB, None).unwrap();
    let pin = pin_user_pages(&a, 0, 1, GupFlags::WRITE).unwrap();
    pool.release(a);
    assert!(matches!(pool.alloc(0, None), Err(PoolError::QuarantineFull { .. })));
    drop(pin);
    settle(&pool);
    pool.alloc(0, None).expect("nothing quarantined");
}

/// #22.2: pooled memories are THP-backed like `Mm::new` ones (on a host
/// with THP): 2 MiB-aligned slots, and long-term pins in 2 MiB chunks by
/// default; `huge_pages: false` gives 4 KiB pages and per-page accounting.
#[test]
fn pooled_memories_are_thp_backed_with_2_mib_chunks_by_default() {
    let thp_on = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|m| m.contains("[always]") || m.contains("[madvise]"));
    for huge in [true, false] {
        let pool = MemoryPool::new(PoolConfig {
            slots: 3,
            max_memory_bytes: 3 * MIB,
            guard_bytes: 64 * KIB,
            huge_pages: huge,
            ..PoolConfig::default()
        })
        .unwrap();
        let ms: Vec<_> = (0..3).map(|_| pool.alloc(4 * MIB / 2, None).unwrap()).collect();
        for m in &ms {
            assert_eq!(m.thp_backed(), huge && thp_on);
            if huge {
                assert_eq!(m.base() as u64 % (2 * MIB), 0, "slots on huge-page boundaries");
            }
            let chunk = if huge && thp_on { 2 * MIB } else { PAGE };
            assert_eq!(m.longterm_chunk_bytes(), chunk);
        }
    }
}

/// #22 (found by the soak): a reset keeps resident only the kept pages the
/// tenant had made resident; it zeroes them, and faults in none of the
/// others (it used to `memset` all of `keep_resident_bytes`, so every free
/// slot tended to 2 MiB resident whatever its tenant touched).
#[test]
fn a_reset_faults_in_no_page_the_tenant_never_touched() {
    let pool = MemoryPool::new(PoolConfig {
        keep_resident_bytes: MIB,
        huge_pages: false,
        ..small(1)
    })
    .unwrap();
    let m = pool.alloc(MIB, None).unwrap();
    let base = m.base();
    m.write(0, &[0xee; 3 * PAGE as usize]).unwrap();
    m.write(200 * PAGE, &[0xee; 1]).unwrap();
    drop(m);
    settle(&pool);
    let resident = || {
        let mut v = vec![0u8; (MIB / PAGE) as usize];
        // SAFETY: the slot's first MiB stays mapped read-write while free;
        // mincore writes one byte per page into `v`.
        assert_eq!(unsafe { libc::mincore(base.cast(), MIB as usize, v.as_mut_ptr()) }, 0);
        v.iter()
            .enumerate()
            .filter(|(_, b)| *b & 1 == 1)
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        resident(),
        [0, 1, 2, 200],
        "only what the tenant touched stays resident"
    );
    let m = pool.alloc(MIB, None).unwrap();
    assert_eq!(m.base(), base);
    assert_zero(&m, MIB);
}
