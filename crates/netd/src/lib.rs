//! cove's per-user network helper (`cove __netd`): the process that holds the rootless network
//! namespace with cove's bridges, serves published ports into it, runs each network's DNS
//! server at its gateway, and gives the namespace its way out (pasta or slirp4netns, nftables).
//!
//! | module | owns |
//! |---|---|
//! | [`proto`] | the control protocol on `netd.sock` (SYNC with the [`proto::Table`], ADD/DEL of published ports with their descriptors, END, OK/ERR) and the OK/E report of a starting helper: encoded and decoded here only |
//! | [`client`] | what the engine calls: find or start the helper ([`client::rootless_netns`]), [`client::sync`], [`client::register`]/[`client::unregister`] ports, [`client::running`], [`client::stop`] |
//! | [`server`] | [`server::serve`]: the control loop over a listener the caller bound, and the thread inside the namespace that owns the state (ports served, DNS listeners and records, ruleset, the last table) |
//! | [`helper`] | the process around `serve`: namespace, `netd.pid`, the outbound tool, idle exit |
//! | [`outbound`] | choosing and starting pasta/slirp4netns, the ruleset's application, outbound TCP |
//!
//! Must not: open the state database or read the run requests of containers (the engine sends
//! the networks and endpoints it needs in each SYNC: [`proto::Table`]), parse cove.conf (the
//! caller gives a function that says whether networks that do not say reach the host's
//! loopback), or close a DNS listener for a reload. No process-wide state: everything lives in
//! the server (tests run several side by side).
#![forbid(unsafe_code)]
// A library reports through its return values and `tracing`, never by printing.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod client;
mod dns;
#[doc(hidden)]
pub mod fuzz;
pub mod helper;
pub mod mdns;
pub mod outbound;
mod ports;
pub mod proto;
pub mod server;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A message that does not follow [`proto`] (the peer's or ours).
    #[error("network helper protocol: {0}")]
    Protocol(String),
    /// The helper answered `ERR`.
    #[error("network helper: {0}")]
    Refused(String),
    /// The helper could not start (its report, or why there was none).
    #[error("the network helper failed: {0}")]
    Start(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The helper's files in the user's run directory, named in one place.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub dir: PathBuf,
}

impl RunFiles {
    pub fn new(run: &Path) -> RunFiles {
        RunFiles { dir: run.to_path_buf() }
    }
    /// `PID STARTTIME NSFD`: the helper, and the descriptor number of its namespace.
    pub fn pid(&self) -> PathBuf {
        self.dir.join("netd.pid")
    }
    /// Taken to start the helper or to find it, and by the helper to decide to exit.
    pub fn lock(&self) -> PathBuf {
        self.dir.join("netd.lock")
    }
    /// Touched by every command that is about to attach: the helper waits for it to age.
    /// Held while a table is read from the database and sent ([`client::sync_built`]).
    pub fn sync_lock(&self) -> PathBuf {
        self.dir.join("netd-sync.lock")
    }
    pub fn used(&self) -> PathBuf {
        self.dir.join("netd.used")
    }
    pub const SOCK: &'static str = "netd.sock";
    pub fn sock(&self) -> PathBuf {
        self.dir.join(Self::SOCK)
    }
    /// The outbound tool's messages, and problems that fail no request.
    pub fn log(&self) -> PathBuf {
        self.dir.join("netd-outbound.log")
    }
    pub fn outbound_pid(&self) -> PathBuf {
        self.dir.join("netd-outbound.pid")
    }

    /// The helper's pid and the descriptor number of its namespace, if it runs (its start time
    /// checked: a reused pid is not the helper).
    pub fn live(&self) -> Option<(i32, i32)> {
        let t = std::fs::read_to_string(self.pid()).ok()?;
        let v: Vec<i64> = t.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        let (pid, st, fd) = (*v.first()? as i32, *v.get(1)? as u64, *v.get(2)? as i32);
        (cove_monitor::start_time(pid) == Some(st)).then_some((pid, fd))
    }
}
