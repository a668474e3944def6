//! Fuzzes every core-ABI import with arbitrary call sequences.
#![no_main]

#[path = "../../tests/support/core_abi_fuzz.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // 44 bytes per call: the import, then five i64 arguments.
    let calls: Vec<harness::Call> = data
        .chunks_exact(44)
        .map(|c| harness::Call {
            func: u32::from_le_bytes(c[..4].try_into().unwrap()),
            args: std::array::from_fn(|i| i64::from_le_bytes(c[4 + 8 * i..12 + 8 * i].try_into().unwrap())),
        })
        .collect();
    harness::run(&calls);
});
