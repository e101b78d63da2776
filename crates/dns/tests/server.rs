//! The server over real sockets on 127.0.0.1: answers, EDNS0 and TC, TCP, forwarding to a fake
//! upstream on loopback, timeouts, malformed packets, reload under load. Needs no privilege.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cove_dns::hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use cove_dns::hickory_proto::rr::rdata::A;
use cove_dns::hickory_proto::rr::{Name, RData, Record, RecordType};
use cove_dns::{serve_tcp, serve_udp, NetworkRecords, Records, Transport, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(5);

use cove_dns::test_entry as entry;

fn networks() -> Vec<NetworkRecords> {
    let mut front = vec![
        entry("1111111111112222", "web", &["www"], &["10.1.0.2"], &["fd01::2"]),
        entry("3333333333334444", "db", &[], &["10.1.0.3"], &[]),
        entry("5555555555556666", "both", &[], &["10.1.0.9"], &[]),
    ];
    // One alias on 100 containers: an answer of ~1.6 kB.
    for i in 0..100u8 {
        front.push(entry(&format!("{i:016x}"), &format!("r{i}"), &["big"], &[&format!("10.1.1.{i}")], &[]));
    }
    vec![
        NetworkRecords { name: "front".into(), containers: front, host: vec!["10.1.0.1".parse().unwrap()] },
        NetworkRecords {
            name: "back".into(),
            containers: vec![
                entry("7777777777778888", "cache", &[], &["10.2.0.2"], &[]),
                entry("5555555555556666", "both", &[], &["10.2.0.9"], &[]),
            ],
            host: vec![],
        },
    ]
}

/// A running server for one network on 127.0.0.1 (UDP and TCP on the same port).
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<cove_dns::Result<()>>>,
}

impl Server {
    async fn start(network: &str, records: watch::Receiver<Arc<Records>>, upstream: Upstream) -> Server {
        let (udp, tcp) = bind_pair().await;
        Self::start_on(udp, tcp, network, records, upstream)
    }

    fn start_on(
        udp: UdpSocket,
        tcp: TcpListener,
        network: &str,
        records: watch::Receiver<Arc<Records>>,
        upstream: Upstream,
    ) -> Server {
        let addr = udp.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (stop_tcp, stopped_tcp) = oneshot::channel::<()>();
        let upstream = Arc::new(upstream);
        let u = tokio::spawn(serve_udp(udp, network.into(), records.clone(), upstream.clone(), async move {
            let _ = stopped.await;
            let _ = stop_tcp.send(());
        }));
        let t = tokio::spawn(serve_tcp(tcp, network.into(), records, upstream, async move {
            let _ = stopped_tcp.await;
        }));
        Server { addr, stop: Some(stop), tasks: vec![u, t] }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        for t in self.tasks.drain(..) {
            tokio::time::timeout(WAIT, t).await.expect("server stops").unwrap().unwrap();
        }
    }
}

async fn bind_pair() -> (UdpSocket, TcpListener) {
    bind_pair_on(Ipv4Addr::LOCALHOST.into()).await.expect("a free port pair on 127.0.0.1")
}

async fn bind_pair_on(ip: IpAddr) -> Option<(UdpSocket, TcpListener)> {
    for _ in 0..50 {
        let udp = UdpSocket::bind((ip, 0)).await.ok()?;
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind((ip, port)).await {
            return Some((udp, tcp));
        }
    }
    None
}

fn records() -> (watch::Sender<Arc<Records>>, watch::Receiver<Arc<Records>>) {
    watch::channel(Arc::new(Records::new(&networks())))
}

fn fqdn(name: &str) -> Name {
    let mut n = Name::from_ascii(name).unwrap();
    n.set_fqdn(true);
    n
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(fqdn(name), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

async fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    udp_raw_wait(addr, bytes, WAIT).await
}

async fn udp_raw_wait(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let local: IpAddr = if addr.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() };
    let sock = UdpSocket::bind((local, 0)).await.unwrap();
    sock.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => {
            assert_eq!(from, addr);
            buf.truncate(n);
            Some(buf)
        }
        Ok(Err(e)) => panic!("recv: {e}"),
        Err(_) => None,
    }
}

/// Sends over UDP and returns the parsed answer, checking it is the answer to this query.
async fn udp(addr: SocketAddr, q: &Message) -> (Message, usize) {
    let raw = udp_raw(addr, &q.to_vec().unwrap()).await.expect("an answer over udp");
    let m = Message::from_vec(&raw).unwrap();
    check_reply(q, &m);
    (m, raw.len())
}

async fn tcp(addr: SocketAddr, q: &Message) -> Message {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let m = tcp_on(&mut s, q).await;
    check_reply(q, &m);
    m
}

async fn tcp_on(s: &mut TcpStream, q: &Message) -> Message {
    let bytes = q.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    s.write_all(&framed).await.unwrap();
    let len = tokio::time::timeout(WAIT, s.read_u16()).await.expect("tcp answer").unwrap();
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn check_reply(q: &Message, m: &Message) {
    assert_eq!(m.metadata.id, q.metadata.id);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.queries, q.queries);
    assert!(m.metadata.recursion_desired);
}

fn addrs(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            RData::PTR(p) => p.0.to_ascii(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// A stand-in for the host's resolver on 127.0.0.1: `www.example.test` is 192.0.2.1,
/// `big.example.test` has 100 addresses (TC over plain UDP), anything else is NXDOMAIN.
/// Counts the queries it gets.
struct FakeUpstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn fake_answer(raw: &[u8], udp: bool) -> Option<Vec<u8>> {
    let q = Message::from_vec(raw).ok()?;
    let mut r = Message::response(q.metadata.id, OpCode::Query);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.queries = q.queries.clone();
    let qname = q.queries.first()?.name().clone();
    let name = qname.to_ascii().to_ascii_lowercase();
    match name.as_str() {
        "www.example.test." => {
            r.add_answer(Record::from_rdata(qname, 60, RData::A(A::new(192, 0, 2, 1))));
        }
        "big.example.test." => {
            for i in 0..100 {
                r.add_answer(Record::from_rdata(qname.clone(), 60, RData::A(A::new(192, 0, 2, i))));
            }
        }
        _ => r.metadata.response_code = ResponseCode::NXDomain,
    }
    let limit = match (&q.edns, udp) {
        (_, false) => 65535,
        (Some(e), true) => e.max_payload().max(512) as usize,
        (None, true) => 512,
    };
    let mut bytes = r.to_vec().ok()?;
    if bytes.len() > limit {
        r.answers.clear();
        r.metadata.truncation = true;
        bytes = r.to_vec().ok()?;
    }
    Some(bytes)
}

async fn fake_upstream() -> FakeUpstream {
    fake_upstream_on(Ipv4Addr::LOCALHOST.into()).await.unwrap()
}

async fn fake_upstream_on(ip: IpAddr) -> Option<FakeUpstream> {
    let (udp, tcp) = bind_pair_on(ip).await?;
    let addr = udp.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let count = queries.clone();
    let u = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            if let Some(a) = fake_answer(&buf[..n], true) {
                let _ = udp.send_to(&a, peer).await;
            }
        }
    });
    let count = queries.clone();
    let t = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                while let Ok(len) = s.read_u16().await {
                    let mut buf = vec![0u8; len as usize];
                    if s.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let Some(a) = fake_answer(&buf, false) else {
                        return;
                    };
                    let mut framed = (a.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&a);
                    if s.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Some(FakeUpstream { addr, queries, tasks: vec![u, t] })
}

#[tokio::test]
async fn answers_container_names_over_udp_and_tcp() {
    let (_tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![])).await;
    for name in ["web", "www", "web.front", "WWW.Front.", "111111111111"] {
        let q = query(name, RecordType::A, None);
        let (m, _) = udp(srv.addr, &q).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.metadata.authoritative);
        assert!(m.metadata.recursion_available);
        assert_eq!(addrs(&m), ["10.1.0.2"], "{name}");
        assert_eq!(m.answers[0].ttl, cove_dns::TTL);
        // The owner keeps the question's case (resolvers using 0x20 compare it).
        assert!(m.answers[0].name.eq_case(q.queries[0].name()));
        assert_eq!(addrs(&tcp(srv.addr, &q).await), ["10.1.0.2"], "{name} over tcp");
    }
    let (m, _) = udp(srv.addr, &query("web", RecordType::AAAA, None)).await;
    assert_eq!(addrs(&m), ["fd01::2"]);
    let (m, _) = udp(srv.addr, &query("host.containers.internal", RecordType::A, None)).await;
    assert_eq!(addrs(&m), ["10.1.0.1"]);
    let (m, _) = udp(srv.addr, &query("2.0.1.10.in-addr.arpa", RecordType::PTR, None)).await;
    assert_eq!(addrs(&m), ["web.front."]);
    srv.stop().await;
}

#[tokio::test]
async fn nodata_nxdomain_and_errors() {
    let (_tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![])).await;
    let (m, _) = udp(srv.addr, &query("db", RecordType::AAAA, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && m.metadata.authoritative);
    let (m, _) = udp(srv.addr, &query("nope.containers.internal", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.answers.is_empty() && m.metadata.authoritative);
    // EDNS version 1 is not spoken: BADVERS, with an OPT record.
    let mut q = query("web", RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().set_version(1);
    let (m, _) = udp(srv.addr, &q).await;
    // 16 is BADVERS (hickory decodes it by its other name, BADSIG).
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert!(m.edns.is_some());
    // Other opcodes: NOTIMP.
    let mut q = query("web", RecordType::A, None);
    q.metadata.op_code = OpCode::Status;
    let raw = udp_raw(srv.addr, &q.to_vec().unwrap()).await.unwrap();
    assert_eq!(Message::from_vec(&raw).unwrap().metadata.response_code, ResponseCode::NotImp);
    srv.stop().await;
}

#[tokio::test]
async fn networks_are_isolated_and_a_container_on_two_is_on_both() {
    let up = fake_upstream().await;
    let (_tx, rx) = records();
    let front = Server::start("front", rx.clone(), Upstream::new(vec![up.addr])).await;
    let back = Server::start("back", rx, Upstream::new(vec![up.addr])).await;

    let (m, _) = udp(front.addr, &query("both", RecordType::A, None)).await;
    assert_eq!(addrs(&m), ["10.1.0.9"]);
    let (m, _) = udp(back.addr, &query("both", RecordType::A, None)).await;
    assert_eq!(addrs(&m), ["10.2.0.9"]);
    assert_eq!(up.queries.load(Ordering::SeqCst), 0, "answered locally");

    // back's container, asked on front (bare and NAME.NETWORK): not answered locally, the
    // upstream says it does not exist.
    for name in ["cache", "cache.back"] {
        let (m, _) = udp(front.addr, &query(name, RecordType::A, None)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(!m.metadata.authoritative);
    }
    let (m, _) = udp(back.addr, &query("web", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(up.queries.load(Ordering::SeqCst), 3);
    let (m, _) = udp(front.addr, &query("2.0.2.10.in-addr.arpa", RecordType::PTR, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    front.stop().await;
    back.stop().await;
}

#[tokio::test]
async fn large_answers_truncate_over_udp_and_succeed_over_tcp_or_edns() {
    let (_tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![])).await;

    // No EDNS0: 512 bytes at most, TC and no records.
    let q = query("big", RecordType::A, None);
    let (m, len) = udp(srv.addr, &q).await;
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    assert!(len <= 512);
    // EDNS0 with a 512-byte buffer: the same, and the OPT record is kept.
    let (m, len) = udp(srv.addr, &query("big", RecordType::A, Some(512))).await;
    assert!(m.metadata.truncation && m.answers.is_empty() && m.edns.is_some());
    assert!(len <= 512);
    // EDNS0 with 4096: everything over UDP.
    let (m, len) = udp(srv.addr, &query("big", RecordType::A, Some(4096))).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
    assert!(len > 512 && len <= 4096);
    assert_eq!(m.edns.as_ref().unwrap().max_payload(), cove_dns::MAX_UDP_PAYLOAD);
    // TCP: everything.
    let m = tcp(srv.addr, &q).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
    srv.stop().await;
}

#[tokio::test]
async fn forwards_to_upstream_over_udp_and_tcp() {
    let up = fake_upstream().await;
    let (_tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![up.addr])).await;

    let q = query("www.example.test", RecordType::A, None);
    let (m, _) = udp(srv.addr, &q).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&m), ["192.0.2.1"]);
    assert_eq!(m.answers[0].ttl, 60, "relayed as the upstream sent it");
    assert_eq!(addrs(&tcp(srv.addr, &q).await), ["192.0.2.1"]);
    let (m, _) = udp(srv.addr, &query("printer.local", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "without an mDNS resolver .local goes upstream");

    // A big upstream answer: TC to a UDP client, then in full when it retries over TCP (the
    // forwarder retries upstream over TCP too).
    let q = query("big.example.test", RecordType::A, None);
    let (m, _) = udp(srv.addr, &q).await;
    assert!(m.metadata.truncation);
    let m = tcp(srv.addr, &q).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
    // With EDNS0 the upstream sends it all over UDP.
    let (m, _) = udp(srv.addr, &query("big.example.test", RecordType::A, Some(4096))).await;
    assert_eq!(m.answers.len(), 100);

    // Many at once, each with its own id.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let addr = srv.addr;
        set.spawn(async move {
            let (m, _) = udp(addr, &query("www.example.test", RecordType::A, None)).await;
            assert_eq!(addrs(&m), ["192.0.2.1"]);
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_container_with_its_own_resolvers_is_forwarded_to_them() {
    // `--dns`: the container at 127.0.0.2 has its own upstream; others use the server's.
    let shared = fake_upstream().await;
    let own = fake_upstream().await;
    let mut nets = networks();
    let mut c = entry("9999999999990000", "custom", &[], &["127.0.0.2"], &[]);
    c.dns = vec![own.addr];
    nets[0].containers.push(c);
    let (_tx, rx) = watch::channel(Arc::new(Records::new(&nets)));
    let srv = Server::start("front", rx, Upstream::new(vec![shared.addr])).await;
    let q = query("www.example.test", RecordType::A, None);
    let from = |ip: [u8; 4]| SocketAddr::from((ip, 0));

    // UDP from the container with its own resolvers, twice (the second reuses its upstream).
    for _ in 0..2 {
        let sock = UdpSocket::bind(from([127, 0, 0, 2])).await.unwrap();
        sock.send_to(&q.to_vec().unwrap(), srv.addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf)).await.expect("udp answer").unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        check_reply(&q, &m);
        assert_eq!(addrs(&m), ["192.0.2.1"]);
    }
    assert_eq!(own.queries.load(Ordering::SeqCst), 2);
    assert_eq!(shared.queries.load(Ordering::SeqCst), 0);
    // TCP from it too.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(from([127, 0, 0, 2])).unwrap();
    let mut s = sock.connect(srv.addr).await.unwrap();
    assert_eq!(addrs(&tcp_on(&mut s, &q).await), ["192.0.2.1"]);
    assert_eq!(own.queries.load(Ordering::SeqCst), 3);
    // Anyone else: the server's upstream. Names of the network still answer locally.
    let (m, _) = udp(srv.addr, &q).await;
    assert_eq!(addrs(&m), ["192.0.2.1"]);
    assert_eq!(shared.queries.load(Ordering::SeqCst), 1);
    assert_eq!(own.queries.load(Ordering::SeqCst), 3);
    srv.stop().await;
}

#[tokio::test]
async fn upstream_timeout_gives_servfail_within_the_budget() {
    // An upstream that never answers: a socket nobody reads.
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let (_tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![silent.local_addr().unwrap()])).await;
    let start = Instant::now();
    let (m, _) = udp(srv.addr, &query("www.example.test", RecordType::A, None)).await;
    let took = start.elapsed();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_millis(3000), "{took:?}");
    srv.stop().await;
}

#[tokio::test]
async fn next_upstream_is_tried_after_a_silent_or_refusing_one() {
    let up = fake_upstream().await;
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let closed = {
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        s.local_addr().unwrap()
    };
    let (_tx, rx) = records();
    let upstream = Upstream::new(vec![closed, silent.local_addr().unwrap(), up.addr]);
    let srv = Server::start("front", rx, upstream).await;
    let start = Instant::now();
    let (m, _) = udp(srv.addr, &query("www.example.test", RecordType::A, None)).await;
    let took = start.elapsed();
    assert_eq!(addrs(&m), ["192.0.2.1"]);
    // The refusing one costs nothing, the silent one its share (2 s / 3).
    assert!(took >= Duration::from_millis(600) && took < Duration::from_millis(1500), "{took:?}");
    srv.stop().await;

    // Only a refusing upstream: SERVFAIL at once. No upstream at all: the same.
    for servers in [vec![closed], vec![]] {
        let (_tx, rx) = records();
        let srv = Server::start("front", rx, Upstream::new(servers)).await;
        let start = Instant::now();
        let (m, _) = udp(srv.addr, &query("www.example.test", RecordType::A, None)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(start.elapsed() < Duration::from_millis(500), "{:?}", start.elapsed());
        srv.stop().await;
    }
}

/// A small deterministic generator for the malformed-packet test.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test]
async fn malformed_packets_get_formerr_or_nothing_and_serving_goes_on() {
    let (_tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![])).await;
    let short_wait = Duration::from_millis(200);

    // Too short for a header: dropped.
    assert!(udp_raw_wait(srv.addr, &[0x12, 0x34, 0x01, 0x00, 0x00], short_wait).await.is_none());
    assert!(udp_raw_wait(srv.addr, &[], short_wait).await.is_none());
    // A header and no question: FORMERR with the id.
    let header_only = [0xab, 0xcd, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    let m = Message::from_vec(&udp_raw(srv.addr, &header_only).await.unwrap()).unwrap();
    assert_eq!(m.metadata.id, 0xabcd);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Two questions: FORMERR.
    let mut q = query("web", RecordType::A, None);
    q.add_query(Query::query(fqdn("db"), RecordType::A));
    let m = Message::from_vec(&udp_raw(srv.addr, &q.to_vec().unwrap()).await.unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // qdcount says 1 but the question is cut short: FORMERR.
    let mut cut = query("web.front", RecordType::A, None).to_vec().unwrap();
    cut.truncate(cut.len() - 3);
    let m = Message::from_vec(&udp_raw(srv.addr, &cut).await.unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // A response sent to us: dropped (no reflection loops).
    let mut r = query("web", RecordType::A, None);
    r.metadata.message_type = MessageType::Response;
    assert!(udp_raw_wait(srv.addr, &r.to_vec().unwrap(), short_wait).await.is_none());

    // Random bytes, and random corruptions of a valid query: whatever happens, no panic, and an
    // answer, if any, is FORMERR or an answer to a query.
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let valid = query("web.front", RecordType::A, Some(1232)).to_vec().unwrap();
    for i in 0..2000 {
        let pkt: Vec<u8> = if i % 2 == 0 {
            let len = (rng.next() % 600) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let mut p = valid.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let at = (rng.next() as usize) % p.len();
                p[at] = rng.next() as u8;
            }
            p.truncate((rng.next() as usize) % (p.len() + 1));
            p
        };
        sock.send_to(&pkt, srv.addr).await.unwrap();
    }
    // Drain what came back; every answer parses as a response.
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await {
        let m = Message::from_vec(&buf[..n]).expect("answers always parse");
        assert_eq!(m.metadata.message_type, MessageType::Response);
    }

    // Garbage over TCP closes that connection only.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut rest)).await.expect("closed");
    assert!(rest.is_empty());

    // Still serving, over both.
    let (m, _) = udp(srv.addr, &query("web", RecordType::A, None)).await;
    assert_eq!(addrs(&m), ["10.1.0.2"]);
    assert_eq!(addrs(&tcp(srv.addr, &query("web", RecordType::A, None)).await), ["10.1.0.2"]);
    srv.stop().await;
}

#[tokio::test]
async fn tcp_connection_takes_many_queries() {
    let (_tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![])).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    for name in ["web", "db", "www.front", "big"] {
        let q = query(name, RecordType::A, None);
        let m = tcp_on(&mut s, &q).await;
        check_reply(&q, &m);
        assert!(!m.answers.is_empty(), "{name}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn joining_and_leaving_show_at_once_on_the_same_socket() {
    let up = fake_upstream().await;
    let (tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![up.addr])).await;
    let (m, _) = udp(srv.addr, &query("newcomer", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    let mut nets = networks();
    nets[0].containers.push(entry("9999999999990000", "newcomer", &["nc"], &["10.1.0.77"], &[]));
    tx.send(Arc::new(Records::new(&nets))).unwrap();
    let (m, _) = udp(srv.addr, &query("newcomer", RecordType::A, None)).await;
    assert_eq!(addrs(&m), ["10.1.0.77"]);
    assert_eq!(addrs(&tcp(srv.addr, &query("nc.front", RecordType::A, None)).await), ["10.1.0.77"]);

    tx.send(Arc::new(Records::new(&networks()))).unwrap();
    let (m, _) = udp(srv.addr, &query("newcomer", RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // The sender going away leaves the last records in place.
    drop(tx);
    let (m, _) = udp(srv.addr, &query("web", RecordType::A, None)).await;
    assert_eq!(addrs(&m), ["10.1.0.2"]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_a_thousand_reloads_under_queries_loses_nothing() {
    let (tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![])).await;
    let addr = srv.addr;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let stop = done.clone();
    let querier = tokio::spawn(async move {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let (mut ok, mut failures) = (0u32, Vec::new());
        while !stop.load(Ordering::SeqCst) || ok < 1000 {
            let q = query("web", RecordType::A, None);
            sock.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
            match tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
                Ok(Ok((n, _))) => {
                    let m = Message::from_vec(&buf[..n]).unwrap();
                    if m.metadata.id == q.metadata.id && addrs(&m) == ["10.1.0.2"] {
                        ok += 1;
                    } else {
                        failures.push(format!("{m}"));
                    }
                }
                _ => failures.push("timeout".into()),
            }
        }
        (ok, failures)
    });

    let base = networks();
    for i in 0..1000u32 {
        let mut nets = base.clone();
        // Churn: containers come and go; `web` stays.
        for j in 0..(i % 7) {
            nets[0].containers.push(entry(&format!("{i:08x}{j:08x}"), &format!("tmp{i}-{j}"), &[], &["10.1.9.9"], &[]));
        }
        if i % 2 == 0 {
            nets[0].containers.retain(|e| e.name != "db");
        }
        tx.send(Arc::new(Records::new(&nets))).unwrap();
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    done.store(true, Ordering::SeqCst);
    let (ok, failures) = querier.await.unwrap();
    assert!(failures.is_empty(), "{} failures, first: {:?}", failures.len(), failures.first());
    assert!(ok >= 1000);
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_returns_promptly_with_forwards_in_flight() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let (_tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![silent.local_addr().unwrap()])).await;
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    for _ in 0..10 {
        sock.send_to(&query("www.example.test", RecordType::A, None).to_vec().unwrap(), srv.addr).await.unwrap();
    }
    // And an idle TCP connection.
    let _idle = TcpStream::connect(srv.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    srv.stop().await;
    assert!(start.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn host_resolver_on_127_0_0_53_works_as_upstream() {
    // Like systemd-resolved's stub: any 127/8 address is on lo.
    let up = fake_upstream_on("127.0.0.53".parse().unwrap()).await.expect("127.0.0.53 on lo");
    let (_tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![up.addr])).await;
    let (m, _) = udp(srv.addr, &query("www.example.test", RecordType::A, None)).await;
    assert_eq!(addrs(&m), ["192.0.2.1"]);
    assert_eq!(up.queries.load(Ordering::SeqCst), 1);
    srv.stop().await;
}

#[tokio::test]
async fn ipv6_loopback_listener_and_upstream() {
    let Some((udp6, tcp6)) = bind_pair_on(Ipv6Addr::LOCALHOST.into()).await else {
        eprintln!("SKIP ipv6_loopback_listener_and_upstream: no ::1 here");
        return;
    };
    let up = fake_upstream_on(Ipv6Addr::LOCALHOST.into()).await.expect("::1 upstream");
    let (_tx, rx) = records();
    let srv = Server::start_on(udp6, tcp6, "front", rx, Upstream::new(vec![up.addr]));
    let (m, _) = udp(srv.addr, &query("web", RecordType::AAAA, None)).await;
    assert_eq!(addrs(&m), ["fd01::2"]);
    let (m, _) = udp(srv.addr, &query("www.example.test", RecordType::A, None)).await;
    assert_eq!(addrs(&m), ["192.0.2.1"]);
    assert_eq!(addrs(&tcp(srv.addr, &query("www.example.test", RecordType::A, None)).await), ["192.0.2.1"]);
    srv.stop().await;
}

#[tokio::test]
async fn bursts_from_many_clients_are_all_answered_to_the_right_peer() {
    let (_tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![])).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap());
    }
    for round in 0..5 {
        let mut want = Vec::new();
        for (c, sock) in clients.iter().enumerate() {
            let mut ids = Vec::new();
            for i in 0..25 {
                let name = if (i + c + round) % 2 == 0 { "web" } else { "db" };
                let mut q = query(name, RecordType::A, None);
                // Unique ids per client: random ones can collide within a burst (birthday).
                q.metadata.id = (round * 25 + i) as u16;
                ids.push((q.metadata.id, name));
                sock.send_to(&q.to_vec().unwrap(), srv.addr).await.unwrap();
            }
            want.push(ids);
        }
        for (sock, ids) in clients.iter().zip(want) {
            let mut buf = vec![0u8; 4096];
            let mut seen = 0;
            while seen < ids.len() {
                let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf)).await.expect("answer").unwrap();
                let m = Message::from_vec(&buf[..n]).unwrap();
                let (_, name) = ids.iter().find(|(id, _)| *id == m.metadata.id).expect("an answer to this client");
                let ip = if *name == "web" { "10.1.0.2" } else { "10.1.0.3" };
                assert_eq!(addrs(&m), [ip]);
                seen += 1;
            }
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn oversized_datagrams_are_dropped_and_serving_goes_on() {
    let (_tx, rx) = records();
    let srv = Server::start("front", rx, Upstream::new(vec![])).await;
    let mut big = query("web", RecordType::A, None).to_vec().unwrap();
    big.resize(5000, 0);
    assert!(udp_raw_wait(srv.addr, &big, Duration::from_millis(200)).await.is_none());
    let (m, _) = udp(srv.addr, &query("web", RecordType::A, None)).await;
    assert_eq!(addrs(&m), ["10.1.0.2"]);
    srv.stop().await;
}

/// A `.local` resolver that answers every name with 192.0.2.77 (as the mDNS querier would with
/// what the LAN said) and counts what it was asked.
struct FakeMdns(Arc<AtomicUsize>);

impl cove_dns::LocalResolver for FakeMdns {
    fn resolve(
        &self,
        query: Vec<u8>,
        _client: Transport,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let q = Message::from_vec(&query).ok()?;
            let mut m = Message::response(q.metadata.id, OpCode::Query);
            m.metadata.recursion_desired = q.metadata.recursion_desired;
            m.metadata.recursion_available = true;
            let question = q.queries.first()?.clone();
            m.add_answer(Record::from_rdata(question.name().clone(), 120, RData::A(A::new(192, 0, 2, 77))));
            m.add_query(question);
            m.to_vec().ok()
        })
    }
}

#[tokio::test]
async fn local_names_go_to_the_mdns_resolver_and_this_hosts_own_are_answered_directly() {
    let up = fake_upstream().await;
    let asked = Arc::new(AtomicUsize::new(0));
    let own =
        [cove_dns::LocalName { name: "node1.mycluster".into(), ipv4: vec![Ipv4Addr::new(10, 5, 0, 2)], ipv6: vec![] }];
    let (_tx, rx) = watch::channel(Arc::new(Records::new(&networks()).with_local(&own)));
    let upstream = Upstream::new(vec![up.addr]).with_local(Arc::new(FakeMdns(asked.clone())));
    let srv = Server::start("front", rx, upstream).await;
    // A name of this host: from the table, on any network's server, no mDNS query.
    let (m, _) = udp(srv.addr, &query("Node1.MyCluster.local", RecordType::A, None)).await;
    assert_eq!(addrs(&m), ["10.5.0.2"]);
    let (m, _) = udp(srv.addr, &query("node1.mycluster.local", RecordType::AAAA, None)).await;
    assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0), "NODATA");
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    // Any other .local name (two, three, four labels) goes to the mDNS resolver, UDP and TCP.
    for name in ["printer.local", "nas.office.local", "a.b.c.local"] {
        let (m, _) = udp(srv.addr, &query(name, RecordType::A, None)).await;
        assert_eq!(addrs(&m), ["192.0.2.77"], "{name}");
    }
    assert_eq!(addrs(&tcp(srv.addr, &query("printer.local", RecordType::A, None)).await), ["192.0.2.77"]);
    assert_eq!(asked.load(Ordering::SeqCst), 4);
    // Other names still go upstream.
    let (m, _) = udp(srv.addr, &query("www.example.test", RecordType::A, None)).await;
    assert_eq!(addrs(&m), ["192.0.2.1"]);
    srv.stop().await;
}
