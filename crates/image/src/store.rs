//! The on-disk store: content-addressed blobs and unpacked layers.
//!
//! ```text
//! <root>/blobs/sha256/<hex>   configs, manifests (and compressed layers if kept)
//! <root>/layers/<hex>/        one unpacked layer per diff_id, an overlay lowerdir
//! <root>/tmp/                 staging; everything is written here and renamed into place
//! ```

use std::fs::{self, DirBuilder};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use oci_spec::image::{Config, History, ImageConfiguration, RootFs};
use tempfile::NamedTempFile;

use crate::apply::{Applier, UnpackOptions, UnpackReport, WhiteoutMode};
use crate::digest::{digest_hex, sha256_of, short, Hashing};
use crate::error::{io_err, Error, Result};
use crate::fsutil::{remove_tree, tree_size, TmpTree};
use crate::tarlayer::unpack_stream;

/// Metadata (manifest.json, index.json, manifests, configs) larger than this is refused.
pub const METADATA_LIMIT: u64 = 4 * 1024 * 1024;

/// An image imported or loaded into the store. The engine records it; the store keeps
/// only content.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedImage {
    /// `sha256:<hex>` of the config blob: the image id, as Docker computes it.
    pub id: String,
    pub config: ImageConfiguration,
    /// Layer diff_ids, bottom first; each is unpacked at [`Store::layer_dir`].
    pub diff_ids: Vec<String>,
    /// `repo:tag` names found in the archive (none for an import).
    pub repo_tags: Vec<String>,
    /// Bytes of regular file content over all layers (each inode once per layer).
    pub size: u64,
    /// Digest of the manifest, for images that came with one (OCI archives and layouts).
    pub manifest_digest: Option<String>,
    /// Every blob this image references in the store (config, manifest, kept layer
    /// blobs), for the engine's reference counting.
    pub blobs: Vec<String>,
    /// The stored blob of each layer (aligned with `diff_ids`), where one was kept.
    pub layer_blobs: Vec<Option<String>>,
    /// What unpacking the new layers had to leave out (owners, devices, xattrs).
    pub report: UnpackReport,
}

/// What is known about a layer before reading it.
pub(crate) struct LayerSpec<'a> {
    /// For messages.
    pub label: String,
    /// Digest and size of the (possibly compressed) blob, when a manifest gave them.
    pub blob: Option<(&'a str, Option<u64>)>,
    /// The diff_id the config lists for it.
    pub diff_id: Option<&'a str>,
}

pub(crate) struct LayerResult {
    pub diff_id: String,
    pub size: u64,
    pub report: UnpackReport,
    /// The layer blob, when it was kept in the blob store.
    pub blob: Option<String>,
}

/// A content store rooted at a directory. Cheap to clone; safe to use from several
/// threads and processes at once (everything is staged in `tmp/` and renamed).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    blobs: PathBuf,
    layers: PathBuf,
    tmp: PathBuf,
}

/// The name prefix of a temporary entry of this process: `KIND-PID.STARTTIME-`, so that a
/// later command can tell that the operation which made it is gone (see [`Store::clean_tmp`]).
pub(crate) fn tmp_prefix(kind: &str) -> String {
    static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let owner = OWNER.get_or_init(|| {
        let pid = std::process::id();
        format!("{pid}.{}", start_time(pid).unwrap_or(0))
    });
    format!("{kind}-{owner}-")
}

/// The (pid, start time) in a name made with [`tmp_prefix`].
fn tmp_owner(name: &str) -> Option<(u32, u64)> {
    let (_, rest) = name.split_once('-')?;
    let (owner, _) = rest.split_once('-')?;
    let (pid, start) = owner.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// The start time (clock ticks since boot, field 22 of /proc/PID/stat) of a process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

fn process_is(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

fn mkdir_private(path: &Path) -> Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io_err(format!("create {}", path.display())))
}

impl Store {
    /// Opens (creating if needed, mode 0700) a store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store {
            root: root.to_path_buf(),
            blobs: root.join("blobs").join("sha256"),
            layers: root.join("layers"),
            tmp: root.join("tmp"),
        };
        for dir in [&store.root, &store.blobs, &store.layers, &store.tmp] {
            mkdir_private(dir)?;
        }
        // What a killed import, load or pull left behind goes at the next command (a read
        // of an empty directory when there is nothing).
        if let Err(e) = store.clean_tmp(Duration::from_secs(3600)) {
            tracing::debug!("clean {}: {e}", store.tmp.display());
        }
        Ok(store)
    }

    /// Bytes in `tmp/`: operations under way, not images.
    pub fn tmp_size(&self) -> u64 {
        tree_size(&self.tmp).unwrap_or(0)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Path of blob `digest` (which need not exist).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.blobs.join(digest_hex(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// The unpacked layer directory of `diff_id` (an overlay lowerdir). Errors only for
    /// an invalid digest; the directory may not exist.
    pub fn layer_dir(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.layers.join(digest_hex(diff_id)?))
    }

    /// The merged view of an image's layers (`diff_ids` bottom-most first, as in its
    /// config), for reading its files from the host side without leaving it.
    pub fn image_fs(&self, diff_ids: &[String]) -> Result<crate::ImageFs> {
        let dirs: Vec<PathBuf> = diff_ids.iter().rev().map(|d| self.layer_dir(d)).collect::<Result<_>>()?;
        crate::ImageFs::open(&dirs)
    }

    pub fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_dir(diff_id).is_ok_and(|p| p.is_dir())
    }

    /// Bytes of regular file content in an unpacked layer (each inode once).
    pub fn layer_size(&self, diff_id: &str) -> Result<u64> {
        let dir = self.layer_dir(diff_id)?;
        if !dir.is_dir() {
            return Err(Error::NotFound(format!("layer {diff_id}")));
        }
        tree_size(&dir).map_err(io_err(format!("size of layer {}", short(diff_id))))
    }

    /// Digests of all unpacked layers (for garbage collection by the engine).
    pub fn list_layers(&self) -> Result<Vec<String>> {
        list_digests(&self.layers)
    }

    /// Digests of all blobs (for garbage collection by the engine).
    pub fn list_blobs(&self) -> Result<Vec<String>> {
        list_digests(&self.blobs)
    }

    /// Stores the bytes read from `reader` as a blob, verifying them against `expected`
    /// while writing. On a mismatch nothing is stored. Returns the digest and size.
    pub fn write_blob(&self, reader: impl Read, expected: Option<&str>) -> Result<(String, u64)> {
        if let Some(e) = expected {
            digest_hex(e)?;
        }
        let what = expected.map(short).unwrap_or_else(|| "blob".into());
        let mut tmp = NamedTempFile::with_prefix_in(tmp_prefix("blob"), &self.tmp)
            .map_err(io_err(format!("create temporary file in {}", self.tmp.display())))?;
        let (digest, size) = {
            let mut h = Hashing::with_tee(reader, Some(tmp.as_file_mut()));
            h.drain().map_err(io_err(format!("write {what}")))?;
            h.finish()
        };
        if let Some(e) = expected {
            if e != digest {
                return Err(Error::DigestMismatch { what, expected: e.to_owned(), actual: digest });
            }
        }
        self.persist_blob(tmp, &digest)?;
        Ok((digest, size))
    }

    fn persist_blob(&self, tmp: NamedTempFile, digest: &str) -> Result<()> {
        let dest = self.blob_path(digest)?;
        let _ = tmp.as_file().set_permissions(fs::Permissions::from_mode(0o444));
        // Another writer may have stored the same bytes; replacing them is harmless.
        tmp.persist(&dest).map_err(|e| e.error).map_err(io_err(format!("store blob {}", short(digest))))?;
        Ok(())
    }

    pub(crate) fn put_bytes(&self, bytes: &[u8]) -> Result<String> {
        let digest = sha256_of(bytes);
        if !self.has_blob(&digest) {
            self.write_blob(bytes, Some(&digest))?;
        }
        Ok(digest)
    }

    /// Reads a blob of at most `limit` bytes, verifying its digest.
    pub fn read_blob(&self, digest: &str, limit: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound(format!("blob {digest}"))),
            Err(e) => return Err(io_err(format!("open blob {}", short(digest)))(e)),
        };
        let mut buf = Vec::new();
        file.take(limit + 1).read_to_end(&mut buf).map_err(io_err(format!("read blob {}", short(digest))))?;
        if buf.len() as u64 > limit {
            return Err(Error::TooLarge { what: format!("blob {}", short(digest)), limit });
        }
        let actual = sha256_of(&buf);
        if actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {}", short(digest)),
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(buf)
    }

    /// The configuration of image `image_id` (its config blob).
    pub fn read_config(&self, image_id: &str) -> Result<ImageConfiguration> {
        let bytes = self.read_blob(image_id, METADATA_LIMIT)?;
        serde_json::from_slice(&bytes)
            .map_err(|source| Error::Json { context: format!("image config {}", short(image_id)), source })
    }

    /// Removes an unpacked layer. Whether it is still used is the engine's business.
    /// The directory is first renamed into `tmp/`, so no half-removed layer is ever
    /// visible at its path. A missing layer is not an error.
    pub fn remove_layer(&self, diff_id: &str) -> Result<()> {
        let dir = self.layer_dir(diff_id)?;
        let trash = TmpTree::new(&self.tmp, &tmp_prefix("rm"))
            .map_err(io_err(format!("create trash in {}", self.tmp.display())))?;
        match fs::rename(&dir, trash.path().join("layer")) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(format!("remove layer {}", short(diff_id)))(e)),
        }
        let path = trash.keep();
        remove_tree(&path).map_err(io_err(format!("remove layer {}", short(diff_id))))
    }

    /// Removes a blob. A missing blob is not an error.
    pub fn remove_blob(&self, digest: &str) -> Result<()> {
        match fs::remove_file(self.blob_path(digest)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("remove blob {}", short(digest)))(e)),
        }
    }

    /// Removes leftovers in `tmp/` of operations that no longer run: an entry named by
    /// [`tmp_prefix`] goes as soon as the process that made it is gone (pid and start time,
    /// so a reused pid is not mistaken for it), whatever its age; one without an owner in
    /// its name (made before owners were recorded) once it is older than `age`.
    pub fn clean_tmp(&self, age: Duration) -> Result<()> {
        for path in self.stale_tmp(age)? {
            self.remove_tmp(&path)?;
        }
        Ok(())
    }

    /// The entries of `tmp/` [`Store::clean_tmp`] would remove (half-written blobs, staged
    /// layers, trash of operations that died).
    pub fn stale_tmp(&self, age: Duration) -> Result<Vec<PathBuf>> {
        let now = SystemTime::now();
        let entries = fs::read_dir(&self.tmp).map_err(io_err(format!("read {}", self.tmp.display())))?;
        let mut out = vec![];
        for entry in entries.flatten() {
            let old = match tmp_owner(&entry.file_name().to_string_lossy()) {
                Some((pid, start)) => !process_is(pid, start),
                None => entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).is_ok_and(|d| d >= age)),
            };
            if old {
                out.push(entry.path());
            }
        }
        Ok(out)
    }

    /// Removes one entry [`Store::stale_tmp`] returned (a warning if it cannot).
    pub fn remove_tmp(&self, path: &Path) -> Result<()> {
        if path.parent() != Some(self.tmp.as_path()) {
            return Ok(());
        }
        if let Err(e) = remove_tree(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove stale temporary entry");
        }
        Ok(())
    }

    /// `docker import`: the rootfs tarball read from `reader` (plain or gzip; detected
    /// by magic bytes) becomes a one-layer image. `base` is the configuration to give
    /// it (see [`import_config`]); its `rootfs` is replaced with the new layer.
    pub fn import_rootfs(
        &self,
        reader: impl Read,
        base: ImageConfiguration,
        opts: &UnpackOptions,
    ) -> Result<LoadedImage> {
        let spec = LayerSpec { label: "rootfs import".into(), blob: None, diff_id: None };
        let layer = self.ensure_layer(|| Ok(reader), spec, opts)?;
        let mut config = base;
        let mut rootfs = RootFs::default();
        rootfs.set_diff_ids(vec![layer.diff_id.clone()]);
        config.set_rootfs(rootfs);
        let bytes = serde_json::to_vec(&config)
            .map_err(|source| Error::Json { context: "serialize image config".into(), source })?;
        let id = self.put_bytes(&bytes)?;
        let mut blobs = vec![id.clone()];
        blobs.extend(layer.blob.clone());
        tracing::info!(image = %short(&id), layer = %short(&layer.diff_id), "rootfs imported");
        Ok(LoadedImage {
            id,
            config,
            diff_ids: vec![layer.diff_id],
            repo_tags: Vec::new(),
            size: layer.size,
            manifest_digest: None,
            blobs,
            layer_blobs: vec![layer.blob.clone()],
            report: layer.report,
        })
    }

    /// Makes sure the layer read from `open()` is unpacked at `layers/<diff_id>`.
    ///
    /// If the config names its diff_id and it is already there, nothing is read.
    /// Otherwise the stream is unpacked into a staging directory in `tmp/` while both
    /// its digest and its uncompressed digest are computed; both are checked against
    /// `spec`, then the directory is renamed into place. If another process placed the
    /// same layer meanwhile, ours is discarded. On any error nothing is left behind.
    pub(crate) fn ensure_layer<R: Read>(
        &self,
        open: impl FnOnce() -> Result<R>,
        spec: LayerSpec<'_>,
        opts: &UnpackOptions,
    ) -> Result<LayerResult> {
        if let Some(d) = spec.diff_id {
            digest_hex(d)?;
        }
        if let Some((d, _)) = spec.blob {
            digest_hex(d)?;
        }
        if let Some(diff_id) = spec.diff_id.filter(|d| self.has_layer(d)) {
            tracing::debug!(layer = %short(diff_id), "layer already present");
            let mut blob = None;
            match (opts.keep_layer_blobs, spec.blob) {
                (true, Some((digest, _))) => {
                    if !self.has_blob(digest) {
                        self.write_blob(open()?, Some(digest))?;
                    }
                    blob = Some(digest.to_owned());
                }
                // A member whose name says no digest (docker-archive's `<id>/layer.tar`): its
                // blob is the layer itself when uncompressed, else it is stored (and named)
                // again, so the image refers to it. Without this a load killed after the
                // layer's blob was written left that blob to no image once loaded again, and
                // an image loaded over an existing layer had no blob to push or save.
                (true, None) if self.has_blob(diff_id) => blob = Some(diff_id.to_owned()),
                (true, None) => blob = Some(self.write_blob(open()?, None)?.0),
                (false, _) => {}
            }
            return Ok(LayerResult {
                diff_id: diff_id.to_owned(),
                size: self.layer_size(diff_id)?,
                report: UnpackReport::default(),
                blob,
            });
        }

        let tmp_err = io_err(format!("create staging directory in {}", self.tmp.display()));
        let staging = TmpTree::new(&self.tmp, &tmp_prefix("layer")).map_err(tmp_err)?;
        fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
            .map_err(io_err(format!("chmod {}", staging.path().display())))?;
        let mut blob_tmp = match opts.keep_layer_blobs {
            true => Some(
                NamedTempFile::with_prefix_in(tmp_prefix("blob"), &self.tmp)
                    .map_err(io_err(format!("create temporary file in {}", self.tmp.display())))?,
            ),
            false => None,
        };
        let label = spec.diff_id.or(spec.blob.map(|b| b.0)).map(short).unwrap_or(spec.label);
        let whiteouts = match opts.whiteouts {
            WhiteoutMode::Overlay { .. } => opts.whiteouts,
            // A stored layer is always an overlay lowerdir; only root may set trusted.*.
            WhiteoutMode::Apply => WhiteoutMode::Overlay { userxattr: !nix::unistd::geteuid().is_root() },
        };
        let mut applier = Applier::new(staging.path(), whiteouts, opts.chown, label.clone())?;

        let limit = spec.blob.and_then(|b| b.1).map_or(u64::MAX, |s| s.saturating_add(1));
        let source = open()?;
        let tee = blob_tmp.as_mut().map(|t| t.as_file_mut() as &mut dyn io::Write);
        let mut raw = Hashing::with_tee(source.take(limit), tee);
        let (diff_id, _) = match unpack_stream(&mut raw, &mut applier) {
            Ok(v) => v,
            Err(e) => {
                // Content that does not match its digest says so, rather than how it broke
                // the decompressor or the tar reader.
                if let Some((expected, _)) = spec.blob {
                    if raw.drain().is_ok() {
                        let (actual, _) = raw.finish();
                        if actual != expected {
                            return Err(Error::DigestMismatch {
                                what: format!("layer {label}"),
                                expected: expected.to_owned(),
                                actual,
                            });
                        }
                    }
                }
                return Err(e);
            }
        };
        raw.drain().map_err(io_err(format!("layer {label}: read")))?;
        let (blob_digest, blob_size) = raw.finish();

        if let Some((expected, size)) = spec.blob {
            if expected != blob_digest {
                return Err(Error::DigestMismatch {
                    what: format!("layer {label}"),
                    expected: expected.to_owned(),
                    actual: blob_digest,
                });
            }
            if let Some(size) = size.filter(|s| *s != blob_size) {
                return Err(Error::SizeMismatch { what: format!("layer {label}"), expected: size, actual: blob_size });
            }
        }
        if let Some(expected) = spec.diff_id {
            if expected != diff_id {
                return Err(Error::DigestMismatch {
                    what: format!("layer {label}: uncompressed content (diff_id)"),
                    expected: expected.to_owned(),
                    actual: diff_id,
                });
            }
        }
        let report = applier.finish()?;
        report.warn_if_lossy(&label);
        cove_sys::fault::point("layer.mid-unpack");

        let dest = self.layer_dir(&diff_id)?;
        match fs::rename(staging.path(), &dest) {
            Ok(()) => {
                staging.keep();
                tracing::debug!(layer = %short(&diff_id), entries = report.entries, "layer unpacked");
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                tracing::debug!(layer = %short(&diff_id), "layer placed concurrently; discarding ours");
                drop(staging);
            }
            Err(e) => return Err(io_err(format!("move layer {} into place", short(&diff_id)))(e)),
        }
        cove_sys::fault::point("layer.after-rename");
        let size = report.bytes;
        let blob = match blob_tmp {
            Some(tmp) => {
                self.persist_blob(tmp, &blob_digest)?;
                cove_sys::fault::point("layer.after-blob");
                Some(blob_digest)
            }
            None => None,
        };
        Ok(LayerResult { diff_id, size, report, blob })
    }

    /// Unpacks a layer blob read from `reader` (from a registry, or the stored blob itself)
    /// into `layers/<diff_id>`, keeping the verified blob under `blobs/`. Digest, size and
    /// diff_id are all checked before anything is placed; on error nothing is left behind.
    /// When the layer is already unpacked only the blob is stored (if missing).
    pub fn put_layer<R: Read>(
        &self,
        reader: impl FnOnce() -> Result<R>,
        digest: &str,
        size: u64,
        diff_id: &str,
        opts: &UnpackOptions,
    ) -> Result<(u64, UnpackReport)> {
        let spec = LayerSpec { label: short(diff_id), blob: Some((digest, Some(size))), diff_id: Some(diff_id) };
        let opts = UnpackOptions { keep_layer_blobs: true, ..opts.clone() };
        let done = self.ensure_layer(reader, spec, &opts)?;
        Ok((done.size, done.report))
    }

    /// Stores a small blob (a config or manifest) after checking it against `digest`.
    pub fn put_blob(&self, bytes: &[u8], digest: &str) -> Result<()> {
        let actual = sha256_of(bytes);
        if actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {}", short(digest)),
                expected: digest.to_owned(),
                actual,
            });
        }
        if !self.has_blob(digest) {
            self.write_blob(bytes, Some(digest))?;
        }
        Ok(())
    }

    /// The compression of a stored blob: `"gzip"`, `"zstd"`, `"none"`, ...
    pub fn blob_compression(&self, digest: &str) -> Result<&'static str> {
        let path = self.blob_path(digest)?;
        let mut head = [0u8; 6];
        let mut f = fs::File::open(&path).map_err(io_err(format!("open blob {}", short(digest))))?;
        let mut got = 0;
        while got < head.len() {
            match f.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => return Err(io_err(format!("read blob {}", short(digest)))(e)),
            }
        }
        Ok(crate::compress::compression_of(&head[..got]))
    }

    /// Copy fallback for when overlayfs is unavailable: applies the unpacked layers
    /// `diff_ids` (bottom first) into `target`, honouring whiteouts and opaque
    /// directories by deletion. `opts.whiteouts` is ignored (always applied).
    /// On error `target` is left partly written; the caller removes it.
    pub fn flatten_into(&self, diff_ids: &[String], target: &Path, opts: &UnpackOptions) -> Result<UnpackReport> {
        fs::create_dir_all(target).map_err(io_err(format!("create {}", target.display())))?;
        let mut applier = Applier::new(target, WhiteoutMode::Apply, opts.chown, String::new())?;
        for diff_id in diff_ids {
            let dir = self.layer_dir(diff_id)?;
            if !dir.is_dir() {
                return Err(Error::NotFound(format!("layer {diff_id}")));
            }
            applier.begin_layer(short(diff_id));
            crate::flatten::apply_dir(&dir, &mut applier)?;
        }
        let report = applier.finish()?;
        report.warn_if_lossy(&format!("flatten into {}", target.display()));
        Ok(report)
    }
}

fn list_digests(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(format!("read {}", dir.display())))? {
        let entry = entry.map_err(io_err(format!("read {}", dir.display())))?;
        let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
        if digest_hex(&digest).is_ok() {
            out.push(digest);
        }
    }
    out.sort();
    Ok(out)
}

/// A configuration for [`Store::import_rootfs`]: the host's os/architecture, `config`
/// (Cmd, Entrypoint, Env, ...), created now, and one history entry with `comment`
/// (Docker writes "Imported from -" or the source URL).
pub fn import_config(config: Config, comment: &str) -> ImageConfiguration {
    let now = rfc3339_now();
    let mut history = History::default();
    history.set_created(Some(now.clone()));
    history.set_comment(Some(comment.to_owned()));
    let mut image = ImageConfiguration::default();
    image.set_created(Some(now));
    image.set_config(Some(config));
    image.set_history(Some(vec![history]));
    image
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_now() -> String {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_rfc3339() {
        let s = rfc3339_now();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.starts_with("20") && s.ends_with('Z'), "{s}");
    }
}
