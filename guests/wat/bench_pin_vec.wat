;; Benchmark guest: 625 × (pin-user-pages-fast-vec of 16 ranges of 64 KiB,
;; then pinned-vec.unpin-all) = 10000 pins and unpins, two import calls and
;; one handle per 16. Traps unless each vector holds all 16 ranges.
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages-fast-vec" (func $pin_vec (param i32 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[method]pinned-vec.count" (func $count (param i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[static]pinned-vec.unpin-all" (func $unpin_all (param i32 i32)))
  (memory (export "memory") 20)
  (func (export "run") (result i32)
    (local $i i32) (local $k i32) (local $v i32)
    ;; 16 pin-range records at 0x1000 (16 bytes each: u64 start, u32 pages):
    ;; buffer k is 64 KiB at 0x10000 * (k + 1).
    (loop $fill
      (i64.store (i32.add (i32.const 0x1000) (i32.shl (local.get $k) (i32.const 4)))
        (i64.shl (i64.extend_i32_u (i32.add (local.get $k) (i32.const 1))) (i64.const 16)))
      (i32.store (i32.add (i32.const 0x1008) (i32.shl (local.get $k) (i32.const 4))) (i32.const 16))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $k) (i32.const 16))))
    (loop $again
      (call $pin_vec (i32.const 0x1000) (i32.const 16) (i32.const 1) (i32.const 0x100))
      ;; result<own<pinned-vec>, errno> at 0x100: tag, then the handle.
      (if (i32.load8_u (i32.const 0x100)) (then unreachable))
      (local.set $v (i32.load (i32.const 0x104)))
      (if (i32.eqz (local.get $i))
        (then (if (i32.ne (call $count (local.get $v)) (i32.const 16)) (then unreachable))))
      (call $unpin_all (local.get $v) (i32.const 0))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 625))))
    (i32.store8 (i32.const 0x40) (i32.const 0))
    (i32.const 0x40))
)
