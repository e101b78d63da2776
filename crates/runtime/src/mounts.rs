//! The container's filesystem view: rootfs, spec mounts, /dev, pivot_root, masked and
//! read-only paths. Runs inside the container's new mount namespace, before `execve`.

use crate::paths::{fd_path, lexical, Create, Root};
use crate::{Context, Error, Result, Rootfs};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fchmodat, fstat, fstatat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};
use oci_spec::runtime::{Mount, Spec};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Mount flags and data parsed from OCI mount options.
#[derive(Debug, PartialEq, Eq)]
pub struct MountOpts {
    pub flags: MsFlags,
    pub clear: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
}

/// Parses OCI/`mount(8)` options (`ro`, `nosuid`, `rbind`, `mode=755`, ...).
pub fn parse_options(options: &[String]) -> MountOpts {
    let mut o = MountOpts {
        flags: MsFlags::empty(),
        clear: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: vec![],
        bind: false,
        recursive: false,
    };
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                let mut p = match opt.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                if opt.starts_with('r') && opt != "rw" {
                    p |= MsFlags::MS_REC;
                }
                o.propagation = p;
                continue;
            }
            "defaults" | "" => continue,
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.clear |= clear;
    }
    o
}

fn mnt(src: Option<&Path>, dst: &Path, fstype: Option<&str>, flags: MsFlags, data: Option<&str>) -> Result<()> {
    mnt_shown(src, dst, dst, fstype, flags, data)
}

/// mount(2) on `at` (a `/proc/self/fd/N` path), naming `shown` in errors.
fn mnt_shown(
    src: Option<&Path>,
    at: &Path,
    shown: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    mount(src, at, fstype, flags, data).map_err(|source| Error::Mount {
        src: src.map(|p| p.display().to_string()).or(fstype.map(String::from)).unwrap_or_default(),
        dst: shown.to_path_buf(),
        source,
    })
}

/// Flags of the mount at `path` that a user namespace may not clear (MNT_LOCK_*): a
/// read-only or nosuid bind remount must repeat them or the kernel refuses with EPERM.
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else { return MsFlags::empty() };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut m = MsFlags::empty();
    for (a, b) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(a) {
            m |= b;
        }
    }
    m
}

/// Remounts a bind mount with `flags`, keeping the flags that are locked on it.
pub fn bind_remount(path: &Path, flags: MsFlags, clear: MsFlags) -> Result<()> {
    remount_shown(path, path, flags, clear)
}

fn remount_shown(path: &Path, shown: &Path, flags: MsFlags, clear: MsFlags) -> Result<()> {
    let keep = locked_flags(path) & !clear;
    let want = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | keep;
    match mnt_shown(None, path, shown, None, want, None) {
        Ok(()) => Ok(()),
        // Atime flags are the usual culprit when a remount is refused: retry without touching them.
        Err(_) => mnt_shown(
            None,
            path,
            shown,
            None,
            want & !(MsFlags::MS_RELATIME | MsFlags::MS_NOATIME | MsFlags::MS_NODIRATIME | MsFlags::MS_STRICTATIME)
                | (locked_flags(path) & (MsFlags::MS_RELATIME | MsFlags::MS_NOATIME | MsFlags::MS_NODIRATIME)),
            None,
        ),
    }
}

fn ensure_dir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).ctx(|| format!("mkdir {}", p.display()))
}

/// Files below /proc that a bind mount may cover (runc's list: what lxcfs emulates).
const PROC_BIND_ALLOWED: &[&str] = &[
    "proc/cpuinfo",
    "proc/diskstats",
    "proc/meminfo",
    "proc/stat",
    "proc/swaps",
    "proc/uptime",
    "proc/loadavg",
    "proc/slabinfo",
    "proc/net/dev",
    "proc/sys/kernel/ns_last_pid",
];

/// Refuses a mount whose target (`rel`, where `dst` resolved inside the root) lies in the
/// container's /proc or /sys — by path, or because the target is on a procfs or sysfs
/// already mounted there — except the spec's own proc at /proc, sysfs at /sys, cgroup at
/// /sys/fs/cgroup and binds over the few /proc files lxcfs emulates. proc and sysfs must be
/// mounted at their own paths, not through a symlink (the masks would miss them).
fn check_target(dst: &Path, rel: &Path, target: BorrowedFd<'_>, typ: &str, bind: bool) -> Result<()> {
    use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC, SYSFS_MAGIC};
    let fs = fstatfs(target).map(|s| s.filesystem_type()).ok();
    let under = |top: &str| rel == Path::new(top) || rel.starts_with(top);
    let refuse = |what: &str| {
        Err(Error::Refused(format!(
            "refusing to mount on {}: it resolves to /{}, {what}",
            dst.display(),
            rel.display()
        )))
    };
    let literal = lexical(dst) == rel;
    let fs_kind = !bind && matches!(typ, "proc" | "sysfs");
    if fs_kind && !literal {
        return refuse(&format!(
            "not {} (a symlink in the container's root leads there)",
            Path::new("/").join(lexical(dst)).display()
        ));
    }
    if under("proc") || fs == Some(PROC_SUPER_MAGIC) {
        let ok = (typ == "proc" && !bind && rel == Path::new("proc"))
            || (bind && literal && PROC_BIND_ALLOWED.iter().any(|a| rel == Path::new(a)));
        if !ok {
            return refuse("inside /proc of the container");
        }
    }
    if under("sys") || fs == Some(SYSFS_MAGIC) {
        let ok = (typ == "sysfs" && rel == Path::new("sys"))
            || (matches!(typ, "cgroup" | "cgroup2") && !bind && rel == Path::new("sys/fs/cgroup"));
        if !ok {
            return refuse("inside /sys of the container");
        }
    }
    Ok(())
}

/// Opens `dst` again after a mount on it (now the mount's root), checking it still resolves
/// to `rel`; for remounts and propagation changes.
fn reopen(root: &Root, dst: &Path, rel: &Path) -> Result<OwnedFd> {
    let fd = root
        .resolve(dst)?
        .ok_or_else(|| Error::Refused(format!("mount target {} vanished during the mount", dst.display())))?;
    if root.relative(fd.as_fd())? != rel {
        return Err(Error::Refused(format!("mount target {} changed during the mount", dst.display())));
    }
    Ok(fd)
}

/// Mounts the root filesystem on `root` (overlay of image layers, or a bind of a directory),
/// making it a mount point as pivot_root requires.
pub fn mount_rootfs(rootfs: &Rootfs, root: &Path) -> Result<()> {
    ensure_dir(root)?;
    match rootfs {
        // fuse-overlayfs was mounted by the container's creator before the clone (see
        // [`FuseRoot`]): our copy of it is bound onto itself, so pivot_root gets a mount of
        // this namespace (a copied one is locked when the container has a user namespace).
        Rootfs::Directory | Rootfs::FuseOverlay { .. } => {
            mnt(Some(root), root, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        }
        Rootfs::Overlay { lower, upper, work, userxattr } => {
            // lowerdir lists the top-most layer first. mount(2) data is limited to one page, so
            // when the layers share a parent directory, mount from inside it with short names.
            let common =
                lower.first().and_then(|l| l.parent()).filter(|p| lower.iter().all(|l| l.parent() == Some(*p)));
            let names: Vec<String> = match common {
                Some(_) => lower
                    .iter()
                    .map(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
                    .collect(),
                None => lower.iter().map(|l| l.display().to_string()).collect(),
            };
            let mut data =
                format!("lowerdir={},upperdir={},workdir={}", names.join(":"), upper.display(), work.display());
            if *userxattr {
                data.push_str(",userxattr");
            }
            let cwd = std::env::current_dir().ok();
            if let Some(dir) = common {
                std::env::set_current_dir(dir).ctx(|| format!("chdir {}", dir.display()))?;
            }
            let r = mnt(Some(Path::new("overlay")), root, Some("overlay"), MsFlags::empty(), Some(&data));
            if let Some(c) = cwd {
                let _ = std::env::set_current_dir(c);
            }
            r?;
        }
    }
    Ok(())
}

/// A fuse-overlayfs root filesystem, mounted by the container's creator (the CLI or the
/// monitor) in a mount namespace of its own, before it clones the container.
///
/// The daemon must not live in the container's namespaces: there it was a process of the
/// container (visible in its /proc, ptrace-able with CAP_SYS_PTRACE) whose descriptors of the
/// layer directories led to the host's `/`. So the creator leaves the host's mount namespace
/// (a copy, `/` made rslave: mounts of ours never propagate back), runs fuse-overlayfs there
/// (host pid namespace, every descriptor above stdio closed), and clones the container with
/// CLONE_NEWNS, which copies the mount; then the creator detaches its own copy ([`Drop`]). The
/// container's mount namespace is the last holder: when it goes, the kernel ends the FUSE
/// connection and the daemon exits. Mounting in the creator's namespace also works when the
/// container gets a user namespace of its own whose root is unmapped (FUSE refused that).
pub struct FuseRoot {
    root: PathBuf,
}

impl FuseRoot {
    pub fn mount(lower: &[PathBuf], upper: &Path, work: &Path, root: &Path) -> Result<FuseRoot> {
        use nix::sched::CloneFlags;
        nix::sched::unshare(CloneFlags::CLONE_NEWNS).ctx(|| "unshare(CLONE_NEWNS) for fuse-overlayfs".into())?;
        mnt(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_SLAVE, None)?;
        ensure_dir(root)?;
        let lowers: Vec<String> = lower.iter().map(|l| l.display().to_string()).collect();
        let opts = format!("lowerdir={},upperdir={},workdir={}", lowers.join(":"), upper.display(), work.display());
        // fuse-overlayfs mounts, then leaves a daemon behind and exits 0.
        let mut cmd = std::process::Command::new("fuse-overlayfs");
        cmd.args(["-o", &opts]).arg(root).stdin(std::process::Stdio::null());
        cove_sys::only_stdio(&mut cmd);
        let out = cmd.output().ctx(|| "run fuse-overlayfs (Debian package fuse-overlayfs)".into())?;
        if !out.status.success() {
            return Err(Error::Spec(format!(
                "fuse-overlayfs failed: {} (is /dev/fuse accessible? without udev it is 0600: chmod 0666 /dev/fuse)",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(FuseRoot { root: root.to_path_buf() })
    }
}

impl Drop for FuseRoot {
    /// Detaches the creator's copy of the mount (the container has its own by then, or never
    /// came: then the daemon exits now).
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.root, MntFlags::MNT_DETACH) {
            tracing::warn!("detach fuse-overlayfs from {}: {e}", self.root.display());
        }
    }
}

/// Performs the spec's mounts under `root` (before pivot_root). Every target is opened inside
/// the root by descriptor and mounted through it: see [`crate::paths`].
pub fn mount_all(spec: &Spec, root: &Path, rootless: bool, new_netns: bool) -> Result<()> {
    let empty = vec![];
    let mounts: &Vec<Mount> = spec.mounts().as_ref().unwrap_or(&empty);
    let root = Root::open(root)?;
    for m in mounts {
        do_mount(m, &root, rootless, new_netns)?;
    }
    Ok(())
}

fn do_mount(m: &Mount, root: &Root, rootless: bool, new_netns: bool) -> Result<()> {
    let dst = m.destination();
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    let data = (!opts.data.is_empty()).then(|| opts.data.join(","));
    let bind = opts.bind || typ == "bind";
    let create = if bind {
        let src =
            m.source().as_ref().ok_or_else(|| Error::Spec(format!("bind mount on {} has no source", dst.display())))?;
        let meta = std::fs::metadata(src).ctx(|| format!("bind mount source {}", src.display()))?;
        if meta.is_dir() {
            Create::Dir
        } else {
            Create::File
        }
    } else {
        Create::Dir
    };
    let (target, _) = root.ensure(dst, create)?;
    let rel = root.relative(target.as_fd())?;
    check_target(dst, &rel, target.as_fd(), typ, bind)?;
    let at = fd_path(target.as_fd());
    if bind {
        let src = m.source().as_deref().unwrap_or(Path::new(""));
        let mut f = MsFlags::MS_BIND;
        if opts.recursive {
            f |= MsFlags::MS_REC;
        }
        mnt_shown(Some(src), &at, dst, None, f, None)?;
        if !(opts.flags & !MsFlags::MS_REC).is_empty() || !opts.clear.is_empty() {
            let mounted = reopen(root, dst, &rel)?;
            remount_shown(&fd_path(mounted.as_fd()), dst, opts.flags, opts.clear)?;
        }
    } else {
        let src = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        let r = mnt_shown(Some(&src), &at, dst, Some(typ), opts.flags, data.as_deref());
        match (r, typ) {
            (Ok(()), _) => {}
            // Without a network namespace of our own (rootless --network host) sysfs cannot be
            // mounted: bind the host's instead, read-only, as Podman does.
            (Err(_), "sysfs") if rootless || !new_netns => {
                mnt_shown(Some(Path::new("/sys")), &at, dst, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
                let mounted = reopen(root, dst, &rel)?;
                let _ = remount_shown(
                    &fd_path(mounted.as_fd()),
                    dst,
                    MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    MsFlags::empty(),
                );
            }
            // A cgroup namespace on a v1 or hybrid host may refuse cgroup mounts; containers
            // work without /sys/fs/cgroup, so this is not fatal.
            (Err(e), "cgroup" | "cgroup2") => tracing::debug!("skipping cgroup mount: {e}"),
            // devpts options like gid=5 fail when gid 5 is not mapped (single-id user namespace).
            (Err(_), "devpts") => {
                let d: Vec<&str> = opts.data.iter().map(|s| s.as_str()).filter(|s| !s.starts_with("gid=")).collect();
                mnt_shown(Some(&src), &at, dst, Some(typ), opts.flags, Some(&d.join(",")))?;
            }
            // mqueue needs an IPC namespace owned by our user namespace; fall back to nothing.
            (Err(e), "mqueue") if rootless => tracing::debug!("skipping mqueue mount: {e}"),
            (Err(e), _) => return Err(e),
        }
    }
    if !opts.propagation.is_empty() {
        if let Ok(mounted) = reopen(root, dst, &rel) {
            let _ = mnt_shown(None, &fd_path(mounted.as_fd()), dst, None, opts.propagation, None);
        }
    }
    Ok(())
}

/// Creates the device nodes of the spec (plus the OCI defaults) under `root/dev`. Rootless,
/// mknod is refused, so the host's nodes are bind-mounted instead. Everything is created
/// relative to a descriptor of the container's /dev and resolved inside it.
pub fn create_devices(spec: &Spec, root: &Path, rootless: bool) -> Result<()> {
    let mut wanted: Vec<(PathBuf, SFlag, u64, u64, u32)> =
        ["null:1:3", "zero:1:5", "full:1:7", "random:1:8", "urandom:1:9", "tty:5:0"]
            .iter()
            .map(|s| {
                let v: Vec<&str> = s.split(':').collect();
                (
                    PathBuf::from("/dev").join(v[0]),
                    SFlag::S_IFCHR,
                    v[1].parse().unwrap_or(0),
                    v[2].parse().unwrap_or(0),
                    0o666,
                )
            })
            .collect();
    if let Some(devs) = spec.linux().as_ref().and_then(|l| l.devices().clone()) {
        for d in devs {
            let kind = match d.typ() {
                oci_spec::runtime::LinuxDeviceType::B => SFlag::S_IFBLK,
                oci_spec::runtime::LinuxDeviceType::P => SFlag::S_IFIFO,
                _ => SFlag::S_IFCHR,
            };
            wanted.retain(|w| w.0 != *d.path());
            wanted.push((d.path().clone(), kind, d.major() as u64, d.minor() as u64, d.file_mode().unwrap_or(0o666)));
        }
    }
    let root = Root::open(root)?;
    let (devfd, _) = root.ensure(Path::new("/dev"), Create::Dir)?;
    let rel = root.relative(devfd.as_fd())?;
    if fstat(&devfd).map(|st| st.st_mode & libc::S_IFMT != libc::S_IFDIR).unwrap_or(true) {
        return Err(Error::Refused(format!(
            "/dev of the container resolves to /{}, which is not a directory",
            rel.display()
        )));
    }
    if rel != Path::new("dev") {
        return Err(Error::Refused(format!(
            "/dev of the container resolves to /{} (a symlink in the container's root leads there)",
            rel.display()
        )));
    }
    let dev = Root::from_fd(devfd)?;
    for (path, kind, major, minor, mode) in wanted {
        let sub = path.strip_prefix("/dev").ok().filter(|s| {
            !s.as_os_str().is_empty() && !s.components().any(|c| matches!(c, std::path::Component::ParentDir))
        });
        let Some((name, parent)) =
            sub.and_then(|s| Some((s.file_name()?.to_os_string(), s.parent().unwrap_or(Path::new("")).to_path_buf())))
        else {
            return Err(Error::Spec(format!("device {} is not under /dev", path.display())));
        };
        let (pfd, _) = dev.ensure(&parent, Create::Dir)?;
        let _ = unlinkat(&pfd, name.as_os_str(), UnlinkatFlags::NoRemoveDir);
        let made = !rootless
            && mknodat(
                &pfd,
                name.as_os_str(),
                kind,
                Mode::from_bits_truncate(mode),
                nix::sys::stat::makedev(major, minor),
            )
            .is_ok();
        if made {
            // Just made by mknod (not a symlink), so following is moot.
            let _ = fchmodat(&pfd, name.as_os_str(), Mode::from_bits_truncate(mode), FchmodatFlags::FollowSymlink);
            continue;
        }
        if !Path::new(&path).exists() {
            tracing::debug!("host has no {}, skipping", path.display());
            continue;
        }
        match openat(
            &pfd,
            name.as_os_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(source) => return Err(Error::Sys { what: format!("create {}", path.display()), source }),
        }
        let target =
            openat(&pfd, name.as_os_str(), OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                .ctx(|| format!("open {}", path.display()))?;
        if fstat(&target).map(|st| st.st_mode & libc::S_IFMT != libc::S_IFREG).unwrap_or(true) {
            return Err(Error::Refused(format!("refusing to mount on {}: not a regular file", path.display())));
        }
        mnt_shown(Some(&path), &fd_path(target.as_fd()), &path, None, MsFlags::MS_BIND, None)?;
    }
    let absent = |name: &str| matches!(fstatat(dev.fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW), Err(Errno::ENOENT));
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        if absent(link) {
            let _ = symlinkat(target, dev.fd(), link);
        }
    }
    if dev.resolve(Path::new("pts/ptmx"))?.is_some() {
        let _ = unlinkat(dev.fd(), "ptmx", UnlinkatFlags::NoRemoveDir);
        symlinkat("pts/ptmx", dev.fd(), "ptmx").ctx(|| "symlink /dev/ptmx".into())?;
    }
    Ok(())
}

/// `pivot_root` into `root` and detach the old root.
pub fn pivot(root: &Path) -> Result<()> {
    std::env::set_current_dir(root).ctx(|| format!("chdir {}", root.display()))?;
    nix::unistd::pivot_root(".", ".").ctx(|| format!("pivot_root {}", root.display()))?;
    // The old root is now stacked under "."; make it private so the detach does not propagate.
    let _ = mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>);
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detach old root".into())?;
    std::env::set_current_dir("/").ctx(|| "chdir /".into())?;
    Ok(())
}

/// Masks paths (after pivot_root): directories get an empty read-only tmpfs, files /dev/null.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        let Ok(meta) = std::fs::metadata(path) else { continue };
        if meta.is_dir() {
            mnt(Some(Path::new("tmpfs")), path, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))?;
        } else {
            mnt(Some(Path::new("/dev/null")), path, None, MsFlags::MS_BIND, None)?;
        }
    }
    Ok(())
}

/// Makes paths read-only (after pivot_root).
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let path = Path::new(p);
        if std::fs::symlink_metadata(path).is_err() {
            continue;
        }
        mnt(Some(path), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        bind_remount(
            path,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            MsFlags::empty(),
        )?;
    }
    Ok(())
}

/// Remounts `/` read-only (`--read-only`).
pub fn readonly_root() -> Result<()> {
    bind_remount(Path::new("/"), MsFlags::MS_RDONLY, MsFlags::empty())
}

/// Creates the working directory if the image lacks it (as Docker does), inside the root
/// (symlinks on the way resolved inside it).
pub fn ensure_cwd(root: &Path, cwd: &Path, uid: u32, gid: u32) -> Result<()> {
    let root = Root::open(root)?;
    let (fd, made) = root
        .ensure(cwd, Create::Dir)
        .map_err(|e| Error::Refused(format!("working directory {}: {e}", cwd.display())))?;
    if made && (uid != 0 || gid != 0) {
        let _ = nix::unistd::fchownat(
            &fd,
            "",
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            AtFlags::AT_EMPTY_PATH,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_in_proc_and_sys_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(d.path()).unwrap();
        let check = |dst: &str, rel: &str, typ: &str, bind: bool| {
            check_target(Path::new(dst), Path::new(rel), dir.as_fd(), typ, bind)
        };
        assert!(check("/proc", "proc", "proc", false).is_ok());
        assert!(check("/sys", "sys", "sysfs", false).is_ok());
        assert!(check("/sys/fs/cgroup", "sys/fs/cgroup", "cgroup2", false).is_ok());
        assert!(check("/proc/cpuinfo", "proc/cpuinfo", "bind", true).is_ok(), "lxcfs");
        assert!(check("/etc/hosts", "etc/hosts", "bind", true).is_ok());
        assert!(check("/data", "data/x", "tmpfs", false).is_ok());
        let e = check("/etc/hosts", "proc/1/environ", "bind", true).unwrap_err().to_string();
        assert_eq!(e, "refusing to mount on /etc/hosts: it resolves to /proc/1/environ, inside /proc of the container");
        assert!(check("/x/cpuinfo", "proc/cpuinfo", "bind", true).is_err(), "the lxcfs list by its own path only");
        assert!(check("/proc", "proc", "bind", true).is_err());
        assert!(check("/data", "sys/kernel", "tmpfs", false).is_err());
        assert!(check("/sys", "sys", "bind", true).is_err());
        // proc and sysfs through a symlink (where the masks would miss them).
        assert!(check("/proc", "etc", "proc", false).unwrap_err().to_string().contains("not /proc"));
        assert!(check("/sys", "tmp/s", "sysfs", false).is_err());
        // A target on a mounted procfs, whatever its path.
        let p = std::fs::File::open("/proc/self").unwrap();
        assert!(check_target(Path::new("/data"), Path::new("data"), p.as_fd(), "bind", true).is_err());
    }

    #[test]
    fn options() {
        let o = parse_options(&[
            "rbind".into(),
            "ro".into(),
            "nosuid".into(),
            "mode=755".into(),
            "size=65536k".into(),
            "rprivate".into(),
        ]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        let o = parse_options(&["ro".into(), "rw".into()]);
        assert!(o.flags.is_empty());
        assert_eq!(o.clear, MsFlags::MS_RDONLY);
    }
}
