//! The server over a socket in a temporary directory, in the test's own network namespace
//! (no namespace of its own, no nft: rulesets are recorded), reached through the client.

use super::*;
use crate::proto::{Endpoint, Network, Port};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

struct Running {
    dir: tempfile::TempDir,
    shutdown: cove_net::forward::Shutdown,
    thread: Option<std::thread::JoinHandle<Result<Exit>>>,
    rulesets: Arc<Mutex<Vec<String>>>,
    loopback: Arc<AtomicBool>,
    dns_port: u16,
}

impl Running {
    fn run(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn raw(&self) -> UnixStream {
        UnixStream::connect(self.dir.path().join(RunFiles::SOCK)).unwrap()
    }

    fn stop(mut self) -> Exit {
        self.shutdown.trigger();
        self.thread.take().unwrap().join().unwrap().unwrap()
    }
}

fn free_port() -> u16 {
    // Free for UDP and TCP on 127.0.0.1 a moment ago.
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = u.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let control = UnixListener::bind(dir.path().join(RunFiles::SOCK)).unwrap();
    let rulesets = Arc::new(Mutex::new(vec![]));
    let loopback = Arc::new(AtomicBool::new(false));
    let (rs, lb) = (rulesets.clone(), loopback.clone());
    let nat = Nat::new(None, false, vec!["192.0.2.2".parse().unwrap()], Default::default()).with_apply(Box::new(
        move |text: &str| {
            rs.lock().unwrap().push(text.to_string());
            Ok(())
        },
    ));
    let dns_port = free_port();
    let opts = Options {
        netns: None,
        dns_runtime: crate::dns::start_runtime().unwrap(),
        upstreams: vec![],
        dns_port,
        host: None,
        nat: Some(nat),
        transparent_route: false,
        loopback_default: Box::new(move || Ok(lb.load(Ordering::SeqCst))),
        log: None,
        idle: None,
        tick: Duration::from_millis(20),
        mdns: None,
    };
    let shutdown = cove_net::forward::Shutdown::new().unwrap();
    let sd = shutdown.clone();
    let thread = std::thread::spawn(move || serve(control, opts, sd));
    Running { dir, shutdown, thread: Some(thread), rulesets, loopback, dns_port }
}

fn reply(s: &UnixStream) -> String {
    let mut out = String::new();
    let _ = (&*s).read_to_string(&mut out);
    out
}

#[test]
fn bad_input_gets_an_error_and_the_server_goes_on() {
    let srv = start();
    for bad in [&b"HELLO\n"[..], b"SYNC 5\n{nope", b"ADD x tcp 1.2.3.4 80\n", b"DEL a b\n"] {
        let s = srv.raw();
        (&s).write_all(bad).unwrap();
        let r = reply(&s);
        assert!(r.starts_with("ERR "), "{:?}: {r:?}", String::from_utf8_lossy(bad));
    }
    // A line that never ends.
    let s = srv.raw();
    let _ = (&s).write_all(&vec![b'x'; crate::proto::MAX_LINE * 4]);
    assert!(reply(&s).contains("longer than"));
    // A client that dies in the middle of a request, and one that says nothing.
    let s = srv.raw();
    (&s).write_all(b"SYNC 100\n{\"netw").unwrap();
    drop(s);
    let quiet = srv.raw();
    // Still serving.
    let s = srv.raw();
    (&s).write_all(b"END\n").unwrap();
    assert_eq!(reply(&s), "OK\n");
    crate::client::sync(srv.run(), &Table::default()).unwrap();
    drop(quiet);
    assert_eq!(srv.stop(), Exit::Shutdown);
}

#[test]
fn published_ports_come_and_go() {
    let srv = start();
    // The "container": an echo server.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = target.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in target.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut b = [0u8; 64];
                while let Ok(n) = c.read(&mut b) {
                    if n == 0 || c.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let published = host.local_addr().unwrap();
    let id = "c0ffee".repeat(4);
    crate::client::register(srv.run(), &id, vec![(Port { udp: false, target: to }, OwnedFd::from(host))]).unwrap();
    let mut c = TcpStream::connect(published).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    crate::client::unregister(srv.run(), &id);
    // The host socket is closed once the forwarder has stopped.
    let t = Instant::now();
    while TcpStream::connect(published).is_ok() {
        assert!(t.elapsed() < Duration::from_secs(5), "still served after DEL");
        std::thread::sleep(Duration::from_millis(20));
    }
    srv.stop();
}

fn query(port: u16, name: &str) -> Vec<IpAddr> {
    use cove_dns::hickory_proto::op::{Message, Query};
    use cove_dns::hickory_proto::rr::{Name, RData, RecordType};
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(&msg.to_vec().unwrap(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 1500];
    let n = s.recv(&mut buf).expect("the DNS server answers");
    let m = Message::from_vec(&buf[..n]).unwrap();
    m.answers.iter().filter_map(|r| if let RData::A(a) = &r.data { Some(IpAddr::V4(a.0)) } else { None }).collect()
}

/// A network whose "bridge" is the loopback interface, so its listener binds here.
fn table(with_web: bool) -> Table {
    let net = Network {
        name: "n1".into(),
        bridge: "lo".into(),
        subnet: "10.97.1.0/24".into(),
        subnet6: None,
        gateway: "127.0.0.1".parse().unwrap(),
        gateway6: None,
        internal: false,
        dns: vec![],
        allow_host_loopback: None,
        mdns: false,
        mdns_interfaces: vec![],
        mdns_resolve: true,
    };
    let web = Endpoint {
        network: "n1".into(),
        id: "ab".repeat(32),
        name: "web".into(),
        aliases: vec!["www".into()],
        ip: "10.97.1.2".parse().unwrap(),
        ip6: None,
        ifname: "lo".into(),
        dns: vec![],
        mdns_labels: Default::default(),
    };
    // An endpoint whose interface is not in the namespace is not served.
    let gone = Endpoint {
        name: "gone".into(),
        id: "cd".repeat(32),
        ip: "10.97.1.3".parse().unwrap(),
        ifname: "cv-not-here".into(),
        ..web.clone()
    };
    Table { networks: vec![net], endpoints: if with_web { vec![web, gone] } else { vec![gone] } }
}

#[test]
fn dns_follows_the_table_without_closing_its_listener() {
    let srv = start();
    crate::client::sync(srv.run(), &table(true)).unwrap();
    assert_eq!(query(srv.dns_port, "web"), vec!["10.97.1.2".parse::<IpAddr>().unwrap()]);
    assert_eq!(query(srv.dns_port, "www.n1"), vec!["10.97.1.2".parse::<IpAddr>().unwrap()]);
    assert!(query(srv.dns_port, "gone").is_empty());
    // A TCP connection to the listener made before a reload is still served after it.
    let mut tcp = TcpStream::connect(("127.0.0.1", srv.dns_port)).unwrap();
    crate::client::sync(srv.run(), &table(false)).unwrap();
    assert!(query(srv.dns_port, "web").is_empty());
    {
        use cove_dns::hickory_proto::op::{Message, Query};
        use cove_dns::hickory_proto::rr::{Name, RecordType};
        let mut msg = Message::query();
        msg.add_query(Query::query(Name::from_ascii("web").unwrap(), RecordType::A));
        let q = msg.to_vec().unwrap();
        tcp.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
        tcp.write_all(&q).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).expect("the listener kept its connection");
    }
    crate::client::sync(srv.run(), &table(true)).unwrap();
    assert_eq!(query(srv.dns_port, "web").len(), 1);
    srv.stop();
}

#[test]
fn ruleset_follows_the_table_and_the_loopback_default() {
    let srv = start();
    let mut t = table(true);
    t.networks[0].bridge = "cove-0000aaaa".into();
    crate::client::sync(srv.run(), &t).unwrap();
    crate::client::sync(srv.run(), &t).unwrap();
    let applied = srv.rulesets.lock().unwrap().clone();
    assert_eq!(applied.len(), 1, "an unchanged table is not applied again");
    assert!(applied[0].contains("10.97.1.0/24") && applied[0].contains("192.0.2.2"), "{}", applied[0]);
    // cove.conf's default is asked at every reload: a change applies at the next one.
    srv.loopback.store(true, Ordering::SeqCst);
    crate::client::sync(srv.run(), &t).unwrap();
    assert_eq!(srv.rulesets.lock().unwrap().len(), 2);
    // A network that says keeps what it says.
    t.networks[0].allow_host_loopback = Some(true);
    crate::client::sync(srv.run(), &t).unwrap();
    assert_eq!(srv.rulesets.lock().unwrap().len(), 2);
    // A table that cannot become a ruleset fails no request (it is logged).
    t.networks[0].name = "bad name".into();
    crate::client::sync(srv.run(), &t).unwrap();
    srv.stop();
}

#[test]
fn serve_returns_when_its_run_directory_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let control = UnixListener::bind(run.join(RunFiles::SOCK)).unwrap();
    let opts = Options {
        netns: None,
        dns_runtime: crate::dns::start_runtime().unwrap(),
        upstreams: vec![],
        dns_port: free_port(),
        host: None,
        nat: None,
        transparent_route: false,
        loopback_default: Box::new(|| Ok(false)),
        log: None,
        idle: Some(Idle { files: RunFiles::new(&run), limit: Duration::from_secs(60) }),
        tick: Duration::from_millis(20),
        mdns: None,
    };
    let sd = cove_net::forward::Shutdown::new().unwrap();
    let t = std::thread::spawn(move || serve(control, opts, sd));
    std::fs::remove_dir_all(&run).unwrap();
    assert_eq!(t.join().unwrap().unwrap(), Exit::Orphaned);
}

#[test]
fn idle_exit_under_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let files = RunFiles::new(dir.path());
    let idle = Idle { files: files.clone(), limit: Duration::from_millis(50) };
    std::fs::write(files.used(), "").unwrap();
    assert_eq!(idle.check(Instant::now()), None, "busy a moment ago");
    std::thread::sleep(Duration::from_millis(80));
    // Someone holds the lock (finding us to attach): we wait for it.
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(files.lock()).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let t = std::thread::spawn(move || {
        let idle = Idle { files: RunFiles::new(&idle.files.dir), limit: idle.limit };
        let r = idle.check(Instant::now() - Duration::from_secs(1));
        (r, idle)
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!t.is_finished(), "decided without the lock");
    // ... and it touched netd.used: no exit.
    std::fs::write(files.used(), "").unwrap();
    drop(held);
    let (r, idle) = t.join().unwrap();
    assert_eq!(r, None);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(idle.check(Instant::now() - Duration::from_secs(1)), Some(Exit::Idle));
}
