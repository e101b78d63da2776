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
//! the next cove command folds into the database (`lifecycle::reconcile`):
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

pub use crate::plan::Restart;

/// What the monitor needs besides the spec (written by the CLI next to config.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    pub id: String,
    pub rootfs: Rootfs,
    pub rootless: bool,
    pub tty: bool,
    pub restart: Restart,
    /// Log rotation. Called `log`, a `[max_size, max_file]` pair, in the monitor.json of
    /// containers created before it was typed.
    #[serde(alias = "log", deserialize_with = "log_opts_compat")]
    pub log_opts: LogOpts,
    pub log_path: PathBuf,
    #[serde(default)]
    pub userns: Option<cove_runtime::NestedMaps>,
    /// The user's run dir (network helper, published ports). Called `run`, and before that
    /// `seccomp_cache`, in the monitor.json of older containers.
    #[serde(default, alias = "run", alias = "seccomp_cache")]
    pub user_run_dir: Option<PathBuf>,
    /// Where compiled seccomp programs are cached (`Dirs::seccomp_cache`); none: compile.
    #[serde(default)]
    pub seccomp_dir: Option<PathBuf>,
    /// The state database (the network helper reloads DNS records from it).
    #[serde(default)]
    pub db: Option<PathBuf>,
    #[serde(default)]
    pub endpoints: Vec<crate::network::Endpoint>,
    /// Published ports, parsed by `prepare` (`-p`, and `-P`'s exposed ports).
    #[serde(default)]
    pub ports: Vec<cove_net::portmap::PortSpec>,
    /// What older monitor.json files held instead of `ports`. Never written.
    #[serde(flatten, skip_serializing)]
    pub legacy: LegacyPorts,
    /// `--network container:NAME`: the namespace to join, looked up at every (re)start.
    #[serde(default)]
    pub net_from: Option<NetFrom>,
    /// The user's cove.conf, for a network helper this monitor starts (the monitor's own
    /// environment keeps only COVE_*, PATH and HOME).
    #[serde(default)]
    pub config: Option<PathBuf>,
}

/// The `-p` strings, `-P` and exposed ports that monitor.json held before `ports`: read once
/// by [`MonitorConfig::decode`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LegacyPorts {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    publish_all: bool,
    #[serde(default)]
    exposed: Vec<String>,
}

impl MonitorConfig {
    /// Decodes monitor.json, older layouts included (their `-p` strings parsed once, here).
    pub fn decode(bytes: &[u8]) -> Result<MonitorConfig> {
        let mut cfg: MonitorConfig =
            serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("monitor.json: {e}")))?;
        let old = std::mem::take(&mut cfg.legacy);
        if cfg.ports.is_empty() && (!old.publish.is_empty() || old.publish_all) {
            cfg.ports = crate::ports::specs(&old.publish, old.publish_all, &old.exposed)?;
        }
        Ok(cfg)
    }
}

/// [`LogOpts`] as written now, or the `[max_size, max_file]` pair of older files.
fn log_opts_compat<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<LogOpts, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Typed(LogOpts),
        Pair(u64, u32),
    }
    Ok(match Either::deserialize(d)? {
        Either::Typed(o) => o,
        Either::Pair(max_size, max_file) => LogOpts { max_size, max_file },
    })
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
        let not_running =
            || Error::Conflict(format!("cannot join the network of container {}: it is not running", self.name));
        let pid_file = cove_monitor::RunDir::new(&self.run_dir).pid_file();
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
    let code = match state
        .map(Exited::parse)
        .transpose()
        .map_err(Error::from)
        .and_then(|resumed| monitor(dir, run_dir, report_fd, resumed))
    {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("monitor: {e}");
            1
        }
    };
    cove_sys::exit_now(code)
}

/// Entry point of `cove __rewire DIR`, which the pump of the container in DIR runs when the
/// network helper ended: starts a new one, which wires every running container of the user
/// back (`network::recover_at`; a no-op when another monitor or a command was first). Never
/// returns.
pub fn rewire_main(dir: &Path) -> ! {
    let r = std::fs::read(dir.join("monitor.json"))
        .ctx(|| format!("read {}", dir.join("monitor.json").display()))
        .and_then(|b| MonitorConfig::decode(&b))
        .and_then(|cfg| match (&cfg.user_run_dir, &cfg.db) {
            (Some(run), Some(db)) => crate::network::recover_at(run, db, cfg.config.as_deref()),
            _ => Ok(()),
        });
    if let Err(e) = &r {
        tracing::error!("rewire: {e}");
    }
    cove_sys::exit_now(i32::from(r.is_err()))
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
    let rd = cove_monitor::RunDir::new(run_dir);
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
        let spec =
            serde_json::from_slice(&read("config.json")?).map_err(|e| Error::Corrupt(format!("config.json: {e}")))?;
        let cfg = MonitorConfig::decode(&read("monitor.json")?)?;
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
                // Gone while the container ran (`rm` of the container): record the end anyway,
                // and remove its cgroup (named by the container id, the run dir's name; every
                // root container has one, for its device rules).
                cove_monitor::write_exit(run_dir, ex.code, ex.restarts);
                let _ = std::fs::remove_file(rd.monitor_pid_file());
                if let Some(id) = run_dir.file_name().and_then(|n| n.to_str()) {
                    if let Ok(cg) = cove_cgroups::Cgroup::open(id, &cove_cgroups::detect(false)) {
                        let _ = cg.remove();
                    }
                }
            }
            return Err(e);
        }
    };
    if resumed.is_none() {
        std::fs::create_dir_all(run_dir).ctx(|| format!("create {}", run_dir.display()))?;
        write_pid_file(&rd.monitor_pid_file(), std::process::id() as i32)?;
        let _ = std::fs::remove_file(rd.exit_file());
        cove_sys::fault::point("monitor.after-pid");
    }
    let mut log = LogWriter::open(&cfg.log_path, cfg.log_opts.max_size, cfg.log_opts.max_file)?;
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().map_err(|e| Error::Other(format!("sigprocmask: {e}")))?;
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Error::Other(format!("signalfd: {e}")))?;
    let cg = crate::limits::cgroup_for_limits(&cfg.id, &spec, cfg.rootless);
    let mut restarts = resumed.map(|e| e.restarts).unwrap_or(0);
    // Exit code of the run that just ended (given by the pump when it handed back to us).
    let mut ended = resumed.map(|e| e.code);
    loop {
        if let Some(code) = ended {
            let stopped = rd.is_stopped() || !dir.exists();
            if !cfg.restart.again(code, restarts, stopped) {
                cove_monitor::write_exit(run_dir, code, restarts);
                break;
            }
            restarts += 1;
            let _ = log.write(
                "stderr",
                format!("cove: restarting container after exit code {code} (restart {restarts})\n").as_bytes(),
            );
            std::thread::sleep(backoff(restarts));
            if rd.is_stopped() || !dir.exists() {
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
                if let Some(cg) = &cg {
                    let _ = cg.remove();
                }
                return Err(e);
            }
        };
        write_pid_file(&rd.pid_file(), pid.as_raw())?;
        let attach_path = rd.attach_sock();
        let _ = std::fs::remove_file(&attach_path);
        let attach = crate::with_short_path(run_dir, "attach.sock", |p| std::os::unix::net::UnixListener::bind(p)).ok();
        if let Some(l) = &attach {
            let _ = l.set_nonblocking(true);
        }
        cove_sys::fault::point("monitor.before-report");
        report(&mut report_fd, &format!("OK {}", pid.as_raw()));
        cove_sys::fault::point("monitor.after-report");
        if let Ok(bin) = &pump_bin {
            let e = hand_to_pump(bin, pid, &out, err.as_ref(), attach.as_ref(), &cfg, dir, run_dir, restarts);
            tracing::warn!("{e}; the monitor pumps in its first image");
        }
        // Only when the pump binary cannot run: the same loop, in this bigger image.
        let code = cove_monitor::pump::pump(pid, &sfd, out, err, &mut log, attach.as_ref(), None);
        drop(attach);
        let _ = std::fs::remove_file(&attach_path);
        ended = Some(code);
    }
    if let (Some(run), false) = (&cfg.user_run_dir, cfg.ports.is_empty()) {
        crate::ports::unregister(run, &cfg.id);
    }
    if let Some(cg) = cg {
        let _ = cg.remove();
    }
    let _ = std::fs::remove_file(rd.monitor_pid_file());
    Ok(())
}

/// Execs `cove-monitor` with the container's descriptors (made inheritable) and an `O_PATH`
/// descriptor of this binary to come back through. Returns only on failure.
#[allow(clippy::too_many_arguments)]
fn hand_to_pump(
    bin: &Path,
    pid: Pid,
    out: &OwnedFd,
    err: Option<&OwnedFd>,
    attach: Option<&std::os::unix::net::UnixListener>,
    cfg: &MonitorConfig,
    dir: &Path,
    run_dir: &Path,
    restarts: u32,
) -> Error {
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
        max_size: cfg.log_opts.max_size,
        max_file: cfg.log_opts.max_file,
        restarts,
        dir: dir.to_path_buf(),
        run_dir: run_dir.to_path_buf(),
        // On networks: the pump has the helper replaced if it ends (network::recover_at).
        netd: cfg.user_run_dir.clone().filter(|_| !cfg.endpoints.is_empty()),
    };
    let e = cove_monitor::exec_pump(bin, &args);
    // Still here: keep them out of anything we start later.
    for fd in [Some(out.as_fd()), err.map(|e| e.as_fd()), attach.map(|l| l.as_fd())].into_iter().flatten() {
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    e.into()
}

type Started = (Pid, OwnedFd, Option<OwnedFd>);

fn start_once(
    spec: &oci_spec::runtime::Spec,
    cfg: &MonitorConfig,
    cg: Option<&cove_cgroups::Cgroup>,
    run_dir: &Path,
) -> Result<Started> {
    let null_in: OwnedFd = std::fs::File::open("/dev/null").ctx(|| "open /dev/null".into())?.into();
    let hook_error = crate::HookError::default();
    let add = |pid: Pid| -> std::result::Result<(), String> {
        if let Some(cg) = cg {
            cg.add_pid(pid.as_raw()).map_err(|e| format!("join cgroup: {e}"))?;
        }
        match &cfg.user_run_dir {
            Some(run) => {
                let db = cfg.db.clone().unwrap_or_default();
                crate::network::attach(run, &db, pid.as_raw(), &cfg.endpoints, cfg.config.as_deref())?;
                crate::ports::publish(
                    run,
                    run_dir,
                    &cfg.id,
                    &cfg.ports,
                    cfg.endpoints.first().map(crate::network::Endpoint::port_target),
                )
                .map_err(|e| hook_error.keep(e))
            }
            None => Ok(()),
        }
    };
    if cfg.tty {
        let c = cove_runtime::create(CreateOptions {
            spec,
            rootfs: cfg.rootfs.clone(),
            rootless: cfg.rootless,
            stdio: Stdio::Pty,
            on_pid: Some(&add),
            userns: cfg.userns.clone(),
            seccomp_cache: cfg.seccomp_dir.clone(),
        })
        .map_err(|e| hook_error.or(e))?;
        let master =
            c.pty_master.as_ref().map(|m| m.as_fd().try_clone_to_owned()).transpose().ctx(|| "dup pty".into())?;
        let pid = c.start()?;
        let master = master.ok_or_else(|| Error::Other("no pty from the container".into()))?;
        return Ok((pid, master, None));
    }
    let (out_r, out_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Other(format!("pipe: {e}")))?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Other(format!("pipe: {e}")))?;
    let c = cove_runtime::create(CreateOptions {
        spec,
        rootfs: cfg.rootfs.clone(),
        rootless: cfg.rootless,
        stdio: Stdio::Fds(null_in, out_w, err_w),
        on_pid: Some(&add),
        userns: cfg.userns.clone(),
        seccomp_cache: cfg.seccomp_dir.clone(),
    })
    .map_err(|e| hook_error.or(e))?;
    let pid = c.start()?;
    Ok((pid, out_r, Some(err_r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_json_carries_typed_values_and_reads_older_layouts() {
        let cfg = MonitorConfig {
            id: "abc".into(),
            rootfs: Rootfs::Directory,
            rootless: true,
            tty: false,
            restart: Restart::OnFailure(Some(2)),
            log_opts: LogOpts { max_size: 1 << 20, max_file: 2 },
            log_path: "/x/container.log".into(),
            userns: None,
            user_run_dir: Some("/run/user/1000/cove".into()),
            seccomp_dir: None,
            db: None,
            endpoints: vec![],
            ports: vec![cove_net::portmap::parse_publish("8080:80/udp").unwrap()],
            legacy: Default::default(),
            net_from: None,
            config: None,
        };
        let json = serde_json::to_vec(&cfg).unwrap();
        let back = MonitorConfig::decode(&json).unwrap();
        assert_eq!(
            (back.restart, back.log_opts, &back.ports, &back.user_run_dir),
            (cfg.restart, cfg.log_opts, &cfg.ports, &cfg.user_run_dir)
        );
        let text = String::from_utf8(json).unwrap();
        assert!(!text.contains("\"publish\"") && text.contains("\"log_opts\""), "{text}");
        // What containers created before the plan have: `log` as a pair, `run`, `-p` strings.
        let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
        let o = old.as_object_mut().unwrap();
        o.remove("log_opts");
        o.remove("ports");
        let dir = o.remove("user_run_dir").unwrap();
        o.insert("log".into(), serde_json::json!([1048576, 2]));
        o.insert("run".into(), dir);
        o.insert("publish".into(), serde_json::json!(["8080:80/udp"]));
        o.insert("publish_all".into(), serde_json::json!(false));
        let back = MonitorConfig::decode(&serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!((back.log_opts, &back.ports, &back.user_run_dir), (cfg.log_opts, &cfg.ports, &cfg.user_run_dir));
        assert!(matches!(MonitorConfig::decode(b"{\"id\":"), Err(Error::Corrupt(_))));
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
