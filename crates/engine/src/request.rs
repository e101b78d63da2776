//! What a user asks for in `cove run`/`cove create` ([`RunRequest`], kept in the state store
//! as JSON) and the small pieces of it that other modules read: the network mode and Docker's
//! size syntax. Pure: no I/O, no other module of the engine.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The network containers join when `--network` is not given (created on first use).
pub const DEFAULT_NETWORK: &str = "cove";

/// Everything a user asked for in `cove run`/`cove create` (kept in the state store).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunRequest {
    pub image: String,
    pub name: Option<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub volumes: Vec<String>,
    pub mounts: Vec<String>,
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    pub hostname: Option<String>,
    pub rm: bool,
    pub tty: bool,
    pub interactive: bool,
    pub detach: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security_opt: Vec<String>,
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub network: Option<String>,
    pub ulimits: Vec<String>,
    pub labels: Vec<String>,
    pub sysctls: Vec<String>,
    pub restart: Option<String>,
    pub log_opts: Vec<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub init: Option<bool>,
    pub user_home: Option<String>,
    pub network_aliases: Vec<String>,
    /// `--expose PORT[-END][/PROTO]`: exposed besides the image's ones (for `-P`).
    pub expose: Vec<String>,
    /// `--ip`, `--ip6`: the container's addresses on its (one) network.
    pub ip: Option<String>,
    pub ip6: Option<String>,
    /// `--mac-address`: of the container's interface on its (first) network.
    pub mac_address: Option<String>,
    /// `--add-host NAME:IP` (IP may be `host-gateway`).
    pub add_hosts: Vec<String>,
    /// `--dns`: the container's resolvers (on a cove network: the upstreams of its DNS).
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub publish: Vec<String>,
    pub publish_all: bool,
}

/// Network mode of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// Its own network namespace with only loopback.
    None,
    /// The host's network namespace.
    Host,
    /// Its own network namespace, attached to these cove networks (bridges).
    Bridge(Vec<String>),
    /// `container:NAME`: the network namespace of another (running) container, joined by
    /// this path (`/proc/<its pid>/ns/net`, resolved by `prepare`; empty until then).
    Container(String, PathBuf),
}

impl NetMode {
    pub fn own_netns(&self) -> bool {
        !matches!(self, NetMode::Host)
    }
}

/// `--network`: none, host, or network names (comma-separated or repeated); the default
/// network when nothing is given.
pub fn net_mode(req: &RunRequest) -> Result<NetMode> {
    match req.network.as_deref() {
        Some("none") => Ok(NetMode::None),
        Some("host") => Ok(NetMode::Host),
        None | Some("") | Some("bridge") => Ok(NetMode::Bridge(vec![DEFAULT_NETWORK.to_string()])),
        Some(list) => {
            let nets: Vec<String> = list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            if nets.iter().any(|n| n == "none" || n == "host") {
                return Err(Error::Invalid(format!(
                    "--network {list:?}: none and host cannot be combined with other networks"
                )));
            }
            if let Some(c) = nets.iter().find(|n| n.starts_with("container:")) {
                let target = c.trim_start_matches("container:");
                if nets.len() > 1 || target.is_empty() {
                    return Err(Error::Invalid(format!(
                        "--network {list:?}: container:NAME cannot be combined with other networks"
                    )));
                }
                return Ok(NetMode::Container(target.to_string(), Default::default()));
            }
            Ok(NetMode::Bridge(nets))
        }
    }
}

/// Parses Docker sizes: `64m`, `1g`, `512k`, `1024b`, plain bytes.
pub fn parse_size(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|x| x.ends_with(|c: char| c.is_ascii_alphabetic())).unwrap_or(&t).to_string();
    let t = t.strip_suffix('b').map(|x| x.to_string()).unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (&t[..], 1),
    };
    let n: f64 = num.parse().map_err(|_| Error::Invalid(format!("invalid size: {s:?}")))?;
    if n.is_nan() || n < 0.0 || !n.is_finite() {
        return Err(Error::Invalid(format!("invalid size: {s:?}")));
    }
    Ok((n * mult as f64) as i64)
}
