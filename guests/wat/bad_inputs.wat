;; Each bad input a guest can pass through the component ABI gets its errno
;; (or a partial count), never a trap. `run` returns err("bad_inputs: step X")
;; at the first wrong answer. errno cases: inval=0 fault=1 nomem=2 busy=3
;; again=4 opnotsupp=5 overflow=6 perm=7 badf=8. Memory: 2 wasm pages = 32 host
;; pages (0x0..0x20000).
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages" (func $pin (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages-fast" (func $pin_fast (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages" (func $pin_lt (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "open-grant" (func $open_grant (param i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[method]pinned-pages.start" (func $start (param i32) (result i64)))
  (import "wasm-pin:mm/gup@0.1.0" "[method]pinned-pages.len-pages" (func $len (param i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[method]pinned-pages.checksum" (func $checksum (param i32 i32 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[static]pinned-pages.unpin" (func $unpin (param i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[resource-drop]pinned-pages" (func $drop_pin (param i32)))

  (memory (export "memory") 2)
  (data (i32.const 0x300) "bad_inputs: step ?")
  (data (i32.const 0x320) "no-such-grant")

  (func $fail (param $step i32) (result i32)
    (i32.store8 (i32.const 0x311) (i32.add (i32.const 0x41) (local.get $step)))
    (i32.store8 (i32.const 0x40) (i32.const 1))
    (i32.store (i32.const 0x44) (i32.const 0x300))
    (i32.store (i32.const 0x48) (i32.const 18))
    (i32.const 0x40))

  ;; The `err` case at the return area, or -1 for `ok`.
  (func $err (result i32)
    (if (result i32) (i32.load8_u (i32.const 0x100))
      (then (i32.load8_u (i32.const 0x104)))
      (else (i32.const -1))))
  (func $ok (result i32)
    (if (result i32) (i32.load8_u (i32.const 0x100))
      (then (i32.const -1))
      (else (i32.load (i32.const 0x104)))))

  (func (export "run") (result i32)
    (local $h i32)
    ;; A: out of bounds: far away, and exactly at the end of memory.
    (call $pin (i64.const 0x10000000000) (i32.const 1) (i32.const 0) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 1)) (then (return (call $fail (i32.const 0)))))
    (call $pin_fast (i64.const 0x20000) (i32.const 1) (i32.const 1) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 1)) (then (return (call $fail (i32.const 0)))))
    ;; B: start + length overflows u64: inval.
    (call $pin (i64.const 0xfffffffffffff000) (i32.const 2) (i32.const 0) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 0)) (then (return (call $fail (i32.const 1)))))
    ;; C: start + length runs past the memory: a partial count (1 page).
    (call $pin (i64.const 0x1f000) (i32.const 4) (i32.const 1) (i32.const 0x100))
    (local.set $h (call $ok))
    (if (i32.lt_s (local.get $h) (i32.const 0)) (then (return (call $fail (i32.const 2)))))
    (if (i32.ne (call $len (local.get $h)) (i32.const 1)) (then (return (call $fail (i32.const 2)))))
    (call $drop_pin (local.get $h))
    ;; D: nr-pages 0: an empty pin.
    (call $pin_fast (i64.const 0x1000) (i32.const 0) (i32.const 0) (i32.const 0x100))
    (local.set $h (call $ok))
    (if (i32.lt_s (local.get $h) (i32.const 0)) (then (return (call $fail (i32.const 3)))))
    (if (i32.ne (call $len (local.get $h)) (i32.const 0)) (then (return (call $fail (i32.const 3)))))
    (call $unpin (local.get $h) (i32.const 0))
    ;; E: nr-pages huge: everything up to the end of memory (32 pages).
    (call $pin (i64.const 0) (i32.const -1) (i32.const 0) (i32.const 0x100))
    (local.set $h (call $ok))
    (if (i32.lt_s (local.get $h) (i32.const 0)) (then (return (call $fail (i32.const 4)))))
    (if (i32.ne (call $len (local.get $h)) (i32.const 32)) (then (return (call $fail (i32.const 4)))))
    ;; F: checksum outside the pin: fault.
    (call $checksum (local.get $h) (i32.const 0x1fff0) (i32.const 0x20) (i32.const 0x811c9dc5) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 1)) (then (return (call $fail (i32.const 5)))))
    (call $checksum (local.get $h) (i32.const -1) (i32.const 2) (i32.const 0x811c9dc5) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 1)) (then (return (call $fail (i32.const 5)))))
    (call $unpin (local.get $h) (i32.const 0))
    ;; G: unaligned start: inval, on every entry point.
    (call $pin (i64.const 0x10001) (i32.const 1) (i32.const 0) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 0)) (then (return (call $fail (i32.const 6)))))
    (call $pin_lt (i64.const 0x10800) (i32.const 1) (i32.const 0) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 0)) (then (return (call $fail (i32.const 6)))))
    ;; H: a grant the embedder did not give: badf.
    (call $open_grant (i32.const 0x320) (i32.const 13) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 8)) (then (return (call $fail (i32.const 7)))))
    ;; ok
    (i32.store8 (i32.const 0x40) (i32.const 0))
    (i32.const 0x40))
)
