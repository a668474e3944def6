;; Benchmark guest: 10000 × (pin-user-pages-fast of a 64 KiB buffer, then
;; drop the handle, which unpins it).
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages-fast" (func $pin (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[resource-drop]pinned-pages" (func $drop_pin (param i32)))
  (memory (export "memory") 2)
  (func (export "run") (result i32)
    (local $i i32)
    (loop $again
      (call $pin (i64.const 0x10000) (i32.const 16) (i32.const 1) (i32.const 0x100))
      (if (i32.load8_u (i32.const 0x100)) (then unreachable))
      (call $drop_pin (i32.load (i32.const 0x104)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 10000))))
    (i32.store8 (i32.const 0x40) (i32.const 0))
    (i32.const 0x40))
)
