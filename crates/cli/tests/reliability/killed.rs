//! See mod.rs. Helpers and monitors killed under running containers (issue 18, "Helper and
//! monitor recovery", the network helper aside), and a full disk (ENOSPC) under every verb that
//! writes the data dir.

#[allow(unused_imports)]
use super::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;

/// The first number of a pid file of a container's run dir (`pid`, `monitor.pid`).
fn pid_in(w: &World, id: &str, file: &str) -> Option<i32> {
    std::fs::read_to_string(w.path().join("run/containers").join(id).join(file))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| !matches!(r.split_whitespace().next(), Some("Z" | "X"))))
        .unwrap_or(false)
}

fn state(w: &World, name: &str) -> (String, String) {
    let s = w.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name]);
    let v: Vec<String> = s.split_whitespace().map(String::from).collect();
    (v[0].clone(), v[1].clone())
}

/// The worlds a rootless case runs in: the test's own user when it is not root; covetest and
/// covenosub in the root pass.
fn rootless_worlds() -> Vec<(String, World)> {
    if !is_root() {
        let who = nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name);
        return World::new().map(|w| (who.unwrap_or_default(), w)).into_iter().collect();
    }
    let mut v = vec![];
    for u in ["covetest", "covenosub"] {
        if nix::unistd::User::from_name(u).ok().flatten().is_none() {
            skip(&format!("no user {u} (tests/run-all.sh makes it): a rootless case not checked in the root pass"));
            continue;
        }
        if let Some(w) = World::new_as(u) {
            v.push((u.to_string(), w));
        }
    }
    v
}

/// Kills a detached container's monitor with SIGKILL: the container is taken down with it
/// (parent-death signal) and recorded exited (255), whatever its options; every verb works on
/// it after; `--restart always` is not applied (no daemon is left to apply it: see
/// ARCHITECTURE.md, Detached containers); `start` brings it back with its policy in force.
#[test]
fn a_killed_monitor_leaves_a_container_every_verb_can_handle() {
    let Some(w) = World::new() else { return };
    let cases: &[(&str, &[&str])] = &[
        ("plain", &[]),
        ("always", &["--restart", "always"]),
        ("init", &["--init"]),
        ("uid", &["-u", "1000"]),
        ("tty", &["-t"]),
        ("unless", &["--restart", "unless-stopped", "--init", "-u", "1000"]),
    ];
    let (mut injected, mut survived, mut leaked) = (0, 0, 0);
    for (name, opts) in cases {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["bb", "sh", "-c", "echo started-$((1+1)); exec sleep 1000"]);
        let id = w.ok(&args).trim().to_string();
        assert!(wait_until(|| w.ok(&["logs", name]).contains("started-2"), 10), "{name}: no output");
        let (mon, pid1) = (pid_in(&w, &id, "monitor.pid").unwrap(), pid_in(&w, &id, "pid").unwrap());
        kill(Pid::from_raw(mon), Signal::SIGKILL).unwrap();
        injected += 1;
        assert!(wait_until(|| !alive(pid1), 5), "{name}: PID 1 outlived its monitor");
        assert!(
            wait_until(|| !w.ok(&["ps", "-a", "--filter", &format!("name={name}")]).contains("Up"), 5),
            "{name}: still reported running"
        );
        let st = state(&w, name);
        assert_eq!((st.0.as_str(), st.1.as_str()), ("exited", "255"), "{name}: {st:?}");
        // Not restarted behind the user's back, however long we look.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert_eq!(state(&w, name).0, "exited", "{name}: a command restarted it");
        assert!(w.ok(&["logs", name]).contains("started-2"), "{name}: logs lost");
        // Started again: a new monitor and PID 1, the policy in force again.
        w.ok(&["start", name]);
        assert_eq!(state(&w, name).0, "running", "{name}");
        let mon2 = pid_in(&w, &id, "monitor.pid").unwrap();
        assert_ne!(mon2, mon, "{name}: a new monitor");
        assert!(wait_until(|| w.ok(&["logs", name]).matches("started-2").count() == 2, 10), "{name}");
        assert_eq!(w.ok(&["exec", name, "echo", "in"]).trim(), "in", "{name}");
        // Killed again: `stop` and `rm -f` on what it left.
        let pid1 = pid_in(&w, &id, "pid").unwrap();
        kill(Pid::from_raw(mon2), Signal::SIGKILL).unwrap();
        injected += 1;
        assert!(wait_until(|| !alive(pid1), 5), "{name}: PID 1 outlived its second monitor");
        w.ok(&["stop", "-t", "1", name]);
        w.ok(&["rm", "-f", name]);
        if alive(pid1) || alive(mon2) || w.ok(&["ps", "-aq"]).contains(&id[..12]) {
            leaked += 1;
        }
        assert!(!w.path().join("run/containers").join(&id).exists(), "{name}: run dir left");
        assert!(!w.path().join("data/containers").join(&id).exists(), "{name}: container dir left");
        survived += 2;
    }
    // A `cove wait` under way returns 255; a `--rm` container is removed, as its exit would.
    let id = w.ok(&["run", "-d", "--rm", "--name", "gone", "bb", "sleep", "1000"]).trim().to_string();
    let waiter = w.cmd(&["wait", "gone"]).stdout(Stdio::piped()).spawn().expect("cove wait");
    std::thread::sleep(std::time::Duration::from_millis(300));
    kill(Pid::from_raw(pid_in(&w, &id, "monitor.pid").unwrap()), Signal::SIGKILL).unwrap();
    injected += 1;
    let out = waiter.wait_with_output().expect("cove wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "255", "wait after the monitor was killed");
    assert!(!w.ok(&["ps", "-a"]).contains("gone"), "a --rm container is removed");
    assert!(!w.path().join("data/containers").join(&id).exists(), "--rm: container dir left");
    survived += 1;
    // Killed between restarts (the monitor waits out a backoff).
    w.ok(&["run", "-d", "--name", "flap", "--restart", "always", "bb", "sh", "-c", "echo flap; sleep 0.2; exit 1"]);
    let id = w.ok(&["inspect", "-f", "{{.Id}}", "flap"]).trim().to_string();
    assert!(wait_until(|| w.ok(&["logs", "flap"]).matches("flap").count() >= 3, 20), "flap never restarted");
    let mon = pid_in(&w, &id, "monitor.pid").unwrap();
    kill(Pid::from_raw(mon), Signal::SIGKILL).unwrap();
    injected += 1;
    assert!(wait_until(|| state(&w, "flap").0 == "exited", 5), "{:?}", state(&w, "flap"));
    w.ok(&["rm", "-f", "flap"]);
    survived += 1;
    assert_eq!(w.ok(&["ps", "-aq"]).trim(), "", "everything removed");
    report("killed monitor", injected, survived, leaked, &[]);
    assert_eq!(leaked, 0);
}

/// PID 1 killed from outside while its monitor runs (the normal path): each restart policy
/// does what Docker's does: `no` exits 137, `on-failure` and `always` and `unless-stopped`
/// restart it; `stop` after that stops it for good.
#[test]
fn a_killed_pid1_follows_each_restart_policy() {
    let Some(w) = World::new() else { return };
    let (mut injected, mut survived) = (0, 0);
    for (name, policy, restarts) in [
        ("no", "no", false),
        ("onf", "on-failure:3", true),
        ("always", "always", true),
        ("unless", "unless-stopped", true),
    ] {
        let id = w.ok(&["run", "-d", "--name", name, "--restart", policy, "bb", "sleep", "1000"]).trim().to_string();
        let pid1 = pid_in(&w, &id, "pid").unwrap();
        kill(Pid::from_raw(pid1), Signal::SIGKILL).unwrap_or_else(|e| panic!("{name}: kill {pid1}: {e}"));
        injected += 1;
        if restarts {
            assert!(
                wait_until(|| pid_in(&w, &id, "pid").is_some_and(|p| p != pid1 && alive(p)), 10),
                "{name}: not restarted"
            );
            assert_eq!(state(&w, name).0, "running", "{name}");
            w.ok(&["stop", "-t", "1", name]);
            std::thread::sleep(std::time::Duration::from_millis(1500));
            assert_eq!(state(&w, name).0, "exited", "{name}: restarted after stop");
        } else {
            assert!(wait_until(|| state(&w, name).0 == "exited", 5), "{name}: {:?}", state(&w, name));
            assert_eq!(state(&w, name).1, "137", "{name}");
        }
        w.ok(&["rm", "-f", name]);
        survived += 1;
    }
    report("killed pid1", injected, survived, 0, &[]);
}

/// PID 1 of a `--restart always` container killed again and again: the pause before each
/// restart doubles from 100 ms (`exec` in between says the container is restarting, as
/// Docker's does), and a run of 10 s or more starts the pauses over, as Docker's daemon does
/// (the pause used to follow the restart count alone: 3.2 s after a sixth kill, however long
/// the container had run).
#[test]
fn a_long_run_resets_the_restart_pause() {
    let Some(w) = World::new() else { return };
    let id = w.ok(&["run", "-d", "--name", "svc", "--restart", "always", "bb", "sleep", "1000"]).trim().to_string();
    // Kills PID 1 and returns how long the restart took.
    let kill_and_time = |what: &str| {
        let pid1 = pid_in(&w, &id, "pid").unwrap();
        let t0 = std::time::Instant::now();
        kill(Pid::from_raw(pid1), Signal::SIGKILL).unwrap();
        assert!(wait_until(|| pid_in(&w, &id, "pid").is_some_and(|p| p != pid1 && alive(p)), 20), "{what}");
        t0.elapsed()
    };
    let mut pauses = vec![];
    for i in 0..5 {
        if i == 4 {
            // The fifth pause is 1.6 s: meanwhile `exec` says why it cannot run.
            let pid1 = pid_in(&w, &id, "pid").unwrap();
            kill(Pid::from_raw(pid1), Signal::SIGKILL).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            let o = w.cove(&["exec", "svc", "true"]);
            assert!(stderr(&o).contains("is restarting"), "{}", stderr(&o));
            assert!(wait_until(|| pid_in(&w, &id, "pid").is_some_and(|p| p != pid1 && alive(p)), 20));
            continue;
        }
        pauses.push(kill_and_time(&format!("restart {}", i + 1)));
    }
    assert!(pauses[3] >= std::time::Duration::from_millis(700), "the pauses double: {pauses:?}");
    // Ten seconds of running: the next restart is quick again.
    std::thread::sleep(std::time::Duration::from_millis(10_500));
    let after_long = kill_and_time("restart after a long run");
    assert!(after_long < std::time::Duration::from_millis(1500), "after a 10 s run the pause restarts: {after_long:?}");
    assert_eq!(w.ok(&["exec", "svc", "echo", "in"]).trim(), "in");
    w.ok(&["rm", "-f", "svc"]);
    report("killed pid1 backoff", 6, 6, 0, &[("pause_after_long_run_ms", after_long.as_millis().to_string())]);
}

/// The keeper (rootless) killed with SIGKILL while containers run, a subordinate uid among
/// them: the next command starts a keeper in the same namespace, and each verb works on the
/// running containers.
#[test]
fn a_killed_keeper_leaves_running_containers_manageable() {
    let (mut injected, mut survived) = (0, 0);
    for (who, w) in rootless_worlds() {
        let keeper = || -> i32 {
            std::fs::read_to_string(w.path().join("run/keeper.pid")).unwrap_or_default().trim().parse().unwrap_or(0)
        };
        let script = "trap 'echo got-term; exit 0' TERM; echo up-$((2+2)); while true; do sleep 0.1; done";
        for name in ["k0", "k1000", "kx"] {
            let mut a = vec!["run", "-d", "--name", name];
            if name != "k0" {
                a.extend_from_slice(&["-u", "1000"]);
            }
            a.extend_from_slice(&["bb", "sh", "-c", script]);
            w.ok(&a);
        }
        let old = keeper();
        assert!(old > 0, "{who}: no keeper");
        kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
        injected += 1;
        assert!(wait_until(|| !alive(old), 5), "{who}: the keeper survived SIGKILL");
        let ps = w.ok(&["ps"]);
        assert_eq!(ps.matches("Up ").count(), 3, "{who}: {ps}");
        assert_ne!(keeper(), old, "{who}: a new keeper");
        for name in ["k0", "k1000"] {
            assert_eq!(w.ok(&["exec", name, "id", "-u"]).trim(), if name == "k0" { "0" } else { "1000" }, "{who}");
            assert!(w.ok(&["logs", name]).contains("up-4"), "{who} {name}");
            w.ok(&["stop", "-t", "5", name]);
            assert_eq!(state(&w, name).1, "0", "{who} {name}: stopped by SIGTERM, not killed");
            assert!(w.ok(&["logs", name]).contains("got-term"), "{who} {name}");
        }
        // The keeper killed once more, then `kill` and `rm -f` on a running one.
        let k = keeper();
        kill(Pid::from_raw(k), Signal::SIGKILL).unwrap();
        injected += 1;
        w.ok(&["kill", "-s", "TERM", "kx"]);
        assert!(wait_until(|| state(&w, "kx").0 == "exited", 5), "{who}: kill did not reach kx");
        w.ok(&["start", "kx"]);
        let k = keeper();
        kill(Pid::from_raw(k), Signal::SIGKILL).unwrap();
        injected += 1;
        w.ok(&["rm", "-f", "k0", "k1000", "kx"]);
        assert_eq!(w.ok(&["ps", "-aq"]).trim(), "", "{who}");
        survived += 3;
    }
    report("killed keeper", injected, survived, 0, &[]);
}

/// A data root on a small tmpfs (root mounts it, for the world's user), its file list, and a
/// filler file that takes the free space away; unmounted on drop, after the containers and
/// helpers of that root are gone.
struct SmallRoot<'a> {
    w: &'a World,
    root: PathBuf,
}

impl<'a> SmallRoot<'a> {
    fn new(w: &'a World, mib: u32) -> SmallRoot<'a> {
        let root = w.path().join("small");
        let owner = std::fs::metadata(w.path()).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
        let group = std::fs::metadata(w.path()).map(|m| std::os::unix::fs::MetadataExt::gid(&m)).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        for d in [root.clone(), root.join("data")] {
            std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
            nix::unistd::chown(&d, Some(nix::unistd::Uid::from_raw(owner)), Some(nix::unistd::Gid::from_raw(group)))
                .unwrap();
        }
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700,uid={owner},gid={group}"), "cove-enospc"])
            .arg(root.join("data"))
            .output()
            .expect("mount");
        assert!(o.status.success(), "mount tmpfs: {}", stderr(&o));
        SmallRoot { w, root }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.w.cmd(args);
        c.env("COVE_ROOT", &self.root);
        c
    }

    fn cove(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run cove")
    }

    fn ok(&self, args: &[&str]) -> String {
        stdout_of_success(args, self.cove(args))
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Every path under the data dir but the filler and SQLite's journals.
    fn files(&self) -> Vec<String> {
        fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
            let Ok(rd) = std::fs::read_dir(d) else { return };
            for e in rd.flatten() {
                let p = e.path();
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                if rel == "filler" || rel.starts_with("state.db") {
                    continue;
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(base, &p, out);
                }
                out.push(rel);
            }
        }
        let mut v = vec![];
        walk(&self.data(), &self.data(), &mut v);
        v.sort();
        v
    }

    /// Fills the data dir up, then gives `leave` bytes back.
    fn fill(&self, leave: u64) {
        use std::io::Write;
        let path = self.data().join("filler");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let chunk = vec![0x55u8; 1 << 16];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("fill: {e}"),
            }
        }
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(leave)).unwrap();
    }

    fn unfill(&self) {
        let _ = std::fs::remove_file(self.data().join("filler"));
    }
}

impl Drop for SmallRoot<'_> {
    fn drop(&mut self) {
        self.unfill();
        if let Ok(o) = self.cmd(&["ps", "-aq"]).output() {
            for id in String::from_utf8_lossy(&o.stdout).lines() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
        let _ = self.cmd(&["system", "migrate"]).output();
        // Lazily when something still holds it (a failed assertion left a process there).
        if !Command::new("umount").arg(self.root.join("data")).status().is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(self.root.join("data")).status();
        }
    }
}

/// A local registry (Debian's docker-registry) on 127.0.0.1, ended by PID on drop.
struct LocalRegistry {
    child: std::process::Child,
    port: u16,
}

impl LocalRegistry {
    fn start(dir: &Path) -> Option<LocalRegistry> {
        let exe = Path::new("/usr/bin/docker-registry");
        if !exe.exists() {
            skip("docker-registry not installed: pull on a full disk not checked");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        std::fs::create_dir_all(dir).unwrap();
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}/storage\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.display()
        );
        std::fs::write(dir.join("config.yml"), cfg).unwrap();
        let child = Command::new(exe)
            .args(["serve", dir.join("config.yml").to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let r = LocalRegistry { child, port };
        assert!(wait_until(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), 20), "registry did not start");
        Some(r)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One layer: a file of 1.5 MiB that does not compress (the same bytes each time).
fn noise_layer() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..3 << 19)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "noise.bin", &data[..]).unwrap();
    b.into_inner().unwrap()
}

/// A failure on a full disk: exit 125 and one line that says so.
fn one_clear_line(what: &str, o: &Output) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(125), "{what}: {e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{what}: not one line: {e}");
    assert!(e.starts_with("cove: error: "), "{what}: {e}");
    let l = e.to_lowercase();
    assert!(l.contains("no space left on device") || l.contains("disk is full"), "{what}: does not say why: {e}");
    assert!(!l.contains("panicked"), "{what}: {e}");
}

/// ENOSPC (issue 18): `pull`, `load`, `import`, `run`, `create` on a data root with little or
/// no space left fail with one line and leave nothing behind (no image, no container, no file
/// in the data dir); a running container whose log cannot be written keeps running, and its
/// log says once, when space is back, how much output was lost and why.
#[test]
fn a_full_disk_fails_cleanly_and_leaves_nothing() {
    if !is_root() {
        println!(
            "note: a_full_disk_fails_cleanly_and_leaves_nothing runs in the root pass (root, covetest, covenosub)"
        );
        return;
    }
    let mut worlds = vec![("root".to_string(), World::new())];
    for u in ["covetest", "covenosub"] {
        if nix::unistd::User::from_name(u).ok().flatten().is_some() {
            worlds.push((u.to_string(), World::new_as(u)));
        } else {
            skip(&format!("no user {u}: ENOSPC not checked for it"));
        }
    }
    let (mut injected, mut survived, mut leaked) = (0, 0, 0);
    let reg_dir = tempfile::Builder::new().prefix("cove-enospc-reg-").tempdir_in(common::tmp_base()).unwrap();
    let reg = LocalRegistry::start(reg_dir.path());
    for (who, w) in worlds {
        let Some(w) = w else { continue };
        // What gets imported: the busybox tree (2 MiB); loaded and pulled: an image of its own
        // layer (1.5 MiB that does not compress), which the small root does not have yet.
        let archive = w.path().join("noise.tar");
        write_docker_archive(&archive, "arch/noise:1", serde_json::json!({"Cmd": ["sh"]}), &[noise_layer()]);
        let pulled = reg.as_ref().map(|r| format!("127.0.0.1:{}/enospc/{who}:1", r.port));
        if let Some(p) = &pulled {
            w.ok(&["load", "-i", archive.to_str().unwrap()]);
            w.ok(&["tag", "arch/noise:1", p]);
            w.ok(&["push", p]);
        }
        let s = SmallRoot::new(&w, 24);
        let fs = rootfs().unwrap();
        s.ok(&["import", fs.to_str().unwrap(), "bb", "--change", "CMD [\"sh\"]"]);
        // A first run fills the caches (compiled seccomp programs) that stay whatever happens.
        s.ok(&["run", "--rm", "bb", "true"]);
        for leave in [0u64, 64 << 10, 1 << 20, 2 << 20, 7 << 19] {
            let mut attempts: Vec<(&str, Vec<String>)> = vec![
                ("import", vec!["import".into(), fs.display().to_string(), "imp:1".into()]),
                ("load", vec!["load".into(), "-i".into(), archive.display().to_string()]),
                ("run", vec!["run".into(), "--rm".into(), "bb".into(), "true".into()]),
                (
                    "run -d",
                    vec![
                        "run".into(),
                        "-d".into(),
                        "--name".into(),
                        "full".into(),
                        "bb".into(),
                        "sleep".into(),
                        "100".into(),
                    ],
                ),
                ("create", vec!["create".into(), "--name".into(), "fullc".into(), "bb".into()]),
            ];
            if let Some(p) = &pulled {
                attempts.push(("pull", vec!["pull".into(), p.clone()]));
            }
            for (what, args) in attempts {
                let before = s.files();
                let images = s.ok(&["images", "-q", "--no-trunc"]);
                s.fill(leave);
                let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
                let o = s.cove(&args);
                injected += 1;
                let what = format!("{who}: {what} with {leave} bytes free");
                if o.status.success() {
                    // Enough room after all: it must then be whole. Undo it for the next round.
                    s.unfill();
                    println!("{what}: succeeded");
                    match args[0] {
                        "run" | "create" => {
                            let _ = s.cove(&["rm", "-f", "full", "fullc"]);
                        }
                        _ => {
                            for image in ["imp:1", "arch/noise:1", pulled.as_deref().unwrap_or("none")] {
                                let _ = s.cove(&["rmi", image]);
                            }
                        }
                    }
                    survived += 1;
                    continue;
                }
                println!("{what}: {}", stderr(&o).trim_end());
                one_clear_line(&what, &o);
                s.unfill();
                // A start that fails leaves the container Created, as Docker does (whole:
                // `start` or `rm` is the way out).
                if args[..2] == ["run", "-d"] && s.ok(&["ps", "-aq"]).trim() != "" {
                    assert_eq!(s.ok(&["inspect", "-f", "{{.State.Status}}", "full"]).trim(), "created", "{what}");
                    s.ok(&["start", "full"]);
                    s.ok(&["rm", "-f", "full"]);
                }
                let after = s.files();
                let new: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
                let images_after = s.ok(&["images", "-q", "--no-trunc"]);
                let ps = s.ok(&["ps", "-aq"]);
                if !new.is_empty() || images_after != images || !ps.trim().is_empty() {
                    leaked += 1;
                }
                assert!(new.is_empty(), "{what}: left {new:?}");
                assert_eq!(images_after, images, "{what}: an image appeared");
                assert_eq!(ps.trim(), "", "{what}: a container was left");
                survived += 1;
            }
        }
        // The way out of a full disk works on a full disk: `ps`, `rm`, `rm -f`, `rmi` (they
        // free space, and need a few pages of the database to do it); `start` starts or says
        // why in one line, and the container stays whole.
        s.ok(&["run", "--name", "ran", "bb", "true"]);
        s.ok(&["create", "--name", "made", "bb", "true"]);
        s.ok(&["run", "-d", "--name", "up", "bb", "sleep", "100"]);
        s.ok(&["import", fs.to_str().unwrap(), "spare:1"]);
        s.fill(0);
        injected += 1;
        assert_eq!(s.ok(&["ps", "-aq"]).lines().count(), 3, "{who}: ps on a full disk");
        let o = s.cove(&["start", "made"]);
        if !o.status.success() {
            one_clear_line(&format!("{who}: start on a full disk"), &o);
        }
        s.ok(&["rm", "ran"]);
        s.ok(&["rm", "-f", "up"]);
        s.ok(&["rmi", "spare:1"]);
        s.unfill();
        s.ok(&["start", "made"]);
        s.ok(&["rm", "-f", "made"]);
        assert_eq!(s.ok(&["ps", "-aq"]).trim(), "", "{who}");
        survived += 1;
        // With the space back, everything works.
        s.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(s.ok(&["run", "--rm", "bb", "echo", "fine"]).trim(), "fine", "{who}");
        if let Some(p) = &pulled {
            s.ok(&["pull", p]);
        }
        // The log on a full disk: the container runs on; once space is back the log says
        // (once) what was lost and why, and holds only whole records.
        s.ok(&[
            "run",
            "-d",
            "--name",
            "chatty",
            "--network",
            "none",
            "bb",
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.02; done",
        ]);
        let id = s.ok(&["inspect", "-f", "{{.Id}}", "chatty"]).trim().to_string();
        assert!(wait_until(|| s.ok(&["logs", "chatty"]).contains("line-5\n"), 10), "{who}: no output");
        let pid1: i32 = std::fs::read_to_string(s.root.join("run/containers").join(&id).join("pid"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        s.fill(0);
        injected += 1;
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(alive(pid1), "{who}: the container died when its log filled the disk");
        s.unfill();
        let last = |t: &str| t.lines().filter_map(|l| l.strip_prefix("line-")?.parse::<u64>().ok()).max().unwrap_or(0);
        let at = last(&s.ok(&["logs", "chatty"]));
        assert!(wait_until(|| last(&s.ok(&["logs", "chatty"])) > at + 5, 10), "{who}: the log did not go on");
        let out = s.cove(&["logs", "chatty"]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        let notes: Vec<&str> = text.lines().filter(|l| l.to_lowercase().contains("no space left on device")).collect();
        assert_eq!(notes.len(), 1, "{who}: the monitor says why once: {notes:?}");
        assert!(notes[0].contains("lost"), "{who}: {}", notes[0]);
        let raw = std::fs::read_to_string(s.data().join("containers").join(&id).join("container.log")).unwrap();
        let broken: Vec<&str> = raw.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err()).collect();
        assert!(broken.is_empty(), "{who}: half-written records: {broken:?}");
        assert_eq!(s.ok(&["inspect", "-f", "{{.State.Status}}", "chatty"]).trim(), "running", "{who}");
        s.ok(&["rm", "-f", "chatty"]);
        survived += 1;
    }
    report("killed enospc", injected, survived, leaked, &[]);
    assert_eq!(leaked, 0);
}
