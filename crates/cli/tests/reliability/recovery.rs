//! The network helper killed under running containers (issue 18): it is replaced by a
//! container's monitor at once (or by the next cove command when no monitor can), and the
//! containers get their network back without a restart — the same interface, addresses and MAC,
//! their names in DNS, their published ports — while no other container can take those ports.

use super::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn helper_pid(w: &World) -> Option<i32> {
    let text = std::fs::read_to_string(w.path().join("run/netd.pid")).ok()?;
    let pid: i32 = text.split_whitespace().next()?.parse().ok()?;
    // Alive, and not a zombie waiting to be reaped (a killed helper is one for a moment).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    (state != "Z" && state != "X").then_some(pid)
}

fn kill9(pid: i32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
}

/// GET `path` from busybox httpd on 127.0.0.1:`port`; the body, if it answered.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s =
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// eth0's MAC and IPv4 address inside container `c`.
fn eth0(w: &World, c: &str) -> String {
    w.ok(&[
        "exec",
        c,
        "sh",
        "-c",
        "ip -o link show eth0 | grep -o 'ether [0-9a-f:]*'; ip -o -4 addr show eth0 | grep -o 'inet [0-9./]*'",
    ])
}

fn resolves(w: &World, c: &str, name: &str) -> String {
    let o = w.cove(&["exec", c, "nslookup", name]);
    String::from_utf8_lossy(&o.stdout).lines().rfind(|l| l.starts_with("Address")).unwrap_or("").to_string()
}

/// The whole path a user meets: kill -9 of the helper, then nothing typed — the monitors bring
/// a new helper and the containers' network back; twice (the monitors follow the new helper).
#[test]
fn killed_network_helper_is_replaced_and_containers_keep_their_network() {
    let Some(w) = World::new() else { return };
    // Open to the host's loopback, where the test's outbound peers listen.
    w.ok(&["network", "create", "--subnet", "10.98.1.0/24", "-o", "allow_host_loopback=true", "rec"]);
    let greeting_port = host_service("hello-from-host\n");
    let (udp_port, _) = fake_upstream();
    let outbound = |round: &str| {
        let tcp = w.ok(&["exec", "cli", "nc", "-w", "5", "host.containers.internal", &greeting_port.to_string()]);
        assert_eq!(tcp, "hello-from-host\n", "{round}: outbound TCP (the helper's path)");
        let udp =
            w.ok(&["exec", "cli", "nslookup", &format!("-port={udp_port}"), "example.org", "host.containers.internal"]);
        assert!(udp.contains("Address: 192.0.2.7"), "{round}: outbound UDP (pasta's path): {udp}");
    };
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "rec",
        "-p",
        &publish,
        "bb",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/etc",
    ]);
    w.ok(&["run", "-d", "--name", "cli", "--network", "rec", "bb", "sleep", "300"]);
    assert!(wait_until(|| http_get(port, "/hostname").is_some(), 10), "the published port answers");
    let before = (eth0(&w, "web"), eth0(&w, "cli"));
    assert!(before.0.contains("inet 10.98.1."), "{}", before.0);
    let web_ip = resolves(&w, "cli", "web");
    assert!(web_ip.contains("10.98.1."), "{web_ip}");
    outbound("before");
    let mut gaps = vec![];
    for round in 0..2 {
        let old = helper_pid(&w).expect("the helper runs");
        kill9(old);
        let t0 = Instant::now();
        // No cove command here: the containers' monitors notice and repair.
        assert!(
            wait_until(|| helper_pid(&w).is_some_and(|p| p != old) && http_get(port, "/hostname").is_some(), 10),
            "round {round}: a new helper serves the published port again"
        );
        gaps.push(t0.elapsed());
        assert_eq!((eth0(&w, "web"), eth0(&w, "cli")), before, "round {round}: same interfaces, addresses and MACs");
        assert_eq!(resolves(&w, "cli", "web"), web_ip, "round {round}: names resolve again");
        outbound(&format!("round {round}"));
        // The port is the container's again: nobody else may publish it.
        let o = w.cove(&[
            "run",
            "-d",
            "--name",
            format!("thief{round}").as_str(),
            "--network",
            "rec",
            "-p",
            &publish,
            "bb",
            "sleep",
            "30",
        ]);
        assert!(!o.status.success(), "round {round}: the port is taken");
        assert!(stderr(&o).contains("address already in use"), "{}", stderr(&o));
        let _ = w.cove(&["rm", "-f", format!("thief{round}").as_str()]);
        assert!(w.ok(&["port", "web"]).contains(&format!("127.0.0.1:{port}")));
    }
    // Outbound and a new container still work on the new helper.
    w.ok(&["run", "--rm", "--network", "rec", "bb", "true"]);
    let ms: Vec<String> = gaps.iter().map(|g| format!("{}", g.as_millis())).collect();
    println!("helper killed twice: port served again after {} ms", ms.join(", "));
    report("recovery helper-killed (monitors)", 2, 2, 0, &[("gap_ms", ms.join(","))]);
}

/// When no monitor can act (stopped here with SIGSTOP), the next cove command of any kind
/// replaces the helper and wires the containers back before it answers.
#[test]
fn killed_network_helper_is_replaced_by_the_next_command() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "--subnet", "10.98.2.0/24", "rec2"]);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    w.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "rec2",
        "-p",
        &publish,
        "bb",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/etc",
    ]);
    w.ok(&["run", "-d", "--name", "cli", "--network", "rec2", "bb", "sleep", "300"]);
    assert!(wait_until(|| http_get(port, "/hostname").is_some(), 10));
    let before = eth0(&w, "cli");
    let monitors: Vec<i32> = ["web", "cli"]
        .iter()
        .map(|c| {
            let id = w.ok(&["inspect", "-f", "{{.Id}}", c]);
            let t =
                std::fs::read_to_string(w.path().join(format!("run/containers/{}/monitor.pid", id.trim()))).unwrap();
            t.split_whitespace().next().unwrap().parse().unwrap()
        })
        .collect();
    let signal = |s| {
        for m in &monitors {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(*m), s).unwrap();
        }
    };
    signal(nix::sys::signal::Signal::SIGSTOP);
    let old = helper_pid(&w).unwrap();
    kill9(old);
    assert!(wait_until(|| http_get(port, "/hostname").is_none(), 5), "the port went with the helper");
    std::thread::sleep(Duration::from_millis(300));
    assert!(helper_pid(&w).is_none(), "nobody replaced it (the monitors are stopped)");
    // `ps`, the most harmless command, repairs before it lists.
    let ps = w.ok(&["ps", "--format", "{{.Names}} {{.Ports}}"]);
    assert!(ps.contains(&format!("127.0.0.1:{port}->8080/tcp")), "{ps}");
    assert!(http_get(port, "/hostname").is_some(), "served again once ps returned");
    signal(nix::sys::signal::Signal::SIGCONT);
    assert_eq!(eth0(&w, "cli"), before);
    assert!(resolves(&w, "cli", "web").contains("10.98.2."));
    // The monitors, woken, find a helper running and leave it: one helper, still serving.
    std::thread::sleep(Duration::from_millis(500));
    let now = helper_pid(&w).unwrap();
    assert_ne!(now, old);
    assert!(http_get(port, "/hostname").is_some());
    report("recovery helper-killed (next command)", 1, 1, 0, &[]);
}

/// A foreground `cove run` is its container's monitor: it replaces the helper too.
#[test]
fn killed_network_helper_is_replaced_by_a_foreground_run() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "--subnet", "10.98.3.0/24", "rec3"]);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let mut fg = w
        .cmd(&[
            "run",
            "--rm",
            "--name",
            "fg",
            "--network",
            "rec3",
            "-p",
            &publish,
            "bb",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/etc",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(|| http_get(port, "/hostname").is_some(), 10), "the published port answers");
    let old = helper_pid(&w).expect("the helper runs");
    kill9(old);
    let t0 = Instant::now();
    // No cove command: the foreground CLI notices and repairs.
    let back = wait_until(|| helper_pid(&w).is_some_and(|p| p != old) && http_get(port, "/hostname").is_some(), 10);
    let gap = t0.elapsed();
    w.ok(&["kill", "fg"]);
    let _ = fg.wait();
    assert!(back, "the foreground run replaced the helper and its port is served again");
    println!("foreground run: port served again after {} ms", gap.as_millis());
    report("recovery helper-killed (foreground run)", 1, 1, 0, &[("gap_ms", gap.as_millis().to_string())]);
}
