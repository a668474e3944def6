//! A WASI command that also imports `wasm-pin:mm/gup`: the `wasm-pin run`
//! tests' check that a command gets the pin imports, on its own memory.
//!
//! Pins two pages of a page-aligned heap buffer it filled, has the host hash
//! 16 bytes through the pin, unpins and prints what it saw; exits with 1 if
//! the host pinned anything but the buffer.

wit_bindgen::generate!({
    inline: "package wasm-pin:probe; world probe { import wasm-pin:mm/gup@0.1.0; }",
    path: "../../../wit",
    generate_all,
});

use std::alloc::{alloc, dealloc, Layout};
use wasip1_start as _;
use wasm_pin::mm::gup;

fn main() {
    let page = gup::page_size() as usize;
    let layout = Layout::from_size_align(2 * page, page).expect("page layout");
    // SAFETY: `layout` has a non-zero size.
    let buf = unsafe { alloc(layout) };
    assert!(!buf.is_null(), "out of memory");
    // SAFETY: `buf` points to `2 * page` bytes this function owns.
    let bytes = unsafe { std::slice::from_raw_parts_mut(buf, 2 * page) };
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = i as u8;
    }

    let pages = gup::pin_user_pages_fast(buf as u64, 2, gup::GupFlags::WRITE).expect("pin");
    let same = pages.start() == buf as u64 && pages.len_pages() == 2;
    println!("pinned {} pages of {page} bytes at the buffer: {same}", pages.len_pages());
    println!("checksum {:#010x}", pages.checksum(0, 16, 0x811c_9dc5).expect("checksum"));
    gup::PinnedPages::unpin(pages, false);
    let s = gup::stats();
    println!("pins acquired {}, released {}", s.foll_pin_acquired, s.foll_pin_released);

    // SAFETY: `buf` came from `alloc(layout)` and is freed once; `bytes` is
    // not used after this.
    unsafe { dealloc(buf, layout) };
    if !same {
        std::process::exit(1);
    }
}
