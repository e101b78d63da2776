//! mDNS end-to-end tests (issue 15), on a simulated LAN of network namespaces ([`lan`]); never
//! on this machine's real interfaces. Building namespaces needs root: these tests run in the
//! root pass (cove itself as root, covetest and covenosub inside a LAN host), and print a note
//! in the unprivileged passes.
//!
//! The `mdns_lan_*` tests check the test bed itself with real peers: avahi-daemon and
//! python-zeroconf. What they established:
//! - avahi's `hosts` file publishes names of any label count (`printer.local`,
//!   `node1.mycluster.local`, `a.b.c.local`, `w.x.y.z.local`), each answered by mDNS with its
//!   address; one name per line and address family.
//! - `dig -p 5353 @224.0.0.251 NAME` never gets an answer with dig 9.18 (Debian 12): dig
//!   connects its UDP socket to 224.0.0.251, and a responder's legacy unicast reply comes from its
//!   own address, which the kernel then drops. `dig -p 5353 @PEER_ADDRESS NAME` works (legacy
//!   unicast too), and [`lan::Host::mdns_query`] asks the group and shows every reply.

mod avahi;
mod cove;
mod lan;
mod zeroconf;

pub use avahi::*;
pub use lan::*;
pub use zeroconf::*;

use super::*;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

fn ips(v: &[&str]) -> Vec<IpAddr> {
    v.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn mdns_lan_hosts_ping_and_multicast_over_the_bridge() {
    let Some(()) = root_only("mdns_lan_hosts_ping_and_multicast_over_the_bridge") else { return };
    let t0 = Instant::now();
    let lan = Lan::new();
    let (h1, h2) = (lan.host("h1"), lan.host("h2"));
    println!("Lan::new + 2 hosts: {:?}", t0.elapsed());
    assert_eq!((h1.ipv4.to_string(), h2.ipv6.to_string()), ("192.168.88.11".into(), "fd88::12".into()));
    assert!(h1.ping(&h2.ipv4.to_string()), "h1 -> h2 over IPv4");
    assert!(h2.ping(&h1.ipv4.to_string()), "h2 -> h1 over IPv4");
    assert!(h1.ping(&h2.ipv6.to_string()), "h1 -> h2 over IPv6 (ULA)");
    assert!(h2.ping(&format!("{}%eth0", h1.ipv6_ll)), "h2 -> h1 over IPv6 (link-local)");

    // Multicast floods through the bridge: a datagram to a group (IPv4, and IPv6 link-scope)
    // sent by h1 reaches a member on h2. Another group and port than mDNS's.
    let recv = r#"
import socket, struct, sys
v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v4.bind(("0.0.0.0", 5400))
v4.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton("239.255.88.1") + socket.inet_aton("0.0.0.0"))
v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1); v6.bind(("::", 5400))
v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, socket.inet_pton(socket.AF_INET6, "ff02::1:88") + struct.pack("@I", socket.if_nametoindex("eth0")))
print("ready", flush=True)
for s in (v4, v6):
    s.settimeout(10)
    d, a = s.recvfrom(100)
    print("got", d.decode(), a[0], flush=True)
"#;
    let rx = h2.spawn(&["/usr/bin/python3", "-c", recv]);
    assert!(rx.wait_log("ready", Duration::from_secs(10)), "receiver: {}", rx.log());
    let send = r#"
import socket, struct
v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
v4.sendto(b"hello4", ("239.255.88.1", 5400))
v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex("eth0"))
v6.sendto(b"hello6", ("ff02::1:88", 5400, 0, socket.if_nametoindex("eth0")))
"#;
    let o = h1.python(send, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(rx.wait_log("got hello6", Duration::from_secs(5)), "multicast h1 -> h2: {}", rx.log());
    let log = rx.log();
    assert!(log.contains("got hello4 192.168.88.11"), "{log}");
    assert!(log.contains(&format!("got hello6 {}", h1.ipv6_ll)), "{log}");
}

#[test]
fn mdns_lan_zeroconf_resolves_avahi_names_and_browses_its_services() {
    let Some(()) = root_only("mdns_lan_zeroconf_resolves_avahi_names_and_browses_its_services") else { return };
    let lan = Lan::new();
    let (h1, h2) = (lan.host("h1"), lan.host("h2"));
    let t0 = Instant::now();
    let avahi = h1.avahi(
        AvahiOpts::new()
            .host_name("avahi1")
            .publish("printer.local", "192.168.88.50")
            .publish("printer.local", "fd88::50")
            .publish("node1.mycluster.local", "192.168.88.51")
            .publish("a.b.c.local", "192.168.88.52")
            .publish("w.x.y.z.local", "192.168.88.53")
            .service("_http._tcp", "Web Box", 8080, &["path=/x", "v=1"])
            .service("_ipp._tcp", "Office Printer", 631, &["rp=ipp/print"]),
    );
    println!("avahi ready: {:?}", t0.elapsed());
    let t0 = Instant::now();
    let zc = h2.zeroconf();
    println!("zeroconf ready: {:?}", t0.elapsed());

    let t = Duration::from_secs(3);
    // One family at a time: A and AAAA may come in separate answers (resolve(name, None)
    // returns with the first).
    for (name, rtype, want) in [
        ("printer.local", "A", "192.168.88.50"),
        ("printer.local", "AAAA", "fd88::50"),
        ("node1.mycluster.local", "A", "192.168.88.51"),
        ("a.b.c.local", "A", "192.168.88.52"),
        ("w.x.y.z.local", "A", "192.168.88.53"),
        ("avahi1.local", "A", "192.168.88.11"),
        ("avahi1.local", "AAAA", "fd88::11"),
    ] {
        let (got, ms) = zc.resolve_timed(name, Some(rtype), t);
        assert_eq!(got, ips(&[want]), "{name} {rtype}\navahi: {}", avahi.log());
        println!("zeroconf resolved {name} {rtype} in {ms:?} ms");
    }
    assert_eq!(zc.resolve("node1.mycluster.local", Some("AAAA"), Duration::from_millis(1500)), Vec::<IpAddr>::new());
    assert_eq!(zc.resolve("nobody.local", None, Duration::from_millis(1500)), Vec::<IpAddr>::new());

    let web = zc.browse("_http._tcp", 2.5);
    assert_eq!(web.len(), 1, "{web:?}");
    assert_eq!(
        (web[0].name.as_str(), web[0].host.as_str(), web[0].port),
        ("Web Box._http._tcp.local.", "avahi1.local.", 8080)
    );
    assert_eq!(web[0].txt.get("path").map(String::as_str), Some("/x"));
    // At least one of avahi1's addresses (the other may come later: see ZeroconfPeer::browse).
    let avahi1 = ips(&["192.168.88.11", "fd88::11"]);
    assert!(!web[0].addresses.is_empty() && web[0].addresses.iter().all(|a| avahi1.contains(a)), "{web:?}");
    let ipp = zc.browse("_ipp._tcp.local.", 2.5);
    assert_eq!(
        ipp.iter().map(|i| (i.name.as_str(), i.port)).collect::<Vec<_>>(),
        vec![("Office Printer._ipp._tcp.local.", 631)]
    );
}

#[test]
fn mdns_lan_avahi_and_zeroconf_share_5353_in_one_namespace() {
    let Some(()) = root_only("mdns_lan_avahi_and_zeroconf_share_5353_in_one_namespace") else { return };
    let lan = Lan::new();
    let (h1, h2) = (lan.host("h1"), lan.host("h2"));
    // Two avahi peers on one LAN, one of them beside a zeroconf peer (as cove will be).
    let avahi = h1.avahi(AvahiOpts::new().publish("nas.local", "192.168.88.60").service("_smb._tcp", "NAS", 445, &[]));
    let _other = h2.avahi(AvahiOpts::new().publish("tv.local", "192.168.88.61"));
    let zc1 = h1.zeroconf();
    let name = zc1.register_service("_http._tcp", "beside avahi", 8123, &[("who", "zc1")]);
    assert_eq!(name, "beside avahi._http._tcp.local.");
    zc1.register_host("extra.beside.local", &["192.168.88.62"]);
    let zc2 = h2.zeroconf();
    let t = Duration::from_secs(3);
    // From the other host: both responders of h1 answer.
    assert_eq!(zc2.resolve("nas.local", Some("A"), t), ips(&["192.168.88.60"]), "avahi: {}", avahi.log());
    assert_eq!(zc2.resolve("extra.beside.local", Some("A"), t), ips(&["192.168.88.62"]));
    let http = zc2.browse("_http._tcp", 2.5);
    assert_eq!(
        http.iter().map(|i| (i.name.as_str(), i.port)).collect::<Vec<_>>(),
        vec![(name.as_str(), 8123)],
        "{http:?}"
    );
    assert_eq!(http[0].txt.get("who").map(String::as_str), Some("zc1"));
    // From h1 itself: zeroconf hears avahi beside it and the avahi of h2 (and the other way:
    // avahi on h2 sees h1's zeroconf records through the bridge, checked above by zc2).
    assert_eq!(zc1.resolve("nas.local", Some("A"), t), ips(&["192.168.88.60"]));
    assert_eq!(zc1.resolve("tv.local", Some("A"), t), ips(&["192.168.88.61"]));
    let smb = zc1.browse("_smb._tcp", 2.5);
    assert_eq!(smb.iter().map(|i| i.port).collect::<Vec<_>>(), vec![445], "{smb:?}");
    // Both really hold 5353 in h1's namespace.
    let ss = String::from_utf8_lossy(&h1.run(&["ss", "-uanpH", "sport", "=", ":5353"]).stdout).into_owned();
    assert!(ss.contains("avahi-daemon") && ss.contains("python3"), "{ss}");
}

#[test]
fn mdns_lan_legacy_unicast_queries_get_avahis_answer() {
    let Some(()) = root_only("mdns_lan_legacy_unicast_queries_get_avahis_answer") else { return };
    let lan = Lan::new();
    let (h1, h2) = (lan.host("h1"), lan.host("h2"));
    let _avahi = h1.avahi(
        AvahiOpts::new().publish("node1.mycluster.local", "192.168.88.51").publish("node1.mycluster.local", "fd88::51"),
    );
    // dig, to the peer's address: a query from an ephemeral port, answered by unicast.
    let out = h2.dig(&["-p", "5353", &format!("@{}", h1.ipv4), "node1.mycluster.local", "+short"]);
    assert_eq!(out.trim(), "192.168.88.51");
    let out = h2.dig(&["-p", "5353", &format!("@{}", h1.ipv6), "node1.mycluster.local", "AAAA", "+short"]);
    assert_eq!(out.trim(), "fd88::51");
    // To the group (what `dig @224.0.0.251` would do, if dig took replies from another address):
    // the reply comes from h1's address to the query's port, echoes ID and question, TTL <= 10.
    for (dest, qtype, want) in [("224.0.0.251", "A", "192.168.88.51"), ("ff02::fb%eth0", "AAAA", "fd88::51")] {
        let replies = h2.mdns_query(dest, "node1.mycluster.local", qtype, Duration::from_millis(1500), false);
        assert!(!replies.is_empty(), "no reply to {dest}");
        let r = &replies[0];
        assert_eq!(r.port, 5353);
        assert!(
            r.from == IpAddr::from(h1.ipv4) || r.from == IpAddr::from(h1.ipv6) || r.from == IpAddr::from(h1.ipv6_ll),
            "{r:?}"
        );
        assert_eq!(r.id, r.query_id, "{r:?}");
        assert_eq!(r.questions, vec![("node1.mycluster.local.".to_string(), qtype.to_string())]);
        let a = r.answers.iter().find(|a| a.rtype == qtype).unwrap_or_else(|| panic!("{r:?}"));
        assert_eq!(a.data, want);
        assert!(a.ttl <= 10, "{a:?}");
    }
}

#[test]
fn mdns_lan_goodbyes_are_seen_by_another_peer() {
    let Some(()) = root_only("mdns_lan_goodbyes_are_seen_by_another_peer") else { return };
    let lan = Lan::new();
    let (h1, h2, h3) = (lan.host("h1"), lan.host("h2"), lan.host("h3"));
    let zc1 = h1.zeroconf();
    let zc2 = h2.zeroconf();
    let svc = zc1.register_service("_http._tcp", "going away", 8000, &[]);
    zc1.register_host("leaving.local", &["192.168.88.70"]);
    assert_eq!(zc2.resolve("leaving.local", Some("A"), Duration::from_secs(3)), ips(&["192.168.88.70"]));
    zc2.watch_goodbye(&svc);
    zc2.watch_goodbye("leaving.local");
    let t0 = SystemTime::now();
    zc1.unregister(&svc);
    zc1.unregister("leaving.local");
    for name in [svc.as_str(), "leaving.local"] {
        let g = zc2.wait_goodbye(name, Duration::from_secs(2)).unwrap_or_else(|| panic!("no goodbye for {name}"));
        let after = g.at.duration_since(t0).unwrap_or_default();
        println!("goodbye for {name} ({}) after {after:?}", g.rtype);
        assert!(after < Duration::from_secs(2));
    }
    // avahi says goodbye too when it stops cleanly (SIGTERM).
    let mut avahi = h3.avahi(AvahiOpts::new().publish("printer.local", "192.168.88.71"));
    zc2.watch_goodbye("printer.local");
    let t0 = SystemTime::now();
    avahi.stop();
    let g = zc2.wait_goodbye("printer.local", Duration::from_secs(3)).expect("avahi's goodbye");
    println!("avahi's goodbye after {:?}", g.at.duration_since(t0).unwrap_or_default());
}

#[test]
fn mdns_lan_cleanup_leaves_no_namespace_or_process() {
    let Some(()) = root_only("mdns_lan_cleanup_leaves_no_namespace_or_process") else { return };
    let listed =
        || String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned();
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !matches!(s.rsplit(')').next().and_then(|r| r.split_whitespace().next()), Some("Z" | "X")))
            .unwrap_or(false)
    };
    // Dropped: namespaces deleted, peers dead.
    let (names, pids) = {
        let lan = Lan::new();
        let (h1, h2) = (lan.host("h1"), lan.host("h2"));
        let avahi = h1.avahi(AvahiOpts::new());
        let zc = h2.zeroconf();
        // Something the LAN's drop has to kill itself (not a peer, whose drop kills it).
        let stray = h2.spawn(&["sleep", "300"]);
        let pids = vec![avahi.peer.pid(), zc.peer.pid(), stray.pid()];
        std::mem::forget(stray);
        (lan.namespaces(), pids)
    };
    let list = listed();
    for ns in &names {
        assert!(!list.lines().any(|l| l.split_whitespace().next() == Some(ns)), "{ns} left: {list}");
    }
    assert!(wait_until(|| pids.iter().all(|p| !alive(*p)), 5), "peers left: {pids:?}");
    for p in pids {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p as i32), None);
    }

    // A peer dies with the thread that started it (PR_SET_PDEATHSIG): a killed test leaves
    // no peer running.
    let lan = Lan::new();
    let h1 = lan.host("h1");
    let h = h1.clone();
    let pid = std::thread::spawn(move || {
        let avahi = h.avahi(AvahiOpts::new());
        let pid = avahi.peer.pid();
        std::mem::forget(avahi);
        pid
    })
    .join()
    .unwrap();
    assert!(wait_until(|| !alive(pid), 5), "avahi {pid} outlived the thread that started it");
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);

    // What a killed run leaves (its namespaces, a process in one) goes at the next Lan::new.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let stale = format!("cove-lan-{dead_pid}-0-h1");
    let o = Command::new("ip").args(["netns", "add", &stale]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut left = Command::new("ip").args(["netns", "exec", &stale, "sleep", "300"]).spawn().unwrap();
    let _lan2 = Lan::new();
    assert!(!listed().contains(&stale), "{stale} not swept");
    let st = left.wait().unwrap();
    assert!(!st.success(), "the stale namespace's process was not killed: {st}");
}

#[test]
fn mdns_lan_cove_runs_in_a_host_as_each_user() {
    let Some(users) = lan_users("mdns_lan_cove_runs_in_a_host_as_each_user") else { return };
    let lan = Lan::new();
    let h2 = lan.host("h2");
    let server = h2.spawn(&[
        "/usr/bin/python3",
        "-c",
        "import socket\ns = socket.create_server(('0.0.0.0', 7000))\nprint('ready', flush=True)\n\
         while True:\n    c, a = s.accept(); c.sendall(b'lan-ok from ' + a[0].encode()); c.close()",
    ]);
    assert!(server.wait_log("ready", Duration::from_secs(10)), "{}", server.log());
    for (label, user) in users {
        // One host per user: each user's cove alone in its namespace, as on a real machine.
        let h = lan.host(&format!("c{label}"));
        let t0 = Instant::now();
        let Some(w) = h.world(user) else { continue };
        println!("{label}: world in {} ready in {:?}", h.ns, t0.elapsed());
        // --network host: the container sees the LAN host's interface, so cove ran in it.
        let out = w.sh_ok(&["--network", "host"], "ip -o -4 addr show eth0");
        assert!(out.contains(&format!("{}/24", h.ipv4)), "{label}: {out}");
        // On cove's default network: out to another LAN host (TCP through the network helper).
        let out = w.sh_ok(&[], &format!("nc -w 3 {} 7000", h2.ipv4));
        assert!(out.starts_with("lan-ok from "), "{label}: {out}");
        println!("{label}: {out}");
    }
}

#[test]
fn mdns_lan_avahi_utils_resolve_and_browse_over_a_private_bus() {
    let Some(()) = root_only("mdns_lan_avahi_utils_resolve_and_browse_over_a_private_bus") else { return };
    let lan = Lan::new();
    let (h1, h2, h3) = (lan.host("h1"), lan.host("h2"), lan.host("h3"));
    let t0 = Instant::now();
    let client = h1.avahi(AvahiOpts::new().with_dbus());
    println!("avahi with its bus ready: {:?}", t0.elapsed());
    let far = h3.avahi(AvahiOpts::new().publish("node1.mycluster.local", "192.168.88.51").service(
        "_http._tcp",
        "Far Web",
        8080,
        &["path=/a b", "k"],
    ));
    let zc = h2.zeroconf();
    zc.register_host("zc.host.local", &["192.168.88.80", "fd88::80"]);
    let svc = zc.register_service("_http._tcp", "Near Web", 9090, &[("x", "1")]);
    for (name, v6, want) in [
        ("node1.mycluster.local", false, "192.168.88.51"),
        ("zc.host.local", false, "192.168.88.80"),
        ("zc.host.local", true, "fd88::80"),
    ] {
        let t0 = Instant::now();
        assert_eq!(client.resolve(name, v6), Some(want.parse().unwrap()), "{name}\n{}", client.log());
        println!("avahi-resolve {name} (v6: {v6}): {:?}", t0.elapsed());
    }
    let t0 = Instant::now();
    let mut found = client.browse("_http._tcp");
    println!("avahi-browse: {:?}", t0.elapsed());
    found.sort_by(|a, b| a.name.cmp(&b.name));
    let got: Vec<(&str, &str, u16)> = found.iter().map(|i| (i.name.as_str(), i.host.as_str(), i.port)).collect();
    let far_host = format!("{}.local.", far.host_name);
    assert_eq!(
        got,
        vec![("Far Web._http._tcp.local.", far_host.as_str(), 8080), (svc.as_str(), "zc-192-168-88-12.local.", 9090)],
        "{found:?}"
    );
    assert_eq!(found[0].txt.get("path").map(String::as_str), Some("/a b"), "{found:?}");
    assert_eq!(found[0].txt.get("k").map(String::as_str), Some(""), "{found:?}");
    assert_eq!(found[1].txt.get("x").map(String::as_str), Some("1"), "{found:?}");
}
