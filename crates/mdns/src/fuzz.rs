//! Entry point of the fuzz target (crates/mdns/fuzz), also replayed over the checked-in corpus
//! by this crate's unit tests. Not an API: it takes arbitrary bytes and panics only when an
//! invariant of the engine breaks (never on bad input).

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;

use crate::{Cache, Interface, Querier, Responder, ServiceSpec};

fn established() -> (Responder, Instant) {
    let t0 = Instant::now();
    let mut r = Responder::with_seed(5353, 1);
    let iface = Interface {
        index: 2,
        name: "eth0".into(),
        addrs: vec![[192, 0, 2, 10].into(), "2001:db8::10".parse().expect("an address")],
    };
    r.set_interfaces(vec![iface], t0);
    r.publish_host("node1.mycluster.local", t0).expect("publish a host");
    let spec = ServiceSpec {
        service_type: "_http._tcp".into(),
        instance: "web on mycluster".into(),
        host: "node1.mycluster.local".into(),
        port: 8080,
        txt: vec!["a=b".into()],
    };
    r.publish_service(spec, t0).expect("publish a service");
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

/// Feeds `data` to the responder (as a multicast-port packet and as legacy unicast) and the
/// querier, with a host and a service published and established. Panics if what the responder
/// sends does not parse or does not fit a datagram.
pub fn handle_packet(data: &[u8]) {
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
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    #[test]
    fn handle_packet_corpus_replays() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut files = Vec::new();
        for dir in ["corpus", "regressions"] {
            if let Ok(rd) = fs::read_dir(fuzz.join(dir).join("handle_packet")) {
                files.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
            }
        }
        assert!(!files.is_empty(), "no corpus under {}", fuzz.display());
        for f in files {
            super::handle_packet(&fs::read(&f).unwrap());
        }
    }
}
