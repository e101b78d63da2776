//! Resolving and creating paths inside a root filesystem by file descriptor, never leaving it.
//!
//! A container's root is not only its image: the upper directory holds whatever the container
//! wrote, so on a restart the container itself controls the symlinks there. Every path the
//! runtime touches below the root before `pivot_root` (mount targets, device nodes, the working
//! directory) is therefore opened as a descriptor *inside* the root — `openat2` with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, or on kernels without it (and to create what is
//! missing) a walk one component at a time with `openat(O_PATH|O_NOFOLLOW)`, symlink targets
//! spliced in relative to the root and `..` never above it — and then used through that
//! descriptor (`/proc/self/fd/N`), never through a path string the kernel would resolve again
//! (the runc CVE-2021-30465 class).

use crate::{Error, Result};
use cove_sys::path_components as components;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode};
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Symlinks followed in one resolution before it fails with ELOOP (as the kernel's limit).
pub const MAX_SYMLINK_HOPS: usize = 40;
/// Directories deep a walk may go.
const MAX_DEPTH: usize = 255;
/// Components a walk may visit in all (symlink targets and retries included).
const MAX_STEPS: usize = 16 * 1024;

/// What to create when the last component of a path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Nothing,
    Dir,
    File,
}

/// A directory that paths are resolved inside (the container's root, or its /dev).
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    /// Where the root is in our mount namespace (the kernel's name for `fd`).
    path: PathBuf,
}

/// `/proc/self/fd/N`: how a mount or a path-only call reaches what a descriptor points at.
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn sys(what: impl FnOnce() -> String) -> impl FnOnce(Errno) -> Error {
    move |source| Error::Sys { what: what(), source }
}

impl Root {
    /// Opens `path` (a path of cove's own, trusted) as a root.
    pub fn open(path: &Path) -> Result<Root> {
        let fd =
            openat(nix::fcntl::AT_FDCWD, path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(sys(|| format!("open {}", path.display())))?;
        Root::from_fd(fd)
    }

    /// A root at a directory descriptor (one obtained from another root, for example).
    pub fn from_fd(fd: OwnedFd) -> Result<Root> {
        let path = std::fs::read_link(fd_path(fd.as_fd()))
            .map_err(|e| Error::Io { what: "read the root's path from /proc/self/fd".into(), source: e })?;
        Ok(Root { fd, path })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An `O_PATH` descriptor of what `p` names inside the root (every symlink, the last one
    /// too, resolved inside it; magic links refused); `None` when it does not exist.
    pub fn resolve(&self, p: &Path) -> Result<Option<OwnedFd>> {
        match openat2_in_root(self.fd(), p) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::ENOENT) => Ok(None),
            // No openat2 (kernel before 5.6, or a seccomp filter that refuses it).
            Err(Errno::ENOSYS | Errno::EPERM) => Ok(self.walk(p, Create::Nothing)?.map(|(fd, _)| fd)),
            Err(e) => Err(Error::Sys { what: format!("resolve {} in the container", p.display()), source: e }),
        }
    }

    /// [`Root::resolve`], creating what is missing: parent directories, and the last
    /// component as `create` says. Returns the descriptor and whether the last component was
    /// created.
    pub fn ensure(&self, p: &Path, create: Create) -> Result<(OwnedFd, bool)> {
        if let Some(fd) = self.resolve(p)? {
            return Ok((fd, false));
        }
        self.walk(p, create)?.ok_or_else(|| Error::Sys {
            what: format!("resolve {} in the container", p.display()),
            source: Errno::ENOENT,
        })
    }

    /// Where `fd` is, relative to the root; an error if it is not below the root (it then
    /// was not obtained from this root, or something moved it out).
    pub fn relative(&self, fd: BorrowedFd<'_>) -> Result<PathBuf> {
        let p = std::fs::read_link(fd_path(fd))
            .map_err(|e| Error::Io { what: "read a descriptor's path from /proc/self/fd".into(), source: e })?;
        match p.strip_prefix(&self.path) {
            Ok(rel) => Ok(rel.to_path_buf()),
            Err(_) => {
                Err(Error::Spec(format!("{} is outside the container's root {}", p.display(), self.path.display())))
            }
        }
    }

    /// The descriptor walk: one component at a time with `O_PATH|O_NOFOLLOW` relative to
    /// the directory reached so far; symlinks are read and their targets spliced in (absolute
    /// ones restart at the root); `..` pops back to the parent already opened, never above
    /// the root. Missing components are created as `create` says (directories in parent
    /// positions). `None`: missing and `Create::Nothing`.
    pub(crate) fn walk(&self, p: &Path, create: Create) -> Result<Option<(OwnedFd, bool)>> {
        let fail = |e: Errno| Error::Sys { what: format!("resolve {} in the container", p.display()), source: e };
        let mut pending = components(p.as_os_str());
        pending.reverse();
        let mut stack: Vec<OwnedFd> = Vec::new();
        let (mut hops, mut steps, mut created) = (0usize, 0usize, false);
        while let Some(c) = pending.pop() {
            steps += 1;
            if steps > MAX_STEPS {
                return Err(fail(Errno::ENAMETOOLONG));
            }
            if c == ".." {
                stack.pop();
                continue;
            }
            let last = pending.is_empty();
            let cur = stack.last().map(|f| f.as_fd()).unwrap_or(self.fd.as_fd());
            match openat(cur, c.as_os_str(), OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
                Ok(fd) => {
                    let st = fstat(&fd).map_err(fail)?;
                    match st.st_mode & libc::S_IFMT {
                        libc::S_IFLNK => {
                            hops += 1;
                            if hops > MAX_SYMLINK_HOPS {
                                return Err(fail(Errno::ELOOP));
                            }
                            let target = readlinkat(cur, c.as_os_str()).map_err(fail)?;
                            if target.as_bytes().first() == Some(&b'/') {
                                stack.clear();
                            }
                            let mut t = components(&target);
                            t.reverse();
                            pending.extend(t);
                        }
                        libc::S_IFDIR => {
                            if stack.len() >= MAX_DEPTH {
                                return Err(fail(Errno::ENAMETOOLONG));
                            }
                            stack.push(fd);
                        }
                        _ if last => return Ok(Some((fd, created))),
                        _ => return Err(fail(Errno::ENOTDIR)),
                    }
                }
                Err(Errno::ENOENT) if create != Create::Nothing => {
                    let made = if last && create == Create::File {
                        openat(
                            cur,
                            c.as_os_str(),
                            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                            Mode::from_bits_truncate(0o644),
                        )
                        .map(drop)
                    } else {
                        mkdirat(cur, c.as_os_str(), Mode::from_bits_truncate(0o755))
                    };
                    match made {
                        Ok(()) => created |= last,
                        Err(Errno::EEXIST) => {}
                        Err(e) => return Err(fail(e)),
                    }
                    // Opened (and checked) like any other component on the next round.
                    pending.push(c);
                }
                Err(Errno::ENOENT) => return Ok(None),
                Err(e) => return Err(fail(e)),
            }
        }
        let fd = match stack.pop() {
            Some(fd) => fd,
            None => self.fd.try_clone().map_err(|e| Error::Io { what: "dup the root".into(), source: e })?,
        };
        Ok(Some((fd, created)))
    }
}

/// `openat2(root, p, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, retried on EAGAIN
/// (a rename raced with `..`).
fn openat2_in_root(root: BorrowedFd<'_>, p: &Path) -> nix::Result<OwnedFd> {
    use nix::fcntl::{OpenHow, ResolveFlag};
    let rel = components(p.as_os_str());
    let rel: PathBuf = if rel.is_empty() { PathBuf::from(".") } else { rel.iter().collect() };
    let mut tries = 0;
    loop {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match nix::fcntl::openat2(root, rel.as_path(), how) {
            Err(Errno::EAGAIN) if tries < 16 => tries += 1,
            r => return r,
        }
    }
}

/// `p` as components joined by `/`, without `.`, empty components or a leading `/` (`..`
/// resolved lexically, never above the root): the path a destination names when nothing
/// in it is a symlink.
pub fn lexical(p: &Path) -> PathBuf {
    let mut out: Vec<OsString> = vec![];
    for c in components(p.as_os_str()) {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct T {
        _d: tempfile::TempDir,
        base: PathBuf,
        root: Root,
    }

    /// `base/root` with hostile symlinks, and `base/outside/secret` next to it.
    fn setup() -> T {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        let r = base.join("root");
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/secret"), "x").unwrap();
        std::fs::write(r.join("a/b/file"), "in").unwrap();
        symlink("/", r.join("abs")).unwrap();
        symlink("/a", r.join("toa")).unwrap();
        symlink("../../../../..", r.join("a/up")).unwrap();
        symlink("b", r.join("a/rel")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        symlink(".", r.join("self")).unwrap();
        symlink("/proc/self/environ", r.join("environ")).unwrap();
        symlink(base.join("outside"), r.join("hostdir")).unwrap();
        let root = Root::open(&r).unwrap();
        T { _d: d, base, root }
    }

    fn rel(t: &T, fd: Option<OwnedFd>) -> Option<String> {
        fd.map(|fd| t.root.relative(fd.as_fd()).unwrap().display().to_string())
    }

    /// Both resolvers agree.
    fn resolve(t: &T, p: &str) -> Result<Option<String>> {
        let a = t.root.resolve(Path::new(p)).map(|f| rel(t, f));
        let b = t.root.walk(Path::new(p), Create::Nothing).map(|f| rel(t, f.map(|x| x.0)));
        assert_eq!(format!("{a:?}").contains("Err"), format!("{b:?}").contains("Err"), "{p}: {a:?} vs {b:?}");
        if let (Ok(a), Ok(b)) = (&a, &b) {
            assert_eq!(a, b, "{p}");
        }
        a
    }

    #[test]
    fn symlinks_and_dotdot_stay_inside() {
        let t = setup();
        assert_eq!(resolve(&t, "/a/b/file").unwrap().as_deref(), Some("a/b/file"));
        assert_eq!(resolve(&t, "/abs/a/b").unwrap().as_deref(), Some("a/b"));
        assert_eq!(resolve(&t, "a/up/a/rel/file").unwrap().as_deref(), Some("a/b/file"));
        assert_eq!(resolve(&t, "/toa/rel/../b/file").unwrap().as_deref(), Some("a/b/file"));
        assert_eq!(resolve(&t, "../../a").unwrap().as_deref(), Some("a"));
        assert_eq!(resolve(&t, "/").unwrap().as_deref(), Some(""));
        assert_eq!(
            resolve(&t, "/hostdir/secret").unwrap(),
            None,
            "an absolute link to the host's dir is a path of the root"
        );
        assert_eq!(resolve(&t, "/environ").unwrap(), None);
        assert!(resolve(&t, "/loop/x").is_err());
        assert!(resolve(&t, &format!("/{}a", "self/".repeat(41))).is_err(), "hop limit");
        assert_eq!(resolve(&t, &format!("/{}a", "self/".repeat(39))).unwrap().as_deref(), Some("a"));
        assert!(resolve(&t, "/a/b/file/x").is_err(), "ENOTDIR");
    }

    #[test]
    fn creation_stays_inside() {
        let t = setup();
        let (fd, made) = t.root.ensure(Path::new("/abs/hostdir/new/dir"), Create::Dir).unwrap();
        assert!(made);
        let inside = t.base.join("outside").strip_prefix("/").unwrap().to_path_buf();
        assert_eq!(
            t.root.relative(fd.as_fd()).unwrap(),
            inside.join("new/dir"),
            "created below where /hostdir leads inside the root"
        );
        assert!(!t.base.join("outside/new").exists());
        let (fd, made) = t.root.ensure(Path::new("/a/up/etc/hosts"), Create::File).unwrap();
        assert!(made);
        assert_eq!(t.root.relative(fd.as_fd()).unwrap(), Path::new("etc/hosts"));
        assert!(t.base.join("root/etc/hosts").is_file());
        let (_, made) = t.root.ensure(Path::new("/etc/hosts"), Create::File).unwrap();
        assert!(!made, "exists now");
        // Walk (the fallback) creates the same way.
        let (fd, made) = t.root.walk(Path::new("/hostdir/w/x"), Create::File).unwrap().unwrap();
        assert!(made);
        assert_eq!(t.root.relative(fd.as_fd()).unwrap(), t.base.join("outside").strip_prefix("/").unwrap().join("w/x"));
        assert!(!t.base.join("outside/w").exists());
        assert!(t.root.ensure(Path::new("/loop/x"), Create::Dir).is_err());
        // The escape that string-level resolution allowed: enough links that it gave up
        // and handed back a path through real symlinks (self/ x 256, then abs/).
        let deep = format!("/{}abs{}/escaped", "self/".repeat(256), t.base.join("outside").display());
        assert!(t.root.ensure(Path::new(&deep), Create::Dir).is_err());
        assert!(!t.base.join("outside/escaped").exists());
    }

    #[test]
    fn relative_refuses_descriptors_outside() {
        let t = setup();
        let outside = Root::open(&t.base.join("outside")).unwrap();
        assert!(t.root.relative(outside.fd()).is_err());
        assert_eq!(lexical(Path::new("/a/../../b/./c/")), Path::new("b/c"));
    }
}
