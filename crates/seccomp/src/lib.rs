//! Seccomp profiles for cove containers: Docker's default profile, profile files, and the
//! compiled BPF filter.
//!
//! This crate owns three things:
//!
//! - **the default profile** ([`docker_default`]): the semantics of Docker's default seccomp
//!   profile (moby `profiles/seccomp/default.json`), written as a commented Rust table in
//!   `default.rs`, resolved against the container's capabilities and the host architecture;
//! - **profile files** ([`parse_profile`], [`from_security_opt`]): Docker-format profiles (with
//!   `archMap`, `includes`/`excludes`, `minKernel`) and plain OCI runtime-spec `LinuxSeccomp`
//!   JSON, both turned into an [`oci_spec::runtime::LinuxSeccomp`] that no longer depends on
//!   the capabilities or the host;
//! - **the filter** ([`compile_bpf`], [`load`]): building a libseccomp filter from a
//!   `LinuxSeccomp` and loading it into the calling thread.
//!
//! It must not: fork, set `no_new_privs`, drop capabilities, or decide *when* the filter is
//! loaded — that is the runtime's job (load it in the container process, just before
//! `execve`, after `no_new_privs` or while still holding `CAP_SYS_ADMIN`). It contains no
//! unchecked code; the FFI lives in the `libseccomp` crate.
//!
//! # Typical use
//!
//! ```no_run
//! # fn main() -> cove_seccomp::Result<()> {
//! let caps: Vec<String> = cove_seccomp::DOCKER_DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
//! // engine side: `--security-opt seccomp=...` (or nothing) -> spec.linux.seccomp
//! let seccomp = cove_seccomp::from_security_opt(None, &caps)?; // Some(docker default)
//! // runtime side, in the container process right before execve:
//! if let Some(seccomp) = &seccomp {
//!     cove_seccomp::load(seccomp)?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Differences from runc/Docker worth knowing
//!
//! - Syscall names that libseccomp does not know (newer than the installed libseccomp) are
//!   skipped, as runc does; they then get the default action (EPERM). runc additionally patches
//!   the BPF so that syscalls *newer than every name in the profile* return ENOSYS; cove does
//!   not (it would need raw `seccomp(2)` through FFI of our own). `clone3` gets ENOSYS explicitly, which
//!   is the case that matters for glibc.
//! - `SCMP_ACT_NOTIFY` (seccomp user notification) is parsed but refused at compile time.
#![forbid(unsafe_code)]
// A library reports through its return values and `tracing`, never by printing.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod compile;
mod default;
mod profile;

use std::path::PathBuf;

pub use compile::{compile_bpf, load, BPF_INSTRUCTION_LEN};
pub use default::{docker_default, DOCKER_DEFAULT_CAPS};
pub use profile::{from_security_opt, parse_profile};

/// Re-exported so callers need not depend on `oci-spec` just to name the type.
pub use oci_spec::runtime::LinuxSeccomp;

/// Everything that can go wrong while reading, resolving, compiling or loading a profile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The profile is not valid JSON, or not shaped like a seccomp profile.
    #[error("parse seccomp profile: {source}")]
    Json {
        #[source]
        source: serde_json::Error,
    },

    /// A profile file named by `--security-opt seccomp=FILE` could not be read.
    #[error("read seccomp profile {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An action string that is not one of the `SCMP_ACT_*` names.
    #[error("unknown seccomp action {action:?} {context}")]
    UnknownAction { action: String, context: String },

    /// An argument operator that is not one of the `SCMP_CMP_*` names.
    #[error("unknown seccomp operator {op:?} {context}")]
    UnknownOperator { op: String, context: String },

    /// An architecture name that is not one of the `SCMP_ARCH_*` names.
    #[error("unknown seccomp architecture {arch:?}")]
    UnknownArch { arch: String },

    /// A filter flag that is not one of the `SECCOMP_FILTER_FLAG_*` names.
    #[error("unknown seccomp filter flag {flag:?}")]
    UnknownFlag { flag: String },

    /// The profile is well-formed JSON but makes no sense (both `name` and `names`, an
    /// argument index above 5, an errno that does not fit, ...).
    #[error("invalid seccomp profile: {reason}")]
    Invalid { reason: String },

    /// A feature of the spec that cove does not implement.
    #[error("unsupported seccomp feature: {what}")]
    Unsupported { what: String },

    /// libseccomp refused an operation while building the filter.
    #[error("{context}: {source}")]
    Seccomp {
        context: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },

    /// The kernel refused the filter.
    #[error("load seccomp filter: {source}{hint}")]
    Load {
        #[source]
        source: std::io::Error,
        /// what to do about it, empty if nothing useful can be said
        hint: &'static str,
    },

    /// The filter could not be exported.
    #[error("export seccomp bpf: {source}")]
    Export {
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
