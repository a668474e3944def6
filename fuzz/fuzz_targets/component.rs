//! Fuzzes the component imports (`gup`, `zero-copy-io`) with arbitrary call
//! sequences, at the host-trait level the generated bindings call.
#![no_main]

#[path = "../../tests/support/component_fuzz.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // 21 bytes per call: func, handle, a, b, c.
    let calls: Vec<harness::Call> = data
        .chunks_exact(21)
        .map(|c| harness::Call {
            func: c[0],
            handle: u32::from_le_bytes(c[1..5].try_into().unwrap()),
            a: u64::from_le_bytes(c[5..13].try_into().unwrap()),
            b: u32::from_le_bytes(c[13..17].try_into().unwrap()),
            c: u32::from_le_bytes(c[17..21].try_into().unwrap()),
        })
        .collect();
    harness::run(&calls, host_api::BackendKind::Threads);
});
