//! The only crate of cove that contains `unsafe` code.
//!
//! It owns thin, safe wrappers over the few system calls that `nix`/`std` expose only as
//! `unsafe` (or not at all): `fork`/`clone` with namespace flags, `close_range`, terminal
//! ioctls, passing file descriptors over `SCM_RIGHTS`, `_exit`, and sealed in-memory copies of
//! executables ([`exeseal`]). Every `unsafe` block
//! carries a `// SAFETY:` comment. It must not contain policy: no container logic, no paths.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub use nix;

pub mod exeseal;
pub mod fault;

/// Errors of the sys crate: a syscall name and its errno.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{call}: {source}")]
    Sys {
        call: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn errno(call: &'static str) -> Error {
    Error::Sys { call, source: nix::Error::last() }
}

impl Error {
    /// The errno behind this error, when there is one.
    pub fn errno(&self) -> Option<nix::Error> {
        match self {
            Error::Sys { source, .. } => Some(*source),
            Error::Other(_) => None,
        }
    }
}

/// The components of a path, `.` and empty ones dropped (`..` kept: a descriptor walk resolves
/// it, inside its root). Shared by the walks of image files and of mount targets.
pub fn path_components(p: &std::ffi::OsStr) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    p.as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| std::ffi::OsStr::from_bytes(c).to_os_string())
        .collect()
}

/// A host program by name: the first executable regular file called `name` in the
/// directories of `PATH`, then in the usual system directories (a helper started with a
/// minimal environment, or a user whose PATH lacks /usr/sbin, still finds newuidmap, pasta,
/// nft or fuse-overlayfs). The one lookup every crate uses.
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .chain(
            ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                .map(std::path::PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// `fork(2)`. Returns `None` in the child and the child's pid in the parent.
///
/// Callers must be single-threaded (cove's CLI, monitor and runtime are): after a fork in a
/// multi-threaded process only async-signal-safe calls are allowed in the child.
pub fn fork() -> Result<Option<nix::unistd::Pid>> {
    // SAFETY: cove forks only from single-threaded processes (documented contract above), so
    // the child inherits no lock held by another thread and may run ordinary Rust code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Some(child)),
        Ok(nix::unistd::ForkResult::Child) => Ok(None),
        Err(source) => Err(Error::Sys { call: "fork", source }),
    }
}

/// `clone(2)` with fork-like semantics (no new stack, SIGCHLD on exit) plus namespace flags,
/// so the child is born in new namespaces (PID 1 of a new pid namespace, with no extra fork).
/// Returns `None` in the child.
pub fn clone_fork(flags: nix::sched::CloneFlags) -> Result<Option<nix::unistd::Pid>> {
    use nix::sched::CloneFlags as F;
    // Only namespace flags pass: CLONE_VM, CLONE_THREAD & co. would break fork semantics.
    let ns = F::CLONE_NEWNS
        | F::CLONE_NEWUTS
        | F::CLONE_NEWIPC
        | F::CLONE_NEWPID
        | F::CLONE_NEWNET
        | F::CLONE_NEWCGROUP
        | F::CLONE_NEWUSER;
    let flags = (flags & ns).bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // A NULL stack makes raw clone duplicate the address space copy-on-write like fork(2); glibc
    // no longer caches the pid, so getpid() stays correct in the child.
    // SAFETY: fork semantics (only namespace flags, masked above) from a single-threaded caller.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(errno("clone")),
        0 => Ok(None),
        pid => Ok(Some(nix::unistd::Pid::from_raw(pid as i32))),
    }
}

/// `_exit(2)`: leaves a forked child without running atexit handlers or flushing buffers the
/// parent also owns.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// Marks every descriptor from `first` upward close-on-exec (`close_range(2)` with
/// `CLOSE_RANGE_CLOEXEC`), so nothing of cove leaks into the container process
/// (the CVE-2024-21626 class). Falls back to walking /proc/self/fd on kernels before 5.11.
pub fn cloexec_from(first: RawFd) -> Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags; arguments are plain integers.
    let ret =
        unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret == 0 {
        return Ok(());
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| Error::Other(format!("read /proc/self/fd: {e}")))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in fds {
        // F_SETFD on a descriptor that was closed meanwhile (the read_dir fd) fails harmlessly.
        let _ = nix::fcntl::fcntl(
            // SAFETY: the fd number comes from /proc/self/fd; borrowing it for one fcntl call
            // cannot outlive it, and EBADF is ignored.
            unsafe { BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    Ok(())
}

/// Borrows a raw descriptor number that the caller knows is open (for example 0, 1, 2).
pub fn borrow_raw(fd: RawFd) -> BorrowedFd<'static> {
    // A wrong number yields EBADF from the next syscall, not memory unsafety.
    // SAFETY: callers pass only descriptors that stay open for the process lifetime (stdio)
    // or for the duration of the borrow.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// `dup2(fd, target)` for an arbitrary target number (stdio redirection in a child).
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> Result<()> {
    // SAFETY: dup2 with integer descriptors; it atomically replaces `target`.
    let ret = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    if ret < 0 {
        return Err(errno("dup2"));
    }
    Ok(())
}

/// Terminal window size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WinSize {
    pub rows: u16,
    pub cols: u16,
}

/// `TIOCGWINSZ`.
pub fn get_winsize(fd: BorrowedFd<'_>) -> Result<WinSize> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` into the pointer we pass, which points
    // to a live, properly aligned local.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws as *mut libc::winsize) };
    if ret < 0 {
        return Err(errno("ioctl(TIOCGWINSZ)"));
    }
    Ok(WinSize { rows: ws.ws_row, cols: ws.ws_col })
}

/// `TIOCSWINSZ`.
pub fn set_winsize(fd: BorrowedFd<'_>, size: WinSize) -> Result<()> {
    let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one `struct winsize` from a live local.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws as *const libc::winsize) };
    if ret < 0 {
        return Err(errno("ioctl(TIOCSWINSZ)"));
    }
    Ok(())
}

/// `TIOCSCTTY`: makes the terminal the controlling terminal of this (session leader) process.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal from another session).
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0 as libc::c_int) };
    if ret < 0 {
        return Err(errno("ioctl(TIOCSCTTY)"));
    }
    Ok(())
}

/// `TIOCGPTPEER`: opens the slave side of a pty master (works across mount namespaces).
pub fn open_pty_peer(master: BorrowedFd<'_>) -> Result<OwnedFd> {
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: TIOCGPTPEER takes open flags as an integer and returns a new descriptor.
    let fd =
        unsafe { libc::ioctl(master.as_raw_fd(), TIOCGPTPEER as _, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno("ioctl(TIOCGPTPEER)"));
    }
    // SAFETY: the ioctl returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends one descriptor (plus a one-byte payload) over a unix socket with `SCM_RIGHTS`.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    let iov = [io::IoSlice::new(b"F")];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|source| Error::Sys { call: "sendmsg(SCM_RIGHTS)", source })?;
    Ok(())
}

/// Receives up to `buf.len()` bytes and at most one descriptor sent with them by
/// [`send_fd`]. Returns the byte count (0 on EOF) and the descriptor, if one came.
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, Option<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = loop {
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.map_err(|source| Error::Sys { call: "recvmsg", source })?,
        }
    };
    let mut got = None;
    for c in msg.cmsgs().map_err(|source| Error::Sys { call: "recvmsg", source })? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel installed these descriptors in our table for us alone.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    Ok((msg.bytes, got))
}

/// Receives one descriptor sent by [`send_fd`]. Returns `None` on EOF.
pub fn recv_fd(sock: BorrowedFd<'_>) -> Result<Option<OwnedFd>> {
    let mut buf = [0u8; 1];
    let (n, fd) = recv_with_fd(sock, &mut buf)?;
    if n == 0 && fd.is_none() {
        return Ok(None);
    }
    fd.map(Some).ok_or_else(|| Error::Other("recvmsg: no descriptor in message".into()))
}

/// Brings the loopback interface of the current network namespace up
/// (`SIOCGIFFLAGS`/`SIOCSIFFLAGS` on "lo"), without netlink or an external `ip`.
pub fn loopback_up() -> Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let s = socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|source| Error::Sys { call: "socket", source })?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifr_flags of the live, zeroed ifreq.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req as *mut libc::ifreq) } < 0 {
        return Err(errno("ioctl(SIOCGIFFLAGS lo)"));
    }
    // SAFETY: ifru_flags is the active union member after SIOCGIFFLAGS.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req as *const libc::ifreq) } < 0 {
        return Err(errno("ioctl(SIOCSIFFLAGS lo)"));
    }
    Ok(())
}

/// `prctl(PR_SET_DUMPABLE, 0)`: other processes (a container's) can no longer open
/// /proc/<pid>/exe or ptrace us while we sit in its namespaces (CVE-2019-5736 class).
pub fn set_not_dumpable() -> Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes integer arguments only.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_DUMPABLE,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if ret < 0 {
        return Err(errno("prctl(PR_SET_DUMPABLE)"));
    }
    Ok(())
}

/// Makes the child that `cmd` spawns receive SIGTERM when the thread that spawns it exits
/// (`PR_SET_PDEATHSIG`): a helper's helper (pasta) never outlives it, even when it is killed.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
    // which is async-signal-safe, with integer arguments.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes the program `cmd` runs inherit nothing but its stdio: every descriptor from 3 up is
/// marked close-on-exec in the child, right before the exec.
pub fn only_stdio(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // close_range(2), a plain syscall (async-signal-safe), with integer arguments.
    unsafe {
        cmd.pre_exec(|| {
            if libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Ignores SIGPIPE: for long-lived helpers that write to sockets whose peers may be gone
/// (a forwarder's splice into a closed connection must be an EPIPE, not the helper's death).
pub fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN involves no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Restores the default disposition of SIGPIPE. The Rust runtime ignores SIGPIPE, and an
/// ignored signal stays ignored across `execve`: without this, every container process would
/// start with SIGPIPE ignored, and `cove ... | head` would panic on EPIPE instead of exiting.
pub fn default_sigpipe() {
    // SAFETY: installing SIG_DFL involves no handler code; called at startup.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Installs a compiled seccomp BPF program (`seccomp(SECCOMP_SET_MODE_FILTER)`), as exported by
/// libseccomp: native-endian `struct sock_filter` records, 8 bytes each. The caller must have
/// set no_new_privs or hold CAP_SYS_ADMIN.
pub fn seccomp_set_filter(program: &[u8], flags: u32) -> Result<()> {
    const INSN: usize = size_of::<libc::sock_filter>();
    if program.is_empty() || !program.len().is_multiple_of(INSN) || program.len() / INSN > u16::MAX as usize {
        return Err(Error::Other(format!("invalid seccomp program of {} bytes", program.len())));
    }
    let mut insns: Vec<libc::sock_filter> = program
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog { len: insns.len() as u16, filter: insns.as_mut_ptr() };
    // SAFETY: `prog` points to `insns`, a live buffer of `len` instructions that outlives the
    // call; the kernel copies the program before returning.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            1 as libc::c_uint, /* SECCOMP_SET_MODE_FILTER */
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(errno("seccomp(SECCOMP_SET_MODE_FILTER)"));
    }
    Ok(())
}

/// One eBPF instruction (`struct bpf_insn`): opcode, destination and source registers (4 bits
/// each), offset, immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

/// `BPF_PROG_TYPE_CGROUP_DEVICE` and `BPF_CGROUP_DEVICE` (linux/bpf.h).
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Loads `insns` as a cgroup device program (`bpf(BPF_PROG_LOAD)`, type
/// `BPF_PROG_TYPE_CGROUP_DEVICE`) and attaches it to the cgroup v2 directory `cgroup`
/// (`BPF_PROG_ATTACH`, `BPF_CGROUP_DEVICE`, `BPF_F_ALLOW_MULTI`: programs of parents still
/// apply). The attachment keeps the program alive; it goes with the cgroup.
pub fn attach_cgroup_device_program(cgroup: BorrowedFd<'_>, insns: &[BpfInsn]) -> Result<()> {
    if insns.is_empty() || insns.len() > 4096 {
        return Err(Error::Other(format!("invalid device program of {} instructions", insns.len())));
    }
    let raw: Vec<u64> = insns
        .iter()
        .map(|i| {
            let mut b = [0u8; 8];
            b[0] = i.code;
            b[1] = (i.dst & 0x0f) | ((i.src & 0x0f) << 4);
            b[2..4].copy_from_slice(&i.off.to_ne_bytes());
            b[4..8].copy_from_slice(&i.imm.to_ne_bytes());
            u64::from_ne_bytes(b)
        })
        .collect();
    let license = b"Apache\0";
    // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license (the rest zero).
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
    }
    let load = |log: &mut [u8]| {
        let attr = ProgLoad {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: raw.len() as u32,
            insns: raw.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            // No buffer at all without a log (the kernel refuses a buffer with level 0).
            log_buf: if log.is_empty() { 0 } else { log.as_mut_ptr() as u64 },
            kern_version: 0,
            prog_flags: 0,
        };
        // SAFETY: `attr` is a bpf_attr prefix of the size passed; its pointers name `raw`,
        // `license` and `log` (with its length), live until the call returns (the kernel copies
        // the first two and writes at most `log_size` bytes into the last). A non-negative
        // result is a new descriptor that we own.
        unsafe {
            libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoad, size_of::<ProgLoad>() as libc::c_uint)
        }
    };
    let fd = load(&mut []);
    if fd < 0 {
        let err = errno("bpf(BPF_PROG_LOAD) of the device program");
        // Again with the verifier's log, for its reason.
        let mut log = vec![0u8; 16 * 1024];
        let again = load(&mut log);
        if again >= 0 {
            // SAFETY: a descriptor the kernel just returned, owned by nobody else.
            drop(unsafe { OwnedFd::from_raw_fd(again as RawFd) });
        } else {
            let text = String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)]).into_owned();
            // Its first line says why (the last ones are statistics).
            if let Some(first) = text.lines().find(|l| !l.trim().is_empty()) {
                return Err(Error::Other(format!("{err} (verifier: {})", first.trim())));
            }
        }
        return Err(err);
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    #[repr(C)]
    struct ProgAttach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
    }
    let attach = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: `attach` is a bpf_attr prefix of the size passed, naming two descriptors that
    // stay open for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttach,
            size_of::<ProgAttach>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(errno("bpf(BPF_PROG_ATTACH) of the device program"));
    }
    Ok(())
}

/// Gives back memory a long-lived process does not need right now (after start-up, or when it
/// went idle): the page-table entries of file mappings whose pages all still equal the file
/// (read-only or executable, private, with no anonymous — written or relocated — page:
/// `Anonymous: 0 kB` in smaps), and the free heap (`malloc_trim`). Those pages fault back in
/// from the page cache when used (each fault maps up to 64 KiB around it: the kernel's
/// fault-around), so resident memory ends up holding only what the process still runs.
/// Returns bytes of mappings released.
pub fn release_startup_memory() -> usize {
    // Collect the ranges, give the heap back (the smaps text included), and only then drop the
    // file pages: after the madvise calls nothing runs but the return path, so as little as
    // possible faults back in.
    let mut ranges = [(0usize, 0usize); 128];
    let n = clean_file_ranges(&mut ranges);
    extern "C" {
        fn malloc_trim(pad: libc::size_t) -> libc::c_int;
    }
    // SAFETY: glibc's malloc_trim only returns free heap memory to the kernel; it takes the
    // allocator's own lock and has no other precondition.
    unsafe {
        malloc_trim(0);
    }
    let mut released = 0;
    for &(a, b) in &ranges[..n] {
        // [a, b) is a private read-only/executable file mapping of ours with no anonymous page:
        // every resident page equals the file, and faults back in on access.
        // SAFETY: MADV_DONTNEED on such a range only drops page-table entries.
        if unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED) } == 0 {
            released += b - a;
        }
    }
    released
}

/// Fills `out` with the private read-only/executable file mappings that have no anonymous
/// page (`Anonymous: 0 kB` in smaps); returns how many (at most `out.len()`).
fn clean_file_ranges(out: &mut [(usize, usize)]) -> usize {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return 0 };
    let mut n = 0;
    let mut current: Option<(usize, usize, bool)> = None; // start, end, candidate
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|(a, _)| a.bytes().all(|c| c.is_ascii_hexdigit())) {
            let perms = f.next().unwrap_or("");
            let _off = f.next();
            let _dev = f.next();
            let inode = f.next().unwrap_or("0");
            let path = f.next().unwrap_or("");
            let candidate = (perms == "r--p" || perms == "r-xp") && inode != "0" && path.starts_with('/');
            current = match (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                (Ok(a), Ok(b)) => Some((a, b, candidate)),
                _ => None,
            };
            continue;
        }
        if first == "Anonymous:" {
            if let (Some((a, b, true)), Some("0")) = (current.take(), f.next()) {
                if n < out.len() {
                    out[n] = (a, b);
                    n += 1;
                }
            }
        }
    }
    n
}

/// `pidfd_open(2)`: a descriptor that polls readable once process `pid` has ended (Linux 5.3).
pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no memory
    // is passed.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(Error::Sys { call: "pidfd_open", source: nix::errno::Errno::last() });
    }
    Ok(own_fd(r as RawFd))
}

/// Wraps a descriptor returned by a syscall wrapper that gives raw numbers.
pub fn own_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass descriptors freshly returned by a syscall and owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// True when `fd` refers to a terminal.
pub fn is_tty<F: AsFd>(fd: F) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

/// Binds or connects a unix socket named `name` in `dir` whatever the length of `dir`:
/// socket paths are limited to 107 bytes, so the path goes through `/proc/self/fd/N`, a short
/// magic link to the directory, held open only for the call.
pub fn with_short_path<T>(
    dir: &std::path::Path,
    name: &str,
    f: impl FnOnce(&std::path::Path) -> io::Result<T>,
) -> io::Result<T> {
    use std::os::unix::fs::OpenOptionsExt;
    let d = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(dir)?;
    let p = std::path::PathBuf::from(format!("/proc/self/fd/{}/{name}", d.as_raw_fd()));
    let r = f(&p);
    drop(d);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_program_finds_programs_only() {
        assert!(find_program("sh").is_some_and(|p| p.is_absolute()));
        assert_eq!(find_program("cove-no-such-program"), None);
    }

    #[test]
    fn fd_passing_roundtrip() {
        let (a, b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        send_fd(a.as_fd(), w.as_fd()).unwrap();
        let got = recv_fd(b.as_fd()).unwrap().unwrap();
        nix::unistd::write(&got, b"x").unwrap();
        let mut buf = [0u8; 1];
        nix::unistd::read(&r, &mut buf).unwrap();
        assert_eq!(&buf, b"x");
        drop(a);
        assert!(recv_fd(b.as_fd()).unwrap().is_none());
    }

    #[test]
    fn cloexec_marks_descriptors() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        cloexec_from(3).unwrap();
        let flags = nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC));
    }
}
