//! Closed-loop latency client for bench/dns: one query outstanding at a time over UDP to
//! 127.0.0.1:PORT, for S seconds, cycling through `c0`..`c{N-1}` (A). Prints one line:
//! `queries Q lost L p50_us X p90_us X p99_us X p999_us X max_us X`.
//!
//! Usage: dns-bench-latency --port PORT [--containers N] [--seconds S]
//! Only ever sends to 127.0.0.1.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use cove_dns::hickory_proto::op::{Message, Query};
use cove_dns::hickory_proto::rr::{Name, RecordType};

fn main() {
    let mut port: u16 = 0;
    let mut containers: u32 = 100;
    let mut seconds: u64 = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| fail(&format!("{a} needs a value")));
        match a.as_str() {
            "--port" => port = v.parse().unwrap_or_else(|_| fail("bad --port")),
            "--containers" => containers = v.parse().unwrap_or_else(|_| fail("bad --containers")),
            "--seconds" => seconds = v.parse().unwrap_or_else(|_| fail("bad --seconds")),
            _ => fail(&format!("unknown argument {a}")),
        }
    }
    if port == 0 {
        fail("--port is required");
    }
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap_or_else(|e| fail(&e.to_string()));
    sock.connect((Ipv4Addr::LOCALHOST, port)).unwrap_or_else(|e| fail(&e.to_string()));
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap_or_else(|e| fail(&e.to_string()));

    let queries: Vec<(u16, Vec<u8>)> = (0..containers.max(1))
        .map(|i| {
            let mut m = Message::query();
            let mut name = Name::from_ascii(format!("c{i}")).unwrap_or_else(|e| fail(&e.to_string()));
            name.set_fqdn(true);
            m.metadata.recursion_desired = true;
            m.add_query(Query::query(name, RecordType::A));
            (m.metadata.id, m.to_vec().unwrap_or_else(|e| fail(&e.to_string())))
        })
        .collect();

    let mut lat: Vec<u32> = Vec::with_capacity(1 << 20);
    let mut lost = 0u64;
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut i = 0usize;
    while Instant::now() < end {
        let (id, q) = &queries[i % queries.len()];
        i += 1;
        let t0 = Instant::now();
        if sock.send(q).is_err() {
            lost += 1;
            continue;
        }
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == *id => {
                    lat.push(t0.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
                    break;
                }
                Ok(_) => continue,
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let k = ((lat.len() as f64 * p) as usize).min(lat.len() - 1);
        f64::from(lat[k]) / 1000.0
    };
    println!(
        "queries {} lost {} p50_us {:.1} p90_us {:.1} p99_us {:.1} p999_us {:.1} max_us {:.1}",
        lat.len(),
        lost,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
}

fn fail(msg: &str) -> ! {
    eprintln!("dns-bench-latency: {msg}");
    std::process::exit(2)
}
