//! Gaps a mutation run of `runtime-mm` found (issue 14), API level: refused
//! discards, growth edges, addresses past the first GiB, tolerated caller
//! bits, lock-freedom of served fast calls, and the public functions no
//! test asserted. Residency and mlock are in `gaps_residency.rs`, heap
//! leaks in `gaps_alloc.rs`.

use runtime_mm::gup::*;
use runtime_mm::{Errno, GotPages, GupFlags, LongtermChunks, Mm, MmConfig, MmStats, PageState, PinnedPages};
use std::sync::Arc;

const PAGE: u64 = 4096;
const BLOCK: u64 = 512;
const GIB: u64 = 1 << 30;

fn mm(pages: u64) -> Arc<Mm> {
    Mm::new(MmConfig {
        initial_bytes: pages * PAGE,
        reservation_bytes: 1 << 30,
        memlock_limit_bytes: 128 << 10,
        ..Default::default()
    })
    .unwrap()
}

/// Every page's decoded state and every byte of the first `pages` pages.
fn snapshot(m: &Mm, pages: u64) -> (Vec<PageState>, Vec<u8>) {
    let states = (0..pages).map(|p| m.page_state(p * PAGE).unwrap()).collect();
    let mut bytes = vec![0u8; (pages * PAGE) as usize];
    m.read(0, &mut bytes).unwrap();
    (states, bytes)
}

/// Asserts two snapshots are equal, naming the first page that differs.
fn assert_same(before: &(Vec<PageState>, Vec<u8>), after: &(Vec<PageState>, Vec<u8>), what: &str) {
    for (p, (a, b)) in before.0.iter().zip(&after.0).enumerate() {
        assert_eq!(a, b, "{what}: state of page {p} changed");
    }
    if let Some(i) = before.1.iter().zip(&after.1).position(|(a, b)| a != b) {
        panic!("{what}: byte {i:#x} (page {}) changed", i as u64 / PAGE);
    }
}

// ---------------------------------------------------------------------------
// 3. A refused discard changes nothing.
// ---------------------------------------------------------------------------

/// A discard refused with `Busy` leaves every page as it was: counts,
/// present and dirty bits and bytes, also of the pages it froze before it
/// met the referenced one (it must thaw them: a page left frozen would make
/// every later fast call fall back to the lock), and also when what refuses
/// it is a whole-block pin taken by a fast call.
#[test]
fn a_refused_discard_changes_nothing() {
    const PAGES: u64 = 2 * BLOCK + 8;
    let m = mm(PAGES);
    let pattern: Vec<u8> = (0..PAGES * PAGE).map(|i| (i / PAGE % 251) as u8 | 1).collect();
    m.write(0, &pattern).unwrap();
    // Varied states: block 0 dirty as a whole (a released block pin), pages
    // 4..8 dirty per page, block 1 under a whole-block fast pin, page 300
    // pinned, page 301 got, page 1030 long-term pinned, 1024..1030 fresh.
    let block0 = pin_user_pages_fast(&m, 0, BLOCK as usize, GupFlags::WRITE).unwrap();
    block0.unpin_dirty(true);
    pin_user_pages(&m, 4 * PAGE, 4, GupFlags::WRITE)
        .unwrap()
        .unpin_dirty(true);
    let block1 = pin_user_pages_fast(&m, BLOCK * PAGE, BLOCK as usize, GupFlags::empty()).unwrap();
    let pin = pin_user_pages(&m, 300 * PAGE, 1, GupFlags::empty()).unwrap();
    let got = get_user_pages(&m, 301 * PAGE, 1, GupFlags::empty()).unwrap();
    let lt = pin_longterm_pages(&m, 1030 * PAGE, 1, GupFlags::empty()).unwrap();
    let before = snapshot(&m, PAGES);
    assert!(before.0[600].pins == 1 && before.0[200].dirty && before.0[1025] == PageState::default());

    for (first, n, why) in [
        (100, 300, "pages 100..300 frozen, then the pin on 300"),
        (299, 3, "page 299 frozen, then the pin on 300"),
        (301, 1, "the get on 301"),
        (400, 200, "block 0 frozen, then block 1's whole-block pin"),
        (BLOCK, 1, "a page under the whole-block pin"),
        (1024, 8, "pages 1024..1030 frozen, then the long-term pin"),
        (0, PAGES, "everything"),
    ] {
        assert_eq!(m.discard(first * PAGE, n * PAGE), Err(Errno::Busy), "{why}");
        assert_same(&before, &snapshot(&m, PAGES), why);
    }
    // Nothing stayed frozen: per-page fast calls over the pages the refused
    // discards froze are served lock-free, without a fallback.
    let s0 = m.stats();
    for (first, n) in [(100, 200), (400, 112), (1024, 6)] {
        let g = get_user_pages_fast(&m, first * PAGE, n as usize, GupFlags::empty()).unwrap();
        assert_eq!(g.len() as u64, n);
    }
    let s1 = m.stats();
    assert_eq!(s1.fast_path_pages - s0.fast_path_pages, 318);
    assert_eq!(
        (s1.fast_fallbacks, s1.slow_path_pages),
        (s0.fast_fallbacks, s0.slow_path_pages)
    );
    // (A fast get marks the fresh pages it hands out present.)
    let mut want = before.clone();
    want.0[1024..1030].iter_mut().for_each(|s| s.present = true);
    assert_same(&want, &snapshot(&m, PAGES), "the gets were put");
    // The free pages around the references still go; the held ones stay.
    m.discard(0, 300 * PAGE).unwrap();
    m.discard(1024 * PAGE, 6 * PAGE).unwrap();
    let after = snapshot(&m, PAGES);
    let at = |p: u64| (p * PAGE) as usize;
    assert!(after.1[..at(300)].iter().all(|&b| b == 0));
    assert_eq!(after.1[at(300)..at(1024)], before.1[at(300)..at(1024)]);
    assert!(after.1[at(1024)..at(1030)].iter().all(|&b| b == 0));
    assert_eq!(after.1[at(1030)..], before.1[at(1030)..]);
    assert!(!after.0[0].present && !after.0[299].dirty && after.0[302].dirty);
    drop((block1, pin, got, lt));
    m.discard(0, PAGES * PAGE).unwrap();
    let s = m.stats();
    assert_eq!((s.pins_outstanding(), s.gets_outstanding(), s.locked_bytes), (0, 0, 0));
}

// ---------------------------------------------------------------------------
// Found by a mutation run of these tests: fast takes and counts.
// ---------------------------------------------------------------------------

/// Fast takes only add bits: a page (or a whole block) that is present
/// stays present when the lock-free walk takes it again, per page or as a
/// block; and a fast call covering a block's worth of pages but not a
/// whole aligned block takes exactly its range, per page.
#[test]
fn fast_takes_keep_present_pages_present_and_stay_in_range() {
    let m = mm(3 * BLOCK);
    drop(pin_user_pages(&m, 0, 4, GupFlags::empty()).unwrap());
    let present = |p: u64| m.page_state(p * PAGE).unwrap().present;
    for round in 0..2 {
        drop(pin_user_pages_fast(&m, 0, 4, GupFlags::empty()).unwrap());
        assert!((0..4).all(present), "round {round}: a fast pin cleared PRESENT");
        drop(get_user_pages_fast(&m, 0, 4, GupFlags::empty()).unwrap());
        assert!((0..4).all(present), "round {round}: a fast get cleared PRESENT");
        drop(pin_user_pages_fast(&m, BLOCK * PAGE, BLOCK as usize, GupFlags::empty()).unwrap());
        assert!(present(BLOCK) && present(2 * BLOCK - 1), "round {round}: block");
    }
    // 12 head pages, then 508 < BLOCK: no block, per page to the end.
    let p = pin_user_pages_fast(&m, 500 * PAGE, 520, GupFlags::empty()).unwrap();
    assert_eq!(p.len(), 520);
    for (page, pinned) in [
        (499, false),
        (500, true),
        (511, true),
        (512, true),
        (1019, true),
        (1020, false),
    ] {
        assert_eq!(m.page_maybe_dma_pinned(page * PAGE), pinned, "page {page}");
    }
    drop(p);
    // A page's counts are its entry's plus its block's.
    let blk = get_user_pages_fast(&m, BLOCK * PAGE, BLOCK as usize, GupFlags::empty()).unwrap();
    let one = get_user_pages(&m, 700 * PAGE, 1, GupFlags::empty()).unwrap();
    let pin = pin_user_pages_fast(&m, BLOCK * PAGE, BLOCK as usize, GupFlags::empty()).unwrap();
    let pin1 = pin_user_pages(&m, 700 * PAGE, 1, GupFlags::empty()).unwrap();
    let st = m.page_state(700 * PAGE).unwrap();
    assert_eq!((st.gets, st.pins), (2, 2));
    let st = m.page_state(701 * PAGE).unwrap();
    assert_eq!((st.gets, st.pins), (1, 1));
    drop((blk, one, pin, pin1));
    let s = m.stats();
    assert_eq!((s.pins_outstanding(), s.gets_outstanding()), (0, 0));
}

// ---------------------------------------------------------------------------
// 4. Growth edges.
// ---------------------------------------------------------------------------

/// A memory whose length is not page aligned: growth inside the last,
/// partial page keeps `len` exact and commits nothing new; no pin or get
/// covers the partial page (a pin never covers a byte past `len`) until the
/// page is whole; a discard may cover the partial page but not the next.
#[test]
fn growth_inside_a_partial_page_keeps_len_exact() {
    let m = Mm::new(MmConfig {
        initial_bytes: PAGE + 100,
        reservation_bytes: 16 * PAGE,
        ..Default::default()
    })
    .unwrap();
    let table = m.page_table_bytes();
    assert_eq!(m.len(), PAGE + 100);
    m.write(PAGE + 99, &[9]).unwrap();
    assert_eq!(m.write(PAGE + 100, &[9]), Err(Errno::Fault));
    m.grow_to(PAGE + 200).unwrap();
    assert_eq!(m.len(), PAGE + 200, "growth inside the page is exact");
    assert_eq!(m.page_table_bytes(), table, "no new node for the same page");
    // Smaller or equal: a no-op, not a shrink.
    m.grow_to(PAGE + 150).unwrap();
    m.grow_to(0).unwrap();
    assert_eq!(m.len(), PAGE + 200);
    let mut b = [1u8; 101];
    m.read(PAGE + 99, &mut b).unwrap();
    assert_eq!(b[0], 9, "old bytes kept");
    assert!(b[1..].iter().all(|&x| x == 0), "new bytes read as zero");
    assert_eq!(m.read(PAGE + 199, &mut [0; 2]), Err(Errno::Fault));

    // The partial page is not pinnable: a range stops before it, a range
    // starting on it is outside the memory.
    type Take = fn(&Arc<Mm>, u64, usize, GupFlags) -> Result<usize, Errno>;
    let takes: [(&str, Take); 5] = [
        ("pin", |m, a, n, f| pin_user_pages(m, a, n, f).map(|p| p.len())),
        ("pin_fast", |m, a, n, f| {
            pin_user_pages_fast(m, a, n, f).map(|p| p.len())
        }),
        ("longterm", |m, a, n, f| pin_longterm_pages(m, a, n, f).map(|p| p.len())),
        ("get", |m, a, n, f| get_user_pages(m, a, n, f).map(|p| p.len())),
        ("get_fast", |m, a, n, f| {
            get_user_pages_fast(m, a, n, f).map(|p| p.len())
        }),
    ];
    for (name, take) in takes {
        assert_eq!(take(&m, 0, 2, GupFlags::WRITE), Ok(1), "{name}");
        assert_eq!(take(&m, PAGE, 1, GupFlags::WRITE), Err(Errno::Fault), "{name}");
        // An empty range may start on it (it starts before `len`).
        assert_eq!(take(&m, PAGE, 0, GupFlags::WRITE), Ok(0), "{name}");
        assert_eq!(take(&m, 2 * PAGE, 0, GupFlags::WRITE), Err(Errno::Fault), "{name}");
    }
    assert!(!m.page_maybe_dma_pinned(PAGE));
    // Discard rounds up to the page: the partial page may go, not the next.
    assert_eq!(m.discard(PAGE, PAGE + 1), Err(Errno::Fault));
    assert_eq!(m.discard(PAGE, 2 * PAGE), Err(Errno::Fault));
    m.discard(PAGE, 200).unwrap();
    m.read(PAGE + 99, &mut b[..1]).unwrap();
    assert_eq!(b[0], 0);
    // Once whole, the page is pinnable.
    m.grow_to(2 * PAGE).unwrap();
    let p = pin_user_pages(&m, 0, 3, GupFlags::WRITE).unwrap();
    assert_eq!(p.len(), 2);
    assert!(m.page_maybe_dma_pinned(PAGE));
    drop(p);
    assert_eq!(m.stats().pins_outstanding(), 0);
}

const PROBE: &str = "WASM_PIN_GAPS_PROBE";
/// The growth steps of the probed memory, in bytes (0: as created).
const GROWTH: [u64; 7] = [0, PAGE + 100, PAGE + 200, 3 * PAGE, 3 * PAGE + 1, 8 * PAGE, 16 * PAGE];

/// In a child: builds the memory, grows it through `GROWTH[..=step]`, then
/// reads the byte at `offset` through a raw pointer.
fn probe_child(arg: &str) {
    let (step, offset) = arg.split_once(':').unwrap();
    let (step, offset): (usize, u64) = (step.parse().unwrap(), offset.parse().unwrap());
    let m = Mm::new(MmConfig {
        reservation_bytes: 16 * PAGE,
        guard_bytes: 16 * PAGE,
        ..Default::default()
    })
    .unwrap();
    for &bytes in &GROWTH[..=step] {
        m.grow_to(bytes).unwrap();
    }
    println!("probing {offset:#x} of len {:#x}", m.len());
    // SAFETY: `offset` is inside the reservation plus guard, so the address
    // is within the `Mm`'s own mapping; the parent expects the read to fault
    // (SIGSEGV, the child dies) exactly when the byte is not committed.
    let v = unsafe { std::ptr::read_volatile(m.base().add(offset as usize)) };
    println!("survived: {v}");
}

/// Runs `probe_child(step:offset)` in a child process; its exit status and
/// output.
fn probe(step: usize, offset: u64) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "bytes_past_len_fault_after_every_grow",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE, format!("{step}:{offset}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status, text)
}

/// After every growth, the first byte past the committed length (the
/// length rounded up to the page) faults, and the last byte before it does
/// not: growth commits exactly the pages `len` touches, inside a page and
/// across pages, up to the reservation, whose guard faults too.
#[test]
fn bytes_past_len_fault_after_every_grow() {
    use std::os::unix::process::ExitStatusExt;
    if let Ok(arg) = std::env::var(PROBE) {
        return probe_child(&arg);
    }
    for (step, &len) in GROWTH.iter().enumerate() {
        let end = len.next_multiple_of(PAGE);
        let (status, text) = probe(step, end);
        assert!(
            text.contains("probing"),
            "step {step}: the child did not get to the probe:\n{text}"
        );
        assert_eq!(
            status.signal(),
            Some(libc::SIGSEGV),
            "len {len:#x}: byte {end:#x} is accessible:\n{text}"
        );
        if end > 0 {
            let (status, text) = probe(step, end - 1);
            assert!(
                status.success() && text.contains("survived"),
                "len {len:#x}: byte {:#x} faults:\n{text}",
                end - 1
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 5. Addresses past the first GiB.
// ---------------------------------------------------------------------------

/// Pins, gets, long-term pins and discards at and around 1, 2 and 3 GiB and
/// on the last page of a 4 GiB memory, including ranges that cross a GiB
/// boundary (one root slot of the page table covers 1 GiB) per page and as
/// whole blocks. Exactly the right pages report pinned; neither their
/// neighbours nor the same offsets in another GiB (an aliasing radix split)
/// do.
#[test]
fn pages_past_the_first_gib_are_pinned_exactly() {
    let m = Mm::new(MmConfig {
        initial_bytes: 4 * GIB,
        memlock_limit_bytes: 128 << 10,
        ..Default::default()
    })
    .unwrap();
    let last = 4 * GIB - PAGE;
    // Every page we look at: around each GiB boundary and at both ends.
    let mut probes: Vec<u64> = vec![0, PAGE, 2 * PAGE, last - PAGE, last];
    for g in 1..4 {
        for d in -4i64..4 {
            probes.push((g * GIB).wrapping_add_signed(d * PAGE as i64));
        }
        for d in [
            -(BLOCK as i64) - 3,
            -(BLOCK as i64) - 2,
            BLOCK as i64 + 1,
            BLOCK as i64 + 2,
        ] {
            probes.push((g * GIB).wrapping_add_signed(d * PAGE as i64));
        }
    }
    let check = |what: &str, pins: &dyn Fn(u64) -> u32| {
        for &a in &probes {
            let want = pins(a);
            assert_eq!(m.page_state(a).unwrap().pins, want, "{what}: pins at {a:#x}");
            assert_eq!(m.page_maybe_dma_pinned(a), want > 0, "{what}: at {a:#x}");
        }
    };
    check("nothing held", &|_| 0);

    // Per page across each GiB boundary: pages [g - 2, g + 2).
    for g in 1..4 {
        let at = g * GIB;
        let p = pin_user_pages(&m, at - 2 * PAGE, 4, GupFlags::WRITE).unwrap();
        p.write(2 * PAGE as usize - 2, b"abcd").unwrap();
        let mut b = [0u8; 4];
        m.read(at - 2, &mut b).unwrap();
        assert_eq!(&b, b"abcd", "a write across {g} GiB");
        check(&format!("4 pages across {g} GiB"), &|a| {
            (at - 2 * PAGE..at + 2 * PAGE).contains(&a) as u32
        });
        assert_eq!(m.discard(at, PAGE), Err(Errno::Busy));
        assert_eq!(m.discard(at - 4 * PAGE, 2 * PAGE), Ok(()), "the pages before go");
        drop(p);
        m.discard(at - 2 * PAGE, 4 * PAGE).unwrap();
        assert!(!m.page_state(at).unwrap().present);
        m.read(at - 2, &mut b).unwrap();
        assert_eq!(b, [0; 4]);
    }

    // Fast, as whole blocks across 1 GiB: 2 head pages, 2 blocks, 2 tail pages.
    let from = GIB - (BLOCK + 2) * PAGE;
    let n = 2 * BLOCK + 4;
    let s0 = m.stats();
    let p = pin_user_pages_fast(&m, from, n as usize, GupFlags::empty()).unwrap();
    assert_eq!(p.len() as u64, n);
    assert_eq!(m.stats().fast_path_pages - s0.fast_path_pages, n);
    check("blocks across 1 GiB", &|a| (from..from + n * PAGE).contains(&a) as u32);
    assert_eq!(
        m.discard(GIB + 7 * PAGE, PAGE),
        Err(Errno::Busy),
        "under the second block"
    );
    assert_eq!(
        m.discard(GIB - 7 * PAGE, PAGE),
        Err(Errno::Busy),
        "under the first block"
    );
    let g = get_user_pages_fast(&m, GIB - PAGE, 2, GupFlags::empty()).unwrap();
    assert_eq!(m.page_state(GIB).unwrap().gets, 1);
    assert_eq!(m.page_state(GIB + PAGE).unwrap().gets, 0);
    drop((p, g));
    check("released", &|_| 0);

    // Long-term across 2 GiB: locked path first, then lock-free.
    let at = 2 * GIB;
    let lt = pin_longterm_pages(&m, at - PAGE, 2, GupFlags::WRITE).unwrap();
    let s0 = m.stats();
    let lt2 = pin_longterm_pages_fast(&m, at - PAGE, 2, GupFlags::WRITE).unwrap();
    assert_eq!(m.stats().fast_path_pages - s0.fast_path_pages, 2);
    assert_eq!(m.stats().locked_bytes, 2 * PAGE);
    for (a, want) in [
        (at - 2 * PAGE, 0),
        (at - PAGE, 2),
        (at, 2),
        (at + PAGE, 0),
        (GIB - PAGE, 0),
        (PAGE, 0),
    ] {
        let st = m.page_state(a).unwrap();
        assert_eq!((st.pins, st.longterm), (want, want), "at {a:#x}");
    }
    assert_eq!(m.discard(at, PAGE), Err(Errno::Busy));
    drop((lt, lt2));
    assert_eq!(m.stats().locked_bytes, 0);

    // The last page: ranges are clipped to it; the next address is outside.
    let p = pin_user_pages(&m, last, 2, GupFlags::WRITE).unwrap();
    assert_eq!(p.len(), 1);
    let g = get_user_pages_fast(&m, last, 1, GupFlags::empty()).unwrap();
    let lt = pin_longterm_pages_fast(&m, last, 1, GupFlags::empty()).unwrap();
    let st = m.page_state(last).unwrap();
    assert_eq!((st.pins, st.gets, st.longterm, st.present), (2, 1, 1, true));
    assert_eq!(m.page_state(last - PAGE).unwrap(), PageState::default());
    assert_eq!(m.page_state(4 * GIB), None);
    assert!(!m.page_maybe_dma_pinned(4 * GIB));
    assert_eq!(m.stats().locked_bytes, PAGE);
    assert_eq!(m.discard(last, PAGE), Err(Errno::Busy));
    assert_eq!(m.discard(last, 2 * PAGE), Err(Errno::Fault));
    assert_eq!(
        pin_user_pages_fast(&m, 4 * GIB, 1, GupFlags::empty()).unwrap_err(),
        Errno::Fault
    );
    p.write(PAGE as usize - 1, b"z").unwrap();
    p.unpin_dirty(true);
    drop((g, lt));
    assert!(m.test_and_clear_dirty(last + 5));
    assert!(!m.test_and_clear_dirty(last));
    assert!(!m.test_and_clear_dirty(last - PAGE));
    m.discard(last, PAGE).unwrap();
    assert!(!m.page_state(last).unwrap().present);
    check("all released", &|_| 0);
    let s = m.stats();
    assert_eq!((s.pins_outstanding(), s.gets_outstanding(), s.locked_bytes), (0, 0, 0));
}

// ---------------------------------------------------------------------------
// 6. Tolerated caller bits.
// ---------------------------------------------------------------------------

/// `GET` passed to a `get_user_pages*` call and `REMOTE` passed to a
/// `*_remote` call are accepted and change nothing: a get stays a get (not
/// a pin), remote pages are counted as remote once. Passed anywhere else
/// they are refused and nothing is counted.
#[test]
fn tolerated_caller_bits_change_nothing() {
    let m = mm(8);
    type GetFn = fn(&Arc<Mm>, u64, usize, GupFlags) -> Result<GotPages, Errno>;
    let gets: [(&str, GetFn, bool); 3] = [
        ("get_user_pages", get_user_pages, false),
        ("get_user_pages_fast", get_user_pages_fast, false),
        ("get_user_pages_remote", get_user_pages_remote, true),
    ];
    let mut held = Vec::new();
    for (i, (name, f, remote)) in gets.into_iter().enumerate() {
        let page = i as u64 * PAGE;
        let g = f(&m, page, 1, GupFlags::GET | GupFlags::WRITE).unwrap();
        let want = GupFlags::GET | GupFlags::WRITE | if remote { GupFlags::REMOTE } else { GupFlags::empty() };
        assert_eq!(g.flags(), want, "{name}");
        g.write(0, b"w").unwrap();
        let st = m.page_state(page).unwrap();
        assert_eq!((st.pins, st.gets), (0, 1), "{name}: GET takes a get");
        assert!(!m.page_maybe_dma_pinned(page), "{name}");
        held.push(g);
    }
    // REMOTE to the remote entry points, with GET too for the get.
    let g = get_user_pages_remote(&m, 4 * PAGE, 2, GupFlags::REMOTE | GupFlags::GET).unwrap();
    assert_eq!(g.flags(), GupFlags::GET | GupFlags::REMOTE);
    let p = pin_user_pages_remote(&m, 4 * PAGE, 2, GupFlags::REMOTE).unwrap();
    assert_eq!(p.flags(), GupFlags::PIN | GupFlags::REMOTE);
    let lt = pin_longterm_pages_remote(&m, 6 * PAGE, 1, GupFlags::REMOTE | GupFlags::WRITE).unwrap();
    assert_eq!(
        lt.flags(),
        GupFlags::PIN | GupFlags::LONGTERM | GupFlags::REMOTE | GupFlags::WRITE
    );
    assert_eq!(m.page_state(4 * PAGE).unwrap().gets, 1);
    assert_eq!(m.page_state(5 * PAGE).unwrap().pins, 1);
    let s = m.stats();
    assert_eq!(
        (
            s.foll_get_taken,
            s.foll_pin_acquired,
            s.remote_pages,
            s.longterm_pinned_pages
        ),
        (5, 3, 1 + 2 + 2 + 1, 1)
    );
    assert_eq!(s.locked_bytes, PAGE);
    // Anywhere else: refused before anything is taken or counted.
    let pin_fns: [PinFn; 5] = [
        pin_user_pages,
        pin_user_pages_fast,
        pin_longterm_pages,
        pin_longterm_pages_fast,
        pin_user_pages_remote,
    ];
    for (i, f) in pin_fns.into_iter().enumerate() {
        let bad = if i == 4 { GupFlags::GET } else { GupFlags::REMOTE };
        assert_eq!(f(&m, 7 * PAGE, 1, bad).unwrap_err(), Errno::Inval, "pin #{i} {bad:?}");
    }
    assert_eq!(
        pin_longterm_pages_remote(&m, 7 * PAGE, 1, GupFlags::GET).unwrap_err(),
        Errno::Inval
    );
    for f in [get_user_pages as GetFn, get_user_pages_fast] {
        assert_eq!(f(&m, 7 * PAGE, 1, GupFlags::REMOTE).unwrap_err(), Errno::Inval);
        assert_eq!(
            f(&m, 7 * PAGE, 1, GupFlags::REMOTE | GupFlags::GET).unwrap_err(),
            Errno::Inval
        );
    }
    assert_eq!(m.stats(), s, "a refused call counts nothing");
    assert_eq!(m.page_state(7 * PAGE).unwrap(), PageState::default());
    drop((held, g, p, lt));
    let s = m.stats();
    assert_eq!((s.pins_outstanding(), s.gets_outstanding(), s.locked_bytes), (0, 0, 0));
    assert_eq!(s.remote_pages, 6, "a release does not count as remote");
}

type PinFn = fn(&Arc<Mm>, u64, usize, GupFlags) -> Result<PinnedPages, Errno>;

// ---------------------------------------------------------------------------
// 7. Lock-freedom as a fact.
// ---------------------------------------------------------------------------

/// Whether the memory's lock is free now: a locked `NOWAIT` call on a page
/// that is already populated fails with `Again` only if it cannot get the
/// lock at once (the caller keeps page 0 populated).
fn lock_is_free(m: &Arc<Mm>) -> bool {
    match get_user_pages(m, 0, 1, GupFlags::NOWAIT) {
        Ok(g) => {
            assert_eq!(g.len(), 1);
            true
        }
        Err(e) => {
            assert_eq!(e, Errno::Again);
            false
        }
    }
}

/// What the fast calls took. Held until the lock is free again: the last
/// release of a long-term pin takes the lock.
type Taken = (Vec<PinnedPages>, GotPages);

/// The fast calls of the lock-freedom tests, on pages `8..24` of `m` (page
/// 8 already holds a long-term pin); `Ok` if each took all its pages.
fn fast_calls(m: &Arc<Mm>) -> Result<Taken, String> {
    let a = pin_user_pages_fast(m, 8 * PAGE, 16, GupFlags::WRITE).map_err(|e| format!("pin: {e}"))?;
    let b = pin_user_pages_fast(m, 8 * PAGE, 16, GupFlags::NOWAIT).map_err(|e| format!("nowait: {e}"))?;
    let c = get_user_pages_fast(m, 8 * PAGE, 16, GupFlags::empty()).map_err(|e| format!("get: {e}"))?;
    let d = pin_longterm_pages_fast(m, 8 * PAGE, 1, GupFlags::empty()).map_err(|e| format!("longterm: {e}"))?;
    let lens = [a.len(), b.len(), c.len(), d.len()];
    if lens != [16, 16, 16, 1] {
        return Err(format!("took {lens:?}"));
    }
    Ok((vec![a, b, d], c))
}

/// The memory for the lock-freedom tests: page 0 populated (for
/// `lock_is_free`), page 8 long-term pinned (so a fast long-term pin of it
/// needs no lock); the pin is returned.
fn lock_test_memory(bytes: u64) -> (Arc<Mm>, PinnedPages) {
    let m = Mm::new(MmConfig {
        initial_bytes: bytes,
        reservation_bytes: bytes,
        memlock_limit_bytes: 64 << 10,
        ..Default::default()
    })
    .unwrap();
    drop(pin_user_pages(&m, 0, 1, GupFlags::empty()).unwrap());
    let lt = pin_longterm_pages(&m, 8 * PAGE, 1, GupFlags::empty()).unwrap();
    (m, lt)
}

/// Asserts that the fast calls between the stats `s0` and `s1` were served
/// entirely lock-free.
fn assert_served_fast(s0: MmStats, s1: MmStats) {
    assert_eq!(s1.fast_path_pages - s0.fast_path_pages, 16 + 16 + 16 + 1);
    assert_eq!(
        (s1.fast_fallbacks, s1.slow_path_pages),
        (s0.fast_fallbacks, s0.slow_path_pages)
    );
}

/// Deterministic: another thread holds the memory's lock for as long as
/// the test likes, blocked under it in a page fault that a userfaultfd
/// holds (the slow path populates under the lock). Fast calls that the
/// lock-free walk fully serves must return meanwhile.
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
#[test]
fn served_fast_calls_never_wait_for_the_lock() {
    use std::sync::mpsc;
    use std::time::Duration;
    let (m, lt) = lock_test_memory(64 * PAGE);
    let fault = 40 * PAGE;
    // SAFETY: page 40 lies in `m`'s committed memory; it was never touched.
    let Some(uffd) = (unsafe { uffd::Uffd::register_missing(m.base().add(fault as usize), PAGE) }) else {
        eprintln!("userfaultfd unavailable: see fast_calls_finish_under_a_long_discard");
        return;
    };
    let holder = {
        let m = m.clone();
        std::thread::spawn(move || pin_user_pages(&m, fault, 1, GupFlags::WRITE).map(|p| p.len()))
    };
    let at = uffd
        .wait_fault(Duration::from_secs(10))
        .expect("the populate never faulted");
    assert_eq!(at, m.base() as u64 + fault);
    // The holder is blocked in the fault, under the lock, until we resolve it.
    assert!(!lock_is_free(&m), "the faulting pin holds the lock");
    let s0 = m.stats();
    let (tx, rx) = mpsc::channel();
    let caller = {
        let m = m.clone();
        std::thread::spawn(move || tx.send(fast_calls(&m)).unwrap())
    };
    let served = rx.recv_timeout(Duration::from_secs(5));
    let s1 = m.stats();
    assert!(!lock_is_free(&m), "the lock was held all along");
    // Resolve the fault (dropping the uffd would too), whatever happened.
    uffd.zero(at, PAGE);
    assert_eq!(holder.join().unwrap(), Ok(1));
    caller.join().unwrap();
    let taken = match served {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("a fast call waited for the lock"),
    };
    assert_served_fast(s0, s1);
    drop((taken, lt));
    assert_eq!(m.stats().pins_outstanding(), 0);
}

/// Best effort, without userfaultfd: a discard of 1 GiB holds the lock for
/// tens of milliseconds. A fast call made between two observations of the
/// lock held by it could not have taken the lock: the discard takes it
/// once, so a fast call that waited for it would find it free afterwards.
/// Retried if the observations miss the window (a descheduled thread), so
/// only a fast call that takes the lock fails every attempt.
#[test]
fn fast_calls_finish_under_a_long_discard() {
    let (m, lt) = lock_test_memory(GIB);
    for attempt in 0..20 {
        let discard = {
            let m = m.clone();
            std::thread::spawn(move || m.discard(64 * PAGE, GIB - 64 * PAGE))
        };
        // Spin until the discard is seen holding the lock (the only other
        // locker), or is over.
        let held = loop {
            if !lock_is_free(&m) {
                break true;
            }
            if discard.is_finished() {
                break false;
            }
        };
        let s0 = m.stats();
        let served = fast_calls(&m);
        let s1 = m.stats();
        let still = !lock_is_free(&m);
        discard.join().unwrap().unwrap();
        drop(served.unwrap());
        assert_served_fast(s0, s1);
        if held && still {
            drop(lt);
            return;
        }
        eprintln!("attempt {attempt}: missed the discard's window");
    }
    panic!("no fast call finished while the discard held the lock");
}

/// A userfaultfd that holds the faults of one range (Linux; the ioctl
/// numbers are the generic encoding of x86-64 and aarch64).
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod uffd {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    #[repr(C)]
    struct Api {
        api: u64,
        features: u64,
        ioctls: u64,
    }
    #[repr(C)]
    struct Range {
        start: u64,
        len: u64,
    }
    #[repr(C)]
    struct Register {
        range: Range,
        mode: u64,
        ioctls: u64,
    }
    #[repr(C)]
    struct ZeroPage {
        range: Range,
        mode: u64,
        zeropage: i64,
    }
    /// `struct uffd_msg` for a page fault.
    #[repr(C)]
    #[derive(Default)]
    struct Msg {
        event: u8,
        _reserved: [u8; 7],
        flags: u64,
        address: u64,
        _feat: u64,
    }
    const UFFD_API: u64 = 0xaa;
    /// `_IOWR(0xaa, nr, size)`.
    const fn iowr(nr: u64, size: usize) -> u64 {
        3 << 30 | (size as u64) << 16 | 0xaa << 8 | nr
    }
    const UFFDIO_API: u64 = iowr(0x3f, size_of::<Api>());
    const UFFDIO_REGISTER: u64 = iowr(0x00, size_of::<Register>());
    const UFFDIO_ZEROPAGE: u64 = iowr(0x04, size_of::<ZeroPage>());
    const MODE_MISSING: u64 = 1;
    const USER_MODE_ONLY: libc::c_int = 1;
    const EVENT_PAGEFAULT: u8 = 0x12;

    pub struct Uffd(OwnedFd);

    impl Uffd {
        /// A userfaultfd holding the first fault of each page of
        /// `[addr, addr+len)`, or `None` if the host refuses one.
        ///
        /// # Safety
        /// The range must be anonymous memory that nothing else registers.
        pub unsafe fn register_missing(addr: *mut u8, len: u64) -> Option<Uffd> {
            // Kernel-mode faults (the slow path's MADV_POPULATE_WRITE) need
            // the privilege; without it, user-mode-only still catches the
            // populate's fallback (touching the page).
            let fd = [0, USER_MODE_ONLY].into_iter().find_map(|extra| {
                // SAFETY: a plain syscall returning a new fd or -1.
                let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK | extra) };
                // SAFETY: a non-negative result is a new fd that we own.
                (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
            })?;
            let mut api = Api {
                api: UFFD_API,
                features: 0,
                ioctls: 0,
            };
            // SAFETY: the ioctl reads and writes one `Api`.
            if unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API as _, &mut api) } != 0 {
                return None;
            }
            let mut reg = Register {
                range: Range {
                    start: addr as u64,
                    len,
                },
                mode: MODE_MISSING,
                ioctls: 0,
            };
            // SAFETY: the ioctl reads and writes one `Register`; the caller
            // vouches for the range.
            (unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_REGISTER as _, &mut reg) } == 0).then_some(Uffd(fd))
        }

        /// Waits up to `timeout` for a page fault; its address.
        pub fn wait_fault(&self, timeout: Duration) -> Option<u64> {
            let mut pfd = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: polls one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) } != 1 {
                return None;
            }
            let mut msg = Msg::default();
            // SAFETY: reads at most one `Msg` into `msg`.
            let n = unsafe { libc::read(self.0.as_raw_fd(), (&mut msg as *mut Msg).cast(), size_of::<Msg>()) };
            (n == size_of::<Msg>() as isize && msg.event == EVENT_PAGEFAULT).then_some(msg.address & !0xfff)
        }

        /// Resolves the faults of `[addr, addr+len)` with zero pages, waking
        /// the threads they hold.
        pub fn zero(&self, addr: u64, len: u64) {
            let mut z = ZeroPage {
                range: Range { start: addr, len },
                mode: 0,
                zeropage: 0,
            };
            // SAFETY: the ioctl reads and writes one `ZeroPage`; the range is
            // the registered one.
            let r = unsafe { libc::ioctl(self.0.as_raw_fd(), UFFDIO_ZEROPAGE as _, &mut z) };
            assert_eq!(r, 0, "UFFDIO_ZEROPAGE: {}", std::io::Error::last_os_error());
        }
    }
}

// ---------------------------------------------------------------------------
// 8. Public functions never asserted.
// ---------------------------------------------------------------------------

#[test]
fn sizes_emptiness_and_capacity() {
    assert_eq!(Mm::host_page_size(), PAGE);
    let m = Mm::new(MmConfig {
        reservation_bytes: 5 * PAGE + 1,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(m.page_size(), Mm::host_page_size());
    assert!(m.is_empty());
    assert_eq!(m.len(), 0);
    assert_eq!(m.capacity(), 6 * PAGE, "the reservation, rounded up to pages");
    m.grow_to(1).unwrap();
    assert!(!m.is_empty());
    m.grow_to(6 * PAGE).unwrap();
    assert_eq!(m.grow_to(6 * PAGE + 1), Err(Errno::NoMem));
    // A maximum below the reservation bounds it, exactly (not rounded).
    let m = Mm::new(MmConfig {
        initial_bytes: PAGE,
        maximum_bytes: Some(3 * PAGE + 10),
        reservation_bytes: 8 * PAGE,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(m.capacity(), 3 * PAGE + 10);
    assert!(!m.is_empty());
    m.grow_to(3 * PAGE + 10).unwrap();
    assert_eq!(m.grow_to(3 * PAGE + 11), Err(Errno::NoMem));
    // A memory created at its maximum (a fixed-size memory).
    let fixed = MmConfig {
        initial_bytes: 3 * PAGE + 10,
        maximum_bytes: Some(3 * PAGE + 10),
        reservation_bytes: 8 * PAGE,
        ..Default::default()
    };
    let m = Mm::new(fixed).unwrap();
    assert_eq!((m.len(), m.capacity()), (3 * PAGE + 10, 3 * PAGE + 10));
    // A maximum above the reservation does not raise it; no reservation is
    // still one page.
    let big = MmConfig {
        maximum_bytes: Some(1 << 40),
        reservation_bytes: 2 * PAGE,
        ..Default::default()
    };
    assert_eq!(Mm::new(big).unwrap().capacity(), 2 * PAGE);
    let tiny = MmConfig {
        reservation_bytes: 0,
        ..Default::default()
    };
    assert_eq!(Mm::new(tiny).unwrap().capacity(), PAGE);
}

/// `test_and_clear_dirty` clears the page holding the address, at any
/// address; `mark_dirty` marks the held pages only, at once, while the pins
/// stay held, as blocks too; `is_longterm` tells the two kinds of pin apart.
#[test]
fn dirty_marks_and_pin_kinds() {
    let m = mm(2 * BLOCK);
    let p = pin_user_pages(&m, 3 * PAGE, 2, GupFlags::WRITE).unwrap();
    assert!(!p.is_longterm());
    p.mark_dirty();
    assert!(m.page_state(3 * PAGE).unwrap().dirty && m.page_state(4 * PAGE).unwrap().dirty);
    assert!(!m.page_state(2 * PAGE).unwrap().dirty && !m.page_state(5 * PAGE).unwrap().dirty);
    assert_eq!(m.page_state(3 * PAGE).unwrap().pins, 1, "still held");
    assert_eq!(m.stats().dirtied_pages, 2);
    p.unpin();
    assert!(m.page_state(4 * PAGE).unwrap().dirty, "a clean release keeps the mark");
    assert_eq!(m.stats().dirtied_pages, 2);
    // Any address inside the page; only that page.
    assert!(m.test_and_clear_dirty(4 * PAGE + 4095));
    assert!(!m.test_and_clear_dirty(4 * PAGE));
    assert!(m.page_state(3 * PAGE).unwrap().dirty);
    assert!(!m.test_and_clear_dirty(2 * PAGE + 7));
    assert!(m.test_and_clear_dirty(3 * PAGE + 1));
    assert!(!m.test_and_clear_dirty(1 << 40), "outside the reservation: never dirty");

    // A fast pin of a whole block marks the block, every page of it.
    let b = pin_user_pages_fast(&m, (BLOCK - 1) * PAGE, (BLOCK + 1) as usize, GupFlags::WRITE).unwrap();
    assert_eq!(b.len() as u64, BLOCK + 1);
    // Page 600 is dirty on its own entry too: both marks read as one.
    pin_user_pages(&m, 600 * PAGE, 1, GupFlags::WRITE)
        .unwrap()
        .unpin_dirty(true);
    b.mark_dirty();
    for (page, dirty) in [
        (BLOCK - 2, false),
        (BLOCK - 1, true),
        (BLOCK, true),
        (600, true),
        (2 * BLOCK - 1, true),
    ] {
        assert_eq!(m.page_state(page * PAGE).unwrap().dirty, dirty, "page {page}");
    }
    assert_eq!(m.stats().dirtied_pages, 2 + 1 + BLOCK + 1);
    drop(b);
    // Clearing one page of a dirty block leaves every other page of it
    // dirty, from the block's first page to its last.
    assert!(m.test_and_clear_dirty(1000 * PAGE + 1));
    assert!(!m.page_state(1000 * PAGE).unwrap().dirty);
    for page in [BLOCK, 600, 999, 1001, 2 * BLOCK - 1] {
        assert!(m.page_state(page * PAGE).unwrap().dirty, "page {page}");
    }

    for (f, lt) in [
        (pin_user_pages as PinFn, false),
        (pin_user_pages_fast, false),
        (pin_user_pages_remote, false),
        (pin_longterm_pages, true),
        (pin_longterm_pages_fast, true),
        (pin_longterm_pages_remote, true),
    ] {
        assert_eq!(f(&m, 0, 1, GupFlags::empty()).unwrap().is_longterm(), lt);
    }
}

/// The page table's footprint, exactly: the root array (one pointer per
/// GiB of reservation), one middle node of 512 pointers per GiB in use and
/// one leaf per 2 MiB in use: 512 entries, the block word, and the boxed
/// words of its long-term chunks (one per chunk, 512 with per-page
/// accounting, the default).
#[test]
fn page_table_bytes_are_exact() {
    const ROOT_SLOT: usize = 8;
    const MID: usize = 512 * 8;
    const LEAF: usize = 512 * 8 + 8 + size_of::<Box<[u64]>>();
    for (chunk, chunk_pages) in [
        (LongtermChunks::PerPage, 1),
        (LongtermChunks::Bytes(2 << 20), 512),
        (LongtermChunks::Bytes(64 << 10), 16),
    ] {
        let expect = |reserved: u64, len: u64| {
            let roots = (reserved / PAGE).div_ceil(512 * 512).max(1) as usize;
            let leaves = (len.div_ceil(PAGE).div_ceil(512)) as usize;
            roots * ROOT_SLOT + leaves.div_ceil(512) * MID + leaves * (LEAF + 512 / chunk_pages * 8)
        };
        let m = Mm::new(MmConfig {
            longterm_chunks: chunk,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.page_table_bytes(), expect(4 * GIB, 0));
        assert_eq!(m.page_table_bytes(), 4 * ROOT_SLOT);
        for len in [1, 2 << 20, (2 << 20) + 1, 5 << 20, GIB, GIB + 1, GIB + (4 << 20)] {
            m.grow_to(len).unwrap();
            assert_eq!(
                m.page_table_bytes(),
                expect(4 * GIB, len),
                "chunk {chunk:?}, len {len:#x}"
            );
        }
        // Pins, gets and discards inside the length allocate nothing.
        let before = m.page_table_bytes();
        drop(pin_user_pages(&m, GIB, 3, GupFlags::empty()).unwrap());
        drop(get_user_pages_fast(&m, 0, 1024, GupFlags::empty()).unwrap());
        drop(pin_longterm_pages(&m, 4 * PAGE, 2, GupFlags::empty()).unwrap());
        m.discard(0, GIB).unwrap();
        assert_eq!(m.page_table_bytes(), before, "chunk {chunk:?}");
    }
    for (reserved, roots) in [(4 * GIB + 1, 5), (PAGE, 1), (0, 1), (GIB, 1), (GIB + PAGE, 2)] {
        let m = Mm::new(MmConfig {
            reservation_bytes: reserved,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.page_table_bytes(), roots * ROOT_SLOT, "reservation {reserved:#x}");
    }
}

/// Debug output names the type and its key fields with their values.
#[test]
fn debug_output_shows_the_key_fields() {
    let m = Mm::new(MmConfig {
        initial_bytes: 3 * PAGE + 5,
        maximum_bytes: Some(16 * PAGE),
        reservation_bytes: 32 * PAGE,
        ..Default::default()
    })
    .unwrap();
    let d = format!("{m:?}");
    let want = format!(
        "Mm {{ base: {:?}, len: {}, capacity: {}, page_size: {}, .. }}",
        m.base(),
        3 * PAGE + 5,
        16 * PAGE,
        PAGE
    );
    assert_eq!(d, want);
    let p = pin_user_pages(&m, PAGE, 2, GupFlags::WRITE).unwrap();
    assert_eq!(
        format!("{p:?}"),
        format!(
            "PinnedPages {{ start: 4096, len: 2, flags: {:?} }}",
            GupFlags::WRITE | GupFlags::PIN
        )
    );
    let g = get_user_pages_remote(&m, 0, 3, GupFlags::empty()).unwrap();
    assert_eq!(
        format!("{g:?}"),
        format!(
            "GotPages {{ start: 0, len: 3, flags: {:?} }}",
            GupFlags::GET | GupFlags::REMOTE
        )
    );
    // The accessors agree with it.
    assert!(Arc::ptr_eq(p.mm(), &m) && Arc::ptr_eq(g.mm(), &m));
    assert_eq!(p.as_ptr() as u64, m.base() as u64 + PAGE);
    assert_eq!(
        (g.start(), g.len(), g.byte_len(), g.is_empty()),
        (0, 3, 3 * PAGE as usize, false)
    );
    assert_eq!(g.as_ptr(), m.base().cast_const());
    assert_eq!(g.as_mut_ptr(), Err(Errno::Perm));
    let st = format!("{:?}", m.page_state(PAGE).unwrap());
    for field in ["present: true", "dirty: false", "pins: 1", "gets: 1", "longterm: 0"] {
        assert!(st.contains(field), "{st}");
    }
    let s = format!("{:?}", m.stats());
    for field in [
        "foll_pin_acquired: 2",
        "foll_get_taken: 3",
        "remote_pages: 3",
        "locked_bytes: 0",
    ] {
        assert!(s.contains(field), "{s}");
    }
}
