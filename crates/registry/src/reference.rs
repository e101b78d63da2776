//! Where a reference points: registry, repository, tag or digest.

use crate::{Error, Result};

/// Docker Hub's name; its API lives at `registry-1.docker.io`.
pub const DOCKER_HUB: &str = "docker.io";

/// A reference resolved against the default registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `docker.io`, `127.0.0.1:5000`, `registry.example:5000`.
    pub registry: String,
    /// `library/alpine`, `team/app`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `name[:tag][@digest]`; a name without a registry domain is looked up in
    /// `default_registry` (with Docker Hub's `library/` for one-component names there).
    pub fn parse(s: &str, default_registry: &str) -> Result<ImageRef> {
        let r = cove_oci::Reference::parse(s).map_err(|e| Error::Invalid(e.to_string()))?;
        let registry = match r.domain.as_deref() {
            None => default_registry.to_owned(),
            Some("index.docker.io" | "registry-1.docker.io") => DOCKER_HUB.to_owned(),
            Some(d) => d.to_owned(),
        };
        let repository =
            if registry == DOCKER_HUB && !r.path.contains('/') { format!("library/{}", r.path) } else { r.path };
        let tag = match (&r.tag, &r.digest) {
            (None, None) => Some("latest".to_owned()),
            _ => r.tag,
        };
        Ok(ImageRef { registry, repository, tag, digest: r.digest })
    }

    /// What to ask the manifests endpoint for: the digest when there is one, else the tag.
    pub fn reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// True for `localhost`, `127.x.y.z` and `[::1]` (with or without a port): Docker treats
/// these as insecure registries without being told.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost" || host == "::1" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_and_defaults() {
        let r = ImageRef::parse("alpine:3.20", DOCKER_HUB).unwrap();
        assert_eq!(r.to_string(), "docker.io/library/alpine:3.20");
        let r = ImageRef::parse("alpine", "reg.example:5000").unwrap();
        assert_eq!(r.to_string(), "reg.example:5000/alpine:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/team/app@{d}"), DOCKER_HUB).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref(), r.reference()),
            ("127.0.0.1:5000", "team/app", None, d.as_str())
        );
        assert_eq!(ImageRef::parse("index.docker.io/x/y", DOCKER_HUB).unwrap().name(), "docker.io/x/y");
        assert!(ImageRef::parse("Bad:ref:x", DOCKER_HUB).is_err());
    }

    #[test]
    fn loopback() {
        for h in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["docker.io", "10.0.0.1:5000", "localhost.example"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
