//! Feeds arbitrary bytes to the responder (as a multicast-port packet and as legacy unicast)
//! and the querier, with a host and a service published and established. Contract: never
//! panics; whatever the responder sends parses and fits a datagram.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use cove_mdns::hickory_proto::op::Message;
use cove_mdns::{Cache, Interface, Querier, Responder, ServiceSpec};
use libfuzzer_sys::fuzz_target;

fn established() -> (Responder, Instant) {
    let t0 = Instant::now();
    let mut r = Responder::with_seed(5353, 1);
    let iface = Interface {
        index: 2,
        name: "eth0".into(),
        addrs: vec!["192.0.2.10".parse().unwrap(), "2001:db8::10".parse().unwrap()],
    };
    r.set_interfaces(vec![iface], t0);
    r.publish_host("node1.mycluster.local", t0).unwrap();
    let spec = ServiceSpec {
        service_type: "_http._tcp".into(),
        instance: "web on mycluster".into(),
        host: "node1.mycluster.local".into(),
        port: 8080,
        txt: vec!["a=b".into()],
    };
    r.publish_service(spec, t0).unwrap();
    let mut now = t0;
    while let Some(t) = r.poll_timeout() {
        if t > t0 + Duration::from_secs(5) {
            break;
        }
        now = t;
        r.handle_timeout(now);
    }
    while r.poll_transmit().is_some() {}
    (r, now + Duration::from_secs(2))
}

static ESTABLISHED: LazyLock<(Responder, Instant)> = LazyLock::new(established);

fuzz_target!(|data: &[u8]| {
    let (mut r, now) = ESTABLISHED.clone();
    let mut q = Querier::new(5353, Arc::new(Mutex::new(Cache::new(64))));
    q.set_interfaces(r.interfaces().cloned().collect());
    for port in [5353u16, 40000] {
        let from = SocketAddr::from(([192, 0, 2, 99], port));
        r.handle_packet(data, from, 2, now);
        q.handle_packet(data, from, 2, now);
        r.handle_timeout(now + Duration::from_millis(600));
        while let Some(t) = r.poll_transmit() {
            assert!(t.payload.len() <= 1400);
            Message::from_vec(&t.payload).expect("what the responder sends parses");
        }
    }
});
