//! Transparent huge pages: whether the host has them, and asking for them on
//! a range.
//!
//! A memory is **THP-backed** when its reservation is 2 MiB-aligned, at
//! least 2 MiB long, advised `MADV_HUGEPAGE`, and the host's THP mode
//! (`/sys/kernel/mm/transparent_hugepage/enabled`) is `always` or `madvise`.
//! Such a memory faults 2 MiB at a time once a whole aligned 2 MiB lies
//! inside its accessible part, and `mlock`ing a 2 MiB long-term chunk of it
//! costs about one page's (one folio): why long-term pins default to 2 MiB
//! chunks there ([`LongtermChunks::Auto`](crate::LongtermChunks::Auto)).

use std::sync::OnceLock;

/// A transparent huge page (x86-64, aarch64 with 4 KiB pages): the
/// alignment of THP-backed memories and the largest long-term chunk.
pub(crate) const HUGE_PAGE: u64 = 2 << 20;

/// Whether the host hands out transparent huge pages to ranges advised
/// `MADV_HUGEPAGE` (mode `always` or `madvise`; not `never`, and not a
/// kernel without THP). Read once per process.
pub(crate) fn host_has_thp() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|mode| mode.contains("[always]") || mode.contains("[madvise]"))
    })
}

/// Advises `[base, base + len)` `MADV_HUGEPAGE`; whether the host took it
/// (and has THP at all).
///
/// # Safety
/// The range must be part of a mapping the caller owns; the advice changes
/// no contents and no protection.
pub(crate) unsafe fn advise(base: *mut u8, len: u64) -> bool {
    let Ok(len) = usize::try_from(len) else {
        return false;
    };
    // SAFETY: the caller owns the range; MADV_HUGEPAGE only sets a flag on
    // its VMAs.
    let advised = unsafe { rustix::mm::madvise(base.cast(), len, rustix::mm::Advice::LinuxHugepage) };
    advised.is_ok() && host_has_thp()
}
