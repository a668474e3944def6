;; Registered-file slots are per instance. Run in two instances of one
;; store: each first tries the slot the first registration of any table
;; gets (0x10001: generation 1, index 0), which must be `badf` for reading
;; and for unregistering (index 8) even while another instance holds that
;; very number; then registers `input.bin`, gets that number in its own
;; table, and reads 16 bytes through it into 0x10000. Traps at the first
;; failed check.
(module
  (import "wasi:filesystem/preopens@0.2.12" "get-directories" (func $dirs (param i32)))
  (import "wasi:filesystem/types@0.2.12" "[method]descriptor.open-at"
    (func $open_at (param i32 i32 i32 i32 i32 i32 i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "register-file" (func $register (param i32 i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "unregister-file" (func $unregister (param i32 i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "read-into-fixed" (func $read_into (param i32 i64 i32 i64 i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 0x1000))
  (data (i32.const 0x20) "input.bin")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func $check (param i32) (if (i32.eqz (local.get 0)) (then unreachable)))
  (func (export "run") (result i32)
    (call $read_into (i32.const 0x10001) (i64.const 0x10000) (i32.const 16) (i64.const 0) (i32.const 0x110))
    (call $check (i32.eq (i32.load8_u (i32.const 0x110)) (i32.const 1)))
    (call $check (i32.eq (i32.load8_u (i32.const 0x114)) (i32.const 8)))
    (call $unregister (i32.const 0x10001) (i32.const 0x130))
    (call $check (i32.eq (i32.load8_u (i32.const 0x130)) (i32.const 1)))
    (call $check (i32.eq (i32.load8_u (i32.const 0x131)) (i32.const 8)))
    (call $dirs (i32.const 0x100))
    (call $open_at (i32.load (i32.load (i32.const 0x100))) (i32.const 1) (i32.const 0x20) (i32.const 9)
      (i32.const 0) (i32.const 1) (i32.const 0x108))
    (call $check (i32.eqz (i32.load8_u (i32.const 0x108))))
    (call $register (i32.load (i32.const 0x10c)) (i32.const 0x110))
    (call $check (i32.eqz (i32.load8_u (i32.const 0x110))))
    (call $check (i32.eq (i32.load (i32.const 0x114)) (i32.const 0x10001)))
    (call $read_into (i32.const 0x10001) (i64.const 0x10000) (i32.const 16) (i64.const 0) (i32.const 0x110))
    (call $check (i32.eqz (i32.load8_u (i32.const 0x110))))
    (call $check (i32.eq (i32.load (i32.const 0x114)) (i32.const 16)))
    (i32.store8 (i32.const 0x200) (i32.const 0))
    (i32.const 0x200))
)
