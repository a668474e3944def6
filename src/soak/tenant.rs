//! One tenant: the `soak-tenant` guest in its own async store, its files
//! and their ledger, and the host side of each operation the guest exports.

use super::faults::is_pool_exhausted;
use super::ledger::FileShadow;
use super::Shared;
use host_api::{IoConfig, PinCtx, Quotas};
use runtime_mm::Mm;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::TypedFunc;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx};

/// A tenant store's data: WASI, the pin imports' context, one table.
pub type State = host_api::WasiPinHost;

/// Declares [`Op`] from one list: each variant with its doc and its name in
/// the report; numbered from 0 in order, as the guest's `kind`.
macro_rules! ops {
    ($($(#[$doc:meta])* $v:ident => $name:literal,)*) => {
        /// The guest's operations (its `op` export's `kind`; see
        /// `guests/wat-soak/soak_tenant.wat`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u32)]
        pub enum Op {
            $($(#[$doc])* $v,)*
        }

        impl Op {
            /// Every kind, by number.
            pub const ALL: &[Op] = &[$(Op::$v),*];

            /// Its name in the report.
            pub fn name(self) -> &'static str {
                match self {
                    $(Op::$v => $name,)*
                }
            }
        }
    };
}

ops! {
    /// Pin and unpin one page (resolves the guest's memory); the page size.
    Hello => "hello",
    /// Open file `arg` (registered; reopened for direct I/O where allowed).
    Open => "open",
    /// Unregister and drop everything `Open` made for file `arg`.
    Close => "close",
    /// `one-call-io.read-into`.
    ReadOneCall => "read one-call",
    /// `one-call-io.write-from`.
    WriteOneCall => "write one-call",
    /// `one-call-io.read-into-fixed` on the registered file.
    ReadFixed => "read registered",
    /// `one-call-io.write-from-fixed` on the registered file.
    WriteFixed => "write registered",
    /// `zero-copy-io.submit-read-at`, then `io-ticket.wait` (or subscribe).
    ReadTicket => "read ticket",
    /// `zero-copy-io.submit-write-at`, then wait (or subscribe).
    WriteTicket => "write ticket",
    /// `zero-copy-io.read-at-vectored` into three slices of one pin.
    ReadVectored => "read vectored",
    /// `zero-copy-io.write-at-vectored` from three slices of one pin.
    WriteVectored => "write vectored",
    /// A long-term pin of `arg` pages, released at once.
    Longterm => "long-term pin",
    /// One-page pins until `max_pins` refuses.
    QuotaPins => "quota pins",
    /// 256 KiB pins until `max_pinned_bytes` refuses.
    QuotaPinnedBytes => "quota pinned bytes",
    /// 64 KiB long-term pins until `max_longterm_bytes` refuses.
    QuotaLongterm => "quota long-term",
    /// `register-file` until `max_files` refuses.
    QuotaFiles => "quota files",
    /// Listeners until `max_sockets` refuses.
    QuotaSockets => "quota sockets",
    /// Ticketed reads until `max_tickets` refuses.
    QuotaTickets => "quota tickets",
    /// `tcp-listener.bind` on 127.0.0.1, any port: the port.
    Listen => "tcp listen",
    /// `tcp-listener.accept`.
    Accept => "tcp accept",
    /// `tcp-stream.connect` to 127.0.0.1:`arg`.
    Connect => "tcp connect",
    /// `tcp-stream.send` of a pattern until all is sent.
    Send => "tcp send",
    /// `tcp-stream.recv` until `len` bytes arrived.
    Recv => "tcp recv",
    /// Drop the connection and the listener.
    NetClose => "tcp close",
    /// Trap with reads in flight.
    TrapWithIo => "trap with I/O",
    /// Reads in flight, then a `recv` nobody answers.
    Stall => "stall",
    /// Spin until interrupted.
    Spin => "spin",
}

impl Op {
    /// The file transfers, reads first.
    pub const TRANSFERS: [Op; 8] = [
        Op::ReadOneCall,
        Op::ReadFixed,
        Op::ReadTicket,
        Op::ReadVectored,
        Op::WriteOneCall,
        Op::WriteFixed,
        Op::WriteTicket,
        Op::WriteVectored,
    ];

    /// Number of kinds.
    pub const COUNT: usize = Op::ALL.len();

    /// [`Op::ALL`], by value.
    pub fn all() -> impl Iterator<Item = Op> {
        Op::ALL.iter().copied()
    }

    /// Reads return `n << 32 | fnv`.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Op::ReadOneCall | Op::ReadFixed | Op::ReadTicket | Op::ReadVectored | Op::Recv
        )
    }
}

/// The errno index of a negative `op` result that came from a pin import.
pub fn errno_of(r: i64) -> Option<u32> {
    (-1000 < r && r < 0).then(|| (-1 - r) as u32)
}

/// `gup.errno` indices the soak expects.
pub mod errno {
    /// `inval`.
    pub const INVAL: u32 = 0;
    /// `nomem`.
    pub const NOMEM: u32 = 2;
    /// `again`.
    pub const AGAIN: u32 = 4;
    /// `opnotsupp`.
    pub const OPNOTSUPP: u32 = 5;
    /// `mfile`.
    pub const MFILE: u32 = 22;
}

/// The quotas of a tenant with tight quotas: small enough that the quota
/// faults reach each quickly, large enough for every normal operation.
pub fn tight_quotas() -> Quotas {
    Quotas {
        max_pins: 32,
        max_pinned_bytes: 2 << 20,
        max_longterm_bytes: 512 << 10,
        max_files: 8,
        max_sockets: 4,
        max_tickets: 6,
        ..Quotas::default()
    }
}

/// The quotas of the other tenants: the defaults, with long-term pins
/// limited by the memory's memlock limit rather than a quota (so the
/// memlock fault meets the limit, not the quota).
pub fn normal_quotas() -> Quotas {
    Quotas {
        max_longterm_bytes: 1 << 30,
        max_pinned_bytes: 1 << 30,
        ..Quotas::default()
    }
}

/// A live instance of the tenant guest.
pub struct Live {
    /// Its store.
    pub store: Store<State>,
    op: TypedFunc<(u32, u32, u64, u32, u32), (i64,)>,
    /// Its memory, as its first pin resolved it.
    pub mm: Option<Arc<Mm>>,
}

/// A tenant: its files (which outlive its instances) and its current
/// instance, if any.
pub struct Tenant {
    /// Its number.
    pub id: usize,
    /// Whether it runs with [`tight_quotas`].
    pub tight: bool,
    /// Its directory (its only preopen).
    pub dir: PathBuf,
    /// Its files and what they must hold.
    pub files: Vec<FileShadow>,
    /// The instance, while one is alive.
    pub live: Option<Live>,
}

impl Tenant {
    /// A tenant with fresh files in `root/t<id>`; no instance yet.
    pub fn new(shared: &Shared, id: usize, seed: u32) -> std::io::Result<Tenant> {
        let c = &shared.config;
        let dir = shared.root.join(format!("t{id}"));
        std::fs::create_dir_all(&dir)?;
        let files = (0..c.files_per_tenant)
            .map(|i| {
                let name = char::from(b'a' + i as u8).to_string();
                FileShadow::create(dir.join(name), c.file_bytes as usize, seed.wrapping_add(i))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Tenant {
            id,
            tight: c.tight_every > 0 && id % c.tight_every == c.tight_every - 1,
            dir,
            files,
            live: None,
        })
    }

    fn store(&self, shared: &Shared) -> Result<Store<State>, String> {
        let wasi = WasiCtx::builder()
            .preopened_dir(&self.dir, ".", FsPerms::ReadWrite)
            .map_err(|e| format!("tenant {}: preopen: {e}", self.id))?
            .build();
        let quotas = if self.tight { tight_quotas() } else { normal_quotas() };
        // Loopback only (and the wildcard of the implicit bind a connect
        // or listen makes).
        let loopback: host_api::SocketAddrCheck = Arc::new(|addr, how| {
            let implicit = matches!(how, SocketAddrUse::TcpBind) && addr.ip().is_unspecified() && addr.port() == 0;
            Box::pin(async move { addr.ip().is_loopback() || implicit })
        });
        let pins = PinCtx::new(quotas)
            .with_io(IoConfig {
                backend: shared.config.backend,
                ..IoConfig::default()
            })
            .socket_addr_check(loopback);
        let mut store = Store::new(&shared.engine, State::new(wasi, pins));
        // Long guest calls yield to the executor at each epoch tick.
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        store.set_epoch_deadline(1);
        Ok(store)
    }

    /// Instantiates the guest (retrying, with backoff, while the pool is
    /// exhausted: any other error fails), opens its files, and returns how
    /// many times the pool refused.
    pub async fn start(&mut self, shared: &Shared) -> Result<u64, String> {
        let mut refused = 0u64;
        let mut backoff = Duration::from_millis(1);
        let first = Instant::now();
        let (store, instance) = loop {
            let mut store = self.store(shared)?;
            let t0 = Instant::now();
            match shared.pre.instantiate_async(&mut store).await {
                Ok(i) => {
                    shared.note_instantiation(t0.elapsed());
                    break (store, i);
                }
                Err(e) if is_pool_exhausted(&e) => {
                    refused += 1;
                    shared.faults.refusals.fetch_add(1, Relaxed);
                    drop(store);
                    if first.elapsed() > Duration::from_secs(30) {
                        return Err(format!("tenant {}: the pool refused it for 30 s: {e:?}", self.id));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(format!("tenant {}: instantiation failed: {e:?}", self.id)),
            }
        };
        let mut store = store;
        let op = instance
            .get_typed_func::<(u32, u32, u64, u32, u32), (i64,)>(&mut store, "op")
            .map_err(|e| format!("tenant {}: no op export: {e:?}", self.id))?;
        self.live = Some(Live { store, op, mm: None });
        shared.live_tenants.fetch_add(1, Relaxed);
        // One pin resolves the memory the guest's canonical ABI uses.
        let page = self
            .call(shared, Op::Hello, 0, 0, 0, 0)
            .await
            .map_err(|e| format!("{e:?}"))?;
        if page != 4096 {
            return Err(format!("tenant {}: hello returned {page}", self.id));
        }
        let live = self.live.as_mut().expect("started");
        live.mm = live.store.data().pins.memory().cloned();
        if live.mm.is_none() {
            return Err(format!("tenant {}: its pin resolved no memory", self.id));
        }
        for i in 0..self.files.len() {
            if self.files[i].unlinked {
                let len = shared.config.file_bytes as usize;
                self.files[i]
                    .recreate(len, (self.id as u32) << 8 | i as u32)
                    .map_err(|e| e.to_string())?;
            }
            self.open(shared, i as u32).await?;
        }
        Ok(refused)
    }

    /// Has the guest open file `i` (registered, and reopened for direct
    /// I/O where the filesystem allows: a refusal must be `inval` or
    /// `opnotsupp`).
    pub async fn open(&mut self, shared: &Shared, i: u32) -> Result<(), String> {
        let r = self
            .call(shared, Op::Open, i, 0, 0, 0)
            .await
            .map_err(|e| format!("tenant {}: open {i} trapped: {e:?}", self.id))?;
        match r {
            1 => self.files[i as usize].direct = true,
            r if r > 0 && r & 0xff == 0 => {
                let e = (r >> 8) as u32 - 1;
                if e != errno::INVAL && e != errno::OPNOTSUPP {
                    return Err(format!("tenant {}: open-direct refused with errno {e}", self.id));
                }
                self.files[i as usize].direct = false;
            }
            r => return Err(format!("tenant {}: open {i} failed: {r}", self.id)),
        }
        Ok(())
    }

    /// Calls the guest's `op`, counting it.
    pub async fn call(
        &mut self,
        shared: &Shared,
        op: Op,
        arg: u32,
        offset: u64,
        len: u32,
        seed: u32,
    ) -> wasmtime::Result<i64> {
        let live = self.live.as_mut().expect("a live tenant");
        let (r,) = live
            .op
            .call_async(&mut live.store, (op as u32, arg, offset, len, seed))
            .await?;
        shared.ops[op as usize].done.fetch_add(1, Relaxed);
        Ok(r)
    }

    /// The pin context of the live instance.
    pub fn pins(&self) -> &PinCtx {
        &self.live.as_ref().expect("a live tenant").store.data().pins
    }

    /// Drops the instance's store and checks that it let go of
    /// everything: within `shutdown_wait` (plus slack) no reference to its
    /// memory is left but ours, no pin, get, long-term pin or locked byte
    /// remains on it. Dropping ours then gives the slot back to the pool.
    pub async fn retire(&mut self, shared: &Shared) {
        let Some(live) = self.live.take() else {
            return;
        };
        let mm = live.mm.clone();
        drop(live);
        shared.live_tenants.fetch_sub(1, Relaxed);
        let Some(mm) = mm else { return };
        let start = Instant::now();
        while Arc::strong_count(&mm) > 1 {
            if start.elapsed() > Duration::from_secs(5) {
                shared.violations.add(format!(
                    "tenant {}: its memory still has {} other references 5 s after its store was dropped                      (slot held)",
                    self.id,
                    Arc::strong_count(&mm) - 1
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let s = mm.stats();
        if s.pins_outstanding() != 0 || s.gets_outstanding() != 0 || s.longterm_pinned_pages != 0 || s.locked_bytes != 0
        {
            shared.violations.add(format!(
                "tenant {}: its memory kept pins after its store went: {s:?}",
                self.id
            ));
        }
        shared.note_page_tables(mm.page_table_bytes());
    }
}
