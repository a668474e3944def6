;; Benchmark peer: reads all of `input.bin` (256 MiB) through WASI p2's
;; `read-via-stream` and `input-stream.blocking-read` (1 MiB per call, each
;; a copy into a list the guest's allocator provides), as a WASI program
;; reads a file without wasm-pin. Traps unless exactly 256 MiB arrive.
(module
  (import "wasi:filesystem/preopens@0.2.12" "get-directories" (func $dirs (param i32)))
  (import "wasi:filesystem/types@0.2.12" "[method]descriptor.open-at"
    (func $open_at (param i32 i32 i32 i32 i32 i32 i32)))
  (import "wasi:filesystem/types@0.2.12" "[method]descriptor.read-via-stream"
    (func $read_via_stream (param i32 i64 i32)))
  (import "wasi:filesystem/types@0.2.12" "[resource-drop]descriptor" (func $drop_fd (param i32)))
  (import "wasi:io/streams@0.2.12" "[method]input-stream.blocking-read"
    (func $blocking_read (param i32 i64 i32)))
  (import "wasi:io/streams@0.2.12" "[resource-drop]input-stream" (func $drop_stream (param i32)))
  ;; 2 MiB + 64 KiB: small allocations below 0x10000, read buffers at 0x100000.
  (memory (export "memory") 33)
  (global $heap (mut i32) (i32.const 0x1000))
  (data (i32.const 0x20) "input.bin")
  ;; Lists of 64 KiB and more (the read buffers) all reuse one 1 MiB area.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (if (i32.ge_u (local.get 3) (i32.const 0x10000)) (then (return (i32.const 0x100000))))
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func $check (param i32) (if (i32.eqz (local.get 0)) (then unreachable)))
  (func (export "run") (result i32)
    (local $fd i32) (local $s i32) (local $total i64)
    (global.set $heap (i32.const 0x1000))
    (call $dirs (i32.const 0x100))
    (call $open_at (i32.load (i32.load (i32.const 0x100))) (i32.const 1) (i32.const 0x20) (i32.const 9)
      (i32.const 0) (i32.const 1) (i32.const 0x108))
    (call $check (i32.eqz (i32.load8_u (i32.const 0x108))))
    (local.set $fd (i32.load (i32.const 0x10c)))
    (call $read_via_stream (local.get $fd) (i64.const 0) (i32.const 0x110))
    (call $check (i32.eqz (i32.load8_u (i32.const 0x110))))
    (local.set $s (i32.load (i32.const 0x114)))
    (block $done
      (loop $again
        ;; result<list<u8>, stream-error> at 0x120: tag, then ptr and len.
        (call $blocking_read (local.get $s) (i64.const 0x100000) (i32.const 0x120))
        (br_if $done (i32.load8_u (i32.const 0x120)))
        (local.set $total (i64.add (local.get $total) (i64.extend_i32_u (i32.load (i32.const 0x128)))))
        (br $again)))
    ;; The stream ended closed (variant case 1), after exactly 256 MiB.
    (call $check (i32.eq (i32.load8_u (i32.const 0x124)) (i32.const 1)))
    (call $check (i64.eq (local.get $total) (i64.const 0x10000000)))
    (call $drop_stream (local.get $s))
    (call $drop_fd (local.get $fd))
    (i32.store8 (i32.const 0x40) (i32.const 0))
    (i32.const 0x40))
)
