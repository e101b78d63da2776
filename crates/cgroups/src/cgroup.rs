//! A container's cgroup: creation with limits, membership, removal, statistics.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::detect::V1_CONTROLLERS;
use crate::limits::Write;
use crate::{fs, Error, Layout, Limits, Result, Support};

/// The directory under the parent that holds every cove container's cgroup.
pub const DEFAULT_GROUP: &str = "cove";

/// Usage numbers for `cove stats`; `None` when the controller is not in use here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Memory in use, bytes (v2 `memory.current`, v1 `memory.usage_in_bytes`).
    pub memory_usage: Option<u64>,
    /// The memory limit in bytes, `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// Number of tasks (`pids.current`).
    pub pids_current: Option<u64>,
    /// The pids limit, `None` when unlimited.
    pub pids_limit: Option<u64>,
    /// Total CPU time, nanoseconds (v2 `cpu.stat` usage_usec, v1 `cpuacct.usage`).
    pub cpu_usage_ns: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Dirs {
    /// cgroup v2: one directory.
    Unified(PathBuf),
    /// cgroup v1: the directory per controller (co-mounted controllers share one).
    Legacy(BTreeMap<String, PathBuf>),
}

/// A container's cgroup, in one (v2) or several (v1) hierarchies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    id: String,
    dirs: Dirs,
    warnings: Vec<String>,
}

/// A cgroup directory name must be one plain path component.
fn check_name(name: &str) -> Result<()> {
    let bad = |reason| Err(Error::InvalidName { name: name.to_string(), reason });
    if name.is_empty() || name == "." || name == ".." {
        return bad("must be a non-empty name");
    }
    if name.contains(['/', '\0', '\n']) {
        return bad("must not contain '/', newlines or NUL");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    Ok(())
}

impl Cgroup {
    /// Create the container's cgroup `<parent>/cove/<id>` and write `limits`.
    ///
    /// v2: enables the needed controllers (plus memory and pids, for statistics) in the
    /// parent's and `cove`'s `cgroup.subtree_control`. v1: one directory per needed controller
    /// (plus memory, cpuacct and pids for statistics when available); cpuset directories get
    /// `cpuset.cpus`/`cpuset.mems` copied from their parent, as the kernel requires.
    ///
    /// Limits whose controller is not available here, and a swap limit without swap
    /// accounting, are skipped and reported by [`Cgroup::warnings`]; any other failure is an
    /// error naming the file and errno, after removing what was created. An existing
    /// directory (a leftover of a crashed container with the same id) is reused.
    pub fn create(id: &str, limits: &Limits, support: &Support) -> Result<Cgroup> {
        Self::create_in(DEFAULT_GROUP, id, limits, support)
    }

    /// [`Cgroup::create`] under `group` instead of `cove` (tests use a group of their own).
    pub fn create_in(group: &str, id: &str, limits: &Limits, support: &Support) -> Result<Cgroup> {
        check_name(group)?;
        check_name(id)?;
        let span = tracing::debug_span!("cgroup", id);
        let _enter = span.enter();
        if !support.usable {
            let reason = support.reason.clone().unwrap_or_else(|| "cgroups are not usable".into());
            return Err(Error::Unavailable(reason));
        }
        let mut cg = Cgroup { id: id.to_string(), dirs: Dirs::Unified(PathBuf::new()), warnings: Vec::new() };
        let available = |c: &str| support.controllers.iter().any(|have| have == c);
        // Device rules on cgroup v2 are an eBPF program, not a controller (see create_v2).
        let v2 = matches!(support.layout, Layout::Unified { .. });
        let skipped = |c: &str| available(c) || (v2 && c == "devices");
        for c in limits.controllers().into_iter().filter(|c| !skipped(c)) {
            cg.warnings.push(format!(
                "{c} limits not applied: the {c} controller is not available to this user on this {} host",
                support.hierarchy
            ));
        }
        match &support.layout {
            Layout::None => return Err(Error::Unavailable("no place to create cgroups".to_string())),
            Layout::Unified { parent } => {
                let plan = limits.plan_v2()?;
                cg.create_v2(parent, group, limits, &plan, &support.controllers)?;
            }
            Layout::Legacy { parents } => {
                let plan = limits.plan_v1()?;
                cg.create_v1(parents, group, limits, &plan)?;
            }
        }
        for w in &cg.warnings {
            tracing::debug!("{w}");
        }
        tracing::debug!(paths = ?cg.paths(), "cgroup created");
        Ok(cg)
    }

    fn create_v2(
        &mut self,
        parent: &Path,
        group: &str,
        limits: &Limits,
        plan: &[Write],
        available: &[String],
    ) -> Result<()> {
        let needed: Vec<&str> = limits.controllers().into_iter().filter(|c| available.iter().any(|a| a == c)).collect();
        let mut wanted = needed.clone();
        for c in ["memory", "pids"] {
            if available.iter().any(|a| a == c) && !wanted.contains(&c) {
                wanted.push(c);
            }
        }
        let group_dir = parent.join(group);
        fs::mkdir(&group_dir)?;
        enable_controllers(parent, &wanted, &needed)?;
        enable_controllers(&group_dir, &wanted, &needed)?;
        let dir = group_dir.join(&self.id);
        let created = fs::mkdir(&dir)?;
        self.dirs = Dirs::Unified(dir.clone());
        let writes = plan.iter().filter(|w| needed.contains(&w.controller));
        let dirs = BTreeMap::from_iter(needed.iter().map(|c| (c.to_string(), dir.clone())));
        let applied = self.apply(writes, &dirs).and_then(|()| attach_device_program(&dir, &limits.devices));
        if let Err(e) = applied {
            if created {
                let _ = fs::rmdir(&dir);
            }
            return Err(e);
        }
        Ok(())
    }

    fn create_v1(
        &mut self,
        parents: &BTreeMap<String, PathBuf>,
        group: &str,
        limits: &Limits,
        plan: &[Write],
    ) -> Result<()> {
        let needed = limits.controllers();
        let mut wanted: Vec<&str> = needed.clone();
        wanted.extend(["cpuacct", "memory", "pids"]); // for statistics
        let mut dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut created: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for &ctrl in V1_CONTROLLERS.iter().filter(|c| wanted.contains(c)) {
                let Some(parent) = parents.get(ctrl) else {
                    continue;
                };
                let dir = parent.join(group).join(&self.id);
                if let Some(shared) = dirs.values().find(|d| **d == dir).cloned() {
                    dirs.insert(ctrl.to_string(), shared); // co-mounted, e.g. cpu,cpuacct
                    continue;
                }
                match make_v1_dir(parent, group, &self.id, ctrl == "cpuset") {
                    Ok(new) => {
                        if new {
                            created.push(dir.clone());
                        }
                        dirs.insert(ctrl.to_string(), dir);
                    }
                    Err(e) if needed.contains(&ctrl) => return Err(e),
                    Err(e) => tracing::debug!("skipping optional controller {ctrl}: {e}"),
                }
            }
            // a controller co-mounted with a needed one gets its directory too
            let writes = plan.iter().filter(|w| dirs.contains_key(w.controller));
            self.apply(writes, &dirs)
        })();
        if let Err(e) = result {
            for dir in created.iter().rev() {
                let _ = fs::rmdir(dir);
            }
            return Err(e);
        }
        self.dirs = Dirs::Legacy(dirs);
        Ok(())
    }

    /// Perform `writes`; a refused write (EINVAL, EBUSY: ordering constraints between memory
    /// and memory+swap, or period and quota, when existing limits change) is retried once
    /// after the others.
    fn apply<'a>(&mut self, writes: impl Iterator<Item = &'a Write>, dirs: &BTreeMap<String, PathBuf>) -> Result<()> {
        let mut retry = Vec::new();
        for w in writes {
            let Some(dir) = dirs.get(w.controller) else {
                continue;
            };
            let path = dir.join(w.file);
            if w.optional && !path.exists() {
                self.warnings.push(format!(
                    "memory-swap limit not applied: {} does not exist (swap accounting is not \
                     enabled in this kernel)",
                    path.display()
                ));
                continue;
            }
            match fs::write(&path, &w.value) {
                Ok(()) => {}
                Err(Error::Write { ref source, .. })
                    if matches!(source.kind(), ErrorKind::InvalidInput | ErrorKind::ResourceBusy) =>
                {
                    retry.push((path, w));
                }
                Err(e) => return Err(e),
            }
        }
        for (path, w) in retry {
            fs::write(&path, &w.value)?;
        }
        Ok(())
    }

    /// The cgroup of container `id` made earlier by [`Cgroup::create`] (perhaps by another
    /// process), for [`Cgroup::stats`] or [`Cgroup::remove`].
    pub fn open(id: &str, support: &Support) -> Result<Cgroup> {
        Self::open_in(DEFAULT_GROUP, id, support)
    }

    /// [`Cgroup::open`] under `group`.
    pub fn open_in(group: &str, id: &str, support: &Support) -> Result<Cgroup> {
        check_name(group)?;
        check_name(id)?;
        let dirs = match &support.layout {
            Layout::None => None,
            Layout::Unified { parent } => {
                let dir = parent.join(group).join(id);
                dir.is_dir().then_some(Dirs::Unified(dir))
            }
            Layout::Legacy { parents } => {
                let dirs: BTreeMap<_, _> = parents
                    .iter()
                    .map(|(c, p)| (c.clone(), p.join(group).join(id)))
                    .filter(|(_, d)| d.is_dir())
                    .collect();
                (!dirs.is_empty()).then_some(Dirs::Legacy(dirs))
            }
        };
        let dirs = dirs.ok_or_else(|| Error::NotFound(id.to_string()))?;
        Ok(Cgroup { id: id.to_string(), dirs, warnings: Vec::new() })
    }

    /// The container id this cgroup belongs to.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Limits that could not be applied, one line each, for the caller to show the user.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The cgroup's directories, one per hierarchy, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.dirs {
            Dirs::Unified(dir) => vec![dir.clone()],
            Dirs::Legacy(dirs) => {
                let mut paths: Vec<PathBuf> = dirs.values().cloned().collect();
                paths.sort();
                paths.dedup();
                paths
            }
        }
    }

    /// Move process `pid` (with all its threads) into the cgroup, in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        for dir in self.paths() {
            fs::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in the cgroup (the union over all hierarchies, sorted).
    pub fn procs(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        for dir in self.paths() {
            let text = fs::read(&dir.join("cgroup.procs"))?;
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Remove the cgroup's directories once its processes have exited, retrying briefly while
    /// the kernel reports EBUSY. Keeps going past failures and reports them all. The shared
    /// `cove` directory is left in place.
    pub fn remove(&self) -> Result<()> {
        let span = tracing::debug_span!("cgroup", id = %self.id);
        let _enter = span.enter();
        let mut errors: Vec<Error> = self.paths().iter().filter_map(|dir| fs::rmdir(dir).err()).collect();
        match errors.len() {
            0 => {
                tracing::debug!("cgroup removed");
                Ok(())
            }
            1 => Err(errors.remove(0)),
            _ => Err(Error::Multiple(errors)),
        }
    }

    /// Current usage.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        match &self.dirs {
            Dirs::Unified(dir) => {
                s.memory_usage = read_u64(&dir.join("memory.current"))?;
                s.memory_limit = read_u64(&dir.join("memory.max"))?;
                s.pids_current = read_u64(&dir.join("pids.current"))?;
                s.pids_limit = read_u64(&dir.join("pids.max"))?;
                if let Some(text) = fs::read_opt(&dir.join("cpu.stat"))? {
                    s.cpu_usage_ns = text
                        .lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|us| us * 1000);
                }
            }
            Dirs::Legacy(dirs) => {
                if let Some(dir) = dirs.get("memory") {
                    s.memory_usage = read_u64(&dir.join("memory.usage_in_bytes"))?;
                    // v1 spells unlimited as a huge page-aligned number
                    s.memory_limit = read_u64(&dir.join("memory.limit_in_bytes"))?.filter(|l| *l < (1u64 << 62));
                }
                if let Some(dir) = dirs.get("pids") {
                    s.pids_current = read_u64(&dir.join("pids.current"))?;
                    s.pids_limit = read_u64(&dir.join("pids.max"))?;
                }
                if let Some(dir) = dirs.get("cpuacct") {
                    s.cpu_usage_ns = read_u64(&dir.join("cpuacct.usage"))?;
                }
            }
        }
        Ok(s)
    }
}

/// A number from a cgroup file; a missing file or `max` is `None`.
fn read_u64(path: &Path) -> Result<Option<u64>> {
    Ok(fs::read_opt(path)?.and_then(|v| v.parse().ok()))
}

/// Enable `wanted` controllers for the children of `dir`: all in one write when possible;
/// otherwise one by one, where only a `needed` one failing is an error.
fn enable_controllers(dir: &Path, wanted: &[&str], needed: &[&str]) -> Result<()> {
    let control = dir.join("cgroup.subtree_control");
    let current = fs::read(&control)?;
    let missing: Vec<&str> =
        wanted.iter().copied().filter(|c| !current.split_whitespace().any(|have| have == *c)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let all = missing.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
    if fs::write(&control, &all).is_ok() {
        return Ok(());
    }
    for c in missing {
        match fs::write(&control, &format!("+{c}")) {
            Ok(()) => {}
            Err(e) if needed.contains(&c) => return Err(e),
            Err(e) => tracing::debug!("not enabling optional controller: {e}"),
        }
    }
    Ok(())
}

/// Make `<parent>/<group>/<id>` in one v1 hierarchy. For cpuset, each new level copies
/// `cpuset.cpus` and `cpuset.mems` from its parent (a new cpuset starts empty and refuses
/// tasks). Returns whether the container directory is new.
/// cgroup v2: the device rules as an eBPF program attached to `dir` (nothing without rules).
fn attach_device_program(dir: &Path, rules: &[(bool, String)]) -> Result<()> {
    if rules.is_empty() {
        return Ok(());
    }
    let program = crate::devices::program(rules)?;
    let fd = std::fs::File::open(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
    cove_sys::attach_cgroup_device_program(std::os::fd::AsFd::as_fd(&fd), &program).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        value: format!("a device program ({e})"),
        source: e.errno().unwrap_or(nix::errno::Errno::EINVAL).into(),
    })
}

fn make_v1_dir(parent: &Path, group: &str, id: &str, cpuset: bool) -> Result<bool> {
    let group_dir = parent.join(group);
    fs::mkdir(&group_dir)?;
    if cpuset {
        copy_cpuset(parent, &group_dir)?;
    }
    let dir = group_dir.join(id);
    let new = fs::mkdir(&dir)?;
    if cpuset {
        if let Err(e) = copy_cpuset(&group_dir, &dir) {
            if new {
                let _ = fs::rmdir(&dir);
            }
            return Err(e);
        }
    }
    Ok(new)
}

fn copy_cpuset(from: &Path, to: &Path) -> Result<()> {
    // mems first: the kernel accepts either order, but a task needs both
    for file in ["cpuset.mems", "cpuset.cpus"] {
        let target = to.join(file);
        if !fs::read(&target)?.is_empty() {
            continue;
        }
        let value = fs::read(&from.join(file))?;
        fs::write(&target, &value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tests::{all_writable, fake_hybrid, fake_v2, file, USER_SCOPE};
    use crate::detect::{detect_with, tests::mode_writable};

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn names() {
        for bad in ["", ".", "..", "a/b", "a\0b", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("0123abcdef").is_ok());
        let s = Support {
            hierarchy: crate::Hierarchy::Unavailable,
            usable: false,
            controllers: vec![],
            reason: Some("why".into()),
            layout: Layout::None,
        };
        let e = Cgroup::create("x", &Limits::default(), &s).unwrap_err();
        assert_eq!(e.to_string(), "cgroup limits unavailable: why");
        let e = Cgroup::create("../x", &Limits::default(), &s).unwrap_err();
        assert!(e.to_string().starts_with("invalid cgroup name \"../x\""), "{e}");
    }

    /// cgroupfs makes interface files itself; on a fake tree the test makes them beforehand
    /// (an existing container directory is reused).
    fn interface_files(dir: &Path, files: &[&str]) {
        for f in files {
            file(&dir.join(f), "");
        }
    }

    #[test]
    fn create_v2_delegated() {
        let f = fake_v2();
        let s = detect_with(&f.mountinfo, &format!("0::{USER_SCOPE}\n"), true, mode_writable);
        assert!(s.usable, "{s:?}");
        let group = f.delegated.join("cove");
        let dir = group.join("c1");
        file(&group.join("cgroup.subtree_control"), "");
        let files = ["cgroup.procs", "memory.max", "cpu.max", "cpu.weight", "pids.max", "memory.swap.max"];
        interface_files(&dir, &files);
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(96 << 20),
            cpu_shares: Some(1024),
            pids: Some(50),
            cpuset_cpus: Some("0".into()),
            ..Limits::default()
        }
        .with_cpus(0.5);
        let cg = Cgroup::create("c1", &limits, &s).unwrap();
        assert_eq!(cg.paths(), std::slice::from_ref(&dir));
        assert_eq!(read(&f.delegated.join("cgroup.subtree_control")), "+cpu +memory +pids");
        assert_eq!(read(&group.join("cgroup.subtree_control")), "+cpu +memory +pids");
        assert_eq!(read(&dir.join("memory.max")), "67108864");
        assert_eq!(read(&dir.join("memory.swap.max")), "33554432");
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
        assert_eq!(read(&dir.join("cpu.weight")), "39");
        assert_eq!(read(&dir.join("pids.max")), "50");
        // cpuset is not delegated in the fake tree: skipped with a warning
        assert_eq!(cg.warnings().len(), 1);
        assert!(cg.warnings()[0].starts_with("cpuset limits not applied"), "{:?}", cg.warnings());

        cg.add_pid(4243).unwrap();
        assert_eq!(cg.procs().unwrap(), [4243]);
        std::fs::write(dir.join("memory.current"), "1234\n").unwrap();
        std::fs::write(dir.join("pids.current"), "3\n").unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        let st = cg.stats().unwrap();
        assert_eq!(
            st,
            Stats {
                memory_usage: Some(1234),
                memory_limit: Some(64 << 20),
                pids_current: Some(3),
                pids_limit: Some(50),
                cpu_usage_ns: Some(1_500_000),
            }
        );

        let again = Cgroup::open("c1", &s).unwrap();
        assert_eq!(again.paths(), cg.paths());
        assert!(matches!(Cgroup::open("nope", &s), Err(Error::NotFound(_))));

        // a real cgroupfs removes interface files with the directory; a fake tree needs help
        for entry in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        cg.remove().unwrap();
        assert!(!dir.exists());
        cg.remove().unwrap(); // already gone is fine
    }

    #[test]
    fn create_v2_missing_interface_file_is_an_error_naming_it() {
        let f = fake_v2();
        let s = detect_with(&f.mountinfo, &format!("0::{USER_SCOPE}\n"), true, mode_writable);
        file(&f.delegated.join("cove/cgroup.subtree_control"), "");
        let limits = Limits { pids: Some(5), ..Limits::default() };
        let e = Cgroup::create("c2", &limits, &s).unwrap_err().to_string();
        let want = format!("write \"5\" to {}: ", f.delegated.join("cove/c2/pids.max").display());
        assert!(e.starts_with(&want), "{e}");
        assert!(e.ends_with("(os error 2)"), "{e}");
        // the new directory was removed again
        assert!(!f.delegated.join("cove/c2").exists());
    }

    #[test]
    fn create_v1_hybrid() {
        let (tmp, mountinfo) = fake_hybrid();
        let root = tmp.path();
        let s = detect_with(&mountinfo, "0::/\n", false, all_writable);
        file(&root.join("cpuset/cpuset.cpus"), "0-3\n");
        file(&root.join("cpuset/cpuset.mems"), "0\n");
        interface_files(&root.join("cpuset/test"), &["cpuset.cpus", "cpuset.mems"]);
        interface_files(&root.join("cpuset/test/c1"), &["cpuset.cpus", "cpuset.mems", "cgroup.procs"]);
        interface_files(&root.join("memory/test/c1"), &["memory.limit_in_bytes", "cgroup.procs"]);
        interface_files(&root.join("cpu/test/c1"), &["cpu.cfs_quota_us", "cpu.cfs_period_us", "cgroup.procs"]);
        interface_files(&root.join("cpuacct/test/c1"), &["cgroup.procs"]);
        interface_files(&root.join("pids/test/c1"), &["pids.max", "cgroup.procs"]);
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            pids: Some(50),
            cpuset_cpus: Some("1".into()),
            ..Limits::default()
        }
        .with_cpus(0.5);
        let cg = Cgroup::create_in("test", "c1", &limits, &s).unwrap();
        let paths: Vec<PathBuf> =
            ["cpu", "cpuacct", "cpuset", "memory", "pids"].iter().map(|c| root.join(c).join("test/c1")).collect();
        assert_eq!(cg.paths(), paths);
        assert_eq!(read(&root.join("memory/test/c1/memory.limit_in_bytes")), "67108864");
        assert_eq!(read(&root.join("cpu/test/c1/cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&root.join("cpu/test/c1/cpu.cfs_period_us")), "100000");
        assert_eq!(read(&root.join("pids/test/c1/pids.max")), "50");
        assert_eq!(read(&root.join("cpuset/test/cpuset.cpus")), "0-3");
        assert_eq!(read(&root.join("cpuset/test/c1/cpuset.cpus")), "1");
        assert_eq!(read(&root.join("cpuset/test/c1/cpuset.mems")), "0");
        // no memsw file: swap accounting off
        assert_eq!(cg.warnings().len(), 1, "{:?}", cg.warnings());
        assert!(cg.warnings()[0].contains("memory.memsw.limit_in_bytes does not exist"));

        cg.add_pid(77).unwrap();
        for p in &paths {
            assert_eq!(read(&p.join("cgroup.procs")), "77");
        }
        file(&root.join("memory/test/c1/memory.usage_in_bytes"), "4096\n");
        file(&root.join("cpuacct/test/c1/cpuacct.usage"), "123456789\n");
        file(&root.join("pids/test/c1/pids.current"), "2\n");
        let st = Cgroup::open_in("test", "c1", &s).unwrap().stats().unwrap();
        assert_eq!(st.memory_usage, Some(4096));
        assert_eq!(st.memory_limit, Some(64 << 20));
        assert_eq!(st.cpu_usage_ns, Some(123_456_789));
        assert_eq!(st.pids_current, Some(2));

        // teardown reports every directory it could not remove (fake dirs are not empty)
        match cg.remove().unwrap_err() {
            Error::Multiple(errors) => assert_eq!(errors.len(), 5),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn create_v1_only_needed_and_stats_controllers() {
        let (tmp, mountinfo) = fake_hybrid();
        let root = tmp.path();
        let s = detect_with(&mountinfo, "0::/\n", false, all_writable);
        interface_files(&root.join("pids/g/c"), &["pids.max"]);
        let cg = Cgroup::create_in("g", "c", &Limits { pids: Some(9), ..Limits::default() }, &s).unwrap();
        // cpu and cpuset are not needed; memory, cpuacct and pids are made for statistics
        let names: Vec<String> =
            cg.paths().iter().map(|p| p.strip_prefix(root).unwrap().display().to_string()).collect();
        assert_eq!(names, ["cpuacct/g/c", "memory/g/c", "pids/g/c"]);
        assert!(cg.warnings().is_empty());
        assert_eq!(read(&root.join("pids/g/c/pids.max")), "9");
    }
}
