//! cove's Multicast DNS (RFC 6762) and DNS-SD (RFC 6763) engine: `.local` names for containers,
//! and containers published on the LAN.
//!
//! Owns, as sans-IO state machines that take the time as an [`Instant`](std::time::Instant)
//! and hand back the datagrams to send (quinn-proto's shape, so unit tests drive them with a
//! fake clock):
//! - [`Responder`]: the records cove publishes — host names ([`Responder::publish_host`]: A/AAAA
//!   with the addresses of the interface a query arrived on) and services
//!   ([`Responder::publish_service`]: PTR, SRV, TXT) — with their lifecycle: probing, tie-breaking,
//!   renaming on conflict (reported as [`Event::Renamed`]), announcing, conflict detection after
//!   announcing, answering (multicast, QU unicast, legacy unicast, known-answer suppression,
//!   NSEC for types a name lacks, per-record per-interface rate limit, unicast answers
//!   budgeted per source and never much bigger than the query) and goodbyes.
//! - [`Querier`] and its [`Cache`]: one-shot queries (RFC 6762 section 5.1), browsing, a bounded
//!   cache with TTL expiry, negative entries and cache-flush semantics, answers for A/AAAA,
//!   reverse PTR, SRV and TXT that a DNS server can serve ([`Cache::lookup`], and as reply
//!   bytes to a DNS query through [`Control::answer_dns`]).
//! - [`serve`]: the loop that runs both over sockets the caller has already bound, with poll(2)
//!   and timers, driven by a [`Control`] handle (publish, withdraw, resolve, browse, interfaces,
//!   shutdown); and [`sockets::open`], the one helper that opens and configures the real mDNS
//!   sockets (SO_REUSEADDR/SO_REUSEPORT beside an avahi-daemon, multicast loop, TTL 255, packet
//!   info, group membership per interface).
//!
//! Must not: enter network namespaces, talk netlink or follow interface addresses (the caller
//! passes [`Interface`]s and updates them through [`Control::set_interfaces`]), open sockets
//! anywhere but [`sockets::open`], start threads (the caller runs [`serve`] on one of its own),
//! reflect or repeat packets between interfaces, or answer on one interface with the addresses
//! of another. The multicast destinations and the mDNS port are parameters ([`Options`]), so
//! tests run everything over unicast on 127.0.0.1 and never multicast on a real interface.
//!
//! Why hickory-proto and an engine of our own rather than the `mdns-sd` crate: mdns-sd is the
//! best-maintained responder crate, but it runs its own thread over sockets it opens itself (in
//! whatever network namespace that thread is in), cannot answer QU questions by unicast, and
//! gives no per-interface control. cove's network helper (netd) opens the sockets on the host's
//! side, decides which interfaces are announcement targets (never loopback or cove's bridges)
//! and must answer each interface with its own addresses. hickory-proto (already cove's wire
//! format for crates/dns) parses and writes the packets, with the QU and cache-flush bits of its
//! `mdns` feature; no byte is read by hand here except the header counts checked before parsing
//! and the NSEC rdata (hickory-proto has NSEC only with its DNSSEC code).
//!
//! How the network helper uses it (on the host's side, on a thread of its own):
//! ```no_run
//! use std::time::Duration;
//! use cove_mdns::hickory_proto::rr::{Name, RecordType};
//! use cove_mdns::{channel, serve, sockets, Interface, Options, ServiceSpec};
//!
//! let lan = vec![Interface { index: 2, name: "eth0".into(), addrs: vec!["192.168.1.20".parse()?] }];
//! let socks = sockets::open(&lan)?; // UDP 5353 v4/v6 in the groups, plus one-shot sockets
//! let (control, commands) = channel()?;
//! let options = Options::standard(lan);
//! let engine = std::thread::spawn(move || serve(socks, options, commands, |event| drop(event)));
//! let id = control.publish_host("node1.mycluster.local")?;
//! control.publish_service(ServiceSpec {
//!     service_type: "_redis._tcp".into(),
//!     instance: "node1 on mycluster".into(),
//!     host: "node1.mycluster.local".into(),
//!     port: 12000,
//!     txt: vec!["container=node1".into()],
//! })?;
//! let answers = control.resolve(&Name::from_ascii("printer.local.")?, RecordType::A, Duration::from_secs(1))?;
//! let cached = control.lookup_cached(&Name::from_ascii("printer.local.")?, RecordType::A); // no wake-up
//! // The DNS server's `.local` hook: query bytes in, reply bytes out (callback, for async callers).
//! # let query: Vec<u8> = Vec::new();
//! control.answer_dns(&query, Duration::from_secs(1), Box::new(|reply| drop(reply)));
//! control.withdraw(id)?; // goodbye
//! control.shutdown(); // goodbyes for the rest, then serve returns
//! engine.join().expect("mdns thread")?;
//! # let _ = (answers, cached);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
// A library reports through its return values and `tracing`, never by printing.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod cache;
mod dnsreply;
#[doc(hidden)]
pub mod fuzz;
mod querier;
mod responder;
mod rng;
mod serve;
pub mod sockets;
mod wire;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

pub use cache::{Cache, Lookup, NEGATIVE_TTL};
pub use hickory_proto;
pub use querier::{Outcome, Querier, QueryId, ServiceInstance};
pub use responder::{Event, Id, Published, Responder, ServiceSpec, State, HOST_TTL, OTHER_TTL};
pub use serve::{channel, serve, Command, Commands, Control, Options, Reply};
pub use sockets::Sockets;
pub use wire::{Family, Target, Transmit};

/// The mDNS port (RFC 6762 section 3).
pub const MDNS_PORT: u16 = 5353;
/// The IPv4 mDNS group.
pub const GROUP_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 251);
/// The IPv6 mDNS group (link-local scope: sent with the interface as scope id).
pub const GROUP_V6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);

/// A network interface the engine works on: its index (what packet info reports and what
/// outgoing packets are pinned to), its name (for logs and `cove mdns ls`) and its addresses
/// (the A/AAAA records of every published host name on that interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

impl Interface {
    /// Whether packets of `family` go out on this interface (it has an address of that family).
    pub fn has(&self, family: Family) -> bool {
        self.addrs.iter().any(|a| Family::of(*a) == family)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid mDNS name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("{name:?} is already published")]
    Duplicate { name: String },
    #[error("nothing published under id {0}")]
    UnknownId(u64),
    #[error("mDNS socket {what}: {source}")]
    Socket { what: String, source: std::io::Error },
    #[error("mDNS engine is not running")]
    Stopped,
    #[error("no answer for {name} within {after:?}")]
    Timeout { name: String, after: std::time::Duration },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
