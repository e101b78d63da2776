//! Any UID gets a real identity: when `--user` names an id the image's /etc/passwd lacks
//! (OpenShift-style random UIDs), the container sees a passwd and group entry for it, a
//! writable HOME owned by it, USER/LOGNAME/HOME — with no nss_wrapper and no LD_PRELOAD.
//!
//! The image is never changed: the entries live in per-container copies of /etc/passwd and
//! /etc/group bind-mounted over the image's, and HOME is a per-container directory bind-
//! mounted at its path (so `--read-only` works too). When the id is outside the caller's
//! user namespace map (no subuid range, or an id beyond the range), the container gets a user
//! namespace of its own in which that id exists ([`cove_runtime::NestedMaps`]).

use crate::userdb::{parse_group, parse_passwd, Resolved};
use crate::{IoContext, Result};
use cove_runtime::userns::IdRange;
use cove_runtime::NestedMaps;
use std::path::{Path, PathBuf};

/// What the container's process runs as, and what cove must set up for it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub resolved: Resolved,
    pub name: Option<String>,
    pub home: String,
    /// Bind mounts to add: (container path, host path).
    pub mounts: Vec<(String, PathBuf)>,
    /// Defaults for the environment (the user's own -e wins).
    pub env: Vec<String>,
    pub userns: Option<NestedMaps>,
}

/// Name given to a synthesized user.
pub fn synthesized_name(uid: u32) -> String {
    format!("user{uid}")
}

/// Builds the identity for `resolved` (from [`crate::userdb::resolve`]).
/// `maps` = the caller's own (uid, gid) maps when rootless.
pub fn build(
    dir: &Path,
    resolved: Resolved,
    passwd: &str,
    group: &str,
    user_home: Option<&str>,
    maps: Option<(&[IdRange], &[IdRange])>,
) -> Result<Identity> {
    let mut resolved = resolved;
    let userns = maps.and_then(|(u, g)| NestedMaps::for_ids(resolved.uid, resolved.gid, u, g));
    if let Some(m) = &userns {
        // Supplementary groups must exist in the container's namespace.
        resolved.additional_gids.retain(|g| NestedMaps::outer(&m.gids, *g).is_some());
    }
    let mut mounts = vec![];
    let (name, home) = match &resolved.entry {
        Some(e) => (Some(e.name.clone()), user_home.map(String::from).unwrap_or_else(|| e.home.clone())),
        None if resolved.uid == 0 => (Some("root".to_string()), user_home.unwrap_or("/root").to_string()),
        None => {
            let name = synthesized_name(resolved.uid);
            let home = user_home.map(String::from).unwrap_or_else(|| format!("/home/{name}"));
            let shell = parse_passwd(passwd)
                .into_iter()
                .find(|e| e.uid == 0)
                .map(|e| e.shell)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "/bin/sh".into());
            let mut pw = if passwd.trim().is_empty() {
                "root:x:0:0:root:/root:/bin/sh\n".to_string()
            } else {
                passwd.to_string()
            };
            if !pw.ends_with('\n') {
                pw.push('\n');
            }
            pw.push_str(&format!("{name}:x:{}:{}:{name}:{home}:{shell}\n", resolved.uid, resolved.gid));
            let mut gr = if group.trim().is_empty() { "root:x:0:\n".to_string() } else { group.to_string() };
            if !gr.ends_with('\n') {
                gr.push('\n');
            }
            if !parse_group(&gr).iter().any(|g| g.gid == resolved.gid) {
                gr.push_str(&format!("group{}:x:{}:{name}\n", resolved.gid, resolved.gid));
            }
            std::fs::write(dir.join("passwd"), pw).ctx(|| "write passwd".into())?;
            std::fs::write(dir.join("group"), gr).ctx(|| "write group".into())?;
            mounts.push(("/etc/passwd".to_string(), dir.join("passwd")));
            mounts.push(("/etc/group".to_string(), dir.join("group")));
            (Some(name), home)
        }
    };
    // A synthesized user (or an explicit --user-home) gets a private, writable HOME.
    if resolved.entry.is_none() && resolved.uid != 0 || user_home.is_some() {
        if !home.starts_with('/') || home == "/" {
            return Err(crate::Error::Invalid(format!(
                "invalid home directory {home:?}: it must be an absolute path other than /"
            )));
        }
        let h = dir.join("home");
        std::fs::create_dir_all(&h).ctx(|| "create home".into())?;
        let (ou, og) = match &userns {
            Some(m) => (
                NestedMaps::outer(&m.uids, resolved.uid).unwrap_or(0),
                NestedMaps::outer(&m.gids, resolved.gid).unwrap_or(0),
            ),
            None => (resolved.uid, resolved.gid),
        };
        std::os::unix::fs::chown(&h, Some(ou), Some(og)).ctx(|| format!("chown home to {ou}:{og}"))?;
        std::fs::set_permissions(&h, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .ctx(|| "chmod home".into())?;
        mounts.push((home.clone(), h));
    }
    let mut env = vec![format!("HOME={home}")];
    if let Some(n) = &name {
        env.push(format!("USER={n}"));
        env.push(format!("LOGNAME={n}"));
    }
    Ok(Identity { resolved, name, home, mounts, env, userns })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::userdb::resolve;

    const RANGED: [IdRange; 2] =
        [IdRange { container: 0, host: 1000, size: 1 }, IdRange { container: 1, host: 100000, size: 65536 }];
    const SINGLE: [IdRange; 1] = [IdRange { container: 0, host: 1000, size: 1 }];
    const PW: &str = "root:x:0:0:root:/root:/bin/ash\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GR: &str = "root:x:0:\napp:x:1000:\n";

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn synthesized_user() {
        let d = tempfile::tempdir().unwrap();
        let r = resolve("10000", PW, GR).unwrap();
        let built = build(d.path(), r, PW, GR, None, Some((&RANGED[..], &RANGED[..])));
        if !root() {
            // Unprivileged (not in cove's user namespace) the HOME cannot be given away.
            assert!(built.unwrap_err().to_string().contains("chown home to 10000:0"));
            return;
        }
        let id = built.unwrap();
        assert_eq!(id.name.as_deref(), Some("user10000"));
        assert_eq!(id.home, "/home/user10000");
        assert!(id.userns.is_none());
        let pw = std::fs::read_to_string(d.path().join("passwd")).unwrap();
        assert!(pw.ends_with("user10000:x:10000:0:user10000:/home/user10000:/bin/ash\n"), "{pw}");
        let gr = std::fs::read_to_string(d.path().join("group")).unwrap();
        assert_eq!(gr, GR, "gid 0 exists already");
        assert_eq!(id.mounts.len(), 3);
        assert!(id.env.contains(&"USER=user10000".to_string()) && id.env.contains(&"HOME=/home/user10000".to_string()));
    }

    #[test]
    fn outside_the_map_gets_a_namespace() {
        let d = tempfile::tempdir().unwrap();
        let r = resolve("1000660000:1000", PW, GR).unwrap();
        let built = build(d.path(), r, PW, GR, Some("/work"), Some((&SINGLE[..], &SINGLE[..])));
        if root() {
            let id = built.unwrap();
            let m = id.userns.unwrap();
            assert_eq!(NestedMaps::outer(&m.uids, 1000660000), Some(0));
            assert_eq!(id.home, "/work");
        } else {
            assert!(built.unwrap_err().to_string().contains("chown home to 0:0"));
        }
        // An image user keeps its entry and HOME; no files are generated.
        let d2 = tempfile::tempdir().unwrap();
        let id =
            build(d2.path(), resolve("app", PW, GR).unwrap(), PW, GR, None, Some((&RANGED[..], &RANGED[..]))).unwrap();
        assert!(id.mounts.is_empty() && id.userns.is_none());
        assert_eq!(id.home, "/home/app");
        assert!(build(d2.path(), resolve("10000", PW, GR).unwrap(), PW, GR, Some("relative"), None).is_err());
    }
}
