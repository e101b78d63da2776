//! Applying layer entries to a target directory, safely.
//!
//! The [`Applier`] receives entries ([`Node`]s) from a tar stream or from an unpacked
//! layer directory and writes them below its target directory. It never writes outside
//! it: every entry's parent is reached from a directory file descriptor one component at
//! a time with `O_NOFOLLOW|O_DIRECTORY`, so a symlink in a parent position is refused
//! rather than followed, and every object is created relative to that parent descriptor
//! (`openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, `mkdirat`, `symlinkat`, `linkat`, `mknodat`).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};
use xattr::FileExt;

use crate::error::{EntryError, Error, Result};
use crate::fsutil::{is_dir, is_symlink, list_dir, lstat_at, open_dir_path, open_root, remove_at};

/// Entries deeper than this are refused (it bounds recursion and descriptors in removal).
pub const MAX_DEPTH: usize = 256;

const OPAQUE_USER: &str = "user.overlay.opaque";
const OPAQUE_TRUSTED: &str = "trusted.overlay.opaque";

/// How whiteout entries (`.wh.NAME`, `.wh..wh..opq`) are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// For a layer directory used as an overlayfs lowerdir: `.wh.NAME` becomes a 0/0
    /// character device (allowed unprivileged since Linux 5.8) and an opaque directory
    /// gets the xattr `user.overlay.opaque=y` when `userxattr` (overlay mounted with
    /// `userxattr`, as rootless must) or `trusted.overlay.opaque=y` otherwise.
    Overlay { userxattr: bool },
    /// For a flattened root file system: `.wh.NAME` deletes NAME, and an opaque
    /// directory loses every child that the current layer did not create.
    Apply,
}

/// Options for unpacking layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    /// How whiteouts are written. Layers in the store are always overlay lowerdirs:
    /// `Apply` given to [`Store::import_rootfs`](crate::Store::import_rootfs) or
    /// [`Store::load`](crate::Store::load) means `Overlay { userxattr: !root }`, and
    /// [`Store::flatten_into`](crate::Store::flatten_into) always applies. Use the same
    /// `userxattr` for a store's whole life: it is baked into the unpacked layers and
    /// must match how overlayfs is mounted.
    pub whiteouts: WhiteoutMode,
    /// Apply the owners recorded in the archive (`lchown`). An owner the kernel refuses
    /// (`EINVAL`: not mapped in our user namespace; `EPERM`: we are not privileged) is
    /// squashed to 0:0 (or left as the unpacking user) and counted in
    /// [`UnpackReport::chown_squashed`].
    pub chown: bool,
    /// Also keep each layer's compressed blob under `blobs/sha256/` (needed to push or
    /// save byte-identical layers later). Off by default: the unpacked directory is what
    /// containers use, and keeping both doubles disk use.
    pub keep_layer_blobs: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions { whiteouts: WhiteoutMode::Overlay { userxattr: false }, chown: true, keep_layer_blobs: false }
    }
}

impl UnpackOptions {
    /// Defaults for a rootless store: opaque directories use `user.overlay.opaque`.
    pub fn rootless() -> Self {
        UnpackOptions { whiteouts: WhiteoutMode::Overlay { userxattr: true }, ..Default::default() }
    }
}

/// What unpacking did besides the obvious, for the caller to surface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Entries applied.
    pub entries: u64,
    /// Bytes of regular file data written.
    pub bytes: u64,
    /// Entries whose owner could not be applied and was squashed.
    pub chown_squashed: u64,
    /// Device nodes not created because `mknod` was refused (rootless).
    pub devices_skipped: u64,
    /// Extended attributes not set (refused or unsupported, or `*.overlay.*` ones,
    /// which a layer must not smuggle in).
    pub xattrs_skipped: u64,
    /// Whiteouts and opaque markers handled.
    pub whiteouts: u64,
    /// Entries ignored: unsupported tar types, aufs `.wh..wh.*` metadata.
    pub entries_skipped: u64,
}

impl UnpackReport {
    /// Adds `other`'s counters to this report.
    pub fn merge(&mut self, other: &UnpackReport) {
        self.entries += other.entries;
        self.bytes += other.bytes;
        self.chown_squashed += other.chown_squashed;
        self.devices_skipped += other.devices_skipped;
        self.xattrs_skipped += other.xattrs_skipped;
        self.whiteouts += other.whiteouts;
        self.entries_skipped += other.entries_skipped;
    }

    /// Logs the lossy parts of an unpack as one warning.
    pub(crate) fn warn_if_lossy(&self, layer: &str) {
        if self.chown_squashed + self.devices_skipped + self.xattrs_skipped > 0 {
            tracing::warn!(
                layer,
                chown_squashed = self.chown_squashed,
                devices_skipped = self.devices_skipped,
                xattrs_skipped = self.xattrs_skipped,
                "layer unpacked with reduced fidelity (unmapped owners, device nodes or xattrs)"
            );
        }
    }
}

/// One entry to apply.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Normalised components relative to the target; empty for the root itself.
    pub path: Vec<OsString>,
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Dir,
    File {
        size: u64,
    },
    Symlink(OsString),
    Hardlink(Vec<OsString>),
    Char {
        major: u64,
        minor: u64,
    },
    Block {
        major: u64,
        minor: u64,
    },
    Fifo,
    /// `path` is deleted (the NAME of `.wh.NAME`).
    Whiteout,
    /// `path` is a directory that hides lower layers' contents.
    Opaque,
}

/// Splits an archive path into components. A leading `/` is stripped (as Docker does:
/// every name is relative to the layer root), `.` and empty components are dropped, and
/// `..` anywhere is refused.
pub(crate) fn normalize(raw: &[u8]) -> Result<Vec<OsString>, EntryError> {
    if raw.contains(&0) {
        return Err(EntryError::InvalidName);
    }
    let mut out = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(EntryError::Escapes),
            name => out.push(OsString::from_vec(name.to_vec())),
        }
    }
    if out.len() > MAX_DEPTH {
        return Err(EntryError::TooDeep(MAX_DEPTH));
    }
    Ok(out)
}

/// Components joined with `/`, as bytes (the key of the `created` set).
fn key(comps: &[OsString]) -> Vec<u8> {
    let mut k = Vec::new();
    for c in comps {
        if !k.is_empty() {
            k.push(b'/');
        }
        k.extend_from_slice(c.as_bytes());
    }
    k
}

pub(crate) fn path_string(comps: &[OsString]) -> String {
    String::from_utf8_lossy(&key(comps)).into_owned()
}

fn ts((secs, nsecs): (i64, i64)) -> TimeSpec {
    TimeSpec::new(secs, nsecs.clamp(0, 999_999_999))
}

fn is_overlay_xattr(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.starts_with(b"trusted.overlay.") || b.starts_with(b"user.overlay.")
}

fn perm(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode & 0o7777)
}

/// Writes entries below one target directory. See the module documentation.
pub(crate) struct Applier {
    root: OwnedFd,
    root_path: PathBuf,
    whiteouts: WhiteoutMode,
    chown: bool,
    layer: String,
    /// Paths created by the current layer (kept by opaque directories in Apply mode;
    /// never replaced when a later entry of the same layer needs them as a parent).
    created: HashSet<Vec<u8>>,
    /// Directory modes and mtimes, applied at the end (deepest first) so that a
    /// read-only directory can still receive its children and keeps its mtime.
    deferred: HashMap<Vec<OsString>, (u32, (i64, i64))>,
    report: UnpackReport,
}

impl Applier {
    pub(crate) fn new(target: &Path, whiteouts: WhiteoutMode, chown: bool, layer: String) -> Result<Applier> {
        let root = open_root(target).map_err(|e| Error::Io {
            context: format!("open target directory {}", target.display()),
            source: e.into(),
        })?;
        Ok(Applier {
            root,
            root_path: target.to_path_buf(),
            whiteouts,
            chown,
            layer,
            created: HashSet::new(),
            deferred: HashMap::new(),
            report: UnpackReport::default(),
        })
    }

    /// Starts the next layer (flattening applies several into one target).
    pub(crate) fn begin_layer(&mut self, layer: String) {
        self.layer = layer;
        self.created.clear();
    }

    pub(crate) fn layer(&self) -> &str {
        &self.layer
    }

    pub(crate) fn skipped(&mut self) {
        self.report.entries_skipped += 1;
    }

    pub(crate) fn err(&self, entry: impl Into<String>, kind: EntryError) -> Error {
        Error::Entry { layer: self.layer.clone(), entry: entry.into(), kind }
    }

    /// Applies one entry; `shown` names it in errors; `content` is read for files.
    pub(crate) fn apply(&mut self, n: &Node, shown: &str, content: &mut dyn Read) -> Result<()> {
        self.apply_inner(n, content).map_err(|kind| self.err(shown, kind))?;
        self.report.entries += 1;
        Ok(())
    }

    fn apply_inner(&mut self, n: &Node, content: &mut dyn Read) -> Result<(), EntryError> {
        if n.path.len() > MAX_DEPTH {
            return Err(EntryError::TooDeep(MAX_DEPTH));
        }
        match &n.kind {
            NodeKind::Whiteout => return self.whiteout(&n.path),
            NodeKind::Opaque => return self.opaque(&n.path),
            _ => {}
        }
        let Some((name, parents)) = n.path.split_last() else {
            return match n.kind {
                NodeKind::Dir => self.root_dir(n),
                _ => Err(EntryError::RootNotDir),
            };
        };
        let parent = self.walk(parents, true)?;
        let name = name.as_os_str();
        let made = match &n.kind {
            NodeKind::Dir => self.dir(&parent, name, n)?,
            NodeKind::File { size } => self.file(&parent, name, n, *size, content)?,
            NodeKind::Symlink(target) => self.symlink(&parent, name, n, target)?,
            NodeKind::Hardlink(target) => self.hardlink(&parent, name, &n.path, target)?,
            NodeKind::Char { .. } | NodeKind::Block { .. } | NodeKind::Fifo => self.special(&parent, name, n)?,
            NodeKind::Whiteout | NodeKind::Opaque => false,
        };
        if made {
            self.created.insert(key(&n.path));
        }
        Ok(())
    }

    /// Opens the directory `comps` below the root, one component at a time, never
    /// following a symlink. With `create`, missing directories are made (0755), and in
    /// Apply mode a non-directory left by an earlier layer is replaced by a directory
    /// (what overlayfs shows when an upper directory covers a lower file or symlink).
    fn walk(&mut self, comps: &[OsString], create: bool) -> Result<OwnedFd, EntryError> {
        let mut cur = self.root.try_clone().map_err(|e| EntryError::io("dup", e))?;
        let mut k: Vec<u8> = Vec::new();
        for c in comps {
            if !k.is_empty() {
                k.push(b'/');
            }
            k.extend_from_slice(c.as_bytes());
            let c = c.as_os_str();
            match open_dir_path(&cur, c) {
                Ok(fd) => {
                    cur = fd;
                    continue;
                }
                Err(Errno::ENOENT) if create => {}
                Err(Errno::ENOENT) => return Err(EntryError::ParentMissing(lossy(&k))),
                Err(Errno::ENOTDIR | Errno::ELOOP) => {
                    let st = lstat_at(&cur, c).map_err(|e| EntryError::io("lstat", e))?;
                    let replace = create && self.whiteouts == WhiteoutMode::Apply && !self.created.contains(&k);
                    match st {
                        None if create => {}
                        None => return Err(EntryError::ParentMissing(lossy(&k))),
                        Some(st) if !replace => {
                            return Err(if is_symlink(&st) {
                                EntryError::ParentSymlink(lossy(&k))
                            } else {
                                EntryError::ParentNotDir(lossy(&k))
                            })
                        }
                        Some(_) => remove_at(&cur, c).map_err(|e| EntryError::io("remove existing entry", e))?,
                    }
                }
                Err(e) => return Err(EntryError::io("open directory", e)),
            }
            mkdirat(&cur, c, Mode::from_bits_truncate(0o755)).map_err(|e| EntryError::io("mkdir", e))?;
            // Just created, so not a symlink; set the mode explicitly (umask).
            fchmodat(&cur, c, Mode::from_bits_truncate(0o755), FchmodatFlags::FollowSymlink)
                .map_err(|e| EntryError::io("chmod", e))?;
            self.created.insert(k.clone());
            cur = open_dir_path(&cur, c).map_err(|e| EntryError::io("open directory", e))?;
        }
        Ok(cur)
    }

    /// Makes room for a new entry `name`: removes what is there, except a directory when
    /// `keep_dir` (directories merge). Returns whether a directory was kept.
    fn clear(&self, parent: &OwnedFd, name: &OsStr, keep_dir: bool) -> Result<bool, EntryError> {
        match lstat_at(parent, name).map_err(|e| EntryError::io("lstat", e))? {
            None => Ok(false),
            Some(st) if keep_dir && is_dir(&st) => Ok(true),
            Some(_) => {
                remove_at(parent, name).map_err(|e| EntryError::io("remove existing entry", e))?;
                Ok(false)
            }
        }
    }

    fn root_dir(&mut self, n: &Node) -> Result<(), EntryError> {
        let root = self.root.try_clone().map_err(|e| EntryError::io("dup", e))?;
        let dot = OsStr::new(".");
        self.chown_with(n.uid, n.gid, |u, g| fchownat(&root, dot, Some(u), Some(g), AtFlags::AT_SYMLINK_NOFOLLOW))?;
        if !n.xattrs.is_empty() {
            let fd = openat(&root, dot, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| EntryError::io("open directory", e))?;
            self.xattrs_fd(&File::from(fd), &n.xattrs)?;
        }
        self.deferred.insert(Vec::new(), (n.mode, n.mtime));
        Ok(())
    }

    fn dir(&mut self, parent: &OwnedFd, name: &OsStr, n: &Node) -> Result<bool, EntryError> {
        if !self.clear(parent, name, true)? {
            mkdirat(parent, name, Mode::from_bits_truncate(0o700)).map_err(|e| EntryError::io("mkdir", e))?;
        }
        self.chown_with(n.uid, n.gid, |u, g| fchownat(parent, name, Some(u), Some(g), AtFlags::AT_SYMLINK_NOFOLLOW))?;
        if !n.xattrs.is_empty() {
            let fd = openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| EntryError::io("open directory", e))?;
            self.xattrs_fd(&File::from(fd), &n.xattrs)?;
        }
        self.deferred.insert(n.path.clone(), (n.mode, n.mtime));
        Ok(true)
    }

    fn file(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        n: &Node,
        size: u64,
        content: &mut dyn Read,
    ) -> Result<bool, EntryError> {
        self.clear(parent, name, false)?;
        let fd = openat(
            parent,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| EntryError::io("create file", e))?;
        let mut file = File::from(fd);
        let copied = copy_exact(content, &mut file, size)?;
        if copied != size {
            return Err(EntryError::Truncated { expected: size, actual: copied });
        }
        self.report.bytes += size;
        // Order matters: chown clears setuid bits and file capabilities, so the owner
        // goes first, then xattrs (security.capability), then the mode, then times.
        self.chown_with(n.uid, n.gid, |u, g| fchown(&file, Some(u), Some(g)))?;
        self.xattrs_fd(&file, &n.xattrs)?;
        fchmod(&file, perm(n.mode)).map_err(|e| EntryError::io("chmod", e))?;
        futimens(&file, &ts(n.mtime), &ts(n.mtime)).map_err(|e| EntryError::io("set times", e))?;
        Ok(true)
    }

    fn symlink(&mut self, parent: &OwnedFd, name: &OsStr, n: &Node, target: &OsStr) -> Result<bool, EntryError> {
        if target.is_empty() {
            return Err(EntryError::SymlinkWithoutTarget);
        }
        self.clear(parent, name, false)?;
        // The target is stored as-is and never resolved by us.
        symlinkat(target, parent, name).map_err(|e| EntryError::io("symlink", e))?;
        self.chown_with(n.uid, n.gid, |u, g| fchownat(parent, name, Some(u), Some(g), AtFlags::AT_SYMLINK_NOFOLLOW))?;
        self.xattrs_nofollow(&n.path, &n.xattrs)?;
        utimensat(parent, name, &ts(n.mtime), &ts(n.mtime), UtimensatFlags::NoFollowSymlink)
            .map_err(|e| EntryError::io("set times", e))?;
        Ok(true)
    }

    fn hardlink(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &[OsString],
        target: &[OsString],
    ) -> Result<bool, EntryError> {
        let shown = path_string(target);
        let Some((tname, tparents)) = target.split_last() else {
            return Err(EntryError::LinkToDir(shown));
        };
        if target == path {
            return Ok(false);
        }
        let tdir = match self.walk(tparents, false) {
            Ok(fd) => fd,
            Err(EntryError::ParentSymlink(parent)) => {
                return Err(EntryError::LinkThroughSymlink { target: shown, parent })
            }
            Err(EntryError::ParentMissing(_) | EntryError::ParentNotDir(_)) => {
                return Err(EntryError::LinkTargetMissing(shown))
            }
            Err(e) => return Err(e),
        };
        match lstat_at(&tdir, tname).map_err(|e| EntryError::io("lstat", e))? {
            None => return Err(EntryError::LinkTargetMissing(shown)),
            Some(st) if is_dir(&st) => return Err(EntryError::LinkToDir(shown)),
            Some(_) => {}
        }
        self.clear(parent, name, false)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        match linkat(&tdir, tname.as_os_str(), parent, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Err(EntryError::LinkTargetMissing(shown)),
            Err(e) => Err(EntryError::io("link", e)),
        }
    }

    fn special(&mut self, parent: &OwnedFd, name: &OsStr, n: &Node) -> Result<bool, EntryError> {
        let (kind, dev) = match n.kind {
            NodeKind::Char { major, minor } => (SFlag::S_IFCHR, makedev(major, minor)),
            NodeKind::Block { major, minor } => (SFlag::S_IFBLK, makedev(major, minor)),
            _ => (SFlag::S_IFIFO, 0),
        };
        self.clear(parent, name, false)?;
        match mknodat(parent, name, kind, perm(n.mode & 0o777), dev) {
            Ok(()) => {}
            Err(Errno::EPERM | Errno::EACCES) if kind != SFlag::S_IFIFO => {
                self.report.devices_skipped += 1;
                tracing::debug!(layer = %self.layer, entry = %path_string(&n.path), "mknod refused; device node skipped");
                return Ok(false);
            }
            Err(e) => return Err(EntryError::io("mknod", e)),
        }
        self.chown_with(n.uid, n.gid, |u, g| fchownat(parent, name, Some(u), Some(g), AtFlags::AT_SYMLINK_NOFOLLOW))?;
        self.xattrs_nofollow(&n.path, &n.xattrs)?;
        // Just created by mknod, so not a symlink.
        fchmodat(parent, name, perm(n.mode), FchmodatFlags::FollowSymlink).map_err(|e| EntryError::io("chmod", e))?;
        utimensat(parent, name, &ts(n.mtime), &ts(n.mtime), UtimensatFlags::NoFollowSymlink)
            .map_err(|e| EntryError::io("set times", e))?;
        Ok(true)
    }

    fn whiteout(&mut self, path: &[OsString]) -> Result<(), EntryError> {
        let Some((name, parents)) = path.split_last() else {
            return Err(EntryError::InvalidWhiteout);
        };
        let parent = self.walk(parents, true)?;
        match self.whiteouts {
            WhiteoutMode::Overlay { .. } => {
                self.clear(&parent, name, false)?;
                mknodat(&parent, name.as_os_str(), SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(|e| EntryError::io("create whiteout (character device 0/0)", e))?;
                self.created.insert(key(path));
            }
            WhiteoutMode::Apply => {
                remove_at(&parent, name).map_err(|e| EntryError::io("remove whited-out entry", e))?;
            }
        }
        self.report.whiteouts += 1;
        Ok(())
    }

    fn opaque(&mut self, dir: &[OsString]) -> Result<(), EntryError> {
        let fd = self.walk(dir, true)?;
        match self.whiteouts {
            WhiteoutMode::Overlay { userxattr } => {
                let file = openat(&fd, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                    .map(File::from)
                    .map_err(|e| EntryError::io("open directory", e))?;
                let (xattr, op) = if userxattr {
                    (OPAQUE_USER, "set user.overlay.opaque")
                } else {
                    (OPAQUE_TRUSTED, "set trusted.overlay.opaque")
                };
                file.set_xattr(xattr, b"y").map_err(|e| EntryError::io(op, e))?;
            }
            WhiteoutMode::Apply => {
                let prefix = key(dir);
                for child in list_dir(&fd).map_err(|e| EntryError::io("list directory", e))? {
                    let mut k = prefix.clone();
                    if !k.is_empty() {
                        k.push(b'/');
                    }
                    k.extend_from_slice(&child);
                    if !self.created.contains(&k) {
                        remove_at(&fd, OsStr::from_bytes(&child))
                            .map_err(|e| EntryError::io("remove entry hidden by opaque directory", e))?;
                    }
                }
            }
        }
        self.created.insert(key(dir));
        self.report.whiteouts += 1;
        Ok(())
    }

    /// Runs `chown(uid, gid)`; an id the kernel refuses is squashed to 0:0 and counted.
    fn chown_with(&mut self, uid: u64, gid: u64, f: impl Fn(Uid, Gid) -> nix::Result<()>) -> Result<(), EntryError> {
        if !self.chown {
            return Ok(());
        }
        let ids = match (u32::try_from(uid), u32::try_from(gid)) {
            (Ok(u), Ok(g)) if u != u32::MAX && g != u32::MAX => Some((u, g)),
            _ => None,
        };
        if let Some((u, g)) = ids {
            match f(Uid::from_raw(u), Gid::from_raw(g)) {
                Ok(()) => return Ok(()),
                // EINVAL: the id is not mapped in our user namespace.
                // EPERM: we may not give files away (not root in any namespace).
                Err(Errno::EINVAL | Errno::EPERM) => {}
                Err(e) => return Err(EntryError::io("chown", e)),
            }
        }
        self.report.chown_squashed += 1;
        if ids != Some((0, 0)) {
            match f(Uid::from_raw(0), Gid::from_raw(0)) {
                Ok(()) | Err(Errno::EINVAL | Errno::EPERM) => {}
                Err(e) => return Err(EntryError::io("chown", e)),
            }
        }
        Ok(())
    }

    fn xattr_result(&mut self, name: &OsStr, r: io::Result<()>) -> Result<(), EntryError> {
        match r {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP | libc::EACCES)) => {
                self.report.xattrs_skipped += 1;
                tracing::debug!(layer = %self.layer, xattr = %name.to_string_lossy(), error = %e, "xattr skipped");
                Ok(())
            }
            Err(e) => Err(EntryError::io("set xattr", e)),
        }
    }

    fn xattrs_fd(&mut self, file: &File, xattrs: &[(OsString, Vec<u8>)]) -> Result<(), EntryError> {
        for (name, value) in xattrs {
            if is_overlay_xattr(name) {
                self.report.xattrs_skipped += 1;
                continue;
            }
            let r = file.set_xattr(name, value);
            self.xattr_result(name, r)?;
        }
        Ok(())
    }

    /// xattrs on a symlink or device node (`lsetxattr` by path: the parents were just
    /// checked by [`Self::walk`] and the name is not followed).
    fn xattrs_nofollow(&mut self, path: &[OsString], xattrs: &[(OsString, Vec<u8>)]) -> Result<(), EntryError> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let mut full = self.root_path.clone();
        full.extend(path);
        for (name, value) in xattrs {
            if is_overlay_xattr(name) {
                self.report.xattrs_skipped += 1;
                continue;
            }
            let r = xattr::set(&full, name, value);
            self.xattr_result(name, r)?;
        }
        Ok(())
    }

    /// Applies the deferred directory modes and mtimes, deepest first, and returns the
    /// report.
    pub(crate) fn finish(mut self) -> Result<UnpackReport> {
        let mut dirs: Vec<_> = self.deferred.drain().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0.len()));
        for (path, (mode, mtime)) in dirs {
            self.finish_dir(&path, mode, mtime).map_err(|kind| self.err(path_string(&path), kind))?;
        }
        Ok(self.report)
    }

    fn finish_dir(&mut self, path: &[OsString], mode: u32, mtime: (i64, i64)) -> Result<(), EntryError> {
        let (dir, name) = match path.split_last() {
            None => (self.root.try_clone().map_err(|e| EntryError::io("dup", e))?, OsStr::new(".")),
            Some((name, parents)) => match self.walk(parents, false) {
                Ok(fd) => (fd, name.as_os_str()),
                // Replaced or removed by a later entry: nothing to do.
                Err(EntryError::ParentMissing(_) | EntryError::ParentNotDir(_) | EntryError::ParentSymlink(_)) => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            },
        };
        match lstat_at(&dir, name).map_err(|e| EntryError::io("lstat", e))? {
            Some(st) if is_dir(&st) => {}
            _ => return Ok(()),
        }
        // `name` is a directory (just checked), so following is moot.
        fchmodat(&dir, name, perm(mode), FchmodatFlags::FollowSymlink).map_err(|e| EntryError::io("chmod", e))?;
        utimensat(&dir, name, &ts(mtime), &ts(mtime), UtimensatFlags::NoFollowSymlink)
            .map_err(|e| EntryError::io("set times", e))?;
        Ok(())
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Copies up to `size` bytes, telling read errors (the archive) from write errors.
fn copy_exact(from: &mut dyn Read, to: &mut File, size: u64) -> Result<u64, EntryError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < size {
        let want = usize::try_from(size - done).unwrap_or(usize::MAX).min(buf.len());
        let n = match from.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EntryError::io("read file data", e)),
        };
        to.write_all(&buf[..n]).map_err(|e| EntryError::io("write file data", e))?;
        done += n as u64;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        let n = |s: &str| normalize(s.as_bytes()).map(|v| path_string(&v));
        assert_eq!(n("./a/b/").unwrap(), "a/b");
        assert_eq!(n("/etc/x").unwrap(), "etc/x");
        assert_eq!(n("a//./b").unwrap(), "a/b");
        assert_eq!(n("./").unwrap(), "");
        assert!(matches!(n("../x"), Err(EntryError::Escapes)));
        assert!(matches!(n("a/../../x"), Err(EntryError::Escapes)));
        assert!(matches!(n("a/.."), Err(EntryError::Escapes)));
        assert!(matches!(normalize(b"a\0b"), Err(EntryError::InvalidName)));
        let deep = "d/".repeat(MAX_DEPTH + 1);
        assert!(matches!(n(&deep), Err(EntryError::TooDeep(_))));
    }
}
