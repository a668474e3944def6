//! The baseline the lock-free fast path is measured against: the same page
//! entries and the same per-page work, but every call serialised by one
//! `Mutex` over the whole table (how a page table guarded by `mmap_lock`
//! alone would behave).

use std::sync::Mutex;

const PRESENT: u64 = 1;
const PIN_UNIT: u64 = 1 << 8;
const PIN_MAX: u64 = (1 << 20) - 1;

/// A flat table of entries behind one lock.
pub struct MutexTable {
    entries: Mutex<Vec<u64>>,
}

impl MutexTable {
    /// `pages` present, unpinned pages.
    pub fn new(pages: usize) -> Self {
        MutexTable {
            entries: Mutex::new(vec![PRESENT; pages]),
        }
    }

    /// Pins up to `n` pages from `first`; returns how many.
    pub fn pin(&self, first: usize, n: usize) -> usize {
        let mut t = self.entries.lock().unwrap();
        let mut done = 0;
        for e in &mut t[first..first + n] {
            if *e & PRESENT == 0 || (*e >> 8) & PIN_MAX == PIN_MAX {
                break;
            }
            *e += PIN_UNIT;
            done += 1;
        }
        done
    }

    /// Unpins `n` pages from `first`.
    pub fn unpin(&self, first: usize, n: usize) {
        let mut t = self.entries.lock().unwrap();
        for e in &mut t[first..first + n] {
            *e -= PIN_UNIT;
        }
    }
}
