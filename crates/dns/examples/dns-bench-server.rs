//! A cove DNS server for benchmarks: N synthetic containers `c0`..`c{N-1}` (with aliases
//! `a0`.. and addresses 10.89.x.y / fd89::x:y) on one network, served over UDP and TCP on
//! 127.0.0.1:PORT by a current-thread runtime, as the network helper runs it.
//!
//! Usage: dns-bench-server [--port PORT] [--containers N] [--network NAME] [--seconds S]
//!                         [--upstream ADDR:PORT]...
//! Prints `ready PORT` once listening; exits after S seconds (default 600) or when killed.
//! Only loopback: the listener is 127.0.0.1, and upstreams are whatever is given (none by
//! default, so names that are not containers get SERVFAIL).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use cove_dns::{serve_tcp, serve_udp, Entry, NetworkRecords, Records, Upstream};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

fn main() {
    let mut port: u16 = 0;
    let mut containers: u32 = 100;
    let mut network = String::from("bench");
    let mut seconds: u64 = 600;
    let mut upstreams: Vec<SocketAddr> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--port" => port = value().parse().unwrap_or_else(|_| usage("bad --port")),
            "--containers" => containers = value().parse().unwrap_or_else(|_| usage("bad --containers")),
            "--network" => network = value(),
            "--seconds" => seconds = value().parse().unwrap_or_else(|_| usage("bad --seconds")),
            "--upstream" => upstreams.push(value().parse().unwrap_or_else(|_| usage("bad --upstream"))),
            _ => usage(&format!("unknown argument {a}")),
        }
    }

    let entries = (0..containers)
        .map(|i| Entry {
            id: format!("{i:064x}"),
            name: format!("c{i}"),
            aliases: vec![format!("a{i}")],
            ipv4: vec![Ipv4Addr::new(10, 89, (i >> 8) as u8, i as u8)],
            ipv6: vec![Ipv6Addr::new(0xfd89, 0, 0, 0, 0, 0, (i >> 16) as u16, i as u16)],
            dns: vec![],
        })
        .collect();
    let records = Records::new(&[NetworkRecords { name: network.clone(), containers: entries, host: vec![] }]);
    let (_tx, rx) = watch::channel(Arc::new(records));
    let upstream = Arc::new(Upstream::new(upstreams));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot build the runtime: {e}")));
    rt.block_on(async move {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let udp = UdpSocket::bind(addr).await.unwrap_or_else(|e| fail(&format!("bind udp {addr}: {e}")));
        let port = udp.local_addr().map(|a| a.port()).unwrap_or(port);
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap_or_else(|e| fail(&format!("bind tcp 127.0.0.1:{port}: {e}")));
        println!("ready {port}");
        let stop = || tokio::time::sleep(Duration::from_secs(seconds));
        let u = serve_udp(udp, network.clone(), rx.clone(), upstream.clone(), stop());
        let t = serve_tcp(tcp, network, rx, upstream, stop());
        let (u, t) = tokio::join!(u, t);
        if let Err(e) = u.and(t) {
            fail(&e.to_string());
        }
    });
}

fn usage(msg: &str) -> ! {
    eprintln!("dns-bench-server: {msg}");
    eprintln!(
        "usage: dns-bench-server [--port PORT] [--containers N] [--network NAME] [--seconds S] [--upstream ADDR:PORT]..."
    );
    std::process::exit(2)
}

fn fail(msg: &str) -> ! {
    eprintln!("dns-bench-server: {msg}");
    std::process::exit(1)
}
