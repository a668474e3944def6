;; Quota exhaustion, run with quotas of 4 handles, 16 pinned pages and 4
;; long-term pages: past each the pin fails (again / nomem) and nothing is
;; pinned; releasing makes room again. Also NOWAIT on a page that was never
;; faulted in: again.
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages" (func $pin (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages" (func $pin_lt (param i64 i32 i32 i32)))
  (import "wasm-pin:mm/gup@0.1.0" "page-maybe-dma-pinned" (func $is_pinned (param i64) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "[resource-drop]pinned-pages" (func $drop_pin (param i32)))

  (memory (export "memory") 2)
  (data (i32.const 0x300) "quotas: step ?")

  (func $fail (param $step i32) (result i32)
    (i32.store8 (i32.const 0x30d) (i32.add (i32.const 0x41) (local.get $step)))
    (i32.store8 (i32.const 0x40) (i32.const 1))
    (i32.store (i32.const 0x44) (i32.const 0x300))
    (i32.store (i32.const 0x48) (i32.const 14))
    (i32.const 0x40))
  (func $err (result i32)
    (if (result i32) (i32.load8_u (i32.const 0x100))
      (then (i32.load8_u (i32.const 0x104)))
      (else (i32.const -1))))
  (func $ok (result i32)
    (if (result i32) (i32.load8_u (i32.const 0x100))
      (then (i32.const -1))
      (else (i32.load (i32.const 0x104)))))

  (func (export "run") (result i32)
    (local $a i32) (local $b i32) (local $c i32) (local $d i32)
    ;; A: 17 pages > 16-page quota: nomem, nothing pinned.
    (call $pin (i64.const 0) (i32.const 17) (i32.const 0) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 2)) (then (return (call $fail (i32.const 0)))))
    (if (call $is_pinned (i64.const 0)) (then (return (call $fail (i32.const 0)))))
    ;; B: 5 long-term pages > 4: nomem.
    (call $pin_lt (i64.const 0) (i32.const 5) (i32.const 0) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 2)) (then (return (call $fail (i32.const 1)))))
    ;; C: 4 handles fit, the 5th is again.
    (call $pin (i64.const 0x0000) (i32.const 1) (i32.const 0) (i32.const 0x100))
    (local.set $a (call $ok))
    (call $pin (i64.const 0x1000) (i32.const 1) (i32.const 0) (i32.const 0x100))
    (local.set $b (call $ok))
    (call $pin_lt (i64.const 0x2000) (i32.const 4) (i32.const 0) (i32.const 0x100))
    (local.set $c (call $ok))
    (call $pin (i64.const 0x3000) (i32.const 1) (i32.const 0) (i32.const 0x100))
    (local.set $d (call $ok))
    (if (i32.lt_s (i32.or (i32.or (local.get $a) (local.get $b)) (i32.or (local.get $c) (local.get $d))) (i32.const 0))
      (then (return (call $fail (i32.const 2)))))
    (call $pin (i64.const 0x8000) (i32.const 1) (i32.const 0) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 4)) (then (return (call $fail (i32.const 2)))))
    ;; D: long-term quota is full (4 pages held): one more is nomem.
    (call $drop_pin (local.get $a))
    (call $pin_lt (i64.const 0x9000) (i32.const 1) (i32.const 0) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 2)) (then (return (call $fail (i32.const 3)))))
    ;; E: releasing made room for a handle again.
    (call $pin (i64.const 0x9000) (i32.const 1) (i32.const 0) (i32.const 0x100))
    (local.set $a (call $ok))
    (if (i32.lt_s (local.get $a) (i32.const 0)) (then (return (call $fail (i32.const 4)))))
    (call $drop_pin (local.get $a))
    ;; F: NOWAIT (bit 2) on a page never faulted in by a pin: again.
    (call $pin (i64.const 0x1f000) (i32.const 1) (i32.const 4) (i32.const 0x100))
    (if (i32.ne (call $err) (i32.const 4)) (then (return (call $fail (i32.const 5)))))
    ;; Leave b, c, d pinned: the host checks that the store's end releases them.
    (i32.store8 (i32.const 0x40) (i32.const 0))
    (i32.const 0x40))
)
