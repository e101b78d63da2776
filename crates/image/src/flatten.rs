//! Reading an unpacked layer directory back as [`Node`]s, to flatten layers into one
//! directory when overlayfs is not available.
//!
//! The layer directories are ours (written by the [`Applier`] in overlay mode), so
//! their whiteouts are 0/0 character devices and their opaque directories carry
//! `user.overlay.opaque` or `trusted.overlay.opaque`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{major, minor};
use nix::unistd::geteuid;

use crate::apply::{path_string, Applier, Node, NodeKind};
use crate::error::{Error, Result};

/// Applies the layer directory `src` to the applier's target.
pub(crate) fn apply_dir(src: &Path, applier: &mut Applier) -> Result<()> {
    let mut links = HashMap::new();
    let mut rel = Vec::new();
    walk(src, &mut rel, applier, &mut links)
}

fn io_ctx(path: &Path, what: &str) -> impl FnOnce(io::Error) -> Error {
    let context = format!("{what} {}", path.display());
    move |source| Error::Io { context, source }
}

fn walk(
    dir: &Path,
    rel: &mut Vec<OsString>,
    applier: &mut Applier,
    links: &mut HashMap<(u64, u64), Vec<OsString>>,
) -> Result<()> {
    let meta = dir.symlink_metadata().map_err(io_ctx(dir, "stat"))?;
    // An unprivileged user may own directories it cannot read (mode 0500, 0000):
    // open them up while we read, and put the mode back afterwards.
    let restore = grant_owner(dir, &meta, 0o500)?;
    let result = walk_entries(dir, rel, applier, links);
    if let Some(mode) = restore {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_ctx(dir, "chmod"))?;
    }
    result
}

fn walk_entries(
    dir: &Path,
    rel: &mut Vec<OsString>,
    applier: &mut Applier,
    links: &mut HashMap<(u64, u64), Vec<OsString>>,
) -> Result<()> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_ctx(dir, "read directory"))? {
        names.push(entry.map_err(io_ctx(dir, "read directory"))?.file_name());
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        rel.push(name);
        let r = visit(&path, rel, applier, links);
        rel.pop();
        r?;
    }
    Ok(())
}

fn visit(
    path: &Path,
    rel: &[OsString],
    applier: &mut Applier,
    links: &mut HashMap<(u64, u64), Vec<OsString>>,
) -> Result<()> {
    let meta = path.symlink_metadata().map_err(io_ctx(path, "stat"))?;
    let ft = meta.file_type();
    let shown = path_string(rel);
    let mut node = Node {
        path: rel.to_vec(),
        kind: NodeKind::Dir,
        mode: meta.mode() & 0o7777,
        uid: meta.uid().into(),
        gid: meta.gid().into(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        xattrs: read_xattrs(path),
    };
    if ft.is_dir() {
        applier.apply(&node, &shown, &mut io::empty())?;
        if is_opaque(path) {
            let opaque = Node { kind: NodeKind::Opaque, xattrs: Vec::new(), ..node.clone() };
            applier.apply(&opaque, &shown, &mut io::empty())?;
        }
        return walk(path, &mut rel.to_vec(), applier, links);
    }
    if ft.is_file() {
        if meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                node.kind = NodeKind::Hardlink(first.clone());
                return applier.apply(&node, &shown, &mut io::empty());
            }
            links.insert((meta.dev(), meta.ino()), rel.to_vec());
        }
        node.kind = NodeKind::File { size: meta.len() };
        let mut file = open_for_read(path, &meta)?;
        return applier.apply(&node, &shown, &mut file);
    }
    node.kind = if ft.is_symlink() {
        NodeKind::Symlink(fs::read_link(path).map_err(io_ctx(path, "readlink"))?.into_os_string())
    } else if ft.is_char_device() && meta.rdev() == 0 {
        NodeKind::Whiteout
    } else if ft.is_char_device() {
        NodeKind::Char { major: major(meta.rdev()), minor: minor(meta.rdev()) }
    } else if ft.is_block_device() {
        NodeKind::Block { major: major(meta.rdev()), minor: minor(meta.rdev()) }
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else {
        applier.skipped(); // sockets are not layer content
        return Ok(());
    };
    applier.apply(&node, &shown, &mut io::empty())
}

/// Makes `path` (which we own) accessible with `need` for its owner; returns the mode
/// to restore, if it was changed.
fn grant_owner(path: &Path, meta: &fs::Metadata, need: u32) -> Result<Option<u32>> {
    let mode = meta.mode() & 0o7777;
    if mode & need == need || meta.uid() != geteuid().as_raw() || geteuid().is_root() {
        return Ok(None);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode | need)).map_err(io_ctx(path, "chmod"))?;
    Ok(Some(mode))
}

fn open_for_read(path: &Path, meta: &fs::Metadata) -> Result<File> {
    let open = || File::options().read(true).custom_flags(libc::O_NOFOLLOW).open(path);
    match open() {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let restore = grant_owner(path, meta, 0o400)?;
            let file = open();
            if let Some(mode) = restore {
                fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_ctx(path, "chmod"))?;
            }
            file.map_err(io_ctx(path, "open"))
        }
        r => r.map_err(io_ctx(path, "open")),
    }
}

fn read_xattrs(path: &Path) -> Vec<(OsString, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names {
        let b = name.as_encoded_bytes();
        if b.starts_with(b"trusted.overlay.") || b.starts_with(b"user.overlay.") {
            continue;
        }
        if let Ok(Some(value)) = xattr::get(path, &name) {
            out.push((name, value));
        }
    }
    out
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| matches!(xattr::get(path, name), Ok(Some(v)) if v == b"y"))
}
