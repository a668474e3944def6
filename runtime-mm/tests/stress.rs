//! Stress: threads pin, unpin, get, put, discard and grow one shared memory
//! at once for a bounded time. Afterwards nothing is pinned, the stats
//! balance, and every page holds what its last writer wrote (or zeros, if a
//! discard was its last writer).

use runtime_mm::{gup, Errno, GupFlags, Mm, MmConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const PAGE: u64 = 4096;
const PAGES: u64 = 64;
const WRITERS: u64 = 4;

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn concurrent_gup_discard_and_grow_keep_every_invariant() {
    let secs = std::env::var("STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mm = Mm::new(MmConfig {
        initial_bytes: PAGES / 2 * PAGE,
        maximum_bytes: Some(PAGES * PAGE),
        reservation_bytes: PAGES * PAGE,
        memlock_limit_bytes: 8 * PAGE,
        ..Default::default()
    })
    .unwrap();
    // expected[p]: the value the owner of page p last wrote to all its words
    // (0 after a successful discard).
    let expected: Arc<Vec<AtomicU64>> = Arc::new((0..PAGES).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let threads = WRITERS as usize + 3;
    let barrier = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::new();

    // Writers: thread t owns pages p with p % WRITERS == t. It writes a page
    // only through a write pin, and discards only its own pages.
    for t in 0..WRITERS {
        let (mm, expected, stop, barrier) = (mm.clone(), expected.clone(), stop.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || {
            let mut x = 0x9e37_79b9 + t;
            let mut ops = 0u64;
            barrier.wait();
            while !stop.load(Ordering::Relaxed) {
                let len_pages = mm.len() / PAGE;
                let page = (xorshift(&mut x) % (PAGES / WRITERS)) * WRITERS + t;
                if page >= len_pages {
                    continue;
                }
                match xorshift(&mut x) % 8 {
                    0 => match mm.discard(page * PAGE, PAGE) {
                        Ok(()) => expected[page as usize].store(0, Ordering::Relaxed),
                        Err(e) => assert_eq!(e, Errno::Busy),
                    },
                    k => {
                        let value = xorshift(&mut x) | 1;
                        let pin = match k {
                            1 => gup::pin_longterm_pages_fast(&mm, page * PAGE, 1, GupFlags::WRITE),
                            2 => gup::pin_user_pages(&mm, page * PAGE, 1, GupFlags::WRITE),
                            _ => gup::pin_user_pages_fast(&mm, page * PAGE, 1, GupFlags::WRITE),
                        };
                        let Ok(pin) = pin else {
                            continue; // NoMem: the memlock limit is shared
                        };
                        let words: Vec<u8> = std::iter::repeat_n(value.to_le_bytes(), (PAGE / 8) as usize)
                            .flatten()
                            .collect();
                        pin.write(0, &words).unwrap();
                        expected[page as usize].store(value, Ordering::Relaxed);
                        pin.unpin_dirty(true);
                    }
                }
                ops += 1;
            }
            ops
        }));
    }
    // Readers: pins and gets on any pages, held briefly, racing the discards.
    for r in 0..2u64 {
        let (mm, stop, barrier) = (mm.clone(), stop.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || {
            let mut x = 0x1234_5678 + r;
            let mut ops = 0;
            barrier.wait();
            while !stop.load(Ordering::Relaxed) {
                let start = (xorshift(&mut x) % PAGES) * PAGE;
                let n = 1 + (xorshift(&mut x) % 8) as usize;
                if xorshift(&mut x).is_multiple_of(2) {
                    if let Ok(p) = gup::pin_user_pages_fast(&mm, start, n, GupFlags::empty()) {
                        assert!(mm.page_maybe_dma_pinned(p.start()));
                        assert!(mm.page_state(p.start()).unwrap().present);
                    }
                } else if let Ok(g) = gup::get_user_pages_fast(&mm, start, n, GupFlags::empty()) {
                    assert!(mm.page_state(g.start()).unwrap().gets > 0);
                }
                ops += 1;
            }
            ops
        }));
    }
    // A grower.
    {
        let (mm, stop, barrier) = (mm.clone(), stop.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || {
            barrier.wait();
            let mut grown = 0;
            while !stop.load(Ordering::Relaxed) && mm.len() < PAGES * PAGE {
                std::thread::sleep(Duration::from_millis(50));
                mm.grow_to(mm.len() + PAGE).unwrap();
                grown += 1;
            }
            grown
        }));
    }
    barrier.wait();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let ops: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    println!(
        "stress: {secs} s, ops per thread {ops:?}, {:?} elapsed",
        started.elapsed()
    );
    assert!(
        ops[..WRITERS as usize].iter().all(|&n| n > 100),
        "writers made progress: {ops:?}"
    );

    let s = mm.stats();
    assert_eq!(
        (
            s.pins_outstanding(),
            s.gets_outstanding(),
            s.locked_bytes,
            s.longterm_pinned_pages
        ),
        (0, 0, 0, 0),
        "{s:?}"
    );
    assert!(s.fast_path_pages > 0 && s.slow_path_pages > 0);
    for p in 0..mm.len() / PAGE {
        let st = mm.page_state(p * PAGE).unwrap();
        assert_eq!((st.pins, st.gets, st.longterm), (0, 0, 0), "page {p}");
        let want = expected[p as usize].load(Ordering::Relaxed);
        let mut bytes = vec![0u8; PAGE as usize];
        mm.read(p * PAGE, &mut bytes).unwrap();
        for w in bytes.chunks_exact(8) {
            assert_eq!(
                u64::from_le_bytes(w.try_into().unwrap()),
                want,
                "page {p}: not what its last writer wrote"
            );
        }
    }
}
