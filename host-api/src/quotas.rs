//! Per-guest quotas: how many objects of each kind, and how many bytes, a
//! guest may hold at once.

/// Per-guest limits set by the embedder, checked before anything is created,
/// so a guest over a quota gets an errno and the host is not touched.
///
/// - pins: too many handles → `again` (retry after unpinning), too many bytes
///   → `nomem`; nothing is pinned;
/// - files, sockets, grants, I/O tickets: one more than the quota → `mfile`,
///   before any descriptor is created (so one guest cannot use up the host
///   process's descriptors and starve the others).
///
/// Build with `..Default::default()` to keep the other limits:
///
/// ```
/// let q = host_api::Quotas { max_files: 8, ..Default::default() };
/// assert_eq!(q.max_sockets, host_api::Quotas::default().max_sockets);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Most `pinned-pages` handles outstanding at once.
    pub max_pins: u32,
    /// Most bytes pinned at once (all pins, long-term included).
    pub max_pinned_bytes: u64,
    /// Most bytes pinned long-term at once.
    pub max_longterm_bytes: u64,
    /// Most files open at once through wasm-pin's own imports (`open-direct`
    /// reopens; files opened with WASI's `open-at` are WASI's) plus
    /// registered-file slots (`register-file`). A reopened file counts
    /// until its descriptor is dropped and no transfer or slot uses it; a
    /// slot until it is unregistered (so a registered reopen counts twice).
    pub max_files: u32,
    /// Most sockets (listeners and streams) open at once.
    pub max_sockets: u32,
    /// Most `memory-grant` handles open at once.
    pub max_grants: u32,
    /// Most `io-ticket`s alive at once (in flight or completed but not yet
    /// dropped).
    pub max_tickets: u32,
}

impl Default for Quotas {
    /// 1024 pin handles, 256 MiB pinned, 64 MiB of it long-term; 256 files,
    /// 64 sockets, 64 grants, 1024 tickets.
    fn default() -> Self {
        Quotas {
            max_pins: 1024,
            max_pinned_bytes: 256 << 20,
            max_longterm_bytes: 64 << 20,
            max_files: 256,
            max_sockets: 64,
            max_grants: 64,
            max_tickets: 1024,
        }
    }
}

/// The kinds of host object a guest can hold, each under its own quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Socket,
    Grant,
    Ticket,
}

/// How many objects of each kind a guest holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Objects {
    /// Files the guest opened through wasm-pin (direct-I/O reopens) and
    /// files it registered (`register-file`).
    pub files: u32,
    /// Open sockets (listeners and streams).
    pub sockets: u32,
    /// Open memory grants.
    pub grants: u32,
    /// Live I/O tickets.
    pub tickets: u32,
}

impl Objects {
    pub(crate) fn get(&self, kind: Kind) -> u32 {
        match kind {
            Kind::File => self.files,
            Kind::Socket => self.sockets,
            Kind::Grant => self.grants,
            Kind::Ticket => self.tickets,
        }
    }

    pub(crate) fn count(&mut self, kind: Kind) -> &mut u32 {
        match kind {
            Kind::File => &mut self.files,
            Kind::Socket => &mut self.sockets,
            Kind::Grant => &mut self.grants,
            Kind::Ticket => &mut self.tickets,
        }
    }
}

impl Quotas {
    pub(crate) fn max(&self, kind: Kind) -> u32 {
        match kind {
            Kind::File => self.max_files,
            Kind::Socket => self.max_sockets,
            Kind::Grant => self.max_grants,
            Kind::Ticket => self.max_tickets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [Kind; 4] = [Kind::File, Kind::Socket, Kind::Grant, Kind::Ticket];

    /// Each kind reads and counts its own field, and its own quota.
    #[test]
    fn each_kind_has_its_own_count_and_quota() {
        let mut o = Objects::default();
        for (i, k) in KINDS.into_iter().enumerate() {
            *o.count(k) += 10 + i as u32;
        }
        assert_eq!(
            o,
            Objects {
                files: 10,
                sockets: 11,
                grants: 12,
                tickets: 13
            }
        );
        for (i, k) in KINDS.into_iter().enumerate() {
            assert_eq!(o.get(k), 10 + i as u32, "{k:?}");
        }
        let q = Quotas {
            max_files: 3,
            max_sockets: 4,
            max_grants: 5,
            max_tickets: 6,
            ..Quotas::default()
        };
        for (i, k) in KINDS.into_iter().enumerate() {
            assert_eq!(q.max(k), 3 + i as u32, "{k:?}");
        }
    }
}
