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
        let env_dir =
            |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from).filter(|p| p.is_absolute());
        let (data, run) = if let Some(root) = env_dir("COVE_ROOT") {
            // One tree for everything (tests, and users who want cove's state elsewhere).
            (root.join("data"), root.join("run"))
        } else if rootless {
            let home = env_dir("HOME").ok_or_else(|| {
                Error::Invalid("HOME is not set: cannot place cove's state (set XDG_DATA_HOME or COVE_ROOT)".into())
            })?;
            let data = env_dir("XDG_DATA_HOME").unwrap_or_else(|| home.join(".local/share")).join("cove");
            // No systemd-logind means no /run/user/UID: fall back to a private dir in /tmp,
            // as Podman does, and verify we own it.
            // An XDG_RUNTIME_DIR inherited from another user (su without a login) is not ours.
            let run = match env_dir("XDG_RUNTIME_DIR") {
                Some(d) if std::fs::metadata(&d).is_ok_and(|m| m.is_dir() && m.uid() == uid) => d.join("cove"),
                _ => PathBuf::from(format!("/tmp/cove-run-{uid}")),
            };
            (data, run)
        } else {
            (PathBuf::from("/var/lib/cove"), PathBuf::from("/run/cove"))
        };
        let data = make_private_dir(&data, uid)?;
        let run = if rootless && env_dir("COVE_ROOT").is_none() {
            settled_run_dir(&data, run, uid)?
        } else {
            make_private_dir(&run, uid)?
        };
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
    pub fn container_run(&self, id: &str) -> cove_monitor::RunDir {
        cove_monitor::RunDir::new(self.run.join("containers").join(id))
    }
    pub fn volumes(&self) -> PathBuf {
        self.data.join("volumes")
    }
    /// Compiled seccomp programs (never in the run dir: see the module doc).
    pub fn seccomp_cache(&self) -> PathBuf {
        self.data.join("seccomp")
    }
}

/// The run dir for this command: the one the user's keeper lives in, whatever this command's
/// environment says. `XDG_RUNTIME_DIR` differs between a login shell, `su`, cron and ssh; a
/// command that looked elsewhere saw no pid or exit files for running containers and marked
/// them Exited (255) for good, and it would have started a second keeper (another user
/// namespace, so `exec` into the running containers failed). The data dir records the run
/// dir in use (`run-dir`); it is kept while a keeper lives there, and replaced otherwise (after
/// a reboot or logout wiped it).
fn settled_run_dir(data: &Path, wanted: PathBuf, uid: u32) -> Result<PathBuf> {
    let record = data.join("run-dir");
    if let Some(prev) = std::fs::read_to_string(&record).ok().map(|t| PathBuf::from(t.trim_end_matches('\n'))) {
        if prev != wanted
            && prev.is_absolute()
            && cove_runtime::userns::live_keeper(&cove_runtime::userns::KeeperPaths::new(&prev)).is_some()
        {
            // Checked as any run dir is: still the caller's private directory.
            let prev = make_private_dir(&prev, uid)?;
            tracing::debug!("run dir {} (recorded: a keeper lives there), not {}", prev.display(), wanted.display());
            return Ok(prev);
        }
    }
    let run = make_private_dir(&wanted, uid)?;
    if std::fs::read_to_string(&record).ok().as_deref().map(|t| t.trim_end_matches('\n')) != run.to_str() {
        let tmp = data.join(format!("run-dir.tmp{}", std::process::id()));
        std::fs::write(&tmp, format!("{}\n", run.display()))
            .and_then(|_| std::fs::rename(&tmp, &record))
            .ctx(|| format!("record {}", record.display()))?;
    }
    Ok(run)
}

/// Makes (if needed) and checks one of cove's directories; returns its resolved path. See the
/// module doc for what is checked and why.
fn make_private_dir(d: &Path, uid: u32) -> Result<PathBuf> {
    let (Some(parent), Some(name)) = (d.parent(), d.file_name()) else {
        return Err(Error::Invalid(format!("{}: not a usable directory for cove's state", d.display())));
    };
    // Missing ancestors (~/.local/share) are made private; they are checked below like any other.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .ctx(|| format!("create {}", parent.display()))?;
    let parent = std::fs::canonicalize(parent).ctx(|| format!("resolve {}", parent.display()))?;
    check_ancestors(&parent, uid)?;
    let path = parent.join(name);
    let created = match std::fs::DirBuilder::new().mode(0o700).create(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(Error::Io { what: format!("create {}", path.display()), source: e }),
    };
    let m = std::fs::symlink_metadata(&path).ctx(|| format!("stat {}", path.display()))?;
    let refuse = |what: String| Err(Error::Invalid(format!("{} {what}: refusing to use it", path.display())));
    if m.file_type().is_symlink() {
        return refuse("is a symbolic link, not a directory cove made (remove it if it is not yours)".into());
    }
    if !m.is_dir() {
        return refuse("is not a directory".into());
    }
    if m.uid() != uid {
        return refuse(format!("is owned by uid {}, not by you (uid {uid})", m.uid()));
    }
    if created && m.mode() & 0o7777 != 0o700 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .ctx(|| format!("chmod {}", path.display()))?;
    } else if m.mode() & 0o777 != 0o700 {
        return refuse(format!("has mode {:04o}, not 0700 (if it is yours: chmod 700 it)", m.mode() & 0o7777));
    }
    Ok(path)
}

/// Every component of `dir` (already resolved: no symlinks), from `/` down: a directory owned
/// by root or `uid`, not writable by group or others unless sticky.
fn check_ancestors(dir: &Path, uid: u32) -> Result<()> {
    let mut p = PathBuf::new();
    for c in dir.components() {
        p.push(c);
        let m = std::fs::symlink_metadata(&p).ctx(|| format!("stat {}", p.display()))?;
        let what = if !m.is_dir() {
            "is not a directory".to_string()
        } else if m.uid() != 0 && m.uid() != uid {
            format!("is owned by uid {}, neither root nor you (uid {uid})", m.uid())
        } else if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            format!("is writable by others (mode {:04o}) and not sticky", m.mode() & 0o7777)
        } else {
            continue;
        };
        return Err(Error::Invalid(format!("{} {what}: refusing to keep cove's state under it", p.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn me() -> u32 {
        nix::unistd::getuid().as_raw()
    }

    #[test]
    fn makes_a_private_dir_and_takes_it_again() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b/cove");
        let got = make_private_dir(&d, me()).unwrap();
        assert_eq!(got, std::fs::canonicalize(&d).unwrap());
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o7777, 0o700);
        assert_eq!(make_private_dir(&d, me()).unwrap(), got);
    }

    #[test]
    fn refuses_a_symlink_a_loose_mode_and_a_foreign_owner() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = make_private_dir(&link, me()).unwrap_err().to_string();
        assert!(e.contains("link is a symbolic link"), "{e}");
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);

        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = make_private_dir(&target, me()).unwrap_err().to_string();
        assert!(e.contains("has mode 0777, not 0700"), "{e}");
        // Never chmod'ed behind the owner's back.
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o7777, 0o777);

        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = make_private_dir(&target, me() + 1).unwrap_err().to_string();
        assert!(e.contains("is owned by uid"), "{e}");
    }

    #[test]
    fn refuses_an_ancestor_others_may_write() {
        let t = tempfile::tempdir().unwrap();
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = make_private_dir(&open.join("cove"), me()).unwrap_err().to_string();
        assert!(e.contains("is writable by others (mode 0777) and not sticky"), "{e}");
        // Sticky, as /tmp is: fine.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        make_private_dir(&open.join("cove"), me()).unwrap();
    }
}
