//! Direct I/O (`O_DIRECT`, the seed's Case 1): a WASI file reopened so that
//! transfers go between the device and the pinned guest pages with no
//! page-cache copy.
//!
//! The reopen goes through the descriptor's own open file
//! (`/proc/self/fd/N`, the same inode) with the same access mode, never more,
//! so the descriptor's and its preopen's permissions carry over. The new
//! descriptor is WASI's own type, in the same table: every WASI call and
//! every `zero-copy-io` call works on it.
//!
//! The kernel moves direct transfers in whole logical blocks; a misaligned
//! one may fail with `EINVAL` or, on some filesystems, fall back to buffered
//! I/O. So alignment is checked before the syscall, for every transfer on an
//! `O_DIRECT` file: file offset, length and buffer address must be multiples
//! of [`ALIGN`] (`inval` otherwise), never a short or corrupted transfer.
//! Guest buffers are pins, so their base is page aligned; the buffer offset
//! is what the check sees.

use runtime_mm::Errno;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Weak};
use wasmtime_wasi::filesystem::{Descriptor, File as WasiFile};
use wasmtime_wasi::OpenMode;

/// The alignment of direct transfers: the host page, a multiple of every
/// logical block size Linux filesystems use.
pub const ALIGN: u32 = 4096;

/// `inval` unless a direct transfer of `len` bytes at file offset `at` into
/// (or from) `ptr` is block aligned.
pub(crate) fn check_aligned(ptr: *const u8, len: u32, at: u64) -> Result<(), Errno> {
    let a = u64::from(ALIGN);
    if ![ptr as u64, u64::from(len), at].iter().all(|v| v.is_multiple_of(a)) {
        return Err(Errno::Inval);
    }
    Ok(())
}

/// Reopens the file behind `d` with `O_DIRECT`, same access, same
/// permissions. `isdir` for a directory; `opnotsupp` for anything but a
/// regular file, and where the filesystem refuses direct I/O (`EINVAL` from
/// `open`: tmpfs before Linux 6.6, some FUSE and overlay setups).
pub(crate) fn reopen(d: &Descriptor) -> Result<Descriptor, Errno> {
    let Descriptor::File(f) = d else {
        return Err(Errno::IsDir);
    };
    // Only regular files: reopening a FIFO through /proc would block the
    // host until a writer came, and devices or sockets have no direct I/O.
    if !f.file.metadata().map_err(|e| Errno::from_io(&e))?.is_file() {
        return Err(Errno::OpNotSupp);
    }
    let access = match (
        f.open_mode.contains(OpenMode::READ),
        f.open_mode.contains(OpenMode::WRITE),
    ) {
        (true, true) => libc::O_RDWR,
        (false, true) => libc::O_WRONLY,
        _ => libc::O_RDONLY,
    };
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", f.file.as_raw_fd())).expect("no NUL in a number");
    // SAFETY: a NUL-terminated path; the returned fd, if any, is owned below.
    let fd = unsafe { libc::open(path.as_ptr(), access | libc::O_DIRECT | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EINVAL) => Errno::OpNotSupp,
            _ => Errno::from_io(&e),
        });
    }
    // SAFETY: `fd` was just opened and is owned by no one else.
    let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    Ok(Descriptor::File(WasiFile::new(file, f.perms, f.open_mode, false)))
}

/// The files a guest opened through wasm-pin (direct reopens), counted
/// against its file quota while any reference to them lives: the guest's
/// descriptor (dropped through WASI, which wasm-pin does not see) or a
/// transfer still in flight.
#[derive(Debug, Default)]
pub(crate) struct OwnFiles(Vec<Weak<File>>);

impl OwnFiles {
    pub(crate) fn live(&self) -> u32 {
        self.0.iter().filter(|w| w.strong_count() > 0).count() as u32
    }

    /// Whether `file` is one of them, i.e. was opened with `O_DIRECT` (the
    /// only files a guest can open so; WASI's `open-at` has no such flag).
    /// No syscall: identity of the open file, which a `Weak` keeps unique
    /// for as long as it is listed.
    pub(crate) fn is_direct(&self, file: &Arc<File>) -> bool {
        self.0.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(file)))
    }

    pub(crate) fn add(&mut self, d: &Descriptor) {
        if let Descriptor::File(f) = d {
            // Forget the closed ones first, so the list stays as long as
            // the quota at most.
            self.0.retain(|w| w.strong_count() > 0);
            self.0.push(Arc::downgrade(&f.file));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi::FsPerms;

    #[test]
    fn alignment_covers_address_length_and_offset() {
        let a = ALIGN as usize as *const u8;
        assert_eq!(check_aligned(a, ALIGN, 0), Ok(()));
        assert_eq!(check_aligned(a, 4 * ALIGN, 8 * u64::from(ALIGN)), Ok(()));
        assert_eq!(check_aligned(a.wrapping_add(512), ALIGN, 0), Err(Errno::Inval));
        assert_eq!(check_aligned(a, ALIGN + 512, 0), Err(Errno::Inval));
        assert_eq!(check_aligned(a, ALIGN, 512), Err(Errno::Inval));
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("host-api-direct-{}-{name}", std::process::id()));
        std::fs::write(&p, vec![7u8; 8192]).unwrap();
        p
    }

    fn descriptor(file: File, mode: OpenMode) -> Descriptor {
        Descriptor::File(WasiFile::new(file, FsPerms::ReadWrite, mode, false))
    }

    /// The reopen's access mode, and whether it has `O_DIRECT`.
    fn flags(d: &Descriptor) -> (i32, bool) {
        let Descriptor::File(f) = d else { panic!("a file") };
        // SAFETY: F_GETFL on a descriptor `f` owns.
        let fl = unsafe { libc::fcntl(f.file.as_raw_fd(), libc::F_GETFL) };
        assert!(fl >= 0);
        (fl & libc::O_ACCMODE, fl & libc::O_DIRECT != 0)
    }

    /// A reopen has exactly the original's access, plus `O_DIRECT`; the
    /// list of own files counts it while it lives and knows it by identity.
    /// Whether the filesystem at `p` takes `O_DIRECT` (tmpfs before Linux
    /// 6.6 does not): where it does not, the reopen tests have nothing to
    /// check.
    fn direct_ok(p: &std::path::Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(p)
            .is_ok()
    }

    #[test]
    fn a_reopen_keeps_the_access_and_adds_o_direct() {
        let p = scratch("access");
        if !direct_ok(&p) {
            return;
        }
        let ro = File::open(&p).unwrap();
        let wo = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let rw = std::fs::OpenOptions::new().read(true).write(true).open(&p).unwrap();
        let mut own = OwnFiles::default();
        let mut kept = Vec::new();
        for (file, mode, acc) in [
            (ro, OpenMode::READ, libc::O_RDONLY),
            (wo, OpenMode::WRITE, libc::O_WRONLY),
            (rw, OpenMode::READ | OpenMode::WRITE, libc::O_RDWR),
        ] {
            let Ok(d) = reopen(&descriptor(file, mode)) else {
                panic!("{mode:?}: refused where O_DIRECT works");
            };
            assert_eq!(flags(&d), (acc, true), "{mode:?}");
            let Descriptor::File(f) = &d else { unreachable!() };
            assert!(!own.is_direct(&f.file));
            own.add(&d);
            assert!(own.is_direct(&f.file));
            kept.push(d);
        }
        assert_eq!(own.live(), 3);
        kept.pop();
        assert_eq!(own.live(), 2, "a dropped reopen stops counting");
        let other = Arc::new(File::open(&p).unwrap());
        assert!(!own.is_direct(&other));
        // Adding forgets the closed ones first.
        let again = reopen(&descriptor(File::open(&p).unwrap(), OpenMode::READ)).unwrap();
        own.add(&again);
        assert_eq!((own.0.len(), own.live()), (3, 3));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn only_regular_files_are_reopened() {
        let dir = File::open(std::env::temp_dir()).unwrap();
        let d = Descriptor::Dir(wasmtime_wasi::filesystem::Dir::new(
            dir,
            FsPerms::ReadWrite,
            OpenMode::READ,
            false,
        ));
        assert_eq!(reopen(&d).err(), Some(Errno::IsDir));
        let null = File::open("/dev/null").unwrap();
        assert_eq!(reopen(&descriptor(null, OpenMode::READ)).err(), Some(Errno::OpNotSupp));
        // A regular file of a filesystem that refuses O_DIRECT (procfs:
        // `EINVAL` from open): opnotsupp.
        let proc = File::open("/proc/self/status").unwrap();
        assert_eq!(reopen(&descriptor(proc, OpenMode::READ)).err(), Some(Errno::OpNotSupp));
    }

    /// A reopen that gets descriptor 0 (a host without stdin) works: only a
    /// negative `open` is an error. In a child process, which may close its
    /// own stdin.
    #[test]
    fn a_reopen_may_get_descriptor_0() {
        const NAME: &str = "io::direct::tests::a_reopen_may_get_descriptor_0";
        if std::env::var_os("HOST_API_FD0_CHILD").is_some() {
            let p = scratch("fd0");
            let f = File::open(&p).unwrap();
            if !direct_ok(&p) {
                return;
            }
            // SAFETY: this child runs this one test on one thread; nothing
            // else in it uses descriptor 0.
            unsafe { libc::close(0) };
            let Ok(Descriptor::File(d)) = reopen(&descriptor(f, OpenMode::READ)) else {
                panic!("the reopen failed");
            };
            assert_eq!(d.file.as_raw_fd(), 0);
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--test-threads=1"])
            .env("HOST_API_FD0_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("1 passed"), "{stdout}");
    }
}
