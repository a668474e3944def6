//! The demo guest, run in-process on each backend: it streams a file with
//! asynchronous reads into long-term pinned buffers, hashes it through the
//! pins and writes a copy.

use host_api::{BackendKind, IoConfig, MmHost, Quotas};
use runtime_mm::PinMemoryCreator;
use std::sync::{Arc, Mutex};

#[test]
fn demo_guest_streams_hashes_and_copies() {
    let dir = std::env::temp_dir().join(format!("wasm-pin-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut x = 0x1234_5678u32;
    let input: Vec<u8> = (0..(16 << 20) + 12345)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(dir.join("in.bin"), &input).unwrap();
    let want = format!(
        "guest: fnv1a {:#010x} over {} bytes in {} chunks",
        host_api::fnv1a(&input),
        input.len(),
        input.len().div_ceil(256 << 10)
    );

    let creator = PinMemoryCreator::new();
    let mut config = wasmtime::Config::new();
    creator.install(&mut config);
    let engine = wasmtime::Engine::new(&config).unwrap();
    let component =
        wasmtime::component::Component::new(&engine, wasm_pin_guests::component("demo_stream").unwrap()).unwrap();
    let mut linker = wasmtime::component::Linker::new(&engine);
    host_api::add_to_linker(&mut linker, |h: &mut MmHost| h).unwrap();

    for backend in [BackendKind::Auto, BackendKind::Threads] {
        let _ = std::fs::remove_file(dir.join("out.bin"));
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let io = IoConfig {
            dir: Some(dir.clone()),
            backend,
            args: vec!["in.bin".into(), "out.bin".into()],
            ..IoConfig::default()
        };
        let host = MmHost::new(Quotas::default())
            .with_io(io)
            .with_printer(Arc::new(move |l: &str| sink.lock().unwrap().push(l.to_string())));
        let mut store = wasmtime::Store::new(&engine, host);
        let guest = host_api::instantiate(&mut store, &linker, &component, &creator, |h| h).unwrap();
        let mm = store.data().memory().unwrap().clone();
        assert_eq!(guest.call_run(&mut store).unwrap(), Ok(()), "{backend:?}");
        let kind = store.data_mut().io_backend().unwrap();
        let io = store.data().io_counts();
        // 65 chunk reads, all on registered buffers with io_uring.
        assert_eq!(io.submitted, 65);
        assert_eq!(io.fixed, if kind == BackendKind::IoUring { 65 } else { 0 });
        drop(store);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.first().map(String::as_str), Some("streamed 16 MiB"), "{lines:?}");
        assert_eq!(lines.last().unwrap(), &want);
        assert_eq!(
            std::fs::read(dir.join("out.bin")).unwrap(),
            input,
            "{backend:?}: the copy differs"
        );
        let s = mm.stats();
        assert_eq!(
            (s.foll_pin_acquired, s.pins_outstanding(), s.locked_bytes),
            (256, 0, 0),
            "{s:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
