//! The asynchronous I/O backends a test should run on: io_uring only where
//! the kernel offers it (a note says when it does not).

use host_api::{BackendKind, IoConfig, PinCtx};

pub fn backends() -> Vec<BackendKind> {
    let mut probe = PinCtx::default().with_io(IoConfig {
        backend: BackendKind::IoUring,
        ..IoConfig::default()
    });
    match probe.io_backend() {
        Ok(_) => vec![BackendKind::IoUring, BackendKind::Threads],
        Err(e) => {
            println!("io_uring tests skipped: io_uring is unavailable here ({e})");
            vec![BackendKind::Threads]
        }
    }
}
