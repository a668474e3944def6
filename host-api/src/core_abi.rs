//! The `gup` imports for plain core modules, with the integer ABI written in
//! `wit/gup.wit` (handles as positive `i32`, errors as `-errno`).
//!
//! A core module's memory is found on every call through its `memory`
//! export, looked up by base address in the [`PinMemoryCreator`]'s registry
//! (the base never moves), so any number of instances may share one store.

use crate::host::{checksum, PinKind};
use crate::{GuestGrant, GuestPin, MmHost};
use runtime_mm::{Errno, GupFlags, Mm, PinMemoryCreator};
use std::sync::Arc;
use wasmtime::component::Resource;
use wasmtime::{Caller, Extern, Linker, Result};

/// The import module name.
pub const MODULE: &str = "wasm-pin:mm/gup@0.1.0";

const FLAG_WRITE: i32 = 1;
const FLAG_FORCE: i32 = 2;
const FLAG_NOWAIT: i32 = 4;

fn flags(bits: i32) -> Result<GupFlags, Errno> {
    if bits & !(FLAG_WRITE | FLAG_FORCE | FLAG_NOWAIT) != 0 {
        return Err(Errno::Inval);
    }
    let mut f = GupFlags::empty();
    f.set(GupFlags::WRITE, bits & FLAG_WRITE != 0);
    f.set(GupFlags::FORCE, bits & FLAG_FORCE != 0);
    f.set(GupFlags::NOWAIT, bits & FLAG_NOWAIT != 0);
    Ok(f)
}

fn neg(e: Errno) -> i32 {
    -e.raw()
}

fn handle_of<T>(r: Resource<T>) -> i32 {
    // Table indices are small; +1 keeps 0 and negatives free for errors.
    i32::try_from(r.rep()).map_or(neg(Errno::Again), |h| h.saturating_add(1))
}

fn resource<T: 'static>(handle: i32) -> Result<Resource<T>, Errno> {
    match u32::try_from(handle) {
        Ok(h) if h > 0 => Ok(Resource::new_own(h - 1)),
        _ => Err(Errno::BadF),
    }
}

fn i64_or_errno(r: Result<u64, Errno>) -> i64 {
    r.map_or_else(|e| i64::from(neg(e)), |v| v as i64)
}

/// Finds the caller's own memory and attaches it to the host state.
fn caller_mm<T>(caller: &mut Caller<'_, T>, creator: &PinMemoryCreator) -> Result<Arc<Mm>, Errno> {
    let base = match caller.get_export("memory") {
        Some(Extern::Memory(m)) => m.data_ptr(&caller),
        Some(Extern::SharedMemory(m)) => m.data().as_ptr().cast::<u8>().cast_mut(),
        _ => return Err(Errno::Fault),
    };
    creator.mm_for_base(base).ok_or(Errno::OpNotSupp)
}

fn pin_local<T>(
    caller: &mut Caller<'_, T>,
    creator: &PinMemoryCreator,
    get: fn(&mut T) -> &mut MmHost,
    kind: PinKind,
    start: i64,
    nr: i32,
    bits: i32,
) -> i32 {
    let r = flags(bits).and_then(|f| {
        let mm = caller_mm(caller, creator)?;
        let host = get(caller.data_mut());
        host.attach(mm.clone());
        host.pin(&mm, kind, start as u64, nr as u32, f)
    });
    r.map_or_else(neg, handle_of)
}

fn pin_remote<T>(
    caller: &mut Caller<'_, T>,
    get: fn(&mut T) -> &mut MmHost,
    kind: PinKind,
    grant: i32,
    start: i64,
    nr: i32,
    bits: i32,
) -> i32 {
    let r = flags(bits).and_then(|f| {
        let host = get(caller.data_mut());
        let mm = host.granted(&resource::<GuestGrant>(grant)?)?;
        host.pin(&mm, kind, start as u64, nr as u32, f)
    });
    r.map_or_else(neg, handle_of)
}

/// Adds the `gup` imports under [`MODULE`] to a core-module linker. `creator`
/// is the engine's memory creator (to find each caller's `Mm`); `get` finds
/// the store's [`MmHost`].
///
/// ```
/// use host_api::MmHost;
/// use runtime_mm::PinMemoryCreator;
///
/// let creator = PinMemoryCreator::new();
/// let mut config = wasmtime::Config::new();
/// creator.install(&mut config);
/// let engine = wasmtime::Engine::new(&config).unwrap();
/// let mut linker = wasmtime::Linker::<MmHost>::new(&engine);
/// host_api::add_to_core_linker(&mut linker, &creator, |h| h).unwrap();
/// ```
pub fn add_to_core_linker<T: 'static>(
    linker: &mut Linker<T>,
    creator: &Arc<PinMemoryCreator>,
    get: fn(&mut T) -> &mut MmHost,
) -> Result<()> {
    let local = [
        ("pin-user-pages", PinKind::User),
        ("pin-user-pages-fast", PinKind::UserFast),
        ("pin-longterm-pages", PinKind::Longterm),
        ("pin-longterm-pages-fast", PinKind::LongtermFast),
    ];
    for (name, kind) in local {
        let creator = creator.clone();
        linker.func_wrap(
            MODULE,
            name,
            move |mut c: Caller<'_, T>, start: i64, nr: i32, bits: i32| {
                pin_local(&mut c, &creator, get, kind, start, nr, bits)
            },
        )?;
    }
    for (name, kind) in [
        ("pin-user-pages-remote", PinKind::UserRemote),
        ("pin-longterm-pages-remote", PinKind::LongtermRemote),
    ] {
        linker.func_wrap(
            MODULE,
            name,
            move |mut c: Caller<'_, T>, grant: i32, start: i64, nr: i32, bits: i32| {
                pin_remote(&mut c, get, kind, grant, start, nr, bits)
            },
        )?;
    }
    linker.func_wrap(MODULE, "open-grant", move |mut c: Caller<'_, T>, ptr: i32, len: i32| {
        let name = read_guest_string(&mut c, ptr, len);
        name.and_then(|n| get(c.data_mut()).open_grant(&n))
            .map_or_else(neg, handle_of)
    })?;
    linker.func_wrap(MODULE, "drop-grant", move |mut c: Caller<'_, T>, grant: i32| {
        let r = resource::<GuestGrant>(grant).and_then(|g| get(c.data_mut()).drop_grant(g));
        r.map_or_else(neg, |()| 0)
    })?;
    linker.func_wrap(MODULE, "unpin", move |mut c: Caller<'_, T>, handle: i32, dirty: i32| {
        let r = resource::<GuestPin>(handle).and_then(|h| get(c.data_mut()).release(h, dirty != 0));
        r.map_or_else(neg, |()| 0)
    })?;
    linker.func_wrap(MODULE, "pinned-start", move |mut c: Caller<'_, T>, handle: i32| {
        let host = get(c.data_mut());
        i64_or_errno(resource::<GuestPin>(handle).and_then(|h| Ok(host.pinned(&h)?.pages.start())))
    })?;
    linker.func_wrap(MODULE, "pinned-len-pages", move |mut c: Caller<'_, T>, handle: i32| {
        let host = get(c.data_mut());
        i64_or_errno(resource::<GuestPin>(handle).and_then(|h| Ok(host.pinned(&h)?.pages.len() as u64)))
    })?;
    linker.func_wrap(
        MODULE,
        "pinned-checksum",
        move |mut c: Caller<'_, T>, handle: i32, off: i32, len: i32, seed: i32| {
            let host = get(c.data_mut());
            let r = resource::<GuestPin>(handle)
                .and_then(|h| checksum(&host.pinned(&h)?.pages, off as u32, len as u32, seed as u32).map(u64::from));
            i64_or_errno(r)
        },
    )?;
    let creator2 = creator.clone();
    linker.func_wrap(
        MODULE,
        "page-maybe-dma-pinned",
        move |mut c: Caller<'_, T>, addr: i64| {
            caller_mm(&mut c, &creator2).is_ok_and(|mm| mm.page_maybe_dma_pinned(addr as u64)) as i32
        },
    )?;
    linker.func_wrap(MODULE, "page-size", || Mm::host_page_size() as i32)?;
    let creator3 = creator.clone();
    linker.func_wrap(MODULE, "stats", move |mut c: Caller<'_, T>, out: i32| {
        let r = caller_mm(&mut c, &creator3).and_then(|mm| {
            let s = mm.stats();
            let fields = [
                s.foll_pin_acquired,
                s.foll_pin_released,
                s.foll_get_taken,
                s.foll_get_put,
                s.fast_path_pages,
                s.slow_path_pages,
                s.fast_fallbacks,
                s.longterm_pinned_pages,
                s.remote_pages,
                s.dirtied_pages,
                s.locked_bytes,
            ];
            let bytes: Vec<u8> = fields.iter().flat_map(|v| v.to_le_bytes()).collect();
            let addr = u32::try_from(out).map_err(|_| Errno::Fault)?;
            if addr % 8 != 0 {
                return Err(Errno::Inval);
            }
            // Bounds-checked: Fault if any byte is outside the memory.
            mm.write(u64::from(addr), &bytes)
        });
        r.map_or_else(neg, |()| 0)
    })?;
    Ok(())
}

fn read_guest_string<T>(caller: &mut Caller<'_, T>, ptr: i32, len: i32) -> Result<String, Errno> {
    let Some(Extern::Memory(mem)) = caller.get_export("memory") else {
        return Err(Errno::Fault);
    };
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    if len > 4096 {
        return Err(Errno::Inval);
    }
    let mut buf = vec![0; len];
    mem.read(&caller, ptr, &mut buf).map_err(|_| Errno::Fault)?;
    String::from_utf8(buf).map_err(|_| Errno::Inval)
}
