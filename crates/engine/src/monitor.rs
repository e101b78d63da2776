//! The per-container monitor: the process (Podman's conmon is the anchor) that is the parent of
//! the container's PID 1 and outlives the CLI.
//!
//! This is its first image, the cove binary re-executed as `cove __monitor DIR RUNDIR FD`: it
//! creates and starts the container and reports on FD, then execs the small `cove-monitor`
//! binary (same process, still PID 1's parent) which pumps stdout/stderr to the json-file log
//! and serves `attach` until PID 1 exits, and execs back into `cove __monitor DIR RUNDIR -
//! exited=CODE:RESTARTS`, which applies the restart policy (creating the container again) or
//! records the exit and cleans up. Why two images: see the `cove-monitor` crate (resident
//! memory per container). If `cove-monitor` cannot be exec'd once the container runs, this
//! process pumps itself (same loop, more memory) rather than lose the container.
//!
//! It never opens the state database: it leaves files in the container's run directory that
//! the next cove command folds into the database ([`crate::lifecycle`]):
//!
//! ```text
//! RUNDIR/monitor.pid   "<pid> <starttime>" of the monitor
//! RUNDIR/pid           "<pid> <starttime>" of the container's PID 1 (rewritten on restart)
//! RUNDIR/exit          "<code> <finished_at> <restarts>" once PID 1 exited for good
//! RUNDIR/stopped       created by `cove stop`/`kill`: do not restart
//! ```
//! No async runtime, no threads: one `poll` loop.

use crate::logs::LogWriter;
use crate::{Error, IoContext, Result};
use cove_monitor::{Exited, PumpArgs};
use cove_runtime::{CreateOptions, Rootfs, Stdio};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
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
    /// The user's run dir (network helper, published ports). Called `seccomp_cache` in the
    /// monitor.json of containers created before the cache left the run dir.
    #[serde(default, alias = "seccomp_cache")]
    pub run: Option<PathBuf>,
    /// Where compiled seccomp programs are cached (`Dirs::seccomp_cache`); none: compile.
    #[serde(default)]
    pub seccomp_dir: Option<PathBuf>,
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
    /// `--network container:NAME`: the namespace to join, looked up at every (re)start.
    #[serde(default)]
    pub net_from: Option<NetFrom>,
    /// The user's cove.conf, for a network helper this monitor starts (the monitor's own
    /// environment keeps only COVE_*, PATH and HOME).
    #[serde(default)]
    pub config: Option<PathBuf>,
}

/// The container whose network namespace another one joins (`--network container:NAME`).
///
/// Looked up when the joining container starts, not when it was created: the other container
/// may have been restarted since (a new PID 1, a new namespace), and a `/proc/<pid>/ns/net`
/// saved at create time would then name nothing, or worse, whatever process got that pid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetFrom {
    pub name: String,
    /// Its run directory (the `pid` file: pid and start time of its PID 1).
    pub run_dir: PathBuf,
}

impl NetFrom {
    /// Opens the namespace of the other container's running PID 1, checked against its pid
    /// file after the open, so a pid reused in between cannot slip in.
    fn open(&self) -> Result<OwnedFd> {
        let not_running = || Error::Conflict(format!("cannot join the network of container {}: it is not running", self.name));
        let pid_file = self.run_dir.join("pid");
        let pid = live_pid(&pid_file).ok_or_else(not_running)?;
        let ns: OwnedFd = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|_| not_running())?.into();
        if live_pid(&pid_file) != Some(pid) {
            return Err(not_running());
        }
        Ok(ns)
    }
}

/// The spec with its network namespace path pointing at `ns` (held open by this process).
fn join_netns(spec: &oci_spec::runtime::Spec, ns: &OwnedFd) -> oci_spec::runtime::Spec {
    use std::os::fd::AsRawFd;
    let mut spec = spec.clone();
    let path = PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd()));
    if let Some(linux) = spec.linux_mut() {
        if let Some(nss) = linux.namespaces_mut() {
            for n in nss.iter_mut().filter(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network) {
                n.set_path(Some(path.clone()));
            }
        }
    }
    spec
}

pub use cove_monitor::{live_pid, start_time, write_pid_file};

/// Entry point of `cove __monitor DIR RUNDIR FD [exited=CODE:RESTARTS]` (the last argument
/// when `cove-monitor` hands back after PID 1 exited; FD is then `-`). Never returns.
pub fn main(dir: &Path, run_dir: &Path, report_fd: Option<OwnedFd>, state: Option<&std::ffi::OsStr>) -> ! {
    let code = match state.map(Exited::parse).transpose().map_err(Error::from).and_then(|resumed| monitor(dir, run_dir, report_fd, resumed)) {
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

/// Whether the container of `dir` keeps cove code as its PID 1 (`--init`): then the monitor
/// must run from a sealed copy of the binary (see [`crate::exe`]). True when config.json
/// cannot be read (the safe answer; the monitor reports the error itself).
pub fn pid1_stays_cove(dir: &Path) -> bool {
    let Ok(bytes) = std::fs::read(dir.join("config.json")) else { return true };
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return true };
    spec["annotations"][cove_runtime::INIT_ANNOTATION].as_str() == Some("true")
}

/// The pump binary, next to the running cove binary.
fn pump_binary() -> Result<PathBuf> {
    let exe = crate::exe::installed()?;
    let bin = exe.with_file_name(cove_monitor::BINARY);
    if bin.is_file() {
        return Ok(bin);
    }
    Err(Error::NotFound(format!("{} not found: it must be installed next to {}", bin.display(), exe.display())))
}

/// Pause before restart number `n` (1, 2, ...): 100 ms, doubling, at most 10 s.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << n.saturating_sub(1).min(7))).min(Duration::from_secs(10))
}

fn monitor(dir: &Path, run_dir: &Path, mut report_fd: Option<OwnedFd>, resumed: Option<Exited>) -> Result<()> {
    let _ = nix::unistd::setsid();
    let _ = std::env::set_current_dir("/");
    // stdio of the monitor itself: nothing (the CLI that started us goes away; errors travel
    // over the report pipe).
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = cove_sys::dup_onto(null.as_fd(), fd);
        }
    }
    let read = |name: &str| std::fs::read(dir.join(name)).ctx(|| format!("read {}", dir.join(name).display()));
    let parsed = (|| -> Result<(oci_spec::runtime::Spec, MonitorConfig)> {
        let spec = serde_json::from_slice(&read("config.json")?).map_err(|e| Error::Other(format!("config.json: {e}")))?;
        let cfg = serde_json::from_slice(&read("monitor.json")?).map_err(|e| Error::Other(format!("monitor.json: {e}")))?;
        Ok((spec, cfg))
    })();
    let pump_bin = pump_binary();
    // A first start needs the pump binary (a clear error now rather than a bigger monitor
    // forever); after a restart, a vanished one only means pumping in this image.
    let parsed = match (&pump_bin, resumed) {
        (Err(e), None) => parsed.and(Err(Error::Other(e.to_string()))),
        _ => parsed,
    };
    let (spec, cfg) = match parsed {
        Ok(x) => x,
        Err(e) => {
            report(&mut report_fd, &format!("E125 {e}"));
            if let Some(ex) = resumed {
                // Gone while the container ran (`rm` of the container): record the end anyway.
                cove_monitor::write_exit(run_dir, ex.code, ex.restarts);
                let _ = std::fs::remove_file(run_dir.join("monitor.pid"));
            }
            return Err(e);
        }
    };
    if resumed.is_none() {
        std::fs::create_dir_all(run_dir).ctx(|| format!("create {}", run_dir.display()))?;
        write_pid_file(&run_dir.join("monitor.pid"), std::process::id() as i32)?;
        let _ = std::fs::remove_file(run_dir.join("exit"));
    }
    let mut log = LogWriter::open(&cfg.log_path, cfg.log.0, cfg.log.1)?;
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().map_err(|e| Error::Other(format!("sigprocmask: {e}")))?;
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(|e| Error::Other(format!("signalfd: {e}")))?;
    let cg = crate::run::cgroup_for_limits(&cfg.id, &spec, cfg.rootless);
    let mut restarts = resumed.map(|e| e.restarts).unwrap_or(0);
    // Exit code of the run that just ended (given by the pump when it handed back to us).
    let mut ended = resumed.map(|e| e.code);
    loop {
        if let Some(code) = ended {
            let stopped = run_dir.join("stopped").exists() || !dir.exists();
            if !cfg.restart.again(code, restarts, stopped) {
                cove_monitor::write_exit(run_dir, code, restarts);
                break;
            }
            restarts += 1;
            let _ = log.write("stderr", format!("cove: restarting container after exit code {code} (restart {restarts})\n").as_bytes());
            std::thread::sleep(backoff(restarts));
            if run_dir.join("stopped").exists() || !dir.exists() {
                cove_monitor::write_exit(run_dir, code, restarts - 1);
                break;
            }
        }
        let joined = cfg.net_from.as_ref().map(|f| f.open().map(|ns| (join_netns(&spec, &ns), ns))).transpose();
        let started = joined.and_then(|j| start_once(j.as_ref().map_or(&spec, |(s, _)| s), &cfg, cg.as_ref(), run_dir));
        let (pid, out, err) = match started {
            Ok(x) => x,
            Err(e) => {
                let code = e.exit_code();
                report(&mut report_fd, &format!("E{code} {e}"));
                cove_monitor::write_exit(run_dir, code, restarts);
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
        if let Ok(bin) = &pump_bin {
            let e = hand_to_pump(bin, pid, &out, err.as_ref(), attach.as_ref(), &cfg, dir, run_dir, restarts);
            tracing::warn!("{e}; the monitor pumps in its first image");
        }
        // Only when the pump binary cannot run: the same loop, in this bigger image.
        let code = cove_monitor::pump::pump(pid, &sfd, out, err, &mut log, attach.as_ref());
        drop(attach);
        let _ = std::fs::remove_file(&attach_path);
        ended = Some(code);
    }
    if let (Some(run), false) = (&cfg.run, cfg.publish.is_empty() && !cfg.publish_all) {
        crate::ports::unregister(run, &cfg.id);
    }
    if let Some(cg) = cg {
        let _ = cg.remove();
    }
    let _ = std::fs::remove_file(run_dir.join("monitor.pid"));
    Ok(())
}

/// Execs `cove-monitor` with the container's descriptors (made inheritable) and an `O_PATH`
/// descriptor of this binary to come back through. Returns only on failure.
#[allow(clippy::too_many_arguments)]
fn hand_to_pump(bin: &Path, pid: Pid, out: &OwnedFd, err: Option<&OwnedFd>, attach: Option<&std::os::unix::net::UnixListener>, cfg: &MonitorConfig, dir: &Path, run_dir: &Path, restarts: u32) -> Error {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
    use std::os::fd::AsRawFd;
    // The way back is the installed file, not our sealed copy: the pump lives in the host's
    // pid namespace (the parent of PID 1, invisible from inside, its own image the installed
    // cove-monitor), and holding the copy would keep the binary's size in memory for the
    // container's life. The `cove __monitor` it execs seals itself again before it starts the
    // container anew.
    let installed = match crate::exe::installed() {
        Ok(p) => p,
        Err(e) => return e,
    };
    let exe = match nix::fcntl::open(&installed, OFlag::O_PATH, nix::sys::stat::Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => return Error::Other(format!("open {}: {e}", installed.display())),
    };
    let inherit = |fd: std::os::fd::BorrowedFd<'_>| fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()));
    for fd in [Some(out.as_fd()), err.map(|e| e.as_fd()), attach.map(|l| l.as_fd())].into_iter().flatten() {
        if let Err(e) = inherit(fd) {
            return Error::Other(format!("pass descriptors to {}: {e}", bin.display()));
        }
    }
    let args = PumpArgs {
        pid: pid.as_raw(),
        out: out.as_raw_fd(),
        err: err.map(|e| e.as_raw_fd()),
        attach: attach.map(|l| l.as_raw_fd()),
        exe: exe.as_raw_fd(),
        log: cfg.log_path.clone(),
        max_size: cfg.log.0,
        max_file: cfg.log.1,
        restarts,
        dir: dir.to_path_buf(),
        run_dir: run_dir.to_path_buf(),
    };
    let e = cove_monitor::exec_pump(bin, &args);
    // Still here: keep them out of anything we start later.
    for fd in [Some(out.as_fd()), err.map(|e| e.as_fd()), attach.map(|l| l.as_fd())].into_iter().flatten() {
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    e.into()
}

type Started = (Pid, OwnedFd, Option<OwnedFd>);

fn start_once(spec: &oci_spec::runtime::Spec, cfg: &MonitorConfig, cg: Option<&cove_cgroups::Cgroup>, run_dir: &Path) -> Result<Started> {
    let specs = crate::ports::specs(&cfg.publish, cfg.publish_all, &cfg.exposed)?;
    let null_in: OwnedFd = std::fs::File::open("/dev/null").ctx(|| "open /dev/null".into())?.into();
    let add = |pid: Pid| -> std::result::Result<(), String> {
        if let Some(cg) = cg {
            cg.add_pid(pid.as_raw()).map_err(|e| format!("join cgroup: {e}"))?;
        }
        match &cfg.run {
            Some(run) => {
                let db = cfg.db.clone().unwrap_or_default();
                crate::network::attach(run, &db, pid.as_raw(), &cfg.endpoints, cfg.config.as_deref())?;
                crate::ports::publish(run, run_dir, &cfg.id, &specs, cfg.endpoints.first().map(crate::network::Endpoint::port_target))
            }
            None => Ok(()),
        }
    };
    if cfg.tty {
        let c = cove_runtime::create(CreateOptions { spec, rootfs: cfg.rootfs.clone(), rootless: cfg.rootless, stdio: Stdio::Pty, on_pid: Some(&add), userns: cfg.userns.clone(), seccomp_cache: cfg.seccomp_dir.clone() })?;
        let master = c.pty_master.as_ref().map(|m| m.as_fd().try_clone_to_owned()).transpose().ctx(|| "dup pty".into())?;
        let pid = c.start()?;
        let master = master.ok_or_else(|| Error::Other("no pty from the container".into()))?;
        return Ok((pid, master, None));
    }
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Other(format!("pipe: {e}")))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Other(format!("pipe: {e}")))?;
    let c = cove_runtime::create(CreateOptions { spec, rootfs: cfg.rootfs.clone(), rootless: cfg.rootless, stdio: Stdio::Fds(null_in, out_w, err_w), on_pid: Some(&add), userns: cfg.userns.clone(), seccomp_cache: cfg.seccomp_dir.clone() })?;
    let pid = c.start()?;
    Ok((pid, out_r, Some(err_r)))
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
    fn restart_backoff() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(7), Duration::from_millis(6400));
        assert_eq!(backoff(8), Duration::from_secs(10));
        assert_eq!(backoff(1000), Duration::from_secs(10));
    }
}
