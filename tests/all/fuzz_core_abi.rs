//! The proptest twin of the cargo-fuzz target `fuzz/fuzz_targets/core_abi.rs`:
//! arbitrary call sequences on every core-ABI import (see
//! `support/core_abi_fuzz.rs` for what must hold).

use crate::support::core_abi_fuzz as harness;

use harness::Call;
use proptest::prelude::*;

/// Arguments biased toward the interesting: small handles, page-aligned
/// addresses inside and around the memory, and anything at all.
fn arg() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => -2..40i64,
        3 => (0..40i64).prop_map(|p| p * 4096),
        1 => Just(0x20), // where the trampoline keeps "peer"
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, -4096, u32::MAX as i64, i32::MAX as i64, 0x1fff8]),
        2 => any::<i64>(),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    (0..15u32, prop::array::uniform5(arg())).prop_map(|(func, args)| Call { func, args })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000),
        ..ProptestConfig::default()
    })]
    #[test]
    fn core_abi_survives_arbitrary_calls(calls in prop::collection::vec(call(), 1..40)) {
        harness::run(&calls);
    }
}
