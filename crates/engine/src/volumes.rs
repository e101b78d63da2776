//! Named and anonymous volumes: directories under the user's data dir (`volumes/NAME/_data`,
//! Docker's layout), created on first use.

use crate::{Error, IoContext, Result};
use std::path::{Path, PathBuf};

/// The data directory of volume `name`, created if needed.
pub fn named(dir: &Path, name: &str) -> Result<PathBuf> {
    if cove_oci::validate_name(name).is_err() {
        return Err(Error::Invalid(format!(
            "invalid volume name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed; a host path must be absolute"
        )));
    }
    let p = dir.join(name).join("_data");
    std::fs::create_dir_all(&p).ctx(|| format!("create volume {name}"))?;
    Ok(p)
}

/// A new anonymous volume (`-v /data`).
pub fn anonymous(dir: &Path) -> Result<PathBuf> {
    named(dir, &cove_oci::new_id()?)
}
