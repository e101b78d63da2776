//! Parsers for `/proc/self/cgroup` and `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The cgroups this process belongs to, as `/proc/self/cgroup` lists them.
///
/// Paths are relative to the root of each hierarchy as this process's cgroup namespace sees
/// it, and always start with `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnCgroup {
    /// The cgroup v2 path (the `0::/path` line), when the unified hierarchy exists.
    pub unified: Option<String>,
    /// cgroup v1 hierarchies: the controllers bound to each (including `name=systemd` style
    /// named hierarchies) and the path in it.
    pub legacy: Vec<(Vec<String>, String)>,
}

impl OwnCgroup {
    /// The path in the v1 hierarchy that has `controller` bound to it.
    pub fn legacy_path(&self, controller: &str) -> Option<&str> {
        self.legacy.iter().find(|(ctrls, _)| ctrls.iter().any(|c| c == controller)).map(|(_, p)| p.as_str())
    }
}

/// This process's cgroups, from `/proc/self/cgroup`.
pub fn own_cgroup() -> Result<OwnCgroup> {
    let path = Path::new("/proc/self/cgroup");
    parse_proc_cgroup(&crate::fs::read(path)?)
}

/// Parse the text of `/proc/<pid>/cgroup`: `hierarchy-id:controller,list:/path` lines; the v2
/// line is `0::/path`. Both pure v1, pure v2 and hybrid files are accepted.
pub fn parse_proc_cgroup(text: &str) -> Result<OwnCgroup> {
    let mut own = OwnCgroup::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let bad = |reason| Error::Parse { what: "/proc/self/cgroup", line: line.to_string(), reason };
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected id:controllers:path"));
        };
        id.parse::<u32>().map_err(|_| bad("hierarchy id is not a number"))?;
        if !path.starts_with('/') {
            return Err(bad("path is not absolute"));
        }
        if id == "0" && ctrls.is_empty() {
            own.unified = Some(path.to_string());
        } else {
            let ctrls: Vec<String> = ctrls.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect();
            if ctrls.is_empty() {
                return Err(bad("v1 hierarchy without controllers"));
            }
            own.legacy.push((ctrls, path.to_string()));
        }
    }
    Ok(own)
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where it is mounted (`/sys/fs/cgroup/memory`).
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy is the mount's root (`/` unless bind-mounted).
    pub root: String,
    /// v1: the controllers bound to the hierarchy, plus `name=...` for named ones. v2: empty.
    pub controllers: Vec<String>,
}

impl CgroupMount {
    /// The directory of cgroup `path` (as in `/proc/self/cgroup`) under this mount, when that
    /// cgroup is visible through it.
    pub fn dir_of(&self, path: &str) -> Option<PathBuf> {
        let rel = if self.root == "/" {
            path
        } else {
            let rest = path.strip_prefix(self.root.as_str())?;
            if !rest.is_empty() && !rest.starts_with('/') {
                return None;
            }
            rest
        };
        let mut dir = self.mount_point.clone();
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            if comp == "." || comp == ".." {
                return None;
            }
            dir.push(comp);
        }
        Some(dir)
    }

    fn has_real_controller(&self) -> bool {
        self.controllers.iter().any(|c| !c.starts_with("name="))
    }
}

/// The cgroup filesystems mounted in this mount namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// The cgroup2 mount (preferring `/sys/fs/cgroup` when there are several).
    pub unified: Option<CgroupMount>,
    /// cgroup v1 mounts, one per hierarchy (the first mount of each).
    pub legacy: Vec<CgroupMount>,
}

impl CgroupMounts {
    /// The v1 mount that has `controller` bound.
    pub fn legacy_mount(&self, controller: &str) -> Option<&CgroupMount> {
        self.legacy.iter().find(|m| m.controllers.iter().any(|c| c == controller))
    }

    /// Classify the host: v1 controllers and a cgroup2 mount is hybrid; named-only v1
    /// hierarchies (`name=systemd`) do not count as controllers.
    pub fn hierarchy(&self) -> crate::Hierarchy {
        use crate::Hierarchy::*;
        let v1 = self.legacy.iter().any(CgroupMount::has_real_controller);
        match (v1, self.unified.is_some()) {
            (true, true) => Hybrid,
            (true, false) => Legacy,
            (false, true) => Unified,
            (false, false) => Unavailable,
        }
    }
}

/// Unescape the octal escapes (`\040` for a space) the kernel uses in mountinfo fields.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |d: &u8| (b'0'..=b'7').contains(d);
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(octal) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse `/proc/self/mountinfo` text, keeping the `cgroup` and `cgroup2` mounts. Malformed
/// lines are skipped (they cannot be cgroup mounts we could use).
pub fn parse_mountinfo(text: &str) -> CgroupMounts {
    let mut mounts = CgroupMounts::default();
    for line in text.lines() {
        // id parent maj:min root mount-point options [optional fields...] - fstype source super
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 6 || fields.len() < sep + 3 {
            continue;
        }
        let (fstype, superopts) = (fields[sep + 1], fields[sep + 3..].first().copied());
        let mount = CgroupMount {
            mount_point: PathBuf::from(unescape(fields[4])),
            root: unescape(fields[3]),
            controllers: Vec::new(),
        };
        match fstype {
            "cgroup2" => {
                let preferred = mount.mount_point == Path::new("/sys/fs/cgroup");
                if mounts.unified.is_none() || preferred {
                    mounts.unified = Some(mount);
                }
            }
            "cgroup" => {
                let controllers: Vec<String> = superopts
                    .unwrap_or("")
                    .split(',')
                    .filter(|o| is_controller_option(o))
                    .map(str::to_string)
                    .collect();
                if controllers.is_empty() || mounts.legacy.iter().any(|m| m.controllers == controllers) {
                    continue;
                }
                mounts.legacy.push(CgroupMount { controllers, ..mount });
            }
            _ => {}
        }
    }
    mounts
}

/// v1 super options mix mount flags with controller names; keep the controllers.
fn is_controller_option(opt: &str) -> bool {
    const NOT_CONTROLLERS: &[&str] =
        &["rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "none", "all"];
    !opt.is_empty()
        && !NOT_CONTROLLERS.contains(&opt)
        && !opt.starts_with("release_agent=")
        && (opt.starts_with("name=") || !opt.contains('='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hierarchy;

    const V1: &str = "\
12:pids:/user.slice/user-1000.slice/session-2.scope
11:cpu,cpuacct:/user.slice
10:memory:/user.slice/user-1000.slice/session-2.scope
5:cpuset:/
1:name=systemd:/user.slice/user-1000.slice/session-2.scope
";
    const HYBRID: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/4369cbbc65a6c7920b4c21bdbbb3e867
1:cpu:/
0::/
";
    const V2: &str = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.scope\n";

    #[test]
    fn proc_cgroup_v1() {
        let own = parse_proc_cgroup(V1).unwrap();
        assert_eq!(own.unified, None);
        assert_eq!(own.legacy.len(), 5);
        assert_eq!(own.legacy_path("cpuacct"), Some("/user.slice"));
        assert_eq!(own.legacy_path("cpu"), Some("/user.slice"));
        assert_eq!(own.legacy_path("memory"), Some("/user.slice/user-1000.slice/session-2.scope"));
        assert_eq!(own.legacy_path("name=systemd").map(str::len), Some(43));
        assert_eq!(own.legacy_path("blkio"), None);
    }

    #[test]
    fn proc_cgroup_hybrid() {
        let own = parse_proc_cgroup(HYBRID).unwrap();
        assert_eq!(own.unified.as_deref(), Some("/"));
        assert_eq!(own.legacy_path("memory"), Some("/process_api/4369cbbc65a6c7920b4c21bdbbb3e867"));
        assert_eq!(own.legacy_path("pids"), Some("/"));
    }

    #[test]
    fn proc_cgroup_v2() {
        let own = parse_proc_cgroup(V2).unwrap();
        assert!(own.legacy.is_empty());
        assert_eq!(own.unified.as_deref(), Some("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.scope"));
        // a colon in the path is part of the path
        let own = parse_proc_cgroup("0::/a:b\n").unwrap();
        assert_eq!(own.unified.as_deref(), Some("/a:b"));
    }

    #[test]
    fn proc_cgroup_errors() {
        for bad in ["garbage", "x::/", "0::relative", "3::/"] {
            let err = parse_proc_cgroup(bad).unwrap_err().to_string();
            assert!(err.starts_with("parse /proc/self/cgroup: "), "{err}");
            assert!(err.contains(bad), "{err}");
        }
    }

    const MOUNTINFO_HYBRID: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const MOUNTINFO_V1: &str = "\
25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:14 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/cpuset rw,nosuid shared:15 - cgroup cgroup rw,cpuset,clone_children
90 30 0:27 /docker /mnt/my\\040mem rw - cgroup cgroup rw,memory
";
    const MOUNTINFO_V2: &str = "\
24 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
28 24 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn mountinfo_hybrid() {
        let m = parse_mountinfo(MOUNTINFO_HYBRID);
        assert_eq!(m.hierarchy(), Hierarchy::Hybrid);
        assert_eq!(m.unified.as_ref().unwrap().mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(m.legacy.len(), 5);
        assert_eq!(m.legacy_mount("memory").unwrap().mount_point, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(m.legacy_mount("cpuacct").unwrap().controllers, ["cpuacct"]);
        assert!(m.legacy_mount("name=systemd").is_some());
    }

    #[test]
    fn mountinfo_v1() {
        let m = parse_mountinfo(MOUNTINFO_V1);
        assert_eq!(m.hierarchy(), Hierarchy::Legacy);
        let cpu = m.legacy_mount("cpuacct").unwrap();
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
        assert_eq!(cpu.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m.legacy_mount("cpuset").unwrap().controllers, ["cpuset"]);
        assert_eq!(m.legacy_mount("name=systemd").unwrap().controllers, ["name=systemd"]);
        // the second mount of the memory hierarchy (a bind of /docker) is ignored
        assert_eq!(m.legacy.len(), 4);
        assert_eq!(m.legacy_mount("memory").unwrap().mount_point, Path::new("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn mountinfo_v2_and_none() {
        let m = parse_mountinfo(MOUNTINFO_V2);
        assert_eq!(m.hierarchy(), Hierarchy::Unified);
        assert_eq!(m.unified.unwrap().mount_point, Path::new("/sys/fs/cgroup"));
        assert_eq!(parse_mountinfo("").hierarchy(), Hierarchy::Unavailable);
        // only a named v1 hierarchy: no controllers anywhere
        let named = "26 25 0:23 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
        assert_eq!(parse_mountinfo(named).hierarchy(), Hierarchy::Unavailable);
    }

    #[test]
    fn mountinfo_escapes_and_bind_roots() {
        let text = "90 30 0:27 /docker /mnt/my\\040mem rw - cgroup cgroup rw,memory\n";
        let m = parse_mountinfo(text);
        let mem = m.legacy_mount("memory").unwrap();
        assert_eq!(mem.mount_point, Path::new("/mnt/my mem"));
        assert_eq!(mem.root, "/docker");
        assert_eq!(mem.dir_of("/docker/abc"), Some(PathBuf::from("/mnt/my mem/abc")));
        assert_eq!(mem.dir_of("/docker"), Some(PathBuf::from("/mnt/my mem")));
        assert_eq!(mem.dir_of("/dockerx"), None);
        assert_eq!(mem.dir_of("/other"), None);
        assert_eq!(mem.dir_of("/docker/../x"), None);
    }
}
