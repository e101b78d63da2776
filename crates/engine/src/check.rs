//! `cove system check [--repair]`: what the database, the files on disk and the kernel
//! disagree about (what a crash at the wrong moment can leave, and what the engine's own
//! recovery — each command's reconcile, the store's cleaning of `tmp/` — did not settle):
//! rows without their files, files and run dirs without a row, leases of containers that do
//! not exist, layers and blobs no image references, images whose layers are gone, stale
//! staging entries, mounts and processes of containers that do not run, and links in the
//! network helper's namespace that no network or lease names. Each [`Problem`] is one line;
//! [`repair`] fixes one and says what it did.

use crate::db::ContainerState;
use crate::state::Engine;
use crate::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// One inconsistency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A `created` row whose creator died before the container was complete.
    HalfMade { id: String, name: String },
    /// A row whose directory (or its `config.json`) is missing.
    MissingFiles { id: String, name: String },
    /// A row that says running (or restarting) with neither its monitor nor its process alive.
    StaleRunning { id: String, name: String },
    /// The process of a container whose row says it is not running.
    StrayProcess { id: String, name: String, pid: i32 },
    /// A container directory no row names.
    OrphanDir { path: PathBuf },
    /// A container run dir no row names (with the processes its pid files name, if alive).
    OrphanRunDir { path: PathBuf, pids: Vec<i32> },
    /// A cove process (monitor, pump) working for a container no row names.
    OrphanProcess { pid: i32, id: String },
    /// An address leased to a container that does not exist.
    OrphanLease { container: String, network: String },
    /// A layer directory no image references.
    OrphanLayer { diff_id: String },
    /// A blob no image references.
    OrphanBlob { digest: String },
    /// A staging entry of an operation that died (half-written blob, half-unpacked layer).
    StaleTmp { path: PathBuf },
    /// An image one of whose layers is missing.
    MissingLayer { image: String, diff_id: String },
    /// A mount under a container's directory while the container does not run.
    StaleMount { path: PathBuf },
    /// A bridge or veth in the network helper's namespace that no network or lease names.
    OrphanLink { name: String },
}

fn short(s: &str) -> &str {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    &s[..s.len().min(12)]
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::HalfMade { id, name } => {
                write!(f, "container {name} ({}): half-made, its creator died", short(id))
            }
            Problem::MissingFiles { id, name } => {
                write!(f, "container {name} ({}): its directory or config.json is missing", short(id))
            }
            Problem::StaleRunning { id, name } => {
                write!(
                    f,
                    "container {name} ({}): running in the database, but no monitor or process is alive",
                    short(id)
                )
            }
            Problem::StrayProcess { id, name, pid } => {
                write!(f, "container {name} ({}): not running in the database, but its process {pid} is", short(id))
            }
            Problem::OrphanDir { path } => write!(f, "container directory {} has no container", path.display()),
            Problem::OrphanRunDir { path, pids } if pids.is_empty() => {
                write!(f, "run dir {} has no container", path.display())
            }
            Problem::OrphanRunDir { path, pids } => {
                write!(f, "run dir {} has no container; its processes {pids:?} are alive", path.display())
            }
            Problem::OrphanProcess { pid, id } => {
                write!(f, "process {pid} works for container {} which does not exist", short(id))
            }
            Problem::OrphanLease { container, network } => {
                write!(f, "network {network}: address leased to container {} which does not exist", short(container))
            }
            Problem::OrphanLayer { diff_id } => write!(f, "layer {} is used by no image", short(diff_id)),
            Problem::OrphanBlob { digest } => write!(f, "blob {} is used by no image", short(digest)),
            Problem::StaleTmp { path } => write!(f, "{} is left from an operation that died", path.display()),
            Problem::MissingLayer { image, diff_id } => {
                write!(f, "image {}: layer {} is missing", short(image), short(diff_id))
            }
            Problem::StaleMount { path } => {
                write!(f, "{} is mounted but its container does not run", path.display())
            }
            Problem::OrphanLink { name } => {
                write!(f, "network interface {name} in the network helper's namespace belongs to no network")
            }
        }
    }
}

/// What the kernel says, gathered apart from the rules so these are testable without it.
#[derive(Debug, Default)]
pub struct Observed {
    /// Mount points (from /proc/self/mountinfo).
    pub mounts: Vec<PathBuf>,
    /// (pid, arguments) of this user's processes.
    pub processes: Vec<(i32, Vec<String>)>,
    /// Interfaces in the network helper's namespace (empty when it does not run).
    pub links: Vec<String>,
}

/// The container id a path under `base` names (`base/<id>/...`).
fn id_under(path: &str, base: &Path) -> Option<String> {
    let rest = Path::new(path).strip_prefix(base).ok()?;
    let id = rest.components().next()?.as_os_str().to_str()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// The id a process works for: an argument (or `key=value`'s value) under one of `bases`.
fn process_container(args: &[String], bases: &[PathBuf]) -> Option<String> {
    args.iter().find_map(|a| {
        let v = a.split_once('=').map_or(a.as_str(), |(_, v)| v);
        bases.iter().find_map(|b| id_under(v, b))
    })
}

/// The rules over what is on disk and in the kernel (no side effects).
pub fn problems(eng: &Engine, seen: &Observed) -> Result<Vec<Problem>> {
    let mut out = vec![];
    let rows = eng.db.containers()?;
    let by_id: HashMap<&str, &crate::db::ContainerRow> = rows.iter().map(|c| (c.id.as_str(), c)).collect();
    for c in &rows {
        let rd = eng.dirs.container_run(&c.id);
        let (id, name) = (c.id.clone(), c.name.clone());
        let alive = rd.live_pid().or_else(|| rd.live_monitor());
        if c.state == ContainerState::Created && !rd.monitor_pid_file().exists() && crate::reconcile::abandoned(&rd) {
            out.push(Problem::HalfMade { id, name });
            continue;
        }
        if !eng.dirs.container(&c.id).join("config.json").is_file() {
            out.push(Problem::MissingFiles { id: id.clone(), name: name.clone() });
        }
        match c.state {
            ContainerState::Running | ContainerState::Restarting
                if alive.is_none() && cove_monitor::read_exit(&rd).is_none() =>
            {
                out.push(Problem::StaleRunning { id, name });
            }
            ContainerState::Exited | ContainerState::Created if rd.live_monitor().is_none() => {
                if let Some(pid) = rd.live_pid() {
                    out.push(Problem::StrayProcess { id, name, pid });
                }
            }
            _ => {}
        }
    }
    let dirs_of = |base: &Path| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(base)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path())))
            .collect()
    };
    for (id, path) in dirs_of(&eng.dirs.containers()) {
        if !by_id.contains_key(id.as_str()) {
            out.push(Problem::OrphanDir { path });
        }
    }
    for (id, path) in dirs_of(&eng.dirs.run.join("containers")) {
        if !by_id.contains_key(id.as_str()) {
            let rd = cove_monitor::RunDir::new(&path);
            // A creator holding its lock is making this container right now.
            if rd.join(crate::reconcile::CREATING).exists() && !crate::reconcile::abandoned(&rd) {
                continue;
            }
            let pids = [rd.live_monitor(), rd.live_pid()].into_iter().flatten().collect();
            out.push(Problem::OrphanRunDir { path, pids });
        }
    }
    let bases = [eng.dirs.containers(), eng.dirs.run.join("containers")];
    for (pid, args) in &seen.processes {
        if let Some(id) = process_container(args, &bases) {
            if !by_id.contains_key(id.as_str()) && *pid != std::process::id() as i32 {
                out.push(Problem::OrphanProcess { pid: *pid, id });
            }
        }
    }
    for m in &seen.mounts {
        let Some(id) = m.to_str().and_then(|m| id_under(m, &eng.dirs.containers())) else { continue };
        let running =
            by_id.get(id.as_str()).is_some_and(|c| c.is_running()) || eng.dirs.container_run(&id).live_pid().is_some();
        if !running {
            out.push(Problem::StaleMount { path: m.clone() });
        }
    }
    let endpoints = eng.db.all_endpoints()?;
    for e in &endpoints {
        if !by_id.contains_key(e.container_id.as_str()) {
            out.push(Problem::OrphanLease { container: e.container_id.clone(), network: e.network.clone() });
        }
    }
    let images = eng.db.images()?;
    let layers: HashSet<String> = images.iter().flat_map(|i| i.diff_ids.iter().cloned()).collect();
    for img in &images {
        for d in &img.diff_ids {
            if !eng.store.has_layer(d) {
                out.push(Problem::MissingLayer { image: img.id.clone(), diff_id: d.clone() });
            }
        }
    }
    for l in eng.store.list_layers()? {
        if !layers.contains(&l) {
            out.push(Problem::OrphanLayer { diff_id: l });
        }
    }
    let blobs = crate::images::referenced_blobs(&eng.db)?;
    for b in eng.store.list_blobs()? {
        if !blobs.contains(&b) {
            out.push(Problem::OrphanBlob { digest: b });
        }
    }
    for path in eng.store.stale_tmp(std::time::Duration::from_secs(3600))? {
        out.push(Problem::StaleTmp { path });
    }
    if !seen.links.is_empty() {
        let bridges: HashSet<String> = eng.db.networks()?.into_iter().map(|n| n.bridge).collect();
        let leased: HashSet<&str> = endpoints.iter().map(|e| e.ifname.as_str()).collect();
        for l in &seen.links {
            let orphan = (l.starts_with("cove-") && !bridges.contains(l))
                || (l.starts_with("cv") && !leased.contains(l.as_str()));
            if orphan {
                out.push(Problem::OrphanLink { name: l.clone() });
            }
        }
    }
    Ok(out)
}

/// This user's processes and the mounts and helper links the kernel shows.
pub fn observe(eng: &Engine) -> Observed {
    let mut seen = Observed::default();
    if let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") {
        // Field 5 is the mount point (octal escapes for spaces and the like: none in ours).
        seen.mounts = text.lines().filter_map(|l| l.split(' ').nth(4)).map(PathBuf::from).collect();
    }
    let me = nix::unistd::getuid();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        use std::os::unix::fs::MetadataExt;
        if e.metadata().map(|m| m.uid()).ok() != Some(me.as_raw()) {
            continue;
        }
        if let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let args = raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            seen.processes.push((pid, args));
        }
    }
    seen.links = helper_links(&eng.dirs.run).into_iter().map(|(name, _)| name).collect();
    seen
}

/// The interfaces in the network helper's namespace, each with the thread that sees them
/// (`/proc/<pid>/task/<tid>`, whose `ns/net` is that namespace). Empty when it does not run.
fn helper_links(run: &Path) -> Vec<(String, PathBuf)> {
    let Some(pid) = cove_netd::client::pid(run) else { return vec![] };
    let Ok(own) = std::fs::read_link("/proc/self/ns/net") else { return vec![] };
    let mut out = vec![];
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        if std::fs::read_link(t.path().join("ns/net")).is_ok_and(|ns| ns == own) {
            continue; // a thread in the host's namespace
        }
        let Ok(dev) = std::fs::read_to_string(t.path().join("net/dev")) else { continue };
        for l in dev.lines().skip(2) {
            if let Some((name, _)) = l.split_once(':') {
                out.push((name.trim().to_string(), t.path()));
            }
        }
        if !out.is_empty() {
            break;
        }
    }
    out
}

/// How old unreferenced layers and blobs must be before `--repair` removes them by default:
/// younger ones may belong to a pull, load or import under way (their image row comes last),
/// the grace `image prune` gives too. Podman's `--unreferenced-data-age` says the same.
pub const UNREFERENCED_DATA_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Time since `path` was last modified (zero when it cannot be read).
fn age(path: &Path) -> std::time::Duration {
    std::fs::symlink_metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).unwrap_or_default()
}

/// Fixes one problem; returns what was done (one line). Unreferenced layers and blobs younger
/// than `min_age` are left (an error saying so): a pull, load or import may be writing them.
pub fn repair(eng: &mut Engine, p: &Problem, min_age: std::time::Duration) -> Result<String> {
    let young = |path: PathBuf| -> Result<()> {
        let a = age(&path);
        if a < min_age {
            return Err(Error::Conflict(format!(
                "left: written {} s ago, a pull, load or import may still be using it \
                 (--unreferenced-data-age 0 removes it now)",
                a.as_secs()
            )));
        }
        Ok(())
    };
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let done = match p {
        Problem::HalfMade { id, .. } | Problem::MissingFiles { id, .. } => {
            let rd = eng.dirs.container_run(id);
            for pid in [rd.live_pid(), rd.live_monitor()].into_iter().flatten() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            crate::reconcile::delete(eng, id, false)?;
            "removed the container and released its addresses"
        }
        Problem::StaleRunning { .. } => {
            crate::reconcile::reconcile(eng)?;
            "recorded it as exited"
        }
        Problem::StrayProcess { pid, .. } | Problem::OrphanProcess { pid, .. } => {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            "killed it"
        }
        Problem::OrphanDir { path } => {
            crate::reconcile::remove_container_files(path)?;
            "removed it"
        }
        Problem::OrphanRunDir { path, pids } => {
            for pid in pids {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            let _ = std::fs::remove_dir_all(path);
            if pids.is_empty() {
                "removed it"
            } else {
                "killed them and removed it"
            }
        }
        Problem::OrphanLease { container, .. } => {
            eng.db.write(|tx| tx.release_endpoints(container))?;
            "released it"
        }
        Problem::OrphanLayer { diff_id } => {
            young(eng.store.layer_dir(diff_id)?)?;
            eng.store.remove_layer(diff_id)?;
            "removed it"
        }
        Problem::OrphanBlob { digest } => {
            young(eng.store.blob_path(digest)?)?;
            eng.store.remove_blob(digest)?;
            "removed it"
        }
        Problem::StaleTmp { path } => {
            eng.store.remove_tmp(path)?;
            "removed it"
        }
        Problem::MissingLayer { image, .. } => {
            crate::images::remove(&mut eng.db, &eng.store, image, true)?;
            "removed the image (pull or load it again)"
        }
        Problem::StaleMount { path } => {
            nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
                .map_err(|e| Error::Other(format!("unmount {}: {e}", path.display())))?;
            "unmounted it"
        }
        Problem::OrphanLink { name } => {
            let Some((_, task)) = helper_links(&eng.dirs.run).into_iter().find(|(n, _)| n == name) else {
                return Ok(format!("{p}: gone already"));
            };
            let ns = std::fs::File::open(task.join("ns/net"))
                .map_err(|e| Error::Other(format!("open the helper's network namespace: {e}")))?;
            let mut nl = cove_net::link::Netlink::open_in(std::os::fd::AsFd::as_fd(&ns))
                .map_err(|e| Error::Other(format!("netlink: {e}")))?;
            if let Ok(Some(i)) = nl.link_index(name) {
                nl.delete_link(i).map_err(|e| Error::Other(format!("delete {name}: {e}")))?;
            }
            "deleted it"
        }
    };
    Ok(format!("{p}: {done}"))
}

/// Every problem found now (after the engine's own recovery has had its chance: callers run
/// a command's reconcile first only when they mean to).
pub fn check(eng: &Engine) -> Result<Vec<Problem>> {
    let mut found = problems(eng, &observe(eng))?;
    // The veth pair of a container that just ended outlives it for a moment (the kernel frees
    // a network namespace asynchronously): only one still there a second later is an orphan.
    let lingering =
        |found: &[Problem]| found.iter().any(|p| matches!(p, Problem::OrphanLink { name } if name.starts_with("cv")));
    let t0 = std::time::Instant::now();
    while lingering(&found) && t0.elapsed() < std::time::Duration::from_secs(1) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let links: HashSet<String> = helper_links(&eng.dirs.run).into_iter().map(|(n, _)| n).collect();
        found.retain(|p| !matches!(p, Problem::OrphanLink { name } if name.starts_with("cv") && !links.contains(name)));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn engine(d: &Path) -> Engine {
        let dirs = crate::Dirs {
            data: d.join("data"),
            run: d.join("run"),
            rootless: true,
            uid: 1000,
            gid: 1000,
            user_name: "t".into(),
        };
        for p in [&dirs.data, &dirs.run] {
            std::fs::create_dir_all(p).unwrap();
        }
        Engine::open(dirs).unwrap()
    }

    #[test]
    fn a_clean_state_has_no_problem() {
        let d = tempfile::tempdir().unwrap();
        let eng = engine(d.path());
        assert_eq!(problems(&eng, &Observed::default()).unwrap(), vec![]);
    }

    #[test]
    fn files_without_rows_are_orphans() {
        let d = tempfile::tempdir().unwrap();
        let eng = engine(d.path());
        std::fs::create_dir_all(eng.dirs.container(ID).join("upper")).unwrap();
        std::fs::create_dir_all(eng.dirs.container_run(ID).path()).unwrap();
        let found = problems(&eng, &Observed::default()).unwrap();
        assert_eq!(
            found,
            vec![
                Problem::OrphanDir { path: eng.dirs.container(ID) },
                Problem::OrphanRunDir { path: eng.dirs.container_run(ID).path().to_path_buf(), pids: vec![] },
            ]
        );
        assert!(found[0].to_string().starts_with("container directory "), "{}", found[0]);
    }

    #[test]
    fn a_run_dir_whose_creator_holds_its_lock_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let eng = engine(d.path());
        let rd = eng.dirs.container_run(ID);
        std::fs::create_dir_all(rd.path()).unwrap();
        let f = std::fs::File::create(rd.join(crate::reconcile::CREATING)).unwrap();
        let held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).unwrap();
        assert_eq!(problems(&eng, &Observed::default()).unwrap(), vec![]);
        drop(held);
        assert!(crate::reconcile::abandoned(&rd));
        assert_eq!(problems(&eng, &Observed::default()).unwrap().len(), 1);
    }

    #[test]
    fn processes_and_mounts_of_unknown_containers_are_named() {
        let d = tempfile::tempdir().unwrap();
        let eng = engine(d.path());
        let dir = eng.dirs.container(ID);
        let seen = Observed {
            mounts: vec![dir.join("rootfs"), PathBuf::from("/proc")],
            processes: vec![
                (4242, vec!["cove-monitor".into(), "pid=7".into(), format!("dir={}", dir.display())]),
                (4243, vec!["sleep".into(), "1".into()]),
            ],
            links: vec!["lo".into(), "cove-12345678".into(), "cv0123456789".into()],
        };
        let found = problems(&eng, &seen).unwrap();
        assert!(found.contains(&Problem::OrphanProcess { pid: 4242, id: ID.into() }), "{found:?}");
        assert!(found.contains(&Problem::StaleMount { path: dir.join("rootfs") }), "{found:?}");
        assert!(found.contains(&Problem::OrphanLink { name: "cove-12345678".into() }), "{found:?}");
        assert!(found.contains(&Problem::OrphanLink { name: "cv0123456789".into() }), "{found:?}");
        assert_eq!(found.len(), 4, "{found:?}");
    }

    #[test]
    fn container_ids_only_from_paths_under_the_bases() {
        let base = PathBuf::from("/d/containers");
        assert_eq!(id_under(&format!("/d/containers/{ID}/rootfs"), &base), Some(ID.into()));
        assert_eq!(id_under("/d/containers/short", &base), None);
        assert_eq!(id_under(&format!("/e/containers/{ID}"), &base), None);
    }
}
