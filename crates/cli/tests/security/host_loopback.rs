//! Security regression tests (issue 21): see the functions below; each reproduces an attack.
//!
//! Item 6: the host's loopback was open to every container (`host.containers.internal`
//! reached a service bound only to 127.0.0.1), where rootless Docker and podman keep it
//! closed: hosts bind admin and database ports to loopback so that nothing else reaches them.
//! Now it is closed unless the network says `-o allow_host_loopback=true` or cove.conf says
//! `allow_host_loopback = true` for networks that do not say.

#[allow(unused_imports)]
use super::*;
use std::sync::Arc;

/// A minimal HTTP server of the test's own on `addr` (port 0: a free one) that counts the
/// connections it accepts and answers each with `body`.
fn http_server(addr: &str, body: &'static str) -> (u16, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind(addr).unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            s.fetch_add(1, Ordering::SeqCst);
            let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let _ = std::io::Read::read(&mut c, &mut buf);
            let reply = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = std::io::Write::write_all(&mut c, reply.as_bytes());
        }
    });
    (port, seen)
}

/// busybox wget from a container: (exit status, what it printed). `timeout`, not `wget -T`:
/// Debian 12's busybox-static 1.35 wget crashes (SIGSEGV) whenever -T is given.
fn wget(w: &World, extra: &[&str], port: u16) -> (bool, String) {
    let o = w.run_sh(extra, &format!("timeout 10 wget -qO- http://host.containers.internal:{port}/"));
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// A DNS question over UDP to the resolver on the host's loopback, asked at
/// host.containers.internal directly (UDP takes pasta's/slirp4netns's path, not the helper's).
fn udp_question(w: &World, extra: &[&str], port: u16) -> String {
    let o = w.run_sh(extra, &format!("nslookup -port={port} example.org host.containers.internal 2>&1; true"));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether the host has a default IPv4 route (the host's own address is then the one towards
/// its gateway: what a closed network's host.containers.internal reaches over TCP).
fn has_default_route() -> bool {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| t.lines().skip(1).any(|l| l.split_whitespace().nth(1) == Some("00000000")))
        .unwrap_or(false)
}

#[test]
fn host_loopback_is_closed_unless_a_network_or_cove_conf_opens_it() {
    let (port, seen) = http_server("127.0.0.1:0", "hello-from-loopback\n");
    let (uport, questions) = fake_upstream();
    for tool in ["pasta", "slirp4netns"] {
        let Some(w) = World::new() else { return };
        let w = w.with_env("COVE_NETWORK_CMD", tool);

        // The default network: the name still names the host (hosts file and DNS)...
        let out = w.sh_ok(
            &[],
            "grep host.containers.internal /etc/hosts; nslookup host.containers.internal >/dev/null && echo DNS-OK",
        );
        assert!(
            out.contains("host.containers.internal host.docker.internal\n") && out.contains("DNS-OK\n"),
            "{tool}: {out}"
        );
        // ...but a service bound only to 127.0.0.1 is out of reach, over TCP (the helper's
        // path) and UDP (the tool's).
        let before = seen.load(Ordering::SeqCst);
        let (ok, out) = wget(&w, &[], port);
        assert!(
            !ok && !out.contains("hello-from-loopback"),
            "{tool}: the default network reached the host's loopback: {out}"
        );
        assert_eq!(
            seen.load(Ordering::SeqCst),
            before,
            "{tool}: the loopback server saw a connection from the default network"
        );
        let asked = questions.load(Ordering::SeqCst);
        let out = udp_question(&w, &[], uport);
        assert!(!out.contains("192.0.2.7"), "{tool}: UDP reached the host's loopback: {out}");
        assert_eq!(
            questions.load(Ordering::SeqCst),
            asked,
            "{tool}: the loopback resolver got a question from the default network"
        );
        // `--add-host NAME:host-gateway` is the same address, closed the same way.
        let o = w.run_sh(&["--add-host", "gw:host-gateway"], &format!("timeout 10 wget -qO- http://gw:{port}/"));
        assert!(!o.status.success(), "{tool}: host-gateway reached the host's loopback");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            before,
            "{tool}: the loopback server saw a connection through host-gateway"
        );

        // A network made with the option reaches it (no restart of the helper or the tool:
        // it is running since the containers above, and goes on running).
        let helper = std::fs::read_to_string(w.path().join("run/netd.pid")).unwrap_or_default();
        w.ok(&["network", "create", "-o", "allow_host_loopback=true", "open"]);
        let (ok, out) = wget(&w, &["--network", "open"], port);
        assert!(
            ok && out == "hello-from-loopback\n",
            "{tool}: -o allow_host_loopback=true did not reach the host's loopback: {out}"
        );
        assert!(
            udp_question(&w, &["--network", "open"], uport).contains("192.0.2.7"),
            "{tool}: UDP to the host's loopback on the open network"
        );
        let again = std::fs::read_to_string(w.path().join("run/netd.pid")).unwrap_or_default();
        assert!(helper.is_empty() || again.is_empty() || helper == again, "{tool}: the helper was restarted");
        let v: serde_json::Value = serde_json::from_str(&w.ok(&["network", "inspect", "open"])).unwrap();
        assert_eq!(v[0]["Options"]["allow_host_loopback"], "true", "{tool}: {v}");
        // ...and the default network is still closed next to it.
        let (ok, _) = wget(&w, &[], port);
        assert!(!ok, "{tool}: opening one network opened the default one");
        // Bad values are refused; an --internal network cannot be opened.
        let o = w.cove(&["network", "create", "-o", "allow_host_loopback=maybe", "bad"]);
        assert!(!o.status.success() && stderr(&o).contains("allow_host_loopback is true or false"), "{}", stderr(&o));
        let o = w.cove(&["network", "create", "--internal", "-o", "allow_host_loopback=true", "bad"]);
        assert!(!o.status.success() && stderr(&o).contains("--internal"), "{}", stderr(&o));
    }

    // cove.conf's default opens the networks that do not say, the default network too;
    // a network that says false stays closed.
    let Some(w) = World::new() else { return };
    let conf = w.path().join("cove.conf");
    std::fs::write(&conf, "allow_host_loopback = true\n").unwrap();
    let w = w.with_env("COVE_CONFIG", conf.to_str().unwrap());
    let (ok, out) = wget(&w, &[], port);
    assert!(
        ok && out == "hello-from-loopback\n",
        "cove.conf allow_host_loopback = true: the default network did not reach the host's loopback: {out}"
    );
    w.ok(&["network", "create", "-o", "allow_host_loopback=false", "shut"]);
    let before = seen.load(Ordering::SeqCst);
    let (ok, out) = wget(&w, &["--network", "shut"], port);
    assert!(!ok, "-o allow_host_loopback=false reached the host's loopback: {out}");
    assert_eq!(seen.load(Ordering::SeqCst), before);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["network", "inspect", "shut"])).unwrap();
    assert_eq!(v[0]["Options"]["allow_host_loopback"], "false", "{v}");
}

/// Closed is not cut off: host.containers.internal still names the host, and a service bound
/// to all addresses answers (the helper connects to the host's own address, as Docker's
/// host-gateway reaches it) — local delivery on this machine, nothing leaves it.
#[test]
fn host_loopback_closed_still_reaches_services_on_all_addresses() {
    if !has_default_route() {
        skip("no default route: a closed network's host.containers.internal has no host address to reach");
        return;
    }
    let (port, seen) = http_server("0.0.0.0:0", "hello-from-any\n");
    let Some(w) = World::new() else { return };
    let (ok, out) = wget(&w, &[], port);
    assert!(ok && out == "hello-from-any\n", "{out}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

/// A container's own stack never sends to 127.0.0.1 through eth0, but with `CAP_NET_RAW` (a
/// default capability) it can hand-craft the packets: a TCP SYN to 127.0.0.1:PORT sent to the
/// gateway's MAC. The helper's namespace runs `prerouting` (where the redirect to the
/// helper's outbound listener is) before it drops a martian destination, so the handshake
/// completes with the helper — which used to connect to 127.0.0.1:PORT from the host's side,
/// whatever the network allowed. The helper now refuses loopback destinations outright.
const CRAFTED_SYN: &str = r#"
import socket, struct, os, sys, time, fcntl
PORT = int(sys.argv[1])
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
gw = next(l.split() for l in open('/proc/net/route').read().split('\n')[1:] if l.split() and l.split()[1] == '00000000')
gw_ip = socket.inet_ntoa(struct.pack('<I', int(gw[2], 16)))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect((gw_ip, 9)); my_ip = u.getsockname()[0]
gw_mac = None
for i in range(20):
    u.send(b'x'); time.sleep(0.1)
    arp = [l.split() for l in open('/proc/net/arp').read().split('\n')[1:] if l.strip()]
    gw_mac = next((bytes.fromhex(a[3].replace(':', '')) for a in arp if a[0] == gw_ip and a[3] != '00:00:00:00:00:00'), None)
    if gw_mac: break
my_mac = fcntl.ioctl(u, 0x8927, struct.pack('256s', b'eth0'))[18:24]
ps = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800)); ps.bind(('eth0', 0)); ps.settimeout(0.5)
src, dst = socket.inet_aton(my_ip), socket.inet_aton('127.0.0.1')
sport = 40000 + os.getpid() % 20000
def tcp(flags, seq, ack, payload=b''):
    h = struct.pack('!HHIIBBHHH', sport, PORT, seq, ack, 5 << 4, flags, 65535, 0, 0)
    c = csum(src + dst + struct.pack('!BBH', 0, 6, len(h) + len(payload)) + h + payload)
    h = h[:16] + struct.pack('!H', c) + h[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(h) + len(payload), 1, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    ps.send(gw_mac + my_mac + b'\x08\x00' + ip + h + payload)
result, end, last = 'NO ANSWER', time.time() + 6, 0
while time.time() < end:
    if time.time() - last > 1:
        tcp(0x02, 1000, 0); last = time.time()
    try: f = ps.recv(4096)
    except socket.timeout: continue
    ip = f[14:]
    if ip[9] != 6 or ip[12:16] != dst: continue
    sp, dp, rseq, rack, off, flags = struct.unpack('!HHIIBB', ip[(ip[0] & 15) * 4:][:14])
    if dp != sport: continue
    if flags & 0x12 == 0x12:
        tcp(0x10, 1001, rseq + 1)
        tcp(0x18, 1001, rseq + 1, b'GET / HTTP/1.0\r\n\r\n')
        result = 'HANDSHAKE'; break
    if flags & 0x04:
        result = 'RESET'; break
print(result)
time.sleep(1)
"#;

#[test]
fn host_loopback_is_not_reached_by_a_crafted_packet_to_127_0_0_1() {
    let (port, seen) = http_server("127.0.0.1:0", "hello-from-loopback\n");
    let Some(w) = World::new() else { return };
    // Closed (the default network) or open, a loopback destination is never connected to.
    for net in ["cove", "open"] {
        if net == "open" {
            w.ok(&["network", "create", "-o", "allow_host_loopback=true", "open"]);
        }
        let out = w.ok(&with_host_usr(
            &["run", "--rm", "--network", net],
            &["/usr/bin/python3", "-c", CRAFTED_SYN, &port.to_string()],
        ));
        // The crafted SYN got as far as the helper (else this test would prove nothing)...
        assert_eq!(out, "HANDSHAKE\n", "{net}: the crafted SYN to 127.0.0.1 was not answered");
        std::thread::sleep(std::time::Duration::from_millis(300));
        // ...which did not pass it on to the host's loopback.
        assert_eq!(seen.load(Ordering::SeqCst), 0, "{net}: a crafted SYN to 127.0.0.1 reached the host's loopback");
    }
}

/// cove.conf found the way the user's command finds it (`XDG_CONFIG_HOME`, rootless), by a
/// network helper that a detached container's monitor starts: the monitor's environment keeps
/// only COVE_*, PATH and HOME, so the command settles the file's path for both.
#[test]
fn host_loopback_default_from_xdg_config_home_when_a_monitor_starts_the_helper() {
    // Rootless only (as root the file is /etc/cove/cove.conf): as covetest in the root pass.
    let Some(w) = rootless_world() else { return };
    let xdg = w.path().join("xdg");
    std::fs::create_dir_all(xdg.join("cove")).unwrap();
    std::fs::write(xdg.join("cove/cove.conf"), "allow_host_loopback = true\n").unwrap();
    let w = w.with_env("XDG_CONFIG_HOME", xdg.to_str().unwrap());
    let (port, seen) = http_server("127.0.0.1:0", "hello-from-loopback\n");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "bb",
        "sh",
        "-c",
        &format!("timeout 10 wget -qO- http://host.containers.internal:{port}/; echo rc=$?"),
    ]);
    assert!(wait_until(|| w.ok(&["logs", "web"]).contains("rc="), 30), "the container did not finish");
    let logs = w.ok(&["logs", "web"]);
    assert_eq!(logs, "hello-from-loopback\nrc=0\n", "cove.conf in XDG_CONFIG_HOME did not open the default network");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}
