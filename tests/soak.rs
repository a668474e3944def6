//! The soak's short mode (issue #22): the same code as `cargo run --release
//! --bin soak`, for a few seconds. Fails on any byte lost, any check that
//! did not hold, any fault kind not injected or not survived, anything
//! leaked (pins, slots, descriptors, sockets, threads, locked memory, page
//! tables), RSS over its bound. Once on io_uring (where the kernel offers
//! it) and once on the thread backend's shared workers.

use host_api::BackendKind;
use std::sync::Mutex;
use wasm_pin::soak::{self, SoakConfig};

/// The soak compares the whole process against its baseline (threads,
/// descriptors, locked memory): one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn short_soak(backend: BackendKind) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let report = soak::run(SoakConfig {
        backend,
        ..SoakConfig::short()
    })
    .expect("the soak runs");
    println!("{report}");
    if let Err(problems) = report.check(true) {
        panic!(
            "the soak ({backend:?}) found {} problems:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
}

#[test]
fn short_soak_loses_and_leaks_nothing() {
    short_soak(BackendKind::Auto);
}

#[test]
fn short_soak_on_the_shared_worker_threads_loses_and_leaks_nothing() {
    short_soak(BackendKind::Threads);
}
