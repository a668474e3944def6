;; Starts asynchronous reads into long-term pinned buffers, drops one buffer
;; handle while its read is in flight, and traps with the rest in flight.
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages" (func $pin_lt (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[resource-drop]pinned-pages" (func $drop_pin (param i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "open" (func $open (param i32 i32 i32 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[method]file.submit-read-at" (func $submit_read (param i32 i32 i32 i32 i64 i32)))
  (memory (export "memory") 4)
  (data (i32.const 0x20) "input.bin")
  (func (export "run") (result i32)
    (local $f i32) (local $p i32) (local $i i32)
    (call $open (i32.const 0x20) (i32.const 9) (i32.const 1) (i32.const 0x100))
    (local.set $f (i32.load (i32.const 0x104)))
    (call $pin_lt (i64.const 0x10000) (i32.const 32) (i32.const 1) (i32.const 0x100))
    (local.set $p (i32.load (i32.const 0x104)))
    (loop $submit
      (call $submit_read (local.get $f) (local.get $p) (i32.shl (local.get $i) (i32.const 15)) (i32.const 0x8000)
        (i64.extend_i32_u (i32.shl (local.get $i) (i32.const 15))) (i32.const 0x100))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $submit (i32.lt_u (local.get $i) (i32.const 4))))
    (call $drop_pin (local.get $p))
    unreachable)
)
