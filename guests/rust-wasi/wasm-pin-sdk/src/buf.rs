//! `PinnedBuf`: a page-aligned buffer pinned for the host while it lives.

use crate::bindings::wasm_pin::mm::gup::{self, GupFlags, PinnedPages};
use crate::Error;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// A buffer of whole host pages of this program's memory, pinned
/// (`pin-user-pages-fast`, writable) for as long as it lives: the host and
/// its devices may read and write it in place. Dropping it unpins (marking
/// the pages dirty, as after a read into them) and frees it.
///
/// It derefs to `[u8]` of [`len`](PinnedBuf::len) bytes. While a transfer
/// into it is in flight ([`crate::Ticket`]) it is mutably borrowed, so the
/// program cannot look at bytes the host is still writing.
pub struct PinnedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
    len: usize,
    pin: Option<PinnedPages>,
}

impl PinnedBuf {
    /// A zeroed buffer of at least `len` bytes (rounded up to whole pages),
    /// pinned for short-lived I/O.
    pub fn new(len: usize) -> Result<PinnedBuf, Error> {
        PinnedBuf::alloc(len, false)
    }

    /// As [`new`](PinnedBuf::new), pinned long-term (`pin-longterm-pages`):
    /// for a buffer reused for many transfers, which the host may register
    /// with its I/O backend (io_uring fixed buffers). Counts against the
    /// guest's long-term quota and the memory's memlock limit (`nomem`).
    pub fn new_longterm(len: usize) -> Result<PinnedBuf, Error> {
        PinnedBuf::alloc(len, true)
    }

    fn alloc(len: usize, longterm: bool) -> Result<PinnedBuf, Error> {
        let page = crate::page_size();
        let pages = len.max(1).div_ceil(page);
        let size = pages.checked_mul(page).ok_or(Error::Pin(gup::Errno::Nomem))?;
        let layout = Layout::from_size_align(size, page).map_err(|_| Error::Pin(gup::Errno::Nomem))?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or(Error::Pin(gup::Errno::Nomem))?;
        let mut buf = PinnedBuf {
            ptr,
            layout,
            len,
            pin: None,
        };
        let (start, n) = (ptr.as_ptr() as u64, pages as u32);
        let pin = if longterm {
            gup::pin_longterm_pages_fast(start, n, GupFlags::WRITE)?
        } else {
            gup::pin_user_pages_fast(start, n, GupFlags::WRITE)?
        };
        if pin.len_pages() != n {
            // Partial (the end of memory cannot be: we own these pages).
            return Err(Error::Pin(gup::Errno::Fault));
        }
        buf.pin = Some(pin);
        Ok(buf)
    }

    /// The buffer's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pin, for the raw `zero-copy-io` calls.
    pub fn pin(&self) -> &PinnedPages {
        self.pin.as_ref().expect("pinned while alive")
    }

    /// Checks that `range` lies in the buffer; the `(offset, len)` the host
    /// calls take.
    pub(crate) fn span(&self, range: std::ops::Range<usize>) -> Result<(u32, u32), Error> {
        if range.start > range.end || range.end > self.len {
            return Err(Error::Pin(gup::Errno::Fault));
        }
        let off = u32::try_from(range.start).map_err(|_| Error::Pin(gup::Errno::Fault))?;
        let len = u32::try_from(range.end - range.start).map_err(|_| Error::Pin(gup::Errno::Fault))?;
        Ok((off, len))
    }
}

impl Deref for PinnedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live allocation of `layout.size() >= len`
        // bytes, zero-initialised, owned by `self`; transfers that write it
        // hold `&mut self` (see `Ticket`), so no write overlaps this borrow.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for PinnedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PinnedBuf {
    fn drop(&mut self) {
        if let Some(pin) = self.pin.take() {
            PinnedPages::unpin(pin, true);
        }
        // SAFETY: allocated in `alloc` with this layout; freed once. The
        // host no longer writes it: the pin is released, and every transfer
        // into it finished before its `Ticket` released the borrow.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}
