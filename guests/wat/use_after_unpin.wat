;; Asks for the start of a pin it already released: a trap, not a stale answer.
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages-fast" (func $pin (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[resource-drop]pinned-pages" (func $drop_pin (param i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[method]pinned-pages.start" (func $start (param i32) (result i64)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (local $h i32)
    (call $pin (i64.const 0x1000) (i32.const 2) (i32.const 0) (i32.const 0x100))
    (local.set $h (i32.load (i32.const 0x104)))
    (call $drop_pin (local.get $h))
    (drop (call $start (local.get $h)))
    (i32.const 0x40))
)
