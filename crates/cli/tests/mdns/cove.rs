//! cove's mDNS end to end (issue 15): containers resolve the LAN's `.local` names, peers on the
//! LAN resolve and browse what `--mdns` networks publish, goodbyes on `rm`. cove runs in LAN
//! host h1 as root, covetest and covenosub in turn (each with a LAN of its own); the peers are
//! avahi-daemon and python-zeroconf.

use super::*;
use std::net::Ipv4Addr;

/// `python3 -c` in a container (the host's /usr lent to the image): glibc's resolver path,
/// getaddrinfo through the container's resolv.conf.
fn getaddrinfo(w: &World, net: &str, name: &str) -> Output {
    // AF_UNSPEC: A and AAAA asked at once, for names that have only an IPv4 address.
    let py = "import socket, sys, time\nt = time.monotonic()\ntry:\n    a = sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], 80, type=socket.SOCK_STREAM)})\nexcept OSError as e:\n    print('error', e); sys.exit(1)\nprint(a, 'ms=%d' % ((time.monotonic() - t) * 1000))\n";
    w.cove(&with_host_usr(&["run", "--rm", "--network", net], &["/usr/bin/python3", "-c", py, name]))
}

/// AAAA then A for `name`, sent at once on one socket to the container's nameserver (as musl
/// does); prints the milliseconds until both replies are in.
const BOTH_FAMILIES: &str = r#"
import socket, struct, sys, time
ns = [l.split()[1] for l in open('/etc/resolv.conf') if l.startswith('nameserver')][0]
def q(i, name, t):
    return struct.pack('>HHHHHH', i, 0x0100, 1, 0, 0, 0) + b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\0' + struct.pack('>HH', t, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
t0 = time.monotonic()
s.sendto(q(1, sys.argv[1], 28), (ns, 53)); s.sendto(q(2, sys.argv[1], 1), (ns, 53))
seen = set()
while len(seen) < 2:
    seen.add(struct.unpack('>H', s.recv(1500)[:2])[0])
print('ms=%d' % ((time.monotonic() - t0) * 1000))
"#;

#[test]
fn mdns_containers_resolve_lan_names_of_any_label_count() {
    let Some(users) = lan_users("mdns_containers_resolve_lan_names_of_any_label_count") else { return };
    for (who, user) in users {
        let lan = Lan::new();
        let (h1, h2) = (lan.host("h1"), lan.host("h2"));
        let _avahi = h2.avahi(
            AvahiOpts::new()
                .publish("printer.local", "192.168.88.50")
                .publish("printer.office.local", "192.168.88.51")
                .publish("a.b.c.local", "192.168.88.52")
                .publish("nas.d.e.f.local", "192.168.88.53")
                .publish("fresh.local", "192.168.88.54"),
        );
        let Some(w) = h1.world(user) else { continue };
        w.ok(&["network", "create", "plain"]);
        for (name, addr) in [
            ("printer.local", "192.168.88.50"),
            ("printer.office.local", "192.168.88.51"),
            ("a.b.c.local", "192.168.88.52"),
            ("nas.d.e.f.local", "192.168.88.53"),
        ] {
            // busybox's own resolver (nslookup) on the default network...
            let out = w.sh_ok(&[], &format!("nslookup {name}"));
            assert!(out.contains(addr), "{who}: nslookup {name} inside a container:\n{out}");
            // ...and glibc's getaddrinfo on a user-defined network.
            let o = getaddrinfo(&w, "plain", name);
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success() && text.contains(addr), "{who}: getaddrinfo({name}): {text} {}", stderr(&o));
            let ms: u64 = text.rsplit("ms=").next().and_then(|m| m.trim().parse().ok()).unwrap_or(u64::MAX);
            assert!(ms < 600, "{who}: getaddrinfo({name}) took {ms} ms: {text}");
        }
        // A and AAAA at once for an IPv4-only name not asked before: the AAAA half does not wait
        // out the whole second (avahi sends nothing for the family a name lacks).
        w.ok(&["network", "create", "--ipv6", "dual"]);
        let o = w.cove(&with_host_usr(
            &["run", "--rm", "--network", "dual"],
            &["/usr/bin/python3", "-c", BOTH_FAMILIES, "fresh.local"],
        ));
        let text = String::from_utf8_lossy(&o.stdout);
        let ms: u64 = text.trim().strip_prefix("ms=").and_then(|m| m.parse().ok()).unwrap_or(u64::MAX);
        assert!(ms < 600, "{who}: A+AAAA of an IPv4-only name took {ms} ms: {text} {}", stderr(&o));
        // The reverse name of a LAN address is asked on the LAN (avahi publishes PTR for its
        // static names).
        let out = w.sh_ok(&[], "nslookup 192.168.88.51");
        assert!(out.contains("printer.office.local"), "{who}: PTR of a LAN address: {out}");
        // Nobody has it: NXDOMAIN within the bounded wait, not a hang.
        let t0 = Instant::now();
        let o = w.run_sh(&[], "nslookup nobody-has-this.local");
        assert!(!o.status.success(), "{who}: an unknown .local name resolved");
        assert!(t0.elapsed() < Duration::from_secs(8), "{who}: unknown name took {:?}", t0.elapsed());
        // The host side answers too (cove mdns resolve, like avahi-resolve).
        let out = w.ok(&["mdns", "resolve", "printer.office.local"]);
        assert!(out.contains("192.168.88.51"), "{who}: cove mdns resolve: {out}");
    }
}

#[test]
fn mdns_resolve_can_be_switched_off_per_network() {
    let Some(users) = lan_users("mdns_resolve_can_be_switched_off_per_network") else { return };
    for (who, user) in users.into_iter().take(1) {
        let lan = Lan::new();
        let (h1, h2) = (lan.host("h1"), lan.host("h2"));
        let _avahi = h2.avahi(AvahiOpts::new().publish("printer.local", "192.168.88.50"));
        let Some(w) = h1.world(user) else { continue };
        w.ok(&["network", "create", "-o", "mdns_resolve=false", "corp"]);
        // `.local` goes to the upstreams (the tests' refusing one): no mDNS answer.
        let o = w.run_sh(&["--network", "corp"], "nslookup printer.local");
        assert!(!String::from_utf8_lossy(&o.stdout).contains("192.168.88.50"), "{who}: resolved by mDNS anyway");
    }
}

#[test]
fn mdns_peers_resolve_and_browse_published_containers_and_see_goodbyes() {
    let Some(users) = lan_users("mdns_peers_resolve_and_browse_published_containers_and_see_goodbyes") else {
        return;
    };
    for (who, user) in users {
        let lan = Lan::new();
        let (h1, h3) = (lan.host("h1"), lan.host("h3"));
        let zc = h3.zeroconf();
        let Some(w) = h1.world(user) else { continue };
        w.ok(&["network", "create", "--mdns", "mycluster"]);
        w.ok(&["run", "-d", "--name", "node1", "--network", "mycluster", "-p", "12000:6379", "bb", "sleep", "600"]);
        let h1_addr = IpAddr::V4(h1.ipv4);
        for name in ["node1.mycluster.local", "node1-mycluster.local", "mycluster.local"] {
            let got = zc.resolve(name, Some("A"), Duration::from_secs(5));
            assert_eq!(got, vec![h1_addr], "{who}: a peer resolving {name}");
        }
        // One service per published port: _redis._tcp by /etc/services, the host's port.
        let found = zc.browse("_redis._tcp.local.", 3.0);
        let s = found.iter().find(|s| s.port == 12000).unwrap_or_else(|| panic!("{who}: browse: {found:?}"));
        assert_eq!(s.txt.get("container").map(String::as_str), Some("node1"), "{who}: TXT {:?}", s.txt);
        assert!(s.addresses.contains(&h1_addr), "{who}: service addresses {:?}", s.addresses);
        // Containers on this host resolve the published names to the container's own address.
        let out = w.sh_ok(&["--network", "mycluster"], "nslookup node1.mycluster.local");
        let ip = w.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.mycluster.IPAddress}}", "node1"]);
        assert!(out.contains(ip.trim()), "{who}: inside: {out} (node1 is {ip})");
        // cove mdns ls shows them.
        let ls = w.ok(&["mdns", "ls"]);
        assert!(ls.contains("node1.mycluster.local") && ls.contains("_redis._tcp"), "{who}: {ls}");
        // Goodbye within 2 s of rm -f.
        zc.watch_goodbye("node1.mycluster.local.");
        let t0 = SystemTime::now();
        w.ok(&["rm", "-f", "node1"]);
        let g = zc.wait_goodbye("node1.mycluster.local.", Duration::from_secs(4));
        let g = g.unwrap_or_else(|| panic!("{who}: no goodbye for node1.mycluster.local"));
        let after = g.at.duration_since(t0).unwrap_or_default();
        assert!(after < Duration::from_secs(2), "{who}: goodbye {after:?} after rm -f");
        let _ = Ipv4Addr::LOCALHOST;
    }
}

/// The name `cove mdns ls` shows in use for `asked` (after a rename, another), once established.
fn established_as(w: &World, asked: &str, timeout: Duration) -> Option<String> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        let ls = w.ok(&["mdns", "ls"]);
        for line in ls.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // NAME [SERVICE] STATE [ASKED FOR]
            if f.first() == Some(&asked) && f.contains(&"established") && f.len() <= 3 {
                return Some(asked.to_string());
            }
            if f.last() == Some(&asked) && f.contains(&"established") && f.first() != Some(&asked) {
                return f.first().map(|s| s.to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn mdns_two_cove_hosts_publishing_one_name_both_stay_resolvable() {
    let Some(users) = lan_users("mdns_two_cove_hosts_publishing_one_name_both_stay_resolvable") else { return };
    for (who, user) in users {
        let lan = Lan::new();
        let (h1, h2, h3) = (lan.host("h1"), lan.host("h2"), lan.host("h3"));
        let zc = h3.zeroconf();
        let (Some(w1), Some(w2)) = (h1.world(user), h2.world(user)) else { continue };
        for w in [&w1, &w2] {
            w.ok(&["network", "create", "--mdns", "mycluster"]);
        }
        w1.ok(&["run", "-d", "--name", "node1", "--network", "mycluster", "bb", "sleep", "600"]);
        let first = established_as(&w1, "node1.mycluster.local", Duration::from_secs(10));
        assert_eq!(first.as_deref(), Some("node1.mycluster.local"), "{who}: h1 did not establish its name");
        w2.ok(&["run", "-d", "--name", "node1", "--network", "mycluster", "bb", "sleep", "600"]);
        // h2 probes, finds h1's name defended, and takes another; cove mdns ls says which.
        let second = established_as(&w2, "node1.mycluster.local", Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{who}: h2's name never established:\n{}", w2.ok(&["mdns", "ls"])));
        assert_ne!(second, "node1.mycluster.local", "{who}: both hosts claim one name");
        let ls = w2.cove(&["mdns", "ls"]);
        assert!(stderr(&ls).contains("published as"), "{who}: no warning about the rename: {}", stderr(&ls));
        assert_eq!(zc.resolve("node1.mycluster.local", Some("A"), Duration::from_secs(5)), vec![IpAddr::V4(h1.ipv4)]);
        assert_eq!(
            zc.resolve(&second, Some("A"), Duration::from_secs(5)),
            vec![IpAddr::V4(h2.ipv4)],
            "{who}: {second}"
        );
    }
}

#[test]
fn mdns_cove_and_avahi_share_a_host_and_avahis_names_are_not_claimed() {
    let Some(users) = lan_users("mdns_cove_and_avahi_share_a_host_and_avahis_names_are_not_claimed") else { return };
    for (who, user) in users {
        let lan = Lan::new();
        let (h1, h3) = (lan.host("h1"), lan.host("h3"));
        // avahi on the same host as cove: both bind 5353 and answer.
        let _avahi = h1.avahi(
            AvahiOpts::new()
                .publish("printer.local", "192.168.88.50")
                .publish("taken.mycluster.local", "192.168.88.60"),
        );
        let zc = h3.zeroconf();
        let Some(w) = h1.world(user) else { continue };
        w.ok(&["network", "create", "--mdns", "mycluster"]);
        w.ok(&["run", "-d", "--name", "node1", "--network", "mycluster", "bb", "sleep", "600"]);
        w.ok(&["run", "-d", "--name", "taken", "--network", "mycluster", "bb", "sleep", "600"]);
        let h1_addr = IpAddr::V4(h1.ipv4);
        assert_eq!(zc.resolve("node1.mycluster.local", Some("A"), Duration::from_secs(5)), vec![h1_addr], "{who}");
        assert_eq!(zc.resolve("printer.local", Some("A"), Duration::from_secs(5)), ips(&["192.168.88.50"]), "{who}");
        // avahi holds taken.mycluster.local: cove publishes another name and avahi keeps its own.
        let name = established_as(&w, "taken.mycluster.local", Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{who}: {}", w.ok(&["mdns", "ls"])));
        assert_ne!(name, "taken.mycluster.local", "{who}: cove claimed a name avahi holds");
        // Once conflict resolution has settled (under load a defence can come late: then cove
        // announces, hears avahi's answer and renames), the LAN answers avahi's address only.
        let t0 = Instant::now();
        let mut got = vec![];
        while t0.elapsed() < Duration::from_secs(15) {
            got = zc.resolve("taken.mycluster.local", Some("A"), Duration::from_secs(3));
            if got == ips(&["192.168.88.60"]) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert_eq!(got, ips(&["192.168.88.60"]), "{who}: taken.mycluster.local; cove: {}", w.ok(&["mdns", "ls"]));
        // Containers on h1 resolve avahi's names through cove even with avahi on the same host.
        let out = w.sh_ok(&[], "nslookup printer.local");
        assert!(out.contains("192.168.88.50"), "{who}: {out}");
    }
}

#[test]
fn mdns_legacy_unicast_srv_txt_and_interface_limits() {
    let Some(users) = lan_users("mdns_legacy_unicast_srv_txt_and_interface_limits") else { return };
    for (who, user) in users {
        let lan = Lan::new();
        let (h1, h2, h3) = (lan.host("h1"), lan.host("h2"), lan.host("h3"));
        let _avahi = h2.avahi(AvahiOpts::new().service("_ipp._tcp", "Office", 631, &["rp=print"]));
        let Some(w) = h1.world(user) else { continue };
        w.ok(&["network", "create", "--mdns", "mycluster"]);
        w.ok(&["run", "-d", "--name", "node1", "--network", "mycluster", "-p", "8080:80", "bb", "sleep", "600"]);
        assert!(established_as(&w, "node1.mycluster.local", Duration::from_secs(10)).is_some(), "{who}");
        // Legacy unicast (a query from port != 5353, here dig's) gets a unicast answer.
        let out = h3.dig(&["-p", "5353", &format!("@{}", h1.ipv4), "node1.mycluster.local"]);
        assert!(out.contains(&h1.ipv4.to_string()) && out.contains("ANSWER: 1"), "{who}: dig:\n{out}");
        // A legacy query to the group (what `dig -p 5353 @224.0.0.251` sends; dig 9.18 itself
        // drops the reply, see the module doc): answered by unicast to its port, ID and
        // question echoed, TTL at most 10 s, no cache-flush bit (RFC 6762 section 6.7).
        let replies = h3.mdns_query("224.0.0.251", "node1.mycluster.local", "A", Duration::from_secs(2), false);
        let r = replies.iter().find(|r| r.from == IpAddr::V4(h1.ipv4)).unwrap_or_else(|| panic!("{who}: {replies:?}"));
        assert_eq!(r.id, r.query_id, "{who}");
        assert_eq!(r.questions.first().map(|q| q.0.trim_end_matches('.')), Some("node1.mycluster.local"), "{who}");
        let a = r.answers.iter().find(|a| a.rtype == "A").unwrap_or_else(|| panic!("{who}: {r:?}"));
        assert!(a.data == h1.ipv4.to_string() && a.ttl <= 10 && !a.unique, "{who}: {a:?}");
        // SRV and TXT of the LAN's services from inside a container, and `cove mdns browse`.
        let out = w.sh_ok(&[], "nslookup -type=txt Office._ipp._tcp.local");
        assert!(out.contains("rp=print"), "{who}: TXT from inside: {out}");
        let out = w.sh_ok(&[], "nslookup -type=srv Office._ipp._tcp.local");
        assert!(out.contains("631"), "{who}: SRV from inside: {out}");
        let out = w.ok(&["mdns", "browse", "_ipp._tcp"]);
        assert!(out.contains("Office") && out.contains(":631"), "{who}: cove mdns browse: {out}");
        let out = w.ok(&["mdns", "browse", "_http._tcp"]);
        assert!(out.contains(":8080"), "{who}: cove's own service (8080/tcp is http): {out}");
        // --mdns-interface: a network limited to an interface the host lacks publishes nowhere.
        let o = w.cove(&["network", "create", "--mdns", "--mdns-interface", "lo", "bad"]);
        assert!(!o.status.success() && stderr(&o).contains("loopback"), "{who}: {}", stderr(&o));
        w.ok(&["rm", "-f", "node1"]);
        w.ok(&["network", "rm", "mycluster"]);
        w.ok(&["network", "create", "--mdns", "--mdns-interface", "eth9", "elsewhere"]);
        w.ok(&["run", "-d", "--name", "node2", "--network", "elsewhere", "bb", "sleep", "600"]);
        std::thread::sleep(Duration::from_secs(2));
        let ls = w.ok(&["mdns", "ls"]);
        assert!(ls.starts_with("interfaces: (none)"), "{who}: {ls}");
        let zc = h3.zeroconf();
        assert!(zc.resolve("node2.elsewhere.local", Some("A"), Duration::from_secs(2)).is_empty(), "{who}");
    }
}
