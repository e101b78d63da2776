//! Credentials: read from `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `~/.config/containers/auth.json` and `~/.docker/config.json` (`$DOCKER_CONFIG/config.json`),
//! first match wins; `login` writes the containers file (the runtime one when
//! `XDG_RUNTIME_DIR` is set, else the one under `~/.config`). Credential helpers
//! (`credsStore`, `credHelpers`) are not run.

use base64::Engine as _;
use std::path::{Path, PathBuf};

use crate::{reference::DOCKER_HUB, Error, Result};

/// A user name and password (or token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    pub(crate) fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

fn env_path(k: &str) -> Option<PathBuf> {
    std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The file `login` writes.
pub fn login_file() -> Result<PathBuf> {
    if let Some(p) = env_path("REGISTRY_AUTH_FILE") {
        return Ok(p);
    }
    if let Some(d) = env_path("XDG_RUNTIME_DIR").filter(|d| d.is_dir()) {
        return Ok(d.join("containers/auth.json"));
    }
    let config = env_path("XDG_CONFIG_HOME").or_else(|| env_path("HOME").map(|h| h.join(".config")));
    config
        .map(|c| c.join("containers/auth.json"))
        .ok_or_else(|| Error::Invalid("neither XDG_RUNTIME_DIR nor HOME is set: nowhere to store credentials".into()))
}

/// Every file credentials are read from, in order.
pub fn search_path() -> Vec<PathBuf> {
    let mut v = Vec::new();
    v.extend(env_path("REGISTRY_AUTH_FILE"));
    if let Some(d) = env_path("XDG_RUNTIME_DIR") {
        v.push(d.join("containers/auth.json"));
    }
    if let Some(c) = env_path("XDG_CONFIG_HOME").or_else(|| env_path("HOME").map(|h| h.join(".config"))) {
        v.push(c.join("containers/auth.json"));
    }
    match env_path("DOCKER_CONFIG") {
        Some(d) => v.push(d.join("config.json")),
        None => v.extend(env_path("HOME").map(|h| h.join(".docker/config.json"))),
    }
    v
}

/// The key a registry is stored under, and the keys it may be found under.
fn keys(registry: &str) -> Vec<String> {
    if registry == DOCKER_HUB {
        vec![
            DOCKER_HUB.into(),
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![registry.into(), format!("https://{registry}"), format!("http://{registry}")]
    }
}

/// `https://host/v1/` and `host/some/repo` keys both name `host`.
fn key_host(key: &str) -> &str {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn decode(entry: &serde_json::Value, file: &Path) -> Result<Option<Credentials>> {
    if let (Some(u), Some(p)) =
        (entry.get("username").and_then(|v| v.as_str()), entry.get("password").and_then(|v| v.as_str()))
    {
        return Ok(Some(Credentials { username: u.into(), password: p.into() }));
    }
    let Some(auth) = entry.get("auth").and_then(|v| v.as_str()).filter(|a| !a.is_empty()) else { return Ok(None) };
    let bad =
        || Error::Invalid(format!("{}: invalid \"auth\" entry (expected base64 of user:password)", file.display()));
    let raw = base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (u, p) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some(Credentials { username: u.into(), password: p.into() }))
}

fn read_json(file: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read(file) {
        Ok(b) if b.len() as u64 > crate::METADATA_LIMIT => {
            Err(Error::TooLarge { what: file.display().to_string(), limit: crate::METADATA_LIMIT })
        }
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(None),
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| Error::Json { context: file.display().to_string(), source }),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied) => Ok(None),
        Err(e) => Err(crate::error::io_err(format!("read {}", file.display()))(e)),
    }
}

/// Credentials for `registry` from the first file that has an entry for it.
pub fn credentials_for(registry: &str) -> Result<Option<Credentials>> {
    let want = keys(registry);
    for file in search_path() {
        let Some(doc) = read_json(&file)? else { continue };
        let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else { continue };
        let hit = want
            .iter()
            .find_map(|k| auths.get(k))
            .or_else(|| auths.iter().find(|(k, _)| want.iter().any(|w| key_host(w) == key_host(k))).map(|(_, v)| v));
        if let Some(entry) = hit {
            if let Some(c) = decode(entry, &file)? {
                tracing::debug!(registry, file = %file.display(), "using stored credentials");
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

fn write_json(file: &Path, doc: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(crate::error::io_err(format!("create {}", dir.display())))?;
    let tmp = dir.join(format!(".auth.json.{}", std::process::id()));
    let text = serde_json::to_vec_pretty(doc)
        .map_err(|source| Error::Json { context: "encode credentials".into(), source })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(crate::error::io_err(format!("create {}", tmp.display())))?;
    f.write_all(&text)
        .and_then(|_| f.write_all(b"\n"))
        .map_err(crate::error::io_err(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, file).map_err(crate::error::io_err(format!("write {}", file.display())))
}

/// Stores credentials for `registry` in [`login_file`]; returns the file.
pub fn store_login(registry: &str, creds: &Credentials) -> Result<PathBuf> {
    let file = login_file()?;
    let mut doc = read_json(&file)?.unwrap_or_else(|| serde_json::json!({}));
    if !doc.is_object() {
        return Err(Error::Invalid(format!("{}: not a JSON object", file.display())));
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.username, creds.password));
    let auths = doc.as_object_mut().map(|o| o.entry("auths").or_insert_with(|| serde_json::json!({})));
    match auths.and_then(|a| a.as_object_mut()) {
        Some(a) => {
            a.insert(registry.to_owned(), serde_json::json!({ "auth": auth }));
        }
        None => return Err(Error::Invalid(format!("{}: \"auths\" is not an object", file.display()))),
    }
    write_json(&file, &doc)?;
    Ok(file)
}

/// Removes the entry for `registry` from [`login_file`]; false when there was none.
pub fn remove_login(registry: &str) -> Result<bool> {
    let file = login_file()?;
    let Some(mut doc) = read_json(&file)? else { return Ok(false) };
    let want = keys(registry);
    let removed = match doc.get_mut("auths").and_then(|a| a.as_object_mut()) {
        Some(a) => {
            let before = a.len();
            a.retain(|k, _| !want.iter().any(|w| key_host(w) == key_host(k)));
            a.len() != before
        }
        None => false,
    };
    if removed {
        write_json(&file, &doc)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_matches_keys() {
        let f = Path::new("x.json");
        let e = serde_json::json!({"auth": base64::engine::general_purpose::STANDARD.encode("u:p:w")});
        assert_eq!(decode(&e, f).unwrap().unwrap(), Credentials { username: "u".into(), password: "p:w".into() });
        assert!(decode(&serde_json::json!({"auth": "!!"}), f).is_err());
        assert_eq!(decode(&serde_json::json!({}), f).unwrap(), None);
        assert_eq!(key_host("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(key_host("127.0.0.1:5000/team"), "127.0.0.1:5000");
        assert_eq!(Credentials { username: "u".into(), password: "p".into() }.basic_header(), "Basic dTpw");
    }
}
