;; A WASI 0.3 command (exports `wasi:cli/run@0.3.0`, an async func lifted
;; synchronously): exits through `wasi:cli/exit@0.3.0.exit-with-code` with
;; 10 * (number of arguments, argv[0] included) + (number of environment
;; variables), read through `wasi:cli/environment@0.3.0`.
(component
  (import "wasi:cli/environment@0.3.0" (instance $env
    (export "get-environment" (func (result (list (tuple string string)))))
    (export "get-arguments" (func (result (list string))))))
  (import "wasi:cli/exit@0.3.0" (instance $exit
    (export "exit-with-code" (func (param "status-code" u8)))))
  (core module $libc
    (memory (export "memory") 1)
    (global $top (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $top) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get 2))))
      (global.set $top (i32.add (local.get $p) (local.get 3)))
      (local.get $p)))
  (core instance $libc (instantiate $libc))
  (core func $get_args (canon lower (func $env "get-arguments") (memory $libc "memory") (realloc (func $libc "realloc"))))
  (core func $get_env (canon lower (func $env "get-environment") (memory $libc "memory") (realloc (func $libc "realloc"))))
  (core func $exit (canon lower (func $exit "exit-with-code")))
  (core module $main
    (import "libc" "memory" (memory 1))
    (import "wasi" "get-arguments" (func $get_args (param i32)))
    (import "wasi" "get-environment" (func $get_env (param i32)))
    (import "wasi" "exit-with-code" (func $exit (param i32)))
    (func (export "run") (result i32)
      (call $get_args (i32.const 0))
      (call $get_env (i32.const 8))
      (call $exit (i32.add (i32.mul (i32.load (i32.const 4)) (i32.const 10)) (i32.load (i32.const 12))))
      (i32.const 0)))
  (core instance $i (instantiate $main
    (with "libc" (instance $libc))
    (with "wasi" (instance
      (export "get-arguments" (func $get_args))
      (export "get-environment" (func $get_env))
      (export "exit-with-code" (func $exit))))))
  (type $status (result))
  (type $run_t (func async (result $status)))
  (func $run (type $run_t) (canon lift (core func $i "run")))
  (instance $ri (export "run" (func $run)))
  (export "wasi:cli/run@0.3.0" (instance $ri)))
