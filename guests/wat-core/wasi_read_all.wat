;; The WASI peer for the I/O benchmark: opens "input.bin" in the first
;; preopen and reads it with preview1 fd_read, 1 MiB per call, into a 256 MiB
;; region of its memory. Returns the bytes read (or -errno).
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (memory (export "memory") 4352)
  (data (i32.const 0x20) "input.bin")
  (func (export "read_all") (result i64)
    (local $fd i32) (local $err i32) (local $n i32) (local $total i64)
    (local.set $err (call $path_open (i32.const 3) (i32.const 0) (i32.const 0x20) (i32.const 9)
      (i32.const 0) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 0x40)))
    (if (local.get $err) (then (return (i64.extend_i32_s (i32.sub (i32.const 0) (local.get $err))))))
    (local.set $fd (i32.load (i32.const 0x40)))
    (loop $more
      ;; iovec at 0x80: the next MiB of the region at 16 MiB.
      (i32.store (i32.const 0x80) (i32.add (i32.const 0x1000000) (i32.wrap_i64 (local.get $total))))
      (i32.store (i32.const 0x84) (i32.const 0x100000))
      (local.set $err (call $fd_read (local.get $fd) (i32.const 0x80) (i32.const 1) (i32.const 0x90)))
      (if (local.get $err) (then (return (i64.extend_i32_s (i32.sub (i32.const 0) (local.get $err))))))
      (local.set $n (i32.load (i32.const 0x90)))
      (local.set $total (i64.add (local.get $total) (i64.extend_i32_u (local.get $n))))
      (br_if $more (i32.and (i32.ne (local.get $n) (i32.const 0)) (i64.lt_u (local.get $total) (i64.const 0x10000000)))))
    (drop (call $fd_close (local.get $fd)))
    (local.get $total))
)
