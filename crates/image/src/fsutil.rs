//! Small file system helpers over directory file descriptors: opening a directory
//! without following symlinks, removing a tree without following symlinks, sizing a
//! tree, and a temporary tree that removes itself.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmodat, fstatat, FchmodatFlags, FileStat, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// `O_PATH` handle on the directory `name` under `dir`; fails with `ELOOP`/`ENOTDIR`
/// when `name` is a symlink or not a directory.
pub(crate) fn open_dir_path<Fd: AsFd>(dir: Fd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(dir, name, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

/// `O_PATH` handle on a directory given by path (symlinks in `path` are followed: this
/// is for paths the caller owns, like the store root or a target directory).
pub(crate) fn open_root(path: &Path) -> nix::Result<OwnedFd> {
    openat(AT_FDCWD, path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
}

/// `lstat` relative to `dir`; `None` when the name does not exist.
pub(crate) fn lstat_at<Fd: AsFd>(dir: Fd, name: &OsStr) -> nix::Result<Option<FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub(crate) fn is_symlink(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// Names in the directory `dir` (without `.` and `..`).
pub(crate) fn list_dir<Fd: AsFd>(dir: Fd) -> nix::Result<Vec<Vec<u8>>> {
    let mut d = Dir::openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Removes `name` under `dir`, recursively, never following a symlink. Directories we
/// own but cannot write or search (mode 0555, 0000, ...) are made accessible first, so a
/// layer unpacked by an unprivileged user can always be removed by that user.
/// A missing `name` is not an error.
pub(crate) fn remove_at<Fd: AsFd>(dir: Fd, name: &OsStr) -> io::Result<()> {
    let dir = dir.as_fd();
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if !is_dir(&st) {
        return match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    if st.st_mode & 0o700 != 0o700 {
        // `name` was just seen to be a directory, not a symlink, so following is moot.
        let mode = Mode::from_bits_truncate((st.st_mode & 0o7777) | 0o700);
        let _ = fchmodat(dir, name, mode, FchmodatFlags::FollowSymlink);
    }
    let sub = open_dir_path(dir, name)?;
    for child in list_dir(&sub)? {
        remove_at(&sub, OsStr::from_bytes(&child))?;
    }
    drop(sub);
    match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the tree at `path` (see [`remove_at`]); a missing path is not an error.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("refusing to remove {}", path.display())));
    };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let dir = match open_root(parent) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    remove_at(&dir, name)
}

/// Bytes of regular files under `path`, each inode counted once.
pub(crate) fn tree_size(path: &Path) -> io::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.path().symlink_metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() && (meta.nlink() == 1 || seen.insert((meta.dev(), meta.ino()))) {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// A directory under the store's `tmp/` that is removed on drop unless kept.
pub(crate) struct TmpTree {
    path: Option<PathBuf>,
}

impl TmpTree {
    pub(crate) fn new(parent: &Path, prefix: &str) -> io::Result<TmpTree> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
        Ok(TmpTree { path: Some(dir.keep()) })
    }

    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Stops the guard; the caller now owns the directory (it was renamed away).
    pub(crate) fn keep(mut self) -> PathBuf {
        self.path.take().unwrap_or_default()
    }
}

impl Drop for TmpTree {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if let Err(e) = remove_tree(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove temporary directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn remove_tree_does_not_follow_symlinks_and_handles_readonly_dirs() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), b"x").unwrap();
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("tree");
        fs::create_dir_all(root.join("ro/sub")).unwrap();
        fs::write(root.join("ro/sub/f"), b"data").unwrap();
        symlink(outside.path(), root.join("ro/link")).unwrap();
        fs::set_permissions(root.join("ro/sub"), fs::Permissions::from_mode(0o000)).unwrap();
        fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert!(outside.path().join("keep").exists());
        remove_tree(&root).unwrap(); // missing is fine
    }

    #[test]
    fn tree_size_counts_hardlinks_once() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("d/a"), vec![1u8; 100]).unwrap();
        fs::hard_link(t.path().join("d/a"), t.path().join("b")).unwrap();
        fs::write(t.path().join("c"), vec![1u8; 10]).unwrap();
        assert_eq!(tree_size(t.path()).unwrap(), 110);
    }
}
