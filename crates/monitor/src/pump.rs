//! The pump loop: output of the container to the log and to `attach` clients, input of
//! `attach` clients to the terminal, signals forwarded, PID 1 reaped. No async runtime, no
//! threads: one `poll` loop over a signalfd, the output descriptors and the attach socket.

use crate::log::LogWriter;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// Docker's exit code for a wait status: the status, or 128 + the signal.
pub fn exit_code(st: WaitStatus) -> Option<i32> {
    match st {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Quiet time after which the pump gives back memory (ms).
const IDLE_MS: u16 = 1000;

/// Copies output to the log until PID 1 exits and its pipes are drained; returns the exit code.
pub fn pump(
    pid: Pid,
    sfd: &SignalFd,
    out: OwnedFd,
    err: Option<OwnedFd>,
    log: &mut LogWriter,
    attach: Option<&std::os::unix::net::UnixListener>,
    mut watch: Option<&mut crate::watch::HelperWatch<'_>>,
) -> i32 {
    let mut open = [true, err.is_some()];
    // Signals that came while the monitor exec'd stay pending across exec: forward them, and
    // look at PID 1 once (it may have exited already). Stale ones (a SIGCHLD of a helper cove
    // started) would otherwise wake the first poll for nothing.
    let mut status: Option<i32> = None;
    signals(sfd, pid, &mut status);
    let mut buf = vec![0u8; 16 * 1024];
    // `cove attach` clients: they get the output as it comes; with a tty, their input goes to
    // the terminal (without one, the container's stdin is /dev/null, as with `run -d`).
    let mut clients: Vec<std::os::unix::net::UnixStream> = vec![];
    let tty = err.is_none();
    // Settled: the first poll is preceded by a release too (start-up, the loader, the
    // relocations touched a lot).
    let (mut released, mut release_now) = (false, true);
    loop {
        if status.is_some() && !open[0] && !open[1] {
            break;
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let li = attach.map(|l| {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let wi = watch.as_ref().and_then(|w| w.fd()).map(|f| {
            fds.push(PollFd::new(f, PollFlags::POLLIN));
            fds.len() - 1
        });
        let first_client = fds.len();
        for c in &clients {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        let mut idx = [None, None];
        if open[0] {
            fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
            idx[0] = Some(fds.len() - 1);
        }
        if let (true, Some(e)) = (open[1], &err) {
            fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
            idx[1] = Some(fds.len() - 1);
        }
        // A quiet second means the container went idle: give back the code pages the last
        // burst of output faulted in (most containers are idle most of the time; see the
        // crate doc). Here, with everything for this poll allocated: only the poll runs after.
        if release_now {
            cove_sys::release_startup_memory();
            release_now = false;
            released = true;
        }
        // After PID 1 is gone, output still held by escaped descendants (a pty or a pipe kept
        // open) must not keep us forever: drain for a moment, then stop.
        let mut timeout = match (status, released) {
            (Some(_), _) => PollTimeout::from(200u16),
            (None, false) => PollTimeout::from(IDLE_MS),
            (None, true) => PollTimeout::NONE,
        };
        // A repair of the network helper to try again later.
        if let Some(t) = watch.as_ref().and_then(|w| w.timeout()) {
            let ms = u16::try_from(t.as_millis()).unwrap_or(u16::MAX);
            if timeout == PollTimeout::NONE || u16::try_from(timeout).is_ok_and(|cur| ms < cur) {
                timeout = PollTimeout::from(ms);
            }
        }
        match poll(&mut fds, timeout) {
            Ok(0) if status.is_some() => break,
            Ok(0) => {
                if let Some(w) = watch.as_mut() {
                    w.tick();
                }
                release_now = true;
                continue;
            }
            Ok(_) => released = false,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if let (Some(i), Some(w)) = (wi, watch.as_mut()) {
            if ready[i] {
                w.ended();
            }
        }
        let mut gone = vec![];
        for (k, c) in clients.iter_mut().enumerate() {
            if !ready[first_client + k] {
                continue;
            }
            use std::io::Read;
            match c.read(&mut buf) {
                Ok(0) | Err(_) => gone.push(k),
                Ok(n) => {
                    if tty {
                        let _ = nix::unistd::write(&out, &buf[..n]);
                    }
                }
            }
        }
        for k in gone.into_iter().rev() {
            clients.remove(k);
        }
        if let (Some(i), Some(l)) = (li, attach) {
            if ready[i] {
                if let Ok((c, _)) = l.accept() {
                    let _ = c.set_write_timeout(Some(Duration::from_millis(200)));
                    clients.push(c);
                }
            }
        }
        if ready[0] {
            signals(sfd, pid, &mut status);
        }
        // The repair of the network helper: reaped when done, or tried again when due.
        if let Some(w) = watch.as_mut() {
            w.tick();
        }
        for (k, stream) in [(0usize, "stdout"), (1, "stderr")] {
            let Some(i) = idx[k] else { continue };
            if !ready[i] {
                continue;
            }
            let fd = if k == 0 { out.as_fd() } else { err.as_ref().map(|e| e.as_fd()).unwrap_or(out.as_fd()) };
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => open[k] = false,
                Ok(n) => {
                    let _ = log.write(stream, &buf[..n]);
                    // A slow or stuck client is dropped rather than allowed to stall the log.
                    clients.retain_mut(|c| c.write_all(&buf[..n]).is_ok());
                }
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(_) => open[k] = false,
            }
        }
    }
    match status {
        Some(c) => c,
        None => waitpid(pid, None).ok().and_then(exit_code).unwrap_or(255),
    }
}

/// Forwards pending signals to PID 1 (SIGCHLD aside) and reaps it if it exited.
fn signals(sfd: &SignalFd, pid: Pid, status: &mut Option<i32>) {
    while let Ok(Some(info)) = sfd.read_signal() {
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(Signal::SIGCHLD) => {}
            // `cove rm -f` or a shutdown: take the container down with us.
            Ok(s) => {
                let _ = nix::sys::signal::kill(pid, s);
            }
            Err(_) => {}
        }
    }
    if status.is_none() {
        if let Ok(st) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            *status = exit_code(st);
        }
    }
}
