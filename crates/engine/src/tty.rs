//! Foreground containers: relaying a pseudo-terminal, forwarding signals, waiting for exit.
//! One thread, `poll(2)` over a signalfd, the pty master and stdin; no async runtime.

use crate::{Error, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Puts a terminal in raw mode and restores it on drop.
pub struct RawMode {
    fd: BorrowedFd<'static>,
    saved: Termios,
}

impl RawMode {
    pub fn enter(fd: BorrowedFd<'static>) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSAFLUSH, &self.saved);
    }
}

/// The exit code Docker reports for a wait status: the code, or 128 + signal.
pub use cove_monitor::pump::exit_code;

const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGCONT,
];

/// Blocks the signals the foreground loop handles; call right after the container started.
pub fn block_signals() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in FORWARDED.iter().chain(&[Signal::SIGCHLD, Signal::SIGWINCH]) {
        set.add(*s);
    }
    set.thread_block().map_err(|e| Error::Other(format!("block signals: {e}")))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(|e| Error::Other(format!("signalfd: {e}")))
}

fn copy_winsize(master: BorrowedFd<'_>) {
    let stdin = cove_sys::borrow_raw(0);
    if let Ok(ws) = cove_sys::get_winsize(stdin) {
        let _ = cove_sys::set_winsize(master, ws);
    }
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return false,
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => {
                let mut p = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut p, PollTimeout::from(1000u16));
            }
            Err(_) => return false,
        }
    }
    true
}

/// Relays I/O and signals until the container's PID 1 exits; returns its exit code.
pub fn wait_foreground(pid: Pid, sfd: SignalFd, pty_master: Option<OwnedFd>, forward_stdin: bool) -> Result<i32> {
    let stdin = cove_sys::borrow_raw(0);
    let stdout = cove_sys::borrow_raw(1);
    let _raw = match (&pty_master, forward_stdin && cove_sys::is_tty(stdin)) {
        (Some(_), true) => RawMode::enter(stdin),
        _ => None,
    };
    if let Some(m) = &pty_master {
        copy_winsize(m.as_fd());
    }
    let mut status: Option<i32> = None;
    let mut stdin_open = forward_stdin && pty_master.is_some();
    let mut master_open = pty_master.is_some();
    let mut buf = vec![0u8; 32 * 1024];
    let reap = |status: &mut Option<i32>| {
        if status.is_none() {
            if let Ok(st) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                *status = exit_code(st);
            }
        }
    };
    reap(&mut status);
    loop {
        if status.is_some() && !master_open {
            break;
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let mi = match (&pty_master, master_open) {
            (Some(m), true) => {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let si = if stdin_open {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
            Some(fds.len() - 1)
        } else {
            None
        };
        // Once the container exited, only drain what the pty still holds.
        let timeout = if status.is_some() { PollTimeout::from(50u16) } else { PollTimeout::NONE };
        match poll(&mut fds, timeout) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Other(format!("poll: {e}"))),
        }
        let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        let sig_ready = ready(0);
        let m_ready = mi.is_some_and(ready);
        let s_ready = si.is_some_and(ready);
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
                match sig {
                    Signal::SIGCHLD => reap(&mut status),
                    Signal::SIGWINCH => {
                        if let Some(m) = &pty_master {
                            copy_winsize(m.as_fd());
                        }
                    }
                    s => {
                        let _ = nix::sys::signal::kill(pid, s);
                    }
                }
            }
        }
        if m_ready {
            let m = pty_master.as_ref().map(|m| m.as_fd()).ok_or_else(|| Error::Other("pty".into()))?;
            match nix::unistd::read(m, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => master_open = false,
                Ok(n) => {
                    if !write_all(stdout, &buf[..n]) {
                        master_open = false;
                    }
                }
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(_) => master_open = false,
            }
        }
        if s_ready {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => {
                    if let Some(m) = &pty_master {
                        write_all(m.as_fd(), &buf[..n]);
                    }
                }
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(_) => stdin_open = false,
            }
        }
        if status.is_none() {
            reap(&mut status);
        }
    }
    match status {
        Some(c) => Ok(c),
        None => match waitpid(pid, None) {
            Ok(st) => Ok(exit_code(st).unwrap_or(125)),
            Err(e) => Err(Error::Other(format!("wait for container: {e}"))),
        },
    }
}
