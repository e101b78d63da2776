//! User-defined bridge networks: records, IPAM leases, and wiring containers to bridges in the
//! per-user network namespace held by the network helper ([`crate::netd`]).
//!
//! Every network is a Linux bridge inside the helper's namespace (never in the host's: as root
//! too, so cove never touches the host's interfaces). A container joining gets a veth pair: one
//! end on the bridge, the other moved into the container's own namespace as `eth0`, with an
//! address leased in the state database (UNIQUE per network: never handed out twice) and a
//! default route via the bridge. When the container's namespace goes away the kernel deletes
//! the pair; leases go with `rm`; the helper exits when no container is attached any more.

use crate::db::now_rfc3339;
use crate::state::Engine;
use crate::{Error, Result};
pub use cove_net::ipam::Subnet;
use cove_net::ipam::SubnetPool;
use cove_net::link::{AttachSpec, IfAddr, Netlink};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::os::fd::AsFd;

/// The network containers join when no `--network` is given.
pub use crate::db::{NetOptions, NetworkRow};
pub use crate::request::DEFAULT_NETWORK;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    pub network: String,
    pub bridge: String,
    pub ip: IpAddr,
    pub prefix_len: u8,
    pub gateway: IpAddr,
    pub ifname: String,
    pub aliases: Vec<String>,
    /// On a dual-stack network: the IPv6 address, its prefix length and the gateway.
    #[serde(default)]
    pub ip6: Option<(IpAddr, u8, IpAddr)>,
    /// The network's `-o mtu`.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// `--mac-address` (first network only).
    #[serde(default)]
    pub mac: Option<String>,
}

impl Endpoint {
    /// The container's end: `eth<N>`, N from the host end's name (cv + 10 id digits + N),
    /// stable across connects.
    pub fn container_ifname(&self) -> String {
        format!("eth{}", self.ifname.get(12..).unwrap_or("0"))
    }

    /// `--mac-address`, else one derived from the IPv4 address (`02:42:` and its four bytes, as
    /// Docker did): the same container gets the same MAC whenever it is wired again (after a
    /// restart of the network helper), and neighbours' ARP caches stay right.
    pub fn mac_address(&self) -> [u8; 6] {
        if let Some(m) = self.mac.as_deref().and_then(|m| cove_net::link::parse_mac(m).ok()) {
            return m;
        }
        let b = match self.ip {
            IpAddr::V4(a) => a.octets(),
            IpAddr::V6(a) => {
                let o = a.octets();
                [o[12], o[13], o[14], o[15]]
            }
        };
        [0x02, 0x42, b[0], b[1], b[2], b[3]]
    }

    /// Where published ports of a container on this network go.
    pub fn port_target(&self) -> crate::ports::Target {
        crate::ports::Target { ip: self.ip, ip6: self.ip6.map(|(a, _, _)| a) }
    }
}

pub fn list(eng: &Engine) -> Result<Vec<NetworkRow>> {
    eng.db.networks()
}

/// Finds a network by name, id or unique id prefix.
pub fn find(eng: &Engine, key: &str) -> Result<NetworkRow> {
    if let Some(r) = eng.db.network(key)? {
        return Ok(r);
    }
    if key.len() >= 3 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut rows = eng.db.networks_by_id_prefix(key)?;
        if rows.len() == 1 {
            if let Some(r) = rows.pop() {
                return Ok(r);
            }
        }
    }
    // Docker's name for its default network (as `--network bridge` is cove's default).
    if key == "bridge" {
        if let Some(r) = eng.db.network(DEFAULT_NETWORK)? {
            return Ok(r);
        }
    }
    Err(Error::NotFound(format!("network {key} not found")))
}

/// Options of `cove network create`.
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    /// Dual stack: an IPv6 subnet too (`subnet6`, or the next free /64 of fd63:6f76:65::/48).
    pub ipv6: bool,
    pub subnet6: Option<String>,
    pub gateway6: Option<String>,
    /// `--label KEY[=VALUE]`.
    pub labels: Vec<String>,
    /// `-o KEY=VALUE`: `mtu` (or Docker's `com.docker.network.driver.mtu`).
    pub options: Vec<String>,
    /// `--dns IP` (podman's): where the network's DNS forwards names it does not know.
    pub dns: Vec<String>,
    /// `--ip-range` (one per family): addresses are picked from there.
    pub ip_ranges: Vec<String>,
    /// `--aux-address NAME=IP`: addresses IPAM never hands out (a router, say).
    pub aux_addresses: Vec<String>,
    /// `--mdns`: publish the network's containers on the LAN.
    pub mdns: bool,
    /// `--mdns-interface`: only on these host interfaces.
    pub mdns_interfaces: Vec<String>,
}

/// Parses `--label`s (KEY or KEY=VALUE, as Docker takes them).
pub fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::Invalid(format!("invalid label {l:?}: KEY[=VALUE], the key without spaces")));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Parses `-o` options; only what cove does something with is accepted.
fn parse_options(opts: &[String], ipv6: bool) -> Result<NetOptions> {
    let mut o = NetOptions::default();
    for kv in opts {
        let (k, v) = kv.split_once('=').ok_or_else(|| Error::Invalid(format!("invalid option {kv:?}: KEY=VALUE")))?;
        match k {
            "mtu" | "com.docker.network.driver.mtu" => {
                // IPv6 needs 1280; pasta's and slirp4netns's links carry 65520.
                let min = if ipv6 { 1280 } else { 68 };
                let mtu = v.parse::<u32>().ok().filter(|m| (min..=65520).contains(m));
                o.mtu = Some(mtu.ok_or_else(|| {
                    Error::Invalid(format!("invalid option {kv:?}: the MTU is a number from {min} to 65520"))
                })?);
            }
            "allow_host_loopback" => {
                o.allow_host_loopback = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(Error::Invalid(format!(
                            "invalid option {kv:?}: allow_host_loopback is true or false"
                        )))
                    }
                });
            }
            "mdns_resolve" => {
                o.mdns_resolve = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(Error::Invalid(format!("invalid option {kv:?}: mdns_resolve is true or false"))),
                });
            }
            _ => {
                return Err(Error::Invalid(format!(
                "unsupported network option {k:?} (supported: mtu, com.docker.network.driver.mtu, allow_host_loopback, mdns_resolve)"
            )))
            }
        }
    }
    Ok(o)
}

/// The subnet (given, or the pool's next free one) and gateway (given, or the first address)
/// of one address family of a new network.
fn subnet_and_gateway(
    subnet: Option<&str>,
    gateway: Option<&str>,
    taken: &[(String, Subnet)],
    pool: SubnetPool,
    v6: bool,
) -> Result<cove_net::ipam::Ipam> {
    let subnet = match subnet {
        Some(text) => {
            // Docker's rule: a CIDR. A bare address used to make a /32 whose every run
            // failed with "no free address".
            if !text.contains('/') {
                return Err(Error::Invalid(format!(
                    "invalid --subnet {text:?}: a CIDR (ADDRESS/PREFIX, e.g. 10.91.0.0/24) is required"
                )));
            }
            let s: Subnet = text.parse().map_err(|e: cove_net::Error| Error::Invalid(e.to_string()))?;
            if s.is_ipv4() == v6 {
                return Err(Error::Invalid(format!(
                    "--subnet {s}: one IPv4 subnet per network, and one IPv6 subnet with --ipv6"
                )));
            }
            if let Some((what, other)) =
                host_subnets(v6).into_iter().find(|(_, h)| h.contains(s.network()) || s.contains(h.network()))
            {
                return Err(Error::Conflict(format!("subnet {s} overlaps {other}, {what}: pick another subnet")));
            }
            cove_net::ipam::ensure_no_overlap(&s, taken).map_err(|e| Error::Conflict(e.to_string()))?;
            s
        }
        None => {
            let t: Vec<Subnet> =
                taken.iter().map(|(_, s)| *s).chain(host_subnets(v6).into_iter().map(|(_, s)| s)).collect();
            pool.pick(&t).map_err(|e| Error::Conflict(format!("no free subnet for a new network: {e}")))?
        }
    };
    match gateway {
        Some(g) => {
            let g: IpAddr = g.parse().map_err(|_| Error::Invalid(format!("invalid gateway {g:?}")))?;
            cove_net::ipam::Ipam::with_gateway(subnet, g).map_err(|e| Error::Invalid(e.to_string()))
        }
        None => Ok(cove_net::ipam::Ipam::new(subnet)),
    }
}

/// Subnets a network must not overlap besides other networks': the host's own routes, since
/// pasta copies the host's addresses and routes into the helper's namespace (tap0) and a
/// bridge there on the same subnet takes the way out (host.containers.internal, upstream DNS,
/// even the tap's own address); and slirp4netns's 10.0.2.0/24 (its host loopback is
/// 10.0.2.2). Default and link-local routes, host routes (/32, /128) and multicast aside.
fn host_subnets(v6: bool) -> Vec<(String, Subnet)> {
    let mut out = vec![];
    if v6 {
        let text = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (Some(dest), Some(len), Some(dev)) = (f.first(), f.get(1), f.last()) else { continue };
            let (Ok(bits), Ok(len)) = (u128::from_str_radix(dest, 16), u8::from_str_radix(len, 16)) else { continue };
            let addr = std::net::Ipv6Addr::from(bits);
            if len == 0
                || len == 128
                || *dev == "lo"
                || addr.segments()[0] & 0xffc0 == 0xfe80
                || addr.segments()[0] & 0xff00 == 0xff00
            {
                continue;
            }
            if let Ok(s) = Subnet::new(IpAddr::V6(addr), len) {
                out.push((
                    format!("the host's route on {dev} (copied into cove's network namespace for outbound access)"),
                    s,
                ));
            }
        }
    } else {
        let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (Some(dev), Some(dest), Some(mask)) = (f.first(), f.get(1), f.get(7)) else { continue };
            let (Ok(dest), Ok(mask)) = (u32::from_str_radix(dest, 16), u32::from_str_radix(mask, 16)) else { continue };
            let len = mask.count_ones() as u8;
            if len == 0 || len == 32 || *dev == "lo" {
                continue;
            }
            let addr = std::net::Ipv4Addr::from(dest.to_le_bytes());
            if addr.is_link_local() {
                continue;
            }
            if let Ok(s) = Subnet::new(IpAddr::V4(addr), len) {
                out.push((
                    format!("the host's route on {dev} (copied into cove's network namespace for outbound access)"),
                    s,
                ));
            }
        }
        if let Ok(s) = "10.0.2.0/24".parse() {
            out.push(("slirp4netns's own subnet (10.0.2.2 is the host's loopback there)".to_string(), s));
        }
    }
    out
}

/// `-o`, `--dns`, `--ip-range` and `--aux-address` of `network create`, checked against the
/// network's subnets and gateways.
fn net_options(
    o: &CreateOptions,
    subnet: Subnet,
    gateway: IpAddr,
    subnet6: Option<Subnet>,
    gateway6: Option<IpAddr>,
) -> Result<NetOptions> {
    let mut options = parse_options(&o.options, subnet6.is_some())?;
    if o.internal && options.allow_host_loopback == Some(true) {
        return Err(Error::Invalid("-o allow_host_loopback=true: an --internal network reaches nothing outside it, the host's loopback neither".into()));
    }
    for d in &o.dns {
        options.dns.push(d.parse().map_err(|_| Error::Invalid(format!("invalid --dns {d:?}: not an IP address")))?);
    }
    for r in &o.ip_ranges {
        let range: Subnet = r.parse().map_err(|e: cove_net::Error| Error::Invalid(format!("--ip-range: {e}")))?;
        let (within, slot) =
            if range.is_ipv4() { (Some(subnet), &mut options.ip_range) } else { (subnet6, &mut options.ip_range6) };
        let within =
            within.ok_or_else(|| Error::Invalid(format!("--ip-range {r}: the network has no IPv6 subnet (--ipv6)")))?;
        cove_net::ipam::Ipam::new(within).with_range(range).map_err(|e| Error::Invalid(format!("--ip-range: {e}")))?;
        if slot.replace(range.to_string()).is_some() {
            return Err(Error::Invalid("--ip-range: at most one per address family".into()));
        }
    }
    for a in &o.aux_addresses {
        let bad = |why: String| Error::Invalid(format!("invalid --aux-address {a:?}: {why}"));
        let (name, ip) = a.split_once('=').ok_or_else(|| bad("NAME=IP".into()))?;
        let ip: IpAddr = ip.parse().map_err(|_| bad(format!("{ip:?} is not an IP address")))?;
        let inside = subnet.contains(ip) || subnet6.is_some_and(|s| s.contains(ip));
        if name.is_empty() || !inside || ip == gateway || Some(ip) == gateway6 {
            return Err(bad("a name, and an address of the network's subnets other than its gateway".into()));
        }
        options.aux.insert(name.to_string(), ip);
    }
    if o.mdns && o.internal {
        return Err(Error::Invalid("--mdns: an --internal network is not reachable from the LAN".into()));
    }
    options.mdns = o.mdns;
    for i in &o.mdns_interfaces {
        cove_net::link::validate_ifname(i)
            .map_err(|e| Error::Invalid(format!("invalid --mdns-interface {i:?}: {e}")))?;
        if i == "lo" || i.starts_with("cove-") || i.starts_with("cv") {
            return Err(Error::Invalid(format!(
                "invalid --mdns-interface {i:?}: loopback and cove's own interfaces are never announced on"
            )));
        }
        if !options.mdns_interfaces.contains(i) {
            options.mdns_interfaces.push(i.clone());
        }
    }
    Ok(options)
}

/// `cove network create`.
pub fn create(eng: &mut Engine, name: &str, o: &CreateOptions) -> Result<NetworkRow> {
    // `bridge` is Docker's name for the default network, and `--network bridge` is cove's.
    if cove_oci::validate_name(name).is_err()
        || ["none", "host", "bridge"].contains(&name)
        || name.starts_with("container:")
    {
        return Err(Error::Invalid(format!("invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (none, host and bridge are reserved)")));
    }
    let existing = list(eng)?;
    if existing.iter().any(|n| n.name == name) {
        return Err(Error::Conflict(format!("network with name {name} already exists")));
    }
    let taken: Vec<(String, Subnet)> =
        existing.iter().filter_map(|n| n.subnet.parse::<Subnet>().ok().map(|s| (n.name.clone(), s))).collect();
    let ipam = subnet_and_gateway(o.subnet.as_deref(), o.gateway.as_deref(), &taken, SubnetPool::default_v4(), false)?;
    let subnet = ipam.subnet();
    let (subnet6, gateway6) = if o.ipv6 || o.subnet6.is_some() {
        let taken6: Vec<(String, Subnet)> = existing
            .iter()
            .filter_map(|n| n.subnet6.as_ref()?.parse::<Subnet>().ok().map(|s| (n.name.clone(), s)))
            .collect();
        let ipam6 =
            subnet_and_gateway(o.subnet6.as_deref(), o.gateway6.as_deref(), &taken6, SubnetPool::default_v6(), true)?;
        (Some(ipam6.subnet().to_string()), Some(ipam6.gateway().to_string()))
    } else {
        (None, None)
    };
    let labels = parse_labels(&o.labels)?;
    let gw6: Option<IpAddr> = gateway6.as_deref().and_then(|g| g.parse().ok());
    let options = net_options(o, subnet, ipam.gateway(), subnet6.as_deref().and_then(|s| s.parse().ok()), gw6)?;
    let id = cove_oci::new_id()?;
    let bridge = format!("cove-{}", &id[..8]);
    let r = NetworkRow {
        name: name.to_string(),
        id,
        subnet: subnet.to_string(),
        gateway: ipam.gateway().to_string(),
        bridge,
        internal: o.internal,
        created: now_rfc3339(),
        subnet6,
        gateway6,
        labels,
        options,
    };
    eng.db.insert_network(&r).map_err(|e| match e {
        Error::Db(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            Error::Conflict(format!("network with name {name} already exists (or its subnet is taken)"))
        }
        e => e,
    })?;
    cove_sys::fault::point("network.create.after-row");
    Ok(r)
}

/// The default network, created on first use.
pub fn ensure_default(eng: &mut Engine) -> Result<NetworkRow> {
    match find(eng, DEFAULT_NETWORK) {
        Ok(r) => Ok(r),
        Err(Error::NotFound(_)) => match create(eng, DEFAULT_NETWORK, &CreateOptions::default()) {
            Ok(r) => Ok(r),
            // Another command created it at the same moment.
            Err(Error::Conflict(_)) => find(eng, DEFAULT_NETWORK),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Containers attached to a network: (container id, ip).
pub fn endpoints_of(eng: &Engine, network: &str) -> Result<Vec<(String, String)>> {
    eng.db.endpoints_of(network)
}

/// `cove network rm`: refused while containers are attached.
pub fn remove(eng: &mut Engine, key: &str) -> Result<String> {
    let n = find(eng, key)?;
    let users = endpoints_of(eng, &n.name)?;
    if !users.is_empty() {
        let names: Vec<String> =
            users.iter().filter_map(|(id, _)| eng.db.container(id).ok().flatten().map(|c| c.name)).collect();
        return Err(Error::Conflict(format!("network {} has active endpoints ({})", n.name, names.join(", "))));
    }
    eng.db.delete_network(&n.name)?;
    cove_sys::fault::point("network.rm.after-row");
    // The helper (if it runs) deletes the bridge, its DNS listeners and rules at once: a
    // network made again with the same subnet (compose up/down/up) must find nothing of them.
    if let Err(e) = crate::netd::sync(&eng.dirs.run, &eng.dirs.db_path()) {
        crate::warn_user(format_args!("network {}: {e}", n.name));
    }
    Ok(n.name)
}

/// `--filter KEY=VALUE`s of `network ls` and `network prune`: all must match (several values
/// of one key: any of them).
#[derive(Debug, Default)]
pub struct Filters(Vec<(String, String)>);

impl Filters {
    /// Parses `filters`, each `KEY=VALUE` with KEY one of `allowed` (`label!=X` is key `label!`).
    pub fn parse(filters: &[String], allowed: &[&str]) -> Result<Filters> {
        let mut out = vec![];
        for f in filters {
            let (k, v) = f.split_once('=').ok_or_else(|| Error::Invalid(format!("invalid filter {f:?}: KEY=VALUE")))?;
            if !allowed.contains(&k) {
                return Err(Error::Invalid(format!("invalid filter {k:?} (supported: {})", allowed.join(", "))));
            }
            out.push((k.to_string(), v.to_string()));
        }
        Ok(Filters(out))
    }

    pub fn matches(&self, n: &NetworkRow) -> bool {
        let label = |want: &str| match want.split_once('=') {
            Some((k, v)) => n.labels.get(k).is_some_and(|x| x == v),
            None => n.labels.contains_key(want),
        };
        let mut keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        keys.dedup();
        keys.iter().all(|key| {
            let mut values = self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str());
            match *key {
                "name" => values.any(|v| n.name.contains(v)),
                "id" => values.any(|v| n.id.starts_with(v)),
                "driver" => values.any(|v| v == "bridge"),
                "label" => values.all(label),
                "label!" => !values.any(label),
                _ => true,
            }
        })
    }
}

/// `cove network prune`: removes networks without containers (the default one included) that
/// match `filters`.
pub fn prune(eng: &mut Engine, filters: &Filters) -> Result<Vec<String>> {
    let mut out = vec![];
    for n in list(eng)?.into_iter().filter(|n| filters.matches(n)) {
        if endpoints_of(eng, &n.name)?.is_empty() {
            out.push(remove(eng, &n.name)?);
        }
    }
    Ok(out)
}

/// Leases an address on each network for a new container (inside the caller's transaction,
/// so two containers can never get the same address).
pub fn lease(
    tx: &crate::db::Tx<'_>,
    container_id: &str,
    nets: &[(NetworkRow, Vec<String>)],
    fixed: StaticIp,
) -> Result<Vec<Endpoint>> {
    lease_from(tx, container_id, nets, 0, fixed)
}

/// Addresses asked for (`--ip`, `--ip6`) on the first network of a lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaticIp {
    pub v4: Option<IpAddr>,
    pub v6: Option<IpAddr>,
    /// `--mac-address`: the container end's hardware address on that network.
    pub mac: Option<[u8; 6]>,
}

impl StaticIp {
    /// Parses `--ip` and `--ip6` (each of its family).
    pub fn parse(ip: Option<&str>, ip6: Option<&str>) -> Result<StaticIp> {
        let v4 = ip.map(|a| match a.parse::<IpAddr>() {
            Ok(a @ IpAddr::V4(_)) => Ok(a),
            _ => Err(Error::Invalid(format!("invalid --ip {a:?}: not an IPv4 address"))),
        });
        let v6 = ip6.map(|a| match a.parse::<IpAddr>() {
            Ok(a @ IpAddr::V6(_)) => Ok(a),
            _ => Err(Error::Invalid(format!("invalid --ip6 {a:?}: not an IPv6 address"))),
        });
        Ok(StaticIp { v4: v4.transpose()?, v6: v6.transpose()?, mac: None })
    }

    /// With `--mac-address`.
    pub fn with_mac(self, mac: Option<&str>) -> Result<StaticIp> {
        let mac = mac.map(|m| cove_net::link::parse_mac(m).map_err(|e| Error::Invalid(e.to_string()))).transpose()?;
        Ok(StaticIp { mac, ..self })
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none() && self.mac.is_none()
    }
}

/// [`lease`], numbering the container's interfaces from `first` (eth<first>, ...).
fn lease_from(
    tx: &crate::db::Tx<'_>,
    container_id: &str,
    nets: &[(NetworkRow, Vec<String>)],
    first: usize,
    fixed: StaticIp,
) -> Result<Vec<Endpoint>> {
    let mut out = vec![];
    for (k, (n, aliases)) in nets.iter().enumerate() {
        let i = first + k;
        let fixed = if k == 0 { fixed } else { StaticIp::default() };
        if fixed.v6.is_some() && n.subnet6.is_none() {
            return Err(Error::Invalid(format!(
                "--ip6: network {} has no IPv6 subnet (create it with --ipv6)",
                n.name
            )));
        }
        // A taken or unfit address asked for is the user's error (exit 125, a clear line).
        let ipam_err = |e: cove_net::Error| match (&e, fixed.is_empty()) {
            (_, false) if !matches!(e, cove_net::Error::Exhausted { .. }) => {
                Error::Invalid(format!("network {}: {e}", n.name))
            }
            _ => Error::Conflict(format!("network {}: {e}", n.name)),
        };
        let subnet: Subnet = n
            .subnet
            .parse()
            .map_err(|e: cove_net::Error| Error::Other(format!("network {}: bad subnet: {e}", n.name)))?;
        let gateway: IpAddr =
            n.gateway.parse().map_err(|_| Error::Other(format!("network {}: bad gateway", n.name)))?;
        let aux_taken = |ip: Option<IpAddr>| -> Result<()> {
            match n.options.aux.iter().find(|(_, a)| Some(**a) == ip) {
                Some((name, a)) => {
                    Err(Error::Invalid(format!("network {}: address {a} is reserved (--aux-address {name})", n.name)))
                }
                None => Ok(()),
            }
        };
        aux_taken(fixed.v4)?;
        aux_taken(fixed.v6)?;
        let mut used: HashSet<IpAddr> = tx.leased_ips(&n.name)?;
        used.extend(n.options.aux.values());
        let ranged =
            |ipam: cove_net::ipam::Ipam, range: &Option<String>| match range.as_deref().map(str::parse::<Subnet>) {
                Some(Ok(r)) => ipam.with_range(r),
                _ => Ok(ipam),
            };
        let ip = cove_net::ipam::Ipam::with_gateway(subnet, gateway)
            .and_then(|ipam| ranged(ipam, &n.options.ip_range))
            .and_then(|ipam| ipam.allocate(&used, fixed.v4))
            .map_err(ipam_err)?;
        let ifname = format!("cv{}{}", &container_id[..10], i);
        let ip6 = match (&n.subnet6, &n.gateway6) {
            (Some(s6), Some(g6)) => {
                let s6: Subnet = s6
                    .parse()
                    .map_err(|e: cove_net::Error| Error::Other(format!("network {}: bad IPv6 subnet: {e}", n.name)))?;
                let g6: IpAddr =
                    g6.parse().map_err(|_| Error::Other(format!("network {}: bad IPv6 gateway", n.name)))?;
                let mut used: HashSet<IpAddr> = tx.leased_ips6(&n.name)?;
                used.extend(n.options.aux.values());
                let a = cove_net::ipam::Ipam::with_gateway(s6, g6)
                    .and_then(|ipam| ranged(ipam, &n.options.ip_range6))
                    .and_then(|ipam| ipam.allocate(&used, fixed.v6))
                    .map_err(ipam_err)?;
                Some((a, s6.prefix_len(), g6))
            }
            _ => None,
        };
        tx.insert_endpoint(container_id, &n.name, ip, &ifname, aliases, ip6.map(|(a, _, _)| a))?;
        out.push(Endpoint {
            network: n.name.clone(),
            bridge: n.bridge.clone(),
            ip,
            prefix_len: subnet.prefix_len(),
            gateway,
            ifname,
            aliases: aliases.clone(),
            ip6,
            mtu: n.options.mtu,
            mac: fixed.mac.map(cove_net::link::format_mac),
        });
    }
    Ok(out)
}

/// Releases every lease of a container.
pub fn release(tx: &crate::db::Tx<'_>, container_id: &str) -> Result<()> {
    tx.release_endpoints(container_id)
}

/// Wires the container whose PID 1 is `pid` to its networks (called before it starts).
/// `config`: the user's cove.conf, in case the network helper starts ([`crate::netd`]).
pub fn attach(
    run_dir: &std::path::Path,
    db: &std::path::Path,
    pid: i32,
    endpoints: &[Endpoint],
    config: Option<&std::path::Path>,
) -> std::result::Result<(), String> {
    if endpoints.is_empty() {
        return Ok(());
    }
    let netns = helper_netns(run_dir, db, config).map_err(|e| format!("network helper: {e}"))?;
    tracing::debug!("attach: have the network namespace");
    let mut nl = Netlink::open_in(netns.as_fd()).map_err(|e| format!("netlink: {e}"))?;
    let container = cove_net::netns::of_pid(pid).map_err(|e| format!("container network namespace: {e}"))?;
    tracing::debug!("attach: netlink open");
    for ep in endpoints {
        // A stopped container's old pair may outlive it for a moment (the kernel frees a
        // network namespace asynchronously): the name is this container's, so it goes.
        if let Ok(Some(stale)) = nl.link_index(&ep.ifname) {
            let _ = nl.delete_link(stale);
        }
        wire(&mut nl, container.as_fd(), ep)?;
        tracing::debug!("attach: veth attached");
    }
    cove_sys::fault::point("network.attach.before-sync");
    // The network's DNS answers for the container before it runs its first instruction.
    crate::netd::sync(run_dir, db).map_err(|e| format!("DNS: {e}"))
}

/// Makes the bridge of `ep`'s network if it is not there, and the container's veth pair on it
/// (`eth<N>` inside, with its addresses, MAC and default routes).
fn wire(nl: &mut Netlink, container: std::os::fd::BorrowedFd<'_>, ep: &Endpoint) -> std::result::Result<(), String> {
    let mut gw = vec![IfAddr { addr: ep.gateway, prefix_len: ep.prefix_len }];
    if let Some((_, p6, g6)) = ep.ip6 {
        gw.push(IfAddr { addr: g6, prefix_len: p6 });
    }
    // Two containers may bring the same bridge up at the same moment: the loser of that
    // race sees EEXIST and finds the bridge the other one made.
    let mut tries = 0;
    loop {
        match nl.ensure_bridge(&ep.bridge, &gw) {
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) => return Err(format!("bridge {} of network {}: {e}", ep.bridge, ep.network)),
        }
    }
    let mut addrs = vec![IfAddr { addr: ep.ip, prefix_len: ep.prefix_len }];
    if let Some((a6, p6, _)) = ep.ip6 {
        addrs.push(IfAddr { addr: a6, prefix_len: p6 });
    }
    // The default route goes through the first interface that is there (endpoints come in
    // interface order; a later one adds it only when an earlier one did not: eth0 was
    // disconnected while the container was stopped, or by `connect` after it was).
    let gws: Vec<IpAddr> = std::iter::once(ep.gateway).chain(ep.ip6.map(|(_, _, g6)| g6)).collect();
    let ifname = ep.container_ifname();
    let spec = AttachSpec {
        bridge: &ep.bridge,
        host_ifname: &ep.ifname,
        container_ifname: &ifname,
        addrs: &addrs,
        gateways: &gws,
        mtu: ep.mtu,
        mac: Some(ep.mac_address()),
    };
    tracing::debug!("attach: bridge ready");
    cove_sys::fault::point("network.attach.after-bridge");
    cove_net::link::attach_container(nl, container, &spec).map_err(|e| format!("attach to network {}: {e}", ep.network))
}

/// The network helper's namespace, starting the helper if needed. A helper started here while
/// containers run on networks (the one before it was killed or crashed: its namespace, bridges
/// and veth pairs went with it) first gets them back ([`rewire`]), under the helper's start
/// lock: no other command sees the new helper before they are wired again.
pub fn helper_netns(
    run: &std::path::Path,
    db: &std::path::Path,
    config: Option<&std::path::Path>,
) -> Result<std::os::fd::OwnedFd> {
    crate::netd::rootless_netns(run, config, |netns| match rewire(run, db, netns) {
        Ok(0) => {}
        Ok(n) => tracing::info!("the network helper had gone: {n} running container(s) wired again"),
        Err(e) => crate::warn_user(format_args!("the network helper had gone; re-wiring its containers: {e}")),
    })
}

/// Gives every running container with networks back its veth pairs (same names, addresses and
/// MACs), its DNS records (one `SYNC`) and its published ports (bound again, as the user),
/// in a helper namespace that was just made. Returns how many containers were wired. One
/// container that cannot be wired (its port taken meanwhile, say) is warned about and the others
/// go on.
pub fn rewire(run: &std::path::Path, db_path: &std::path::Path, netns: std::os::fd::BorrowedFd<'_>) -> Result<usize> {
    let db = crate::db::Db::open(db_path)?;
    let (networks, containers, rows) = db.read(|db| Ok((db.networks()?, db.containers()?, db.all_endpoints()?)))?;
    let mut nl = Netlink::open_in(netns).map_err(|e| Error::Other(format!("netlink: {e}")))?;
    let mut wired = vec![];
    for c in containers.iter().filter(|c| c.state == crate::db::ContainerState::Running) {
        let mut mine: Vec<&crate::db::EndpointRow> = rows.iter().filter(|e| e.container_id == c.id).collect();
        if mine.is_empty() {
            continue;
        }
        let rd = cove_monitor::RunDir::new(run.join("containers").join(&c.id));
        let Some(pid) = rd.live_pid() else { continue };
        mine.sort_by_key(|e| interface_number(&e.ifname));
        let fixed_mac = c.request().ok().and_then(|r| r.mac_address);
        let eps = mine
            .iter()
            .map(|e| {
                let n = networks.iter().find(|n| n.name == e.network).ok_or_else(|| {
                    Error::Corrupt(format!("container {} has an endpoint on a missing network {}", c.name, e.network))
                })?;
                let mac = if interface_number(&e.ifname) == 0 { fixed_mac.clone() } else { None };
                endpoint_of(n, e, mac)
            })
            .collect::<Result<Vec<_>>>()?;
        let r = (|| -> std::result::Result<(), String> {
            let container = cove_net::netns::of_pid(pid).map_err(|e| format!("its network namespace: {e}"))?;
            let mut inside = Netlink::open_in(container.as_fd()).map_err(|e| format!("netlink: {e}"))?;
            for ep in &eps {
                // Wired already (by its own monitor restarting it, say): leave it.
                if nl.link_index(&ep.ifname).ok().flatten().is_some() {
                    continue;
                }
                // The old pair's inner end may outlive the old namespace for a moment.
                if let Ok(Some(stale)) = inside.link_index(&ep.container_ifname()) {
                    let _ = inside.delete_link(stale);
                }
                wire(&mut nl, container.as_fd(), ep)?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => wired.push((c, rd, eps)),
            Err(e) => crate::warn_user(format_args!("container {}: could not wire its networks again: {e}", c.name)),
        }
    }
    // Names first: one table for every container wired.
    if !wired.is_empty() {
        cove_netd::client::sync_built(run, || crate::netd::table(&db))?;
    }
    for (c, rd, eps) in &wired {
        let published = crate::ports::load(rd.path());
        if published.is_empty() {
            continue;
        }
        let target = eps[0].port_target();
        if let Err(e) = crate::ports::republish(run, rd.path(), &c.id, &published, target) {
            crate::warn_user(format_args!("container {}: its published ports: {e}", c.name));
        }
    }
    Ok(wired.len())
}

/// N of a host end's name (`cv` + 10 id digits + N): the container's `eth<N>`.
fn interface_number(host_ifname: &str) -> u32 {
    host_ifname.get(12..).and_then(|n| n.parse().ok()).unwrap_or(u32::MAX)
}

/// A container's endpoint as `attach` takes it, from its lease and its network's record.
fn endpoint_of(n: &NetworkRow, e: &crate::db::EndpointRow, mac: Option<String>) -> Result<Endpoint> {
    let bad = |what: &str| Error::Corrupt(format!("network {} has a corrupt {what}", n.name));
    let subnet: Subnet = n.subnet.parse().map_err(|_| bad("subnet"))?;
    let gateway: IpAddr = n.gateway.parse().map_err(|_| bad("gateway"))?;
    let ip6 = match (e.ip6, &n.subnet6, &n.gateway6) {
        (Some(a), Some(s6), Some(g6)) => Some((
            a,
            s6.parse::<Subnet>().map_err(|_| bad("IPv6 subnet"))?.prefix_len(),
            g6.parse().map_err(|_| bad("IPv6 gateway"))?,
        )),
        _ => None,
    };
    Ok(Endpoint {
        network: n.name.clone(),
        bridge: n.bridge.clone(),
        ip: e.ip,
        prefix_len: subnet.prefix_len(),
        gateway,
        ifname: e.ifname.clone(),
        aliases: e.aliases.clone(),
        ip6,
        mtu: n.options.mtu,
        mac,
    })
}

/// After reconcile: a network helper that is gone while containers run on networks is started
/// again, which wires them back ([`helper_netns`]). The next cove command, whatever it is,
/// repairs what `kill -9` of the helper broke (a detached container's monitor does it at once:
/// [`recover_at`]).
pub fn recover(eng: &Engine) -> Result<()> {
    if crate::netd::running(&eng.dirs.run) {
        return Ok(());
    }
    recover_at(&eng.dirs.run, &eng.dirs.db_path(), crate::config::path(eng.dirs.rootless).as_deref())
}

/// The network helper as a foreground `cove run` watches it (it is its container's monitor):
/// a pidfd in its poll loop; when the helper ends, [`recover_at`] right there (the loop pauses
/// for the re-wiring, a few hundred milliseconds), then the new helper is watched.
pub struct HelperWatch {
    run: std::path::PathBuf,
    db: std::path::PathBuf,
    config: Option<std::path::PathBuf>,
    helper: Option<std::os::fd::OwnedFd>,
}

impl HelperWatch {
    pub fn new(run: &std::path::Path, db: &std::path::Path, config: Option<&std::path::Path>) -> HelperWatch {
        let mut w = HelperWatch {
            run: run.to_path_buf(),
            db: db.to_path_buf(),
            config: config.map(std::path::Path::to_path_buf),
            helper: cove_netd::client::watch_fd(run),
        };
        // Gone already, between the container's wiring and now: repair at once.
        if w.helper.is_none() {
            w.ended();
        }
        w
    }

    /// What to poll: readable once the helper has ended.
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.helper.as_ref().map(|f| f.as_fd())
    }

    /// The helper ended: have it replaced (the containers wired back), then watch the new one.
    /// A failure is logged; the next cove command tries again.
    pub fn ended(&mut self) {
        self.helper = None;
        if let Err(e) = recover_at(&self.run, &self.db, self.config.as_deref()) {
            tracing::warn!("the network helper ended and could not be started again: {e}");
        }
        self.helper = cove_netd::client::watch_fd(&self.run);
    }
}

/// [`recover`] for the user's run dir `run` and database `db`: what `cove __rewire` runs.
pub fn recover_at(run: &std::path::Path, db: &std::path::Path, config: Option<&std::path::Path>) -> Result<()> {
    if crate::netd::running(run) {
        return Ok(());
    }
    let (containers, rows) = crate::db::Db::open(db)?.read(|db| Ok((db.containers()?, db.all_endpoints()?)))?;
    let wanted = containers.iter().any(|c| {
        c.state == crate::db::ContainerState::Running
            && rows.iter().any(|e| e.container_id == c.id)
            && cove_monitor::RunDir::new(run.join("containers").join(&c.id)).live_pid().is_some()
    });
    if wanted {
        helper_netns(run, db, config)?;
    }
    Ok(())
}

/// A container on a network, for `network inspect`: its name and addresses with prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub id: String,
    pub name: String,
    pub ip: IpAddr,
    pub prefix_len: u8,
    pub ip6: Option<(IpAddr, u8)>,
}

/// The containers attached to network `n`, by address.
pub fn attached(eng: &Engine, n: &NetworkRow) -> Result<Vec<Attached>> {
    let bad = |what: &str| Error::Corrupt(format!("network {} has a corrupt {what}", n.name));
    let prefix = n.subnet.parse::<Subnet>().map_err(|_| bad("subnet"))?.prefix_len();
    let prefix6 = n.subnet6.as_deref().map(str::parse::<Subnet>).transpose().map_err(|_| bad("IPv6 subnet"))?;
    let mut out = vec![];
    for (cid, _) in endpoints_of(eng, &n.name)? {
        let Some(e) = eng.db.endpoint(&cid, &n.name)? else { continue };
        let name = eng.db.container(&cid)?.map(|c| c.name).unwrap_or_default();
        out.push(Attached {
            id: cid,
            name,
            ip: e.ip,
            prefix_len: prefix,
            ip6: e.ip6.zip(prefix6.map(|s| s.prefix_len())),
        });
    }
    Ok(out)
}

/// `cove network connect`: attaches a running container to one more network.
pub fn connect(eng: &mut Engine, network: &str, container: &str, aliases: &[String], fixed: StaticIp) -> Result<()> {
    crate::reconcile::reconcile(eng)?;
    let n = find(eng, network)?;
    let c = eng.db.find_container(container)?;
    let mine = eng.db.container_endpoints(&c.id)?;
    if mine.iter().any(|(net, _)| *net == n.name) {
        return Err(Error::Conflict(format!("endpoint with name {} already exists in network {}", c.name, n.name)));
    }
    // Only a container with networks of its own (not none, host or container:NAME) joins more.
    let req = c.request()?;
    if !matches!(crate::spec::net_mode(&req), Ok(crate::spec::NetMode::Bridge(_))) {
        return Err(Error::Conflict(format!(
            "container {} runs with --network {}: it has no network of its own to connect",
            c.name,
            req.network.as_deref().unwrap_or("")
        )));
    }
    // A running container is wired now; a created or stopped one at its next start (as
    // compose does: create, connect the other networks, start).
    let pid = match c.state {
        crate::db::ContainerState::Running => Some(
            eng.dirs
                .container_run(&c.id)
                .live_pid()
                .ok_or_else(|| Error::Conflict(format!("container {} is not running", c.name)))?,
        ),
        _ => None,
    };
    let used: usize = {
        let names = eng.db.endpoint_ifnames(&c.id)?;
        names.iter().filter_map(|i| i.get(12..)?.parse::<usize>().ok()).map(|i| i + 1).max().unwrap_or(0)
    };
    let nets = vec![(n.clone(), aliases.to_vec())];
    let eps = eng.db.write(|tx| lease_from(tx, &c.id, &nets, used, fixed))?;
    cove_sys::fault::point("network.connect.after-lease");
    if let Err(e) = pid.map_or(Ok(()), |pid| {
        attach(&eng.dirs.run, &eng.dirs.db_path(), pid, &eps, crate::config::path(eng.dirs.rootless).as_deref())
    }) {
        let _ = eng.db.write(|tx| tx.delete_endpoint(&c.id, &n.name));
        return Err(Error::Other(e));
    }
    cove_sys::fault::point("network.connect.after-attach");
    // The container's /etc/hosts is a bind mount of this file: appending shows inside.
    if let Some(ep) = eps.first() {
        use std::io::Write;
        let mut names = vec![c.name.clone()];
        names.extend(aliases.iter().cloned());
        let _ =
            std::fs::OpenOptions::new().append(true).open(eng.dirs.container(&c.id).join("hosts")).and_then(|mut f| {
                let mut line = format!("{}\t{}\n", ep.ip, names.join(" "));
                if let Some((ip6, _, _)) = ep.ip6 {
                    line.push_str(&format!("{ip6}\t{}\n", names.join(" ")));
                }
                f.write_all(line.as_bytes())
            });
    }
    // The next start (by `cove start` or a restart policy) wires this network too.
    update_monitor_endpoints(&eng.dirs.container(&c.id), |list| list.extend(eps.iter().cloned()));
    // The network change stands either way; a resolv.conf that could not follow is said.
    if let Err(e) = refresh_resolv_conf(eng, &c) {
        crate::warn_user(format_args!("{}'s resolv.conf: {e}", c.name));
    }
    Ok(())
}

/// Rewrites the container's resolv.conf for the networks it is on now (after `connect` or
/// `disconnect`): a gateway of a network it left answers no more. In place: the file is
/// bind-mounted (into containers joined with `container:NAME` too).
fn refresh_resolv_conf(eng: &Engine, c: &crate::db::ContainerRow) -> Result<()> {
    let req = c.request()?;
    let names = crate::spec::name_opts(&req).unwrap_or_default();
    let gws: Vec<(IpAddr, Option<IpAddr>)> =
        eng.db.container_gateways(&c.id)?.into_iter().map(|g| (g.gateway, g.gateway6)).collect();
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let text = crate::etc::gateways_resolv_conf(&host, &gws, &names);
    let path = eng.dirs.container(&c.id).join("resolv.conf");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| Error::Other(format!("rewrite {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Edits the endpoint list in the container's monitor.json (what the monitor wires at each
/// start). A detached container has one; a foreground one has nothing to update.
fn update_monitor_endpoints(dir: &std::path::Path, f: impl FnOnce(&mut Vec<Endpoint>)) {
    let path = dir.join("monitor.json");
    let Ok(text) = std::fs::read(&path) else { return };
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&text) else { return };
    let mut list: Vec<Endpoint> = serde_json::from_value(v["endpoints"].clone()).unwrap_or_default();
    f(&mut list);
    v["endpoints"] = serde_json::to_value(&list).unwrap_or_default();
    let tmp = path.with_extension("json.tmp");
    if let Ok(bytes) = serde_json::to_vec(&v) {
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}

/// Gives the container's first remaining interface the default routes it lacks.
fn move_default_route(eng: &Engine, container_id: &str, pid: i32) -> Result<()> {
    let mut rows = eng.db.container_gateways(container_id)?;
    // Interface order: eth<N>, N after the cv + 10 id digits of the host end's name.
    rows.sort_by_key(|g| g.ifname.get(12..).and_then(|n| n.parse::<u32>().ok()).unwrap_or(u32::MAX));
    let Some(crate::db::Gateways { ifname, gateway, gateway6 }) = rows.into_iter().next() else { return Ok(()) };
    let gws: Vec<IpAddr> = std::iter::once(gateway).chain(gateway6).collect();
    let container =
        cove_net::netns::of_pid(pid).map_err(|e| Error::Other(format!("container network namespace: {e}")))?;
    let mut inside = Netlink::open_in(container.as_fd()).map_err(|e| Error::Other(format!("netlink: {e}")))?;
    let inside_name = format!("eth{}", ifname.get(12..).unwrap_or("0"));
    let oif = inside.index_of(&inside_name).map_err(|e| Error::Other(format!("{inside_name}: {e}")))?;
    cove_net::link::add_default_routes(&mut inside, &gws, oif).map_err(|e| Error::Other(e.to_string()))
}

/// `cove network disconnect`: takes a container off a network (its interface and lease).
pub fn disconnect(eng: &mut Engine, network: &str, container: &str) -> Result<()> {
    crate::reconcile::reconcile(eng)?;
    let n = find(eng, network)?;
    let c = eng.db.find_container(container)?;
    let crate::db::EndpointRow { ifname, ip, ip6, .. } = eng
        .db
        .endpoint(&c.id, &n.name)?
        .ok_or_else(|| Error::Conflict(format!("container {} is not connected to network {}", c.name, n.name)))?;
    if c.state == crate::db::ContainerState::Running {
        let netns =
            helper_netns(&eng.dirs.run, &eng.dirs.db_path(), crate::config::path(eng.dirs.rootless).as_deref())?;
        let mut nl = Netlink::open_in(netns.as_fd()).map_err(|e| Error::Other(format!("netlink: {e}")))?;
        cove_net::link::detach_container(&mut nl, &ifname)
            .map_err(|e| Error::Other(format!("detach from network {}: {e}", n.name)))?;
    }
    eng.db.write(|tx| tx.delete_endpoint(&c.id, &n.name))?;
    if let (true, Some(pid)) = (c.state == crate::db::ContainerState::Running, c.pid) {
        // The default route left with the interface that held it: as Docker, the first
        // remaining network takes it (a no-op when another interface has it already).
        if let Err(e) = move_default_route(eng, &c.id, pid as i32) {
            crate::warn_user(format_args!("{}'s default route: {e}", c.name));
        }
    }
    update_monitor_endpoints(&eng.dirs.container(&c.id), |list| list.retain(|e| e.network != n.name));
    // The network change stands either way; a resolv.conf that could not follow is said.
    if let Err(e) = refresh_resolv_conf(eng, &c) {
        crate::warn_user(format_args!("{}'s resolv.conf: {e}", c.name));
    }
    // The container's own lines for this network leave its /etc/hosts (rewritten in place: the
    // file is bind-mounted, a new inode would not show inside).
    let hosts = eng.dirs.container(&c.id).join("hosts");
    if let Ok(text) = std::fs::read_to_string(&hosts) {
        let mine = |l: &str| {
            l.split_whitespace()
                .next()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|a| a == ip || Some(a) == ip6)
        };
        let kept: String = text.lines().filter(|l| !mine(l)).map(|l| format!("{l}\n")).collect();
        if kept != text {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&hosts)
                .and_then(|mut f| std::io::Write::write_all(&mut f, kept.as_bytes()));
        }
    }
    crate::netd::sync(&eng.dirs.run, &eng.dirs.db_path())
}

/// `cove dns resolve`: asks the DNS server of a network, from inside the rootless namespace as
/// a container would, and returns the answers as `NAME TYPE DATA` lines. An address asks PTR.
/// The network is `network`, or the last label of `name` when it names a network
/// (`db.mynet`), or else each network in turn until one answers.
pub fn resolve(eng: &Engine, name: &str, qtype: &str, network: Option<&str>) -> Result<Vec<String>> {
    use cove_dns::hickory_proto::op::{Message, Query, ResponseCode};
    use cove_dns::hickory_proto::rr::{Name, RecordType};
    let (qname, rtype) = match name.parse::<IpAddr>() {
        Ok(ip) => (Name::from(ip), RecordType::PTR),
        Err(_) => {
            let n = Name::from_ascii(name).map_err(|e| Error::Invalid(format!("invalid name {name:?}: {e}")))?;
            let t: RecordType = qtype
                .to_ascii_uppercase()
                .parse()
                .map_err(|_| Error::Invalid(format!("unknown record type {qtype:?}")))?;
            (n, t)
        }
    };
    let all = list(eng)?;
    let chosen: Vec<&NetworkRow> = match network {
        Some(n) => vec![all
            .iter()
            .find(|r| r.name == n || r.id.starts_with(n))
            .ok_or_else(|| Error::NotFound(format!("network {n:?} not found")))?],
        None => {
            let last = name.trim_end_matches('.').rsplit('.').next().unwrap_or("");
            match all.iter().find(|r| r.name == last && name.contains('.')) {
                Some(r) => vec![r],
                None => {
                    let mut v: Vec<&NetworkRow> = all.iter().collect();
                    v.sort_by_key(|r| r.name != DEFAULT_NETWORK);
                    v
                }
            }
        }
    };
    if !crate::netd::running(&eng.dirs.run) {
        return Err(Error::Other("no container is on a network: no DNS server is running".into()));
    }
    crate::netd::sync(&eng.dirs.run, &eng.dirs.db_path())?;
    let netns = helper_netns(&eng.dirs.run, &eng.dirs.db_path(), crate::config::path(eng.dirs.rootless).as_deref())?;
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(qname.clone(), rtype));
    let query = msg.to_vec().map_err(|e| Error::Other(format!("encode the query: {e}")))?;
    let mut last_err = None;
    for n in chosen {
        let Ok(gw) = n.gateway.parse::<IpAddr>() else { continue };
        let q = query.clone();
        let reply = cove_net::netns::run_on_thread(netns.as_fd(), move || -> std::io::Result<Vec<u8>> {
            let s = std::net::UdpSocket::bind(if gw.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(3)))?;
            s.connect((gw, 53))?;
            s.send(&q)?;
            let mut buf = vec![0u8; 4096];
            let k = s.recv(&mut buf)?;
            buf.truncate(k);
            Ok(buf)
        })
        .map_err(|e| Error::Other(format!("enter the network namespace: {e}")))?;
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                last_err = Some(format!("network {} ({gw}): {e}", n.name));
                continue;
            }
        };
        let m = Message::from_vec(&reply).map_err(|e| Error::Other(format!("network {}: bad reply: {e}", n.name)))?;
        match m.metadata.response_code {
            ResponseCode::NoError => {
                return Ok(m.answers.iter().map(|r| format!("{}\t{}\t{}", r.name, r.record_type(), r.data)).collect());
            }
            rc => last_err = Some(format!("network {}: {rc}", n.name)),
        }
    }
    Err(Error::NotFound(format!("{name}: {}", last_err.unwrap_or_else(|| "no network to ask".into()))))
}
