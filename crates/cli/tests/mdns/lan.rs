//! A simulated LAN for the mDNS end-to-end tests (issue 15), built from network namespaces this
//! process makes (root only): never a packet of mDNS on the machine's real interfaces.
//!
//! - [`Lan::new`]: a "switch" namespace with a bridge `br0` (multicast snooping off, so every
//!   multicast floods to every port), 192.168.88.1/24 and fd88::1/64 on it.
//! - [`Lan::host`]: a namespace on that bridge through a veth pair: `eth0` with 192.168.88.(10+n)/24,
//!   fd88::(10+n)/64 and a link-local address (no DAD: usable at once), MULTICAST, routes for
//!   224.0.0.0/4 and ff02::/16 on eth0 and a default route to the bridge (so pasta, which wants
//!   one, starts in a host's namespace; nothing is routed beyond the switch).
//! - Peers in a host's namespace: [`Host::avahi`] (avahi-daemon without D-Bus, in a private mount
//!   namespace with its own /etc/avahi and /run; or with a private bus of its own,
//!   [`AvahiOpts::with_dbus`], for avahi-resolve and avahi-browse), [`Host::zeroconf`]
//!   (python-zeroconf behind a JSON-line agent, `zeroconf_agent.py`), [`Host::mdns_query`] (one
//!   raw query and every reply, `mdns_query.py`), [`Host::dig`], [`Host::spawn`] (anything).
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
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin};
use std::sync::atomic::AtomicU32;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const ZEROCONF_AGENT: &str = include_str!("zeroconf_agent.py");
const MDNS_QUERY: &str = include_str!("mdns_query.py");
const PREFIX: &str = "cove-lan-";

/// A private system bus for one avahi peer (root only reaches it: the socket is in the peer's
/// own /run): everything allowed.
const DBUS_CONF: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
"#;

/// Debian's python (python3-zeroconf is installed for it), whatever `python3` PATH finds first.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// `dir/name` with `text` (written once per LAN; renamed into place, so a parallel reader never
/// sees half of it).
fn script_file(dir: &Path, name: &str, text: &str) -> PathBuf {
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
    dir: PathBuf,
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

    /// avahi-daemon on this host: no D-Bus, only eth0, IPv4 and IPv6, as root in a private mount
    /// namespace whose /etc/avahi (config, `hosts`, `services/`) and /run are its own, so that
    /// several can run on one LAN and beside cove in one namespace. Returns once avahi says
    /// startup is complete and every static host and service is established (panics with its
    /// log after 10 s).
    pub fn avahi(&self, opts: AvahiOpts) -> AvahiPeer {
        static MADE: AtomicU32 = AtomicU32::new(0);
        let installed = |p: &str| Path::new(p).exists();
        assert!(
            installed("/usr/sbin/avahi-daemon"),
            "avahi-daemon is not installed (scripts/setup-host.sh installs it)"
        );
        assert!(
            !opts.dbus || (installed("/usr/bin/dbus-daemon") && installed("/usr/bin/avahi-resolve")),
            "dbus-daemon or avahi-utils is not installed (scripts/setup-host.sh installs them)"
        );
        let k = MADE.fetch_add(1, Ordering::SeqCst);
        let host_name = opts.host_name.clone().unwrap_or_else(|| format!("{}-avahi{k}", self.name));
        let conf = tempfile::Builder::new().prefix("avahi-").tempdir_in(&self.dir).expect("tempdir");
        std::fs::create_dir(conf.path().join("services")).unwrap();
        std::fs::write(
            conf.path().join("avahi-daemon.conf"),
            format!(
                "[server]\nhost-name={host_name}\ndomain-name=local\nuse-ipv4=yes\nuse-ipv6=yes\n\
                 allow-interfaces={}\nenable-dbus={}\n\n[wide-area]\nenable-wide-area=no\n\n\
                 [publish]\npublish-hinfo=no\npublish-workstation=no\n\n[reflector]\nenable-reflector=no\n\n\
                 [rlimits]\n",
                self.ifname,
                if opts.dbus { "yes" } else { "no" }
            ),
        )
        .unwrap();
        let hosts: String = opts.publish.iter().map(|(name, addr)| format!("{addr} {name}\n")).collect();
        std::fs::write(conf.path().join("hosts"), hosts).unwrap();
        for (i, s) in opts.services.iter().enumerate() {
            std::fs::write(conf.path().join(format!("services/s{i}.service")), s.xml()).unwrap();
        }
        // avahi-daemon reads /etc/avahi/hosts and /etc/avahi/services/ (fixed paths) and keeps its
        // pid file and socket in /run/avahi-daemon: all private to its mount namespace.
        // --no-drop-root: a uid change would clear the parent-death signal.
        // With a bus: a private dbus-daemon (its socket in the private /run, where avahi and
        // avahi-utils look), a child of the shell that becomes avahi-daemon, so it dies with it.
        let dbus = if opts.dbus {
            let dbus_conf = conf.path().join("dbus.conf");
            std::fs::write(&dbus_conf, DBUS_CONF).unwrap();
            format!(
                "mkdir /run/dbus && setpriv --pdeathsig KILL dbus-daemon --config-file={} --nofork --nopidfile & \
                 i=0; while [ ! -S /run/dbus/system_bus_socket ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; ",
                dbus_conf.display()
            )
        } else {
            String::new()
        };
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir /run/avahi-daemon && mount --bind {} /etc/avahi && {dbus}\
             exec avahi-daemon -f /etc/avahi/avahi-daemon.conf --no-drop-root --no-chroot --no-rlimits --no-proc-title",
            conf.path().display()
        );
        let t0 = Instant::now();
        let peer = self.spawn(&["unshare", "-m", "--propagation", "private", "sh", "-c", &script]);
        let mut avahi = AvahiPeer { peer, host_name, conf, host: self.clone() };
        let mut wanted = vec!["Server startup complete".to_string()];
        wanted.extend(opts.publish.iter().map(|(n, _)| format!("Static host name \"{n}\" successfully established")));
        wanted.extend(opts.services.iter().map(|s| format!("Service \"{}\"", s.name)));
        let ready = |log: &str| {
            wanted.iter().all(|w| {
                if w.starts_with("Service \"") {
                    log.lines().any(|l| l.starts_with(w.as_str()) && l.ends_with("successfully established."))
                } else {
                    log.contains(w.as_str())
                }
            })
        };
        while !ready(&avahi.log()) {
            if let Ok(Some(st)) = avahi.peer.child.try_wait() {
                panic!("avahi-daemon in {} exited ({st}):\n{}", self.ns, avahi.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "avahi-daemon in {} not ready after 10 s:\n{}",
                self.ns,
                avahi.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        avahi
    }

    /// A python-zeroconf peer on this host (bound to eth0's IPv4 and IPv6 addresses), ready.
    pub fn zeroconf(&self) -> ZeroconfPeer {
        let script = script_file(&self.dir, "zeroconf_agent.py", ZEROCONF_AGENT);
        let log = tempfile::NamedTempFile::new_in(&self.dir).expect("log file");
        let mut child = self
            .cmd("setpriv")
            .args(["--pdeathsig", "KILL", "--", python()])
            .arg(&script)
            .args([self.ipv4.to_string(), self.ipv6.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("start the zeroconf agent");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let zc = ZeroconfPeer { peer: Peer { child, log }, io: Mutex::new((stdin, rx)), host: self.clone() };
        let ready = zc.read_reply(Duration::from_secs(15));
        assert_eq!(
            ready["ready"],
            true,
            "zeroconf agent in {} (python3-zeroconf: scripts/setup-host.sh installs it): {ready}\n{}",
            self.ns,
            zc.peer.log()
        );
        zc
    }
}

/// A process started by [`Host::spawn`]: SIGKILLed and reaped on drop.
pub struct Peer {
    child: Child,
    log: tempfile::NamedTempFile,
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

/// What an avahi peer publishes. Build with [`AvahiOpts::new`] and its chained setters.
#[derive(Clone, Debug, Default)]
pub struct AvahiOpts {
    /// Its own host name (`NAME.local`, with its eth0 addresses); default `HOST-avahiK`.
    pub host_name: Option<String>,
    /// Static host names and their addresses (avahi's `hosts` file: one name per address
    /// family and line; any label count works, see mod.rs).
    pub publish: Vec<(String, IpAddr)>,
    /// Static services (avahi's `services/*.service`).
    pub services: Vec<AvahiService>,
    /// A private system bus for it, so that [`AvahiPeer::resolve`] and [`AvahiPeer::browse`]
    /// (avahi-utils) work; default: no D-Bus at all (`enable-dbus=no`).
    pub dbus: bool,
}

impl AvahiOpts {
    pub fn new() -> AvahiOpts {
        AvahiOpts::default()
    }

    pub fn host_name(mut self, name: &str) -> AvahiOpts {
        self.host_name = Some(name.to_string());
        self
    }

    /// With a private D-Bus: avahi-resolve and avahi-browse work ([`AvahiPeer::resolve`]).
    pub fn with_dbus(mut self) -> AvahiOpts {
        self.dbus = true;
        self
    }

    /// Publishes `name` (e.g. `printer.local`) with `addr`.
    pub fn publish(mut self, name: &str, addr: &str) -> AvahiOpts {
        self.publish.push((name.to_string(), addr.parse().expect("an IP address")));
        self
    }

    /// Publishes service `name` of type `ty` (`_http._tcp`) on `port` with TXT `txt` (`k=v`).
    pub fn service(mut self, ty: &str, name: &str, port: u16, txt: &[&str]) -> AvahiOpts {
        self.services.push(AvahiService {
            ty: ty.to_string(),
            name: name.to_string(),
            port,
            txt: txt.iter().map(|s| s.to_string()).collect(),
            host: None,
        });
        self
    }
}

/// One static service of an avahi peer.
#[derive(Clone, Debug)]
pub struct AvahiService {
    pub ty: String,
    pub name: String,
    pub port: u16,
    pub txt: Vec<String>,
    /// The SRV target; default: the peer's own host name.
    pub host: Option<String>,
}

impl AvahiService {
    fn xml(&self) -> String {
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let txt: String = self.txt.iter().map(|t| format!("    <txt-record>{}</txt-record>\n", esc(t))).collect();
        let host = self.host.as_deref().map(|h| format!("    <host-name>{}</host-name>\n", esc(h))).unwrap_or_default();
        format!(
            "<?xml version=\"1.0\" standalone='no'?>\n<!DOCTYPE service-group SYSTEM \"avahi-service.dtd\">\n\
             <service-group>\n  <name>{}</name>\n  <service>\n    <type>{}</type>\n    <port>{}</port>\n{host}{txt}  </service>\n</service-group>\n",
            esc(&self.name),
            esc(&self.ty),
            self.port
        )
    }
}

/// A running avahi-daemon (see [`Host::avahi`]); killed on drop ([`AvahiPeer::stop`]: a clean
/// exit with goodbyes).
pub struct AvahiPeer {
    pub peer: Peer,
    /// Its own host name, without `.local`.
    pub host_name: String,
    conf: tempfile::TempDir,
    pub host: Host,
}

impl AvahiPeer {
    /// What avahi-daemon printed so far (startup, conflicts: "Host name conflict", "withdrawing").
    pub fn log(&self) -> String {
        self.peer.log()
    }

    pub fn stop(&mut self) {
        self.peer.stop()
    }

    /// Runs `args` in avahi's namespaces (network, and mount: its /run with the private bus).
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.peer.pid().to_string(), "-m", "-n", "--"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("nsenter {args:?}: {e}"))
    }

    /// `avahi-resolve -n NAME` (`-6`: AAAA, else A) through this peer's daemon (needs
    /// [`AvahiOpts::with_dbus`]): the address, or `None` (avahi gives up after ~5 s).
    pub fn resolve(&self, name: &str, v6: bool) -> Option<IpAddr> {
        let o = self.exec(&["timeout", "10", "avahi-resolve", "-n", if v6 { "-6" } else { "-4" }, name]);
        String::from_utf8_lossy(&o.stdout).lines().find_map(|l| l.split('\t').nth(1)?.trim().parse().ok())
    }

    /// `avahi-browse -rptk TYPE` through this peer's daemon (needs [`AvahiOpts::with_dbus`]): the
    /// instances in its cache once avahi says "all for now", resolved, as [`ZeroconfPeer::browse`]
    /// gives them (full instance name, host with its final dot).
    pub fn browse(&self, ty: &str) -> Vec<ServiceInstance> {
        let o = self.exec(&["timeout", "10", "avahi-browse", "-rptk", ty]);
        let mut out: Vec<ServiceInstance> = vec![];
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            let f: Vec<&str> = l.splitn(10, ';').collect();
            if f.len() < 10 || f[0] != "=" {
                continue;
            }
            let name = format!("{}.{}.{}.", avahi_unescape(f[3]), f[4], f[5]);
            let addr: Option<IpAddr> = f[7].split('%').next().and_then(|a| a.parse().ok());
            if let Some(i) = out.iter_mut().find(|i| i.name == name) {
                i.addresses.extend(addr.filter(|a| !i.addresses.contains(a)));
                continue;
            }
            let txt = avahi_txt(f[9]).into_iter().map(|t| match t.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (t, String::new()),
            });
            out.push(ServiceInstance {
                name,
                host: format!("{}.", f[6]),
                port: f[8].parse().unwrap_or(0),
                addresses: addr.into_iter().collect(),
                txt: txt.collect(),
            });
        }
        out
    }
}

/// avahi-browse -p's label escapes: `\DDD` (decimal) and `\X`.
fn avahi_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let (mut out, mut i) = (vec![], 0);
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(std::str::from_utf8(&b[i + 1..i + 4]).unwrap().parse::<u16>().unwrap_or(63) as u8);
            i += 4;
        } else if b[i] == b'\\' && i + 1 < b.len() {
            out.push(b[i + 1]);
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// avahi-browse -p's TXT field: `"k=v" "k2=v2"`, each string quoted (`\"` inside).
fn avahi_txt(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut inside, mut esc) = (vec![], String::new(), false, false);
    for c in s.chars() {
        match (inside, esc, c) {
            (true, true, _) => {
                cur.push(c);
                esc = false;
            }
            (true, false, '\\') => esc = true,
            (true, false, '"') => {
                out.push(std::mem::take(&mut cur));
                inside = false;
            }
            (true, false, _) => cur.push(c),
            (false, _, '"') => inside = true,
            _ => {}
        }
    }
    out
}

/// A python-zeroconf peer (see [`Host::zeroconf`] and `zeroconf_agent.py`); killed on drop.
pub struct ZeroconfPeer {
    pub peer: Peer,
    io: Mutex<(ChildStdin, mpsc::Receiver<String>)>,
    pub host: Host,
}

/// One DNS-SD instance found by [`ZeroconfPeer::browse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInstance {
    /// The full instance name, `Web Box._http._tcp.local.`
    pub name: String,
    /// The SRV target, `host.local.`; empty if the instance could not be resolved.
    pub host: String,
    pub port: u16,
    pub addresses: Vec<IpAddr>,
    pub txt: BTreeMap<String, String>,
}

/// A goodbye (a record with TTL 0) seen by [`ZeroconfPeer::wait_goodbye`].
#[derive(Clone, Debug)]
pub struct Goodbye {
    /// When the agent received it (its wall clock: compare with `SystemTime::now()` here).
    pub at: SystemTime,
    /// The record's type: A, AAAA, PTR, SRV, TXT.
    pub rtype: String,
}

impl ZeroconfPeer {
    fn read_reply(&self, timeout: Duration) -> serde_json::Value {
        let io = self.io.lock().unwrap();
        match io.1.recv_timeout(timeout) {
            Ok(line) => serde_json::from_str(&line).unwrap_or_else(|e| panic!("zeroconf agent said {line:?}: {e}")),
            Err(e) => panic!("zeroconf agent in {}: no reply ({e}):\n{}", self.host.ns, self.peer.log()),
        }
    }

    /// Sends one command (`{"cmd": ..., ...}`) and returns the reply, or its error line.
    pub fn request(&self, cmd: serde_json::Value) -> Result<serde_json::Value, String> {
        let secs = cmd["timeout"].as_f64().or(cmd["seconds"].as_f64()).unwrap_or(0.0);
        {
            let mut io = self.io.lock().unwrap();
            writeln!(io.0, "{cmd}").unwrap_or_else(|e| panic!("zeroconf agent gone ({e}):\n{}", self.peer.log()));
            io.0.flush().unwrap();
        }
        let v = self.read_reply(Duration::from_secs_f64(secs + 20.0));
        if v["ok"] == true {
            Ok(v)
        } else {
            Err(v["error"].as_str().unwrap_or("?").to_string())
        }
    }

    fn must(&self, cmd: serde_json::Value) -> serde_json::Value {
        let what = cmd.to_string();
        self.request(cmd).unwrap_or_else(|e| panic!("zeroconf agent: {what}: {e}"))
    }

    /// Resolves `name` by mDNS (`rtype`: "A", "AAAA", or `None` for both in one query), forgetting
    /// what the cache held; returns with the first answer (with `None`, a responder that answers
    /// A and AAAA separately gives one family only: ask each), empty if none within `timeout`.
    pub fn resolve(&self, name: &str, rtype: Option<&str>, timeout: Duration) -> Vec<IpAddr> {
        self.resolve_timed(name, rtype, timeout).0
    }

    /// [`ZeroconfPeer::resolve`], and how long the answer took (ms; `None` without one).
    pub fn resolve_timed(&self, name: &str, rtype: Option<&str>, timeout: Duration) -> (Vec<IpAddr>, Option<f64>) {
        let v = self
            .must(serde_json::json!({"cmd": "resolve", "name": name, "type": rtype, "timeout": timeout.as_secs_f64()}));
        let addrs = v["addresses"].as_array().into_iter().flatten().filter_map(|a| a.as_str()?.parse().ok()).collect();
        (addrs, v["ms"].as_f64())
    }

    /// Browses `ty` (`_http._tcp`) for `secs`, then resolves every instance found (SRV, TXT and
    /// the addresses known once one is: a responder may leave out an address record it
    /// multicast less than a second ago, so resolve the host for all of them).
    pub fn browse(&self, ty: &str, secs: f64) -> Vec<ServiceInstance> {
        let v = self.must(serde_json::json!({"cmd": "browse", "type": ty, "seconds": secs}));
        v["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| ServiceInstance {
                name: i["name"].as_str().unwrap_or_default().to_string(),
                host: i["host"].as_str().unwrap_or_default().to_string(),
                port: i["port"].as_u64().unwrap_or(0) as u16,
                addresses: i["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str()?.parse().ok())
                    .collect(),
                txt: i["txt"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
            })
            .collect()
    }

    /// Answers A/AAAA queries for `name` with `addrs` (announced twice; no probing, no PTR).
    pub fn register_host(&self, name: &str, addrs: &[&str]) {
        self.must(serde_json::json!({"cmd": "register_host", "name": name, "addresses": addrs}));
    }

    /// Registers instance `instance` of `ty` on `port` with TXT `txt`, its SRV pointing at
    /// `zc-192-168-88-N.local.` (this host's addresses); returns the full instance name.
    pub fn register_service(&self, ty: &str, instance: &str, port: u16, txt: &[(&str, &str)]) -> String {
        let txt: serde_json::Map<String, serde_json::Value> =
            txt.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
        let v = self.must(
            serde_json::json!({"cmd": "register_service", "type": ty, "instance": instance, "port": port, "txt": txt}),
        );
        v["name"].as_str().unwrap_or_default().to_string()
    }

    /// Withdraws a host or service instance registered here (goodbye packets, TTL 0).
    pub fn unregister(&self, name: &str) {
        self.must(serde_json::json!({"cmd": "unregister", "name": name}));
    }

    /// From now on, goodbyes for `name` (a record's name, or a PTR's target) count.
    pub fn watch_goodbye(&self, name: &str) {
        self.must(serde_json::json!({"cmd": "watch_goodbye", "name": name}));
    }

    /// The first goodbye for `name` since [`ZeroconfPeer::watch_goodbye`], waiting up to `timeout`.
    pub fn wait_goodbye(&self, name: &str, timeout: Duration) -> Option<Goodbye> {
        let v = self.must(serde_json::json!({"cmd": "wait_goodbye", "name": name, "timeout": timeout.as_secs_f64()}));
        (v["seen"] == true).then(|| Goodbye {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs_f64(v["at"].as_f64().unwrap_or(0.0)),
            rtype: v["type"].as_str().unwrap_or_default().to_string(),
        })
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
