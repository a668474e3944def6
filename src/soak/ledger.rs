//! The soak's ledger: what each tenant's files must hold (a shadow of every
//! write reported done, and of every truncation), the byte pattern and
//! checksum the guest computes, the operation counters, and the violations
//! found (any one fails the soak).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// The bytes the tenant guest writes for `seed`: xorshift32 from
/// `seed | 1`, the low byte of each state (the guest's `$fill`).
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// FNV-1a 32 of `bytes` from the offset basis (the guest's `$fnv`).
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0x811c_9dc5, |h, &b| (h ^ u32::from(b)).wrapping_mul(16_777_619))
}

/// One tenant file and what it must contain.
#[derive(Debug)]
pub struct FileShadow {
    /// Its path on the host.
    pub path: PathBuf,
    /// Every byte it must hold: the initial contents, then each write
    /// reported done and each truncation, in order.
    pub bytes: Vec<u8>,
    /// The guest's open reopened it for direct I/O.
    pub direct: bool,
    /// Removed from its directory while the guest held it open: the guest
    /// still reads and writes the unlinked file; the host cannot.
    pub unlinked: bool,
}

impl FileShadow {
    /// Creates the file with `len` bytes of `pattern(seed)`.
    pub fn create(path: PathBuf, len: usize, seed: u32) -> std::io::Result<FileShadow> {
        let bytes = pattern(seed, len);
        std::fs::write(&path, &bytes)?;
        Ok(FileShadow {
            path,
            bytes,
            direct: false,
            unlinked: false,
        })
    }

    /// Recreates a removed file with fresh contents.
    pub fn recreate(&mut self, len: usize, seed: u32) -> std::io::Result<()> {
        *self = FileShadow::create(std::mem::take(&mut self.path), len, seed)?;
        Ok(())
    }

    /// Records a write of `data` at `off` (zeros fill any gap past the end).
    pub fn write(&mut self, off: u64, data: &[u8]) {
        let off = off as usize;
        if self.bytes.len() < off + data.len() {
            self.bytes.resize(off + data.len(), 0);
        }
        self.bytes[off..off + data.len()].copy_from_slice(data);
    }

    /// The bytes a read of `len` at `off` must return now.
    pub fn expect(&self, off: u64, len: u32) -> &[u8] {
        let start = (off as usize).min(self.bytes.len());
        let end = (start + len as usize).min(self.bytes.len());
        &self.bytes[start..end]
    }

    /// Compares `[off, off + len)` of the file on disk with the shadow
    /// (the whole file, and its length, when `len` is `None`).
    pub fn verify_on_disk(&self, range: Option<(u64, usize)>) -> Result<(), String> {
        if self.unlinked {
            return Ok(());
        }
        let f = File::open(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let (off, len) = match range {
            Some(r) => r,
            None => {
                let size = f.metadata().map_err(|e| e.to_string())?.len();
                if size != self.bytes.len() as u64 {
                    return Err(format!(
                        "{}: {size} bytes on disk, {} in the ledger",
                        self.path.display(),
                        self.bytes.len()
                    ));
                }
                (0, size as usize)
            }
        };
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off)
            .map_err(|e| format!("{} at {off}+{len}: {e}", self.path.display()))?;
        let want = &self.bytes[off as usize..off as usize + len];
        if buf != want {
            let i = buf.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!(
                "{}: byte {} is {:#04x} on disk, {:#04x} in the ledger (a write reported done is missing)",
                self.path.display(),
                off as usize + i,
                buf[i],
                want[i]
            ));
        }
        Ok(())
    }
}

/// Counters of one kind of operation.
#[derive(Debug, Default)]
pub struct OpCount {
    /// Completed and checked.
    pub done: AtomicU64,
    /// Bytes moved by them.
    pub bytes: AtomicU64,
}

/// What went wrong: every check that failed, as a sentence. The soak fails
/// if there is any.
#[derive(Debug, Default)]
pub struct Violations {
    list: Mutex<Vec<String>>,
    count: AtomicU64,
}

impl Violations {
    /// Records one (the first 100 are kept word for word).
    pub fn add(&self, what: String) {
        self.count.fetch_add(1, Relaxed);
        eprintln!("soak: VIOLATION: {what}");
        let mut l = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() < 100 {
            l.push(what);
        }
    }

    /// How many so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The ones kept.
    pub fn list(&self) -> Vec<String> {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_writes_extend_with_zeros_and_expect_clips() {
        let mut f = FileShadow {
            path: PathBuf::new(),
            bytes: vec![1, 2, 3],
            direct: false,
            unlinked: false,
        };
        f.write(5, &[9, 9]);
        assert_eq!(f.bytes, [1, 2, 3, 0, 0, 9, 9]);
        assert_eq!(f.expect(6, 10), &[9]);
        assert_eq!(f.expect(10, 10), &[] as &[u8]);
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(pattern(7, 3), pattern(6, 3));
    }
}
