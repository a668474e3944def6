//! Long-term pins lock and charge whole chunks (see `longterm.rs`): one
//! `mlock` per chunk, the pins after the first one lock-free, the charge
//! exact against what is locked, and `discard` working beside them.

use runtime_mm::gup::*;
use runtime_mm::{Errno, GupFlags, LongtermChunks, Mm, MmConfig};
use std::sync::Arc;

const PAGE: u64 = 4096;
const CHUNK: u64 = 2 << 20;
const CHUNK_PAGES: usize = (CHUNK / PAGE) as usize;

fn mm(bytes: u64, limit: u64) -> Arc<Mm> {
    Mm::new(MmConfig {
        initial_bytes: bytes,
        reservation_bytes: 64 << 20,
        memlock_limit_bytes: limit,
        longterm_chunks: LongtermChunks::Bytes(CHUNK),
        ..Default::default()
    })
    .unwrap()
}

/// `Locked:` kB of the mappings inside `[lo, hi)`, from `/proc/self/smaps`.
fn locked_kb(lo: usize, hi: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    let mut kb = 0;
    for line in smaps.lines() {
        if let Some((range, _)) = line
            .split_once(' ')
            .filter(|(r, _)| r.contains('-') && !r.ends_with(':'))
        {
            let (a, b) = range.split_once('-').unwrap();
            let (a, b) = (
                usize::from_str_radix(a, 16).unwrap(),
                usize::from_str_radix(b, 16).unwrap(),
            );
            inside = a >= lo && b <= hi;
        } else if inside && line.starts_with("Locked:") {
            kb += line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap();
        }
    }
    kb
}

/// The pages among the first `pages` of `m` whose mapping is `mlock`ed
/// (`lo` in its smaps `VmFlags`), read from one snapshot of smaps.
fn locked_pages(m: &Mm, pages: u64) -> Vec<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut locked: Vec<(usize, usize)> = Vec::new();
    let mut range = (0, 0);
    for line in smaps.lines() {
        if let Some((r, _)) = line
            .split_once(' ')
            .filter(|(r, _)| r.contains('-') && !r.ends_with(':'))
        {
            let (a, b) = r.split_once('-').unwrap();
            range = (
                usize::from_str_radix(a, 16).unwrap(),
                usize::from_str_radix(b, 16).unwrap(),
            );
        } else if line.starts_with("VmFlags:") && line.split_whitespace().any(|f| f == "lo") {
            locked.push(range);
        }
    }
    let base = m.base() as usize;
    (0..pages)
        .filter(|&p| {
            let addr = base + (p * PAGE) as usize;
            locked.iter().any(|&(a, b)| a <= addr && addr < b)
        })
        .collect()
}

fn our_locked_kb(m: &Mm) -> u64 {
    let base = m.base() as usize;
    locked_kb(base, base + m.capacity() as usize)
}

#[test]
fn a_chunk_is_locked_once_and_kept_while_pins_live() {
    let m = mm(3 * CHUNK, 64 << 20);
    let a = pin_longterm_pages(&m, PAGE, 1, GupFlags::WRITE).unwrap();
    assert_eq!(m.stats().locked_bytes, CHUNK, "the first pin locks its chunk");
    assert_eq!(our_locked_kb(&m), CHUNK / 1024, "and the kernel agrees");
    // Every other page of the chunk, fresh or not: lock-free, no new charge.
    let before = m.stats();
    let b = pin_longterm_pages_fast(&m, 2 * PAGE, CHUNK_PAGES - 2, GupFlags::empty()).unwrap();
    let after = m.stats();
    assert_eq!(after.fast_path_pages - before.fast_path_pages, CHUNK_PAGES as u64 - 2);
    assert_eq!(after.fast_fallbacks, before.fast_fallbacks);
    assert_eq!(after.locked_bytes, CHUNK);
    // A pin that crosses into the next chunk locks that one too.
    let c = pin_longterm_pages_fast(&m, CHUNK - PAGE, 2, GupFlags::empty()).unwrap();
    assert_eq!(m.stats().locked_bytes, 2 * CHUNK);
    assert_eq!(our_locked_kb(&m), 2 * CHUNK / 1024);
    // The first chunk stays locked while any of its pins lives.
    drop(a);
    drop(b);
    assert_eq!(m.stats().locked_bytes, 2 * CHUNK, "c still holds a page of chunk 0");
    drop(c);
    assert_eq!(m.stats().locked_bytes, 0);
    assert_eq!(our_locked_kb(&m), 0);
    assert_eq!(m.stats().longterm_pinned_pages, 0);
}

#[test]
fn the_limit_counts_chunks() {
    let m = mm(4 * CHUNK, 2 * CHUNK);
    let _a = pin_longterm_pages(&m, 0, 1, GupFlags::empty()).unwrap();
    let _b = pin_longterm_pages(&m, CHUNK, 1, GupFlags::empty()).unwrap();
    assert_eq!(m.stats().locked_bytes, 2 * CHUNK);
    // A third chunk would lock 6 MiB: refused, nothing taken.
    for f in [pin_longterm_pages, pin_longterm_pages_fast] {
        assert_eq!(f(&m, 2 * CHUNK, 1, GupFlags::empty()).unwrap_err(), Errno::NoMem);
    }
    // A range over a locked and an unlocked chunk is all or nothing.
    assert_eq!(
        pin_longterm_pages_fast(&m, 2 * CHUNK - PAGE, 2, GupFlags::empty()).unwrap_err(),
        Errno::NoMem
    );
    assert_eq!(
        m.page_state(2 * CHUNK - PAGE).unwrap().longterm,
        0,
        "the fast part was given back"
    );
    // Inside the locked chunks there is room.
    let c = pin_longterm_pages_fast(&m, CHUNK + 7 * PAGE, 5, GupFlags::empty()).unwrap();
    assert_eq!(c.len(), 5);
    assert_eq!(m.stats().locked_bytes, 2 * CHUNK);
}

#[test]
fn a_short_chunk_grows_with_the_memory() {
    // 1 MiB: the chunk is locked up to the length only.
    let m = mm(1 << 20, 64 << 20);
    let a = pin_longterm_pages_fast(&m, 0, 1, GupFlags::empty()).unwrap();
    assert_eq!(m.stats().locked_bytes, 1 << 20);
    m.grow_to(3 << 20).unwrap();
    // A page past the locked extent extends it (slow path), then the rest
    // of the chunk is lock-free again.
    let before = m.stats().fast_fallbacks;
    let b = pin_longterm_pages_fast(&m, (1 << 20) + PAGE, 1, GupFlags::empty()).unwrap();
    assert_eq!(m.stats().fast_fallbacks, before + 1);
    assert_eq!(m.stats().locked_bytes, CHUNK);
    let c = pin_longterm_pages_fast(&m, (1 << 20) + 2 * PAGE, 1, GupFlags::empty()).unwrap();
    assert_eq!(m.stats().fast_fallbacks, before + 1);
    // The next chunk is clipped to the new length (1 MiB of it).
    let d = pin_longterm_pages(&m, CHUNK, 1, GupFlags::empty()).unwrap();
    assert_eq!(m.stats().locked_bytes, CHUNK + (1 << 20));
    assert_eq!(our_locked_kb(&m), (CHUNK + (1 << 20)) / 1024);
    drop((a, b, c, d));
    assert_eq!((m.stats().locked_bytes, our_locked_kb(&m)), (0, 0));
}

#[test]
fn discard_beside_a_longterm_pin_zeroes_in_place() {
    let m = mm(CHUNK, 64 << 20);
    m.write(0, &[1; 8192]).unwrap();
    m.write(5 * PAGE, &[9; 4096]).unwrap();
    let p = pin_longterm_pages(&m, 0, 1, GupFlags::WRITE).unwrap();
    // Page 5 is in the locked chunk but unpinned: discardable.
    m.discard(5 * PAGE, PAGE).unwrap();
    let mut b = [0xffu8; 4096];
    m.read(5 * PAGE, &mut b).unwrap();
    assert_eq!(b, [0; 4096]);
    m.read(0, &mut b).unwrap();
    assert_eq!(b, [1; 4096], "the pinned page keeps its data");
    m.read(PAGE, &mut b).unwrap();
    assert_eq!(b, [1; 4096], "a neighbour outside the range too");
    assert_eq!(m.discard(0, 2 * PAGE), Err(Errno::Busy));
    assert_eq!(m.stats().locked_bytes, CHUNK, "discard leaves the chunk locked");
    assert_eq!(our_locked_kb(&m), CHUNK / 1024);
    drop(p);
    // Unlocked again: discard unmaps.
    m.discard(0, 2 * PAGE).unwrap();
    m.read(0, &mut b).unwrap();
    assert_eq!(b, [0; 4096]);
}

#[test]
fn chunks_are_a_power_of_two_of_pages_up_to_2_mib() {
    let with = |bytes| {
        let m = Mm::new(MmConfig {
            initial_bytes: 8 << 20,
            longterm_chunks: LongtermChunks::Bytes(bytes),
            ..Default::default()
        })
        .unwrap();
        drop(pin_longterm_pages(&m, 0, 1, GupFlags::empty()).unwrap());
        let p = pin_longterm_pages(&m, 0, 1, GupFlags::empty()).unwrap();
        let charged = m.stats().locked_bytes;
        drop(p);
        charged
    };
    assert_eq!(with(128 << 10), 128 << 10);
    assert_eq!(with(200 << 10), 128 << 10, "rounded down to a power of two");
    assert_eq!(with(1), PAGE, "at least a page");
    assert_eq!(with(64 << 20), CHUNK, "at most 2 MiB");
}

#[test]
fn per_page_long_term_pins_charge_per_page() {
    let m = Mm::new(MmConfig {
        initial_bytes: CHUNK,
        longterm_chunks: LongtermChunks::PerPage,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(m.longterm_chunk_bytes(), PAGE);
    let a = pin_longterm_pages(&m, 3 * PAGE, 2, GupFlags::empty()).unwrap();
    let b = pin_longterm_pages(&m, 9 * PAGE, 1, GupFlags::empty()).unwrap();
    assert_eq!(m.stats().locked_bytes, 3 * PAGE);
    assert_eq!(our_locked_kb(&m), 12);
    drop(a);
    assert_eq!((m.stats().locked_bytes, our_locked_kb(&m)), (PAGE, 4));
    drop(b);
    assert_eq!(m.stats().locked_bytes, 0);
}

/// #22.2: with no configuration, a THP-backed memory (this host's THP mode
/// is `always` or `madvise`) locks 2 MiB chunks; one with 4 KiB pages, or
/// whose memlock limit holds no chunk, charges per page.
#[test]
fn by_default_thp_backed_memories_lock_2_mib_chunks() {
    let thp_on = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|m| m.contains("[always]") || m.contains("[madvise]"));
    let m = Mm::new(MmConfig {
        initial_bytes: 2 * CHUNK,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(m.thp_backed(), thp_on);
    let want = if thp_on { CHUNK } else { PAGE };
    assert_eq!(m.longterm_chunk_bytes(), want);
    let a = pin_longterm_pages(&m, 3 * PAGE, 1, GupFlags::empty()).unwrap();
    let b = pin_longterm_pages_fast(&m, 4 * PAGE, 508, GupFlags::empty()).unwrap();
    assert_eq!(m.stats().locked_bytes, if thp_on { CHUNK } else { 509 * PAGE });
    assert_eq!(our_locked_kb(&m), m.stats().locked_bytes >> 10);
    drop((a, b));
    assert_eq!((m.stats().locked_bytes, our_locked_kb(&m)), (0, 0));

    let small_pages = Mm::new(MmConfig {
        initial_bytes: 2 * CHUNK,
        huge_pages: false,
        ..Default::default()
    })
    .unwrap();
    assert!(!small_pages.thp_backed());
    assert_eq!(small_pages.longterm_chunk_bytes(), PAGE);
    let tight = Mm::new(MmConfig {
        initial_bytes: 2 * CHUNK,
        memlock_limit_bytes: CHUNK - PAGE,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(tight.longterm_chunk_bytes(), PAGE, "a limit below one chunk");
}

#[test]
fn memories_of_2_mib_and_more_start_on_a_huge_page_boundary() {
    let m = mm(CHUNK, 64 << 20);
    assert_eq!(m.base() as u64 % CHUNK, 0);
    let small = Mm::new(MmConfig {
        huge_pages: false,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(small.base() as u64 % PAGE, 0);
}

/// No drift under concurrency: threads pin and unpin long-term, fast and
/// slow, over pages of a few chunks; the charge always equals what the
/// kernel says is locked at quiescent points and returns to 0.
#[test]
fn accounting_does_not_drift_under_concurrency() {
    let m = mm(4 * CHUNK, 64 << 20);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let m = &m;
            s.spawn(move || {
                let mut x = t * 7919 + 1;
                for _ in 0..3000 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let page = (x >> 33) % (4 * CHUNK_PAGES as u64 - 4);
                    let n = 1 + (x >> 20) as usize % 4;
                    let f = if x & 1 == 0 {
                        pin_longterm_pages_fast
                    } else {
                        pin_longterm_pages
                    };
                    let p = f(m, page * PAGE, n, GupFlags::empty()).unwrap();
                    assert!(m.stats().locked_bytes <= 4 * CHUNK);
                    if x & 2 == 0 {
                        p.unpin_dirty(true);
                    }
                }
            });
        }
    });
    let s = m.stats();
    assert_eq!(
        (s.locked_bytes, s.longterm_pinned_pages, s.pins_outstanding()),
        (0, 0, 0)
    );
    assert_eq!(our_locked_kb(&m), 0);
    for p in 0..4 * CHUNK_PAGES as u64 {
        assert_eq!(m.page_state(p * PAGE).unwrap().longterm, 0);
    }
}

/// wasmtime memories from a creator asked for chunks get them.
#[cfg(feature = "wasmtime")]
#[test]
fn a_creator_hands_its_chunk_size_to_its_memories() {
    let creator =
        runtime_mm::PinMemoryCreator::with_longterm_chunks(64 << 20, runtime_mm::LongtermChunks::Bytes(CHUNK));
    let engine = creator.build_engine(&mut wasmtime::Config::new()).unwrap();
    let module = wasmtime::Module::new(&engine, r#"(module (memory (export "memory") 64))"#).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let m = creator.mm_of_memory(&store, &memory).unwrap();
    let p = pin_longterm_pages(&m, 0, 1, GupFlags::empty()).unwrap();
    assert_eq!(m.stats().locked_bytes, CHUNK);
    drop(p);
    assert_eq!(m.stats().locked_bytes, 0);
}

/// A fast long-term call that stops inside a chunk (a page at its long-term
/// maximum) gives back exactly the reservations of the pages it did not
/// take, on that chunk: the charge stays exact and nothing is left over.
#[test]
fn a_fast_call_stopped_inside_a_chunk_gives_back_its_reservation() {
    let m = Mm::new(MmConfig {
        initial_bytes: 16 * PAGE,
        longterm_chunks: LongtermChunks::Bytes(4 * PAGE),
        ..Default::default()
    })
    .unwrap();
    // Chunk 1 (pages 4..8) is locked by a pin on page 4; page 6 is full.
    let keep = pin_longterm_pages(&m, 4 * PAGE, 1, GupFlags::empty()).unwrap();
    let full: Vec<_> = (0..65_535)
        .map(|_| pin_longterm_pages_fast(&m, 6 * PAGE, 1, GupFlags::empty()).unwrap())
        .collect();
    assert_eq!(m.stats().locked_bytes, 4 * PAGE);
    // Pages 4 and 5 are taken lock-free, page 6 refuses, the locked path
    // takes nothing more: two pages.
    let p = pin_longterm_pages_fast(&m, 4 * PAGE, 4, GupFlags::empty()).unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(m.page_state(7 * PAGE).unwrap().longterm, 0);
    assert_eq!(m.stats().locked_bytes, 4 * PAGE, "one chunk, charged once");
    drop(full);
    drop(keep);
    assert_eq!(m.stats().locked_bytes, 4 * PAGE, "p still holds pages 4 and 5");
    drop(p);
    let s = m.stats();
    assert_eq!(
        (s.locked_bytes, s.longterm_pinned_pages, s.pins_outstanding()),
        (0, 0, 0)
    );
    // The chunk word is empty again: a new pin locks the chunk afresh.
    let again = pin_longterm_pages_fast(&m, 7 * PAGE, 1, GupFlags::empty()).unwrap();
    assert_eq!(m.stats().locked_bytes, 4 * PAGE);
    drop(again);
    assert_eq!(m.stats().locked_bytes, 0);
}

/// One call that must lock (and later unlock) two runs separated by pages
/// another pin keeps locked: exactly those runs change, checked per page in
/// smaps (`Locked:` of the memory's mappings), whatever the runs' offsets.
#[test]
fn separate_runs_of_one_call_lock_and_unlock_exactly_themselves() {
    let m = Mm::new(MmConfig {
        initial_bytes: 16 * PAGE,
        memlock_limit_bytes: 64 * PAGE,
        ..Default::default()
    })
    .unwrap();
    let middle = pin_longterm_pages(&m, 6 * PAGE, 3, GupFlags::empty()).unwrap();
    // Lacking: pages 3..6 and 9..10 (3 × 3 = 9: a product is not adjacency).
    let wide = pin_longterm_pages(&m, 3 * PAGE, 7, GupFlags::empty()).unwrap();
    let want: Vec<u64> = (3..10).collect();
    assert_eq!(locked_pages(&m, 16), want);
    assert_eq!(m.stats().locked_bytes, 7 * PAGE);
    drop(wide);
    assert_eq!(locked_pages(&m, 16), vec![6, 7, 8]);
    assert_eq!(m.stats().locked_bytes, 3 * PAGE);
    drop(middle);
    assert!(locked_pages(&m, 16).is_empty());
}

/// The same with 2-page chunks, where a run's start × length can equal the
/// next run's start (4 × 2 = 8) with a held chunk (6..8) between them: a
/// merge test on anything but adjacency would lock or unlock the wrong pages.
#[test]
fn runs_split_by_a_held_chunk_stay_separate() {
    let m = Mm::new(MmConfig {
        initial_bytes: 16 * PAGE,
        memlock_limit_bytes: 64 * PAGE,
        longterm_chunks: LongtermChunks::Bytes(2 * PAGE),
        ..Default::default()
    })
    .unwrap();
    let middle = pin_longterm_pages(&m, 6 * PAGE, 2, GupFlags::empty()).unwrap();
    let wide = pin_longterm_pages(&m, 4 * PAGE, 6, GupFlags::empty()).unwrap();
    assert_eq!(locked_pages(&m, 16), (4..10).collect::<Vec<_>>());
    drop(wide);
    assert_eq!(locked_pages(&m, 16), vec![6, 7]);
    assert_eq!(m.stats().locked_bytes, 2 * PAGE);
    drop(middle);
    assert!(locked_pages(&m, 16).is_empty());
}

/// A long-term range over an unlocked chunk followed by one already locked
/// locks the first and only the first: the locked chunk adds no (empty)
/// `mlock` run of its own, which `region::lock` would refuse.
#[test]
fn a_range_ending_in_a_locked_chunk_locks_only_the_rest() {
    let m = mm(3 * CHUNK, 64 << 20);
    let held = pin_longterm_pages(&m, CHUNK + PAGE, 1, GupFlags::empty()).unwrap();
    assert_eq!(m.stats().locked_bytes, CHUNK);
    for pin in [pin_longterm_pages, pin_longterm_pages_fast] {
        let both = pin(&m, CHUNK - PAGE, 4, GupFlags::WRITE).unwrap();
        assert_eq!(both.len(), 4);
        assert_eq!(m.stats().locked_bytes, 2 * CHUNK);
        assert_eq!(our_locked_kb(&m), 2 * CHUNK / 1024);
        drop(both);
        assert_eq!(m.stats().locked_bytes, CHUNK, "chunk 0 unlocked again");
    }
    drop(held);
    assert_eq!((m.stats().locked_bytes, our_locked_kb(&m)), (0, 0));
}

/// #22 (found by the soak): a long-term pin the memlock limit refuses
/// faults nothing in. It used to populate every page it asked for first
/// (64 MiB resident for a refused 64 MiB pin, until the slot's reset).
#[test]
fn a_refused_long_term_pin_leaves_nothing_resident() {
    const PAGES: u64 = 256;
    let m = Mm::new(MmConfig {
        initial_bytes: PAGES * PAGE,
        memlock_limit_bytes: 16 * PAGE,
        longterm_chunks: LongtermChunks::PerPage,
        huge_pages: false,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        pin_longterm_pages(&m, 0, PAGES as usize, GupFlags::WRITE).unwrap_err(),
        Errno::NoMem
    );
    let mut v = vec![0u8; PAGES as usize];
    // SAFETY: the memory's first PAGES pages are mapped for the life of `m`;
    // mincore writes one byte per page into `v`.
    let r = unsafe { libc::mincore(m.base().cast(), (PAGES * PAGE) as usize, v.as_mut_ptr()) };
    assert_eq!(r, 0);
    let resident = v.iter().filter(|b| *b & 1 == 1).count();
    assert_eq!(resident, 0, "pages made resident by a refused pin");
    assert!((0..PAGES).all(|p| !m.page_state(p * PAGE).unwrap().present));
    // A pin that fits still faults its pages in.
    let p = pin_longterm_pages(&m, 0, 16, GupFlags::WRITE).unwrap();
    assert!(m.page_state(15 * PAGE).unwrap().present);
    drop(p);
}
