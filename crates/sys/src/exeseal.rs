//! Sealed in-memory copies of executables: the CVE-2019-5736 defence.
//!
//! A process whose image is the installed binary and that sits in (or is visible from) a
//! container's pid namespace hands that file to anyone there who may open `/proc/PID/exe`
//! (CAP_SYS_PTRACE over it suffices; non-dumpability does not stop that). A copy in a memfd
//! sealed against writes, size changes and further seals can be opened, but never changed, and
//! it is not the installed file. Policy (which processes, where the real path goes) is the
//! caller's.

use crate::{errno, own_fd, Error, Result};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// The seals a copy carries: no write, no shrink, no grow, no change of seals.
const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// True when `fd` is a memfd carrying every seal of a sealed copy.
pub fn is_sealed(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: F_GET_SEALS takes no argument and only reads the file's seals; EINVAL for a file
    // that is not a memfd.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

/// Copies the regular file `src` (from its start) into a new executable memfd named `name`
/// (close-on-exec) and seals it. The copy shares nothing with `src`: a process running it
/// shows `/memfd:NAME (deleted)` as its executable, with another device and inode.
pub fn sealed_copy(src: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd> {
    let size = nix::sys::stat::fstat(src).map_err(|source| Error::Sys { call: "fstat", source })?.st_size;
    let mut flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | libc::MFD_EXEC;
    // SAFETY: `name` is a NUL-terminated string that outlives the call; flags are integers.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 && nix::Error::last() == nix::Error::EINVAL {
        // Kernels before 6.3 know no MFD_EXEC (their memfds are always executable).
        flags &= !libc::MFD_EXEC;
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(errno("memfd_create"));
    }
    let memfd = own_fd(fd);
    // Sealing against writes fails with EBUSY while any page of the file has an extra
    // reference, and pages just written sit in the per-CPU LRU batch of the CPU that wrote
    // them; the kernel drains only the sealing CPU's batch. So copy and seal on one CPU (seen
    // under load: `F_ADD_SEALS: EBUSY` once the process had moved between CPUs).
    let _pinned = PinnedToThisCpu::new();
    let mut off: libc::off_t = 0;
    while off < size {
        let chunk = ((size - off) as usize).min(1 << 30);
        // SAFETY: both descriptors are open for the call; `off` is a live local the kernel
        // advances (the source's file position is left alone).
        let n = unsafe { libc::sendfile(memfd.as_raw_fd(), src.as_raw_fd(), &mut off, chunk) };
        match n {
            n if n > 0 => {}
            0 => return Err(Error::Other(format!("sealed copy: source ended at {off} of {size} bytes"))),
            _ if nix::Error::last() == nix::Error::EINTR => {}
            _ => return Err(errno("sendfile")),
        }
    }
    // F_SEAL_EXEC (6.3+) also keeps the mode bits as they are; older kernels refuse it.
    let mut seals = SEALS | libc::F_SEAL_EXEC;
    let mut busy = 0;
    loop {
        // SAFETY: F_ADD_SEALS takes an integer argument.
        let r = unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) };
        if r >= 0 {
            break;
        }
        match nix::Error::last() {
            nix::Error::EINVAL if seals != SEALS => seals = SEALS,
            // Pages still referenced for a moment (see above): the kernel waited ~200 ms
            // already; try a few more times before giving up.
            nix::Error::EBUSY if busy < 5 => {
                busy += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => return Err(errno("fcntl(F_ADD_SEALS)")),
        }
    }
    if !is_sealed(std::os::fd::AsFd::as_fd(&memfd)) {
        return Err(Error::Other("sealed copy: the seals did not take".into()));
    }
    Ok(memfd)
}

/// Keeps the calling thread on the CPU it runs on until dropped (best effort: without it,
/// nothing is pinned and the seal may need its retries).
struct PinnedToThisCpu(Option<nix::sched::CpuSet>);

impl PinnedToThisCpu {
    fn new() -> PinnedToThisCpu {
        let me = nix::unistd::Pid::from_raw(0);
        let Ok(before) = nix::sched::sched_getaffinity(me) else { return PinnedToThisCpu(None) };
        // SAFETY: sched_getcpu has no arguments and only reads the caller's CPU number.
        let cpu = unsafe { libc::sched_getcpu() };
        let mut only = nix::sched::CpuSet::new();
        if cpu < 0 || only.set(cpu as usize).is_err() || nix::sched::sched_setaffinity(me, &only).is_err() {
            return PinnedToThisCpu(None);
        }
        PinnedToThisCpu(Some(before))
    }
}

impl Drop for PinnedToThisCpu {
    fn drop(&mut self) {
        if let Some(before) = &self.0 {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), before);
        }
    }
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: runs the executable behind `fd`. Returns
/// only on failure.
pub fn exec_fd(fd: BorrowedFd<'_>, argv: &[CString], envp: &[CString]) -> Error {
    match nix::unistd::execveat(fd, c"", argv, envp, nix::fcntl::AtFlags::AT_EMPTY_PATH) {
        Err(source) => Error::Sys { call: "execveat", source },
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn copy_is_sealed_and_equal() {
        let src = std::fs::File::open("/proc/self/exe").unwrap();
        assert!(!is_sealed(src.as_fd()));
        let copy = sealed_copy(src.as_fd(), c"cove-test").unwrap();
        assert!(is_sealed(copy.as_fd()));
        let path = format!("/proc/self/fd/{}", copy.as_raw_fd());
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read("/proc/self/exe").unwrap());
        // Reopened for writing (as a container would, through /proc/PID/exe): no byte changes.
        let w = std::fs::OpenOptions::new().append(true).open(&path);
        if let Ok(mut w) = w {
            use std::io::Write;
            assert!(w.write_all(b"x").is_err());
        }
        assert!(std::fs::OpenOptions::new().write(true).truncate(true).open(&path).is_err());
        let link = std::fs::read_link(&path).unwrap();
        assert!(link.to_string_lossy().starts_with("/memfd:cove-test"), "{link:?}");
    }
}
