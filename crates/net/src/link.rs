//! Links, addresses and routes over rtnetlink, synchronously.
//!
//! [`Netlink`] wraps one blocking `NETLINK_ROUTE` socket (netlink-sys, no async runtime) and
//! speaks `netlink-packet-route` messages: one request, read until its ACK. A netlink socket
//! acts on the network namespace it was created in, so [`Netlink::open_in`] enters the target
//! namespace (on a short-lived thread) only for the socket(2) call; every request afterwards
//! works from any thread without switching namespaces.
//!
//! Everything here works as uid 0 of a user namespace that owns the network namespaces
//! involved (CAP_NET_ADMIN there): that is the rootless netns and the containers' netns.
//!
//! The higher-level [`attach_container`] wires one container to a bridge and undoes its
//! own work if a step fails.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::{Error, Result};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Checks an interface name: 1..=15 bytes, no '/', ':', whitespace or control characters,
/// not "." or "..".
pub fn validate_ifname(name: &str) -> Result<()> {
    let bad = |reason| Err(Error::InvalidIfName { name: name.to_string(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > IFNAME_MAX {
        return bad("longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("reserved name");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == b'"' || b.is_ascii_whitespace() || b.is_ascii_control() || b >= 0x80)
    {
        return bad("contains '/', ':', '\"', whitespace or a non-ASCII byte");
    }
    Ok(())
}

/// A network namespace to move a link into.
#[derive(Debug, Clone, Copy)]
pub enum Netns<'a> {
    /// An open handle on the namespace (`/proc/PID/ns/net`, a bind mount, or [`crate::netns::current`]).
    Fd(BorrowedFd<'a>),
    /// The namespace of a process.
    Pid(i32),
}

/// An IP address with its prefix length, as put on an interface (`10.90.0.2/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl std::fmt::Display for IfAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// A synchronous rtnetlink connection bound to one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// A connection to the calling thread's network namespace.
    pub fn open() -> Result<Self> {
        let nl_err = |op: &str| {
            let op = op.to_string();
            move |source| Error::Netlink { op, source }
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(nl_err("socket(NETLINK_ROUTE)"))?;
        socket.bind_auto().map_err(nl_err("bind"))?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(nl_err("connect"))?;
        // Extended ACKs give the kernel's reason ("Permission denied" alone is rarely enough),
        // but older kernels may refuse the option; it is only a nicety.
        let _ = socket.set_ext_ack(true);
        Ok(Netlink { socket, seq: 0 })
    }

    /// A connection to the network namespace `netns`: the socket is created by a short-lived
    /// thread inside it (a netlink socket stays in the namespace it was created in), so the
    /// calling thread never moves — which also works when it could not move back.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Self> {
        crate::netns::run_on_thread(netns, Netlink::open)?
    }

    /// Sends one request and collects the replies until the kernel's ACK (or `Done`).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: impl Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let nl_err = |source: io::Error| Error::Netlink { op: op(), source };
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags | NLM_F_REQUEST | NLM_F_ACK;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        loop {
            match self.socket.send(&buf, 0) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => {
                    r.map_err(nl_err)?;
                    break;
                }
            }
        }

        let mut replies = Vec::new();
        loop {
            let data = match self.socket.recv_from_full() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => r.map_err(nl_err)?.0,
            };
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| nl_err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == self.seq {
                    match reply.payload {
                        NetlinkPayload::Error(e) if e.code.is_none() => return Ok(replies),
                        NetlinkPayload::Error(e) => return Err(nl_err(e.to_io())),
                        NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::InnerMessage(m) => replies.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
            }
        }
    }

    fn new_link(&mut self, msg: LinkMessage, op: impl Fn() -> String) -> Result<()> {
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL, op).map(drop)
    }

    fn set_link(&mut self, msg: LinkMessage, op: impl Fn() -> String) -> Result<()> {
        self.request(RouteNetlinkMessage::SetLink(msg), 0, op).map(drop)
    }

    /// The index of link `name`, or `None` when there is no such link.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        validate_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0, || format!("get link {name}")) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The index of link `name`; [`Error::LinkNotFound`] if it does not exist.
    pub fn index_of(&mut self, name: &str) -> Result<u32> {
        self.link_index(name)?.ok_or_else(|| Error::LinkNotFound(name.to_string()))
    }

    /// Creates a bridge (`ip link add NAME type bridge`), down, and returns its index.
    pub fn create_bridge(&mut self, name: &str) -> Result<u32> {
        validate_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        // A fixed address: without one the bridge takes the lowest address of its ports, which
        // changes as containers come and go — and every container's ARP entry for the gateway
        // goes stale (DNS queries to the gateway were lost during churn that way).
        msg.attributes.push(LinkAttribute::Address(bridge_mac(name).to_vec()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.new_link(msg, || format!("create bridge {name}"))?;
        self.index_of(name)
    }

    /// Creates a veth pair `name` <-> `peer` in this namespace and returns both indexes.
    pub fn create_veth(&mut self, name: &str, peer: &str) -> Result<(u32, u32)> {
        validate_ifname(name)?;
        validate_ifname(peer)?;
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.to_string()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.new_link(msg, || format!("create veth pair {name} <-> {peer}"))?;
        Ok((self.index_of(name)?, self.index_of(peer)?))
    }

    /// Creates a veth pair whose `peer` end is born in another namespace (`peer_netns`), which
    /// spares the kernel a device move (a move waits for an RCU grace period: ~20-30 ms).
    /// Returns the index of the end that stays here.
    pub fn create_veth_into(&mut self, name: &str, peer: &str, peer_netns: BorrowedFd<'_>) -> Result<u32> {
        validate_ifname(name)?;
        validate_ifname(peer)?;
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer.to_string()));
        peer_msg.attributes.push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.new_link(msg, || format!("create veth pair {name} <-> {peer} (in the container)"))?;
        self.index_of(name)
    }

    fn link_msg(index: u32) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg
    }

    /// Sets a link up (`ip link set dev X up`).
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut msg = Self::link_msg(index);
        msg.header.flags |= LinkFlags::Up;
        msg.header.change_mask |= LinkFlags::Up;
        self.set_link(msg, || format!("set link {index} up"))
    }

    /// Sets a link down.
    pub fn set_down(&mut self, index: u32) -> Result<()> {
        let mut msg = Self::link_msg(index);
        msg.header.change_mask |= LinkFlags::Up;
        self.set_link(msg, || format!("set link {index} down"))
    }

    /// Sets the MTU of a link.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        let mut msg = Self::link_msg(index);
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link(msg, || format!("set mtu {mtu} on link {index}"))
    }

    /// Sets the hardware address of a link.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        let mut msg = Self::link_msg(index);
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.set_link(msg, || format!("set address {} on link {index}", format_mac(mac)))
    }

    /// Renames a link (it must be down).
    pub fn rename(&mut self, index: u32, new_name: &str) -> Result<()> {
        validate_ifname(new_name)?;
        let mut msg = Self::link_msg(index);
        msg.attributes.push(LinkAttribute::IfName(new_name.to_string()));
        self.set_link(msg, || format!("rename link {index} to {new_name}"))
    }

    /// Attaches a link to a bridge (`ip link set dev X master BR`).
    pub fn set_master(&mut self, index: u32, bridge_index: u32) -> Result<()> {
        let mut msg = Self::link_msg(index);
        msg.attributes.push(LinkAttribute::Controller(bridge_index));
        self.set_link(msg, || format!("attach link {index} to bridge {bridge_index}"))
    }

    /// Moves a link into another network namespace (`ip link set dev X netns N`). It keeps its
    /// name there (and goes down); its index here becomes invalid.
    pub fn move_to_netns(&mut self, index: u32, netns: Netns<'_>) -> Result<()> {
        let mut msg = Self::link_msg(index);
        msg.attributes.push(match netns {
            Netns::Fd(fd) => LinkAttribute::NetNsFd(fd.as_raw_fd()),
            Netns::Pid(pid) => LinkAttribute::NetNsPid(pid as u32),
        });
        self.set_link(msg, || format!("move link {index} to netns {netns:?}"))
    }

    /// Deletes a link (deleting one end of a veth pair deletes both).
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let msg = Self::link_msg(index);
        self.request(RouteNetlinkMessage::DelLink(msg), 0, || format!("delete link {index}")).map(drop)
    }

    /// Adds an address (`ip addr add ADDR/PREFIX dev X`), with the IPv4 broadcast set.
    pub fn add_address(&mut self, index: u32, addr: IfAddr) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = addr.prefix_len;
        match addr.addr {
            IpAddr::V4(a) => {
                msg.header.family = AddressFamily::Inet;
                if addr.prefix_len < 31 {
                    let brd = u32::from(a) | (u32::MAX >> addr.prefix_len);
                    msg.attributes.push(AddressAttribute::Broadcast(brd.into()));
                }
            }
            IpAddr::V6(_) => {
                msg.header.family = AddressFamily::Inet6;
                // No duplicate address detection: the address is ours by IPAM, and DAD would
                // hold it "tentative" (unusable) for a second or more after the link is up.
                msg.header.flags |= netlink_packet_route::address::AddressHeaderFlags::Nodad;
            }
        }
        msg.attributes.push(AddressAttribute::Local(addr.addr));
        msg.attributes.push(AddressAttribute::Address(addr.addr));
        self.request(RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_EXCL, || {
            format!("add address {addr} to link {index}")
        })
        .map(drop)
    }

    /// Adds a default route via `gateway` (`ip route add default via GW`), optionally bound to
    /// an output link.
    pub fn add_default_route(&mut self, gateway: IpAddr, oif: Option<u32>) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = if gateway.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.header.destination_prefix_length = 0;
        msg.attributes.push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        if let Some(oif) = oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        self.request(RouteNetlinkMessage::NewRoute(msg), NLM_F_CREATE | NLM_F_EXCL, || {
            format!("add default route via {gateway}")
        })
        .map(drop)
    }

    /// Routes packets carrying firewall mark `mark` to the local stack, IPv4 and IPv6:
    /// `ip rule add fwmark MARK lookup TABLE` and `ip route add local default dev lo table
    /// TABLE`. With the ruleset's `socket transparent 1 meta mark set MARK` this delivers a
    /// container's replies to an `IP_TRANSPARENT` socket bound to a client's (foreign)
    /// address, instead of routing them out (see the `forward` module, "Client source address").
    /// Idempotent.
    pub fn route_marked_to_local(&mut self, mark: u32, table: u8) -> Result<()> {
        use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
        let lo = self.index_of("lo")?;
        let exists = |r: Result<Vec<RouteNetlinkMessage>>| match r {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r.map(drop),
        };
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut rule = RuleMessage::default();
            rule.header.family = family;
            rule.header.table = table;
            rule.header.action = RuleAction::ToTable;
            rule.attributes = vec![
                RuleAttribute::FwMark(mark),
                RuleAttribute::FwMask(u32::MAX),
                RuleAttribute::Table(u32::from(table)),
                RuleAttribute::Priority(100),
            ];
            exists(self.request(RouteNetlinkMessage::NewRule(rule), NLM_F_CREATE | NLM_F_EXCL, || {
                format!("add rule fwmark {mark:#x} lookup {table}")
            }))?;
            let mut route = RouteMessage::default();
            route.header.address_family = family;
            route.header.table = table;
            route.header.protocol = RouteProtocol::Static;
            route.header.scope = RouteScope::Host;
            route.header.kind = RouteType::Local;
            route.attributes.push(RouteAttribute::Oif(lo));
            route.attributes.push(RouteAttribute::Table(u32::from(table)));
            exists(self.request(RouteNetlinkMessage::NewRoute(route), NLM_F_CREATE | NLM_F_EXCL, || {
                format!("add local default route in table {table}")
            }))?;
        }
        Ok(())
    }

    /// Brings `lo` up.
    pub fn loopback_up(&mut self) -> Result<()> {
        let lo = self.index_of("lo")?;
        self.set_up(lo)
    }

    /// Creates bridge `name` with `addrs` and sets it up; an existing bridge of that name is
    /// reused (addresses already on it are kept). Returns its index.
    pub fn ensure_bridge(&mut self, name: &str, addrs: &[IfAddr]) -> Result<u32> {
        let index = match self.link_index(name)? {
            Some(i) => i,
            None => self.create_bridge(name)?,
        };
        for a in addrs {
            match self.add_address(index, *a) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                r => r?,
            }
        }
        self.set_up(index)?;
        Ok(index)
    }
}

/// A locally administered unicast MAC address derived from the bridge's name (FNV-1a).
pub fn bridge_mac(name: &str) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7]]
}

/// What [`attach_container`] needs to wire one container to a bridge.
#[derive(Debug, Clone)]
pub struct AttachSpec<'a> {
    /// The bridge in the rootless netns.
    pub bridge: &'a str,
    /// Name of the veth end that stays on the bridge (unique in the rootless netns).
    pub host_ifname: &'a str,
    /// Name of the end inside the container (`eth0`).
    pub container_ifname: &'a str,
    /// The container's addresses (from IPAM).
    pub addrs: &'a [IfAddr],
    /// Default routes via these gateways (one per family; usually the bridge's addresses).
    pub gateways: &'a [IpAddr],
    pub mtu: Option<u32>,
    /// The container end's MAC address (`--mac-address`); the kernel's random one otherwise.
    pub mac: Option<[u8; 6]>,
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Parses a unicast MAC address (`02:42:ac:11:00:02`; `-` separators too).
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bad = |reason: &'static str| Error::InvalidMac { input: s.to_string(), reason };
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 || parts.iter().any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(bad("a MAC address is six two-digit hex bytes, e.g. 02:42:ac:11:00:02"));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(&parts) {
        *m = u8::from_str_radix(p, 16)
            .map_err(|_| bad("a MAC address is six two-digit hex bytes, e.g. 02:42:ac:11:00:02"))?;
    }
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(bad("not a unicast address (the first byte must be even, and not all zero)"));
    }
    Ok(mac)
}

/// Creates a veth pair in the rootless netns (`rootless`), attaches one end to the bridge and
/// moves the other into `container` (a netns handle), where it is renamed, addressed and set
/// up, with `lo` up and default routes. On failure the veth pair is deleted again.
pub fn attach_container(rootless: &mut Netlink, container: BorrowedFd<'_>, spec: &AttachSpec<'_>) -> Result<()> {
    let bridge = rootless.index_of(spec.bridge)?;
    // The container's end is created directly in its namespace under its final name.
    let host = rootless.create_veth_into(spec.host_ifname, spec.container_ifname, container)?;
    let r = (|| {
        if let Some(mtu) = spec.mtu {
            rootless.set_mtu(host, mtu)?;
        }
        rootless.set_master(host, bridge)?;
        rootless.set_up(host)?;
        let mut inside = Netlink::open_in(container)?;
        let peer = inside.index_of(spec.container_ifname)?;
        if let Some(mtu) = spec.mtu {
            inside.set_mtu(peer, mtu)?;
        }
        if let Some(mac) = spec.mac {
            inside.set_mac(peer, mac)?;
        }
        for a in spec.addrs {
            inside.add_address(peer, *a)?;
        }
        inside.set_up(peer)?;
        inside.loopback_up()?;
        add_default_routes(&mut inside, spec.gateways, peer)?;
        Ok(())
    })();
    if let Err(e) = &r {
        tracing::debug!("attach {} to {} failed ({e}); deleting the veth pair", spec.host_ifname, spec.bridge);
        // Deleting the host end removes the peer too, wherever it is.
        if let Err(e2) = rootless.delete_link(host) {
            tracing::warn!("cleanup: delete veth {}: {e2}", spec.host_ifname);
        }
    }
    r
}

/// Adds a default route via each gateway (one per family) through interface `oif`, unless
/// the namespace has one for that family already (the kernel's EEXIST): the container's first
/// interface keeps the default route, a later one takes it over only where there is none (its
/// first network was disconnected).
pub fn add_default_routes(nl: &mut Netlink, gateways: &[IpAddr], oif: u32) -> Result<()> {
    for gw in gateways {
        match nl.add_default_route(*gw, Some(oif)) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            r => r?,
        }
    }
    Ok(())
}

/// Deletes the container's veth pair by its host-side name; a missing link is not an error
/// (the container's netns may be gone, which deletes the pair).
pub fn detach_container(rootless: &mut Netlink, host_ifname: &str) -> Result<()> {
    match rootless.link_index(host_ifname)? {
        Some(i) => match rootless.delete_link(i) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            r => r,
        },
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mac_addresses_parse_as_docker_takes_them() {
        assert_eq!(parse_mac("02:42:ac:11:00:02").unwrap(), [2, 0x42, 0xac, 0x11, 0, 2]);
        assert_eq!(format_mac(parse_mac("02-42-AC-11-00-0a").unwrap()), "02:42:ac:11:00:0a");
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "0g:42:ac:11:00:02",
            "2:42:ac:11:00:02",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "02:42:ac:11:00:+2",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn ifnames() {
        validate_ifname("eth0").unwrap();
        validate_ifname("cove-br0123456a").unwrap();
        assert!(validate_ifname("").is_err());
        assert!(validate_ifname("0123456789abcdef").is_err());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname("a b").is_err());
        assert!(validate_ifname("..").is_err());
        assert!(validate_ifname("x\"y").is_err());
        let e = validate_ifname("0123456789abcdef").unwrap_err().to_string();
        assert_eq!(e, r#"invalid interface name "0123456789abcdef": longer than 15 bytes"#);
    }

    #[test]
    fn open_in_own_namespace_works() {
        // Any user may open a route socket and read links of its own namespace.
        let mut nl = Netlink::open().unwrap();
        assert!(nl.link_index("lo").unwrap().is_some());
        assert_eq!(nl.link_index("no-such-link0").unwrap(), None);
        let e = nl.index_of("no-such-link0").unwrap_err().to_string();
        assert_eq!(e, r#"link "no-such-link0" not found"#);
    }
}
