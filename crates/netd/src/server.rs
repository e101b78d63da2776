//! The helper's server: [`serve`] runs the control loop over a listener the caller bound
//! (`netd.sock`), one short-lived thread per connection decoding [`Request`]s, and one thread
//! inside the network namespace that owns the state and does the work, in the order the
//! requests came: published ports served, the last [`Table`], DNS listeners and records, the
//! ruleset. That thread also re-serves the last table whenever the set of containers' `cv*`
//! interfaces changes (checked every [`Options::tick`]), so a container that exits drops out
//! with no cove command, and decides when the helper is idle ([`Idle`]).

use crate::dns::Dns;
use crate::outbound::Nat;
use crate::ports::{Served, Transparent};
use crate::proto::{Reader, Reply, Request, Table};
use crate::{Error, Result, RunFiles};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every network's bridge is `cove-` and 8 hex digits of its id.
const BRIDGE_PREFIX: &str = "cove-";
/// How long a session may take between two requests (a client that hangs holds only its thread).
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SYNC waits for the thread inside the namespace.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether networks that do not say reach the host's loopback (cove.conf's
/// `allow_host_loopback`), asked at every reload; an error keeps it closed and is logged.
pub type LoopbackDefault = Box<dyn Fn() -> std::result::Result<bool, String> + Send>;

/// When the helper leaves: once no container interface has been in the namespace, and
/// `netd.used` not touched, for `limit` — decided under `netd.lock`, which every command takes
/// to find the helper, so none can attach to a namespace that is going away.
pub struct Idle {
    pub files: RunFiles,
    pub limit: Duration,
}

pub struct Options {
    /// The namespace the state thread enters and never leaves; `None`: it stays in the
    /// caller's (tests).
    pub netns: Option<OwnedFd>,
    /// The DNS runtime, whose thread lives in the host's namespace (see the helper module).
    pub dns_runtime: tokio::runtime::Handle,
    pub upstreams: Vec<SocketAddr>,
    /// The DNS port on each gateway (53).
    pub dns_port: u16,
    /// `host.containers.internal` on networks that are not internal.
    pub host: Option<IpAddr>,
    /// Outbound NAT, when the namespace has a way out.
    pub nat: Option<Nat>,
    /// Whether the policy routing of transparent sockets is in place.
    pub transparent_route: bool,
    pub loopback_default: LoopbackDefault,
    /// Where problems that fail no request are written (`netd-outbound.log`).
    pub log: Option<PathBuf>,
    pub idle: Option<Idle>,
    pub tick: Duration,
    /// The host side's mDNS (`.local` resolution, publishing `--mdns` networks), if it runs.
    pub mdns: Option<Arc<crate::mdns::Mdns>>,
}

/// Why [`serve`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// `shutdown` was triggered.
    Shutdown,
    /// Idle ([`Idle`]): `netd.lock` stays held until the process exits.
    Idle,
    /// The run directory is gone: nobody can reach the helper any more.
    Orphaned,
}

enum Job {
    Sync { table: Table, reply: mpsc::Sender<std::result::Result<(), String>> },
    Add { id: String, port: crate::proto::Port, fd: OwnedFd },
    Del { id: String },
}

/// Serves `control` until `shutdown` is triggered or the state thread leaves ([`Exit`]).
pub fn serve(control: UnixListener, opts: Options, shutdown: cove_net::forward::Shutdown) -> Result<Exit> {
    let (jobs_tx, jobs) = mpsc::channel::<Job>();
    let mdns = opts.mdns.clone();
    let stop = shutdown.clone();
    let state = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            let exit = State::run(opts, jobs, &stop);
            stop.trigger();
            exit
        })
        .map_err(crate::io_err("start the namespace thread"))?;
    control.set_nonblocking(true).map_err(crate::io_err("control socket"))?;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    while !shutdown.is_triggered() {
        let mut fds = [PollFd::new(control.as_fd(), PollFlags::POLLIN), PollFd::new(shutdown.fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::Other(format!("poll the control socket: {e}"))),
        }
        loop {
            match control.accept() {
                Ok((conn, _)) => {
                    let jobs = jobs_tx.clone();
                    let mdns = mdns.clone();
                    let _ = std::thread::Builder::new()
                        .name("control".into())
                        .spawn(move || session(conn, &jobs, mdns.as_deref()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("accept on the control socket: {e}");
                    break;
                }
            }
        }
    }
    drop(jobs_tx);
    let exit = state.join().map_err(|_| Error::Other("the namespace thread panicked".into()));
    // Goodbyes for what was published, before the process goes.
    if let Some(m) = &mdns {
        m.shutdown();
    }
    exit
}

/// One client's requests until its reply: ADD/DEL up to END, or one SYNC. A bad request is
/// answered with ERR and ends the session (the server goes on).
fn session(conn: UnixStream, jobs: &mpsc::Sender<Job>, mdns: Option<&crate::mdns::Mdns>) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(SESSION_TIMEOUT));
    let mut r = Reader::new(&conn);
    let reply = loop {
        match r.request() {
            Ok(None) => return,
            Err(e) => break Reply::Err(e.to_string()),
            Ok(Some(Request::End)) => break Reply::Ok,
            // Answered here: the mDNS loop runs on the host's side, not in the namespace.
            Ok(Some(Request::Mdns(ask))) => {
                break match mdns.map(|m| m.ask(&ask)) {
                    Some(Ok(body)) => Reply::Data(body),
                    Some(Err(e)) => Reply::Err(e),
                    None => Reply::Err("mDNS is not running in the network helper".into()),
                };
            }
            Ok(Some(Request::Del { id })) => {
                let _ = jobs.send(Job::Del { id });
            }
            Ok(Some(Request::Add { id, port, fd })) => {
                let _ = jobs.send(Job::Add { id, port, fd });
            }
            Ok(Some(Request::Sync(table))) => {
                let (tx, rx) = mpsc::channel();
                let _ = jobs.send(Job::Sync { table, reply: tx });
                break match rx.recv_timeout(SYNC_TIMEOUT) {
                    Ok(Ok(())) => Reply::Ok,
                    Ok(Err(e)) => Reply::Err(e),
                    Err(_) => Reply::Err("no answer from the network namespace thread".into()),
                };
            }
        }
    };
    let _ = reply.send(&conn);
}

/// Names of the interfaces in the network namespace of the calling thread.
pub(crate) fn interfaces_here() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/thread-self/net/dev")
        .map(|t| t.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_string()).collect())
        .unwrap_or_default()
}

/// What the thread inside the namespace owns.
struct State {
    dns: Dns,
    nat: Option<Nat>,
    served: Served,
    transparent: Arc<Transparent>,
    /// The last table sent, re-served when the interfaces change.
    table: Option<Table>,
    /// Bridges named by some table so far: only those are deleted once a table no longer
    /// names them (a bridge made after the table was built belongs to a newer one).
    known_bridges: BTreeSet<String>,
    loopback_default: LoopbackDefault,
    log: Option<PathBuf>,
    mdns: Option<Arc<crate::mdns::Mdns>>,
    services: crate::mdns::ServicesFile,
}

impl State {
    fn run(opts: Options, jobs: mpsc::Receiver<Job>, shutdown: &cove_net::forward::Shutdown) -> Exit {
        // This thread never leaves (rootless, it could not go back to the host's namespace).
        if let Some(ns) = &opts.netns {
            if let Err(e) = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET) {
                tracing::warn!("enter the network namespace: {e}");
                return Exit::Shutdown;
            }
        }
        let mut st = State {
            dns: Dns::new(
                opts.dns_runtime,
                opts.upstreams,
                opts.host,
                opts.dns_port,
                opts.mdns.as_ref().map(|m| m.resolver()),
                opts.mdns.clone().map(|m| Arc::new(move || m.lan_subnets()) as crate::dns::LanSubnets),
            ),
            nat: opts.nat,
            served: Served::default(),
            transparent: Arc::new(Transparent::new(opts.transparent_route)),
            table: None,
            known_bridges: BTreeSet::new(),
            loopback_default: opts.loopback_default,
            log: opts.log,
            services: if opts.mdns.is_some() { crate::mdns::ServicesFile::read() } else { Default::default() },
            mdns: opts.mdns,
        };
        let exit = st.serve(jobs, opts.idle.as_ref(), opts.tick, shutdown);
        st.served.clear();
        exit
    }

    fn serve(
        &mut self,
        jobs: mpsc::Receiver<Job>,
        idle: Option<&Idle>,
        tick: Duration,
        shutdown: &cove_net::forward::Shutdown,
    ) -> Exit {
        let mut containers_seen = BTreeSet::new();
        let mut last_busy = Instant::now();
        loop {
            if shutdown.is_triggered() {
                return Exit::Shutdown;
            }
            match jobs.recv_timeout(tick) {
                Ok(Job::Sync { table, reply }) => {
                    let _ = reply.send(self.reload(Some(table)));
                    continue;
                }
                Ok(Job::Add { id, port, fd }) => {
                    self.served.add(id, port, fd, &self.transparent);
                    self.publish();
                    continue;
                }
                Ok(Job::Del { id }) => {
                    self.served.remove(&id);
                    self.publish();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Exit::Shutdown,
            }
            // A container that exits loses its veth pair: its names go at the next tick.
            let containers: BTreeSet<String> = interfaces_here().into_iter().filter(|n| n.starts_with("cv")).collect();
            if containers != containers_seen {
                if let Err(e) = self.reload(None) {
                    tracing::warn!("dns reload: {e}");
                }
                containers_seen = containers;
            }
            let Some(idle) = idle else { continue };
            // Its run directory deleted (a test's, say): nobody can reach it any more.
            if !idle.files.sock().exists() && !idle.files.dir.exists() {
                return Exit::Orphaned;
            }
            if !containers_seen.is_empty() {
                last_busy = Instant::now();
                continue;
            }
            if let Some(exit) = idle.check(last_busy) {
                return exit;
            }
        }
    }

    /// Serves `table` (or the last one): deletes the bridges of networks that are gone,
    /// applies the ruleset, and reloads DNS. Errors are for the caller to report.
    fn reload(&mut self, table: Option<Table>) -> std::result::Result<(), String> {
        let fresh = table.is_some();
        if let Some(t) = table {
            self.table = Some(t);
        }
        let Some(table) = self.table.take() else { return Ok(()) };
        let r = self.reload_with(&table, fresh);
        self.table = Some(table);
        self.publish();
        r
    }

    /// Tells the host side's mDNS what to publish now (the table's `--mdns` networks, their
    /// containers present here, their published ports).
    fn publish(&self) {
        let (Some(m), Some(t)) = (&self.mdns, &self.table) else { return };
        let here = interfaces_here();
        m.publish(crate::mdns::desired(t, &here, |id| self.served.ports_of(id), &self.services));
    }

    fn reload_with(&mut self, table: &Table, fresh: bool) -> std::result::Result<(), String> {
        let named = |b: &str| table.networks.iter().any(|n| n.bridge == b);
        if fresh {
            // Bridges follow the table: one whose network is gone (`network rm`, or a state
            // that diverged) is deleted with its listeners before anything binds its gateway
            // again.
            let stale: Vec<String> = interfaces_here()
                .into_iter()
                .filter(|i| i.starts_with(BRIDGE_PREFIX) && !named(i) && self.known_bridges.contains(i))
                .collect();
            if !stale.is_empty() {
                self.dns.forget_bridges(&stale);
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
            self.known_bridges.retain(|b| named(b));
            self.known_bridges.extend(table.networks.iter().map(|n| n.bridge.clone()));
        }
        let here = interfaces_here();
        if self.nat.is_some() {
            let default = self.host_loopback_default();
            let nft: Vec<cove_net::nft::NftNetwork> = table
                .networks
                .iter()
                .filter_map(|n| {
                    let mut subnets = vec![n.subnet.parse().ok()?];
                    subnets.extend(n.subnet6.as_ref().and_then(|s| s.parse::<cove_net::ipam::Subnet>().ok()));
                    let host_loopback = n.allow_host_loopback.unwrap_or(default);
                    Some(cove_net::nft::NftNetwork {
                        name: n.name.clone(),
                        bridge: n.bridge.clone(),
                        subnets,
                        internal: n.internal,
                        host_loopback,
                    })
                })
                .collect();
            let r = self.nat.as_mut().map(|nat| nat.sync(&nft));
            match r {
                Some(Ok(Some(subnets))) => self.transparent.ruleset_applied(subnets),
                Some(Ok(None)) | None => {}
                // Not a reason to fail a container's start: it still reaches its network.
                Some(Err(e)) => self.note(&format!("outbound access: {e}")),
            }
        }
        self.dns.sync(table, &here)
    }

    /// cove.conf's `allow_host_loopback`, asked now (a changed file applies at the next
    /// reload); an error keeps the loopback closed, and says so in the log.
    fn host_loopback_default(&self) -> bool {
        match (self.loopback_default)() {
            Ok(b) => b,
            Err(e) => {
                self.note(&format!(
                    "{e}: the host's loopback stays closed to networks that do not allow it themselves"
                ));
                false
            }
        }
    }

    /// Logs a problem that fails no request, in the helper's log in the run directory too.
    fn note(&self, msg: &str) {
        tracing::warn!("{msg}");
        if let Some(log) = &self.log {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
                let _ = writeln!(f, "cove-netd: {msg}");
            }
        }
    }
}

impl Idle {
    fn used_age(&self) -> Duration {
        std::fs::metadata(self.files.used())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or(Duration::MAX)
    }

    /// `Some(Exit::Idle)` when the helper should leave now; `netd.lock` is then kept held
    /// (leaked) until the process exits, and `netd.pid` removed if it names us.
    fn check(&self, last_busy: Instant) -> Option<Exit> {
        if last_busy.elapsed() < self.limit || self.used_age() < self.limit {
            return None;
        }
        // Decide under the lock the commands take to find us: none can be between finding
        // us and attaching a container when we leave.
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(self.files.lock()).ok()?;
        let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).ok()?;
        let attached = interfaces_here().iter().filter(|n| n.starts_with("cv")).count();
        if attached != 0 || self.used_age() < self.limit {
            return None;
        }
        if self.files.live().map(|(p, _)| p) == Some(std::process::id() as i32) {
            let _ = std::fs::remove_file(self.files.pid());
        }
        std::mem::forget(held);
        Some(Exit::Idle)
    }
}

#[cfg(test)]
mod tests;
