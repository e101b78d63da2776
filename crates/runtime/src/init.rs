//! `--init`: cove's own PID 1, in the spirit of tini.
//!
//! The container's PID 1 is the process the runtime cloned (already running cove's code, so it
//! needs nothing from the image: no libc, no tini binary). Instead of exec'ing the command it
//! forks it into its own process group and then:
//! - forwards every catchable signal to that process group (so `stop` reaches daemons the
//!   command started too — tini#229), including SIGTSTP/SIGTTIN/SIGTTOU/SIGCONT for job
//!   control under `-it`;
//! - reaps every zombie, orphans of orphans included (they are re-parented to PID 1);
//! - exits with the command's status, 128+N when it was killed by signal N.
//!
//! PID 1 runs from the sealed memfd copy of the cove binary its creator re-executed from (see
//! `cove_engine::exe`), so `/proc/1/exe` is never the host's file (CVE-2019-5736 class); it is
//! also non-dumpable, which keeps out processes without CAP_SYS_PTRACE.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::Write;
use std::os::unix::net::UnixStream;

/// Forks the command and becomes its init. Never returns. `sock` is the runtime's sync socket:
/// the command's exec closes its copy; an exec failure is reported on it.
pub fn run(args: &[String], env: &[String], sock: UnixStream) -> ! {
    // PID 1 never execs, so close-on-exec does not protect us: close every descriptor the
    // runtime's caller had (log files, report pipes, the database) except stdio and `sock`.
    let keep = std::os::fd::AsRawFd::as_raw_fd(&sock);
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|fd| *fd > 2 && *fd != keep) {
        let _ = nix::unistd::close(fd);
    }
    let all = SigSet::all();
    let _ = all.thread_block();
    let sfd = match SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            let mut sock = sock;
            let _ = sock.write_all(format!("E125 init: signalfd: {e}").as_bytes());
            cove_sys::exit_now(125);
        }
    };
    // Named and non-dumpable before the fork: the command may read /proc/1/comm (or a process
    // of the container try to ptrace PID 1) as soon as it runs, before the parent is scheduled
    // again. The child takes both until its exec, which resets them to the command's.
    let _ = nix::sys::prctl::set_name(c"init");
    let _ = cove_sys::set_not_dumpable();
    let child = match cove_sys::fork() {
        Err(e) => {
            let mut sock = sock;
            let _ = sock.write_all(format!("E125 init: fork: {e}").as_bytes());
            cove_sys::exit_now(125);
        }
        Ok(None) => {
            drop(sfd);
            // Own process group, in the terminal's foreground when there is one (done while
            // SIGTTOU is still blocked, so tcsetpgrp does not stop us).
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            let stdin = cove_sys::borrow_raw(0);
            if cove_sys::is_tty(stdin) {
                let _ = nix::unistd::tcsetpgrp(stdin, nix::unistd::getpid());
            }
            let _ = SigSet::all().thread_unblock();
            let failure = crate::exec::exec(args, env);
            let mut sock = sock;
            let _ = sock.write_all(format!("E{} {}", failure.code, failure.message).as_bytes());
            cove_sys::exit_now(failure.code);
        }
        Ok(Some(pid)) => pid,
    };
    drop(sock);
    loop {
        let info = match sfd.read_signal() {
            Ok(Some(i)) => i,
            Ok(None) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => cove_sys::exit_now(125),
        };
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
        if sig == Signal::SIGCHLD {
            if let Some(code) = reap(child) {
                cove_sys::exit_now(code);
            }
            continue;
        }
        // Forward to the command's process group; if it is gone (the command changed its
        // group), to the command itself.
        if nix::sys::signal::kill(Pid::from_raw(-child.as_raw()), sig).is_err() {
            let _ = nix::sys::signal::kill(child, sig);
        }
    }
}

/// Reaps every exited child; returns the exit code once the command itself is gone.
fn reap(child: Pid) -> Option<i32> {
    let mut result = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => result = Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => result = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(_) => continue,
        }
    }
}
