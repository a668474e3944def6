//! `gup-bench`: a port of the kernel's gup_test driver
//! (tools/testing/selftests/mm/gup_test.c) to `runtime_mm`, so its figures can
//! sit beside published kernel numbers.
//!
//! ```text
//! gup-bench [-m MB] [-n PAGES|-1] [-r REPEATS] [-j THREADS] [-a|-b|-L|-u] [-w] [-H|--no-huge] [-c KB] [--pooled]
//! ```
//! `-a` pin_user_pages_fast, `-b` pin_user_pages, `-L` pin_longterm_pages,
//! `-u` get_user_pages_fast (default); `-n` pages per call (default 1, -1 =
//! the whole region); `-w` asks for write access. Each thread takes and then
//! releases the whole region once per repeat and prints, like the kernel tool,
//! `<CMD>: Time: get:<µs> put:<µs> us`.
//!
//! The region is configured as an `Mm` is by default: transparent huge pages
//! on a 2 MiB-aligned region ([`MmConfig::huge_pages`]; `-H`, the kernel
//! tool's huge-page flag, is accepted and changes nothing) and long-term
//! chunks chosen by them ([`LongtermChunks::Auto`]: 2 MiB where THP is on).
//! `--no-huge` gives the region 4 KiB pages; `-c KB` sets the long-term lock
//! chunk (`-c 4`: one page, the kernel's per-page accounting). What the
//! region got is printed to stderr first.
//!
//! `--pooled` puts the region on a one-slot [`MemoryPool`] instead of its own
//! mapping, and at the end also times the slot's reset (the region is then
//! released, zeroed and decommitted by the pool's reset worker) as
//! `POOL_RESET: Time: <µs> us`.

use runtime_mm::{gup, GotPages, GupFlags, LongtermChunks, MemoryPool, Mm, MmConfig, PinnedPages, PoolConfig};
use std::sync::{Arc, Barrier};
use std::time::Instant;

#[derive(Clone, Copy, PartialEq)]
enum Cmd {
    PinFast,
    PinBasic,
    PinLongterm,
    GupFast,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::PinFast => "PIN_FAST_BENCHMARK",
            Cmd::PinBasic => "PIN_BASIC_TEST",
            Cmd::PinLongterm => "PIN_LONGTERM_BENCHMARK",
            Cmd::GupFast => "GUP_FAST_BENCHMARK",
        }
    }
}

struct Opts {
    mb: u64,
    per_call: i64,
    repeats: u32,
    threads: usize,
    cmd: Cmd,
    write: bool,
    huge: bool,
    chunk_kb: Option<u64>,
    pooled: bool,
}

const USAGE: &str =
    "usage: gup-bench [-m MB] [-n PAGES|-1] [-r REPEATS] [-j THREADS] [-a|-b|-L|-u] [-w] [-H|--no-huge] [-c KB] [--pooled]";

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        mb: 128,
        per_call: 1,
        repeats: 1,
        threads: 1,
        cmd: Cmd::GupFast,
        write: false,
        huge: true,
        chunk_kb: None,
        pooled: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> Result<i64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{what} needs a number\n{USAGE}"))
        };
        match a.as_str() {
            "-m" => o.mb = num("-m")?.max(1) as u64,
            "-n" => o.per_call = num("-n")?,
            "-r" => o.repeats = num("-r")?.max(1) as u32,
            "-j" => o.threads = num("-j")?.max(1) as usize,
            "-a" => o.cmd = Cmd::PinFast,
            "-b" => o.cmd = Cmd::PinBasic,
            "-L" => o.cmd = Cmd::PinLongterm,
            "-u" => o.cmd = Cmd::GupFast,
            "-w" => o.write = true,
            "-H" => o.huge = true,
            "--no-huge" => o.huge = false,
            "-c" => o.chunk_kb = Some(num("-c")?.max(1) as u64),
            "--pooled" => o.pooled = true,
            _ => return Err(USAGE.into()),
        }
    }
    Ok(o)
}

/// The references one thread holds between its get and put phases: one
/// handle per call, pins and gets apart (no enum tag per handle: gup_test
/// keeps one pointer per page).
#[derive(Default)]
struct Held {
    pins: Vec<PinnedPages>,
    gets: Vec<GotPages>,
}

impl Held {
    fn with_capacity(cmd: Cmd, n: usize) -> Held {
        match cmd {
            Cmd::GupFast => Held {
                gets: Vec::with_capacity(n),
                ..Held::default()
            },
            _ => Held {
                pins: Vec::with_capacity(n),
                ..Held::default()
            },
        }
    }

    /// Takes `n` pages at `start` with `o.cmd`, or panics with the error.
    fn take(&mut self, mm: &Arc<Mm>, o: &Opts, start: u64, n: usize) {
        let flags = if o.write { GupFlags::WRITE } else { GupFlags::empty() };
        let fail = |e: runtime_mm::Errno| -> ! { panic!("{} at {start:#x} ({n} pages): {e}", o.cmd.name()) };
        match o.cmd {
            Cmd::PinFast => self
                .pins
                .push(gup::pin_user_pages_fast(mm, start, n, flags).unwrap_or_else(|e| fail(e))),
            Cmd::PinBasic => self
                .pins
                .push(gup::pin_user_pages(mm, start, n, flags).unwrap_or_else(|e| fail(e))),
            Cmd::PinLongterm => self
                .pins
                .push(gup::pin_longterm_pages(mm, start, n, flags).unwrap_or_else(|e| fail(e))),
            Cmd::GupFast => self
                .gets
                .push(gup::get_user_pages_fast(mm, start, n, flags).unwrap_or_else(|e| fail(e))),
        }
    }

    /// Releases everything (the timed put phase), keeping the capacity.
    fn clear(&mut self) {
        self.pins.clear();
        self.gets.clear();
    }
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let size = o.mb << 20;
    let chunks = o
        .chunk_kb
        .map_or(LongtermChunks::Auto, |kb| LongtermChunks::Bytes(kb << 10));
    // Long-term pins lock the whole region (per thread it is the same pages).
    let pool = o.pooled.then(|| {
        MemoryPool::new(PoolConfig {
            slots: 1,
            max_memory_bytes: size,
            guard_bytes: 0,
            keep_resident_bytes: 0,
            memlock_limit_bytes: size,
            huge_pages: o.huge,
            longterm_chunks: chunks,
            ..PoolConfig::default()
        })
        .expect("reserving the pool")
    });
    let mm = match &pool {
        Some(pool) => pool.alloc(size, None).expect("a slot for the region"),
        None => Mm::new(MmConfig {
            initial_bytes: size,
            reservation_bytes: size,
            guard_bytes: 0,
            memlock_limit_bytes: size,
            huge_pages: o.huge,
            longterm_chunks: o
                .chunk_kb
                .map_or(LongtermChunks::Auto, |kb| LongtermChunks::Bytes(kb << 10)),
            ..Default::default()
        })
        .expect("reserving the region"),
    };
    eprintln!(
        "region: {} MiB, {}, long-term chunk {} KiB",
        o.mb,
        if mm.thp_backed() { "THP-backed" } else { "4 KiB pages" },
        mm.longterm_chunk_bytes() >> 10
    );
    let page = mm.page_size();
    let pages = (size / page) as usize;
    let per_call = if o.per_call < 0 {
        pages
    } else {
        (o.per_call as usize).clamp(1, pages)
    };
    // Touch every page, as gup_test's caller does, so the run measures GUP on
    // present memory.
    drop(gup::pin_user_pages(&mm, 0, pages, GupFlags::WRITE).expect("faulting the region in"));

    let barrier = Arc::new(Barrier::new(o.threads));
    let o = Arc::new(o);
    let workers: Vec<_> = (0..o.threads)
        .map(|_| {
            let (mm, o, barrier) = (mm.clone(), o.clone(), barrier.clone());
            std::thread::spawn(move || {
                // The results array outlives the repeats, as gup_test's
                // `pages` array is allocated before its timer: only the
                // first repeat pays its page faults.
                let mut held = Held::with_capacity(o.cmd, pages.div_ceil(per_call));
                for _ in 0..o.repeats {
                    barrier.wait();
                    let start = Instant::now();
                    let mut next = 0;
                    while next < pages {
                        let n = per_call.min(pages - next);
                        held.take(&mm, &o, next as u64 * page, n);
                        next += n;
                    }
                    let get = start.elapsed();
                    let start = Instant::now();
                    held.clear();
                    let put = start.elapsed();
                    println!(
                        "{}: Time: get:{} put:{} us",
                        o.cmd.name(),
                        get.as_micros(),
                        put.as_micros()
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let s = mm.stats();
    assert_eq!((s.pins_outstanding(), s.gets_outstanding(), s.locked_bytes), (0, 0, 0));
    if let Some(pool) = pool {
        // The last reference: the slot goes to the pool's reset worker
        // (all of it decommitted); timed until the worker is done.
        let start = Instant::now();
        pool.release(mm);
        assert!(
            pool.wait_for_resets(std::time::Duration::from_secs(60)),
            "the reset finishes"
        );
        println!("POOL_RESET: Time: {} us", start.elapsed().as_micros());
        let s = pool.stats();
        assert_eq!((s.free, s.resets), (1, 1), "{s:?}");
    }
}
