//! End-to-end tests (L3): drive the `cove` binary with the busybox test image, as whatever
//! user runs this binary (CI runs it as root, as a user with a subuid range and as one
//! without). Inputs from the environment:
//!
//! - `COVE_BIN`: the cove binary (default: the one cargo built);
//! - `COVE_TEST_ROOTFS`: a rootfs tarball from `scripts/make-rootfs.sh` (required);
//! - `COVE_REQUIRE_ALL=1`: a test that would skip fails instead (CI sets it).
//!
//! Every test uses its own `COVE_ROOT`, so tests run in parallel without sharing state.

mod common;

use common::{bin, rootfs, skip, stdout_of_success, SKIPS};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// One isolated cove world: its own state dir, the test image imported as `bb`.
struct World {
    root: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// Run cove as this user (through runuser) instead of as the test's own user.
    user: Option<String>,
    /// Run cove in this network namespace (`ip netns exec`; the mDNS tests' simulated LAN).
    netns: Option<String>,
}

impl World {
    fn new() -> Option<World> {
        World::new_for(None)
    }

    /// A world whose cove commands run as `user` (the test runs as root).
    fn new_as(user: &str) -> Option<World> {
        World::new_for(Some(user))
    }

    fn new_for(user: Option<&str>) -> Option<World> {
        World::new_with(user, None)
    }

    /// A world whose cove commands (its import too) run in network namespace `ns`, as root or
    /// as `user` (the test runs as root): `ip netns exec NS [runuser -u USER --] cove ...`.
    fn new_in(ns: &str, user: Option<&str>) -> Option<World> {
        World::new_with(user, Some(ns))
    }

    fn new_with(user: Option<&str>, netns: Option<&str>) -> Option<World> {
        let Some(fs) = rootfs() else {
            skip("COVE_TEST_ROOTFS not set (run scripts/make-rootfs.sh and export it)");
            return None;
        };
        let base = common::tmp_base();
        let root = tempfile::Builder::new().prefix("cove-e2e-").tempdir_in(base).expect("tempdir");
        if let Some(u) = user {
            let pw = nix::unistd::User::from_name(u).ok().flatten().expect("user exists");
            nix::unistd::chown(root.path(), Some(pw.uid), Some(pw.gid)).expect("chown the world to its user");
        }
        let w = World { root, env: vec![], user: user.map(String::from), netns: netns.map(String::from) };
        let out = w.cove(&["import", fs.to_str().unwrap(), "bb", "--change", "CMD [\"sh\"]"]);
        assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
        Some(w)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match &self.user {
            None => self.in_netns(bin().as_os_str()),
            Some(u) => {
                let mut c = self.in_netns("runuser".as_ref());
                c.args(["-u", u, "--"])
                    .arg(bin())
                    .env("HOME", format!("/home/{u}"))
                    .env("USER", u)
                    .env("LOGNAME", u)
                    .env_remove("XDG_RUNTIME_DIR");
                c
            }
        };
        c.args(args)
            .env("COVE_ROOT", self.root.path())
            .env("COVE_KEEPER_IDLE_SECS", "3")
            .env("COVE_NETD_IDLE_SECS", "2")
            .stdin(Stdio::null());
        // Names the networks' DNS does not know go upstream: never to this machine's resolver
        // from a test (nothing listens on port 1 of loopback: an upstream that refuses).
        c.env("COVE_DNS_UPSTREAMS", "127.0.0.1:1");
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    /// `prog`, through `ip netns exec NS` for a world in a namespace.
    fn in_netns(&self, prog: &std::ffi::OsStr) -> Command {
        match &self.netns {
            None => Command::new(prog),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(prog);
                c
            }
        }
    }

    fn with_env(mut self, k: &str, v: &str) -> World {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    fn cove(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run cove")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        stdout_of_success(args, self.cove(args))
    }

    fn run_sh(&self, extra: &[&str], script: &str) -> Output {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["bb", "sh", "-c", script]);
        self.cove(&a)
    }

    fn sh_ok(&self, extra: &[&str], script: &str) -> String {
        let o = self.run_sh(extra, script);
        assert!(
            o.status.success(),
            "sh {script:?} {extra:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn path(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // A failed assertion may leave containers running: remove them all, then stop this
        // world's keeper and network helper, so no process outlives the test.
        if let Ok(o) = self.cmd(&["ps", "-aq", "--no-trunc"]).output() {
            let ids: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect();
            if !ids.is_empty() {
                let mut args = vec!["rm".to_string(), "-f".to_string()];
                args.extend(ids);
                let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
                let _ = self.cmd(&refs).output();
            }
        }
        let _ = self.cmd(&["system", "migrate"]).output();
    }
}

/// `-v` mounts that lend the busybox image the host's /usr read-only (python3, dig).
const HOST_USR: [&str; 6] = ["-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro"];

/// `RUN… <HOST_USR> bb CMD…`: the arguments of a `run` whose command comes from the host's /usr.
fn with_host_usr<'a>(run: &[&'a str], cmd: &[&'a str]) -> Vec<&'a str> {
    run.iter().copied().chain(HOST_USR).chain(["bb"]).chain(cmd.iter().copied()).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_prints_and_reports_identity() {
    let Some(w) = World::new() else { return };
    let out = w.sh_ok(&[], "echo hi; id");
    assert!(out.starts_with("hi\n"), "{out}");
    assert!(out.contains("uid=0(root) gid=0(root)"), "{out}");
    assert_eq!(w.sh_ok(&[], "echo $$").trim(), "1", "the command is PID 1 of its own pid namespace");
}

#[test]
fn exit_codes_follow_docker() {
    let Some(w) = World::new() else { return };
    assert_eq!(w.run_sh(&[], "exit 3").status.code(), Some(3));
    assert_eq!(w.run_sh(&[], "sh -c 'kill -9 $$'; exit $?").status.code(), Some(137));
    let o = w.cove(&["run", "--rm", "bb", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    let o = w.cove(&["run", "--rm", "bb", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    let o = w.cove(&["run", "--rm", "--pull=never", "nosuchimage", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(stderr(&o).trim(), "cove: error: image \"nosuchimage\" not found");
    let o = w.cove(&["run", "--bogus-flag", "bb", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).starts_with("cove: error:"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    // Nothing is left behind by failed runs.
    assert_eq!(w.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn env_workdir_hostname_entrypoint() {
    let Some(w) = World::new() else { return };
    let envf = w.path().join("envfile");
    std::fs::write(&envf, "# comment\nB=from-file\n\nA=overridden-by-flag\n").unwrap();
    let out = w.ok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "--env-file",
        envf.to_str().unwrap(),
        "-w",
        "/tmp/work",
        "--hostname",
        "h1",
        "--entrypoint",
        "/bin/sh",
        "bb",
        "-c",
        "echo $A $B; pwd; hostname; cat /etc/hostname; echo $HOME",
    ]);
    assert_eq!(out, "1 from-file\n/tmp/work\nh1\nh1\n/root\n");
    // Image CMD is used when no command is given; `--entrypoint` drops it.
    let o = w.cove(&["run", "--rm", "-i", "bb"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn volumes_tmpfs_and_read_only() {
    let Some(w) = World::new() else { return };
    let data = w.path().join("hostdata");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "host data\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ro = format!("{}:/data:ro", data.display());
    let out = w.sh_ok(&["-v", &ro], "cat /data/in.txt; touch /data/x 2>/dev/null && echo WROTE || echo READONLY");
    assert_eq!(out, "host data\nREADONLY\n");
    let rw = format!("{}:/data", data.display());
    w.sh_ok(&["-v", &rw], "echo from-container > /data/out.txt");
    assert_eq!(std::fs::read_to_string(data.join("out.txt")).unwrap(), "from-container\n");
    let out = w.sh_ok(&["--tmpfs", "/run/t", "--read-only"], "grep ' /run/t ' /proc/mounts | cut -d' ' -f3; touch /x 2>/dev/null && echo WROTE || echo RO; touch /run/t/y && echo TMPFS-OK");
    assert_eq!(out, "tmpfs\nRO\nTMPFS-OK\n");
    let m = format!("type=bind,source={},target=/m,readonly", data.display());
    assert_eq!(w.sh_ok(&["--mount", &m], "cat /m/in.txt"), "host data\n");
    // Named volume persists between containers.
    w.sh_ok(&["-v", "vol1:/v"], "echo kept > /v/f");
    assert_eq!(w.sh_ok(&["-v", "vol1:/v"], "cat /v/f"), "kept\n");
}

#[test]
fn users_from_image_and_numeric() {
    let Some(w) = World::new() else { return };
    let o = w.run_sh(&["-u", "nosuchuser"], "id");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("unable to find user nosuchuser"), "{}", stderr(&o));
    // With a single-id map, the container's own namespace holds only the user's ids: the
    // supplementary group wheel cannot exist there.
    let single = !is_root() && w.ok(&["info", "--format", "json"]).contains("\"single id\"");
    let groups = if single { "groups=1000(app)" } else { "groups=10(wheel),1000(app)" };
    assert_eq!(w.sh_ok(&["-u", "app"], "id").trim(), format!("uid=1000(app) gid=1000(app) {groups}"));
    assert_eq!(w.sh_ok(&["-u", "1000:1000"], "id -u; id -g").trim(), "1000\n1000");
    assert_eq!(w.sh_ok(&["-u", "app"], "touch /home/app/x && echo HOME-WRITABLE").trim(), "HOME-WRITABLE");
}

#[test]
fn privileges_are_dockers() {
    let Some(w) = World::new() else { return };
    let status = w.sh_ok(&[], "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status");
    assert!(status.contains("CapEff:\t00000000a80425fb"), "{status}");
    assert!(status.contains("CapBnd:\t00000000a80425fb"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let s = w.sh_ok(&["--cap-drop", "all"], "grep CapEff /proc/self/status");
    assert!(s.contains("0000000000000000"), "{s}");
    let s = w.sh_ok(&["--cap-add", "sys_admin"], "grep CapEff /proc/self/status");
    assert!(s.contains("00000000a82425fb"), "{s}");
    let s = w.sh_ok(&["--security-opt", "seccomp=unconfined"], "grep Seccomp: /proc/self/status");
    assert!(s.contains("Seccomp:\t0"), "{s}");
    // The default seccomp profile refuses new namespaces without CAP_SYS_ADMIN.
    let o = w.run_sh(&[], "unshare -U true");
    assert_ne!(o.status.code(), Some(0));
    // Masked and read-only paths.
    // Masked: files read as empty (/dev/null over them), directories as empty tmpfs.
    assert_eq!(w.sh_ok(&[], "cat /proc/timer_list /proc/keys /proc/interrupts | wc -c").trim(), "0");
    assert_eq!(w.sh_ok(&[], "ls /proc/acpi | wc -l").trim(), "0");
    assert_eq!(w.sh_ok(&[], "echo x > /proc/sys/kernel/domainname 2>/dev/null && echo W || echo RO").trim(), "RO");
    let s = w.sh_ok(&["--ulimit", "nofile=100:200"], "ulimit -n; ulimit -Hn");
    assert_eq!(s, "100\n200\n");
}

#[test]
fn no_descriptor_or_cwd_leaks() {
    let Some(w) = World::new() else { return };
    // Give cove an extra open descriptor (not close-on-exec) and a cwd outside the container.
    let f = std::fs::File::open("/etc/hostname").unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut c = w.cmd(&["run", "--rm", "bb", "sh", "-c", "ls /proc/1/fd; readlink /proc/1/cwd"]);
    c.current_dir("/tmp");
    let flags = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFD).unwrap();
    let _ = flags;
    nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let fds: Vec<&str> = out.lines().take_while(|l| !l.starts_with('/')).collect();
    assert!(
        fds.iter().all(|d| ["0", "1", "2"].contains(d) || d.parse::<i32>().map(|n| n > 9).unwrap_or(false)),
        "leaked fds {fds:?} (host fd {fd})"
    );
    assert!(out.lines().last() == Some("/"), "{out}");
}

#[test]
fn tty_is_a_real_pty() {
    let Some(w) = World::new() else { return };
    let out = w.ok(&["run", "--rm", "-t", "bb", "sh", "-c", "tty; test -t 0 && echo TTY"]);
    assert!(out.contains("/dev/pts/0"), "{out:?}");
    assert!(out.contains("TTY"), "{out:?}");
}

#[test]
fn image_verbs() {
    let Some(w) = World::new() else { return };
    let list = w.ok(&["images"]);
    assert!(list.contains("bb ") && list.contains("latest"), "{list}");
    w.ok(&["tag", "bb", "bb:v1"]);
    assert!(w.ok(&["images"]).contains("v1"));
    let inspect: serde_json::Value = serde_json::from_str(&w.ok(&["image", "inspect", "bb:v1"])).unwrap();
    assert_eq!(inspect[0]["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().map(|a| a.len()), Some(1));
    let out = w.ok(&["rmi", "bb:v1"]);
    assert!(out.contains("Untagged: bb:v1"), "{out}");
    assert!(w.ok(&["run", "--rm", "bb", "true"]).is_empty());
    let o = w.cove(&["rmi", "nosuch"]);
    assert_ne!(o.status.code(), Some(0));
    // A container keeps its image; removing it frees the image.
    w.ok(&["run", "--name", "keep", "bb", "true"]);
    let o = w.cove(&["rmi", "bb"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("keep"), "{}", stderr(&o));
    assert!(w.ok(&["ps", "-a"]).contains("Exited (0)"));
    w.ok(&["rm", "keep"]);
    let out = w.ok(&["rmi", "bb"]);
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert_eq!(w.ok(&["images", "-q"]).trim(), "");
    // Import from stdin under another name.
    let fs = rootfs().unwrap();
    let mut c = w.cmd(&["import", "-", "again:1"]);
    c.stdin(std::fs::File::open(fs).unwrap());
    assert!(c.output().unwrap().status.success());
    assert!(w.ok(&["images"]).contains("again"));
}

#[test]
fn hostile_archive_is_refused_cleanly() {
    let Some(w) = World::new() else { return };
    let evil = w.path().join("evil.tar");
    let outside = w.path().join("outside-marker");
    {
        let f = std::fs::File::create(&evil).unwrap();
        let mut b = tar::Builder::new(f);
        let mut h = tar::Header::new_gnu();
        let data = b"pwned";
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Path traversal written raw (the tar crate refuses to set such a path).
        let name = format!("../../../../../../..{}", outside.display());
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
        b.finish().unwrap();
    }
    let o = w.cove(&["import", evil.to_str().unwrap(), "evil"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "one line: {}", stderr(&o));
    assert!(!outside.exists());
    assert!(!w.ok(&["images"]).contains("evil"));
    let trunc = w.path().join("trunc.tar");
    let full = std::fs::read(rootfs().unwrap()).unwrap();
    std::fs::write(&trunc, &full[..full.len() / 2 + 100]).unwrap();
    let o = w.cove(&["import", trunc.to_str().unwrap(), "trunc"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(!w.ok(&["images"]).contains("trunc"));
}

#[test]
fn concurrent_runs_keep_state_consistent() {
    let Some(w) = World::new() else { return };
    let mut kids = vec![];
    for i in 0..8 {
        let name = format!("c{i}");
        kids.push(
            w.cmd(&["run", "--name", &name, "bb", "sh", "-c", "echo $HOSTNAME"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    // And a name clash: exactly one of these may win.
    let a = w.cmd(&["run", "--name", "same", "bb", "true"]).stderr(Stdio::piped()).spawn().unwrap();
    let b = w.cmd(&["run", "--name", "same", "bb", "true"]).stderr(Stdio::piped()).spawn().unwrap();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(
        [oa.status.success(), ob.status.success()].iter().filter(|x| **x).count(),
        1,
        "{} / {}",
        stderr(&oa),
        stderr(&ob)
    );
    let loser = if oa.status.success() { &ob } else { &oa };
    assert!(stderr(loser).contains("already in use"), "{}", stderr(loser));
    let ids = w.ok(&["ps", "-aq"]);
    assert_eq!(ids.lines().count(), 9, "{ids}");
    let names: Vec<String> = ids.lines().map(String::from).collect();
    let mut args = vec!["rm"];
    args.extend(names.iter().map(|s| s.as_str()));
    w.ok(&args);
    assert_eq!(w.ok(&["ps", "-aq"]).trim(), "");
    let left = std::fs::read_dir(w.path().join("data/containers")).unwrap().count();
    assert_eq!(left, 0, "container dirs left behind");
}

#[test]
fn info_explains_the_host() {
    let Some(w) = World::new() else { return };
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(v["Rootless"], serde_json::json!(!is_root()));
    assert!(v["Storage"]["Driver"].is_string());
    assert!(v["Storage"]["Why"].as_str().is_some_and(|s| !s.is_empty()));
    if !is_root() {
        assert!(v["IdMapping"]["UidMap"].is_array());
    }
    let text = w.ok(&["info"]);
    assert!(text.contains("Storage driver:"), "{text}");
}

#[test]
fn resource_limits_apply_or_warn() {
    let Some(w) = World::new() else { return };
    let o = w.run_sh(&["--memory", "64m", "--pids-limit", "50", "--cpus", "0.5"], "echo ran");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ran\n");
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["info", "--format", "json"])).unwrap();
    if v["Cgroups"]["Usable"] == serde_json::json!(true) {
        // Limits are applied: the container sees its own pids limit through its cgroup.
        let out = w.sh_ok(&["--pids-limit", "50"], "cat /proc/self/cgroup >/dev/null; for i in $(seq 1 60); do sleep 5 & done 2>&1 | grep -c 'fork\\|resource' || true");
        assert_ne!(out.trim(), "0", "pids limit not enforced: {out}");
    } else {
        assert!(stderr(&o).contains("warning"), "expected a warning: {}", stderr(&o));
    }
    let o = w.run_sh(&["--memory", "1k"], "true");
    assert_eq!(o.status.code(), Some(125));
}

fn wait_until(mut f: impl FnMut() -> bool, secs: u64) -> bool {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(secs) {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn detached_containers_logs_exec_stop() {
    let Some(w) = World::new() else { return };
    let id = w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "bb",
        "sh",
        "-c",
        "trap 'echo got-term; exit 0' TERM; echo started; echo oops >&2; while true; do sleep 0.1; done",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    assert!(wait_until(|| w.ok(&["logs", "web"]).contains("started"), 5));
    let ps = w.ok(&["ps"]);
    assert!(ps.contains("web") && ps.contains("Up"), "{ps}");
    // stdout and stderr keep their streams; timestamps on request; tail.
    let o = w.cove(&["logs", "-t", "--tail", "1", &id[..12]]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Z oops"), "{}", stderr(&o));
    // exec joins the container: same pid namespace, the command's exit code comes back.
    let out = w.ok(&["exec", "web", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$"]);
    assert!(out.starts_with("sh -c trap"), "{out}");
    assert_ne!(out.lines().nth(1), Some("1"));
    assert_eq!(w.cove(&["exec", "web", "sh", "-c", "exit 7"]).status.code(), Some(7));
    assert_eq!(w.cove(&["exec", "web", "nosuchcmd"]).status.code(), Some(127));
    assert_eq!(w.ok(&["exec", "-e", "X=1", "-w", "/tmp", "web", "sh", "-c", "echo $X $(pwd)"]), "1 /tmp\n");
    let s = w.ok(&["exec", "web", "grep", "-E", "^(CapEff|NoNewPrivs|Seccomp):", "/proc/self/status"]);
    assert!(s.contains("a80425fb") && s.contains("NoNewPrivs:\t1") && s.contains("Seccomp:\t2"), "{s}");
    assert!(w.ok(&["top", "web"]).contains("sleep"));
    // Removing a running container needs -f.
    let o = w.cove(&["rm", "web"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is running"), "{}", stderr(&o));
    let t0 = std::time::Instant::now();
    w.ok(&["stop", "web"]);
    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "the TERM trap should end it quickly");
    assert!(w.ok(&["logs", "web"]).contains("got-term"));
    assert!(w.ok(&["ps", "-a"]).contains("Exited (0)"));
    assert_eq!(w.ok(&["wait", "web"]).trim(), "0");
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "web"])).unwrap();
    assert_eq!(v[0]["State"]["Status"], "exited");
    assert_eq!(v[0]["Id"], id);
    // Stopping a stopped container succeeds; unknown containers are one-line errors.
    w.ok(&["stop", "web"]);
    let o = w.cove(&["stop", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).trim(), "cove: error: no such container: nosuch");
    // Start again, kill, remove.
    w.ok(&["start", "web"]);
    assert!(w.ok(&["ps"]).contains("web"));
    w.ok(&["kill", "-s", "KILL", "web"]);
    assert_eq!(w.ok(&["wait", "web"]).trim(), "137");
    w.ok(&["rm", "web"]);
    assert_eq!(w.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn pid1_that_ignores_sigterm_is_killed_after_the_timeout() {
    let Some(w) = World::new() else { return };
    w.ok(&["run", "-d", "--name", "stubborn", "bb", "sleep", "1000"]);
    let t0 = std::time::Instant::now();
    w.ok(&["stop", "-t", "1", "stubborn"]);
    let dt = t0.elapsed();
    assert!(dt >= std::time::Duration::from_millis(900) && dt < std::time::Duration::from_secs(6), "{dt:?}");
    assert_eq!(w.ok(&["wait", "stubborn"]).trim(), "137");
    w.ok(&["rm", "stubborn"]);
}

#[test]
fn create_start_attach_and_restart_policy() {
    let Some(w) = World::new() else { return };
    let id = w.ok(&["create", "--name", "job", "bb", "sh", "-c", "echo job-ran; exit 4"]);
    assert!(w.ok(&["ps", "-a"]).contains("Created"));
    let o = w.cove(&["start", "-a", id.trim()]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stdout).contains("job-ran"));
    w.ok(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "bb", "sh", "-c", "echo attempt; exit 3"]);
    assert!(wait_until(|| w.ok(&["ps", "-a", "--filter", "name=flaky"]).contains("Exited (3)"), 15));
    assert_eq!(w.ok(&["logs", "flaky"]).matches("attempt").count(), 3, "first run + 2 restarts");
    let o = w.cove(&["run", "-d", "--restart", "sometimes", "bb", "true"]);
    assert_eq!(o.status.code(), Some(125));
    w.ok(&["container", "prune", "-f"]);
    assert_eq!(w.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn killed_monitor_is_noticed() {
    let Some(w) = World::new() else { return };
    let id = w.ok(&["run", "-d", "--name", "orphan", "bb", "sleep", "1000"]);
    let rd = w.path().join("run/containers").join(id.trim());
    let mon: i32 =
        std::fs::read_to_string(rd.join("monitor.pid")).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mon), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_until(|| !w.ok(&["ps", "-a"]).contains("Up"), 5), "still reported running");
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "orphan"])).unwrap();
    assert_eq!(v[0]["State"]["Status"], "exited");
    w.ok(&["rm", "-f", "orphan"]);
    assert_eq!(w.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn monitor_pumps_in_the_small_binary_and_needs_it() {
    let Some(w) = World::new() else { return };
    // Runs until told to exit 3 (a moment after, so PID 1's exit cannot SIGKILL the exec that
    // told it); the file stays in its rootfs, so the restarted run ends at once.
    let id = w.ok(&[
        "run",
        "-d",
        "--name",
        "again",
        "--restart",
        "on-failure:1",
        "bb",
        "sh",
        "-c",
        "while [ ! -e /go ]; do sleep 0.05; done; sleep 0.5; exit 3",
    ]);
    let rd = w.path().join("run/containers").join(id.trim());
    let read_pid = |f: &str| -> i32 {
        std::fs::read_to_string(rd.join(f)).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    let mon = read_pid("monitor.pid");
    let exe = |p: i32| {
        std::fs::read_link(format!("/proc/{p}/exe"))
            .map(|e| e.file_name().unwrap().to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    assert!(wait_until(|| exe(mon) == "cove-monitor", 5), "monitor image: {}", exe(mon));
    let ppid = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PPid:").map(|v| v.trim().parse::<i32>().unwrap_or(0)))
    };
    let first = read_pid("pid");
    assert_eq!(ppid(first), Some(mon), "PID 1 is the monitor's child");
    // The restart goes through cove and back to the pump: a new PID 1, the same monitor.
    w.ok(&["exec", "again", "touch", "/go"]);
    assert_eq!(w.ok(&["wait", "again"]).trim(), "3");
    assert_ne!(read_pid("pid"), first, "restarted once");
    assert_eq!(w.ok(&["logs", "again"]), "");
    w.ok(&["rm", "again"]);
    // Without cove-monitor next to cove: a clear error, nothing left running.
    let lone = w.path().join("lone");
    std::fs::create_dir(&lone).unwrap();
    std::fs::copy(bin(), lone.join("cove")).unwrap();
    // A process another test thread forks may hold the copy's write descriptor for a moment
    // (until its exec): ETXTBSY then, so try again.
    let run = || {
        Command::new(lone.join("cove"))
            .args(["run", "-d", "bb", "true"])
            .env("COVE_ROOT", w.path())
            .env("COVE_KEEPER_IDLE_SECS", "3")
            .stdin(Stdio::null())
            .output()
    };
    let mut o = run();
    for _ in 0..50 {
        match &o {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => break,
        }
        o = run();
    }
    let o = o.unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("cove-monitor not found"), "{}", stderr(&o));
    assert!(!w.ok(&["ps"]).contains("Up"));
}

#[test]
fn twenty_parallel_run_d_and_rm_f() {
    let Some(w) = World::new() else { return };
    let spawn_all = |args: &dyn Fn(usize) -> Vec<String>| {
        let kids: Vec<_> = (0..20)
            .map(|i| {
                let a = args(i);
                let refs: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
                w.cmd(&refs).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
            })
            .collect();
        kids.into_iter().map(|k| k.wait_with_output().unwrap()).collect::<Vec<_>>()
    };
    let outs = spawn_all(&|i| {
        vec!["run".into(), "-d".into(), "--name".into(), format!("p{i}"), "bb".into(), "sleep".into(), "1000".into()]
    });
    for o in &outs {
        assert!(o.status.success(), "{}", stderr(o));
    }
    assert_eq!(w.ok(&["ps", "-q"]).lines().count(), 20);
    let outs = spawn_all(&|i| vec!["rm".into(), "-f".into(), format!("p{i}")]);
    for o in &outs {
        assert!(o.status.success(), "{}", stderr(o));
    }
    assert_eq!(w.ok(&["ps", "-aq"]).trim(), "");
    assert_eq!(std::fs::read_dir(w.path().join("data/containers")).unwrap().count(), 0);
    let runs = w.path().join("run/containers");
    assert_eq!(std::fs::read_dir(&runs).map(|d| d.count()).unwrap_or(0), 0, "no monitor state left");
}

/// Builds a docker-archive (`docker save` layout) around the test rootfs.
fn docker_archive(path: &Path, rootfs: &Path, tag: &str) {
    let layer = std::fs::read(rootfs).unwrap();
    let config = serde_json::json!({"Cmd": ["sh", "-c", "echo loaded-image-cmd"], "Env": ["PATH=/bin", "FROM_IMAGE=yes"], "WorkingDir": "/tmp"});
    write_docker_archive(path, tag, config, &[layer]);
}

/// Writes a docker-archive at `path` of an image `tag` with `config` as its `config` object and
/// these layer tarballs (bottom first).
fn write_docker_archive(path: &Path, tag: &str, config: serde_json::Value, layers: &[Vec<u8>]) {
    use sha2::Digest;
    let diffs: Vec<String> =
        layers.iter().map(|l| format!("sha256:{}", hex::encode(sha2::Sha256::digest(l)))).collect();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": config, "rootfs": {"type": "layers", "diff_ids": diffs}});
    let config = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", hex::encode(sha2::Sha256::digest(&config)));
    let names: Vec<String> = (1..=layers.len()).map(|i| format!("layer{i}/layer.tar")).collect();
    let manifest =
        serde_json::to_vec(&serde_json::json!([{"Config": config_name, "RepoTags": [tag], "Layers": names}])).unwrap();
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&config_name, &config);
    for (n, l) in names.iter().zip(layers) {
        add(n, l);
    }
    add("manifest.json", &manifest);
    b.finish().unwrap();
}

/// A world whose cove runs rootless: the test's own user, or covetest in the root pass (`None`
/// after a skip when there is no covetest).
fn rootless_world() -> Option<World> {
    if !is_root() {
        return World::new();
    }
    if nix::unistd::User::from_name("covetest").ok().flatten().is_none() {
        skip("no user covetest (tests/run-all.sh makes it): a rootless case not checked in the root pass");
        return None;
    }
    World::new_as("covetest")
}

#[test]
fn load_docker_archive_and_run_it() {
    let Some(w) = World::new() else { return };
    let archive = w.path().join("saved.tar");
    docker_archive(&archive, &rootfs().unwrap(), "loaded/app:1.0");
    let out = w.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: loaded/app:1.0");
    assert_eq!(w.ok(&["run", "--rm", "loaded/app:1.0"]), "loaded-image-cmd\n");
    assert_eq!(w.ok(&["run", "--rm", "loaded/app:1.0", "sh", "-c", "echo $FROM_IMAGE $(pwd)"]), "yes /tmp\n");
    // The same layer as the imported image is stored once.
    let layers = std::fs::read_dir(w.path().join("data/storage/layers")).unwrap().count();
    assert_eq!(layers, 1);
    // From stdin too.
    let mut c = w.cmd(&["load"]);
    c.stdin(std::fs::File::open(&archive).unwrap());
    assert!(c.output().unwrap().status.success());
    // A damaged archive: clear error, no image.
    let bad = w.path().join("bad.tar");
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let before = w.ok(&["images", "-q"]);
    let o = w.cove(&["load", "-i", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert_eq!(w.ok(&["images", "-q"]), before);
}

#[test]
fn interactive_tty_with_script() {
    let Some(w) = World::new() else { return };
    if !Path::new("/usr/bin/script").exists() {
        skip("script(1) from bsdutils not installed");
        return;
    }
    // script(1) gives cove a real terminal on stdin; the container sees a pty with the same
    // window size, and input typed at the terminal reaches the shell.
    let cmd = format!("stty cols 123 rows 45; {} run --rm -it bb sh", bin().display());
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("COVE_ROOT", w.path())
        .env("COVE_KEEPER_IDLE_SECS", "3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"echo in-container $((6*7)); stty size; exit 3\n").unwrap();
        // Keep our end open until the container is done; script(1) ends when its child does.
        let o = child.wait_with_output().unwrap();
        drop(stdin);
        check_script(o);
    }
}

fn check_script(o: Output) {
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("in-container 42"), "{out:?}");
    assert!(out.contains("45 123"), "{out:?}");
    assert_eq!(o.status.code(), Some(3), "{out:?}");
}

#[test]
fn any_uid_gets_an_identity() {
    let Some(w) = World::new() else { return };
    // OpenShift-style random UIDs, with and without a group, a read-only root filesystem, and
    // an id beyond any subuid range: whoami, id, getpwuid (busybox `id -un`), a writable HOME.
    for (user, extra) in [("10000", vec![]), ("1000660000:0", vec!["--read-only"]), ("70000", vec![])] {
        let uid = user.split(':').next().unwrap();
        let mut args: Vec<&str> = vec!["-u", user];
        args.extend(extra.iter());
        let out = w.sh_ok(&args, "whoami; id -u; id -g; id -un; echo $HOME $USER $LOGNAME; touch $HOME/x && echo HOME-WRITABLE; grep \"^user$(id -u):\" /etc/passwd | cut -d: -f6");
        let name = format!("user{uid}");
        assert_eq!(
            out,
            format!("{name}\n{uid}\n0\n{name}\n/home/{name} {name} {name}\nHOME-WRITABLE\n/home/{name}\n"),
            "user {user}"
        );
    }
    // The user picks where HOME lives; -e wins over the defaults.
    assert_eq!(w.sh_ok(&["-u", "4242", "--user-home", "/work"], "echo $HOME; touch /work/f && echo OK"), "/work\nOK\n");
    assert_eq!(w.sh_ok(&["-u", "4242", "-e", "USER=custom"], "echo $USER"), "custom\n");
    // Image users keep theirs; unknown names are a clear error.
    assert_eq!(w.sh_ok(&["-u", "app"], "whoami; echo $HOME"), "app\n/home/app\n");
    let o = w.run_sh(&["-u", "nosuch"], "true");
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(stderr(&o).trim(), "cove: error: unable to find user nosuch: no matching entries in passwd file");
    // The image is untouched: another container sees no such user.
    assert_eq!(w.sh_ok(&[], "grep -c user10000 /etc/passwd || true").trim(), "0");
    // exec sessions get the same identity.
    w.ok(&["run", "-d", "--name", "idweb", "-u", "10000", "bb", "sleep", "1000"]);
    assert_eq!(w.ok(&["exec", "idweb", "whoami"]), "user10000\n");
    assert_eq!(
        w.ok(&["exec", "-u", "10000", "idweb", "sh", "-c", "whoami; echo $HOME"]),
        "user10000\n/home/user10000\n"
    );
    w.ok(&["rm", "-f", "idweb"]);
}

#[test]
fn init_reaps_forwards_and_exits_like_the_child() {
    let Some(w) = World::new() else { return };
    // An orphan of an orphan is reaped: no zombie left behind.
    let out = w.sh_ok(&["--init"], "(sh -c 'sleep 0.2 &' &); sleep 1; ps -o stat,comm | grep -c '^Z' || true");
    assert_eq!(out.trim(), "0", "zombies: {out}");
    // The command is not PID 1; PID 1 is init.
    assert_eq!(w.sh_ok(&["--init"], "echo $$; cat /proc/1/comm"), "2\ninit\n");
    // Exit codes: the child's, 128+N when killed.
    assert_eq!(w.run_sh(&["--init"], "exit 3").status.code(), Some(3));
    assert_eq!(w.run_sh(&["--init"], "kill -9 $$").status.code(), Some(137));
    // A command that ignores SIGTERM as PID 1 would (sleep) stops at once under init, and the
    // signal reaches its whole process group (background children too).
    w.ok(&["run", "-d", "--init", "--name", "fast", "bb", "sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let t0 = std::time::Instant::now();
    w.ok(&["stop", "fast"]);
    assert!(t0.elapsed() < std::time::Duration::from_millis(1000), "{:?}", t0.elapsed());
    assert_eq!(w.ok(&["wait", "fast"]).trim(), "143");
    w.ok(&["rm", "fast"]);
    // Per-user default in the config file, and --init=false overriding it.
    let conf = w.path().join("cove.conf");
    std::fs::write(&conf, "init = true\n").unwrap();
    let o = w.cmd(&["run", "--rm", "bb", "sh", "-c", "echo $$"]).env("COVE_CONFIG", &conf).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "2\n");
    let o = w
        .cmd(&["run", "--rm", "--init=false", "bb", "sh", "-c", "echo $$"])
        .env("COVE_CONFIG", &conf)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1\n");
    std::fs::write(&conf, "init = perhaps\n").unwrap();
    let o = w.cmd(&["run", "--rm", "bb", "true"]).env("COVE_CONFIG", &conf).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("cove.conf:1: init must be true or false"), "{}", stderr(&o));
}

#[test]
fn without_init_stop_still_ends_a_stubborn_pid1() {
    let Some(w) = World::new() else { return };
    w.ok(&[
        "run",
        "-d",
        "--name",
        "stub",
        "--stop-timeout",
        "1",
        "bb",
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 0.1; done",
    ]);
    let t0 = std::time::Instant::now();
    w.ok(&["stop", "stub"]);
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(w.ok(&["wait", "stub"]).trim(), "137");
}

/// A "LAN client": a network namespace with a veth pair to the host (host side
/// 198.18.N.1/30, client side 198.18.N.2, the benchmarking range, never routed anywhere),
/// so a client has a non-loopback address. Made by the test (root only), removed on drop.
struct LanClient {
    ns: String,
    host_ip: String,
    client_ip: String,
    /// The client side's IPv6 address (fd63:7465:7374:N::2/64; the host side is ::1).
    client_ip6: String,
    host_ip6: String,
}

impl LanClient {
    fn new() -> LanClient {
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = (std::process::id() + 37 * MADE.fetch_add(1, Ordering::SeqCst)) % 250 + 1;
        let (ns, host_if) = (format!("cvlan{n}"), format!("cvlanh{n}"));
        let (host_ip, client_ip) = (format!("198.18.{n}.1"), format!("198.18.{n}.2"));
        let ip = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().expect("run ip");
            assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        };
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        ip(&["netns", "add", &ns]);
        let client_ip6 = format!("fd63:7465:7374:{n:x}::2");
        let lan = LanClient {
            ns: ns.clone(),
            host_ip: host_ip.clone(),
            client_ip: client_ip.clone(),
            client_ip6: client_ip6.clone(),
            host_ip6: format!("fd63:7465:7374:{n:x}::1"),
        };
        ip(&["link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("{client_ip}/30"), "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-6", "addr", "add", &format!("fd63:7465:7374:{n:x}::1/64"), "dev", &host_if, "nodad"]);
        ip(&["-6", "-n", &ns, "addr", "add", &format!("{client_ip6}/64"), "dev", "eth0", "nodad"]);
        lan
    }

    /// Asks `host_ip:port` over TCP, then over UDP, what address the server saw; retries
    /// while the container starts.
    fn ask(&self, port: u16) -> (String, String) {
        self.ask_at(&self.host_ip, port)
    }

    /// [`LanClient::ask`] at another host address (the IPv6 one).
    fn ask_at(&self, host: &str, port: u16) -> (String, String) {
        let py = format!(
            r#"
import socket, time
def tcp():
    c = socket.create_connection(("{h}", {port}), timeout=2)
    out = b""
    while True:
        b = c.recv(100)
        if not b: return out.decode()
        out += b
def udp():
    u = socket.socket(socket.AF_INET6 if ":" in "{h}" else socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(0.5)
    u.sendto(b"who", ("{h}", {port})); return u.recv(100).decode()
for f in (tcp, udp):
    for i in range(40):
        try:
            print(f()); break
        except OSError:
            time.sleep(0.25)
    else:
        print("no answer")
"#,
            h = host
        );
        let o = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-c", &py])
            .output()
            .expect("run python3 in the client namespace");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut l = out.lines().map(String::from);
        (l.next().unwrap_or_default(), l.next().unwrap_or_default())
    }
}

impl Drop for LanClient {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// For tests that need root to build their LAN namespace: `None` outside the root pass (after
/// a note: the root pass runs them for both root's cove and covetest's, through runuser),
/// else a world for root and, when the user exists, one for covetest.
fn root_and_covetest_worlds(test: &str) -> Option<Vec<(&'static str, Option<World>)>> {
    if !is_root() {
        println!("note: {test} runs in the root pass (root and covetest)");
        return None;
    }
    let mut worlds = vec![("root", World::new())];
    if nix::unistd::User::from_name("covetest").ok().flatten().is_some() {
        worlds.push(("covetest", World::new_as("covetest")));
    } else {
        skip(&format!("no user covetest (tests/run-all.sh makes it): {test} not checked rootless"));
    }
    Some(worlds)
}

#[test]
fn outbound_ipv6_tcp_goes_through_the_helper() {
    let Some(worlds) = root_and_covetest_worlds("outbound_ipv6_tcp_goes_through_the_helper") else { return };
    // A server on the LAN namespace's IPv6 address; containers on a dual-stack network reach
    // it with no pasta or slirp4netns at all (COVE_NETWORK_CMD=none): only the helper's
    // redirect of IPv6 TCP can carry the connection.
    let lan = LanClient::new();
    let port = free_port();
    let py = format!(
        "import socket\ns = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('{}', {port})); s.listen(8)\nwhile True:\n    c, a = s.accept(); c.sendall(b'v6-ok'); c.close()\n",
        lan.client_ip6
    );
    // Under `timeout`: if this test process is killed, the server (which keeps the namespace
    // and its veth alive) still ends by itself.
    let mut server = Command::new("timeout")
        .args(["120", "ip", "netns", "exec", &lan.ns, "python3", "-c", &py])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the LAN server");
    let client = format!(
        "import socket, time\nfor i in range(40):\n    try:\n        c = socket.create_connection(('{}', {port}), timeout=3); print(c.recv(10).decode()); break\n    except OSError as e:\n        err = e; time.sleep(0.25)\nelse:\n    print('failed:', err)\n",
        lan.client_ip6
    );
    for (who, w) in worlds {
        let Some(w) = w else { break };
        let w = w.with_env("COVE_NETWORK_CMD", "none");
        w.ok(&["network", "create", "--ipv6", "dual"]);
        let out = w.ok(&with_host_usr(&["run", "--rm", "--network", "dual"], &["/usr/bin/python3", "-c", &client]));
        assert_eq!(out.trim(), "v6-ok", "{who}: IPv6 TCP from a container to [{}]:{port}", lan.client_ip6);
    }
    // SIGTERM, which timeout passes on to the server (SIGKILL would end timeout alone).
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = server.wait();
}

/// A TCP and UDP server on port 80 of the container (the host's python3, through the /usr
/// mount) that answers each client with the client's address as the container sees it.
/// Both families: one IPv6 socket each for TCP and UDP that takes IPv4 too (IPv4 clients
/// show up as ::ffff:a.b.c.d, which the test strips).
const PEER_SERVER_PY: &str = r#"
import socket, threading
t = socket.socket(socket.AF_INET6); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); t.bind(("::", 80)); t.listen(16)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); u.bind(("::", 80))
def udp():
    while True:
        d, a = u.recvfrom(100); u.sendto(a[0].removeprefix("::ffff:").encode(), a)
threading.Thread(target=udp, daemon=True).start()
while True:
    c, a = t.accept(); c.sendall(a[0].removeprefix("::ffff:").encode()); c.close()
"#;

#[test]
fn published_ports_keep_the_clients_address() {
    let Some(worlds) = root_and_covetest_worlds("published_ports_keep_the_clients_address") else { return };
    let lan = LanClient::new();
    for (who, w) in worlds {
        let Some(w) = w else { return };
        let port = free_port();
        let publish = [format!("{port}:80"), format!("{port}:80/udp")];
        // On a dual-stack network: IPv6 clients reach it too (the port is published on [::]).
        w.ok(&["network", "create", "--ipv6", "dual"]);
        w.ok(&with_host_usr(
            &["run", "-d", "--name", "peer", "--network", "dual", "-p", &publish[0], "-p", &publish[1]],
            &["/usr/bin/python3", "-c", PEER_SERVER_PY],
        ));
        let ports = w.ok(&["port", "peer"]);
        assert!(
            ports.contains(&format!("80/tcp -> 0.0.0.0:{port}")) && ports.contains(&format!("80/tcp -> [::]:{port}")),
            "{who}: {ports}"
        );
        let (tcp, udp) = lan.ask(port);
        println!("{who}: the container saw the LAN client as {tcp} (tcp) and {udp} (udp)");
        let (tcp6, udp6) = lan.ask_at(&lan.host_ip6, port);
        println!("{who}: over IPv6 the container saw {tcp6} (tcp) and {udp6} (udp)");
        assert_eq!(
            (tcp6.as_str(), udp6.as_str()),
            (lan.client_ip6.as_str(), lan.client_ip6.as_str()),
            "{who}: the container must see the LAN client's IPv6 address"
        );
        assert_eq!(
            (tcp.as_str(), udp.as_str()),
            (lan.client_ip.as_str(), lan.client_ip.as_str()),
            "{who}: the container must see the LAN client's address over TCP and UDP"
        );
        // A loopback client cannot be kept (the container would answer its own loopback):
        // it appears as the network's gateway, and still gets its answer.
        let v: serde_json::Value = serde_json::from_str(&w.ok(&["network", "inspect", "dual"])).unwrap();
        let gw = v[0]["IPAM"]["Config"][0]["Gateway"].as_str().unwrap_or_default().to_string();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("loopback client");
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut seen = String::new();
        use std::io::Read;
        s.read_to_string(&mut seen).unwrap();
        assert_eq!(seen, gw, "{who}: a loopback client shows up as the gateway");
        w.ok(&["rm", "-f", "peer"]);
        w.ok(&["network", "rm", "dual"]);
    }
}

const UDP_ECHO_C: &str = r#"
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) return 1;
    for (;;) {
        char buf[512], out[600];
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
        if (n < 0) continue;
        memcpy(out, "echo:", 5);
        memcpy(out + 5, buf, n);
        sendto(s, out, n + 5, 0, (struct sockaddr *)&peer, len);
    }
}
"#;

/// A free port on 127.0.0.1 (bound and released; good enough for a test on loopback).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn bridge_networks_connect_containers() {
    let Some(w) = World::new() else { return };
    let id = w.ok(&["network", "create", "--subnet", "10.91.7.0/24", "mynet"]);
    assert_eq!(id.trim().len(), 64);
    assert!(w.ok(&["network", "ls"]).contains("10.91.7.0/24"));
    let o = w.cove(&["network", "create", "--subnet", "10.91.7.128/25", "overlap"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let o = w.cove(&["network", "create", "mynet"]);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    w.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "mynet",
        "--network-alias",
        "postgres",
        "bb",
        "sh",
        "-c",
        "while true; do nc -l -p 5000 -e echo pong-from-db; done",
    ]);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "db"])).unwrap();
    let ip = v[0]["NetworkSettings"]["Networks"]["mynet"]["IPAddress"].as_str().unwrap().to_string();
    assert_eq!(ip, "10.91.7.2", "first address after the gateway");
    assert!(w.ok(&["exec", "db", "cat", "/etc/hosts"]).contains("10.91.7.2\t"), "own address in /etc/hosts");
    // Another container on the network reaches it by address: ICMP with default caps, and TCP.
    let out = w.sh_ok(&["--network", "mynet"], &format!("ip -4 -o addr show eth0 | grep -o 'inet [0-9./]*'; ip route | grep default; ping -c1 -W2 {ip} >/dev/null && echo PING-OK; echo | nc {ip} 5000"));
    assert_eq!(out, "inet 10.91.7.3/24\ndefault via 10.91.7.1 dev eth0 \nPING-OK\npong-from-db\n");
    // exec joins the network namespace too.
    assert!(w.ok(&["exec", "db", "ping", "-c1", "-W2", "10.91.7.1"]).contains("1 packets received"));
    // A container on another network cannot reach it.
    w.ok(&["network", "create", "--subnet", "10.91.8.0/24", "other"]);
    let o = w.run_sh(&["--network", "other"], &format!("echo | nc -w 1 {ip} 5000"));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("pong"));
    // Addresses are leased once and freed on rm; networks in use cannot be removed.
    let o = w.cove(&["network", "rm", "mynet"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("active endpoints (db)"), "{}", stderr(&o));
    w.ok(&["rm", "-f", "db"]);
    w.ok(&["run", "-d", "--name", "db2", "--network", "mynet", "bb", "sleep", "1000"]);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "db2"])).unwrap();
    assert_eq!(v[0]["NetworkSettings"]["IPAddress"], "10.91.7.2", "the freed address is reused");
    w.ok(&["rm", "-f", "db2"]);
    w.ok(&["network", "rm", "mynet", "other"]);
    // Without --network a container is on the default network "cove".
    let out = w.sh_ok(&[], "ip -4 -o addr show eth0 | grep -c inet");
    assert_eq!(out.trim(), "1");
    assert!(w.ok(&["network", "ls"]).contains("cove"));
    let o = w.cove(&["run", "--rm", "--network", "nosuchnet", "bb", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(stderr(&o).trim(), "cove: error: network nosuchnet not found");
    // The helper goes away when idle, taking its namespace and bridges with it.
    w.ok(&["network", "prune"]);
    let pidfile = w.path().join("run/netd.pid");
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !pidfile.exists()
    });
    assert!(gone, "network helper still running");
}

#[test]
fn published_ports_tcp_and_udp() {
    let Some(w) = World::new() else { return };
    // busybox-static has no UDP server: build a tiny static UDP echo to mount in.
    let src = w.path().join("udpecho.c");
    std::fs::write(&src, UDP_ECHO_C).unwrap();
    let udpecho = w.path().join("udpecho");
    let cc = Command::new("cc").args(["-static", "-O2", "-o"]).arg(&udpecho).arg(&src).output();
    if !cc.as_ref().is_ok_and(|o| o.status.success()) {
        skip("no C compiler with static libc (apt-get install gcc libc6-dev) to build the UDP echo server");
        return;
    }
    let (tp, up) = (free_port(), free_port());
    let www = w.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello-web\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(www.join("index.html"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let vol = format!("{}:/www:ro", www.display());
    let echo_vol = format!("{}:/udpecho:ro", udpecho.display());
    w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &format!("127.0.0.1:{tp}:80"),
        "-p",
        &format!("127.0.0.1:{up}:53/udp"),
        "-v",
        &vol,
        "-v",
        &echo_vol,
        "bb",
        "sh",
        "-c",
        "httpd -f -p 80 -h /www & exec /udpecho 53",
    ]);
    let ports = w.ok(&["port", "web"]);
    assert!(ports.contains(&format!("80/tcp -> 127.0.0.1:{tp}")), "{ports}");
    assert!(ports.contains(&format!("53/udp -> 127.0.0.1:{up}")), "{ports}");
    // TCP from the host through the published port.
    let body = (0..50)
        .find_map(|_| {
            let r = (|| -> std::io::Result<String> {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(("127.0.0.1", tp))?;
                s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
                s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out)
            })();
            match r {
                Ok(b) if b.contains("hello-web") => Some(b),
                _ => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    None
                }
            }
        })
        .expect("published TCP port answers");
    assert!(body.starts_with("HTTP/1.") && body.contains(" 200 "), "{body}");
    // UDP round trip.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
    let got = (0..20).find_map(|_| {
        sock.send_to(b"ping\n", ("127.0.0.1", up)).ok()?;
        let mut buf = [0u8; 64];
        let (n, _) = sock.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    assert_eq!(got.as_deref(), Some("echo:ping\n"));
    // A port in use fails clearly and leaves nothing behind.
    let o = w.cove(&["run", "--rm", "--name", "clash", "-p", &format!("127.0.0.1:{tp}:80"), "bb", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("address already in use"), "{}", stderr(&o));
    assert!(!w.ok(&["ps", "-a"]).contains("clash"));
    if !is_root() {
        let o = w.cove(&["run", "--rm", "-p", "80:80", "bb", "true"]);
        assert_eq!(o.status.code(), Some(125));
        assert!(stderr(&o).contains("net.ipv4.ip_unprivileged_port_start"), "{}", stderr(&o));
    }
    // host and none: nothing to publish into, as Docker and podman say and go on;
    // another container's namespace: a conflict.
    let o = w.cove(&["run", "--rm", "-p", "80", "--network", "none", "bb", "echo", "ran"]);
    assert_eq!((o.status.code(), String::from_utf8_lossy(&o.stdout).as_ref()), (Some(0), "ran\n"), "{}", stderr(&o));
    assert_eq!(stderr(&o), "cove: warning: published ports are discarded with --network none\n");
    let o = w.cove(&["run", "-d", "--name", "hostnet", "-p", "80", "--network", "host", "bb", "sleep", "30"]);
    assert!(o.status.success() && stderr(&o).contains("discarded with --network host"), "{}", stderr(&o));
    assert_eq!(w.ok(&["port", "hostnet"]), "");
    w.ok(&["rm", "-f", "hostnet"]);
    let o = w.cove(&["run", "--rm", "-p", "80", "--network", "container:web", "bb", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("conflicting options"), "{}", stderr(&o));
    // inspect: Docker's Ports map, as scripts index it.
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "web"])).unwrap();
    assert_eq!(
        v[0]["NetworkSettings"]["Ports"]["80/tcp"][0],
        serde_json::json!({"HostIp": "127.0.0.1", "HostPort": tp.to_string()})
    );
    assert_eq!(v[0]["NetworkSettings"]["Ports"]["53/udp"][0]["HostPort"], up.to_string());
    assert_eq!(v[0]["HostConfig"]["NetworkMode"], "bridge");
    assert_eq!(v[0]["NetworkSettings"]["IPPrefixLen"], 24);
    // `port NAME PORT` prints the host side alone; an unpublished port is an error.
    assert_eq!(w.ok(&["port", "web", "80"]), format!("127.0.0.1:{tp}\n"));
    assert_eq!(w.ok(&["port", "web", "53/udp"]), format!("127.0.0.1:{up}\n"));
    let o = w.cove(&["port", "web", "81"]);
    assert!(stderr(&o).contains("no public port '81/tcp' published for web"), "{}", stderr(&o));
    // --expose adds to what -P publishes (random host ports), ranges too.
    w.ok(&["run", "-d", "--name", "exp", "--expose", "7000-7001", "--expose", "7100/udp", "-P", "bb", "sleep", "300"]);
    let ports = w.ok(&["port", "exp"]);
    for p in ["7000/tcp -> 0.0.0.0:", "7001/tcp -> 0.0.0.0:", "7100/udp -> 0.0.0.0:"] {
        assert!(ports.contains(p), "{p}: {ports}");
    }
    let o = w.cove(&["run", "--rm", "--expose", "9-2", "bb", "true"]);
    assert!(stderr(&o).contains("invalid --expose \"9-2\""), "{}", stderr(&o));
    // Removing the container closes the port.
    w.ok(&["rm", "-f", "web"]);
    assert!(std::net::TcpStream::connect(("127.0.0.1", tp)).is_err(), "port still open after rm");
}

#[test]
fn attach_streams_output_and_terminal_input() {
    let Some(w) = World::new() else { return };
    w.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "bb",
        "sh",
        "-c",
        "sleep 0.5; for i in 1 2 3; do echo tick $i; sleep 0.2; done; exit 4",
    ]);
    let o = w.cove(&["attach", "ticker"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("tick 3"), "{}", String::from_utf8_lossy(&o.stdout));
    // With a terminal: our input reaches the container's shell.
    w.ok(&["run", "-d", "-t", "--name", "shell", "bb", "sh"]);
    let mut child = w
        .cmd(&["attach", "shell"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        stdin.write_all(b"echo typed-$((3*3)); exit 6\n").unwrap();
        let o = child.wait_with_output().unwrap();
        drop(stdin);
        assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("typed-9"));
    }
    let o = w.cove(&["attach", "ticker"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("cannot attach to a stopped container"), "{}", stderr(&o));
}

#[test]
fn copy_storage_driver_works_too() {
    let Some(w) = World::new() else { return };
    // Where overlayfs cannot be mounted, each container gets a copy of its image.
    let o = w
        .cmd(&["run", "--rm", "bb", "sh", "-c", "echo copied > /etc/marker; cat /etc/marker; ls /bin/busybox"])
        .env("COVE_STORAGE_DRIVER", "copy")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "copied\n/bin/busybox\n");
    let v: serde_json::Value = serde_json::from_slice(
        &w.cmd(&["info", "--format", "json"]).env("COVE_STORAGE_DRIVER", "copy").output().unwrap().stdout,
    )
    .unwrap();
    assert_eq!(v["Storage"]["Driver"], "copy");
    // The image is untouched.
    assert_eq!(w.sh_ok(&[], "cat /etc/marker 2>/dev/null || echo absent"), "absent\n");
}

#[test]
fn fuse_overlayfs_driver_works_too() {
    let Some(w) = World::new() else { return };
    if !Path::new("/usr/bin/fuse-overlayfs").exists() {
        skip("fuse-overlayfs not installed (apt-get install fuse-overlayfs)");
        return;
    }
    let run = |args: &[&str]| w.cmd(args).env("COVE_STORAGE_DRIVER", "fuse-overlayfs").output().unwrap();
    let o = run(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "echo x > /etc/marker; cat /etc/marker; grep ' / ' /proc/mounts | cut -d' ' -f3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "x\nfuse.fuse-overlayfs\n");
    let o = run(&["run", "--rm", "bb", "sh", "-c", "cat /etc/marker 2>/dev/null || echo clean"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "clean\n");
    let single = !is_root() && w.ok(&["info", "--format", "json"]).contains("\"single id\"");
    if !single {
        // Layer ownership survives: the image user can write its home.
        let o = run(&["run", "--rm", "-u", "app", "bb", "sh", "-c", "touch /home/app/f && echo app-ok"]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), "app-ok\n", "{}", stderr(&o));
    }
}

#[test]
fn network_connect_and_disconnect() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "--subnet", "10.92.1.0/24", "front"]);
    w.ok(&["network", "create", "--subnet", "10.92.2.0/24", "back"]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--network",
        "front",
        "bb",
        "sh",
        "-c",
        "while true; do nc -l -p 7000 -e echo app-here; done",
    ]);
    w.ok(&["network", "connect", "--alias", "api", "back", "app"]);
    let addrs = w.ok(&["exec", "app", "sh", "-c", "ip -4 -o addr | grep -o 'inet 10[0-9./]*' | sort"]);
    assert_eq!(addrs, "inet 10.92.1.2/24\ninet 10.92.2.2/24\n");
    assert!(w.ok(&["exec", "app", "cat", "/etc/hosts"]).contains("10.92.2.2\tapp api"));
    assert_eq!(w.sh_ok(&["--network", "back"], "echo | nc 10.92.2.2 7000"), "app-here\n");
    let o = w.cove(&["network", "connect", "back", "app"]);
    assert!(stderr(&o).contains("already exists in network back"), "{}", stderr(&o));
    w.ok(&["network", "disconnect", "back", "app"]);
    assert_eq!(w.ok(&["exec", "app", "sh", "-c", "ip -4 -o addr | grep -c 'inet 10.92.2' || true"]).trim(), "0");
    let hosts = w.ok(&["exec", "app", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("10.92.2.2") && hosts.contains("10.92.1.2\t"), "{hosts}");
    let o = w.run_sh(&["--network", "back"], "echo | nc -w 1 10.92.2.2 7000");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("app-here"));
    let o = w.cove(&["network", "disconnect", "back", "app"]);
    assert!(stderr(&o).contains("is not connected"), "{}", stderr(&o));
    // The lease went back: the next container on back gets .2 again.
    w.ok(&["run", "-d", "--name", "next", "--network", "back", "bb", "sleep", "100"]);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "next"])).unwrap();
    assert_eq!(v[0]["NetworkSettings"]["IPAddress"], "10.92.2.2");
    // A connected network stays connected across a stop and start (the restart policy's path).
    w.ok(&["network", "connect", "back", "app"]);
    w.ok(&["stop", "-t", "1", "app"]);
    w.ok(&["start", "app"]);
    let addrs = w.ok(&["exec", "app", "sh", "-c", "ip -4 -o addr | grep -o 'inet 10[0-9./]*' | sort"]);
    assert_eq!(addrs, "inet 10.92.1.2/24\ninet 10.92.2.3/24\n");
    // Leaving the first network moves resolv.conf to the DNS of the one it is still on (its old
    // gateway no longer answers): names keep resolving.
    assert!(w.ok(&["exec", "app", "cat", "/etc/resolv.conf"]).contains("nameserver 10.92.1.1\n"));
    w.ok(&["network", "disconnect", "front", "app"]);
    let resolv = w.ok(&["exec", "app", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.92.2.1\n") && !resolv.contains("10.92.1.1"), "{resolv}");
    assert!(w.ok(&["exec", "app", "nslookup", "next"]).contains("Address: 10.92.2.2"));
    w.ok(&["network", "connect", "front", "app"]);
    // As compose does: create, connect the other networks, then start; a stopped container
    // can be disconnected too.
    w.ok(&["create", "--name", "svc", "--network", "front", "bb", "sleep", "300"]);
    w.ok(&["network", "connect", "--alias", "svc-back", "--ip", "10.92.2.40", "back", "svc"]);
    w.ok(&["start", "svc"]);
    let addrs = w.ok(&["exec", "svc", "sh", "-c", "ip -4 -o addr | grep -o 'inet 10[0-9./]*' | sort"]);
    assert_eq!(addrs, "inet 10.92.1.3/24\ninet 10.92.2.40/24\n");
    assert!(w.sh_ok(&["--network", "back"], "nslookup svc-back").contains("Address: 10.92.2.40"));
    w.ok(&["stop", "-t", "1", "svc"]);
    w.ok(&["network", "disconnect", "back", "svc"]);
    w.ok(&["start", "svc"]);
    assert_eq!(w.ok(&["exec", "svc", "sh", "-c", "ip -4 -o addr | grep -c 'inet 10.92.2' || true"]).trim(), "0");
    // No network of its own: nothing to connect.
    w.ok(&["run", "-d", "--name", "alone", "--network", "none", "bb", "sleep", "300"]);
    let o = w.cove(&["network", "connect", "back", "alone"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("runs with --network none"), "{}", stderr(&o));
}

/// A resolver on the host's loopback: answers every question with one A record, 192.0.2.7, and
/// counts the questions. Hand-made replies are fine here: it stands in for the host's resolver.
fn fake_upstream() -> (u16, std::sync::Arc<AtomicUsize>) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    (port, answer_every_question(sock, [192, 0, 2, 7]))
}

/// Serves `sock`: every question gets one A record, `answer`; returns the question count.
fn answer_every_question(sock: std::net::UdpSocket, answer: [u8; 4]) -> std::sync::Arc<AtomicUsize> {
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let q = &buf[..n];
            let Some(end) = q.get(12..).and_then(|qd| qd.iter().position(|&b| b == 0)).map(|p| 12 + p + 5) else {
                continue;
            };
            if end > n {
                continue;
            }
            c.fetch_add(1, Ordering::SeqCst);
            let mut r = q[..2].to_vec();
            r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..end]);
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&answer);
            let _ = sock.send_to(&r, peer);
        }
    });
    count
}

/// The address `cove dns resolve` gives for `name`.
fn resolved(w: &World, name: &str) -> String {
    let out = w.ok(&["dns", "resolve", name]);
    out.split('\t').nth(2).unwrap_or("").trim().to_string()
}

#[test]
fn dns_names_aliases_ptr_and_isolation() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "--subnet", "10.93.1.0/24", "mynet"]);
    w.ok(&["run", "-d", "--name", "db", "--network", "mynet", "--network-alias", "postgres", "bb", "sleep", "300"]);
    w.ok(&["run", "-d", "--name", "other", "bb", "sleep", "300"]);
    let db = resolved(&w, "db.mynet");
    assert_eq!(db, "10.93.1.2");
    let other = resolved(&w, "other");
    assert!(other.starts_with("10."), "{other}");
    // Inside a container of the network: the resolver is the gateway, names and aliases answer.
    let out = w.sh_ok(&["--network", "mynet"], "cat /etc/resolv.conf; for n in db postgres db.mynet DB; do nslookup $n | grep -A1 '^Name:' | tail -n1; done; nslookup 10.93.1.2 | grep 'name ='");
    assert!(out.contains("nameserver 10.93.1.1\n"), "{out}");
    assert_eq!(out.matches("Address: 10.93.1.2").count(), 4, "{out}");
    assert!(out.contains("name = db.mynet"), "{out}");
    // Names of other networks' containers are not visible; the default network has DNS too.
    let o = w.run_sh(&["--network", "mynet"], "nslookup other");
    assert!(!String::from_utf8_lossy(&o.stdout).contains(&other), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(w.sh_ok(&[], "nslookup other").contains(&format!("Address: {other}")));
    assert!(!w.run_sh(&[], "nslookup db; true").stdout.windows(9).any(|x| x == b"10.93.1.2"));
    // A container on two networks is found on both.
    w.ok(&["network", "connect", "--alias", "second", "mynet", "other"]);
    let out = w.sh_ok(&["--network", "mynet"], "nslookup other; nslookup second");
    assert_eq!(out.matches("Address: 10.93.1.3").count(), 2, "{out}");
    assert!(w.sh_ok(&[], "nslookup other").contains(&format!("Address: {other}")));
    // ... and finds mynet's names through the one nameserver it has (the default network's).
    assert!(w.ok(&["exec", "other", "nslookup", "db"]).contains("Address: 10.93.1.2"));
    // Leaving a network or exiting takes the names away at once (`kill` only signals: the
    // helper sees the container's interface go).
    w.ok(&["network", "disconnect", "mynet", "other"]);
    let o = w.cove(&["dns", "resolve", "second"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stdout));
    w.ok(&["kill", "db"]);
    let gone = (0..40).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(250));
        w.cove(&["dns", "resolve", "db.mynet"]).status.code() == Some(1)
            && w.cove(&["dns", "resolve", "other"]).status.success()
    });
    assert!(gone, "db still resolves after it exited");
    let o = w.cove(&["dns", "resolve", "--network", "mynet", "nosuch.containers.internal"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Non-Existent Domain"), "{}", stderr(&o));
}

#[test]
fn dns_forwards_upstream_from_the_host_side() {
    let (port, count) = fake_upstream();
    let Some(w) = World::new() else { return };
    let w = w.with_env("COVE_DNS_UPSTREAMS", &format!("127.0.0.1:{port}"));
    // The upstream is on the host's loopback, which a container cannot reach: the helper
    // forwards from the host's side.
    let out = w.sh_ok(&[], "nslookup example.org");
    assert!(out.contains("Address: 192.0.2.7"), "{out}");
    assert!(count.load(Ordering::SeqCst) >= 1);
    // An --internal network forwards nothing.
    w.ok(&["network", "create", "--internal", "closed"]);
    let before = count.load(Ordering::SeqCst);
    let o = w.run_sh(&["--network", "closed"], "nslookup example.org");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("192.0.2.7"));
    assert_eq!(count.load(Ordering::SeqCst), before, "an internal network forwarded a query");
    // With an upstream that does not answer, clients get SERVFAIL quickly, not a timeout.
    let dead = free_port();
    let Some(w2) = World::new() else { return };
    let w2 = w2.with_env("COVE_DNS_UPSTREAMS", &format!("127.0.0.1:{dead}"));
    let t = std::time::Instant::now();
    let o = w2.run_sh(&[], "nslookup example.org");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(out.contains("SERVFAIL"), "{out}");
    assert!(t.elapsed() < std::time::Duration::from_secs(4), "took {:?}", t.elapsed());
}

/// Runs dig in a container: the host's /usr (with dig and its libraries) mounted read-only
/// over the busybox image's.
fn dig(w: &World, net: &str, args: &str) -> String {
    if !Path::new("/usr/bin/dig").exists() {
        skip("dig not installed (apt-get install bind9-dnsutils)");
        return String::new();
    }
    w.ok(&with_host_usr(&["run", "--rm", "--network", net], &["/bin/sh", "-c", &format!("dig {args}")]))
}

#[test]
fn dns_edns_tcp_and_truncation_with_dig() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "--subnet", "10.93.2.0/24", "mynet"]);
    w.ok(&["run", "-d", "--name", "db", "--network", "mynet", "bb", "sleep", "300"]);
    for _ in 0..40 {
        w.ok(&["run", "-d", "--network", "mynet", "--network-alias", "many", "bb", "sleep", "300"]);
    }
    assert_eq!(dig(&w, "mynet", "+short db"), "10.93.2.2\n");
    // NODATA: the name exists, no AAAA.
    let out = dig(&w, "mynet", "db AAAA");
    assert!(out.contains("status: NOERROR") && out.contains("ANSWER: 0,"), "{out}");
    let out = dig(&w, "mynet", "nosuch.containers.internal");
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    // 40 addresses do not fit 512 bytes: TC over plain UDP, all of them with EDNS0 or TCP.
    let out = dig(&w, "mynet", "+noedns +ignore many");
    assert!(out.contains(" tc ") || out.contains(" tc;"), "{out}");
    assert!(dig(&w, "mynet", "many").contains("ANSWER: 40,"));
    assert!(dig(&w, "mynet", "+tcp +noedns many").contains("ANSWER: 40,"));
    let out = dig(&w, "mynet", "-x 10.93.2.2 +short");
    assert_eq!(out, "db.mynet.\n");
}

#[test]
fn dns_churn_loses_no_query() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "--subnet", "10.93.3.0/24", "mynet"]);
    w.ok(&["run", "-d", "--name", "db", "--network", "mynet", "bb", "sleep", "300"]);
    // The lookups go on until the churn is over (a fixed count ended before the churn did
    // much on a loaded machine); PID 1 stays afterwards, or its exit would SIGKILL the
    // `exec touch` that stopped it before that one exits.
    w.ok(&["run", "-d", "--name", "asker", "--network", "mynet", "bb", "sh", "-c",
        "i=0; while [ ! -e /tmp/stop ]; do nslookup db >/dev/null 2>&1 || echo FAIL $i; i=$((i+1)); done; echo DONE $i; exec sleep 300"]);
    // Containers join and leave the network while the lookups go on.
    for _ in 0..10 {
        let id = w.ok(&["run", "-d", "--network", "mynet", "bb", "sleep", "300"]);
        w.ok(&["rm", "-f", id.trim()]);
    }
    w.ok(&["exec", "asker", "touch", "/tmp/stop"]);
    assert!(wait_until(|| w.ok(&["logs", "asker"]).contains("DONE"), 120), "the lookups did not finish");
    let logs = w.ok(&["logs", "asker"]);
    assert!(!logs.contains("FAIL"), "{logs}");
    let asked: u32 =
        logs.lines().find_map(|l| l.strip_prefix("DONE ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(asked >= 10, "only {asked} lookups ran during the churn");
}

/// A TCP service on the host's loopback that greets every client.
fn host_service(greeting: &'static str) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut c, greeting.as_bytes());
        }
    });
    port
}

#[test]
fn outbound_reaches_the_hosts_loopback_through_pasta_and_slirp4netns() {
    let port = host_service("hello-from-host\n");
    for tool in ["pasta", "slirp4netns"] {
        let Some(w) = World::new() else { return };
        let w = w.with_env("COVE_NETWORK_CMD", tool);
        // The host's loopback is closed by default (tests/security/host_loopback.rs): a
        // network opens it.
        w.ok(&["network", "create", "-o", "allow_host_loopback=true", "open"]);
        let open = ["--network", "open"];
        // Out of the namespace through the tool, NATed: host.containers.internal is the
        // address the tool maps to the host's loopback (in /etc/hosts and in DNS).
        let out = w.sh_ok(&open, &format!("grep host.containers.internal /etc/hosts; nslookup host.containers.internal >/dev/null && echo DNS-OK; nc -w 5 host.containers.internal {port}"));
        assert!(out.contains("host.containers.internal host.docker.internal\n"), "{tool}: {out}");
        assert!(out.contains("DNS-OK\n"), "{tool}: {out}");
        assert!(out.ends_with("hello-from-host\n"), "{tool}: {out}");
        // Nothing listening on the host: the container sees a reset, not an empty answer.
        // (busybox's nc and wget cannot tell: the host's python3 is mounted in to ask.)
        let dead = free_port();
        // The reset may come before connect() returns, or at the first read.
        let py = format!("import socket\ntry:\n    s = socket.create_connection(('host.containers.internal', {dead}), timeout=5)\n    print('recv', s.recv(10))\nexcept Exception as e:\n    print('error', type(e).__name__)");
        let out = w.ok(&with_host_usr(&["run", "--rm", "--network", "open"], &["/usr/bin/python3", "-c", &py]));
        assert_eq!(out, "error ConnectionResetError\n", "{tool}");
        // UDP takes the tool's path (TCP is the helper's): a DNS query to a resolver on the
        // host's loopback, asked directly (not through cove's DNS).
        let (uport, count) = fake_upstream();
        let out = w.sh_ok(&open, &format!("nslookup -port={uport} example.org host.containers.internal"));
        assert!(out.contains("Address: 192.0.2.7"), "{tool}: {out}");
        assert!(count.load(Ordering::SeqCst) >= 1);
        // An --internal network has no way out.
        w.ok(&["network", "create", "--internal", "closed"]);
        let host_ip = out.split('\t').next().unwrap().to_string();
        let o = w.run_sh(&["--network", "closed"], &format!("nc -w 2 {host_ip} {port} && echo REACHED; true"));
        assert!(!String::from_utf8_lossy(&o.stdout).contains("hello-from-host"), "{tool}: internal network got out");
        // The tool goes with the helper when the last container is gone.
        let pid: i32 = std::fs::read_to_string(w.path().join("run/netd-outbound.pid")).unwrap().trim().parse().unwrap();
        w.ok(&["network", "rm", "closed", "open"]);
        let gone = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            !w.path().join("run/netd.pid").exists()
                && std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
        });
        assert!(gone, "{tool} (pid {pid}) outlived the network helper");
    }
    // A tool that is not there: a one-line warning, and the container still runs.
    let Some(w) = World::new() else { return };
    let w = w.with_env("COVE_NETWORK_CMD", "/nonexistent/pasta");
    let o = w.run_sh(&[], "echo ran");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ran\n");
    assert_eq!(stderr(&o), "cove: warning: COVE_NETWORK_CMD=/nonexistent/pasta: no such file\n");
}

#[test]
fn go_template_formats_as_scripts_use_them() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "--subnet", "10.96.1.0/24", "--label", "env=dev", "fmt"]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "fmt",
        "--ip",
        "10.96.1.20",
        "-l",
        "role=front",
        "bb",
        "sleep",
        "300",
    ]);
    w.ok(&["run", "-d", "--name", "db", "--network", "fmt", "bb", "sleep", "300"]);
    assert_eq!(w.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]), "10.96.1.20\n");
    assert_eq!(w.ok(&["inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}} {{.State.Running}} {{index .Config.Labels \"role\"}}", "web", "db"]), "10.96.1.20 true front\n10.96.1.2 true <no value>\n");
    assert_eq!(w.ok(&["inspect", "-f", "{{json .Config.Labels}}", "web"]), "{\"role\":\"front\"}\n");
    let env = w.ok(&["inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", "web"]);
    assert!(
        env.lines().any(|l| l.starts_with("PATH=")) && env.contains("HOME=/root\n"),
        "the effective environment: {env}"
    );
    assert_eq!(
        w.ok(&["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}} {{.Labels.env}}", "fmt"]),
        "10.96.1.0/24 dev\n"
    );
    assert_eq!(w.ok(&["image", "inspect", "-f", "{{json .Config.Cmd}}", "bb"]), "[\"sh\"]\n");
    assert_eq!(w.ok(&["ps", "--format", "{{.Names}} {{.Networks}}"]), "db fmt\nweb fmt\n");
    assert_eq!(w.ok(&["ps", "--format", "table {{.Names}}\\t{{.Image}}"]), "NAMES   IMAGE\ndb      bb\nweb     bb\n");
    let lines: Vec<serde_json::Value> =
        w.ok(&["ps", "--format", "json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["Names"], "web");
    assert_eq!(lines[1]["Labels"], "role=front");
    assert_eq!(w.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]), "bb:latest\n");
    assert!(w.ok(&["network", "ls", "--format", "{{.Name}} {{.Labels}}"]).contains("fmt env=dev\n"));
    for args in [
        vec!["inspect", "-f", "{{.Name", "web"],
        vec!["ps", "--format", "{{nosuchfunc .}}"],
        vec!["inspect", "-f", "{{.State.Pid.X}}", "web"],
    ] {
        let o = w.cove(&args);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert!(stderr(&o).starts_with("cove: error: template: "), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    }
}

#[test]
fn network_labels_options_and_filters() {
    let Some(w) = World::new() else { return };
    w.ok(&[
        "network",
        "create",
        "--label",
        "team=web",
        "--label",
        "tier",
        "-o",
        "mtu=9000",
        "--subnet",
        "10.95.1.0/24",
        "jumbo",
    ]);
    w.ok(&[
        "network",
        "create",
        "--label",
        "team=db",
        "--opt",
        "com.docker.network.driver.mtu=1400",
        "--subnet",
        "10.95.2.0/24",
        "small",
    ]);
    // `bridge` is Docker's name of the default network: reserved, and found as cove's default.
    let o = w.cove(&["network", "create", "bridge"]);
    assert!(stderr(&o).contains("reserved"), "{}", stderr(&o));
    w.ok(&["run", "--rm", "bb", "true"]);
    assert_eq!(w.ok(&["network", "inspect", "-f", "{{.Name}}", "bridge"]), "cove\n");
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["network", "inspect", "jumbo"])).unwrap();
    assert_eq!(v[0]["Labels"], serde_json::json!({"team": "web", "tier": ""}));
    assert_eq!(v[0]["Options"]["com.docker.network.driver.mtu"], "9000");
    // The MTU is the links' (both ends), for every container of the network.
    assert_eq!(w.sh_ok(&["--network", "jumbo"], "cat /sys/class/net/eth0/mtu"), "9000\n");
    assert_eq!(w.sh_ok(&["--network", "small"], "cat /sys/class/net/eth0/mtu"), "1400\n");
    assert_eq!(w.sh_ok(&[], "cat /sys/class/net/eth0/mtu"), "1500\n");
    // Container to container across the jumbo bridge, with a datagram bigger than 1500.
    w.ok(&["run", "-d", "--name", "peer", "--network", "jumbo", "bb", "sleep", "300"]);
    let out = w.sh_ok(&["--network", "jumbo"], "ping -c1 -W2 -s 8900 peer >/dev/null && echo ok");
    assert_eq!(out, "ok\n");
    w.ok(&["rm", "-f", "peer"]);
    let names = |args: &[&str]| {
        let mut a = vec!["network", "ls"];
        a.extend_from_slice(args);
        let out = w.ok(&a);
        let mut v: Vec<String> =
            out.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)).map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(names(&["--filter", "label=team"]), ["jumbo", "small"]);
    assert_eq!(names(&["--filter", "label=team=db"]), ["small"]);
    assert_eq!(names(&["-f", "label=team", "-f", "label=tier"]), ["jumbo"]);
    assert_eq!(names(&["--filter", "name=jum"]), ["jumbo"]);
    for (args, want) in [
        (vec!["network", "create", "-o", "mtu=99999", "bad"], "the MTU is a number from 68 to 65520"),
        (vec!["network", "create", "--ipv6", "-o", "mtu=1000", "bad"], "from 1280 to 65520"),
        (vec!["network", "create", "-o", "com.docker.network.bridge.name=br0", "bad"], "unsupported network option"),
        (vec!["network", "create", "--label", "bad key=1", "bad"], "invalid label"),
        (vec!["network", "ls", "--filter", "color=red"], "invalid filter"),
    ] {
        let o = w.cove(&args);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    assert!(!w.ok(&["network", "ls"]).contains(" bad "), "a refused network was created");
    // prune --filter: only the matching networks go.
    let out = w.ok(&["network", "prune", "-f", "--filter", "label=team=db"]);
    assert_eq!(out, "Deleted Networks:\nsmall\n");
    let out = w.ok(&["network", "prune", "-f", "--filter", "label!=team"]);
    assert!(!out.contains("jumbo"), "{out}");
    assert!(w.ok(&["network", "ls"]).contains("jumbo"));
}

#[test]
fn static_addresses_with_ip_and_ip6() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "--ipv6", "--subnet", "10.94.1.0/24", "--subnet", "fd63:6f76:65bb::/64", "dual"]);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "fixed",
        "--network",
        "dual",
        "--ip",
        "10.94.1.50",
        "--ip6",
        "fd63:6f76:65bb::50",
        "bb",
        "sleep",
        "300",
    ]);
    let addrs = w.ok(&[
        "exec",
        "fixed",
        "sh",
        "-c",
        "ip -o addr show eth0 | grep -o 'inet6\\? [0-9a-f.:]*/[0-9]*' | grep -v fe80",
    ]);
    assert_eq!(addrs, "inet 10.94.1.50/24\ninet6 fd63:6f76:65bb::50/64\n");
    // The next container gets the lowest free address, not fixed's, and finds it by name.
    let out = w.sh_ok(&["--network", "dual"], "ip -4 -o addr show eth0 | grep -o 'inet [0-9.]*'; nslookup fixed | grep -c -e 'Address: 10.94.1.50$' -e 'Address: fd63:6f76:65bb::50$'");
    assert_eq!(out, "inet 10.94.1.2\n2\n");
    // The address stays fixed's across a restart, and is free again once it is removed.
    w.ok(&["restart", "-t", "1", "fixed"]);
    assert!(w.ok(&["exec", "fixed", "ip", "-4", "-o", "addr", "show", "eth0"]).contains("inet 10.94.1.50/24"));
    let bad = |args: &[&str], want: &str| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend(["bb", "true"]);
        let o = w.cove(&a);
        assert_eq!(o.status.code(), Some(125), "{a:?}");
        assert!(stderr(&o).contains(want), "{a:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    };
    bad(&["--network", "dual", "--ip", "10.94.1.50"], "address 10.94.1.50 is already in use in subnet 10.94.1.0/24");
    // --mac-address: the container's interface has it, across a restart too.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "mac",
        "--network",
        "dual",
        "--mac-address",
        "02:42:AC:11:00:99",
        "bb",
        "sleep",
        "300",
    ]);
    assert_eq!(w.ok(&["exec", "mac", "cat", "/sys/class/net/eth0/address"]), "02:42:ac:11:00:99\n");
    w.ok(&["restart", "-t", "1", "mac"]);
    assert_eq!(w.ok(&["exec", "mac", "cat", "/sys/class/net/eth0/address"]), "02:42:ac:11:00:99\n");
    assert_eq!(w.ok(&["inspect", "-f", "{{.NetworkSettings.MacAddress}}", "mac"]), "02:42:ac:11:00:99\n");
    w.ok(&["rm", "-f", "mac"]);
    bad(&["--network", "dual", "--mac-address", "01:00:5e:00:00:01"], "not a unicast address");
    bad(&["--network", "dual", "--mac-address", "02:42"], "invalid MAC address");
    bad(&["--network", "none", "--mac-address", "02:42:ac:11:00:99"], "needs a network");
    bad(&["--network", "dual", "--ip", "10.94.2.5"], "is not in subnet 10.94.1.0/24");
    bad(&["--network", "dual", "--ip", "10.94.1.1"], "gateway");
    bad(&["--network", "dual", "--ip", "fd63:6f76:65bb::9"], "not an IPv4 address");
    bad(&["--network", "dual", "--ip6", "10.94.1.9"], "not an IPv6 address");
    bad(&["--network", "none", "--ip", "10.94.1.9"], "exactly one network");
    w.ok(&["network", "create", "--subnet", "10.94.3.0/24", "v4only"]);
    bad(&["--network", "v4only", "--ip6", "fd63:6f76:65bb::9"], "has no IPv6 subnet");
    bad(&["--network", "dual,v4only", "--ip", "10.94.1.9"], "exactly one network");
    // network connect --ip.
    w.ok(&["network", "connect", "--ip", "10.94.3.77", "v4only", "fixed"]);
    assert!(w.ok(&["exec", "fixed", "ip", "-4", "-o", "addr"]).contains("inet 10.94.3.77/24"));
    let o = w.cove(&["network", "connect", "--ip", "10.94.9.1", "v4only", "fixed"]);
    assert!(!o.status.success());
    // --ip-range and --aux-address (compose's ipam config): picked addresses come from the
    // range, never an auxiliary one; a requested address may be outside the range.
    w.ok(&[
        "network",
        "create",
        "--subnet",
        "10.94.5.0/24",
        "--ip-range",
        "10.94.5.128/28",
        "--aux-address",
        "router=10.94.5.128",
        "ranged",
    ]);
    let ip = |args: &[&str]| {
        let mut a = vec!["--network", "ranged"];
        a.extend_from_slice(args);
        w.sh_ok(&a, "ip -4 -o addr show eth0 | grep -o 'inet [0-9.]*'")
    };
    assert_eq!(ip(&[]), "inet 10.94.5.129\n");
    assert_eq!(ip(&["--ip", "10.94.5.9"]), "inet 10.94.5.9\n");
    bad(&["--network", "ranged", "--ip", "10.94.5.128"], "reserved (--aux-address router)");
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["network", "inspect", "ranged"])).unwrap();
    assert_eq!(v[0]["IPAM"]["Config"][0]["IPRange"], "10.94.5.128/28");
    assert_eq!(v[0]["IPAM"]["Config"][0]["AuxiliaryAddresses"], serde_json::json!({"router": "10.94.5.128"}));
    for (args, want) in [
        (vec!["--subnet", "10.94.6.0/24", "--ip-range", "10.94.7.0/28"], "must be inside subnet"),
        (vec!["--subnet", "10.94.6.0/24", "--ip-range", "fd00::/120"], "no IPv6 subnet"),
        (vec!["--subnet", "10.94.6.0/24", "--aux-address", "gw=10.94.6.1"], "other than its gateway"),
        (vec!["--subnet", "10.94.6.0/24", "--aux-address", "x=10.99.0.1"], "other than its gateway"),
        (vec!["--subnet", "10.94.6.0/24", "--aux-address", "x"], "NAME=IP"),
    ] {
        let mut a = vec!["network", "create"];
        a.extend(args);
        a.push("rangebad");
        let o = w.cove(&a);
        assert_eq!(o.status.code(), Some(125), "{a:?}");
        assert!(stderr(&o).contains(want), "{a:?}: {}", stderr(&o));
    }
    w.ok(&["rm", "-f", "fixed"]);
    w.ok(&["run", "--rm", "--network", "dual", "--ip", "10.94.1.50", "bb", "true"]);
    assert_eq!(w.ok(&["ps", "-aq"]), "", "a failed run left a container behind");
}

#[test]
fn add_host_and_dns_options_as_docker_takes_them() {
    let Some(w) = World::new() else { return };
    // On a cove network: the extra names in /etc/hosts (host-gateway = host.containers.internal's
    // address), resolv.conf still points at the network's DNS (which forwards this container's
    // other names to its --dns servers: checked as root below), search and options as given.
    let out = w.sh_ok(
        &[
            "--add-host",
            "db.example:10.1.2.3",
            "--add-host",
            "v6host=[fd00::7]",
            "--add-host",
            "gw:host-gateway",
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "corp.example",
            "--dns-option",
            "ndots:3",
        ],
        "cat /etc/hosts /etc/resolv.conf",
    );
    assert!(out.contains("10.1.2.3\tdb.example\n") && out.contains("fd00::7\tv6host\n"), "{out}");
    let host = out
        .lines()
        .find(|l| l.ends_with("host.containers.internal host.docker.internal"))
        .and_then(|l| l.split('\t').next())
        .expect("host.containers.internal (CI installs passt)");
    assert!(out.contains(&format!("{host}\tgw\n")), "{out}");
    assert!(out.contains("search corp.example\noptions ndots:3\nnameserver 10."), "{out}");
    assert!(!out.contains("192.0.2.53"), "--dns is the network DNS's upstream, not a nameserver line: {out}");
    // Without a network's DNS: resolv.conf has the given servers instead of the host's.
    let out = w.sh_ok(
        &["--network", "none", "--dns", "192.0.2.53", "--dns", "2001:db8::53", "--dns-search", "."],
        "cat /etc/resolv.conf",
    );
    assert!(out.contains("nameserver 192.0.2.53\nnameserver 2001:db8::53\n"), "{out}");
    assert!(!out.contains("search"), "{out}");
    let out = w.sh_ok(&["--network", "host", "--add-host", "me:host-gateway"], "grep -w me /etc/hosts");
    assert_eq!(out, "127.0.0.1\tme\n");
    // Bad input: one line, exit 125, nothing created.
    for (args, want) in [
        (vec!["--add-host", "nocolon"], "invalid --add-host \"nocolon\": expected HOST:IP"),
        (vec!["--add-host", "db:300.1.1.1"], "is not an IP address"),
        (vec!["--dns", "dns.example"], "invalid --dns \"dns.example\": not an IP address"),
        (vec!["--network", "none", "--add-host", "gw:host-gateway"], "nothing reaches the host"),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend(args);
        a.extend(["bb", "true"]);
        let o = w.cove(&a);
        assert_eq!(o.status.code(), Some(125), "{a:?}");
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        assert!(stderr(&o).contains(want), "{a:?}: {}", stderr(&o));
    }
    w.ok(&["run", "-d", "--name", "db", "bb", "sleep", "300"]);
    let o = w.cove(&["run", "--rm", "--network", "container:db", "--dns", "192.0.2.53", "bb", "true"]);
    assert!(stderr(&o).contains("cannot be used with --network container:NAME"), "{}", stderr(&o));
    assert_eq!(w.ok(&["ps", "-aq"]).lines().count(), 1, "a failed run left a container behind");
}

#[test]
fn dns_forwards_a_containers_names_to_its_own_dns_servers() {
    let Some(worlds) = root_and_covetest_worlds("dns_forwards_a_containers_names_to_its_own_dns_servers") else {
        return;
    };
    // `--dns` takes an address (port 53): a resolver of the test's own on a loopback address
    // of its own, which needs root to bind. Everyone else's names still go to the usual upstream.
    let own = std::net::UdpSocket::bind("127.0.0.77:53").expect("bind 127.0.0.77:53");
    let count = answer_every_question(own, [198, 51, 100, 77]);
    let (port, shared) = fake_upstream();
    for (who, w) in worlds {
        let Some(w) = w else { continue };
        let w = w.with_env("COVE_DNS_UPSTREAMS", &format!("127.0.0.1:{port}"));
        w.ok(&["network", "create", "mynet"]);
        w.ok(&["run", "-d", "--name", "db", "--network", "mynet", "bb", "sleep", "300"]);
        let before = (count.load(Ordering::SeqCst), shared.load(Ordering::SeqCst));
        let out = w.sh_ok(&["--network", "mynet", "--dns", "127.0.0.77"], "nslookup example.org; nslookup db");
        assert!(out.contains("Address: 198.51.100.77"), "{who}: {out}");
        assert!(out.contains("Address: 10."), "{who}: the network's names still answer: {out}");
        assert!(count.load(Ordering::SeqCst) > before.0, "{who}");
        assert_eq!(shared.load(Ordering::SeqCst), before.1, "{who}: the container's query went to the shared upstream");
        // A container without --dns, on the same network: the shared upstream.
        let out = w.sh_ok(&["--network", "mynet"], "nslookup example.org");
        assert!(out.contains("Address: 192.0.2.7"), "{who}: {out}");
        // A network's own servers (podman's `network create --dns`) serve all its containers.
        w.ok(&["network", "create", "--dns", "127.0.0.77", "ownnet"]);
        let v: serde_json::Value = serde_json::from_str(&w.ok(&["network", "inspect", "ownnet"])).unwrap();
        assert_eq!(v[0]["NetworkDNSServers"], serde_json::json!(["127.0.0.77"]), "{who}");
        let (n, shared_before) = (count.load(Ordering::SeqCst), shared.load(Ordering::SeqCst));
        let out = w.sh_ok(&["--network", "ownnet"], "nslookup example.org");
        assert!(out.contains("Address: 198.51.100.77"), "{who}: {out}");
        assert!(count.load(Ordering::SeqCst) > n && shared.load(Ordering::SeqCst) == shared_before, "{who}");
        let o = w.cove(&["network", "create", "--dns", "resolver.example", "badnet"]);
        assert!(stderr(&o).contains("invalid --dns \"resolver.example\""), "{who}: {}", stderr(&o));
        // An --internal network forwards nothing, --dns or not.
        w.ok(&["network", "create", "--internal", "closed"]);
        let n = count.load(Ordering::SeqCst);
        let o = w.run_sh(&["--network", "closed", "--dns", "127.0.0.77"], "nslookup example.org");
        assert!(!String::from_utf8_lossy(&o.stdout).contains("198.51.100.77"), "{who}");
        assert_eq!(count.load(Ordering::SeqCst), n, "{who}: an internal network forwarded a query");
    }
}

#[test]
fn network_container_mode_shares_the_namespace() {
    let Some(w) = World::new() else { return };
    w.ok(&["run", "-d", "--name", "db", "bb", "sh", "-c", "nc -ll -p 6000 -e echo db-on-loopback"]);
    // The other container's loopback is ours: same namespace, same addresses, same files.
    let out = w.sh_ok(&["--network", "container:db"], "for i in 1 2 3 4 5 6 7 8 9 10; do nc 127.0.0.1 6000 </dev/null 2>/dev/null && break; sleep 0.2; done; ip -4 -o addr show eth0 | grep -c inet");
    assert_eq!(out, "db-on-loopback\n1\n");
    assert_eq!(
        w.sh_ok(&["--network", "container:db"], "cat /etc/resolv.conf"),
        w.ok(&["exec", "db", "cat", "/etc/resolv.conf"])
    );
    let o = w.cove(&["run", "--rm", "--network", "container:nosuch", "bb", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("nosuch"), "{}", stderr(&o));
    let o = w.cove(&["run", "--rm", "--network", "container:db,other", "bb", "true"]);
    assert!(stderr(&o).contains("cannot be combined"), "{}", stderr(&o));
    // The namespace is looked up at every start, not when the container was created: after
    // db restarts (new PID 1, new namespace) web joins the new one.
    w.ok(&["run", "-d", "--name", "web", "--network", "container:db", "bb", "sleep", "1000"]);
    let netns = |name: &str| {
        let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", name])).unwrap();
        std::fs::read_link(format!("/proc/{}/ns/net", v[0]["State"]["Pid"])).expect("netns link")
    };
    assert_eq!(netns("web"), netns("db"));
    w.ok(&["stop", "-t", "1", "web"]);
    w.ok(&["restart", "-t", "1", "db"]);
    w.ok(&["start", "web"]);
    assert_eq!(netns("web"), netns("db"), "web joined a stale namespace after db restarted");
    w.ok(&["stop", "-t", "1", "web"]);
    w.ok(&["stop", "-t", "1", "db"]);
    let o = w.cove(&["start", "web"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o)); // as `docker start` fails
    assert!(stderr(&o).contains("cannot join the network of container db: it is not running"), "{}", stderr(&o));
    let o = w.cove(&["run", "--rm", "--network", "container:db", "bb", "true"]);
    assert!(stderr(&o).contains("not running"), "{}", stderr(&o));
}

#[test]
fn ipv6_dual_stack_network() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "--ipv6", "--subnet", "10.94.1.0/24", "--subnet", "fd63:6f76:65aa::/64", "dual"]);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["network", "inspect", "dual"])).unwrap();
    assert_eq!(v[0]["EnableIPv6"], true);
    assert_eq!(v[0]["IPAM"]["Config"][1]["Gateway"], "fd63:6f76:65aa::1");
    w.ok(&["run", "-d", "--name", "db", "--network", "dual", "bb", "nc", "-ll", "-p", "7000", "-e", "echo", "v6-pong"]);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "db"])).unwrap();
    assert_eq!(v[0]["NetworkSettings"]["GlobalIPv6Address"], "fd63:6f76:65aa::2");
    assert_eq!(w.ok(&["dns", "resolve", "-t", "AAAA", "db.dual"]), "db.dual.\tAAAA\tfd63:6f76:65aa::2\n");
    let out = w.sh_ok(&["--network", "dual"], "ip -6 -o addr show eth0 scope global | grep -o 'inet6 [0-9a-f:/]*'; ip -6 route | grep -o '^default via [0-9a-f:]*'; ping -6 -c1 -W2 fd63:6f76:65aa::2 >/dev/null && echo PING6-OK; for i in 1 2 3 4 5; do nc fd63:6f76:65aa::2 7000 </dev/null && break; sleep 0.2; done");
    assert_eq!(out, "inet6 fd63:6f76:65aa::3/64\ndefault via fd63:6f76:65aa::1\nPING6-OK\nv6-pong\n");
    // The network's DNS server answers on the IPv6 gateway too, and resolv.conf names it.
    let out = w.sh_ok(
        &["--network", "dual"],
        "grep -c '^nameserver fd63:6f76:65aa::1$' /etc/resolv.conf; nslookup db fd63:6f76:65aa::1",
    );
    assert!(out.starts_with("1\n") && out.contains("fd63:6f76:65aa::2") && out.contains("10.94.1.2"), "{out}");
    // The IPv6 lease goes back with the container.
    w.ok(&["rm", "-f", "db"]);
    w.ok(&["run", "-d", "--name", "db2", "--network", "dual", "bb", "sleep", "100"]);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "db2"])).unwrap();
    assert_eq!(v[0]["NetworkSettings"]["GlobalIPv6Address"], "fd63:6f76:65aa::2");
    let o = w.cove(&["network", "create", "--subnet", "fd63:6f76:65bb::/64", "--subnet", "fd63:6f76:65cc::/64", "bad"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
}

#[test]
fn zz_report_skips() {
    // Runs last alphabetically within this binary's listing; skips are also printed where they
    // happen. CI counts "SKIP:" lines.
    println!("skips so far: {}", SKIPS.load(Ordering::SeqCst));
}

// Security regression tests (issue 21): one file per class of attack, each test reproducing one.
#[path = "security/host_loopback.rs"]
mod security_host_loopback;
#[path = "security/image_paths.rs"]
mod security_image_paths;
#[path = "security/process_isolation.rs"]
mod security_process_isolation;
#[path = "security/rundir.rs"]
mod security_rundir;
#[path = "security/stdio.rs"]
mod security_stdio;

// Regression tests of defects found using cove as a Docker user would (issue 13).
#[path = "defects/lifecycle.rs"]
mod defects_lifecycle;
#[path = "defects/networks.rs"]
mod defects_networks;

// mDNS (issue 15): the simulated LAN (network namespaces, avahi and python-zeroconf peers) and
// the tests run on it.
mod mdns;

// Reliability (issue 18): crash consistency, helper and monitor recovery, load, hostile input.
mod reliability;
