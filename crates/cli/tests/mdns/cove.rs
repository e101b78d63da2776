//! cove's mDNS end to end (issue 15): containers resolve the LAN's `.local` names, peers on the
//! LAN resolve and browse what `--mdns` networks publish, goodbyes on `rm`. cove runs in LAN
//! host h1 as root, covetest and covenosub in turn (each with a LAN of its own); the peers are
//! avahi-daemon and python-zeroconf.

use super::*;
use std::net::Ipv4Addr;

/// `python3 -c` in a container (the host's /usr lent to the image): glibc's resolver path,
/// getaddrinfo through the container's resolv.conf.
fn getaddrinfo(w: &World, net: &str, name: &str) -> Output {
    let py = "import socket, sys\ntry:\n    print(sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], 80, socket.AF_INET)}))\nexcept OSError as e:\n    print('error', e); sys.exit(1)\n";
    w.cove(&with_host_usr(&["run", "--rm", "--network", net], &["/usr/bin/python3", "-c", py, name]))
}

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
                .publish("nas.d.e.f.local", "192.168.88.53"),
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
        }
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
