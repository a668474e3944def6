//! Registered files (`one-call-io.register-file`): io_uring's fixed files
//! for the one-call transfers.
//!
//! A `borrow<descriptor>` costs a component-model call more than the
//! transfer's own host work (the borrow is lent, looked up, type-checked and
//! its scope validated on return: ~110 ns in the one-call profile of
//! docs/BENCHMARKS.md). A guest that moves many buffers through one file
//! registers it once and names it by a plain `u32` slot afterwards. The slot
//! holds the file (`Arc<File>`) and what the descriptor allowed when it was
//! registered (read, write, direct), so each call is one vector index and a
//! generation compare.
//!
//! # Slots
//!
//! A slot is `generation << 16 | index`. Unregistering bumps the index's
//! generation, so a stale slot (or one forged from a live one) is `badf`,
//! never another file; a generation comes back only after 65 536
//! registrations of the same index. Each registration counts as a file
//! against the guest's file quota, and holds the file open until it is
//! unregistered or the store drops, whatever the guest does with the
//! descriptor meanwhile (as a transfer in flight does).

use runtime_mm::Errno;
use std::fs::File;
use std::sync::Arc;

const INDEX_BITS: u32 = 16;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;

/// A registered file and what its descriptor allowed.
#[derive(Debug, Clone)]
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

#[derive(Debug, Default)]
struct Slot {
    generation: u16,
    file: Option<FixedFile>,
}

/// One store's registered files.
#[derive(Debug, Default)]
pub(crate) struct FixedFiles {
    slots: Vec<Slot>,
    live: u32,
}

impl FixedFiles {
    /// Registered files now.
    pub(crate) fn live(&self) -> u32 {
        self.live
    }

    /// Registers `file`; its slot, or `mfile` when every index is taken.
    /// (The caller checks the guest's file quota first.)
    pub(crate) fn register(&mut self, file: FixedFile) -> Result<u32, Errno> {
        let index = match self.slots.iter().position(|s| s.file.is_none()) {
            Some(i) => i,
            None if self.slots.len() <= INDEX_MASK as usize => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
            None => return Err(Errno::MFile),
        };
        let slot = &mut self.slots[index];
        slot.file = Some(file);
        self.live += 1;
        Ok(u32::from(slot.generation) << INDEX_BITS | index as u32)
    }

    /// The file registered under `slot`; `badf` for a slot not registered
    /// now (never registered, unregistered, or forged).
    pub(crate) fn get(&self, slot: u32) -> Result<&FixedFile, Errno> {
        match self.slots.get((slot & INDEX_MASK) as usize) {
            Some(Slot {
                generation,
                file: Some(f),
            }) if u32::from(*generation) == slot >> INDEX_BITS => Ok(f),
            _ => Err(Errno::BadF),
        }
    }

    /// Unregisters `slot`, closing its file unless a descriptor or a
    /// transfer still holds it; `badf` as [`get`](Self::get).
    pub(crate) fn unregister(&mut self, slot: u32) -> Result<(), Errno> {
        self.get(slot)?;
        let s = &mut self.slots[(slot & INDEX_MASK) as usize];
        s.file = None;
        s.generation = s.generation.wrapping_add(1);
        self.live -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(read: bool, write: bool) -> FixedFile {
        FixedFile {
            file: Arc::new(File::open("/dev/null").unwrap()),
            read,
            write,
            direct: false,
        }
    }

    #[test]
    fn slots_name_their_file_until_unregistered() {
        let mut t = FixedFiles::default();
        let a = t.register(file(true, false)).unwrap();
        let b = t.register(file(false, true)).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.live(), 2);
        assert!(t.get(a).unwrap().read && !t.get(a).unwrap().write);
        assert!(t.get(b).unwrap().write);
        t.unregister(a).unwrap();
        assert_eq!(t.live(), 1);
        assert_eq!(t.get(a).unwrap_err(), Errno::BadF);
        assert_eq!(t.unregister(a), Err(Errno::BadF), "double unregister");
        assert!(t.get(b).is_ok(), "the other slot is untouched");
    }

    #[test]
    fn a_reused_index_does_not_revive_a_stale_slot() {
        let mut t = FixedFiles::default();
        let a = t.register(file(true, true)).unwrap();
        t.unregister(a).unwrap();
        let c = t.register(file(true, false)).unwrap();
        assert_eq!(c & INDEX_MASK, a & INDEX_MASK, "the free index is reused");
        assert_ne!(c, a);
        assert_eq!(t.get(a).unwrap_err(), Errno::BadF);
        assert_eq!(t.unregister(a), Err(Errno::BadF));
        assert!(t.get(c).is_ok(), "the stale slot's unregister left the new one");
    }

    #[test]
    fn forged_slots_are_badf() {
        let mut t = FixedFiles::default();
        let a = t.register(file(true, false)).unwrap();
        for forged in [a + 1, a | 1 << 16, u32::MAX, INDEX_MASK] {
            assert_eq!(t.get(forged).unwrap_err(), Errno::BadF, "{forged:#x}");
        }
    }

    #[test]
    fn directions_follow_the_descriptor() {
        let ro = file(true, false);
        assert!(ro.for_transfer(true).is_ok());
        assert_eq!(ro.for_transfer(false).unwrap_err(), Errno::BadF);
        let wo = file(false, true);
        assert!(wo.for_transfer(false).is_ok());
        assert_eq!(wo.for_transfer(true).unwrap_err(), Errno::BadF);
    }

    #[test]
    fn the_index_space_is_bounded() {
        let mut t = FixedFiles::default();
        let f = file(true, false);
        for _ in 0..=INDEX_MASK {
            t.register(f.clone()).unwrap();
        }
        assert_eq!(t.register(f.clone()), Err(Errno::MFile));
        assert_eq!(t.live(), INDEX_MASK + 1);
    }
}
