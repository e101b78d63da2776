//! Entry points of the fuzz targets (crates/image/fuzz), also replayed over the checked-in
//! corpus by this crate's unit tests. Not an API: each function takes arbitrary bytes and
//! panics only when an invariant of this crate breaks (never on bad input).

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;

use crate::apply::{UnpackOptions, WhiteoutMode};
use crate::digest::digest_hex;
use crate::fsutil::remove_tree;

fn one_line(what: &str, e: &crate::Error) {
    let s = e.to_string();
    assert!(!s.is_empty() && !s.contains('\n'), "{what}: error is not one line: {s:?}");
}

/// Sorted names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("list a fuzz directory")
        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A directory tree removed when dropped.
struct Cleanup(PathBuf);

impl Cleanup {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = remove_tree(&self.0);
        }
    }
}

/// Unpacks `data` as a layer stream ([`crate::unpack_layer`]) into a fresh directory under
/// the temporary directory (`TMPDIR`), once with overlay whiteouts and once applying them,
/// then removes everything. Panics if anything appeared next to the targets, if the file
/// planted beside them (reachable as `../outside/victim`) changed, if an error is not one
/// line, or if the tree cannot be removed.
pub fn unpack_layer(data: &[u8]) {
    let dir = tempfile::Builder::new().prefix("cove-fuzz-unpack-").tempdir().expect("a temporary directory");
    // Removed even when a check below panics (a fuzzer keeps going after a crash): `TempDir`
    // alone cannot remove directories the layer made unreadable.
    let base = Cleanup(dir.keep());
    let outside = base.path().join("outside");
    fs::create_dir(&outside).expect("create outside/");
    fs::write(outside.join("victim"), b"victim").expect("create outside/victim");
    for (name, whiteouts) in [("overlay", WhiteoutMode::Overlay { userxattr: true }), ("apply", WhiteoutMode::Apply)] {
        let target = base.path().join(name);
        fs::create_dir(&target).expect("create the target");
        let opts = UnpackOptions { whiteouts, chown: true, keep_layer_blobs: false };
        if let Err(e) = crate::unpack_layer(data, &target, &opts) {
            one_line("unpack_layer", &e);
        }
    }
    let unpacked = names(base.path());
    let victim = fs::read(outside.join("victim"));
    let beside = names(&outside);
    let removed = remove_tree(&base.0);
    assert_eq!(unpacked, ["apply", "outside", "overlay"], "something was written next to the targets");
    assert_eq!(beside, ["victim"], "something was written in ../outside");
    assert_eq!(victim.ok().as_deref(), Some(&b"victim"[..]), "../outside/victim changed");
    removed.expect("remove the unpacked trees");
}

/// Decodes `data` as each piece of image metadata `load` and the store read: a
/// docker-archive `manifest.json`, an OCI `index.json` (choosing the host's manifest), an
/// image manifest, `oci-layout`, and an image config (whose diff_ids are then validated).
pub fn metadata(data: &[u8]) {
    crate::load::fuzz_metadata(data);
    if let Ok(config) = serde_json::from_slice::<ImageConfiguration>(data) {
        for d in config.rootfs().diff_ids() {
            let _ = digest_hex(d);
        }
        let _ = (config.os().to_string(), config.architecture().to_string());
        if let Some(c) = config.config() {
            let _ = (c.env(), c.cmd(), c.entrypoint(), c.working_dir(), c.user(), c.exposed_ports());
        }
        let _ = serde_json::to_vec(&config).expect("a decoded config encodes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `fuzz/corpus/<target>` and `fuzz/regressions/<target>`.
    pub(crate) fn corpus(target: &str) -> Vec<PathBuf> {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut files = Vec::new();
        for dir in ["corpus", "regressions"] {
            if let Ok(rd) = fs::read_dir(fuzz.join(dir).join(target)) {
                files.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
            }
        }
        files.sort();
        assert!(!files.is_empty(), "no corpus for {target} under {}", fuzz.display());
        files
    }

    #[test]
    fn unpack_layer_corpus_replays() {
        for f in corpus("unpack_layer") {
            eprintln!("{}", f.display());
            unpack_layer(&fs::read(&f).unwrap());
        }
    }

    #[test]
    fn metadata_corpus_replays() {
        for f in corpus("metadata") {
            eprintln!("{}", f.display());
            metadata(&fs::read(&f).unwrap());
        }
    }
}
