//! Gaps a mutation run of `runtime-mm` found (issue 14), host level: which
//! pages long-term pins really lock (`/proc/self/smaps`), also after a
//! long-term range stopped halfway by a full counter, and which pages the
//! locked path really makes resident (`mincore`).
//!
//! Memories here stay under 2 MiB so that no transparent huge page can make
//! a neighbour resident, and their memlock limit stays at 128 KiB or less;
//! they lock per page (the default) except in the one test that opts into
//! long-term chunks.

use runtime_mm::gup::*;
use runtime_mm::{Errno, GupFlags, LongtermChunks, Mm, MmConfig, PinnedPages};
use std::sync::Arc;

const PAGE: u64 = 4096;
/// Long-term pins one page can hold (a 16-bit field).
const LT_MAX: usize = (1 << 16) - 1;

fn mm(pages: u64) -> Arc<Mm> {
    Mm::new(MmConfig {
        initial_bytes: pages * PAGE,
        reservation_bytes: 64 * PAGE,
        memlock_limit_bytes: 128 << 10,
        ..Default::default()
    })
    .unwrap()
}

/// The pages of `[0, pages)` of `m` whose mapping is mlocked: `lo` in the
/// `VmFlags` of their VMA in `/proc/self/smaps` (`mlock` of part of a VMA
/// splits it, so VMAs give the exact locked ranges).
fn locked_pages(m: &Mm, pages: u64) -> Vec<u64> {
    let (base, end) = (m.base() as u64, m.base() as u64 + pages * PAGE);
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut vma = None;
    let mut locked = Vec::new();
    for line in smaps.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            let (lo, hi): (u64, u64) = vma.take().expect("VmFlags before its VMA");
            if flags.split_whitespace().any(|f| f == "lo") {
                locked.extend(
                    (lo.max(base)..hi.min(end))
                        .step_by(PAGE as usize)
                        .map(|a| (a - base) / PAGE),
                );
            }
        } else if let Some((lo, hi)) = line.split_whitespace().next().and_then(|r| r.split_once('-')) {
            if let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) {
                vma = Some((lo, hi));
            }
        }
    }
    locked
}

/// Whether each page of `[first, first + n)` of `m` is resident (`mincore`).
fn resident(m: &Mm, first: u64, n: u64) -> Vec<bool> {
    let mut vec = vec![0u8; n as usize];
    // SAFETY: the range lies in `m`'s reservation, mapped for the life of
    // `m`; mincore only reads the page tables and writes one byte per page
    // into `vec`, which has `n` bytes.
    let r = unsafe {
        libc::mincore(
            m.base().add((first * PAGE) as usize).cast(),
            (n * PAGE) as usize,
            vec.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().map(|v| v & 1 != 0).collect()
}

/// The pages `[from, to)`, for comparing with `locked_pages`.
fn pages(runs: &[(u64, u64)]) -> Vec<u64> {
    runs.iter().flat_map(|&(a, b)| a..b).collect()
}

/// Takes `LT_MAX` long-term pins of `page` (the first on the locked path,
/// the rest lock-free), so its long-term count is full.
fn fill_longterm(m: &Arc<Mm>, page: u64) -> Vec<PinnedPages> {
    let mut held = vec![pin_longterm_pages(m, page * PAGE, 1, GupFlags::empty()).unwrap()];
    while held.len() < LT_MAX {
        held.push(pin_longterm_pages_fast(m, page * PAGE, 1, GupFlags::empty()).unwrap());
    }
    assert_eq!(
        pin_longterm_pages_fast(m, page * PAGE, 1, GupFlags::empty()).unwrap_err(),
        Errno::Overflow
    );
    held
}

// ---------------------------------------------------------------------------
// 2. Which pages are mlocked.
// ---------------------------------------------------------------------------

/// Long-term pins lock exactly their pages, each once however many pins
/// share it, and a page is unlocked exactly when its last long-term pin
/// goes; short-term pins lock nothing. Checked page by page in the host's
/// mappings, not only by the charged figure.
#[test]
fn longterm_pins_lock_exactly_their_pages() {
    let m = mm(16);
    let check = |runs: &[(u64, u64)], what: &str| {
        let want = pages(runs);
        assert_eq!(locked_pages(&m, 16), want, "{what}: locked pages");
        assert_eq!(m.stats().locked_bytes, want.len() as u64 * PAGE, "{what}: charge");
        let res = resident(&m, 0, 16);
        assert!(
            want.iter().all(|&p| res[p as usize]),
            "{what}: a locked page is not resident"
        );
    };
    check(&[], "nothing pinned");
    let short = pin_user_pages(&m, 10 * PAGE, 3, GupFlags::WRITE).unwrap();
    check(&[], "short-term only");
    let a = pin_longterm_pages(&m, PAGE, 2, GupFlags::WRITE).unwrap();
    let b = pin_longterm_pages_fast(&m, 6 * PAGE, 2, GupFlags::WRITE).unwrap();
    check(&[(1, 3), (6, 8)], "two runs");
    // Lock-free over a's pages, then the locked path for page 3 alone.
    let h = pin_longterm_pages_fast(&m, PAGE, 3, GupFlags::empty()).unwrap();
    assert_eq!(h.len(), 3);
    check(&[(1, 4), (6, 8)], "a fast prefix and a locked rest");
    assert_eq!(m.page_state(4 * PAGE).unwrap().pins, 0);
    drop(h);
    check(&[(1, 3), (6, 8)], "h released");
    // Overlapping both: only the pages between are locked anew.
    let c = pin_longterm_pages_remote(&m, 2 * PAGE, 5, GupFlags::empty()).unwrap();
    check(&[(1, 8)], "bridged");
    drop(a);
    check(&[(2, 8)], "page 1 was a's alone");
    drop(c);
    check(&[(6, 8)], "b still holds 6..8");
    let d = pin_longterm_pages(&m, 11 * PAGE, 4, GupFlags::empty()).unwrap();
    check(&[(6, 8), (11, 15)], "under a short-term pin too");
    drop(b);
    check(&[(11, 15)], "b released");
    let e = pin_longterm_pages(&m, 0, 2, GupFlags::empty()).unwrap();
    check(&[(0, 2), (11, 15)], "from page 0");
    drop((short, d, e));
    check(&[], "all released");
    // Runs of new pages on both sides of a locked one (3, 4 | 5 | 6): each
    // run is locked where it is, not stretched over its neighbour.
    let f = pin_longterm_pages(&m, 5 * PAGE, 1, GupFlags::empty()).unwrap();
    let g = pin_longterm_pages(&m, 3 * PAGE, 4, GupFlags::empty()).unwrap();
    check(&[(3, 7)], "around page 5");
    drop(f);
    check(&[(3, 7)], "g holds 3..7");
    drop(g);
    check(&[], "all released");
}

/// With `longterm_chunks`, long-term pins lock whole chunks (here 4
/// pages), clipped to the memory's length and extended when it grows, up
/// to exactly the memlock limit; more pins inside a locked chunk are
/// lock-free. A discard of unpinned pages zeroes them in place where a
/// chunk keeps them locked (they stay resident, as the charge says) and
/// drops them elsewhere, also past a chunk's locked extent.
#[test]
fn longterm_chunks_lock_whole_chunks() {
    let m = Mm::new(MmConfig {
        initial_bytes: 14 * PAGE,
        reservation_bytes: 64 * PAGE,
        memlock_limit_bytes: 16 * PAGE,
        longterm_chunks: LongtermChunks::Bytes(4 * PAGE),
        ..Default::default()
    })
    .unwrap();
    let check = |runs: &[(u64, u64)], what: &str| {
        let want = pages(runs);
        assert_eq!(locked_pages(&m, 16), want, "{what}: locked pages");
        assert_eq!(m.stats().locked_bytes, want.len() as u64 * PAGE, "{what}: charge");
    };
    let a = pin_longterm_pages(&m, PAGE, 1, GupFlags::empty()).unwrap();
    check(&[(0, 4)], "one page locks its chunk");
    let b = pin_longterm_pages(&m, 6 * PAGE, 4, GupFlags::empty()).unwrap();
    check(&[(0, 12)], "two more chunks");
    let s0 = m.stats();
    let e = pin_longterm_pages_fast(&m, 5 * PAGE, 2, GupFlags::empty()).unwrap();
    let s1 = m.stats();
    assert_eq!(
        (s1.fast_path_pages - s0.fast_path_pages, s1.slow_path_pages),
        (2, s0.slow_path_pages),
        "inside a locked chunk: lock-free"
    );
    let c = pin_longterm_pages(&m, 13 * PAGE, 1, GupFlags::empty()).unwrap();
    check(&[(0, 14)], "the last chunk, clipped to the length");
    // Unpinned pages of locked chunks: zeroed in place, still resident.
    for page in [2, 4] {
        m.write(page * PAGE, &[7; 16]).unwrap();
        m.discard(page * PAGE, PAGE).unwrap();
        let mut buf = [1u8; 16];
        m.read(page * PAGE, &mut buf).unwrap();
        assert_eq!(buf, [0; 16], "page {page}");
        assert_eq!(resident(&m, page, 1), [true], "page {page}");
    }
    check(&[(0, 14)], "after discards inside locked chunks");
    // Grown past the last chunk's locked extent: page 14 is not locked, so
    // a discard drops it.
    m.grow_to(16 * PAGE).unwrap();
    m.write(14 * PAGE, &[7; 16]).unwrap();
    m.discard(14 * PAGE, PAGE).unwrap();
    assert_eq!(resident(&m, 14, 1), [false]);
    check(&[(0, 14)], "after growth");
    let d = pin_longterm_pages_fast(&m, 15 * PAGE, 1, GupFlags::empty()).unwrap();
    check(&[(0, 16)], "the last chunk, extended to the memlock limit");
    drop(a);
    check(&[(4, 16)], "chunk 0 released");
    // Unlocked now: a discard drops the pages.
    m.discard(0, 4 * PAGE).unwrap();
    assert_eq!(resident(&m, 0, 4), [false; 4]);
    drop((b, c, d, e));
    check(&[], "all released");
}

// ---------------------------------------------------------------------------
// 1. Rollback after a partial long-term take.
// ---------------------------------------------------------------------------

/// A long-term range that meets a page whose long-term count is full
/// stops there: the call takes the prefix before it, and the pages after
/// it that it had locked (all or nothing, before taking) are unlocked and
/// uncharged again, while pages that hold long-term pins of their own stay
/// locked. The charge equals what the held pins cover, page by page, and
/// returns to zero with them. For every long-term entry point.
#[test]
fn a_longterm_range_stopped_by_a_full_counter_unlocks_the_rest() {
    let m = mm(16);
    // Page 7 full; pages 4 and 9 held once (so a fast call takes page 4
    // lock-free and hands 5.. to the locked path).
    let full = fill_longterm(&m, 7);
    let four = pin_longterm_pages(&m, 4 * PAGE, 1, GupFlags::empty()).unwrap();
    let nine = pin_longterm_pages(&m, 9 * PAGE, 1, GupFlags::empty()).unwrap();
    let check = |runs: &[(u64, u64)], what: &str| {
        let want = pages(runs);
        assert_eq!(locked_pages(&m, 16), want, "{what}: locked pages");
        assert_eq!(m.stats().locked_bytes, want.len() as u64 * PAGE, "{what}: charge");
    };
    check(&[(4, 5), (7, 8), (9, 10)], "before");
    type PinFn = fn(&Arc<Mm>, u64, usize, GupFlags) -> Result<PinnedPages, Errno>;
    let takes: [(&str, PinFn, u64); 3] = [
        // Also lock-free first: its locked path is needed only to lock a chunk.
        ("pin_longterm_pages", pin_longterm_pages, 1),
        ("pin_longterm_pages_fast", pin_longterm_pages_fast, 1),
        ("pin_longterm_pages_remote", pin_longterm_pages_remote, 0),
    ];
    for (name, take, fast) in takes {
        // Pages 4..12: 4, 5, 6 taken; 7 full; 8, 10, 11 locked, then unlocked.
        let s0 = m.stats();
        let p = take(&m, 4 * PAGE, 8, GupFlags::WRITE).unwrap();
        assert_eq!((p.start(), p.len()), (4 * PAGE, 3), "{name}");
        let s1 = m.stats();
        assert_eq!(
            (
                s1.fast_path_pages - s0.fast_path_pages,
                s1.slow_path_pages - s0.slow_path_pages
            ),
            (fast, 3 - fast),
            "{name}"
        );
        assert_eq!(
            s1.fast_fallbacks - s0.fast_fallbacks,
            fast,
            "{name}: one fallback if fast"
        );
        check(&[(4, 8), (9, 10)], name);
        for (page, lt) in [
            (3, 0),
            (4, 2),
            (5, 1),
            (6, 1),
            (7, LT_MAX as u32),
            (8, 0),
            (9, 1),
            (10, 0),
            (11, 0),
        ] {
            let st = m.page_state(page * PAGE).unwrap();
            assert_eq!(st.longterm, lt, "{name}: long-term pins of page {page}");
            assert_eq!(st.pins, lt, "{name}: pins of page {page}");
        }
        assert_eq!(m.stats().longterm_pinned_pages, LT_MAX as u64 + 2 + 3, "{name}");
        // Starting on the full page: nothing taken, nothing left locked.
        assert_eq!(
            take(&m, 7 * PAGE, 5, GupFlags::empty()).unwrap_err(),
            Errno::Overflow,
            "{name}"
        );
        check(&[(4, 8), (9, 10)], name);
        drop(p);
        check(&[(4, 5), (7, 8), (9, 10)], name);
    }
    drop((four, nine));
    check(&[(7, 8)], "page 9 released");
    drop(full);
    check(&[], "all released");
    let s = m.stats();
    assert_eq!((s.longterm_pinned_pages, s.pins_outstanding()), (0, 0));
}

/// A short-term range stopped by a full counter (here a page's get count)
/// takes its prefix and leaves the long-term accounting alone: nothing is
/// uncharged on its behalf for the pages after the stop.
#[test]
fn a_short_term_range_stopped_by_a_full_counter_uncharges_nothing() {
    const GET_MAX: usize = (1 << 20) - 1;
    let m = mm(16);
    let lt = pin_longterm_pages(&m, PAGE, 4, GupFlags::empty()).unwrap();
    let mut gets = Vec::with_capacity(GET_MAX);
    while gets.len() < GET_MAX {
        gets.push(get_user_pages_fast(&m, 5 * PAGE, 1, GupFlags::empty()).unwrap());
    }
    // Pages 3..9: 3 and 4 (long-term pinned) taken, 5 full, 6..9 after it.
    for take in [get_user_pages, get_user_pages_fast, get_user_pages_remote] {
        let g = take(&m, 3 * PAGE, 6, GupFlags::empty()).unwrap();
        assert_eq!((g.start(), g.len()), (3 * PAGE, 2));
        assert_eq!(locked_pages(&m, 16), pages(&[(1, 5)]));
        assert_eq!(m.stats().locked_bytes, 4 * PAGE);
    }
    drop(gets);
    drop(lt);
    assert_eq!(m.stats().locked_bytes, 0);
    assert_eq!(locked_pages(&m, 16), []);
}

// ---------------------------------------------------------------------------
// 9. Residency: what the locked path populates, and what discard drops.
// ---------------------------------------------------------------------------

/// The locked path populates the pages it takes (they are resident after
/// the call, before anyone touches them) and only those; a `NOWAIT` call
/// populates nothing; a discard makes the pages non-resident again.
#[test]
fn the_locked_path_makes_exactly_its_pages_resident() {
    let m = mm(32);
    assert!(
        resident(&m, 0, 32).iter().all(|&r| !r),
        "a fresh memory is not resident"
    );
    let want = |runs: &[(u64, u64)]| {
        let p = pages(runs);
        (0..32).map(|i| p.contains(&i)).collect::<Vec<_>>()
    };
    let a = pin_user_pages(&m, 4 * PAGE, 4, GupFlags::empty()).unwrap();
    assert_eq!(resident(&m, 0, 32), want(&[(4, 8)]), "after a locked pin");
    let b = get_user_pages(&m, 12 * PAGE, 2, GupFlags::empty()).unwrap();
    let c = pin_longterm_pages(&m, 20 * PAGE, 3, GupFlags::empty()).unwrap();
    assert_eq!(resident(&m, 0, 32), want(&[(4, 8), (12, 14), (20, 23)]));
    assert_eq!(
        pin_user_pages(&m, 24 * PAGE, 2, GupFlags::NOWAIT).unwrap_err(),
        Errno::Again
    );
    assert!(!resident(&m, 24, 1)[0], "NOWAIT faults nothing in");
    drop((a, b, c));
    assert_eq!(
        resident(&m, 0, 32),
        want(&[(4, 8), (12, 14), (20, 23)]),
        "a release keeps the pages"
    );
    m.discard(4 * PAGE, 10 * PAGE).unwrap();
    assert_eq!(resident(&m, 0, 32), want(&[(20, 23)]), "a discard drops them");
    assert!(!m.page_state(5 * PAGE).unwrap().present);
    assert_eq!(m.stats().locked_bytes, 0);
}
