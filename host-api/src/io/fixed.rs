//! Registered files (`one-call-io.register-file`): io_uring's fixed files
//! for the one-call transfers.
//!
//! A `borrow<descriptor>` costs a component-model call more than the
//! transfer's own host work (the borrow is lent, looked up, type-checked and
//! its scope validated on return: ~110 ns in the one-call profile of
//! docs/BENCHMARKS.md). A guest that moves many buffers through one file
//! registers it once and names it by a plain `u32` slot afterwards. The
//! registration, a [`FixedFile`], holds the file (`Arc<File>`) and what the
//! descriptor allowed when it was registered (read, write, direct).
//!
//! # Slots
//!
//! A slot is a handle of the calling instance's own table
//! ([`crate::handles`], keyed by the calling instance's identity, as the core ABI's
//! handles are): another instance of the store cannot name it, a stale slot
//! (unregistered, even after its index was reused) or a forged one is
//! `badf`, a slot whose generation would wrap is retired, and `0` is never a
//! slot. The registration itself lives in the store's `ResourceTable`. Each
//! slot counts as a file against the guest's file quota (a registered
//! `open-direct` file counts twice: as the reopen and as the slot) and holds
//! the file open until it is unregistered or the store drops, whatever the
//! guest does with the descriptor meanwhile (as a transfer in flight does).

use super::descriptor;
use crate::caller::{Called, CallerId};
use crate::handles::HandleOwner;
use crate::quotas::Kind;
use crate::view::PinCtxView;
use runtime_mm::Errno;
use std::fs::File;
use std::sync::Arc;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;

/// A registered file and what its descriptor allowed.
#[derive(Debug)]
pub(crate) struct FixedFile {
    pub file: Arc<File>,
    /// Opened for reading (transfers into guest memory).
    pub read: bool,
    /// Opened for writing and the preopen allows writes.
    pub write: bool,
    /// Opened with `O_DIRECT`: transfers must be block aligned.
    pub direct: bool,
}

impl FixedFile {
    /// The file, if a transfer in this direction (`into` guest memory, or
    /// out of it) is allowed: `badf` otherwise, as `pread`/`pwrite` say.
    pub(crate) fn for_transfer(&self, into: bool) -> Result<&FixedFile, Errno> {
        if if into { self.read } else { self.write } {
            Ok(self)
        } else {
            Err(Errno::BadF)
        }
    }
}

/// A slot as the guest passes it: handles are positive `i32`s.
fn handle(slot: u32) -> Result<i32, Errno> {
    i32::try_from(slot).map_err(|_| Errno::BadF)
}

impl PinCtxView<'_> {
    /// `register-file`: the descriptor's file and access under a new slot of
    /// the calling instance. `badf` for a dead descriptor, `isdir` for a
    /// directory, `mfile` over the file quota or with the instance's table
    /// full.
    pub(crate) fn register_file(&mut self, fd: Called<Resource<Descriptor>>) -> Result<u32, Errno> {
        let f = descriptor::wasi_file(self.table, &fd.value)?;
        let (read, write) = descriptor::access(f);
        let fixed = FixedFile {
            file: f.file.clone(),
            read,
            write,
            direct: self.ctx.own_files.is_direct(&f.file),
        };
        if fd.base == 0 {
            return Err(Errno::BadF); // no instance to hold the slot
        }
        let res = self.push(Kind::File, fixed)?;
        let rep = res.rep();
        match self.ctx.core_handles(HandleOwner::Component(fd.caller)).insert(&res) {
            Ok(h) => Ok(h as u32),
            Err(e) => {
                let _ = self.remove(Kind::File, Resource::<FixedFile>::new_own(rep));
                Err(e)
            }
        }
    }

    /// `unregister-file`: ends the slot (`badf` unless the calling instance
    /// holds it); the file closes unless a descriptor or a transfer in
    /// flight still holds it.
    pub(crate) fn unregister_file(&mut self, slot: Called<u32>) -> Result<(), Errno> {
        let h = handle(slot.value)?;
        let handles = self
            .ctx
            .core
            .get_mut(&HandleOwner::Component(slot.caller))
            .ok_or(Errno::BadF)?;
        let res = handles.remove::<FixedFile>(h)?;
        self.remove(Kind::File, res).map(drop)
    }

    /// The registration behind `slot` of the calling instance `caller`, if a
    /// transfer in this direction may use it.
    pub(crate) fn fixed_file(&self, caller: CallerId, slot: u32, into: bool) -> Result<&FixedFile, Errno> {
        let res = self
            .ctx
            .core
            .get(&HandleOwner::Component(caller))
            .ok_or(Errno::BadF)?
            .get::<FixedFile>(handle(slot)?)?;
        self.table.get(&res).map_err(|_| Errno::BadF)?.for_transfer(into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PinCtx;
    use wasmtime::component::ResourceTable;
    use wasmtime_wasi::{FsPerms, OpenMode};

    #[test]
    fn directions_follow_the_descriptor() {
        let file = |read, write| FixedFile {
            file: Arc::new(File::open("/dev/null").unwrap()),
            read,
            write,
            direct: false,
        };
        let ro = file(true, false);
        assert!(ro.for_transfer(true).is_ok());
        assert_eq!(ro.for_transfer(false).unwrap_err(), Errno::BadF);
        let wo = file(false, true);
        assert!(wo.for_transfer(false).is_ok());
        assert_eq!(wo.for_transfer(true).unwrap_err(), Errno::BadF);
    }

    #[test]
    fn slots_above_i32_max_are_badf() {
        assert_eq!(handle(0x8000_0000), Err(Errno::BadF));
        assert_eq!(handle(u32::MAX), Err(Errno::BadF));
        assert_eq!(handle(7), Ok(7));
    }

    /// A call by instance `who` (0: a call that carried no memory).
    fn called<T>(value: T, who: u32) -> Called<T> {
        Called {
            value,
            base: who as usize * 0x1000,
            caller: CallerId::new(who, 0),
        }
    }

    fn descriptor(table: &mut ResourceTable, read: bool, write: bool) -> Resource<Descriptor> {
        let mode = match (read, write) {
            (true, true) => OpenMode::READ | OpenMode::WRITE,
            (false, true) => OpenMode::WRITE,
            _ => OpenMode::READ,
        };
        let file = std::fs::OpenOptions::new()
            .read(read)
            .write(write)
            .open("/dev/null")
            .unwrap();
        table
            .push(Descriptor::File(wasmtime_wasi::filesystem::File::new(
                file,
                FsPerms::ReadWrite,
                mode,
                false,
            )))
            .unwrap()
    }

    /// Slots live in the registering instance's table: another instance
    /// cannot use or end them; the first slot is `0x10001`,
    /// never 0; each counts as a file until it is unregistered, once.
    #[test]
    fn slots_belong_to_their_instance_and_count_as_files() {
        let (mut table, mut ctx) = (ResourceTable::new(), PinCtx::default());
        let ro = descriptor(&mut table, true, false);
        let wo = descriptor(&mut table, false, true);
        let mut v = PinCtxView {
            ctx: &mut ctx,
            table: &mut table,
        };
        let (a, b) = (1, 2);
        let s_ro = v.register_file(called(Resource::new_borrow(ro.rep()), a)).unwrap();
        let s_wo = v.register_file(called(Resource::new_borrow(wo.rep()), a)).unwrap();
        assert_eq!((s_ro, s_wo), (0x10001, 0x10002));
        assert_eq!(v.ctx.held().files, 2);
        assert!(v.fixed_file(CallerId::new(a, 0), s_ro, true).is_ok());
        assert_eq!(v.fixed_file(CallerId::new(a, 0), s_ro, false).unwrap_err(), Errno::BadF);
        assert!(v.fixed_file(CallerId::new(a, 0), s_wo, false).is_ok());
        assert_eq!(
            v.fixed_file(CallerId::new(b, 0), s_ro, true).unwrap_err(),
            Errno::BadF,
            "another instance"
        );
        assert_eq!(v.unregister_file(called(s_ro, b)), Err(Errno::BadF));
        assert_eq!(v.ctx.held().files, 2);
        assert_eq!(v.unregister_file(called(s_ro, a)), Ok(()));
        assert_eq!(v.unregister_file(called(s_ro, a)), Err(Errno::BadF), "twice");
        assert_eq!(v.fixed_file(CallerId::new(a, 0), s_ro, true).unwrap_err(), Errno::BadF);
        assert_eq!(v.ctx.held().files, 1);
        // A call without a memory has no instance to hold a slot.
        let r = v.register_file(called(Resource::new_borrow(ro.rep()), 0));
        assert_eq!(r, Err(Errno::BadF));
        assert_eq!(v.ctx.held().files, 1);
    }
}
