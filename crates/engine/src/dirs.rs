//! Where cove keeps things, per user: state and images under `$XDG_DATA_HOME/cove`
//! (`/var/lib/cove` as root), runtime files under `$XDG_RUNTIME_DIR/cove` (`/run/cove` as
//! root). Computed before the process joins the rootless user namespace, because inside it
//! every file of the user appears owned by 0.

use crate::{Error, IoContext, Result};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Dirs {
    /// Persistent state: db, storage, containers, volumes.
    pub data: PathBuf,
    /// Runtime state: keeper pid, locks; wiped on reboot.
    pub run: PathBuf,
    pub rootless: bool,
    /// The real (host) uid/gid of the caller.
    pub uid: u32,
    pub gid: u32,
    pub user_name: String,
}

impl Dirs {
    /// Computes the directories for the calling user and creates them (0700).
    pub fn for_current_user() -> Result<Dirs> {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let rootless = uid != 0;
        let user_name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| uid.to_string());
        let env_dir = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from).filter(|p| p.is_absolute());
        let (data, run) = if let Some(root) = env_dir("COVE_ROOT") {
            // One tree for everything (tests, and users who want cove's state elsewhere).
            (root.join("data"), root.join("run"))
        } else if rootless {
            let home = env_dir("HOME").ok_or_else(|| Error::Invalid("HOME is not set: cannot place cove's state (set XDG_DATA_HOME or COVE_ROOT)".into()))?;
            let data = env_dir("XDG_DATA_HOME").unwrap_or_else(|| home.join(".local/share")).join("cove");
            // No systemd-logind means no /run/user/UID: fall back to a private dir in /tmp,
            // as Podman does, and verify we own it.
            let run = match env_dir("XDG_RUNTIME_DIR") {
                Some(d) if d.is_dir() => d.join("cove"),
                _ => PathBuf::from(format!("/tmp/cove-run-{uid}")),
            };
            (data, run)
        } else {
            (PathBuf::from("/var/lib/cove"), PathBuf::from("/run/cove"))
        };
        for d in [&data, &run] {
            make_private_dir(d, uid)?;
        }
        Ok(Dirs { data, run, rootless, uid, gid, user_name })
    }

    pub fn db_path(&self) -> PathBuf {
        self.data.join("state.db")
    }
    pub fn storage(&self) -> PathBuf {
        self.data.join("storage")
    }
    pub fn containers(&self) -> PathBuf {
        self.data.join("containers")
    }
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
    /// Runtime files of one container (monitor and container pid files, exit status).
    pub fn container_run(&self, id: &str) -> PathBuf {
        self.run.join("containers").join(id)
    }
    pub fn volumes(&self) -> PathBuf {
        self.data.join("volumes")
    }
}

fn make_private_dir(d: &Path, uid: u32) -> Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(d).ctx(|| format!("create {}", d.display()))?;
    let m = std::fs::metadata(d).ctx(|| format!("stat {}", d.display()))?;
    if m.uid() != uid {
        return Err(Error::Invalid(format!("{} is owned by uid {}, not by you (uid {uid}): refusing to use it", d.display(), m.uid())));
    }
    Ok(())
}
