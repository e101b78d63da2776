//! The responder's behaviour over a fake clock: every datagram in and out by hand.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::name;
use crate::wire::{self, address_record, parse, Family, Target, Transmit};
use crate::{Event, Interface, Responder, ServiceSpec, State, HOST_TTL};

const PORT: u16 = 5353;

fn eth0() -> Interface {
    Interface { index: 7, name: "eth0".into(), addrs: vec!["192.0.2.10".parse().unwrap()] }
}

fn eth1() -> Interface {
    Interface {
        index: 8,
        name: "eth1".into(),
        addrs: vec!["198.51.100.10".parse().unwrap(), "2001:db8::10".parse().unwrap()],
    }
}

fn peer() -> SocketAddr {
    "192.0.2.99:5353".parse().unwrap()
}

fn responder(t0: Instant) -> Responder {
    let mut r = Responder::with_seed(PORT, 42);
    r.set_interfaces(vec![eth0()], t0);
    r
}

fn drain(r: &mut Responder) -> Vec<Transmit> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

fn events(r: &mut Responder) -> Vec<Event> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

fn msg(t: &Transmit) -> Message {
    parse(&t.payload).expect("our packets parse")
}

/// Steps the clock in 1 ms ticks from `from` to `to`, collecting what goes out and when.
fn run(r: &mut Responder, from: Instant, to: Instant) -> Vec<(Instant, Transmit)> {
    let mut out = Vec::new();
    let mut now = from;
    while now <= to {
        if r.poll_timeout().is_some_and(|t| t <= now) {
            r.handle_timeout(now);
        }
        out.extend(drain(r).into_iter().map(|t| (now, t)));
        now += Duration::from_millis(1);
    }
    out
}

/// Publishes and runs until established; returns the time then.
fn establish(r: &mut Responder, t0: Instant) -> Instant {
    let end = t0 + Duration::from_secs(3);
    run(r, t0, end);
    assert!(r.published().iter().all(|p| p.state == State::Established), "{:?}", r.published());
    events(r);
    end
}

fn query(questions: &[(Name, RecordType, bool)], known: &[Record]) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0;
    for (n, t, qu) in questions {
        let mut q = Query::query(n.clone(), *t);
        q.mdns_unicast_response = *qu;
        m.add_query(q);
    }
    m.answers = known.to_vec();
    m.to_vec().unwrap()
}

fn announce(records: &[Record]) -> Vec<u8> {
    let mut m = wire::response(0, vec![]);
    m.answers = records.to_vec();
    m.to_vec().unwrap()
}

#[test]
fn probing_timeline_then_announcements() {
    let t0 = Instant::now();
    let mut r = responder(t0);
    r.publish_host("node1.mycluster.local", t0).unwrap();
    assert!(r.poll_timeout().unwrap() <= t0 + Duration::from_millis(250));
    let sent = run(&mut r, t0, t0 + Duration::from_secs(4));
    let probes: Vec<_> = sent.iter().filter(|(_, t)| msg(t).metadata.message_type == MessageType::Query).collect();
    let announcements: Vec<_> =
        sent.iter().filter(|(_, t)| msg(t).metadata.message_type == MessageType::Response).collect();
    assert_eq!(probes.len(), 3);
    assert!(probes[0].0 <= t0 + Duration::from_millis(250));
    for w in probes.windows(2) {
        assert_eq!(w[1].0 - w[0].0, Duration::from_millis(250));
    }
    for (i, (_, t)) in probes.iter().enumerate() {
        let m = msg(t);
        assert_eq!(t.target, Target::Multicast(Family::V4));
        assert_eq!(m.queries[0].query_type, RecordType::ANY);
        assert_eq!(m.queries[0].name, name("node1.mycluster.local"));
        assert_eq!(m.queries[0].mdns_unicast_response, i == 0, "QU on the first probe only");
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].data, RData::A("192.0.2.10".parse::<std::net::Ipv4Addr>().unwrap().into()));
    }
    assert_eq!(announcements.len(), 2);
    assert_eq!(announcements[0].0 - probes[2].0, Duration::from_millis(250));
    assert_eq!(announcements[1].0 - announcements[0].0, Duration::from_secs(1));
    for (_, t) in &announcements {
        let m = msg(t);
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers.len(), 1);
        assert!(m.answers[0].mdns_cache_flush);
        assert_eq!(m.answers[0].ttl, HOST_TTL);
    }
    let ev = events(&mut r);
    assert!(matches!(&ev[..], [Event::Established { name, .. }] if name == "node1.mycluster.local"), "{ev:?}");
}

#[test]
fn service_records_ttls_and_probe() {
    let t0 = Instant::now();
    let mut r = responder(t0);
    r.publish_host("node1.local", t0).unwrap();
    r.publish_service(
        ServiceSpec {
            service_type: "_redis._tcp".into(),
            instance: "node1 on mycluster".into(),
            host: "node1.local".into(),
            port: 12000,
            txt: vec![],
        },
        t0,
    )
    .unwrap();
    let sent = run(&mut r, t0, t0 + Duration::from_secs(4));
    let probe = sent.iter().map(|(_, t)| msg(t)).find(|m| m.metadata.message_type == MessageType::Query).unwrap();
    let types: Vec<RecordType> = probe.authorities.iter().map(|r| r.record_type()).collect();
    assert!(types.contains(&RecordType::SRV) && types.contains(&RecordType::TXT), "{types:?}");
    let mut answers: Vec<Record> = sent
        .iter()
        .map(|(_, t)| msg(t))
        .filter(|m| m.metadata.message_type == MessageType::Response)
        .flat_map(|m| m.answers)
        .collect();
    let before = answers.len();
    crate::responder::dedup(&mut answers);
    assert_eq!(before, answers.len() * 2, "every record announced twice");
    let by_type = |t: RecordType| answers.iter().filter(|r| r.record_type() == t).cloned().collect::<Vec<_>>();
    let srv = by_type(RecordType::SRV);
    assert_eq!((srv[0].ttl, srv[0].mdns_cache_flush), (120, true));
    let RData::SRV(s) = &srv[0].data else { panic!() };
    assert_eq!((s.port, s.target.clone()), (12000, name("node1.local")));
    let txt = by_type(RecordType::TXT);
    assert_eq!((txt[0].ttl, txt[0].mdns_cache_flush), (4500, true));
    let RData::TXT(t) = &txt[0].data else { panic!() };
    assert_eq!(t.txt_data.len(), 1, "an empty TXT still has one (empty) string");
    let ptrs = by_type(RecordType::PTR);
    assert_eq!(ptrs.len(), 2);
    assert!(ptrs.iter().all(|p| p.ttl == 4500 && !p.mdns_cache_flush));
    assert!(ptrs.iter().any(|p| p.name == wire::services_name()));
    assert_eq!(by_type(RecordType::A).len(), 1);
}

#[test]
fn conflict_during_probing_renames() {
    let t0 = Instant::now();
    let mut r = responder(t0);
    let id = r.publish_host("node1.mycluster.local", t0).unwrap();
    let svc = r
        .publish_service(
            ServiceSpec {
                service_type: "_http._tcp".into(),
                instance: "Web".into(),
                host: "node1.mycluster.local".into(),
                port: 80,
                txt: vec!["path=/".into()],
            },
            t0,
        )
        .unwrap();
    let t1 = t0 + Duration::from_millis(300);
    run(&mut r, t0, t1);
    // Another host answers for both names.
    let theirs_a = address_record(&name("node1.mycluster.local"), "192.0.2.50".parse().unwrap(), 120);
    let inst = wire::instance_name("Web", &wire::service_type_name("_http._tcp").unwrap()).unwrap();
    let theirs_srv = wire::unique(Record::from_rdata(
        inst,
        120,
        RData::SRV(hickory_proto::rr::rdata::SRV::new(0, 0, 80, name("other.local"))),
    ));
    r.handle_packet(&announce(&[theirs_a, theirs_srv]), peer(), 7, t1);
    let ev = events(&mut r);
    assert!(ev.contains(&Event::Renamed {
        id,
        from: "node1.mycluster.local".into(),
        to: "node1-2.mycluster.local".into()
    }));
    assert!(ev.contains(&Event::Renamed { id: svc, from: "Web".into(), to: "Web (2)".into() }));
    let sent = run(&mut r, t1, t1 + Duration::from_secs(4));
    let probes: Vec<Message> =
        sent.iter().map(|(_, t)| msg(t)).filter(|m| m.metadata.message_type == MessageType::Query).collect();
    assert!(probes.iter().any(|p| p.queries.iter().any(|q| q.name == name("node1-2.mycluster.local"))));
    // The SRV follows the host's new name.
    let srv = probes.iter().flat_map(|p| p.authorities.iter()).find(|r| r.record_type() == RecordType::SRV).unwrap();
    let RData::SRV(s) = &srv.data else { panic!() };
    assert_eq!(s.target, name("node1-2.mycluster.local"));
    let names: Vec<String> = r.published().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["node1-2.mycluster.local", "Web (2)"]);
    assert!(r.published().iter().all(|p| p.state == State::Established));
}

#[test]
fn simultaneous_probe_tie_break() {
    for (theirs, we_lose) in [("192.0.2.200", true), ("192.0.2.1", false), ("192.0.2.10", false)] {
        let t0 = Instant::now();
        let mut r = responder(t0);
        r.publish_host("node1.local", t0).unwrap();
        let t1 = t0 + Duration::from_millis(260);
        let first = run(&mut r, t0, t1);
        assert_eq!(first.len(), 1, "one probe by then");
        let mut m = Message::query();
        m.metadata.id = 0;
        m.add_query(Query::query(name("node1.local"), RecordType::ANY));
        m.add_authority(address_record(&name("node1.local"), theirs.parse().unwrap(), 120));
        r.handle_packet(&m.to_vec().unwrap(), peer(), 7, t1);
        let next = r.poll_timeout().unwrap();
        if we_lose {
            assert_eq!(next, t1 + Duration::from_secs(1), "{theirs}: wait a second and probe again");
            let sent = run(&mut r, t1, t1 + Duration::from_millis(1100));
            assert!(sent.iter().all(|(at, _)| *at >= t1 + Duration::from_secs(1)));
        } else {
            assert!(next <= first[0].0 + Duration::from_millis(250), "{theirs}: we win, probing goes on");
        }
        assert!(events(&mut r).is_empty());
    }
}

#[test]
fn own_packets_looped_back_are_not_conflicts() {
    let t0 = Instant::now();
    let mut r = responder(t0);
    r.publish_host("node1.local", t0).unwrap();
    let mut now = t0;
    let end = t0 + Duration::from_secs(3);
    while now <= end {
        if r.poll_timeout().is_some_and(|t| t <= now) {
            r.handle_timeout(now);
        }
        for t in drain(&mut r) {
            // Every packet comes straight back, as IP_MULTICAST_LOOP does.
            r.handle_packet(&t.payload, "192.0.2.10:5353".parse().unwrap(), 7, now);
        }
        now += Duration::from_millis(1);
    }
    let ev = events(&mut r);
    assert!(matches!(&ev[..], [Event::Established { .. }]), "{ev:?}");
}

#[test]
fn conflict_after_announcing_probes_again() {
    let t0 = Instant::now();
    let mut r = responder(t0);
    let id = r.publish_host("node1.local", t0).unwrap();
    let t1 = establish(&mut r, t0);
    let theirs = address_record(&name("node1.local"), "192.0.2.50".parse().unwrap(), 120);
    r.handle_packet(&announce(std::slice::from_ref(&theirs)), peer(), 7, t1);
    assert_eq!(events(&mut r), [Event::Conflict { id, name: "node1.local".into() }]);
    assert_eq!(r.published()[0].state, State::Probing);
    // The other host defends while we probe: renamed.
    run(&mut r, t1, t1 + Duration::from_millis(10));
    r.handle_packet(&announce(&[theirs]), peer(), 7, t1 + Duration::from_millis(10));
    assert!(matches!(&events(&mut r)[..], [Event::Renamed { to, .. }] if to == "node1-2.local"));
}

#[test]
fn answers_unique_at_once_and_known_answers_suppress() {
    let t0 = Instant::now();
    let mut r = responder(t0);
    r.publish_host("node1.local", t0).unwrap();
    let t1 = establish(&mut r, t0) + Duration::from_secs(2);
    let q = query(&[(name("NODE1.local"), RecordType::A, false)], &[]);
    r.handle_packet(&q, peer(), 7, t1);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1, "unique answers go at once");
    assert_eq!(out[0].target, Target::Multicast(Family::V4));
    assert_eq!(out[0].interface, 7);
    let m = msg(&out[0]);
    assert_eq!(m.metadata.id, 0);
    assert!(m.queries.is_empty());
    assert_eq!(m.answers[0].data, RData::A("192.0.2.10".parse::<std::net::Ipv4Addr>().unwrap().into()));
    // Known answer with at least half the TTL: nothing.
    let t2 = t1 + Duration::from_secs(2);
    let known = address_record(&name("node1.local"), "192.0.2.10".parse().unwrap(), 60);
    r.handle_packet(&query(&[(name("node1.local"), RecordType::A, false)], &[known]), peer(), 7, t2);
    r.handle_timeout(t2 + Duration::from_millis(200));
    assert!(drain(&mut r).is_empty());
    // Less than half: answered.
    let stale = address_record(&name("node1.local"), "192.0.2.10".parse().unwrap(), 59);
    r.handle_packet(&query(&[(name("node1.local"), RecordType::A, false)], &[stale]), peer(), 7, t2);
    assert_eq!(drain(&mut r).len(), 1);
    // Not ours: nothing.
    r.handle_packet(
        &query(&[(name("other.local"), RecordType::A, false)], &[]),
        peer(),
        7,
        t2 + Duration::from_secs(2),
    );
    assert!(drain(&mut r).is_empty());
}

fn with_service(t0: Instant) -> (Responder, Instant) {
    let mut r = responder(t0);
    r.publish_host("node1.local", t0).unwrap();
    r.publish_service(
        ServiceSpec {
            service_type: "_http._tcp".into(),
            instance: "Web".into(),
            host: "node1.local".into(),
            port: 8080,
            txt: vec!["a=1".into()],
        },
        t0,
    )
    .unwrap();
    let t1 = establish(&mut r, t0) + Duration::from_secs(2);
    (r, t1)
}

#[test]
fn shared_answers_wait_20_to_120_ms_and_carry_additionals() {
    let t0 = Instant::now();
    let (mut r, t1) = with_service(t0);
    let ty = wire::service_type_name("_http._tcp").unwrap();
    r.handle_packet(&query(&[(ty.clone(), RecordType::PTR, false)], &[]), peer(), 7, t1);
    assert!(drain(&mut r).is_empty());
    let due = r.poll_timeout().unwrap();
    assert!(due >= t1 + Duration::from_millis(20) && due <= t1 + Duration::from_millis(120));
    r.handle_timeout(due);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    let m = msg(&out[0]);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].data, RData::PTR(PTR(wire::instance_name("Web", &ty).unwrap())));
    let extra: Vec<RecordType> = m.additionals.iter().map(|r| r.record_type()).collect();
    assert!(extra.contains(&RecordType::SRV) && extra.contains(&RecordType::TXT) && extra.contains(&RecordType::A));
    // Within the second: not multicast again.
    r.handle_packet(&query(&[(ty.clone(), RecordType::PTR, false)], &[]), peer(), 7, due + Duration::from_millis(500));
    r.handle_timeout(due + Duration::from_millis(700));
    assert!(drain(&mut r).is_empty(), "at most one multicast per record per second");
    // Service type enumeration.
    r.handle_packet(
        &query(&[(wire::services_name(), RecordType::PTR, false)], &[]),
        peer(),
        7,
        due + Duration::from_secs(2),
    );
    r.handle_timeout(due + Duration::from_secs(3));
    let m = msg(&drain(&mut r)[0]);
    assert_eq!(m.answers[0].data, RData::PTR(PTR(ty)));
}

#[test]
fn truncated_query_waits_for_more_known_answers() {
    let t0 = Instant::now();
    let (mut r, t1) = with_service(t0);
    let ty = wire::service_type_name("_http._tcp").unwrap();
    let mut m = Message::from_vec(&query(&[(ty.clone(), RecordType::PTR, false)], &[])).unwrap();
    m.metadata.truncation = true;
    r.handle_packet(&m.to_vec().unwrap(), peer(), 7, t1);
    let due = r.poll_timeout().unwrap();
    assert!(due >= t1 + Duration::from_millis(400) && due <= t1 + Duration::from_millis(500));
    // The continuation: no question, the known answer.
    let ptr = Record::from_rdata(ty.clone(), 4500, RData::PTR(PTR(wire::instance_name("Web", &ty).unwrap())));
    r.handle_packet(&query(&[], &[ptr]), peer(), 7, t1 + Duration::from_millis(100));
    r.handle_timeout(t1 + Duration::from_millis(600));
    assert!(drain(&mut r).is_empty());
}

#[test]
fn another_responders_answer_suppresses_ours() {
    let t0 = Instant::now();
    let (mut r, t1) = with_service(t0);
    let ty = wire::service_type_name("_http._tcp").unwrap();
    r.handle_packet(&query(&[(wire::services_name(), RecordType::PTR, false)], &[]), peer(), 7, t1);
    let theirs = Record::from_rdata(wire::services_name(), 4500, RData::PTR(PTR(ty)));
    r.handle_packet(&announce(&[theirs]), "192.0.2.98:5353".parse().unwrap(), 7, t1 + Duration::from_millis(10));
    r.handle_timeout(t1 + Duration::from_millis(200));
    assert!(drain(&mut r).is_empty());
}

#[test]
fn qu_gets_unicast_unless_not_multicast_for_a_quarter_ttl() {
    let t0 = Instant::now();
    let mut r = responder(t0);
    r.publish_host("node1.local", t0).unwrap();
    let t1 = establish(&mut r, t0);
    let q = query(&[(name("node1.local"), RecordType::A, true)], &[]);
    r.handle_packet(&q, peer(), 7, t1);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].target, Target::Unicast(peer()));
    let m = msg(&out[0]);
    assert_eq!((m.metadata.id, m.queries.len()), (0, 0));
    // 30 s (120/4) after the last announcement: multicast instead.
    let t2 = t1 + Duration::from_secs(31);
    r.handle_packet(&q, peer(), 7, t2);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].target, Target::Multicast(Family::V4));
}

#[test]
fn legacy_unicast_echoes_id_and_question_caps_ttl() {
    let t0 = Instant::now();
    let mut r = responder(t0);
    r.publish_host("node1.mycluster.local", t0).unwrap();
    let t1 = establish(&mut r, t0);
    let from: SocketAddr = "192.0.2.99:40123".parse().unwrap();
    let mut m = Message::query();
    m.metadata.id = 0x1234;
    m.add_query(Query::query(name("node1.mycluster.local"), RecordType::A));
    r.handle_packet(&m.to_vec().unwrap(), from, 7, t1);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].target, Target::Unicast(from));
    let a = msg(&out[0]);
    assert_eq!(a.metadata.id, 0x1234);
    assert_eq!(a.queries, m.queries);
    assert_eq!(a.answers.len(), 1);
    assert!(a.answers[0].ttl <= 10);
    assert!(!a.answers[0].mdns_cache_flush);
    // Responses from a port other than 5353 are not mDNS: no conflict from them.
    let theirs = address_record(&name("node1.mycluster.local"), "192.0.2.50".parse().unwrap(), 120);
    r.handle_packet(&announce(&[theirs]), from, 7, t1);
    assert!(events(&mut r).is_empty());
}

#[test]
fn goodbye_on_withdraw_and_withdraw_all() {
    let t0 = Instant::now();
    let (mut r, t1) = with_service(t0);
    let ids: Vec<_> = r.published().iter().map(|p| p.id).collect();
    r.withdraw(ids[1]).unwrap();
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    let m = msg(&out[0]);
    assert!(!m.answers.is_empty());
    assert!(m.answers.iter().all(|a| a.ttl == 0));
    assert!(m.answers.iter().any(|a| a.record_type() == RecordType::SRV));
    assert!(r.withdraw(ids[1]).is_err());
    r.withdraw_all();
    let m = msg(&drain(&mut r)[0]);
    assert_eq!(m.answers.len(), 1);
    assert_eq!((m.answers[0].record_type(), m.answers[0].ttl), (RecordType::A, 0));
    assert!(r.published().is_empty());
    r.handle_timeout(t1);
    assert!(drain(&mut r).is_empty());
    // Withdrawn while probing: nothing was announced, nothing to say goodbye to.
    let mut r = responder(t0);
    let id = r.publish_host("early.local", t0).unwrap();
    r.withdraw(id).unwrap();
    assert!(drain(&mut r).is_empty());
}

#[test]
fn each_interface_gets_its_own_addresses() {
    let t0 = Instant::now();
    let mut r = Responder::with_seed(PORT, 7);
    r.set_interfaces(vec![eth0(), eth1()], t0);
    r.publish_host("node1.local", t0).unwrap();
    let sent = run(&mut r, t0, t0 + Duration::from_secs(3));
    for (_, t) in &sent {
        let m = msg(t);
        let addrs: Vec<IpAddr> = m
            .answers
            .iter()
            .chain(m.authorities.iter())
            .filter_map(|r| match r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        let iface = if t.interface == 7 { eth0() } else { eth1() };
        assert!(addrs.iter().all(|a| iface.addrs.contains(a)), "{addrs:?} on {}", iface.name);
    }
    // eth1 has both families: probes and announcements go out on both.
    assert!(sent.iter().any(|(_, t)| t.interface == 8 && t.target == Target::Multicast(Family::V6)));
    assert!(!sent.iter().any(|(_, t)| t.interface == 7 && t.target == Target::Multicast(Family::V6)));
    let t1 = t0 + Duration::from_secs(5);
    r.handle_packet(
        &query(&[(name("node1.local"), RecordType::ANY, false)], &[]),
        "198.51.100.99:5353".parse().unwrap(),
        8,
        t1,
    );
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].interface, 8);
    let m = msg(&out[0]);
    assert_eq!(m.answers.len(), 2);
    assert!(m
        .answers
        .iter()
        .all(|a| matches!(&a.data, RData::A(a) if a.0 == std::net::Ipv4Addr::new(198, 51, 100, 10))
            || matches!(&a.data, RData::AAAA(_))));
    // From an interface not in the table: nothing.
    r.handle_packet(
        &query(&[(name("node1.local"), RecordType::ANY, false)], &[]),
        peer(),
        99,
        t1 + Duration::from_secs(2),
    );
    assert!(drain(&mut r).is_empty());
    // An address goes away: goodbye for it there, announcements again.
    let mut e1 = eth1();
    e1.addrs.pop();
    r.set_interfaces(vec![eth0(), e1], t1 + Duration::from_secs(3));
    let out = drain(&mut r);
    assert!(out
        .iter()
        .any(|t| t.interface == 8 && msg(t).answers.iter().any(|a| a.ttl == 0 && a.record_type() == RecordType::AAAA)));
    assert_eq!(r.published()[0].state, State::Announcing);
}

fn random_packets() -> Vec<Vec<u8>> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seeds = [
        query(&[(name("node1.local"), RecordType::ANY, true)], &[]),
        query(&[(wire::service_type_name("_http._tcp").unwrap(), RecordType::PTR, false)], &[]),
        announce(&[address_record(&name("node1.local"), "192.0.2.1".parse().unwrap(), 120)]),
    ];
    let mut out = Vec::new();
    for i in 0..20_000 {
        out.push(if i % 3 == 0 {
            (0..(next() % 300)).map(|_| next() as u8).collect()
        } else {
            let mut p = seeds[i % seeds.len()].clone();
            for _ in 0..(1 + next() % 6) {
                let at = (next() as usize) % p.len();
                p[at] = next() as u8;
            }
            p.truncate((next() as usize) % (p.len() + 8));
            p
        });
    }
    // Compression loop, huge counts, truncated header.
    let mut looped = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    looped.extend([0xc0, 12, 0, 255, 0, 1]);
    out.push(looped);
    out.push(vec![0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0]);
    out.push(vec![0, 0, 0x84]);
    out
}

#[test]
fn malformed_packets_are_ignored() {
    let t0 = Instant::now();
    let (mut r, t1) = with_service(t0);
    for (i, p) in random_packets().iter().enumerate() {
        let port = if i % 2 == 0 { 5353 } else { 40000 };
        r.handle_packet(p, SocketAddr::from(([192, 0, 2, 99], port)), 7, t1);
        for t in drain(&mut r) {
            assert!(t.payload.len() <= wire::MAX_PACKET);
            parse(&t.payload).expect("what we send parses");
        }
    }
    // Still answering afterwards.
    r.handle_packet(
        &query(&[(name("node1.local"), RecordType::A, false)], &[]),
        peer(),
        7,
        t1 + Duration::from_secs(5),
    );
    r.handle_timeout(t1 + Duration::from_secs(6));
    assert!(!drain(&mut r).is_empty());
}

#[test]
fn floods_are_answered_at_the_rate_limit_never_amplified() {
    let t0 = Instant::now();
    let (mut r, t1) = with_service(t0);
    let ty = wire::service_type_name("_http._tcp").unwrap();
    // Legacy unicast floods, 10,000 queries in one second: from one forged source, then from
    // a different forged source each time.
    let q = query(&[(ty.clone(), RecordType::PTR, false)], &[]);
    for (start, many, expected) in [(t1, false, 20..=31), (t1 + Duration::from_secs(20), true, 100..=160)] {
        let mut replies = 0;
        for i in 0..10_000u32 {
            let now = start + Duration::from_micros(u64::from(i) * 100);
            let from = if many {
                SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 40000))
            } else {
                "203.0.113.5:40000".parse().unwrap()
            };
            r.handle_packet(&q, from, 7, now);
            for t in drain(&mut r) {
                assert!(matches!(t.target, Target::Unicast(_)));
                assert!(t.payload.len() <= 3 * q.len(), "{} > 3 x {}", t.payload.len(), q.len());
                replies += 1;
            }
        }
        assert!(expected.contains(&replies), "{replies} replies (many sources: {many})");
    }
    // Multicast flood: each record at most once a second on the interface.
    let mq = query(&[(name("node1.local"), RecordType::A, false)], &[]);
    let mut multicasts = 0;
    let start = t1 + Duration::from_secs(10);
    for i in 0..10_000u32 {
        let now = start + Duration::from_micros(u64::from(i) * 300);
        r.handle_packet(&mq, peer(), 7, now);
        r.handle_timeout(now);
        multicasts += drain(&mut r).len();
    }
    assert!((3..=4).contains(&multicasts), "{multicasts} multicasts in 3 s");
}

#[test]
fn no_interface_no_claim_and_a_new_interface_probes_again() {
    let t0 = Instant::now();
    let mut r = Responder::with_seed(PORT, 3);
    r.publish_host("node1.local", t0).unwrap();
    let sent = run(&mut r, t0, t0 + Duration::from_secs(3));
    assert!(sent.is_empty());
    assert_eq!(r.published()[0].state, State::Probing);
    let t1 = t0 + Duration::from_secs(3);
    r.set_interfaces(vec![eth0()], t1);
    establish(&mut r, t1);
    let t2 = t1 + Duration::from_secs(4);
    r.set_interfaces(vec![eth0(), eth1()], t2);
    assert_eq!(r.published()[0].state, State::Probing);
    let sent = run(&mut r, t2, t2 + Duration::from_secs(3));
    let probes = sent.iter().filter(|(_, t)| msg(t).metadata.message_type == MessageType::Query).count();
    // Three probes on each of eth0 (v4), eth1 (v4 and v6).
    assert_eq!(probes, 9);
    assert_eq!(r.published()[0].state, State::Established);
}

#[test]
fn nsec_for_types_we_do_not_have() {
    let t0 = Instant::now();
    let mut r = responder(t0);
    r.publish_host("node1.local", t0).unwrap();
    let t1 = establish(&mut r, t0) + Duration::from_secs(2);
    // AAAA on a v4-only interface: NSEC in the answer, listing A only; sent at once.
    r.handle_packet(&query(&[(name("node1.local"), RecordType::AAAA, false)], &[]), peer(), 7, t1);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    let m = msg(&out[0]);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), RecordType::NSEC);
    assert!(m.answers[0].mdns_cache_flush);
    assert_eq!(wire::nsec_types(&m.answers[0]).unwrap(), [RecordType::A]);
    // The A answer carries the NSEC as an additional.
    r.handle_packet(&query(&[(name("node1.local"), RecordType::A, false)], &[]), peer(), 7, t1);
    let m = msg(&drain(&mut r)[0]);
    assert_eq!(m.answers[0].record_type(), RecordType::A);
    assert!(m.additionals.iter().any(|a| a.record_type() == RecordType::NSEC));
    // Our NSEC looped back, or a peer's NSEC for our name: no conflict.
    r.handle_packet(&out[0].payload, "192.0.2.10:5353".parse().unwrap(), 7, t1);
    assert!(events(&mut r).is_empty());
    // Names we do not own: no NSEC.
    r.handle_packet(
        &query(&[(name("other.local"), RecordType::AAAA, false)], &[]),
        peer(),
        7,
        t1 + Duration::from_secs(3),
    );
    assert!(drain(&mut r).is_empty());
}

#[test]
fn one_flooding_source_does_not_starve_the_others() {
    let t0 = Instant::now();
    let mut r = responder(t0);
    r.publish_host("node1.local", t0).unwrap();
    let t1 = establish(&mut r, t0);
    let q = query(&[(name("node1.local"), RecordType::A, false)], &[]);
    let mut flood = 0;
    for i in 0..1000u64 {
        r.handle_packet(&q, "192.0.2.66:40000".parse().unwrap(), 7, t1 + Duration::from_millis(i));
        flood += drain(&mut r).len();
    }
    assert!((20..=31).contains(&flood), "{flood}: a burst of 20, then 10 a second");
    let other: SocketAddr = "192.0.2.67:40001".parse().unwrap();
    r.handle_packet(&q, other, 7, t1 + Duration::from_secs(1));
    assert_eq!(drain(&mut r).first().map(|t| t.target), Some(Target::Unicast(other)));
}
