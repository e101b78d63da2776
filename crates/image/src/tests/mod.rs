//! Tests that need several modules: hostile layers, whiteouts, the store, archives.
//! They run as root and as an unprivileged user; where behaviour differs the test
//! checks the behaviour for the current user (and prints `SKIP: <reason>` only when the
//! environment cannot run it at all).

mod archives;
mod imagefs;
mod store;
mod unpack;
mod userns;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{getegid, geteuid};

use crate::{UnpackOptions, WhiteoutMode};

pub(crate) const MTIME: u64 = 1_600_000_000;

/// A fresh store in a temporary directory.
pub(crate) fn store() -> (tempfile::TempDir, crate::Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::Store::open(&dir.path().join("storage")).unwrap();
    (dir, store)
}

/// Nothing half-written anywhere: tmp/ is empty, and layers/blobs hold only what is expected.
pub(crate) fn assert_clean(store: &crate::Store, layers: usize, blobs: usize) {
    assert!(names(&store.root().join("tmp")).is_empty(), "tmp not empty");
    assert_eq!(store.list_layers().unwrap().len(), layers, "layers");
    assert_eq!(store.list_blobs().unwrap().len(), blobs, "blobs");
}

/// Builds tar streams, including ones the `tar` crate's safe API would refuse.
pub(crate) struct Tb(tar::Builder<Vec<u8>>);

impl Tb {
    pub(crate) fn new() -> Tb {
        Tb(tar::Builder::new(Vec::new()))
    }

    /// A raw header: `name` and `link` are written byte for byte (`../x`, `/etc/x`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn raw(
        &mut self,
        name: &str,
        ty: tar::EntryType,
        data: &[u8],
        link: &str,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Tb {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            assert!(name.len() < 100 && link.len() < 100);
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(ty);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(MTIME);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    pub(crate) fn dir(&mut self, name: &str) -> &mut Tb {
        self.dir_mode(name, 0o755)
    }

    pub(crate) fn dir_mode(&mut self, name: &str, mode: u32) -> &mut Tb {
        self.raw(name, tar::EntryType::Directory, b"", "", mode, me().0, me().1)
    }

    pub(crate) fn file(&mut self, name: &str, data: &[u8]) -> &mut Tb {
        self.file_mode(name, data, 0o644)
    }

    pub(crate) fn file_mode(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Tb {
        self.raw(name, tar::EntryType::Regular, data, "", mode, me().0, me().1)
    }

    pub(crate) fn symlink(&mut self, name: &str, target: &str) -> &mut Tb {
        self.raw(name, tar::EntryType::Symlink, b"", target, 0o777, me().0, me().1)
    }

    pub(crate) fn hardlink(&mut self, name: &str, target: &str) -> &mut Tb {
        self.raw(name, tar::EntryType::Link, b"", target, 0o644, me().0, me().1)
    }

    pub(crate) fn device(&mut self, name: &str, ty: tar::EntryType, major: u32, minor: u32) -> &mut Tb {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(ty);
        h.set_size(0);
        h.set_mode(0o666);
        h.set_uid(me().0);
        h.set_gid(me().1);
        h.set_mtime(MTIME);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.0.append(&h, &b""[..]).unwrap();
        self
    }

    /// PAX records for the next entry.
    pub(crate) fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tb {
        self.0.append_pax_extensions(records.iter().copied()).unwrap();
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// The current effective uid and gid.
pub(crate) fn me() -> (u64, u64) {
    (geteuid().as_raw().into(), getegid().as_raw().into())
}

pub(crate) fn is_root() -> bool {
    geteuid().is_root()
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub(crate) fn sha256(data: &[u8]) -> String {
    crate::digest::sha256_of(data)
}

pub(crate) fn overlay_opts() -> UnpackOptions {
    UnpackOptions { whiteouts: WhiteoutMode::Overlay { userxattr: true }, ..Default::default() }
}

pub(crate) fn apply_opts() -> UnpackOptions {
    UnpackOptions { whiteouts: WhiteoutMode::Apply, ..Default::default() }
}

/// Whether the file system at `dir` takes `user.*` xattrs.
pub(crate) fn user_xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    std::fs::write(&probe, b"").unwrap();
    let ok = xattr::set(&probe, "user.cove.probe", b"1").is_ok();
    std::fs::remove_file(&probe).unwrap();
    ok
}

pub(crate) fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    path.symlink_metadata().is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

/// Names in a directory, sorted.
pub(crate) fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}
