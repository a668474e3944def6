;; Registered files (`register-file`, `*-fixed` transfers): `input.bin`
;; (read-only) and `out.bin` (write-only) opened with WASI and registered.
;; read-into-fixed an unaligned range (10000 bytes at 0x10003 from offset 5),
;; write-from-fixed it to `out.bin`, a ticketed read (64 KiB at 0x30000),
;; wrong directions (badf), bad ranges (fault, inval), a read after the
;; descriptor was dropped (100 bytes at 0x20000 from offset 7: the slot
;; keeps the file), the file quota (the host sets 3: mfile), and stale,
;; doubly unregistered and forged slots (badf). Traps at the first failed
;; check; leaves two slots registered.
(module
  (import "wasi:filesystem/preopens@0.2.12" "get-directories" (func $dirs (param i32)))
  (import "wasi:filesystem/types@0.2.12" "[method]descriptor.open-at"
    (func $open_at (param i32 i32 i32 i32 i32 i32 i32)))
  (import "wasi:filesystem/types@0.2.12" "[resource-drop]descriptor" (func $drop_fd (param i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "register-file" (func $register (param i32 i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "unregister-file" (func $unregister (param i32 i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "read-into-fixed" (func $read_into (param i32 i64 i32 i64 i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "write-from-fixed" (func $write_from (param i32 i64 i32 i64 i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "submit-read-into-fixed" (func $submit (param i32 i64 i32 i64 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[method]io-ticket.wait" (func $wait (param i32 i32 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[resource-drop]io-ticket" (func $drop_ticket (param i32)))
  (memory (export "memory") 4)
  (global $heap (mut i32) (i32.const 0x1000))
  (data (i32.const 0x20) "input.bin")
  (data (i32.const 0x30) "out.bin")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  (func $check (param i32) (if (i32.eqz (local.get 0)) (then unreachable)))
  ;; result<u32, errno> at 0x110: ok with `n`? err with errno index `e`?
  (func $ok (param $n i32)
    (call $check (i32.eqz (i32.load8_u (i32.const 0x110))))
    (call $check (i32.eq (i32.load (i32.const 0x114)) (local.get $n))))
  (func $err (param $e i32)
    (call $check (i32.eq (i32.load8_u (i32.const 0x110)) (i32.const 1)))
    (call $check (i32.eq (i32.load8_u (i32.const 0x114)) (local.get $e))))
  ;; result<_, errno> at 0x130: the errno (-1 for ok).
  (func $unreg (param $slot i32) (result i32)
    (call $unregister (local.get $slot) (i32.const 0x130))
    (if (result i32) (i32.eqz (i32.load8_u (i32.const 0x130)))
      (then (i32.const -1))
      (else (i32.load8_u (i32.const 0x131)))))
  (func $open (param $path i32) (param $len i32) (param $oflags i32) (param $dflags i32) (result i32)
    (call $open_at (i32.load (i32.load (i32.const 0x100))) (i32.const 1) (local.get $path) (local.get $len)
      (local.get $oflags) (local.get $dflags) (i32.const 0x108))
    (call $check (i32.eqz (i32.load8_u (i32.const 0x108))))
    (i32.load (i32.const 0x10c)))
  ;; Registers `fd`; its slot (traps on an error).
  (func $reg (param $fd i32) (result i32)
    (call $register (local.get $fd) (i32.const 0x110))
    (call $check (i32.eqz (i32.load8_u (i32.const 0x110))))
    (i32.load (i32.const 0x114)))
  (func (export "run") (result i32)
    (local $in i32) (local $out i32) (local $s_in i32) (local $s_out i32) (local $s i32) (local $t i32)
    (call $dirs (i32.const 0x100))
    (local.set $in (call $open (i32.const 0x20) (i32.const 9) (i32.const 0) (i32.const 1)))
    ;; out.bin: create (1) + truncate (8), write (2).
    (local.set $out (call $open (i32.const 0x30) (i32.const 7) (i32.const 9) (i32.const 2)))
    (local.set $s_in (call $reg (local.get $in)))
    (local.set $s_out (call $reg (local.get $out)))
    (call $check (i32.ne (local.get $s_in) (local.get $s_out)))
    ;; A directory (the preopen): isdir (index 14).
    (call $register (i32.load (i32.load (i32.const 0x100))) (i32.const 0x110))
    (call $err (i32.const 14))
    (call $read_into (local.get $s_in) (i64.const 0x10003) (i32.const 10000) (i64.const 5) (i32.const 0x110))
    (call $ok (i32.const 10000))
    (call $write_from (local.get $s_out) (i64.const 0x10003) (i32.const 10000) (i64.const 0) (i32.const 0x110))
    (call $ok (i32.const 10000))
    ;; Ticketed: 64 KiB at 0x30000 from offset 0.
    (call $submit (local.get $s_in) (i64.const 0x30000) (i32.const 0x10000) (i64.const 0) (i32.const 0x110))
    (call $check (i32.eqz (i32.load8_u (i32.const 0x110))))
    (local.set $t (i32.load (i32.const 0x114)))
    (call $wait (local.get $t) (i32.const 10000) (i32.const 0x120))
    (call $check (i32.eq (i32.load8_u (i32.const 0x120)) (i32.const 1)))
    (call $check (i32.eqz (i32.load8_u (i32.const 0x124))))
    (call $check (i32.eq (i32.load (i32.const 0x128)) (i32.const 0x10000)))
    (call $drop_ticket (local.get $t))
    ;; The descriptors' directions hold: badf (index 8) both ways.
    (call $write_from (local.get $s_in) (i64.const 0x10003) (i32.const 10) (i64.const 0) (i32.const 0x110))
    (call $err (i32.const 8))
    (call $read_into (local.get $s_out) (i64.const 0x10003) (i32.const 10) (i64.const 0) (i32.const 0x110))
    (call $err (i32.const 8))
    ;; Past the memory (4 pages = 0x40000): fault; overflowing: inval.
    (call $read_into (local.get $s_in) (i64.const 0x3ff00) (i32.const 0x200) (i64.const 0) (i32.const 0x110))
    (call $err (i32.const 1))
    (call $read_into (local.get $s_in) (i64.const -16) (i32.const 0x100) (i64.const 0) (i32.const 0x110))
    (call $err (i32.const 0))
    ;; The slot keeps the file open after its descriptor is dropped.
    (call $drop_fd (local.get $in))
    (call $read_into (local.get $s_in) (i64.const 0x20000) (i32.const 100) (i64.const 7) (i32.const 0x110))
    (call $ok (i32.const 100))
    ;; Quota 3 files: a third slot, then mfile (index 22); a freed slot
    ;; makes room again.
    (local.set $s (call $reg (local.get $out)))
    (call $register (local.get $out) (i32.const 0x110))
    (call $err (i32.const 22))
    (call $check (i32.eq (call $unreg (local.get $s)) (i32.const -1)))
    ;; Unregistered: the slot is stale (badf), twice; a new registration of
    ;; the same (readable) file reuses the index under a new generation and
    ;; does not revive it.
    (call $check (i32.eq (call $unreg (local.get $s_in)) (i32.const -1)))
    (call $read_into (local.get $s_in) (i64.const 0x10003) (i32.const 10) (i64.const 0) (i32.const 0x110))
    (call $err (i32.const 8))
    (call $check (i32.eq (call $unreg (local.get $s_in)) (i32.const 8)))
    (local.set $s (call $reg (call $open (i32.const 0x20) (i32.const 9) (i32.const 0) (i32.const 1))))
    (call $check (i32.eq (i32.and (local.get $s) (i32.const 0xffff)) (i32.and (local.get $s_in) (i32.const 0xffff))))
    (call $check (i32.ne (local.get $s) (local.get $s_in)))
    (call $read_into (local.get $s) (i64.const 0x10003) (i32.const 10) (i64.const 5) (i32.const 0x110))
    (call $ok (i32.const 10))
    (call $read_into (local.get $s_in) (i64.const 0x10003) (i32.const 10) (i64.const 5) (i32.const 0x110))
    (call $err (i32.const 8))
    ;; Forged from a live slot (another generation), in the direction the
    ;; live one allows: badf.
    (call $write_from (i32.add (local.get $s_out) (i32.const 0x10000)) (i64.const 0x10003) (i32.const 10)
      (i64.const 0) (i32.const 0x110))
    (call $err (i32.const 8))
    (call $write_from (local.get $s_out) (i64.const 0x10003) (i32.const 10) (i64.const 0) (i32.const 0x110))
    (call $ok (i32.const 10))
    (call $check (i32.eq (call $unreg (i32.const 0x7777)) (i32.const 8)))
    (i32.store8 (i32.const 0x200) (i32.const 0))
    (i32.const 0x200))
)
