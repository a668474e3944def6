//! The `gup` imports for plain core modules, with the integer ABI written in
//! `wit/gup.wit` (handles as positive `i32`, errors as `-errno`).
//!
//! A core module's memory is found on every call through its `memory`
//! export, looked up by base address in the [`PinMemoryCreator`]'s registry
//! (the base never moves), so any number of instances may share one store.
//! Each instance has its own handle table (`handles`), keyed by that memory
//! and the instance's module (`owner`):
//! an instance can name only the pins and grants it was given itself, and a
//! released handle is never reused for another object.

use crate::handles::HandleOwner;
use crate::pins::{checksum, PinKind};
use crate::view::{PinCtxView, PinView};
use crate::{GuestGrant, GuestPin};
use runtime_mm::{Errno, GupFlags, Mm, PinMemoryCreator, PinnedPages};
use std::sync::Arc;
use wasmtime::component::Resource;
use wasmtime::{Caller, Extern, Linker, Result, WasmBacktrace};

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

fn i64_or_errno(r: Result<u64, Errno>) -> i64 {
    r.map_or_else(|e| i64::from(neg(e)), |v| v as i64)
}

/// The base address of the caller's `memory` export: its identity in the
/// store (and the key of its handle table). `None` without one.
fn caller_base<T>(caller: &mut Caller<'_, T>) -> Option<*mut u8> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m.data_ptr(&caller)),
        Some(Extern::SharedMemory(m)) => Some(m.data().as_ptr().cast::<u8>().cast_mut()),
        _ => None,
    }
}

/// The caller's own memory, as an `Mm` of this engine's creator.
fn caller_mm<T>(caller: &mut Caller<'_, T>, creator: &PinMemoryCreator) -> Result<Arc<Mm>, Errno> {
    // No `memory` export, or one not made by our creator: nothing pinnable.
    let base = caller_base(caller).ok_or(Errno::OpNotSupp)?;
    creator.mm_for_base(base).ok_or(Errno::OpNotSupp)
}

/// Who owns the caller's handles: its `memory` export *and* its module.
///
/// The export alone is not the instance: an instance that imports another's
/// memory and re-exports it as `memory` would name the other's handles.
/// wasmtime 48 tells a host function nothing else about its caller, but
/// `Caller::get_module_export` answers only for an instance of the module
/// the `ModuleExport` came from: a cheap, exact test of "is the caller an
/// instance of module M". Each memory keeps the modules seen calling with
/// it; the first call of a new one finds its module once, from the
/// youngest frame of a backtrace (the caller's own function).
///
/// Two instances of one module can share a memory only by both importing
/// it; they then share one table, as they share every byte of it.
fn owner<T>(caller: &mut Caller<'_, T>, get: fn(&mut T) -> PinCtxView<'_>) -> Result<HandleOwner, Errno> {
    let base = caller_base(caller).ok_or(Errno::BadF)? as usize;
    let seen = get(caller.data_mut()).ctx.core_modules.get(&base).map_or(0, Vec::len);
    for i in 0..seen {
        let (export, module) = {
            let seen = &get(caller.data_mut()).ctx.core_modules[&base][i];
            (seen.0, seen.1)
        };
        if caller.get_module_export(&export).is_some() {
            return Ok(HandleOwner::Core { base, module });
        }
    }
    let trace = WasmBacktrace::force_capture(&*caller);
    let module = trace.frames().first().map(|f| f.module().clone()).ok_or(Errno::BadF)?;
    let export = module.get_export_index("memory").ok_or(Errno::BadF)?;
    let tag = module.image_range().start as usize;
    let list = get(caller.data_mut()).ctx.core_modules.entry(base).or_default();
    // Kept with its `Module`, whose code stays mapped: the tag is never reused.
    list.push((export, tag, module));
    Ok(HandleOwner::Core { base, module: tag })
}

/// The caller's handle table; a caller without a memory holds no handle.
fn handles<'a, T>(
    caller: &'a mut Caller<'_, T>,
    get: fn(&mut T) -> PinCtxView<'_>,
) -> Result<(PinCtxView<'a>, HandleOwner), Errno> {
    let key = owner(caller, get)?;
    Ok((get(caller.data_mut()), key))
}

/// Gives the caller a handle on a new pin; undoes the pin if it cannot.
fn give_pin(host: &mut PinCtxView<'_>, key: HandleOwner, pin: Resource<GuestPin>) -> Result<i32, Errno> {
    let rep = pin.rep();
    host.ctx.core_handles(key).insert(&pin).inspect_err(|_| {
        let _ = host.release(Resource::new_own(rep), false);
    })
}

fn pin_local<T>(
    caller: &mut Caller<'_, T>,
    creator: &PinMemoryCreator,
    get: fn(&mut T) -> PinCtxView<'_>,
    kind: PinKind,
    start: i64,
    nr: i32,
    bits: i32,
) -> i32 {
    let r = flags(bits).and_then(|f| {
        let mm = caller_mm(caller, creator)?;
        let key = owner(caller, get)?;
        let mut host = get(caller.data_mut());
        host.ctx.attach(mm.clone());
        let pin = host.pin_pages(&mm, kind, start as u64, nr as u32, f)?;
        give_pin(&mut host, key, pin)
    });
    r.unwrap_or_else(neg)
}

fn pin_remote<T>(
    caller: &mut Caller<'_, T>,
    get: fn(&mut T) -> PinCtxView<'_>,
    kind: PinKind,
    grant: i32,
    start: i64,
    nr: i32,
    bits: i32,
) -> i32 {
    let r = flags(bits).and_then(|f| {
        let (mut host, key) = handles(caller, get)?;
        let grant = host.ctx.core_handles(key).get::<GuestGrant>(grant)?;
        let mm = host.granted(&grant)?;
        let pin = host.pin_pages(&mm, kind, start as u64, nr as u32, f)?;
        give_pin(&mut host, key, pin)
    });
    r.unwrap_or_else(neg)
}

/// Adds the `gup` imports under [`MODULE`] to a core-module linker. `creator`
/// is the engine's memory creator (to find each caller's `Mm`); the store's
/// data gives the pin state through [`PinView`].
///
/// WASI preview1 programs get no `zero-copy-io` here: wasmtime-wasi 48 keeps
/// a p1 fd's file private to `WasiP1Ctx` (its descriptor map and lookups are
/// private), so no host crate can reach the file behind an fd number. A
/// `wasm32-wasip1` program gets zero-copy I/O by being componentized with the
/// preview1 command adapter (as the demo guest is): it then holds WASI p2
/// descriptors and uses the component imports.
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
/// host_api::add_to_core_linker(&mut linker, &creator).unwrap();
/// ```
pub fn add_to_core_linker<T: PinView + 'static>(linker: &mut Linker<T>, creator: &Arc<PinMemoryCreator>) -> Result<()> {
    add_to_core_linker_with(linker, creator, T::pins)
}

/// [`add_to_core_linker`] with an explicit getter of the pin view, for store
/// data that does not implement [`PinView`]. Both fail on an engine with
/// wasmtime's pooling allocator ([`PinMemoryCreator::check_allocator`]).
pub fn add_to_core_linker_with<T: 'static>(
    linker: &mut Linker<T>,
    creator: &Arc<PinMemoryCreator>,
    get: fn(&mut T) -> PinCtxView<'_>,
) -> Result<()> {
    PinMemoryCreator::check_allocator(linker.engine())?;
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
    let creator1 = creator.clone();
    linker.func_wrap(MODULE, "open-grant", move |mut c: Caller<'_, T>, ptr: i32, len: i32| {
        let r = caller_mm(&mut c, &creator1).and_then(|mm| {
            let name = read_guest_string(&mm, ptr, len)?;
            let key = owner(&mut c, get)?;
            let mut host = get(c.data_mut());
            let grant = host.open_grant(&name)?;
            let rep = grant.rep();
            host.ctx.core_handles(key).insert(&grant).inspect_err(|_| {
                let _ = host.drop_grant(Resource::new_own(rep));
            })
        });
        r.unwrap_or_else(neg)
    })?;
    linker.func_wrap(MODULE, "drop-grant", move |mut c: Caller<'_, T>, grant: i32| {
        let r = handles(&mut c, get).and_then(|(mut host, key)| {
            let g = host.ctx.core_handles(key).get::<GuestGrant>(grant)?;
            host.drop_grant(g)?;
            host.ctx.core_handles(key).remove::<GuestGrant>(grant).map(drop)
        });
        r.map_or_else(neg, |()| 0)
    })?;
    linker.func_wrap(MODULE, "unpin", move |mut c: Caller<'_, T>, handle: i32, dirty: i32| {
        let r = handles(&mut c, get).and_then(|(mut host, key)| {
            let pin = host.ctx.core_handles(key).get::<GuestPin>(handle)?;
            host.release(pin, dirty != 0)?;
            host.ctx.core_handles(key).remove::<GuestPin>(handle).map(drop)
        });
        r.map_or_else(neg, |()| 0)
    })?;
    linker.func_wrap(MODULE, "pinned-start", move |mut c: Caller<'_, T>, handle: i32| {
        i64_or_errno(with_pin(&mut c, get, handle, |p| Ok(p.start())))
    })?;
    linker.func_wrap(MODULE, "pinned-len-pages", move |mut c: Caller<'_, T>, handle: i32| {
        i64_or_errno(with_pin(&mut c, get, handle, |p| Ok(p.len() as u64)))
    })?;
    linker.func_wrap(
        MODULE,
        "pinned-checksum",
        move |mut c: Caller<'_, T>, handle: i32, off: i32, len: i32, seed: i32| {
            i64_or_errno(with_pin(&mut c, get, handle, |p| {
                checksum(p, off as u32, len as u32, seed as u32).map(u64::from)
            }))
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

/// Runs `f` on the caller's own pin behind `handle`.
fn with_pin<T, R>(
    caller: &mut Caller<'_, T>,
    get: fn(&mut T) -> PinCtxView<'_>,
    handle: i32,
    f: impl FnOnce(&PinnedPages) -> Result<R, Errno>,
) -> Result<R, Errno> {
    let (host, key) = handles(caller, get)?;
    let pin = host.ctx.core_handles(key).get::<GuestPin>(handle)?;
    f(&host.pinned(&pin)?.pages)
}

/// Reads a UTF-8 string from the guest's memory, shared or not, bounds
/// checked by the `Mm`.
fn read_guest_string(mm: &Mm, ptr: i32, len: i32) -> Result<String, Errno> {
    let (ptr, len) = (ptr as u32, len as u32 as usize);
    if len > 4096 {
        return Err(Errno::Inval);
    }
    let mut buf = vec![0; len];
    mm.read(u64::from(ptr), &mut buf)?;
    String::from_utf8(buf).map_err(|_| Errno::Inval)
}
