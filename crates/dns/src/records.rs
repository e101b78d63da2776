//! The records table: pure data, built once per reload from the networks and their containers,
//! then only read (one `Arc<Records>` snapshot is shared by every listener).

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// TTL of every record cove answers itself.
///
/// Zero, as aardvark-dns does (Docker uses 600): containers come and go and get new addresses,
/// and a cached address outlives its container (nginx, the JVM and caching stubs are the usual
/// victims). Answers come from memory on the same host, so not caching them costs little.
/// Negative answers carry no SOA, so they are never cached either (RFC 2308).
pub const TTL: u32 = 0;

/// The name under which a container reaches its host, when the caller gave addresses for it.
pub const HOST_NAME: &str = "host.containers.internal";

/// Docker Desktop's spelling of [`HOST_NAME`], answered with the same addresses so that compose
/// files written for Docker work unchanged (podman writes both into `/etc/hosts` too).
pub const DOCKER_HOST_NAME: &str = "host.docker.internal";

/// The zone cove owns outright: a name under it that cove does not know is NXDOMAIN, never
/// forwarded (`.internal` is reserved for private use, so no public name can live there).
const OWNED_ZONE: &[u8] = b"containers.internal";

/// Longest name (in presentation form, without the root dot) that can be on the wire.
const MAX_NAME_LEN: usize = 253;

/// One container's presence on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// Full container id; its 12-character short form resolves too, as in Docker and podman.
    pub id: String,
    /// The container's name.
    pub name: String,
    /// `--network-alias`es on this network.
    pub aliases: Vec<String>,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// The container's own upstream resolvers (`--dns`): names the table does not answer go
    /// there instead of the server's upstreams. Empty: the server's.
    pub dns: Vec<SocketAddr>,
}

/// One network and the containers attached to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRecords {
    /// The network's name: the name of the listener that serves it, and the `NETWORK` of
    /// `NAME.NETWORK`.
    pub name: String,
    pub containers: Vec<Entry>,
    /// Addresses answered for [`HOST_NAME`] (and [`DOCKER_HOST_NAME`]) on this network; empty
    /// makes [`HOST_NAME`] NXDOMAIN.
    pub host: Vec<IpAddr>,
}

/// A `.local` name this host answers itself (RFC 6762): a container published by mDNS
/// (`NAME.NETWORK.local`, `NAME-NETWORK.local`) or a network (`NETWORK.local`), seen the same
/// from every network's server ([`Records::with_local`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalName {
    /// Without the trailing `.local`: `node1.mycluster`.
    pub name: String,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
}

/// Where a name that the records do not answer goes: upstream, or for `.local` to the mDNS
/// resolver when the listener has one (`Upstream::with_local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Forward {
    /// Any other name: the caller's upstream resolvers.
    Upstream,
    /// A `.local` name (RFC 6762) that is not a container's.
    Mdns,
    /// The reverse name of an address on the host's LAN: mDNS, then the upstreams.
    MdnsThenUpstream,
}

/// The answer of the table to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// The name is ours and has records of the asked type; their owner is the asked name.
    Records(Vec<Record>),
    /// The name is ours but has no record of the asked type (NOERROR, empty answer).
    NoData,
    /// The name is in a zone cove owns and does not exist.
    NxDomain,
    /// Not ours: forward it.
    NotOurs(Forward),
}

/// Everything a name has on one network.
#[derive(Debug, Default)]
struct NameData {
    ipv4: Vec<Ipv4Addr>,
    ipv6: Vec<Ipv6Addr>,
    ptr: Vec<Name>,
}

#[derive(Debug, Default)]
struct Zone {
    /// Keyed by the lowercase name in presentation form without the trailing dot.
    names: HashMap<Box<[u8]>, NameData>,
    /// For a container of this network that is on other networks too: its addresses here,
    /// and those other networks (see [`Records::resolve_from`]).
    others: HashMap<IpAddr, Vec<Box<str>>>,
    /// The containers with upstreams of their own (`Entry::dns`), by address on this network.
    upstreams: HashMap<IpAddr, Arc<[SocketAddr]>>,
}

/// A borrowed view of the records that answer a question, by type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found<'a> {
    pub ipv4: &'a [Ipv4Addr],
    pub ipv6: &'a [Ipv6Addr],
    pub ptr: &'a [Name],
}

impl Found<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.ipv4.is_empty() && self.ipv6.is_empty() && self.ptr.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.ipv4.len() + self.ipv6.len() + self.ptr.len()
    }

    /// The records, owned by `owner` (the question's name, with its case kept).
    pub(crate) fn records(&self, owner: &Name) -> impl Iterator<Item = Record> + '_ {
        let owner4 = owner.clone();
        let owner6 = owner.clone();
        let owner_ptr = owner.clone();
        let a = self.ipv4.iter().map(move |ip| Record::from_rdata(owner4.clone(), TTL, RData::A(A(*ip))));
        let aaaa = self.ipv6.iter().map(move |ip| Record::from_rdata(owner6.clone(), TTL, RData::AAAA(AAAA(*ip))));
        let ptr = self.ptr.iter().map(move |n| Record::from_rdata(owner_ptr.clone(), TTL, RData::PTR(PTR(n.clone()))));
        a.chain(aaaa).chain(ptr)
    }
}

/// What the table says about a question, borrowing from the table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Resolved<'a> {
    Found(Found<'a>),
    NoData,
    NxDomain,
    NotOurs(Forward),
}

/// Every network's records: the snapshot the server answers from.
#[derive(Debug, Default)]
pub struct Records {
    zones: HashMap<Box<str>, Zone>,
    /// `.local` names of this host, keyed like a zone's (`node1.mycluster.local`).
    local: Zone,
    /// The host's LAN subnets (address, prefix length): reverse names of addresses in them are
    /// asked by mDNS first ([`Records::with_lan`]).
    lan: Vec<(IpAddr, u8)>,
}

impl Records {
    /// Builds the table. Names and aliases are case-insensitive; a name shared by several
    /// containers of one network (a common alias) answers all their addresses. Names that cannot
    /// be DNS names (empty, empty labels, too long) are skipped.
    pub fn new(networks: &[NetworkRecords]) -> Self {
        let mut zones: HashMap<Box<str>, Zone> = HashMap::with_capacity(networks.len());
        let mut member_of: HashMap<&str, Vec<&str>> = HashMap::new();
        for net in networks {
            let zone = zones.entry(net.name.as_str().into()).or_default();
            zone.add_network(net);
            for c in &net.containers {
                member_of.entry(c.id.as_str()).or_default().push(net.name.as_str());
            }
        }
        for net in networks {
            let Some(zone) = zones.get_mut(net.name.as_str()) else { continue };
            for c in &net.containers {
                if !c.dns.is_empty() {
                    let servers: Arc<[SocketAddr]> = c.dns.clone().into();
                    for ip in c.ipv4.iter().map(|a| IpAddr::V4(*a)).chain(c.ipv6.iter().map(|a| IpAddr::V6(*a))) {
                        zone.upstreams.insert(ip, servers.clone());
                    }
                }
                let others: Vec<Box<str>> = member_of
                    .get(c.id.as_str())
                    .into_iter()
                    .flatten()
                    .filter(|n| **n != net.name)
                    .map(|n| Box::from(*n))
                    .collect();
                if others.is_empty() {
                    continue;
                }
                for ip in c.ipv4.iter().map(|a| IpAddr::V4(*a)).chain(c.ipv6.iter().map(|a| IpAddr::V6(*a))) {
                    zone.others.insert(ip, others.clone());
                }
            }
        }
        Records { zones, local: Zone::default(), lan: vec![] }
    }

    /// The table with the host's LAN subnets: a PTR question for an address in one of them is
    /// asked by mDNS (RFC 6762 section 4), and goes to the upstreams when nobody answers there
    /// (the LAN's unicast DNS often knows its own reverse zone).
    pub fn with_lan(mut self, subnets: &[(IpAddr, u8)]) -> Self {
        self.lan = subnets.to_vec();
        self
    }

    /// Whether `qname` is the reverse name of an address on one of the host's LAN subnets.
    fn on_lan(&self, qname: &Name) -> bool {
        !self.lan.is_empty()
            && reverse_address(qname).is_some_and(|a| self.lan.iter().any(|(net, len)| same_prefix(a, *net, *len)))
    }

    /// The table with this host's own `.local` names ([`LocalName`]) answered on every network.
    pub fn with_local(mut self, names: &[LocalName]) -> Self {
        for n in names {
            let label = lower(&n.name);
            if label.is_empty() {
                continue;
            }
            if let Some(data) = self.local.name_data(&format!("{label}.local")) {
                extend_unique(&mut data.ipv4, &n.ipv4);
                extend_unique(&mut data.ipv6, &n.ipv6);
            }
        }
        self
    }

    /// The upstream resolvers of the container at `client` on `network`, when it has its own
    /// (`--dns`); `None`: the server's.
    pub fn upstreams_of(&self, network: &str, client: IpAddr) -> Option<Arc<[SocketAddr]>> {
        self.zones.get(network)?.upstreams.get(&client).cloned()
    }

    /// Whether a network of this name is in the table.
    pub fn has_network(&self, network: &str) -> bool {
        self.zones.contains_key(network)
    }

    /// Answers a question asked on `network`'s listener. Only that network's records are seen.
    pub fn lookup(&self, network: &str, qname: &Name, qtype: RecordType) -> Answer {
        match self.resolve(network, qname, qtype) {
            Resolved::Found(found) => Answer::Records(found.records(qname).collect()),
            Resolved::NoData => Answer::NoData,
            Resolved::NxDomain => Answer::NxDomain,
            Resolved::NotOurs(to) => Answer::NotOurs(to),
        }
    }

    /// [`Records::resolve`] for a question from `client` (its source address): a container on
    /// several networks finds the names of all of them through any one of their servers —
    /// the listener's network first, then its other networks in order. Clients put one
    /// nameserver per network in resolv.conf, and glibc stops at the first one's NXDOMAIN.
    pub(crate) fn resolve_from(
        &self,
        network: &str,
        client: Option<IpAddr>,
        qname: &Name,
        qtype: RecordType,
    ) -> Resolved<'_> {
        let first = self.resolve(network, qname, qtype);
        if !matches!(first, Resolved::NotOurs(Forward::Upstream)) {
            return first;
        }
        let others = client.and_then(|c| self.zones.get(network)?.others.get(&c));
        for other in others.into_iter().flatten() {
            let r = self.resolve(other, qname, qtype);
            if matches!(r, Resolved::Found(_) | Resolved::NoData) {
                return r;
            }
        }
        first
    }

    /// [`Records::lookup`] without building records: the server's allocation-free path.
    pub(crate) fn resolve(&self, network: &str, qname: &Name, qtype: RecordType) -> Resolved<'_> {
        let mut buf = [0u8; MAX_NAME_LEN];
        let Some(key) = lower_key(qname, &mut buf) else {
            return Resolved::NotOurs(Forward::Upstream);
        };
        let Some(zone) = self.zones.get(network) else {
            return Resolved::NotOurs(Forward::Upstream);
        };
        if let Some(data) = zone.names.get(key) {
            let found = match qtype {
                RecordType::A => Found { ipv4: &data.ipv4, ipv6: &[], ptr: &[] },
                RecordType::AAAA => Found { ipv4: &[], ipv6: &data.ipv6, ptr: &[] },
                RecordType::PTR => Found { ipv4: &[], ipv6: &[], ptr: &data.ptr },
                RecordType::ANY => Found { ipv4: &data.ipv4, ipv6: &data.ipv6, ptr: &data.ptr },
                _ => return Resolved::NoData,
            };
            return if found.is_empty() { Resolved::NoData } else { Resolved::Found(found) };
        }
        if in_zone(key, OWNED_ZONE) {
            // The zone apex and `host.` exist (as an empty non-terminal or an unset host name).
            return if key == OWNED_ZONE { Resolved::NoData } else { Resolved::NxDomain };
        }
        if in_zone(key, b"local") {
            if let Some(data) = self.local.names.get(key) {
                let found = match qtype {
                    RecordType::A => Found { ipv4: &data.ipv4, ipv6: &[], ptr: &[] },
                    RecordType::AAAA => Found { ipv4: &[], ipv6: &data.ipv6, ptr: &[] },
                    RecordType::ANY => Found { ipv4: &data.ipv4, ipv6: &data.ipv6, ptr: &[] },
                    _ => return Resolved::NoData,
                };
                return if found.is_empty() { Resolved::NoData } else { Resolved::Found(found) };
            }
            return Resolved::NotOurs(Forward::Mdns);
        }
        // Reverse names of link-local addresses are mDNS's too (RFC 6762 section 4): nobody's
        // unicast DNS knows them; those of the LAN's addresses are asked there first.
        if LINK_LOCAL_REVERSE.iter().any(|z| in_zone(key, z)) {
            return Resolved::NotOurs(Forward::Mdns);
        }
        if qtype == RecordType::PTR && self.on_lan(qname) {
            return Resolved::NotOurs(Forward::MdnsThenUpstream);
        }
        Resolved::NotOurs(Forward::Upstream)
    }
}

impl Zone {
    fn add_network(&mut self, net: &NetworkRecords) {
        let network = lower(&net.name);
        for entry in &net.containers {
            let ptr_target = ptr_target(&entry.name, &network);
            let mut names: Vec<String> = Vec::with_capacity(2 + 2 * entry.aliases.len() + 1);
            for n in std::iter::once(&entry.name).chain(&entry.aliases) {
                let n = lower(n);
                if n.is_empty() {
                    continue;
                }
                if !network.is_empty() {
                    names.push(format!("{n}.{network}"));
                }
                names.push(n);
            }
            if entry.id.len() >= 12 {
                if let Some(short) = entry.id.get(..12) {
                    names.push(lower(short));
                }
            }
            names.sort_unstable();
            names.dedup();
            for n in names {
                if let Some(data) = self.name_data(&n) {
                    extend_unique(&mut data.ipv4, &entry.ipv4);
                    extend_unique(&mut data.ipv6, &entry.ipv6);
                }
            }
            if let Some(target) = ptr_target {
                let addrs = entry.ipv4.iter().map(|ip| Name::from(*ip));
                let addrs = addrs.chain(entry.ipv6.iter().map(|ip| Name::from(*ip)));
                for arpa in addrs {
                    let key = arpa.to_ascii().to_ascii_lowercase();
                    if let Some(data) = self.name_data(&key) {
                        if !data.ptr.contains(&target) {
                            data.ptr.push(target.clone());
                        }
                    }
                }
            }
        }
        if !net.host.is_empty() {
            let ipv4: Vec<Ipv4Addr> = net
                .host
                .iter()
                .filter_map(|ip| match ip {
                    IpAddr::V4(ip) => Some(*ip),
                    IpAddr::V6(_) => None,
                })
                .collect();
            let ipv6: Vec<Ipv6Addr> = net
                .host
                .iter()
                .filter_map(|ip| match ip {
                    IpAddr::V6(ip) => Some(*ip),
                    IpAddr::V4(_) => None,
                })
                .collect();
            for n in [HOST_NAME, DOCKER_HOST_NAME] {
                if let Some(data) = self.name_data(n) {
                    extend_unique(&mut data.ipv4, &ipv4);
                    extend_unique(&mut data.ipv6, &ipv6);
                }
            }
        }
    }

    /// The entry for a name (lowercase, any trailing dot removed), created when new; `None` when
    /// the name cannot be a DNS name.
    fn name_data(&mut self, name: &str) -> Option<&mut NameData> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if !valid_name(name) {
            tracing::trace!(name, "skipping a name that cannot be a DNS name");
            return None;
        }
        match self.names.entry(name.as_bytes().into()) {
            MapEntry::Occupied(e) => Some(e.into_mut()),
            MapEntry::Vacant(e) => Some(e.insert(NameData::default())),
        }
    }
}

/// The PTR target for a container: `NAME.NETWORK.`, as Docker answers, so that the reverse name
/// resolves forward to the same address on the same network. Falls back to `NAME.` when the
/// network name does not make a valid DNS name.
fn ptr_target(name: &str, network: &str) -> Option<Name> {
    let name = lower(name);
    if name.is_empty() {
        return None;
    }
    let full = format!("{name}.{network}.");
    if !network.is_empty() && valid_name(&full[..full.len() - 1]) {
        if let Ok(n) = Name::from_ascii(&full) {
            return Some(n);
        }
    }
    if valid_name(&name) {
        return Name::from_ascii(format!("{name}.")).ok();
    }
    None
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Whether `name` (no trailing dot) fits on the wire: 1..=253 bytes, labels of 1..=63 bytes,
/// no byte that presentation form would need to escape.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'))
}

fn extend_unique<T: PartialEq + Copy>(into: &mut Vec<T>, from: &[T]) {
    for x in from {
        if !into.contains(x) {
            into.push(*x);
        }
    }
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa`, 32 nibbles `.ip6.arpa`) stands for.
fn reverse_address(name: &Name) -> Option<IpAddr> {
    let labels: Vec<&[u8]> = name.iter().collect();
    let lower = |l: &[u8]| l.to_ascii_lowercase();
    match labels.as_slice() {
        [a, b, c, d, x, y] if lower(x) == b"in-addr" && lower(y) == b"arpa" => {
            let n = |l: &[u8]| std::str::from_utf8(l).ok()?.parse::<u8>().ok();
            Some(IpAddr::V4(Ipv4Addr::new(n(d)?, n(c)?, n(b)?, n(a)?)))
        }
        [nibbles @ .., x, y] if nibbles.len() == 32 && lower(x) == b"ip6" && lower(y) == b"arpa" => {
            let mut v: u128 = 0;
            for l in nibbles.iter().rev() {
                let [h] = l else { return None };
                v = (v << 4) | u128::from((*h as char).to_digit(16)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(v)))
        }
        _ => None,
    }
}

/// Whether `a` and `net` share their first `len` bits (and family).
fn same_prefix(a: IpAddr, net: IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if len <= 32 => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if len <= 128 => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

/// The reverse zones of 169.254/16 and fe80::/10.
const LINK_LOCAL_REVERSE: [&[u8]; 5] =
    [b"254.169.in-addr.arpa", b"8.e.f.ip6.arpa", b"9.e.f.ip6.arpa", b"a.e.f.ip6.arpa", b"b.e.f.ip6.arpa"];

/// Whether `key` is `zone` or below it.
fn in_zone(key: &[u8], zone: &[u8]) -> bool {
    key == zone || (key.len() > zone.len() && key.ends_with(zone) && key[key.len() - zone.len() - 1] == b'.')
}

/// Writes the lowercase presentation form of `name` (labels joined by dots, no trailing dot)
/// into `buf` without allocating. `None` for the root, for names too long, and for labels that
/// hold a dot or a backslash (such a name is never one of ours).
fn lower_key<'b>(name: &Name, buf: &'b mut [u8; MAX_NAME_LEN]) -> Option<&'b [u8]> {
    let mut len = 0;
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            *buf.get_mut(len)? = b'.';
            len += 1;
        }
        let dst = buf.get_mut(len..len + label.len())?;
        for (d, s) in dst.iter_mut().zip(label) {
            if *s == b'.' || *s == b'\\' {
                return None;
            }
            *d = s.to_ascii_lowercase();
        }
        len += label.len();
    }
    if len == 0 {
        return None;
    }
    Some(&buf[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    use crate::test_entry as entry;

    fn table() -> Records {
        Records::new(&[
            NetworkRecords {
                name: "frontend".into(),
                containers: vec![
                    entry("0123456789abcdef", "web", &["www", "Site"], &["10.1.0.2"], &["fd00:1::2"]),
                    entry("fedcba9876543210", "db", &[], &["10.1.0.3"], &[]),
                    entry("aaaaaaaaaaaaaaaa", "multi", &[], &["10.1.0.9"], &[]),
                    entry("bbbbbbbbbbbbbbbb", "replica1", &["pool"], &["10.1.0.10"], &[]),
                    entry("cccccccccccccccc", "replica2", &["pool"], &["10.1.0.11"], &[]),
                ],
                host: vec!["10.1.0.1".parse().unwrap(), "fd00:1::1".parse().unwrap()],
            },
            NetworkRecords {
                name: "backend".into(),
                containers: vec![
                    entry("dddddddddddddddd", "cache", &[], &["10.2.0.2"], &[]),
                    entry("aaaaaaaaaaaaaaaa", "multi", &[], &["10.2.0.9"], &[]),
                ],
                host: vec![],
            },
        ])
    }

    fn ips(a: &Answer) -> Vec<String> {
        match a {
            Answer::Records(rs) => rs
                .iter()
                .map(|r| match &r.data {
                    RData::A(a) => a.0.to_string(),
                    RData::AAAA(a) => a.0.to_string(),
                    RData::PTR(p) => p.0.to_ascii(),
                    other => panic!("unexpected {other:?}"),
                })
                .collect(),
            other => panic!("not records: {other:?}"),
        }
    }

    #[test]
    fn a_and_aaaa_by_name_alias_and_name_network() {
        let t = table();
        for q in ["web", "www", "site", "web.frontend", "www.frontend", "web.frontend.", "0123456789ab"] {
            assert_eq!(ips(&t.lookup("frontend", &name(q), RecordType::A)), ["10.1.0.2"], "{q}");
            assert_eq!(ips(&t.lookup("frontend", &name(q), RecordType::AAAA)), ["fd00:1::2"], "{q}");
        }
        let any = t.lookup("frontend", &name("web"), RecordType::ANY);
        assert_eq!(ips(&any), ["10.1.0.2", "fd00:1::2"]);
    }

    #[test]
    fn records_carry_the_question_name_and_ttl() {
        let t = table();
        let q = name("WeB.FrontEnd.");
        let Answer::Records(rs) = t.lookup("frontend", &q, RecordType::A) else { panic!() };
        assert_eq!(rs.len(), 1);
        assert!(rs[0].name.eq_case(&q));
        assert_eq!(rs[0].ttl, TTL);
    }

    #[test]
    fn names_are_case_insensitive() {
        let t = table();
        for q in ["WEB", "Web.FRONTEND", "sItE", "SITE.frontend"] {
            assert_eq!(ips(&t.lookup("frontend", &name(q), RecordType::A)), ["10.1.0.2"], "{q}");
        }
    }

    #[test]
    fn nodata_when_the_name_has_no_record_of_the_type() {
        let t = table();
        assert_eq!(t.lookup("frontend", &name("db"), RecordType::AAAA), Answer::NoData);
        assert_eq!(t.lookup("frontend", &name("db"), RecordType::MX), Answer::NoData);
        assert_eq!(t.lookup("frontend", &name("db"), RecordType::PTR), Answer::NoData);
        assert_eq!(t.lookup("backend", &name(HOST_NAME), RecordType::A), Answer::NxDomain);
    }

    #[test]
    fn nxdomain_in_the_owned_zone_forward_elsewhere() {
        let t = table();
        assert_eq!(t.lookup("frontend", &name("nope.containers.internal"), RecordType::A), Answer::NxDomain);
        assert_eq!(t.lookup("frontend", &name("containers.internal"), RecordType::A), Answer::NoData);
        assert_eq!(t.lookup("frontend", &name("nope"), RecordType::A), Answer::NotOurs(Forward::Upstream));
        assert_eq!(t.lookup("frontend", &name("nope.frontend"), RecordType::A), Answer::NotOurs(Forward::Upstream));
        assert_eq!(t.lookup("frontend", &name("example.com"), RecordType::A), Answer::NotOurs(Forward::Upstream));
        assert_eq!(t.lookup("frontend", &name("printer.local"), RecordType::A), Answer::NotOurs(Forward::Mdns));
        let ll = name("7.3.254.169.in-addr.arpa");
        assert_eq!(t.lookup("frontend", &ll, RecordType::PTR), Answer::NotOurs(Forward::Mdns));
        let ll6 = name("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa");
        assert_eq!(t.lookup("frontend", &ll6, RecordType::PTR), Answer::NotOurs(Forward::Mdns));
        let lan = name("7.3.168.192.in-addr.arpa");
        assert_eq!(t.lookup("frontend", &lan, RecordType::PTR), Answer::NotOurs(Forward::Upstream));
        // With the host's LAN known: its reverse names are asked by mDNS, then upstream.
        let t = table().with_lan(&[("192.168.0.0".parse().unwrap(), 16), ("fd88::".parse().unwrap(), 64)]);
        assert_eq!(t.lookup("frontend", &lan, RecordType::PTR), Answer::NotOurs(Forward::MdnsThenUpstream));
        let v6 = name("b.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.8.d.f.ip6.arpa");
        assert_eq!(t.lookup("frontend", &v6, RecordType::PTR), Answer::NotOurs(Forward::MdnsThenUpstream));
        let off = name("7.3.168.10.in-addr.arpa");
        assert_eq!(t.lookup("frontend", &off, RecordType::PTR), Answer::NotOurs(Forward::Upstream));
        assert_eq!(t.lookup("frontend", &Name::root(), RecordType::NS), Answer::NotOurs(Forward::Upstream));
        assert_eq!(t.lookup("nosuchnet", &name("web"), RecordType::A), Answer::NotOurs(Forward::Upstream));
    }

    #[test]
    fn networks_are_isolated() {
        let t = table();
        assert_eq!(t.lookup("backend", &name("web"), RecordType::A), Answer::NotOurs(Forward::Upstream));
        assert_eq!(t.lookup("backend", &name("web.frontend"), RecordType::A), Answer::NotOurs(Forward::Upstream));
        assert_eq!(t.lookup("frontend", &name("cache"), RecordType::A), Answer::NotOurs(Forward::Upstream));
        let ptr = name("2.0.2.10.in-addr.arpa.");
        assert_eq!(t.lookup("frontend", &ptr, RecordType::PTR), Answer::NotOurs(Forward::Upstream));
        assert_eq!(ips(&t.lookup("backend", &ptr, RecordType::PTR)), ["cache.backend."]);
    }

    #[test]
    fn a_container_on_two_networks_is_found_on_both() {
        let t = table();
        assert_eq!(ips(&t.lookup("frontend", &name("multi"), RecordType::A)), ["10.1.0.9"]);
        assert_eq!(ips(&t.lookup("backend", &name("multi"), RecordType::A)), ["10.2.0.9"]);
        assert_eq!(ips(&t.lookup("backend", &name("multi.backend"), RecordType::A)), ["10.2.0.9"]);
    }

    #[test]
    fn a_shared_alias_answers_every_address() {
        let t = table();
        assert_eq!(ips(&t.lookup("frontend", &name("pool"), RecordType::A)), ["10.1.0.10", "10.1.0.11"]);
    }

    #[test]
    fn ptr_for_v4_and_v6_names_the_container_on_the_network() {
        let t = table();
        let v4 = name("2.0.1.10.in-addr.arpa");
        assert_eq!(ips(&t.lookup("frontend", &v4, RecordType::PTR)), ["web.frontend."]);
        let v6 = Name::from("fd00:1::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ips(&t.lookup("frontend", &v6, RecordType::PTR)), ["web.frontend."]);
        let upper = name(&v6.to_ascii().to_ascii_uppercase());
        assert_eq!(ips(&t.lookup("frontend", &upper, RecordType::PTR)), ["web.frontend."]);
        assert_eq!(t.lookup("frontend", &v4, RecordType::A), Answer::NoData);
        assert_eq!(
            t.lookup("frontend", &name("99.0.1.10.in-addr.arpa"), RecordType::PTR),
            Answer::NotOurs(Forward::Upstream)
        );
    }

    #[test]
    fn host_name_answers_the_configured_addresses() {
        let t = table();
        assert_eq!(ips(&t.lookup("frontend", &name(HOST_NAME), RecordType::A)), ["10.1.0.1"]);
        assert_eq!(ips(&t.lookup("frontend", &name(HOST_NAME), RecordType::AAAA)), ["fd00:1::1"]);
        assert_eq!(ips(&t.lookup("frontend", &name(DOCKER_HOST_NAME), RecordType::A)), ["10.1.0.1"]);
        assert_eq!(t.lookup("backend", &name(DOCKER_HOST_NAME), RecordType::A), Answer::NotOurs(Forward::Upstream));
    }

    #[test]
    fn bad_names_are_skipped_not_fatal() {
        let t = Records::new(&[NetworkRecords {
            name: "n".into(),
            containers: vec![entry("short", "", &["", "a..b", &"x".repeat(64), "ok", "sp ace"], &["10.0.0.1"], &[])],
            host: vec![],
        }]);
        assert_eq!(ips(&t.lookup("n", &name("ok"), RecordType::A)), ["10.0.0.1"]);
        assert_eq!(t.lookup("n", &name("short"), RecordType::A), Answer::NotOurs(Forward::Upstream));
        // No name: no PTR target either.
        assert_eq!(t.lookup("n", &name("1.0.0.10.in-addr.arpa"), RecordType::PTR), Answer::NotOurs(Forward::Upstream));
    }

    #[test]
    fn a_label_holding_a_dot_never_matches() {
        let t = table();
        let tricky = Name::from_labels(vec![&b"web.frontend"[..]]).unwrap();
        assert_eq!(t.lookup("frontend", &tricky, RecordType::A), Answer::NotOurs(Forward::Upstream));
    }

    #[test]
    fn a_container_on_two_networks_sees_both_through_either_server() {
        let t = Records::new(&[
            NetworkRecords {
                name: "front".into(),
                containers: vec![
                    entry("aa", "app", &[], &["10.1.0.2"], &[]),
                    entry("bb", "web", &[], &["10.1.0.3"], &[]),
                ],
                host: vec![],
            },
            NetworkRecords {
                name: "back".into(),
                containers: vec![
                    entry("aa", "app", &[], &["10.2.0.2"], &[]),
                    entry("cc", "db", &[], &["10.2.0.3"], &[]),
                ],
                host: vec![],
            },
        ]);
        let app_front: IpAddr = "10.1.0.2".parse().unwrap();
        let web: IpAddr = "10.1.0.3".parse().unwrap();
        // app asks front's server for db, which only back has: found.
        assert!(
            matches!(t.resolve_from("front", Some(app_front), &name("db"), RecordType::A), Resolved::Found(f) if f.ipv4 == ["10.2.0.3".parse::<Ipv4Addr>().unwrap()])
        );
        // Its own network wins when both have the name.
        assert!(
            matches!(t.resolve_from("front", Some(app_front), &name("app"), RecordType::A), Resolved::Found(f) if f.ipv4 == ["10.1.0.2".parse::<Ipv4Addr>().unwrap()])
        );
        // web is only on front: back's names stay hidden from it, and from unknown clients.
        assert!(matches!(
            t.resolve_from("front", Some(web), &name("db"), RecordType::A),
            Resolved::NotOurs(Forward::Upstream)
        ));
        assert!(matches!(
            t.resolve_from("front", None, &name("db"), RecordType::A),
            Resolved::NotOurs(Forward::Upstream)
        ));
        // A client address that is app's on back, asking front's server, is not app.
        assert!(matches!(
            t.resolve_from("front", Some("10.2.0.2".parse().unwrap()), &name("db"), RecordType::A),
            Resolved::NotOurs(_)
        ));
    }
}
