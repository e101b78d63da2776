//! Tests on the real host. As root they create a cgroup of their own
//! (`<controller>/cove-test-<pid>/it`), put a `sleep` in it and remove it again; as any other
//! user they print SKIP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use cove_cgroups::{detect, Cgroup, Hierarchy, Layout, Limits};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn detect_on_this_host() {
    let rootless = !is_root();
    let s = detect(rootless);
    println!("detect(rootless={rootless}) = {s:#?}");
    assert_eq!(s.usable, s.reason.is_none(), "{s:?}");
    if s.usable {
        assert!(!s.controllers.is_empty());
        assert_ne!(s.layout, Layout::None);
    } else {
        assert_eq!(s.layout, Layout::None);
        let reason = s.reason.unwrap();
        assert!(!reason.contains('\n') && !reason.ends_with('.'), "{reason}");
    }
}

/// Kills the child and removes the test's directories even when an assertion fails.
struct Cleanup {
    child: Option<Child>,
    cgroup: Option<Cgroup>,
    groups: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.remove() {
                eprintln!("cleanup: {e}");
            }
        }
        for g in &self.groups {
            if let Err(e) = std::fs::remove_dir(g) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("cleanup: remove {}: {e}", g.display());
                }
            }
        }
    }
}

fn read(dir: &Path, file: &str) -> String {
    let path = dir.join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())).trim().to_string()
}

#[test]
fn limits_applied_as_root() {
    if !is_root() {
        println!("SKIP: not root");
        return;
    }
    let support = detect(false);
    if !support.usable {
        println!("SKIP: cgroups unusable even as root: {}", support.reason.unwrap_or_default());
        return;
    }
    let group = format!("cove-test-{}", std::process::id());
    let limits = Limits {
        memory: Some(64 << 20),
        memory_swap: Some(128 << 20),
        pids: Some(50),
        cpuset_cpus: Some("0".into()),
        ..Limits::default()
    }
    .with_cpus(0.5);
    let mut guard = Cleanup { child: None, cgroup: None, groups: Vec::new() };
    let cg = Cgroup::create_in(&group, "it", &limits, &support).expect("create cgroup");
    guard.groups = cg.paths().iter().map(|p| p.parent().unwrap().to_path_buf()).collect();
    guard.groups.dedup();
    guard.cgroup = Some(cg.clone());
    println!("paths: {:?}\nwarnings: {:?}", cg.paths(), cg.warnings());
    for p in cg.paths() {
        assert!(p.ends_with(format!("{group}/it")), "{}", p.display());
    }

    let has = |c: &str| support.controllers.iter().any(|have| have == c);
    match (&support.hierarchy, &support.layout) {
        (Hierarchy::Unified, Layout::Unified { .. }) => {
            let dir = &cg.paths()[0];
            assert_eq!(read(dir, "memory.max"), "67108864");
            assert_eq!(read(dir, "pids.max"), "50");
            assert_eq!(read(dir, "cpu.max"), "50000 100000");
            if dir.join("memory.swap.max").exists() {
                assert_eq!(read(dir, "memory.swap.max"), "67108864");
            }
        }
        (_, Layout::Legacy { parents }) => {
            let dir = |c: &str| parents[c].join(&group).join("it");
            assert!(has("memory") && has("pids") && has("cpu"), "{support:?}");
            assert_eq!(read(&dir("memory"), "memory.limit_in_bytes"), "67108864");
            let memsw = dir("memory").join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                assert_eq!(read(&dir("memory"), "memory.memsw.limit_in_bytes"), "134217728");
            } else {
                assert!(cg.warnings().iter().any(|w| w.contains("memory-swap")));
            }
            assert_eq!(read(&dir("pids"), "pids.max"), "50");
            assert_eq!(read(&dir("cpu"), "cpu.cfs_quota_us"), "50000");
            assert_eq!(read(&dir("cpu"), "cpu.cfs_period_us"), "100000");
            if has("cpuset") {
                assert_eq!(read(&dir("cpuset"), "cpuset.cpus"), "0");
                let parent_mems = read(&parents["cpuset"], "cpuset.mems");
                assert_eq!(read(&dir("cpuset"), "cpuset.mems"), parent_mems);
            }
        }
        other => panic!("unexpected layout {other:?}"),
    }

    let child = Command::new("sleep").arg("5").spawn().expect("spawn sleep");
    let pid = child.id() as i32;
    guard.child = Some(child);
    cg.add_pid(pid).expect("add pid");
    assert!(cg.procs().unwrap().contains(&pid));
    for p in cg.paths() {
        let procs = read(&p, "cgroup.procs");
        assert!(procs.lines().any(|l| l == pid.to_string()), "{}: {procs}", p.display());
    }
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.contains(&format!("/{group}/it")), "{own}");

    let stats = cg.stats().expect("stats");
    println!("stats: {stats:?}");
    if has("memory") {
        assert_eq!(stats.memory_limit, Some(64 << 20));
        assert!(stats.memory_usage.is_some());
    }
    if has("pids") {
        assert_eq!(stats.pids_limit, Some(50));
        assert!(stats.pids_current >= Some(1));
    }

    let mut child = guard.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    guard.cgroup.take().unwrap().remove().expect("remove cgroup");
    for p in cg.paths() {
        assert!(!p.exists(), "{} still exists", p.display());
    }
    drop(guard);
    for p in cg.paths() {
        assert!(!p.parent().unwrap().exists(), "test group left behind: {}", p.display());
    }
}

/// cgroup v2's device rules are an eBPF program: made from Docker's rules, attached to a
/// cgroup of the test's own in the unified hierarchy (the host's, or the `unified` mount of a
/// hybrid host), a process in it opens /dev/null and may mknod, but cannot open a block
/// device (a loop device here) or /dev/mem.
#[test]
fn v2_device_program_denies_what_the_rules_deny() {
    if !is_root() {
        println!("SKIP: not root");
        return;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let Some(line) = mountinfo.lines().find(|l| l.contains(" - cgroup2 ")) else {
        println!("SKIP: no cgroup2 mount on this host");
        return;
    };
    // Only the unified mount, and ourselves at its root: detect sees a pure v2 host.
    let support = cove_cgroups::detect_from(line, "0::/\n", false);
    if !support.usable {
        println!("SKIP: cgroup v2 not usable: {}", support.reason.unwrap_or_default());
        return;
    }
    let group = format!("cove-test-{}", std::process::id());
    let rules: Vec<(bool, String)> =
        [(false, "a"), (true, "c *:* m"), (true, "b *:* m"), (true, "c 1:3 rwm"), (true, "c 1:5 rwm")]
            .iter()
            .map(|(a, r)| (*a, r.to_string()))
            .collect();
    let limits = Limits { devices: rules, ..Limits::default() };
    let cg = Cgroup::create_in(&group, "dev", &limits, &support).expect("create a v2 cgroup with a device program");
    let Layout::Unified { parent } = &support.layout else { unreachable!() };
    let mut guard = Cleanup { child: None, cgroup: Some(cg.clone()), groups: vec![parent.join(&group)] };
    let procs = cg.paths()[0].join("cgroup.procs");
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("loop");
    let script = format!(
        "echo $$ > {procs}; (exec 3</dev/null) && echo NULL; (exec 3</dev/mem) 2>/dev/null && echo MEM; \
         mknod {node} b 7 0 && echo MKNOD; (exec 3<{node}) 2>/dev/null && echo LOOP; true",
        procs = procs.display(),
        node = node.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "NULL\nMKNOD\n", "{text}{}", String::from_utf8_lossy(&out.stderr));
    guard.child = None;
}
