;; The soak's tenant (world `soak-tenant`, `wasm_pin::soak`): one export,
;; `op(kind, arg, offset, len, seed) -> s64`, that the host's random
;; schedule drives. Every transfer moves bytes between the tenant's own
;; files (in its preopen, named "a", "b", ...) or a loopback TCP peer and
;; its buffer at BUF = 0x100000, through one of wasm-pin's routes; reads
;; return their byte count and the FNV-1a 32 of the bytes that arrived,
;; packed as `n << 32 | fnv`, writes the bytes written of a pattern the
;; host recomputes from `seed` (xorshift32 from `seed | 1`, the low byte of
;; each state). Errors are negative: `-(1 + errno)` for a pin import's
;; errno index, `-(1000 + code)` for a WASI error code.
;;
;; Kinds (`wasm_pin::soak::Op`): 0 hello, 1 open, 2 close, 3/4 one-call
;; read/write, 5/6 registered-file read/write, 7/8 ticket read/write,
;; 9/10 vectored read/write, 11 long-term pin of `arg` pages, 12-17 pin,
;; pinned-byte, long-term, file, socket and ticket quotas (take until
;; refused, release, return `count << 8 | errno + 1`), 18-23 TCP listen,
;; accept, connect, send, recv, close, 24 trap with reads in flight,
;; 25 stall with reads and a recv in flight, 26 spin.
;;
;; `arg` of a transfer: file index in its low byte, bit 8 for the file's
;; direct (`O_DIRECT`) reopen.
(module
  (import "wasi:filesystem/preopens@0.2.12" "get-directories" (func $dirs (param i32)))
  (import "wasi:filesystem/types@0.2.12" "[method]descriptor.open-at"
    (func $open_at (param i32 i32 i32 i32 i32 i32 i32)))
  (import "wasi:filesystem/types@0.2.12" "[resource-drop]descriptor" (func $drop_fd (param i32)))
  (import "wasi:io/poll@0.2.12" "[method]pollable.block" (func $block (param i32)))
  (import "wasi:io/poll@0.2.12" "[resource-drop]pollable" (func $drop_pollable (param i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages-fast" (func $pin_fast (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages" (func $pin_lt (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[static]pinned-pages.unpin" (func $unpin (param i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[resource-drop]pinned-pages" (func $drop_pin (param i32)))
  (import "wasm-pin:mm/gup@0.1.0" "page-size" (func $page_size (result i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "read-at-vectored" (func $read_vec (param i32 i32 i32 i64 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "write-at-vectored" (func $write_vec (param i32 i32 i32 i64 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "submit-read-at" (func $submit_read (param i32 i32 i32 i32 i64 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "submit-write-at" (func $submit_write (param i32 i32 i32 i32 i64 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "open-direct" (func $open_direct (param i32 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[method]io-ticket.wait" (func $wait (param i32 i32 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[method]io-ticket.poll" (func $poll (param i32 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[method]io-ticket.subscribe" (func $subscribe (param i32) (result i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[resource-drop]io-ticket" (func $drop_ticket (param i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "read-into" (func $read_into (param i32 i64 i32 i64 i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "write-from" (func $write_from (param i32 i64 i32 i64 i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "register-file" (func $register (param i32 i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "unregister-file" (func $unregister (param i32 i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "read-into-fixed" (func $read_fixed (param i32 i64 i32 i64 i32)))
  (import "wasm-pin:mm/one-call-io@0.1.0" "write-from-fixed" (func $write_fixed (param i32 i64 i32 i64 i32)))
  (import "wasm-pin:mm/zero-copy-net@0.1.0" "[static]tcp-listener.bind"
    (func $bind (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "wasm-pin:mm/zero-copy-net@0.1.0" "[method]tcp-listener.local-address" (func $local_addr (param i32 i32)))
  (import "wasm-pin:mm/zero-copy-net@0.1.0" "[method]tcp-listener.accept" (func $accept (param i32 i32 i32)))
  (import "wasm-pin:mm/zero-copy-net@0.1.0" "[static]tcp-stream.connect"
    (func $connect (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "wasm-pin:mm/zero-copy-net@0.1.0" "[method]tcp-stream.send" (func $send (param i32 i32 i32 i32 i32 i32)))
  (import "wasm-pin:mm/zero-copy-net@0.1.0" "[method]tcp-stream.recv" (func $recv (param i32 i32 i32 i32 i32 i32)))
  (import "wasm-pin:mm/zero-copy-net@0.1.0" "[resource-drop]tcp-listener" (func $drop_listener (param i32)))
  (import "wasm-pin:mm/zero-copy-net@0.1.0" "[resource-drop]tcp-stream" (func $drop_stream (param i32)))

  ;; 0x20 path, 0x100 preopens, 0x110/0x120 results, 0x400 descriptors,
  ;; 0x440 direct reopens, 0x480 slots, 0x4c0 direct slots, 0x600 io-slices,
  ;; 0x1000 heap, 0x10000 handles of the quota ops, 0x100000 BUF (slices at
  ;; BUF, BUF + 0x40000, BUF + 0x80000), 0x1f0000 the ticket quota's page.
  (memory (export "memory") 32)
  (global $heap (mut i32) (i32.const 0x1000))
  (global $dir (mut i32) (i32.const -1))
  (global $listener (mut i32) (i32.const 0))
  (global $stream (mut i32) (i32.const 0))

  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))

  ;; result<u32 or handle, errno> at $r: the value, or -(1 + errno).
  (func $r32 (param $r i32) (result i64)
    (if (result i64) (i32.load8_u (local.get $r))
      (then (i64.sub (i64.const -1) (i64.load8_u offset=4 (local.get $r))))
      (else (i64.load32_u offset=4 (local.get $r)))))
  ;; result<u64, errno> at $r.
  (func $r64 (param $r i32) (result i64)
    (if (result i64) (i32.load8_u (local.get $r))
      (then (i64.sub (i64.const -1) (i64.load8_u offset=8 (local.get $r))))
      (else (i64.load offset=8 (local.get $r)))))
  (func $pack (param $n i64) (param $h i32) (result i64)
    (i64.or (i64.shl (local.get $n) (i64.const 32)) (i64.extend_i32_u (local.get $h))))

  (func $fnv (param $p i32) (param $n i32) (param $h i32) (result i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $h (i32.mul (i32.xor (local.get $h) (i32.load8_u (local.get $p))) (i32.const 16777619)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $l)))
    (local.get $h))
  ;; Fills $n bytes at $p with the pattern continued from state $x.
  (func $fill (param $p i32) (param $n i32) (param $x i32) (result i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 13))))
        (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 17))))
        (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 5))))
        (i32.store8 (local.get $p) (local.get $x))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $l)))
    (local.get $x))
  (func $pages (param $len i32) (result i32)
    (i32.shr_u (i32.add (local.get $len) (i32.const 0xfff)) (i32.const 12)))

  (func $dir (result i32)
    (if (i32.lt_s (global.get $dir) (i32.const 0))
      (then
        (call $dirs (i32.const 0x100))
        (global.set $dir (i32.load (i32.load (i32.const 0x100))))))
    (global.get $dir))
  ;; The descriptor (or direct reopen, bit 8) of file `arg & 0xff`.
  (func $fd (param $arg i32) (result i32)
    (i32.load offset=0x400
      (i32.add (i32.shl (i32.and (local.get $arg) (i32.const 0xff)) (i32.const 2))
               (select (i32.const 0x40) (i32.const 0) (i32.and (local.get $arg) (i32.const 0x100))))))
  ;; Its registered slot.
  (func $slot (param $arg i32) (result i32)
    (i32.load offset=0x480
      (i32.add (i32.shl (i32.and (local.get $arg) (i32.const 0xff)) (i32.const 2))
               (select (i32.const 0x40) (i32.const 0) (i32.and (local.get $arg) (i32.const 0x100))))))

  ;; Opens file `idx` read-write (created if missing), registers it, and
  ;; reopens it for direct I/O and registers that too where the filesystem
  ;; allows: 1 with a direct reopen, else `(errno + 1) << 8`.
  (func $open (param $idx i32) (result i64)
    (local $fd i32) (local $d i32) (local $r i64) (local $at i32)
    (local.set $at (i32.shl (local.get $idx) (i32.const 2)))
    (i32.store8 (i32.const 0x20) (i32.add (i32.const 0x61) (local.get $idx)))
    ;; symlink-follow; create; read | write.
    (call $open_at (call $dir) (i32.const 1) (i32.const 0x20) (i32.const 1) (i32.const 1) (i32.const 3) (i32.const 0x110))
    (if (i32.load8_u (i32.const 0x110))
      (then (return (i64.sub (i64.const -1000) (i64.load8_u offset=4 (i32.const 0x110))))))
    (local.set $fd (i32.load offset=4 (i32.const 0x110)))
    (i32.store offset=0x400 (local.get $at) (local.get $fd))
    (i32.store offset=0x440 (local.get $at) (i32.const 0))
    (call $register (local.get $fd) (i32.const 0x110))
    (local.set $r (call $r32 (i32.const 0x110)))
    (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
    (i32.store offset=0x480 (local.get $at) (i32.wrap_i64 (local.get $r)))
    (call $open_direct (local.get $fd) (i32.const 0x110))
    (if (i32.load8_u (i32.const 0x110))
      (then
        (return (i64.shl (i64.add (i64.load8_u offset=4 (i32.const 0x110)) (i64.const 1)) (i64.const 8)))))
    (local.set $d (i32.load offset=4 (i32.const 0x110)))
    (i32.store offset=0x440 (local.get $at) (local.get $d))
    (call $register (local.get $d) (i32.const 0x110))
    (local.set $r (call $r32 (i32.const 0x110)))
    (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
    (i32.store offset=0x4c0 (local.get $at) (i32.wrap_i64 (local.get $r)))
    (i64.const 1))

  ;; Unregisters and drops everything `open` made for file `idx`.
  (func $close (param $idx i32) (result i64)
    (local $at i32) (local $r i64)
    (local.set $at (i32.shl (local.get $idx) (i32.const 2)))
    (call $unregister (i32.load offset=0x480 (local.get $at)) (i32.const 0x110))
    (if (i32.load8_u (i32.const 0x110))
      (then (local.set $r (i64.sub (i64.const -1) (i64.load8_u offset=1 (i32.const 0x110))))))
    (if (i32.load offset=0x440 (local.get $at))
      (then
        (call $unregister (i32.load offset=0x4c0 (local.get $at)) (i32.const 0x110))
        (if (i32.load8_u (i32.const 0x110))
          (then (local.set $r (i64.sub (i64.const -1) (i64.load8_u offset=1 (i32.const 0x110))))))
        (call $drop_fd (i32.load offset=0x440 (local.get $at)))
        (i32.store offset=0x440 (local.get $at) (i32.const 0))))
    (call $drop_fd (i32.load offset=0x400 (local.get $at)))
    (local.get $r))

  ;; A read's outcome at 0x110: its error, or `n << 32 | fnv` of the $n
  ;; bytes at BUF.
  (func $read_done (result i64)
    (local $r i64)
    (local.set $r (call $r32 (i32.const 0x110)))
    (if (result i64) (i64.lt_s (local.get $r) (i64.const 0))
      (then (local.get $r))
      (else (call $pack (local.get $r)
        (call $fnv (i32.const 0x100000) (i32.wrap_i64 (local.get $r)) (i32.const 0x811c9dc5))))))

  ;; A ticketed transfer: pin, submit, wait (or, with $sub, subscribe and
  ;; block on the pollable, then poll), drop the ticket, unpin.
  (func $ticket (param $write i32) (param $arg i32) (param $off i64) (param $len i32) (param $sub i32) (result i64)
    (local $pin i32) (local $t i32) (local $r i64) (local $p i32)
    (call $pin_fast (i64.const 0x100000) (call $pages (local.get $len)) (i32.eqz (local.get $write)) (i32.const 0x110))
    (local.set $r (call $r32 (i32.const 0x110)))
    (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
    (local.set $pin (i32.wrap_i64 (local.get $r)))
    (if (local.get $write)
      (then (call $submit_write (call $fd (local.get $arg)) (local.get $pin) (i32.const 0) (local.get $len)
              (local.get $off) (i32.const 0x110)))
      (else (call $submit_read (call $fd (local.get $arg)) (local.get $pin) (i32.const 0) (local.get $len)
              (local.get $off) (i32.const 0x110))))
    (local.set $r (call $r32 (i32.const 0x110)))
    (if (i64.lt_s (local.get $r) (i64.const 0))
      (then (call $unpin (local.get $pin) (i32.const 0)) (return (local.get $r))))
    (local.set $t (i32.wrap_i64 (local.get $r)))
    (if (local.get $sub)
      (then
        (local.set $p (call $subscribe (local.get $t)))
        (call $block (local.get $p))
        (call $drop_pollable (local.get $p))
        (call $poll (local.get $t) (i32.const 0x120)))
      (else (call $wait (local.get $t) (i32.const 60000) (i32.const 0x120))))
    (call $drop_ticket (local.get $t))
    (call $unpin (local.get $pin) (i32.eqz (local.get $write)))
    ;; none: timed out (index 20).
    (if (i32.eqz (i32.load8_u (i32.const 0x120))) (then (return (i64.const -21))))
    (local.set $r (call $r32 (i32.const 0x124)))
    (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
    (if (result i64) (local.get $write)
      (then (local.get $r))
      (else (call $pack (local.get $r)
        (call $fnv (i32.const 0x100000) (i32.wrap_i64 (local.get $r)) (i32.const 0x811c9dc5))))))

  ;; A vectored transfer over three slices of one pin (BUF, BUF + 0x40000,
  ;; BUF + 0x80000; the first two (len / 3) & ~0xfff bytes, the last the
  ;; rest), in file order.
  (func $vectored (param $write i32) (param $arg i32) (param $off i64) (param $len i32) (param $seed i32) (result i64)
    (local $a i32) (local $c i32) (local $pin i32) (local $r i64) (local $n i32) (local $h i32) (local $k i32)
    (local.set $a (i32.and (i32.div_u (local.get $len) (i32.const 3)) (i32.const -4096)))
    (local.set $c (i32.sub (local.get $len) (i32.shl (local.get $a) (i32.const 1))))
    (if (local.get $write)
      (then
        (drop (call $fill (i32.const 0x180000) (local.get $c)
          (call $fill (i32.const 0x140000) (local.get $a)
            (call $fill (i32.const 0x100000) (local.get $a) (i32.or (local.get $seed) (i32.const 1))))))))
    (call $pin_fast (i64.const 0x100000) (call $pages (i32.add (i32.const 0x80000) (local.get $c)))
      (i32.eqz (local.get $write)) (i32.const 0x110))
    (local.set $r (call $r32 (i32.const 0x110)))
    (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
    (local.set $pin (i32.wrap_i64 (local.get $r)))
    (i32.store (i32.const 0x600) (local.get $pin))
    (i32.store (i32.const 0x604) (i32.const 0))
    (i32.store (i32.const 0x608) (local.get $a))
    (i32.store (i32.const 0x60c) (local.get $pin))
    (i32.store (i32.const 0x610) (i32.const 0x40000))
    (i32.store (i32.const 0x614) (local.get $a))
    (i32.store (i32.const 0x618) (local.get $pin))
    (i32.store (i32.const 0x61c) (i32.const 0x80000))
    (i32.store (i32.const 0x620) (local.get $c))
    (if (local.get $write)
      (then (call $write_vec (call $fd (local.get $arg)) (i32.const 0x600) (i32.const 3) (local.get $off) (i32.const 0x110)))
      (else (call $read_vec (call $fd (local.get $arg)) (i32.const 0x600) (i32.const 3) (local.get $off) (i32.const 0x110))))
    (call $unpin (local.get $pin) (i32.eqz (local.get $write)))
    (local.set $r (call $r64 (i32.const 0x110)))
    (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
    (if (local.get $write) (then (return (local.get $r))))
    ;; Hash what arrived, slice by slice.
    (local.set $n (i32.wrap_i64 (local.get $r)))
    (local.set $h (i32.const 0x811c9dc5))
    (local.set $k (select (local.get $n) (local.get $a) (i32.lt_u (local.get $n) (local.get $a))))
    (local.set $h (call $fnv (i32.const 0x100000) (local.get $k) (local.get $h)))
    (local.set $n (i32.sub (local.get $n) (local.get $k)))
    (local.set $k (select (local.get $n) (local.get $a) (i32.lt_u (local.get $n) (local.get $a))))
    (local.set $h (call $fnv (i32.const 0x140000) (local.get $k) (local.get $h)))
    (local.set $n (i32.sub (local.get $n) (local.get $k)))
    (local.set $h (call $fnv (i32.const 0x180000) (local.get $n) (local.get $h)))
    (call $pack (local.get $r) (local.get $h)))

  ;; Long-term pins `pages` pages at BUF (growing the memory to hold them,
  ;; untouched) and releases them: `pages` or the error.
  (func $longterm (param $pages i32) (result i64)
    (local $need i64) (local $have i64) (local $r i64)
    (local.set $need (i64.add (i64.const 0x100000) (i64.shl (i64.extend_i32_u (local.get $pages)) (i64.const 12))))
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $need) (local.get $have))
      (then
        (if (i32.lt_s (memory.grow (i32.wrap_i64 (i64.shr_u (i64.add (i64.sub (local.get $need) (local.get $have))
                                                                     (i64.const 0xffff)) (i64.const 16))))
                      (i32.const 0))
          (then (return (i64.const -999))))))
    (call $pin_lt (i64.const 0x100000) (local.get $pages) (i32.const 1) (i32.const 0x110))
    (local.set $r (call $r32 (i32.const 0x110)))
    (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
    (call $unpin (i32.wrap_i64 (local.get $r)) (i32.const 1))
    (i64.extend_i32_u (local.get $pages)))

  ;; 127.0.0.1:$port as the flattened `ip-socket-address` (ipv4).
  (func $bind_local (param $ret i32)
    (call $bind (i32.const 0) (i32.const 0) (i32.const 127) (i32.const 0) (i32.const 0) (i32.const 1)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (local.get $ret)))
  (func $connect_local (param $port i32) (param $timeout i32) (param $ret i32)
    (call $connect (i32.const 0) (local.get $port) (i32.const 127) (i32.const 0) (i32.const 0) (i32.const 1)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (local.get $timeout)
      (local.get $ret)))

  ;; Quota ops: takes one object of kind $q (12 pin, 13 256 KiB pin,
  ;; 14 64 KiB long-term pin, 15 registered file 0, 16 listener, 17 ticket
  ;; reading file 0) until refused or $cap, releases them all, and returns
  ;; `count << 8 | (errno + 1)` (0 in the low byte if none was refused).
  (func $quota (param $q i32) (param $cap i32) (result i64)
    (local $i i32) (local $e i32) (local $pin i32) (local $h i32)
    ;; The tickets read into a page of their own (0x1f0000), which no other
    ;; op uses: a dropped ticket's read may still land after the drop.
    (if (i32.eq (local.get $q) (i32.const 17))
      (then
        (call $pin_fast (i64.const 0x1f0000) (i32.const 1) (i32.const 1) (i32.const 0x110))
        (if (i32.load8_u (i32.const 0x110)) (then (return (i64.const -998))))
        (local.set $pin (i32.load offset=4 (i32.const 0x110)))))
    (block $out
      (loop $l
        (br_if $out (i32.ge_u (local.get $i) (local.get $cap)))
        (block $taken
          (block $b17 (block $b16 (block $b15 (block $b14 (block $b13 (block $b12
            (br_table $b12 $b13 $b14 $b15 $b16 $b17 (i32.sub (local.get $q) (i32.const 12))))
            (call $pin_fast (i64.const 0x100000) (i32.const 1) (i32.const 0) (i32.const 0x110))
            (br $taken))
            (call $pin_fast (i64.const 0x100000) (i32.const 64) (i32.const 0) (i32.const 0x110))
            (br $taken))
            (call $pin_lt (i64.const 0x100000) (i32.const 16) (i32.const 0) (i32.const 0x110))
            (br $taken))
            (call $register (i32.load (i32.const 0x400)) (i32.const 0x110))
            (br $taken))
            (call $bind_local (i32.const 0x110))
            (br $taken))
          (call $submit_read (i32.load (i32.const 0x400)) (local.get $pin) (i32.const 0) (i32.const 4096)
            (i64.const 0) (i32.const 0x110)))
        (if (i32.load8_u (i32.const 0x110))
          (then
            (local.set $e (i32.add (i32.load8_u offset=4 (i32.const 0x110)) (i32.const 1)))
            (br $out)))
        (i32.store offset=0x10000 (i32.shl (local.get $i) (i32.const 2)) (i32.load offset=4 (i32.const 0x110)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    ;; Release them all, newest first.
    (local.set $h (local.get $i))
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $h)))
        (local.set $h (i32.sub (local.get $h) (i32.const 1)))
        (block $next
          (block $t (block $s (block $f (block $p
            (br_table $p $p $p $f $s $t (i32.sub (local.get $q) (i32.const 12))))
            (call $drop_pin (i32.load offset=0x10000 (i32.shl (local.get $h) (i32.const 2))))
            (br $next))
            (call $unregister (i32.load offset=0x10000 (i32.shl (local.get $h) (i32.const 2))) (i32.const 0x120))
            (br $next))
            (call $drop_listener (i32.load offset=0x10000 (i32.shl (local.get $h) (i32.const 2))))
            (br $next))
          (call $drop_ticket (i32.load offset=0x10000 (i32.shl (local.get $h) (i32.const 2)))))
        (br $l)))
    (if (local.get $pin) (then (call $unpin (local.get $pin) (i32.const 1))))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $i)) (i64.const 8)) (i64.extend_i32_u (local.get $e))))

  (func $send_all (param $len i32) (param $seed i32) (result i64)
    (local $pin i32) (local $r i64) (local $total i32)
    (drop (call $fill (i32.const 0x100000) (local.get $len) (i32.or (local.get $seed) (i32.const 1))))
    (call $pin_fast (i64.const 0x100000) (call $pages (local.get $len)) (i32.const 0) (i32.const 0x110))
    (local.set $r (call $r32 (i32.const 0x110)))
    (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
    (local.set $pin (i32.wrap_i64 (local.get $r)))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $total) (local.get $len)))
        (call $send (global.get $stream) (local.get $pin) (local.get $total)
          (i32.sub (local.get $len) (local.get $total)) (i32.const 10000) (i32.const 0x110))
        (local.set $r (call $r32 (i32.const 0x110)))
        (if (i64.lt_s (local.get $r) (i64.const 0))
          (then (call $unpin (local.get $pin) (i32.const 0)) (return (local.get $r))))
        (local.set $total (i32.add (local.get $total) (i32.wrap_i64 (local.get $r))))
        (br $l)))
    (call $unpin (local.get $pin) (i32.const 0))
    (i64.extend_i32_u (local.get $total)))

  (func $recv_all (param $len i32) (result i64)
    (local $pin i32) (local $r i64) (local $total i32)
    (call $pin_fast (i64.const 0x100000) (call $pages (local.get $len)) (i32.const 1) (i32.const 0x110))
    (local.set $r (call $r32 (i32.const 0x110)))
    (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
    (local.set $pin (i32.wrap_i64 (local.get $r)))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $total) (local.get $len)))
        (call $recv (global.get $stream) (local.get $pin) (local.get $total)
          (i32.sub (local.get $len) (local.get $total)) (i32.const 10000) (i32.const 0x110))
        (local.set $r (call $r32 (i32.const 0x110)))
        (if (i64.lt_s (local.get $r) (i64.const 0))
          (then (call $unpin (local.get $pin) (i32.const 1)) (return (local.get $r))))
        (br_if $done (i64.eqz (local.get $r)))
        (local.set $total (i32.add (local.get $total) (i32.wrap_i64 (local.get $r))))
        (br $l)))
    (call $unpin (local.get $pin) (i32.const 1))
    (call $pack (i64.extend_i32_u (local.get $total))
      (call $fnv (i32.const 0x100000) (local.get $total) (i32.const 0x811c9dc5))))

  ;; Submits four 64 KiB reads of file $idx into a pin, drops the pin's
  ;; handle (the reads keep it): transfers in flight.
  (func $reads_in_flight (param $idx i32) (param $longterm i32)
    (local $pin i32) (local $i i32)
    (if (local.get $longterm)
      (then (call $pin_lt (i64.const 0x100000) (i32.const 64) (i32.const 1) (i32.const 0x110)))
      (else (call $pin_fast (i64.const 0x100000) (i32.const 64) (i32.const 1) (i32.const 0x110))))
    (if (i32.load8_u (i32.const 0x110)) (then (return)))
    (local.set $pin (i32.load offset=4 (i32.const 0x110)))
    (loop $l
      (call $submit_read (call $fd (local.get $idx)) (local.get $pin) (i32.shl (local.get $i) (i32.const 16))
        (i32.const 0x10000) (i64.extend_i32_u (i32.shl (local.get $i) (i32.const 16))) (i32.const 0x110))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 4))))
    (call $drop_pin (local.get $pin)))

  (func (export "op") (param $kind i32) (param $arg i32) (param $off i64) (param $len i32) (param $seed i32) (result i64)
    (local $r i64)
    (block $bad
      (block $k26 (block $k25 (block $k24 (block $k23 (block $k22 (block $k21 (block $k20 (block $k19
      (block $k18 (block $k11 (block $k10 (block $k9 (block $k8 (block $k7 (block $k6 (block $k5
      (block $k4 (block $k3 (block $k2 (block $k1 (block $k0 (block $q
        (br_if $q (i32.and (i32.ge_u (local.get $kind) (i32.const 12)) (i32.le_u (local.get $kind) (i32.const 17))))
        (br_table $k0 $k1 $k2 $k3 $k4 $k5 $k6 $k7 $k8 $k9 $k10 $k11
                  $bad $bad $bad $bad $bad $bad
                  $k18 $k19 $k20 $k21 $k22 $k23 $k24 $k25 $k26 $bad (local.get $kind)))
        (return (call $quota (local.get $kind) (local.get $arg))))
        ;; 0 hello: one pin resolves the memory; the page size.
        (call $pin_fast (i64.const 0x100000) (i32.const 1) (i32.const 1) (i32.const 0x110))
        (local.set $r (call $r32 (i32.const 0x110)))
        (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
        (call $unpin (i32.wrap_i64 (local.get $r)) (i32.const 0))
        (return (i64.extend_i32_u (call $page_size))))
        (return (call $open (local.get $arg))))
        (return (call $close (local.get $arg))))
        ;; 3 one-call read.
        (call $read_into (call $fd (local.get $arg)) (i64.const 0x100000) (local.get $len) (local.get $off) (i32.const 0x110))
        (return (call $read_done)))
        ;; 4 one-call write.
        (drop (call $fill (i32.const 0x100000) (local.get $len) (i32.or (local.get $seed) (i32.const 1))))
        (call $write_from (call $fd (local.get $arg)) (i64.const 0x100000) (local.get $len) (local.get $off) (i32.const 0x110))
        (return (call $r32 (i32.const 0x110))))
        ;; 5 registered-file read.
        (call $read_fixed (call $slot (local.get $arg)) (i64.const 0x100000) (local.get $len) (local.get $off) (i32.const 0x110))
        (return (call $read_done)))
        ;; 6 registered-file write.
        (drop (call $fill (i32.const 0x100000) (local.get $len) (i32.or (local.get $seed) (i32.const 1))))
        (call $write_fixed (call $slot (local.get $arg)) (i64.const 0x100000) (local.get $len) (local.get $off) (i32.const 0x110))
        (return (call $r32 (i32.const 0x110))))
        ;; 7 ticket read (seed bit 0: subscribe and block instead of wait).
        (return (call $ticket (i32.const 0) (local.get $arg) (local.get $off) (local.get $len)
          (i32.and (local.get $seed) (i32.const 1)))))
        ;; 8 ticket write.
        (drop (call $fill (i32.const 0x100000) (local.get $len) (i32.or (local.get $seed) (i32.const 1))))
        (return (call $ticket (i32.const 1) (local.get $arg) (local.get $off) (local.get $len)
          (i32.and (i32.shr_u (local.get $seed) (i32.const 1)) (i32.const 1)))))
        (return (call $vectored (i32.const 0) (local.get $arg) (local.get $off) (local.get $len) (local.get $seed))))
        (return (call $vectored (i32.const 1) (local.get $arg) (local.get $off) (local.get $len) (local.get $seed))))
        (return (call $longterm (local.get $arg))))
        ;; 18 listen on 127.0.0.1, any port: the port.
        (call $bind_local (i32.const 0x110))
        (local.set $r (call $r32 (i32.const 0x110)))
        (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
        (global.set $listener (i32.wrap_i64 (local.get $r)))
        (call $local_addr (global.get $listener) (i32.const 0x120))
        (if (i32.load8_u (i32.const 0x120))
          (then (return (i64.sub (i64.const -1) (i64.load8_u offset=4 (i32.const 0x120))))))
        (return (i64.load16_u offset=8 (i32.const 0x120))))
        ;; 19 accept, waiting up to `arg` ms.
        (call $accept (global.get $listener) (local.get $arg) (i32.const 0x110))
        (local.set $r (call $r32 (i32.const 0x110)))
        (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
        (global.set $stream (i32.wrap_i64 (local.get $r)))
        (return (i64.const 0)))
        ;; 20 connect to 127.0.0.1:`arg`, waiting up to `len` ms.
        (call $connect_local (local.get $arg) (local.get $len) (i32.const 0x110))
        (local.set $r (call $r32 (i32.const 0x110)))
        (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
        (global.set $stream (i32.wrap_i64 (local.get $r)))
        (return (i64.const 0)))
        (return (call $send_all (local.get $len) (local.get $seed))))
        (return (call $recv_all (local.get $len))))
        ;; 23 close the connection and the listener.
        (if (global.get $stream) (then (call $drop_stream (global.get $stream)) (global.set $stream (i32.const 0))))
        (if (global.get $listener) (then (call $drop_listener (global.get $listener)) (global.set $listener (i32.const 0))))
        (return (i64.const 0)))
        ;; 24 trap with reads in flight into a long-term pin.
        (call $reads_in_flight (local.get $arg) (i32.const 1))
        unreachable)
        ;; 25 stall: reads in flight, then a recv nobody answers on a
        ;; connection to its own listener (an hour), until the host's
        ;; deadline drops the call.
        (call $reads_in_flight (local.get $arg) (i32.const 0))
        (call $bind_local (i32.const 0x110))
        (local.set $r (call $r32 (i32.const 0x110)))
        (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
        (call $local_addr (i32.wrap_i64 (local.get $r)) (i32.const 0x120))
        (if (i32.load8_u (i32.const 0x120)) (then (return (i64.const -997))))
        (call $connect_local (i32.load16_u offset=8 (i32.const 0x120)) (i32.const 10000) (i32.const 0x110))
        (local.set $r (call $r32 (i32.const 0x110)))
        (if (i64.lt_s (local.get $r) (i64.const 0)) (then (return (local.get $r))))
        (global.set $stream (i32.wrap_i64 (local.get $r)))
        (return (call $recv_all (i32.const 4096))))
      ;; 26 spin until the epoch deadline.
      (loop $spin (br $spin)))
    (i64.const -996))
)
