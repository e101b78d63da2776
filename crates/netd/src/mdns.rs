//! mDNS on the host's side of the helper (issue 15): `.local` names for the containers'
//! DNS, and the containers of `--mdns` networks published on the LAN. The protocol is
//! [`cove_mdns`]'s; this module decides where it runs and what it publishes.
//!
//! Threads and namespaces. [`Mdns::start`] is called by the helper's main thread, which lives in
//! the host's network namespace; it starts a *manager* thread there, and the manager starts the
//! [`cove_mdns::serve`] loop on a thread of its own, so every socket of mDNS is the host's (a
//! socket stays in the namespace of the thread that made it). The state thread inside cove's
//! namespace only sends the manager what should be published ([`Mdns::publish`]); the DNS
//! runtime asks through [`Resolver`], the control sessions through [`Mdns::ask`].
//!
//! Sockets. To resolve, the loop needs only one-shot sockets on ephemeral ports (RFC 6762
//! section 5.1: responders answer them by unicast), so by default cove holds no port 5353 and
//! joins no group. Once something is to be published the manager restarts the loop with the
//! real sockets ([`cove_mdns::sockets::open`]: 5353 shared with an avahi-daemon by
//! SO_REUSEADDR, the groups joined on each LAN interface) and goes back to one-shot sockets
//! when nothing is published any more (after the goodbyes).
//!
//! Interfaces. Every interface of the host's namespace that is up, multicast-capable and not
//! loopback; never cove's own (`cove-*` bridges, `cv*` veths: they live in cove's namespace
//! anyway). A netlink socket subscribed to link and address changes wakes the manager, which
//! reads the interfaces again and hands the loop the new set (it joins and leaves the groups);
//! every few seconds it looks again in case a notification was lost. When every `--mdns`
//! network names `--mdns-interface`s, only their union is used (one loop serves all networks,
//! so one network's list cannot narrow another's).
//!
//! What is published, for each `--mdns` network N whose container C has its interface in the
//! namespace: `C.N.local` and `C-N.local` (single-label, for macOS and nss-mdns's
//! `mdns4_minimal`), `N.local`, all as host names (A/AAAA of the interface a query came in on:
//! the host's LAN address, never a bridge address), and a DNS-SD service per published port of
//! C whose type is known: the label `cove.mdns.service.PORT[/udp]` (or `cove.mdns.service` for
//! every port), else the port's name in `/etc/services` (`_redis._tcp` for 6379). Instance
//! `C on N` (or the label `cove.mdns.instance`), SRV target `C.N.local`, port the host's, TXT
//! `container=C network=N`.

use crate::ports::PortInfo;
use crate::proto::{Ask, BrowsedView, Endpoint, Listing, Network, PublishedView, ResolvedView, Table};
use cove_mdns::hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use cove_mdns::hickory_proto::rr::{Name, Record, RecordType};
use cove_mdns::{Command, Control, Event, Interface, Lookup, ServiceSpec};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a `.local` question waits for the LAN (RFC 6762 section 5.1 one-shot).
pub const RESOLVE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long an A or AAAA question still waits once the name's other family answered.
const SIBLING_GRACE: Duration = Duration::from_millis(50);
/// How long a family found missing that way is not asked again (RFC 6762's negative answers
/// would say so, but a responder that sends no NSEC says nothing).
const MISSING_FAMILY_TTL: Duration = Duration::from_secs(10);
/// Names remembered that way at most.
const MAX_MISSING: usize = 1024;
/// How often a waiting A or AAAA question looks for its sibling in the cache.
const SIBLING_POLL: Duration = Duration::from_millis(10);
/// How often the interfaces are read again without a netlink notification.
const RESCAN: Duration = Duration::from_secs(5);
/// Renames and conflicts kept for `cove mdns ls`.
const MAX_NOTES: usize = 64;

/// What the state thread wants published: host names and services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Desired {
    pub hosts: BTreeSet<String>,
    pub services: BTreeSet<ServiceSpec>,
    /// `Some`: only these interfaces (every `--mdns` network named some).
    pub only: Option<BTreeSet<String>>,
}

/// The names `.local` resolution answers itself, from the table (see `Records::with_local`):
/// for each `--mdns` network, `C.N` and `C-N` with C's addresses on N, and `N` with N's
/// gateways (the host, as a container sees it).
pub(crate) fn local_names(table: &Table, here: &BTreeSet<String>) -> Vec<cove_dns::LocalName> {
    let mut out = vec![];
    for n in table.networks.iter().filter(|n| n.mdns) {
        let mut net = cove_dns::LocalName { name: n.name.clone(), ..Default::default() };
        push_addr(&mut net, n.gateway);
        if let Some(g) = n.gateway6 {
            push_addr(&mut net, g);
        }
        out.push(net);
        for e in table.endpoints.iter().filter(|e| e.network == n.name && here.contains(&e.ifname)) {
            for name in [format!("{}.{}", e.name, n.name), format!("{}-{}", e.name, n.name)] {
                let mut l = cove_dns::LocalName { name, ..Default::default() };
                push_addr(&mut l, e.ip);
                if let Some(a) = e.ip6 {
                    push_addr(&mut l, a);
                }
                out.push(l);
            }
        }
    }
    out
}

fn push_addr(l: &mut cove_dns::LocalName, a: std::net::IpAddr) {
    match a {
        std::net::IpAddr::V4(a) => l.ipv4.push(a),
        std::net::IpAddr::V6(a) => l.ipv6.push(a),
    }
}

/// What to publish for `table`, the containers whose interface is in `here` and their ports.
pub(crate) fn desired(
    table: &Table,
    here: &BTreeSet<String>,
    ports: impl Fn(&str) -> Vec<PortInfo>,
    services_file: &ServicesFile,
) -> Desired {
    let mut d = Desired::default();
    let mdns: Vec<&Network> = table.networks.iter().filter(|n| n.mdns && !n.internal).collect();
    for n in &mdns {
        d.hosts.insert(format!("{}.local", n.name));
        for e in table.endpoints.iter().filter(|e| e.network == n.name && here.contains(&e.ifname)) {
            let host = format!("{}.{}.local", e.name, n.name);
            d.hosts.insert(host.clone());
            d.hosts.insert(format!("{}-{}.local", e.name, n.name));
            for p in ports(&e.id) {
                if let Some(t) = service_type(e, p, services_file) {
                    let instance = e
                        .mdns_labels
                        .get("cove.mdns.instance")
                        .filter(|i| !i.is_empty())
                        .cloned()
                        .unwrap_or_else(|| format!("{} on {}", e.name, n.name));
                    d.services.insert(ServiceSpec {
                        service_type: t,
                        instance,
                        host: host.clone(),
                        port: p.host_port,
                        txt: vec![format!("container={}", e.name), format!("network={}", n.name)],
                    });
                }
            }
        }
    }
    if !mdns.is_empty() && mdns.iter().all(|n| !n.mdns_interfaces.is_empty()) {
        d.only = Some(mdns.iter().flat_map(|n| n.mdns_interfaces.iter().cloned()).collect());
    }
    d
}

/// The DNS-SD type of a published port: the container's label, else `/etc/services`.
fn service_type(e: &Endpoint, p: PortInfo, services: &ServicesFile) -> Option<String> {
    let proto = if p.udp { "udp" } else { "tcp" };
    let label = |k: &str| e.mdns_labels.get(k).filter(|v| !v.is_empty()).cloned();
    let explicit = if p.udp {
        label(&format!("cove.mdns.service.{}/udp", p.container_port))
    } else {
        label(&format!("cove.mdns.service.{}", p.container_port))
            .or_else(|| label(&format!("cove.mdns.service.{}/tcp", p.container_port)))
    };
    explicit
        .or_else(|| label("cove.mdns.service"))
        .or_else(|| services.name(p.container_port, proto).map(|n| format!("_{n}._{proto}")))
}

/// `/etc/services`: the name of a port (`6379/tcp` is `redis`).
#[derive(Debug, Default, Clone)]
pub(crate) struct ServicesFile(BTreeMap<(u16, String), String>);

impl ServicesFile {
    pub(crate) fn read() -> ServicesFile {
        ServicesFile::parse(&std::fs::read_to_string("/etc/services").unwrap_or_default())
    }

    pub(crate) fn parse(text: &str) -> ServicesFile {
        let mut m = BTreeMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut f = line.split_whitespace();
            let (Some(name), Some(pp)) = (f.next(), f.next()) else { continue };
            let Some((port, proto)) = pp.split_once('/') else { continue };
            let Ok(port) = port.parse::<u16>() else { continue };
            // A DNS-SD service name: letters, digits and hyphens, at most 15 (RFC 6335).
            if name.len() > 15 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                continue;
            }
            m.entry((port, proto.to_string())).or_insert_with(|| name.to_string());
        }
        ServicesFile(m)
    }

    fn name(&self, port: u16, proto: &str) -> Option<&str> {
        self.0.get(&(port, proto.to_string())).map(String::as_str)
    }
}

/// What the threads share: the running loop's control, what it publishes, its interfaces.
#[derive(Default)]
struct Shared {
    control: Mutex<Option<Control>>,
    interfaces: Mutex<Vec<Interface>>,
    /// (name, A or AAAA) found missing by the sibling grace, until when (see `ask_records`).
    missing: Mutex<HashMap<(Name, RecordType), Instant>>,
    /// The LAN subnets of those interfaces (address, prefix length), for reverse names.
    subnets: Mutex<Vec<(std::net::IpAddr, u8)>>,
    notes: Mutex<Vec<String>>,
}

impl Shared {
    fn control(&self) -> Option<Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note(&self, text: String) {
        tracing::warn!("mdns: {text}");
        let mut n = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        if n.len() >= MAX_NOTES {
            n.remove(0);
        }
        n.push(text);
    }
}

enum Msg {
    Publish(Desired),
    Shutdown,
}

/// The helper's mDNS: see the module doc.
pub struct Mdns {
    tx: mpsc::Sender<Msg>,
    wake: UnixDatagram,
    shared: Arc<Shared>,
    manager: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Mdns {
    /// Starts the manager (and a resolving loop). Call it from a thread in the host's
    /// namespace. `None`, with a warning, when mDNS cannot run here (no sockets at all).
    pub fn start() -> Option<Arc<Mdns>> {
        let (wake, wake_rx) = match UnixDatagram::pair() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("mdns: {e}");
                return None;
            }
        };
        let _ = wake_rx.set_nonblocking(true);
        let _ = wake.set_nonblocking(true);
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let mut manager = Manager {
            shared: shared.clone(),
            rx,
            wake: wake_rx,
            running: None,
            published: Published::default(),
            desired: Desired::default(),
        };
        if let Err(e) = manager.restart(false) {
            tracing::warn!("mdns: .local names will not resolve: {e}");
            return None;
        }
        let handle = std::thread::Builder::new().name("mdns-manager".into()).spawn(move || manager.run()).ok()?;
        Some(Arc::new(Mdns { tx, wake, shared, manager: Mutex::new(Some(handle)) }))
    }

    /// Publishes `d` (and withdraws what it no longer names); returns at once.
    pub(crate) fn publish(&self, d: Desired) {
        if self.tx.send(Msg::Publish(d)).is_ok() {
            let _ = self.wake.send(&[0]);
        }
    }

    /// Goodbyes for everything published, then the loop ends. Waits for it.
    pub fn shutdown(&self) {
        if self.tx.send(Msg::Shutdown).is_ok() {
            let _ = self.wake.send(&[0]);
        }
        if let Some(h) = self.manager.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }

    /// The subnets of the LAN interfaces (for the DNS: reverse names of their addresses are
    /// asked by mDNS first), as last read on the host's side.
    pub fn lan_subnets(&self) -> Vec<(std::net::IpAddr, u8)> {
        self.shared.subnets.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The resolver the DNS servers send `.local` questions to.
    pub fn resolver(self: &Arc<Self>) -> Arc<dyn cove_dns::LocalResolver> {
        Arc::new(Resolver { shared: self.shared.clone() })
    }

    /// Answers a `cove mdns` question (blocking: call it from a session thread).
    pub fn ask(&self, ask: &Ask) -> Result<Vec<u8>, String> {
        let control = self.shared.control().ok_or("mDNS is not running")?;
        let json = match ask {
            Ask::List => {
                let published = control.published().map_err(|e| e.to_string())?;
                let listing = Listing {
                    interfaces: self
                        .shared
                        .interfaces
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .iter()
                        .map(|i| i.name.clone())
                        .collect(),
                    published: published
                        .into_iter()
                        .map(|p| PublishedView {
                            name: p.name,
                            requested: p.requested,
                            service_type: p.service_type,
                            state: format!("{:?}", p.state).to_lowercase(),
                        })
                        .collect(),
                    notes: self.shared.notes.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                };
                serde_json::to_vec(&listing)
            }
            Ask::Resolve { name, qtype, timeout_ms } => {
                let name = fqdn(name)?;
                let qtype: RecordType =
                    qtype.to_uppercase().parse().map_err(|_| format!("unknown record type {qtype}"))?;
                let records = control
                    .resolve(&name, qtype, Duration::from_millis((*timeout_ms).clamp(100, 10_000)))
                    .map_err(|e| e.to_string())?;
                serde_json::to_vec(
                    &records
                        .iter()
                        .map(|r| ResolvedView {
                            name: r.name.to_string(),
                            rtype: r.record_type().to_string(),
                            ttl: r.ttl,
                            data: r.data.to_string(),
                        })
                        .collect::<Vec<_>>(),
                )
            }
            Ask::Browse { service_type, timeout_ms } => {
                let found = control
                    .browse(service_type, Duration::from_millis((*timeout_ms).clamp(100, 30_000)))
                    .map_err(|e| e.to_string())?;
                serde_json::to_vec(
                    &found
                        .into_iter()
                        .map(|s| BrowsedView {
                            instance: s.instance,
                            service_type: s.service_type,
                            host: s.host,
                            port: s.port,
                            txt: s.txt,
                            addrs: s.addrs,
                        })
                        .collect::<Vec<_>>(),
                )
            }
        };
        json.map_err(|e| e.to_string())
    }
}

fn fqdn(name: &str) -> Result<Name, String> {
    let mut n = Name::from_utf8(name).map_err(|e| format!("invalid name {name:?}: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// What the loop publishes now: requested name (or service) to its id.
#[derive(Default)]
struct Published {
    hosts: BTreeMap<String, cove_mdns::Id>,
    services: BTreeMap<ServiceSpec, cove_mdns::Id>,
}

struct Running {
    control: Control,
    thread: std::thread::JoinHandle<cove_mdns::Result<()>>,
    /// Holds 5353 and the groups (publishing), or only one-shot sockets (resolving).
    full: bool,
}

struct Manager {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Msg>,
    wake: UnixDatagram,
    running: Option<Running>,
    published: Published,
    desired: Desired,
}

impl Manager {
    fn run(mut self) {
        let netlink = watch_links();
        let mut last_scan = Instant::now();
        loop {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            let mut fds = vec![PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
            if let Some(nl) = &netlink {
                fds.push(PollFd::new(nl.as_fd(), PollFlags::POLLIN));
            }
            let _ = poll(&mut fds, PollTimeout::from(1000u16));
            let changed = fds.get(1).and_then(|f| f.revents()).is_some_and(|r| r.contains(PollFlags::POLLIN));
            drop(fds);
            if changed {
                if let Some(nl) = &netlink {
                    drain(nl);
                }
            }
            let mut buf = [0u8; 64];
            while self.wake.recv(&mut buf).is_ok() {}
            let mut want = None;
            loop {
                match self.rx.try_recv() {
                    Ok(Msg::Publish(d)) => want = Some(d),
                    Ok(Msg::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => {
                        self.stop();
                        return;
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            let only_changed = want.as_ref().is_some_and(|d| d.only != self.desired.only);
            if changed || only_changed || last_scan.elapsed() >= RESCAN {
                last_scan = Instant::now();
                if let Some(d) = &want {
                    self.desired.only = d.only.clone();
                }
                self.rescan();
            }
            if let Some(d) = want {
                self.apply(d);
            }
        }
    }

    /// Reads the interfaces again; hands a changed set to the loop.
    fn rescan(&mut self) {
        *self.shared.subnets.lock().unwrap_or_else(|p| p.into_inner()) = lan_subnets(self.desired.only.as_ref());
        let now = lan_interfaces(self.desired.only.as_ref());
        let mut cur = self.shared.interfaces.lock().unwrap_or_else(|p| p.into_inner());
        if *cur != now {
            tracing::debug!(interfaces = ?now.iter().map(|i| &i.name).collect::<Vec<_>>(), "mdns interfaces");
            *cur = now.clone();
            drop(cur);
            if let Some(r) = &self.running {
                let _ = r.control.set_interfaces(now);
            }
        }
    }

    fn apply(&mut self, d: Desired) {
        let publishing = !d.hosts.is_empty() || !d.services.is_empty();
        let full = self.running.as_ref().is_some_and(|r| r.full);
        if publishing != full {
            // Goodbyes go out as the old loop ends (publishing -> resolving), or nothing was
            // published yet (resolving -> publishing).
            if let Err(e) = self.restart(publishing) {
                self.shared.note(format!("cannot publish on the LAN: {e}"));
                if publishing {
                    let _ = self.restart(false);
                }
                self.desired = d;
                return;
            }
            self.published = Published::default();
        }
        let Some(control) = self.running.as_ref().map(|r| r.control.clone()) else { return };
        // Withdraw first (goodbyes), then publish what is new.
        let gone: Vec<ServiceSpec> =
            self.published.services.keys().filter(|s| !d.services.contains(s)).cloned().collect();
        for s in gone {
            if let Some(id) = self.published.services.remove(&s) {
                let _ = control.withdraw(id);
            }
        }
        let gone: Vec<String> = self.published.hosts.keys().filter(|h| !d.hosts.contains(*h)).cloned().collect();
        for h in gone {
            if let Some(id) = self.published.hosts.remove(&h) {
                let _ = control.withdraw(id);
            }
        }
        for h in &d.hosts {
            if !self.published.hosts.contains_key(h) {
                match control.publish_host(h) {
                    Ok(id) => {
                        self.published.hosts.insert(h.clone(), id);
                    }
                    Err(e) => self.shared.note(format!("publish {h}: {e}")),
                }
            }
        }
        for s in &d.services {
            if !self.published.services.contains_key(s) {
                match control.publish_service(s.clone()) {
                    Ok(id) => {
                        self.published.services.insert(s.clone(), id);
                    }
                    Err(e) => self.shared.note(format!("publish {} {}: {e}", s.service_type, s.instance)),
                }
            }
        }
        self.desired = d;
    }

    /// (Re)starts the loop: with the real sockets when `full`, else one-shot sockets only.
    fn restart(&mut self, full: bool) -> Result<(), String> {
        self.stop_loop();
        let interfaces = lan_interfaces(self.desired.only.as_ref());
        *self.shared.interfaces.lock().unwrap_or_else(|p| p.into_inner()) = interfaces.clone();
        *self.shared.subnets.lock().unwrap_or_else(|p| p.into_inner()) = lan_subnets(self.desired.only.as_ref());
        let sockets = if full {
            cove_mdns::sockets::open(&interfaces).map_err(|e| e.to_string())?
        } else {
            one_shot_sockets().map_err(|e| e.to_string())?
        };
        let (control, commands) = cove_mdns::channel().map_err(|e| e.to_string())?;
        let mut options = cove_mdns::Options::standard(interfaces);
        // One-shot sockets are in no group: nothing to join or leave.
        options.manage_groups = full;
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("mdns".into())
            .spawn(move || {
                cove_mdns::serve(sockets, options, commands, |event| match event {
                    Event::Renamed { from, to, .. } => {
                        shared.note(format!("{from} is taken on the LAN: published as {to}"))
                    }
                    Event::Conflict { name, .. } => {
                        shared.note(format!("{name}: another host claims it, probing again"))
                    }
                    _ => {}
                })
            })
            .map_err(|e| format!("start the mDNS thread: {e}"))?;
        *self.shared.control.lock().unwrap_or_else(|p| p.into_inner()) = Some(control.clone());
        self.running = Some(Running { control, thread, full });
        Ok(())
    }

    fn stop_loop(&mut self) {
        if let Some(r) = self.running.take() {
            *self.shared.control.lock().unwrap_or_else(|p| p.into_inner()) = None;
            r.control.shutdown();
            match r.thread.join() {
                Ok(Err(e)) => tracing::warn!("mdns: {e}"),
                Err(_) => tracing::warn!("mdns: the loop panicked"),
                Ok(Ok(())) => {}
            }
        }
    }

    fn stop(&mut self) {
        self.stop_loop();
        self.published = Published::default();
    }
}

/// Sockets for resolving only: one-shot queries from ephemeral ports, no group joined.
fn one_shot_sockets() -> cove_mdns::Result<cove_mdns::Sockets> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    let query_v4 = cove_mdns::sockets::bind_v4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    let query_v6 = cove_mdns::sockets::bind_v6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)).ok();
    Ok(cove_mdns::Sockets { v4: None, v6: None, query_v4: Some(query_v4), query_v6 })
}

/// The addresses of the host's LAN interfaces: up, multicast, not loopback, not cove's;
/// `only` narrows them. (interface name, address, prefix length).
fn lan_addresses(only: Option<&BTreeSet<String>>) -> Vec<(String, std::net::IpAddr, u8)> {
    use nix::net::if_::InterfaceFlags as F;
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return vec![] };
    let mut out = vec![];
    for a in addrs {
        let f = a.flags;
        if !f.contains(F::IFF_UP) || !f.contains(F::IFF_MULTICAST) || f.contains(F::IFF_LOOPBACK) {
            continue;
        }
        if !is_lan_name(&a.interface_name) || only.is_some_and(|o| !o.contains(&a.interface_name)) {
            continue;
        }
        let (Some(addr), mask) = (a.address.as_ref(), a.netmask.as_ref()) else { continue };
        let found = match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
            (Some(v4), _) => {
                let len = mask.and_then(|m| m.as_sockaddr_in()).map_or(32, |m| u32::from(m.ip()).count_ones());
                (std::net::IpAddr::V4(v4.ip()), len as u8)
            }
            (_, Some(v6)) => {
                let len = mask.and_then(|m| m.as_sockaddr_in6()).map_or(128, |m| u128::from(m.ip()).count_ones());
                (std::net::IpAddr::V6(v6.ip()), len as u8)
            }
            _ => continue,
        };
        out.push((a.interface_name.clone(), found.0, found.1));
    }
    out
}

/// The host's LAN interfaces (see [`lan_addresses`]) with their addresses and indexes.
pub(crate) fn lan_interfaces(only: Option<&BTreeSet<String>>) -> Vec<Interface> {
    let mut by_name: BTreeMap<String, Vec<std::net::IpAddr>> = BTreeMap::new();
    for (name, ip, _) in lan_addresses(only) {
        let list = by_name.entry(name).or_default();
        if !list.contains(&ip) {
            list.push(ip);
        }
    }
    by_name
        .into_iter()
        .filter_map(|(name, addrs)| {
            let index = nix::net::if_::if_nametoindex(name.as_str()).ok()?;
            Some(Interface { index, name, addrs })
        })
        .collect()
}

/// The subnets (address, prefix length) of the host's LAN interfaces.
pub(crate) fn lan_subnets(only: Option<&BTreeSet<String>>) -> Vec<(std::net::IpAddr, u8)> {
    let mut out = vec![];
    for (_, ip, len) in lan_addresses(only) {
        if !out.contains(&(ip, len)) {
            out.push((ip, len));
        }
    }
    out
}

/// Not loopback and not one of cove's own interfaces (bridges `cove-…`, veths `cv…`).
pub(crate) fn is_lan_name(name: &str) -> bool {
    name != "lo" && !name.starts_with("cove-") && !name.starts_with("cv")
}

/// A netlink socket that becomes readable when a link or an address changes; `None` (the
/// periodic rescan still works) when it cannot be made.
fn watch_links() -> Option<std::os::fd::OwnedFd> {
    use nix::sys::socket::{bind, socket, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};
    const RTMGRP_LINK: u32 = 0x1;
    const RTMGRP_IPV4_IFADDR: u32 = 0x10;
    const RTMGRP_IPV6_IFADDR: u32 = 0x100;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkRoute,
    )
    .ok()?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)).ok()?;
    Some(fd)
}

fn drain(fd: &std::os::fd::OwnedFd) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = nix::sys::socket::recv(fd.as_raw_fd(), &mut buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT) {
        if n == 0 {
            break;
        }
    }
}

/// `.local` questions from the containers' DNS: from the loop's cache when it knows, else a
/// one-shot query on the LAN, at most [`RESOLVE_TIMEOUT`].
struct Resolver {
    shared: Arc<Shared>,
}

impl cove_dns::LocalResolver for Resolver {
    fn resolve(
        &self,
        query: Vec<u8>,
        _client: cove_dns::Transport,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>> {
        let control = self.shared.control();
        let shared = self.shared.clone();
        Box::pin(async move {
            let q = Message::from_vec(&query).ok()?;
            let question = q.queries.first()?.clone();
            let control = control?;
            let (name, qtype) = (question.name().clone(), question.query_type());
            let mut records = ask_records(&control, &name, qtype, &shared).await;
            records.retain(|r| r.record_type() == qtype || qtype == RecordType::ANY);
            let mut code = ResponseCode::NoError;
            if records.is_empty() {
                // NXDOMAIN only when the name has no address at all: musl gives up on the name
                // when either of its parallel A/AAAA questions says NXDOMAIN.
                let other = match qtype {
                    RecordType::A => Some(RecordType::AAAA),
                    RecordType::AAAA => Some(RecordType::A),
                    _ => None,
                };
                let exists = match other {
                    Some(o) => !ask_records(&control, &name, o, &shared).await.is_empty(),
                    None => false,
                };
                if !exists {
                    code = ResponseCode::NXDomain;
                }
            }
            let mut m = Message::response(q.metadata.id, OpCode::Query);
            m.metadata.message_type = MessageType::Response;
            m.metadata.recursion_desired = q.metadata.recursion_desired;
            m.metadata.recursion_available = true;
            m.metadata.response_code = code;
            m.add_query(question);
            for r in records {
                m.add_answer(r);
            }
            m.to_vec().ok()
        })
    }
}

/// Records of `name`/`qtype`: the cache, else the loop (a one-shot query). An A or AAAA
/// question stops waiting [`SIBLING_GRACE`] after the name's other address family is known:
/// resolvers ask both at once (musl; glibc with AF_UNSPEC), a responder that has both sends them
/// together, and avahi sends nothing at all, not even an NSEC, for a family a name lacks — the
/// AAAA half of every lookup of an IPv4-only name waited the whole second (bench/mdns).
async fn ask_records(control: &Control, name: &Name, qtype: RecordType, shared: &Shared) -> Vec<Record> {
    match control.lookup_cached(name, qtype) {
        Lookup::Found(r) => return r,
        Lookup::Negative => return vec![],
        Lookup::Miss => {}
    }
    let key = (name.to_lowercase(), qtype);
    {
        let mut missing = shared.missing.lock().unwrap_or_else(|p| p.into_inner());
        match missing.get(&key) {
            Some(until) if *until > Instant::now() => return vec![],
            Some(_) => {
                missing.remove(&key);
            }
            None => {}
        }
    }
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let sent = control.send(Command::Resolve {
        name: name.clone(),
        qtype,
        timeout: RESOLVE_TIMEOUT,
        reply: Box::new(move |r| {
            let _ = tx.send(r);
        }),
    });
    if sent.is_err() {
        return vec![];
    }
    let sibling = match qtype {
        RecordType::A => Some(RecordType::AAAA),
        RecordType::AAAA => Some(RecordType::A),
        _ => None,
    };
    let deadline = tokio::time::Instant::now() + RESOLVE_TIMEOUT + Duration::from_millis(500);
    let mut until = deadline;
    let mut graced = false;
    loop {
        let now = tokio::time::Instant::now();
        if now >= until {
            if graced {
                let mut missing = shared.missing.lock().unwrap_or_else(|p| p.into_inner());
                if missing.len() >= MAX_MISSING {
                    let now = Instant::now();
                    missing.retain(|_, t| *t > now);
                    if missing.len() >= MAX_MISSING {
                        missing.clear();
                    }
                }
                missing.insert(key, Instant::now() + MISSING_FAMILY_TTL);
            }
            return vec![];
        }
        tokio::select! {
            r = &mut rx => return r.unwrap_or_default(),
            _ = tokio::time::sleep((until - now).min(SIBLING_POLL)) => {}
        }
        if !graced && sibling.is_some_and(|t| matches!(control.lookup_cached(name, t), Lookup::Found(_))) {
            graced = true;
            until = until.min(tokio::time::Instant::now() + SIBLING_GRACE);
        }
    }
}

#[cfg(test)]
mod tests;
