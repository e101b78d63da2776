//! The rootless user namespace and the *keeper* process that holds it.
//!
//! Every rootless cove command joins one user namespace per user, held open by a tiny keeper
//! process (Podman calls it the pause process), so containers, image layers and helpers all
//! see one consistent id mapping: container uid 0 is the caller, and 1..N come from the
//! caller's /etc/subuid range through `newuidmap`/`newgidmap`. Without a range (or without
//! the uidmap tools) the map holds a single id: 0 -> the caller.
//!
//! Joining an existing namespace costs one `setns`; only the first command after the keeper
//! went away pays for `newuidmap`. The keeper exits by itself once no other process has been
//! in its namespace for a while (`COVE_KEEPER_IDLE_SECS`, default 60).

use crate::{Context, Error, Result};
use nix::sched::CloneFlags;
use nix::unistd::{Gid, Pid, Uid};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One line of a uid/gid map: `container host size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// The id mapping a rootless user gets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdMapping {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
    /// Why the mapping is a single id, when it is.
    pub single_reason: Option<String>,
}

impl IdMapping {
    pub fn is_single(&self) -> bool {
        self.uids.len() == 1 && self.uids[0].size == 1
    }
    /// Number of container uids available (1 for a single-id map).
    pub fn uid_count(&self) -> u64 {
        self.uids.iter().map(|r| r.size as u64).sum()
    }
}

/// Finds the first range of `name` or `id` in an /etc/subuid-style text.
pub fn parse_subid(text: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    for line in text.lines() {
        let mut f = line.trim().split(':');
        let (Some(who), Some(start), Some(count)) = (f.next(), f.next(), f.next()) else { continue };
        if who == name || who.parse::<u32>().ok() == Some(id) {
            if let (Ok(s), Ok(c)) = (start.parse::<u32>(), count.parse::<u32>()) {
                if c > 0 {
                    return Some((s, c));
                }
            }
        }
    }
    None
}

/// Decides the mapping for the calling user from /etc/subuid, /etc/subgid and the tools.
pub fn plan_mapping(uid: Uid, gid: Gid, user_name: &str) -> IdMapping {
    let single = |reason: String| IdMapping {
        uids: vec![IdRange { container: 0, host: uid.as_raw(), size: 1 }],
        gids: vec![IdRange { container: 0, host: gid.as_raw(), size: 1 }],
        single_reason: Some(reason),
    };
    let sub_u = std::fs::read_to_string("/etc/subuid").ok().and_then(|t| parse_subid(&t, user_name, uid.as_raw()));
    let sub_g = std::fs::read_to_string("/etc/subgid")
        .ok()
        .and_then(|t| parse_subid(&t, user_name, gid.as_raw()).or_else(|| parse_subid(&t, user_name, uid.as_raw())));
    let (Some((us, uc)), Some((gs, gc))) = (sub_u, sub_g) else {
        return single(format!("no range for {user_name:?} in /etc/subuid and /etc/subgid"));
    };
    if cove_sys::find_program("newuidmap").is_none() || cove_sys::find_program("newgidmap").is_none() {
        return single("newuidmap/newgidmap not installed (Debian package uidmap)".into());
    }
    IdMapping {
        uids: vec![IdRange { container: 0, host: uid.as_raw(), size: 1 }, IdRange { container: 1, host: us, size: uc }],
        gids: vec![IdRange { container: 0, host: gid.as_raw(), size: 1 }, IdRange { container: 1, host: gs, size: gc }],
        single_reason: None,
    }
}

/// Reads the mapping of the current process (as seen from inside its namespace).
pub fn current_uid_map() -> Vec<IdRange> {
    parse_map(&std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default())
}

/// Reads the gid mapping of the current process.
pub fn current_gid_map() -> Vec<IdRange> {
    parse_map(&std::fs::read_to_string("/proc/self/gid_map").unwrap_or_default())
}

fn parse_map(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|l| {
            let v: Vec<u32> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            (v.len() == 3).then(|| IdRange { container: v[0], host: v[1], size: v[2] })
        })
        .collect()
}

/// True when the current process is in the initial user namespace.
pub fn in_initial_userns() -> bool {
    let m = current_uid_map();
    m.len() == 1 && m[0].container == 0 && m[0].host == 0 && m[0].size == u32::MAX
}

fn write_maps(pid: Pid, map: &IdMapping) -> Result<()> {
    let fmt =
        |rs: &[IdRange]| rs.iter().map(|r| format!("{} {} {}\n", r.container, r.host, r.size)).collect::<String>();
    if map.is_single() {
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny").ctx(|| format!("write /proc/{pid}/setgroups"))?;
        std::fs::write(format!("/proc/{pid}/uid_map"), fmt(&map.uids)).ctx(|| format!("write /proc/{pid}/uid_map"))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), fmt(&map.gids)).ctx(|| format!("write /proc/{pid}/gid_map"))?;
        return Ok(());
    }
    for (tool, rs) in [("newuidmap", &map.uids), ("newgidmap", &map.gids)] {
        let mut cmd = std::process::Command::new(cove_sys::find_program(tool).unwrap_or_else(|| PathBuf::from(tool)));
        cmd.arg(pid.to_string());
        for r in rs.iter() {
            cmd.args([r.container.to_string(), r.host.to_string(), r.size.to_string()]);
        }
        let out = cmd.stdin(std::process::Stdio::null()).output().ctx(|| format!("run {tool}"))?;
        if !out.status.success() {
            return Err(Error::UserNs(format!(
                "{tool} failed: {} (check /etc/subuid, /etc/subgid and that {tool} is setuid root or has file capabilities)",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// Where the keeper's pid file and lock live.
pub struct KeeperPaths {
    pub pid_file: PathBuf,
    pub lock_file: PathBuf,
    /// The keeper's user namespace (`user:[INODE]`), so a keeper started after one was killed
    /// can join the namespace that containers, monitors and the network helper still live in.
    pub ns_file: PathBuf,
}

impl KeeperPaths {
    pub fn new(run_dir: &Path) -> Self {
        KeeperPaths {
            pid_file: run_dir.join("keeper.pid"),
            lock_file: run_dir.join("keeper.lock"),
            ns_file: run_dir.join("keeper.ns"),
        }
    }
}

const KEEPER_NAME: &str = "cove-keeper";

/// Returns the pid of a live keeper owned by us, if the pid file names one.
pub fn live_keeper(paths: &KeeperPaths) -> Option<Pid> {
    let text = std::fs::read_to_string(&paths.pid_file).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let meta = std::fs::metadata(format!("/proc/{pid}")).ok()?;
    (comm.trim() == KEEPER_NAME && meta.uid() == nix::unistd::geteuid().as_raw() && !is_zombie(pid))
        .then(|| Pid::from_raw(pid))
}

/// A killed process nobody reaped yet (an init that does not reap leaves it for good) still
/// has its /proc entry, comm and namespaces: it is not alive.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "Z" || st == "X"))
        })
        .unwrap_or(true)
}

/// A live process of ours in the user namespace a previous keeper held (its containers,
/// monitors, network helper), opened as a namespace descriptor, checked after the open.
fn surviving_namespace(paths: &KeeperPaths) -> Option<std::fs::File> {
    let want = std::fs::read_to_string(&paths.ns_file).ok()?.trim().to_string();
    if !want.starts_with("user:[") {
        return None;
    }
    let me = nix::unistd::geteuid().as_raw();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if std::fs::metadata(e.path()).map(|m| m.uid()).ok() != Some(me) || is_zombie(pid) {
            continue;
        }
        if std::fs::read_link(format!("/proc/{pid}/ns/user")).ok().and_then(|l| l.to_str().map(String::from)).as_deref()
            != Some(want.as_str())
        {
            continue;
        }
        let Ok(f) = std::fs::File::open(format!("/proc/{pid}/ns/user")) else { continue };
        // The pid may have been reused between the check and the open: what we hold counts.
        if std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
            .ok()
            .and_then(|l| l.to_str().map(String::from))
            .as_deref()
            == Some(want.as_str())
        {
            return Some(f);
        }
    }
    None
}

/// Joins the rootless user namespace held by the keeper, starting a keeper first when none
/// runs. Afterwards the process is uid 0 with all capabilities inside that namespace.
///
/// Must be called while the process is single-threaded and before it opens files it hands to
/// containers. Returns the mapping in force.
pub fn join_keeper(run_dir: &Path, mapping: &IdMapping) -> Result<()> {
    let paths = KeeperPaths::new(run_dir);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&paths.lock_file)
        .ctx(|| format!("open {}", paths.lock_file.display()))?;
    let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::Sys { what: "flock keeper.lock".into(), source: e })?;
    let pid = match live_keeper(&paths) {
        Some(pid) => pid,
        // A keeper that was killed while its namespace lives on (containers run in it): the
        // new one joins that namespace. A second namespace with the same map would not do:
        // nothing in it may enter the running containers or the network helper's namespace.
        None => match surviving_namespace(&paths) {
            Some(ns) => spawn_keeper(&paths, mapping, Some(ns))?,
            None => spawn_keeper(&paths, mapping, None)?,
        },
    };
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/user")).ctx(|| format!("open /proc/{pid}/ns/user"))?;
    drop(lock);
    nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER).ctx(|| "setns(user namespace of the keeper)".into())?;
    // Become root of the namespace explicitly (ids are mapped, so this cannot fail unless the
    // map is broken) and drop supplementary groups when allowed.
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .ctx(|| "setresgid(0) in the user namespace".into())?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .ctx(|| "setresuid(0) in the user namespace".into())?;
    if !mapping.is_single() {
        let _ = nix::unistd::setgroups(&[]);
    }
    Ok(())
}

fn idle_limit() -> Duration {
    let secs = std::env::var("COVE_KEEPER_IDLE_SECS").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(60);
    Duration::from_secs(secs.max(1))
}

fn spawn_keeper(paths: &KeeperPaths, mapping: &IdMapping, join: Option<std::fs::File>) -> Result<Pid> {
    let (mut to_parent_r, mut to_parent_w) = pipe()?;
    let (mut to_child_r, mut to_child_w) = pipe()?;
    match cove_sys::fork()? {
        None => {
            drop(to_parent_r);
            drop(to_child_w);
            let code = match keeper_child(&mut to_parent_w, &mut to_child_r, paths, join.as_ref()) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = to_parent_w.write_all(format!("E{e}").as_bytes());
                    1
                }
            };
            cove_sys::exit_now(code);
        }
        Some(pid) => {
            drop(to_parent_w);
            drop(to_child_r);
            let mut b = [0u8; 1];
            let n = to_parent_r.read(&mut b).ctx(|| "read from keeper".into())?;
            if n != 1 || b[0] != b'U' {
                let mut msg = String::from_utf8_lossy(&b[..n]).into_owned();
                let _ = to_parent_r.read_to_string(&mut msg);
                let _ = nix::sys::wait::waitpid(pid, None);
                return Err(Error::UserNs(format!("keeper: {}", msg.trim_start_matches('E'))));
            }
            // A joined namespace is mapped already.
            if let Err(e) = if join.is_some() { Ok(()) } else { write_maps(pid, mapping) } {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                return Err(e);
            }
            to_child_w.write_all(b"M").ctx(|| "signal keeper".into())?;
            let mut msg = String::new();
            let _ = to_parent_r.read_to_string(&mut msg);
            if msg != "R" {
                let _ = nix::sys::wait::waitpid(pid, None);
                return Err(Error::UserNs(format!("keeper: {}", msg.trim_start_matches('E'))));
            }
            // The keeper forked once more to leave our process tree; reap the intermediate.
            let _ = nix::sys::wait::waitpid(pid, None);
            live_keeper(paths).ok_or_else(|| Error::UserNs("keeper did not start".into()))
        }
    }
}

fn pipe() -> Result<(std::fs::File, std::fs::File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
    Ok((std::fs::File::from(r), std::fs::File::from(w)))
}

fn keeper_child(
    to_parent: &mut std::fs::File,
    from_parent: &mut std::fs::File,
    paths: &KeeperPaths,
    join: Option<&std::fs::File>,
) -> Result<()> {
    let pid_file = &paths.pid_file;
    match join {
        // We created that namespace (same uid, from the parent namespace): we may enter it.
        Some(ns) => nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER).ctx(|| "setns(the user namespace a previous keeper held)".into())?,
        None => nix::sched::unshare(CloneFlags::CLONE_NEWUSER).ctx(|| "unshare(CLONE_NEWUSER) (are unprivileged user namespaces enabled? see /proc/sys/user/max_user_namespaces)".into())?,
    }
    to_parent.write_all(b"U").ctx(|| "write".into())?;
    let mut b = [0u8; 1];
    if from_parent.read(&mut b).ctx(|| "read".into())? != 1 {
        cove_sys::exit_now(1);
    }
    // Leave the CLI's process tree and session so the keeper survives it; the grandchild is
    // reparented to init (or the nearest subreaper).
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    if let Some(_grandchild) = cove_sys::fork()? {
        cove_sys::exit_now(0);
    }
    let _ = nix::sys::prctl::set_name(c"cove-keeper");
    let _ = std::env::set_current_dir("/");
    let mypid = nix::unistd::getpid();
    if let Ok(ns) = std::fs::read_link("/proc/self/ns/user") {
        let tmp = paths.ns_file.with_extension(format!("tmp{mypid}"));
        std::fs::write(&tmp, format!("{}\n", ns.display()))
            .and_then(|_| std::fs::rename(&tmp, &paths.ns_file))
            .ctx(|| format!("write {}", paths.ns_file.display()))?;
    }
    let tmp = pid_file.with_extension(format!("tmp{mypid}"));
    std::fs::write(&tmp, format!("{mypid}\n")).ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, pid_file).ctx(|| format!("rename to {}", pid_file.display()))?;
    to_parent.write_all(b"R").ctx(|| "write".into())?;
    keeper_loop(pid_file, mypid)
}

fn keeper_loop(pid_file: &Path, me: Pid) -> ! {
    // Detach from every descriptor the CLI had (stdio included) so we hold nothing open.
    if let Ok(devnull) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = cove_sys::dup_onto(devnull.as_fd(), fd);
        }
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|fd| *fd > 2) {
        let _ = nix::unistd::close(fd);
    }
    let my_ns = std::fs::read_link("/proc/self/ns/user").ok();
    let limit = idle_limit();
    let tick = Duration::from_millis(500).min(limit);
    let mut idle = Duration::ZERO;
    loop {
        std::thread::sleep(tick);
        if others_in_namespace(me, my_ns.as_deref()) {
            idle = Duration::ZERO;
            continue;
        }
        idle += tick;
        if idle >= limit {
            // Remove the pid file only if it still names us (a newer keeper may own it).
            if std::fs::read_to_string(pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok()) == Some(me.as_raw()) {
                let _ = std::fs::remove_file(pid_file);
            }
            cove_sys::exit_now(0);
        }
    }
}

fn others_in_namespace(me: Pid, ns: Option<&Path>) -> bool {
    let Some(ns) = ns else { return false };
    let Ok(dir) = std::fs::read_dir("/proc") else { return true };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me.as_raw() {
            continue;
        }
        // A zombie (a killed keeper nobody reaped) holds nothing.
        if std::fs::read_link(format!("/proc/{pid}/ns/user")).ok().as_deref() == Some(ns) && !is_zombie(pid) {
            return true;
        }
    }
    false
}

/// Ends the keeper (for `cove system migrate`-like resets and tests). Containers still
/// running keep their namespace alive; the next command starts a new keeper that joins it.
pub fn stop_keeper(run_dir: &Path) -> bool {
    let paths = KeeperPaths::new(run_dir);
    if let Some(pid) = live_keeper(&paths) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = std::fs::remove_file(&paths.pid_file);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_maps() {
        use crate::NestedMaps;
        let single = [IdRange { container: 0, host: 1000, size: 1 }];
        let ranged =
            [IdRange { container: 0, host: 1000, size: 1 }, IdRange { container: 1, host: 100000, size: 65536 }];
        assert_eq!(NestedMaps::for_ids(0, 0, &single, &single), None);
        assert_eq!(NestedMaps::for_ids(1000, 1000, &ranged, &ranged), None);
        let m = NestedMaps::for_ids(10000, 0, &single, &single).unwrap();
        assert_eq!(m.uids, vec![IdRange { container: 10000, host: 0, size: 1 }]);
        assert_eq!(m.gids, vec![IdRange { container: 0, host: 0, size: 1 }]);
        let m = NestedMaps::for_ids(70000, 0, &ranged, &ranged).unwrap();
        assert_eq!(
            m.uids,
            vec![
                IdRange { container: 0, host: 0, size: 1 },
                IdRange { container: 1, host: 1, size: 65535 },
                IdRange { container: 70000, host: 65536, size: 1 }
            ]
        );
        assert_eq!(
            m.gids,
            vec![IdRange { container: 0, host: 0, size: 1 }, IdRange { container: 1, host: 1, size: 65536 }]
        );
        assert_eq!(NestedMaps::outer(&m.uids, 70000), Some(65536));
        assert_eq!(NestedMaps::outer(&m.uids, 5), Some(5));
        assert_eq!(NestedMaps::outer(&m.uids, 65536), None);
    }

    #[test]
    fn subid_parsing() {
        let t = "alice:100000:65536\n# c\nbob:200000:0\n1001:300000:1000\n";
        assert_eq!(parse_subid(t, "alice", 1000), Some((100000, 65536)));
        assert_eq!(parse_subid(t, "bob", 1002), None);
        assert_eq!(parse_subid(t, "carol", 1001), Some((300000, 1000)));
        assert_eq!(parse_subid("garbage", "x", 1), None);
    }

    #[test]
    fn map_parsing() {
        let m = parse_map("         0       1000          1\n         1     100000      65536\n");
        assert_eq!(
            m,
            vec![IdRange { container: 0, host: 1000, size: 1 }, IdRange { container: 1, host: 100000, size: 65536 }]
        );
    }
}
