//! The long-lived half of the per-container monitor: the `cove-monitor` binary (the pump), and
//! what it shares with the engine (the json-file log writer, pid and exit files).
//!
//! A detached container's monitor is one process with two images over its life:
//!
//! ```text
//! cove __monitor DIR RUNDIR FD         creates + starts the container (namespaces, mounts,
//!   │ execve (same pid)                seccomp, network: the whole cove binary), reports OK
//!   ▼
//! cove-monitor pid=… out=… …           parent of PID 1: pumps output to the log and to
//!   │ execveat(cove, exited=CODE:N)    `attach` clients, forwards signals, reaps PID 1
//!   ▼
//! cove __monitor DIR RUNDIR - exited=… writes the exit file and cleans up, or applies the
//!                                      restart policy: creates the container again and execs
//!                                      the pump again
//! ```
//!
//! Why: the monitor lives as long as its container, once per container, so its resident
//! memory is what a user pays per container (the target is <= 1 MiB RSS; conmon needs ~2.5 MiB).
//! The cove binary, even trimmed after start-up, keeps ~1.4 MiB resident: relocated data of
//! a large PIE binary (dirty, cannot be given back), libseccomp/libm/libgcc_s data pages, heap
//! left by the spec and the tracing subscriber. `execve` replaces all of it with this small
//! image while keeping what matters: the pid (PID 1 stays our child, `monitor.pid` stays
//! valid), the blocked signal mask and pending signals (a SIGCHLD that arrived in between is
//! not lost), and the descriptors passed by number. Restarts are rare and need the container
//! machinery, so the pump hands back to the cove binary (kept open as an `O_PATH` descriptor,
//! so an upgrade of the file in between does not matter) instead of linking it.
//!
//! What stays resident is then mostly the kernel's fault-around (a fault on file-backed code
//! maps up to 64 KiB around it): the pump drops clean file pages once settled and again after
//! each quiet second, right before the `poll` that blocks ([`pump::pump`]), so an idle monitor
//! keeps ~0.3 MiB RSS.
//!
//! This crate must stay small: no serde, no SQLite, no runtime; it must not create containers.
#![forbid(unsafe_code)]

pub mod log;
pub mod pump;
pub mod time;
pub mod watch;

pub use log::LogWriter;

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The pump binary's file name; it is installed next to `cove`.
pub const BINARY: &str = "cove-monitor";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { what: what(), source })
    }
}

fn sys(what: &str) -> impl FnOnce(nix::Error) -> Error + '_ {
    move |source| Error::Sys { what: what.to_string(), source }
}

/// Start time of a process (field 22 of /proc/PID/stat), to tell a pid from its reuse.
pub fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    // A zombie (or a dying task) is not alive, whoever has yet to reap it.
    if matches!(f.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    f.nth(18)?.parse().ok()
}

/// A container's run directory: the files its monitor, the CLI and the engine's reconcile share.
/// Every name in it is spelled here only.
///
/// | file | written by | meaning |
/// |---|---|---|
/// | `pid` | the monitor (or foreground CLI) | the container's PID 1, "<pid> <starttime>" |
/// | `monitor.pid` | the monitor (or foreground CLI) | the process supervising it |
/// | `stopped` | `stop`/`kill`/`rm` | a stop was asked for: no restart |
/// | `exit` | the monitor | "<code> <finished_at> <restarts>" ([`write_exit`]) |
/// | `ports.json` | the engine | the published ports served for this container |
/// | `attach.sock` | the monitor | `attach` and `start -a` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir(PathBuf);

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> RunDir {
        RunDir(path.into())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn pid_file(&self) -> PathBuf {
        self.0.join("pid")
    }
    pub fn monitor_pid_file(&self) -> PathBuf {
        self.0.join("monitor.pid")
    }
    pub fn stopped_file(&self) -> PathBuf {
        self.0.join("stopped")
    }
    pub fn exit_file(&self) -> PathBuf {
        self.0.join("exit")
    }
    pub fn ports_json(&self) -> PathBuf {
        self.0.join("ports.json")
    }
    pub fn attach_sock(&self) -> PathBuf {
        self.0.join("attach.sock")
    }
    /// The container's PID 1, if that very process still runs.
    pub fn live_pid(&self) -> Option<i32> {
        live_pid(&self.pid_file())
    }
    /// The monitor, if that very process still runs.
    pub fn live_monitor(&self) -> Option<i32> {
        live_pid(&self.monitor_pid_file())
    }
    /// Marks that a stop was asked for (the monitor does not restart the container).
    pub fn mark_stopped(&self) {
        let _ = std::fs::write(self.stopped_file(), "");
    }
    pub fn is_stopped(&self) -> bool {
        self.stopped_file().exists()
    }
}

impl std::ops::Deref for RunDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for RunDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// Writes "<pid> <starttime>" atomically.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{pid} {}\n", start_time(pid).unwrap_or(0)))
        .ctx(|| format!("write {}", tmp.display()))?;
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

/// Writes `RUNDIR/exit`: "<code> <finished_at> <restarts>", atomically.
pub fn write_exit(run_dir: &Path, code: i32, restarts: u32) {
    let tmp = run_dir.join("exit.tmp");
    if std::fs::write(&tmp, format!("{code} {} {restarts}\n", time::now_rfc3339())).is_ok() {
        let _ = std::fs::rename(&tmp, RunDir::new(run_dir).exit_file());
    }
}

/// The `exit` file [`write_exit`] leaves, read back (by the engine's reconcile). Each part is
/// `None` when missing or unreadable: the reader decides what that means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRecord {
    pub code: Option<i32>,
    pub finished_at: Option<String>,
    pub restarts: Option<u32>,
}

impl ExitRecord {
    pub fn parse(text: &str) -> ExitRecord {
        let mut it = text.split_whitespace();
        ExitRecord {
            code: it.next().and_then(|x| x.parse().ok()),
            finished_at: it.next().map(String::from),
            restarts: it.next().and_then(|x| x.parse().ok()),
        }
    }
}

/// Reads the `exit` file of `run_dir`; `None` while there is none.
pub fn read_exit(run_dir: &Path) -> Option<ExitRecord> {
    std::fs::read_to_string(RunDir::new(run_dir).exit_file()).ok().map(|t| ExitRecord::parse(&t))
}

/// How PID 1 ended, handed from the pump back to `cove __monitor` as `exited=CODE:RESTARTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exited {
    pub code: i32,
    /// Restarts done so far.
    pub restarts: u32,
}

impl Exited {
    pub fn to_arg(self) -> String {
        format!("exited={}:{}", self.code, self.restarts)
    }

    pub fn parse(s: &OsStr) -> Result<Exited> {
        let bad = || Error::Invalid(format!("invalid monitor state {s:?}: expected exited=CODE:RESTARTS"));
        let s = s.to_str().ok_or_else(bad)?;
        let (code, restarts) = s.strip_prefix("exited=").and_then(|r| r.split_once(':')).ok_or_else(bad)?;
        Ok(Exited { code: code.parse().map_err(|_| bad())?, restarts: restarts.parse().map_err(|_| bad())? })
    }
}

/// The command line of `cove-monitor`: what the pump is given by `cove __monitor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PumpArgs {
    /// The container's PID 1, our child.
    pub pid: i32,
    /// Output of the container: the pty master (with a tty) or stdout's pipe.
    pub out: RawFd,
    /// stderr's pipe (none with a tty).
    pub err: Option<RawFd>,
    /// The listening `attach.sock`, bound before `run -d` returned.
    pub attach: Option<RawFd>,
    /// `O_PATH` descriptor of the cove binary, exec'd once PID 1 exited.
    pub exe: RawFd,
    pub log: PathBuf,
    pub max_size: u64,
    pub max_file: u32,
    pub restarts: u32,
    /// The container's directory and run directory (arguments of `cove __monitor`).
    pub dir: PathBuf,
    pub run_dir: PathBuf,
    /// The user's run dir, for a container on networks: the pump watches the network helper
    /// there and has it replaced when it ends ([`watch`]).
    pub netd: Option<PathBuf>,
}

impl PumpArgs {
    pub fn to_argv(&self) -> Vec<OsString> {
        let opt = |f: Option<RawFd>| f.map(|f| f.to_string()).unwrap_or_else(|| "-".into());
        let mut v: Vec<OsString> = vec![
            BINARY.into(),
            format!("pid={}", self.pid).into(),
            format!("out={}", self.out).into(),
            format!("err={}", opt(self.err)).into(),
            format!("attach={}", opt(self.attach)).into(),
            format!("exe={}", self.exe).into(),
            format!("max-size={}", self.max_size).into(),
            format!("max-file={}", self.max_file).into(),
            format!("restarts={}", self.restarts).into(),
        ];
        let paths = [("log=", Some(&self.log)), ("dir=", Some(&self.dir)), ("run=", Some(&self.run_dir))];
        for (k, p) in paths.into_iter().chain([("netd=", self.netd.as_ref())]).filter_map(|(k, p)| Some((k, p?))) {
            let mut a = OsString::from(k);
            a.push(p);
            v.push(a);
        }
        v
    }

    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<PumpArgs> {
        let (mut pid, mut out, mut err, mut attach, mut exe) = (None, None, None, None, None);
        let (mut log, mut dir, mut run_dir, mut netd) = (None, None, None, None);
        let (mut max_size, mut max_file, mut restarts) = (0u64, 1u32, 0u32);
        for a in args {
            let bytes = a.as_bytes();
            let eq = bytes
                .iter()
                .position(|b| *b == b'=')
                .ok_or_else(|| Error::Invalid(format!("invalid argument {a:?}: expected key=value")))?;
            let (k, v) = (&bytes[..eq], OsStr::from_bytes(&bytes[eq + 1..]));
            let text = || v.to_str().unwrap_or("");
            let num = |what: &str| -> Result<i64> {
                text().parse().map_err(|_| Error::Invalid(format!("invalid {what} {v:?}: expected a number")))
            };
            let fd = |what: &str| -> Result<Option<RawFd>> {
                if text() == "-" {
                    Ok(None)
                } else {
                    num(what).map(|n| Some(n as RawFd))
                }
            };
            match k {
                b"pid" => pid = Some(num("pid")? as i32),
                b"out" => out = fd("out")?,
                b"err" => err = fd("err")?,
                b"attach" => attach = fd("attach")?,
                b"exe" => exe = fd("exe")?,
                b"max-size" => max_size = num("max-size")? as u64,
                b"max-file" => max_file = num("max-file")?.max(1) as u32,
                b"restarts" => restarts = num("restarts")? as u32,
                b"log" => log = Some(PathBuf::from(v)),
                b"dir" => dir = Some(PathBuf::from(v)),
                b"run" => run_dir = Some(PathBuf::from(v)),
                b"netd" => netd = Some(PathBuf::from(v)),
                _ => return Err(Error::Invalid(format!("unknown argument {a:?}"))),
            }
        }
        let need = |what: &str| {
            Error::Invalid(format!("missing {what}= (cove-monitor is started by `cove __monitor`, not by hand)"))
        };
        Ok(PumpArgs {
            pid: pid.filter(|p| *p > 0).ok_or_else(|| need("pid"))?,
            out: out.ok_or_else(|| need("out"))?,
            err,
            attach,
            exe: exe.ok_or_else(|| need("exe"))?,
            log: log.ok_or_else(|| need("log"))?,
            max_size,
            max_file,
            restarts,
            dir: dir.ok_or_else(|| need("dir"))?,
            run_dir: run_dir.ok_or_else(|| need("run"))?,
            netd,
        })
    }
}

fn cstrings(v: impl IntoIterator<Item = OsString>) -> Vec<CString> {
    v.into_iter().filter_map(|s| CString::new(std::os::unix::ffi::OsStringExt::into_vec(s)).ok()).collect()
}

fn environment() -> Vec<CString> {
    cstrings(std::env::vars_os().map(|(k, v)| {
        let mut s = k;
        s.push("=");
        s.push(v);
        s
    }))
}

/// Replaces this process with the pump (`binary`, normally `cove-monitor` next to `cove`).
/// Returns only on failure.
pub fn exec_pump(binary: &Path, args: &PumpArgs) -> Error {
    let Ok(path) = CString::new(binary.as_os_str().as_bytes()) else {
        return Error::Invalid(format!("invalid path {}", binary.display()));
    };
    match nix::unistd::execve(&path, &cstrings(args.to_argv()), &environment()) {
        Err(e) => Error::Sys { what: format!("exec {}", binary.display()), source: e },
        Ok(never) => match never {},
    }
}

/// Entry point of the `cove-monitor` binary. Never returns.
pub fn main() -> ! {
    let args = match PumpArgs::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cove-monitor: error: {e}");
            cove_sys::exit_now(125)
        }
    };
    cove_sys::exit_now(run(args))
}

fn owned(n: RawFd, what: &str) -> Result<OwnedFd> {
    nix::fcntl::fcntl(cove_sys::borrow_raw(n), nix::fcntl::FcntlArg::F_GETFD).map_err(sys(what))?;
    Ok(cove_sys::own_fd(n))
}

fn run(a: PumpArgs) -> i32 {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let pid = nix::unistd::Pid::from_raw(a.pid);
    // Nothing we hold may reach the cove binary we exec at the end (it starts containers).
    let _ = cove_sys::cloexec_from(3);
    let exe = owned(a.exe, "exe");
    let setup = (|| -> Result<_> {
        let out = owned(a.out, "out")?;
        let err = a.err.map(|n| owned(n, "err")).transpose()?;
        let attach = a.attach.map(|n| owned(n, "attach")).transpose()?.map(std::os::unix::net::UnixListener::from);
        let log = LogWriter::open(&a.log, a.max_size, a.max_file)?;
        let mut set = SigSet::empty();
        for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            set.add(s);
        }
        set.thread_block().map_err(sys("sigprocmask"))?;
        let sfd =
            SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(sys("signalfd"))?;
        Ok((out, err, attach, log, sfd))
    })();
    let code = match setup {
        Ok((out, err, attach, mut log, sfd)) => {
            let mut watch = match (&a.netd, &exe) {
                (Some(run), Ok(exe)) => Some(watch::HelperWatch::new(run.clone(), a.dir.clone(), exe.as_fd())),
                _ => None,
            };
            let code = pump::pump(pid, &sfd, out, err, &mut log, attach.as_ref(), watch.as_mut());
            drop(attach);
            code
        }
        Err(e) => {
            // Without its descriptors the container cannot be served: take it down and let
            // cove record why it ended.
            eprintln!("cove-monitor: error: {e}");
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            nix::sys::wait::waitpid(pid, None).ok().and_then(pump::exit_code).unwrap_or(255)
        }
    };
    let _ = std::fs::remove_file(RunDir::new(&a.run_dir).attach_sock());
    let done = Exited { code, restarts: a.restarts };
    if let Ok(exe) = &exe {
        let argv: Vec<OsString> = vec![
            "cove".into(),
            "__monitor".into(),
            a.dir.clone().into(),
            a.run_dir.clone().into(),
            "-".into(),
            done.to_arg().into(),
        ];
        let e = nix::unistd::execveat(
            exe.as_fd(),
            c"",
            &cstrings(argv),
            &environment(),
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        );
        eprintln!("cove-monitor: error: exec cove: {e:?}");
    }
    // The cove binary cannot run: record the exit ourselves (no restart, no cleanup).
    write_exit(&a.run_dir, done.code, done.restarts);
    let _ = std::fs::remove_file(RunDir::new(&a.run_dir).monitor_pid_file());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pump_args_roundtrip() {
        let a = PumpArgs {
            pid: 42,
            out: 5,
            err: None,
            attach: Some(7),
            exe: 8,
            log: "/x y/container.log".into(),
            max_size: 10 << 20,
            max_file: 3,
            restarts: 2,
            dir: "/d".into(),
            run_dir: "/r".into(),
            netd: Some("/u".into()),
        };
        assert_eq!(PumpArgs::parse(a.to_argv().into_iter().skip(1)).unwrap(), a);
        assert!(PumpArgs::parse(["pid=1".into()]).unwrap_err().to_string().contains("missing out="));
        assert!(PumpArgs::parse(["bogus".into()]).is_err());
        assert!(PumpArgs::parse(["pid=x".into()]).unwrap_err().to_string().contains("invalid pid"));
    }

    #[test]
    fn exit_file_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        assert_eq!(read_exit(d), None);
        write_exit(d, 137, 2);
        let r = read_exit(d).unwrap();
        assert_eq!((r.code, r.restarts), (Some(137), Some(2)));
        assert!(r.finished_at.as_deref().is_some_and(|t| t.ends_with('Z')), "{r:?}");
        assert_eq!(ExitRecord::parse("x"), ExitRecord { code: None, finished_at: None, restarts: None });
    }

    #[test]
    fn exited_arg() {
        let e = Exited { code: 137, restarts: 4 };
        assert_eq!(Exited::parse(OsStr::new(&e.to_arg())).unwrap(), e);
        assert!(Exited::parse(OsStr::new("exited=1")).is_err());
        assert!(Exited::parse(OsStr::new("3")).is_err());
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
