//! Foreground containers: relaying a pseudo-terminal or pipes, forwarding signals, waiting
//! for exit. One thread, `poll(2)` over a signalfd, the pty master or the pipes, and stdin; no
//! async runtime.
//!
//! Without `-t` the container never gets cove's own descriptors (issue 21: with the caller's
//! terminal inside, `stty -echo` outlived the container and a process left behind by `exec`
//! read the next line typed at the host's shell). It gets pipes, as with Docker: stdout and
//! stderr are relayed to cove's (spliced, no copy through user space, when cove's side takes
//! it), stdin is `/dev/null`, or with `-i` a pipe cove feeds from its stdin and closes when
//! that ends. cove's stdin is only read, never switched to non-blocking or another mode.

use crate::{Error, Result};
use cove_monitor::LogWriter;
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
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::Other(format!("signalfd: {e}")))
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

/// Once the container's process has exited: keep relaying what its pipes still hold while
/// more arrives within this long…
const DRAIN_IDLE_MS: u16 = 50;
/// …but no longer than this in all. A process it left behind (possible with `exec`: only the
/// exec'd process is waited for) may hold the pipes open for ever and must not keep cove
/// from returning. What was written before the exit is in the pipe already and takes
/// microseconds to move; PID 1's exit ends every process of a `run`, closing the pipes.
const DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// How a foreground container's stdio reaches cove's own.
pub enum Relay {
    /// `-t`: the master of the container's pseudo-terminal.
    Pty(OwnedFd),
    /// Without `-t`: cove's ends of the container's pipes (stdin's only with `-i`).
    Pipes { stdin: Option<OwnedFd>, stdout: OwnedFd, stderr: OwnedFd },
}

impl Relay {
    /// The container's stdio for a foreground `run` or `exec`, and cove's side of it.
    pub fn new(tty: bool, interactive: bool) -> Result<(cove_runtime::Stdio, Option<Relay>)> {
        use nix::fcntl::OFlag;
        if tty {
            return Ok((cove_runtime::Stdio::Pty, None));
        }
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::Other(format!("pipe: {e}")));
        // cove's ends are non-blocking (only ever polled); the container's stay blocking.
        let ours = |fd: OwnedFd| -> Result<OwnedFd> {
            nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(|e| Error::Other(format!("pipe: {e}")))?;
            Ok(fd)
        };
        let (stdin, stdin_w): (OwnedFd, Option<OwnedFd>) = if interactive {
            let (r, w) = pipe()?;
            (r, Some(ours(w)?))
        } else {
            (std::fs::File::open("/dev/null").map_err(|e| Error::Other(format!("open /dev/null: {e}")))?.into(), None)
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        // Bigger pipes, fewer wake-ups per byte relayed (the unprivileged limit is 1 MiB by
        // default; a smaller pipe only costs speed).
        for p in [&out_r, &err_r] {
            let _ = nix::fcntl::fcntl(p, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        }
        let relay = Relay::Pipes { stdin: stdin_w, stdout: ours(out_r)?, stderr: ours(err_r)? };
        Ok((cove_runtime::Stdio::Fds(stdin, out_w, err_w), Some(relay)))
    }
}

/// One output pipe of the container, relayed to cove's stdout or stderr.
struct Output {
    from: OwnedFd,
    to: BorrowedFd<'static>,
    /// The container's json-file log and this stream's name in it (a foreground container
    /// that is kept: `cove logs` shows what it printed, as Docker's does).
    log: Option<(std::rc::Rc<std::cell::RefCell<LogWriter>>, &'static str)>,
    /// splice(2) until cove's side refuses it (a terminal, an `O_APPEND` file: EINVAL).
    splice: bool,
}

impl Output {
    /// Moves what is ready; false once the pipe ended or cove's side is gone (the container
    /// then gets EPIPE, as it would writing to a closed descriptor of its own).
    fn pump(&mut self, buf: &mut [u8]) -> bool {
        use nix::errno::Errno;
        if self.splice {
            // A few rounds before polling again: a busy writer refills the pipe meanwhile.
            for _ in 0..8 {
                match nix::fcntl::splice(
                    &self.from,
                    None,
                    self.to,
                    None,
                    1 << 20,
                    nix::fcntl::SpliceFFlags::SPLICE_F_NONBLOCK,
                ) {
                    Ok(0) => return false,
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(Errno::EAGAIN) => {
                        // The pipe is empty, or cove's side is full: then wait until it
                        // takes more (as a blocking write would).
                        let mut p = [PollFd::new(self.to, PollFlags::POLLOUT)];
                        if poll(&mut p, PollTimeout::ZERO) == Ok(0) {
                            let _ = poll(&mut p, PollTimeout::from(1000u16));
                        }
                        return true;
                    }
                    Err(Errno::EINVAL) => {
                        self.splice = false;
                        break;
                    }
                    Err(_) => return false,
                }
            }
            if self.splice {
                return true;
            }
        }
        match nix::unistd::read(&self.from, buf) {
            Ok(0) => false,
            Ok(n) => {
                if let Some((log, stream)) = &self.log {
                    if let Err(e) = log.borrow_mut().write(stream, &buf[..n]) {
                        tracing::debug!("container log: {e}");
                    }
                }
                write_all(self.to, &buf[..n])
            }
            Err(Errno::EINTR | Errno::EAGAIN) => true,
            Err(_) => false,
        }
    }
}

/// Relays I/O and signals until the container's process exits; returns its exit code. `relay`
/// is `None` only for a `-t` container whose pty master did not come back.
/// With `log`, what the container prints is also written to its log (copied through user
/// space then: no splice).
pub fn wait_foreground(
    pid: Pid,
    sfd: SignalFd,
    relay: Option<Relay>,
    forward_stdin: bool,
    log: Option<LogWriter>,
    watch: Option<crate::network::HelperWatch>,
) -> Result<i32> {
    let (pty_master, pipes) = match relay {
        Some(Relay::Pty(m)) => (Some(m), None),
        Some(Relay::Pipes { stdin, stdout, stderr }) => (None, Some((stdin, stdout, stderr))),
        None => (None, None),
    };
    match pipes {
        Some((stdin_w, out, err)) => wait_piped(pid, sfd, stdin_w.filter(|_| forward_stdin), out, err, log, watch),
        None => wait_pty(pid, sfd, pty_master, forward_stdin, log, watch),
    }
}

/// Handles what the signalfd holds: reaps on SIGCHLD, resizes the pty on SIGWINCH, forwards
/// the rest.
fn on_signals(sfd: &SignalFd, pid: Pid, status: &mut Option<i32>, pty_master: Option<BorrowedFd<'_>>) {
    while let Ok(Some(info)) = sfd.read_signal() {
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
        match sig {
            Signal::SIGCHLD => reap(pid, status),
            Signal::SIGWINCH => {
                if let Some(m) = pty_master {
                    copy_winsize(m);
                }
            }
            s => {
                let _ = nix::sys::signal::kill(pid, s);
            }
        }
    }
}

fn reap(pid: Pid, status: &mut Option<i32>) {
    if status.is_none() {
        if let Ok(st) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            *status = exit_code(st);
        }
    }
}

/// Blocks SIGPIPE in this thread while cove relays to its own stdout and stderr: one that is
/// closed (`cove run … | head`) then fails with EPIPE, and the relay closes the container's
/// pipe, instead of the signal killing cove (cove's main restores SIGPIPE's default for the
/// containers it starts) and leaving the container unreaped. On drop, a SIGPIPE raised
/// meanwhile is consumed before the mask is restored.
struct SigpipeBlocked(SigSet);

impl SigpipeBlocked {
    fn new() -> SigpipeBlocked {
        let mut set = SigSet::empty();
        set.add(Signal::SIGPIPE);
        let _ = set.thread_block();
        SigpipeBlocked(set)
    }
}

impl Drop for SigpipeBlocked {
    fn drop(&mut self) {
        if let Ok(fd) = SignalFd::with_flags(&self.0, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
            while let Ok(Some(_)) = fd.read_signal() {}
        }
        let _ = self.0.thread_unblock();
    }
}

fn wait_piped(
    pid: Pid,
    sfd: SignalFd,
    mut stdin_w: Option<OwnedFd>,
    out: OwnedFd,
    err: OwnedFd,
    log: Option<LogWriter>,
    mut watch: Option<crate::network::HelperWatch>,
) -> Result<i32> {
    use nix::errno::Errno;
    let _sigpipe = SigpipeBlocked::new();
    let stdin = cove_sys::borrow_raw(0);
    let log = log.map(|l| std::rc::Rc::new(std::cell::RefCell::new(l)));
    let splice = log.is_none();
    let mut outputs = [
        Some(Output { from: out, to: cove_sys::borrow_raw(1), log: log.clone().map(|l| (l, "stdout")), splice }),
        Some(Output { from: err, to: cove_sys::borrow_raw(2), log: log.map(|l| (l, "stderr")), splice }),
    ];
    // Read from cove's stdin but not yet taken by the container's pipe.
    let mut pending: Vec<u8> = Vec::new();
    let mut stdin_eof = false;
    let mut status: Option<i32> = None;
    let mut drain_until: Option<std::time::Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    reap(pid, &mut status);
    loop {
        if status.is_some() {
            // Never read cove's stdin for a process that is gone: the next line is the shell's.
            stdin_w = None;
            let until = *drain_until.get_or_insert_with(|| std::time::Instant::now() + DRAIN_MAX);
            if outputs.iter().all(Option::is_none) || std::time::Instant::now() >= until {
                break;
            }
        }
        if stdin_eof && pending.is_empty() {
            stdin_w = None; // EOF for the container
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let mut idx = [None; 2];
        for (i, o) in outputs.iter().enumerate() {
            if let Some(o) = o {
                fds.push(PollFd::new(o.from.as_fd(), PollFlags::POLLIN));
                idx[i] = Some(fds.len() - 1);
            }
        }
        let hi = watch.as_ref().and_then(|w| w.fd()).map(|f| {
            fds.push(PollFd::new(f, PollFlags::POLLIN));
            fds.len() - 1
        });
        let (mut si, mut wi) = (None, None);
        if let Some(w) = &stdin_w {
            if pending.is_empty() {
                fds.push(PollFd::new(stdin, PollFlags::POLLIN));
                si = Some(fds.len() - 1);
            } else {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLOUT));
                wi = Some(fds.len() - 1);
            }
        }
        let timeout = if status.is_some() { PollTimeout::from(DRAIN_IDLE_MS) } else { PollTimeout::NONE };
        match poll(&mut fds, timeout) {
            Ok(0) => break, // exited, and nothing more came for DRAIN_IDLE_MS
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::Other(format!("poll: {e}"))),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            on_signals(&sfd, pid, &mut status, None);
        }
        if let (Some(k), Some(w)) = (hi, watch.as_mut()) {
            if ready[k] {
                w.ended();
            }
        }
        for (i, o) in outputs.iter_mut().enumerate() {
            if idx[i].is_some_and(|k| ready[k]) && !o.as_mut().is_some_and(|o| o.pump(&mut buf)) {
                *o = None;
            }
        }
        if si.is_some_and(|k| ready[k]) {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(0) => stdin_eof = true,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => stdin_eof = true,
            }
        }
        if let Some(w) = &stdin_w {
            if !pending.is_empty() && (wi.is_some_and(|k| ready[k]) || si.is_some()) {
                match nix::unistd::write(w, &pending) {
                    Ok(n) => drop(pending.drain(..n)),
                    Err(Errno::EINTR | Errno::EAGAIN) => {}
                    Err(_) => {
                        // The container closed its stdin: stop taking cove's.
                        stdin_w = None;
                        pending.clear();
                    }
                }
            }
        }
        reap(pid, &mut status);
    }
    finish(pid, status)
}

fn finish(pid: Pid, status: Option<i32>) -> Result<i32> {
    match status {
        Some(c) => Ok(c),
        None => match waitpid(pid, None) {
            Ok(st) => Ok(exit_code(st).unwrap_or(125)),
            Err(e) => Err(Error::Other(format!("wait for container: {e}"))),
        },
    }
}

fn wait_pty(
    pid: Pid,
    sfd: SignalFd,
    pty_master: Option<OwnedFd>,
    forward_stdin: bool,
    mut log: Option<LogWriter>,
    mut watch: Option<crate::network::HelperWatch>,
) -> Result<i32> {
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
    reap(pid, &mut status);
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
        let hi = watch.as_ref().and_then(|w| w.fd()).map(|f| {
            fds.push(PollFd::new(f, PollFlags::POLLIN));
            fds.len() - 1
        });
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
        let h_ready = hi.is_some_and(ready);
        drop(fds);
        if h_ready {
            if let Some(w) = watch.as_mut() {
                w.ended();
            }
        }
        if sig_ready {
            on_signals(&sfd, pid, &mut status, pty_master.as_ref().map(|m| m.as_fd()));
        }
        if m_ready {
            let m = pty_master.as_ref().map(|m| m.as_fd()).ok_or_else(|| Error::Other("pty".into()))?;
            match nix::unistd::read(m, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => master_open = false,
                Ok(n) => {
                    if let Some(l) = &mut log {
                        if let Err(e) = l.write("stdout", &buf[..n]) {
                            tracing::debug!("container log: {e}");
                        }
                    }
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
        reap(pid, &mut status);
    }
    finish(pid, status)
}
