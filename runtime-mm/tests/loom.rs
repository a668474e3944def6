//! loom models of the races in the fast-path protocol (see `fast_path.rs`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p runtime-mm
//! --no-default-features --release --test loom` (`.ci/run` does, in its own
//! target directory so wasmtime is not rebuilt).
#![cfg(loom)]

use loom::thread;
use runtime_mm::{gup, Errno, GupFlags, LongtermChunks, Mm, MmConfig};
use std::sync::Arc;

const PAGE: u64 = 4096;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

fn mm(pages: u64, memlock_pages: u64) -> Arc<Mm> {
    Mm::new(MmConfig {
        initial_bytes: pages * PAGE,
        reservation_bytes: pages * PAGE,
        guard_bytes: 0,
        memlock_limit_bytes: memlock_pages * PAGE,
        ..Default::default()
    })
    .unwrap()
}

/// Fault pages in so the fast path has something to take.
fn present(mm: &Arc<Mm>, pages: usize) {
    drop(gup::pin_user_pages(mm, 0, pages, GupFlags::empty()).unwrap());
}

#[test]
fn fast_pin_races_discard() {
    model(|| {
        let mm = mm(2, 0);
        present(&mm, 2);
        mm.write(0, &[1]).unwrap();
        let m = mm.clone();
        let pinner = thread::spawn(move || {
            let p = gup::pin_user_pages_fast(&m, 0, 2, GupFlags::WRITE).unwrap();
            // While held, every page is present and not being discarded.
            for i in 0..p.len() as u64 {
                let st = m.page_state(i * PAGE).unwrap();
                assert!(st.present && st.pins == 1, "{st:?}");
            }
            let mut b = [0];
            p.read(0, &mut b).unwrap();
            p.write(0, &[2]).unwrap();
            b[0]
        });
        let discarded = mm.discard(0, 2 * PAGE);
        let seen = pinner.join().unwrap();
        match discarded {
            // Discard came first: the pin saw zeros and wrote after.
            Ok(()) if seen == 0 => {}
            // Or the pin ran entirely before the discard.
            Ok(()) => assert_eq!(seen, 1),
            // Busy only while the pin was held, and then nothing was dropped.
            Err(e) => {
                assert_eq!(e, Errno::Busy);
                assert_eq!(seen, 1);
            }
        }
        let mut b = [9];
        mm.read(0, &mut b).unwrap();
        // The pin's write survives unless the discard ran after the unpin.
        assert!(b[0] == 2 || (discarded.is_ok() && seen == 1 && b[0] == 0), "{b:?}");
        let s = mm.stats();
        assert_eq!(s.pins_outstanding(), 0);
        assert!(!mm.page_maybe_dma_pinned(0));
    });
}

#[test]
fn last_unpin_races_discard_and_grow() {
    model(|| {
        let mm = Mm::new(MmConfig {
            initial_bytes: PAGE,
            reservation_bytes: 2 * PAGE,
            guard_bytes: 0,
            ..Default::default()
        })
        .unwrap();
        let held = gup::pin_user_pages_fast(&mm, 0, 1, GupFlags::WRITE).unwrap();
        held.write(0, &[5]).unwrap();
        let unpinner = thread::spawn(move || held.unpin_dirty(true));
        let m = mm.clone();
        let grower = thread::spawn(move || m.grow_to(2 * PAGE).unwrap());
        let discarded = mm.discard(0, PAGE);
        unpinner.join().unwrap();
        grower.join().unwrap();
        let st = mm.page_state(0).unwrap();
        assert_eq!(st.pins, 0);
        let mut b = [9];
        mm.read(0, &mut b).unwrap();
        match discarded {
            Ok(()) => assert_eq!((b[0], st.present, st.dirty), (0, false, false)),
            Err(e) => assert_eq!((e, b[0], st.present, st.dirty), (Errno::Busy, 5, true, true)),
        }
        assert_eq!(mm.len(), 2 * PAGE);
        // The grown page can be pinned; the discarded one is faulted in again.
        let p = gup::pin_user_pages_fast(&mm, 0, 2, GupFlags::empty()).unwrap();
        assert_eq!(p.len(), 2);
    });
}

#[test]
fn longterm_pins_race_the_memlock_limit() {
    model(|| {
        // One page of memlock, two threads wanting different pages.
        let mm = mm(2, 1);
        let spawn = |page: u64| {
            let m = mm.clone();
            thread::spawn(move || {
                let r = gup::pin_longterm_pages_fast(&m, page * PAGE, 1, GupFlags::empty());
                assert!(m.stats().locked_bytes <= PAGE);
                r.map(|p| p.len())
            })
        };
        let (a, b) = (spawn(0), spawn(1));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        // Exactly one wins; the pins were dropped at the end of each thread.
        assert!(matches!(
            (a, b),
            (Ok(1), Err(Errno::NoMem)) | (Err(Errno::NoMem), Ok(1)) | (Ok(1), Ok(1))
        ));
        let s = mm.stats();
        assert_eq!(
            (s.locked_bytes, s.longterm_pinned_pages, s.pins_outstanding()),
            (0, 0, 0)
        );
    });
}

#[test]
fn fast_longterm_pin_races_last_longterm_unpin() {
    model(|| {
        let mm = mm(1, 1);
        let held = gup::pin_longterm_pages(&mm, 0, 1, GupFlags::empty()).unwrap();
        let unpinner = thread::spawn(move || held.unpin());
        let p = gup::pin_longterm_pages_fast(&mm, 0, 1, GupFlags::empty()).unwrap();
        // Whichever order: our pin holds the page locked and charged once.
        assert!(mm.stats().locked_bytes <= PAGE);
        unpinner.join().unwrap();
        let st = mm.page_state(0).unwrap();
        assert_eq!((st.pins, st.longterm), (1, 1));
        assert_eq!(mm.stats().locked_bytes, PAGE);
        drop(p);
        assert_eq!(mm.stats().locked_bytes, 0);
    });
}

/// A memory of `pages` whose long-term pins lock 2-page chunks.
fn chunked(pages: u64) -> Arc<Mm> {
    Mm::new(MmConfig {
        initial_bytes: pages * PAGE,
        reservation_bytes: pages * PAGE,
        guard_bytes: 0,
        memlock_limit_bytes: pages * PAGE,
        longterm_chunks: LongtermChunks::Bytes(2 * PAGE),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn fast_longterm_pin_races_the_last_unpin_of_its_chunk() {
    model(|| {
        // The held pin is on page 0, the new one on page 1: same chunk, so
        // the new pin is lock-free if it reserves before the chunk's last
        // release, and relocks the chunk on the slow path if after.
        let mm = chunked(2);
        let held = gup::pin_longterm_pages(&mm, 0, 1, GupFlags::empty()).unwrap();
        let unpinner = thread::spawn(move || held.unpin());
        let p = gup::pin_longterm_pages_fast(&mm, PAGE, 1, GupFlags::empty()).unwrap();
        assert_eq!(mm.stats().locked_bytes, 2 * PAGE, "our pin's chunk is locked");
        unpinner.join().unwrap();
        assert_eq!(mm.page_state(PAGE).unwrap().longterm, 1);
        assert_eq!(mm.page_state(0).unwrap().longterm, 0);
        assert_eq!(mm.stats().locked_bytes, 2 * PAGE);
        drop(p);
        assert_eq!(mm.stats().locked_bytes, 0);
    });
}

#[test]
fn fast_longterm_pin_gives_back_a_page_discard_froze() {
    model(|| {
        // Page 0 keeps the chunk locked. A fast pin of both pages reserves
        // two pins on the chunk, then may find page 1 frozen by a discard:
        // it gives that reservation back and takes page 1 on the slow path.
        let mm = chunked(2);
        let held = gup::pin_longterm_pages(&mm, 0, 1, GupFlags::empty()).unwrap();
        let m = mm.clone();
        let discarder = thread::spawn(move || m.discard(PAGE, PAGE));
        let p = gup::pin_longterm_pages_fast(&mm, 0, 2, GupFlags::empty()).unwrap();
        assert_eq!(p.len(), 2);
        let d = discarder.join().unwrap();
        assert!(matches!(d, Ok(()) | Err(Errno::Busy)), "{d:?}");
        assert_eq!(mm.stats().locked_bytes, 2 * PAGE);
        drop(held);
        assert_eq!(mm.stats().locked_bytes, 2 * PAGE, "p still holds both pages");
        drop(p);
        let s = mm.stats();
        assert_eq!(
            (s.locked_bytes, s.longterm_pinned_pages, s.pins_outstanding()),
            (0, 0, 0)
        );
        // The chunk word came back to empty: a new pin locks it afresh.
        let again = gup::pin_longterm_pages_fast(&mm, PAGE, 1, GupFlags::empty()).unwrap();
        assert_eq!(mm.stats().locked_bytes, 2 * PAGE);
        drop(again);
        assert_eq!(mm.stats().locked_bytes, 0);
    });
}

#[test]
fn fast_pins_race_each_other_and_a_get() {
    model(|| {
        let mm = mm(2, 0);
        present(&mm, 2);
        let spawn = || {
            let m = mm.clone();
            thread::spawn(move || gup::pin_user_pages_fast(&m, 0, 2, GupFlags::empty()).unwrap())
        };
        let (a, b) = (spawn(), spawn());
        let g = gup::get_user_pages_fast(&mm, PAGE, 1, GupFlags::empty()).unwrap();
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        let st = mm.page_state(PAGE).unwrap();
        assert_eq!((st.pins, st.gets), (2, 1));
        drop((a, b, g));
        assert_eq!(
            mm.page_state(PAGE).unwrap(),
            runtime_mm::PageState {
                present: true,
                ..Default::default()
            }
        );
    });
}

/// Issue 12.1: the fast path takes fresh (never populated) pages. A fast
/// pin of the page a concurrent `grow` adds either sees the old length (and
/// the locked path then decides) or the new one, whose leaf exists; and a
/// fresh page raced by a discard is either pinned before (Busy) or after it.
#[test]
fn fresh_fast_pin_races_grow_and_discard() {
    model(|| {
        let mm = Mm::new(MmConfig {
            initial_bytes: PAGE,
            reservation_bytes: 2 * PAGE,
            guard_bytes: 0,
            ..Default::default()
        })
        .unwrap();
        let (m1, m2) = (mm.clone(), mm.clone());
        let pinner = thread::spawn(move || {
            let r = gup::pin_user_pages_fast(&m1, PAGE, 1, GupFlags::WRITE);
            if let Ok(p) = &r {
                // Inside the memory, mapped, writable through the pin.
                assert_eq!(p.len(), 1);
                p.write(0, &[5]).unwrap();
                assert!(m1.page_maybe_dma_pinned(PAGE));
            }
            r.map(drop)
        });
        let fresh = thread::spawn(move || {
            let p = gup::pin_user_pages_fast(&m2, 0, 1, GupFlags::WRITE).unwrap();
            p.write(0, &[3]).unwrap();
        });
        mm.grow_to(2 * PAGE).unwrap();
        let discarded = mm.discard(0, PAGE);
        fresh.join().unwrap();
        match pinner.join().unwrap() {
            Ok(()) | Err(Errno::Fault) => {}
            Err(e) => panic!("{e:?}"),
        }
        let mut b = [9];
        mm.read(0, &mut b).unwrap();
        // The fresh pin's write survives unless the discard ran after it.
        assert!(b[0] == 3 || (discarded.is_ok() && b[0] == 0), "{b:?} {discarded:?}");
        assert_eq!(mm.stats().pins_outstanding(), 0);
    });
}

/// Issue 12.2: under loom a block is 2 pages. A block pin (one CAS on the
/// block word) races a discard of only the block's second page and a dirty
/// test: the discard is Busy while the block pin lives, and the block-wide
/// dirty mark survives as per-page marks.
#[test]
fn block_pin_races_partial_discard_and_dirty_test() {
    model(|| {
        let mm = mm(2, 0);
        let m = mm.clone();
        let pinner = thread::spawn(move || {
            let p = gup::pin_user_pages_fast(&m, 0, 2, GupFlags::WRITE).unwrap();
            assert!(m.page_maybe_dma_pinned(PAGE));
            p.write(PAGE as usize, &[4]).unwrap();
            p.unpin_dirty(true);
        });
        let discarded = mm.discard(PAGE, PAGE);
        let cleared = mm.test_and_clear_dirty(0);
        pinner.join().unwrap();
        let mut b = [9];
        mm.read(PAGE, &mut b).unwrap();
        match discarded {
            Ok(()) => assert!(b[0] == 4 || b[0] == 0),
            Err(e) => {
                assert_eq!(e, Errno::Busy);
                assert_eq!(b[0], 4, "a refused discard dropped nothing");
            }
        }
        // Page 1 was marked dirty by the release unless the discard ran after it.
        let st = mm.page_state(PAGE).unwrap();
        assert!(st.dirty || (discarded.is_ok() && b[0] == 0), "{st:?}");
        // The test can only have cleared a mark the release set (one release),
        // and then nothing set it again; otherwise page 0 is dirty now.
        let dirty0 = mm.page_state(0).unwrap().dirty;
        assert!(cleared != dirty0, "cleared {cleared}, dirty {dirty0}");
        assert_eq!(mm.stats().pins_outstanding(), 0);
    });
}
