//! GUP microbenchmarks (issue: benchmarks, parts a and b).
//!
//! - `pin_unpin/<pages>/<read|write>`: one pin+unpin call pair on present
//!   pages: `pin_user_pages_fast` vs `pin_user_pages` (slow path) vs
//!   `get_user_pages_fast`+put vs a page table behind one `Mutex`.
//!   Throughput is in pages, so criterion prints time per page.
//! - `scaling/<fn>/<threads>/<disjoint|overlap>/<pages>`: threads pinning
//!   16- or 512-page ranges of one shared memory, lock-free fast path vs the
//!   mutex baseline.
//! - `fresh/<fresh|repin>_64k`: `pin_user_pages_fast` of a 64 KiB buffer
//!   never pinned before (a new one each call) vs the same buffer again
//!   (issue 12.1: the first pin of a fresh page costs ≤ 1.5× a re-pin).
//! - `longterm/cold_chunk/<thp|4k>/<pages>`: `pin_longterm_pages_fast` +
//!   unpin that locks and unlocks its 2 MiB chunk every time, on huge and on
//!   4 KiB pages; `longterm/warm_chunk/<thp|4k>/1`: the same beside another
//!   long-term pin that keeps the chunk locked (lock-free), next to
//!   `short_term` (`pin_user_pages_fast`) of the same page (issue 12.3).

mod mutex_baseline;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mutex_baseline::MutexTable;
use runtime_mm::{gup, GupFlags, LongtermChunks, Mm, MmConfig};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const PAGE: u64 = 4096;

fn present_mm(pages: u64) -> Arc<Mm> {
    let mm = Mm::new(MmConfig {
        initial_bytes: pages * PAGE,
        reservation_bytes: (pages + 1) * PAGE,
        ..Default::default()
    })
    .unwrap();
    drop(gup::pin_user_pages(&mm, 0, pages as usize, GupFlags::WRITE).unwrap());
    mm
}

fn pin_unpin(c: &mut Criterion) {
    let mut g = c.benchmark_group("pin_unpin");
    for pages in [1usize, 123, 512, 262_144] {
        let mm = present_mm(pages as u64);
        let table = MutexTable::new(pages);
        if pages >= 262_144 {
            g.sample_size(10).measurement_time(Duration::from_secs(3));
        }
        g.throughput(Throughput::Elements(pages as u64));
        for (mode, flags) in [("read", GupFlags::empty()), ("write", GupFlags::WRITE)] {
            let id = |name: &str| BenchmarkId::new(name, format!("{pages}/{mode}"));
            g.bench_function(id("pin_user_pages_fast"), |b| {
                b.iter(|| {
                    gup::pin_user_pages_fast(&mm, 0, black_box(pages), flags)
                        .unwrap()
                        .unpin()
                })
            });
            g.bench_function(id("pin_user_pages"), |b| {
                b.iter(|| gup::pin_user_pages(&mm, 0, black_box(pages), flags).unwrap().unpin())
            });
            g.bench_function(id("get_user_pages_fast"), |b| {
                b.iter(|| gup::get_user_pages_fast(&mm, 0, black_box(pages), flags).unwrap().put())
            });
            g.bench_function(id("mutex_baseline"), |b| {
                b.iter(|| {
                    let n = table.pin(0, black_box(pages));
                    table.unpin(0, n);
                })
            });
        }
    }
    g.finish();
}

/// Runs `iters` pin+unpin pairs on each of `threads` threads at once and
/// returns the wall time.
fn parallel(threads: usize, iters: u64, f: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, f) = (&barrier, &f);
            s.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    f(t);
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("scaling");
    let max_threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    // 16 pages: a small I/O, where per-call costs show; 512: a large one.
    for range in [16usize, 512] {
        let mm = present_mm((range * max_threads) as u64);
        let table = MutexTable::new(range * max_threads);
        for threads in (1..=max_threads).filter(|t| *t <= 2 || t.is_power_of_two()) {
            g.throughput(Throughput::Elements((range * threads) as u64));
            for overlap in [false, true] {
                let first = move |t: usize| if overlap { 0 } else { t * range };
                let param = format!("{threads}/{}/{range}", if overlap { "overlap" } else { "disjoint" });
                g.bench_function(BenchmarkId::new("pin_user_pages_fast", &param), |b| {
                    b.iter_custom(|iters| {
                        parallel(threads, iters, |t| {
                            gup::pin_user_pages_fast(&mm, (first(t) as u64) * PAGE, range, GupFlags::WRITE)
                                .unwrap()
                                .unpin()
                        })
                    })
                });
                g.bench_function(BenchmarkId::new("mutex_baseline", &param), |b| {
                    b.iter_custom(|iters| {
                        parallel(threads, iters, |t| {
                            let n = table.pin(first(t), range);
                            table.unpin(first(t), n);
                        })
                    })
                });
            }
        }
    }
    g.finish();
}

fn fresh(c: &mut Criterion) {
    const BUF: usize = 16; // 64 KiB
    const BUFS: u64 = 4096; // 256 MiB of fresh buffers per memory
    let mut g = c.benchmark_group("fresh");
    g.throughput(Throughput::Elements(BUF as u64));
    g.bench_function("fresh_64k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BUFS);
                let mm = Mm::new(MmConfig {
                    initial_bytes: BUFS * BUF as u64 * PAGE,
                    ..Default::default()
                })
                .unwrap();
                let start = Instant::now();
                for i in 0..n {
                    gup::pin_user_pages_fast(&mm, i * BUF as u64 * PAGE, BUF, GupFlags::WRITE)
                        .unwrap()
                        .unpin();
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    let mm = present_mm(BUF as u64);
    g.bench_function("repin_64k", |b| {
        b.iter(|| {
            gup::pin_user_pages_fast(&mm, 0, black_box(BUF), GupFlags::WRITE)
                .unwrap()
                .unpin()
        })
    });
    g.finish();
}

fn longterm(c: &mut Criterion) {
    let mut g = c.benchmark_group("longterm");
    g.sample_size(20);
    for huge in [true, false] {
        let backing = if huge { "thp" } else { "4k" };
        let mm = Mm::new(MmConfig {
            initial_bytes: 4 << 20,
            huge_pages: huge,
            longterm_chunks: LongtermChunks::Bytes(2 << 20),
            ..Default::default()
        })
        .unwrap();
        drop(gup::pin_user_pages(&mm, 0, 1024, GupFlags::WRITE).unwrap());
        for pages in [1usize, 512] {
            // Every call locks its chunk and every release unlocks it.
            g.throughput(Throughput::Elements(pages as u64));
            g.bench_function(BenchmarkId::new(format!("cold_chunk/{backing}"), pages), |b| {
                b.iter(|| {
                    gup::pin_longterm_pages_fast(&mm, 0, black_box(pages), GupFlags::WRITE)
                        .unwrap()
                        .unpin()
                })
            });
        }
        // A long-term pin elsewhere in the chunk keeps it locked: the
        // steady state of registered buffers (and of gup_test -L), beside a
        // short-term pin of the same page.
        let keep = gup::pin_longterm_pages(&mm, 511 * PAGE, 1, GupFlags::empty()).unwrap();
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new(format!("warm_chunk/{backing}"), 1), |b| {
            b.iter(|| {
                gup::pin_longterm_pages_fast(&mm, 0, black_box(1), GupFlags::WRITE)
                    .unwrap()
                    .unpin()
            })
        });
        g.bench_function(BenchmarkId::new(format!("short_term/{backing}"), 1), |b| {
            b.iter(|| {
                gup::pin_user_pages_fast(&mm, 0, black_box(1), GupFlags::WRITE)
                    .unwrap()
                    .unpin()
            })
        });
        drop(keep);
    }
    g.finish();
}

criterion_group!(benches, pin_unpin, scaling, fresh, longterm);
criterion_main!(benches);
