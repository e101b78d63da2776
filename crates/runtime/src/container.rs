//! Creating and starting a container process from an OCI spec.
//!
//! The parent clones a child straight into new mount, uts, ipc, pid (it is PID 1) and network
//! namespaces. Parent and child talk over a socketpair, one byte per step:
//!
//! ```text
//! parent                         child (container PID 1)
//! clone ───────────────────────► waits for 'C'
//! on_pid(pid) (cgroup) ── 'C' ─► unshare(cgroup ns), mounts, pivot_root, /dev, masks,
//!                                hostname, rlimits, pty ──(fd)──► parent
//!                        ◄─ 'R'─ user, capabilities, no_new_privs; waits for 'S'
//! start() ─────────────── 'S' ─► seccomp, close-on-exec everything, execve
//! EOF (exec happened) or ◄ 'E'code message ─ on any failure
//! ```

use crate::exec::ExecFailure;
use crate::{caps, mounts, Context, Error, Result};
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// How the root filesystem is assembled (inside the container's mount namespace).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Rootfs {
    /// `spec.root.path` is a ready directory: bind it onto itself.
    Directory,
    /// Overlay of image layers (top-most first) with a per-container upper and work dir,
    /// mounted on `spec.root.path`.
    Overlay { lower: Vec<PathBuf>, upper: PathBuf, work: PathBuf, userxattr: bool },
    /// The same, through fuse-overlayfs (kernels whose overlayfs cannot be mounted in a user
    /// namespace); mounted by the creator before the clone, its daemon outside every container
    /// (see [`mounts::FuseRoot`]), ending with the container's mount namespace.
    FuseOverlay { lower: Vec<PathBuf>, upper: PathBuf, work: PathBuf },
}

/// Where the container's standard streams go.
#[derive(Debug)]
pub enum Stdio {
    /// The caller's own stdin/stdout/stderr.
    Inherit,
    /// A new pseudo-terminal allocated inside the container's /dev/pts; the master comes back
    /// in [`Created::pty_master`].
    Pty,
    /// These three descriptors (pipes, files, /dev/null).
    Fds(OwnedFd, OwnedFd, OwnedFd),
}

pub struct CreateOptions<'a> {
    pub spec: &'a Spec,
    pub rootfs: Rootfs,
    /// The caller runs as root of a user namespace mapped onto an unprivileged user.
    pub rootless: bool,
    pub stdio: Stdio,
    /// Called with the child's pid before it starts setting up (join cgroups here).
    pub on_pid: Option<&'a dyn Fn(Pid) -> std::result::Result<(), String>>,
    /// A user namespace of the container's own, with these uid and gid maps (ids of the
    /// caller's namespace): used when the container's user is outside the caller's map.
    pub userns: Option<NestedMaps>,
    /// Where compiled seccomp programs are cached (a private dir: the user's data dir).
    pub seccomp_cache: Option<PathBuf>,
}

/// uid and gid maps for a container's own user namespace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NestedMaps {
    pub uids: Vec<crate::userns::IdRange>,
    pub gids: Vec<crate::userns::IdRange>,
}

impl NestedMaps {
    /// Maps for running as `uid`/`gid` given the caller's own uid and gid maps: `None` when
    /// both ids exist in the caller's namespace; else identity over the caller's ids (one line
    /// per line of the caller's map: the kernel wants every line inside one parent extent),
    /// with the requested id taking the caller's last id (or its only one).
    pub fn for_ids(
        uid: u32,
        gid: u32,
        uid_map: &[crate::userns::IdRange],
        gid_map: &[crate::userns::IdRange],
    ) -> Option<NestedMaps> {
        let fits =
            |id: u32, m: &[crate::userns::IdRange]| m.iter().any(|r| id >= r.container && id - r.container < r.size);
        if fits(uid, uid_map) && fits(gid, gid_map) {
            return None;
        }
        Some(NestedMaps { uids: nested(uid_map, uid), gids: nested(gid_map, gid) })
    }

    /// The id of the caller's namespace that `id` (a container id) lands on.
    pub fn outer(ranges: &[crate::userns::IdRange], id: u32) -> Option<u32> {
        ranges.iter().find(|r| id >= r.container && (id - r.container) < r.size).map(|r| r.host + (id - r.container))
    }
}

fn nested(parent: &[crate::userns::IdRange], want: u32) -> Vec<crate::userns::IdRange> {
    use crate::userns::IdRange;
    let mut lines: Vec<IdRange> =
        parent.iter().map(|r| IdRange { container: r.container, host: r.container, size: r.size }).collect();
    lines.sort_by_key(|r| r.container);
    if lines.iter().any(|r| want >= r.container && want - r.container < r.size) {
        return lines;
    }
    let Some(last) = lines.pop() else { return vec![] };
    let last_id = last.container + last.size - 1;
    if last.size > 1 {
        lines.push(IdRange { size: last.size - 1, ..last });
    }
    lines.push(IdRange { container: want, host: last_id, size: 1 });
    lines
}

/// A container process that has finished its setup and waits for [`Created::start`].
pub struct Created {
    pub pid: Pid,
    pub pty_master: Option<OwnedFd>,
    sync: UnixStream,
}

impl Created {
    /// Lets the container `execve` its command. Returns when the exec happened, or the
    /// failure (with Docker's exit code: 127 not found, 126 not executable).
    pub fn start(mut self) -> Result<Pid> {
        self.sync.write_all(b"S").ctx(|| "start container".into())?;
        let mut rest = Vec::new();
        let _ = self.sync.read_to_end(&mut rest);
        if rest.is_empty() {
            return Ok(self.pid);
        }
        Err(parse_child_error(&rest))
    }
}

fn parse_child_error(bytes: &[u8]) -> Error {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('E').unwrap_or(&text);
    let (code, message) = text.split_once(' ').unwrap_or(("125", text));
    Error::Child { message: message.to_string(), exit_code: code.parse().unwrap_or(125) }
}

fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Time => CloneFlags::empty(),
    }
}

/// Namespaces to create (no path) and to join (with a path), from the spec.
fn plan_namespaces(spec: &Spec) -> Result<(CloneFlags, Vec<(CloneFlags, PathBuf)>)> {
    let mut new = CloneFlags::empty();
    let mut join = Vec::new();
    for ns in spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default() {
        let f = ns_flag(ns.typ());
        if f == CloneFlags::CLONE_NEWUSER {
            if ns.path().is_none() && crate::userns::in_initial_userns() {
                return Err(Error::Spec("a new user namespace for a root container is not supported yet".into()));
            }
            // Rootless: the caller already is in the keeper's user namespace.
            continue;
        }
        match ns.path() {
            Some(p) => join.push((f, p.clone())),
            None => new |= f,
        }
    }
    Ok((new, join))
}

/// Forks the container's PID 1 and runs its setup up to the point just before `execve`.
pub fn create(opts: CreateOptions<'_>) -> Result<Created> {
    let spec = opts.spec;
    let (new_ns, join_ns) = plan_namespaces(spec)?;
    let mut clone_flags = new_ns & !CloneFlags::CLONE_NEWCGROUP;
    if opts.userns.is_some() {
        clone_flags |= CloneFlags::CLONE_NEWUSER;
    }
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(sc) => Some(crate::CompiledSeccomp::new(sc, opts.seccomp_cache.as_deref())?),
        None => None,
    };
    let (mut parent_sock, child_sock) = UnixStream::pair().ctx(|| "socketpair".into())?;
    // fuse-overlayfs is mounted here, outside the container's namespaces; the clone copies it.
    let fuse = match &opts.rootfs {
        Rootfs::FuseOverlay { lower, upper, work } => {
            let root = spec.root().as_ref().ok_or_else(|| Error::Spec("spec has no root".into()))?.path();
            Some(mounts::FuseRoot::mount(lower, upper, work, root)?)
        }
        _ => None,
    };
    let cloned = cove_sys::clone_fork(clone_flags);
    match cloned {
        Ok(None) => std::mem::forget(fuse),
        // Our copy of the mount goes; the container's (if any) is the daemon's last holder.
        _ => drop(fuse),
    }
    match cloned? {
        None => {
            drop(parent_sock);
            let mut sock = child_sock;
            let failure = match child_main(&opts, seccomp.as_ref(), new_ns, &join_ns, &mut sock) {
                Ok(never) => match never {},
                Err(f) => f,
            };
            let _ = sock.write_all(format!("E{} {}", failure.code, failure.message).as_bytes());
            cove_sys::exit_now(failure.code);
        }
        Some(pid) => {
            drop(child_sock);
            if let Some(maps) = &opts.userns {
                if let Err(e) = write_nested_maps(pid, maps) {
                    kill_and_reap(pid);
                    return Err(e);
                }
            }
            if let Some(cb) = opts.on_pid {
                if let Err(e) = cb(pid) {
                    kill_and_reap(pid);
                    return Err(Error::Setup(e));
                }
            }
            parent_sock.write_all(b"C").ctx(|| "signal container".into())?;
            let mut pty_master = None;
            loop {
                let mut b = [0u8; 1];
                let (n, fd) = cove_sys::recv_with_fd(parent_sock.as_fd(), &mut b)?;
                if fd.is_some() {
                    pty_master = fd;
                }
                match (n, b[0]) {
                    (1, b'F') => continue,
                    (1, b'R') => break,
                    (1, b'E') => {
                        let mut rest = vec![b'E'];
                        let _ = parent_sock.read_to_end(&mut rest);
                        reap(pid);
                        return Err(parse_child_error(&rest));
                    }
                    _ => {
                        reap(pid);
                        return Err(Error::Spec("container process exited during setup".into()));
                    }
                }
            }
            Ok(Created { pid, pty_master, sync: parent_sock })
        }
    }
}

fn write_nested_maps(pid: Pid, maps: &NestedMaps) -> Result<()> {
    let fmt = |rs: &[crate::userns::IdRange]| {
        rs.iter().map(|r| format!("{} {} {}\n", r.container, r.host, r.size)).collect::<String>()
    };
    // We are root of the namespace above (CAP_SETUID/CAP_SETGID there): no helper needed.
    std::fs::write(format!("/proc/{pid}/uid_map"), fmt(&maps.uids))
        .ctx(|| format!("write uid_map of the container ({:?})", maps.uids))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), fmt(&maps.gids))
        .ctx(|| format!("write gid_map of the container ({:?})", maps.gids))?;
    Ok(())
}

fn kill_and_reap(pid: Pid) {
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    reap(pid);
}

fn reap(pid: Pid) {
    let _ = nix::sys::wait::waitpid(pid, None);
}

fn fail(code: i32) -> impl Fn(Error) -> ExecFailure {
    move |e| ExecFailure { code, message: e.to_string() }
}

/// The container's PID 1 before exec. Returns only on failure.
fn child_main(
    opts: &CreateOptions<'_>,
    seccomp: Option<&crate::CompiledSeccomp>,
    new_ns: CloneFlags,
    join_ns: &[(CloneFlags, PathBuf)],
    sock: &mut UnixStream,
) -> Result<std::convert::Infallible, ExecFailure> {
    let f = fail(125);
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // The parent (monitor or CLI) may have signals blocked for its signalfd; a blocked mask
    // survives execve, so clear it or the container would never see SIGTERM.
    let _ = nix::sys::signal::SigSet::all().thread_unblock();
    let mut b = [0u8; 1];
    match sock.read(&mut b) {
        Ok(1) if b[0] == b'C' => {}
        _ => cove_sys::exit_now(125),
    }
    setup(opts, seccomp, new_ns, join_ns, sock).map_err(f)?;
    sock.write_all(b"R").map_err(|e| ExecFailure { code: 125, message: format!("sync: {e}") })?;
    match sock.read(&mut b) {
        Ok(1) if b[0] == b'S' => {}
        _ => cove_sys::exit_now(125),
    }
    let spec = opts.spec;
    let process = spec.process().as_ref().ok_or(ExecFailure { code: 125, message: "spec has no process".into() })?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    if let (true, Some(sc)) = (nnp, seccomp) {
        sc.load().map_err(|e| ExecFailure { code: 125, message: format!("seccomp: {e}") })?;
    }
    // Nothing of ours may reach the container: every descriptor above stdio closes on exec,
    // the sync socket included (its EOF tells the parent that exec happened).
    cove_sys::cloexec_from(3).map_err(|e| ExecFailure { code: 125, message: e.to_string() })?;
    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    if wants_init(spec) {
        // Check the command before forking so "not found" comes back as usual.
        crate::exec::lookup(args.first().map(|s| s.as_str()).unwrap_or(""), &env)?;
        // Keep exactly one copy of the sync socket (init closes it after forking, the command
        // at exec), so the parent sees EOF once the command runs.
        let owned = sock.try_clone().map_err(|e| ExecFailure { code: 125, message: format!("init: {e}") })?;
        let _ = nix::unistd::close(std::os::fd::AsRawFd::as_raw_fd(sock));
        crate::init::run(&args, &env, owned);
    }
    Err(crate::exec::exec(&args, &env))
}

/// Annotation that asks for cove's init as PID 1 (`--init`).
pub const INIT_ANNOTATION: &str = "run.cove.init";

fn wants_init(spec: &Spec) -> bool {
    spec.annotations().as_ref().and_then(|a| a.get(INIT_ANNOTATION)).is_some_and(|v| v == "true")
}

fn setup(
    opts: &CreateOptions<'_>,
    seccomp: Option<&crate::CompiledSeccomp>,
    new_ns: CloneFlags,
    join_ns: &[(CloneFlags, PathBuf)],
    sock: &mut UnixStream,
) -> Result<()> {
    let spec = opts.spec;
    let process = spec.process().as_ref().ok_or_else(|| Error::Spec("spec has no process".into()))?;
    let root_spec = spec.root().as_ref().ok_or_else(|| Error::Spec("spec has no root".into()))?;
    let root = root_spec.path().clone();
    for (flag, path) in join_ns {
        let f = std::fs::File::open(path).ctx(|| format!("open namespace {}", path.display()))?;
        nix::sched::setns(f.as_fd(), *flag).ctx(|| format!("setns {}", path.display()))?;
    }
    if new_ns.contains(CloneFlags::CLONE_NEWCGROUP) {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).ctx(|| "unshare(CLONE_NEWCGROUP)".into())?;
    }
    if new_ns.contains(CloneFlags::CLONE_NEWNET) {
        cove_sys::loopback_up()?;
    }
    use nix::mount::MsFlags;
    nix::mount::mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .ctx(|| "make / rprivate".into())?;
    mounts::mount_rootfs(&opts.rootfs, &root)?;
    cove_sys::fault::point("runtime.after-rootfs");
    mounts::mount_all(spec, &root, opts.rootless, new_ns.contains(CloneFlags::CLONE_NEWNET))?;
    mounts::create_devices(spec, &root, opts.rootless)?;
    let user = process.user();
    mounts::ensure_cwd(&root, process.cwd(), user.uid(), user.gid())?;
    if new_ns.contains(CloneFlags::CLONE_NEWUTS) {
        if let Some(h) = spec.hostname() {
            nix::unistd::sethostname(h).ctx(|| format!("sethostname {h}"))?;
        }
    }
    mounts::pivot(&root)?;
    if let Some(linux) = spec.linux() {
        // Sysctls first: /proc/sys becomes read-only below.
        let sysctl = linux.sysctl().clone().unwrap_or_default();
        if new_ns.contains(CloneFlags::CLONE_NEWNET) && !sysctl.contains_key("net.ipv4.ping_group_range") {
            // As Docker does: unprivileged ICMP echo sockets for every group, so `ping` works
            // for non-root users with default capabilities. The range must consist of gids
            // that exist in our user namespace.
            let max_gid = crate::userns::current_gid_map()
                .iter()
                .map(|r| r.container as u64 + r.size as u64 - 1)
                .max()
                .unwrap_or(0)
                .min(2147483647);
            let _ = std::fs::write("/proc/sys/net/ipv4/ping_group_range", format!("0 {max_gid}"));
        }
        for (k, v) in &sysctl {
            let p = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
            std::fs::write(&p, v).ctx(|| format!("sysctl {k}={v}"))?;
        }
        mounts::mask_paths(linux.masked_paths().as_deref().unwrap_or(&[]))?;
        mounts::readonly_paths(linux.readonly_paths().as_deref().unwrap_or(&[]))?;
    }
    if root_spec.readonly() == Some(true) {
        mounts::readonly_root()?;
    }
    setup_stdio(&opts.stdio, sock)?;
    if let Some(r) = process.rlimits() {
        caps::set_rlimits(r)?;
    }
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    std::env::set_current_dir(process.cwd())
        .ctx(|| format!("chdir to working directory {}", process.cwd().display()))?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    let caps_spec = process.capabilities().clone().unwrap_or_default();
    caps::drop_bounding(&caps_spec)?;
    if !nnp {
        // Without no_new_privs, seccomp must be loaded while we still hold CAP_SYS_ADMIN.
        if let Some(sc) = seccomp {
            sc.load()?;
        }
    }
    caps::set_user(user)?;
    // A credential change clears the parent-death signal: set it again, so the container
    // never outlives the process that started it (the monitor, or the foreground CLI).
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    caps::apply_sets(&caps_spec)?;
    if nnp {
        nix::sys::prctl::set_no_new_privs().ctx(|| "prctl(PR_SET_NO_NEW_PRIVS)".into())?;
    }
    Ok(())
}

/// Connects the process's stdio as asked (shared with `exec`).
pub(crate) fn setup_stdio_pub(stdio: &Stdio, sock: &mut UnixStream) -> Result<()> {
    setup_stdio(stdio, sock)
}

fn setup_stdio(stdio: &Stdio, sock: &mut UnixStream) -> Result<()> {
    match stdio {
        Stdio::Inherit => {
            nix::unistd::setsid().ctx(|| "setsid".into())?;
        }
        Stdio::Fds(i, o, e) => {
            nix::unistd::setsid().ctx(|| "setsid".into())?;
            cove_sys::dup_onto(i.as_fd(), 0)?;
            cove_sys::dup_onto(o.as_fd(), 1)?;
            cove_sys::dup_onto(e.as_fd(), 2)?;
        }
        Stdio::Pty => {
            use nix::fcntl::OFlag;
            let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
                .ctx(|| "open /dev/ptmx in the container".into())?;
            nix::pty::grantpt(&master).ctx(|| "grantpt".into())?;
            nix::pty::unlockpt(&master).ctx(|| "unlockpt".into())?;
            let slave = cove_sys::open_pty_peer(master.as_fd())?;
            cove_sys::send_fd(sock.as_fd(), master.as_fd())?;
            drop(master);
            nix::unistd::setsid().ctx(|| "setsid".into())?;
            cove_sys::set_controlling_tty(slave.as_fd())?;
            for fd in 0..3 {
                cove_sys::dup_onto(slave.as_fd(), fd)?;
            }
        }
    }
    Ok(())
}
