//! Two engines on 127.0.0.1 and 127.0.0.2, same port, each other's "group": unicast on
//! loopback only.
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::name;
use crate::{channel, serve, sockets, Control, Options, Sockets};
use crate::{Event, Interface, ServiceSpec};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::mpsc;

struct Node {
    control: Control,
    events: mpsc::Receiver<Event>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.control.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lo_index() -> u32 {
    nix::net::if_::if_nametoindex("lo").unwrap()
}

fn bind_pair() -> (std::net::UdpSocket, std::net::UdpSocket, u16) {
    for _ in 0..20 {
        let a = sockets::bind_v4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 0)).unwrap();
        let port = a.local_addr().unwrap().port();
        if let Ok(b) = sockets::bind_v4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), port)) {
            return (a, b, port);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

fn start(sock: std::net::UdpSocket, ip: Ipv4Addr, port: u16) -> Node {
    let query = sockets::bind_v4(SocketAddrV4::new(ip, 0)).unwrap();
    let options = Options {
        port,
        groups_v4: vec![SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::from(([127, 0, 0, 2], port))],
        groups_v6: vec![],
        interfaces: vec![Interface { index: lo_index(), name: "lo".into(), addrs: vec![IpAddr::V4(ip)] }],
        manage_groups: false,
    };
    let (control, commands) = channel().unwrap();
    let (tx, events) = mpsc::channel();
    let sockets = Sockets { v4: Some(sock), query_v4: Some(query), ..Sockets::default() };
    let thread = std::thread::spawn(move || {
        serve(sockets, options, commands, move |e| {
            let _ = tx.send(e);
        })
        .unwrap();
    });
    Node { control, events, thread: Some(thread) }
}

fn wait_established(node: &Node, n: usize) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.iter().filter(|e| matches!(e, Event::Established { .. })).count() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match node.events.recv_timeout(left) {
            Ok(e) => seen.push(e),
            Err(_) => panic!("not established in time: {seen:?}"),
        }
    }
    seen
}

fn addrs(records: &[Record]) -> Vec<IpAddr> {
    records
        .iter()
        .filter_map(|r| match r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn publish_resolve_browse_and_rename_over_loopback() {
    let (sa, sb, port) = bind_pair();
    let a = start(sa, Ipv4Addr::new(127, 0, 0, 1), port);
    let b = start(sb, Ipv4Addr::new(127, 0, 0, 2), port);

    // Both claim the same name; one of them renames.
    a.control.publish_host("dup.local").unwrap();
    b.control.publish_host("dup.local").unwrap();
    a.control.publish_host("alpha.mycluster.local").unwrap();
    a.control
        .publish_service(ServiceSpec {
            service_type: "_redis._tcp".into(),
            instance: "alpha on mycluster".into(),
            host: "alpha.mycluster.local".into(),
            port: 12000,
            txt: vec!["container=alpha".into()],
        })
        .unwrap();
    let ea = wait_established(&a, 3);
    let eb = wait_established(&b, 1);
    let renames: Vec<&Event> = ea.iter().chain(eb.iter()).filter(|e| matches!(e, Event::Renamed { .. })).collect();
    assert_eq!(renames.len(), 1, "exactly one side renames: {ea:?} {eb:?}");
    assert!(matches!(renames[0], Event::Renamed { from, to, .. } if from == "dup.local" && to == "dup-2.local"));

    // B resolves A's names with one-shot queries; both dup names resolve.
    let t = Duration::from_secs(2);
    let got = b.control.resolve(&name("alpha.mycluster.local"), RecordType::A, t).unwrap();
    assert_eq!(addrs(&got), [IpAddr::from([127, 0, 0, 1])]);
    let dup = a.control.resolve(&name("dup.local"), RecordType::A, t).unwrap();
    let dup2 = a.control.resolve(&name("dup-2.local"), RecordType::A, t).unwrap();
    let mut all = addrs(&dup);
    all.extend(addrs(&dup2));
    all.sort();
    assert_eq!(all, [IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2])]);

    // Browse from B.
    let found = b.control.browse("_redis._tcp", Duration::from_millis(800)).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].instance, "alpha on mycluster");
    assert_eq!(found[0].port, 12000);
    assert_eq!(found[0].host, "alpha.mycluster.local");
    assert_eq!(found[0].txt, ["container=alpha"]);
    assert_eq!(found[0].addrs, [IpAddr::from([127, 0, 0, 1])]);

    // Nobody answers: empty within the timeout, then a negative entry answers at once.
    let started = Instant::now();
    assert!(b.control.resolve(&name("nobody.local"), RecordType::A, Duration::from_millis(300)).unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(b.control.lookup_cached(&name("nobody.local"), RecordType::A), crate::Lookup::Negative);

    // A DNS client's query (what the network's DNS server hands over), answered in bytes:
    // from the LAN, then from the cache; NXDOMAIN for nobody.
    let dns = |control: &Control, qname: &str, qtype: RecordType| {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
        let (tx, rx) = mpsc::channel();
        control.answer_dns(
            &m.to_vec().unwrap(),
            Duration::from_millis(500),
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        Message::from_vec(&rx.recv().unwrap().unwrap()).unwrap()
    };
    let m = dns(&b.control, "dup.local.", RecordType::A);
    assert_eq!((m.metadata.id, m.answers.len()), (7, 1));
    assert!(!m.answers[0].mdns_cache_flush);
    // No AAAA: the owner's NSEC (B's own, and A's over the legacy unicast path) ends the wait
    // long before the timeout.
    for n in ["dup.local.", "dup-2.local."] {
        let started = Instant::now();
        let m = dns(&b.control, n, RecordType::AAAA);
        assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
        assert!(started.elapsed() < Duration::from_millis(450), "{n}: {:?}", started.elapsed());
    }
    let m = dns(&b.control, "nobody-at-all.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = dns(&b.control, "_redis._tcp.local.", RecordType::PTR);
    assert_eq!(m.answers.len(), 1);

    // Reverse PTR from the cache (B heard A's announcements on its mDNS socket).
    let rev = Name::from(IpAddr::from([127, 0, 0, 1]));
    assert!(matches!(b.control.lookup_cached(&rev, RecordType::PTR), crate::Lookup::Found(_)));

    // Withdraw: B's cache drops the name a second after the goodbye.
    let id = a.control.published().unwrap().into_iter().find(|p| p.name == "alpha.mycluster.local").unwrap().id;
    a.control.withdraw(id).unwrap();
    std::thread::sleep(Duration::from_millis(1300));
    assert!(!matches!(b.control.lookup_cached(&name("alpha.mycluster.local"), RecordType::A), crate::Lookup::Found(_)));

    // A gains an address: announced again (cache-flush), B sees it.
    let lo = Interface {
        index: lo_index(),
        name: "lo".into(),
        addrs: vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 3])],
    };
    a.control.set_interfaces(vec![lo]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut seen = Vec::new();
    for n in ["dup.local", "dup-2.local"] {
        if let crate::Lookup::Found(v) = b.control.lookup_cached(&name(n), RecordType::A) {
            seen.extend(addrs(&v));
        }
    }
    assert!(seen.contains(&IpAddr::from([127, 0, 0, 3])), "{seen:?}");
}
