//! `docker save`: images from the store as a docker-archive or an oci-archive, and the OCI
//! manifest `push` sends. Both need each layer's stored blob (pulled, loaded or imported
//! layers keep one); a layer without one cannot be exported byte-identically and is refused.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};

use serde_json::json;
use tempfile::NamedTempFile;

use crate::compress::decompress;
use crate::digest::{short, Hashing};
use crate::error::{io_err, Error, Result};
use crate::store::{Store, METADATA_LIMIT};

/// One image to export: what the engine recorded about it.
#[derive(Debug, Clone)]
pub struct SaveImage {
    pub id: String,
    pub diff_ids: Vec<String>,
    /// The stored blob of each layer, aligned with `diff_ids`.
    pub layer_blobs: Vec<Option<String>>,
    /// Names to record (`bb:latest`, `registry:5000/team/app:1`).
    pub names: Vec<String>,
}

/// The archive formats `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `manifest.json` + config + uncompressed layers (Docker's `docker save`).
    Docker,
    /// `oci-layout` + `index.json` + `blobs/sha256/` (layers as stored, compressed or not).
    Oci,
}

/// A layer as it goes into a manifest.
#[derive(Debug, Clone)]
pub struct LayerBlob {
    pub digest: String,
    pub size: u64,
    pub media_type: &'static str,
}

/// An OCI image manifest for a stored image: its bytes, digest, config size and layers.
#[derive(Debug, Clone)]
pub struct BuiltManifest {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub config_size: u64,
    pub layers: Vec<LayerBlob>,
}

fn tar_err(what: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io { context: format!("write archive: {what}"), source }
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

impl Store {
    fn layer_blob(&self, img: &SaveImage, i: usize) -> Result<String> {
        match img.layer_blobs.get(i).cloned().flatten() {
            Some(b) if self.has_blob(&b) => Ok(b),
            _ => Err(Error::NotFound(format!(
                "stored blob of layer {} of image {} (imported before cove kept layer blobs: import or load it again)",
                short(&img.diff_ids[i]),
                short(&img.id)
            ))),
        }
    }

    /// The OCI manifest of an image: its config and each layer's stored blob, with the media
    /// type the blob's compression calls for.
    pub fn build_manifest(&self, img: &SaveImage) -> Result<BuiltManifest> {
        let config_size = self.read_blob(&img.id, METADATA_LIMIT)?.len() as u64;
        let mut layers = Vec::new();
        for i in 0..img.diff_ids.len() {
            let digest = self.layer_blob(img, i)?;
            let path = self.blob_path(&digest)?;
            let size = std::fs::metadata(&path).map_err(io_err(format!("stat blob {}", short(&digest))))?.len();
            let media_type = match self.blob_compression(&digest)? {
                "gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
                "zstd" => "application/vnd.oci.image.layer.v1.tar+zstd",
                "none" => "application/vnd.oci.image.layer.v1.tar",
                other => return Err(Error::Unsupported(format!("layer blob compressed with {other}"))),
            };
            layers.push(LayerBlob { digest, size, media_type });
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": img.id, "size": config_size },
            "layers": layers.iter().map(|l| json!({ "mediaType": l.media_type, "digest": l.digest, "size": l.size })).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|source| Error::Json { context: "encode manifest".into(), source })?;
        let digest = crate::digest::sha256_of(&bytes);
        Ok(BuiltManifest { bytes, digest, config_size, layers })
    }

    /// Writes `images` to `out` as one archive.
    pub fn save(&self, images: &[SaveImage], format: ArchiveFormat, out: impl Write) -> Result<()> {
        let mut tar = tar::Builder::new(out);
        let mut written: HashSet<String> = HashSet::new();
        match format {
            ArchiveFormat::Docker => {
                let mut entries = Vec::new();
                for img in images {
                    let hex = img.id.trim_start_matches("sha256:");
                    let config_name = format!("blobs/sha256/{hex}");
                    if written.insert(img.id.clone()) {
                        let config = self.read_blob(&img.id, METADATA_LIMIT)?;
                        tar.append_data(&mut header(config.len() as u64), &config_name, &config[..])
                            .map_err(tar_err(&config_name))?;
                    }
                    let mut layer_names = Vec::new();
                    for (i, diff_id) in img.diff_ids.iter().enumerate() {
                        let name = format!("blobs/sha256/{}", diff_id.trim_start_matches("sha256:"));
                        if written.insert(diff_id.clone()) {
                            let blob = self.layer_blob(img, i)?;
                            self.append_uncompressed(&mut tar, &blob, diff_id, &name)?;
                        }
                        layer_names.push(name);
                    }
                    entries.push(json!({ "Config": config_name, "RepoTags": img.names, "Layers": layer_names }));
                }
                let manifest = serde_json::to_vec(&entries)
                    .map_err(|source| Error::Json { context: "encode manifest.json".into(), source })?;
                tar.append_data(&mut header(manifest.len() as u64), "manifest.json", &manifest[..])
                    .map_err(tar_err("manifest.json"))?;
            }
            ArchiveFormat::Oci => {
                let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
                tar.append_data(&mut header(layout.len() as u64), "oci-layout", &layout[..])
                    .map_err(tar_err("oci-layout"))?;
                let mut index = Vec::new();
                for img in images {
                    let built = self.build_manifest(img)?;
                    let mut blobs: Vec<(String, Option<Vec<u8>>)> =
                        vec![(img.id.clone(), None), (built.digest.clone(), Some(built.bytes.clone()))];
                    blobs.extend(built.layers.iter().map(|l| (l.digest.clone(), None)));
                    for (digest, bytes) in blobs {
                        if !written.insert(digest.clone()) {
                            continue;
                        }
                        let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
                        match bytes {
                            Some(b) => tar.append_data(&mut header(b.len() as u64), &name, &b[..]),
                            None => {
                                let path = self.blob_path(&digest)?;
                                let f = File::open(&path).map_err(io_err(format!("open blob {}", short(&digest))))?;
                                let len = f.metadata().map_err(io_err(format!("stat blob {}", short(&digest))))?.len();
                                tar.append_data(&mut header(len), &name, f)
                            }
                        }
                        .map_err(tar_err(&name))?;
                    }
                    let desc = |annotations: serde_json::Value| json!({ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": built.digest, "size": built.bytes.len(), "annotations": annotations });
                    if img.names.is_empty() {
                        index.push(desc(json!({})));
                    }
                    for n in &img.names {
                        let tag = n.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/')).unwrap_or("latest");
                        index.push(desc(
                            json!({ "io.containerd.image.name": n, "org.opencontainers.image.ref.name": tag }),
                        ));
                    }
                }
                let index = serde_json::to_vec(&json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index }))
                    .map_err(|source| Error::Json {
                        context: "encode index.json".into(),
                        source,
                    })?;
                tar.append_data(&mut header(index.len() as u64), "index.json", &index[..])
                    .map_err(tar_err("index.json"))?;
            }
        }
        tar.into_inner().map_err(tar_err("finish"))?.flush().map_err(tar_err("flush"))?;
        Ok(())
    }

    /// Appends a layer as an uncompressed tar (its content hashing to `diff_id`).
    fn append_uncompressed<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        blob: &str,
        diff_id: &str,
        name: &str,
    ) -> Result<()> {
        let path = self.blob_path(blob)?;
        let mut file = File::open(&path).map_err(io_err(format!("open blob {}", short(blob))))?;
        if self.blob_compression(blob)? == "none" && blob == diff_id {
            let len = file.metadata().map_err(io_err(format!("stat blob {}", short(blob))))?.len();
            return tar.append_data(&mut header(len), name, file).map_err(tar_err(name));
        }
        let mut tmp = NamedTempFile::with_prefix_in(crate::store::tmp_prefix("save"), self.tmp_dir())
            .map_err(io_err("create temporary file"))?;
        let (actual, len) = {
            let label = format!("layer {}", short(diff_id));
            let plain = decompress(&mut file, &label)?;
            let mut h = Hashing::with_tee(plain, Some(tmp.as_file_mut()));
            h.drain().map_err(io_err(format!("{label}: decompress")))?;
            h.finish()
        };
        if actual != diff_id {
            return Err(Error::DigestMismatch {
                what: format!("layer {}", short(diff_id)),
                expected: diff_id.to_owned(),
                actual,
            });
        }
        let f = File::open(tmp.path()).map_err(io_err("reopen temporary file"))?;
        tar.append_data(&mut header(len), name, f).map_err(tar_err(name))
    }
}
