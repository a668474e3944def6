//! A plain WASI command (no pin imports) for the `wasm-pin run` tests.
//!
//! ```text
//! hello-wasi [--file DIR] [--exit N] [WORDS...]
//! ```
//!
//! Prints each argument (argv[0] included) and the `HELLO_WASI` variable on
//! stdout; with `--file DIR` writes `DIR/hello-wasi.txt`, reads it back and
//! prints what it read; writes one line to stderr; exits with `N` if
//! `--exit N` was given, else 0.

use std::process::exit;
use wasip1_start as _;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    for (i, a) in args.iter().enumerate() {
        println!("arg[{i}]={a}");
    }
    match std::env::var("HELLO_WASI") {
        Ok(v) => println!("env HELLO_WASI={v}"),
        Err(_) => println!("env HELLO_WASI unset"),
    }

    let mut code = 0;
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--file" => {
                let Some(dir) = rest.next() else {
                    eprintln!("hello-wasi: --file needs a directory");
                    exit(2);
                };
                let path = format!("{}/hello-wasi.txt", dir.trim_end_matches('/'));
                let text = format!("hello from {}\n", args[0]);
                if let Err(e) = std::fs::write(&path, &text) {
                    eprintln!("hello-wasi: write {path}: {e}");
                    exit(3);
                }
                match std::fs::read_to_string(&path) {
                    Ok(back) if back == text => println!("file {path}: {}", back.trim_end()),
                    Ok(back) => {
                        eprintln!("hello-wasi: read back {back:?}, wrote {text:?}");
                        exit(4);
                    }
                    Err(e) => {
                        eprintln!("hello-wasi: read {path}: {e}");
                        exit(3);
                    }
                }
            }
            "--exit" => match rest.next().and_then(|n| n.parse().ok()) {
                Some(n) => code = n,
                None => {
                    eprintln!("hello-wasi: --exit needs a number");
                    exit(2);
                }
            },
            _ => {}
        }
    }
    eprintln!("hello-wasi: done, exit code {code}");
    if code != 0 {
        exit(code);
    }
}
