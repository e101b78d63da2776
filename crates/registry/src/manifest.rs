//! Manifests, indexes and their media types; choosing a platform from an index.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{Error, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// What `pull` asks for, in order of preference.
pub const ACCEPT_MANIFESTS: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The host's platform in Go's names (`linux/amd64`, `linux/arm64/v8`).
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform { architecture: architecture.into(), os: "linux".into(), variant: variant.map(String::from) }
    }

    /// Parses `os/arch[/variant]` (`--platform`).
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform { os: (*os).into(), architecture: (*arch).into(), variant: None })
            }
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => {
                Ok(Platform { os: (*os).into(), architecture: (*arch).into(), variant: Some((*v).into()) })
            }
            _ => Err(Error::Invalid(format!("invalid platform {s:?}: expected os/arch[/variant]"))),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// What a manifest endpoint returned.
pub enum Parsed {
    Manifest(Manifest),
    Index(Index),
}

/// Parses manifest bytes by their media type (the Content-Type, else the `mediaType` field).
pub fn parse(bytes: &[u8], content_type: &str, what: &str) -> Result<Parsed> {
    let json_err = |source| Error::Json { context: what.to_owned(), source };
    let field: serde_json::Value = serde_json::from_slice(bytes).map_err(json_err)?;
    let inner = field.get("mediaType").and_then(|v| v.as_str()).unwrap_or("");
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let mt = if ACCEPT_MANIFESTS.contains(&ct) { ct } else { inner };
    match mt {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: Manifest = serde_json::from_value(field).map_err(json_err)?;
            if m.schema_version != 2 {
                return Err(Error::Unsupported(format!("{what}: schema version {}", m.schema_version)));
            }
            Ok(Parsed::Manifest(m))
        }
        OCI_INDEX | DOCKER_LIST => Ok(Parsed::Index(serde_json::from_value(field).map_err(json_err)?)),
        "" if field.get("manifests").is_some() => Ok(Parsed::Index(serde_json::from_value(field).map_err(json_err)?)),
        "" if field.get("layers").is_some() && field.get("config").is_some() => {
            Ok(Parsed::Manifest(serde_json::from_value(field).map_err(json_err)?))
        }
        other => {
            let shown = if other.is_empty() { ct } else { other };
            Err(Error::Unsupported(format!("{what}: media type {shown:?} (not an image manifest or index)")))
        }
    }
}

/// Checks that a manifest describes a container image this engine can unpack.
pub fn check_image(m: &Manifest, what: &str) -> Result<()> {
    if !matches!(m.config.media_type.as_str(), OCI_CONFIG | DOCKER_CONFIG | "") {
        return Err(Error::Unsupported(format!(
            "{what}: config media type {:?} (not a container image)",
            m.config.media_type
        )));
    }
    for l in &m.layers {
        let ok = matches!(
            l.media_type.as_str(),
            OCI_LAYER_TAR
                | OCI_LAYER_GZIP
                | OCI_LAYER_ZSTD
                | DOCKER_LAYER_GZIP
                | "application/vnd.docker.image.rootfs.diff.tar"
                | "application/vnd.docker.image.rootfs.diff.tar.zstd"
        );
        if !ok {
            return Err(Error::Unsupported(format!("{what}: layer {:?} has media type {:?}", l.digest, l.media_type)));
        }
    }
    Ok(())
}

/// The manifest of `want` in an index: an exact os/arch match, preferring the variant asked
/// for (or the host's); attestation entries (`unknown/unknown`) never match.
pub fn choose<'a>(index: &'a Index, want: &Platform, what: &str) -> Result<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| d.platform.as_ref().is_some_and(|p| p.os == want.os && p.architecture == want.architecture))
        .filter(|d| matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST | OCI_INDEX | DOCKER_LIST | ""))
        .collect();
    let by_variant =
        candidates.iter().find(|d| d.platform.as_ref().and_then(|p| p.variant.as_deref()) == want.variant.as_deref());
    match by_variant.or(candidates.first()) {
        Some(d) => Ok(d),
        None => {
            let have: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(|p| p.to_string().escape_debug().to_string())
                .collect();
            Err(Error::Unsupported(format!(
                "{what}: no image for platform {want} (has: {})",
                if have.is_empty() { "none".into() } else { have.join(", ") }
            )))
        }
    }
}

/// Compression of a layer blob from its media type.
pub fn layer_media_type(compression: &str) -> &'static str {
    match compression {
        "gzip" => OCI_LAYER_GZIP,
        "zstd" => OCI_LAYER_ZSTD,
        _ => OCI_LAYER_TAR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(os: &str, arch: &str, variant: Option<&str>, n: char) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", n.to_string().repeat(64)),
            size: 1,
            platform: Some(Platform { os: os.into(), architecture: arch.into(), variant: variant.map(String::from) }),
            annotations: None,
        }
    }

    #[test]
    fn platform_choice() {
        let idx = Index {
            manifests: vec![
                d("unknown", "unknown", None, 'f'),
                d("linux", "arm", Some("v6"), 'a'),
                d("linux", "arm", Some("v7"), 'b'),
                d("linux", "amd64", None, 'c'),
            ],
        };
        assert!(choose(&idx, &Platform::parse("linux/amd64").unwrap(), "x").unwrap().digest.ends_with('c'));
        assert!(choose(&idx, &Platform::parse("linux/arm/v7").unwrap(), "x").unwrap().digest.ends_with('b'));
        let e = choose(&idx, &Platform::parse("linux/s390x").unwrap(), "x").unwrap_err().to_string();
        assert_eq!(e, "x: no image for platform linux/s390x (has: linux/arm/v6, linux/arm/v7, linux/amd64)");
        assert!(Platform::parse("linux").is_err());
    }

    #[test]
    fn media_types() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:x","size":1},"layers":[{"mediaType":"application/x-bogus","digest":"sha256:y","size":2}]}"#;
        let Parsed::Manifest(man) = parse(m.as_bytes(), "application/vnd.oci.image.manifest.v1+json", "m").unwrap()
        else {
            panic!()
        };
        assert!(check_image(&man, "m").unwrap_err().to_string().contains("application/x-bogus"));
        assert!(parse(b"{}", "text/html", "m").is_err());
    }
}
