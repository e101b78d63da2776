//! What the host offers and what this process may use of it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::proc::{parse_mountinfo, parse_proc_cgroup, CgroupMount, OwnCgroup};
use crate::{fs, Limits};

/// The v1 controllers cove manages (cpuacct only for usage statistics).
pub(crate) const V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "cpuset", "devices", "memory", "pids"];

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hierarchy {
    /// Pure cgroup v2 (normally at `/sys/fs/cgroup`).
    Unified,
    /// v1 controllers at `/sys/fs/cgroup/<controller>` plus a cgroup2 mount (usually
    /// `/sys/fs/cgroup/unified`) that holds no controllers. cove uses the v1 side only
    /// (a controller the kernel left on the v2 side is not used).
    Hybrid,
    /// Pure cgroup v1.
    Legacy,
    /// No cgroup filesystem with controllers is mounted.
    Unavailable,
}

impl fmt::Display for Hierarchy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hierarchy::Unified => "cgroup v2",
            Hierarchy::Hybrid => "cgroup v1 (hybrid)",
            Hierarchy::Legacy => "cgroup v1",
            Hierarchy::Unavailable => "no cgroups",
        })
    }
}

/// Where container cgroups go: `<parent>/<group>/<id>` (group `cove` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Nothing usable.
    None,
    /// cgroup v2: the root of the unified mount as root, or the top of the subtree delegated
    /// to the user.
    Unified { parent: PathBuf },
    /// cgroup v1: the parent directory per usable controller (controllers co-mounted in one
    /// hierarchy, such as `cpu,cpuacct`, share a directory).
    Legacy { parents: BTreeMap<String, PathBuf> },
}

/// What [`detect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    pub hierarchy: Hierarchy,
    /// Whether cove can create cgroups and apply limits here.
    pub usable: bool,
    /// The controllers cove can use (sorted): v2, those listed in the parent's
    /// `cgroup.controllers`; v1, the managed controllers whose hierarchy is writable.
    pub controllers: Vec<String>,
    /// Why limits cannot be applied, in one line, when `usable` is false.
    pub reason: Option<String>,
    pub layout: Layout,
}

impl Support {
    fn unusable(hierarchy: Hierarchy, reason: String) -> Support {
        Support { hierarchy, usable: false, controllers: Vec::new(), reason: Some(reason), layout: Layout::None }
    }

    /// A one-line warning for the user when some of `limits` cannot be applied here, or `None`
    /// when all can (or there are none).
    pub fn unmet(&self, limits: &Limits) -> Option<String> {
        if limits.is_empty() {
            return None;
        }
        if !self.usable {
            let reason = self.reason.as_deref().unwrap_or("cgroups are not usable");
            return Some(format!("resource limits not applied: {reason}"));
        }
        let missing: Vec<&str> = limits
            .controllers()
            .into_iter()
            .filter(|c| !self.controllers.iter().any(|have| have == c))
            .filter(|c| !(*c == "devices" && self.hierarchy == Hierarchy::Unified))
            .collect();
        if missing.is_empty() {
            return None;
        }
        let list = missing.join(", ");
        let (s, verb) = if missing.len() == 1 { ("", "is") } else { ("s", "are") };
        Some(format!(
            "{list} limits not applied: the {list} controller{s} {verb} not available to this \
             user on this {} host (available: {})",
            self.hierarchy,
            if self.controllers.is_empty() { "none".into() } else { self.controllers.join(", ") }
        ))
    }
}

/// Detect what this process can use, from `/proc/self/mountinfo` and `/proc/self/cgroup`.
///
/// `rootless` says the caller runs as a non-root host user; it only shapes the explanation in
/// [`Support::reason`] (and is implied inside a user namespace). Permission itself is judged by
/// writability (`eaccess(2)`), never by `getuid()`, so uid 0 inside a user namespace gets what
/// the host user may do.
pub fn detect(rootless: bool) -> Support {
    let rootless = rootless || in_user_namespace();
    let mountinfo = match fs::read(Path::new("/proc/self/mountinfo")) {
        Ok(text) => text,
        Err(e) => return Support::unusable(Hierarchy::Unavailable, e.to_string()),
    };
    let proc_cgroup = fs::read(Path::new("/proc/self/cgroup")).unwrap_or_else(|e| {
        tracing::debug!("{e}");
        String::new()
    });
    detect_from(&mountinfo, &proc_cgroup, rootless)
}

/// [`detect`] from given `/proc/self/mountinfo` and `/proc/self/cgroup` text; the mount points
/// named there are inspected, so tests can point them at fake trees.
pub fn detect_from(mountinfo: &str, proc_cgroup: &str, rootless: bool) -> Support {
    detect_with(mountinfo, proc_cgroup, rootless, fs::writable)
}

/// Whether this process is in a user namespace other than the initial one, whose uid map is
/// the identity over the whole range.
fn in_user_namespace() -> bool {
    match fs::read(Path::new("/proc/self/uid_map")) {
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}

pub(crate) fn detect_with(mountinfo: &str, proc_cgroup: &str, rootless: bool, writable: fn(&Path) -> bool) -> Support {
    let mounts = parse_mountinfo(mountinfo);
    let own = parse_proc_cgroup(proc_cgroup).unwrap_or_else(|e| {
        tracing::debug!("{e}; assuming the root cgroup");
        OwnCgroup::default()
    });
    let hierarchy = mounts.hierarchy();
    let support = match (hierarchy, &mounts.unified) {
        (Hierarchy::Unavailable, _) => {
            Support::unusable(hierarchy, "no cgroup filesystem with controllers is mounted".to_string())
        }
        (Hierarchy::Unified, Some(mount)) => detect_v2(mount, own.unified.as_deref(), rootless, writable),
        _ => detect_v1(hierarchy, &mounts, &own, rootless, writable),
    };
    tracing::debug!(?support, "cgroup support");
    support
}

/// The topmost directory from the mount root down to this process's own cgroup that we may
/// write, with `files` in it writable too: the root of the mount as root, the top of the
/// delegated subtree for a user.
fn delegation_root(
    mount: &CgroupMount,
    own_path: Option<&str>,
    files: &[&str],
    writable: fn(&Path) -> bool,
) -> Option<PathBuf> {
    let own = own_path.and_then(|p| mount.dir_of(p)).unwrap_or_else(|| mount.mount_point.clone());
    let mut chain: Vec<&Path> = own.ancestors().take_while(|a| a.starts_with(&mount.mount_point)).collect();
    chain.reverse();
    chain.into_iter().find(|dir| writable(dir) && files.iter().all(|f| writable(&dir.join(f)))).map(Path::to_path_buf)
}

fn detect_v2(mount: &CgroupMount, own_path: Option<&str>, rootless: bool, writable: fn(&Path) -> bool) -> Support {
    let hierarchy = Hierarchy::Unified;
    let files = ["cgroup.procs", "cgroup.subtree_control"];
    let Some(parent) = delegation_root(mount, own_path, &files, writable) else {
        let own = own_path.and_then(|p| mount.dir_of(p)).unwrap_or(mount.mount_point.clone());
        let reason = if rootless {
            format!(
                "cgroup v2 host, but {} is not delegated to this user; run cove in a delegated \
                 cgroup (e.g. systemd-run --user --scope -p Delegate=yes) or as root",
                own.display()
            )
        } else {
            format!("{} is not writable (read-only cgroup mount?)", mount.mount_point.display())
        };
        return Support::unusable(hierarchy, reason);
    };
    let listed = parent.join("cgroup.controllers");
    let controllers: Vec<String> = match fs::read_opt(&listed) {
        Ok(text) => {
            let mut c: Vec<String> = text.unwrap_or_default().split_whitespace().map(str::to_string).collect();
            c.sort();
            c
        }
        Err(e) => return Support::unusable(hierarchy, e.to_string()),
    };
    if controllers.is_empty() {
        return Support::unusable(
            hierarchy,
            format!("no controllers are delegated to {} (empty {})", parent.display(), listed.display()),
        );
    }
    // The root cgroup has no cgroup.events and is exempt from the no-internal-processes rule.
    let is_root = !parent.join("cgroup.events").exists();
    let busy = !is_root && matches!(fs::read_opt(&parent.join("cgroup.procs")), Ok(Some(p)) if !p.is_empty());
    if busy {
        return Support::unusable(
            hierarchy,
            format!(
                "{} is delegated but has processes in it, so cgroup v2 cannot enable controllers \
                 for cgroups below it; run cove in a delegated cgroup of its own",
                parent.display()
            ),
        );
    }
    Support { hierarchy, usable: true, controllers, reason: None, layout: Layout::Unified { parent } }
}

fn detect_v1(
    hierarchy: Hierarchy,
    mounts: &crate::CgroupMounts,
    own: &OwnCgroup,
    rootless: bool,
    writable: fn(&Path) -> bool,
) -> Support {
    let mut parents = BTreeMap::new();
    let mut refused = Vec::new();
    for &ctrl in V1_CONTROLLERS {
        let Some(mount) = mounts.legacy_mount(ctrl) else {
            continue;
        };
        match delegation_root(mount, own.legacy_path(ctrl), &["cgroup.procs"], writable) {
            Some(dir) => {
                parents.insert(ctrl.to_string(), dir);
            }
            None => refused.push(mount.mount_point.clone()),
        }
    }
    if parents.is_empty() {
        let reason = if refused.is_empty() {
            format!("{hierarchy} host: none of the cpu, cpuset, memory and pids controllers is mounted")
        } else if rootless {
            format!(
                "{hierarchy} host: unprivileged users cannot create cgroups without delegation; \
                 run as root or use a cgroup v2 host with a delegated subtree"
            )
        } else {
            format!("{hierarchy} host: {} is not writable (read-only cgroup mount?)", refused[0].display())
        };
        return Support::unusable(hierarchy, reason);
    }
    Support {
        hierarchy,
        usable: true,
        controllers: parents.keys().cloned().collect(),
        reason: None,
        layout: Layout::Legacy { parents },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Fake writability for fake trees: the owner write bit, so the tests mean the same as
    /// root (for whom eaccess(W_OK) always succeeds) and as a user.
    pub(crate) fn mode_writable(p: &Path) -> bool {
        std::fs::metadata(p).map(|m| m.permissions().mode() & 0o200 != 0).unwrap_or(false)
    }

    pub(crate) fn file(path: &Path, content: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub(crate) fn read_only(path: &Path) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
    }

    /// A fake v2 host: `<tmp>/cg` is the unified mount, with systemd's user delegation below.
    pub(crate) struct FakeV2 {
        pub tmp: tempfile::TempDir,
        pub mountinfo: String,
        pub delegated: PathBuf,
    }

    pub(crate) const USER_SCOPE: &str = "/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope";

    /// What real root sees: everything writable.
    pub(crate) fn all_writable(_: &Path) -> bool {
        true
    }

    pub(crate) fn fake_v2() -> FakeV2 {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cg");
        file(&root.join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n");
        file(&root.join("cgroup.subtree_control"), "cpu memory pids\n");
        file(&root.join("cgroup.procs"), "1\n");
        let mut dirs = vec![root.clone()];
        let mut dir = root.clone();
        for comp in USER_SCOPE.trim_start_matches('/').split('/') {
            dir.push(comp);
            file(&dir.join("cgroup.controllers"), "cpu memory pids\n");
            file(&dir.join("cgroup.subtree_control"), "");
            file(&dir.join("cgroup.procs"), "");
            file(&dir.join("cgroup.events"), "populated 1\nfrozen 0\n");
            dirs.push(dir.clone());
        }
        file(&dir.join("cgroup.procs"), "4242\n");
        // systemd delegates user@1000.service and below; the slices above belong to root
        for d in &dirs[..3] {
            read_only(&d.join("cgroup.procs"));
            read_only(&d.join("cgroup.subtree_control"));
        }
        let mountinfo = format!("28 24 0:25 / {} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", root.display());
        FakeV2 { tmp, mountinfo, delegated: dirs[3].clone() }
    }

    #[test]
    fn v2_delegated_subtree() {
        let f = fake_v2();
        let proc_cgroup = format!("0::{USER_SCOPE}\n");
        let s = detect_with(&f.mountinfo, &proc_cgroup, true, mode_writable);
        assert_eq!(s.hierarchy, Hierarchy::Unified);
        assert!(s.usable, "{s:?}");
        assert_eq!(s.reason, None);
        assert_eq!(s.controllers, ["cpu", "memory", "pids"]);
        assert_eq!(s.layout, Layout::Unified { parent: f.delegated.clone() });
        let l = Limits { memory: Some(64 << 20), ..Limits::default() };
        assert_eq!(s.unmet(&l), None);
        let l = Limits { cpuset_cpus: Some("0".into()), ..Limits::default() };
        let w = s.unmet(&l).unwrap();
        assert!(w.starts_with("cpuset limits not applied: the cpuset controller is not"), "{w}");
        assert!(w.ends_with("(available: cpu, memory, pids)"), "{w}");
    }

    #[test]
    fn v2_not_delegated() {
        let f = fake_v2();
        // a login session scope: owned by root
        let proc_cgroup = "0::/user.slice/user-1000.slice/session-3.scope\n";
        let s = detect_with(&f.mountinfo, proc_cgroup, true, mode_writable);
        assert!(!s.usable);
        assert_eq!(s.layout, Layout::None);
        let reason = s.reason.clone().unwrap();
        assert!(reason.starts_with("cgroup v2 host, but "), "{reason}");
        assert!(reason.contains("session-3.scope is not delegated to this user"), "{reason}");
        let l = Limits { pids: Some(10), ..Limits::default() };
        assert_eq!(s.unmet(&l).unwrap(), format!("resource limits not applied: {reason}"));
        assert_eq!(s.unmet(&Limits::default()), None);
    }

    #[test]
    fn v2_root_uses_mount_root() {
        let f = fake_v2();
        let root = f.tmp.path().join("cg");
        let s = detect_with(&f.mountinfo, "0::/init.scope\n", false, all_writable);
        assert!(s.usable, "{s:?}");
        assert_eq!(s.layout, Layout::Unified { parent: root.clone() });
        assert_eq!(s.controllers, ["cpu", "cpuset", "hugetlb", "io", "memory", "misc", "pids", "rdma"]);

        // no controllers delegated
        std::fs::write(root.join("cgroup.controllers"), "").unwrap();
        let s = detect_with(&f.mountinfo, "0::/\n", false, all_writable);
        assert!(!s.usable);
        assert!(s.reason.unwrap().starts_with("no controllers are delegated to "));
    }

    #[test]
    fn v2_delegated_leaf_with_processes() {
        let f = fake_v2();
        // only the scope itself is delegated, and it holds the caller
        let scope = f.tmp.path().join("cg").join(USER_SCOPE.trim_start_matches('/'));
        for d in [f.delegated.clone(), f.delegated.join("app.slice")] {
            read_only(&d.join("cgroup.procs"));
        }
        let s = detect_with(&f.mountinfo, &format!("0::{USER_SCOPE}\n"), true, mode_writable);
        assert!(!s.usable);
        let reason = s.reason.unwrap();
        assert!(reason.starts_with(&format!("{} is delegated but has processes", scope.display())));
    }

    /// A fake hybrid host like the machine cove is developed on.
    pub(crate) fn fake_hybrid() -> (tempfile::TempDir, String) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let mut mountinfo = String::new();
        for (i, ctrl) in ["cpu", "cpuacct", "cpuset", "memory", "pids", "systemd"].iter().enumerate() {
            let opt = if *ctrl == "systemd" { "name=systemd" } else { ctrl };
            file(&root.join(ctrl).join("cgroup.procs"), "");
            read_only(&root.join(ctrl).join("cgroup.procs"));
            mountinfo +=
                &format!("{} 31 0:{i} / {} rw,relatime - cgroup cgroup rw,{opt}\n", 32 + i, root.join(ctrl).display());
        }
        file(&root.join("unified/cgroup.controllers"), "");
        mountinfo += &format!("41 31 0:38 / {} rw,relatime - cgroup2 cgroup2 rw\n", root.join("unified").display());
        (tmp, mountinfo)
    }

    #[test]
    fn hybrid_as_root() {
        let (tmp, mountinfo) = fake_hybrid();
        let s = detect_with(&mountinfo, "4:memory:/process_api/x\n1:cpu:/\n0::/\n", false, all_writable);
        assert_eq!(s.hierarchy, Hierarchy::Hybrid);
        assert!(s.usable, "{s:?}");
        assert_eq!(s.controllers, ["cpu", "cpuacct", "cpuset", "memory", "pids"]);
        let Layout::Legacy { parents } = &s.layout else { panic!("{s:?}") };
        assert_eq!(parents["memory"], tmp.path().join("memory"));
        assert_eq!(parents["cpuacct"], tmp.path().join("cpuacct"));
    }

    #[test]
    fn hybrid_unprivileged() {
        let (_tmp, mountinfo) = fake_hybrid();
        let s = detect_with(&mountinfo, "4:memory:/\n0::/\n", true, mode_writable);
        assert_eq!(s.hierarchy, Hierarchy::Hybrid);
        assert!(!s.usable);
        assert_eq!(
            s.reason.as_deref(),
            Some(
                "cgroup v1 (hybrid) host: unprivileged users cannot create cgroups without \
                 delegation; run as root or use a cgroup v2 host with a delegated subtree"
            )
        );
        let s = detect_with(&mountinfo, "", false, mode_writable);
        let reason = s.reason.unwrap();
        assert!(reason.ends_with("cpu is not writable (read-only cgroup mount?)"), "{reason}");
    }

    #[test]
    fn nothing_mounted() {
        let s = detect_with("22 1 0:21 / /proc rw - proc proc rw\n", "", true, mode_writable);
        assert_eq!(s.hierarchy, Hierarchy::Unavailable);
        assert!(!s.usable);
        assert_eq!(s.reason.as_deref(), Some("no cgroup filesystem with controllers is mounted"));
    }
}
