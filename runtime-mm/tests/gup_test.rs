//! A port of the kernel's gup_test (tools/testing/selftests/mm/gup_test.c):
//! PIN_BASIC, PIN_FAST, GUP_FAST and PIN_LONGTERM over a region, at 1, 512,
//! 123 and all pages per call, read and write, plus a DUMP_USER_PAGES-style
//! check that the pinned pages hold the bytes the "user" wrote.

use runtime_mm::{gup, Errno, GupFlags, Mm, MmConfig, PinnedPages};
use std::sync::Arc;

const PAGE: usize = 4096;
/// 4 MiB: big enough to cross leaves of the page table, small enough for debug builds.
const NR_PAGES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmd {
    PinBasic,
    PinFast,
    GupFast,
    PinLongterm,
}

enum Held {
    Pin(PinnedPages),
    Get(runtime_mm::GotPages),
}

impl Held {
    fn range(&self) -> (u64, usize) {
        match self {
            Held::Pin(p) => (p.start(), p.len()),
            Held::Get(g) => (g.start(), g.len()),
        }
    }
}

fn region() -> Arc<Mm> {
    let mm = Mm::new(MmConfig {
        initial_bytes: (NR_PAGES * PAGE) as u64,
        memlock_limit_bytes: (NR_PAGES * PAGE) as u64,
        ..Default::default()
    })
    .unwrap();
    // Like gup_test's "touch" step: fill each page with its index.
    for p in 0..NR_PAGES {
        mm.write((p * PAGE) as u64, &[(p % 251) as u8; PAGE]).unwrap();
    }
    mm
}

fn take(mm: &Arc<Mm>, cmd: Cmd, start: u64, n: usize, flags: GupFlags) -> Held {
    match cmd {
        Cmd::PinBasic => Held::Pin(gup::pin_user_pages(mm, start, n, flags).unwrap()),
        Cmd::PinFast => Held::Pin(gup::pin_user_pages_fast(mm, start, n, flags).unwrap()),
        Cmd::GupFast => Held::Get(gup::get_user_pages_fast(mm, start, n, flags).unwrap()),
        Cmd::PinLongterm => Held::Pin(gup::pin_longterm_pages(mm, start, n, flags).unwrap()),
    }
}

/// One gup_test run: take the whole region `per_call` pages at a time,
/// check every page's counts, release, check they are gone.
fn run(cmd: Cmd, per_call: usize, write: bool) {
    let mm = region();
    let flags = if write { GupFlags::WRITE } else { GupFlags::empty() };
    let mut held = Vec::new();
    let mut next = 0;
    while next < NR_PAGES {
        let want = per_call.min(NR_PAGES - next);
        let h = take(&mm, cmd, (next * PAGE) as u64, want, flags);
        assert_eq!(h.range(), ((next * PAGE) as u64, want), "{cmd:?} per_call={per_call}");
        next += want;
        held.push(h);
    }
    for p in 0..NR_PAGES {
        let st = mm.page_state((p * PAGE) as u64).unwrap();
        let pinned = cmd != Cmd::GupFast;
        assert_eq!((st.pins, st.gets), (pinned as u32, !pinned as u32), "page {p}");
        assert_eq!(st.longterm, (cmd == Cmd::PinLongterm) as u32);
        assert_eq!(mm.page_maybe_dma_pinned((p * PAGE) as u64), pinned);
    }
    assert_eq!(mm.discard(0, PAGE as u64), Err(Errno::Busy));
    if cmd == Cmd::PinLongterm {
        assert_eq!(mm.stats().locked_bytes, (NR_PAGES * PAGE) as u64);
    }
    // DUMP_USER_PAGES: the pinned pages hold what the user wrote; writes
    // through a write pin land in the memory.
    for h in &held {
        let Held::Pin(p) = h else { continue };
        let first = p.start() as usize / PAGE;
        for i in 0..p.len() {
            let mut b = [0u8; 16];
            p.read(i * PAGE, &mut b).unwrap();
            assert_eq!(b, [((first + i) % 251) as u8; 16], "dump of page {}", first + i);
            if write {
                p.write(i * PAGE, &[0xee; 8]).unwrap();
            }
        }
    }
    let total = held.len();
    for h in held {
        match h {
            Held::Pin(p) => p.unpin_dirty(write),
            Held::Get(g) => g.put(),
        }
    }
    let s = mm.stats();
    let n = NR_PAGES as u64;
    if cmd == Cmd::GupFast {
        assert_eq!((s.foll_get_taken, s.foll_get_put, s.foll_pin_acquired), (n, n, 0));
    } else {
        assert_eq!((s.foll_pin_acquired, s.foll_pin_released, s.foll_get_taken), (n, n, 0));
    }
    assert_eq!((s.longterm_pinned_pages, s.locked_bytes), (0, 0));
    assert_eq!(s.fast_path_pages + s.slow_path_pages, n);
    // The `_fast` calls take every page lock-free (fresh pages included);
    // the others go to the locked path, which populates.
    if matches!(cmd, Cmd::PinFast | Cmd::GupFast) {
        assert_eq!((s.fast_path_pages, s.fast_fallbacks), (n, 0), "{total} calls");
    } else if cmd != Cmd::PinLongterm {
        assert_eq!(s.slow_path_pages, n);
    }
    for p in 0..NR_PAGES {
        let st = mm.page_state((p * PAGE) as u64).unwrap();
        assert_eq!((st.pins, st.gets, st.dirty), (0, 0, write && cmd != Cmd::GupFast));
        if write && cmd != Cmd::GupFast {
            let mut b = [0u8; 9];
            mm.read((p * PAGE) as u64, &mut b).unwrap();
            assert_eq!(&b[..8], &[0xee; 8]);
            assert_eq!(b[8], (p % 251) as u8, "write landed past its range");
        }
    }
    mm.discard(0, (NR_PAGES * PAGE) as u64).unwrap();
}

/// Second pass on present pages: `*_fast` takes everything without the lock.
fn run_present(cmd: Cmd, per_call: usize) {
    let mm = region();
    drop(gup::pin_user_pages(&mm, 0, NR_PAGES, GupFlags::WRITE).unwrap());
    let before = mm.stats();
    let mut held = Vec::new();
    for start in (0..NR_PAGES).step_by(per_call) {
        held.push(take(
            &mm,
            cmd,
            (start * PAGE) as u64,
            per_call.min(NR_PAGES - start),
            GupFlags::WRITE,
        ));
    }
    let after = mm.stats();
    assert_eq!(after.fast_path_pages - before.fast_path_pages, NR_PAGES as u64);
    assert_eq!(after.slow_path_pages, before.slow_path_pages);
    assert_eq!(after.fast_fallbacks, before.fast_fallbacks);
}

macro_rules! gup_tests {
    ($($name:ident: $cmd:expr, $per_call:expr, $write:expr;)*) => {$(
        #[test]
        fn $name() {
            run($cmd, $per_call, $write);
        }
    )*};
}

gup_tests! {
    pin_basic_1_read: Cmd::PinBasic, 1, false;
    pin_basic_512_write: Cmd::PinBasic, 512, true;
    pin_basic_123_read: Cmd::PinBasic, 123, false;
    pin_basic_all_write: Cmd::PinBasic, NR_PAGES, true;
    pin_basic_1_write: Cmd::PinBasic, 1, true;
    pin_basic_all_read: Cmd::PinBasic, NR_PAGES, false;
    pin_fast_1_write: Cmd::PinFast, 1, true;
    pin_fast_512_read: Cmd::PinFast, 512, false;
    pin_fast_123_write: Cmd::PinFast, 123, true;
    pin_fast_all_read: Cmd::PinFast, NR_PAGES, false;
    pin_fast_512_write: Cmd::PinFast, 512, true;
    pin_fast_123_read: Cmd::PinFast, 123, false;
    gup_fast_1_read: Cmd::GupFast, 1, false;
    gup_fast_512_write: Cmd::GupFast, 512, true;
    gup_fast_123_read: Cmd::GupFast, 123, false;
    gup_fast_all_write: Cmd::GupFast, NR_PAGES, true;
    gup_fast_123_write: Cmd::GupFast, 123, true;
    gup_fast_all_read: Cmd::GupFast, NR_PAGES, false;
    pin_longterm_1_write: Cmd::PinLongterm, 1, true;
    pin_longterm_512_read: Cmd::PinLongterm, 512, false;
    pin_longterm_123_write: Cmd::PinLongterm, 123, true;
    pin_longterm_all_read: Cmd::PinLongterm, NR_PAGES, false;
    pin_longterm_1_read: Cmd::PinLongterm, 1, false;
    pin_longterm_all_write: Cmd::PinLongterm, NR_PAGES, true;
}

#[test]
fn fast_commands_stay_lock_free_on_present_pages() {
    for per_call in [1, 512, 123, NR_PAGES] {
        run_present(Cmd::PinFast, per_call);
        run_present(Cmd::GupFast, per_call);
    }
}
