//! `pinned-vec` (issue 12.4's combined import): several ranges pinned as
//! one resource, all or nothing, each range a pin under the quotas.

use host_api::bindings::wasm_pin::mm::gup::{Errno, GupFlags, Host as _, HostPinnedVec as _, PinRange};
use host_api::{MmHost, PinCtx, PinView, Quotas};
use runtime_mm::{Mm, MmConfig};
use std::sync::Arc;

const PAGE: u64 = 4096;

fn host(quotas: Quotas) -> (MmHost, Arc<Mm>) {
    let mm = Mm::new(MmConfig {
        initial_bytes: 64 * PAGE,
        ..Default::default()
    })
    .unwrap();
    let mut h = MmHost::from(PinCtx::new(quotas));
    h.attach(mm.clone());
    (h, mm)
}

fn r(page: u64, nr: u32) -> PinRange {
    PinRange {
        start: page * PAGE,
        nr_pages: nr,
    }
}

#[test]
fn a_vector_pins_every_range_and_releases_them_together() {
    let (mut h, mm) = host(Quotas::default());
    let v = h
        .pins()
        .pin_user_pages_fast_vec(vec![r(2, 3), r(10, 1), r(2, 1)], GupFlags::WRITE)
        .unwrap()
        .unwrap();
    let mut p = h.pins();
    let rep = v.rep();
    let b = || wasmtime::component::Resource::<host_api::GuestPinVec>::new_borrow(rep);
    assert_eq!(p.count(b()).unwrap(), 3);
    let got = p.range(b(), 1).unwrap().map(|g| (g.start, g.nr_pages));
    assert_eq!(got, Some((10 * PAGE, 1)));
    assert!(p.range(b(), 3).unwrap().is_none());
    assert_eq!(mm.page_state(2 * PAGE).unwrap().pins, 2, "overlapping ranges pin twice");
    assert!(mm.page_maybe_dma_pinned(10 * PAGE) && !mm.page_maybe_dma_pinned(5 * PAGE));
    assert_eq!(h.pins().ctx.usage(), (3, 5 * PAGE, 0), "each range is a pin");
    h.pins().unpin_all(v, true).unwrap();
    assert_eq!(h.pins().ctx.usage(), (0, 0, 0));
    assert_eq!(mm.stats().pins_outstanding(), 0);
    assert!(
        mm.page_state(10 * PAGE).unwrap().dirty,
        "a dirty release marks the pages"
    );
    assert!(!mm.page_state(5 * PAGE).unwrap().dirty);
    // The handle is gone: using it again traps, it does not touch anything.
    assert!(h.pins().count(b()).is_err());
}

#[test]
fn a_refused_range_pins_nothing() {
    let (mut h, mm) = host(Quotas::default());
    let mut try_vec = |ranges: Vec<PinRange>| {
        h.pins()
            .pin_user_pages_fast_vec(ranges, GupFlags::empty())
            .unwrap()
            .map(|_| ())
    };
    // Past the memory, partly past it, unaligned, overflowing.
    assert_eq!(try_vec(vec![r(1, 1), r(64, 1)]), Err(Errno::Fault));
    assert_eq!(try_vec(vec![r(1, 1), r(60, 8)]), Err(Errno::Fault));
    assert_eq!(
        try_vec(vec![r(1, 1), PinRange { start: 3, nr_pages: 1 }]),
        Err(Errno::Inval)
    );
    assert_eq!(
        try_vec(vec![PinRange {
            start: u64::MAX - PAGE + 1,
            nr_pages: 2
        }]),
        Err(Errno::Inval)
    );
    assert_eq!(mm.stats().pins_outstanding(), 0);
    assert!(!mm.page_maybe_dma_pinned(PAGE));
    assert_eq!(h.pins().ctx.usage(), (0, 0, 0));
    // An empty vector is a vector.
    let v = h
        .pins()
        .pin_user_pages_fast_vec(Vec::new(), GupFlags::empty())
        .unwrap()
        .unwrap();
    assert_eq!(h.pins().count(v).unwrap(), 0);
}

#[test]
fn quotas_count_each_range() {
    let (mut h, mm) = host(Quotas {
        max_pins: 3,
        max_pinned_bytes: 8 * PAGE,
        ..Default::default()
    });
    let mut p = h.pins();
    assert_eq!(
        p.pin_user_pages_fast_vec(vec![r(0, 1), r(1, 1), r(2, 1), r(3, 1)], GupFlags::empty())
            .unwrap()
            .map(|_| ()),
        Err(Errno::Again),
        "four pins, three allowed"
    );
    assert_eq!(
        p.pin_user_pages_fast_vec(vec![r(0, 4), r(4, 5)], GupFlags::empty())
            .unwrap()
            .map(|_| ()),
        Err(Errno::Nomem),
        "nine pages, eight allowed"
    );
    assert_eq!((p.ctx.usage(), mm.stats().pins_outstanding()), ((0, 0, 0), 0));
    let v = p
        .pin_user_pages_fast_vec(vec![r(0, 4), r(4, 4)], GupFlags::empty())
        .unwrap()
        .unwrap();
    assert_eq!(p.ctx.usage(), (2, 8 * PAGE, 0));
    // Dropping the handle releases the pins, clean.
    p.drop(v).unwrap();
    assert_eq!((h.pins().ctx.usage(), mm.stats().pins_outstanding()), ((0, 0, 0), 0));
    assert!(!mm.page_state(0).unwrap().dirty);
}
