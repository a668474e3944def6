//! WIT bindings: `bindgen!` over `wit/` (world `test-guest`: the pin
//! interfaces), generated; public so embedders and tests can call the host
//! functions directly.
//!
//! WASI's types are wasmtime-wasi's own (`with: { "wasi": ... }`): a
//! `borrow<descriptor>` arrives as a `Resource<wasmtime_wasi::filesystem::Descriptor>`
//! of the same `ResourceTable` wasmtime-wasi uses, and a pollable as its
//! `DynPollable`. The pin resources are backed by [`GuestPin`](crate::GuestPin),
//! [`GuestGrant`](crate::GuestGrant), [`GuestTicket`](crate::io::GuestTicket)
//! and the sockets of [`crate::net`].
//!
//! The calls that wait (transfers, ticket waits, sockets) are generated as
//! `async`: [`crate::add_to_linker_async`] registers them with
//! `func_wrap_async`, and the store awaits them. [`crate::add_to_linker_sync`]
//! registers the same functions by hand, blocking the calling thread as a
//! synchronous store expects. Every import is trappable, so a handle the
//! table does not know traps instead of panicking the host.
// Generated items carry the WIT doc comments where bindgen copies them.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "test-guest",
    imports: {
        "wasm-pin:mm/zero-copy-io.read-at": async | trappable,
        "wasm-pin:mm/zero-copy-io.write-at": async | trappable,
        "wasm-pin:mm/zero-copy-io.read-at-vectored": async | trappable,
        "wasm-pin:mm/zero-copy-io.write-at-vectored": async | trappable,
        "wasm-pin:mm/zero-copy-io.[method]io-ticket.wait": async | trappable,
        "wasm-pin:mm/zero-copy-net.[static]tcp-listener.bind": async | trappable,
        "wasm-pin:mm/zero-copy-net.[method]tcp-listener.accept": async | trappable,
        "wasm-pin:mm/zero-copy-net.[static]tcp-stream.connect": async | trappable,
        "wasm-pin:mm/zero-copy-net.[method]tcp-stream.send": async | trappable,
        "wasm-pin:mm/zero-copy-net.[method]tcp-stream.recv": async | trappable,
        default: trappable,
    },
    with: {
        "wasi": wasmtime_wasi::p2::bindings,
        "wasm-pin:mm/gup.pinned-pages": crate::GuestPin,
        "wasm-pin:mm/gup.pinned-vec": crate::GuestPinVec,
        "wasm-pin:mm/gup.memory-grant": crate::GuestGrant,
        "wasm-pin:mm/zero-copy-io.io-ticket": crate::io::GuestTicket,
        "wasm-pin:mm/zero-copy-net.tcp-listener": crate::net::TcpListener,
        "wasm-pin:mm/zero-copy-net.tcp-stream": crate::net::TcpStream,
    },
    require_store_data_send: true,
});

use wasm_pin::mm::gup::{Errno, GupFlags, MmStats};

impl From<runtime_mm::Errno> for Errno {
    fn from(e: runtime_mm::Errno) -> Self {
        use runtime_mm::Errno as E;
        match e {
            E::Inval => Errno::Inval,
            E::Fault => Errno::Fault,
            E::NoMem => Errno::Nomem,
            E::Busy => Errno::Busy,
            E::Again => Errno::Again,
            E::OpNotSupp => Errno::Opnotsupp,
            E::Overflow => Errno::Overflow,
            E::Perm => Errno::Perm,
            E::BadF => Errno::Badf,
            E::NoEnt => Errno::Noent,
            E::Acces => Errno::Acces,
            E::Io => Errno::Io,
            E::Exist => Errno::Exist,
            E::NotDir => Errno::Notdir,
            E::IsDir => Errno::Isdir,
            E::NoSpc => Errno::Nospc,
            E::Pipe => Errno::Pipe,
            E::ConnRefused => Errno::Connrefused,
            E::ConnReset => Errno::Connreset,
            E::NotConn => Errno::Notconn,
            E::TimedOut => Errno::Timedout,
            E::Canceled => Errno::Canceled,
            E::MFile => Errno::Mfile,
            E::NFile => Errno::Nfile,
        }
    }
}

impl From<Errno> for runtime_mm::Errno {
    fn from(e: Errno) -> Self {
        use runtime_mm::Errno as E;
        match e {
            Errno::Inval => E::Inval,
            Errno::Fault => E::Fault,
            Errno::Nomem => E::NoMem,
            Errno::Busy => E::Busy,
            Errno::Again => E::Again,
            Errno::Opnotsupp => E::OpNotSupp,
            Errno::Overflow => E::Overflow,
            Errno::Perm => E::Perm,
            Errno::Badf => E::BadF,
            Errno::Noent => E::NoEnt,
            Errno::Acces => E::Acces,
            Errno::Io => E::Io,
            Errno::Exist => E::Exist,
            Errno::Notdir => E::NotDir,
            Errno::Isdir => E::IsDir,
            Errno::Nospc => E::NoSpc,
            Errno::Pipe => E::Pipe,
            Errno::Connrefused => E::ConnRefused,
            Errno::Connreset => E::ConnReset,
            Errno::Notconn => E::NotConn,
            Errno::Timedout => E::TimedOut,
            Errno::Canceled => E::Canceled,
            Errno::Mfile => E::MFile,
            Errno::Nfile => E::NFile,
        }
    }
}

impl From<GupFlags> for runtime_mm::GupFlags {
    fn from(f: GupFlags) -> Self {
        let mut out = runtime_mm::GupFlags::empty();
        out.set(runtime_mm::GupFlags::WRITE, f.contains(GupFlags::WRITE));
        out.set(runtime_mm::GupFlags::FORCE, f.contains(GupFlags::FORCE));
        out.set(runtime_mm::GupFlags::NOWAIT, f.contains(GupFlags::NOWAIT));
        out
    }
}

impl From<runtime_mm::MmStats> for MmStats {
    fn from(s: runtime_mm::MmStats) -> Self {
        MmStats {
            foll_pin_acquired: s.foll_pin_acquired,
            foll_pin_released: s.foll_pin_released,
            foll_get_taken: s.foll_get_taken,
            foll_get_put: s.foll_get_put,
            fast_path_pages: s.fast_path_pages,
            slow_path_pages: s.slow_path_pages,
            fast_fallbacks: s.fast_fallbacks,
            longterm_pinned_pages: s.longterm_pinned_pages,
            remote_pages: s.remote_pages,
            dirtied_pages: s.dirtied_pages,
            locked_bytes: s.locked_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every errno crosses the WIT boundary both ways unchanged, and no two
    /// share a WIT value.
    #[test]
    fn errnos_map_one_to_one() {
        let mut seen = std::collections::HashSet::new();
        for e in runtime_mm::Errno::ALL {
            let w = Errno::from(e);
            assert_eq!(runtime_mm::Errno::from(w), e);
            assert!(seen.insert(w as u8), "{e:?} shares its WIT value");
            // The WIT name is the errno's (`BadF` and `badf`).
            assert_eq!(w.name(), format!("{e:?}").to_lowercase());
        }
    }

    #[test]
    fn guest_flags_carry_each_bit_alone() {
        let conv = runtime_mm::GupFlags::from;
        assert_eq!(conv(GupFlags::empty()), runtime_mm::GupFlags::empty());
        assert_eq!(conv(GupFlags::WRITE), runtime_mm::GupFlags::WRITE);
        assert_eq!(conv(GupFlags::FORCE), runtime_mm::GupFlags::FORCE);
        assert_eq!(conv(GupFlags::NOWAIT), runtime_mm::GupFlags::NOWAIT);
        assert_eq!(
            conv(GupFlags::WRITE | GupFlags::NOWAIT),
            runtime_mm::GupFlags::WRITE | runtime_mm::GupFlags::NOWAIT
        );
    }

    #[test]
    fn stats_keep_every_counter() {
        let s = runtime_mm::MmStats {
            foll_pin_acquired: 1,
            foll_pin_released: 2,
            foll_get_taken: 3,
            foll_get_put: 4,
            fast_path_pages: 5,
            slow_path_pages: 6,
            fast_fallbacks: 7,
            longterm_pinned_pages: 8,
            remote_pages: 9,
            dirtied_pages: 10,
            locked_bytes: 11,
        };
        let w = MmStats::from(s);
        let got = [
            w.foll_pin_acquired,
            w.foll_pin_released,
            w.foll_get_taken,
            w.foll_get_put,
            w.fast_path_pages,
            w.slow_path_pages,
            w.fast_fallbacks,
            w.longterm_pinned_pages,
            w.remote_pages,
            w.dirtied_pages,
            w.locked_bytes,
        ];
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    }
}
