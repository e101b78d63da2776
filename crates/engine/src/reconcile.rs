//! Settling state without a daemon: every command that reads state first folds what monitors
//! (and foreground CLIs) left in the run dir into the database — a container that exited
//! becomes `exited`, one whose monitor died without a word `exited` with 255, a `--rm` one is
//! removed, ports its dead monitor held are released.

use crate::db::{ContainerRow, ContainerState};
use crate::state::Engine;
use crate::{Error, IoContext, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Brings the rows of containers that were running up to date with their monitors' files:
/// an exit status left by a monitor becomes `exited`; a container whose monitor (or
/// foreground CLI) died without leaving one becomes `exited` with code 255 and an error note.
///
/// A container run with `--rm` (detached) is removed here once it has exited, as Docker's
/// daemon removes it: the first cove command after the exit (ps, stop, wait, ...) finds it gone.
pub fn reconcile(eng: &mut Engine) -> Result<()> {
    reconcile_collect(eng).map(|_| ())
}

/// [`reconcile`], returning the (id, exit code) of the `--rm` containers it removed.
pub(crate) fn reconcile_collect(eng: &mut Engine) -> Result<Vec<(String, i64)>> {
    let mut rows = eng.db.containers()?;
    // A container whose creator died before it was complete ([`Creating`]) goes, with its
    // leases and files: its name and addresses are free again.
    let mut half_made = vec![];
    rows.retain(|c| {
        let gone = c.state == ContainerState::Created && abandoned(&eng.dirs.container_run(&c.id));
        if gone {
            half_made.push((c.id.clone(), c.name.clone()));
        }
        !gone
    });
    for (id, name) in half_made {
        tracing::debug!(container = %name, "removing a container its creator left half-made");
        delete(eng, &id, false)?;
    }
    // A `created` row with a monitor pid file is one whose start was under way (a foreground
    // CLI or a `start` killed before it recorded the outcome): its files say what became of it.
    let rows: Vec<ContainerRow> = rows
        .into_iter()
        .filter(|c| match c.state {
            ContainerState::Running | ContainerState::Restarting => true,
            ContainerState::Created => eng.dirs.container_run(&c.id).monitor_pid_file().exists(),
            ContainerState::Exited => false,
        })
        .collect();
    let mut ended = vec![];
    for c in rows {
        let rd = eng.dirs.container_run(&c.id);
        let read_exit = || cove_monitor::read_exit(&rd);
        let exit = match read_exit() {
            Some(t) => Some(t),
            None if let Some(pid) = rd.live_pid() => {
                // Running; after a restart by the monitor its PID 1 is a new process.
                if Some(pid as i64) != c.pid || c.state == ContainerState::Created {
                    eng.db.mark_started(&c.id, pid as i64)?;
                }
                continue;
            }
            None if rd.live_monitor().is_some() => continue, // between restarts
            // The monitor may have written its exit file and left between our checks: look
            // once more before concluding that it died without one.
            None => read_exit(),
        };
        if let Some(t) = exit {
            let code = t.code.map_or(255, i64::from);
            let finished = t.finished_at.unwrap_or_else(crate::db::now_rfc3339);
            eng.db.mark_exited(&c.id, code, &finished)?;
            ended.push((c, code));
            continue;
        }
        // Nothing left to ask: the monitor (or foreground CLI) died without an exit status.
        // Never write into the run dir here: a concurrent `rm` may be deleting it.
        eng.db.mark_exited(&c.id, 255, &crate::db::now_rfc3339())?;
        ended.push((c, 255));
    }
    let mut removed = vec![];
    for (c, code) in ended {
        // A monitor killed before its cleanup leaves the container's cgroup (every root
        // container has one, for its device rules): removed once nothing runs in it.
        if eng.dirs.container_run(&c.id).live_monitor().is_none() {
            crate::limits::remove_cgroup(&c.id, eng.dirs.rootless);
        }
        // A row whose request does not decode still settles: its ports are released (the
        // helper ignores a container it does not serve) and it is kept, for `rm` to remove.
        let req = c.request().inspect_err(|e| tracing::warn!("{e}; kept for `cove rm`")).ok();
        if req.as_ref().is_none_or(|r| !r.publish.is_empty() || r.publish_all) {
            // Its monitor (or foreground CLI) is gone without releasing them: the helper
            // would otherwise keep serving ports for a container that no longer runs.
            crate::ports::unregister(&eng.dirs.run, &c.id);
        }
        if req.is_some_and(|r| r.rm) && remove_exited(eng, &c).is_ok() {
            removed.push((c.id, code));
        }
    }
    // A `--rm` container seen exited while its monitor was still finishing (the exit file is
    // written before the monitor's cleanup) is removed by a later pass, once the monitor is gone.
    // (The text test spares a JSON decode per exited container on every command.)
    let leftovers: Vec<ContainerRow> = eng
        .db
        .containers()?
        .into_iter()
        .filter(|c| {
            c.state == ContainerState::Exited
                && !removed.iter().any(|(id, _)| *id == c.id)
                && c.config.contains("\"rm\":true")
                && c.request().is_ok_and(|r| r.rm)
        })
        .collect();
    for c in leftovers {
        let code = c.exit_code.unwrap_or(0);
        if remove_exited(eng, &c).is_ok() {
            removed.push((c.id, code));
        }
    }
    Ok(removed)
}

/// Removes a container whose monitor is gone (its row says exited): leases, row, files.
fn remove_exited(eng: &mut Engine, c: &ContainerRow) -> Result<()> {
    let rd = eng.dirs.container_run(&c.id);
    // The monitor writes the exit file, then cleans up (cgroup, ports) and goes: give it that.
    let t0 = Instant::now();
    while rd.live_monitor().is_some() {
        if t0.elapsed() > Duration::from_millis(500) {
            return Err(Error::Conflict(format!("container {} is still being monitored", c.name)));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    delete(eng, &c.id, true)
}

/// Releases what a container that no longer runs holds and deletes it: published ports,
/// run dir, files, then leases and row. `if_exited`: only while its row says exited (a
/// `start` that came in between wins, and keeps its files). The row goes last, so a command
/// killed on the way leaves a row that `rm` removes again, never files no row names.
pub(crate) fn delete(eng: &mut Engine, id: &str, if_exited: bool) -> Result<()> {
    crate::ports::unregister(&eng.dirs.run, id);
    if if_exited && eng.db.container(id)?.is_none_or(|c| c.state != ContainerState::Exited) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(eng.dirs.container_run(id));
    // Its monitor removes the cgroup as it ends; not one that was killed.
    crate::limits::remove_cgroup(id, eng.dirs.rootless);
    cove_sys::fault::point("rm.mid-files");
    remove_container_files(&eng.dirs.container(id))?;
    cove_sys::fault::point("rm.after-files");
    eng.db.delete_container(id, if_exited)?;
    Ok(())
}

/// Removes a container's directory (upper layer, generated files).
pub fn remove_container_files(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { what: format!("remove {}", dir.display()), source: e }),
    }
}

/// The name of the lock file in a container's run dir held while it is being made.
pub(crate) const CREATING: &str = "creating";

/// Held (`flock`) by the command that makes a container, from before its row exists until its
/// files are complete (`config.json`, `monitor.json`; for a foreground run, its `monitor.pid`):
/// a command killed in between leaves a row whose `creating` file nobody holds, which the next
/// command's reconcile removes with everything made for it (name and addresses released),
/// instead of a half-made container that `start` cannot start. [`Creating::done`] unlinks the
/// file, then the lock goes with the descriptor.
#[derive(Debug)]
pub struct Creating {
    path: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Creating {
    pub(crate) fn begin(run: &Path) -> Result<Creating> {
        std::fs::create_dir_all(run).ctx(|| format!("create {}", run.display()))?;
        let path = run.join(CREATING);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("create {}", path.display()))?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::Other(format!("lock {}: {e}", path.display())))?;
        Ok(Creating { path, _lock: lock })
    }

    /// The container is complete: from now on it is a container like any other.
    pub fn done(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the container whose run dir is `run` was left half-made by a command that died:
/// its `creating` file exists and nobody holds it (checked on the file still at that path, so
/// a creator that just finished is never mistaken for a dead one).
pub(crate) fn abandoned(run: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let path = run.join(CREATING);
    let Ok(f) = std::fs::File::open(&path) else { return false };
    let Ok(lock) = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) else { return false };
    let same = match (lock.metadata(), std::fs::metadata(&path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    };
    drop(lock);
    same
}
