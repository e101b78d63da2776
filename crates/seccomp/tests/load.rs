//! L1: load real filters into a child process and make syscalls under them.
//!
//! Each `#[test]` here re-runs this test binary with `COVE_SECCOMP_CHILD=<mode>` and only the
//! `child` test selected; `child` does nothing unless that variable is set. A filter cannot
//! be unloaded, so it must never be loaded into the test runner itself. Works as root and as
//! an unprivileged user (seccomp only needs `no_new_privs`).

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use cove_seccomp::{docker_default, load, parse_profile, Error, DOCKER_DEFAULT_CAPS};
use nix::errno::Errno;
use nix::sys::personality::{self, Persona};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

const CHILD_ENV: &str = "COVE_SECCOMP_CHILD";
const DONE: &str = "child: all checks passed";

/// Run `child` in a fresh process in `mode`; returns (status, stdout, stderr).
fn spawn_child(mode: &str) -> (std::process::ExitStatus, String, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // libtest prints "test child ... " before the child's first line
    for line in stdout.lines() {
        if let Some(at) = line.find("child: ").or_else(|| line.find("SKIP: ")) {
            println!("{}", &line[at..]);
        }
    }
    (out.status, stdout, stderr)
}

fn docker_caps(extra: &[&str]) -> Vec<String> {
    DOCKER_DEFAULT_CAPS.iter().chain(extra).map(|c| c.to_string()).collect()
}

fn status_field(name: &str) -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn holds_cap_sys_admin() -> bool {
    u64::from_str_radix(&status_field("CapEff"), 16).unwrap() & (1 << 21) /* CAP_SYS_ADMIN */ != 0
}

fn try_mount() -> Result<(), Errno> {
    // the target does not exist: without seccomp this fails with ENOENT (path lookup comes
    // before the permission check), so EPERM can only come from the filter
    nix::mount::mount(
        Some("none"),
        "/nonexistent-cove-seccomp-test",
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
}

fn try_unshare_user() -> Result<(), Errno> {
    // the test process has several threads: without seccomp the kernel says EINVAL
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
}

fn try_vsock() -> Result<(), Errno> {
    socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map(drop)
}

/// The checks run by the child. Returns a SKIP reason if the environment prevents them.
fn child_main(mode: &str) -> Option<String> {
    let before = (try_mount(), try_unshare_user(), try_vsock());
    println!(
        "child: before load: mount {:?}, unshare(NEWUSER) {:?}, socket(AF_VSOCK) {:?}",
        before.0, before.1, before.2
    );
    let filters_before: u32 = status_field("Seccomp_filters").parse().unwrap_or(0);

    match mode {
        "default" | "sys_admin" => {
            nix::sys::prctl::set_no_new_privs().unwrap();
            let extra: &[&str] = if mode == "sys_admin" { &["CAP_SYS_ADMIN"] } else { &[] };
            load(&docker_default(&docker_caps(extra))).unwrap();
        }
        "no_nnp" => {
            let result = load(&docker_default(&docker_caps(&[])));
            if holds_cap_sys_admin() {
                result.expect("CAP_SYS_ADMIN allows loading without no_new_privs");
                println!("child: loaded without no_new_privs thanks to CAP_SYS_ADMIN");
            } else {
                let err = result.expect_err("no no_new_privs, no CAP_SYS_ADMIN: must fail");
                assert!(matches!(err, Error::Load { .. }), "{err}");
                assert!(err.to_string().contains("no_new_privs"), "{err}");
                println!("child: refused as expected: {err}");
                return None;
            }
        }
        "custom" => {
            let json = br#"{
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95},
                    {"names": ["dup"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
                     "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                    {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}
                ]
            }"#;
            nix::sys::prctl::set_no_new_privs().unwrap();
            load(&parse_profile(json, &[]).unwrap()).unwrap();
            let err = std::env::current_dir().unwrap_err();
            assert_eq!(err.raw_os_error(), Some(95), "getcwd -> ERRNO(95)");
            // argument filter: dup(0) is refused, dup(1) is not
            assert_eq!(nix::unistd::dup(std::io::stdin()).map(drop), Err(Errno::EINVAL));
            nix::unistd::dup(std::io::stdout()).expect("dup(1) allowed");
            println!("child: ERRNO(95) ok; now getppid, which must kill the process");
            let _ = nix::unistd::getppid();
            panic!("getppid returned under SCMP_ACT_KILL_PROCESS");
        }
        other => panic!("unknown child mode {other}"),
    }

    assert_eq!(status_field("Seccomp"), "2", "seccomp mode filter");
    let filters: u32 = status_field("Seccomp_filters").parse().unwrap_or(1);
    assert_eq!(filters, filters_before + 1, "exactly one filter added");
    assert_eq!(nix::unistd::getpid().as_raw() as u32, std::process::id());

    // Errors from a filter that came before ours (e.g. running inside Docker) would make
    // EPERM meaningless; only assert what the environment lets us tell apart.
    let mut skipped = Vec::new();
    let mut expect = |what: &str, before: Result<(), Errno>, after: Result<(), Errno>, want: Result<(), Errno>| {
        if before == Err(Errno::EPERM) && want == Err(Errno::EPERM) {
            skipped.push(format!("{what} already EPERM before the filter"));
        } else {
            assert_eq!(after, want, "{what}");
        }
    };
    if mode == "sys_admin" {
        // allowed by the filter: the kernel's own answer comes through
        expect("mount", before.0, try_mount(), before.0);
        expect("unshare", before.1, try_unshare_user(), before.1);
    } else {
        expect("mount", before.0, try_mount(), Err(Errno::EPERM));
        expect("unshare", before.1, try_unshare_user(), Err(Errno::EPERM));
    }
    expect("socket(AF_VSOCK)", before.2, try_vsock(), Err(Errno::EPERM));

    // personality: the query and PER_LINUX are allowed, READ_IMPLIES_EXEC is not
    let current = personality::get().expect("personality(0xffffffff) allowed");
    personality::set(Persona::empty()).expect("personality(PER_LINUX) allowed");
    assert_eq!(personality::set(Persona::READ_IMPLIES_EXEC), Err(Errno::EPERM));
    println!("child: personality {current:?}");

    // fork+exec under the filter: glibc's posix_spawn tries clone3 first and must get
    // ENOSYS (not EPERM) to fall back to clone without namespace flags
    let status = Command::new("/bin/true").status().expect("spawn /bin/true under the filter");
    assert!(status.success());
    println!("child: spawned /bin/true (clone3 -> ENOSYS fallback works)");

    (!skipped.is_empty()).then(|| skipped.join("; "))
}

/// Entry point of the child process; a no-op in a normal test run.
#[test]
fn child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    match child_main(&mode) {
        Some(reason) => println!("SKIP: {reason}"),
        None => println!("{DONE}"),
    }
}

fn assert_child_ok(mode: &str) {
    let (status, stdout, stderr) = spawn_child(mode);
    assert!(
        status.success() && (stdout.contains(DONE) || stdout.contains("SKIP: ")),
        "child {mode} failed: {status}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
}

#[test]
fn load_default_profile() {
    assert_child_ok("default");
}

#[test]
fn load_default_profile_with_sys_admin() {
    assert_child_ok("sys_admin");
}

#[test]
fn load_needs_no_new_privs_or_cap_sys_admin() {
    assert_child_ok("no_nnp");
}

#[test]
fn load_custom_profile_errno_and_kill() {
    let (status, stdout, stderr) = spawn_child("custom");
    assert!(
        stdout.contains("child: ERRNO(95) ok") && status.signal() == Some(libc::SIGSYS),
        "expected death by SIGSYS after the ERRNO checks, got {status}\n\
         --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
}
