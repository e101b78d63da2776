//! Port forwarders for published ports: TCP with splice(2), UDP with a flow table.
//!
//! Both take sockets that are already bound (tests and callers choose where), plus a
//! `connect` callback that opens the upstream socket to the container. In cove the listener
//! lives in the host network namespace and the callback creates its socket inside the
//! rootless netns (via [`crate::netns::run_in`] or a socket factory that passes descriptors
//! over SCM_RIGHTS); a socket stays in the namespace it was created in.
//!
//! # TCP
//! [`serve_tcp`] accepts until [`Shutdown`] fires. Each connection occupies two threads (one
//! per direction) taken from a pool of reusable workers (small stacks, idle ones exit after
//! 30 s), each a blocking loop `splice(socket → pipe)` then `splice(pipe → socket)`: the
//! payload never enters user space. An EOF in one direction is passed on as
//! `shutdown(SHUT_WR)` to the other side (half-close works); an error in either direction
//! resets both. The pipe of a direction starts at the default 64 KiB and grows to 1 MiB once
//! a transfer fills it (bulk), which halves the CPU per byte without spending the user's
//! pipe budget on idle connections. Reusing sleeping workers instead of spawning threads
//! matters under load: a new thread may wait a full scheduler slice before it first runs.
//! Thread-per-direction is lean enough for published ports (a few pages of real memory per
//! thread); an epoll loop could replace it behind the same signature. Each connection holds
//! six descriptors (two sockets, two pipes): raise RLIMIT_NOFILE in the serving process.
//!
//! # UDP
//! [`serve_udp`] runs one thread: poll(2) over the listening socket and one connected upstream
//! socket per client address (a "flow"). Datagrams from a client go out on its flow's socket;
//! replies on that socket go back to that client through the listening socket. Flows idle for
//! [`UdpOptions::idle_timeout`] are closed; beyond [`UdpOptions::max_flows`] the least recently
//! used flow is evicted.
//!
//! # Client source address
//! Not preserved: the container sees the forwarder's address in the rootless netns (the
//! bridge's gateway address) as the peer; the L1 test checks exactly that. The callbacks
//! receive the client's address so that a caller can later bind the upstream socket to it
//! with `IP_TRANSPARENT` (CAP_NET_ADMIN in the rootless netns, which we have). That alone is
//! not enough: replies to the non-local address must be routed back to the socket
//! (`ip rule add fwmark N lookup T`, `ip route add local 0.0.0.0/0 dev lo table T`, and an
//! nftables `socket transparent 1 meta mark set N` rule), which is rootless-netns setup, not
//! this module's. Loopback clients (127.0.0.1) cannot be preserved at all: a container would
//! answer its own loopback.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown as SockShutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::pool::Pool;
use crate::{io_err, Result};

/// Pipe capacity a direction grows to once it fills the default 64 KiB pipe in one go (a bulk
/// transfer). Pipes count against the user's pipe budget (`fs.pipe-user-pages-soft`, 64 MiB
/// by default, beyond which new pipes of that user get 8 KiB), so short connections keep the
/// default size. 1 MiB is also the default `fs.pipe-max-size`.
const PIPE_SIZE_BULK: i32 = 1024 * 1024;
/// Stack of each forwarding thread: the loops need little, the `connect` callback a bit more.
const THREAD_STACK: usize = 256 * 1024;

/// A cloneable stop signal for the forwarders. Once triggered it stays triggered; it wakes
/// threads blocked in poll(2) through a pipe.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

struct ShutdownInner {
    flag: AtomicBool,
    rx: OwnedFd,
    tx: OwnedFd,
}

impl Shutdown {
    pub fn new() -> Result<Self> {
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(crate::sys_err("pipe2 for shutdown"))?;
        Ok(Shutdown { inner: Arc::new(ShutdownInner { flag: AtomicBool::new(false), rx, tx }) })
    }

    /// Stops every forwarder that holds a clone of this signal.
    pub fn trigger(&self) {
        if !self.inner.flag.swap(true, Ordering::SeqCst) {
            // The byte is never read: the pipe stays readable, so every poller wakes.
            let _ = nix::unistd::write(&self.inner.tx, b"x");
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.inner.rx.as_fd()
    }
}

/// Counters of a TCP forwarder, readable while it runs.
#[derive(Debug, Default)]
pub struct TcpStats {
    pub accepted: AtomicU64,
    pub connect_failed: AtomicU64,
    pub active: AtomicU64,
    pub bytes_to_upstream: AtomicU64,
    pub bytes_to_client: AtomicU64,
}

/// Live connections, so that shutdown can reset them and wait for their threads.
#[derive(Default)]
struct Conns {
    next: u64,
    /// Accepted connections whose thread has not registered them in `live` yet.
    pending: usize,
    live: HashMap<u64, (Arc<TcpStream>, Arc<TcpStream>)>,
}

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
/// once their threads are done.
pub fn serve_tcp<C>(listener: TcpListener, connect: C, shutdown: &Shutdown) -> Result<()>
where
    C: Fn(SocketAddr) -> io::Result<TcpStream> + Send + Sync + 'static,
{
    serve_tcp_with_stats(listener, connect, shutdown, Arc::new(TcpStats::default()))
}

/// [`serve_tcp`] that also updates `stats`.
pub fn serve_tcp_with_stats<C>(listener: TcpListener, connect: C, shutdown: &Shutdown, stats: Arc<TcpStats>) -> Result<()>
where
    C: Fn(SocketAddr) -> io::Result<TcpStream> + Send + Sync + 'static,
{
    serve_tcp_by(listener, move |_client: &TcpStream, peer| connect(peer), shutdown, stats)
}

/// [`serve_tcp_with_stats`] whose `connect` also sees the accepted client socket (to read its
/// original destination after an nftables redirect, say: [`original_destination`]).
pub fn serve_tcp_by<C>(listener: TcpListener, connect: C, shutdown: &Shutdown, stats: Arc<TcpStats>) -> Result<()>
where
    C: Fn(&TcpStream, SocketAddr) -> io::Result<TcpStream> + Send + Sync + 'static,
{
    let local = listener.local_addr().map_err(io_err("getsockname of tcp listener"))?;
    let _span = tracing::debug_span!("forward_tcp", %local).entered();
    listener.set_nonblocking(true).map_err(io_err(format!("set {local} non-blocking")))?;
    let connect = Arc::new(connect);
    let conns = Arc::new((Mutex::new(Conns::default()), Condvar::new()));
    let pool = Arc::new(Pool::new("fwd-tcp", THREAD_STACK));
    loop {
        let mut fds = [PollFd::new(shutdown.fd(), PollFlags::POLLIN), PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(crate::sys_err(format!("poll on tcp listener {local}"))(e)),
            Ok(_) => {}
        }
        if shutdown.is_triggered() {
            break;
        }
        let (client, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: the pending connection stays queued; back off
                // instead of spinning on a listener that keeps polling readable.
                tracing::warn!("accept on {local}: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        conns.0.lock().unwrap_or_else(|e| e.into_inner()).pending += 1;
        let (connect, conns2, stats, sd, pool2) = (connect.clone(), conns.clone(), stats.clone(), shutdown.clone(), pool.clone());
        let spawned = pool.execute(move || handle_tcp(client, peer, &*connect, &conns2, &stats, &sd, &pool2));
        if let Err(e) = spawned {
            tracing::warn!("spawn thread for {peer}: {e}; dropping the connection");
            conns.0.lock().unwrap_or_else(|e| e.into_inner()).pending -= 1;
        }
    }
    drop(listener);
    let (lock, cvar) = &*conns;
    let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
    for (client, upstream) in g.live.values() {
        let _ = client.shutdown(SockShutdown::Both);
        let _ = upstream.shutdown(SockShutdown::Both);
    }
    while !g.live.is_empty() || g.pending > 0 {
        g = cvar.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    Ok(())
}

fn handle_tcp(
    client: TcpStream,
    peer: SocketAddr,
    connect: &(dyn Fn(&TcpStream, SocketAddr) -> io::Result<TcpStream> + Send + Sync),
    conns: &Arc<(Mutex<Conns>, Condvar)>,
    stats: &Arc<TcpStats>,
    shutdown: &Shutdown,
    pool: &Pool,
) {
    let (lock, cvar) = &**conns;
    let unpend = || {
        lock.lock().unwrap_or_else(|e| e.into_inner()).pending -= 1;
        cvar.notify_all();
    };
    let upstream = match connect(&client, peer) {
        Ok(u) => u,
        Err(e) => {
            // Reset, not close: the client learns the far side refused (as close as a
            // forwarder that accepted first can get to ECONNREFUSED), not an empty answer.
            let _ = nix::sys::socket::setsockopt(&client, nix::sys::socket::sockopt::Linger, &libc::linger { l_onoff: 1, l_linger: 0 });
            stats.connect_failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("connect upstream for {peer}: {e}");
            return unpend();
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client, upstream) = (Arc::new(client), Arc::new(upstream));
    let id = {
        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
        g.pending -= 1;
        if shutdown.is_triggered() {
            // serve_tcp has already reset the live connections; do not start a new one.
            cvar.notify_all();
            return;
        }
        g.next += 1;
        let id = g.next;
        g.live.insert(id, (client.clone(), upstream.clone()));
        id
    };
    stats.active.fetch_add(1, Ordering::Relaxed);
    // The direction that finishes last unregisters the connection.
    let remaining = Arc::new(AtomicU64::new(2));
    let finish = {
        let (conns, stats, remaining) = (conns.clone(), stats.clone(), remaining.clone());
        move || {
            if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                stats.active.fetch_sub(1, Ordering::Relaxed);
                let (lock, cvar) = &*conns;
                lock.lock().unwrap_or_else(|e| e.into_inner()).live.remove(&id);
                cvar.notify_all();
            }
        }
    };
    let back = {
        let (c, u, s, finish) = (client.clone(), upstream.clone(), stats.clone(), finish.clone());
        pool.execute(move || {
            let n = pump(&u, &c);
            s.bytes_to_client.fetch_add(n, Ordering::Relaxed);
            finish();
        })
    };
    if let Err(e) = back {
        tracing::warn!("spawn thread for {peer}: {e}; dropping the connection");
        let _ = client.shutdown(SockShutdown::Both);
        let _ = upstream.shutdown(SockShutdown::Both);
        finish();
    }
    let n = pump(&client, &upstream);
    stats.bytes_to_upstream.fetch_add(n, Ordering::Relaxed);
    finish();
}

/// Moves bytes `from` → `to` through a pipe until EOF, then half-closes `to`. On an error
/// both sockets are shut down so the other direction ends too. Returns the bytes moved.
fn pump(from: &TcpStream, to: &TcpStream) -> u64 {
    match splice_loop(from, to) {
        Ok(n) => {
            let _ = to.shutdown(SockShutdown::Write);
            n
        }
        Err((n, e)) => {
            if e != Errno::EPIPE && e != Errno::ECONNRESET && e != Errno::ENOTCONN {
                tracing::debug!("splice: {e}");
            }
            let _ = from.shutdown(SockShutdown::Both);
            let _ = to.shutdown(SockShutdown::Both);
            n
        }
    }
}

fn splice_loop(from: &TcpStream, to: &TcpStream) -> std::result::Result<u64, (u64, Errno)> {
    let (pr, pw) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| (0, e))?;
    let mut cap = fcntl(&pw, FcntlArg::F_GETPIPE_SZ).map(|n| n as usize).unwrap_or(64 * 1024);
    let mut grown = false;
    let mut total = 0u64;
    loop {
        // The pipe is empty here, so this blocks only on the socket.
        let n = match splice(from, None, &pw, None, cap, SpliceFFlags::SPLICE_F_MOVE) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err((total, e)),
        };
        let mut left = n;
        while left > 0 {
            match splice(&pr, None, to, None, left, SpliceFFlags::SPLICE_F_MOVE) {
                Ok(0) => return Err((total, Errno::EPIPE)),
                Ok(m) => left -= m,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err((total, e)),
            }
        }
        total += n as u64;
        if !grown && n == cap {
            // A bulk transfer: a bigger pipe halves the forwarder's CPU per byte. Best effort
            // (pipe-max-size, the per-user pipe budget); the pipe is empty at this point.
            grown = true;
            if let Ok(c) = fcntl(&pw, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE_BULK)) {
                cap = c as usize;
            }
        }
    }
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
    upstream: UdpSocket,
    last: Instant,
}

/// Serves UDP on `socket` until `shutdown` fires. For each new client address
/// `connect(client_addr)` returns an upstream socket *connected* to the container address;
/// datagrams are relayed both ways, replies going to the right client.
pub fn serve_udp<C>(socket: UdpSocket, mut connect: C, opts: UdpOptions, shutdown: &Shutdown) -> Result<()>
where
    C: FnMut(SocketAddr) -> io::Result<UdpSocket>,
{
    let local = socket.local_addr().map_err(io_err("getsockname of udp socket"))?;
    let _span = tracing::debug_span!("forward_udp", %local).entered();
    socket.set_nonblocking(true).map_err(io_err(format!("set {local} non-blocking")))?;
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        flows.retain(|client, f| {
            let keep = now.duration_since(f.last) < opts.idle_timeout;
            if !keep {
                tracing::trace!("udp flow for {client} idle, closing");
            }
            keep
        });
        let next_expiry = flows.values().map(|f| f.last + opts.idle_timeout).min();
        let timeout = match next_expiry {
            Some(t) => PollTimeout::try_from(t.saturating_duration_since(now) + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let clients: Vec<SocketAddr> = flows.keys().copied().collect();
        let mut fds = Vec::with_capacity(clients.len() + 2);
        fds.push(PollFd::new(shutdown.fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(socket.as_fd(), PollFlags::POLLIN));
        for c in &clients {
            fds.push(PollFd::new(flows[c].upstream.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(crate::sys_err(format!("poll on udp socket {local}"))(e)),
            Ok(_) => {}
        }
        if shutdown.is_triggered() {
            return Ok(());
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let listener_ready = ready(&fds[1]);
        let upstream_ready: Vec<SocketAddr> =
            clients.iter().zip(&fds[2..]).filter(|(_, fd)| ready(fd)).map(|(c, _)| *c).collect();
        drop(fds);

        // Replies first: they free the container's socket buffers.
        for client in upstream_ready {
            let Some(flow) = flows.get_mut(&client) else { continue };
            for _ in 0..64 {
                match flow.upstream.recv(&mut buf) {
                    Ok(n) => {
                        flow.last = Instant::now();
                        if let Err(e) = socket.send_to(&buf[..n], client) {
                            tracing::debug!("udp reply to {client}: {e}");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ICMP port unreachable from the container, reported on the connected
                    // socket: the datagram is lost, the flow stays.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => {
                        tracing::debug!("udp recv from upstream of {client}: {e}");
                        break;
                    }
                }
            }
        }
        if listener_ready {
            for _ in 0..64 {
                let (n, client) = match socket.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused || e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err(format!("recv on udp socket {local}"))(e)),
                };
                if !flows.contains_key(&client) {
                    if flows.len() >= opts.max_flows.max(1) {
                        if let Some(oldest) = flows.iter().min_by_key(|(_, f)| f.last).map(|(c, _)| *c) {
                            flows.remove(&oldest);
                        }
                    }
                    match connect(client).and_then(|u| u.set_nonblocking(true).map(|_| u)) {
                        Ok(upstream) => {
                            flows.insert(client, Flow { upstream, last: Instant::now() });
                        }
                        Err(e) => {
                            tracing::debug!("udp connect upstream for {client}: {e}");
                            continue;
                        }
                    }
                }
                let flow = flows.get_mut(&client).expect("flow inserted above");
                flow.last = Instant::now();
                if let Err(e) = flow.upstream.send(&buf[..n]) {
                    tracing::debug!("udp send upstream for {client}: {e}");
                }
            }
        }
    }
}
