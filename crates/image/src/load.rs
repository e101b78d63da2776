//! `docker load`: docker-archive and OCI archives/layouts into the store.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::Path;

use oci_spec::image::{Arch, ImageConfiguration, Os};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tempfile::NamedTempFile;

use crate::apply::{UnpackOptions, UnpackReport};
use crate::archive::{read_limited, DirSource, Source, TarSource};
use crate::compress::{decompress, is_compressed};
use crate::digest::{digest_hex, sha256_of, short};
use crate::error::{format_err, io_err, Error, Result};
use crate::store::{LayerSpec, LoadedImage, Store, METADATA_LIMIT};

const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One entry of a docker-archive `manifest.json`.
#[derive(Debug, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayout {
    image_layout_version: String,
}

/// A layer as an archive refers to it.
struct LayerRef {
    member: String,
    blob: Option<String>,
    size: Option<u64>,
}

fn parse<T: DeserializeOwned>(bytes: &[u8], context: impl Into<String>) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json { context: context.into(), source })
}

/// `sha256:<hex>` when a member name embeds a digest: `blobs/sha256/<hex>` or
/// `<hex>.json` (docker-archive configs).
fn digest_in_name(name: &str) -> Option<String> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let hex = base.strip_suffix(".json").unwrap_or(base);
    let digest = format!("sha256:{hex}");
    digest_hex(&digest).is_ok().then_some(digest)
}

fn blob_member(digest: &str) -> Result<String> {
    Ok(format!("blobs/sha256/{}", digest_hex(digest)?))
}

impl Store {
    /// `docker load`: reads a docker-archive tar (`manifest.json`; both the legacy
    /// `<id>/layer.tar` layout and the newer `blobs/sha256/` one), an oci-archive tar
    /// (`oci-layout` + `index.json`), either of them gzip-compressed, or a directory
    /// holding an OCI image layout or an extracted docker-archive. When both
    /// `manifest.json` and `index.json` exist (Docker 25+ `docker save`), the
    /// docker-archive view is used.
    ///
    /// Returns every image with its tags: `RepoTags` for docker-archive; for OCI the
    /// `io.containerd.image.name` annotation, else `org.opencontainers.image.ref.name`
    /// when it is a full reference (a bare tag like `latest` names no repository and is
    /// ignored). Names are returned as written (e.g. `docker.io/library/busybox:latest`).
    /// An index with several platforms yields the host's one.
    ///
    /// Every digest is verified (configs, manifests, compressed layers, diff_ids). On
    /// error no image is returned; layers already verified and placed stay in the store
    /// (they are complete, shareable content; [`Store::list_layers`] finds orphans).
    pub fn load(&self, path: &Path, opts: &UnpackOptions) -> Result<Vec<LoadedImage>> {
        let shown = path.display().to_string();
        let meta = fs::metadata(path).map_err(io_err(format!("load {shown}")))?;
        let mut _decompressed: Option<NamedTempFile> = None;
        let source: Box<dyn Source> = if meta.is_dir() {
            Box::new(DirSource::new(path))
        } else {
            let file = File::open(path).map_err(io_err(format!("open {shown}")))?;
            let mut buffered = BufReader::new(file);
            if is_compressed(&mut buffered).map_err(io_err(format!("read {shown}")))? {
                // Members are read by offset, so a compressed archive is expanded first.
                let mut tmp = NamedTempFile::with_prefix_in(crate::store::tmp_prefix("archive"), self.tmp_dir())
                    .map_err(io_err("create temporary file"))?;
                let mut decoded = decompress(&mut buffered, &shown)?;
                io::copy(&mut decoded, tmp.as_file_mut()).map_err(io_err(format!("decompress {shown}")))?;
                let source = TarSource::open(tmp.path(), shown.clone())?;
                _decompressed = Some(tmp);
                Box::new(source)
            } else {
                Box::new(TarSource::open(path, shown.clone())?)
            }
        };
        let images = if source.exists("manifest.json") {
            self.load_docker(&*source, opts)?
        } else if source.exists("index.json") {
            self.load_oci(&*source, opts)?
        } else {
            return Err(format_err(
                shown,
                "not an image archive: neither manifest.json (docker-archive) nor index.json (OCI)",
            ));
        };
        Ok(merge_by_id(images))
    }

    fn load_docker(&self, src: &dyn Source, opts: &UnpackOptions) -> Result<Vec<LoadedImage>> {
        let what = format!("{}: manifest.json", src.describe());
        let entries: Vec<DockerManifestEntry> =
            parse(&read_limited(src, "manifest.json", METADATA_LIMIT)?, what.clone())?;
        if entries.is_empty() {
            return Err(format_err(what, "lists no images"));
        }
        let mut images = Vec::new();
        for entry in entries {
            let config = read_limited(src, &entry.config, METADATA_LIMIT)?;
            if let Some(expected) = digest_in_name(&entry.config) {
                let actual = sha256_of(&config);
                if actual != expected {
                    return Err(Error::DigestMismatch {
                        what: format!("{}: config {}", src.describe(), entry.config),
                        expected,
                        actual,
                    });
                }
            }
            let layers = entry
                .layers
                .iter()
                .map(|member| LayerRef {
                    member: member.clone(),
                    blob: digest_in_name(member).filter(|_| member.starts_with("blobs/")),
                    size: None,
                })
                .collect();
            let tags = entry.repo_tags.unwrap_or_default();
            images.push(self.assemble(src, config, layers, tags, None, opts)?);
        }
        Ok(images)
    }

    fn load_oci(&self, src: &dyn Source, opts: &UnpackOptions) -> Result<Vec<LoadedImage>> {
        let shown = src.describe().to_owned();
        if !src.exists("oci-layout") {
            return Err(format_err(shown, "index.json without oci-layout"));
        }
        let layout: OciLayout =
            parse(&read_limited(src, "oci-layout", METADATA_LIMIT)?, format!("{shown}: oci-layout"))?;
        if layout.image_layout_version != "1.0.0" {
            tracing::debug!(version = %layout.image_layout_version, "unknown OCI layout version");
        }
        let index: Index = parse(&read_limited(src, "index.json", METADATA_LIMIT)?, format!("{shown}: index.json"))?;
        let mut found: Vec<(Descriptor, Vec<String>)> = Vec::new();
        for desc in index.manifests {
            let tags = tags_of(&desc);
            let Some(manifest) = resolve_manifest(src, &desc, 0)? else {
                continue;
            };
            match found.iter_mut().find(|(d, _)| d.digest == manifest.digest) {
                Some((_, t)) => t.extend(tags),
                None => found.push((manifest, tags)),
            }
        }
        if found.is_empty() {
            return Err(format_err(format!("{shown}: index.json"), "lists no image manifest"));
        }
        let mut images = Vec::new();
        for (desc, tags) in found {
            let bytes = read_desc(src, &desc)?;
            let manifest: Manifest = parse(&bytes, format!("{shown}: manifest {}", short(&desc.digest)))?;
            let config = read_desc(src, &manifest.config)?;
            let mut layers = Vec::new();
            for l in &manifest.layers {
                let member = blob_member(&l.digest)?;
                if !src.exists(&member) {
                    let mt = l.media_type.as_deref().unwrap_or("");
                    if mt.contains("foreign") || mt.contains("nondistributable") {
                        return Err(Error::Unsupported(format!(
                            "{shown}: foreign layer {} (not in the archive)",
                            short(&l.digest)
                        )));
                    }
                    return Err(Error::NotFound(format!("{shown}: layer blob {}", l.digest)));
                }
                layers.push(LayerRef { member, blob: Some(l.digest.clone()), size: l.size });
            }
            images.push(self.assemble(src, config, layers, tags, Some((desc.digest, bytes)), opts)?);
        }
        Ok(images)
    }

    /// Unpacks the layers of one image (verifying diff_ids) and stores its config and
    /// manifest blobs last, so a failed layer leaves no config behind.
    fn assemble(
        &self,
        src: &dyn Source,
        config_bytes: Vec<u8>,
        layers: Vec<LayerRef>,
        repo_tags: Vec<String>,
        manifest: Option<(String, Vec<u8>)>,
        opts: &UnpackOptions,
    ) -> Result<LoadedImage> {
        let id = sha256_of(&config_bytes);
        let what = format!("{}: config {}", src.describe(), short(&id));
        let config: ImageConfiguration = parse(&config_bytes, what.clone())?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != layers.len() {
            return Err(format_err(
                what,
                format!("lists {} diff_ids but the manifest has {} layers", diff_ids.len(), layers.len()),
            ));
        }
        for d in &diff_ids {
            digest_hex(d)?;
        }
        let mut report = UnpackReport::default();
        let mut size = 0;
        let mut blobs = Vec::new();
        let mut layer_blobs = Vec::new();
        for (layer, diff_id) in layers.iter().zip(&diff_ids) {
            let spec = LayerSpec {
                label: short(diff_id),
                blob: layer.blob.as_deref().map(|b| (b, layer.size)),
                diff_id: Some(diff_id),
            };
            let done = self.ensure_layer(|| src.open(&layer.member), spec, opts)?;
            size += done.size;
            report.merge(&done.report);
            blobs.extend(done.blob.clone());
            layer_blobs.push(done.blob);
        }
        self.put_bytes(&config_bytes)?;
        blobs.push(id.clone());
        let manifest_digest = match manifest {
            Some((digest, bytes)) => {
                self.write_blob(&bytes[..], Some(&digest))?;
                blobs.push(digest.clone());
                Some(digest)
            }
            None => None,
        };
        tracing::info!(image = %short(&id), tags = ?repo_tags, layers = diff_ids.len(), "image loaded");
        Ok(LoadedImage { id, config, diff_ids, repo_tags, size, manifest_digest, blobs, layer_blobs, report })
    }
}

/// Reads and verifies the blob a descriptor points to (metadata only: size-capped).
fn read_desc(src: &dyn Source, desc: &Descriptor) -> Result<Vec<u8>> {
    let member = blob_member(&desc.digest)?;
    if let Some(size) = desc.size.filter(|s| *s > METADATA_LIMIT) {
        return Err(Error::TooLarge {
            what: format!("{}: {member} ({size} bytes)", src.describe()),
            limit: METADATA_LIMIT,
        });
    }
    let bytes = read_limited(src, &member, METADATA_LIMIT)?;
    let what = format!("{}: blob {}", src.describe(), short(&desc.digest));
    let actual = sha256_of(&bytes);
    if actual != desc.digest {
        return Err(Error::DigestMismatch { what, expected: desc.digest.clone(), actual });
    }
    if let Some(size) = desc.size.filter(|s| *s != bytes.len() as u64) {
        return Err(Error::SizeMismatch { what, expected: size, actual: bytes.len() as u64 });
    }
    Ok(bytes)
}

enum Kind {
    Manifest,
    Index,
}

/// Follows `desc` to an image manifest: itself, or the host platform's entry of an
/// index. `None` for descriptors that are not images (attestations, artifacts).
fn resolve_manifest(src: &dyn Source, desc: &Descriptor, depth: u32) -> Result<Option<Descriptor>> {
    if depth > 4 {
        return Err(format_err(src.describe(), "image indexes nested too deep"));
    }
    let kind = match desc.media_type.as_deref() {
        Some(MT_OCI_MANIFEST | MT_DOCKER_MANIFEST) => Kind::Manifest,
        Some(MT_OCI_INDEX | MT_DOCKER_LIST) => Kind::Index,
        Some(other) => {
            tracing::debug!(media_type = other, digest = %desc.digest, "not an image; skipped");
            return Ok(None);
        }
        None => {
            let value: serde_json::Value =
                parse(&read_desc(src, desc)?, format!("{}: blob {}", src.describe(), short(&desc.digest)))?;
            if value.get("manifests").is_some() {
                Kind::Index
            } else if value.get("layers").is_some() && value.get("config").is_some() {
                Kind::Manifest
            } else {
                return Ok(None);
            }
        }
    };
    match kind {
        Kind::Manifest => Ok(Some(desc.clone())),
        Kind::Index => {
            let what = format!("{}: index {}", src.describe(), short(&desc.digest));
            let index: Index = parse(&read_desc(src, desc)?, what.clone())?;
            let chosen = choose_platform(&index.manifests, &what)?;
            resolve_manifest(src, chosen, depth + 1)
        }
    }
}

/// The host platform's manifest; or the only image manifest there is.
fn choose_platform<'a>(manifests: &'a [Descriptor], what: &str) -> Result<&'a Descriptor> {
    let os = Os::default().to_string();
    let arch = Arch::default().to_string();
    let host = manifests.iter().find(|m| m.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == arch));
    if let Some(m) = host {
        return Ok(m);
    }
    // Buildx attestation manifests say unknown/unknown.
    let images: Vec<_> = manifests.iter().filter(|m| m.platform.as_ref().is_none_or(|p| p.os != "unknown")).collect();
    match images.as_slice() {
        [only] => {
            tracing::warn!(index = what, "no manifest for {os}/{arch}; loading the only one");
            Ok(only)
        }
        _ => Err(format_err(what, format!("no manifest for {os}/{arch}"))),
    }
}

fn tags_of(desc: &Descriptor) -> Vec<String> {
    let Some(ann) = desc.annotations.as_ref() else {
        return Vec::new();
    };
    if let Some(name) = ann.get(ANNOTATION_IMAGE_NAME) {
        return vec![name.clone()];
    }
    match ann.get(ANNOTATION_REF_NAME) {
        Some(r) if r.contains(':') || r.contains('/') => vec![r.clone()],
        Some(r) => {
            tracing::debug!(ref_name = %r, "bare OCI ref name names no repository; ignored");
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// The metadata decoding of `load` over arbitrary bytes (the fuzz module's `metadata` entry calls it).
pub(crate) fn fuzz_metadata(data: &[u8]) {
    let check = |e: Error| {
        let s = e.to_string();
        assert!(!s.is_empty() && !s.contains('\n'), "error is not one line: {s:?}");
    };
    // Members named by a manifest, looked for where there are none: the errors name them.
    let nowhere = DirSource::new(Path::new("/nonexistent/cove-fuzz"));
    if let Ok(entries) = parse::<Vec<DockerManifestEntry>>(data, "manifest.json").map_err(check) {
        for e in &entries {
            let _ = digest_in_name(&e.config);
            let _ = read_limited(&nowhere, &e.config, METADATA_LIMIT).map_err(check);
            for l in &e.layers {
                let _ = digest_in_name(l).filter(|_| l.starts_with("blobs/"));
                let _ = read_limited(&nowhere, l, METADATA_LIMIT).map_err(check);
            }
        }
    }
    if let Ok(index) = parse::<Index>(data, "index.json").map_err(check) {
        for d in &index.manifests {
            let _ = tags_of(d);
            let _ = blob_member(&d.digest).map_err(check);
        }
        let _ = choose_platform(&index.manifests, "index.json").map_err(check);
    }
    if let Ok(m) = parse::<Manifest>(data, "manifest").map_err(check) {
        for d in std::iter::once(&m.config).chain(&m.layers) {
            let _ = blob_member(&d.digest).map_err(check);
        }
    }
    let _ = parse::<OciLayout>(data, "oci-layout").map_err(check);
}

/// One image per id: archives may list an image twice under different names.
fn merge_by_id(images: Vec<LoadedImage>) -> Vec<LoadedImage> {
    let mut out: Vec<LoadedImage> = Vec::new();
    for image in images {
        match out.iter_mut().find(|i| i.id == image.id) {
            Some(existing) => {
                for tag in image.repo_tags {
                    if !existing.repo_tags.contains(&tag) {
                        existing.repo_tags.push(tag);
                    }
                }
                for blob in image.blobs {
                    if !existing.blobs.contains(&blob) {
                        existing.blobs.push(blob);
                    }
                }
                existing.manifest_digest = existing.manifest_digest.take().or(image.manifest_digest);
            }
            None => out.push(image),
        }
    }
    out
}
