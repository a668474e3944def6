//! The proptest twin of the cargo-fuzz target `fuzz/fuzz_targets/component.rs`:
//! arbitrary call sequences on the component imports (see
//! `support/component_fuzz.rs` for what must hold).

use crate::support::component_fuzz as harness;

use harness::Call;
use host_api::BackendKind;
use proptest::prelude::*;

fn call() -> impl Strategy<Value = Call> {
    (
        0..20u8,
        prop_oneof![3 => 0..6u32, 1 => any::<u32>()],
        prop_oneof![3 => (0..70u64).prop_map(|p| p * 4096), 1 => 0..40000u64, 1 => any::<u64>()],
        prop_oneof![3 => 0..20u32, 1 => 0..9000u32, 1 => any::<u32>()],
        prop_oneof![3 => 0..16u32, 1 => any::<u32>()],
    )
        .prop_map(|(func, handle, a, b, c)| Call { func, handle, a, b, c })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000),
        ..ProptestConfig::default()
    })]
    #[test]
    fn component_imports_survive_arbitrary_calls(calls in prop::collection::vec(call(), 1..40), uring in any::<bool>()) {
        harness::run(&calls, if uring { BackendKind::Auto } else { BackendKind::Threads });
    }
}
