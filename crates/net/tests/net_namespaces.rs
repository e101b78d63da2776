//! L1/L2 tests: real netlink in fresh network namespaces, never the host's.
//!
//! Each test re-executes this binary in child mode (`COVE_NET_CHILD=<test>`). The child is
//! single-threaded at that point (this file has its own `main`, no libtest threads), which
//! unshare(CLONE_NEWUSER) requires. As root the child unshares a network namespace; as an
//! ordinary user it unshares a user + network namespace with a single-id map. Inside, the new
//! namespace plays the rootless netns and `netns::create` makes "container" namespaces.
//! A test that cannot run prints `SKIP: reason` (a failure when COVE_REQUIRE_ALL=1).
//!
//! Accepts libtest's common arguments (a name filter, --exact, --list, --test-threads,
//! --nocapture) and prints libtest's summary line.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use cove_net::forward::{serve_tcp, Shutdown as Stop};
use cove_net::link::{attach_container, detach_container, AttachSpec, IfAddr, Netlink, Netns};
use cove_net::netns;

const SKIP: i32 = 77;

/// (name, whether to use a user namespace even as root, body)
type Body = fn() -> Result<(), String>;
const TESTS: &[(&str, Mode, Body)] = &[
    ("bridge_veth_tcp", Mode::Best, bridge_veth_tcp),
    ("userns_bridge_veth_by_pid", Mode::UserNs, bridge_veth_by_pid),
    ("published_port_into_container", Mode::Best, published_port_into_container),
    ("netns_guard_restores_on_early_return", Mode::Best, guard_restores),
];

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// As root: a network namespace only; otherwise user + network namespace.
    Best,
    /// Always a user + network namespace (single-id map), also as root.
    UserNs,
}

fn main() -> ExitCode {
    if let Ok(name) = std::env::var("COVE_NET_CHILD") {
        if name == "holder" {
            return holder();
        }
        return child(&name);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _, _) in TESTS {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let mut filters = Vec::new();
    let mut skip_next = false;
    for a in &args {
        if skip_next {
            skip_next = false;
        } else if ["--test-threads", "--skip", "--format", "--color", "--logfile", "-Z"].contains(&a.as_str()) {
            skip_next = true;
        } else if !a.starts_with('-') {
            filters.push(a.clone());
        }
    }
    let selected: Vec<&str> = TESTS
        .iter()
        .map(|t| t.0)
        .filter(|n| filters.is_empty() || filters.iter().any(|f| if exact { n == f } else { n.contains(f.as_str()) }))
        .collect();
    let require_all = std::env::var("COVE_REQUIRE_ALL").as_deref() == Ok("1");
    println!("\nrunning {} tests", selected.len());
    let (mut passed, mut failed) = (0, Vec::new());
    for name in &selected {
        let out = Command::new(std::env::current_exe().expect("own path"))
            .env("COVE_NET_CHILD", name)
            .stdin(Stdio::null())
            .output()
            .expect("re-execute test binary");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        match out.status.code() {
            Some(0) if text.contains("CHILD-OK") => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Some(SKIP) if !require_all => {
                for l in text.lines().filter(|l| l.starts_with("SKIP:")) {
                    println!("{l} ({name})");
                }
                println!("test {name} ... ok (skipped)");
                passed += 1;
            }
            _ => {
                println!("test {name} ... FAILED");
                failed.push((name, text));
            }
        }
    }
    for (name, text) in &failed {
        println!("\n---- {name} stdout ----\n{text}");
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for (name, _) in &failed {
            println!("    {name}");
        }
    }
    let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out\n",
        failed.len(),
        TESTS.len() - selected.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}

/// Child mode: enter fresh namespaces, run the body, report.
fn child(name: &str) -> ExitCode {
    let Some((_, mode, body)) = TESTS.iter().find(|t| t.0 == name) else {
        eprintln!("unknown test {name}");
        return ExitCode::from(2);
    };
    if name == "published_port_into_container" {
        // Host-netns sockets: the published port's listener and a client socket.
        use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
        let l = TcpListener::bind("127.0.0.1:0").expect("bind host listener");
        let c = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("client socket");
        PRE.with(|p| *p.borrow_mut() = Some((l, c)));
    }
    if let Err(why) = enter_namespaces(*mode) {
        println!("SKIP: {why}");
        return ExitCode::from(SKIP as u8);
    }
    match body() {
        Ok(()) => {
            println!("CHILD-OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("child {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The "rootless netns": as root a new netns; as a user (or in UserNs mode) a user namespace
/// mapping uid/gid 0 to ourselves, plus a netns it owns.
fn enter_namespaces(mode: Mode) -> Result<(), String> {
    use nix::sched::{unshare, CloneFlags};
    let root = nix::unistd::geteuid().is_root();
    if root && matches!(mode, Mode::Best) {
        return unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET) as root: {e}"));
    }
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("unshare(CLONE_NEWUSER|CLONE_NEWNET): {e} (unprivileged user namespaces disabled?)"))?;
    std::fs::write("/proc/self/setgroups", "deny").map_err(|e| format!("write setgroups: {e}"))?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).map_err(|e| format!("write uid_map: {e}"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).map_err(|e| format!("write gid_map: {e}"))?;
    Ok(())
}

/// Holder mode: a process whose only job is to own a fresh netns until stdin closes.
fn holder() -> ExitCode {
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        println!("holder: unshare: {e}");
        return ExitCode::FAILURE;
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    ExitCode::SUCCESS
}

macro_rules! check {
    ($e:expr, $($ctx:tt)+) => {
        $e.map_err(|e| format!("{}: {e}", format!($($ctx)+)))?
    };
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn ifaddr(s: &str) -> IfAddr {
    let (a, p) = s.split_once('/').unwrap();
    IfAddr { addr: a.parse().unwrap(), prefix_len: p.parse().unwrap() }
}

/// An echo server on an already bound listener (one connection at a time); returns the
/// peer address of each connection through the channel.
fn echo_on(l: TcpListener) -> std::sync::mpsc::Receiver<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            let _ = tx.send(c.peer_addr().unwrap());
            let mut r = c.try_clone().unwrap();
            let _ = std::io::copy(&mut r, &mut c);
            let _ = c.shutdown(Shutdown::Write);
        }
    });
    rx
}

fn round_trip(to: SocketAddr, msg: &[u8]) -> Result<(), String> {
    let mut s = check!(TcpStream::connect_timeout(&to, Duration::from_secs(5)), "connect {to}");
    check!(s.set_read_timeout(Some(Duration::from_secs(5))), "timeout");
    check!(s.write_all(msg), "write to {to}");
    check!(s.shutdown(Shutdown::Write), "shutdown");
    let mut back = Vec::new();
    check!(s.read_to_end(&mut back), "read from {to}");
    if back != msg {
        return Err(format!("echo from {to} returned {back:?}"));
    }
    Ok(())
}

/// Bridge with 10.99.0.1/24 + fd99::1/64 in the "rootless" netns, a container netns (by fd)
/// wired with a veth as eth0 10.99.0.2/24 + fd99::2/64 and default routes; TCP both ways and
/// through the default route; then teardown.
fn bridge_veth_tcp() -> Result<(), String> {
    let mut nl = check!(Netlink::open(), "open netlink");
    check!(nl.loopback_up(), "lo up");
    let br = check!(nl.ensure_bridge("cove-test0", &[ifaddr("10.99.0.1/24"), ifaddr("fd99::1/64")]), "bridge");
    // Again: idempotent.
    let br2 = check!(nl.ensure_bridge("cove-test0", &[ifaddr("10.99.0.1/24")]), "bridge again");
    if br != br2 {
        return Err(format!("ensure_bridge changed index {br} -> {br2}"));
    }
    // An address outside the bridge subnet on lo, reachable from the container only through
    // its default route.
    let lo = check!(nl.index_of("lo"), "lo");
    check!(nl.add_address(lo, ifaddr("10.200.0.1/32")), "addr on lo");

    let ctr = check!(netns::create(), "create container netns");
    let addrs = [ifaddr("10.99.0.2/24"), ifaddr("fd99::2/64")];
    let gws = [v4(10, 99, 0, 1), "fd99::1".parse().unwrap()];
    let spec = AttachSpec {
        bridge: "cove-test0",
        host_ifname: "vcove0",
        container_ifname: "eth0",
        addrs: &addrs,
        gateways: &gws,
        mtu: Some(1400),
        mac: None,
    };
    check!(attach_container(&mut nl, ctr.as_fd(), &spec), "attach container");

    // Inside the container netns: eth0 and lo exist; nothing named like the temporary peer.
    let mut inside = check!(Netlink::open_in(ctr.as_fd()), "netlink in container");
    check!(inside.index_of("eth0"), "eth0 inside");
    if check!(inside.link_index("vpvcove0"), "temp name").is_some() {
        return Err("temporary peer name left inside".into());
    }
    // The host side must not have eth0 (it moved).
    if check!(nl.link_index("eth0"), "eth0 outside").is_some() {
        return Err("eth0 appeared in the rootless netns".into());
    }

    // Bridge side -> container: a listener inside the container netns (via the guard).
    let l4 =
        check!(check!(netns::run_in(ctr.as_fd(), || TcpListener::bind("10.99.0.2:0")), "enter"), "bind in container");
    let a4 = l4.local_addr().unwrap();
    let peers = echo_on(l4);
    check!(round_trip(a4, b"hello container"), "bridge -> container v4");
    let peer = peers.recv_timeout(Duration::from_secs(5)).map_err(|e| format!("no peer: {e}"))?;
    if peer.ip() != v4(10, 99, 0, 1) {
        return Err(format!("container saw peer {peer}, expected the gateway 10.99.0.1"));
    }
    let l6 = check!(
        check!(netns::run_in(ctr.as_fd(), || TcpListener::bind("[fd99::2]:0")), "enter"),
        "bind v6 in container"
    );
    let a6 = l6.local_addr().unwrap();
    let _peers6 = echo_on(l6);
    check!(round_trip(a6, b"hello over ipv6"), "bridge -> container v6");

    // Container -> rootless netns through the default route (10.200.0.1 is off-subnet).
    let lr = check!(TcpListener::bind("10.200.0.1:0"), "bind 10.200.0.1");
    let ar = lr.local_addr().unwrap();
    let _peers_r = echo_on(lr);
    check!(
        check!(netns::run_in(ctr.as_fd(), || round_trip(ar, b"via default route")), "enter"),
        "container -> 10.200.0.1"
    );

    // Teardown: deleting the host end removes eth0 inside too.
    check!(detach_container(&mut nl, "vcove0"), "detach");
    check!(detach_container(&mut nl, "vcove0"), "detach again (idempotent)");
    if check!(inside.link_index("eth0"), "eth0 after detach").is_some() {
        return Err("eth0 still inside after detach".into());
    }
    check!(nl.delete_link(br), "delete bridge");
    if check!(nl.link_index("cove-test0"), "bridge gone").is_some() {
        return Err("bridge still there".into());
    }
    Ok(())
}

/// The same wiring in a user namespace (also as root), with the container netns given by a
/// process id (as the runtime knows it), and a failing attach that must clean up after itself.
fn bridge_veth_by_pid() -> Result<(), String> {
    let mut nl = check!(Netlink::open(), "open netlink");
    check!(nl.loopback_up(), "lo up");
    check!(nl.ensure_bridge("cove-test1", &[ifaddr("10.98.0.1/24")]), "bridge");

    let mut holder = check!(
        Command::new(std::env::current_exe().unwrap())
            .env("COVE_NET_CHILD", "holder")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn(),
        "spawn holder"
    );
    let mut ready = [0u8; 6];
    check!(holder.stdout.as_mut().unwrap().read_exact(&mut ready), "holder ready");
    let pid = holder.id() as i32;

    let (host, peer) = check!(nl.create_veth("vcove1", "vpcove1"), "veth");
    let br = check!(nl.index_of("cove-test1"), "bridge index");
    check!(nl.set_master(host, br), "master");
    check!(nl.set_up(host), "up");
    check!(nl.move_to_netns(peer, Netns::Pid(pid)), "move by pid");
    let ctr = check!(netns::of_pid(pid), "open holder netns");
    let mut inside = check!(Netlink::open_in(ctr.as_fd()), "netlink in holder");
    let p = check!(inside.index_of("vpcove1"), "peer inside");
    check!(inside.rename(p, "eth0"), "rename");
    check!(inside.add_address(p, ifaddr("10.98.0.2/24")), "addr");
    check!(inside.set_up(p), "up inside");
    check!(inside.loopback_up(), "lo inside");
    check!(inside.add_default_route(v4(10, 98, 0, 1), None), "default route");

    let l = check!(check!(netns::run_in(ctr.as_fd(), || TcpListener::bind("10.98.0.2:0")), "enter"), "bind");
    let a = l.local_addr().unwrap();
    let _p = echo_on(l);
    check!(round_trip(a, b"hello by pid"), "bridge -> container");

    // A failing attach (address already present inside) removes the veth it made.
    let ctr2 = check!(netns::create(), "second container netns");
    let bad = [ifaddr("10.98.0.3/24"), ifaddr("10.98.0.3/24")];
    let spec = AttachSpec {
        bridge: "cove-test1",
        host_ifname: "vcove2",
        container_ifname: "eth0",
        addrs: &bad,
        gateways: &[],
        mtu: None,
        mac: None,
    };
    match attach_container(&mut nl, ctr2.as_fd(), &spec) {
        Ok(()) => return Err("attach with a duplicate address succeeded".into()),
        Err(e) if e.to_string().contains("add address 10.98.0.3/24") => {}
        Err(e) => return Err(format!("unexpected attach error: {e}")),
    }
    if check!(nl.link_index("vcove2"), "vcove2 after failure").is_some() {
        return Err("failed attach left its veth behind".into());
    }
    // And a missing bridge is named in the error.
    let spec = AttachSpec { bridge: "no-such-br", ..spec };
    let e = attach_container(&mut nl, ctr2.as_fd(), &spec).unwrap_err().to_string();
    if e != "link \"no-such-br\" not found" {
        return Err(format!("unexpected error for a missing bridge: {e}"));
    }

    drop(holder.stdin.take());
    let _ = holder.wait();
    Ok(())
}

/// The whole published-port path: a listener in the host netns (made before unshare), the
/// forwarder connecting from the rootless netns into the container over the bridge, a client
/// in the host netns (its socket also made before unshare) — loopback traffic only.
fn published_port_into_container() -> Result<(), String> {
    // Our namespaces were already entered by the harness: re-enter the *host* side is not
    // possible as a user, so this test made its host sockets in `pre_unshare` (see below).
    let (host_listener, client_fd) =
        PRE.with(|p| p.borrow_mut().take()).ok_or("host sockets were not prepared before unshare")?;
    let host_addr = host_listener.local_addr().unwrap();

    let mut nl = check!(Netlink::open(), "open netlink");
    check!(nl.loopback_up(), "lo up");
    check!(nl.ensure_bridge("cove-test2", &[ifaddr("10.97.0.1/24")]), "bridge");
    let ctr = check!(netns::create(), "container netns");
    let addrs = [ifaddr("10.97.0.2/24")];
    let gws = [v4(10, 97, 0, 1)];
    let spec = AttachSpec {
        bridge: "cove-test2",
        host_ifname: "vcove3",
        container_ifname: "eth0",
        addrs: &addrs,
        gateways: &gws,
        mtu: None,
        mac: None,
    };
    check!(attach_container(&mut nl, ctr.as_fd(), &spec), "attach");
    let l = check!(
        check!(netns::run_in(ctr.as_fd(), || TcpListener::bind("10.97.0.2:8080")), "enter"),
        "bind in container"
    );
    let peers = echo_on(l);

    // This thread is in the rootless netns, so the forwarder's connects start here.
    let stop = Stop::new().map_err(|e| e.to_string())?;
    let stop2 = stop.clone();
    let fwd =
        std::thread::spawn(move || serve_tcp(host_listener, |_client| TcpStream::connect("10.97.0.2:8080"), &stop2));

    // The client socket lives in the host netns: connect it to the published port there.
    let target = nix::sys::socket::SockaddrIn::from(match host_addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!(),
    });
    check!(
        nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&client_fd), &target),
        "client connect to {host_addr}"
    );
    let mut c = TcpStream::from(client_fd);
    check!(c.set_read_timeout(Some(Duration::from_secs(5))), "timeout");
    let msg = vec![42u8; 1 << 20];
    check!(c.write_all(&msg), "client write");
    check!(c.shutdown(Shutdown::Write), "client shutdown");
    let mut back = Vec::new();
    check!(c.read_to_end(&mut back), "client read");
    if back != msg {
        return Err(format!("published port echo returned {} bytes, sent {}", back.len(), msg.len()));
    }
    let peer = peers.recv_timeout(Duration::from_secs(5)).map_err(|e| format!("no peer: {e}"))?;
    println!("container saw the published-port client as {peer}");
    if peer.ip() != v4(10, 97, 0, 1) {
        return Err(format!("container saw {peer}, expected the bridge address"));
    }
    stop.trigger();
    check!(fwd.join().map_err(|_| "forwarder panicked".to_string())?, "forwarder");
    check!(detach_container(&mut nl, "vcove3"), "detach");
    Ok(())
}

/// A guard dropped by `?` on an error path still switches back.
fn guard_restores() -> Result<(), String> {
    let home = check!(netns::id(check!(netns::current(), "current")), "id");
    let other = check!(netns::create(), "create");
    let other_id = check!(netns::id(&other), "id");
    if other_id == home {
        return Err("created netns has our id".into());
    }
    fn fails_inside(target: &OwnedFd, want: u64) -> Result<(), String> {
        let _g = netns::NetnsGuard::enter(target.as_fd()).map_err(|e| e.to_string())?;
        let now = netns::id(netns::current().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        if now != want {
            return Err("guard did not enter".into());
        }
        let fail: Result<(), String> = Err("early return".into());
        fail?;
        unreachable!()
    }
    match fails_inside(&other, other_id) {
        Err(e) if e == "early return" => {}
        r => return Err(format!("unexpected: {r:?}")),
    }
    let back = check!(netns::id(check!(netns::current(), "current")), "id");
    if back != home {
        return Err("thread left in the other netns after an early return".into());
    }
    // And after a panic inside run_in.
    let r = std::panic::catch_unwind(|| netns::run_in(other.as_fd(), || panic!("boom")));
    if r.is_ok() {
        return Err("panic was swallowed".into());
    }
    if check!(netns::id(check!(netns::current(), "current")), "id") != home {
        return Err("thread left in the other netns after a panic".into());
    }
    Ok(())
}

thread_local! {
    /// Host-side sockets of `published_port_into_container`, made before unshare.
    static PRE: std::cell::RefCell<Option<(TcpListener, OwnedFd)>> = const { std::cell::RefCell::new(None) };
}
