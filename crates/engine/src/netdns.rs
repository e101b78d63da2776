//! The embedded DNS of the network helper ([`crate::netd`]): one server per network, at the
//! network's gateway, answering container names, `--network-alias`es, `NAME.NETWORK` and PTR
//! from the state database, and forwarding every other name upstream.
//!
//! Dual-homed by threads (DESIGN.md): the listening sockets are bound by the helper's thread
//! that lives inside the rootless network namespace (a socket stays in the namespace it was made
//! in), and served by a single-threaded tokio runtime whose thread never left the host's
//! namespace — so the upstream sockets it opens are the host's, and a resolver on the host's
//! loopback (systemd-resolved's 127.0.0.53, dnsmasq) works as an upstream (podman#16369).
//!
//! A reload ([`Dns::sync`]) reads the endpoints table, keeps the containers whose interface is
//! present in the namespace (a container that exited has lost its veth pair, so it drops out
//! without any cove command running), and publishes a new records snapshot on a `watch`
//! channel. Listening sockets are never closed by a reload (aardvark-dns#389); they are opened
//! when a network's bridge first appears and closed when it is gone.
//!
//! Upstreams: `COVE_DNS_UPSTREAMS` (comma-separated `IP:PORT`, for tests and odd hosts) or the
//! nameservers of the host's `/etc/resolv.conf`, read when the helper starts (it exits when idle,
//! so a changed resolv.conf is seen by the next one). No public resolver is ever built in: with
//! none configured, forwarded names get SERVFAIL. `--internal` networks forward nothing.

use cove_dns::{Entry, NetworkRecords, Records, Upstream};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// The DNS port: containers' resolvers know no other.
const PORT: u16 = 53;

struct Listener {
    /// The bridge it serves (a network removed and made again has another).
    bridge: String,
    gateway: IpAddr,
    gateway6: Option<IpAddr>,
    internal: bool,
    /// The network's own upstreams it serves with (a network made anew with others gets a new
    /// listener).
    dns: Vec<SocketAddr>,
    /// Dropping it ends both serve loops (and closes their sockets).
    _stop: watch::Sender<()>,
}

pub(crate) struct Dns {
    rt: tokio::runtime::Handle,
    records: watch::Sender<Arc<Records>>,
    listeners: HashMap<String, Listener>,
    upstream: Arc<Upstream>,
    db_path: Option<PathBuf>,
    db: Option<rusqlite::Connection>,
    /// Outbound NAT, when a tool (pasta, slirp4netns) gives the namespace a way out.
    nat: Option<crate::outbound::Nat>,
    /// `host.containers.internal` on non-internal networks.
    host: Vec<IpAddr>,
    /// Where problems that fail no request are written (`netd-outbound.log`).
    pub(crate) log: Option<PathBuf>,
    /// The user's cove.conf: its `allow_host_loopback` applies to networks that do not say.
    pub(crate) config: Option<PathBuf>,
}

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

/// Names of the interfaces in the network namespace of the calling thread.
pub(crate) fn interfaces_here() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/thread-self/net/dev")
        .map(|t| t.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_string()).collect())
        .unwrap_or_default()
}

/// Every network's bridge is `cove-` and 8 hex digits of its id (crate::network::create).
const BRIDGE_PREFIX: &str = "cove-";

struct NetRow {
    name: String,
    subnet: String,
    subnet6: Option<String>,
    gateway: IpAddr,
    gateway6: Option<IpAddr>,
    bridge: String,
    internal: bool,
    /// `network create --dns`: this network's upstreams instead of the host's.
    dns: Vec<SocketAddr>,
    /// `-o allow_host_loopback`, if given.
    host_loopback: Option<bool>,
}

/// Runs a serve loop on the runtime; its end by error is logged (the other listeners go on).
fn spawn_logged(rt: &tokio::runtime::Handle, what: &'static str, serve: impl std::future::Future<Output = Result<(), String>> + Send + 'static) {
    rt.spawn(async move {
        if let Err(e) = serve.await {
            tracing::warn!("{what}: {e}");
        }
    });
}

/// Resolver addresses stored as a JSON array of IPs (`--dns`), on port 53.
fn dns_servers(json: Option<&str>) -> Vec<SocketAddr> {
    let list: Vec<String> = json.and_then(|d| serde_json::from_str(d).ok()).unwrap_or_default();
    list.iter().filter_map(|a| a.parse::<IpAddr>().ok()).map(|a| SocketAddr::new(a, 53)).collect()
}

struct EndpointRow {
    network: String,
    id: String,
    name: String,
    ip: IpAddr,
    ip6: Option<IpAddr>,
    ifname: String,
    aliases: Vec<String>,
    /// `--dns`: the container's own upstream resolvers.
    dns: Vec<SocketAddr>,
}

impl Dns {
    pub(crate) fn new(rt: tokio::runtime::Handle, upstreams: Vec<SocketAddr>, nat: Option<crate::outbound::Nat>, host: Option<IpAddr>) -> Dns {
        let (records, _) = watch::channel(Arc::new(Records::new(&[])));
        Dns { rt, records, listeners: HashMap::new(), upstream: Arc::new(Upstream::new(upstreams)), db_path: None, db: None, nat, host: host.into_iter().collect(), log: None, config: None }
    }

    /// Reloads from the database at `db` (remembered for later reloads without one). Must run
    /// on the thread inside the rootless namespace. Errors are for the caller to report; the
    /// previous snapshot stays in place then.
    pub(crate) fn sync(&mut self, db: Option<&Path>) -> Result<(), String> {
        if let Some(p) = db {
            if self.db_path.as_deref() != Some(p) {
                self.db_path = Some(p.to_path_buf());
                self.db = None;
            }
        }
        let Some(path) = self.db_path.clone() else { return Ok(()) };
        if self.db.is_none() {
            let c = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| format!("open {}: {e}", path.display()))?;
            c.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| e.to_string())?;
            self.db = Some(c);
        }
        let (nets, eps) = match self.read() {
            Ok(x) => x,
            Err(e) => {
                self.db = None;
                return Err(format!("read {}: {e}", path.display()));
            }
        };
        let mut failures = vec![];
        // Bridges follow the database: one whose network is gone (`network rm`, or a state
        // that diverged) is deleted with its listeners before anything binds its gateway again.
        let stale: Vec<String> = interfaces_here().into_iter().filter(|i| i.starts_with(BRIDGE_PREFIX) && !nets.iter().any(|n| &n.bridge == i)).collect();
        if !stale.is_empty() {
            self.listeners.retain(|_, l| !stale.contains(&l.bridge));
            match cove_net::link::Netlink::open() {
                Ok(mut nl) => {
                    for b in &stale {
                        if let Err(e) = nl.link_index(b).and_then(|i| i.map_or(Ok(()), |i| nl.delete_link(i))) {
                            self.note(&format!("delete bridge {b} of a removed network: {e}"));
                        }
                    }
                }
                Err(e) => self.note(&format!("netlink: {e}")),
            }
        }
        let here = interfaces_here();
        let default = self.nat.is_some() && self.host_loopback_default();
        if let Some(nat) = &mut self.nat {
            let nft: Vec<cove_net::nft::NftNetwork> = nets
                .iter()
                .filter_map(|n| {
                    let mut subnets = vec![n.subnet.parse().ok()?];
                    subnets.extend(n.subnet6.as_ref().and_then(|s| s.parse::<cove_net::ipam::Subnet>().ok()));
                    let host_loopback = n.host_loopback.unwrap_or(default);
                    Some(cove_net::nft::NftNetwork { name: n.name.clone(), bridge: n.bridge.clone(), subnets, internal: n.internal, host_loopback })
                })
                .collect();
            // Not a reason to fail a container's start: it still reaches its network.
            if let Err(e) = nat.sync(&nft) {
                self.note(&format!("outbound access: {e}"));
            }
        }
        // Listeners follow the bridges.
        self.listeners.retain(|name, l| nets.iter().any(|n| &n.name == name && n.bridge == l.bridge && n.gateway == l.gateway && n.gateway6 == l.gateway6 && n.internal == l.internal && n.dns == l.dns && here.contains(&n.bridge)));
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
        for e in eps.iter().filter(|e| here.contains(&e.ifname)) {
            // An --internal network forwards nothing, whatever the container asked for.
            let internal = nets.iter().any(|n| n.name == e.network && n.internal);
            let dns = if internal { vec![] } else { e.dns.clone() };
            let mut entry = Entry { id: e.id.clone(), name: e.name.clone(), aliases: e.aliases.clone(), dns, ..Default::default() };
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
        self.records.send_replace(Arc::new(Records::new(&networks)));
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    /// cove.conf's `allow_host_loopback`, read now (a changed file applies at the next
    /// reload); a file that does not parse keeps the loopback closed, and says so in the log.
    fn host_loopback_default(&self) -> bool {
        let Some(p) = &self.config else { return false };
        match crate::config::load_from(p) {
            Ok(c) => c.allow_host_loopback,
            Err(e) => {
                self.note(&format!("{e}: the host's loopback stays closed to networks that do not allow it themselves"));
                false
            }
        }
    }

    /// Appends a line to the helper's log in the run directory (next to the database's
    /// path is not known; the run directory is the log's home).
    fn note(&self, msg: &str) {
        tracing::warn!("{msg}");
        if let Some(log) = &self.log {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
                let _ = writeln!(f, "cove-netd: {msg}");
            }
        }
    }

    fn read(&self) -> rusqlite::Result<(Vec<NetRow>, Vec<EndpointRow>)> {
        let Some(db) = &self.db else { return Ok((vec![], vec![])) };
        let tx = db.unchecked_transaction()?;
        let nets = tx
            .prepare("SELECT name, gateway, bridge, internal, subnet, subnet6, gateway6, json_extract(options, '$.dns'), json_extract(options, '$.allow_host_loopback') FROM networks")?
            .query_map([], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?),
                    (r.get::<_, String>(4)?, r.get::<_, Option<String>>(5)?, r.get::<_, Option<String>>(6)?, r.get::<_, Option<String>>(7)?),
                    r.get::<_, Option<i64>>(8)?,
                ))
            })?
            // A row that fails to read fails the reload (the last snapshot stays): never
            // publish a partial table, which would drop listeners and names.
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .filter_map(|((name, gw, bridge, internal), (subnet, subnet6, gw6, dns), host_loopback)| {
                let dns = dns_servers(dns.as_deref());
                Some(NetRow { name, subnet, subnet6, gateway: gw.parse().ok()?, gateway6: gw6.and_then(|g| g.parse().ok()), bridge, internal: internal != 0, dns, host_loopback: host_loopback.map(|b| b != 0) })
            })
            .collect();
        let eps = tx
            // `--dns` lives in the run request (the container's config JSON), validated there.
            .prepare("SELECT e.network, e.container_id, c.name, e.ip, e.ifname, e.aliases, e.ip6, json_extract(c.config, '$.dns') FROM endpoints e JOIN containers c ON c.id = e.container_id")?
            .query_map([], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?),
                    (r.get::<_, String>(4)?, r.get::<_, String>(5)?, r.get::<_, Option<String>>(6)?, r.get::<_, Option<String>>(7)?),
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .filter_map(|((network, id, name, ip), (ifname, aliases, ip6, dns))| {
                let dns = dns_servers(dns.as_deref());
                Some(EndpointRow { network, id, name, ip: ip.parse().ok()?, ip6: ip6.and_then(|a| a.parse().ok()), ifname, aliases: serde_json::from_str(&aliases).unwrap_or_default(), dns })
            })
            .collect();
        Ok((nets, eps))
    }

    /// Binds the network's DNS sockets (UDP and TCP on the gateway, and on the IPv6 gateway of
    /// a dual-stack network; on this thread, so inside the namespace) and serves them on the
    /// runtime until the returned listener is dropped.
    fn listen(&self, n: &NetRow) -> Result<Listener, String> {
        let mut sockets = vec![];
        for gw in std::iter::once(n.gateway).chain(n.gateway6) {
            let addr = SocketAddr::new(gw, PORT);
            let udp = std::net::UdpSocket::bind(addr).map_err(|e| format!("DNS of network {}: bind udp {addr}: {e}", n.name))?;
            let tcp = std::net::TcpListener::bind(addr).map_err(|e| format!("DNS of network {}: bind tcp {addr}: {e}", n.name))?;
            udp.set_nonblocking(true).map_err(|e| e.to_string())?;
            tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
            sockets.push((udp, tcp));
        }
        let (stop, _) = watch::channel(());
        // Internal networks reach nothing outside: no forwarding (SERVFAIL for other names).
        // A network's own servers (`network create --dns`) replace the host's.
        let upstream = match (n.internal, n.dns.is_empty()) {
            (true, _) => Arc::new(Upstream::new(vec![])),
            (false, false) => Arc::new(Upstream::new(n.dns.clone()).with_timeout(self.upstream.timeout())),
            (false, true) => self.upstream.clone(),
        };
        let stopped = |mut rx: watch::Receiver<()>| async move {
            // Completes when the sender is dropped.
            while rx.changed().await.is_ok() {}
        };
        for (udp, tcp) in sockets {
            let (name, records, up, rx) = (n.name.clone(), self.records.subscribe(), upstream.clone(), stop.subscribe());
            spawn_logged(&self.rt, "dns udp", async move {
                let s = tokio::net::UdpSocket::from_std(udp).map_err(|e| e.to_string())?;
                cove_dns::serve_udp(s, name, records, up, stopped(rx)).await.map_err(|e| e.to_string())
            });
            let (name, records, up, rx) = (n.name.clone(), self.records.subscribe(), upstream.clone(), stop.subscribe());
            spawn_logged(&self.rt, "dns tcp", async move {
                let s = tokio::net::TcpListener::from_std(tcp).map_err(|e| e.to_string())?;
                cove_dns::serve_tcp(s, name, records, up, stopped(rx)).await.map_err(|e| e.to_string())
            });
        }
        Ok(Listener { bridge: n.bridge.clone(), gateway: n.gateway, gateway6: n.gateway6, internal: n.internal, dns: n.dns.clone(), _stop: stop })
    }
}
