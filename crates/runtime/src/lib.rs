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
