//! The per-container monitor: a small process (Podman's conmon is the anchor) that is the
//! parent of the container's PID 1 and outlives the CLI.
//!
//! It is the cove binary re-executed as `cove __monitor DIR RUNDIR FD` (a fresh image, so
//! nothing of the CLI's heap stays resident). It creates and starts the container, writes its
//! stdout/stderr to the json-file log, waits for it, writes the exit status, and applies the
//! restart policy. It never opens the state database: it leaves files in the container's run
//! directory that the next cove command folds into the database ([`crate::lifecycle`]):
//!
//! ```text
//! RUNDIR/monitor.pid   "<pid> <starttime>" of the monitor
//! RUNDIR/pid           "<pid> <starttime>" of the container's PID 1 (rewritten on restart)
//! RUNDIR/exit          "<code> <finished_at> <restarts>" once PID 1 exited for good
//! RUNDIR/stopped       created by `cove stop`/`kill`: do not restart
//! ```
//! No async runtime, no threads: one `poll` loop.

use crate::logs::{LogOpts, LogWriter};
use crate::{Error, IoContext, Result};
use cove_runtime::{CreateOptions, Rootfs, Stdio};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Docker's restart policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Restart {
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure(Option<u32>),
}

impl Restart {
    pub fn parse(s: &str) -> Result<Restart> {
        Ok(match s.split_once(':') {
            None if s == "no" || s.is_empty() => Restart::No,
            None if s == "always" => Restart::Always,
            None if s == "unless-stopped" => Restart::UnlessStopped,
            None if s == "on-failure" => Restart::OnFailure(None),
            Some(("on-failure", n)) => Restart::OnFailure(Some(n.parse().map_err(|_| Error::Invalid(format!("invalid restart policy {s:?}: maximum retry count must be a number")))?)),
            _ => return Err(Error::Invalid(format!("invalid restart policy {s:?} (no, always, unless-stopped, on-failure[:N])"))),
        })
    }

    /// Whether to start again after an exit with `code`, having restarted `count` times.
    pub fn again(self, code: i32, count: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self {
            Restart::No => false,
            Restart::Always | Restart::UnlessStopped => true,
            Restart::OnFailure(max) => code != 0 && max.is_none_or(|m| count < m),
        }
    }
}

/// What the monitor needs besides the spec (written by the CLI next to config.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    pub id: String,
    pub rootfs: Rootfs,
    pub rootless: bool,
    pub tty: bool,
    pub restart: Restart,
    pub log: (u64, u32),
    pub log_path: PathBuf,
    #[serde(default)]
    pub userns: Option<cove_runtime::NestedMaps>,
    #[serde(default)]
    pub seccomp_cache: Option<PathBuf>,
    /// The state database (the network helper reloads DNS records from it).
    #[serde(default)]
    pub db: Option<PathBuf>,
    #[serde(default)]
    pub endpoints: Vec<crate::network::Endpoint>,
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub publish_all: bool,
    #[serde(default)]
    pub exposed: Vec<String>,
}

/// Start time of a process (field 22 of /proc/PID/stat), to tell a pid from its reuse.
pub fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Writes "<pid> <starttime>" atomically.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{pid} {}\n", start_time(pid).unwrap_or(0))).ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("rename {}", path.display()))
}

/// Reads a pid file and returns the pid if that very process still runs.
pub fn live_pid(path: &Path) -> Option<i32> {
    let t = std::fs::read_to_string(path).ok()?;
    let mut it = t.split_whitespace();
    let pid: i32 = it.next()?.parse().ok()?;
    let st: u64 = it.next()?.parse().ok()?;
    (start_time(pid) == Some(st) && st != 0).then_some(pid)
}

/// Entry point of `cove __monitor DIR RUNDIR FD`. Never returns.
pub fn main(dir: &Path, run_dir: &Path, report_fd: Option<OwnedFd>) -> ! {
    let code = match monitor(dir, run_dir, report_fd) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("monitor: {e}");
            1
        }
    };
    cove_sys::exit_now(code)
}

fn report(fd: &mut Option<OwnedFd>, msg: &str) {
    if let Some(f) = fd.take() {
        let mut f = std::fs::File::from(f);
        let _ = f.write_all(msg.as_bytes());
    }
}

fn monitor(dir: &Path, run_dir: &Path, mut report_fd: Option<OwnedFd>) -> Result<()> {
    let _ = nix::unistd::setsid();
    let _ = std::env::set_current_dir("/");
    let read = |name: &str| std::fs::read(dir.join(name)).ctx(|| format!("read {}", dir.join(name).display()));
    let parsed = (|| -> Result<(oci_spec::runtime::Spec, MonitorConfig)> {
        let spec = serde_json::from_slice(&read("config.json")?).map_err(|e| Error::Other(format!("config.json: {e}")))?;
        let cfg = serde_json::from_slice(&read("monitor.json")?).map_err(|e| Error::Other(format!("monitor.json: {e}")))?;
        Ok((spec, cfg))
    })();
    let (spec, cfg) = match parsed {
        Ok(x) => x,
        Err(e) => {
            report(&mut report_fd, &format!("E125 {e}"));
            return Err(e);
        }
    };
    std::fs::create_dir_all(run_dir).ctx(|| format!("create {}", run_dir.display()))?;
    write_pid_file(&run_dir.join("monitor.pid"), std::process::id() as i32)?;
    let _ = std::fs::remove_file(run_dir.join("exit"));
    // stdio of the monitor itself: nothing (the CLI that started us goes away).
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = cove_sys::dup_onto(null.as_fd(), fd);
        }
    }
    let mut log = LogWriter::open(&cfg.log_path, LogOpts { max_size: cfg.log.0, max_file: cfg.log.1 })?;
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().map_err(|e| Error::Other(format!("sigprocmask: {e}")))?;
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(|e| Error::Other(format!("signalfd: {e}")))?;
    let cg = crate::run::cgroup_for_limits(&cfg.id, &spec, cfg.rootless);
    let mut restarts = 0u32;
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = start_once(&spec, &cfg, cg.as_ref(), run_dir);
        let (pid, out, err) = match started {
            Ok(x) => x,
            Err(e) => {
                let code = e.exit_code();
                report(&mut report_fd, &format!("E{code} {e}"));
                write_exit(run_dir, code, restarts);
                return Err(e);
            }
        };
        write_pid_file(&run_dir.join("pid"), pid.as_raw())?;
        let attach_path = run_dir.join("attach.sock");
        let _ = std::fs::remove_file(&attach_path);
        let attach = crate::with_short_path(run_dir, "attach.sock", |p| std::os::unix::net::UnixListener::bind(p)).ok();
        if let Some(l) = &attach {
            let _ = l.set_nonblocking(true);
        }
        report(&mut report_fd, &format!("OK {}", pid.as_raw()));
        // Settled into the pump loop: give back what only start-up needed.
        cove_sys::release_startup_memory();
        let code = pump(pid, &sfd, out, err, &mut log, attach.as_ref());
        drop(attach);
        let _ = std::fs::remove_file(&attach_path);
        let stopped = run_dir.join("stopped").exists() || !dir.exists();
        if !cfg.restart.again(code, restarts, stopped) {
            write_exit(run_dir, code, restarts);
            break;
        }
        restarts += 1;
        let _ = log.write("stderr", format!("cove: restarting container after exit code {code} (restart {restarts})\n").as_bytes());
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    if let (Some(run), false) = (&cfg.seccomp_cache, cfg.publish.is_empty() && !cfg.publish_all) {
        crate::ports::unregister(run, &cfg.id);
    }
    if let Some(cg) = cg {
        let _ = cg.remove();
    }
    let _ = std::fs::remove_file(run_dir.join("monitor.pid"));
    Ok(())
}

fn write_exit(run_dir: &Path, code: i32, restarts: u32) {
    let tmp = run_dir.join("exit.tmp");
    if std::fs::write(&tmp, format!("{code} {} {restarts}\n", crate::db::now_rfc3339())).is_ok() {
        let _ = std::fs::rename(&tmp, run_dir.join("exit"));
    }
}

type Started = (Pid, OwnedFd, Option<OwnedFd>);

fn start_once(spec: &oci_spec::runtime::Spec, cfg: &MonitorConfig, cg: Option<&cove_cgroups::Cgroup>, run_dir: &Path) -> Result<Started> {
    let specs = crate::ports::specs(&cfg.publish, cfg.publish_all, &cfg.exposed)?;
    let null_in: OwnedFd = std::fs::File::open("/dev/null").ctx(|| "open /dev/null".into())?.into();
    let add = |pid: Pid| -> std::result::Result<(), String> {
        if let Some(cg) = cg {
            cg.add_pid(pid.as_raw()).map_err(|e| format!("join cgroup: {e}"))?;
        }
        match &cfg.seccomp_cache {
            Some(run) => {
                let db = cfg.db.clone().unwrap_or_default();
                crate::network::attach(run, &db, pid.as_raw(), &cfg.endpoints)?;
                crate::ports::publish(run, run_dir, &cfg.id, &specs, cfg.endpoints.first().map(|e| e.ip))
            }
            None => Ok(()),
        }
    };
    if cfg.tty {
        let c = cove_runtime::create(CreateOptions { spec, rootfs: cfg.rootfs.clone(), rootless: cfg.rootless, stdio: Stdio::Pty, on_pid: Some(&add), userns: cfg.userns.clone(), seccomp_cache: cfg.seccomp_cache.clone() })?;
        let master = c.pty_master.as_ref().map(|m| m.as_fd().try_clone_to_owned()).transpose().ctx(|| "dup pty".into())?;
        let pid = c.start()?;
        let master = master.ok_or_else(|| Error::Other("no pty from the container".into()))?;
        return Ok((pid, master, None));
    }
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Other(format!("pipe: {e}")))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Other(format!("pipe: {e}")))?;
    let c = cove_runtime::create(CreateOptions { spec, rootfs: cfg.rootfs.clone(), rootless: cfg.rootless, stdio: Stdio::Fds(null_in, out_w, err_w), on_pid: Some(&add), userns: cfg.userns.clone(), seccomp_cache: cfg.seccomp_cache.clone() })?;
    let pid = c.start()?;
    Ok((pid, out_r, Some(err_r)))
}

/// Copies output to the log until PID 1 exits and its pipes are drained; returns the exit code.
fn pump(pid: Pid, sfd: &SignalFd, out: OwnedFd, err: Option<OwnedFd>, log: &mut LogWriter, attach: Option<&std::os::unix::net::UnixListener>) -> i32 {
    let mut open = [true, err.is_some()];
    let mut status: Option<i32> = None;
    let mut buf = vec![0u8; 16 * 1024];
    // `cove attach` clients: they get the output as it comes; with a tty, their input goes to
    // the terminal (without one, the container's stdin is /dev/null, as with `run -d`).
    let mut clients: Vec<std::os::unix::net::UnixStream> = vec![];
    let tty = err.is_none();
    loop {
        if status.is_some() && !open[0] && !open[1] {
            break;
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let li = attach.map(|l| {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
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
        // After PID 1 is gone, output still held by escaped descendants (a pty or a pipe kept
        // open) must not keep us forever: drain for a moment, then stop.
        let timeout = if status.is_some() { PollTimeout::from(200u16) } else { PollTimeout::NONE };
        match poll(&mut fds, timeout) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
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
                    status = crate::tty::exit_code(st);
                }
            }
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
        None => waitpid(pid, None).ok().and_then(crate::tty::exit_code).unwrap_or(255),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        assert_eq!(Restart::parse("no").unwrap(), Restart::No);
        assert_eq!(Restart::parse("on-failure:3").unwrap(), Restart::OnFailure(Some(3)));
        assert!(Restart::parse("sometimes").is_err());
        assert!(Restart::parse("on-failure:x").is_err());
        let p = Restart::OnFailure(Some(2));
        assert!(p.again(1, 0, false) && p.again(1, 1, false) && !p.again(1, 2, false) && !p.again(0, 0, false));
        assert!(Restart::Always.again(0, 100, false));
        assert!(!Restart::Always.again(1, 0, true));
        assert!(!Restart::No.again(1, 0, false));
    }

    #[test]
    fn pid_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pid");
        write_pid_file(&p, std::process::id() as i32).unwrap();
        assert_eq!(live_pid(&p), Some(std::process::id() as i32));
        std::fs::write(&p, format!("{} 1\n", std::process::id())).unwrap();
        assert_eq!(live_pid(&p), None, "a reused pid with another start time is not ours");
        assert!(start_time(1).is_some());
    }
}
