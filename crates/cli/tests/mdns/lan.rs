//! A simulated LAN for the mDNS end-to-end tests (issue 15), built from network namespaces this
//! process makes (root only): never a packet of mDNS on the machine's real interfaces.
//!
//! - [`Lan::new`]: a "switch" namespace with a bridge `br0` (multicast snooping off, so every
//!   multicast floods to every port), 192.168.88.1/24 and fd88::1/64 on it.
//! - [`Lan::host`]: a namespace on that bridge through a veth pair: `eth0` with 192.168.88.(10+n)/24,
//!   fd88::(10+n)/64 and a link-local address (no DAD: usable at once), MULTICAST, routes for
//!   224.0.0.0/4 and ff02::/16 on eth0 and a default route to the bridge (so pasta, which wants
//!   one, starts in a host's namespace; nothing is routed beyond the switch).
//! - Peers in a host's namespace: [`Host::avahi`] (avahi.rs: avahi-daemon without D-Bus, in a
//!   private mount namespace with its own /etc/avahi and /run; or with a private bus of its own,
//!   [`AvahiOpts::with_dbus`], for avahi-resolve and avahi-browse), [`Host::zeroconf`]
//!   (zeroconf.rs: python-zeroconf behind a JSON-line agent, `zeroconf_agent.py`),
//!   [`Host::mdns_query`] (one raw query and every reply, `mdns_query.py`), [`Host::dig`],
//!   [`Host::spawn`] (anything).
//! - cove itself in a host's namespace: [`Host::world`] / `World::new_in` (as root, covetest or
//!   covenosub), [`lan_worlds`] for one world per user.
//!
//! Cleanup: dropping the [`Lan`] kills every process left in its namespaces and deletes them;
//! each peer is killed on drop and is started with PR_SET_PDEATHSIG (setpriv), so it dies with
//! the thread that started it even if the test is killed; `Lan::new` first deletes the
//! `cove-lan-PID-*` namespaces of processes that are gone. Declare the `Lan` before the worlds
//! and peers that live in it (locals drop in reverse order: a world's cleanup runs its cove
//! commands in the namespace, which must still exist).
//!
//! A test (root pass only; cove as covetest in h1, avahi on h2, zeroconf on h3):
//! ```ignore
//! let Some(()) = root_only("mdns_publishes_containers") else { return };
//! let lan = Lan::new();                                   // first: dropped last
//! let (h1, h2, h3) = (lan.host("h1"), lan.host("h2"), lan.host("h3"));
//! let avahi = h2.avahi(AvahiOpts::new().publish("printer.office.local", "192.168.88.50")
//!     .service("_ipp._tcp", "Office", 631, &["rp=print"]));
//! let zc = h3.zeroconf();
//! let Some(w) = h1.world(Some("covetest")) else { return }; // cove in h1, as covetest
//! w.ok(&["network", "create", "--mdns", "mycluster"]);
//! w.ok(&["run", "-d", "--name", "node1", "--network", "mycluster", "-p", "12000:6379", "bb", "sleep", "60"]);
//! assert_eq!(zc.resolve("node1.mycluster.local", Some("A"), Duration::from_secs(3)), vec![IpAddr::from(h1.ipv4)]);
//! assert!(w.sh_ok(&[], "nslookup printer.office.local").contains("192.168.88.50"));
//! zc.watch_goodbye("node1.mycluster.local");
//! let t0 = SystemTime::now();
//! w.ok(&["rm", "-f", "node1"]);
//! let g = zc.wait_goodbye("node1.mycluster.local", Duration::from_secs(2)).expect("goodbye");
//! ```
//! For every user: `for (label, user) in lan_users(test)? { let h = lan.host(...); h.world(user) }`.
//!
//! Timing: a Lan with two hosts takes ~0.1 s; an avahi peer ~1–2 s to be ready (it probes
//! every name: 3 × 250 ms after a random delay); a zeroconf peer ~0.1 s. Right after avahi is
//! ready, its answer to a query may wait up to 1 s: it has just announced its records and
//! multicasts a record at most once a second (RFC 6762 §6), so time answers after that.
//!
//! Names: namespaces `cove-lan-PID-N-sw` and `cove-lan-PID-N-HOST` (N counts the LANs of this
//! process), interfaces `br0`, `pK` (switch side) and `eth0` (host side): each LAN is its own
//! set of namespaces, so every LAN uses the same addresses and parallel tests never collide.
#![allow(dead_code)] // the fixture's API is for the mDNS tests; the self-tests use part of it

use super::super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::AtomicU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MDNS_QUERY: &str = include_str!("mdns_query.py");
const PREFIX: &str = "cove-lan-";

/// Debian's python (python3-zeroconf is installed for it), whatever `python3` PATH finds first.
pub(super) fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// `dir/name` with `text` (written once per LAN; renamed into place, so a parallel reader never
/// sees half of it).
pub(super) fn script_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if !path.exists() {
        let tmp = tempfile::NamedTempFile::new_in(dir).expect("temp file");
        std::fs::write(tmp.path(), text).unwrap();
        tmp.persist(&path).expect("persist the script");
    }
    path
}

/// Runs `ip ARGS`; panics with its stderr on failure.
fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(o.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
}

/// `ip netns exec NS sysctl -qw SETTINGS`.
fn sysctl(ns: &str, settings: &[&str]) {
    let o =
        Command::new("ip").args(["netns", "exec", ns, "sysctl", "-qw"]).args(settings).output().expect("run sysctl");
    assert!(o.status.success(), "sysctl in {ns} {settings:?}: {}", String::from_utf8_lossy(&o.stderr).trim());
}

fn netns_names() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// Kills every process in namespace `ns` (SIGKILL, by pid) and deletes it.
fn delete_netns(ns: &str) {
    if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
}

/// Deletes the namespaces (and kills their processes) that a LAN of a process now gone left.
pub fn sweep_stale() {
    for ns in netns_names() {
        let Some(rest) = ns.strip_prefix(PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            delete_netns(&ns);
        }
    }
}

/// One simulated LAN: the switch namespace and the hosts made on it. Removed on drop.
pub struct Lan {
    /// `cove-lan-PID-N`: every namespace of this LAN starts with it.
    pub name: String,
    /// The switch's namespace (bridge `br0`).
    pub switch: String,
    hosts: Mutex<Vec<String>>,
    dir: tempfile::TempDir,
}

impl Lan {
    /// The switch, with no host yet. Root only (the callers' tests are in the root pass).
    pub fn new() -> Lan {
        static MADE: AtomicU32 = AtomicU32::new(0);
        sweep_stale();
        let name = format!("{PREFIX}{}-{}", std::process::id(), MADE.fetch_add(1, Ordering::SeqCst));
        let switch = format!("{name}-sw");
        let dir = tempfile::Builder::new().prefix("cove-lan-").tempdir_in(common::tmp_base()).expect("tempdir");
        // Made before anything can fail, so that drop removes whatever was made.
        let lan = Lan { name, switch: switch.clone(), hosts: Mutex::new(vec![]), dir };
        ip(&["netns", "add", &switch]);
        sysctl(&switch, &["net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0"]);
        ip(&["-n", &switch, "link", "set", "lo", "up"]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"]);
        ip(&["-n", &switch, "addr", "add", "192.168.88.1/24", "dev", "br0"]);
        ip(&["-n", &switch, "addr", "add", "fd88::1/64", "dev", "br0", "nodad"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        lan
    }

    /// A new host `name` (short: it is part of its namespace's name) on the switch.
    pub fn host(&self, name: &str) -> Host {
        assert!(
            !name.is_empty() && name.len() <= 20 && name.chars().all(|c| c.is_ascii_alphanumeric()),
            "host name {name:?}: letters and digits, at most 20"
        );
        let mut hosts = self.hosts.lock().unwrap();
        let ns = format!("{}-{name}", self.name);
        assert!(!hosts.contains(&ns), "host {name} already on this LAN");
        let n = hosts.len() as u8 + 1;
        assert!(n <= 200, "at most 200 hosts on a LAN");
        hosts.push(ns.clone());
        drop(hosts);
        let ipv4 = Ipv4Addr::new(192, 168, 88, 10 + n);
        // fd88::11 for .11: the last group reads as the IPv4 address's last byte.
        let last = u16::from_str_radix(&(10 + u16::from(n)).to_string(), 16).unwrap();
        let ipv6 = Ipv6Addr::new(0xfd88, 0, 0, 0, 0, 0, 0, last);
        let port = format!("p{n}");
        ip(&["netns", "add", &ns]);
        // Addresses usable at once: no duplicate address detection on this LAN.
        sysctl(&ns, &["net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &self.switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
        ip(&["-n", &self.switch, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("{ipv4}/24"), "dev", "eth0"]);
        ip(&["-n", &ns, "addr", "add", &format!("{ipv6}/64"), "dev", "eth0", "nodad"]);
        ip(&["-n", &ns, "link", "set", "eth0", "multicast", "on", "up"]);
        ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        ip(&["-n", &ns, "-6", "route", "add", "ff02::/16", "dev", "eth0"]);
        ip(&["-n", &ns, "route", "add", "default", "via", "192.168.88.1"]);
        ip(&["-n", &ns, "-6", "route", "add", "default", "via", "fd88::1"]);
        let o = Command::new("ip")
            .args(["-n", &ns, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"])
            .output()
            .expect("run ip");
        let text = String::from_utf8_lossy(&o.stdout);
        let ipv6_ll = text
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no link-local address on {ns}'s eth0: {text}"));
        Host {
            name: name.to_string(),
            ns,
            ifname: "eth0".into(),
            ipv4,
            ipv6,
            ipv6_ll,
            dir: self.dir.path().to_path_buf(),
        }
    }

    /// Every namespace of this LAN (the switch first).
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.switch.clone()];
        v.extend(self.hosts.lock().unwrap().iter().cloned());
        v
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a host's namespace deletes its veth pair, and the switch's the bridge.
        for ns in self.hosts.lock().unwrap().iter() {
            delete_netns(ns);
        }
        delete_netns(&self.switch);
    }
}

/// One host of a [`Lan`]: a network namespace on the switch. Plain data (clone it freely);
/// valid while its `Lan` lives.
#[derive(Clone, Debug)]
pub struct Host {
    /// The name given to [`Lan::host`].
    pub name: String,
    /// Its namespace, for `ip netns exec`.
    pub ns: String,
    /// Its interface on the LAN: `eth0`.
    pub ifname: String,
    pub ipv4: Ipv4Addr,
    /// A ULA, fd88::(10+n)/64.
    pub ipv6: Ipv6Addr,
    /// eth0's link-local address.
    pub ipv6_ll: Ipv6Addr,
    pub(super) dir: PathBuf,
}

impl Host {
    /// `prog` to run in this host's namespace (as root): `ip netns exec NS prog`.
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, prog]).stdin(Stdio::null());
        c
    }

    /// Runs `args` in the namespace and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("run {args:?} in {}: {e}", self.ns))
    }

    /// `sh -c script` in the namespace.
    pub fn sh(&self, script: &str) -> Output {
        self.run(&["sh", "-c", script])
    }

    /// Python (Debian's, with zeroconf) in the namespace: `python3 -c script args...`.
    pub fn python(&self, script: &str, args: &[&str]) -> Output {
        self.cmd(python()).arg("-c").arg(script).args(args).output().expect("run python3")
    }

    /// One ICMP echo to `addr` (busybox's ping: iputils may be missing), within 2 s.
    pub fn ping(&self, addr: &str) -> bool {
        self.run(&["busybox", "ping", "-c", "1", "-W", "2", addr]).status.success()
    }

    /// `dig +time=1 +tries=1 ARGS` in the namespace; its stdout. For legacy unicast, ask a peer's
    /// own address (`-p 5353 @192.168.88.12 NAME`): dig 9.18 connects its socket to the server
    /// address, so replies to `@224.0.0.251` (which come from the responder's address) never
    /// reach it. [`Host::mdns_query`] asks the group.
    pub fn dig(&self, args: &[&str]) -> String {
        let o = self.cmd("dig").args(["+time=1", "+tries=1"]).args(args).output().expect("run dig");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// One mDNS query for `name` (`qtype`: A, AAAA, PTR, SRV, TXT, ANY) to `dest` (224.0.0.251,
    /// `ff02::fb%eth0`, or a unicast address) from an ephemeral port (legacy unicast), or from
    /// 5353 with the QU bit when `qu`; every reply within `wait`.
    pub fn mdns_query(&self, dest: &str, name: &str, qtype: &str, wait: Duration, qu: bool) -> Vec<MdnsReply> {
        let secs = format!("{:.3}", wait.as_secs_f64());
        let mut args = vec![dest, name, qtype, &secs];
        if qu {
            args.push("--qu");
        }
        let script = script_file(&self.dir, "mdns_query.py", MDNS_QUERY);
        let o = self.cmd(python()).arg(&script).args(&args).output().expect("run python3");
        assert!(o.status.success(), "mdns_query.py {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("mdns_query.py prints JSON");
        v["replies"].as_array().into_iter().flatten().map(MdnsReply::from_json).collect()
    }

    /// A cove world whose commands run in this namespace, as root (`None`) or as `user`.
    pub fn world(&self, user: Option<&str>) -> Option<World> {
        World::new_in(&self.ns, user)
    }

    /// A long-running process in the namespace, with PR_SET_PDEATHSIG (SIGKILL): it dies with
    /// the thread that starts it. Killed on the returned guard's drop.
    pub fn spawn(&self, args: &[&str]) -> Peer {
        let log = tempfile::NamedTempFile::new_in(&self.dir).expect("log file");
        let child = self
            .cmd("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .args(args)
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {args:?} in {}: {e}", self.ns));
        Peer { child, log }
    }
}

/// A process started by [`Host::spawn`]: SIGKILLed and reaped on drop.
pub struct Peer {
    pub(super) child: Child,
    pub(super) log: tempfile::NamedTempFile,
}

impl Peer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits up to `timeout` for `needle` in its output.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(|| self.log().contains(needle), timeout.as_secs().max(1))
    }

    /// SIGTERM (a clean exit: avahi and zeroconf send their goodbyes), then waits up to 5 s,
    /// then SIGKILL.
    pub fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One reply to [`Host::mdns_query`].
#[derive(Clone, Debug)]
pub struct MdnsReply {
    /// The responder's address and source port.
    pub from: IpAddr,
    pub port: u16,
    /// The reply's ID, and the query's (a legacy unicast reply echoes it).
    pub id: u16,
    pub query_id: u16,
    /// The questions it echoes, as `(name, type)`.
    pub questions: Vec<(String, String)>,
    pub answers: Vec<MdnsRecord>,
    pub additionals: Vec<MdnsRecord>,
}

/// A record of an [`MdnsReply`]; `data` is the address, PTR target, `prio weight port target`
/// for SRV, or the TXT rdata in hex.
#[derive(Clone, Debug)]
pub struct MdnsRecord {
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    /// The cache-flush bit.
    pub unique: bool,
    pub data: String,
}

impl MdnsReply {
    fn from_json(v: &serde_json::Value) -> MdnsReply {
        let recs = |v: &serde_json::Value| -> Vec<MdnsRecord> {
            v.as_array()
                .into_iter()
                .flatten()
                .map(|r| MdnsRecord {
                    name: r["name"].as_str().unwrap_or_default().to_string(),
                    rtype: r["type"].as_str().unwrap_or_default().to_string(),
                    ttl: r["ttl"].as_u64().unwrap_or(0) as u32,
                    unique: r["unique"] == true,
                    data: r["data"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        };
        MdnsReply {
            from: v["from"]
                .as_str()
                .and_then(|a| a.split('%').next()?.parse().ok())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port: v["port"].as_u64().unwrap_or(0) as u16,
            id: v["id"].as_u64().unwrap_or(0) as u16,
            query_id: v["query_id"].as_u64().unwrap_or(0) as u16,
            questions: v["questions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|q| {
                    (
                        q["name"].as_str().unwrap_or_default().to_string(),
                        q["type"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            answers: recs(&v["answers"]),
            additionals: recs(&v["additionals"]),
        }
    }
}

/// `None` outside the root pass, after a note (only root builds namespaces): for tests that run
/// cove as root only, or not at all.
pub fn root_only(test: &str) -> Option<()> {
    if is_root() {
        Some(())
    } else {
        println!("note: {test} runs in the root pass (it builds a simulated LAN of network namespaces)");
        None
    }
}

/// The users cove runs as in a LAN test: `None` outside the root pass (after a note: only root
/// can build namespaces, and the root pass runs cove as each user through runuser), else root
/// (`None` user) and covetest and covenosub where they exist (a missing one is a skip).
pub fn lan_users(test: &str) -> Option<Vec<(&'static str, Option<&'static str>)>> {
    if !is_root() {
        println!("note: {test} runs in the root pass (as root, covetest and covenosub, on a simulated LAN)");
        return None;
    }
    let mut users = vec![("root", None)];
    for u in ["covetest", "covenosub"] {
        if nix::unistd::User::from_name(u).ok().flatten().is_some() {
            users.push((u, Some(u)));
        } else {
            skip(&format!("no user {u} (tests/run-all.sh makes it): {test} not checked as {u}"));
        }
    }
    Some(users)
}

/// One cove world per user of [`lan_users`], each running in `host`'s namespace (they share
/// it: for tests where several cove instances on one host are wanted; otherwise make one
/// host per user with `lan_users`).
pub fn lan_worlds(test: &str, host: &Host) -> Option<Vec<(&'static str, World)>> {
    let users = lan_users(test)?;
    Some(users.into_iter().filter_map(|(label, u)| Some((label, host.world(u)?))).collect())
}
