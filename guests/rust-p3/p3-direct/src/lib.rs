//! `p3-direct`, a WASI 0.3 command of world `wasm-pin:p3/guest` (`wit/p3`):
//! `p3-direct NAME` reads the file NAME of the preopen `/data` with explicit
//! one-call transfers (`wasm-pin:p3/one-call-io`) into its own memory:
//!
//! - on an `open-direct` descriptor where the filesystem allows `O_DIRECT`
//!   (else on the plain descriptor), 1 MiB at a time into a 4 KiB-aligned
//!   buffer;
//! - then once more through a registered slot (`register-file`,
//!   `read-into-fixed`).
//!
//! Prints `direct=<yes|errno name> bytes=<n> fnv=<hex> misaligned=<errno name>
//! fixed=<n>` on stdout: `misaligned` is what a read at an odd address
//! answers on the direct descriptor (`inval`), or `-` without one. Exits 1
//! with the error on stderr if a transfer fails.

wit_bindgen::generate!({
    path: "../../../wit/p3",
    world: "wasm-pin:p3/guest",
    generate_all,
});

// WIT of two WASI versions is in scope (0.2 for wasm-pin's other
// interfaces): wit-bindgen names the 0.3 modules by version.
use exports::wasi::cli0_3_0::run::Guest;
use wasi::cli0_3_0 as cli;
use wasi::filesystem0_3_0 as fs;
use std::alloc::{alloc_zeroed, Layout};
use fs::types::{DescriptorFlags, OpenFlags, PathFlags};
use wasm_pin::p3::one_call_io as io;

const CHUNK: usize = 1 << 20;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

struct P3Direct;

export!(P3Direct);

impl Guest for P3Direct {
    async fn run() -> Result<(), ()> {
        let out = match direct().await {
            Ok(line) => line,
            Err(e) => {
                print(true, format!("p3-direct: {e}\n")).await;
                return Err(());
            }
        };
        print(false, out).await;
        Ok(())
    }
}

async fn print(stderr: bool, text: String) {
    let (mut tx, rx) = wit_stream::new::<u8>();
    let done = if stderr {
        cli::stderr::write_via_stream(rx)
    } else {
        cli::stdout::write_via_stream(rx)
    };
    let _ = tx.write_all(text.into_bytes()).await;
    drop(tx);
    let _ = done.await;
}

async fn direct() -> Result<String, String> {
    let name = cli::environment::get_arguments()
        .into_iter()
        .nth(1)
        .ok_or("usage: p3-direct NAME")?;
    let (dir, _) = fs::preopens::get_directories()
        .into_iter()
        .find(|(_, path)| path == "/data")
        .ok_or("no /data preopen")?;
    let file = dir
        .open_at(PathFlags::empty(), name.clone(), OpenFlags::empty(), DescriptorFlags::READ)
        .await
        .map_err(|e| format!("opening {name}: {e:?}"))?;
    let align = io::direct_alignment() as usize;
    let layout = Layout::from_size_align(CHUNK + align, align).unwrap();
    // SAFETY: a non-zero size; the buffer lives for the whole program.
    let buf = unsafe { alloc_zeroed(layout) };
    assert!(!buf.is_null());
    let addr = buf as u64;

    let opened = io::open_direct(&file);
    let target = opened.as_ref().unwrap_or(&file);
    let (mut at, mut fnv) = (0u64, FNV_OFFSET);
    loop {
        let n = io::read_into(target, addr, CHUNK as u32, at).map_err(|e| format!("read-into at {at}: {e:?}"))?;
        if n == 0 {
            break;
        }
        // SAFETY: the host wrote `n` bytes at `buf`, inside the allocation.
        let got = unsafe { std::slice::from_raw_parts(buf, n as usize) };
        fnv = got.iter().fold(fnv, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME));
        at += u64::from(n);
    }
    let misaligned = match &opened {
        Ok(d) => match io::read_into(d, addr + 1, align as u32, 0) {
            Ok(n) => format!("read-{n}"),
            Err(e) => e.name().to_string(),
        },
        Err(_) => "-".to_string(),
    };
    let slot = io::register_file(&file).map_err(|e| format!("register-file: {e:?}"))?;
    let fixed = io::read_into_fixed(slot, addr, align as u32, 0).map_err(|e| format!("read-into-fixed: {e:?}"))?;
    io::unregister_file(slot).map_err(|e| format!("unregister-file: {e:?}"))?;
    let direct = match &opened {
        Ok(_) => "yes".to_string(),
        Err(e) => e.name().to_string(),
    };
    Ok(format!("direct={direct} bytes={at} fnv={fnv:016x} misaligned={misaligned} fixed={fixed}\n"))
}
