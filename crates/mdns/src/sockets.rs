//! The one place this crate opens sockets: the real mDNS sockets, for the network helper to
//! open on the host's side and hand to the serve loop. Unit tests use [`bind_v4`] on
//! 127.0.0.1 without joining any group (no multicast on a real interface, ever, in tests).
//!
//! Everything through nix's and std's safe wrappers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::OwnedFd;

use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, IpMembershipRequest, SockFlag, SockType, SockaddrIn, SockaddrIn6,
};

use crate::{Error, Interface, Result, GROUP_V4, GROUP_V6, MDNS_PORT};

/// The sockets the serve loop serves, bound by the caller ([`open`] for the real ones).
/// `v4`/`v6` are the mDNS sockets (the port of [`crate::Options::port`], in the groups):
/// responder traffic, and every response heard fills the cache. `query_v4`/`query_v6` are
/// ephemeral-port sockets for one-shot queries. Each may be absent; packet info
/// (IP_PKTINFO / IPV6_RECVPKTINFO) must be on, or arrivals have no interface and are dropped.
#[derive(Debug, Default)]
pub struct Sockets {
    pub v4: Option<UdpSocket>,
    pub v6: Option<UdpSocket>,
    pub query_v4: Option<UdpSocket>,
    pub query_v6: Option<UdpSocket>,
}

fn err(what: &str, e: impl Into<std::io::Error>) -> Error {
    Error::Socket { what: what.to_string(), source: e.into() }
}

fn new_socket(family: AddressFamily) -> Result<OwnedFd> {
    socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)
        .map_err(|e| err("create", e))
}

/// A UDP socket on `addr` as mDNS wants it: SO_REUSEADDR and SO_REUSEPORT (shares 5353 with an
/// avahi-daemon on the same host), IP_PKTINFO (arrival interface), multicast loop on (a local
/// avahi hears us), multicast TTL 255, non-blocking. Joins no group.
pub fn bind_v4(addr: SocketAddrV4) -> Result<UdpSocket> {
    let fd = new_socket(AddressFamily::Inet)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| err("SO_REUSEADDR", e))?;
    setsockopt(&fd, sockopt::ReusePort, &true).map_err(|e| err("SO_REUSEPORT", e))?;
    setsockopt(&fd, sockopt::Ipv4PacketInfo, &true).map_err(|e| err("IP_PKTINFO", e))?;
    setsockopt(&fd, sockopt::IpMulticastTtl, &255).map_err(|e| err("IP_MULTICAST_TTL", e))?;
    setsockopt(&fd, sockopt::IpMulticastLoop, &true).map_err(|e| err("IP_MULTICAST_LOOP", e))?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(addr)).map_err(|e| err(&format!("bind {addr}"), e))?;
    Ok(UdpSocket::from(fd))
}

/// [`bind_v4`] for IPv6 (IPV6_V6ONLY, IPV6_RECVPKTINFO, hop limit 255).
pub fn bind_v6(addr: SocketAddrV6) -> Result<UdpSocket> {
    let fd = new_socket(AddressFamily::Inet6)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| err("SO_REUSEADDR", e))?;
    setsockopt(&fd, sockopt::ReusePort, &true).map_err(|e| err("SO_REUSEPORT", e))?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(|e| err("IPV6_V6ONLY", e))?;
    setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true).map_err(|e| err("IPV6_RECVPKTINFO", e))?;
    setsockopt(&fd, sockopt::Ipv6MulticastHops, &255).map_err(|e| err("IPV6_MULTICAST_HOPS", e))?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn6::from(addr))
        .map_err(|e| err(&format!("bind {addr}"), e))?;
    let sock = UdpSocket::from(fd);
    sock.set_multicast_loop_v6(true).map_err(|e| err("IPV6_MULTICAST_LOOP", e))?;
    Ok(sock)
}

/// Joins 224.0.0.251 (by the interface's first IPv4 address) and ff02::fb (by index) on
/// `iface`, on whichever of the sockets exist. Memberships belong to the socket: keep a
/// `try_clone()` of each to join interfaces that appear later.
pub fn join(v4: Option<&UdpSocket>, v6: Option<&UdpSocket>, iface: &Interface) -> Result<()> {
    if let (Some(s), Some(addr)) = (v4, first_v4(iface)) {
        setsockopt(s, sockopt::IpAddMembership, &IpMembershipRequest::new(GROUP_V4, Some(addr)))
            .map_err(|e| err(&format!("join {GROUP_V4} on {}", iface.name), e))?;
    }
    if let Some(s) = v6 {
        if iface.addrs.iter().any(|a| a.is_ipv6()) {
            s.join_multicast_v6(&GROUP_V6, iface.index)
                .map_err(|e| err(&format!("join {GROUP_V6} on {}", iface.name), e))?;
        }
    }
    Ok(())
}

/// Leaves the groups [`join`] joined on `iface` (errors ignored: the interface may be gone).
pub fn leave(v4: Option<&UdpSocket>, v6: Option<&UdpSocket>, iface: &Interface) {
    if let (Some(s), Some(addr)) = (v4, first_v4(iface)) {
        let _ = setsockopt(s, sockopt::IpDropMembership, &IpMembershipRequest::new(GROUP_V4, Some(addr)));
    }
    if let Some(s) = v6 {
        let _ = s.leave_multicast_v6(&GROUP_V6, iface.index);
    }
}

fn first_v4(iface: &Interface) -> Option<Ipv4Addr> {
    iface.addrs.iter().find_map(|a| match a {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    })
}

/// The real sockets: UDP 5353 on both families joined to the groups on every interface of
/// `interfaces`, and two ephemeral-port sockets for one-shot queries. A family whose 5353
/// socket cannot be opened (no IPv6 on the host) is left out with a debug log; IPv4 failing
/// is an error.
pub fn open(interfaces: &[Interface]) -> Result<Sockets> {
    let v4 = bind_v4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, MDNS_PORT))?;
    let query_v4 = bind_v4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    let (v6, query_v6) = match (
        bind_v6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, MDNS_PORT, 0, 0)),
        bind_v6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)),
    ) {
        (Ok(a), Ok(b)) => (Some(a), Some(b)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "no IPv6 mDNS socket");
            (None, None)
        }
    };
    for iface in interfaces {
        join(Some(&v4), v6.as_ref(), iface)?;
    }
    Ok(Sockets { v4: Some(v4), v6, query_v4: Some(query_v4), query_v6 })
}

/// The local address of a socket (tests: which port the kernel chose).
pub fn local_addr(sock: &UdpSocket) -> Result<SocketAddr> {
    sock.local_addr().map_err(|e| err("getsockname", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two engines (or cove and an avahi-daemon) share the port; on loopback only, no group.
    #[test]
    fn the_port_is_shared_and_packet_info_is_on() {
        let a = bind_v4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = local_addr(&a).unwrap().port();
        let b = bind_v4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).unwrap();
        assert_eq!(local_addr(&b).unwrap().port(), port);
        assert!(nix::sys::socket::getsockopt(&a, sockopt::Ipv4PacketInfo).unwrap());
        assert!(nix::sys::socket::getsockopt(&a, sockopt::ReusePort).unwrap());
        assert_eq!(nix::sys::socket::getsockopt(&a, sockopt::IpMulticastTtl).unwrap(), 255);
        assert!(nix::sys::socket::getsockopt(&a, sockopt::IpMulticastLoop).unwrap());
        if let Ok(v6) = bind_v6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0)) {
            assert!(nix::sys::socket::getsockopt(&v6, sockopt::Ipv6RecvPacketInfo).unwrap());
        }
    }
}
