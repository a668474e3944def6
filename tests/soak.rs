//! The soak's short mode (issue #22): the same code as `cargo run --release
//! --bin soak`, for a few seconds. Fails on any byte lost, any check that
//! did not hold, any fault kind not injected or not survived, anything
//! leaked (pins, slots, descriptors, sockets, threads, locked memory, page
//! tables), RSS over its bound.

use wasm_pin::soak::{self, SoakConfig};

#[test]
fn short_soak_loses_and_leaks_nothing() {
    let report = soak::run(SoakConfig::short()).expect("the soak runs");
    println!("{report}");
    if let Err(problems) = report.check(true) {
        panic!(
            "the soak found {} problems:\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
}
