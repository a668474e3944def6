;; Benchmark baseline: 10000 calls of the cheapest import (page-size).
(module
  (import "wasm-pin:mm/gup@0.1.0" "page-size" (func $page_size (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (local $i i32)
    (loop $again
      (drop (call $page_size))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 10000))))
    (i32.store8 (i32.const 0x40) (i32.const 0))
    (i32.const 0x40))
)
