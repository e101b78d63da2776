//! `exec`: starting another process inside a running container.
//!
//! The caller forks a helper that joins every namespace of the container's PID 1 (user when it
//! differs from ours, then ipc, uts, net, pid, cgroup, mount), forks the process that will
//! exec (only children enter a pid namespace), reports its pid and exits. The caller is a
//! child subreaper, so the exec'd process becomes its child and can be waited for. The process
//! gets the container's capabilities, no_new_privs, seccomp filter, user, cwd and environment.

use crate::container::Stdio;
use crate::exec::ExecFailure;
use crate::{caps, Context, Error, Result};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxSeccomp, Process};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// A process started in a container, waiting for nothing: it has exec'd (or failed).
pub struct Joined {
    pub pid: Pid,
    pub pty_master: Option<OwnedFd>,
}

const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Starts `process` inside the namespaces of `target` (the container's PID 1), after moving
/// it into the cgroups whose `cgroup.procs` files are given (the container's: its device rules
/// and limits then hold for the process from its first instruction in the container).
pub fn spawn_in(
    target: Pid,
    process: &Process,
    seccomp: Option<&LinuxSeccomp>,
    stdio: Stdio,
    seccomp_cache: Option<&std::path::Path>,
    cgroup_procs: &[std::path::PathBuf],
) -> Result<Joined> {
    let compiled = seccomp.map(|sc| crate::CompiledSeccomp::new(sc, seccomp_cache)).transpose()?;
    let seccomp = compiled.as_ref();
    // Open every namespace first, from our side, so a failure is reported before forking.
    let mut fds = vec![];
    let own_user = std::fs::read_link("/proc/self/ns/user").ok();
    let target_user =
        std::fs::read_link(format!("/proc/{target}/ns/user")).ctx(|| format!("container process {target} is gone"))?;
    if own_user.as_ref() != Some(&target_user) {
        fds.push((
            std::fs::File::open(format!("/proc/{target}/ns/user")).ctx(|| "open user namespace".into())?,
            CloneFlags::CLONE_NEWUSER,
        ));
    }
    for (name, flag) in NAMESPACES {
        let p = format!("/proc/{target}/ns/{name}");
        let mine = std::fs::read_link(format!("/proc/self/ns/{name}")).ok();
        let theirs = std::fs::read_link(&p).ok();
        if theirs.is_some() && mine != theirs {
            fds.push((std::fs::File::open(&p).ctx(|| format!("open {p}"))?, *flag));
        }
    }
    // The exec'd process is re-parented to us when the helper exits.
    nix::sys::prctl::set_child_subreaper(true).ctx(|| "prctl(PR_SET_CHILD_SUBREAPER)".into())?;
    let (parent_sock, child_sock) = UnixStream::pair().ctx(|| "socketpair".into())?;
    match cove_sys::fork()? {
        None => {
            drop(parent_sock);
            let mut sock = child_sock;
            let failure = helper(&fds, process, seccomp, &stdio, &mut sock, cgroup_procs);
            let _ = sock.write_all(format!("E{} {}", failure.code, failure.message).as_bytes());
            cove_sys::exit_now(failure.code);
        }
        Some(helper_pid) => {
            drop(child_sock);
            drop(fds);
            let mut pty_master = None;
            let mut pid = None;
            let mut msg = Vec::new();
            loop {
                let mut b = [0u8; 64];
                let (n, fd) = cove_sys::recv_with_fd(parent_sock.as_fd(), &mut b)?;
                if fd.is_some() {
                    pty_master = fd;
                }
                if n == 0 {
                    break;
                }
                msg.extend_from_slice(&b[..n]);
            }
            let _ = nix::sys::wait::waitpid(helper_pid, None);
            let text = String::from_utf8_lossy(&msg);
            for part in text.split('\n') {
                if let Some(p) = part.strip_prefix('P') {
                    pid = p.trim().parse::<i32>().ok().map(Pid::from_raw);
                }
            }
            if let Some(e) = text.find('E') {
                let rest = &text[e + 1..];
                let (code, m) = rest.split_once(' ').unwrap_or(("125", rest));
                if let Some(p) = pid {
                    let _ = nix::sys::wait::waitpid(p, None);
                }
                return Err(Error::Child { message: m.to_string(), exit_code: code.parse().unwrap_or(125) });
            }
            let pid = pid.ok_or_else(|| Error::Spec("exec helper exited without starting the process".into()))?;
            Ok(Joined { pid, pty_master })
        }
    }
}

fn helper(
    fds: &[(std::fs::File, CloneFlags)],
    process: &Process,
    seccomp: Option<&crate::CompiledSeccomp>,
    stdio: &Stdio,
    sock: &mut UnixStream,
    cgroup_procs: &[std::path::PathBuf],
) -> ExecFailure {
    let fail = |e: Error| ExecFailure { code: 125, message: e.to_string() };
    // Nothing in the container may open our /proc/PID/exe while we sit in its namespaces.
    if let Err(e) = cove_sys::set_not_dumpable() {
        return fail(e.into());
    }
    // Into the container's cgroups first ("0": the writer), from the host's cgroup namespace.
    for procs in cgroup_procs {
        if let Err(e) = std::fs::write(procs, "0") {
            return fail(Error::Io { what: format!("join cgroup {}", procs.display()), source: e });
        }
    }
    for (f, flag) in fds {
        if let Err(e) = nix::sched::setns(f.as_fd(), *flag) {
            return fail(Error::Sys { what: format!("setns {flag:?}"), source: e });
        }
    }
    // Only children enter the pid namespace.
    match cove_sys::fork() {
        Err(e) => fail(e.into()),
        Ok(Some(pid)) => {
            // The caller reads until every copy of the socket is closed: ours now, the
            // child's at exec (close-on-exec) or at its failure message.
            let _ = sock.write_all(format!("P{}\n", pid.as_raw()).as_bytes());
            cove_sys::exit_now(0)
        }
        Ok(None) => {
            let f = inner(process, seccomp, stdio, sock);
            let _ = sock.write_all(format!("E{} {}", f.code, f.message).as_bytes());
            cove_sys::exit_now(f.code)
        }
    }
}

/// Enters the working directory `cwd` resolved inside the container's root (ours since the
/// mount namespace was joined): symlinks stay inside it and magic links (`/proc/self/fd/N`,
/// `/proc/1/cwd`) are refused. A plain chdir followed them: `exec -w /proc/self/fd/N` put the
/// process in whatever directory a descriptor of ours named on the host (CVE-2024-21626).
fn chdir_inside(cwd: &std::path::Path) -> Result<()> {
    let shown = || format!("working directory {}", cwd.display());
    let root = crate::paths::Root::open(std::path::Path::new("/"))?;
    let fd = root
        .resolve(cwd)
        .map_err(|e| Error::Refused(format!("{}: {e}", shown())))?
        .ok_or_else(|| Error::Refused(format!("{}: no such directory in the container", shown())))?;
    nix::unistd::fchdir(&fd).map_err(|source| Error::Sys { what: format!("chdir to {}", shown()), source })
}

fn inner(
    process: &Process,
    seccomp: Option<&crate::CompiledSeccomp>,
    stdio: &Stdio,
    sock: &mut UnixStream,
) -> ExecFailure {
    let r = (|| -> Result<()> {
        // The caller blocks signals for its signalfd; the mask survives execve.
        let _ = nix::sys::signal::SigSet::all().thread_unblock();
        // No parent-death signal here: our parent is the short-lived helper.
        crate::container::setup_stdio_pub(stdio, sock)?;
        chdir_inside(process.cwd())?;
        if let Some(r) = process.rlimits() {
            caps::set_rlimits(r)?;
        }
        let nnp = process.no_new_privileges().unwrap_or(false);
        let caps_spec = process.capabilities().clone().unwrap_or_default();
        caps::drop_bounding(&caps_spec)?;
        if let (false, Some(sc)) = (nnp, seccomp) {
            sc.load()?;
        }
        caps::set_user(process.user())?;
        caps::apply_sets(&caps_spec)?;
        if nnp {
            nix::sys::prctl::set_no_new_privs().ctx(|| "prctl(PR_SET_NO_NEW_PRIVS)".into())?;
            if let Some(sc) = seccomp {
                sc.load()?;
            }
        }
        cove_sys::cloexec_from(3)?;
        Ok(())
    })();
    if let Err(e) = r {
        return ExecFailure { code: 125, message: e.to_string() };
    }
    crate::exec::exec(process.args().as_deref().unwrap_or(&[]), process.env().as_deref().unwrap_or(&[]))
}
