//! Port forwarders for published ports: TCP with splice(2), UDP with a flow table.
//!
//! Both take sockets that are already bound (tests and callers choose where), plus a
//! `connect` callback that opens the upstream socket to the container. In cove the listener
//! lives in the host network namespace and the callback creates its socket inside the
//! rootless netns (via [`crate::netns::run_in`] or a socket factory that passes descriptors
//! over SCM_RIGHTS); a socket stays in the namespace it was created in.
//!
//! # TCP
//! [`serve_tcp`] accepts until [`Shutdown`] fires and relays each connection with splice(2)
//! on an epoll event loop on the calling thread: see the private `relay` module for how
//! and why. The `connect` callback only starts the upstream connection ([`start_connect`]).
//! Each connection holds six descriptors (two sockets, two pipes): raise RLIMIT_NOFILE in the
//! serving process.
//!
//! # UDP
//! [`serve_udp`] runs one thread: an epoll set over the listening socket and one connected upstream
//! socket per client address (a "flow"). Datagrams from a client go out on its flow's socket;
//! replies on that socket go back to that client through the listening socket. Flows idle for
//! [`UdpOptions::idle_timeout`] are closed; beyond [`UdpOptions::max_flows`] the least recently
//! used flow is evicted.
//!
//! # Client source address
//! The callbacks receive the client's address; a caller that may bind foreign addresses
//! (CAP_NET_ADMIN in the namespace of the upstream socket) can pass it as the source to
//! [`start_connect`], so the container sees the real client. Replies to that foreign address
//! must be routed back to the socket (policy routing and a `socket transparent` rule): that is
//! namespace setup, the caller's (cove-netd: the `nft` and `link` modules). Loopback
//! clients (127.0.0.1) cannot be preserved at all: a container would answer its own loopback.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

pub use crate::relay::{start_connect, TcpStats};
pub use crate::stop::Shutdown;
use crate::{io_err, Result};

/// Where a connection redirected by netfilter (`redirect`, `dnat`) was going:
/// `SO_ORIGINAL_DST` (IPv4) or `IP6T_SO_ORIGINAL_DST` (IPv6) of the accepted socket.
pub fn original_destination(s: &TcpStream) -> io::Result<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    match s.local_addr()? {
        SocketAddr::V4(_) => {
            let a = getsockopt(s, sockopt::OriginalDst).map_err(io::Error::from)?;
            Ok(SocketAddr::from((std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)), u16::from_be(a.sin_port))))
        }
        SocketAddr::V6(_) => {
            let a = getsockopt(s, sockopt::Ip6tOriginalDst).map_err(io::Error::from)?;
            Ok(SocketAddr::from((std::net::Ipv6Addr::from(a.sin6_addr.s6_addr), u16::from_be(a.sin6_port))))
        }
    }
}

/// Serves TCP connections accepted on `listener` until `shutdown` fires: for each client,
/// `connect(client_addr)` opens the upstream connection and bytes are spliced both ways.
/// On shutdown the listener is closed, live connections are reset, and the call returns
/// at once.
pub fn serve_tcp<C>(listener: TcpListener, connect: C, shutdown: &Shutdown) -> Result<()>
where
    C: Fn(SocketAddr) -> io::Result<TcpStream> + Send + Sync + 'static,
{
    serve_tcp_with_stats(listener, connect, shutdown, Arc::new(TcpStats::default()))
}

/// [`serve_tcp`] that also updates `stats`.
pub fn serve_tcp_with_stats<C>(
    listener: TcpListener,
    connect: C,
    shutdown: &Shutdown,
    stats: Arc<TcpStats>,
) -> Result<()>
where
    C: Fn(SocketAddr) -> io::Result<TcpStream> + Send + Sync + 'static,
{
    serve_tcp_by(listener, move |_client: &TcpStream, peer| connect(peer), shutdown, stats)
}

/// [`serve_tcp_with_stats`] whose `connect` also sees the accepted client socket (to read its
/// original destination after an nftables redirect, say: [`original_destination`]).
///
/// `connect` runs on an event loop: it should only *start* the connection and return the
/// socket ([`start_connect`]); a blocking connect works but stalls the loop's other
/// connections while it waits.
pub fn serve_tcp_by<C>(listener: TcpListener, connect: C, shutdown: &Shutdown, stats: Arc<TcpStats>) -> Result<()>
where
    C: Fn(&TcpStream, SocketAddr) -> io::Result<TcpStream> + Send + Sync + 'static,
{
    let local = listener.local_addr().map_err(io_err("getsockname of tcp listener"))?;
    let _span = tracing::debug_span!("forward_tcp", %local).entered();
    crate::relay::serve(listener, Arc::new(connect), shutdown, stats, spin_max())
}

/// Longest busy-poll of a TCP event loop before it sleeps (see `relay::Spin`):
/// `COVE_FWD_SPIN_US` microseconds (0 turns spinning off), else [`DEFAULT_SPIN`].
fn spin_max() -> Duration {
    match std::env::var("COVE_FWD_SPIN_US").ok().map(|v| v.trim().parse::<u64>()) {
        Some(Ok(us)) => Duration::from_micros(us.min(10_000)),
        Some(Err(_)) => {
            tracing::warn!("COVE_FWD_SPIN_US is not a number of microseconds; using the default");
            DEFAULT_SPIN
        }
        None => DEFAULT_SPIN,
    }
}

const DEFAULT_SPIN: Duration = Duration::from_micros(100);

/// A TCP listener on `[::]:port` that takes IPv6 only (`IPV6_V6ONLY`), so that it can share
/// its port with a listener on 0.0.0.0.
pub fn listen_v6_only(port: u16) -> io::Result<TcpListener> {
    use nix::sys::socket::{
        bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn6,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(AddressFamily::Inet6, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(io::Error::from)?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(io::Error::from)?;
    let addr = SockaddrIn6::from(std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, port, 0, 0));
    bind(fd.as_raw_fd(), &addr).map_err(io::Error::from)?;
    listen(&fd, Backlog::new(1024).map_err(io::Error::from)?).map_err(io::Error::from)?;
    Ok(TcpListener::from(fd))
}

/// A UDP socket connected to `target`, sending from `source` when given (a foreign address:
/// `IP_TRANSPARENT`, CAP_NET_ADMIN in the socket's namespace), for [`serve_udp`]'s callback.
pub fn udp_upstream(target: SocketAddr, source: Option<SocketAddr>) -> io::Result<UdpSocket> {
    use nix::sys::socket::{bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let family = if target.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).map_err(io::Error::from)?;
    if let Some(src) = source {
        setsockopt(&fd, sockopt::IpTransparent, &true).map_err(io::Error::from)?;
        // One client address:port may talk to several published ports (TCP allows a source
        // port to be reused towards other destinations): each such socket connects to another
        // container address, so the 4-tuples differ and SO_REUSEADDR lets the binds coexist.
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(io::Error::from)?;
        bind(fd.as_raw_fd(), &SockaddrStorage::from(src)).map_err(io::Error::from)?;
    }
    let s = UdpSocket::from(fd);
    s.connect(target)?;
    Ok(s)
}

/// Settings of [`serve_udp`].
#[derive(Debug, Clone, Copy)]
pub struct UdpOptions {
    /// A flow with no datagram either way for this long is closed.
    pub idle_timeout: Duration,
    /// At most this many flows; the least recently used is evicted for a new client.
    pub max_flows: usize,
}

impl Default for UdpOptions {
    fn default() -> Self {
        // Docker's userland proxy and rootlesskit use 60 s and 90 s.
        UdpOptions { idle_timeout: Duration::from_secs(60), max_flows: 4096 }
    }
}

struct Flow {
    client: SocketAddr,
    upstream: UdpSocket,
    last: Instant,
}

/// Token of the listening socket in [`serve_udp`]'s epoll set (flows use their slot index).
const UDP_LISTENER: u64 = u64::MAX - 1;
const UDP_SHUTDOWN: u64 = u64::MAX;

/// Serves UDP on `socket` until `shutdown` fires. For each new client address
/// `connect(client_addr)` returns an upstream socket *connected* to the container address;
/// datagrams are relayed both ways, replies going to the right client.
///
/// One epoll set over the listening socket and every flow's socket, so a datagram costs the
/// same with 4096 flows as with one; idle flows are swept every quarter of the idle timeout
/// (and a datagram from a client whose flow has gone idle opens a new one at once).
pub fn serve_udp<C>(socket: UdpSocket, mut connect: C, opts: UdpOptions, shutdown: &Shutdown) -> Result<()>
where
    C: FnMut(SocketAddr) -> io::Result<UdpSocket>,
{
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    let local = socket.local_addr().map_err(io_err("getsockname of udp socket"))?;
    let _span = tracing::debug_span!("forward_udp", %local).entered();
    socket.set_nonblocking(true).map_err(io_err(format!("set {local} non-blocking")))?;
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(crate::sys_err("epoll_create"))?;
    ep.add(shutdown.fd(), EpollEvent::new(EpollFlags::EPOLLIN, UDP_SHUTDOWN))
        .map_err(crate::sys_err("epoll add shutdown pipe"))?;
    ep.add(&socket, EpollEvent::new(EpollFlags::EPOLLIN, UDP_LISTENER))
        .map_err(crate::sys_err("epoll add udp socket"))?;
    let mut by_client: HashMap<SocketAddr, usize> = HashMap::new();
    let mut slots: Vec<Option<Flow>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let sweep_every = (opts.idle_timeout / 4).max(Duration::from_millis(10));
    let mut next_sweep = Instant::now() + sweep_every;
    let mut events = vec![EpollEvent::empty(); 64];
    let mut buf = vec![0u8; 65536];
    let close = |slots: &mut Vec<Option<Flow>>,
                 free: &mut Vec<usize>,
                 by_client: &mut HashMap<SocketAddr, usize>,
                 slot: usize| {
        if let Some(f) = slots[slot].take() {
            let _ = ep.delete(&f.upstream);
            by_client.remove(&f.client);
            free.push(slot);
        }
    };
    loop {
        let timeout = if by_client.is_empty() {
            EpollTimeout::NONE
        } else {
            EpollTimeout::try_from(next_sweep.saturating_duration_since(Instant::now()) + Duration::from_millis(1))
                .unwrap_or(EpollTimeout::MAX)
        };
        let n = match ep.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(crate::sys_err(format!("epoll_wait on udp socket {local}"))(e)),
        };
        if shutdown.is_triggered() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= next_sweep {
            for slot in 0..slots.len() {
                if slots[slot].as_ref().is_some_and(|f| now.duration_since(f.last) >= opts.idle_timeout) {
                    tracing::trace!("udp flow idle, closing");
                    close(&mut slots, &mut free, &mut by_client, slot);
                }
            }
            next_sweep = now + sweep_every;
        }
        // Replies first: they free the container's socket buffers.
        let mut listener_ready = false;
        for ev in &events[..n] {
            let slot = match ev.data() {
                UDP_LISTENER => {
                    listener_ready = true;
                    continue;
                }
                UDP_SHUTDOWN => continue,
                t => t as usize,
            };
            let Some(flow) = slots.get_mut(slot).and_then(|f| f.as_mut()) else { continue };
            for _ in 0..64 {
                match flow.upstream.recv(&mut buf) {
                    Ok(n) => {
                        flow.last = Instant::now();
                        if let Err(e) = socket.send_to(&buf[..n], flow.client) {
                            tracing::debug!("udp reply to {}: {e}", flow.client);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ICMP port unreachable from the container, reported on the connected
                    // socket: the datagram is lost, the flow stays.
                    Err(e)
                        if e.kind() == io::ErrorKind::ConnectionRefused || e.kind() == io::ErrorKind::Interrupted =>
                    {
                        continue
                    }
                    Err(e) => {
                        tracing::debug!("udp recv from upstream of {}: {e}", flow.client);
                        break;
                    }
                }
            }
        }
        if !listener_ready {
            continue;
        }
        for _ in 0..64 {
            let (n, client) = match socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused || e.kind() == io::ErrorKind::Interrupted => {
                    continue
                }
                Err(e) => return Err(io_err(format!("recv on udp socket {local}"))(e)),
            };
            let now = Instant::now();
            let existing = by_client.get(&client).copied();
            let slot = match existing {
                // Gone idle but not swept yet: it counts as closed.
                Some(slot) if slots[slot].as_ref().is_some_and(|f| now.duration_since(f.last) >= opts.idle_timeout) => {
                    close(&mut slots, &mut free, &mut by_client, slot);
                    None
                }
                other => other,
            };
            let slot = match slot {
                Some(slot) => slot,
                None => {
                    if by_client.len() >= opts.max_flows.max(1) {
                        // The least recently used goes (a scan, only when the table is full).
                        let oldest = slots
                            .iter()
                            .enumerate()
                            .filter_map(|(i, f)| f.as_ref().map(|f| (f.last, i)))
                            .min()
                            .map(|(_, i)| i);
                        if let Some(o) = oldest {
                            close(&mut slots, &mut free, &mut by_client, o);
                        }
                    }
                    let upstream = match connect(client).and_then(|u| u.set_nonblocking(true).map(|_| u)) {
                        Ok(u) => u,
                        Err(e) => {
                            tracing::debug!("udp connect upstream for {client}: {e}");
                            continue;
                        }
                    };
                    let slot = free.pop().unwrap_or_else(|| {
                        slots.push(None);
                        slots.len() - 1
                    });
                    if let Err(e) = ep.add(&upstream, EpollEvent::new(EpollFlags::EPOLLIN, slot as u64)) {
                        tracing::warn!("udp flow for {client}: epoll add: {e}");
                        free.push(slot);
                        continue;
                    }
                    slots[slot] = Some(Flow { client, upstream, last: now });
                    by_client.insert(client, slot);
                    slot
                }
            };
            let Some(flow) = slots[slot].as_mut() else { continue };
            flow.last = now;
            if let Err(e) = flow.upstream.send(&buf[..n]) {
                tracing::debug!("udp send upstream for {client}: {e}");
            }
        }
    }
}
