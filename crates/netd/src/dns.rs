//! The embedded DNS of the network helper: one server per network, at the network's gateway,
//! answering container names, `--network-alias`es, `NAME.NETWORK` and PTR from the table the
//! engine sent ([`crate::proto::Table`]), and forwarding every other name upstream.
//!
//! Dual-homed by threads (DESIGN.md): the listening sockets are bound by the helper's thread
//! that lives inside the rootless network namespace (a socket stays in the namespace it was made
//! in), and served by a single-threaded tokio runtime whose thread never left the host's
//! namespace — so the upstream sockets it opens are the host's, and a resolver on the host's
//! loopback (systemd-resolved's 127.0.0.53, dnsmasq) works as an upstream (podman#16369).
//!
//! A reload ([`Dns::sync`]) takes the endpoints of the table, keeps the containers whose interface is
//! present in the namespace (a container that exited has lost its veth pair, so it drops out
//! without any cove command running), and publishes a new records snapshot on a `watch`
//! channel. Listening sockets are never closed by a reload (aardvark-dns#389); they are opened
//! when a network's bridge first appears and closed when it is gone.
//!
//! Upstreams: `COVE_DNS_UPSTREAMS` (comma-separated `IP:PORT`, for tests and odd hosts) or the
//! nameservers of the host's `/etc/resolv.conf`, read when the helper starts (it exits when idle,
//! so a changed resolv.conf is seen by the next one). No public resolver is ever built in: with
//! none configured, forwarded names get SERVFAIL. `--internal` networks forward nothing.

use crate::proto::{Network, Table};
use cove_dns::{Entry, NetworkRecords, Records, Upstream};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::watch;

/// The DNS port: containers' resolvers know no other.
pub(crate) const PORT: u16 = 53;

struct Listener {
    /// The bridge it serves (a network removed and made again has another).
    bridge: String,
    gateway: IpAddr,
    gateway6: Option<IpAddr>,
    internal: bool,
    /// The network's own upstreams it serves with (a network made anew with others gets a new
    /// listener).
    dns: Vec<SocketAddr>,
    /// Whether `.local` goes to mDNS (`-o mdns_resolve`).
    mdns_resolve: bool,
    /// Dropping it ends both serve loops (and closes their sockets).
    _stop: watch::Sender<()>,
}

pub(crate) struct Dns {
    rt: tokio::runtime::Handle,
    records: watch::Sender<Arc<Records>>,
    listeners: HashMap<String, Listener>,
    upstream: Arc<Upstream>,
    /// The same upstreams with the mDNS resolver for `.local` (networks that resolve it).
    upstream_mdns: Arc<Upstream>,
    /// The helper's mDNS resolver, if it runs.
    local: Option<Arc<dyn cove_dns::LocalResolver>>,
    /// The host's LAN subnets, as the helper's mDNS last read them (reverse names).
    lan: Option<LanSubnets>,
    /// `host.containers.internal` on non-internal networks.
    host: Vec<IpAddr>,
    /// The port it listens on ([`PORT`]; tests choose another).
    port: u16,
}

/// Where [`Dns`] reads the host's LAN subnets (the helper's mDNS keeps them).
pub(crate) type LanSubnets = Arc<dyn Fn() -> Vec<(IpAddr, u8)> + Send + Sync>;

/// Starts the runtime thread. Call it from a thread in the host's network namespace: the
/// runtime's thread is created there and stays there.
pub(crate) fn start_runtime() -> Result<tokio::runtime::Handle, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("dns".into())
        .spawn(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => {
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(std::future::pending::<()>());
            }
            Err(e) => {
                let _ = tx.send(Err(format!("start the DNS runtime: {e}")));
            }
        })
        .map_err(|e| format!("start the DNS thread: {e}"))?;
    rx.recv().map_err(|_| "the DNS thread died".to_string())?
}

/// The upstream resolvers, as the module doc says.
pub(crate) fn upstreams() -> Vec<SocketAddr> {
    if let Ok(list) = std::env::var("COVE_DNS_UPSTREAMS") {
        return list.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    }
    cove_dns::upstreams_from_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

/// Runs a serve loop on the runtime; its end by error is logged (the other listeners go on).
fn spawn_logged(
    rt: &tokio::runtime::Handle,
    what: &'static str,
    serve: impl std::future::Future<Output = Result<(), String>> + Send + 'static,
) {
    rt.spawn(async move {
        if let Err(e) = serve.await {
            tracing::warn!("{what}: {e}");
        }
    });
}

impl Dns {
    pub(crate) fn new(
        rt: tokio::runtime::Handle,
        upstreams: Vec<SocketAddr>,
        host: Option<IpAddr>,
        port: u16,
        local: Option<Arc<dyn cove_dns::LocalResolver>>,
        lan: Option<LanSubnets>,
    ) -> Dns {
        let (records, _) = watch::channel(Arc::new(Records::new(&[])));
        let upstream_mdns = match &local {
            Some(l) => Arc::new(Upstream::new(upstreams.clone()).with_local(l.clone())),
            None => Arc::new(Upstream::new(upstreams.clone())),
        };
        Dns {
            rt,
            records,
            listeners: HashMap::new(),
            upstream: Arc::new(Upstream::new(upstreams)),
            upstream_mdns,
            local,
            lan,
            host: host.into_iter().collect(),
            port,
        }
    }

    /// Drops the listeners of these bridges (deleted: their sockets are gone with them).
    pub(crate) fn forget_bridges(&mut self, bridges: &[String]) {
        self.listeners.retain(|_, l| !bridges.contains(&l.bridge));
    }

    /// Serves `table` for the interfaces in `here` (the namespace's): listeners for the
    /// networks whose bridge is there (kept across reloads while the network stays the same),
    /// records for the endpoints whose interface is there. Must run on the thread inside the
    /// namespace. Listeners that cannot bind are the error; the records are published anyway.
    pub(crate) fn sync(&mut self, table: &Table, here: &BTreeSet<String>) -> Result<(), String> {
        let nets = &table.networks;
        let mut failures = vec![];
        // Listeners follow the bridges.
        self.listeners.retain(|name, l| {
            nets.iter().any(|n| {
                &n.name == name
                    && n.bridge == l.bridge
                    && n.gateway == l.gateway
                    && n.gateway6 == l.gateway6
                    && n.internal == l.internal
                    && n.dns == l.dns
                    && n.mdns_resolve == l.mdns_resolve
                    && here.contains(&n.bridge)
            })
        });
        for n in nets.iter().filter(|n| here.contains(&n.bridge)) {
            if !self.listeners.contains_key(&n.name) {
                match self.listen(n) {
                    Ok(l) => {
                        self.listeners.insert(n.name.clone(), l);
                    }
                    Err(e) => failures.push(e),
                }
            }
        }
        let mut by_net: HashMap<&str, Vec<Entry>> = HashMap::new();
        for e in table.endpoints.iter().filter(|e| here.contains(&e.ifname)) {
            // An --internal network forwards nothing, whatever the container asked for.
            let internal = nets.iter().any(|n| n.name == e.network && n.internal);
            let dns = if internal { vec![] } else { e.dns.clone() };
            let mut entry =
                Entry { id: e.id.clone(), name: e.name.clone(), aliases: e.aliases.clone(), dns, ..Default::default() };
            for ip in std::iter::once(e.ip).chain(e.ip6) {
                match ip {
                    IpAddr::V4(a) => entry.ipv4.push(a),
                    IpAddr::V6(a) => entry.ipv6.push(a),
                }
            }
            by_net.entry(e.network.as_str()).or_default().push(entry);
        }
        let networks: Vec<NetworkRecords> = nets
            .iter()
            .map(|n| NetworkRecords {
                name: n.name.clone(),
                containers: by_net.remove(n.name.as_str()).unwrap_or_default(),
                host: if n.internal { vec![] } else { self.host.clone() },
            })
            .collect();
        let local = crate::mdns::local_names(table, here);
        let lan = self.lan.as_ref().map(|f| f()).unwrap_or_default();
        self.records.send_replace(Arc::new(Records::new(&networks).with_local(&local).with_lan(&lan)));
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    /// Binds the network's DNS sockets (UDP and TCP on the gateway, and on the IPv6 gateway of
    /// a dual-stack network; on this thread, so inside the namespace) and serves them on the
    /// runtime until the returned listener is dropped.
    fn listen(&self, n: &Network) -> Result<Listener, String> {
        let mut sockets = vec![];
        for gw in std::iter::once(n.gateway).chain(n.gateway6) {
            let addr = SocketAddr::new(gw, self.port);
            let udp = std::net::UdpSocket::bind(addr)
                .map_err(|e| format!("DNS of network {}: bind udp {addr}: {e}", n.name))?;
            let tcp = std::net::TcpListener::bind(addr)
                .map_err(|e| format!("DNS of network {}: bind tcp {addr}: {e}", n.name))?;
            udp.set_nonblocking(true).map_err(|e| e.to_string())?;
            tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
            sockets.push((udp, tcp));
        }
        let (stop, _) = watch::channel(());
        // Internal networks reach nothing outside: no forwarding (SERVFAIL for other names).
        // A network's own servers (`network create --dns`) replace the host's.
        // `.local` goes to mDNS unless the network says its upstreams own it; an internal
        // network asks nobody, the LAN neither.
        let local = self.local.clone().filter(|_| n.mdns_resolve && !n.internal);
        let upstream = match (n.internal, n.dns.is_empty(), local) {
            (true, _, _) => Arc::new(Upstream::new(vec![])),
            (false, false, local) => {
                let u = Upstream::new(n.dns.clone()).with_timeout(self.upstream.timeout());
                Arc::new(match local {
                    Some(l) => u.with_local(l),
                    None => u,
                })
            }
            (false, true, Some(_)) => self.upstream_mdns.clone(),
            (false, true, None) => self.upstream.clone(),
        };
        let stopped = |mut rx: watch::Receiver<()>| async move {
            // Completes when the sender is dropped.
            while rx.changed().await.is_ok() {}
        };
        for (udp, tcp) in sockets {
            let (name, records, up, rx) =
                (n.name.clone(), self.records.subscribe(), upstream.clone(), stop.subscribe());
            spawn_logged(&self.rt, "dns udp", async move {
                let s = tokio::net::UdpSocket::from_std(udp).map_err(|e| e.to_string())?;
                cove_dns::serve_udp(s, name, records, up, stopped(rx)).await.map_err(|e| e.to_string())
            });
            let (name, records, up, rx) =
                (n.name.clone(), self.records.subscribe(), upstream.clone(), stop.subscribe());
            spawn_logged(&self.rt, "dns tcp", async move {
                let s = tokio::net::TcpListener::from_std(tcp).map_err(|e| e.to_string())?;
                cove_dns::serve_tcp(s, name, records, up, stopped(rx)).await.map_err(|e| e.to_string())
            });
        }
        Ok(Listener {
            bridge: n.bridge.clone(),
            gateway: n.gateway,
            gateway6: n.gateway6,
            internal: n.internal,
            dns: n.dns.clone(),
            mdns_resolve: n.mdns_resolve,
            _stop: stop,
        })
    }
}
