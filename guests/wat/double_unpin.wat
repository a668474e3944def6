;; Unpins the same handle twice: the canonical ABI traps on the second use.
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages" (func $pin (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[static]pinned-pages.unpin" (func $unpin (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (local $h i32)
    (call $pin (i64.const 0) (i32.const 4) (i32.const 1) (i32.const 0x100))
    (local.set $h (i32.load (i32.const 0x104)))
    (call $unpin (local.get $h) (i32.const 1))
    (call $unpin (local.get $h) (i32.const 1))
    (i32.const 0x40))
)
