//! Reading a file of an image from the host side, as the container would see it, without ever
//! leaving the image.
//!
//! An image is a stack of layer directories (overlayfs lowerdirs, as [`crate::apply`] writes
//! them: whiteouts are 0/0 character devices, opaque directories carry `user.overlay.opaque`
//! or `trusted.overlay.opaque`). A path in it must be looked up through the *merged* layers —
//! a symlink in an upper layer may point at a file that a lower layer provides — so resolving
//! in one layer (even with `RESOLVE_IN_ROOT`) is not enough, and joining strings onto a layer
//! path lets the kernel follow a layer's symlinks on the host (`x -> /`, then `x/etc/shadow`).
//!
//! [`ImageFs`] is a small userspace overlay lookup: it walks component by component with
//! `openat(O_PATH|O_NOFOLLOW)` relative to directory descriptors of each layer, honours
//! whiteouts and opaque directories, splices symlink targets into the remaining components
//! (an absolute target restarts at the image's root, `..` never climbs above it), stops after
//! [`MAX_SYMLINK_HOPS`] symlinks with an error (never recursion), and opens the final file
//! with `O_NOFOLLOW`, requiring a regular file no larger than the caller's limit.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode};

use crate::error::{Error, Result};
use crate::fsutil::{open_dir_path, open_root};
use cove_sys::path_components as components;

/// Symlinks followed in one lookup before it fails (Linux's own limit is 40).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// Components a lookup may visit in all (symlink targets included) before it fails.
const MAX_COMPONENTS: usize = 16 * 1024;

const OPAQUE_XATTRS: [&str; 2] = ["user.overlay.opaque", "trusted.overlay.opaque"];

/// The merged view of an image's layer directories (top-most first), for reading files.
#[derive(Debug)]
pub struct ImageFs {
    layers: Vec<OwnedFd>,
}

/// What a name is in the merged view of a directory.
enum Entry {
    Missing,
    /// A directory: the descriptors of every layer that contributes to it, top-most first.
    Dir(Vec<OwnedFd>),
    Symlink(OsString),
    /// A regular file: the directory (of the layer that provides it) holding it.
    File(OwnedFd),
    /// A device node, fifo or socket.
    Special,
}

impl ImageFs {
    /// Opens the layer directories, given top-most first. The paths are the store's own
    /// (trusted); everything below them is the image's.
    pub fn open(layers_top_first: &[PathBuf]) -> Result<ImageFs> {
        let mut layers = Vec::with_capacity(layers_top_first.len());
        for p in layers_top_first {
            let fd = open_root(p)
                .map_err(|e| Error::Io { context: format!("open layer {}", p.display()), source: e.into() })?;
            layers.push(fd);
        }
        Ok(ImageFs { layers })
    }

    /// Reads the regular file at `path` (absolute or relative to the image root) as the
    /// container would see it. `Ok(None)`: there is no such file (missing, whited out, or a
    /// non-directory in a parent position). Errors: a symlink loop or chain longer than
    /// [`MAX_SYMLINK_HOPS`], a directory or special file, a file larger than `limit` bytes.
    pub fn read(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let fail = |reason: String| Error::ImagePath { path: path.to_string(), reason };
        let io = |op: &str, e: Errno| Error::ImagePath {
            path: path.to_string(),
            reason: format!("{op}: {}", std::io::Error::from(e)),
        };
        let mut pending: Vec<OsString> = components(OsStr::new(path));
        pending.reverse();
        // The directories resolved so far (each a directory in the merged view, no symlinks).
        let mut resolved: Vec<OsString> = Vec::new();
        let mut cur = self.root().map_err(|e| io("open layer", e))?;
        let (mut hops, mut visited) = (0usize, 0usize);
        while let Some(c) = pending.pop() {
            visited += 1;
            if visited > MAX_COMPONENTS {
                return Err(fail("path too long".into()));
            }
            if c == ".." {
                if resolved.pop().is_some() {
                    cur = self
                        .dir_at(&resolved)
                        .map_err(|e| io("lookup", e))?
                        .ok_or_else(|| fail("a parent directory changed during the lookup".into()))?;
                }
                continue;
            }
            match lookup(&cur, &c).map_err(|e| io("lookup", e))? {
                Entry::Missing => return Ok(None),
                Entry::Dir(fds) => {
                    resolved.push(c);
                    cur = fds;
                }
                Entry::Symlink(target) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(fail("too many levels of symbolic links".into()));
                    }
                    if target.as_bytes().first() == Some(&b'/') {
                        resolved.clear();
                        cur = self.root().map_err(|e| io("open layer", e))?;
                    }
                    let mut t = components(&target);
                    t.reverse();
                    pending.extend(t);
                }
                Entry::File(dir) if pending.is_empty() => return read_file(&dir, &c, limit).map(Some).map_err(fail),
                // A file where a directory is needed: nothing there (ENOTDIR).
                Entry::File(_) => return Ok(None),
                Entry::Special if pending.is_empty() => return Err(fail("not a regular file".into())),
                Entry::Special => return Ok(None),
            }
        }
        Err(fail("is a directory".into()))
    }

    /// Every layer's root (an image's root is never opaque to overlayfs).
    fn root(&self) -> nix::Result<Vec<OwnedFd>> {
        self.layers
            .iter()
            .map(|l| l.try_clone().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF))))
            .collect()
    }

    /// The merged directory at `comps` (all directories, as found before); `None` if it no
    /// longer is one.
    fn dir_at(&self, comps: &[OsString]) -> nix::Result<Option<Vec<OwnedFd>>> {
        let mut cur = self.root()?;
        for c in comps {
            match lookup(&cur, c)? {
                Entry::Dir(fds) => cur = fds,
                _ => return Ok(None),
            }
        }
        Ok(Some(cur))
    }
}

/// Looks `name` up in the merged directory made of `dir` (one descriptor per contributing
/// layer, top-most first), as overlayfs does.
fn lookup(dir: &[OwnedFd], name: &OsStr) -> nix::Result<Entry> {
    let mut dirs = Vec::new();
    for layer in dir {
        let st = match fstatat(layer, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => {
                // An aufs-style whiteout (not written by our unpacker, honoured anyway).
                let mut wh = OsString::from(".wh.");
                wh.push(name);
                if fstatat(layer, wh.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFDIR {
            let sub = open_dir_path(layer, name)?;
            let opaque = is_opaque(&sub);
            dirs.push(sub);
            if opaque {
                break;
            }
            continue;
        }
        if !dirs.is_empty() {
            // A directory above hides whatever non-directory is below it.
            break;
        }
        return Ok(match fmt {
            libc::S_IFCHR if st.st_rdev == 0 => Entry::Missing, // overlay whiteout
            libc::S_IFLNK => Entry::Symlink(readlinkat(layer, name)?),
            libc::S_IFREG => {
                Entry::File(layer.try_clone().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)))?)
            }
            _ => Entry::Special,
        });
    }
    Ok(if dirs.is_empty() { Entry::Missing } else { Entry::Dir(dirs) })
}

/// Whether a layer's directory hides the layers below it (overlay opaque xattr, or an
/// aufs-style `.wh..wh..opq` marker).
fn is_opaque(dir: &OwnedFd) -> bool {
    if fstatat(dir, ".wh..wh..opq", nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
        return true;
    }
    let yes = |v: std::io::Result<Option<Vec<u8>>>| matches!(v, Ok(Some(v)) if v == b"y");
    // xattrs cannot be read through an O_PATH descriptor: reopen the directory itself, or
    // (when it may not be read) go through its /proc/self/fd link.
    match openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => {
            use xattr::FileExt;
            let f = File::from(fd);
            OPAQUE_XATTRS.iter().any(|n| yes(f.get_xattr(n)))
        }
        Err(_) => {
            let p = format!("/proc/self/fd/{}", dir.as_raw_fd());
            OPAQUE_XATTRS.iter().any(|n| yes(xattr::get_deref(&p, n)))
        }
    }
}

/// Opens `name` in `dir` without following it and reads it, if it is a regular file of at
/// most `limit` bytes.
fn read_file(dir: &OwnedFd, name: &OsStr, limit: u64) -> std::result::Result<Vec<u8>, String> {
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open: {}", std::io::Error::from(e)))?;
    let st = fstat(&fd).map_err(|e| format!("stat: {}", std::io::Error::from(e)))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err("not a regular file".into());
    }
    if st.st_size as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    let mut buf = Vec::with_capacity(st.st_size as usize);
    File::from(fd).take(limit + 1).read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    if buf.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    Ok(buf)
}
