//! Security regression tests (issue 21): see the functions below; each reproduces an attack.

#[allow(unused_imports)]
use super::*;
use std::os::unix::fs::MetadataExt;

/// The worlds a test of this file runs in: as whoever runs the suite and, in the root pass, as
/// `covetest` too (rootless with a subuid range), so the root pass alone covers both.
fn worlds() -> Vec<(String, World)> {
    let mut v = vec![];
    let me = if is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_else(|_| "user".into()) };
    if let Some(w) = World::new() {
        v.push((me, w));
    }
    if is_root() && nix::unistd::User::from_name("covetest").ok().flatten().is_some() {
        if let Some(w) = World::new_as("covetest") {
            v.push(("covetest".into(), w));
        }
    }
    v
}

/// For every process the container can see: `PID LINK DEV:INO` of /proc/PID/exe, and `WROTE
/// PID` / `TRUNCATED PID` when opening it for writing worked.
const EXE_SCAN: &str = r#"for p in /proc/[0-9]*; do
  [ -e "$p/exe" ] || continue
  echo "${p#/proc/} $(readlink $p/exe) $(stat -L -c %d:%i $p/exe)"
  (printf x >> "$p/exe") 2>/dev/null && echo "WROTE ${p#/proc/}"
  sh -c ": > '$p/exe'" 2>/dev/null && echo "TRUNCATED ${p#/proc/}"
done; true"#;

/// Fails when a line of `scan` (from [`EXE_SCAN`]) names the installed binary (path or device
/// and inode) or reports a write.
fn assert_not_reachable(who: &str, what: &str, scan: &str, host: &(String, String)) {
    let (path, devino) = host;
    // (PID 1 may be missing: rootless, a process exec'd outside the keeper's user namespace
    // keeps its /proc/PID/exe closed to the container whatever its capabilities.)
    assert!(!scan.trim().is_empty(), "{who} {what}: nothing listed");
    for l in scan.lines() {
        assert!(!l.starts_with("WROTE") && !l.starts_with("TRUNCATED"), "{who} {what}: a process's executable was opened for writing: {l}\n{scan}");
        let f: Vec<&str> = l.split_whitespace().collect();
        assert!(f.get(1) != Some(&path.as_str()), "{who} {what}: /proc/{}/exe is the installed cove binary {path}:\n{scan}", f[0]);
        assert!(f.get(2) != Some(&devino.as_str()), "{who} {what}: /proc/{}/exe has the installed binary's device and inode {devino}:\n{scan}", f[0]);
        assert!(!l.contains("cove-monitor"), "{who} {what}: the pump is visible from the container: {l}");
    }
}

/// CVE-2019-5736 class: a container holding CAP_SYS_PTRACE (added, or `--privileged`) must never
/// reach the installed cove binary through /proc/PID/exe of a cove process in its pid namespace:
/// `--init`'s PID 1 (foreground and detached, cloned from the CLI or the monitor) and what
/// `exec` starts. Before the fix, /proc/1/exe was the installed file itself (same device and
/// inode), which a root container could open and, once no cove ran it, overwrite.
#[test]
fn host_binary_is_not_reachable_through_proc_exe() {
    let bin = std::fs::canonicalize(bin()).unwrap();
    let m = std::fs::metadata(&bin).unwrap();
    let host = (bin.display().to_string(), format!("{}:{}", m.dev(), m.ino()));
    let before = std::fs::read(&bin).unwrap();
    for (who, w) in worlds() {
        for caps in [&["--cap-add", "SYS_PTRACE"][..], &["--privileged"][..]] {
            // Foreground, PID 1 cloned by the CLI, staying cove code (--init).
            let mut args = vec!["run", "--rm", "--init"];
            args.extend_from_slice(caps);
            args.extend_from_slice(&["bb", "sh", "-c", EXE_SCAN]);
            let scan = w.ok(&args);
            assert_not_reachable(&who, &format!("run --init {caps:?}"), &scan, &host);
            // Detached, PID 1 cloned by the monitor; scanned from `exec`, and a watcher inside
            // that records every process that is not busybox while `exec`s come and go (the
            // exec'd process is cove code until its execve: rarely caught, never the host's).
            let watch = "while :; do for p in /proc/[0-9]*; do l=$(readlink $p/exe); case \"$l\" in /bin/busybox|'') ;; *) echo \"${p#/proc/} $l $(stat -L -c %d:%i $p/exe)\" >> /tmp/seen;; esac; done; done";
            // The command ends when /dev/shm/stop appears (a tmpfs: gone after a restart).
            let cmd = format!("({watch}) & while [ ! -e /dev/shm/stop ]; do sleep 0.1; done; exit 3");
            let mut args = vec!["run", "-d", "--init", "--restart", "always", "--name", "sealed"];
            args.extend_from_slice(caps);
            args.extend_from_slice(&["bb", "sh", "-c", &cmd]);
            w.ok(&args);
            for _ in 0..10 {
                w.ok(&["exec", "sealed", "true"]);
            }
            let scan = w.ok(&["exec", "sealed", "sh", "-c", EXE_SCAN]);
            assert_not_reachable(&who, &format!("run -d --init {caps:?}"), &scan, &host);
            let seen = w.ok(&["exec", "sealed", "sh", "-c", "cat /tmp/seen 2>/dev/null; true"]);
            for l in seen.lines() {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert!(f.get(1) != Some(&host.0.as_str()) && f.get(2) != Some(&host.1.as_str()), "{who} {caps:?}: a process in the container ran the installed binary: {l}");
            }
            // After a restart by policy: the pump exec'd back into `cove __monitor`, which
            // cloned the new PID 1.
            w.ok(&["exec", "sealed", "touch", "/dev/shm/stop"]);
            let restarted = wait_until(|| w.cove(&["exec", "sealed", "sh", "-c", "[ ! -e /dev/shm/stop ]"]).status.success(), 15);
            assert!(restarted, "{who} {caps:?}: the container was not restarted");
            let scan = w.ok(&["exec", "sealed", "sh", "-c", EXE_SCAN]);
            assert_not_reachable(&who, &format!("restarted {caps:?}"), &scan, &host);
            w.ok(&["rm", "-f", "sealed"]);
        }
    }
    assert!(std::fs::read(&bin).unwrap() == before, "the installed cove binary changed");
}
