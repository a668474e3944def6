;; Opens `input.bin` with WASI (`get-directories`, `open-at` on the first
;; preopen), starts asynchronous reads into a long-term pinned buffer, drops
;; the buffer handle and the descriptor while the reads are in flight, and
;; traps with them still in flight.
(module
  (import "wasi:filesystem/preopens@0.2.12" "get-directories" (func $dirs (param i32)))
  (import "wasi:filesystem/types@0.2.12" "[method]descriptor.open-at"
    (func $open_at (param i32 i32 i32 i32 i32 i32 i32)))
  (import "wasi:filesystem/types@0.2.12" "[resource-drop]descriptor" (func $drop_fd (param i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages" (func $pin_lt (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[resource-drop]pinned-pages" (func $drop_pin (param i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "submit-read-at" (func $submit_read (param i32 i32 i32 i32 i64 i32)))
  (memory (export "memory") 4)
  (global $heap (mut i32) (i32.const 0x1000))
  (data (i32.const 0x20) "input.bin")
  ;; A bump allocator: the canonical ABI puts `get-directories`' list here.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func (export "run") (param) (result i32)
    (local $f i32) (local $p i32) (local $i i32)
    ;; list<tuple<descriptor, string>> at 0x100: (ptr, len); element 0's handle at ptr.
    (call $dirs (i32.const 0x100))
    ;; open-at(dir, symlink-follow, "input.bin", no open flags, read) -> result<descriptor, error-code>
    (call $open_at (i32.load (i32.load (i32.const 0x100))) (i32.const 1) (i32.const 0x20) (i32.const 9)
      (i32.const 0) (i32.const 1) (i32.const 0x108))
    (if (i32.load8_u (i32.const 0x108)) (then unreachable))
    (local.set $f (i32.load (i32.const 0x10c)))
    (call $pin_lt (i64.const 0x10000) (i32.const 32) (i32.const 1) (i32.const 0x108))
    (local.set $p (i32.load (i32.const 0x10c)))
    (loop $submit
      (call $submit_read (local.get $f) (local.get $p) (i32.shl (local.get $i) (i32.const 15)) (i32.const 0x8000)
        (i64.extend_i32_u (i32.shl (local.get $i) (i32.const 15))) (i32.const 0x108))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $submit (i32.lt_u (local.get $i) (i32.const 4))))
    (call $drop_pin (local.get $p))
    (call $drop_fd (local.get $f))
    unreachable)
)
