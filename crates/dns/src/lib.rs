//! cove's embedded DNS server: every cove network has one at its gateway.
//!
//! Owns: the records table ([`Records`], pure: built from the networks and their containers,
//! answering container names, `--network-alias`es, `NAME.NETWORK`, short ids, A/AAAA/PTR and
//! [`HOST_NAME`]); the wire-level handler over it ([`handle_query`], hickory-proto for the wire
//! format); the serve loops ([`serve_udp`], [`serve_tcp`]) over sockets the caller has bound;
//! forwarding of every other name to the caller's upstream resolvers ([`Upstream`]), and reading
//! them from a resolv.conf text ([`upstreams_from_resolv_conf`]).
//!
//! Must not: bind or choose listening addresses, enter network namespaces, read files (only an
//! interface index in sysfs; the caller reads `/etc/resolv.conf`), know any public resolver, or
//! close a listening socket on reload: a reload is a new `Arc<Records>` sent on the `watch`
//! channel the loops read.
//! A query arriving for network X sees only network X's records.
//!
//! Decisions (see the items for details): records have TTL 0 ([`TTL`]); PTR answers one name,
//! `NAME.NETWORK.`, as Docker does; an answer too big for UDP is sent with TC and no records;
//! unknown names are forwarded, except under `containers.internal` (NXDOMAIN); `.local` names
//! are marked [`Forward::Mdns`], the hook for cove's mDNS resolver, and forwarded for now.
//! The UDP loop reads and answers datagrams in batches (`recvmmsg`/`sendmmsg` through nix's safe
//! wrappers, Linux only): one system call per burst each way instead of one per datagram.
#![forbid(unsafe_code)]
// A library reports through its return values and `tracing`, never by printing.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

#[doc(hidden)]
pub mod fuzz;
mod handler;
mod mmsg;
mod records;
mod server;
mod upstream;

use std::net::SocketAddr;
use std::time::Duration;

pub use handler::{handle_packet, handle_query, handle_query_from, Handled, Transport, MAX_UDP_PAYLOAD};
pub use hickory_proto;
pub use records::{Answer, Entry, Forward, LocalName, NetworkRecords, Records, DOCKER_HOST_NAME, HOST_NAME, TTL};
pub use server::{serve_tcp, serve_udp};
pub use upstream::{upstreams_from_resolv_conf, LocalResolver, Upstream, DEFAULT_TIMEOUT};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("no upstream resolver configured")]
    NoUpstream,
    #[error("upstream {server}: no answer within {after:?}")]
    UpstreamTimeout { server: SocketAddr, after: Duration },
    #[error("upstream {server}: {source}")]
    Upstream { server: SocketAddr, source: std::io::Error },
    #[error("query to forward is malformed: {0}")]
    BadQuery(String),
    #[error("no randomness for a query id: {0}")]
    Random(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An entry from text (tests and benches): addresses that do not parse panic.
#[doc(hidden)]
pub fn test_entry(id: &str, name: &str, aliases: &[&str], v4: &[&str], v6: &[&str]) -> Entry {
    Entry {
        id: id.into(),
        name: name.into(),
        aliases: aliases.iter().map(|s| s.to_string()).collect(),
        ipv4: v4.iter().map(|s| s.parse().expect("an IPv4 address")).collect(),
        ipv6: v6.iter().map(|s| s.parse().expect("an IPv6 address")).collect(),
        dns: vec![],
    }
}

/// A table with one network `net`: `web` (alias `www`, 10.1.0.2 and fd01::2) and 60 containers
/// `r0`…`r59` that share the alias `big` (an answer too large for 512 bytes). The fixture of the
/// handler's tests and of the fuzz target (`fuzz/`), kept in one place.
#[doc(hidden)]
pub fn sample_records(host: Vec<std::net::IpAddr>) -> Records {
    let mut containers = vec![Entry {
        id: "0123456789abcdef".into(),
        name: "web".into(),
        aliases: vec!["www".into()],
        ipv4: vec![std::net::Ipv4Addr::new(10, 1, 0, 2)],
        ipv6: vec![std::net::Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 2)],
        dns: vec![],
    }];
    for i in 0..60u8 {
        containers.push(Entry {
            id: format!("{i:016x}"),
            name: format!("r{i}"),
            aliases: vec!["big".into()],
            ipv4: vec![[10, 1, 1, i].into()],
            ipv6: vec![],
            dns: vec![],
        });
    }
    Records::new(&[NetworkRecords { name: "net".into(), containers, host }])
}
