//! Watching the network helper for a container on networks: the helper holds the namespace
//! with the bridges, so when it ends (killed, crashed) the container's veth pairs go with it.
//! The pump then runs `cove __rewire DIR` (from its descriptor of the cove binary), which
//! starts a new helper and wires every running container of the user back (the engine's
//! network module); the pump follows the new helper. No thread and no socket: a pidfd in the
//! pump's poll set, and one short-lived child when it fires.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The longest wait between two tries when the helper could not be started again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub struct HelperWatch<'a> {
    /// The user's run dir (where `netd.pid` lives).
    run: PathBuf,
    /// The container's directory: the argument of `cove __rewire`.
    dir: PathBuf,
    exe: BorrowedFd<'a>,
    helper: Option<OwnedFd>,
    child: Option<Pid>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl<'a> HelperWatch<'a> {
    pub fn new(run: PathBuf, dir: PathBuf, exe: BorrowedFd<'a>) -> Self {
        let mut w = HelperWatch { run, dir, exe, helper: None, child: None, retry_at: None, backoff: Duration::ZERO };
        w.helper = w.open_helper();
        if w.helper.is_none() {
            // Gone already (between the container's wiring and this exec): repair now.
            w.retry_at = Some(Instant::now());
        }
        w
    }

    /// A pidfd of the helper that runs now, its start time checked (a reused pid is not it).
    fn open_helper(&self) -> Option<OwnedFd> {
        let file = self.run.join("netd.pid");
        let pid = crate::live_pid(&file)?;
        let fd = cove_sys::pidfd_open(pid).ok()?;
        (crate::live_pid(&file) == Some(pid)).then_some(fd)
    }

    /// The descriptor to poll (readable once the helper has ended), if one is watched.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.helper.as_ref().map(|f| f.as_fd())
    }

    /// How long the pump may sleep before [`HelperWatch::tick`] has something to do.
    pub fn timeout(&self) -> Option<Duration> {
        self.retry_at.map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// The helper ended: start the repair.
    pub fn ended(&mut self) {
        self.helper = None;
        self.spawn();
    }

    /// Reaps the repair when it is done and follows the new helper; retries later (1 s, 2 s,
    /// ... up to a minute) when there is none. Called after signals and timeouts.
    pub fn tick(&mut self) {
        if let Some(c) = self.child {
            match waitpid(c, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return,
                _ => self.child = None,
            }
            self.helper = self.open_helper();
            if self.helper.is_some() {
                self.backoff = Duration::ZERO;
                self.retry_at = None;
            } else {
                self.backoff = (self.backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                self.retry_at = Some(Instant::now() + self.backoff);
            }
            return;
        }
        if self.retry_at.is_some_and(|t| t <= Instant::now()) {
            self.retry_at = None;
            match self.open_helper() {
                // Someone else (a command, another container's monitor) started one.
                Some(h) => self.helper = Some(h),
                None => self.spawn(),
            }
        }
    }

    fn spawn(&mut self) {
        let argv: Vec<OsString> = vec!["cove".into(), "__rewire".into(), self.dir.clone().into()];
        let argv = crate::cstrings(argv);
        let env = crate::environment();
        match cove_sys::fork() {
            Ok(None) => {
                // The pump's blocked signals would be the helper's too (a mask survives exec).
                let mut set = SigSet::empty();
                for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
                    set.add(s);
                }
                let _ = set.thread_unblock();
                let _ = nix::unistd::execveat(self.exe, c"", &argv, &env, nix::fcntl::AtFlags::AT_EMPTY_PATH);
                cove_sys::exit_now(127)
            }
            Ok(Some(pid)) => self.child = Some(pid),
            Err(_) => {
                self.backoff = (self.backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                self.retry_at = Some(Instant::now() + self.backoff);
            }
        }
    }
}
