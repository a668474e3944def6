;; The demo guest: streams a file through long-term pinned buffers with
;; several asynchronous reads in flight, hashes each chunk through its pin
;; (host-side FNV-1a, no copy) and writes a copy from the same buffers.
;; args: [input, output]. Prints progress every 16 MiB and a summary line.
;;
;; Memory: 0x0000 scratch and return areas, 0x1000 strings, 0x2000 text
;; buffer, 0x10000.. bump heap for cabi_realloc, 0x100000.. 4 buffers of 256 KiB.
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages" (func $pin_lt (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[method]pinned-pages.checksum" (func $checksum (param i32 i32 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[static]pinned-pages.unpin" (func $unpin (param i32 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "open" (func $open (param i32 i32 i32 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[method]file.size" (func $size (param i32 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[method]file.write-at" (func $write_at (param i32 i32 i32 i32 i64 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[method]file.submit-read-at" (func $submit_read (param i32 i32 i32 i32 i64 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[method]io-ticket.wait" (func $wait (param i32 i32 i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[resource-drop]io-ticket" (func $drop_ticket (param i32)))
  (import "wasm-pin:mm/zero-copy-io@0.1.0" "[resource-drop]file" (func $drop_file (param i32)))
  (import "wasm-pin:mm/environment@0.1.0" "args" (func $args (param i32)))
  (import "wasm-pin:mm/environment@0.1.0" "print" (func $print (param i32 i32)))

  (memory (export "memory") 32)
  (global $heap (mut i32) (i32.const 0x10000))
  (data (i32.const 0x1000) "demo: step ? failed")
  (data (i32.const 0x1020) "streamed ")
  (data (i32.const 0x1030) " MiB")
  (data (i32.const 0x1040) "guest: fnv1a ")
  (data (i32.const 0x1050) " over ")
  (data (i32.const 0x1060) " bytes in ")
  (data (i32.const 0x1070) " chunks")

  ;; A bump allocator: the host lowers `args` into guest memory through it.
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get $align))))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $size)) (i32.const 0x100000)) (then unreachable))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))

  (func $fail (param $step i32) (result i32)
    (i32.store8 (i32.const 0x100b) (i32.add (i32.const 0x41) (local.get $step)))
    (i32.store8 (i32.const 0x40) (i32.const 1))
    (i32.store (i32.const 0x44) (i32.const 0x1000))
    (i32.store (i32.const 0x48) (i32.const 19))
    (i32.const 0x40))

  ;; Text output: append to the line at 0x2000, then print it.
  (global $line (mut i32) (i32.const 0x2000))
  (func $put (param $p i32) (param $n i32)
    (memory.copy (global.get $line) (local.get $p) (local.get $n))
    (global.set $line (i32.add (global.get $line) (local.get $n))))
  (func $put_u64 (param $v i64)
    (local $tmp i32) (local $n i32)
    (local.set $tmp (i32.const 0x2fff))
    (loop $digit
      (i32.store8 (local.get $tmp) (i32.add (i32.const 0x30) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $tmp (i32.sub (local.get $tmp) (i32.const 1)))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
    (call $put (i32.add (local.get $tmp) (i32.const 1)) (i32.sub (i32.const 0x2fff) (local.get $tmp))))
  (func $put_hex (param $v i32)
    (local $i i32) (local $d i32)
    (i32.store16 (global.get $line) (i32.const 0x7830)) ;; "0x"
    (global.set $line (i32.add (global.get $line) (i32.const 2)))
    (local.set $i (i32.const 28))
    (loop $nib
      (local.set $d (i32.and (i32.shr_u (local.get $v) (local.get $i)) (i32.const 15)))
      (i32.store8 (global.get $line) (i32.add (local.get $d) (select (i32.const 0x57) (i32.const 0x30) (i32.gt_u (local.get $d) (i32.const 9)))))
      (global.set $line (i32.add (global.get $line) (i32.const 1)))
      (local.set $i (i32.sub (local.get $i) (i32.const 4)))
      (br_if $nib (i32.ge_s (local.get $i) (i32.const 0)))))
  (func $flush
    (call $print (i32.const 0x2000) (i32.sub (global.get $line) (i32.const 0x2000)))
    (global.set $line (i32.const 0x2000)))

  (func $ok (result i32)
    (if (result i32) (i32.load8_u (i32.const 0x100))
      (then (i32.const -1))
      (else (i32.load (i32.const 0x104)))))

  ;; Starts the read of chunk `k` into buffer `k % 4`; returns the ticket or -1.
  (func $start_read (param $in i32) (param $pins i32) (param $k i32) (result i32)
    (local $i i32)
    (local.set $i (i32.and (local.get $k) (i32.const 3)))
    (call $submit_read (local.get $in) (i32.load (i32.add (local.get $pins) (i32.shl (local.get $i) (i32.const 2))))
      (i32.const 0) (i32.const 0x40000) (i64.shl (i64.extend_i32_u (local.get $k)) (i64.const 18)) (i32.const 0x100))
    (call $ok))

  (func (export "run") (result i32)
    (local $in i32) (local $out i32) (local $size i64) (local $chunks i32)
    (local $k i32) (local $i i32) (local $pin i32) (local $t i32) (local $n i32) (local $hash i32)
    (local $pins i32) (local $tickets i32) (local $argv i32)
    (local.set $pins (i32.const 0x200))    ;; 4 pin handles
    (local.set $tickets (i32.const 0x220)) ;; 4 ticket handles
    ;; A: two arguments.
    (call $args (i32.const 0x80))
    (if (i32.lt_u (i32.load (i32.const 0x84)) (i32.const 2)) (then (return (call $fail (i32.const 0)))))
    (local.set $argv (i32.load (i32.const 0x80)))
    ;; B: open input (read) and output (write|create|truncate).
    (call $open (i32.load (local.get $argv)) (i32.load offset=4 (local.get $argv)) (i32.const 1) (i32.const 0x100))
    (local.set $in (call $ok))
    (if (i32.lt_s (local.get $in) (i32.const 0)) (then (return (call $fail (i32.const 1)))))
    (call $open (i32.load offset=8 (local.get $argv)) (i32.load offset=12 (local.get $argv)) (i32.const 14) (i32.const 0x100))
    (local.set $out (call $ok))
    (if (i32.lt_s (local.get $out) (i32.const 0)) (then (return (call $fail (i32.const 1)))))
    ;; C: its size, in 256 KiB chunks.
    (call $size (local.get $in) (i32.const 0x100))
    (if (i32.load8_u (i32.const 0x100)) (then (return (call $fail (i32.const 2)))))
    (local.set $size (i64.load (i32.const 0x108)))
    (local.set $chunks (i32.wrap_i64 (i64.shr_u (i64.add (local.get $size) (i64.const 0x3ffff)) (i64.const 18))))
    ;; D: pin four 64-page buffers long-term, writable (reads land in them).
    (loop $pin_all
      (call $pin_lt (i64.extend_i32_u (i32.add (i32.const 0x100000) (i32.shl (local.get $i) (i32.const 18))))
        (i32.const 64) (i32.const 1) (i32.const 0x100))
      (local.set $pin (call $ok))
      (if (i32.lt_s (local.get $pin) (i32.const 0)) (then (return (call $fail (i32.const 3)))))
      (i32.store (i32.add (local.get $pins) (i32.shl (local.get $i) (i32.const 2))) (local.get $pin))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $pin_all (i32.lt_u (local.get $i) (i32.const 4))))
    ;; E: four reads in flight.
    (local.set $k (i32.const 0))
    (block $primed
      (loop $prime
        (br_if $primed (i32.ge_u (local.get $k) (select (local.get $chunks) (i32.const 4) (i32.lt_u (local.get $chunks) (i32.const 4)))))
        (local.set $t (call $start_read (local.get $in) (local.get $pins) (local.get $k)))
        (if (i32.lt_s (local.get $t) (i32.const 0)) (then (return (call $fail (i32.const 4)))))
        (i32.store (i32.add (local.get $tickets) (i32.shl (local.get $k) (i32.const 2))) (local.get $t))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $prime)))
    ;; F: in order: wait, hash through the pin, write the copy, read ahead.
    (local.set $hash (i32.const 0x811c9dc5))
    (local.set $k (i32.const 0))
    (block $done
      (loop $stream
        (br_if $done (i32.ge_u (local.get $k) (local.get $chunks)))
        (local.set $i (i32.and (local.get $k) (i32.const 3)))
        (local.set $t (i32.load (i32.add (local.get $tickets) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $pin (i32.load (i32.add (local.get $pins) (i32.shl (local.get $i) (i32.const 2)))))
        (call $wait (local.get $t) (i32.const 30000) (i32.const 0x100))
        (if (i32.eqz (i32.load8_u (i32.const 0x100))) (then (return (call $fail (i32.const 5))))) ;; timed out
        (if (i32.load8_u (i32.const 0x104)) (then (return (call $fail (i32.const 5)))))          ;; errno
        (local.set $n (i32.load (i32.const 0x108)))
        (call $drop_ticket (local.get $t))
        (call $checksum (local.get $pin) (i32.const 0) (local.get $n) (local.get $hash) (i32.const 0x100))
        (local.set $hash (call $ok))
        (if (i32.load8_u (i32.const 0x100)) (then (return (call $fail (i32.const 6)))))
        (call $write_at (local.get $out) (local.get $pin) (i32.const 0) (local.get $n)
          (i64.shl (i64.extend_i32_u (local.get $k)) (i64.const 18)) (i32.const 0x100))
        (if (i32.ne (call $ok) (local.get $n)) (then (return (call $fail (i32.const 7)))))
        (if (i32.lt_u (i32.add (local.get $k) (i32.const 4)) (local.get $chunks))
          (then
            (local.set $t (call $start_read (local.get $in) (local.get $pins) (i32.add (local.get $k) (i32.const 4))))
            (if (i32.lt_s (local.get $t) (i32.const 0)) (then (return (call $fail (i32.const 8)))))
            (i32.store (i32.add (local.get $tickets) (i32.shl (local.get $i) (i32.const 2))) (local.get $t))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        ;; Progress every 64 chunks (16 MiB).
        (if (i32.eqz (i32.and (local.get $k) (i32.const 63)))
          (then
            (call $put (i32.const 0x1020) (i32.const 9))
            (call $put_u64 (i64.extend_i32_u (i32.shr_u (local.get $k) (i32.const 2))))
            (call $put (i32.const 0x1030) (i32.const 4))
            (call $flush)))
        (br $stream)))
    ;; G: unpin (dirty: the reads wrote them), close, report.
    (local.set $i (i32.const 0))
    (loop $unpin_all
      (call $unpin (i32.load (i32.add (local.get $pins) (i32.shl (local.get $i) (i32.const 2)))) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $unpin_all (i32.lt_u (local.get $i) (i32.const 4))))
    (call $drop_file (local.get $in))
    (call $drop_file (local.get $out))
    (call $put (i32.const 0x1040) (i32.const 13))
    (call $put_hex (local.get $hash))
    (call $put (i32.const 0x1050) (i32.const 6))
    (call $put_u64 (local.get $size))
    (call $put (i32.const 0x1060) (i32.const 10))
    (call $put_u64 (i64.extend_i32_u (local.get $chunks)))
    (call $put (i32.const 0x1070) (i32.const 7))
    (call $flush)
    (i32.store8 (i32.const 0x40) (i32.const 0))
    (i32.const 0x40))
)
