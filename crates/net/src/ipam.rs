//! IP address management: subnets, gateways, address allocation, the default subnet pool.
//!
//! Pure: the caller (the engine) stores leases and passes the set of addresses in use.
//!
//! Rules:
//! - IPv4 /0../30: the network and broadcast addresses are never handed out; the usable range
//!   is network+1 ..= broadcast-1. /31 (RFC 3021): both addresses are usable. /32: one.
//! - IPv6 /0../126: the all-zero host (subnet-router anycast) is never handed out; the last
//!   address is usable (there is no broadcast). /127 (RFC 6164) and /128: every address.
//! - The gateway defaults to the first usable address and is never handed out.
//! - Allocation picks the lowest free address, so leases are dense and predictable.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::{Error, Result};

/// Pool that default IPv4 subnets of new networks come from.
pub const DEFAULT_POOL_V4: &str = "10.90.0.0/16";
/// Prefix length of the default IPv4 subnets (a /24: 253 containers per network).
pub const DEFAULT_PREFIX_V4: u8 = 24;
/// Pool that default IPv6 subnets come from: a ULA /48 (fd63:6f76:65 is "cove").
pub const DEFAULT_POOL_V6: &str = "fd63:6f76:6500::/48";
/// Prefix length of the default IPv6 subnets.
pub const DEFAULT_PREFIX_V6: u8 = 64;

/// An IP network in CIDR form with no host bits set, like `10.90.0.0/24` or `fd00::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    network: IpAddr,
    prefix_len: u8,
}

fn bits(ip: IpAddr) -> u32 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

impl Subnet {
    /// A subnet from its network address and prefix length. Host bits must be zero.
    pub fn new(network: IpAddr, prefix_len: u8) -> Result<Self> {
        let input = || format!("{network}/{prefix_len}");
        if u32::from(prefix_len) > bits(network) {
            return Err(Error::InvalidSubnet {
                input: input(),
                reason: format!("prefix length {prefix_len} is longer than {} bits", bits(network)),
            });
        }
        let s = Subnet { network, prefix_len };
        if to_u128(network) & !s.mask() != 0 {
            return Err(Error::InvalidSubnet {
                input: input(),
                reason: format!("host bits are set (did you mean {}/{prefix_len}?)", s.truncate(network)),
            });
        }
        Ok(s)
    }

    /// The subnet of `prefix_len` bits that contains `addr` (host bits cleared).
    pub fn containing(addr: IpAddr, prefix_len: u8) -> Result<Self> {
        if u32::from(prefix_len) > bits(addr) {
            return Subnet::new(addr, prefix_len);
        }
        let s = Subnet { network: addr, prefix_len };
        Ok(Subnet { network: s.truncate(addr), prefix_len })
    }

    fn mask(&self) -> u128 {
        let host_bits = bits(self.network) - u32::from(self.prefix_len);
        let all = if self.is_ipv4() { u32::MAX as u128 } else { u128::MAX };
        if host_bits >= 128 {
            0
        } else {
            all & !((1u128 << host_bits) - 1)
        }
    }

    fn truncate(&self, addr: IpAddr) -> IpAddr {
        from_u128(to_u128(addr) & self.mask(), self.is_ipv4())
    }

    fn last(&self) -> u128 {
        let all = if self.is_ipv4() { u32::MAX as u128 } else { u128::MAX };
        to_u128(self.network) | (all & !self.mask())
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }

    /// True when `addr` is of the same family and inside the subnet.
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.is_ipv4() && to_u128(addr) & self.mask() == to_u128(self.network)
    }

    /// True when the two subnets share at least one address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.is_ipv4() == other.is_ipv4() && (self.contains(other.network) || other.contains(self.network))
    }

    /// The IPv4 broadcast address (prefixes up to /30); `None` for /31, /32 and IPv6.
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        (self.is_ipv4() && self.prefix_len <= 30).then(|| Ipv4Addr::from(self.last() as u32))
    }

    /// True when the network address itself is reserved (not a host address).
    fn network_reserved(&self) -> bool {
        u32::from(self.prefix_len) + 2 <= bits(self.network)
    }

    /// The first address that can be given to a host.
    pub fn first_host(&self) -> IpAddr {
        let n = to_u128(self.network);
        from_u128(if self.network_reserved() { n + 1 } else { n }, self.is_ipv4())
    }

    /// The last address that can be given to a host.
    pub fn last_host(&self) -> IpAddr {
        let l = self.last();
        from_u128(if self.broadcast().is_some() { l - 1 } else { l }, self.is_ipv4())
    }

    /// The default gateway: the first host address (`10.90.0.1` in `10.90.0.0/24`).
    pub fn default_gateway(&self) -> IpAddr {
        self.first_host()
    }

    /// Number of host addresses (including the gateway), saturating at `u128::MAX`.
    pub fn host_count(&self) -> u128 {
        (to_u128(self.last_host()) - to_u128(self.first_host())).saturating_add(1)
    }

    /// Why `addr` can never be a host address of this subnet, if it cannot.
    fn reserved_reason(&self, addr: IpAddr) -> Option<&'static str> {
        if self.network_reserved() && addr == self.network {
            return Some(if self.is_ipv4() { "network address" } else { "subnet-router anycast address" });
        }
        if self.broadcast().map(IpAddr::V4) == Some(addr) {
            return Some("broadcast address");
        }
        None
    }

    /// The subnets of `prefix_len` bits that make up this one, in address order.
    pub fn subnets(&self, prefix_len: u8) -> impl Iterator<Item = Subnet> + '_ {
        let v4 = self.is_ipv4();
        let valid = prefix_len >= self.prefix_len && u32::from(prefix_len) <= bits(self.network);
        let (count, step) = if valid {
            let split = u32::from(prefix_len - self.prefix_len);
            let step_bits = bits(self.network) - u32::from(prefix_len);
            let count = if split >= 128 { u128::MAX } else { 1u128 << split };
            let step = if step_bits >= 128 { 0 } else { 1u128 << step_bits };
            (count, step)
        } else {
            (0, 0)
        };
        let base = to_u128(self.network);
        (0..count).map(move |i| Subnet { network: from_u128(base + i * step, v4), prefix_len })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Subnet {
    type Err = Error;

    /// Parses `ADDR/PREFIX`; a bare address is a host route (/32 or /128).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidSubnet { input: s.to_string(), reason };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad(format!("{addr:?} is not an IP address")))?;
        let prefix = match prefix {
            None => bits(addr) as u8,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|_| !p.starts_with('+'))
                .ok_or_else(|| bad(format!("prefix length {p:?} is not a number from 0 to {}", bits(addr))))?,
        };
        Subnet::new(addr, prefix).map_err(|e| match e {
            Error::InvalidSubnet { reason, .. } => bad(reason),
            e => e,
        })
    }
}

/// The addresses of one network: its subnet and gateway. Allocation never hands out the
/// network, broadcast or gateway address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipam {
    subnet: Subnet,
    gateway: IpAddr,
    /// `--ip-range`: where addresses are picked from (a requested one may be anywhere).
    range: Option<Subnet>,
}

impl Ipam {
    /// IPAM for `subnet` with the default gateway (first host address).
    pub fn new(subnet: Subnet) -> Self {
        Ipam { subnet, gateway: subnet.default_gateway(), range: None }
    }

    /// IPAM for `subnet` with an explicit gateway (`--gateway`), which must be a host address
    /// of the subnet.
    pub fn with_gateway(subnet: Subnet, gateway: IpAddr) -> Result<Self> {
        if !subnet.contains(gateway) {
            return Err(Error::InvalidGateway { gateway, subnet, reason: "not in the subnet" });
        }
        if let Some(reason) = subnet.reserved_reason(gateway) {
            return Err(Error::InvalidGateway { gateway, subnet, reason });
        }
        Ok(Ipam { subnet, gateway, range: None })
    }

    /// Picks addresses from `range` only (Docker's `--ip-range`), a subnet of the subnet.
    pub fn with_range(self, range: Subnet) -> Result<Self> {
        if range.is_ipv4() != self.subnet.is_ipv4()
            || range.prefix_len < self.subnet.prefix_len
            || !self.subnet.contains(range.network)
        {
            return Err(Error::InvalidSubnet {
                input: range.to_string(),
                reason: format!("the IP range must be inside subnet {}", self.subnet),
            });
        }
        Ok(Ipam { range: Some(range), ..self })
    }

    pub fn range(&self) -> Option<Subnet> {
        self.range
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// Why `addr` cannot be handed out, ignoring the leases.
    fn check_assignable(&self, addr: IpAddr) -> Result<()> {
        let subnet = self.subnet;
        if !subnet.contains(addr) {
            return Err(Error::OutOfSubnet { addr, subnet });
        }
        if let Some(what) = subnet.reserved_reason(addr) {
            return Err(Error::Reserved { addr, subnet, what });
        }
        if addr == self.gateway {
            return Err(Error::Reserved { addr, subnet, what: "gateway" });
        }
        Ok(())
    }

    /// Picks an address: `requested` if it is a free host address, else the lowest free one.
    /// `used` holds the addresses already leased on this network (addresses of other subnets
    /// in it are ignored).
    pub fn allocate(&self, used: &HashSet<IpAddr>, requested: Option<IpAddr>) -> Result<IpAddr> {
        let subnet = self.subnet;
        if let Some(addr) = requested {
            self.check_assignable(addr)?;
            if used.contains(&addr) {
                return Err(Error::InUse { addr, subnet });
            }
            return Ok(addr);
        }
        let v4 = subnet.is_ipv4();
        let (mut first, mut last) = (to_u128(subnet.first_host()), to_u128(subnet.last_host()));
        if let Some(r) = self.range {
            first = first.max(to_u128(r.network));
            last = last.min(r.last());
            if first > last {
                return Err(Error::Exhausted { subnet: r });
            }
        }
        let gw = to_u128(self.gateway);
        // At most used.len() + 2 candidates are taken, so this ends quickly even in a /64.
        let mut cand = first;
        loop {
            let addr = from_u128(cand, v4);
            if cand != gw && !used.contains(&addr) {
                return Ok(addr);
            }
            if cand == last {
                return Err(Error::Exhausted { subnet });
            }
            cand += 1;
        }
    }
}

/// Picks an address in `subnet` (default gateway): shorthand for [`Ipam::allocate`].
pub fn allocate(subnet: &Subnet, used: &HashSet<IpAddr>, requested: Option<IpAddr>) -> Result<IpAddr> {
    Ipam::new(*subnet).allocate(used, requested)
}

/// Returns the first subnet of `existing` (with its network name) that overlaps `subnet`.
pub fn find_overlap<'a, N: AsRef<str>>(subnet: &Subnet, existing: &'a [(N, Subnet)]) -> Option<(&'a str, Subnet)> {
    existing.iter().find(|(_, s)| s.overlaps(subnet)).map(|(n, s)| (n.as_ref(), *s))
}

/// Fails with [`Error::Overlap`] if `subnet` overlaps a subnet of an existing network.
pub fn ensure_no_overlap<N: AsRef<str>>(subnet: &Subnet, existing: &[(N, Subnet)]) -> Result<()> {
    match find_overlap(subnet, existing) {
        Some((network, other)) => Err(Error::Overlap { subnet: *subnet, other, network: network.to_string() }),
        None => Ok(()),
    }
}

/// A pool that subnets for new networks are carved from: `base` split into `/prefix_len`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetPool {
    pub base: Subnet,
    pub prefix_len: u8,
}

impl SubnetPool {
    /// `base` split into `/prefix_len` subnets; `prefix_len` must not be shorter than the base.
    pub fn new(base: Subnet, prefix_len: u8) -> Result<Self> {
        if prefix_len < base.prefix_len() || u32::from(prefix_len) > bits(base.network()) {
            return Err(Error::InvalidSubnet {
                input: base.to_string(),
                reason: format!("cannot split into /{prefix_len} subnets"),
            });
        }
        Ok(SubnetPool { base, prefix_len })
    }

    /// `10.90.0.0/16` in /24s.
    pub fn default_v4() -> Self {
        SubnetPool { base: DEFAULT_POOL_V4.parse().expect("valid constant"), prefix_len: DEFAULT_PREFIX_V4 }
    }

    /// `fd63:6f76:6500::/48` in /64s.
    pub fn default_v6() -> Self {
        SubnetPool { base: DEFAULT_POOL_V6.parse().expect("valid constant"), prefix_len: DEFAULT_PREFIX_V6 }
    }

    /// The first subnet of the pool that overlaps none of `taken` (subnets of existing
    /// networks, and any host routes the caller wants to avoid).
    pub fn pick(&self, taken: &[Subnet]) -> Result<Subnet> {
        // Bound the scan (a /48 split into /64s has 65,536 candidates; more is no pool).
        const MAX_CANDIDATES: usize = 1 << 20;
        self.base
            .subnets(self.prefix_len)
            .take(MAX_CANDIDATES)
            .find(|c| !taken.iter().any(|t| t.overlaps(c)))
            .ok_or(Error::PoolExhausted { pool: self.base, prefix_len: self.prefix_len })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ip_range_limits_picked_addresses_not_requested_ones() {
        let ipam = Ipam::new("10.9.0.0/24".parse().unwrap()).with_range("10.9.0.128/30".parse().unwrap()).unwrap();
        let mut used = HashSet::new();
        for want in ["10.9.0.128", "10.9.0.129", "10.9.0.130", "10.9.0.131"] {
            let a = ipam.allocate(&used, None).unwrap();
            assert_eq!(a.to_string(), want);
            used.insert(a);
        }
        assert!(matches!(ipam.allocate(&used, None), Err(Error::Exhausted { .. })));
        // A requested address may be outside the range, inside the subnet.
        assert_eq!(ipam.allocate(&used, Some("10.9.0.7".parse().unwrap())).unwrap().to_string(), "10.9.0.7");
        // The range's edges that are the subnet's network/broadcast are skipped.
        let edge = Ipam::new("10.9.0.0/24".parse().unwrap()).with_range("10.9.0.0/30".parse().unwrap()).unwrap();
        assert_eq!(
            edge.allocate(&HashSet::new(), None).unwrap().to_string(),
            "10.9.0.2",
            "not .0 (network) or .1 (gateway)"
        );
        for bad in ["10.9.1.0/25", "10.8.0.0/16", "fd00::/64"] {
            assert!(Ipam::new("10.9.0.0/24".parse().unwrap()).with_range(bad.parse().unwrap()).is_err(), "{bad}");
        }
    }

    use super::*;

    fn sn(s: &str) -> Subnet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn set(v: &[&str]) -> HashSet<IpAddr> {
        v.iter().map(|s| ip(s)).collect()
    }

    #[test]
    fn parse_and_display() {
        let s = sn("10.90.0.0/24");
        assert_eq!(s.to_string(), "10.90.0.0/24");
        assert_eq!(s.network(), ip("10.90.0.0"));
        assert_eq!(s.prefix_len(), 24);
        assert_eq!(sn("fd00::/64").to_string(), "fd00::/64");
        assert_eq!(sn("10.1.2.3").prefix_len(), 32);
        assert_eq!(sn("0.0.0.0/0").host_count(), (1u128 << 32) - 2);
    }

    #[test]
    fn parse_errors_are_clear() {
        let e = "10.90.0.1/24".parse::<Subnet>().unwrap_err().to_string();
        assert_eq!(e, r#"invalid subnet "10.90.0.1/24": host bits are set (did you mean 10.90.0.0/24?)"#);
        let e = "10.90.0.0/33".parse::<Subnet>().unwrap_err().to_string();
        assert!(e.contains("prefix length 33 is longer than 32 bits"), "{e}");
        let e = "10.90.0/24".parse::<Subnet>().unwrap_err().to_string();
        assert!(e.contains("is not an IP address"), "{e}");
        let e = "10.90.0.0/x".parse::<Subnet>().unwrap_err().to_string();
        assert!(e.contains(r#"prefix length "x" is not a number from 0 to 32"#), "{e}");
        assert!("fd00::1/64".parse::<Subnet>().is_err());
        assert!("10.0.0.0/+8".parse::<Subnet>().is_err());
    }

    #[test]
    fn contains_overlaps() {
        let a = sn("10.90.0.0/16");
        assert!(a.contains(ip("10.90.255.255")));
        assert!(!a.contains(ip("10.91.0.0")));
        assert!(!a.contains(ip("::ffff:10.90.0.1")));
        assert!(a.overlaps(&sn("10.90.3.0/24")));
        assert!(sn("10.90.3.0/24").overlaps(&a));
        assert!(!sn("10.90.3.0/24").overlaps(&sn("10.90.4.0/24")));
        assert!(!a.overlaps(&sn("fd00::/8")));
        assert!(sn("0.0.0.0/0").overlaps(&sn("192.168.1.0/24")));
        let existing = vec![("one".to_string(), sn("10.90.0.0/24")), ("two".to_string(), sn("10.90.1.0/24"))];
        assert_eq!(find_overlap(&sn("10.90.1.128/25"), &existing), Some(("two", sn("10.90.1.0/24"))));
        let e = ensure_no_overlap(&sn("10.90.0.0/23"), &existing).unwrap_err().to_string();
        assert_eq!(e, r#"subnet 10.90.0.0/23 overlaps subnet 10.90.0.0/24 of network "one""#);
        ensure_no_overlap(&sn("10.90.2.0/24"), &existing).unwrap();
    }

    #[test]
    fn allocation_order_skips_gateway_and_used() {
        let s = sn("10.90.0.0/24");
        assert_eq!(s.default_gateway(), ip("10.90.0.1"));
        assert_eq!(allocate(&s, &set(&[]), None).unwrap(), ip("10.90.0.2"));
        assert_eq!(allocate(&s, &set(&["10.90.0.2", "10.90.0.3", "10.90.0.5"]), None).unwrap(), ip("10.90.0.4"));
        // A lease outside the subnet changes nothing.
        assert_eq!(allocate(&s, &set(&["10.91.0.2"]), None).unwrap(), ip("10.90.0.2"));
        // With a custom gateway, .1 is an ordinary address.
        let ipam = Ipam::with_gateway(s, ip("10.90.0.254")).unwrap();
        assert_eq!(ipam.allocate(&set(&[]), None).unwrap(), ip("10.90.0.1"));
        let all: HashSet<IpAddr> = (1..=253).map(|i| IpAddr::V4(Ipv4Addr::new(10, 90, 0, i))).collect();
        assert!(matches!(ipam.allocate(&all, None), Err(Error::Exhausted { .. })));
    }

    #[test]
    fn exhaustion_never_yields_reserved() {
        let s = sn("10.90.0.0/29"); // .1 gateway, .2-.6 hosts, .7 broadcast
        let mut used = HashSet::new();
        for _ in 0..5 {
            let a = allocate(&s, &used, None).unwrap();
            assert!(![ip("10.90.0.0"), ip("10.90.0.1"), ip("10.90.0.7")].contains(&a));
            used.insert(a);
        }
        assert_eq!(used.len(), 5);
        let e = allocate(&s, &used, None).unwrap_err();
        assert_eq!(e.to_string(), "subnet 10.90.0.0/29 has no free address left");
    }

    #[test]
    fn requested_address() {
        let s = sn("10.90.0.0/24");
        assert_eq!(allocate(&s, &set(&[]), Some(ip("10.90.0.77"))).unwrap(), ip("10.90.0.77"));
        let msg = |r: &str, used: &[&str]| allocate(&s, &set(used), Some(ip(r))).unwrap_err().to_string();
        assert_eq!(msg("10.90.0.77", &["10.90.0.77"]), "address 10.90.0.77 is already in use in subnet 10.90.0.0/24");
        assert_eq!(msg("10.91.0.7", &[]), "address 10.91.0.7 is not in subnet 10.90.0.0/24");
        assert_eq!(msg("10.90.0.0", &[]), "address 10.90.0.0 is the network address of subnet 10.90.0.0/24");
        assert_eq!(msg("10.90.0.255", &[]), "address 10.90.0.255 is the broadcast address of subnet 10.90.0.0/24");
        assert_eq!(msg("10.90.0.1", &[]), "address 10.90.0.1 is the gateway of subnet 10.90.0.0/24");
        assert_eq!(msg("fd00::1", &[]), "address fd00::1 is not in subnet 10.90.0.0/24");
    }

    #[test]
    fn gateway_validation() {
        let s = sn("10.90.0.0/24");
        assert!(Ipam::with_gateway(s, ip("10.90.0.0")).is_err());
        assert!(Ipam::with_gateway(s, ip("10.90.0.255")).is_err());
        let e = Ipam::with_gateway(s, ip("10.9.0.1")).unwrap_err().to_string();
        assert_eq!(e, "invalid gateway 10.9.0.1 for subnet 10.90.0.0/24: not in the subnet");
    }

    #[test]
    fn slash_31_and_32() {
        let s = sn("10.90.0.4/31");
        assert_eq!(s.broadcast(), None);
        assert_eq!(s.first_host(), ip("10.90.0.4"));
        assert_eq!(s.last_host(), ip("10.90.0.5"));
        assert_eq!(s.default_gateway(), ip("10.90.0.4"));
        assert_eq!(allocate(&s, &set(&[]), None).unwrap(), ip("10.90.0.5"));
        assert!(matches!(allocate(&s, &set(&["10.90.0.5"]), None), Err(Error::Exhausted { .. })));
        let s = sn("10.90.0.9/32");
        assert_eq!(s.host_count(), 1);
        assert_eq!(s.default_gateway(), ip("10.90.0.9"));
        assert!(matches!(allocate(&s, &set(&[]), None), Err(Error::Exhausted { .. })));
        // Without the gateway on it (a point-to-point use), the one address is assignable.
        let s30 = sn("10.90.0.8/30");
        assert_eq!(s30.broadcast(), Some(Ipv4Addr::new(10, 90, 0, 11)));
        assert_eq!(allocate(&s30, &set(&[]), None).unwrap(), ip("10.90.0.10"));
        assert!(matches!(allocate(&s30, &set(&["10.90.0.10"]), None), Err(Error::Exhausted { .. })));
    }

    #[test]
    fn ipv6() {
        let s = sn("fd63:6f76:6500:1::/64");
        assert_eq!(s.default_gateway(), ip("fd63:6f76:6500:1::1"));
        assert_eq!(allocate(&s, &set(&[]), None).unwrap(), ip("fd63:6f76:6500:1::2"));
        assert_eq!(allocate(&s, &set(&["fd63:6f76:6500:1::2"]), None).unwrap(), ip("fd63:6f76:6500:1::3"));
        let e = allocate(&s, &set(&[]), Some(ip("fd63:6f76:6500:1::"))).unwrap_err().to_string();
        assert!(e.contains("subnet-router anycast"), "{e}");
        // The last address is a host address in IPv6.
        let last = ip("fd63:6f76:6500:1:ffff:ffff:ffff:ffff");
        assert_eq!(allocate(&s, &set(&[]), Some(last)).unwrap(), last);
        assert_eq!(s.host_count(), u64::MAX as u128);
        let s = sn("fd00::/127");
        assert_eq!(s.default_gateway(), ip("fd00::"));
        assert_eq!(allocate(&s, &set(&[]), None).unwrap(), ip("fd00::1"));
        let s = sn("fd00::5/128");
        assert!(matches!(allocate(&s, &set(&[]), None), Err(Error::Exhausted { .. })));
        let s = sn("fd00::/126"); // ::0 reserved, ::1 gateway, ::2 ::3 hosts
        let mut used = HashSet::new();
        used.insert(allocate(&s, &used, None).unwrap());
        used.insert(allocate(&s, &used, None).unwrap());
        assert_eq!(used, set(&["fd00::2", "fd00::3"]));
        assert!(allocate(&s, &used, None).is_err());
    }

    #[test]
    fn pool_picks_first_free() {
        let p = SubnetPool::default_v4();
        assert_eq!(p.pick(&[]).unwrap(), sn("10.90.0.0/24"));
        assert_eq!(p.pick(&[sn("10.90.0.0/24"), sn("10.90.1.0/24")]).unwrap(), sn("10.90.2.0/24"));
        // A wider taken subnet (for example a host route) knocks out every /24 it covers.
        assert_eq!(p.pick(&[sn("10.90.0.0/22"), sn("192.168.0.0/16")]).unwrap(), sn("10.90.4.0/24"));
        let all: Vec<Subnet> = p.base.subnets(24).collect();
        assert_eq!(all.len(), 256);
        let e = p.pick(&all).unwrap_err().to_string();
        assert_eq!(e, "no free /24 subnet left in pool 10.90.0.0/16");
        let p6 = SubnetPool::default_v6();
        assert_eq!(p6.pick(&[]).unwrap(), sn("fd63:6f76:6500::/64"));
        assert_eq!(p6.pick(&[sn("fd63:6f76:6500::/64")]).unwrap(), sn("fd63:6f76:6500:1::/64"));
        assert!(SubnetPool::new(sn("10.0.0.0/16"), 8).is_err());
        let tiny = SubnetPool::new(sn("10.0.0.0/30"), 30).unwrap();
        assert_eq!(tiny.pick(&[]).unwrap(), sn("10.0.0.0/30"));
    }
}
