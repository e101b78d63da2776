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

/// A seccomp filter compiled ahead of the fork: libseccomp takes milliseconds to build Docker's
/// profile, so the program is compiled once per profile and cached on disk (keyed by the
/// profile's hash); the container process only hands the bytes to the kernel.
#[derive(Debug, Clone)]
pub struct CompiledSeccomp {
    pub program: Vec<u8>,
    pub flags: u32,
}

impl CompiledSeccomp {
    pub fn new(sc: &oci_spec::runtime::LinuxSeccomp, cache_dir: Option<&std::path::Path>) -> Result<CompiledSeccomp> {
        use oci_spec::runtime::LinuxSeccompFilterFlag as F;
        let mut flags = 0u32;
        for f in sc.flags().iter().flatten() {
            flags |= match f {
                F::SeccompFilterFlagTsync => 1,
                F::SeccompFilterFlagLog => 2,
                F::SeccompFilterFlagSpecAllow => 4,
            };
        }
        let json = serde_json::to_vec(sc).map_err(|e| Error::Spec(format!("seccomp profile: {e}")))?;
        let key = format!("{:016x}-{}", fnv1a(&json), json.len());
        let path = cache_dir.map(|d| d.join(format!("seccomp-{key}.bpf")));
        if let Some(p) = &path {
            if let Ok(program) = std::fs::read(p) {
                if !program.is_empty() && program.len() % 8 == 0 {
                    return Ok(CompiledSeccomp { program, flags });
                }
            }
        }
        let program = cove_seccomp::compile_bpf(sc)?;
        if let Some(p) = &path {
            let tmp = p.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, &program).is_ok() {
                let _ = std::fs::rename(&tmp, p);
            }
        }
        Ok(CompiledSeccomp { program, flags })
    }

    /// Loads the program into the calling thread.
    pub fn load(&self) -> Result<()> {
        cove_sys::seccomp_set_filter(&self.program, self.flags).map_err(|e| match e.errno() {
            Some(nix::errno::Errno::EACCES) => Error::Spec("load seccomp filter: permission denied (set no_new_privs or hold CAP_SYS_ADMIN)".into()),
            _ => Error::Sys2(e),
        })
    }
}

/// FNV-1a, 64 bit: a cache key, not a security boundary (the cache lives in the user's own
/// private runtime directory).
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
