//! The engine: cove's state and the verbs built on it.
//!
//! Owns the state store (SQLite in WAL mode: images, tags, containers), the per-user
//! directories, turning a `run` request plus an image config into an OCI runtime spec
//! (Docker's semantics for Entrypoint/Cmd/Env/User/WorkingDir, mounts, capabilities,
//! seccomp), and driving the runtime. It must not parse command lines (the CLI does) and
//! contains no unchecked FFI code (that is the sys crate's).
#![forbid(unsafe_code)]

pub mod db;
pub mod dirs;
pub mod distribution;
pub mod exe;
pub mod config;
pub mod identity;
pub mod images;
pub mod info;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod netd;
pub use cove_netd::outbound;
pub mod network;
pub mod ports;
pub mod run;
pub mod spec;
pub mod tty;
pub mod userdb;
pub mod volumes;

pub use dirs::Dirs;

/// The tracing target of warnings meant for the user ("published ports are discarded with
/// --network host"): the engine never prints; the binary's subscriber shows each event of this
/// target as `cove: warning: MSG` on stderr, whatever the log level (see the CLI's main.rs).
pub const WARNING_TARGET: &str = "cove::warning";

/// Emits a warning for the user (see [`WARNING_TARGET`]).
pub(crate) fn warn_user(msg: impl std::fmt::Display) {
    tracing::warn!(target: WARNING_TARGET, "{msg}");
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] cove_image::Error),
    #[error(transparent)]
    Runtime(#[from] cove_runtime::Error),
    #[error(transparent)]
    Oci(#[from] cove_oci::Error),
    #[error(transparent)]
    Monitor(#[from] cove_monitor::Error),
    #[error(transparent)]
    Netd(#[from] cove_netd::Error),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Docker's exit code for this failure: 125 when cove itself fails, 126/127 when the
    /// command cannot be invoked or found.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Runtime(cove_runtime::Error::Child { exit_code, .. }) => *exit_code,
            _ => 125,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { what: what(), source })
    }
}

pub(crate) use cove_sys::with_short_path;

/// Starts `cove <verb> <args…> <report-fd>` detached from us (its own session, re-parented to
/// init or the nearest subreaper; only COVE_*, PATH and HOME in its environment) and returns
/// everything it writes on the report pipe before closing it. Used for the per-container
/// monitor and the per-user network helper.
pub(crate) fn spawn_helper(argv0: &str, verb: &str, args: &[String]) -> Result<String> {
    use std::io::Read;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Other(format!("pipe: {e}")))?;
    // The installed file, not a sealed copy we may run from: the network helper meets no
    // container, and the monitor seals itself (a copy held by a long-lived helper is memory).
    let exe = crate::exe::installed()?;
    match cove_sys::fork().map_err(|e| Error::Other(format!("fork {verb}: {e}")))? {
        None => {
            drop(r);
            let _ = nix::unistd::setsid();
            // The report pipe must survive the exec: a duplicate without close-on-exec.
            let Ok(fd) = nix::unistd::dup(&w) else { cove_sys::exit_now(125) };
            if let Ok(Some(_)) = cove_sys::fork() {
                cove_sys::exit_now(0);
            }
            let fdno = std::os::fd::AsRawFd::as_raw_fd(&fd).to_string();
            let all: Vec<std::ffi::CString> = [argv0, verb]
                .into_iter()
                .chain(args.iter().map(|s| s.as_str()))
                .chain([fdno.as_str()])
                .filter_map(|s| std::ffi::CString::new(s.as_bytes()).ok())
                .collect();
            let env: Vec<std::ffi::CString> = std::env::vars()
                .filter(|(k, _)| k.starts_with("COVE_") || k == "PATH" || k == "HOME")
                .filter_map(|(k, v)| std::ffi::CString::new(format!("{k}={v}")).ok())
                .collect();
            let Ok(path) = std::ffi::CString::new(exe.as_os_str().as_encoded_bytes()) else { cove_sys::exit_now(125) };
            let _ = nix::unistd::execve(&path, &all, &env);
            cove_sys::exit_now(125);
        }
        Some(child) => {
            drop(w);
            let _ = nix::sys::wait::waitpid(child, None);
        }
    }
    let mut msg = String::new();
    std::fs::File::from(r).read_to_string(&mut msg).ctx(|| format!("read from {argv0}"))?;
    Ok(msg)
}
