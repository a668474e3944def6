;; Re-exports every core-ABI import behind a wasm frame, so a fuzzer can
;; call each with arbitrary arguments as this instance (host functions need a
;; calling instance to find its memory).
(module
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages" (func $pin0 (param i64 i32 i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages-fast" (func $pin1 (param i64 i32 i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages" (func $pin2 (param i64 i32 i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages-fast" (func $pin3 (param i64 i32 i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-user-pages-remote" (func $rpin0 (param i32 i64 i32 i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pin-longterm-pages-remote" (func $rpin1 (param i32 i64 i32 i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "open-grant" (func $open_grant (param i32 i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "drop-grant" (func $drop_grant (param i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "unpin" (func $unpin (param i32 i32) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "pinned-start" (func $start (param i32) (result i64)))
  (import "wasm-pin:mm/gup@0.1.0" "pinned-len-pages" (func $len (param i32) (result i64)))
  (import "wasm-pin:mm/gup@0.1.0" "pinned-checksum" (func $checksum (param i32 i32 i32 i32) (result i64)))
  (import "wasm-pin:mm/gup@0.1.0" "page-maybe-dma-pinned" (func $is_pinned (param i64) (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "page-size" (func $page_size (result i32)))
  (import "wasm-pin:mm/gup@0.1.0" "stats" (func $stats (param i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0x20) "peer")

  ;; call(func, a, b, c, d, e) -> i64: dispatches on `func` (mod 15).
  (func (export "call") (param $f i32) (param $a i64) (param $b i64) (param $c i64) (param $d i64) (param $e i64) (result i64)
    (block $b14 (block $b13 (block $b12 (block $b11 (block $b10 (block $b9 (block $b8 (block $b7
    (block $b6 (block $b5 (block $b4 (block $b3 (block $b2 (block $b1 (block $b0
      (br_table $b0 $b1 $b2 $b3 $b4 $b5 $b6 $b7 $b8 $b9 $b10 $b11 $b12 $b13 $b14
        (i32.rem_u (local.get $f) (i32.const 15))))
      (return (i64.extend_i32_s (call $pin0 (local.get $a) (i32.wrap_i64 (local.get $b)) (i32.wrap_i64 (local.get $c))))))
      (return (i64.extend_i32_s (call $pin1 (local.get $a) (i32.wrap_i64 (local.get $b)) (i32.wrap_i64 (local.get $c))))))
      (return (i64.extend_i32_s (call $pin2 (local.get $a) (i32.wrap_i64 (local.get $b)) (i32.wrap_i64 (local.get $c))))))
      (return (i64.extend_i32_s (call $pin3 (local.get $a) (i32.wrap_i64 (local.get $b)) (i32.wrap_i64 (local.get $c))))))
      (return (i64.extend_i32_s (call $rpin0 (i32.wrap_i64 (local.get $a)) (local.get $b) (i32.wrap_i64 (local.get $c)) (i32.wrap_i64 (local.get $d))))))
      (return (i64.extend_i32_s (call $rpin1 (i32.wrap_i64 (local.get $a)) (local.get $b) (i32.wrap_i64 (local.get $c)) (i32.wrap_i64 (local.get $d))))))
      (return (i64.extend_i32_s (call $open_grant (i32.wrap_i64 (local.get $a)) (i32.wrap_i64 (local.get $b))))))
      (return (i64.extend_i32_s (call $drop_grant (i32.wrap_i64 (local.get $a))))))
      (return (i64.extend_i32_s (call $unpin (i32.wrap_i64 (local.get $a)) (i32.wrap_i64 (local.get $b))))))
      (return (call $start (i32.wrap_i64 (local.get $a)))))
      (return (call $len (i32.wrap_i64 (local.get $a)))))
      (return (call $checksum (i32.wrap_i64 (local.get $a)) (i32.wrap_i64 (local.get $b)) (i32.wrap_i64 (local.get $c)) (i32.wrap_i64 (local.get $d)))))
      (return (i64.extend_i32_s (call $is_pinned (local.get $a)))))
      (return (i64.extend_i32_s (call $page_size))))
    (i64.extend_i32_s (call $stats (i32.wrap_i64 (local.get $a)))))
)
