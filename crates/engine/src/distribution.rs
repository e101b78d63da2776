//! Images to and from registries and archives: pull, push, login, save, prune, disk usage.
//!
//! Pull: manifest (or the platform's entry of an index) -> config (verified) -> layers in
//! parallel, each streamed from the registry into `Store::put_layer`, which hashes while it
//! unpacks and keeps the verified blob; the image row and tag are written last, so a failed
//! pull leaves no image, and the next pull reuses every layer that was completed.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use cove_registry::manifest::{self, Parsed, Platform};
use cove_registry::{Client, ImageRef, Settings};

use crate::db::Db;
use crate::images;
use crate::state::Engine;
use crate::{Error, Result};

/// Layers downloaded at once.
const PARALLEL_LAYERS: usize = 6;

impl From<cove_registry::Error> for Error {
    fn from(e: cove_registry::Error) -> Error {
        Error::Other(e.to_string())
    }
}

/// What a pull or push reports as it goes (the CLI draws progress bars from these).
#[derive(Debug, Clone)]
pub enum Event {
    /// A layer starts: digest and size.
    Layer { digest: String, size: u64 },
    /// Bytes of a layer read from the registry.
    Bytes { digest: String, n: u64 },
    /// A layer is in the store (`reused`: nothing was downloaded) or on the registry.
    Done { digest: String, reused: bool },
}

pub type Progress<'a> = &'a (dyn Fn(Event) + Sync);

/// Registry options shared by pull, push and login.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `--tls-verify`: `None` lets the config file and loopback rule decide.
    pub tls_verify: Option<bool>,
    /// `--platform os/arch[/variant]` (pull only).
    pub platform: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Pulled {
    pub id: String,
    /// The digest the reference resolved to (the index's when there was one).
    pub digest: String,
    /// The local name the image is tagged with.
    pub name: String,
    pub reused: usize,
    pub downloaded: usize,
}

/// Resolves a user-given name against the configured default registry.
pub fn parse_ref(name: &str, rootless: bool) -> Result<ImageRef> {
    let cfg = crate::config::load(rootless)?;
    let default = cfg.default_registry.as_deref().unwrap_or(cove_registry::DOCKER_HUB);
    Ok(ImageRef::parse(name, default)?)
}

/// How to reach `registry`: insecure when asked, listed in the config file, or loopback.
pub fn settings(
    registry: &str,
    rootless: bool,
    tls_verify: Option<bool>,
    credentials: Option<cove_registry::auth::Credentials>,
) -> Result<Settings> {
    let cfg = crate::config::load(rootless)?;
    let insecure = match tls_verify {
        Some(v) => !v,
        None => cfg.insecure_registries.iter().any(|r| r == registry) || cove_registry::is_loopback(registry),
    };
    let credentials = match credentials {
        Some(c) => Some(c),
        None => cove_registry::auth::credentials_for(registry)?,
    };
    Ok(Settings { insecure, credentials })
}

/// Counts bytes for progress. Layers already downloading when another fails are finished,
/// so that a retry reuses them.
struct Counting<'a, R> {
    inner: R,
    digest: &'a str,
    progress: Progress<'a>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(Event::Bytes { digest: self.digest.to_owned(), n: n as u64 });
        Ok(n)
    }
}

/// `cove pull NAME`.
pub fn pull(eng: &mut Engine, name: &str, opts: &RegistryOptions, progress: Progress<'_>) -> Result<Pulled> {
    let r = parse_ref(name, eng.dirs.rootless)?;
    let local_name = cove_oci::normalize_image_name(name)?;
    let client = Client::new(&r.registry, &settings(&r.registry, eng.dirs.rootless, opts.tls_verify, None)?)?;
    let want = match &opts.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let shown = r.to_string();
    let top = client.manifest(&r.repository, r.reference(), manifest::ACCEPT_MANIFESTS)?;
    let m = match manifest::parse(&top.bytes, &top.media_type, &format!("manifest for {shown}"))? {
        Parsed::Manifest(m) => m,
        Parsed::Index(idx) => {
            let chosen = manifest::choose(&idx, &want, &format!("index for {shown}"))?;
            let child = client.manifest(&r.repository, &chosen.digest, manifest::ACCEPT_MANIFESTS)?;
            match manifest::parse(&child.bytes, &child.media_type, &format!("manifest {}", chosen.digest))? {
                Parsed::Manifest(m) => m,
                Parsed::Index(_) => {
                    return Err(Error::Invalid(format!("{shown}: nested image indexes are not supported")))
                }
            }
        }
    };
    let what = format!("manifest for {shown}");
    manifest::check_image(&m, &what)?;
    if m.config.size > cove_registry::METADATA_LIMIT {
        return Err(cove_registry::Error::TooLarge {
            what: format!("config of {shown} ({} bytes)", m.config.size),
            limit: cove_registry::METADATA_LIMIT,
        }
        .into());
    }
    let config_bytes = client.blob_bytes(&r.repository, &m.config.digest, cove_registry::METADATA_LIMIT)?;
    let config: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|e| Error::Invalid(format!("config of {shown}: {e}")))?;
    let diff_ids = config.rootfs().diff_ids().clone();
    if diff_ids.len() != m.layers.len() {
        return Err(Error::Invalid(format!(
            "{what}: {} layers, but the config lists {} diff_ids",
            m.layers.len(),
            diff_ids.len()
        )));
    }
    if opts.platform.is_some()
        && (config.os().to_string() != want.os || config.architecture().to_string() != want.architecture)
    {
        return Err(Error::Invalid(format!("{shown} is {}/{}, not {want}", config.os(), config.architecture())));
    }

    let unpack = eng.unpack_options();
    let store = &eng.store;
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let reused = AtomicUsize::new(0);
    let errors: Mutex<Vec<(usize, Error)>> = Mutex::new(vec![]);
    let sizes: Mutex<Vec<u64>> = Mutex::new(vec![0; m.layers.len()]);
    for l in &m.layers {
        progress(Event::Layer { digest: l.digest.clone(), size: l.size });
    }
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_LAYERS.min(m.layers.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= m.layers.len() || abort.load(Ordering::Relaxed) {
                    return;
                }
                let (layer, diff_id) = (&m.layers[i], &diff_ids[i]);
                let have_blob = store.has_blob(&layer.digest);
                let result = if have_blob && store.has_layer(diff_id) {
                    tracing::info!(layer = %layer.digest, "layer reused");
                    reused.fetch_add(1, Ordering::SeqCst);
                    store.layer_size(diff_id).map(|n| (n, true)).map_err(Error::from)
                } else if have_blob {
                    // Verified earlier (an interrupted pull): unpack from the stored blob.
                    tracing::info!(layer = %layer.digest, "layer reused");
                    reused.fetch_add(1, Ordering::SeqCst);
                    let path = store.blob_path(&layer.digest).map_err(Error::from);
                    path.and_then(|p| {
                        let open = || {
                            std::fs::File::open(&p)
                                .map(std::io::BufReader::new)
                                .map_err(|e| cove_image::Error::NotFound(format!("blob {}: {e}", layer.digest)))
                        };
                        store
                            .put_layer(open, &layer.digest, layer.size, diff_id, &unpack)
                            .map(|(n, _)| (n, true))
                            .map_err(Error::from)
                    })
                } else {
                    let open = || {
                        let body = client.blob(&r.repository, &layer.digest, Some(layer.size)).map_err(|e| {
                            cove_image::Error::Format {
                                context: format!("layer {}", layer.digest),
                                reason: e.to_string(),
                            }
                        })?;
                        Ok(std::io::BufReader::with_capacity(
                            256 * 1024,
                            Counting { inner: body, digest: &layer.digest, progress },
                        ))
                    };
                    store
                        .put_layer(open, &layer.digest, layer.size, diff_id, &unpack)
                        .map(|(n, _)| (n, false))
                        .map_err(Error::from)
                };
                match result {
                    Ok((n, was_reused)) => {
                        if let Ok(mut v) = sizes.lock() {
                            v[i] = n;
                        }
                        progress(Event::Done { digest: layer.digest.clone(), reused: was_reused });
                    }
                    Err(e) => {
                        abort.store(true, Ordering::SeqCst);
                        if let Ok(mut v) = errors.lock() {
                            v.push((i, e));
                        }
                        return;
                    }
                }
            });
        }
    });
    let mut errors = errors.into_inner().unwrap_or_default();
    errors.sort_by_key(|(i, _)| *i);
    if let Some((_, e)) = errors.into_iter().next() {
        return Err(e);
    }
    cove_sys::fault::point("pull.after-layers");
    store.put_blob(&config_bytes, &m.config.digest)?;
    cove_sys::fault::point("pull.after-config");
    let size = sizes.into_inner().unwrap_or_default().iter().sum();
    let reused = reused.into_inner();
    let img = cove_image::LoadedImage {
        id: m.config.digest.clone(),
        config,
        diff_ids: diff_ids.clone(),
        repo_tags: vec![],
        size,
        manifest_digest: Some(top.digest.clone()),
        blobs: vec![m.config.digest.clone()],
        layer_blobs: m.layers.iter().map(|l| Some(l.digest.clone())).collect(),
        report: Default::default(),
    };
    images::record(&mut eng.db, &img, std::slice::from_ref(&local_name))?;
    tracing::info!(image = %img.id, reference = %shown, reused, "pulled");
    Ok(Pulled { id: img.id, digest: top.digest, name: local_name, reused, downloaded: m.layers.len() - reused })
}

/// `cove push IMAGE [DEST]`: returns the manifest digest.
pub fn push(
    eng: &mut Engine,
    source: &str,
    dest: Option<&str>,
    opts: &RegistryOptions,
    progress: Progress<'_>,
) -> Result<String> {
    let img = images::resolve(&eng.db, source)?;
    let dest = dest.unwrap_or(source);
    let r = parse_ref(dest, eng.dirs.rootless)?;
    if r.digest.is_some() {
        return Err(Error::Invalid(format!("cannot push to a digest reference {dest:?}: give a tag")));
    }
    let save = images::save_image(&eng.db, &img, vec![])?;
    let built = eng.store.build_manifest(&save)?;
    let client = Client::new(&r.registry, &settings(&r.registry, eng.dirs.rootless, opts.tls_verify, None)?)?;
    let mut blobs: Vec<(String, u64)> = built.layers.iter().map(|l| (l.digest.clone(), l.size)).collect();
    blobs.push((img.id.clone(), built.config_size));
    for (d, size) in &blobs {
        progress(Event::Layer { digest: d.clone(), size: *size });
    }
    let next = AtomicUsize::new(0);
    let errors: Mutex<Vec<Error>> = Mutex::new(vec![]);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_LAYERS.min(blobs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= blobs.len() || errors.lock().map(|e| !e.is_empty()).unwrap_or(true) {
                    return;
                }
                let (digest, size) = &blobs[i];
                let res = (|| -> Result<bool> {
                    if client.blob_exists(&r.repository, digest)? {
                        return Ok(true);
                    }
                    let path = eng.store.blob_path(digest)?;
                    let f = std::fs::File::open(&path)
                        .map_err(|e| Error::Io { what: format!("open blob {digest}"), source: e })?;
                    client.upload_blob(&r.repository, digest, f)?;
                    progress(Event::Bytes { digest: digest.clone(), n: *size });
                    Ok(false)
                })();
                match res {
                    Ok(existed) => progress(Event::Done { digest: digest.clone(), reused: existed }),
                    Err(e) => {
                        if let Ok(mut v) = errors.lock() {
                            v.push(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = errors.into_inner().unwrap_or_default().into_iter().next() {
        return Err(e);
    }
    let tag = r.tag.as_deref().unwrap_or("latest");
    let digest = client.put_manifest(&r.repository, tag, manifest::OCI_MANIFEST, &built.bytes)?;
    tracing::info!(image = %img.id, dest = %r, %digest, "pushed");
    Ok(digest)
}

/// `cove login`: checks the credentials against the registry, then stores them.
pub fn login(
    registry: &str,
    creds: cove_registry::auth::Credentials,
    rootless: bool,
    tls_verify: Option<bool>,
) -> Result<std::path::PathBuf> {
    let registry = normalize_registry(registry);
    let client = Client::new(&registry, &settings(&registry, rootless, tls_verify, Some(creds.clone()))?)?;
    client.ping()?;
    Ok(cove_registry::auth::store_login(&registry, &creds)?)
}

/// `cove logout`.
pub fn logout(registry: &str) -> Result<bool> {
    Ok(cove_registry::auth::remove_login(&normalize_registry(registry))?)
}

/// `https://reg.example:5000/v2/` and `index.docker.io` become `reg.example:5000`, `docker.io`.
pub fn normalize_registry(s: &str) -> String {
    let s = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "" => cove_registry::DOCKER_HUB.to_owned(),
        h => h.to_owned(),
    }
}

/// `cove save`: the images `names` into one archive.
pub fn save(eng: &Engine, names: &[String], format: cove_image::ArchiveFormat, out: impl std::io::Write) -> Result<()> {
    let mut imgs = vec![];
    let tags = eng.db.tags()?;
    for n in names {
        let img = images::resolve(&eng.db, n)?;
        let by_name =
            cove_oci::normalize_image_name(n).ok().filter(|t| tags.iter().any(|(name, id)| name == t && *id == img.id));
        let names = match by_name {
            Some(t) => vec![t],
            None => tags.iter().filter(|(_, id)| *id == img.id).map(|(t, _)| t.clone()).collect(),
        };
        imgs.push(images::save_image(&eng.db, &img, names)?);
    }
    Ok(eng.store.save(&imgs, format, out)?)
}

/// Bytes allocated under `path`. Container directories hold what containers wrote (and may be
/// changing while we count): the walk goes by descriptor with `O_NOFOLLOW`, so a directory
/// swapped for a symlink is never followed out, and stops at a depth no real tree reaches.
fn du(path: &std::path::Path) -> u64 {
    use nix::fcntl::{openat, OFlag, AT_FDCWD};
    use nix::sys::stat::Mode;
    const DIR: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);
    fn walk(dir: std::os::fd::OwnedFd, depth: usize) -> u64 {
        use nix::sys::stat::{fstat, fstatat};
        let own = fstat(&dir).map(|s| s.st_blocks as u64 * 512).unwrap_or(0);
        let Ok(mut d) = nix::dir::Dir::from_fd(dir) else { return own };
        let names: Vec<std::ffi::CString> = d
            .iter()
            .flatten()
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        let mut total = own;
        for n in names {
            let Ok(st) = fstatat(&d, n.as_c_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) else { continue };
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR && depth < 256 {
                if let Ok(sub) = openat(&d, n.as_c_str(), DIR, Mode::empty()) {
                    total += walk(sub, depth + 1);
                }
            } else {
                total += st.st_blocks as u64 * 512;
            }
        }
        total
    }
    match openat(AT_FDCWD, path, DIR, Mode::empty()) {
        Ok(fd) => walk(fd, 0),
        Err(_) => {
            std::fs::symlink_metadata(path).map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512).unwrap_or(0)
        }
    }
}

/// `cove image prune [-a]`: removes dangling images (every unused one with `all`), then
/// blobs and layers no image references (left by failed or interrupted pulls and loads,
/// once they are older than `min_age`). Returns removed ids and bytes reclaimed.
pub fn prune(eng: &mut Engine, all: bool, min_age: std::time::Duration) -> Result<(Vec<String>, u64)> {
    let before = du(&eng.dirs.storage());
    let used: std::collections::HashSet<String> = eng.db.containers()?.into_iter().map(|c| c.image_id).collect();
    let tagged: std::collections::HashSet<String> = eng.db.tags()?.into_iter().map(|(_, id)| id).collect();
    let mut removed = vec![];
    for img in eng.db.images()? {
        if used.contains(&img.id) || (!all && tagged.contains(&img.id)) {
            continue;
        }
        let r = images::remove(&mut eng.db, &eng.store, &img.id, true)?;
        removed.extend(r.deleted);
    }
    gc(&eng.db, &eng.store, min_age)?;
    let after = du(&eng.dirs.storage());
    Ok((removed, before.saturating_sub(after)))
}

fn old_enough(path: &std::path::Path, min_age: std::time::Duration) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|e| e >= min_age)
}

fn gc(db: &Db, store: &cove_image::Store, min_age: std::time::Duration) -> Result<()> {
    let blobs = images::referenced_blobs(db)?;
    for b in store.list_blobs()? {
        if !blobs.contains(&b) && store.blob_path(&b).is_ok_and(|p| old_enough(&p, min_age)) {
            store.remove_blob(&b)?;
        }
    }
    let layers: std::collections::HashSet<String> = db.images()?.into_iter().flat_map(|i| i.diff_ids).collect();
    for l in store.list_layers()? {
        if !layers.contains(&l) && store.layer_dir(&l).is_ok_and(|p| old_enough(&p, min_age)) {
            store.remove_layer(&l)?;
        }
    }
    store.clean_tmp(min_age.max(std::time::Duration::from_secs(3600)))?;
    Ok(())
}

/// One row of `cove system df`.
#[derive(Debug, Clone)]
pub struct DfRow {
    pub kind: &'static str,
    pub total: usize,
    pub active: usize,
    pub size: u64,
    pub reclaimable: u64,
}

/// `cove system df`: images, containers and volumes with their disk use.
pub fn df(eng: &Engine) -> Result<Vec<DfRow>> {
    let containers = eng.db.containers()?;
    let used: std::collections::HashSet<&str> = containers.iter().map(|c| c.image_id.as_str()).collect();
    let imgs = eng.db.images()?;
    // Temporary entries are operations under way (those of dead ones are gone at open).
    let storage = du(&eng.dirs.storage()).saturating_sub(eng.store.tmp_size());
    let unused: u64 = imgs.iter().filter(|i| !used.contains(i.id.as_str())).map(|i| i.size.max(0) as u64).sum();
    let running = containers.iter().filter(|c| c.state == crate::db::ContainerState::Running).count();
    let csize: u64 = containers.iter().map(|c| du(&eng.dirs.container(&c.id))).sum();
    let cstopped: u64 = containers
        .iter()
        .filter(|c| c.state != crate::db::ContainerState::Running)
        .map(|c| du(&eng.dirs.container(&c.id)))
        .sum();
    let vols: Vec<std::path::PathBuf> =
        std::fs::read_dir(eng.dirs.volumes()).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    let vsize: u64 = vols.iter().map(|v| du(v)).sum();
    Ok(vec![
        DfRow {
            kind: "Images",
            total: imgs.len(),
            active: imgs.iter().filter(|i| used.contains(i.id.as_str())).count(),
            size: storage,
            reclaimable: unused.min(storage),
        },
        DfRow { kind: "Containers", total: containers.len(), active: running, size: csize, reclaimable: cstopped },
        DfRow { kind: "Local Volumes", total: vols.len(), active: 0, size: vsize, reclaimable: 0 },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names() {
        assert_eq!(normalize_registry("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_registry("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalize_registry("http://reg.example:5000/v2/"), "reg.example:5000");
    }
}
