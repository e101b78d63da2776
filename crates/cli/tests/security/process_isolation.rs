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
        assert!(
            !l.starts_with("WROTE") && !l.starts_with("TRUNCATED"),
            "{who} {what}: a process's executable was opened for writing: {l}\n{scan}"
        );
        let f: Vec<&str> = l.split_whitespace().collect();
        assert!(
            f.get(1) != Some(&path.as_str()),
            "{who} {what}: /proc/{}/exe is the installed cove binary {path}:\n{scan}",
            f[0]
        );
        assert!(
            f.get(2) != Some(&devino.as_str()),
            "{who} {what}: /proc/{}/exe has the installed binary's device and inode {devino}:\n{scan}",
            f[0]
        );
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
                assert!(
                    f.get(1) != Some(&host.0.as_str()) && f.get(2) != Some(&host.1.as_str()),
                    "{who} {caps:?}: a process in the container ran the installed binary: {l}"
                );
            }
            // After a restart by policy: the pump exec'd back into `cove __monitor`, which
            // cloned the new PID 1.
            w.ok(&["exec", "sealed", "touch", "/dev/shm/stop"]);
            let restarted =
                wait_until(|| w.cove(&["exec", "sealed", "sh", "-c", "[ ! -e /dev/shm/stop ]"]).status.success(), 15);
            assert!(restarted, "{who} {caps:?}: the container was not restarted");
            // Right after a restart an `exec` can still meet "not running" under load (seen once
            // in a CI run: a lifecycle race left for the reliability issue); what this test
            // checks is what the restarted container can reach, so ask until it answers.
            let mut scan = None;
            let _ = wait_until(
                || {
                    let o = w.cove(&["exec", "sealed", "sh", "-c", EXE_SCAN]);
                    if o.status.success() {
                        scan = Some(String::from_utf8_lossy(&o.stdout).into_owned());
                    }
                    o.status.success()
                },
                15,
            );
            let scan = scan.unwrap_or_else(|| w.ok(&["exec", "sealed", "sh", "-c", EXE_SCAN]));
            assert_not_reachable(&who, &format!("restarted {caps:?}"), &scan, &host);
            w.ok(&["rm", "-f", "sealed"]);
        }
    }
    assert!(std::fs::read(&bin).unwrap() == before, "the installed cove binary changed");
}

/// Host processes (pid, cmdline) running fuse-overlayfs over this world's storage.
fn fuse_daemons(w: &World) -> Vec<String> {
    let needle = w.path().display().to_string();
    let mut v = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        if std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim() == "fuse-overlayfs") {
            let cmd = String::from_utf8_lossy(&std::fs::read(p.join("cmdline")).unwrap_or_default()).replace('\0', " ");
            if cmd.contains(&needle) {
                v.push(format!("{} {cmd}", p.display()));
            }
        }
    }
    v
}

/// fuse-overlayfs's daemon used to run inside the container's pid namespace (started by PID 1
/// during setup): a container with CAP_SYS_PTRACE (or `--privileged`) saw it and went through
/// its descriptors of the layer directories (`/proc/PID/fd/N/../../..`) to the host's `/`,
/// reading and writing as the user. Now it runs outside: no such process in the container, no
/// visible descriptor or root leads to a file the test put on the host, and the daemon is gone
/// once the container is. Also: a user namespace of the container's own (an id outside the
/// caller's map) used to make fuse-overlayfs fail; the creator mounts it now.
#[test]
fn fuse_overlayfs_daemon_is_outside_the_container() {
    if !Path::new("/usr/bin/fuse-overlayfs").exists() {
        skip("fuse-overlayfs not installed (apt-get install fuse-overlayfs)");
        return;
    }
    let up = "/..".repeat(40);
    for (who, w) in worlds() {
        let w = w.with_env("COVE_STORAGE_DRIVER", "fuse-overlayfs");
        let dir = w.path().display().to_string();
        let marker = format!("{dir}/host-marker");
        std::fs::write(&marker, "host\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o644)).unwrap();
        let scan = format!(
            r#"for p in /proc/[0-9]*; do
  case "$(cat $p/comm 2>/dev/null)" in *fuse*) echo "DAEMON $p";; esac
  tr '\0' '\n' < $p/cmdline 2>/dev/null | head -n 1 | grep -q fuse && echo "DAEMON $p cmdline"
  for f in $p/fd/* $p/root $p/cwd; do
    [ -d "$f" ] || continue
    for t in "$f{up}" "$f"; do
      [ -e "$t{marker}" ] && echo "REACHED $f"
      touch "$t{dir}/written-${{p#/proc/}}" 2>/dev/null
    done
  done
done; echo scanned"#
        );
        for caps in [&["--cap-add", "SYS_PTRACE"][..], &["--privileged"][..]] {
            let mut args = vec!["run", "--rm"];
            args.extend_from_slice(caps);
            args.extend_from_slice(&["bb", "sh", "-c", &scan]);
            let out = w.ok(&args);
            assert_eq!(
                out, "scanned\n",
                "{who} run {caps:?}: the storage daemon is reachable from the container:\n{out}"
            );
            let mut args = vec!["run", "-d", "--name", "fused"];
            args.extend_from_slice(caps);
            args.extend_from_slice(&["bb", "sleep", "1000"]);
            w.ok(&args);
            let out = w.ok(&["exec", "fused", "sh", "-c", &scan]);
            assert_eq!(
                out, "scanned\n",
                "{who} run -d {caps:?}: the storage daemon is reachable from the container:\n{out}"
            );
            w.ok(&["rm", "-f", "fused"]);
            let written: Vec<_> = std::fs::read_dir(w.path())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("written-"))
                .collect();
            assert!(written.is_empty(), "{who} {caps:?}: the container wrote into the host's {dir}: {written:?}");
            assert!(
                wait_until(|| fuse_daemons(&w).is_empty(), 10),
                "{who} {caps:?}: fuse-overlayfs outlived its container: {:?}",
                fuse_daemons(&w)
            );
        }
        // Restarts by policy (the monitor execs back and mounts anew): no daemon piles up, the
        // upper dir kept, none left after rm.
        w.ok(&[
            "run",
            "-d",
            "--name",
            "again",
            "--restart",
            "always",
            "bb",
            "sh",
            "-c",
            "echo x >> /etc/runs; sleep 0.3; exit 2",
        ]);
        let mut most = 0;
        let restarted = wait_until(
            || {
                most = most.max(fuse_daemons(&w).len());
                w.cove(&["exec", "again", "sh", "-c", "[ $(wc -l < /etc/runs) -ge 3 ]"]).status.success()
            },
            20,
        );
        assert!(restarted, "{who}: the fuse-overlayfs container was not restarted twice");
        // The previous run's daemon goes when the kernel tears its mount namespace down, which
        // may be a moment after the restart mounted anew: two at once, never more (no leak).
        assert!(most <= 2, "{who}: {most} fuse-overlayfs daemons for one container");
        w.ok(&["rm", "-f", "again"]);
        assert!(
            wait_until(|| fuse_daemons(&w).is_empty(), 10),
            "{who}: fuse-overlayfs outlived its restarted container: {:?}",
            fuse_daemons(&w)
        );
        if who != "root" {
            // An id outside the caller's map: the container gets a user namespace of its own.
            let o = w.cove(&["run", "--rm", "-u", "200000", "bb", "sh", "-c", "echo ok > /tmp/f; cat /tmp/f; id -u"]);
            assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n200000\n", "{who}: {}", stderr(&o));
            assert!(
                wait_until(|| fuse_daemons(&w).is_empty(), 10),
                "{who}: fuse-overlayfs outlived its container: {:?}",
                fuse_daemons(&w)
            );
        }
    }
}
