//! Per-user defaults: `$XDG_CONFIG_HOME/cove/cove.conf` (`~/.config/cove/cove.conf`;
//! `/etc/cove/cove.conf` for root). One `key = value` per line, `#` comments:
//!
//! ```text
//! init = true        # run cove's init as PID 1 unless --init=false
//! default_registry = docker.io                       # where short names (alpine:3.20) are pulled from
//! insecure_registries = 10.0.0.5:5000, reg.lan      # TLS unverified, plain HTTP if no TLS
//! allow_host_loopback = true   # networks without -o allow_host_loopback reach the host's loopback
//! ```
//! Loopback registries (localhost, 127.0.0.0/8, ::1) are insecure without being listed.
//! An unknown key or a bad value is an error naming the file and line, never ignored.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserConfig {
    pub init: bool,
    /// Registry for names without a domain (`docker.io` when unset).
    pub default_registry: Option<String>,
    pub insecure_registries: Vec<String>,
    /// Whether containers on networks that do not say (`network create -o
    /// allow_host_loopback`), the default network too, reach services on the host's loopback
    /// through `host.containers.internal`. Off: hosts bind admin and database ports to
    /// 127.0.0.1 so that nothing else reaches them (rootless Docker and podman keep it closed).
    pub allow_host_loopback: bool,
}

/// Where the config file of the calling user lives.
pub fn path(rootless: bool) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COVE_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if !rootless {
        return Some(PathBuf::from("/etc/cove/cove.conf"));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("cove/cove.conf"))
}

pub fn parse(text: &str, file: &Path) -> Result<UserConfig> {
    let mut c = UserConfig::default();
    for (n, line) in text.lines().enumerate() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        let bad = |why: &str| Error::Invalid(format!("{}:{}: {why}", file.display(), n + 1));
        let (k, v) = l.split_once('=').ok_or_else(|| bad("expected key = value"))?;
        let (k, v) = (k.trim(), v.trim().trim_matches('"'));
        let boolean = |v: &str| match v {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" => Ok(false),
            _ => Err(bad(&format!("{k} must be true or false, not {v:?}"))),
        };
        match k {
            "init" => c.init = boolean(v)?,
            "allow_host_loopback" => c.allow_host_loopback = boolean(v)?,
            "default_registry" => {
                if v.is_empty() || v.contains('/') || v.contains(char::is_whitespace) {
                    return Err(bad(&format!("default_registry must be a host[:port], not {v:?}")));
                }
                c.default_registry = Some(v.to_string());
            }
            "insecure_registries" => {
                c.insecure_registries =
                    v.split(',').map(|r| r.trim().trim_matches('"').to_string()).filter(|r| !r.is_empty()).collect();
            }
            _ => return Err(bad(&format!("unknown key {k:?}"))),
        }
    }
    Ok(c)
}

/// Loads the user's config; a missing file means defaults.
pub fn load(rootless: bool) -> Result<UserConfig> {
    match path(rootless) {
        Some(p) => load_from(&p),
        None => Ok(UserConfig::default()),
    }
}

/// Loads the config at `p`; a missing file means defaults.
pub fn load_from(p: &Path) -> Result<UserConfig> {
    match std::fs::read_to_string(p) {
        Ok(t) => parse(&t, p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UserConfig::default()),
        Err(e) => Err(Error::Io { what: format!("read {}", p.display()), source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        let f = Path::new("cove.conf");
        assert_eq!(parse("# c\n\ninit = true # yes\n", f).unwrap(), UserConfig { init: true, ..Default::default() });
        let r = parse("default_registry = reg.example:5000\ninsecure_registries = a:5000, b\n", f).unwrap();
        assert_eq!(
            (r.default_registry.as_deref(), r.insecure_registries),
            (Some("reg.example:5000"), vec!["a:5000".to_string(), "b".to_string()])
        );
        assert!(parse("default_registry = a/b", f).is_err());
        assert_eq!(parse("", f).unwrap(), UserConfig::default());
        assert!(!parse("init=false", f).unwrap().init);
        assert_eq!(
            parse("init = maybe", f).unwrap_err().to_string(),
            "cove.conf:1: init must be true or false, not \"maybe\""
        );
        assert!(parse("allow_host_loopback = yes", f).unwrap().allow_host_loopback);
        assert!(!parse("allow_host_loopback = false", f).unwrap().allow_host_loopback);
        assert_eq!(
            parse("allow_host_loopback = open", f).unwrap_err().to_string(),
            "cove.conf:1: allow_host_loopback must be true or false, not \"open\""
        );
        assert!(parse("colour = blue", f).unwrap_err().to_string().contains("unknown key \"colour\""));
        assert!(parse("just words", f).is_err());
    }
}
