;; Pins (short- and long-term) and then traps with the pins outstanding.
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages" (func $pin (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages-fast" (func $pin_lt (param i64 i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (call $pin (i64.const 0) (i32.const 8) (i32.const 1) (i32.const 0x100))
    (call $pin_lt (i64.const 0x8000) (i32.const 4) (i32.const 1) (i32.const 0x100))
    (call $pin_lt (i64.const 0x8000) (i32.const 4) (i32.const 0) (i32.const 0x100))
    unreachable)
)
