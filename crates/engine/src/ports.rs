//! Published ports (`-p`, `-P`): the host side listens as the user, the network helper moves
//! the bytes into the container's address in its network namespace.
//!
//! The process starting the container (CLI or monitor) binds every host socket itself, in the
//! host's network namespace, before the container runs — so a port in use or below
//! `net.ipv4.ip_unprivileged_port_start` fails at once with a clear error and nothing is left
//! half-started — then hands the sockets to the helper over its control socket (SCM_RIGHTS).
//! The helper serves them from threads inside its namespace (splice for TCP, a flow table for
//! UDP) until the container stops.

use crate::{Error, Result};
use cove_net::portmap::{parse_publish, PortSpec, Protocol};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::Path;

/// One published port, as `cove port` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub proto: String,
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
}

/// Parses `-p` values and, with `-P`, adds the image's exposed ports on random host ports.
pub fn specs(publish: &[String], publish_all: bool, exposed: &[String]) -> Result<Vec<PortSpec>> {
    let mut out = vec![];
    for p in publish {
        let s = parse_publish(p).map_err(|e| Error::Invalid(e.to_string()))?;
        cove_net::portmap::check_host_ports(&s).map_err(|e| match e {
            cove_net::Error::PrivilegedPort { .. } => Error::HostDenied(e.to_string()),
            e => Error::Invalid(e.to_string()),
        })?;
        out.push(s);
    }
    if publish_all {
        for e in exposed {
            let (port, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
            let port: u16 = port.parse().map_err(|_| Error::Invalid(format!("image exposes an invalid port {e:?}")))?;
            let proto = if proto == "udp" { Protocol::Udp } else { Protocol::Tcp };
            out.push(PortSpec::random(port, proto));
        }
    }
    Ok(out)
}

/// The exposed ports of a container: the image's, then `--expose` ones (PORT[-END][/PROTO],
/// ranges expanded), each once, as `PORT/PROTO`.
pub fn exposed(image: &[String], expose: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = image.to_vec();
    for e in expose {
        let bad = || Error::Invalid(format!("invalid --expose {e:?}: PORT[-END][/tcp|udp]"));
        let (ports, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
        if proto != "tcp" && proto != "udp" {
            return Err(bad());
        }
        let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
        let (lo, hi): (u16, u16) = (lo.parse().map_err(|_| bad())?, hi.parse().map_err(|_| bad())?);
        if lo == 0 || hi < lo {
            return Err(bad());
        }
        for p in lo..=hi {
            let s = format!("{p}/{proto}");
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Binds the host sockets for `specs`. Errors name the port and why.
pub fn bind(specs: &[PortSpec]) -> Result<Vec<(Published, OwnedFd)>> {
    let mut out = vec![];
    for s in specs {
        let ip = s.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let proto = if s.protocol == Protocol::Udp { "udp" } else { "tcp" };
        let mut pairs: Vec<(Option<u16>, u16)> = s.pairs();
        let candidates = s.host_candidates();
        for (host, cport) in pairs.drain(..) {
            let tries: Vec<u16> = match host {
                Some(h) => vec![h],
                None if !candidates.is_empty() => candidates.clone(),
                None => vec![0],
            };
            let mut last_err = None;
            let mut bound = None;
            for h in tries {
                let addr = SocketAddr::new(ip, h);
                let r: std::io::Result<OwnedFd> = if proto == "udp" {
                    std::net::UdpSocket::bind(addr).map(OwnedFd::from)
                } else {
                    std::net::TcpListener::bind(addr).map(OwnedFd::from)
                };
                match r {
                    Ok(fd) => {
                        bound = Some(fd);
                        break;
                    }
                    Err(e) => last_err = Some((h, e)),
                }
            }
            let Some(fd) = bound else {
                let (h, e) = last_err.expect("at least one try");
                return Err(match e.kind() {
                    std::io::ErrorKind::PermissionDenied => {
                        Error::HostDenied(format!("cannot publish {ip}:{h}/{proto}: permission denied (ports below net.ipv4.ip_unprivileged_port_start need privileges)"))
                    }
                    std::io::ErrorKind::AddrInUse => Error::Conflict(format!("cannot publish {ip}:{h}/{proto}: address already in use")),
                    _ => Error::Conflict(format!("cannot publish {ip}:{h}/{proto}: {e}")),
                });
            };
            let actual = local_port(&fd)?;
            out.push((Published { proto: proto.into(), host_ip: ip, host_port: actual, container_port: cport }, fd));
            // No host address given: IPv6 clients too, on the same port, as Docker does
            // (`[::]:P` besides `0.0.0.0:P`). Best effort: a host without IPv6, or with that
            // port taken on IPv6 only, keeps the IPv4 socket alone.
            if s.host_ip.is_none() {
                match bind_v6_only(proto, actual) {
                    Ok(fd6) => out.push((
                        Published {
                            proto: proto.into(),
                            host_ip: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                            host_port: actual,
                            container_port: cport,
                        },
                        fd6,
                    )),
                    Err(e) => tracing::debug!("publish [::]:{actual}/{proto}: {e}; IPv4 only"),
                }
            }
        }
    }
    Ok(out)
}

/// A socket on `[::]:port` that takes IPv6 only, beside the one on 0.0.0.0.
fn bind_v6_only(proto: &str, port: u16) -> std::io::Result<OwnedFd> {
    if proto == "udp" {
        use nix::sys::socket::{bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn6};
        let fd = socket(AddressFamily::Inet6, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn6::from(std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, port, 0, 0)),
        )?;
        Ok(fd)
    } else {
        cove_net::forward::listen_v6_only(port).map(OwnedFd::from)
    }
}

fn local_port(fd: &OwnedFd) -> Result<u16> {
    let a: nix::sys::socket::SockaddrStorage = nix::sys::socket::getsockname(std::os::fd::AsRawFd::as_raw_fd(fd))
        .map_err(|e| Error::Other(format!("getsockname: {e}")))?;
    a.as_sockaddr_in()
        .map(|s| s.port())
        .or_else(|| a.as_sockaddr_in6().map(|s| s.port()))
        .ok_or_else(|| Error::Other("published socket has no port".into()))
}

/// Hands the bound sockets to the helper (replacing what it served for this container).
/// IPv6 host sockets go to the container's IPv6 address when it has one (`target6`), so an
/// IPv6 client's address can be kept; everything else to its IPv4 address.
pub fn register(
    run: &Path,
    container_id: &str,
    target: IpAddr,
    target6: Option<IpAddr>,
    bound: Vec<(Published, OwnedFd)>,
) -> Result<()> {
    let ports = bound
        .into_iter()
        .map(|(p, fd)| {
            let to = if p.host_ip.is_ipv6() { target6.unwrap_or(target) } else { target };
            (cove_netd::proto::Port { udp: p.proto == "udp", target: SocketAddr::new(to, p.container_port) }, fd)
        })
        .collect();
    Ok(cove_netd::client::register(run, container_id, ports)?)
}

/// Stops serving the container's ports (no-op when the helper is gone).
pub fn unregister(run: &Path, container_id: &str) {
    cove_netd::client::unregister(run, container_id)
}

/// Saves what was published (for `cove port` and `inspect`).
pub fn save(run_dir_of_container: &Path, ports: &[Published]) {
    let _ = std::fs::create_dir_all(run_dir_of_container);
    if let Ok(j) = serde_json::to_vec(ports) {
        let _ = std::fs::write(cove_monitor::RunDir::new(run_dir_of_container).ports_json(), j);
    }
}

/// What is published for a container and served right now: nothing once the network helper
/// that served it is gone (killed: its ports are closed, and another container may take them),
/// whatever `ports.json` still says. `run`: the user's run dir.
pub fn served(run: &Path, run_dir_of_container: &Path) -> Vec<Published> {
    if !crate::netd::running(run) {
        return vec![];
    }
    load(run_dir_of_container)
}

pub fn load(run_dir_of_container: &Path) -> Vec<Published> {
    std::fs::read(cove_monitor::RunDir::new(run_dir_of_container).ports_json())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Publishes again exactly what `ports.json` of a running container says (after the network
/// helper that served it went away: its sockets were closed with it). A port someone else took
/// meanwhile is left out, said in the error, and `ports.json` keeps only what is served.
pub fn republish(
    run: &Path,
    container_run: &Path,
    container_id: &str,
    published: &[Published],
    target: Target,
) -> Result<()> {
    let mut bound = vec![];
    let mut lost = vec![];
    for p in published {
        let addr = SocketAddr::new(p.host_ip, p.host_port);
        let r: std::io::Result<OwnedFd> = match (p.proto.as_str(), p.host_ip) {
            (proto, IpAddr::V6(a)) if a.is_unspecified() => bind_v6_only(proto, p.host_port),
            ("udp", _) => std::net::UdpSocket::bind(addr).map(OwnedFd::from),
            _ => std::net::TcpListener::bind(addr).map(OwnedFd::from),
        };
        match r {
            Ok(fd) => bound.push((p.clone(), fd)),
            Err(e) => lost.push(format!("{}:{}/{}: {e}", p.host_ip, p.host_port, p.proto)),
        }
    }
    let served: Vec<Published> = bound.iter().map(|(p, _)| p.clone()).collect();
    register(run, container_id, target.ip, target.ip6, bound)?;
    save(container_run, &served);
    if lost.is_empty() {
        Ok(())
    } else {
        Err(Error::Conflict(format!("could not publish again {}", lost.join(", "))))
    }
}

/// Where a container's published ports go: the addresses of its first network.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub ip: IpAddr,
    pub ip6: Option<IpAddr>,
}

/// Binds, registers and records the ports of a container whose network is up.
pub fn publish(
    run: &Path,
    container_run: &Path,
    container_id: &str,
    specs: &[PortSpec],
    target: Option<Target>,
) -> Result<()> {
    if specs.is_empty() {
        return Ok(());
    }
    let to =
        target.ok_or_else(|| Error::Invalid("published ports need a network (not --network none or host)".into()))?;
    // A port in use stays a conflict (`Error::Conflict`) on its way up.
    let bound = bind(specs)?;
    let published: Vec<Published> = bound.iter().map(|(p, _)| p.clone()).collect();
    register(run, container_id, to.ip, to.ip6, bound)?;
    save(container_run, &published);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_binding() {
        let s = specs(&["127.0.0.1:0:80".into(), "127.0.0.1::53/udp".into()], true, &["8080/tcp".into()]).unwrap();
        assert_eq!(s.len(), 3);
        let bound = bind(&s[..2]).unwrap();
        assert_eq!(bound[0].0.proto, "tcp");
        assert_eq!(bound[1].0.proto, "udp");
        assert!(bound[0].0.host_port > 0 && bound[0].0.container_port == 80);
        // The same port again: a clear error.
        let again = specs(&[format!("127.0.0.1:{}:80", bound[0].0.host_port)], false, &[]).unwrap();
        let e = bind(&again).unwrap_err().to_string();
        assert!(e.contains("address already in use"), "{e}");
        assert!(specs(&["nonsense".into()], false, &[]).is_err());
        if !nix::unistd::geteuid().is_root() {
            let e = specs(&["80:80".into()], false, &[]).unwrap_err();
            assert!(matches!(e, Error::HostDenied(_)), "{e:?}");
            assert!(e.to_string().contains("ip_unprivileged_port_start"), "{e}");
        }
    }
}
