//! Small file helpers that attach the path to every error.

use std::io::{ErrorKind, Write};
use std::path::Path;
use std::time::Duration;

use crate::{Error, Result};

/// Contents of a cgroup file, trimmed.
pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| Error::Read { path: path.to_path_buf(), source })
}

/// Like [`read`], but a missing file is `None`.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { path: path.to_path_buf(), source }),
    }
}

/// Write `value` to an existing cgroup file (never creates it: cgroupfs files come from the
/// kernel, and a missing one means the controller is not enabled).
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    let err = |source| Error::Write { path: path.to_path_buf(), value: value.to_string(), source };
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(path).map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

/// Create a cgroup directory; one that already exists is reused. Returns whether it was new.
pub(crate) fn mkdir(path: &Path) -> Result<bool> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(Error::Create { path: path.to_path_buf(), source }),
    }
}

/// Remove a cgroup directory. Gone already is fine; EBUSY (processes still exiting, or the
/// kernel still tearing down css) is retried for about a second.
pub(crate) fn rmdir(path: &Path) -> Result<()> {
    let mut delay = Duration::from_millis(5);
    let mut waited = Duration::ZERO;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == ErrorKind::ResourceBusy && waited < Duration::from_secs(1) => {
                std::thread::sleep(delay);
                waited += delay;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(source) => return Err(Error::Remove { path: path.to_path_buf(), source }),
        }
    }
}

/// Whether this process may write `path`, judged by the kernel for the effective ids (so it is
/// right for uid 0 inside a user namespace, where the host owner of the file decides).
pub(crate) fn writable(path: &Path) -> bool {
    nix::unistd::eaccess(path, nix::unistd::AccessFlags::W_OK).is_ok()
}
