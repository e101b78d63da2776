//! L0 tests of the forwarders over loopback (any user): TCP echo through `serve_tcp`, a
//! 64 MiB transfer checked by hash, half-close in both directions, many concurrent
//! connections, shutdown; UDP echo through `serve_udp` with two clients and idle expiry.

use std::io::{Read, Write};
use std::net::{Shutdown as SockShutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cove_net::forward::{serve_tcp, serve_tcp_with_stats, serve_udp, start_connect, Shutdown, TcpStats, UdpOptions};
use sha2::{Digest, Sha256};

/// An echo server on 127.0.0.1:0: every connection gets back what it sends, then EOF.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut r = c.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut c);
                let _ = c.shutdown(SockShutdown::Write);
            });
        }
    });
    addr
}

struct Fwd {
    addr: SocketAddr,
    shutdown: Shutdown,
    stats: Arc<TcpStats>,
    thread: Option<JoinHandle<()>>,
}

impl Fwd {
    fn to(target: SocketAddr) -> Fwd {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let shutdown = Shutdown::new().unwrap();
        let stats = Arc::new(TcpStats::default());
        let (sd, st) = (shutdown.clone(), stats.clone());
        let thread = std::thread::spawn(move || {
            serve_tcp_with_stats(l, move |_peer| start_connect(target, None), &sd, st).unwrap()
        });
        Fwd { addr, shutdown, stats, thread: Some(thread) }
    }

    fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Fwd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

#[test]
fn tcp_round_trip() {
    let fwd = Fwd::to(echo_server());
    let mut s = connect(fwd.addr);
    s.write_all(b"hello through splice").unwrap();
    let mut buf = [0u8; 20];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello through splice");
    s.write_all(b"again").unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"again");
    s.shutdown(SockShutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert_eq!(fwd.stats.accepted.load(Ordering::Relaxed), 1);
}

/// Deterministic pseudo-random bytes (xorshift), so the data is not trivially compressible
/// or page-aligned zeros.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let b = state.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

#[test]
fn tcp_64_mib_integrity() {
    const TOTAL: usize = 64 << 20;
    let fwd = Fwd::to(echo_server());
    let s = connect(fwd.addr);
    let mut w = s.try_clone().unwrap();
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        let mut h = Sha256::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = vec![0u8; 1 << 16];
        let mut sent = 0;
        while sent < TOTAL {
            // Odd sizes exercise partial splices.
            let n = (TOTAL - sent).min(65_521);
            fill(&mut buf[..n], &mut state);
            w.write_all(&buf[..n]).unwrap();
            h.update(&buf[..n]);
            sent += n;
        }
        w.shutdown(SockShutdown::Write).unwrap();
        h.finalize()
    });
    let mut r = s;
    let mut h = Sha256::new();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n;
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, TOTAL);
    assert_eq!(writer.join().unwrap(), h.finalize(), "data corrupted in transit");
    // Both directions went through the forwarder: 2 × 64 MiB.
    println!("forwarder echo: 64 MiB each way in {secs:.2}s ({:.0} MiB/s per direction)", 64.0 / secs);
}

#[test]
fn tcp_client_half_close() {
    // Upstream reads to EOF, then answers with the byte count: works only if the client's
    // FIN is passed on while the other direction stays open.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut data = Vec::new();
        c.read_to_end(&mut data).unwrap();
        c.write_all(format!("got {}", data.len()).as_bytes()).unwrap();
    });
    let fwd = Fwd::to(up);
    let mut s = connect(fwd.addr);
    s.write_all(&vec![7u8; 100_000]).unwrap();
    s.shutdown(SockShutdown::Write).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "got 100000");
}

#[test]
fn tcp_server_half_close() {
    // Upstream sends a banner and half-closes; the client sees EOF, then still talks.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.write_all(b"banner").unwrap();
        c.shutdown(SockShutdown::Write).unwrap();
        let mut data = Vec::new();
        c.read_to_end(&mut data).unwrap();
        tx.send(data).unwrap();
    });
    let fwd = Fwd::to(up);
    let mut s = connect(fwd.addr);
    let mut banner = Vec::new();
    s.read_to_end(&mut banner).unwrap();
    assert_eq!(banner, b"banner");
    s.write_all(b"late words").unwrap();
    s.shutdown(SockShutdown::Write).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), b"late words");
}

#[test]
fn tcp_many_concurrent_connections() {
    // Each connection costs 1 (client) + 2 (echo server) + 6 (forwarder: 2 sockets, 2 pipes)
    // descriptors: raise the soft limit (1024 for ordinary users here) as a server would.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let want = hard.min(4096);
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).unwrap();
    }
    let limit = soft.max(want) as usize;
    let n = 200.min(limit.saturating_sub(128) / 10);
    assert!(n >= 50, "RLIMIT_NOFILE too low for this test: {limit}");
    let fwd = Fwd::to(echo_server());
    let addr = fwd.addr;
    // Open all first, so they are really concurrent.
    let conns: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            std::thread::spawn(move || {
                let msg: Vec<u8> = (0..10_000).map(|j| ((i * 31 + j) % 251) as u8).collect();
                s.write_all(&msg).unwrap();
                s.shutdown(SockShutdown::Write).unwrap();
                let mut back = Vec::new();
                s.read_to_end(&mut back).unwrap();
                assert_eq!(back, msg, "connection {i}");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(fwd.stats.accepted.load(Ordering::Relaxed), n as u64);
    // Every connection's threads finish once both sides closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fwd.stats.active.load(Ordering::Relaxed) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fwd.stats.active.load(Ordering::Relaxed), 0);
}

#[test]
fn tcp_upstream_refused_closes_client() {
    // A port with nothing listening: bind, note the port, close.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let fwd = Fwd::to(dead);
    let mut s = connect(fwd.addr);
    let mut buf = [0u8; 8];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "client must see the connection end");
    let deadline = Instant::now() + Duration::from_secs(5);
    while fwd.stats.connect_failed.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fwd.stats.connect_failed.load(Ordering::Relaxed), 1);
}

/// A listener that never accepts, with its queue full: a connect to it stays in SYN_SENT.
fn stuck_listener() -> (SocketAddr, Vec<TcpStream>, std::os::fd::OwnedFd) {
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
    listen(&fd, Backlog::new(0).unwrap()).unwrap();
    let addr = TcpListener::from(fd.try_clone().unwrap()).local_addr().unwrap();
    // Fill the queue (backlog 0 admits one or two) with connects that complete.
    let mut held = Vec::new();
    for _ in 0..4 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    (addr, held, fd)
}

#[test]
fn tcp_pending_upstream_connect_does_not_stall_other_connections() {
    // The first connection's upstream never answers; the second must be served meanwhile
    // (the relay starts connects without waiting for them).
    let (stuck, _held, _fd) = stuck_listener();
    let echo = echo_server();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let sd = Shutdown::new().unwrap();
    let first = std::sync::atomic::AtomicBool::new(true);
    let sd2 = sd.clone();
    let t = std::thread::spawn(move || {
        serve_tcp(
            l,
            move |_peer| start_connect(if first.swap(false, Ordering::SeqCst) { stuck } else { echo }, None),
            &sd2,
        )
        .unwrap()
    });
    let _a = connect(addr);
    std::thread::sleep(Duration::from_millis(100));
    let mut b = connect(addr);
    b.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    b.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    b.read_exact(&mut buf).expect("the second connection is served while the first connect hangs");
    assert_eq!(&buf, b"ping");
    sd.trigger();
    t.join().unwrap();
}

#[test]
fn tcp_shutdown_resets_live_connections() {
    let mut fwd = Fwd::to(echo_server());
    let mut s = connect(fwd.addr);
    s.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    let t = Instant::now();
    fwd.stop(); // returns only after the live connection's threads ended
    assert!(t.elapsed() < Duration::from_secs(5));
    let n = s.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(TcpStream::connect(fwd.addr).is_err(), "listener must be closed");
}

#[test]
fn tcp_connect_callback_gets_client_address() {
    let up = echo_server();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let sd = Shutdown::new().unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let sd2 = sd.clone();
    let t = std::thread::spawn(move || {
        serve_tcp(
            l,
            move |peer| {
                tx.lock().unwrap().send(peer).unwrap();
                TcpStream::connect(up)
            },
            &sd2,
        )
        .unwrap()
    });
    let s = connect(addr);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), s.local_addr().unwrap());
    drop(s);
    sd.trigger();
    t.join().unwrap();
}

/// A UDP echo server that prefixes each reply with "echo:".
fn udp_echo_server() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf) else { return };
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&reply, from);
        }
    });
    addr
}

fn udp_client() -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

/// A UDP forwarder on 127.0.0.1:0 to a fresh echo server, counting the flows it opens.
struct UdpFwd {
    addr: SocketAddr,
    flows: Arc<AtomicUsize>,
    shutdown: Shutdown,
    thread: Option<JoinHandle<()>>,
}

impl UdpFwd {
    fn start(opts: UdpOptions) -> UdpFwd {
        let up = udp_echo_server();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let shutdown = Shutdown::new().unwrap();
        let flows = Arc::new(AtomicUsize::new(0));
        let (sd, n) = (shutdown.clone(), flows.clone());
        let connect = move |_client| {
            n.fetch_add(1, Ordering::SeqCst);
            let u = UdpSocket::bind("127.0.0.1:0")?;
            u.connect(up)?;
            Ok(u)
        };
        let thread = std::thread::spawn(move || serve_udp(sock, connect, opts, &sd).unwrap());
        UdpFwd { addr, flows, shutdown, thread: Some(thread) }
    }
}

impl Drop for UdpFwd {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[test]
fn udp_two_clients_get_their_own_replies() {
    let fwd = UdpFwd::start(UdpOptions { idle_timeout: Duration::from_millis(1000), max_flows: 16 });
    let (addr, flows) = (fwd.addr, fwd.flows.clone());
    let (a, b) = (udp_client(), udp_client());
    let mut buf = [0u8; 64];
    for round in 0..3 {
        a.send_to(format!("a{round}").as_bytes(), addr).unwrap();
        b.send_to(format!("b{round}").as_bytes(), addr).unwrap();
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!(from, addr, "reply must come from the published address");
        assert_eq!(&buf[..n], format!("echo:b{round}").as_bytes());
        let (n, _) = a.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("echo:a{round}").as_bytes());
    }
    assert_eq!(flows.load(Ordering::SeqCst), 2, "one flow per client address");
    // After the idle timeout the flow is gone; the next datagram opens a new one.
    std::thread::sleep(Duration::from_millis(2000));
    a.send_to(b"late", addr).unwrap();
    let (n, _) = a.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"echo:late");
    assert_eq!(flows.load(Ordering::SeqCst), 3);
}

#[test]
fn udp_max_flows_evicts_least_recent() {
    let fwd = UdpFwd::start(UdpOptions { idle_timeout: Duration::from_secs(60), max_flows: 2 });
    let (addr, flows) = (fwd.addr, fwd.flows.clone());
    let clients: Vec<UdpSocket> = (0..3).map(|_| udp_client()).collect();
    let mut buf = [0u8; 64];
    for (i, c) in clients.iter().enumerate() {
        c.send_to(format!("{i}").as_bytes(), addr).unwrap();
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("echo:{i}").as_bytes());
    }
    // Client 0 was evicted for client 2; it still works, through a new flow.
    clients[0].send_to(b"again", addr).unwrap();
    let (n, _) = clients[0].recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"echo:again");
    assert_eq!(flows.load(Ordering::SeqCst), 4);
}

#[test]
fn udp_hundreds_of_clients_each_get_their_own_reply() {
    // 400 flows at once (two descriptors each, within the usual 1024): every reply reaches the
    // client that asked, through the published address.
    let fwd = UdpFwd::start(UdpOptions { idle_timeout: Duration::from_secs(60), max_flows: 4096 });
    let addr = fwd.addr;
    let clients: Vec<UdpSocket> = (0..400).map(|_| udp_client()).collect();
    // In waves of 50: a burst of 400 new flows at once overflows the listening socket's
    // receive buffer (each new flow opens a socket), and lost datagrams are UDP, not a bug.
    let mut buf = [0u8; 64];
    for wave in clients.chunks(50).enumerate() {
        let (w, cs) = wave;
        for (j, c) in cs.iter().enumerate() {
            c.send_to(format!("n{}", w * 50 + j).as_bytes(), addr).unwrap();
        }
        for (j, c) in cs.iter().enumerate() {
            let i = w * 50 + j;
            let (n, from) = c.recv_from(&mut buf).unwrap_or_else(|e| panic!("client {i}: no reply: {e}"));
            assert_eq!(from, addr);
            assert_eq!(&buf[..n], format!("echo:n{i}").as_bytes(), "client {i} got another client's reply");
        }
    }
    // Every flow is still there: a second round reaches each client again.
    for (i, c) in clients.iter().enumerate() {
        c.send_to(format!("again{i}").as_bytes(), addr).unwrap();
        let (n, _) = c.recv_from(&mut buf).unwrap_or_else(|e| panic!("client {i}: no second reply: {e}"));
        assert_eq!(&buf[..n], format!("echo:again{i}").as_bytes());
    }
}
