//! avahi-daemon as a peer on the simulated LAN ([`Host::avahi`]): its own config, hosts file,
//! services and /run in a private mount namespace, no D-Bus unless asked for (then a private bus
//! for avahi-resolve and avahi-browse).
#![allow(dead_code)] // the fixture's API is for the mDNS tests; the self-tests use part of it

use super::super::*;
use super::lan::*;
use super::ServiceInstance;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

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

impl Host {
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
