//! Published ports, the helper's side: each host socket the engine bound and passed over is
//! served by a thread started from the thread inside the namespace (so every socket it
//! connects lives there): splice for TCP, a flow table for UDP (cove_net::forward).

use crate::proto::Port;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, RwLock};

/// Whether published ports may keep their clients' addresses ([`Transparent::source`]):
/// shared by the server and its port threads.
#[derive(Debug, Default)]
pub(crate) struct Transparent {
    /// The policy routing for transparent sockets is in place (set once at start).
    route: bool,
    /// The subnets of the ruleset that is in place, once one with the `transparent` chain is:
    /// `None` until then (and while nft is missing), so no transparent socket is made whose
    /// replies nothing would route back.
    subnets: RwLock<Option<Vec<cove_net::ipam::Subnet>>>,
}

impl Transparent {
    pub(crate) fn new(route: bool) -> Transparent {
        Transparent { route, subnets: RwLock::new(None) }
    }

    /// A ruleset for these subnets is in place.
    pub(crate) fn ruleset_applied(&self, subnets: Vec<cove_net::ipam::Subnet>) {
        *self.subnets.write().unwrap_or_else(|e| e.into_inner()) = Some(subnets);
    }

    /// The source address a published port's upstream socket should use so that the container
    /// sees the real client (rootlesskit v3 does this for TCP; here UDP too): the client's own
    /// address, bound with `IP_TRANSPARENT` inside the namespace. `None` (the gateway's address,
    /// as before) when that cannot work: a loopback client (the container would answer its own
    /// loopback), a client address inside one of cove's subnets (the reply would go to a
    /// container), another address family than the container's, or the routing and ruleset
    /// that bring replies back are not in place.
    pub(crate) fn source(&self, peer: SocketAddr, target: SocketAddr) -> Option<SocketAddr> {
        if !self.route {
            return None;
        }
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        let bad = ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || ip.is_ipv4() != target.is_ipv4();
        let bad = bad || matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
        if bad {
            return None;
        }
        let guard = self.subnets.read().unwrap_or_else(|e| e.into_inner());
        let subnets = guard.as_ref()?;
        if subnets.iter().any(|s| s.contains(ip)) {
            return None;
        }
        Some(SocketAddr::new(ip, peer.port()))
    }
}

/// One published port of a container, as [`Served`] knows it (what mDNS publishes as a service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortInfo {
    pub udp: bool,
    pub host_port: u16,
    pub container_port: u16,
}

/// The ports served, by container id: their stop signals, and what they are (for mDNS).
#[derive(Default)]
pub(crate) struct Served(HashMap<String, Vec<(cove_net::forward::Shutdown, PortInfo)>>);

impl Served {
    /// Serves the host socket `fd` for container `id`, on a thread of its own.
    pub(crate) fn add(&mut self, id: String, port: Port, fd: OwnedFd, transparent: &Arc<Transparent>) {
        let Ok(shutdown) = cove_net::forward::Shutdown::new() else { return };
        let host_port = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(fd.as_raw_fd())
            .ok()
            .and_then(|a| a.as_sockaddr_in().map(|v| v.port()).or_else(|| a.as_sockaddr_in6().map(|v| v.port())))
            .unwrap_or(0);
        let info = PortInfo { udp: port.udp, host_port, container_port: port.target.port() };
        let sd = shutdown.clone();
        let tr = transparent.clone();
        let target = port.target;
        let r = std::thread::Builder::new().name(format!("port-{id:.8}")).spawn(move || {
            if port.udp {
                let sock = std::net::UdpSocket::from(fd);
                let connect = move |client: SocketAddr| -> std::io::Result<std::net::UdpSocket> {
                    match tr.source(client, target) {
                        Some(src) => cove_net::forward::udp_upstream(target, Some(src)).or_else(|e| {
                            tracing::debug!("udp from {src} kept as the source: {e}; using the gateway's address");
                            cove_net::forward::udp_upstream(target, None)
                        }),
                        None => cove_net::forward::udp_upstream(target, None),
                    }
                };
                let _ = cove_net::forward::serve_udp(sock, connect, Default::default(), &sd);
            } else {
                let listener = std::net::TcpListener::from(fd);
                let connect = move |client: SocketAddr| match tr.source(client, target) {
                    Some(src) => cove_net::forward::start_connect(target, Some(src)).or_else(|e| {
                        tracing::debug!("tcp from {src} kept as the source: {e}; using the gateway's address");
                        cove_net::forward::start_connect(target, None)
                    }),
                    None => cove_net::forward::start_connect(target, None),
                };
                let _ = cove_net::forward::serve_tcp(listener, connect, &sd);
            }
        });
        if r.is_ok() {
            self.0.entry(id).or_default().push((shutdown, info));
        }
    }

    /// Stops serving the ports of container `id`.
    pub(crate) fn remove(&mut self, id: &str) {
        for (s, _) in self.0.remove(id).unwrap_or_default() {
            s.trigger();
        }
    }

    pub(crate) fn clear(&mut self) {
        for (_, list) in self.0.drain() {
            list.iter().for_each(|(s, _)| s.trigger());
        }
    }

    /// The published ports of container `id`.
    pub(crate) fn ports_of(&self, id: &str) -> Vec<PortInfo> {
        self.0.get(id).map(|l| l.iter().map(|(_, p)| *p).filter(|p| p.host_port != 0).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transparent_sources() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let t = Transparent::new(true);
        // No ruleset yet: never.
        assert_eq!(t.source(a("198.51.100.7:4000"), a("10.90.0.2:80")), None);
        t.ruleset_applied(vec!["10.90.0.0/24".parse().unwrap()]);
        assert_eq!(t.source(a("198.51.100.7:4000"), a("10.90.0.2:80")), Some(a("198.51.100.7:4000")));
        assert_eq!(t.source(a("[::ffff:198.51.100.7]:4000"), a("10.90.0.2:80")), Some(a("198.51.100.7:4000")));
        for peer in ["127.0.0.1:4000", "10.90.0.9:4000", "[2001:db8::1]:4000", "[fe80::1]:4000"] {
            assert_eq!(t.source(a(peer), a("10.90.0.2:80")), None, "{peer}");
        }
        assert_eq!(Transparent::new(false).source(a("198.51.100.7:4000"), a("10.90.0.2:80")), None);
    }
}
