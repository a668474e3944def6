;; A WASI preview1 command that also imports the core-ABI pin functions
;; (`wasm-pin:mm/gup@0.1.0`, ABI in wit/gup.wit): it pins two pages of its
;; own memory for writing, checks the host sees them pinned and hashes the
;; same bytes it does, unpins, and prints what it saw. On a failed check it
;; exits with the check's number.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages" (func $pin (param i64 i32 i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pinned-start" (func $start (param i32) (result i64)))
  (import "wasm-pin:mm/gup@0.1.0" "pinned-checksum" (func $checksum (param i32 i32 i32 i32) (result i64)))
  (import "wasm-pin:mm/gup@0.1.0" "page-maybe-dma-pinned" (func $is_pinned (param i64) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "unpin" (func $unpin (param i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 0x100) "pinned 2 pages at 0x4000, same checksum, unpinned\n")

  (func $fnv (param $p i32) (param $n i32) (result i32)
    (local $h i32) (local $end i32)
    (local.set $h (i32.const 0x811c9dc5))
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $h (i32.mul (i32.xor (local.get $h) (i32.load8_u (local.get $p))) (i32.const 0x01000193)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $h))

  (func $check (param $ok i32) (param $number i32)
    (if (i32.eqz (local.get $ok)) (then (call $proc_exit (local.get $number)))))

  (func (export "_start")
    (local $h i32)
    (memory.fill (i32.const 0x4000) (i32.const 0x5a) (i32.const 0x2000))
    (local.set $h (call $pin (i64.const 0x4000) (i32.const 2) (i32.const 1)))
    (call $check (i32.gt_s (local.get $h) (i32.const 0)) (i32.const 10))
    (call $check (i64.eq (call $start (local.get $h)) (i64.const 0x4000)) (i32.const 11))
    (call $check (call $is_pinned (i64.const 0x5000)) (i32.const 12))
    (call $check
      (i64.eq (call $checksum (local.get $h) (i32.const 0) (i32.const 0x2000) (i32.const 0x811c9dc5))
              (i64.extend_i32_u (call $fnv (i32.const 0x4000) (i32.const 0x2000))))
      (i32.const 13))
    (call $check (i32.eqz (call $unpin (local.get $h) (i32.const 1))) (i32.const 14))
    (call $check (i32.eqz (call $is_pinned (i64.const 0x5000))) (i32.const 15))
    (i32.store (i32.const 0) (i32.const 0x100))
    (i32.store (i32.const 4) (i32.const 50))
    (call $check (i32.eqz (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (i32.const 16))))
