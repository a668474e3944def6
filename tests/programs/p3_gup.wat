;; A WASI 0.3 command that imports the pin interfaces (`wasm-pin:mm/gup`):
;; exits with page-size / 512 + page-maybe-dma-pinned(its address 0x100)
;; (8 on 4 KiB pages, nothing pinned).
(component
  (import "wasm-pin:mm/gup@0.1.0" (instance $gup
    (export "page-size" (func (result u32)))
    (export "page-maybe-dma-pinned" (func (param "addr" u64) (result bool)))))
  (import "wasi:cli/exit@0.3.0" (instance $exit
    (export "exit-with-code" (func (param "status-code" u8)))))
  (core module $libc (memory (export "memory") 1))
  (core instance $libc (instantiate $libc))
  (core func $page_size (canon lower (func $gup "page-size")))
  (core func $is_pinned (canon lower (func $gup "page-maybe-dma-pinned")))
  (core func $exit (canon lower (func $exit "exit-with-code")))
  (core module $main
    (import "libc" "memory" (memory 1))
    (import "gup" "page-size" (func $page_size (result i32)))
    (import "gup" "page-maybe-dma-pinned" (func $is_pinned (param i64) (result i32)))
    (import "wasi" "exit-with-code" (func $exit (param i32)))
    (func (export "run") (result i32)
      (call $exit (i32.add (i32.div_u (call $page_size) (i32.const 512))
                           (call $is_pinned (i64.const 0x100))))
      (i32.const 0)))
  (core instance $i (instantiate $main
    (with "libc" (instance $libc))
    (with "gup" (instance
      (export "page-size" (func $page_size))
      (export "page-maybe-dma-pinned" (func $is_pinned))))
    (with "wasi" (instance (export "exit-with-code" (func $exit))))))
  (type $status (result))
  (type $run_t (func async (result $status)))
  (func $run (type $run_t) (canon lift (core func $i "run")))
  (instance $ri (export "run" (func $run)))
  (export "wasi:cli/run@0.3.0" (instance $ri)))
