;; Holds one real pin, then passes a handle it never received: a trap; the
;; real pin is released with the store.
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages" (func $pin (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[static]pinned-pages.unpin" (func $unpin (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (call $pin (i64.const 0) (i32.const 1) (i32.const 0) (i32.const 0x100))
    (call $unpin (i32.add (i32.load (i32.const 0x104)) (i32.const 1000)) (i32.const 0))
    (i32.const 0x40))
)
