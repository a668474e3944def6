//! Model-based test of range-level (block) counts: random pins and gets
//! (fast, so whole 2 MiB blocks are counted once, and locked, per page) over
//! ranges around block boundaries, dirty and clean releases, partial
//! discards and dirty tests, against a per-page model. After every step the
//! counts, present and dirty bits of the pages around every boundary must
//! equal the model's. `MODEL_CASES` sets the number of cases (default 300).

use proptest::prelude::*;
use runtime_mm::gup::*;
use runtime_mm::{Errno, GotPages, GupFlags, Mm, MmConfig, PinnedPages};
use std::sync::Arc;

const PAGE: u64 = 4096;
const BLOCK: u64 = 512;
const PAGES: u64 = 3 * BLOCK + 8;

/// Pages near the interesting places: block edges and the memory's end.
const POINTS: [u64; 10] = [0, 1, 255, 511, 512, 513, 1023, 1024, 1535, 1536];

#[derive(Debug, Clone)]
enum Op {
    Take { kind: u8, start: u64, nr: u64 },
    Release { index: usize, dirty: bool },
    Discard { start: u64, nr: u64 },
    ClearDirty { page: u64 },
}

fn point() -> impl Strategy<Value = u64> {
    (prop::sample::select(POINTS.to_vec()), -2i64..3).prop_map(|(p, d)| (p as i64 + d).clamp(0, PAGES as i64) as u64)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4u8, point(), prop::sample::select(vec![1u64, 2, 300, 511, 512, 513, 1024, 1100, 1600]))
            .prop_map(|(kind, start, nr)| Op::Take { kind, start, nr }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(index, dirty)| Op::Release { index, dirty }),
        2 => (point(), prop::sample::select(vec![1u64, 3, 512, 600])).prop_map(|(start, nr)| Op::Discard { start, nr }),
        1 => point().prop_map(|page| Op::ClearDirty { page }),
    ]
}

#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct Page {
    pins: u32,
    gets: u32,
    present: bool,
    dirty: bool,
}

enum Held {
    Pin(PinnedPages),
    Get(GotPages),
}

fn take(mm: &Arc<Mm>, kind: u8, start: u64, nr: u64) -> Result<Held, Errno> {
    let (a, n, f) = (start * PAGE, nr as usize, GupFlags::WRITE);
    match kind {
        0 => pin_user_pages_fast(mm, a, n, f).map(Held::Pin),
        1 => get_user_pages_fast(mm, a, n, f).map(Held::Get),
        2 => pin_user_pages(mm, a, n, f).map(Held::Pin),
        _ => get_user_pages(mm, a, n, f).map(Held::Get),
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mm = Mm::new(MmConfig {
        initial_bytes: PAGES * PAGE,
        reservation_bytes: 4 * BLOCK * PAGE,
        ..Default::default()
    })
    .unwrap();
    let mut model = vec![Page::default(); PAGES as usize];
    let mut held: Vec<(Held, bool, u64, u64)> = Vec::new();
    for op in ops {
        match op {
            Op::Take { kind, start, nr } => {
                let r = take(&mm, kind, start, nr);
                if start >= PAGES {
                    prop_assert_eq!(r.err(), Some(Errno::Fault));
                    continue;
                }
                let h = r.unwrap();
                let n = nr.min(PAGES - start);
                let len = match &h {
                    Held::Pin(p) => p.len(),
                    Held::Get(g) => g.len(),
                } as u64;
                prop_assert_eq!(len, n);
                let is_pin = kind % 2 == 0;
                for p in &mut model[start as usize..(start + n) as usize] {
                    *p = Page {
                        pins: p.pins + is_pin as u32,
                        gets: p.gets + !is_pin as u32,
                        present: true,
                        dirty: p.dirty,
                    };
                }
                held.push((h, is_pin, start, n));
            }
            Op::Release { index, dirty } => {
                if held.is_empty() {
                    continue;
                }
                let (h, is_pin, start, n) = held.remove(index % held.len());
                match h {
                    Held::Pin(p) => p.unpin_dirty(dirty),
                    Held::Get(g) => g.put_dirty(dirty),
                }
                for p in &mut model[start as usize..(start + n) as usize] {
                    p.pins -= is_pin as u32;
                    p.gets -= !is_pin as u32;
                    p.dirty |= dirty;
                }
            }
            Op::Discard { start, nr } => {
                let r = mm.discard(start * PAGE, nr * PAGE);
                let end = start + nr;
                if end > PAGES {
                    prop_assert_eq!(r, Err(Errno::Fault));
                } else if model[start as usize..end as usize].iter().any(|p| p.pins + p.gets > 0) {
                    prop_assert_eq!(r, Err(Errno::Busy));
                } else {
                    prop_assert_eq!(r, Ok(()));
                    for p in &mut model[start as usize..end as usize] {
                        (p.present, p.dirty) = (false, false);
                    }
                }
            }
            Op::ClearDirty { page } => {
                if page < PAGES {
                    let was = mm.test_and_clear_dirty(page * PAGE);
                    prop_assert_eq!(was, model[page as usize].dirty, "dirty of page {}", page);
                    model[page as usize].dirty = false;
                }
            }
        }
        for &c in &POINTS {
            for p in c.saturating_sub(2)..(c + 3).min(PAGES) {
                let st = mm.page_state(p * PAGE).unwrap();
                let m = model[p as usize];
                prop_assert_eq!((st.pins, st.gets), (m.pins, m.gets), "counts of page {}", p);
                prop_assert_eq!((st.present, st.dirty), (m.present, m.dirty), "bits of page {}", p);
                prop_assert_eq!(mm.page_maybe_dma_pinned(p * PAGE), m.pins > 0);
            }
        }
        let outstanding: u64 = held.iter().filter(|h| h.1).map(|h| h.3).sum();
        prop_assert_eq!(mm.stats().pins_outstanding(), outstanding);
    }
    drop(held);
    prop_assert_eq!(mm.stats().pins_outstanding(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
    ))]
    #[test]
    fn block_counts_match_the_per_page_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
