//! Model-based test: random sequences of grow, write, read, every pin and get
//! variant (with random flags, valid and not), unpin/put (dirty or not),
//! discard and drop-all, run against a simple reference model. After every
//! step the page counts, the bytes, the dirty/present bits and the stats must
//! equal the model's, and a discard must never have hit a referenced page.

use proptest::prelude::*;
use runtime_mm::gup::*;
use runtime_mm::{Errno, GotPages, GupFlags, LongtermChunks, Mm, MmConfig, PinnedPages};
use std::sync::Arc;

const PAGE: u64 = 4096;
const MAX_PAGES: u64 = 16;
const MEMLOCK_PAGES: u64 = 6;

#[derive(Debug, Clone)]
enum Op {
    Grow(u64),
    Write {
        page: u64,
        byte: u8,
    },
    Read {
        page: u64,
    },
    Take {
        variant: usize,
        start: Start,
        nr: usize,
        flags: u32,
    },
    Release {
        index: usize,
        dirty: bool,
    },
    Discard {
        page: u64,
        pages: u64,
    },
    DropAll,
}

#[derive(Debug, Clone, Copy)]
enum Start {
    Page(u64),
    Unaligned(u64),
    Wrapping,
}

impl Start {
    fn addr(self) -> u64 {
        match self {
            Start::Page(p) => p * PAGE,
            Start::Unaligned(p) => p * PAGE + 1,
            Start::Wrapping => u64::MAX - PAGE + 1,
        }
    }
}

const FLAG_CHOICES: [u32; 10] = [0, 0x01, 0x10, 0x20, 0x21, 0x04_0000, 0x04, 0x1_0000, 0x2000, 0x100];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..4u64).prop_map(Op::Grow),
        2 => (0..MAX_PAGES + 1, any::<u8>()).prop_map(|(page, byte)| Op::Write { page, byte }),
        1 => (0..MAX_PAGES + 1).prop_map(|page| Op::Read { page }),
        6 => (
            0..9usize,
            prop_oneof![
                8 => (0..MAX_PAGES + 2).prop_map(Start::Page),
                1 => (0..MAX_PAGES).prop_map(Start::Unaligned),
                1 => Just(Start::Wrapping),
            ],
            0..7usize,
            prop::sample::select(FLAG_CHOICES.to_vec()),
        )
            .prop_map(|(variant, start, nr, flags)| Op::Take { variant, start, nr, flags }),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(index, dirty)| Op::Release { index, dirty }),
        2 => (0..MAX_PAGES + 1, 1..5u64).prop_map(|(page, pages)| Op::Discard { page, pages }),
        1 => Just(Op::DropAll),
    ]
}

enum Held {
    Pin(PinnedPages),
    Get(GotPages),
}

#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct Page {
    pins: u32,
    gets: u32,
    lt: u32,
    present: bool,
    dirty: bool,
    byte: u8, // the byte at offset 7 of the page
}

struct Model {
    len: u64,
    pages: Vec<Page>,
    /// Pages per long-term chunk, and each chunk's locked extent (pages
    /// from its start; see `longterm.rs`).
    chunk: u64,
    ext: Vec<u64>,
    /// (is_pin, longterm, first page, pages) of each held reference, in the
    /// same order as the real `held` vector.
    held: Vec<(bool, bool, u64, u64)>,
}

impl Model {
    /// Drops one held reference `(is_pin, longterm, first, pages)`.
    fn release(&mut self, (is_pin, lt, first, n): (bool, bool, u64, u64), dirty: bool) {
        for p in first..first + n {
            let pg = &mut self.pages[p as usize];
            if is_pin {
                pg.pins -= 1;
            } else {
                pg.gets -= 1;
            }
            pg.lt -= lt as u32;
            pg.dirty |= dirty;
        }
        // A chunk whose last long-term pin went is unlocked.
        for c in 0..self.ext.len() {
            if !self.chunk_pinned(c as u64) {
                self.ext[c] = 0;
            }
        }
    }

    fn locked(&self) -> u64 {
        self.ext.iter().sum()
    }

    fn chunk_pinned(&self, c: u64) -> bool {
        (c * self.chunk..(c + 1) * self.chunk).any(|p| self.pages[p as usize].lt > 0)
    }

    /// The extent a chunk is locked to when a pin needs it: up to the length.
    fn want(&self, c: u64) -> u64 {
        self.chunk.min(self.len - c * self.chunk)
    }

    /// The chunk segments of `[first, first+n)`: (chunk, pages).
    fn segments(&self, first: u64, n: u64) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        let mut p = first;
        while p < first + n {
            let c = p / self.chunk;
            let seg = ((c + 1) * self.chunk).min(first + n) - p;
            v.push((c, seg));
            p += seg;
        }
        v
    }

    /// How many pages from `first` the lock-free long-term path takes: whole
    /// segments on chunks that hold long-term pins and are locked over them.
    fn fast_longterm(&self, first: u64, n: u64) -> u64 {
        let mut k = 0;
        for (c, seg) in self.segments(first, n) {
            let end = first + k + seg - c * self.chunk;
            if !self.chunk_pinned(c) || end > self.ext[c as usize] {
                break;
            }
            k += seg;
        }
        k
    }
}

/// What the call must answer, given the model: Err, or the pages taken.
/// Returns the pages taken and how many of them the lock-free path took.
fn expect(m: &Model, variant: usize, start: Start, nr: usize, flags: u32) -> Result<(u64, u64), Errno> {
    let is_pin = variant < 6;
    let longterm = (3..6).contains(&variant);
    let remote = variant % 3 == 2;
    let known = 0x01 | 0x04 | 0x10 | 0x20 | 0x2000 | 0x1_0000 | 0x4_0000;
    if flags & !known != 0 || flags & (0x4_0000 | 0x1_0000) != 0 {
        return Err(Errno::Inval);
    }
    if is_pin && flags & 0x04 != 0 || !remote && flags & 0x2000 != 0 {
        return Err(Errno::Inval);
    }
    let addr = start.addr();
    if !addr.is_multiple_of(PAGE) || addr.checked_add(nr as u64 * PAGE).is_none() {
        return Err(Errno::Inval);
    }
    if nr == 0 {
        // `start` is checked even for zero pages; an empty range may end at
        // the end of the memory.
        return if addr <= m.len * PAGE {
            Ok((0, 0))
        } else {
            Err(Errno::Fault)
        };
    }
    let first = addr / PAGE;
    if first >= m.len {
        return Err(Errno::Fault);
    }
    let mut n = (m.len - first).min(nr as u64);
    // The fast variants take, lock-free, every page they may (long-term:
    // those on chunks already locked over them), present or not.
    // pin_longterm_pages (3) too: its locked path only locks chunks.
    let fast = matches!(variant, 1 | 3 | 4 | 7);
    let k = match (fast, longterm) {
        (false, _) => 0,
        (true, false) => n,
        (true, true) => m.fast_longterm(first, n),
    };
    if flags & 0x20 != 0 {
        // NOWAIT: what is left goes to the slow path, which takes only the
        // present prefix.
        n = k
            + (first + k..first + n)
                .take_while(|&p| m.pages[p as usize].present)
                .count() as u64;
        if n == 0 {
            return Err(Errno::Again);
        }
    }
    if longterm && n > k {
        // The slow path locks what the chunks of its part lack, all or none.
        let new: u64 = m
            .segments(first + k, n - k)
            .iter()
            .map(|&(c, _)| m.want(c).saturating_sub(m.ext[c as usize]))
            .sum();
        if m.locked() + new > MEMLOCK_PAGES {
            return Err(Errno::NoMem);
        }
    }
    Ok((n, k.min(n)))
}

fn take(mm: &Arc<Mm>, variant: usize, addr: u64, nr: usize, flags: GupFlags) -> Result<Held, Errno> {
    let pins: [PinFnT; 6] = [
        pin_user_pages,
        pin_user_pages_fast,
        pin_user_pages_remote,
        pin_longterm_pages,
        pin_longterm_pages_fast,
        pin_longterm_pages_remote,
    ];
    let gets: [GetFnT; 3] = [get_user_pages, get_user_pages_fast, get_user_pages_remote];
    if variant < 6 {
        pins[variant](mm, addr, nr, flags).map(Held::Pin)
    } else {
        gets[variant - 6](mm, addr, nr, flags).map(Held::Get)
    }
}
type PinFnT = fn(&Arc<Mm>, u64, usize, GupFlags) -> Result<PinnedPages, Errno>;
type GetFnT = fn(&Arc<Mm>, u64, usize, GupFlags) -> Result<GotPages, Errno>;

fn check(mm: &Mm, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(mm.len(), m.len * PAGE);
    for (i, p) in m.pages.iter().enumerate() {
        let addr = i as u64 * PAGE;
        let st = mm.page_state(addr).unwrap();
        prop_assert_eq!(
            (st.pins, st.gets, st.longterm),
            (p.pins, p.gets, p.lt),
            "counts of page {}",
            i
        );
        prop_assert_eq!((st.present, st.dirty), (p.present, p.dirty), "bits of page {}", i);
        prop_assert_eq!(mm.page_maybe_dma_pinned(addr), p.pins > 0);
        if (i as u64) < m.len {
            let mut b = [0u8];
            mm.read(addr + 7, &mut b).unwrap();
            prop_assert_eq!(b[0], p.byte, "byte of page {}", i);
        }
    }
    let s = mm.stats();
    let pins: u64 = m.held.iter().filter(|h| h.0).map(|h| h.3).sum();
    let gets: u64 = m.held.iter().filter(|h| !h.0).map(|h| h.3).sum();
    let lt: u64 = m.held.iter().filter(|h| h.1).map(|h| h.3).sum();
    prop_assert_eq!(s.pins_outstanding(), pins);
    prop_assert_eq!(s.gets_outstanding(), gets);
    prop_assert_eq!(s.longterm_pinned_pages, lt);
    prop_assert_eq!(s.locked_bytes, m.locked() * PAGE);
    Ok(())
}

fn run(ops: Vec<Op>, chunk: u64) -> Result<(), TestCaseError> {
    let mm = Mm::new(MmConfig {
        initial_bytes: 4 * PAGE,
        maximum_bytes: Some(MAX_PAGES * PAGE),
        reservation_bytes: MAX_PAGES * PAGE,
        guard_bytes: PAGE,
        memlock_limit_bytes: MEMLOCK_PAGES * PAGE,
        longterm_chunks: LongtermChunks::Bytes(chunk * PAGE),
        ..MmConfig::default()
    })
    .unwrap();
    let mut m = Model {
        len: 4,
        pages: vec![Page::default(); MAX_PAGES as usize],
        chunk,
        ext: vec![0; (MAX_PAGES / chunk) as usize],
        held: Vec::new(),
    };
    let mut held: Vec<Held> = Vec::new();
    for op in ops {
        match op {
            Op::Grow(d) => {
                let want = m.len + d;
                let r = mm.grow_to(want * PAGE);
                if want <= MAX_PAGES {
                    prop_assert_eq!(r, Ok(()));
                    m.len = want;
                } else {
                    prop_assert_eq!(r, Err(Errno::NoMem));
                }
            }
            Op::Write { page, byte } => {
                let r = mm.write(page * PAGE + 7, &[byte]);
                if page < m.len {
                    prop_assert_eq!(r, Ok(()));
                    m.pages[page as usize].byte = byte;
                } else {
                    prop_assert_eq!(r, Err(Errno::Fault));
                }
            }
            Op::Read { page } => {
                let mut b = [0u8; 8];
                let r = mm.read(page * PAGE, &mut b);
                prop_assert_eq!(r.is_ok(), page < m.len);
            }
            Op::Take {
                variant,
                start,
                nr,
                flags,
            } => {
                let want = expect(&m, variant, start, nr, flags);
                let got = take(&mm, variant, start.addr(), nr, GupFlags::from_bits_retain(flags));
                let first = start.addr() / PAGE;
                // Without NOWAIT, a call that takes pages faults them in. One
                // the memlock check refuses faults in only what the lock-free
                // walk took (on chunks locked already) before the slow path
                // refused the rest, before faulting it in.
                if flags & 0x20 == 0 && nr > 0 && first < m.len {
                    let n = (m.len - first).min(nr as u64);
                    let fast_lt = matches!(variant, 3 | 4);
                    let n = match want {
                        Ok(_) => n,
                        Err(Errno::NoMem) if fast_lt => m.fast_longterm(first, n),
                        Err(_) => 0,
                    };
                    for p in first..first + n {
                        m.pages[p as usize].present = true;
                    }
                }
                match (want, got) {
                    (Err(w), Err(g)) => prop_assert_eq!(w, g),
                    (Ok((n, k)), Ok(h)) => {
                        let (len, start_addr) = match &h {
                            Held::Pin(p) => (p.len(), p.start()),
                            Held::Get(g) => (g.len(), g.start()),
                        };
                        prop_assert_eq!((len as u64, start_addr), (n, start.addr()));
                        let (is_pin, lt) = (variant < 6, (3..6).contains(&variant));
                        for p in first..first + n {
                            let pg = &mut m.pages[p as usize];
                            if is_pin {
                                pg.pins += 1;
                            } else {
                                pg.gets += 1;
                            }
                            pg.lt += lt as u32;
                            pg.present = true;
                        }
                        if lt && n > k {
                            for (c, _) in m.segments(first + k, n - k) {
                                m.ext[c as usize] = m.ext[c as usize].max(m.want(c));
                            }
                        }
                        m.held.push((is_pin, lt, first, n));
                        held.push(h);
                    }
                    (w, g) => prop_assert!(false, "expected {:?}, got {:?}", w, g.map(|_| ())),
                }
            }
            Op::Release { index, dirty } => {
                if held.is_empty() {
                    continue;
                }
                let i = index % held.len();
                let h = m.held.remove(i);
                match held.remove(i) {
                    Held::Pin(p) => p.unpin_dirty(dirty),
                    Held::Get(g) => g.put_dirty(dirty),
                }
                m.release(h, dirty);
            }
            Op::Discard { page, pages } => {
                let r = mm.discard(page * PAGE, pages * PAGE);
                let end = page + pages;
                if end > m.len {
                    prop_assert_eq!(r, Err(Errno::Fault));
                } else if (page..end).any(|p| m.pages[p as usize].pins + m.pages[p as usize].gets > 0) {
                    prop_assert_eq!(r, Err(Errno::Busy));
                } else {
                    prop_assert_eq!(r, Ok(()));
                    for p in page..end {
                        let pg = &mut m.pages[p as usize];
                        (pg.present, pg.dirty, pg.byte) = (false, false, 0);
                    }
                }
            }
            Op::DropAll => {
                held.clear();
                for h in std::mem::take(&mut m.held) {
                    m.release(h, false);
                }
            }
        }
        check(&mm, &m)?;
    }
    drop(held);
    let s = mm.stats();
    prop_assert_eq!((s.pins_outstanding(), s.gets_outstanding(), s.locked_bytes), (0, 0, 0));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000),
        ..ProptestConfig::default()
    })]
    #[test]
    fn mm_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops, 1)?;
    }

    /// Long-term pins lock 4-page chunks: extents clipped to the length,
    /// extended after a grow, the limit counted in locked pages.
    #[test]
    fn mm_matches_the_model_with_chunks(ops in prop::collection::vec(op(), 1..40)) {
        run(ops, 4)?;
    }
}
