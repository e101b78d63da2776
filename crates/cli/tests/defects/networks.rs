//! Regression tests for defects found using cove's networks as a Docker user would (issue 13).

use super::*;

/// A route of the host's own (not default, not loopback, not a host route), if it has one.
fn a_host_route() -> Option<String> {
    let text = std::fs::read_to_string("/proc/net/route").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
        let len = u32::from_str_radix(f.get(7)?, 16).ok()?.count_ones();
        (f[0] != "lo" && len > 0 && len < 32).then(|| format!("{}/{len}", std::net::Ipv4Addr::from(dest.to_le_bytes())))
    })
}

#[test]
fn subnets_that_collide_with_the_way_out_are_refused() {
    let Some(w) = World::new() else { return };
    let refused = |args: &[&str], why: &str| {
        let o = w.cove(args);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "one line: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "{args:?}: {}", stderr(&o));
    };
    // slirp4netns's own subnet (10.0.2.2 is the host's loopback through it), or any part of it.
    refused(&["network", "create", "--subnet", "10.0.2.0/25", "n1"], "slirp4netns");
    refused(&["network", "create", "--subnet", "10.0.0.0/16", "n1"], "slirp4netns");
    // The host's own subnets: pasta copies them into cove's namespace.
    match a_host_route() {
        Some(r) => refused(&["network", "create", "--subnet", &r, "n1"], "the host's route"),
        None => {
            println!("note: the host has no route besides the default one; the host-route case is not checked here")
        }
    }
    // A CIDR is required (a bare address made a /32 network where every run failed).
    refused(&["network", "create", "--subnet", "10.91.0.0", "n1"], "a CIDR");
    assert_eq!(w.ok(&["network", "ls", "--format", "{{.Name}}"]).trim(), "", "nothing was created");
    // A subnet clear of all that works, and networks picked by cove avoid the host's too.
    w.ok(&["network", "create", "--subnet", "10.91.0.0/24", "n1"]);
    w.ok(&["network", "create", "n2"]);
    let picked = w.ok(&["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "n2"]);
    if let Some(r) = a_host_route() {
        assert_ne!(picked.trim(), r);
    }
    assert_eq!(w.sh_ok(&["--network", "n1"], "ip -4 addr show eth0 | grep -o 'inet [0-9.]*'").trim(), "inet 10.91.0.2");
}

#[test]
fn disconnecting_the_first_network_moves_the_default_route() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "--subnet", "10.97.1.0/24", "ma"]);
    w.ok(&["network", "create", "--subnet", "10.97.2.0/24", "--ipv6", "--subnet", "fd63:6f76:6597::/64", "mb"]);
    let routes =
        |c: &str| w.ok(&["exec", c, "sh", "-c", "ip route | grep ^default; ip -6 route | grep ^default || true"]);
    // Running: eth0 (ma) leaves, eth1 (mb) takes the default routes of both families.
    w.ok(&["run", "-d", "--name", "two", "--network", "ma,mb", "bb", "sleep", "100"]);
    assert!(routes("two").starts_with("default via 10.97.1.1 dev eth0"), "{}", routes("two"));
    w.ok(&["network", "disconnect", "ma", "two"]);
    let r = routes("two");
    assert!(
        r.contains("default via 10.97.2.1 dev eth1") && r.contains("default via fd63:6f76:6597::1 dev eth1"),
        "{r}"
    );
    // The gateway answers through it (the network's DNS there).
    assert!(w.ok(&["exec", "two", "nslookup", "two", "10.97.2.1"]).contains("10.97.2."));
    // Stopped: the next start wires the remaining network with the default route.
    w.ok(&["create", "--name", "later", "--network", "ma,mb", "bb", "sleep", "100"]);
    w.ok(&["network", "disconnect", "ma", "later"]);
    w.ok(&["start", "later"]);
    assert!(routes("later").contains("default via 10.97.2.1 dev eth1"), "{}", routes("later"));
    // And connecting a network to a container that has its default route changes nothing.
    w.ok(&["network", "connect", "ma", "later"]);
    assert!(routes("later").starts_with("default via 10.97.2.1 dev eth1"), "{}", routes("later"));
}

/// The bridges in the network helper's namespace (as root, who may enter any namespace; the
/// root pass checks covetest's helper too). `None` when not root.
fn helper_bridges(w: &World) -> Option<Vec<String>> {
    if !is_root() {
        return None;
    }
    let pid: i32 = std::fs::read_to_string(w.path().join("run/netd.pid"))
        .expect("the helper runs")
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("netd.pid");
    let fd = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the helper's descriptors")
        .flatten()
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("net:")))
        .expect("the helper holds its namespace");
    let out = Command::new("nsenter")
        .arg(format!("--net={}", fd.path().display()))
        .args(["ip", "-o", "link", "show", "type", "bridge"])
        .output()
        .expect("nsenter");
    assert!(out.status.success(), "nsenter: {}", String::from_utf8_lossy(&out.stderr));
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().to_string())
            .collect(),
    )
}

fn bridge_of(w: &World, net: &str) -> String {
    w.ok(&["network", "inspect", "-f", "{{index .Options \"com.docker.network.bridge.name\"}}", net]).trim().to_string()
}

/// compose's up/down/up: a network removed and made again (same name, same subnet) while the
/// helper stays up works as the first one did, and the helper's bridges match the database.
fn network_rm_then_create_again(w: &World) {
    // Something keeps the helper alive throughout (another project's container).
    w.ok(&["run", "-d", "--name", "keepalive", "bb", "sleep", "300"]);
    for round in 0..3 {
        w.ok(&["network", "create", "--subnet", "10.98.5.0/24", "proj"]);
        let bridge = bridge_of(w, "proj");
        w.ok(&["run", "-d", "--name", "db", "--network", "proj", "bb", "sleep", "300"]);
        let asked = w
            .sh_ok(&["--network", "proj"], "nslookup db 10.98.5.1 && ping -c 1 -W 2 10.98.5.1 >/dev/null && echo pong");
        assert!(asked.contains("10.98.5.2") && asked.contains("pong"), "round {round}: {asked}");
        if let Some(b) = helper_bridges(w) {
            assert!(b.contains(&bridge), "round {round}: {b:?}");
        }
        w.ok(&["rm", "-f", "db"]);
        w.ok(&["network", "rm", "proj"]);
        if let Some(b) = helper_bridges(w) {
            assert!(!b.contains(&bridge), "round {round}: network rm left its bridge {bridge}: {b:?}");
            assert_eq!(b, vec![bridge_of(w, "cove")], "only the default network's bridge is left");
        }
    }
    // network prune removes them too.
    w.ok(&["network", "create", "--subnet", "10.98.6.0/24", "gone"]);
    w.ok(&["run", "--rm", "--network", "gone", "bb", "true"]);
    let bridge = bridge_of(w, "gone");
    w.ok(&["network", "prune"]);
    if let Some(b) = helper_bridges(w) {
        assert!(!b.contains(&bridge), "network prune left its bridge: {b:?}");
    }
}

#[test]
fn network_rm_removes_the_bridge_and_its_dns_at_once() {
    if is_root() {
        // The root pass checks the kernel's view for root's helper and covetest's.
        let Some(worlds) = root_and_covetest_worlds("network_rm_removes_the_bridge_and_its_dns_at_once") else {
            return;
        };
        for (_, w) in worlds {
            if let Some(w) = w {
                network_rm_then_create_again(&w);
            }
        }
    } else if let Some(w) = World::new() {
        network_rm_then_create_again(&w);
    }
}
