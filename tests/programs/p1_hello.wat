;; A WASI preview1 command (core module): prints its arguments, then its
;; environment, one per line, then the contents of `data.txt` in the first
;; preopened directory (descriptor 3), and exits with proc_exit(33).
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; 0x00: iovec; 0x08: bytes written; 0x10/0x14: sizes; 0x18: opened fd;
  ;; 0x1c: bytes read; 0x40: the path; 0x60: a newline. Pointer arrays at
  ;; 0x100 (arguments) and 0x2000 (environment), their strings at 0x1000 and
  ;; 0x3000, the file's bytes at 0x8000.
  (memory (export "memory") 1)
  (data (i32.const 0x40) "data.txt")
  (data (i32.const 0x60) "\n")

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0x00) (local.get $ptr))
    (i32.store (i32.const 0x04) (local.get $len))
    (if (call $fd_write (i32.const 1) (i32.const 0x00) (i32.const 1) (i32.const 0x08))
      (then (call $proc_exit (i32.const 2)))))

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; Prints the `count` strings the pointers at `ptrs` point to, one a line.
  (func $print_lines (param $ptrs i32) (param $count i32)
    (local $s i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $count)))
        (local.set $s (i32.load (local.get $ptrs)))
        (call $write (local.get $s) (call $strlen (local.get $s)))
        (call $write (i32.const 0x60) (i32.const 1))
        (local.set $ptrs (i32.add (local.get $ptrs) (i32.const 4)))
        (local.set $count (i32.sub (local.get $count) (i32.const 1)))
        (br $next))))

  (func (export "_start")
    (if (call $args_sizes_get (i32.const 0x10) (i32.const 0x14)) (then (call $proc_exit (i32.const 3))))
    (if (call $args_get (i32.const 0x100) (i32.const 0x1000)) (then (call $proc_exit (i32.const 3))))
    (call $print_lines (i32.const 0x100) (i32.load (i32.const 0x10)))
    (if (call $environ_sizes_get (i32.const 0x10) (i32.const 0x14)) (then (call $proc_exit (i32.const 4))))
    (if (call $environ_get (i32.const 0x2000) (i32.const 0x3000)) (then (call $proc_exit (i32.const 4))))
    (call $print_lines (i32.const 0x2000) (i32.load (i32.const 0x10)))
    ;; path_open(3, no symlink following, "data.txt", no oflags, rights
    ;; fd_read (bit 1), none inherited, no fdflags) -> the fd at 0x18.
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 0x40) (i32.const 8) (i32.const 0)
                         (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0x18))
      (then (call $proc_exit (i32.const 5))))
    (i32.store (i32.const 0x00) (i32.const 0x8000))
    (i32.store (i32.const 0x04) (i32.const 0x1000))
    (if (call $fd_read (i32.load (i32.const 0x18)) (i32.const 0x00) (i32.const 1) (i32.const 0x1c))
      (then (call $proc_exit (i32.const 6))))
    (call $write (i32.const 0x8000) (i32.load (i32.const 0x1c)))
    (call $proc_exit (i32.const 33))))
