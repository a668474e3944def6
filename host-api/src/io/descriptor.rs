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
use wasmtime_wasi::filesystem::{Descriptor, File as WasiFile};
use wasmtime_wasi::OpenMode;

/// The file behind `fd` if a transfer `into` guest memory (a read) or out
/// of it (a write) is allowed on it: `badf` for a descriptor not opened for
/// that direction (what `pread`/`pwrite` say on such an fd) or a write to a
/// read-only preopen, `isdir` for a directory, `badf` for a dead handle.
pub(crate) fn file<'t>(
    table: &'t ResourceTable,
    fd: &Resource<Descriptor>,
    into: bool,
) -> Result<&'t Arc<File>, Errno> {
    let f = wasi_file(table, fd)?;
    let (read, write) = access(f);
    if if into { read } else { write } {
        Ok(&f.file)
    } else {
        Err(Errno::BadF)
    }
}

/// The WASI file behind `fd`: `isdir` for a directory, `badf` for a dead
/// handle.
pub(crate) fn wasi_file<'t>(table: &'t ResourceTable, fd: &Resource<Descriptor>) -> Result<&'t WasiFile, Errno> {
    match table.get(fd).map_err(|_| Errno::BadF)? {
        Descriptor::File(f) => Ok(f),
        Descriptor::Dir(_) => Err(Errno::IsDir),
    }
}

/// Which transfers `f` allows: into guest memory (opened for reading), out
/// of it (opened for writing, and the preopen permits writes).
pub(crate) fn access(f: &WasiFile) -> (bool, bool) {
    (
        f.open_mode.contains(OpenMode::READ),
        f.open_mode.contains(OpenMode::WRITE) && !f.perms.write_not_permitted(),
    )
}
