//! The `gup` imports for component guests: the generated `Host` traits
//! implemented on [`PinCtxView`], and their registration (`add_gup`).

use crate::bindings::wasm_pin::mm::gup::{
    Errno, GupFlags, Host, HostMemoryGrant, HostPinnedPages, HostPinnedVec, MmStats, PinRange,
};
use crate::caller::{Addr, Called};
use crate::pins::{checksum, PinKind};
use crate::view::PinCtxView;
use crate::{GuestGrant, GuestPin, GuestPinVec};
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime::Result;
use wasmtime::StoreContextMut;

type PinResult = Result<std::result::Result<Resource<GuestPin>, Errno>>;
type VecResult = Result<std::result::Result<Resource<GuestPinVec>, Errno>>;

impl PinCtxView<'_> {
    fn pin_own(&mut self, kind: PinKind, start: u64, nr_pages: u32, flags: GupFlags) -> PinResult {
        let r = self
            .own_mm()
            .and_then(|mm| self.pin_pages(&mm, kind, start, nr_pages, flags.into()));
        Ok(r.map_err(Errno::from))
    }

    fn pin_remote(
        &mut self,
        grant: &Resource<GuestGrant>,
        kind: PinKind,
        start: u64,
        nr: u32,
        flags: GupFlags,
    ) -> PinResult {
        let r = self
            .granted(grant)
            .and_then(|mm| self.pin_pages(&mm, kind, start, nr, flags.into()));
        Ok(r.map_err(Errno::from))
    }
}

/// A bad handle traps: the canonical ABI already refuses foreign and dead
/// handles, so reaching this means host state and guest disagree.
fn trap(e: runtime_mm::Errno) -> wasmtime::Error {
    wasmtime::Error::msg(format!("wasm-pin: bad resource handle ({e})"))
}

impl HostPinnedPages for PinCtxView<'_> {
    fn start(&mut self, pages: Resource<GuestPin>) -> Result<u64> {
        Ok(self.pinned(&pages).map_err(trap)?.pages.start())
    }

    fn len_pages(&mut self, pages: Resource<GuestPin>) -> Result<u32> {
        Ok(self.pinned(&pages).map_err(trap)?.pages.len() as u32)
    }

    fn checksum(
        &mut self,
        pages: Resource<GuestPin>,
        offset: u32,
        len: u32,
        seed: u32,
    ) -> Result<std::result::Result<u32, Errno>> {
        let pin = self.pinned(&pages).map_err(trap)?;
        Ok(checksum(&pin.pages, offset, len, seed).map_err(Errno::from))
    }

    fn unpin(&mut self, pages: Resource<GuestPin>, dirty: bool) -> Result<()> {
        self.release(pages, dirty).map_err(trap)
    }

    fn drop(&mut self, pages: Resource<GuestPin>) -> Result<()> {
        self.release(pages, false).map_err(trap)
    }
}

impl HostPinnedVec for PinCtxView<'_> {
    fn count(&mut self, pins: Resource<GuestPinVec>) -> Result<u32> {
        Ok(self.pinned_vec(&pins).map_err(trap)?.pins.len() as u32)
    }

    fn range(&mut self, pins: Resource<GuestPinVec>, i: u32) -> Result<Option<PinRange>> {
        let v = self.pinned_vec(&pins).map_err(trap)?;
        Ok(v.pins.get(i as usize).map(|p| PinRange {
            start: p.start(),
            nr_pages: p.len() as u32,
        }))
    }

    fn unpin_all(&mut self, pins: Resource<GuestPinVec>, dirty: bool) -> Result<()> {
        self.release_vec(pins, dirty).map_err(trap)
    }

    fn drop(&mut self, pins: Resource<GuestPinVec>) -> Result<()> {
        self.release_vec(pins, false).map_err(trap)
    }
}

impl HostMemoryGrant for PinCtxView<'_> {
    fn len(&mut self, grant: Resource<GuestGrant>) -> Result<u64> {
        Ok(self.granted(&grant).map_err(trap)?.len())
    }

    fn drop(&mut self, grant: Resource<GuestGrant>) -> Result<()> {
        self.drop_grant(grant).map_err(trap)
    }
}

impl Host for PinCtxView<'_> {
    // The four local pins are registered with the caller's memory (see
    // `add_gup`); these trait methods serve callers that reach `MmHost`
    // directly (tests, embedders calling the host), on the attached memory.
    fn pin_user_pages(&mut self, start: u64, nr_pages: u32, flags: GupFlags) -> PinResult {
        self.pin_own(PinKind::User, start, nr_pages, flags)
    }

    fn pin_user_pages_fast(&mut self, start: u64, nr_pages: u32, flags: GupFlags) -> PinResult {
        self.pin_own(PinKind::UserFast, start, nr_pages, flags)
    }

    fn pin_longterm_pages(&mut self, start: u64, nr_pages: u32, flags: GupFlags) -> PinResult {
        self.pin_own(PinKind::Longterm, start, nr_pages, flags)
    }

    fn pin_longterm_pages_fast(&mut self, start: u64, nr_pages: u32, flags: GupFlags) -> PinResult {
        self.pin_own(PinKind::LongtermFast, start, nr_pages, flags)
    }

    fn open_grant(&mut self, name: String) -> Result<std::result::Result<Resource<GuestGrant>, Errno>> {
        Ok(PinCtxView::open_grant(self, &name).map_err(Errno::from))
    }

    fn pin_user_pages_remote(
        &mut self,
        grant: Resource<GuestGrant>,
        start: u64,
        nr: u32,
        flags: GupFlags,
    ) -> PinResult {
        self.pin_remote(&grant, PinKind::UserRemote, start, nr, flags)
    }

    fn pin_longterm_pages_remote(
        &mut self,
        grant: Resource<GuestGrant>,
        start: u64,
        nr: u32,
        flags: GupFlags,
    ) -> PinResult {
        self.pin_remote(&grant, PinKind::LongtermRemote, start, nr, flags)
    }

    fn page_maybe_dma_pinned(&mut self, addr: u64) -> Result<bool> {
        Ok(self.ctx.memory().is_some_and(|mm| mm.page_maybe_dma_pinned(addr)))
    }

    fn pin_user_pages_fast_batch(
        &mut self,
        ranges: Vec<PinRange>,
        flags: GupFlags,
    ) -> Result<Vec<std::result::Result<Resource<GuestPin>, Errno>>> {
        ranges
            .into_iter()
            .map(|r| self.pin_own(PinKind::UserFast, r.start, r.nr_pages, flags))
            .collect()
    }

    fn pin_user_pages_fast_vec(&mut self, ranges: Vec<PinRange>, flags: GupFlags) -> VecResult {
        let r = self
            .own_mm()
            .and_then(|mm| self.pin_vec(&mm, ranges.into_iter().map(|r| (r.start, r.nr_pages)), flags.into()));
        Ok(r.map_err(Errno::from))
    }

    fn unpin_batch(&mut self, pins: Vec<Resource<GuestPin>>, dirty: bool) -> Result<()> {
        pins.into_iter()
            .try_for_each(|p| HostPinnedPages::unpin(self, p, dirty))
    }

    fn page_size(&mut self) -> Result<u32> {
        Ok(region_page_size())
    }

    fn stats(&mut self) -> Result<MmStats> {
        Ok(self.ctx.memory().map(|mm| mm.stats()).unwrap_or_default().into())
    }
}

impl PinCtxView<'_> {
    /// Local pins of several ranges, as one `pinned-vec`, on the calling
    /// instance's own memory (every range's `Addr` carries it).
    fn pin_caller_vec(&mut self, ranges: Vec<RangeArg>, flags: GupFlags) -> VecResult {
        let r = self
            .caller_memory(ranges.first().map(|r| &r.start))
            .and_then(|mm| self.pin_vec(&mm, ranges.iter().map(|r| (r.start.value, r.nr_pages)), flags.into()));
        Ok(r.map_err(Errno::from))
    }

    /// A local pin on the calling instance's own memory, found per call.
    fn pin_caller(&mut self, kind: PinKind, start: Addr, nr: u32, flags: GupFlags) -> PinResult {
        let r = self
            .caller_memory(Some(&start))
            .and_then(|mm| self.pin_pages(&mm, kind, start.value, nr, flags.into()));
        Ok(r.map_err(Errno::from))
    }
}

/// A `pin-range` as the batched pin lifts it: `start` with its caller's
/// memory (see [`Addr`]).
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lift)]
#[allow(dead_code, reason = "built by the derived `Lift` when a guest calls")]
#[component(record)]
struct RangeArg {
    #[component(name = "start")]
    start: Addr,
    #[component(name = "nr-pages")]
    nr_pages: u32,
}

/// Registers `wasm-pin:mm/gup` by hand: the generated registration would
/// lift `start` as a plain `u64`, and the local pins need the caller's
/// memory with it ([`Addr`]). Everything else calls the generated traits.
pub(crate) fn add_gup<T: 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> PinCtxView<'_>) -> Result<()> {
    let mut inst = linker.instance("wasm-pin:mm/gup@0.1.0")?;
    inst.resource("pinned-pages", ResourceType::host::<GuestPin>(), move |mut s, rep| {
        HostPinnedPages::drop(&mut get(s.data_mut()), Resource::new_own(rep))
    })?;
    inst.resource("pinned-vec", ResourceType::host::<GuestPinVec>(), move |mut s, rep| {
        HostPinnedVec::drop(&mut get(s.data_mut()), Resource::new_own(rep))
    })?;
    inst.resource("memory-grant", ResourceType::host::<GuestGrant>(), move |mut s, rep| {
        HostMemoryGrant::drop(&mut get(s.data_mut()), Resource::new_own(rep))
    })?;
    inst.func_wrap(
        "[method]pinned-pages.start",
        move |mut s: StoreContextMut<'_, T>, (p,): (Resource<GuestPin>,)| Ok((get(s.data_mut()).start(p)?,)),
    )?;
    inst.func_wrap(
        "[method]pinned-pages.len-pages",
        move |mut s: StoreContextMut<'_, T>, (p,): (Resource<GuestPin>,)| Ok((get(s.data_mut()).len_pages(p)?,)),
    )?;
    inst.func_wrap(
        "[method]pinned-pages.checksum",
        move |mut s: StoreContextMut<'_, T>, (p, off, len, seed): (Resource<GuestPin>, u32, u32, u32)| {
            Ok((get(s.data_mut()).checksum(p, off, len, seed)?,))
        },
    )?;
    inst.func_wrap(
        "[static]pinned-pages.unpin",
        move |mut s: StoreContextMut<'_, T>, (p, dirty): (Resource<GuestPin>, bool)| get(s.data_mut()).unpin(p, dirty),
    )?;
    inst.func_wrap(
        "[method]memory-grant.len",
        move |mut s: StoreContextMut<'_, T>, (g,): (Resource<GuestGrant>,)| {
            Ok((HostMemoryGrant::len(&mut get(s.data_mut()), g)?,))
        },
    )?;
    for (name, kind) in [
        ("pin-user-pages", PinKind::User),
        ("pin-user-pages-fast", PinKind::UserFast),
        ("pin-longterm-pages", PinKind::Longterm),
        ("pin-longterm-pages-fast", PinKind::LongtermFast),
    ] {
        inst.func_wrap(
            name,
            move |mut s: StoreContextMut<'_, T>, (start, nr, flags): (Addr, u32, GupFlags)| {
                Ok((get(s.data_mut()).pin_caller(kind, start, nr, flags)?,))
            },
        )?;
    }
    inst.func_wrap(
        "pin-user-pages-fast-batch",
        move |mut s: StoreContextMut<'_, T>, (ranges, flags): (Vec<RangeArg>, GupFlags)| {
            let mut v = get(s.data_mut());
            let pins = ranges
                .into_iter()
                .map(|r| v.pin_caller(PinKind::UserFast, r.start, r.nr_pages, flags))
                .collect::<Result<Vec<_>>>()?;
            Ok((pins,))
        },
    )?;
    inst.func_wrap(
        "pin-user-pages-fast-vec",
        move |mut s: StoreContextMut<'_, T>, (ranges, flags): (Vec<RangeArg>, GupFlags)| {
            Ok((get(s.data_mut()).pin_caller_vec(ranges, flags)?,))
        },
    )?;
    inst.func_wrap(
        "[method]pinned-vec.count",
        move |mut s: StoreContextMut<'_, T>, (p,): (Resource<GuestPinVec>,)| Ok((get(s.data_mut()).count(p)?,)),
    )?;
    inst.func_wrap(
        "[method]pinned-vec.range",
        move |mut s: StoreContextMut<'_, T>, (p, i): (Resource<GuestPinVec>, u32)| {
            Ok((get(s.data_mut()).range(p, i)?,))
        },
    )?;
    inst.func_wrap(
        "[static]pinned-vec.unpin-all",
        move |mut s: StoreContextMut<'_, T>, (p, dirty): (Resource<GuestPinVec>, bool)| {
            get(s.data_mut()).unpin_all(p, dirty)
        },
    )?;
    inst.func_wrap(
        "unpin-batch",
        move |mut s: StoreContextMut<'_, T>, (pins, dirty): (Vec<Resource<GuestPin>>, bool)| {
            let mut v = get(s.data_mut());
            pins.into_iter().try_for_each(|p| v.unpin(p, dirty))
        },
    )?;
    inst.func_wrap(
        "open-grant",
        move |mut s: StoreContextMut<'_, T>, (name,): (String,)| Ok((Host::open_grant(&mut get(s.data_mut()), name)?,)),
    )?;
    for (name, kind) in [
        ("pin-user-pages-remote", PinKind::UserRemote),
        ("pin-longterm-pages-remote", PinKind::LongtermRemote),
    ] {
        inst.func_wrap(
            name,
            move |mut s: StoreContextMut<'_, T>, (g, start, nr, flags): (Resource<GuestGrant>, u64, u32, GupFlags)| {
                Ok((get(s.data_mut()).pin_remote(&g, kind, start, nr, flags)?,))
            },
        )?;
    }
    // These two carry no address: the lift of their (whole) parameter list
    // names the calling instance, and they answer for its own memory.
    inst.func_wrap(
        "page-maybe-dma-pinned",
        move |mut s: StoreContextMut<'_, T>, call: Called<(u64,)>| {
            let v = get(s.data_mut());
            let mm = v.ctx.own_memory_of(&call);
            Ok((mm.is_some_and(|mm| mm.page_maybe_dma_pinned(call.value.0)),))
        },
    )?;
    inst.func_wrap("page-size", move |_: StoreContextMut<'_, T>, (): ()| {
        Ok((region_page_size(),))
    })?;
    inst.func_wrap("stats", move |mut s: StoreContextMut<'_, T>, call: Called<()>| {
        let v = get(s.data_mut());
        let mm = v.ctx.own_memory_of(&call);
        Ok((MmStats::from(mm.map(|mm| mm.stats()).unwrap_or_default()),))
    })?;
    Ok(())
}

pub(crate) fn region_page_size() -> u32 {
    // Every Mm pins at host-page granularity.
    runtime_mm::Mm::host_page_size() as u32
}
