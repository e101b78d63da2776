//! [`Shutdown`], the stop signal every forwarder and relay loop of this crate polls (re-exported
//! as `forward::Shutdown`). Its own module so the relay (below `forward`) can use it without
//! importing `forward`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::fcntl::OFlag;

use crate::Result;

/// A cloneable stop signal for the forwarders. Once triggered it stays triggered; it wakes
/// threads blocked in poll(2) through a pipe.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

struct ShutdownInner {
    flag: AtomicBool,
    rx: OwnedFd,
    tx: OwnedFd,
}

impl Shutdown {
    pub fn new() -> Result<Self> {
        let (rx, tx) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(crate::sys_err("pipe2 for shutdown"))?;
        Ok(Shutdown { inner: Arc::new(ShutdownInner { flag: AtomicBool::new(false), rx, tx }) })
    }

    /// Stops every forwarder that holds a clone of this signal.
    pub fn trigger(&self) {
        if !self.inner.flag.swap(true, Ordering::SeqCst) {
            // The byte is never read: the pipe stays readable, so every poller wakes.
            let _ = nix::unistd::write(&self.inner.tx, b"x");
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// Readable once triggered (for a caller's own poll).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inner.rx.as_fd()
    }
}
