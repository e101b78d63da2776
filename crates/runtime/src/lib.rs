//! The container runtime: turns an OCI runtime spec into a running process.
//!
//! Owns namespaces and id maps (including the per-user *keeper* that holds the rootless user
//! namespace), the root filesystem and mounts, /dev, masked and read-only paths, capabilities,
//! no_new_privs, seccomp, rlimits and the container's terminal. It takes an
//! [`oci_spec::runtime::Spec`] so a runc-compatible CLI can be a thin layer over it.
//!
//! It must not know about images, names, the state database or the CLI: the engine prepares
//! the spec and the root filesystem description and hands them over.
#![forbid(unsafe_code)]
// A library reports through its return values and `tracing`, never by printing.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod caps;
pub mod container;
pub mod exec;
pub mod init;
pub mod join;
pub mod mounts;
pub mod paths;
pub mod userns;

pub use container::{create, CreateOptions, Created, NestedMaps, Rootfs, Stdio, INIT_ANNOTATION};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mount {src} on {dst}: {source}")]
    Mount { src: String, dst: PathBuf, source: nix::Error },
    #[error("{0}")]
    Sys2(#[from] cove_sys::Error),
    #[error("seccomp: {0}")]
    Seccomp(#[from] cove_seccomp::Error),
    #[error("user namespace: {0}")]
    UserNs(String),
    #[error("invalid spec: {0}")]
    Spec(String),
    /// A path of the container's root that leads somewhere cove will not mount or create on
    /// (through /proc or /sys, out of the root, a symlink loop).
    #[error("{0}")]
    Refused(String),
    /// The caller's setup hook (cgroups, network) failed before the container started.
    #[error("{0}")]
    Setup(String),
    /// The container's process failed before `execve` (message from the child).
    #[error("{message}")]
    Child { message: String, exit_code: i32 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sys { what: what(), source })
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { what: what(), source })
    }
}

/// A seccomp filter compiled ahead of the fork: libseccomp takes ~12 ms to build Docker's
/// profile (loading a cached program and hashing it: ~15 µs), so the program is compiled once
/// per profile and cached on disk, in the caller's data dir (never a shared or guessable place).
///
/// A cache file is `<sha256(profile JSON)>.bpf`: 32 bytes of `sha256(profile JSON ‖ program)`,
/// then the program. It is used only if that digest matches, so a file that is truncated,
/// corrupted, or written for another profile (an allow-all program planted there) is compiled
/// anew and replaced. The digest is no secret: what keeps others from forging one is that the
/// data dir is private (checked by cove-engine's `Dirs`); the check makes sure that whatever
/// is loaded was written by cove for exactly this profile.
#[derive(Debug, Clone)]
pub struct CompiledSeccomp {
    pub program: Vec<u8>,
    pub flags: u32,
}

impl CompiledSeccomp {
    pub fn new(sc: &oci_spec::runtime::LinuxSeccomp, cache_dir: Option<&std::path::Path>) -> Result<CompiledSeccomp> {
        use oci_spec::runtime::LinuxSeccompFilterFlag as F;
        use sha2::{Digest, Sha256};
        let mut flags = 0u32;
        for f in sc.flags().iter().flatten() {
            flags |= match f {
                F::SeccompFilterFlagTsync => 1,
                F::SeccompFilterFlagLog => 2,
                F::SeccompFilterFlagSpecAllow => 4,
            };
        }
        let json = serde_json::to_vec(sc).map_err(|e| Error::Spec(format!("seccomp profile: {e}")))?;
        let seal =
            |program: &[u8]| -> [u8; 32] { Sha256::new().chain_update(&json).chain_update(program).finalize().into() };
        let key: String = Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect();
        let path = cache_dir.map(|d| d.join(format!("{key}.bpf")));
        if let Some(p) = &path {
            if let Ok(file) = std::fs::read(p) {
                match file.split_at_checked(32) {
                    Some((digest, program))
                        if !program.is_empty() && program.len() % 8 == 0 && digest == seal(program) =>
                    {
                        return Ok(CompiledSeccomp { program: program.to_vec(), flags });
                    }
                    _ => tracing::warn!(
                        "{}: not a program cove compiled for this profile; compiling it again",
                        p.display()
                    ),
                }
            }
        }
        let program = cove_seccomp::compile_bpf(sc)?;
        if let (Some(p), Some(dir)) = (&path, cache_dir) {
            let mut file = seal(&program).to_vec();
            file.extend_from_slice(&program);
            if let Err(e) = write_cache(dir, p, &file) {
                tracing::debug!("cache the seccomp program in {}: {e}", dir.display());
            }
        }
        Ok(CompiledSeccomp { program, flags })
    }

    /// Loads the program into the calling thread.
    pub fn load(&self) -> Result<()> {
        cove_sys::seccomp_set_filter(&self.program, self.flags).map_err(|e| match e.errno() {
            Some(nix::errno::Errno::EACCES) => {
                Error::Spec("load seccomp filter: permission denied (set no_new_privs or hold CAP_SYS_ADMIN)".into())
            }
            _ => Error::Sys2(e),
        })
    }
}

/// Writes a cache file whole or not at all: a private temporary file (never an existing name)
/// renamed over `path`.
fn write_cache(dir: &std::path::Path, path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let r = f.write_all(bytes).and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_cache_is_used_only_when_its_digest_matches() {
        let caps: Vec<String> = cove_seccomp::DOCKER_DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
        let sc = cove_seccomp::docker_default(&caps);
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("seccomp");
        let fresh = CompiledSeccomp::new(&sc, Some(&cache)).unwrap().program;
        let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().map(|e| e.path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(CompiledSeccomp::new(&sc, Some(&cache)).unwrap().program, fresh);
        // An allow-all program, raw or behind a digest of something else: compiled again.
        let allow_all = [0x06u8, 0, 0, 0, 0, 0, 0xff, 0x7f];
        let mut forged = vec![0u8; 32];
        forged.extend_from_slice(&allow_all);
        for bytes in [allow_all.to_vec(), forged, vec![0xa5; 64], vec![]] {
            std::fs::write(&files[0], &bytes).unwrap();
            assert_eq!(CompiledSeccomp::new(&sc, Some(&cache)).unwrap().program, fresh);
            assert_eq!(std::fs::read(&files[0]).unwrap().len(), fresh.len() + 32, "rewritten");
        }
    }
}
