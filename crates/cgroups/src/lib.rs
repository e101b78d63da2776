//! Resource limits for containers through Linux control groups, wherever the host allows it.
//!
//! This crate owns everything cove knows about cgroups: telling which hierarchy the host runs
//! (pure v2, hybrid, pure v1), whether this process may use it (root, or a cgroup v2 subtree
//! delegated to the user), turning Docker/OCI resource settings into cgroup file writes, creating
//! and removing a container's cgroup, moving processes into it and reading usage back.
//!
//! It must not decide policy: when limits cannot be applied it says why ([`Support::reason`],
//! [`Support::unmet`], [`Cgroup::warnings`]) and the caller chooses to warn and run anyway. It
//! never touches cgroups other than the ones it creates (`<parent>/cove/<id>`), never moves
//! processes other than the pids it is given, never mounts anything and never talks to systemd.
//! Unlike youki 0.7 (rootless on hybrid hosts) and crun 1.8 (hybrid mode), it does not fail on
//! hybrid hosts: it uses the v1 controllers there and ignores the empty unified mount.
//!
//! # Public API
//!
//! ```text
//! detect(rootless: bool) -> Support                      // what this process can use
//! detect_from(mountinfo, proc_cgroup, rootless) -> Support  // same, from given text (tests)
//! Support { hierarchy, usable, controllers, reason, layout }
//! Support::unmet(&self, &Limits) -> Option<String>       // one-line warning for the user
//! Hierarchy::{Unified, Hybrid, Legacy, Unavailable}
//! Layout::{None, Unified { parent }, Legacy { parents }}
//!
//! Limits { memory, memory_swap, cpu_quota, cpu_period, cpu_shares, pids, cpuset_cpus, cpuset_mems, devices }
//! Limits::from_oci(&LinuxResources) -> Limits;  Limits::is_empty(&self) -> bool
//! Limits::validate(&self) -> Result<()>;  Limits::controllers(&self) -> Vec<&'static str>
//! Limits::with_cpus(self, f64) -> Limits;  cpus_to_quota(f64) -> (i64, u64)  // 0.5 -> 50000/100000
//! shares_to_weight(u64) -> u64;  parse_bytes("64m") -> Result<i64>
//!
//! Cgroup::create(id, &Limits, &Support) -> Result<Cgroup>     // <parent>/cove/<id>
//! Cgroup::create_in(group, id, &Limits, &Support) -> Result<Cgroup>
//! Cgroup::open(id, &Support) -> Result<Cgroup>;  Cgroup::open_in(group, id, &Support)
//! Cgroup::id(&self) -> &str
//! Cgroup::add_pid(&self, i32) -> Result<()>   // cgroup.procs in every hierarchy
//! Cgroup::procs(&self) -> Result<Vec<i32>>
//! Cgroup::remove(&self) -> Result<()>          // rmdir, retries briefly on EBUSY
//! Cgroup::paths(&self) -> Vec<PathBuf>
//! Cgroup::warnings(&self) -> &[String]         // limits that could not be applied
//! Cgroup::stats(&self) -> Result<Stats>        // memory, pids, cpu usage
//!
//! own_cgroup() -> Result<OwnCgroup>            // parsed /proc/self/cgroup
//! parse_proc_cgroup(&str) -> Result<OwnCgroup>;  parse_mountinfo(&str) -> CgroupMounts
//! ```
//!
//! # Typical use by the runtime
//!
//! ```no_run
//! use cove_cgroups::{detect, Cgroup, Limits};
//! let limits = Limits { memory: Some(64 << 20), pids: Some(100), ..Limits::default() }
//!     .with_cpus(0.5);
//! let support = detect(true);
//! if let Some(warning) = support.unmet(&limits) {
//!     eprintln!("cove: warning: {warning}");
//! }
//! if support.usable && !limits.is_empty() {
//!     let cg = Cgroup::create("0123abcd", &limits, &support)?;
//!     for w in cg.warnings() {
//!         eprintln!("cove: warning: {w}");
//!     }
//!     cg.add_pid(4242)?;
//!     // ... after the container exited:
//!     cg.remove()?;
//! }
//! # Ok::<(), cove_cgroups::Error>(())
//! ```
#![forbid(unsafe_code)]
// A library reports through its return values and `tracing`, never by printing.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod cgroup;
mod detect;
mod devices;
mod fs;
mod limits;
mod proc;

pub use cgroup::{Cgroup, Stats, DEFAULT_GROUP};
pub use detect::{detect, detect_from, Hierarchy, Layout, Support};
pub use limits::{cpus_to_quota, parse_bytes, shares_to_weight, Limits, DEFAULT_CPU_PERIOD};
pub use proc::{own_cgroup, parse_mountinfo, parse_proc_cgroup, CgroupMount, CgroupMounts, OwnCgroup};

use std::path::PathBuf;

/// Everything that can go wrong in this crate. I/O variants name the file and carry the
/// `io::Error`, whose message ends with the errno (`Permission denied (os error 13)`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("write {value:?} to {path}: {source}")]
    Write { path: PathBuf, value: String, source: std::io::Error },
    #[error("create cgroup {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: std::io::Error },
    #[error("parse {what}: {reason} in line {line:?}")]
    Parse { what: &'static str, line: String, reason: &'static str },
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid resource limits: {0}")]
    InvalidLimits(String),
    #[error("invalid size {input:?}: {reason}")]
    InvalidSize { input: String, reason: &'static str },
    #[error("cgroup limits unavailable: {0}")]
    Unavailable(String),
    #[error("cgroup {0:?} not found")]
    NotFound(String),
    #[error("{}", join(.0))]
    Multiple(Vec<Error>),
}

fn join(errors: &[Error]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
