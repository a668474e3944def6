//! Core-ABI handles: the small integers a core-module guest holds, one table
//! per instance, each slot with a generation.
//!
//! The objects themselves live in the store's `ResourceTable`, whose indices
//! are shared by every instance of the store and reused after a delete. A
//! core guest never sees those indices: it sees a handle of this table, so
//!
//! - a second instance in the same store cannot name the first one's pins,
//!   grants or I/O objects (each instance, keyed by [`HandleOwner`], has its own
//!   table; a handle of another table is `badf`);
//! - a released handle stays dead: its slot's generation moves on, so the
//!   same integer never names the next object put in that slot (`badf`); a
//!   slot whose generation would wrap is retired, never reused;
//! - a handle of the wrong kind (a grant passed as a pin) is `badf` and
//!   leaves the object alone.
//!
//! Handle layout: `generation << 16 | (slot + 1)`, generation in
//! `1..=0x7fff`, so every live handle is a positive `i32` and `0` and
//! negatives stay free for `-errno`.

use crate::caller::CallerId;
use runtime_mm::Errno;
use std::any::TypeId;
use wasmtime::component::Resource;

/// Whose table a handle is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HandleOwner {
    /// A component instance (its registered-file slots).
    Component(CallerId),
    /// A core instance: the base of its `memory` export and the code
    /// address of its module (see `core_abi::owner`).
    Core { base: usize, module: usize },
}

const SLOT_BITS: u32 = 16;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
/// Slots per instance: more than any quota allows outstanding at once.
const MAX_SLOTS: usize = SLOT_MASK as usize;
const MAX_GEN: u16 = 0x7fff;

#[derive(Debug, Clone, Copy)]
struct Slot {
    generation: u16,
    /// The `ResourceTable` rep and the type it was pushed as.
    entry: Option<(u32, TypeId)>,
}

/// One instance's handle table.
#[derive(Debug, Default)]
pub(crate) struct CoreHandles {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl CoreHandles {
    /// Gives `res` a handle. `MFile` when the table is full (every slot live
    /// or retired).
    pub(crate) fn insert<T: 'static>(&mut self, res: &Resource<T>) -> Result<i32, Errno> {
        let entry = Some((res.rep(), TypeId::of::<T>()));
        let index = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() < MAX_SLOTS => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                (self.slots.len() - 1) as u32
            }
            None => return Err(Errno::MFile),
        };
        let slot = &mut self.slots[index as usize];
        slot.generation += 1;
        slot.entry = entry;
        Ok(((u32::from(slot.generation) << SLOT_BITS) | (index + 1)) as i32)
    }

    fn slot(&self, handle: i32) -> Result<(u32, &Slot), Errno> {
        let h = u32::try_from(handle).map_err(|_| Errno::BadF)?;
        let index = (h & SLOT_MASK).checked_sub(1).ok_or(Errno::BadF)?;
        let slot = self.slots.get(index as usize).ok_or(Errno::BadF)?;
        if u32::from(slot.generation) != h >> SLOT_BITS {
            return Err(Errno::BadF);
        }
        Ok((index, slot))
    }

    /// The object behind `handle`, if it is live and of type `T`.
    pub(crate) fn get<T: 'static>(&self, handle: i32) -> Result<Resource<T>, Errno> {
        match self.slot(handle)?.1.entry {
            Some((rep, ty)) if ty == TypeId::of::<T>() => Ok(Resource::new_own(rep)),
            _ => Err(Errno::BadF),
        }
    }

    /// Ends `handle` (after its object was removed from the table): the slot
    /// is reused under the next generation, or retired if none is left.
    pub(crate) fn remove<T: 'static>(&mut self, handle: i32) -> Result<Resource<T>, Errno> {
        let res = self.get::<T>(handle)?;
        let (index, _) = self.slot(handle)?;
        let slot = &mut self.slots[index as usize];
        slot.entry = None;
        if slot.generation < MAX_GEN {
            self.free.push(index);
        }
        Ok(res)
    }

    /// The handles still live.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.slots.iter().filter(|s| s.entry.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A;
    struct B;

    #[test]
    fn handles_are_positive_and_typed() {
        let mut t = CoreHandles::default();
        let h = t.insert(&Resource::<A>::new_own(7)).unwrap();
        assert!(h > 0);
        assert_eq!(t.get::<A>(h).unwrap().rep(), 7);
        assert_eq!(t.get::<B>(h).unwrap_err(), Errno::BadF);
        assert_eq!(t.remove::<B>(h).unwrap_err(), Errno::BadF);
        assert_eq!(t.live(), 1, "a wrong-type remove leaves the handle");
        for bad in [0, -1, i32::MIN, h + 1, h ^ (1 << 16)] {
            assert_eq!(t.get::<A>(bad).unwrap_err(), Errno::BadF, "{bad:#x}");
        }
    }

    #[test]
    fn a_released_handle_never_names_the_next_object() {
        let mut t = CoreHandles::default();
        let old = t.insert(&Resource::<A>::new_own(1)).unwrap();
        t.remove::<A>(old).unwrap();
        let new = t.insert(&Resource::<A>::new_own(1)).unwrap();
        assert_ne!(old, new, "same slot, next generation");
        assert_eq!(old & 0xffff, new & 0xffff);
        assert_eq!(t.get::<A>(old).unwrap_err(), Errno::BadF);
        assert_eq!(t.remove::<A>(old).unwrap_err(), Errno::BadF);
        assert_eq!(t.get::<A>(new).unwrap().rep(), 1);
    }

    #[test]
    fn a_slot_is_retired_before_its_generation_wraps() {
        let mut t = CoreHandles::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_GEN {
            let h = t.insert(&Resource::<A>::new_own(0)).unwrap();
            assert!(seen.insert(h), "handle {h:#x} was handed out twice");
            t.remove::<A>(h).unwrap();
        }
        // Slot 0 is used up: the next handle takes a fresh slot.
        let h = t.insert(&Resource::<A>::new_own(0)).unwrap();
        assert_eq!(h & 0xffff, 2);
        assert!(seen.insert(h));
    }

    /// A table holds `MAX_SLOTS` handles at most: one more is `mfile`, and
    /// no handle's index spills into its generation bits.
    #[test]
    fn a_full_table_is_mfile() {
        let mut t = CoreHandles::default();
        for i in 0..MAX_SLOTS {
            let h = t.insert(&Resource::<A>::new_own(i as u32)).unwrap();
            assert_eq!((h as u32 & SLOT_MASK) as usize, i + 1);
        }
        assert_eq!(t.insert(&Resource::<A>::new_own(0)).unwrap_err(), Errno::MFile);
        assert_eq!(t.live(), MAX_SLOTS);
    }
}
