//! L1/L2 tests of the runtime alone: a spec and a directory rootfs (host busybox), no engine.
//! As an unprivileged user the test process re-executes itself in a fresh user namespace with a
//! single-id map (what the keeper does); as root it runs directly.

use cove_runtime::{create, CreateOptions, Rootfs, Stdio};
use oci_spec::runtime as rt;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

fn skip(why: &str) {
    if std::env::var("COVE_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("required test would skip: {why}");
    }
    println!("SKIP: {why}");
}

fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"].iter().map(PathBuf::from).find(|p| p.exists())
}

fn make_rootfs(dir: &Path, bb: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(bb, dir.join("bin/busybox")).unwrap();
    for a in ["sh", "cat", "echo", "ls", "grep", "id", "hostname", "readlink", "mount"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(a)).unwrap();
    }
}

fn mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> rt::Mount {
    let mut m = rt::Mount::default();
    m.set_destination(dst.into());
    m.set_typ(Some(typ.into()));
    m.set_source(Some(src.into()));
    m.set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
    m
}

fn spec(root: &Path, args: &[&str]) -> rt::Spec {
    let mut s = rt::Spec::default();
    let mut p = rt::Process::default();
    p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    p.set_env(Some(vec!["PATH=/bin".into()]));
    p.set_cwd("/".into());
    p.set_terminal(Some(false));
    p.set_no_new_privileges(Some(true));
    p.set_rlimits(None);
    p.set_apparmor_profile(None);
    p.set_oom_score_adj(None);
    p.set_selinux_label(None);
    s.set_process(Some(p));
    let mut r = rt::Root::default();
    r.set_path(root.to_path_buf());
    r.set_readonly(Some(false));
    s.set_root(Some(r));
    s.set_hostname(Some("rt-test".into()));
    s.set_mounts(Some(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "mode=755"]),
        mount("/tmp", "tmpfs", "tmpfs", &["nosuid"]),
    ]));
    let mut linux = rt::Linux::default();
    let mut nss = vec![];
    for t in [
        rt::LinuxNamespaceType::Pid,
        rt::LinuxNamespaceType::Mount,
        rt::LinuxNamespaceType::Uts,
        rt::LinuxNamespaceType::Ipc,
        rt::LinuxNamespaceType::Network,
    ] {
        let mut ns = rt::LinuxNamespace::default();
        ns.set_typ(t);
        nss.push(ns);
    }
    linux.set_namespaces(Some(nss));
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_masked_paths(Some(vec!["/proc/kcore".into()]));
    linux.set_readonly_paths(Some(vec!["/proc/sys".into()]));
    linux.set_seccomp(None);
    linux.set_resources(None);
    linux.set_devices(None);
    s.set_linux(Some(linux));
    s
}

/// Runs `args` in a container; returns (exit code, stdout).
fn run_container(args: &[&str]) -> (i32, String) {
    let bb = busybox().expect("busybox");
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("rootfs");
    make_rootfs(&root, &bb);
    let s = spec(&root, args);
    let (r, w) = nix::unistd::pipe().unwrap();
    let devnull: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let err: OwnedFd = std::fs::File::options().write(true).open("/dev/null").unwrap().into();
    let rootless = !cove_runtime::userns::in_initial_userns();
    let c = create(CreateOptions {
        spec: &s,
        rootfs: Rootfs::Directory,
        rootless,
        stdio: Stdio::Fds(devnull, w, err),
        on_pid: None,
        userns: None,
        seccomp_cache: None,
    })
    .expect("create");
    let pid = c.pid;
    c.start().expect("start");
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    let st = nix::sys::wait::waitpid(pid, None).unwrap();
    let code = match st {
        nix::sys::wait::WaitStatus::Exited(_, c) => c,
        nix::sys::wait::WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        _ => -1,
    };
    (code, out)
}

/// The child already runs in a user namespace (see `in_child`) unless we are root.
fn enter_userns_if_needed() -> bool {
    nix::unistd::getuid().is_root()
}

/// Re-executes this test binary for `name` in child mode (unshare needs a single thread).
fn in_child(name: &str) {
    if busybox().is_none() {
        skip("busybox-static not installed");
        return;
    }
    // Unprivileged: run the child under `unshare --user --map-root-user` (a single-id map,
    // what the keeper sets up without a subuid range). unshare(2) from inside the test would
    // fail: libtest runs tests on threads, and a threaded process cannot enter a user namespace.
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if nix::unistd::getuid().is_root() {
        std::process::Command::new(&exe)
    } else {
        let mut c = std::process::Command::new("unshare");
        c.args(["--user", "--map-root-user"]).arg(&exe);
        c
    };
    let out =
        cmd.args([name, "--exact", "--nocapture", "--test-threads=1"]).env("COVE_RT_CHILD", name).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if text.contains("SKIP:") {
        skip(&format!("{name}: user namespaces unavailable"));
        return;
    }
    assert!(out.status.success(), "child {name} failed:\n{text}");
    assert!(text.contains("CHILD-OK"), "child {name} did not run:\n{text}");
}

fn child_mode(name: &str) -> bool {
    std::env::var("COVE_RT_CHILD").as_deref() == Ok(name)
}

#[test]
fn pid1_hostname_and_masks() {
    if !child_mode("pid1_hostname_and_masks") {
        return in_child("pid1_hostname_and_masks");
    }
    if !enter_userns_if_needed() {
        println!("SKIP: unshare(CLONE_NEWUSER) refused");
        return;
    }
    let (code, out) = run_container(&["sh", "-c", "echo $$; hostname; cat /proc/kcore | wc -c; echo x > /proc/sys/kernel/domainname || echo RO; readlink /proc/1/cwd"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "1\nrt-test\n0\nRO\n/\n");
    println!("CHILD-OK");
}

#[test]
fn exit_codes_and_exec_failures() {
    if !child_mode("exit_codes_and_exec_failures") {
        return in_child("exit_codes_and_exec_failures");
    }
    if !enter_userns_if_needed() {
        println!("SKIP: unshare(CLONE_NEWUSER) refused");
        return;
    }
    assert_eq!(run_container(&["sh", "-c", "exit 7"]).0, 7);
    let bb = busybox().unwrap();
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("rootfs");
    make_rootfs(&root, &bb);
    let s = spec(&root, &["no-such-binary"]);
    let c = create(CreateOptions {
        spec: &s,
        rootfs: Rootfs::Directory,
        rootless: !cove_runtime::userns::in_initial_userns(),
        stdio: Stdio::Inherit,
        on_pid: None,
        userns: None,
        seccomp_cache: None,
    })
    .unwrap();
    match c.start() {
        Err(cove_runtime::Error::Child { exit_code, message }) => {
            assert_eq!(exit_code, 127);
            assert!(message.contains("not found"), "{message}");
        }
        other => panic!("expected exec failure, got {:?}", other.map(|p| p.as_raw())),
    }
    println!("CHILD-OK");
}
