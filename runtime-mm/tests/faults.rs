//! Host failures injected for real: `mlock` refused (no `CAP_IPC_LOCK`,
//! `RLIMIT_MEMLOCK` 0) and an address-space reservation that cannot be made
//! (`RLIMIT_AS`). Each runs in a child process (the limits are process-wide)
//! and must come back as an errno, with nothing taken and nothing charged.

use runtime_mm::{gup, Errno, GupFlags, Mm, MmConfig};
use rustix::process::{setrlimit, Resource, Rlimit};
use rustix::thread::{capabilities, set_capabilities, CapabilitySet};

const CHILD: &str = "WASM_PIN_FAULTS_CHILD";

/// Re-runs this test binary's `name` test in a child with `CHILD` set.
fn in_child(name: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child failed:\n{text}"
    );
}

fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

#[test]
fn mlock_failure_is_nomem_and_takes_nothing() {
    if !is_child() {
        return in_child("mlock_failure_is_nomem_and_takes_nothing");
    }
    let mm = Mm::new(MmConfig {
        initial_bytes: 1 << 20,
        memlock_limit_bytes: 1 << 20,
        ..Default::default()
    })
    .unwrap();
    // Short-term pins do not lock memory: they work with or without mlock.
    let short = gup::pin_user_pages(&mm, 0, 8, GupFlags::WRITE).unwrap();
    // Make mlock fail: no memlock allowance and no capability to exceed it.
    setrlimit(
        Resource::Memlock,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .unwrap();
    let mut caps = capabilities(None).unwrap();
    caps.effective.remove(CapabilitySet::IPC_LOCK);
    caps.permitted.remove(CapabilitySet::IPC_LOCK);
    set_capabilities(None, caps).unwrap();
    for take in [
        gup::pin_longterm_pages,
        gup::pin_longterm_pages_fast,
        gup::pin_longterm_pages_remote,
    ] {
        assert_eq!(take(&mm, 16 << 12, 4, GupFlags::empty()).unwrap_err(), Errno::NoMem);
    }
    let s = mm.stats();
    assert_eq!(
        (s.locked_bytes, s.longterm_pinned_pages, s.pins_outstanding()),
        (0, 0, 8)
    );
    assert_eq!(mm.page_state(16 << 12).unwrap().pins, 0);
    drop(short);
    assert_eq!(mm.stats().pins_outstanding(), 0);
}

#[test]
fn a_reservation_that_cannot_be_made_is_nomem() {
    if !is_child() {
        return in_child("a_reservation_that_cannot_be_made_is_nomem");
    }
    // 1 GiB of address space in all: a 4 GiB reservation cannot be mapped.
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(1 << 30),
            maximum: Some(1 << 30),
        },
    )
    .unwrap();
    assert_eq!(Mm::new(MmConfig::default()).unwrap_err(), Errno::NoMem);
    // A small one still can, and growth past what can be committed fails cleanly.
    let mm = Mm::new(MmConfig {
        reservation_bytes: 64 << 20,
        guard_bytes: 0,
        ..Default::default()
    })
    .unwrap();
    mm.grow_to(1 << 20).unwrap();
    assert_eq!(gup::pin_user_pages(&mm, 0, 256, GupFlags::WRITE).unwrap().len(), 256);
}
