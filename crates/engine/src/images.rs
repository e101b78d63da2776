//! Image verbs over the store and the database: import, load, list, tag, remove, inspect.

use crate::db::{now_rfc3339, Db, ImageRow};
use crate::{Error, Result};
use cove_image::{LoadedImage, Store, UnpackOptions};

/// Finds an image by name (`bb`, `bb:v1`, `docker.io/library/bb`), full id or unique id
/// prefix (with or without `sha256:`).
pub fn resolve(db: &Db, name: &str) -> Result<ImageRow> {
    if let Ok(n) = cove_oci::normalize_image_name(name) {
        if let Some(id) = db.tag_target(&n)? {
            return db.image(&id)?.ok_or_else(|| Error::NotFound(format!("image {name:?} not found")));
        }
    }
    let hexpart = name.strip_prefix("sha256:").unwrap_or(name);
    if hexpart.len() >= 3 && hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
        let ids = db.image_ids_by_prefix(&format!("sha256:{hexpart}"))?;
        match ids.len() {
            1 => return db.image(&ids[0])?.ok_or_else(|| Error::NotFound(format!("image {name:?} not found"))),
            2 => return Err(Error::Conflict(format!("image id prefix {name:?} is ambiguous"))),
            _ => {}
        }
    }
    Err(Error::NotFound(format!("image {name:?} not found")))
}

/// Records a loaded image and its tags (moving a tag that pointed elsewhere, as Docker does).
pub fn record(db: &mut Db, img: &LoadedImage, extra_tags: &[String]) -> Result<()> {
    let config = serde_json::to_string(&img.config).map_err(|e| Error::Other(format!("encode image config: {e}")))?;
    let created = img.config.created().clone().unwrap_or_else(now_rfc3339);
    let mut tags: Vec<String> = vec![];
    for t in img.repo_tags.iter().chain(extra_tags) {
        tags.push(cove_oci::normalize_image_name(t)?);
    }
    let new = crate::db::NewImage {
        id: &img.id,
        config: &config,
        diff_ids: &img.diff_ids,
        size: img.size as i64,
        created: &created,
        digest: img.manifest_digest.as_deref(),
        layer_blobs: &img.layer_blobs,
    };
    cove_sys::fault::point("image.before-record");
    db.record_image(&new, &tags)?;
    cove_sys::fault::point("image.after-record");
    Ok(())
}

/// Layer blobs are kept (for push and save) for everything imported, loaded or pulled.
fn keeping_blobs(opts: &UnpackOptions) -> UnpackOptions {
    UnpackOptions { keep_layer_blobs: true, ..opts.clone() }
}

/// What `save` and `push` need to know about an image: its layers' stored blobs.
pub fn save_image(db: &Db, img: &ImageRow, names: Vec<String>) -> Result<cove_image::SaveImage> {
    let layer_blobs = db.layer_blobs(&img.id, &img.diff_ids)?;
    Ok(cove_image::SaveImage { id: img.id.clone(), diff_ids: img.diff_ids.clone(), layer_blobs, names })
}

/// Every blob some image still needs: configs and layer blobs.
pub fn referenced_blobs(db: &Db) -> Result<std::collections::HashSet<String>> {
    let mut set: std::collections::HashSet<String> = db.images()?.into_iter().map(|i| i.id).collect();
    set.extend(db.all_layer_blobs()?);
    Ok(set)
}

/// Applies `docker import --change` instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER,
/// LABEL, EXPOSE, STOPSIGNAL) to an image config.
pub fn apply_changes(cfg: &mut oci_spec::image::Config, changes: &[String]) -> Result<()> {
    for ch in changes {
        let ch = ch.trim();
        let (instr, rest) = ch.split_once(char::is_whitespace).unwrap_or((ch, ""));
        let rest = rest.trim();
        let list = |s: &str| -> Result<Vec<String>> {
            if s.starts_with('[') {
                serde_json::from_str::<Vec<String>>(s)
                    .map_err(|e| Error::Invalid(format!("--change {ch:?}: bad JSON array: {e}")))
            } else {
                Ok(vec!["/bin/sh".into(), "-c".into(), s.to_string()])
            }
        };
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => {
                cfg.set_cmd(Some(list(rest)?));
            }
            "ENTRYPOINT" => {
                cfg.set_entrypoint(Some(list(rest)?));
            }
            "WORKDIR" => {
                cfg.set_working_dir(Some(rest.to_string()));
            }
            "USER" => {
                cfg.set_user(Some(rest.to_string()));
            }
            "STOPSIGNAL" => {
                cfg.set_stop_signal(Some(rest.to_string()));
            }
            "ENV" => {
                let mut env = cfg.env().clone().unwrap_or_default();
                let kv = match rest.split_once('=') {
                    Some(_) => rest.to_string(),
                    None => match rest.split_once(char::is_whitespace) {
                        Some((k, v)) => format!("{k}={}", v.trim()),
                        None => return Err(Error::Invalid(format!("--change {ch:?}: ENV needs a value"))),
                    },
                };
                let key = kv.split('=').next().unwrap_or("").to_string();
                env.retain(|e| e.split('=').next() != Some(&key));
                env.push(kv);
                cfg.set_env(Some(env));
            }
            "LABEL" => {
                let (k, v) = rest
                    .split_once('=')
                    .ok_or_else(|| Error::Invalid(format!("--change {ch:?}: LABEL needs key=value")))?;
                let mut l = cfg.labels().clone().unwrap_or_default();
                l.insert(k.trim_matches('"').to_string(), v.trim_matches('"').to_string());
                cfg.set_labels(Some(l));
            }
            "EXPOSE" => {
                let mut p = cfg.exposed_ports().clone().unwrap_or_default();
                for port in rest.split_whitespace() {
                    p.push(if port.contains('/') { port.to_string() } else { format!("{port}/tcp") });
                }
                cfg.set_exposed_ports(Some(p));
            }
            other => return Err(Error::Invalid(format!("--change: unsupported instruction {other:?}"))),
        }
    }
    Ok(())
}

/// `cove import FILE|- [REF]`.
pub fn import(
    db: &mut Db,
    store: &Store,
    reader: impl std::io::Read,
    reference: Option<&str>,
    changes: &[String],
    opts: &UnpackOptions,
) -> Result<String> {
    let tag = reference.map(cove_oci::normalize_image_name).transpose()?;
    let mut cfg = oci_spec::image::Config::default();
    apply_changes(&mut cfg, changes)?;
    let img = store.import_rootfs(reader, cove_image::import_config(cfg, "imported by cove"), &keeping_blobs(opts))?;
    record(db, &img, tag.as_slice())?;
    Ok(img.id)
}

/// `cove load -i FILE`: returns `(id, tags)` of every image loaded.
pub fn load(
    db: &mut Db,
    store: &Store,
    path: &std::path::Path,
    opts: &UnpackOptions,
) -> Result<Vec<(String, Vec<String>)>> {
    let imgs = store.load(path, &keeping_blobs(opts))?;
    let mut out = vec![];
    for img in &imgs {
        record(db, img, &[])?;
        out.push((img.id.clone(), img.repo_tags.clone()));
    }
    Ok(out)
}

/// `cove tag SRC NEW`.
pub fn tag(db: &mut Db, src: &str, new: &str) -> Result<()> {
    let img = resolve(db, src)?;
    let n = cove_oci::normalize_image_name(new)?;
    db.tag_image(&n, &img.id)
}

/// What `rmi` did, in Docker's words.
#[derive(Debug, Default)]
pub struct Removed {
    pub untagged: Vec<String>,
    pub deleted: Vec<String>,
}

/// `cove rmi [-f] NAME`: untags; deletes the image when no tag and no container is left.
pub fn remove(db: &mut Db, store: &Store, name: &str, force: bool) -> Result<Removed> {
    let img = resolve(db, name)?;
    let by_name = cove_oci::normalize_image_name(name)
        .ok()
        .filter(|n| db.tag_target(n).ok().flatten().as_deref() == Some(img.id.as_str()));
    let tags: Vec<String> = db.tags()?.into_iter().filter(|(_, id)| *id == img.id).map(|(n, _)| n).collect();
    let mut out = Removed::default();
    let users: Vec<String> = db.containers()?.into_iter().filter(|c| c.image_id == img.id).map(|c| c.name).collect();
    // Untag by name when the image has other tags; otherwise the image itself goes.
    if let Some(n) = &by_name {
        if tags.len() > 1 {
            db.untag(n)?;
            out.untagged.push(n.clone());
            return Ok(out);
        }
    } else if tags.len() > 1 && !force {
        return Err(Error::Conflict(format!(
            "unable to delete {} (must be forced) - image is referenced in multiple repositories",
            cove_oci::short_id(&img.id)
        )));
    }
    if !users.is_empty() {
        return Err(Error::Conflict(format!(
            "unable to remove image {name:?}: it is used by container(s) {} (remove them first)",
            users.join(", ")
        )));
    }
    let other_layers: std::collections::HashSet<String> =
        db.images()?.into_iter().filter(|i| i.id != img.id).flat_map(|i| i.diff_ids).collect();
    let blobs = save_image(db, &img, vec![])?.layer_blobs;
    db.delete_image(&img.id)?;
    let still_used = referenced_blobs(db)?;
    for b in blobs.iter().flatten().filter(|b| !still_used.contains(*b)) {
        if let Err(e) = store.remove_blob(b) {
            tracing::warn!("remove layer blob {b}: {e}");
        }
    }
    out.untagged.extend(tags);
    // Content goes after the rows: a crash in between leaves unreferenced files (garbage),
    // never rows that point at missing content.
    for d in img.diff_ids.iter().filter(|d| !other_layers.contains(*d)) {
        if let Err(e) = store.remove_layer(d) {
            tracing::warn!("remove layer {d}: {e}");
        }
    }
    if let Err(e) = store.remove_blob(&img.id) {
        tracing::debug!("remove config blob {}: {e}", img.id);
    }
    out.deleted.push(img.id);
    Ok(out)
}

/// Largest image file read from the host side (passwd, group).
const IMAGE_FILE_LIMIT: u64 = 16 << 20;

/// Reads a file of an image as its containers would see it, through the merged layers and
/// without ever leaving the image (symlinks are resolved inside it: see [`cove_image::ImageFs`]).
/// `Ok(None)`: the image has no such file.
pub fn read_image_file(store: &Store, img: &ImageRow, path: &str) -> Result<Option<String>> {
    let fs = store.image_fs(&img.diff_ids)?;
    Ok(fs.read(path, IMAGE_FILE_LIMIT)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// [`read_image_file`] for the user database: a file that cannot be read is treated as absent,
/// with a warning (a numeric `-u` still works, as with Docker; a name will not be found).
pub fn read_image_userdb(store: &Store, img: &ImageRow, path: &str) -> String {
    match read_image_file(store, img, path) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            crate::warn_user(format_args!("ignoring the image's {path}: {e}"));
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes() {
        let mut c = oci_spec::image::Config::default();
        apply_changes(
            &mut c,
            &[
                "CMD [\"sh\",\"-c\",\"x\"]".into(),
                "ENV A=1".into(),
                "ENV B 2".into(),
                "WORKDIR /w".into(),
                "ENTRYPOINT echo hi".into(),
                "EXPOSE 80 53/udp".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd().as_ref().unwrap(), &["sh", "-c", "x"]);
        assert_eq!(c.entrypoint().as_ref().unwrap(), &["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.env().as_ref().unwrap(), &["A=1", "B=2"]);
        assert_eq!(c.working_dir().as_deref(), Some("/w"));
        assert_eq!(c.exposed_ports().as_ref().unwrap(), &["80/tcp", "53/udp"]);
        assert!(apply_changes(&mut c, &["RUN x".into()]).is_err());
        assert!(apply_changes(&mut c, &["CMD [bad".into()]).is_err());
    }
}
