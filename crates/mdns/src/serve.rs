//! The serve loop: the [`Responder`] and the [`Querier`] over sockets the caller bound, with
//! poll(2) and the engines' timers, driven by [`Control`] handles. Runs on the caller's thread
//! until [`Control::shutdown`] (or every handle is dropped), then sends goodbyes and returns.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, Record, RecordType};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, SockaddrStorage,
};

use crate::cache::{Cache, Lookup};
use crate::dnsreply;
use crate::querier::{lock, Outcome, Querier, QueryId, ServiceInstance, SharedCache};
use crate::responder::{Event, Id, Published, Responder, ServiceSpec};
use crate::sockets::{self, Sockets};
use crate::wire::{Family, Target, Transmit, MAX_INPUT};
use crate::{Error, Interface, Result, GROUP_V4, GROUP_V6, MDNS_PORT};

/// Datagrams read from one socket before timers get their turn.
const READ_BATCH: usize = 64;
/// Records the shared cache holds at most.
const CACHE_CAPACITY: usize = 4096;

/// Where a reply goes: called once, on the loop's thread (send it on a channel).
pub type Reply<T> = Box<dyn FnOnce(T) + Send>;

/// What a [`Control`] asks of the loop.
#[non_exhaustive]
pub enum Command {
    SetInterfaces(Vec<Interface>),
    PublishHost { name: String, reply: Reply<Result<Id>> },
    PublishService { spec: ServiceSpec, reply: Reply<Result<Id>> },
    Withdraw { id: Id, reply: Reply<Result<()>> },
    WithdrawAll,
    Resolve { name: Name, qtype: RecordType, timeout: Duration, reply: Reply<Vec<Record>> },
    Browse { service_type: String, timeout: Duration, reply: Reply<Result<Vec<ServiceInstance>>> },
    List { reply: Reply<Vec<Published>> },
    Shutdown,
}

/// How the loop addresses the LAN.
#[derive(Debug, Clone)]
pub struct Options {
    /// The mDNS port: queries from other ports are legacy unicast (5353).
    pub port: u16,
    /// Where an IPv4 multicast goes: `224.0.0.251:5353`; tests give unicast addresses on
    /// 127.0.0.0/8 instead.
    pub groups_v4: Vec<SocketAddr>,
    /// Where an IPv6 multicast goes: `[ff02::fb]:5353` (the interface becomes the scope id).
    pub groups_v6: Vec<SocketAddr>,
    /// The interfaces to start with (see [`Control::set_interfaces`]).
    pub interfaces: Vec<Interface>,
    /// Whether the loop joins the groups on interfaces that appear through
    /// [`Control::set_interfaces`] and leaves them on those that go ([`crate::sockets::join`]);
    /// the first ones are the opener's to join ([`crate::sockets::open`] does). Off in tests
    /// (no multicast on real interfaces).
    pub manage_groups: bool,
}

impl Options {
    /// The real thing: port 5353, the mDNS groups.
    pub fn standard(interfaces: Vec<Interface>) -> Options {
        Options {
            port: MDNS_PORT,
            groups_v4: vec![SocketAddr::from((GROUP_V4, MDNS_PORT))],
            groups_v6: vec![SocketAddr::from((GROUP_V6, MDNS_PORT))],
            interfaces,
            manage_groups: true,
        }
    }
}

/// A handle on a running (or soon running) loop; cheap to clone, usable from any thread.
/// The blocking helpers wait for the loop's reply; [`Control::send`] with a [`Reply`] callback
/// suits async callers.
#[derive(Clone, Debug)]
pub struct Control {
    tx: mpsc::Sender<Command>,
    wake: Arc<UnixDatagram>,
    cache: SharedCache,
}

/// The loop's end of [`channel`].
#[derive(Debug)]
pub struct Commands {
    rx: mpsc::Receiver<Command>,
    wake: UnixDatagram,
    cache: SharedCache,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::SetInterfaces(v) => write!(f, "SetInterfaces({v:?})"),
            Command::PublishHost { name, .. } => write!(f, "PublishHost({name})"),
            Command::PublishService { spec, .. } => write!(f, "PublishService({spec:?})"),
            Command::Withdraw { id, .. } => write!(f, "Withdraw({id})"),
            Command::WithdrawAll => write!(f, "WithdrawAll"),
            Command::Resolve { name, qtype, .. } => write!(f, "Resolve({name} {qtype})"),
            Command::Browse { service_type, .. } => write!(f, "Browse({service_type})"),
            Command::List { .. } => write!(f, "List"),
            Command::Shutdown => write!(f, "Shutdown"),
        }
    }
}

/// A control handle and the loop's end, sharing a cache of 4096 records (`CACHE_CAPACITY`).
pub fn channel() -> Result<(Control, Commands)> {
    let (a, b) = UnixDatagram::pair().map_err(|source| Error::Socket { what: "wake pair".into(), source })?;
    for s in [&a, &b] {
        s.set_nonblocking(true).map_err(|source| Error::Socket { what: "wake pair".into(), source })?;
    }
    let (tx, rx) = mpsc::channel();
    let cache = Arc::new(Mutex::new(Cache::new(CACHE_CAPACITY)));
    Ok((Control { tx, wake: Arc::new(a), cache: cache.clone() }, Commands { rx, wake: b, cache }))
}

impl Control {
    /// Queues a command and wakes the loop.
    pub fn send(&self, cmd: Command) -> Result<()> {
        self.tx.send(cmd).map_err(|_| Error::Stopped)?;
        // A full buffer means a wake-up is pending already.
        let _ = self.wake.send(&[0]);
        Ok(())
    }

    fn ask<T: Send + 'static>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(make(Box::new(move |v| {
            let _ = tx.send(v);
        })))?;
        rx.recv().map_err(|_| Error::Stopped)
    }

    pub fn set_interfaces(&self, interfaces: Vec<Interface>) -> Result<()> {
        self.send(Command::SetInterfaces(interfaces))
    }

    pub fn publish_host(&self, name: &str) -> Result<Id> {
        let name = name.to_string();
        self.ask(|reply| Command::PublishHost { name, reply })?
    }

    pub fn publish_service(&self, spec: ServiceSpec) -> Result<Id> {
        self.ask(|reply| Command::PublishService { spec, reply })?
    }

    pub fn withdraw(&self, id: Id) -> Result<()> {
        self.ask(|reply| Command::Withdraw { id, reply })?
    }

    pub fn withdraw_all(&self) -> Result<()> {
        self.send(Command::WithdrawAll)
    }

    /// Resolves `name`/`qtype` (cache first, else a one-shot query), waiting at most `timeout`;
    /// empty when nobody answered.
    pub fn resolve(&self, name: &Name, qtype: RecordType, timeout: Duration) -> Result<Vec<Record>> {
        let name = name.clone();
        self.ask(|reply| Command::Resolve { name, qtype, timeout, reply })
    }

    /// Browses `service_type` (`_http._tcp`) for `timeout`.
    pub fn browse(&self, service_type: &str, timeout: Duration) -> Result<Vec<ServiceInstance>> {
        let service_type = service_type.to_string();
        self.ask(|reply| Command::Browse { service_type, timeout, reply })?
    }

    /// What is published, for `cove mdns ls`.
    pub fn published(&self) -> Result<Vec<Published>> {
        self.ask(|reply| Command::List { reply })
    }

    /// Answers from the cache alone, without waking the loop (the DNS server's fast path).
    pub fn lookup_cached(&self, name: &Name, qtype: RecordType) -> Lookup {
        lock(&self.cache).lookup(name, qtype, Instant::now())
    }

    /// Answers a unicast DNS query about a `.local` name (the bytes a container sent the
    /// network's DNS server) with the bytes of the reply, through `reply`: at once from the
    /// cache (a hit, or a recent miss: NXDOMAIN, or NOERROR without records when the name has
    /// other types), else after a one-shot query on the LAN of at most `timeout`. `None` for a
    /// query that is not one plain question of class IN; `reply` is dropped unanswered if the
    /// engine has stopped. A PTR question for a reverse `.arpa` name is answered from cached
    /// addresses too.
    pub fn answer_dns(&self, query: &[u8], timeout: Duration, reply: Reply<Option<Vec<u8>>>) {
        let Some(q) = dnsreply::question(query) else {
            reply(None);
            return;
        };
        let (name, qtype) = (q.queries[0].name.clone(), q.queries[0].query_type);
        let exists = |cache: &SharedCache, name: &Name| {
            matches!(lock(cache).lookup(name, RecordType::ANY, Instant::now()), Lookup::Found(_))
        };
        match self.lookup_cached(&name, qtype) {
            Lookup::Found(v) => reply(dnsreply::reply(&q, &v, true)),
            Lookup::Negative => reply(dnsreply::reply(&q, &[], exists(&self.cache, &name))),
            Lookup::Miss => {
                let cache = self.cache.clone();
                let asked = name.clone();
                let _ = self.send(Command::Resolve {
                    name,
                    qtype,
                    timeout,
                    reply: Box::new(move |v: Vec<Record>| {
                        let found = !v.is_empty() || exists(&cache, &asked);
                        reply(dnsreply::reply(&q, &v, found));
                    }),
                });
            }
        }
    }

    /// Stops the loop (goodbyes first).
    pub fn shutdown(&self) {
        let _ = self.send(Command::Shutdown);
    }
}

/// Runs the engine until [`Control::shutdown`] or until every [`Control`] is dropped; then
/// withdraws everything (goodbyes) and returns. `on_event` sees renames and conflicts.
/// Errors on single datagrams are logged at trace level and never end the loop.
pub fn serve(sockets: Sockets, options: Options, commands: Commands, mut on_event: impl FnMut(Event)) -> Result<()> {
    let mut engine = Engine::new(sockets, options, commands);
    let span = tracing::debug_span!("mdns");
    let _enter = span.enter();
    tracing::debug!(interfaces = engine.options.interfaces.len(), "serving");
    let mut buf = vec![0u8; MAX_INPUT + 1];
    loop {
        let now = Instant::now();
        engine.responder.handle_timeout(now);
        engine.querier.handle_timeout(now);
        engine.flush(&mut on_event);

        let deadline =
            [engine.responder.poll_timeout(), engine.querier.poll_timeout(), Some(now + Duration::from_secs(1))]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now);
        let wait = deadline.saturating_duration_since(Instant::now());
        let ready = engine.wait(wait);

        if ready[0] {
            let mut b = [0u8; 64];
            while engine.commands.wake.recv(&mut b).is_ok() {}
        }
        if !engine.run_commands() {
            break;
        }
        for (slot, is_ready) in ready.iter().enumerate().skip(1) {
            if *is_ready {
                engine.read(slot, &mut buf);
            }
        }
    }
    engine.responder.withdraw_all();
    engine.flush(&mut on_event);
    tracing::debug!("stopped");
    Ok(())
}

struct Engine {
    sockets: [Option<UdpSocket>; 4],
    /// The address each socket is bound to, when it is one address (tests bind 127.0.0.x):
    /// packet info would otherwise let the kernel pick another source.
    sources: [Option<IpAddr>; 4],
    options: Options,
    commands: Commands,
    responder: Responder,
    querier: Querier,
    replies: HashMap<QueryId, Waiting>,
}

enum Waiting {
    Records(Reply<Vec<Record>>),
    Services(Reply<Result<Vec<ServiceInstance>>>),
}

/// Socket slots (slot 0 of the poll set is the wake socket).
const V4: usize = 0;
const V6: usize = 1;
const QUERY_V4: usize = 2;
const QUERY_V6: usize = 3;

impl Engine {
    fn new(sockets: Sockets, options: Options, commands: Commands) -> Engine {
        let now = Instant::now();
        let mut responder = Responder::new(options.port);
        responder.set_interfaces(options.interfaces.clone(), now);
        let mut querier = Querier::new(options.port, commands.cache.clone());
        querier.set_interfaces(options.interfaces.clone());
        let sockets = [sockets.v4, sockets.v6, sockets.query_v4, sockets.query_v6];
        let sources = std::array::from_fn(|i| {
            let ip = sockets[i].as_ref()?.local_addr().ok()?.ip();
            (!ip.is_unspecified()).then_some(ip)
        });
        Engine { sockets, sources, options, commands, responder, querier, replies: HashMap::new() }
    }

    /// Polls the wake socket and every socket; returns which are readable (index 0: wake,
    /// 1 + slot: sockets).
    fn wait(&self, timeout: Duration) -> [bool; 5] {
        let mut fds = vec![PollFd::new(self.commands.wake.as_fd(), PollFlags::POLLIN)];
        let mut slots = vec![0usize];
        for (i, s) in self.sockets.iter().enumerate() {
            if let Some(s) = s {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
                slots.push(i + 1);
            }
        }
        let t = PollTimeout::try_from(timeout.max(Duration::from_millis(1))).unwrap_or(PollTimeout::MAX);
        let mut ready = [false; 5];
        match nix::poll::poll(&mut fds, t) {
            Ok(_) => {
                for (fd, slot) in fds.iter().zip(slots) {
                    ready[slot] = fd.revents().is_some_and(|r| !r.is_empty());
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => tracing::debug!(error = %e, "poll failed"),
        }
        ready
    }

    /// Runs queued commands; false once the loop should stop.
    fn run_commands(&mut self) -> bool {
        loop {
            let cmd = match self.commands.rx.try_recv() {
                Ok(cmd) => cmd,
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            };
            let now = Instant::now();
            match cmd {
                Command::SetInterfaces(v) => {
                    if self.options.manage_groups {
                        self.update_groups(&v);
                    }
                    self.responder.set_interfaces(v.clone(), now);
                    self.querier.set_interfaces(v.clone());
                    self.options.interfaces = v;
                }
                Command::PublishHost { name, reply } => reply(self.responder.publish_host(&name, now)),
                Command::PublishService { spec, reply } => reply(self.responder.publish_service(spec, now)),
                Command::Withdraw { id, reply } => reply(self.responder.withdraw(id)),
                Command::WithdrawAll => self.responder.withdraw_all(),
                Command::Resolve { name, qtype, timeout, reply } => {
                    match self.querier.resolve(&name, qtype, timeout, now) {
                        Ok(id) => {
                            self.replies.insert(id, Waiting::Records(reply));
                        }
                        Err(_) => reply(Vec::new()),
                    }
                }
                Command::Browse { service_type, timeout, reply } => {
                    match self.querier.browse(&service_type, timeout, now) {
                        Ok(id) => {
                            self.replies.insert(id, Waiting::Services(reply));
                        }
                        Err(e) => reply(Err(e)),
                    }
                }
                Command::List { reply } => reply(self.responder.published()),
                Command::Shutdown => return false,
            }
        }
    }

    /// Leaves the groups on interfaces that went (or lost their addresses), joins them on
    /// those that came.
    fn update_groups(&self, new: &[Interface]) {
        let (v4, v6) = (self.sockets[V4].as_ref(), self.sockets[V6].as_ref());
        for old in &self.options.interfaces {
            if !new.iter().any(|n| n.index == old.index && n.addrs == old.addrs) {
                sockets::leave(v4, v6, old);
            }
        }
        for iface in new {
            if !self.options.interfaces.iter().any(|o| o.index == iface.index && o.addrs == iface.addrs) {
                if let Err(e) = sockets::join(v4, v6, iface) {
                    tracing::debug!(error = %e, "mDNS group membership");
                }
            }
        }
    }

    fn read(&mut self, slot: usize, buf: &mut [u8]) {
        for _ in 0..READ_BATCH {
            let Some(sock) = &self.sockets[slot - 1] else { return };
            let (len, from, interface) = match recv(sock, buf) {
                Ok(Some(got)) => got,
                Ok(None) => return,
                Err(e) => {
                    tracing::trace!(error = %e, "mDNS receive failed");
                    return;
                }
            };
            if len > MAX_INPUT {
                continue;
            }
            let now = Instant::now();
            let packet = &buf[..len];
            match slot - 1 {
                V4 | V6 => {
                    self.responder.handle_packet(packet, from, interface, now);
                    self.querier.handle_packet(packet, from, interface, now);
                }
                _ => self.querier.handle_packet(packet, from, interface, now),
            }
        }
    }

    fn flush(&mut self, on_event: &mut impl FnMut(Event)) {
        while let Some(t) = self.responder.poll_transmit() {
            let slot = match family_of(&t) {
                Family::V4 => V4,
                Family::V6 => V6,
            };
            self.transmit(slot, &t);
        }
        while let Some(t) = self.querier.poll_transmit() {
            let slot = match family_of(&t) {
                Family::V4 => QUERY_V4,
                Family::V6 => QUERY_V6,
            };
            self.transmit(slot, &t);
        }
        while let Some(e) = self.responder.poll_event() {
            tracing::debug!(event = ?e, "mDNS event");
            on_event(e);
        }
        while let Some((id, outcome)) = self.querier.poll_done() {
            match (self.replies.remove(&id), outcome) {
                (Some(Waiting::Records(reply)), Outcome::Records(v)) => reply(v),
                (Some(Waiting::Services(reply)), Outcome::Services(v)) => reply(Ok(v)),
                (Some(Waiting::Records(reply)), _) => reply(Vec::new()),
                (Some(Waiting::Services(reply)), _) => reply(Ok(Vec::new())),
                (None, _) => {}
            }
        }
    }

    fn transmit(&self, slot: usize, t: &Transmit) {
        let Some(sock) = &self.sockets[slot] else { return };
        let destinations: Vec<SocketAddr> = match t.target {
            Target::Unicast(to) => vec![to],
            Target::Multicast(Family::V4) => self.options.groups_v4.clone(),
            Target::Multicast(Family::V6) => self
                .options
                .groups_v6
                .iter()
                .map(|a| match a {
                    SocketAddr::V6(v6) if is_link_local_scope(v6) => {
                        SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, t.interface))
                    }
                    other => *other,
                })
                .collect(),
        };
        for to in destinations {
            if let Err(e) = send(sock, &t.payload, to, t.interface, self.sources[slot]) {
                tracing::trace!(error = %e, %to, interface = t.interface, "mDNS send failed");
            }
        }
    }
}

fn family_of(t: &Transmit) -> Family {
    match t.target {
        Target::Multicast(f) => f,
        Target::Unicast(a) => Family::of(a.ip()),
    }
}

fn is_link_local_scope(a: &SocketAddrV6) -> bool {
    let s = a.ip().segments()[0];
    (s & 0xff0f) == 0xff02 || (s & 0xffc0) == 0xfe80
}

/// One datagram, with the interface it arrived on (0 without packet info).
fn recv(sock: &UdpSocket, buf: &mut [u8]) -> std::io::Result<Option<(usize, SocketAddr, u32)>> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::in_pktinfo, libc::in6_pktinfo);
    let msg = match recvmsg::<SockaddrStorage>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT) {
        Ok(m) => m,
        Err(Errno::EAGAIN) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Ok(Some((usize::MAX, SocketAddr::from(([0, 0, 0, 0], 0)), 0)));
    }
    let mut interface = 0;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(i) => interface = u32::try_from(i.ipi_ifindex).unwrap_or(0),
                ControlMessageOwned::Ipv6PacketInfo(i) => interface = i.ipi6_ifindex,
                _ => {}
            }
        }
    }
    let from = msg.address.and_then(|a| {
        if let Some(v4) = a.as_sockaddr_in() {
            Some(SocketAddr::V4(SocketAddrV4::from(*v4)))
        } else {
            a.as_sockaddr_in6().map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
        }
    });
    let bytes = msg.bytes;
    match from {
        Some(from) => Ok(Some((bytes, from, interface))),
        None => Ok(Some((usize::MAX, SocketAddr::from(([0, 0, 0, 0], 0)), 0))),
    }
}

/// Sends one datagram out of interface `interface` (packet info), to `to`, from `source` when
/// the socket is bound to one address (packet info replaces the bound source otherwise).
fn send(
    sock: &UdpSocket,
    payload: &[u8],
    to: SocketAddr,
    interface: u32,
    source: Option<IpAddr>,
) -> std::io::Result<()> {
    let iov = [IoSlice::new(payload)];
    let fd = sock.as_raw_fd();
    let flags = MsgFlags::MSG_DONTWAIT;
    match to {
        SocketAddr::V4(a) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: i32::try_from(interface).unwrap_or(0),
                ipi_spec_dst: libc::in_addr {
                    s_addr: match source {
                        Some(IpAddr::V4(ip)) => u32::from(ip).to_be(),
                        _ => 0,
                    },
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            let cmsgs = [ControlMessage::Ipv4PacketInfo(&info)];
            let cmsgs: &[ControlMessage<'_>] = if interface == 0 { &[] } else { &cmsgs };
            sendmsg(fd, &iov, cmsgs, flags, Some(&SockaddrIn::from(a)))?;
        }
        SocketAddr::V6(a) => {
            let addr = match source {
                Some(IpAddr::V6(ip)) => ip.octets(),
                _ => [0; 16],
            };
            let info = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: addr }, ipi6_ifindex: interface };
            let cmsgs = [ControlMessage::Ipv6PacketInfo(&info)];
            let cmsgs: &[ControlMessage<'_>] = if interface == 0 { &[] } else { &cmsgs };
            sendmsg(fd, &iov, cmsgs, flags, Some(&SockaddrIn6::from(a)))?;
        }
    }
    Ok(())
}
