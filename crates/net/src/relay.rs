//! The TCP relay behind `forward::serve_tcp`: epoll event loops that accept, start the
//! upstream connect without waiting for it, and move bytes both ways with splice(2).
//!
//! Why an event loop and not a thread per direction (what this replaced): a published port's
//! cost per connection is mostly *wakeups*. With worker threads a connection crossed four
//! threads (poller → connect worker → reverse-direction worker → back) and each handoff is a
//! cross-CPU wakeup, ~20–30 µs on this 2-core VM: `bench/network` measured 0.47 of loopback's
//! connection rate. Here one thread accepts, issues a non-blocking connect and splices, so a
//! connection costs the wakeups the data itself causes.
//!
//! One loop (thread) per listener. Two loops sharing a listener (`EPOLLEXCLUSIVE`) were tried:
//! parallel streams gained little on 2 cores, and short connections lost the benefit of
//! [`Spin`] (a new connection woke the sleeping loop instead of the spinning one). Sockets are
//! registered edge-triggered for input and output; every event drives both directions of its
//! connection until they would block, except that a direction moving bulk data yields after
//! [`BUDGET`] pipe-loads so one fast connection cannot starve the others.
//!
//! A direction is `from → pipe → to`: a splice from the socket into an empty pipe, then splices
//! from the pipe until it is empty, so the payload never enters user space. The pipe starts at
//! the default 64 KiB and grows to 1 MiB once a single read fills it (bulk); idle and short
//! connections keep within the user's pipe budget. EOF is passed on as `shutdown(SHUT_WR)`
//! (half-close works); an error in either direction resets both sides (`SO_LINGER` 0).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{getsockopt, setsockopt, sockopt};

use crate::stop::Shutdown;
use crate::{io_err, Result};

/// Counters of a TCP relay (a forwarder's, re-exported as `forward::TcpStats`), readable while it runs.
#[derive(Debug, Default)]
pub struct TcpStats {
    pub accepted: AtomicU64,
    pub connect_failed: AtomicU64,
    pub active: AtomicU64,
    pub bytes_to_upstream: AtomicU64,
    pub bytes_to_client: AtomicU64,
}

/// What opens the upstream socket for an accepted client (see `forward::serve_tcp_by`).
pub(crate) type ConnectFn = dyn Fn(&TcpStream, SocketAddr) -> io::Result<TcpStream> + Send + Sync;

/// Pipe capacity a direction grows to once one read fills the default 64 KiB pipe (bulk).
/// Pipes count against the user's pipe budget (`fs.pipe-user-pages-soft`, 64 MiB by default,
/// beyond which new pipes get 8 KiB), so short connections keep the default. 1 MiB is also the
/// default `fs.pipe-max-size`.
const PIPE_SIZE_BULK: i32 = 1024 * 1024;
/// A splice this big marks a bulk transfer: the loop does not spin (see [`Spin`]).
const BULK_LOAD: usize = 16 * 1024;
/// How long after a bulk load the loop keeps from spinning.
const BULK_QUIET: Duration = Duration::from_millis(5);
/// Pipe-loads a direction may move per event before yielding to the other connections.
const BUDGET: usize = 16;
/// Connections accepted per wakeup before the loop looks at its other sockets again.
const ACCEPT_BATCH: usize = 64;
/// An upstream that has not answered a connect within this long is given up on (the kernel's
/// own SYN retries take over two minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the loop stops accepting when it runs out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

const TOKEN_SHUTDOWN: u64 = u64::MAX;
const TOKEN_LISTENER: u64 = u64::MAX - 1;

/// Runs the event loop over `listener` on the calling thread until `shutdown` fires; then
/// every live connection is reset. Upstream sockets the callback makes live in the calling
/// thread's network namespace.
pub(crate) fn serve(
    listener: TcpListener,
    connect: Arc<ConnectFn>,
    shutdown: &Shutdown,
    stats: Arc<TcpStats>,
    spin_max: Duration,
) -> Result<()> {
    let local = listener.local_addr().map_err(io_err("getsockname of tcp listener"))?;
    listener.set_nonblocking(true).map_err(io_err(format!("set {local} non-blocking")))?;
    Loop::new(&listener, &*connect, shutdown, &stats, spin_max)?.run()
}

/// One direction of a connection: `from → pipe → to`.
#[derive(Default)]
struct Dir {
    /// (read end, write end), made on first use.
    pipe: Option<(OwnedFd, OwnedFd)>,
    cap: usize,
    in_pipe: usize,
    grow: bool,
    grown: bool,
    /// `from` reached EOF.
    eof: bool,
    /// EOF has been passed on (`to` half-closed): this direction is over.
    done: bool,
}

enum Step {
    /// Would block on a socket (or is over): the next edge brings us back.
    Blocked,
    /// Used its budget with more to move.
    Yield,
    Failed(Errno),
}

struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    peer: SocketAddr,
    /// Set while the upstream connect is in flight.
    connecting: Option<Instant>,
    up: Dir,
    down: Dir,
}

enum Outcome {
    Open,
    /// More to do without waiting for an event.
    Again,
    Closed,
}

struct Loop<'a> {
    ep: Epoll,
    listener: &'a TcpListener,
    connect: &'a ConnectFn,
    shutdown: &'a Shutdown,
    stats: &'a TcpStats,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Slots to drive again without waiting (budget used up).
    again: Vec<usize>,
    /// No spinning before this: a direction moved [`BULK_LOAD`] or more at once within the
    /// last [`BULK_QUIET`] (see [`Spin`]).
    bulk_until: Instant,
    spin_max: Duration,
    /// Connections whose upstream connect is in flight.
    connecting: usize,
    /// Accepting is paused until then (see [`Loop::pause_accepting`]).
    paused_until: Option<Instant>,
}

impl<'a> Loop<'a> {
    fn new(
        listener: &'a TcpListener,
        connect: &'a ConnectFn,
        shutdown: &'a Shutdown,
        stats: &'a TcpStats,
        spin_max: Duration,
    ) -> Result<Self> {
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(crate::sys_err("epoll_create"))?;
        ep.add(shutdown.fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SHUTDOWN))
            .map_err(crate::sys_err("epoll add shutdown pipe"))?;
        ep.add(listener, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_LISTENER))
            .map_err(crate::sys_err("epoll add tcp listener"))?;
        Ok(Loop {
            ep,
            listener,
            connect,
            shutdown,
            stats,
            conns: Vec::new(),
            free: Vec::new(),
            again: Vec::new(),
            bulk_until: Instant::now(),
            spin_max,
            connecting: 0,
            paused_until: None,
        })
    }

    fn run(&mut self) -> Result<()> {
        let mut events = vec![EpollEvent::empty(); 256];
        let mut todo: Vec<usize> = Vec::new();
        let mut spin = Spin::new(self.spin_max);
        loop {
            let now = Instant::now();
            let spinning = self.again.is_empty() && now >= self.bulk_until && spin.active(now);
            let timeout = if !self.again.is_empty() || spinning { EpollTimeout::ZERO } else { self.connect_timeout() };
            let n = match self.ep.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    self.reset_all();
                    return Err(crate::sys_err("epoll_wait")(e));
                }
            };
            if self.shutdown.is_triggered() {
                self.reset_all();
                return Ok(());
            }
            if n == 0 && spinning {
                std::hint::spin_loop();
                continue;
            }
            if timeout != EpollTimeout::ZERO {
                spin.slept(now.elapsed());
            }
            if n > 0 {
                spin.woke();
            }
            todo.clear();
            todo.append(&mut self.again);
            let mut accept = false;
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_SHUTDOWN => {}
                    TOKEN_LISTENER => accept = true,
                    t => todo.push((t >> 1) as usize),
                }
            }
            todo.sort_unstable();
            todo.dedup();
            // Slots closed in this round are reused only after it: a later event of the
            // batch may still name them.
            let mut closed = Vec::new();
            for &slot in &todo {
                match self.drive(slot) {
                    Outcome::Open => {}
                    Outcome::Again => self.again.push(slot),
                    Outcome::Closed => closed.push(slot),
                }
            }
            self.expire_connects(&mut closed);
            self.resume_accepting();
            self.free.extend(closed);
            if accept {
                self.accept();
            }
        }
    }

    /// How long epoll may sleep: until the oldest upstream connect times out, or the paused
    /// listener is to be resumed.
    fn connect_timeout(&self) -> EpollTimeout {
        let oldest = if self.connecting > 0 {
            self.conns.iter().flatten().filter_map(|c| c.connecting).min().map(|t| t + CONNECT_TIMEOUT)
        } else {
            None
        };
        match [oldest, self.paused_until].into_iter().flatten().min() {
            None => EpollTimeout::NONE,
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
                EpollTimeout::try_from(left).unwrap_or(EpollTimeout::MAX)
            }
        }
    }

    /// Stops watching the listener for a moment (out of descriptors: the connection stays
    /// queued and the listener would poll readable at once, a busy loop), without stalling
    /// the connections already open.
    fn pause_accepting(&mut self) {
        if self.ep.modify(self.listener, &mut EpollEvent::new(EpollFlags::empty(), TOKEN_LISTENER)).is_ok() {
            self.paused_until = Some(Instant::now() + ACCEPT_PAUSE);
        }
    }

    fn resume_accepting(&mut self) {
        if self.paused_until.is_some_and(|t| Instant::now() >= t) {
            self.paused_until = None;
            if let Err(e) = self.ep.modify(self.listener, &mut EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_LISTENER)) {
                tracing::warn!("resume accepting: {e}");
            }
        }
    }

    fn expire_connects(&mut self, closed: &mut Vec<usize>) {
        if self.connecting == 0 {
            return;
        }
        let now = Instant::now();
        for slot in 0..self.conns.len() {
            let late = matches!(&self.conns[slot], Some(c) if c.connecting.is_some_and(|t| now.duration_since(t) >= CONNECT_TIMEOUT));
            if late {
                if let Some(c) = self.conns[slot].take() {
                    tracing::debug!("connect upstream for {}: timed out", c.peer);
                    self.stats.connect_failed.fetch_add(1, Ordering::Relaxed);
                    self.close(c, true);
                    closed.push(slot);
                }
            }
        }
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPT_BATCH {
            let (client, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted => {
                    continue
                }
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: the connection stays queued.
                    tracing::warn!("accept: {e}; pausing for {ACCEPT_PAUSE:?}");
                    self.pause_accepting();
                    return;
                }
            };
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let upstream = (self.connect)(&client, peer).and_then(|u| u.set_nonblocking(true).map(|_| u));
            let upstream = match upstream {
                Ok(u) => u,
                Err(e) => {
                    // Reset, not close: the client learns the far side refused (as close as
                    // a forwarder that accepted first can get to ECONNREFUSED).
                    reset(&client);
                    self.stats.connect_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("connect upstream for {peer}: {e}");
                    continue;
                }
            };
            let _ = client.set_nonblocking(true);
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let slot = match self.free.pop() {
                Some(s) => s,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
            let token = (slot as u64) << 1;
            let added = self
                .ep
                .add(&client, EpollEvent::new(flags, token))
                .and_then(|_| self.ep.add(&upstream, EpollEvent::new(flags, token | 1)));
            let conn = Conn {
                client,
                upstream,
                peer,
                connecting: Some(Instant::now()),
                up: Dir::default(),
                down: Dir::default(),
            };
            self.stats.active.fetch_add(1, Ordering::Relaxed);
            self.connecting += 1;
            if let Err(e) = added {
                tracing::warn!("epoll add connection of {peer}: {e}");
                self.close(conn, true);
                self.free.push(slot);
                continue;
            }
            self.conns[slot] = Some(conn);
            // Registration reports the current state edge: if the connect already completed
            // (loopback, a bridge) the next epoll_wait returns at once.
        }
    }

    fn drive(&mut self, slot: usize) -> Outcome {
        let Some(c) = self.conns.get_mut(slot).and_then(|c| c.as_mut()) else { return Outcome::Open };
        if c.connecting.is_some() {
            match getsockopt(&c.upstream, sockopt::SocketError) {
                Ok(0) => {}
                Ok(err) => {
                    tracing::debug!("connect upstream for {}: {}", c.peer, Errno::from_raw(err));
                    return self.fail_connect(slot);
                }
                Err(e) => {
                    tracing::debug!("connect upstream for {}: {e}", c.peer);
                    return self.fail_connect(slot);
                }
            }
            match c.upstream.peer_addr() {
                Ok(_) => {
                    c.connecting = None;
                    self.connecting -= 1;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return Outcome::Open,
                Err(e) => {
                    tracing::debug!("connect upstream for {}: {e}", c.peer);
                    return self.fail_connect(slot);
                }
            }
        }
        let mut bulk = false;
        let up = pump(&mut c.up, &c.client, &c.upstream, &self.stats.bytes_to_upstream, &mut bulk);
        let down = pump(&mut c.down, &c.upstream, &c.client, &self.stats.bytes_to_client, &mut bulk);
        if bulk {
            self.bulk_until = Instant::now() + BULK_QUIET;
        }
        match (up, down) {
            (Step::Failed(e), _) | (_, Step::Failed(e)) => {
                if e != Errno::EPIPE && e != Errno::ECONNRESET && e != Errno::ENOTCONN {
                    tracing::debug!("splice for {}: {e}", c.peer);
                }
                if let Some(c) = self.conns[slot].take() {
                    self.close(c, true);
                }
                Outcome::Closed
            }
            _ if c.up.done && c.down.done => {
                if let Some(c) = self.conns[slot].take() {
                    self.close(c, false);
                }
                Outcome::Closed
            }
            (Step::Yield, _) | (_, Step::Yield) => Outcome::Again,
            _ => Outcome::Open,
        }
    }

    fn fail_connect(&mut self, slot: usize) -> Outcome {
        self.stats.connect_failed.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.conns[slot].take() {
            self.close(c, true);
        }
        Outcome::Closed
    }

    /// Unregisters and closes a connection; `reset` makes both sides see RST instead of FIN.
    fn close(&mut self, c: Conn, reset_both: bool) {
        if c.connecting.is_some() {
            self.connecting -= 1;
        }
        let _ = self.ep.delete(&c.client);
        let _ = self.ep.delete(&c.upstream);
        if reset_both {
            reset(&c.client);
            reset(&c.upstream);
        }
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
    }

    fn reset_all(&mut self) {
        for slot in 0..self.conns.len() {
            if let Some(c) = self.conns[slot].take() {
                self.close(c, true);
            }
        }
    }
}

/// Busy-polling before sleeping, adaptive like the kernel's cpuidle-haltpoll governor.
///
/// On a VM a sleeping thread costs a wakeup of tens of µs (an idle vCPU halts; waking it is an
/// IPI and a VM exit; this host measured ~25 µs with `haltpoll.guest_halt_poll_ns=0`), and a
/// forwarder puts two more wakeups on every request's path. For back-to-back short
/// connections that was most of their latency: 0.60 of loopback's sequential connection rate
/// without spinning, 0.8–1.0 with a 100 µs window (bench/network). So after an event the
/// loop polls without sleeping for up to `window`; the window doubles (up to `max`) when a
/// sleep ended sooner than `max` (a longer spin would have caught the event) and halves when a
/// sleep outlasted it, so a loop whose events are far apart stops spinning at once. Never
/// while a bulk transfer runs (the cores belong to the endpoints then: spinning cost 10% of
/// iperf3 throughput), never when idle. `COVE_FWD_SPIN_US=0` turns it off.
struct Spin {
    max: Duration,
    window: Duration,
    /// When the loop ran out of events (the spin started).
    since: Option<Instant>,
}

impl Spin {
    fn new(max: Duration) -> Spin {
        Spin { max, window: max, since: None }
    }

    /// Whether to poll instead of sleeping now.
    fn active(&mut self, now: Instant) -> bool {
        if self.window.is_zero() {
            return false;
        }
        now.duration_since(*self.since.get_or_insert(now)) < self.window
    }

    /// Events arrived: the next idle period starts a new spin.
    fn woke(&mut self) {
        self.since = None;
    }

    /// The loop slept for `d` (after spinning, or with spinning off).
    fn slept(&mut self, d: Duration) {
        if d < self.max {
            self.window = (self.window * 2).clamp(Duration::from_micros(10), self.max);
        } else {
            self.window /= 2;
            if self.window < Duration::from_micros(10) {
                self.window = Duration::ZERO;
            }
        }
    }
}

/// Makes the close of `s` send RST (the caller drops it).
fn reset(s: &TcpStream) {
    let _ = setsockopt(s, sockopt::Linger, &libc::linger { l_onoff: 1, l_linger: 0 });
}

/// Moves what it can `from → to` without blocking.
fn pump(d: &mut Dir, from: &TcpStream, to: &TcpStream, counter: &AtomicU64, bulk: &mut bool) -> Step {
    if d.done {
        return Step::Blocked;
    }
    if d.pipe.is_none() {
        match nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) {
            Ok((r, w)) => {
                d.cap = fcntl(&w, FcntlArg::F_GETPIPE_SZ).map(|n| n as usize).unwrap_or(64 * 1024);
                d.pipe = Some((r, w));
            }
            Err(e) => return Step::Failed(e),
        }
    }
    let Some((pr, pw)) = d.pipe.as_ref() else { return Step::Failed(Errno::EBADF) };
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut loads = 0;
    loop {
        while d.in_pipe > 0 {
            match splice(pr, None, to, None, d.in_pipe, flags) {
                Ok(0) => return Step::Failed(Errno::EPIPE),
                Ok(m) => d.in_pipe -= m,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return Step::Blocked,
                Err(e) => return Step::Failed(e),
            }
        }
        if d.eof {
            let _ = to.shutdown(std::net::Shutdown::Write);
            d.done = true;
            return Step::Blocked;
        }
        if d.grow && !d.grown {
            // A bulk transfer: a bigger pipe halves the CPU per byte. Best effort
            // (pipe-max-size, the per-user pipe budget); the pipe is empty here.
            d.grown = true;
            if let Ok(c) = fcntl(pw, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE_BULK)) {
                d.cap = c as usize;
            }
        }
        if loads == BUDGET {
            return Step::Yield;
        }
        match splice(from, None, pw, None, d.cap, flags) {
            Ok(0) => d.eof = true,
            Ok(n) => {
                d.in_pipe = n;
                d.grow |= n == d.cap;
                *bulk |= n >= BULK_LOAD;
                loads += 1;
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Step::Blocked,
            Err(e) => return Step::Failed(e),
        }
    }
}

/// Starts a non-blocking TCP connect to `target` (from `source` when given, which may be a
/// foreign address: the socket is made `IP_TRANSPARENT` then, which needs
/// CAP_NET_ADMIN in the socket's network namespace). The relay learns the outcome from epoll.
pub fn start_connect(target: SocketAddr, source: Option<SocketAddr>) -> io::Result<TcpStream> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage};
    let family = if target.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
        .map_err(io::Error::from)?;
    if let Some(src) = source {
        // IP_TRANSPARENT sets the same socket flag as IPV6_TRANSPARENT, on either family
        // (the kernel passes SOL_IP options of an IPv6 TCP socket to the IPv4 code).
        setsockopt(&fd, sockopt::IpTransparent, &true).map_err(io::Error::from)?;
        // One client address:port may talk to several published ports (TCP allows a source
        // port to be reused towards other destinations): each such socket connects to another
        // container address, so the 4-tuples differ and SO_REUSEADDR lets the binds coexist.
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(io::Error::from)?;
        bind(fd.as_raw_fd(), &SockaddrStorage::from(src)).map_err(io::Error::from)?;
    }
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(target)) {
        Ok(()) | Err(Errno::EINPROGRESS) => Ok(TcpStream::from(fd)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn start_connect_reports_refusal_through_so_error() {
        // A port nobody listens on: connect is refused, possibly only later.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        match start_connect(addr, None) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            Ok(s) => {
                let mut fds = [nix::poll::PollFd::new(s.as_fd(), nix::poll::PollFlags::POLLOUT)];
                nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).unwrap();
                assert_eq!(getsockopt(&s, sockopt::SocketError).unwrap(), libc::ECONNREFUSED);
            }
        }
    }
}
