//! The per-user network helper (`cove __netd RUNDIR CONFIG`): holds the network namespace in which
//! cove's bridges live, started on demand by the first container that joins a network and
//! gone once no container has been attached for `COVE_NETD_IDLE_SECS` (default 10): its
//! namespace, bridges and all go with it, so nothing is left behind.
//!
//! It runs in the caller's user namespace (the keeper's when rootless) and in the host's
//! network namespace; a thread of it sits inside the rootless namespace. Other cove processes
//! reach that namespace through `/proc/<netd>/fd/<n>` (named in `netd.pid`).

use crate::{Error, IoContext, Result};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn pid_file(run: &Path) -> PathBuf {
    run.join("netd.pid")
}

/// The helper's pid and the descriptor number of its namespace, if it runs.
fn live(run: &Path) -> Option<(i32, i32)> {
    let t = std::fs::read_to_string(pid_file(run)).ok()?;
    let v: Vec<i64> = t.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let (pid, st, fd) = (*v.first()? as i32, *v.get(1)? as u64, *v.get(2)? as i32);
    (crate::monitor::start_time(pid) == Some(st)).then_some((pid, fd))
}

/// A handle on the rootless network namespace, starting the helper if needed; `config`: the
/// user's cove.conf ([`crate::config::path`]) for a helper started now.
pub fn rootless_netns(run: &Path, config: Option<&Path>) -> Result<OwnedFd> {
    let lock_path = run.join("netd.lock");
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).ctx(|| format!("open {}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| Error::Other(format!("lock netd.lock: {e}")))?;
    let (pid, fd) = match live(run) {
        Some(x) => x,
        None => {
            spawn(run, config)?;
            live(run).ok_or_else(|| Error::Other("the network helper did not start".into()))?
        }
    };
    let f = std::fs::File::open(format!("/proc/{pid}/fd/{fd}")).ctx(|| format!("open the network namespace of the helper (pid {pid})"))?;
    // Tell the helper it is in use, so it does not exit between now and the attach.
    let _ = std::fs::write(run.join("netd.used"), "");
    Ok(f.into())
}

fn spawn(run: &Path, config: Option<&Path>) -> Result<()> {
    // The helper reads the user's cove.conf at every reload; its path is settled by the
    // command (with the whole environment: the helper gets only COVE_*, PATH and HOME; and
    // knowing whether it is rootless, which the user namespace hides). Empty: none.
    let config = config.map(|p| p.display().to_string()).unwrap_or_default();
    let msg = crate::spawn_helper("cove-netd", "__netd", &[run.display().to_string(), config])?;
    if msg.starts_with("OK") {
        Ok(())
    } else {
        Err(Error::Other(format!("the network helper failed: {}", msg.trim_start_matches('E'))))
    }
}

fn idle_limit() -> Duration {
    Duration::from_secs(std::env::var("COVE_NETD_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10).max(1))
}

/// Number of container ends (`cv…`) on bridges in the namespace this thread is in.
fn attached_here() -> usize {
    std::fs::read_to_string("/proc/thread-self/net/dev")
        .map(|t| t.lines().filter(|l| l.trim_start().starts_with("cv")).count())
        .unwrap_or(0)
}

/// Entry point of `cove __netd RUNDIR CONFIG FD` (CONFIG: the user's cove.conf, or empty).
/// Never returns.
pub fn main(run: &Path, config: Option<&Path>, report: Option<OwnedFd>) -> ! {
    let mut report = report.map(std::fs::File::from);
    let fail = |report: &mut Option<std::fs::File>, msg: String| -> ! {
        if let Some(r) = report.as_mut() {
            let _ = r.write_all(format!("E{msg}").as_bytes());
        }
        cove_sys::exit_now(1)
    };
    let _ = std::env::set_current_dir("/");
    // cove's main restores SIGPIPE's default for the containers it starts; this helper splices
    // into sockets whose peers come and go, and must see EPIPE instead of dying (it did: every
    // published port and the namespace went with it).
    cove_sys::ignore_sigpipe();
    // Every relayed TCP connection holds six descriptors (two sockets, two pipes): the usual
    // soft limit of 1024 would cap a published port at ~170 concurrent clients.
    if let Ok((soft, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
    // A monitor that started us had signals blocked for its signalfd; the mask survives exec.
    let _ = nix::sys::signal::SigSet::all().thread_unblock();
    let netns = match cove_net::netns::create() {
        Ok(n) => n,
        Err(e) => fail(&mut report, format!("create the network namespace: {e}")),
    };
    // Inside: loopback up. IP forwarding stays off: containers talk within their bridge
    // (switched, not routed), and nothing is routed between bridges, which is what isolates
    // networks from each other until outbound access (and its nftables rules) is added.
    let setup = cove_net::netns::run_on_thread(netns.as_fd(), || -> std::result::Result<(), String> {
        let mut nl = cove_net::link::Netlink::open().map_err(|e| e.to_string())?;
        nl.loopback_up().map_err(|e| e.to_string())?;
        // Replies to published ports' clients (see transparent_source): without this rule
        // containers see the gateway as every client's address, which still works.
        match nl.route_marked_to_local(cove_net::nft::TRANSPARENT_MARK, cove_net::nft::TRANSPARENT_TABLE) {
            Ok(()) => TRANSPARENT_ROUTE.store(true, std::sync::atomic::Ordering::SeqCst),
            Err(e) => tracing::warn!("published ports will not keep client addresses: {e}"),
        }
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").map_err(|e| format!("disable forwarding: {e}"))?;
        // Bridged traffic (container to container on one network) skips netfilter: faster,
        // and the forward chain sees only routed packets.
        let _ = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "0");
        let _ = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-ip6tables", "0");
        Ok(())
    });
    match setup {
        Ok(Ok(())) => {}
        Ok(Err(e)) => fail(&mut report, e),
        Err(e) => fail(&mut report, e.to_string()),
    }
    let sock_path = run.join("netd.sock");
    let _ = std::fs::remove_file(&sock_path);
    let control = match crate::with_short_path(run, "netd.sock", |p| std::os::unix::net::UnixListener::bind(p)) {
        Ok(l) => l,
        Err(e) => fail(&mut report, format!("listen on {}: {e}", sock_path.display())),
    };
    let me = std::process::id() as i32;
    let line = format!("{me} {} {}\n", crate::monitor::start_time(me).unwrap_or(0), netns.as_raw_fd());
    let tmp = pid_file(run).with_extension("tmp");
    if std::fs::write(&tmp, line).and_then(|_| std::fs::rename(&tmp, pid_file(run))).is_err() {
        fail(&mut report, "write netd.pid".into());
    }
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = cove_sys::dup_onto(null.as_fd(), fd);
        }
    }
    // The DNS runtime's thread is made here, in the host's namespace (see crate::netdns).
    let rt = match crate::netdns::start_runtime() {
        Ok(rt) => rt,
        Err(e) => fail(&mut report, e),
    };
    let upstreams = crate::netdns::upstreams();
    // Outbound access (see crate::outbound). Started by this thread, which lives as long as
    // the process: the tool gets SIGTERM when it ends. Without one, containers still reach
    // each other; `cove run` has warned the user already.
    let (_outbound, host, mapped) = match crate::outbound::choose() {
        Ok(Some(tool)) => match crate::outbound::start(&tool, netns.as_fd(), &run.join("netd-outbound.log")) {
            Ok(child) => {
                let _ = std::fs::write(run.join("netd-outbound.pid"), format!("{}\n", child.id()));
                (Some(child), crate::outbound::host_address(&tool), crate::outbound::loopback_mapped(&tool))
            }
            Err(e) => {
                tracing::warn!("outbound access: {e}");
                (None, None, vec![])
            }
        },
        Ok(None) => (None, None, vec![]),
        Err(e) => {
            tracing::warn!("outbound access: {e}");
            (None, None, vec![])
        }
    };
    // Which networks reach the host's loopback (see crate::outbound): closed until the first
    // reload says otherwise.
    let policy = crate::outbound::LoopbackPolicy::default();
    let redirect = match crate::outbound::serve_tcp(netns.as_fd(), host, policy.clone()) {
        Ok(port) => Some(port),
        Err(e) => {
            tracing::warn!("outbound tcp: {e}");
            None
        }
    };
    let nat = Some(crate::outbound::Nat::new(redirect, _outbound.is_some(), mapped, policy));
    // cove.conf (its `allow_host_loopback` is the default of networks that do not say), the
    // file the command that started us found, re-read at every reload.
    let config = config.map(Path::to_path_buf);
    if let Some(mut r) = report.take() {
        let _ = r.write_all(b"OK");
    }
    // Watch for idleness from inside the namespace.
    let limit = idle_limit();
    let tick = Duration::from_millis(250);
    let run_owned = run.to_path_buf();
    let (jobs_tx, jobs) = std::sync::mpsc::channel::<Job>();
    let watcher = std::thread::spawn(move || {
        // This thread never leaves (rootless, it could not go back to the host's namespace).
        if nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            return;
        }
        let used_age = |run: &Path| {
            std::fs::metadata(run.join("netd.used")).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).unwrap_or(Duration::MAX)
        };
        let mut dns = crate::netdns::Dns::new(rt, upstreams, nat, host);
        dns.log = Some(run_owned.join("netd-outbound.log"));
        dns.config = config;
        let mut containers_seen = std::collections::BTreeSet::new();
        let mut last_busy = std::time::Instant::now();
        let mut served: std::collections::HashMap<String, Vec<cove_net::forward::Shutdown>> = Default::default();
        loop {
            match jobs.recv_timeout(tick) {
                Ok(Job::Sync { db, reply }) => {
                    let _ = reply.send(dns.sync(Some(&db)));
                    continue;
                }
                Ok(job) => {
                    handle(job, &mut served);
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => cove_sys::exit_now(1),
            }
            // Its run directory deleted (a test's, say): nobody can reach it any more.
            if !run_owned.join("netd.sock").exists() && !run_owned.exists() {
                cove_sys::exit_now(0);
            }
            // A container that exits loses its veth pair: its names go at the next tick.
            let containers: std::collections::BTreeSet<String> = crate::netdns::interfaces_here().into_iter().filter(|n| n.starts_with("cv")).collect();
            if containers != containers_seen {
                if let Err(e) = dns.sync(None) {
                    tracing::warn!("dns reload: {e}");
                }
                containers_seen = containers;
            }
            if !containers_seen.is_empty() {
                last_busy = std::time::Instant::now();
                continue;
            }
            if last_busy.elapsed() < limit || used_age(&run_owned) < limit {
                continue;
            }
            // Decide under the lock the CLIs take to find us: none can be between finding
            // us and attaching a container when we leave.
            let Ok(lock) = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(run_owned.join("netd.lock")) else { continue };
            let Ok(_held) = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive) else { continue };
            if attached_here() == 0 && used_age(&run_owned) >= limit {
                if live(&run_owned).map(|(p, _)| p) == Some(me) {
                    let _ = std::fs::remove_file(pid_file(&run_owned));
                }
                cove_sys::exit_now(0);
            }
        }
    });
    // The control socket: published ports come in as descriptors, leave by container id.
    for conn in control.incoming() {
        let Ok(conn) = conn else { continue };
        serve_control(conn, &jobs_tx);
        if watcher.is_finished() {
            break;
        }
    }
    let _ = watcher.join();
    cove_sys::exit_now(0)
}

/// The policy routing for transparent sockets is in place (set once at start).
static TRANSPARENT_ROUTE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The subnets of the ruleset that is in place, once one with the `transparent` chain is:
/// `None` until then (and while nft is missing), so no transparent socket is made whose
/// replies nothing would route back.
static TRANSPARENT_SUBNETS: std::sync::RwLock<Option<Vec<cove_net::ipam::Subnet>>> = std::sync::RwLock::new(None);

/// Called by the ruleset's owner ([`crate::outbound::Nat`]) after applying a ruleset for
/// these subnets.
pub(crate) fn ruleset_applied(subnets: Vec<cove_net::ipam::Subnet>) {
    *TRANSPARENT_SUBNETS.write().unwrap_or_else(|e| e.into_inner()) = Some(subnets);
}

/// The source address a published port's upstream socket should use so that the container
/// sees the real client (rootlesskit v3 does this for TCP; here UDP too): the client's own
/// address, bound with `IP_TRANSPARENT` inside the namespace. `None` (the gateway's address,
/// as before) when that cannot work: a loopback client (the container would answer its own
/// loopback), a client address inside one of cove's subnets (the reply would go to a
/// container), another address family than the container's, or the routing and ruleset
/// that bring replies back are not in place.
fn transparent_source(peer: std::net::SocketAddr, target: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, SocketAddr};
    if !TRANSPARENT_ROUTE.load(std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    let ip = match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let bad = ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || ip.is_ipv4() != target.is_ipv4();
    let bad = bad || matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
    if bad {
        return None;
    }
    let guard = TRANSPARENT_SUBNETS.read().unwrap_or_else(|e| e.into_inner());
    let subnets = guard.as_ref()?;
    if subnets.iter().any(|s| s.contains(ip)) {
        return None;
    }
    Some(SocketAddr::new(ip, peer.port()))
}

enum Job {
    /// Reload the DNS records (and listeners) from this database; reply when done.
    Sync { db: PathBuf, reply: std::sync::mpsc::Sender<std::result::Result<(), String>> },
    Add { id: String, udp: bool, target: std::net::SocketAddr, fd: OwnedFd },
    Del { id: String },
}

/// Reads `ADD id proto ip port` lines (each with one descriptor) and `DEL id` until `END`.
fn serve_control(conn: std::os::unix::net::UnixStream, jobs: &std::sync::mpsc::Sender<Job>) {
    let mut pending_fd: Option<OwnedFd> = None;
    let mut line = Vec::new();
    let reply = |c: &std::os::unix::net::UnixStream, msg: &str| {
        let mut c = c;
        let _ = c.write_all(msg.as_bytes());
    };
    loop {
        let mut b = [0u8; 1];
        let (n, fd) = match cove_sys::recv_with_fd(conn.as_fd(), &mut b) {
            Ok(x) => x,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        if fd.is_some() {
            // The descriptor rides on a one-byte marker of its own, not part of a line.
            pending_fd = fd;
            continue;
        }
        if b[0] != b'\n' {
            line.push(b[0]);
            if line.len() > 512 {
                return reply(&conn, "ERR line too long\n");
            }
            continue;
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        line.clear();
        if let Some(db) = text.strip_prefix("SYNC ") {
            let (tx, rx) = std::sync::mpsc::channel();
            let _ = jobs.send(Job::Sync { db: PathBuf::from(db), reply: tx });
            return match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(())) => reply(&conn, "OK\n"),
                Ok(Err(e)) => reply(&conn, &format!("ERR {}\n", e.replace('\n', " "))),
                Err(_) => reply(&conn, "ERR no answer from the network namespace thread\n"),
            };
        }
        let f: Vec<&str> = text.split_whitespace().collect();
        match f.as_slice() {
            ["END"] => return reply(&conn, "OK\n"),
            ["DEL", id] => {
                let _ = jobs.send(Job::Del { id: id.to_string() });
            }
            ["ADD", id, proto, ip, port] => {
                let (Some(fd), Ok(ip), Ok(port)) = (pending_fd.take(), ip.parse::<std::net::IpAddr>(), port.parse::<u16>()) else {
                    return reply(&conn, "ERR bad ADD\n");
                };
                let _ = jobs.send(Job::Add { id: id.to_string(), udp: *proto == "udp", target: std::net::SocketAddr::new(ip, port), fd });
            }
            _ => return reply(&conn, "ERR unknown command\n"),
        }
    }
}

/// Runs on the thread inside the rootless namespace: threads it starts are inside too, so
/// every socket they connect lives there.
fn handle(job: Job, served: &mut std::collections::HashMap<String, Vec<cove_net::forward::Shutdown>>) {
    match job {
        Job::Sync { .. } => {}
        Job::Del { id } => {
            for s in served.remove(&id).unwrap_or_default() {
                s.trigger();
            }
        }
        Job::Add { id, udp, target, fd } => {
            let Ok(shutdown) = cove_net::forward::Shutdown::new() else { return };
            let sd = shutdown.clone();
            let r = std::thread::Builder::new().name(format!("port-{id:.8}")).spawn(move || {
                if udp {
                    let sock = std::net::UdpSocket::from(fd);
                    let connect = move |client: std::net::SocketAddr| -> std::io::Result<std::net::UdpSocket> {
                        match transparent_source(client, target) {
                            Some(src) => cove_net::forward::udp_upstream(target, Some(src)).or_else(|e| {
                                tracing::debug!("udp from {src} kept as the source: {e}; using the gateway's address");
                                cove_net::forward::udp_upstream(target, None)
                            }),
                            None => cove_net::forward::udp_upstream(target, None),
                        }
                    };
                    let _ = cove_net::forward::serve_udp(sock, connect, Default::default(), &sd);
                } else {
                    let listener = std::net::TcpListener::from(fd);
                    let connect = move |client: std::net::SocketAddr| match transparent_source(client, target) {
                        Some(src) => cove_net::forward::start_connect(target, Some(src)).or_else(|e| {
                            tracing::debug!("tcp from {src} kept as the source: {e}; using the gateway's address");
                            cove_net::forward::start_connect(target, None)
                        }),
                        None => cove_net::forward::start_connect(target, None),
                    };
                    let _ = cove_net::forward::serve_tcp(listener, connect, &sd);
                }
            });
            if r.is_ok() {
                served.entry(id).or_default().push(shutdown);
            }
        }
    }
}

/// Makes the helper reload its DNS records from the database at `db` (after a container joined
/// or left a network). Nothing to do when the helper is not running.
pub fn sync(run: &Path, db: &Path) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let Ok(mut s) = crate::with_short_path(run, "netd.sock", |p| std::os::unix::net::UnixStream::connect(p)) else { return Ok(()) };
    s.write_all(format!("SYNC {}\n", db.display()).as_bytes()).ctx(|| "talk to the network helper".into())?;
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply).ctx(|| "read from the network helper".into())?;
    match reply.trim() {
        "OK" => Ok(()),
        r => Err(Error::Other(format!("network helper: {}", r.trim_start_matches("ERR ")))),
    }
}

/// Whether the helper runs (some container is, or was a moment ago, on a network).
pub fn running(run: &Path) -> bool {
    live(run).is_some()
}

/// Stops the helper (tests and `system migrate`).
pub fn stop(run: &Path) {
    if let Some((pid, _)) = live(run) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        let _ = std::fs::remove_file(pid_file(run));
    }
}
