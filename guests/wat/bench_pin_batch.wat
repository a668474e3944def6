;; Benchmark guest: 625 × (pin-user-pages-fast-batch of 16 ranges of 64 KiB,
;; then unpin-batch of the 16 pins) = 10000 pins and unpins, two import
;; calls per 16.
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages-fast-batch" (func $pin_batch (param i32 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "unpin-batch" (func $unpin_batch (param i32 i32 i32)))
  (memory (export "memory") 20)
  (global $heap (mut i32) (i32.const 0x8000))
  ;; Bump allocator for the result lists; reset every round.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func (export "run") (result i32)
    (local $i i32) (local $k i32) (local $res i32)
    ;; 16 pin-range records at 0x1000 (16 bytes each: u64 start, u32 pages):
    ;; buffer k is 64 KiB at 0x10000 * (k + 1).
    (loop $fill
      (i64.store (i32.add (i32.const 0x1000) (i32.shl (local.get $k) (i32.const 4)))
        (i64.shl (i64.extend_i32_u (i32.add (local.get $k) (i32.const 1))) (i64.const 16)))
      (i32.store (i32.add (i32.const 0x1008) (i32.shl (local.get $k) (i32.const 4))) (i32.const 16))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $k) (i32.const 16))))
    (loop $again
      (global.set $heap (i32.const 0x8000))
      (call $pin_batch (i32.const 0x1000) (i32.const 16) (i32.const 1) (i32.const 0x100))
      (if (i32.ne (i32.load (i32.const 0x104)) (i32.const 16)) (then unreachable))
      ;; result<own, errno> elements (8 bytes) -> a packed list of handles at 0x2000.
      (local.set $res (i32.load (i32.const 0x100)))
      (local.set $k (i32.const 0))
      (loop $copy
        (if (i32.load8_u (i32.add (local.get $res) (i32.shl (local.get $k) (i32.const 3)))) (then unreachable))
        (i32.store (i32.add (i32.const 0x2000) (i32.shl (local.get $k) (i32.const 2)))
          (i32.load (i32.add (local.get $res) (i32.add (i32.shl (local.get $k) (i32.const 3)) (i32.const 4)))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $copy (i32.lt_u (local.get $k) (i32.const 16))))
      (call $unpin_batch (i32.const 0x2000) (i32.const 16) (i32.const 0))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 625))))
    (i32.store8 (i32.const 0x40) (i32.const 0))
    (i32.const 0x40))
)
