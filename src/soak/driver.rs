//! The tenant driver: one task per pair of tenants runs a random schedule
//! of file transfers, TCP exchanges between the two, and faults, checking
//! every result against the ledger as it goes.

use super::faults::{self, Fault};
use super::ledger::{fnv1a32, pattern};
use super::tenant::{errno, errno_of, tight_quotas, Op, Tenant};
use super::Shared;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use wasmtime::Trap;

/// xorshift64*: the soak's only source of randomness, seeded per pair.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub(crate) fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
}

type Step = Result<(), String>;

/// Runs both futures at once on this task; both outputs.
async fn join2<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (ra, rb) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

/// Runs one pair of tenants until the soak stops, then retires them and
/// checks their files on disk.
pub(crate) async fn run_pair(sh: Arc<Shared>, pair: usize) {
    let mut rng = Rng::new(sh.config.seed ^ (pair as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut t = Vec::with_capacity(2);
    for id in [2 * pair, 2 * pair + 1] {
        match Tenant::new(&sh, id, rng.u32()) {
            Ok(tenant) => t.push(tenant),
            Err(e) => return sh.violations.add(format!("tenant {id}: its files: {e}")),
        }
    }
    for side in &mut t {
        if let Err(e) = side.start(&sh).await {
            return sh.violations.add(e);
        }
    }
    let mut conn = false;
    let c = &sh.config;
    while !sh.stop.load(Relaxed) {
        let r = rng.below(100) as u32;
        let step = if r < c.fault_percent {
            let side = rng.below(2) as usize;
            fault(&sh, &mut rng, &mut t, side, &mut conn).await
        } else if r < c.fault_percent + c.net_percent {
            exchange(&sh, &mut rng, &mut t, &mut conn).await
        } else {
            let side = rng.below(2) as usize;
            transfer(&sh, &mut rng, &mut t[side], None).await
        };
        if let Err(e) = step {
            sh.violations.add(e);
            // Start both over, so one failure does not cascade.
            conn = false;
            for side in &mut t {
                side.retire(&sh).await;
                if let Err(e) = side.start(&sh).await {
                    return sh.violations.add(e);
                }
            }
        }
    }
    for side in &mut t {
        side.retire(&sh).await;
        for f in &side.files {
            if let Err(e) = f.verify_on_disk(None) {
                sh.violations.add(format!("tenant {}: at the end: {e}", side.id));
            }
            if !f.unlinked {
                sh.files
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((f.path.clone(), f.bytes.len() as u64));
            }
        }
    }
}

/// A random range of a file: aligned to 4 KiB for a direct transfer.
fn range(sh: &Shared, rng: &mut Rng, direct: bool) -> (u64, u32) {
    let c = &sh.config;
    if direct {
        let off = rng.below(c.file_bytes / 4096) * 4096;
        let len = (1 + rng.below(u64::from(c.max_transfer / 4096))) * 4096;
        (off, len as u32)
    } else {
        (rng.below(c.file_bytes), 1 + rng.below(u64::from(c.max_transfer)) as u32)
    }
}

/// One random transfer on one of `t`'s files (a read of kind `read` if
/// given), checked against the ledger.
async fn transfer(sh: &Shared, rng: &mut Rng, t: &mut Tenant, read: Option<(usize, Op)>) -> Step {
    let (i, op) = read.unwrap_or_else(|| {
        (
            rng.below(t.files.len() as u64) as usize,
            Op::TRANSFERS[rng.below(8) as usize],
        )
    });
    let direct = t.files[i].direct && rng.below(2) == 0;
    let (off, len) = range(sh, rng, direct);
    let seed = rng.u32();
    let arg = i as u32 | u32::from(direct) << 8;
    let r = t
        .call(sh, op, arg, off, len, seed)
        .await
        .map_err(|e| format!("tenant {}: {} trapped: {e:?}", t.id, op.name()))?;
    if direct {
        sh.direct_transfers.fetch_add(1, Relaxed);
    }
    let what = || {
        format!(
            "tenant {}: {} of {len} at {off} on file {i}{}",
            t.id,
            op.name(),
            if direct { " (direct)" } else { "" }
        )
    };
    if r < 0 {
        return Err(format!("{} failed: {r}", what()));
    }
    let f = &mut t.files[i];
    if op.is_read() {
        let (n, h) = ((r >> 32) as usize, r as u32);
        let want = f.expect(off, len);
        if n != want.len() {
            return Err(format!(
                "{} returned {n} bytes; the file holds {} there",
                what(),
                want.len()
            ));
        }
        if fnv1a32(want) != h {
            return Err(format!("{}: the bytes read differ from the file's", what()));
        }
        sh.ops[op as usize].bytes.fetch_add(n as u64, Relaxed);
    } else {
        if r != i64::from(len) {
            return Err(format!("{} wrote {r} bytes", what()));
        }
        f.write(off, &pattern(seed, len as usize));
        sh.ops[op as usize].bytes.fetch_add(u64::from(len), Relaxed);
        if rng.below(u64::from(sh.config.check_write_every)) == 0 {
            f.verify_on_disk(Some((off, len as usize)))
                .map_err(|e| format!("{}: {e}", what()))?;
        }
    }
    Ok(())
}

/// Sends a random buffer from one tenant of the pair to the other over
/// their loopback connection (made first if needed), both calls at once.
async fn exchange(sh: &Shared, rng: &mut Rng, t: &mut [Tenant], conn: &mut bool) -> Step {
    let trap = |e: wasmtime::Error| format!("a TCP call trapped: {e:?}");
    if !*conn {
        let port = t[0].call(sh, Op::Listen, 0, 0, 0, 0).await.map_err(trap)?;
        if port <= 0 {
            return Err(format!("tenant {}: listen failed: {port}", t[0].id));
        }
        let r = t[1]
            .call(sh, Op::Connect, port as u32, 0, 5000, 0)
            .await
            .map_err(trap)?;
        if r != 0 {
            return Err(format!("tenant {}: connect to {port} failed: {r}", t[1].id));
        }
        let r = t[0].call(sh, Op::Accept, 5000, 0, 0, 0).await.map_err(trap)?;
        if r != 0 {
            return Err(format!("tenant {}: accept failed: {r}", t[0].id));
        }
        *conn = true;
    }
    let len = 1 + rng.below(u64::from(sh.config.max_transfer)) as u32;
    let seed = rng.u32();
    let (a, b) = t.split_at_mut(1);
    let (tx, rx) = if rng.below(2) == 0 {
        (&mut a[0], &mut b[0])
    } else {
        (&mut b[0], &mut a[0])
    };
    let (ids, rid) = (tx.id, rx.id);
    let (s, r) = join2(
        tx.call(sh, Op::Send, 0, 0, len, seed),
        rx.call(sh, Op::Recv, 0, 0, len, 0),
    )
    .await;
    let (s, r) = (s.map_err(trap)?, r.map_err(trap)?);
    if s != i64::from(len) {
        return Err(format!("tenant {ids}: sent {s} of {len} bytes"));
    }
    if r >> 32 != i64::from(len) || r as u32 != fnv1a32(&pattern(seed, len as usize)) {
        return Err(format!(
            "tenant {rid}: received {} of {len} bytes from tenant {ids}, or other bytes than sent",
            r >> 32
        ));
    }
    sh.ops[Op::Send as usize].bytes.fetch_add(u64::from(len), Relaxed);
    sh.ops[Op::Recv as usize].bytes.fetch_add(u64::from(len), Relaxed);
    Ok(())
}

/// Drops tenant `side`'s instance (checking it let go of everything) and
/// closes the other's end of their connection.
async fn kill(sh: &Shared, t: &mut [Tenant], side: usize, conn: &mut bool) -> Step {
    t[side].retire(sh).await;
    if std::mem::take(conn) {
        let other = &mut t[1 - side];
        let r = other
            .call(sh, Op::NetClose, 0, 0, 0, 0)
            .await
            .map_err(|e| format!("tenant {}: tcp close trapped: {e:?}", other.id))?;
        if r != 0 {
            return Err(format!("tenant {}: tcp close failed: {r}", other.id));
        }
    }
    Ok(())
}

/// The trap a guest call ended with, if it was one.
fn trap_of(r: &wasmtime::Result<i64>) -> Option<Trap> {
    r.as_ref().err().and_then(|e| e.downcast_ref::<Trap>().copied())
}

/// Injects one fault on tenant `side` and checks that it was survived.
async fn fault(sh: &Shared, rng: &mut Rng, t: &mut [Tenant], side: usize, conn: &mut bool) -> Step {
    let Some(f) = sh.pick_fault(rng, t[side].tight) else {
        return Ok(());
    };
    sh.faults.injected(f);
    let id = t[side].id;
    let file = rng.below(t[side].files.len() as u64) as u32;
    match f {
        Fault::TrapMidIo => {
            let r = t[side].call(sh, Op::TrapWithIo, file, 0, 0, 0).await;
            if trap_of(&r) != Some(Trap::UnreachableCodeReached) {
                return Err(format!("tenant {id}: trap with I/O in flight ended with {r:?}"));
            }
            kill(sh, t, side, conn).await?;
            t[side].start(sh).await?;
        }
        Fault::DeadlineDrop => {
            let call = t[side].call(sh, Op::Stall, file, 0, 0, 0);
            match tokio::time::timeout(sh.config.deadline, call).await {
                Err(_) => {}
                Ok(r) => return Err(format!("tenant {id}: the stall returned before its deadline: {r:?}")),
            }
            kill(sh, t, side, conn).await?;
            t[side].start(sh).await?;
        }
        Fault::EpochInterrupt => {
            let live = t[side].live.as_mut().expect("live");
            live.store.epoch_deadline_trap();
            live.store.set_epoch_deadline(2);
            let r = t[side].call(sh, Op::Spin, 0, 0, 0, 0).await;
            if trap_of(&r) != Some(Trap::Interrupt) {
                return Err(format!(
                    "tenant {id}: the spin ended with {r:?}, not an epoch interrupt"
                ));
            }
            kill(sh, t, side, conn).await?;
            t[side].start(sh).await?;
        }
        Fault::TruncateUnderRead | Fault::RemoveUnderRead => {
            race(sh, rng, &mut t[side], file as usize, f == Fault::RemoveUnderRead).await?;
        }
        Fault::Memlock => {
            let limit = sh.config.pool.memlock_limit_bytes;
            let over = (limit / 4096) as u32 + 16;
            let r = t[side].call(sh, Op::Longterm, over, 0, 0, 0).await;
            if !matches!(r, Ok(r) if errno_of(r) == Some(errno::NOMEM)) {
                return Err(format!(
                    "tenant {id}: a long-term pin of {over} pages (memlock limit {limit} bytes) gave {r:?}, not nomem"
                ));
            }
            let r = t[side].call(sh, Op::Longterm, 64, 0, 0, 0).await;
            if !matches!(r, Ok(64)) {
                return Err(format!(
                    "tenant {id}: after the memlock refusal, a 64-page long-term pin gave {r:?}"
                ));
            }
            let (_, _, longterm) = t[side].pins().usage();
            if longterm != 0 {
                return Err(format!("tenant {id}: {longterm} long-term bytes still charged"));
            }
            // The refused pin faulted in every page it asked for (runtime-mm
            // populates before it checks the memlock limit): start over, so
            // that the slot's reset gives them back.
            kill(sh, t, side, conn).await?;
            t[side].start(sh).await?;
        }
        Fault::PoolExhausted => {
            kill(sh, t, side, conn).await?;
            let pool = sh.creator.pool().expect("a pooled creator").clone();
            let held = faults::hog(&pool)?;
            let (hold, stop) = (sh.config.hog_hold, Arc::new(std::sync::atomic::AtomicBool::new(false)));
            let releaser = tokio::spawn({
                let (pool, stop) = (pool.clone(), stop.clone());
                async move {
                    let mut held = held;
                    let start = tokio::time::Instant::now();
                    // Keep every slot that comes free taken, until the hold
                    // is over.
                    while start.elapsed() < hold && !stop.load(Relaxed) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        match faults::hog(&pool) {
                            Ok(more) => held.extend(more),
                            Err(e) => {
                                faults::release(&pool, held);
                                return Err(e);
                            }
                        }
                    }
                    faults::release(&pool, held);
                    Ok(())
                }
            });
            let started = t[side].start(sh).await;
            stop.store(true, Relaxed);
            let released = releaser.await.map_err(|e| format!("the hog panicked: {e}"))?;
            sh.hog_done();
            released?;
            if started? == 0 {
                sh.hog_races.fetch_add(1, Relaxed);
            }
        }
        q => quota(sh, &mut t[side], q).await?,
    }
    sh.faults.survived(f);
    Ok(())
}

/// Truncates or removes file `i` while the tenant reads it: the bytes the
/// read reports must be the file's before the cut (truncation only
/// shortens), the next read must see the file as cut, and a removed file
/// stays readable through the tenant's descriptors until it closes them
/// (then it is recreated and opened again).
async fn race(sh: &Shared, rng: &mut Rng, t: &mut Tenant, i: usize, remove: bool) -> Step {
    let old_len = t.files[i].bytes.len() as u64;
    let new_len = if remove { old_len } else { rng.below(old_len + 1) };
    let path = t.files[i].path.clone();
    let delay = Duration::from_micros(rng.below(400));
    let cut = tokio::task::spawn_blocking(move || {
        std::thread::sleep(delay);
        if remove {
            std::fs::remove_file(&path)
        } else {
            std::fs::OpenOptions::new().write(true).open(&path)?.set_len(new_len)
        }
    });
    let op = Op::TRANSFERS[rng.below(4) as usize];
    let direct = t.files[i].direct && rng.below(2) == 0;
    let (off, len) = range(sh, rng, direct);
    let arg = i as u32 | u32::from(direct) << 8;
    let r = t.call(sh, op, arg, off, len, 0).await;
    cut.await
        .map_err(|e| format!("the cut panicked: {e}"))?
        .map_err(|e| format!("tenant {}: cutting file {i}: {e}", t.id))?;
    let what = format!(
        "tenant {}: {} of {len} at {off} on file {i} while it was {}",
        t.id,
        op.name(),
        if remove {
            "removed".to_string()
        } else {
            format!("truncated from {old_len} to {new_len}")
        }
    );
    let r = r.map_err(|e| format!("{what}: trapped: {e:?}"))?;
    if r < 0 {
        return Err(format!("{what}: failed: {r}"));
    }
    let (n, h) = ((r >> 32) as usize, r as u32);
    let before = t.files[i].expect(off, len).to_vec();
    // The cut happened whatever the read saw: the shadow follows it before
    // the checks, so that one violation does not make every later read of
    // the file one too.
    if remove {
        t.files[i].unlinked = true;
    } else {
        t.files[i].bytes.truncate(new_len as usize);
    }
    let least = (new_len.saturating_sub(off) as usize).min(before.len());
    if n > before.len() || n < least {
        return Err(format!(
            "{what}: returned {n} bytes; between {least} and {} were there",
            before.len()
        ));
    }
    // A read that returned bytes past the new end raced the cut, and POSIX
    // leaves what it saw there undefined: the kernel zeroes the cut part of
    // the last (possibly large) page before it drops it, while the read may
    // copy old pages it already holds. The guest returns one hash, so such
    // a read is checked against the old bytes and against the old bytes to
    // the new end followed by zeros, and otherwise counted, not failed:
    // its length is checked above, and the next read must see the cut file.
    let exact = fnv1a32(&before[..n]) == h;
    if !exact && (remove || n <= least) {
        return Err(format!("{what}: the bytes read are not the file's"));
    }
    if !exact {
        let mut zeroed = before[..least].to_vec();
        zeroed.resize(n, 0);
        if fnv1a32(&zeroed) != h {
            sh.cut_races.fetch_add(1, Relaxed);
        }
    }
    sh.ops[op as usize].bytes.fetch_add(n as u64, Relaxed);
    if !remove {
        t.files[i].verify_on_disk(None)?;
    }
    // The next read sees the file as it is now.
    let next = Op::TRANSFERS[rng.below(4) as usize];
    transfer(sh, rng, t, Some((i, next))).await?;
    if remove {
        let r = t
            .call(sh, Op::Close, i as u32, 0, 0, 0)
            .await
            .map_err(|e| format!("tenant {}: close trapped: {e:?}", t.id))?;
        if r != 0 {
            return Err(format!("tenant {}: close of file {i} failed: {r}", t.id));
        }
        let len = sh.config.file_bytes as usize;
        let seed = rng.u32();
        t.files[i].recreate(len, seed).map_err(|e| e.to_string())?;
        t.open(sh, i as u32).await?;
    }
    Ok(())
}

/// Takes objects of one kind until the tenant's tight quota refuses: the
/// count must be what the quota leaves, the errno the quota's, and
/// afterwards the tenant holds what it held before.
async fn quota(sh: &Shared, t: &mut Tenant, f: Fault) -> Step {
    let q = tight_quotas();
    let (pins, bytes, longterm) = t.pins().usage();
    let held = t.pins().held();
    let left_pins = q.max_pins - pins;
    let (op, count, want) = match f {
        Fault::QuotaPins => (Op::QuotaPins, left_pins, errno::AGAIN),
        Fault::QuotaPinnedBytes => {
            let by_bytes = ((q.max_pinned_bytes - bytes) / (256 << 10)) as u32;
            if by_bytes < left_pins {
                (Op::QuotaPinnedBytes, by_bytes, errno::NOMEM)
            } else {
                (Op::QuotaPinnedBytes, left_pins, errno::AGAIN)
            }
        }
        Fault::QuotaLongterm => {
            let by_bytes = ((q.max_longterm_bytes - longterm) / (64 << 10)) as u32;
            (Op::QuotaLongterm, by_bytes.min(left_pins), errno::NOMEM)
        }
        Fault::QuotaFiles => (Op::QuotaFiles, q.max_files - held.files, errno::MFILE),
        Fault::QuotaSockets => (Op::QuotaSockets, q.max_sockets - held.sockets, errno::MFILE),
        _ => (Op::QuotaTickets, q.max_tickets - held.tickets, errno::MFILE),
    };
    let r = t
        .call(sh, op, 4096, 0, 0, 0)
        .await
        .map_err(|e| format!("tenant {}: {} trapped: {e:?}", t.id, op.name()))?;
    let (n, e) = (r >> 8, (r & 0xff) as u32);
    if r < 0 || n != i64::from(count) || e != want + 1 {
        return Err(format!(
            "tenant {}: {}: took {n} then errno {} (raw {r}); the quota leaves {count}, then errno {want}",
            t.id,
            op.name(),
            e as i64 - 1
        ));
    }
    let (p2, b2, l2) = t.pins().usage();
    let held2 = t.pins().held();
    if (p2, b2, l2) != (pins, bytes, longterm) || held2 != held {
        return Err(format!(
            "tenant {}: {}: held {:?}/{held2:?} after, {:?}/{held:?} before",
            t.id,
            op.name(),
            (p2, b2, l2),
            (pins, bytes, longterm)
        ));
    }
    Ok(())
}
