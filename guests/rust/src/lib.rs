//! A realistic guest job: fill a buffer, pin it, have the host checksum it
//! through the pin (no copy), check the answer, unpin dirty.

wit_bindgen::generate!({ path: "../../wit", world: "test-guest", generate_all });

use wasm_pin::mm::gup::{self, GupFlags, PinnedPages};

struct Checksum;

const PAGES: usize = 16;

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// A page-aligned buffer of `pages` pages inside a larger allocation.
fn aligned(storage: &mut Vec<u8>, page: usize, pages: usize) -> &mut [u8] {
    storage.resize((pages + 1) * page, 0);
    let off = storage.as_ptr().align_offset(page);
    &mut storage[off..off + pages * page]
}

impl Guest for Checksum {
    fn run() -> Result<(), String> {
        let page = gup::page_size() as usize;
        let mut storage = Vec::new();
        let buf = aligned(&mut storage, page, PAGES);
        // Fill with an xorshift stream so every byte matters to the hash.
        let mut x = 0x2545_f491u32;
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let expected = fnv1a(buf);
        let addr = buf.as_ptr() as u64;
        let before = gup::stats();

        let pins = gup::pin_user_pages_fast(addr, PAGES as u32, GupFlags::WRITE)
            .map_err(|e| format!("pin_user_pages_fast: {e:?}"))?;
        if pins.start() != addr || pins.len_pages() as usize != PAGES {
            return Err(format!("pinned {} pages at {:#x}, wanted {PAGES} at {addr:#x}", pins.len_pages(), pins.start()));
        }
        if !gup::page_maybe_dma_pinned(addr + (PAGES as u64 - 1) * page as u64) {
            return Err("last page not reported pinned".into());
        }
        let got = pins.checksum(0, (PAGES * page) as u32, 0x811c_9dc5).map_err(|e| format!("checksum: {e:?}"))?;
        if got != expected {
            return Err(format!("host checksum {got:#010x}, guest computed {expected:#010x}"));
        }
        let during = gup::stats();
        if during.foll_pin_acquired - before.foll_pin_acquired != PAGES as u64 {
            return Err(format!("stats: {} pages acquired", during.foll_pin_acquired - before.foll_pin_acquired));
        }
        PinnedPages::unpin(pins, true);

        let after = gup::stats();
        if gup::page_maybe_dma_pinned(addr) {
            return Err("still pinned after unpin".into());
        }
        if after.foll_pin_released - before.foll_pin_released != PAGES as u64
            || after.dirtied_pages - before.dirtied_pages != PAGES as u64
        {
            return Err(format!("stats after unpin: {after:?}"));
        }
        // A bad request from Rust gets an error value too.
        match gup::pin_user_pages(addr + 1, 1, GupFlags::empty()) {
            Err(gup::Errno::Inval) => Ok(()),
            other => Err(format!("unaligned pin gave {:?}", other.map(|p| p.len_pages()))),
        }
    }
}

export!(Checksum);
