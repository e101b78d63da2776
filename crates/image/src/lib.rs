//! Image content on disk: the content-addressed blob store, layer unpacking, and
//! `docker import` / `docker load`.
//!
//! This crate owns the files under the storage root the caller gives it
//! (e.g. `~/.local/share/cove/storage`):
//!
//! ```text
//! blobs/sha256/<hex>   image configs and manifests (and compressed layers if kept)
//! layers/<hex>/        one unpacked layer per diff_id, shared by every image using it,
//!                      laid out as an overlayfs lowerdir (whiteouts are 0/0 char devices)
//! tmp/                 staging: every blob and layer is written here, verified, and
//!                      renamed into place, so readers never see partial content
//! ```
//!
//! It must not keep image metadata (names, tags, reference counts): it is DB-free, and
//! the engine records what [`Store::import_rootfs`] and [`Store::load`] return and
//! decides when to call [`Store::remove_layer`] and [`Store::remove_blob`]. It does not
//! mount anything and does not talk to registries (the engine streams registry blobs
//! into [`Store::put_layer`]).
//!
//! # API
//!
//! ```text
//! Store::open(root) -> Result<Store>
//! Store::import_rootfs(reader, base: ImageConfiguration, &UnpackOptions) -> Result<LoadedImage>
//! Store::load(path, &UnpackOptions) -> Result<Vec<LoadedImage>>
//! Store::layer_dir(diff_id) -> Result<PathBuf>        (Result: the digest is validated)
//! Store::image_fs(diff_ids) -> Result<ImageFs>         (read image files through the merged layers)
//! Store::read_config(image_id) -> Result<ImageConfiguration>
//! Store::remove_layer(diff_id) / remove_blob(digest) -> Result<()>
//! Store::flatten_into(diff_ids, target, &UnpackOptions) -> Result<UnpackReport>
//! Store::{write_blob, read_blob, blob_path, has_blob, has_layer, layer_size,
//!         list_layers, list_blobs, clean_tmp}
//! Store::put_layer(open, digest, size, diff_id, &UnpackOptions)   (pull: verified, blob kept)
//! Store::put_blob(bytes, digest) / blob_compression(digest)
//! Store::save(&[SaveImage], ArchiveFormat, writer) / build_manifest(&SaveImage)
//! import_config(Config, comment) -> ImageConfiguration
//! unpack_layer(reader, target, &UnpackOptions) -> Result<UnpackReport>
//! ```
//!
//! # Layer unpacking rules
//!
//! - Nothing is ever written outside the target directory. Entry names are split into
//!   components; `..` anywhere is refused; a leading `/` is stripped (as Docker does:
//!   names are relative to the layer root); `./` is normal. Parents are opened one
//!   component at a time with `O_NOFOLLOW|O_DIRECTORY`, so an entry below a symlink
//!   (`link -> /tmp/x`, then `link/file`) is refused. Files are created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW` after removing what was there (directories merge).
//!   Symlinks are created as-is and never followed. Hard links must name an existing
//!   non-directory in the layer, reached without symlinks.
//! - Owners are applied with `lchown`; an id the kernel refuses (unmapped in our user
//!   namespace, or we are unprivileged) is squashed to 0:0 and counted. Modes (setuid
//!   included) are applied after the owner. Device nodes that `mknod` refuses are skipped
//!   and counted. xattrs that are refused or unsupported are skipped and counted;
//!   `trusted.overlay.*`/`user.overlay.*` xattrs from an archive are always dropped (a
//!   layer must not forge overlay metadata). Counts come back in [`UnpackReport`] and
//!   are logged as one warning per layer.
//! - Compression is detected by magic bytes: plain tar, gzip and zstd are supported;
//!   xz and bzip2 are recognised and refused. A tar stream must end with its
//!   end-of-archive block, so a truncated plain tar is an error.
//! - Metadata (manifest.json, index.json, manifests, configs) is capped at
//!   [`METADATA_LIMIT`].
//!
//! # Not handled here
//!
//! xz/bzip2 layers (refused with a clear error), docker archives older than
//! Docker 1.10 (no manifest.json), foreign layers missing from an archive, and fsync
//! (a layer renamed into place is not flushed; after a power loss the engine should
//! verify or re-import).
#![forbid(unsafe_code)]
// A library reports through its return values and `tracing`, never by printing.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod apply;
mod archive;
mod compress;
mod digest;
mod error;
mod flatten;
mod fsutil;
#[doc(hidden)]
pub mod fuzz;
mod imagefs;
mod load;
mod save;
mod store;
mod tarlayer;

#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::Path;

pub use apply::{UnpackOptions, UnpackReport, WhiteoutMode, MAX_DEPTH};
pub use error::{EntryError, Error, Result};
pub use imagefs::{ImageFs, MAX_SYMLINK_HOPS};
pub use oci_spec::image::{Config, ImageConfiguration};
pub use save::{ArchiveFormat, BuiltManifest, LayerBlob, SaveImage};
pub use store::{import_config, LoadedImage, Store, METADATA_LIMIT};

/// Unpacks one layer stream (plain or gzip tar) directly into `target`, which must
/// exist, with `opts.whiteouts` deciding how whiteouts are written. Unlike the store,
/// this writes in place: on error `target` is left partly written.
pub fn unpack_layer(reader: impl Read, target: &Path, opts: &UnpackOptions) -> Result<UnpackReport> {
    let mut reader = reader;
    let mut applier = apply::Applier::new(target, opts.whiteouts, opts.chown, "stream".into())?;
    tarlayer::unpack_stream(&mut reader, &mut applier)?;
    let report = applier.finish()?;
    report.warn_if_lossy("stream");
    Ok(report)
}
