//! Cost of answering, without sockets: a responder with N published hosts and N services
//! (default 100 each, as in issue 15's benchmark) answers queries as fast as it can.
//!
//! ```text
//! cargo run --release -p cove-mdns --example mdns-bench -- [N] [QUERIES]
//! ```
//! Prints packets/s for an A question (multicast, unique: answered at once), a PTR browse
//! (delayed, aggregated), a legacy unicast A question (each for a different name), and another
//! host's announcement (conflict checks, nothing to send).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cove_mdns::hickory_proto::op::{Message, MessageType, OpCode, Query};
use cove_mdns::hickory_proto::rr::rdata::A;
use cove_mdns::hickory_proto::rr::{Name, RData, Record, RecordType};
use cove_mdns::{Interface, Responder, ServiceSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let queries: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(200_000);
    let t0 = Instant::now();
    let mut r = Responder::with_seed(5353, 1);
    let iface =
        Interface { index: 2, name: "eth0".into(), addrs: vec!["192.0.2.10".parse()?, "2001:db8::10".parse()?] };
    r.set_interfaces(vec![iface], t0);
    for i in 0..n {
        let host = format!("c{i}.mycluster.local");
        r.publish_host(&host, t0)?;
        r.publish_service(
            ServiceSpec {
                service_type: "_redis._tcp".into(),
                instance: format!("c{i} on mycluster"),
                host,
                port: 12000 + i as u16,
                txt: vec![format!("container=c{i}")],
            },
            t0,
        )?;
    }
    let mut now = t0;
    while let Some(t) = r.poll_timeout() {
        if t > t0 + Duration::from_secs(5) {
            break;
        }
        now = t;
        r.handle_timeout(now);
    }
    while r.poll_transmit().is_some() {}
    let packets = |qname: &dyn Fn(usize) -> String, qtype: RecordType| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut m = Message::query();
                m.metadata.id = 0;
                m.add_query(Query::query(Name::from_ascii(qname(i)).unwrap(), qtype));
                m.to_vec().unwrap()
            })
            .collect()
    };
    let a = packets(&|i| format!("c{i}.mycluster.local."), RecordType::A);
    let ptr = packets(&|_| "_redis._tcp.local.".into(), RecordType::PTR);
    // Another host's announcement: ten address records of names that are not ours.
    let announcement = {
        let mut m = Message::new(0, MessageType::Response, OpCode::Query);
        for i in 0..10u8 {
            let name = Name::from_ascii(format!("peer{i}.local."))?;
            m.add_answer(Record::from_rdata(name, 120, RData::A(A::new(192, 0, 2, 100 + i))));
        }
        vec![m.to_vec()?]
    };
    let cases: [(&str, &Vec<Vec<u8>>, u16); 4] = [
        ("A multicast", &a, 5353),
        ("PTR multicast", &ptr, 5353),
        ("A legacy", &a, 40000),
        ("announcement", &announcement, 5353),
    ];
    for (label, pkts, port) in cases {
        let from = SocketAddr::from(([192, 0, 2, 99], port));
        let mut sent = 0usize;
        let start = Instant::now();
        for q in 0..queries {
            // A second apart in the engine's time, so the rate limits never hide the work.
            now += Duration::from_secs(1);
            r.handle_packet(&pkts[q % pkts.len()], from, 2, now);
            r.handle_timeout(now + Duration::from_millis(500));
            while let Some(t) = r.poll_transmit() {
                sent += t.payload.len();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label:14} {:>9.0} packets/s  ({:.1} us each, {} bytes sent per packet)",
            queries as f64 / secs,
            secs * 1e6 / queries as f64,
            sent / queries
        );
    }
    Ok(())
}
