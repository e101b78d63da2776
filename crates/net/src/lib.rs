//! Building blocks of cove's rootless bridge networking.
//!
//! cove runs every container of a user in that user's user namespace. A per-user "rootless
//! network namespace" holds one Linux bridge per cove network; each container gets a veth
//! pair (one end on the bridge, the other moved into the container's netns as `eth0`), an
//! address from IPAM and a default route via the gateway (the bridge's address). Outbound
//! traffic leaves through pasta/slirp4netns with masquerade from the bridges; published ports
//! are served by a user-space forwarder in the host namespace that connects into the rootless
//! namespace.
//!
//! This crate owns the pieces, each usable and testable alone:
//!
//! | module | owns |
//! |---|---|
//! | [`ipam`] | subnets (parse, overlap, default pool), address allocation: pure |
//! | [`link`] | synchronous rtnetlink: bridges, veth pairs, moving into a netns, addresses, routes |
//! | [`netns`] | [`netns::NetnsGuard`]: enter a network namespace on this thread, switch back on drop |
//! | [`portmap`] | Docker `-p` specs, the `ip_unprivileged_port_start` check: pure but for one read |
//! | [`forward`] | TCP forwarder (epoll + splice(2) through pipes) and UDP forwarder (flow table) |
//! | [`nft`] | the nftables ruleset text (masquerade, isolation, `--internal`): pure |
//!
//! It must not: keep state (leases live in the engine's SQLite; the caller passes what is in
//! use), fork or spawn processes (pasta, the keeper and `netd` belong to the engine), apply
//! nftables rules, or touch any namespace it was not handed. Only `sys` holds unchecked (FFI) code;
//! everything here goes through `nix` and `std`.
//!
//! # Decisions
//!
//! - **Netlink is synchronous**: [`link::Netlink`] drives a blocking `netlink-sys` socket with
//!   `netlink-packet-route` messages. No tokio runtime: the monitor and `netd` have none, the
//!   requests are a handful of round trips, and a netlink socket stays in the namespace it was
//!   created in, so [`link::Netlink::open_in`] enters the target netns only to create the
//!   socket and every later request needs no namespace switching at all.
//! - **Namespace switching is an RAII guard** ([`netns::NetnsGuard`]), never a macro an early
//!   return can escape (netavark's `exec_netns!`). The guard is `!Send`: setns(2) changes the
//!   calling thread only. If switching back fails the process aborts rather than run on in the
//!   wrong namespace.
//! - **Forwarder threading**: TCP runs one epoll event loop per listener (module `relay`):
//!   non-blocking connects, splice(2) socket → pipe → socket both ways, half-close-correct,
//!   with a short adaptive busy-poll before sleeping. It replaced two pooled threads per
//!   connection, whose cross-thread wakeups cost a third of the connection rate. UDP uses one
//!   thread per listening socket with epoll over the listener and every flow's upstream
//!   socket.
//! - **Client source address**: [`forward::start_connect`] and [`forward::udp_upstream`] can
//!   bind the upstream socket to the client's address with `IP_TRANSPARENT`; the routing that
//!   brings replies back is [`link::Netlink::route_marked_to_local`] plus the ruleset's
//!   `transparent` chain ([`nft`]). Loopback clients cannot be preserved at all.
//! - **Subnet pool**: new networks get the first free /24 of `10.90.0.0/16` (IPv6: /64s of the
//!   ULA `fd63:6f76:6500::/48`, "cove" in ASCII), away from podman (10.88/16, 10.89/16) and
//!   Docker (172.17/16 upward) so cove can coexist with both on one host.

#![forbid(unsafe_code)]
// A library reports through its return values and `tracing`, never by printing.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod forward;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod nft;
pub mod portmap;
mod relay;
mod stop;

use std::io;
use std::net::IpAddr;

pub use ipam::{Ipam, Subnet, SubnetPool};
pub use portmap::{HostPorts, PortRange, PortSpec, Protocol};

/// Errors of cove's networking building blocks. Every variant names what it was doing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid subnet {input:?}: {reason}")]
    InvalidSubnet { input: String, reason: String },
    #[error("invalid gateway {gateway} for subnet {subnet}: {reason}")]
    InvalidGateway { gateway: IpAddr, subnet: Subnet, reason: &'static str },
    #[error("subnet {subnet} has no free address left")]
    Exhausted { subnet: Subnet },
    #[error("address {addr} is not in subnet {subnet}")]
    OutOfSubnet { addr: IpAddr, subnet: Subnet },
    #[error("address {addr} is already in use in subnet {subnet}")]
    InUse { addr: IpAddr, subnet: Subnet },
    #[error("address {addr} is the {what} of subnet {subnet}")]
    Reserved { addr: IpAddr, subnet: Subnet, what: &'static str },
    #[error("no free /{prefix_len} subnet left in pool {pool}")]
    PoolExhausted { pool: Subnet, prefix_len: u8 },
    #[error("subnet {subnet} overlaps subnet {other} of network {network:?}")]
    Overlap { subnet: Subnet, other: Subnet, network: String },
    #[error("invalid port spec {spec:?}: {reason}")]
    InvalidPortSpec { spec: String, reason: String },
    #[error(
        "host port {port} is below net.ipv4.ip_unprivileged_port_start ({start}): \
         use a port >= {start} or lower the sysctl (sysctl net.ipv4.ip_unprivileged_port_start={port})"
    )]
    PrivilegedPort { port: u16, start: u16 },
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidIfName { name: String, reason: &'static str },
    #[error("invalid MAC address {input:?}: {reason}")]
    InvalidMac { input: String, reason: &'static str },
    #[error("invalid nftables input: {0}")]
    InvalidNft(String),
    #[error("link {0:?} not found")]
    LinkNotFound(String),
    #[error("netlink {op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: nix::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The OS error behind this error, if there is one (for example `EEXIST` from netlink).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Netlink { source, .. } | Error::Io { source, .. } => source.raw_os_error(),
            Error::Sys { source, .. } => Some(*source as i32),
            _ => None,
        }
    }
}

pub(crate) fn io_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let op = op.into();
    move |source| Error::Io { op, source }
}

pub(crate) fn sys_err(op: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let op = op.into();
    move |source| Error::Sys { op, source }
}
