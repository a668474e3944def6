//! A WASI `descriptor` as the file of a zero-copy transfer.
//!
//! wasmtime-wasi keeps a `wasi:filesystem/types.descriptor` in the store's
//! table as a `wasmtime_wasi::filesystem::Descriptor`, whose `File` holds the
//! OS file (`Arc<std::fs::File>`), the mode it was opened with and the
//! preopen's permissions. The transfer keeps a clone of that `Arc`, so the
//! file stays open while a transfer is in flight even if the guest drops the
//! descriptor.

use runtime_mm::Errno;
use std::fs::File;
use std::sync::Arc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::OpenMode;

/// The file behind `fd` if a transfer `into` guest memory (a read) or out
/// of it (a write) is allowed on it: `badf` for a descriptor not opened for
/// that direction (what `pread`/`pwrite` say on such an fd) or a write to a
/// read-only preopen, `isdir` for a directory, `badf` for a dead handle.
pub(crate) fn file(table: &ResourceTable, fd: &Resource<Descriptor>, into: bool) -> Result<Arc<File>, Errno> {
    match table.get(fd).map_err(|_| Errno::BadF)? {
        Descriptor::File(f) => {
            let allowed = if into {
                f.open_mode.contains(OpenMode::READ)
            } else {
                f.open_mode.contains(OpenMode::WRITE) && !f.perms.write_not_permitted()
            };
            if allowed {
                Ok(f.file.clone())
            } else {
                Err(Errno::BadF)
            }
        }
        Descriptor::Dir(_) => Err(Errno::IsDir),
    }
}
