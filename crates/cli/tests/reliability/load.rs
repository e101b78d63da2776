//! Load (issue 18): many containers started and removed at once on one network while DNS is
//! asked all along, and a published port under a thousand concurrent connections and a client
//! that opens and drops connections as fast as it can. After each, the database and the helper's
//! namespace agree, every lookup was answered, and the helper holds no descriptor more than
//! before. CI runs the short form; `COVE_FAULTS_LONG=1` (bench/faults --long) runs 200
//! containers and reports the helper's memory and CPU per container.

use super::*;
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn helper_pid(w: &World) -> i32 {
    std::fs::read_to_string(w.path().join("run/netd.pid"))
        .expect("the helper runs")
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("netd.pid")
}

/// The interfaces of the helper's namespace, read through the thread of it that lives there
/// (`/proc/PID/task/TID/net/dev`: no privilege needed beyond being its user).
fn helper_links(w: &World) -> Vec<String> {
    let pid = helper_pid(w);
    let mut best = vec![];
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let Ok(dev) = std::fs::read_to_string(t.path().join("net/dev")) else { continue };
        let names: Vec<String> =
            dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(|n| n.trim().to_string()).collect();
        if names.iter().any(|n| n.starts_with("cove-")) {
            best = names;
        }
    }
    best
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// (VmRSS in KiB, utime+stime in clock ticks) of a process.
fn rss_and_cpu(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let cpu = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    (rss, cpu)
}

/// `n` cove commands at once, one thread each; their outputs in order.
fn parallel(w: &World, n: usize, args: impl Fn(usize) -> Vec<String> + Sync) -> Vec<Output> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let a = args(i);
                s.spawn(move || w.cove(&a.iter().map(String::as_str).collect::<Vec<_>>()))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn parallel_runs_and_removals_collide_on_nothing_while_dns_answers() {
    let Some(w) = World::new() else { return };
    let (runs, removals) = if long_form() { (200, 100) } else { (50, 20) };
    w.ok(&["network", "create", "--subnet", "10.98.4.0/22", "ld"]);
    w.ok(&["run", "-d", "--name", "anchor", "--network", "ld", "bb", "sleep", "900"]);
    w.ok(&["run", "-d", "--name", "probe", "--network", "ld", "bb", "sleep", "900"]);
    let helper = helper_pid(&w);
    let (rss0, cpu0) = rss_and_cpu(helper);
    // Lookups all along the churn, from a container, through the network's DNS server.
    let mut asker = w
        .cmd(&[
            "exec",
            "probe",
            "sh",
            "-c",
            "while [ ! -e /tmp/stop ]; do if nslookup anchor >/dev/null 2>&1; then echo ok; else echo FAIL; fi; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let outs = parallel(&w, runs, |i| {
        ["run", "-d", "--name", &format!("l{i}"), "--network", "ld", "bb", "sleep", "900"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let run_secs = t0.elapsed().as_secs_f64();
    let failed: Vec<String> = outs.iter().filter(|o| !o.status.success()).map(stderr).collect();
    assert!(failed.is_empty(), "{} of {runs} parallel runs failed: {:?}", failed.len(), &failed[..failed.len().min(3)]);
    // Every name and address once.
    let ips = w.ok(&["network", "inspect", "-f", "{{range .Containers}}{{.IPv4Address}} {{end}}", "ld"]);
    let ips: Vec<&str> = ips.split_whitespace().collect();
    let unique: std::collections::HashSet<&&str> = ips.iter().collect();
    assert_eq!(ips.len(), runs + 2, "{ips:?}");
    assert_eq!(unique.len(), ips.len(), "an address handed out twice: {ips:?}");
    let (rss1, cpu1) = rss_and_cpu(helper);
    let t1 = Instant::now();
    let outs = parallel(&w, removals, |i| vec!["rm".into(), "-f".into(), format!("l{i}")]);
    let rm_secs = t1.elapsed().as_secs_f64();
    let failed: Vec<String> = outs.iter().filter(|o| !o.status.success()).map(stderr).collect();
    assert!(failed.is_empty(), "parallel rm -f failed: {:?}", &failed[..failed.len().min(3)]);
    w.ok(&["exec", "probe", "touch", "/tmp/stop"]);
    let mut answers = String::new();
    asker.stdout.take().unwrap().read_to_string(&mut answers).unwrap();
    let _ = asker.wait();
    let (ok, fail) = (answers.lines().filter(|l| *l == "ok").count(), answers.lines().filter(|l| *l == "FAIL").count());
    // The database and the kernel agree: one veth per container left on the network.
    let left = runs - removals + 2;
    let ps = w.ok(&["ps", "-a", "-q"]);
    assert_eq!(ps.lines().count(), left, "{ps}");
    let veths_agree = wait_until(|| helper_links(&w).iter().filter(|n| n.starts_with("cv")).count() == left, 10);
    let veths = helper_links(&w).iter().filter(|n| n.starts_with("cv")).count();
    assert!(veths_agree, "{veths} veths in the helper's namespace for {left} containers");
    for o in ["database is locked", "busy"] {
        assert!(!answers.contains(o));
    }
    assert!(ok > 0, "the lookups ran: {answers}");
    assert_eq!(fail, 0, "{fail} of {} lookups failed during the churn", ok + fail);
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / runs as f64;
    let line = format!(
        "{runs} parallel run -d in {run_secs:.1} s, {removals} parallel rm -f in {rm_secs:.1} s, {ok} lookups, 0 failed; \
         helper: RSS {rss0} -> {rss1} KiB ({:.1} KiB and {:.2} CPU ticks per container)",
        per(rss0, rss1),
        per(cpu0, cpu1)
    );
    println!("{line}");
    report(
        "load churn",
        runs + removals,
        runs + removals,
        0,
        &[
            ("lookups", ok.to_string()),
            ("lookups_failed", fail.to_string()),
            ("helper_kib_per_container", format!("{:.1}", per(rss0, rss1))),
            ("run_d_seconds", format!("{run_secs:.1}")),
        ],
    );
}

/// An echo server in the container (the host's python3), published on 127.0.0.1.
fn echo_server(w: &World, name: &str, port: u16) {
    let publish = format!("127.0.0.1:{port}:7000");
    let script = "import asyncio\n\
async def h(r, w):\n    \
while True:\n        \
d = await r.read(4096)\n        \
if not d: break\n        \
w.write(d); await w.drain()\n    \
w.close()\n\
async def main():\n    \
s = await asyncio.start_server(h, '0.0.0.0', 7000, backlog=2048)\n    \
await s.serve_forever()\n\
asyncio.run(main())\n";
    let args = with_host_usr(
        &["run", "-d", "--name", name, "--ulimit", "nofile=20000:20000", "-p", &publish],
        &["python3", "-c", script],
    );
    w.ok(&args);
}

#[test]
fn published_port_holds_a_thousand_connections_and_leaks_no_descriptor() {
    let Some(w) = World::new() else { return };
    // This test process holds a thousand sockets.
    if let Ok((_, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    let port = free_port();
    echo_server(&w, "echo", port);
    let echo = |s: &mut std::net::TcpStream, b: &[u8]| -> bool {
        let mut got = vec![0u8; b.len()];
        s.write_all(b).is_ok() && s.read_exact(&mut got).is_ok() && got == b
    };
    assert!(
        wait_until(
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                echo(&mut s, b"hi")
            }),
            15
        ),
        "the echo server answers"
    );
    let helper = helper_pid(&w);
    std::thread::sleep(Duration::from_millis(300));
    let base = fd_count(helper);
    let n = 1000;
    let mut conns = vec![];
    for i in 0..n {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => conns.push(s),
            Err(e) => panic!("connection {i} of {n}: {e}"),
        }
    }
    let peak = fd_count(helper);
    let mut good = 0;
    for (i, s) in conns.iter_mut().enumerate() {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if echo(s, format!("c{i}\n").as_bytes()) {
            good += 1;
        }
    }
    assert_eq!(good, n, "every one of {n} concurrent connections echoes");
    drop(conns);
    let settled = |what: &str| {
        let back = wait_until(|| fd_count(helper) <= base, 10);
        assert!(back, "{what}: the helper holds {} descriptors, {base} before", fd_count(helper));
    };
    settled("after a thousand connections");
    // A client that opens and drops connections as fast as it can: half of them never send,
    // half send a byte and close at once.
    let t0 = Instant::now();
    let mut storm = 0;
    while t0.elapsed() < Duration::from_secs(3) {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            if storm % 2 == 0 {
                let _ = s.write_all(b"x");
            }
            storm += 1;
        }
    }
    settled("after the open-and-drop storm");
    // And it still serves.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert!(echo(&mut s, b"still"));
    drop(s);
    settled("at the end");
    let leaked = fd_count(helper).saturating_sub(base);
    println!(
        "{n} concurrent connections: {good} echoed, helper descriptors {base} -> {peak} -> {}; {storm} open-and-drop connections in 3 s",
        fd_count(helper)
    );
    report(
        "load published port",
        n + storm,
        n + storm,
        leaked,
        &[("storm_connections", storm.to_string()), ("helper_fds_peak", peak.to_string())],
    );
}
