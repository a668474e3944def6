;; Every `gup` import on its happy path. `run` returns ok, or err("gup_all: step X")
;; naming the first check that failed. Memory: 2 wasm pages = 32 host pages;
;; the buffer is host pages 16..19 (0x10000..0x14000); 0x100 is the return area
;; of imports, 0x200 the mm-stats record, 0x40 run's own return area.
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages" (func $pin (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages-fast" (func $pin_fast (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages" (func $pin_lt (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages-fast" (func $pin_lt_fast (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "open-grant" (func $open_grant (param i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages-remote" (func $pin_remote (param i32 i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages-remote" (func $pin_lt_remote (param i32 i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "page-maybe-dma-pinned" (func $is_pinned (param i64) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "page-size" (func $page_size (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "stats" (func $stats (param i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[method]pinned-pages.start" (func $start (param i32) (result i64)))
  (import "wasm-pin:mm/gup@0.1.0" "[method]pinned-pages.len-pages" (func $len (param i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[method]pinned-pages.checksum" (func $checksum (param i32 i32 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[static]pinned-pages.unpin" (func $unpin (param i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[resource-drop]pinned-pages" (func $drop_pin (param i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[method]memory-grant.len" (func $grant_len (param i32) (result i64)))
  (import "wasm-pin:mm/gup@0.1.0" "[resource-drop]memory-grant" (func $drop_grant (param i32)))

  (memory (export "memory") 2)
  (data (i32.const 0x300) "gup_all: step ?")
  (data (i32.const 0x320) "peer")

  ;; err("gup_all: step <letter>")
  (func $fail (param $step i32) (result i32)
    (i32.store8 (i32.const 0x30e) (i32.add (i32.const 0x41) (local.get $step)))
    (i32.store8 (i32.const 0x40) (i32.const 1))
    (i32.store (i32.const 0x44) (i32.const 0x300))
    (i32.store (i32.const 0x48) (i32.const 15))
    (i32.const 0x40))

  ;; The `ok` payload at the return area, or -1 for `err`.
  (func $ok (result i32)
    (if (result i32) (i32.load8_u (i32.const 0x100))
      (then (i32.const -1))
      (else (i32.load (i32.const 0x104)))))

  (func $fnv (param $p i32) (param $n i32) (result i32)
    (local $h i32) (local $end i32)
    (local.set $h (i32.const 0x811c9dc5))
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $h (i32.mul (i32.xor (local.get $h) (i32.load8_u (local.get $p))) (i32.const 0x01000193)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $h))

  ;; mm-stats field `i` (u64, declaration order).
  (func $stat (param $i i32) (result i64)
    (call $stats (i32.const 0x200))
    (i64.load (i32.add (i32.const 0x200) (i32.shl (local.get $i) (i32.const 3)))))

  (func (export "run") (result i32)
    (local $i i32) (local $sum i32)
    (local $h1 i32) (local $h2 i32) (local $h3 i32) (local $h4 i32)
    (local $g i32) (local $r1 i32) (local $r2 i32)
    ;; A: the pin granularity is the host page.
    (if (i32.ne (call $page_size) (i32.const 4096)) (then (return (call $fail (i32.const 0)))))
    ;; Fill the buffer (2 pages) and hash it here.
    (block $filled
      (loop $fill
        (br_if $filled (i32.ge_u (local.get $i) (i32.const 8192)))
        (i32.store8 (i32.add (i32.const 0x10000) (local.get $i)) (i32.mul (local.get $i) (i32.const 7)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $fill)))
    (local.set $sum (call $fnv (i32.const 0x10000) (i32.const 8192)))
    ;; B: pin-user-pages, write.
    (call $pin (i64.const 0x10000) (i32.const 2) (i32.const 1) (i32.const 0x100))
    (local.set $h1 (call $ok))
    (if (i32.lt_s (local.get $h1) (i32.const 0)) (then (return (call $fail (i32.const 1)))))
    ;; C: start and len-pages.
    (if (i64.ne (call $start (local.get $h1)) (i64.const 0x10000)) (then (return (call $fail (i32.const 2)))))
    (if (i32.ne (call $len (local.get $h1)) (i32.const 2)) (then (return (call $fail (i32.const 2)))))
    ;; D: the host hashes the pinned bytes to the same value, in one go and
    ;; as a stream of two chunks.
    (call $checksum (local.get $h1) (i32.const 0) (i32.const 8192) (i32.const 0x811c9dc5) (i32.const 0x100))
    (if (i32.ne (call $ok) (local.get $sum)) (then (return (call $fail (i32.const 3)))))
    (call $checksum (local.get $h1) (i32.const 0) (i32.const 1000) (i32.const 0x811c9dc5) (i32.const 0x100))
    (call $checksum (local.get $h1) (i32.const 1000) (i32.const 7192) (call $ok) (i32.const 0x100))
    (if (i32.ne (call $ok) (local.get $sum)) (then (return (call $fail (i32.const 3)))))
    ;; E: page-maybe-dma-pinned.
    (if (i32.eqz (call $is_pinned (i64.const 0x11000))) (then (return (call $fail (i32.const 4)))))
    (if (call $is_pinned (i64.const 0)) (then (return (call $fail (i32.const 4)))))
    ;; F: pin-user-pages-fast (the pages are present now).
    (call $pin_fast (i64.const 0x10000) (i32.const 2) (i32.const 0) (i32.const 0x100))
    (local.set $h2 (call $ok))
    (if (i32.lt_s (local.get $h2) (i32.const 0)) (then (return (call $fail (i32.const 5)))))
    (if (i32.ne (call $len (local.get $h2)) (i32.const 2)) (then (return (call $fail (i32.const 5)))))
    ;; G: pin-longterm-pages and pin-longterm-pages-fast.
    (call $pin_lt (i64.const 0x12000) (i32.const 2) (i32.const 1) (i32.const 0x100))
    (local.set $h3 (call $ok))
    (if (i32.lt_s (local.get $h3) (i32.const 0)) (then (return (call $fail (i32.const 6)))))
    (call $pin_lt_fast (i64.const 0x12000) (i32.const 2) (i32.const 0) (i32.const 0x100))
    (local.set $h4 (call $ok))
    (if (i32.lt_s (local.get $h4) (i32.const 0)) (then (return (call $fail (i32.const 6)))))
    ;; H: stats agree: 8 pages pinned, 4 of them long-term, 2 of those fast.
    (if (i64.ne (i64.sub (call $stat (i32.const 0)) (call $stat (i32.const 1))) (i64.const 8))
      (then (return (call $fail (i32.const 7)))))
    (if (i64.ne (call $stat (i32.const 7)) (i64.const 4)) (then (return (call $fail (i32.const 7)))))
    (if (i64.ne (call $stat (i32.const 10)) (i64.const 8192)) (then (return (call $fail (i32.const 7)))))
    ;; I: release every way: dirty unpin, drop, clean unpin, drop.
    (call $unpin (local.get $h1) (i32.const 1))
    (call $drop_pin (local.get $h2))
    (call $unpin (local.get $h3) (i32.const 0))
    (call $drop_pin (local.get $h4))
    (if (call $is_pinned (i64.const 0x11000)) (then (return (call $fail (i32.const 8)))))
    ;; J: acquired = released; the dirty unpin dirtied 2 pages; nothing locked.
    (if (i64.ne (call $stat (i32.const 0)) (call $stat (i32.const 1))) (then (return (call $fail (i32.const 9)))))
    (if (i64.ne (call $stat (i32.const 9)) (i64.const 2)) (then (return (call $fail (i32.const 9)))))
    (if (i64.ne (call $stat (i32.const 10)) (i64.const 0)) (then (return (call $fail (i32.const 9)))))
    ;; K: a granted memory, pinned remotely both ways.
    (call $open_grant (i32.const 0x320) (i32.const 4) (i32.const 0x100))
    (local.set $g (call $ok))
    (if (i32.lt_s (local.get $g) (i32.const 0)) (then (return (call $fail (i32.const 10)))))
    (if (i64.eqz (call $grant_len (local.get $g))) (then (return (call $fail (i32.const 10)))))
    (call $pin_remote (local.get $g) (i64.const 0) (i32.const 1) (i32.const 1) (i32.const 0x100))
    (local.set $r1 (call $ok))
    (if (i32.lt_s (local.get $r1) (i32.const 0)) (then (return (call $fail (i32.const 11)))))
    (call $pin_lt_remote (local.get $g) (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 0x100))
    (local.set $r2 (call $ok))
    (if (i32.lt_s (local.get $r2) (i32.const 0)) (then (return (call $fail (i32.const 11)))))
    (call $unpin (local.get $r1) (i32.const 1))
    (call $unpin (local.get $r2) (i32.const 0))
    (call $drop_grant (local.get $g))
    ;; ok
    (i32.store8 (i32.const 0x40) (i32.const 0))
    (i32.const 0x40))
)
