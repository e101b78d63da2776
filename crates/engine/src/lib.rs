//! The engine: cove's state and the verbs built on it.
//!
//! Owns the state store (SQLite in WAL mode: images, tags, containers), the per-user
//! directories, turning a `run` request plus an image config into an OCI runtime spec
//! (Docker's semantics for Entrypoint/Cmd/Env/User/WorkingDir, mounts, capabilities,
//! seccomp), and driving the runtime. It must not parse command lines (the CLI does) and
//! contains no unchecked FFI code (that is the sys crate's).
#![forbid(unsafe_code)]
// A library reports through its return values and `tracing`, never by printing.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod check;
pub mod config;
pub mod container;
pub mod db;
pub mod dirs;
pub mod distribution;
mod etc;
pub mod exe;
pub mod identity;
pub mod images;
pub mod info;
pub mod lifecycle;
pub mod limits;
pub mod logs;
pub mod mdns;
pub mod monitor;
pub mod netd;
pub use cove_netd::outbound;
pub mod network;
pub mod plan;
pub mod ports;
pub mod reconcile;
pub mod request;
pub mod run;
pub mod spec;
pub mod state;
pub mod storage;
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
    /// The host does not let this user do it (a port below `ip_unprivileged_port_start`).
    #[error("{0}")]
    HostDenied(String),
    #[error("state database: {0}")]
    Db(rusqlite::Error),
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
    /// A stored record that does not decode (names the record).
    #[error("{0}")]
    Corrupt(String),
    #[error(transparent)]
    Netd(#[from] cove_netd::Error),
    #[error("{0}")]
    Other(String),
}

impl From<rusqlite::Error> for Error {
    /// A column that did not decode ([`db::corrupt`]) is [`Error::Corrupt`] with its message;
    /// the rest is the database's.
    fn from(e: rusqlite::Error) -> Error {
        match e {
            rusqlite::Error::FromSqlConversionFailure(_, rusqlite::types::Type::Text, m) => {
                Error::Corrupt(m.to_string())
            }
            e => Error::Db(e),
        }
    }
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

/// The typed error of a runtime setup hook (cgroup, networks, published ports), kept aside:
/// the runtime carries only its text (`cove_runtime::Error::Setup`), and a caller or a test
/// must still tell a port in use (a conflict) from the rest.
#[derive(Default)]
pub(crate) struct HookError(std::cell::RefCell<Option<Error>>);

impl HookError {
    /// Keeps `e` and gives the runtime its text.
    pub(crate) fn keep(&self, e: Error) -> String {
        let text = e.to_string();
        *self.0.borrow_mut() = Some(e);
        text
    }

    /// The error of a failed create: the hook's own when the hook failed.
    pub(crate) fn or(&self, e: cove_runtime::Error) -> Error {
        match (e, self.0.borrow_mut().take()) {
            (cove_runtime::Error::Setup(_), Some(kept)) => kept,
            (e, _) => e.into(),
        }
    }
}

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
    let exe = exe::installed()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_stays_a_conflict_through_the_runtime() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let specs = ports::specs(&[format!("127.0.0.1:{port}:80")], false, &[]).unwrap();
        let ep = ports::Target { ip: "10.90.0.2".parse().unwrap(), ip6: None };
        let d = tempfile::tempdir().unwrap();
        let e = ports::publish(d.path(), d.path(), "abc", &specs, Some(ep)).unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{e:?}");
        // What the runtime returns when the hook failed: the hook's typed error again.
        let kept = HookError::default();
        let text = kept.keep(e);
        assert!(text.contains("address already in use"), "{text}");
        let back = kept.or(cove_runtime::Error::Setup(text.clone()));
        assert!(matches!(&back, Error::Conflict(t) if *t == text), "{back:?}");
        assert_eq!(back.exit_code(), 125);
        // Other failures of create pass through.
        assert!(matches!(HookError::default().or(cove_runtime::Error::Setup("x".into())), Error::Runtime(_)));
    }
}
