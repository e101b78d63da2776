//! Pure vocabulary shared by every cove crate: image references, container ids and names.
//!
//! Owns parsing and validation only; it performs no I/O besides reading randomness for ids.
//! The OCI runtime and image types themselves come from the `oci-spec` crate, re-exported here.
#![forbid(unsafe_code)]
// A library reports through its return values and `tracing`, never by printing.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub use oci_spec;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid reference format: {0:?}")]
    BadReference(String),
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    BadName(String),
    #[error("no randomness available: {0}")]
    Random(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A new 64-hex-digit id, as Docker's container and image ids.
pub fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| Error::Random(e.to_string()))?;
    Ok(hex::encode(b))
}

/// The 12-character short form of an id.
pub fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

/// Docker's container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (a leading `/` is accepted).
pub fn validate_name(name: &str) -> Result<()> {
    let n = name.strip_prefix('/').unwrap_or(name);
    let mut chars = n.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {
            n.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        }
        _ => false,
    } && n.len() <= 253;
    if ok {
        Ok(())
    } else {
        Err(Error::BadName(name.to_string()))
    }
}

/// An image reference: `[domain[:port]/]path[:tag][@sha256:digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry domain when one was given (`docker.io`, `localhost:5000`), else `None`.
    pub domain: Option<String>,
    /// Repository path (`library/alpine`, `team/app`, `bb`).
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parses a reference the way Docker's distribution/reference grammar does (lowercase path
    /// components separated by `/`, tag `[\w][\w.-]{0,127}`, digest `algo:hex`).
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = || Error::BadReference(s.to_string());
        if s.is_empty() || s.len() > 4096 {
            return Err(bad());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let (algo, hexpart) = d.split_once(':').ok_or_else(bad)?;
                if algo != "sha256"
                    || hexpart.len() != 64
                    || !hexpart.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    return Err(bad());
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let mut cs = t.chars();
            let first_ok = cs.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if !first_ok || t.len() > 128 || !t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
                return Err(bad());
            }
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let domain = if parts.len() > 1 && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
        {
            Some(parts.remove(0).to_string())
        } else {
            None
        };
        if parts.is_empty() {
            return Err(bad());
        }
        for p in &parts {
            let ok = !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && p.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
            if !ok {
                return Err(bad());
            }
        }
        if let Some(d) = &domain {
            if d.is_empty()
                || d.starts_with('-')
                || !d.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            {
                return Err(bad());
            }
        }
        Ok(Reference { domain, path: parts.join("/"), tag, digest })
    }

    /// The short, familiar name Docker shows: `alpine:3.20`, `team/app:1`,
    /// `localhost:5000/x:1`. `docker.io` and `library/` are dropped; `:latest` is added
    /// when neither tag nor digest was given.
    pub fn familiar(&self) -> String {
        let mut s = String::new();
        match self.domain.as_deref() {
            None | Some("docker.io") | Some("index.docker.io") => {
                s.push_str(self.path.strip_prefix("library/").unwrap_or(&self.path));
            }
            Some(d) => {
                s.push_str(d);
                s.push('/');
                s.push_str(&self.path);
            }
        }
        match (&self.tag, &self.digest) {
            (Some(t), _) => {
                s.push(':');
                s.push_str(t);
            }
            (None, None) => s.push_str(":latest"),
            (None, Some(_)) => {}
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The repository part of [`familiar`](Self::familiar), without tag or digest.
    pub fn repository(&self) -> String {
        let f = Reference { tag: Some(String::new()), digest: None, ..self.clone() }.familiar();
        f.trim_end_matches(':').to_string()
    }
}

/// Normalizes a user-given image name to the familiar `name:tag` form used as a key.
pub fn normalize_image_name(s: &str) -> Result<String> {
    Ok(Reference::parse(s)?.familiar())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.familiar(), "alpine:latest");
        assert_eq!(Reference::parse("docker.io/library/alpine:3.20").unwrap().familiar(), "alpine:3.20");
        let r = Reference::parse("localhost:5000/team/app:1").unwrap();
        assert_eq!(r.domain.as_deref(), Some("localhost:5000"));
        assert_eq!(r.path, "team/app");
        assert_eq!(r.repository(), "localhost:5000/team/app");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("x@{d}")).unwrap();
        assert_eq!(r.familiar(), format!("x@{d}"));
        for bad in ["", "UPPER", "a:", "a:-x", "a//b", "x@sha256:12", ":tag", "a b", "-a"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn names() {
        assert!(validate_name("db").is_ok());
        assert!(validate_name("/web_1.x-y").is_ok());
        for bad in ["", "a", "-a", "a/b", "a b", "é1"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids() {
        let a = new_id().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_id().unwrap());
        assert_eq!(short_id(&format!("sha256:{a}")), &a[..12]);
    }
}
