//! Entering a network namespace on the calling thread, and always coming back.
//!
//! setns(2) with `CLONE_NEWNET` moves only the calling thread. [`NetnsGuard`] remembers the
//! thread's namespace, enters the target and switches back when dropped, on every path out
//! of the scope, including early returns and `?` (netavark's `exec_netns!` macro restores
//! only on the paths it sees). The guard is `!Send`, so it cannot be dropped on another
//! thread. Sockets (and netlink sockets) created while inside stay in that namespace after
//! the guard is gone: that is how the forwarder reaches container addresses.
//!
//! Works as uid 0 of a user namespace that owns the target netns (CAP_SYS_ADMIN there).

use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sched::{setns, CloneFlags};

use crate::{io_err, sys_err, Result};

/// Opens a handle on this thread's current network namespace.
pub fn current() -> Result<OwnedFd> {
    open("/proc/thread-self/ns/net")
}

/// Opens a handle on a network namespace file (`/proc/PID/ns/net`, a bind mount of one).
pub fn open(path: &str) -> Result<OwnedFd> {
    File::open(path).map(OwnedFd::from).map_err(io_err(format!("open {path}")))
}

/// Opens the network namespace of process `pid`.
pub fn of_pid(pid: i32) -> Result<OwnedFd> {
    open(&format!("/proc/{pid}/ns/net"))
}

/// Inode identity of a namespace handle, to tell namespaces apart (`ls -l /proc/self/ns`).
pub fn id<F: AsFd>(fd: F) -> Result<u64> {
    let st = nix::sys::stat::fstat(fd.as_fd()).map_err(sys_err("fstat netns"))?;
    Ok(st.st_ino)
}

/// While alive, the calling thread is in the target network namespace; on drop it is back in
/// the namespace it came from. If that switch back fails (it cannot for a namespace handle
/// opened by the guard itself unless capabilities were dropped meanwhile) the process aborts:
/// running on in the wrong namespace would put sockets and links where they do not belong.
#[must_use = "the thread leaves the namespace as soon as the guard is dropped"]
pub struct NetnsGuard {
    /// The namespace to go back to (taken by Drop).
    original: Option<OwnedFd>,
    // setns(2) affects the calling thread only: the guard must be dropped where it was made.
    _not_send: PhantomData<*const ()>,
}

impl NetnsGuard {
    /// Enters `target` (a handle from [`open`], [`of_pid`] or [`current`]).
    pub fn enter(target: BorrowedFd<'_>) -> Result<Self> {
        let original = current()?;
        setns(target, CloneFlags::CLONE_NEWNET).map_err(sys_err("setns(CLONE_NEWNET) into target netns"))?;
        tracing::trace!("entered netns");
        Ok(NetnsGuard { original: Some(original), _not_send: PhantomData })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let Some(original) = self.original.take() else { return };
        if let Err(e) = setns(original.as_fd(), CloneFlags::CLONE_NEWNET) {
            // Running on in the wrong namespace would put sockets and links where they do
            // not belong; nothing sane can continue from here.
            tracing::error!("setns back to the original network namespace failed: {e}; aborting");
            std::process::abort();
        }
    }
}

/// Runs `f` on a short-lived thread that enters `target` and never comes back (it exits
/// after `f`). Unlike [`run_in`] this works where returning is impossible: a process in a user
/// namespace may enter the namespaces that namespace owns, but not go back to the host's
/// network namespace, which belongs to the initial user namespace.
pub fn run_on_thread<T: Send>(target: BorrowedFd<'_>, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<T> {
                setns(target, CloneFlags::CLONE_NEWNET).map_err(sys_err("setns(CLONE_NEWNET) into target netns"))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| {
                Err(crate::Error::Io {
                    op: "run in netns".into(),
                    source: std::io::Error::other("helper thread panicked"),
                })
            })
    })
}

/// Runs `f` inside `target` and returns its value; the thread is back afterwards, even if `f`
/// panics (the guard is dropped while unwinding).
pub fn run_in<T>(target: BorrowedFd<'_>, f: impl FnOnce() -> T) -> Result<T> {
    let _guard = NetnsGuard::enter(target)?;
    Ok(f())
}

/// Creates a new, empty network namespace and returns a handle on it; the calling thread
/// stays where it is (a short-lived helper thread does the unshare(2)). The namespace lives
/// as long as a handle, a process or a bind mount refers to it. Needs CAP_SYS_ADMIN in the
/// current user namespace (uid 0 of a user namespace will do).
pub fn create() -> Result<OwnedFd> {
    std::thread::Builder::new()
        .name("netns-create".into())
        .spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(sys_err("unshare(CLONE_NEWNET)"))?;
            // The thread exits right after: nothing else ever runs in the new namespace here.
            current()
        })
        .map_err(io_err("spawn thread to create a netns"))?
        .join()
        .unwrap_or_else(|_| {
            Err(crate::Error::Io { op: "create netns".into(), source: std::io::Error::other("helper thread panicked") })
        })
}
