//! Docker `-p/--publish` specs and the unprivileged-port check.
//!
//! Accepted forms (`/tcp` is the default protocol; `/udp` is the other one):
//!
//! | spec | meaning |
//! |---|---|
//! | `80` | container port 80 on a random host port, all host addresses |
//! | `8080:80` | host port 8080 to container port 80 |
//! | `127.0.0.1:5353:53/udp` | only on host address 127.0.0.1, UDP |
//! | `127.0.0.1::80` | random host port on 127.0.0.1 |
//! | `[::1]:8080:80` | IPv6 host address (brackets required) |
//! | `9000-9010:9000-9010` | ranges of equal length, mapped one to one |
//! | `8000-8010:80` | any one free host port of the range to container port 80 |
//! | `9000-9010` | each container port on a random host port |
//!
//! `-P` is the caller's: it publishes each exposed port as [`PortSpec::random`].
//! SCTP is refused with a clear message: the forwarders speak TCP and UDP only.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::{io_err, Error, Result};

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// An inclusive port range; a single port is `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        PortRange { start: port, end: port }
    }

    /// Number of ports in the range.
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    /// Always false: a range holds at least one port (present for clippy's sake).
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> {
        self.start..=self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Which host ports a spec asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HostPorts {
    /// A port chosen by the kernel (bind to port 0) for each container port.
    Random,
    /// Exactly these ports, one per container port, in order (same length as the container
    /// range).
    Exact(PortRange),
    /// Any one free port of the range (the container range is a single port).
    AnyOf(PortRange),
}

/// One parsed `-p` spec.
/// Serializable: the engine hands parsed specs to the monitor in its configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortSpec {
    /// The host address to listen on; `None` is every address (0.0.0.0 and ::).
    pub host_ip: Option<IpAddr>,
    pub host: HostPorts,
    pub container: PortRange,
    pub protocol: Protocol,
}

impl PortSpec {
    /// What `-P` publishes for an exposed port: a random host port on every address.
    pub fn random(container_port: u16, protocol: Protocol) -> Self {
        PortSpec { host_ip: None, host: HostPorts::Random, container: PortRange::single(container_port), protocol }
    }

    /// The (host port, container port) pairs: `None` host ports are chosen at bind time. For
    /// [`HostPorts::AnyOf`] this is one pair with `None`; use [`PortSpec::host_candidates`].
    pub fn pairs(&self) -> Vec<(Option<u16>, u16)> {
        match self.host {
            HostPorts::Exact(h) => h.iter().map(Some).zip(self.container.iter()).collect(),
            HostPorts::Random | HostPorts::AnyOf(_) => self.container.iter().map(|c| (None, c)).collect(),
        }
    }

    /// For [`HostPorts::AnyOf`], the host ports to try in order; empty otherwise.
    pub fn host_candidates(&self) -> Vec<u16> {
        match self.host {
            HostPorts::AnyOf(r) => r.iter().collect(),
            _ => Vec::new(),
        }
    }

    /// Fails with [`Error::PrivilegedPort`] when the spec asks for a host port below
    /// `port_start` (the value of `net.ipv4.ip_unprivileged_port_start`) and the caller is not
    /// `privileged` (root in the host's user namespace).
    pub fn check_unprivileged(&self, port_start: u16, privileged: bool) -> Result<()> {
        if privileged {
            return Ok(());
        }
        let low = match self.host {
            HostPorts::Random => None,
            HostPorts::Exact(r) => Some(r.start),
            // Any port of the range will do: fail only when none is allowed.
            HostPorts::AnyOf(r) => (r.end < port_start).then_some(r.end),
        };
        match low {
            Some(port) if port < port_start => Err(Error::PrivilegedPort { port, start: port_start }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(a)) => write!(f, "[{a}]:")?,
            Some(IpAddr::V4(a)) => write!(f, "{a}:")?,
            None => {}
        }
        match self.host {
            HostPorts::Random if self.host_ip.is_some() => f.write_str(":")?,
            HostPorts::Random => {}
            HostPorts::Exact(r) | HostPorts::AnyOf(r) => write!(f, "{r}:")?,
        }
        write!(f, "{}/{}", self.container, self.protocol)
    }
}

impl FromStr for PortSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        parse_publish(s)
    }
}

fn parse_range(s: &str, what: &str, allow_zero: bool) -> Result<PortRange, String> {
    let port = |p: &str| -> Result<u16, String> {
        let n: u16 = p
            .parse()
            .ok()
            .filter(|_| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("{what} port {p:?} is not a number from 1 to 65535"))?;
        if n == 0 && !allow_zero {
            return Err(format!("{what} port 0 is not allowed"));
        }
        Ok(n)
    };
    if s.is_empty() {
        return Err(format!("missing {what} port"));
    }
    match s.split_once('-') {
        None => Ok(PortRange::single(port(s)?)),
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a == 0 {
                return Err(format!("{what} port range {s} includes port 0"));
            }
            if a > b {
                return Err(format!("{what} port range {s} ends before it starts"));
            }
            Ok(PortRange { start: a, end: b })
        }
    }
}

/// Parses one `-p` spec. Errors are one line: `invalid port spec "x": reason`.
pub fn parse_publish(spec: &str) -> Result<PortSpec> {
    parse_inner(spec).map_err(|reason| Error::InvalidPortSpec { spec: spec.to_string(), reason })
}

fn parse_inner(spec: &str) -> Result<PortSpec, String> {
    let s = spec.trim();
    if s.is_empty() {
        return Err("empty".into());
    }
    let (rest, protocol) = match s.rsplit_once('/') {
        None => (s, Protocol::Tcp),
        Some((rest, p)) => {
            let proto = match p.to_ascii_lowercase().as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => return Err("sctp is not supported (use tcp or udp)".into()),
                "" => return Err("missing protocol after '/'".into()),
                _ => return Err(format!("unknown protocol {p:?} (use tcp or udp)")),
            };
            (rest, proto)
        }
    };
    // Split off the host address: bracketed IPv6, or the part before the second-last ':'.
    let (host_ip, ports): (Option<&str>, &str) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, tail) = after.split_once(']').ok_or("missing ']' after IPv6 address")?;
        let tail = tail.strip_prefix(':').ok_or("expected ':' after ']'")?;
        if !tail.contains(':') {
            return Err("expected [IP]:HOSTPORT:CONTAINERPORT or [IP]::CONTAINERPORT".into());
        }
        (Some(ip), tail)
    } else {
        match rest.matches(':').count() {
            0 | 1 => (None, rest),
            2 => {
                let (ip, tail) = rest.split_once(':').expect("two colons");
                (Some(ip), tail)
            }
            _ => return Err("an IPv6 host address must be in brackets, like [::1]:8080:80".into()),
        }
    };
    let host_ip = match host_ip {
        None => None,
        Some(ip) => {
            let addr: IpAddr = ip.parse().map_err(|_| format!("host address {ip:?} is not an IP address"))?;
            if addr.is_ipv6() && !rest.starts_with('[') {
                return Err("an IPv6 host address must be in brackets, like [::1]:8080:80".into());
            }
            Some(addr)
        }
    };
    let (host, container) = match ports.split_once(':') {
        None => (None, ports),
        Some(("", c)) => (None, c),
        Some((h, c)) => (Some(h), c),
    };
    let container = parse_range(container, "container", false)?;
    let host = match host {
        None => HostPorts::Random,
        Some(h) => {
            let h = parse_range(h, "host", true)?;
            if h.start == 0 {
                if container.len() != 1 {
                    return Err("host port 0 (random) needs a single container port".into());
                }
                HostPorts::Random
            } else if h.len() == container.len() {
                HostPorts::Exact(h)
            } else if container.len() == 1 {
                HostPorts::AnyOf(h)
            } else {
                return Err(format!(
                    "host ports {h} and container ports {container} differ in number ({} and {})",
                    h.len(),
                    container.len()
                ));
            }
        }
    };
    Ok(PortSpec { host_ip, host, container, protocol })
}

/// Where the kernel keeps the lowest port an unprivileged process may bind.
pub const UNPRIVILEGED_PORT_START: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";

/// Reads `net.ipv4.ip_unprivileged_port_start` of the calling process's network namespace.
pub fn unprivileged_port_start() -> Result<u16> {
    let text =
        std::fs::read_to_string(UNPRIVILEGED_PORT_START).map_err(io_err(format!("read {UNPRIVILEGED_PORT_START}")))?;
    text.trim().parse().map_err(|_| Error::Io {
        op: format!("parse {UNPRIVILEGED_PORT_START}"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected content {:?}", text.trim())),
    })
}

/// Checks `spec` against this host's `ip_unprivileged_port_start` unless the caller is root
/// (effective uid 0 in the initial user namespace is what lets the host-side listener bind
/// any port). Call it in the host network namespace, where the listeners will be.
pub fn check_host_ports(spec: &PortSpec) -> Result<()> {
    if nix::unistd::geteuid().is_root() && in_initial_userns() {
        return Ok(());
    }
    spec.check_unprivileged(unprivileged_port_start()?, false)
}

fn in_initial_userns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn p(s: &str) -> PortSpec {
        parse_publish(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn err(s: &str) -> String {
        parse_publish(s).unwrap_err().to_string()
    }

    #[test]
    fn all_forms() {
        assert_eq!(p("80"), PortSpec::random(80, Protocol::Tcp));
        assert_eq!(
            p("8080:80"),
            PortSpec {
                host_ip: None,
                host: HostPorts::Exact(PortRange::single(8080)),
                container: PortRange::single(80),
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(
            p("127.0.0.1:5353:53/udp"),
            PortSpec {
                host_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                host: HostPorts::Exact(PortRange::single(5353)),
                container: PortRange::single(53),
                protocol: Protocol::Udp
            }
        );
        let r = p("9000-9010:9000-9010");
        assert_eq!(r.host, HostPorts::Exact(PortRange { start: 9000, end: 9010 }));
        assert_eq!(r.pairs().len(), 11);
        assert_eq!(r.pairs()[3], (Some(9003), 9003));
        let r = p("[::1]:8080:80");
        assert_eq!(r.host_ip, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(r.host, HostPorts::Exact(PortRange::single(8080)));
        let r = p("127.0.0.1::80");
        assert_eq!((r.host_ip, r.host), (Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), HostPorts::Random));
        let r = p("[::]::53/udp");
        assert_eq!(
            (r.host_ip, r.host, r.protocol),
            (Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), HostPorts::Random, Protocol::Udp)
        );
        let r = p("8000-8010:80");
        assert_eq!(r.host, HostPorts::AnyOf(PortRange { start: 8000, end: 8010 }));
        assert_eq!(r.host_candidates().len(), 11);
        assert_eq!(r.pairs(), vec![(None, 80)]);
        let r = p("9000-9002");
        assert_eq!(r.pairs(), vec![(None, 9000), (None, 9001), (None, 9002)]);
        assert_eq!(p("0:80").host, HostPorts::Random);
        assert_eq!(p(":80").host, HostPorts::Random);
        assert_eq!(p("80/UDP").protocol, Protocol::Udp);
        assert_eq!(p(" 80/tcp ").protocol, Protocol::Tcp);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "80/tcp",
            "8080:80/tcp",
            "127.0.0.1:5353:53/udp",
            "[::1]:8080:80/tcp",
            "127.0.0.1::80/tcp",
            "9000-9010:9000-9010/tcp",
            "8000-8010:80/udp",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
    }

    #[test]
    fn errors_are_one_clear_line() {
        let cases = [
            ("", "empty"),
            ("abc", r#"container port "abc" is not a number from 1 to 65535"#),
            ("0", "container port 0 is not allowed"),
            ("70000", r#"container port "70000" is not a number"#),
            ("8080:", "missing container port"),
            ("80/sctp", "sctp is not supported"),
            ("80/icmp", r#"unknown protocol "icmp""#),
            ("80/", "missing protocol after '/'"),
            ("1.2.3:80:80", r#"host address "1.2.3" is not an IP address"#),
            ("::1:8080:80", "must be in brackets"),
            ("[::1:8080:80", "missing ']'"),
            ("[::1]8080:80", "expected ':' after ']'"),
            ("[::1]:80", "expected [IP]:HOSTPORT:CONTAINERPORT"),
            ("9010-9000:80", "host port range 9010-9000 ends before it starts"),
            ("9000-9001:80-82", "host ports 9000-9001 and container ports 80-82 differ in number (2 and 3)"),
            ("8080:80-81", "host ports 8080 and container ports 80-81 differ in number"),
            ("0-5:80", "includes port 0"),
            ("0:80-81", "host port 0 (random) needs a single container port"),
            ("+80", "is not a number"),
            ("a:b:c:d", "must be in brackets"),
        ];
        for (spec, want) in cases {
            let e = err(spec);
            assert!(e.starts_with(&format!("invalid port spec {spec:?}: ")), "{spec}: {e}");
            assert!(e.contains(want), "{spec}: {e} (want {want})");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn unprivileged_ports() {
        let start = 1024;
        p("8080:80").check_unprivileged(start, false).unwrap();
        p("80").check_unprivileged(start, false).unwrap();
        p("80:80").check_unprivileged(start, true).unwrap();
        let e = p("80:80").check_unprivileged(start, false).unwrap_err().to_string();
        assert!(e.contains("host port 80 is below net.ipv4.ip_unprivileged_port_start (1024)"), "{e}");
        assert!(p("1000-1030:1000-1030").check_unprivileged(start, false).is_err());
        // Any port of the range will do, and some are allowed.
        p("1000-1030:80").check_unprivileged(start, false).unwrap();
        assert!(p("1000-1010:80").check_unprivileged(start, false).is_err());
        p("80:80").check_unprivileged(0, false).unwrap();
    }

    #[test]
    fn sysctl_is_readable() {
        let v = unprivileged_port_start().unwrap();
        if !nix::unistd::geteuid().is_root() && v > 80 {
            let e = check_host_ports(&p("80:80")).unwrap_err().to_string();
            assert!(e.contains("net.ipv4.ip_unprivileged_port_start"), "{e}");
        }
    }
}
