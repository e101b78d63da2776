//! The control protocol on `netd.sock`, and the report of a helper that starts: every message
//! is encoded and decoded here, for both sides.
//!
//! Requests, one per line (at most [`MAX_LINE`] bytes), in sessions that end with the reply:
//!
//! ```text
//! SYNC <len>\n<len bytes: the Table as JSON>     -> OK | ERR <why>   (the session ends)
//! F ADD <id> <tcp|udp> <ip> <port>\n             (F: one byte carrying the descriptor, SCM_RIGHTS)
//! DEL <id>\n
//! END\n                                          -> OK | ERR <why>   (the session ends)
//! MDNS <len>\n<len bytes: an mdns::Ask as JSON>   -> DATA <len>\n<JSON> | ERR <why>
//! ```
//!
//! A bad request gets `ERR <why>` and ends its session; the helper goes on serving others.
//! The report pipe of a helper that starts carries `OK` or `E<why>` ([`Report`]).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// The longest request line.
pub const MAX_LINE: usize = 512;
/// The largest table a SYNC may carry.
pub const MAX_TABLE: usize = 16 << 20;
/// The byte that carries a descriptor.
const FD_MARK: u8 = b'F';

/// What the helper serves: every network and every endpoint, as the state database has them
/// (the engine builds it, the client's `sync` sends it). The helper keeps the endpoints
/// whose interface exists in its namespace, and re-uses the last table when that set changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub networks: Vec<Network>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    /// Its bridge in the namespace (`cove-` and 8 hex digits).
    pub bridge: String,
    pub subnet: String,
    #[serde(default)]
    pub subnet6: Option<String>,
    pub gateway: IpAddr,
    #[serde(default)]
    pub gateway6: Option<IpAddr>,
    #[serde(default)]
    pub internal: bool,
    /// `network create --dns`: this network's upstreams instead of the host's.
    #[serde(default)]
    pub dns: Vec<SocketAddr>,
    /// `-o allow_host_loopback`, if given (else cove.conf's, read by the helper).
    #[serde(default)]
    pub allow_host_loopback: Option<bool>,
    /// `--mdns`: its containers are published on the LAN.
    #[serde(default)]
    pub mdns: bool,
    /// `--mdns-interface`: only on these host interfaces (empty: every LAN interface).
    #[serde(default)]
    pub mdns_interfaces: Vec<String>,
    /// Whether its DNS resolves `.local` by mDNS (`-o mdns_resolve=false`: the upstreams do).
    #[serde(default = "yes")]
    pub mdns_resolve: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    /// The container's id and name.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub ip: IpAddr,
    #[serde(default)]
    pub ip6: Option<IpAddr>,
    /// The host end of its veth pair (`cv…`).
    pub ifname: String,
    /// `--dns`: the container's own upstreams.
    #[serde(default)]
    pub dns: Vec<SocketAddr>,
    /// The container's `cove.mdns.*` labels (service types and instance name of its published
    /// ports, see the mdns module).
    #[serde(default)]
    pub mdns_labels: std::collections::BTreeMap<String, String>,
}

/// A `cove mdns` question (`MDNS`), answered by the helper's mDNS (see the mdns module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ask {
    /// What this helper publishes, and where.
    List,
    Resolve {
        name: String,
        qtype: String,
        timeout_ms: u64,
    },
    Browse {
        service_type: String,
        timeout_ms: u64,
    },
}

/// The answer to [`Ask::List`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub interfaces: Vec<String>,
    pub published: Vec<PublishedView>,
    /// Renames and conflicts, newest last.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedView {
    /// The name in use on the LAN (after a rename, not the one asked for).
    pub name: String,
    pub requested: String,
    /// `None` for a host name.
    pub service_type: Option<String>,
    pub state: String,
}

/// One record of a `.local` answer (`cove mdns resolve`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedView {
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    /// The record's data as text (`192.168.1.20`, `0 0 8080 node1.mycluster.local.`).
    pub data: String,
}

/// One browsed service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowsedView {
    pub instance: String,
    pub service_type: String,
    pub host: String,
    pub port: u16,
    pub txt: Vec<String>,
    pub addrs: Vec<IpAddr>,
}

/// Where a published port's connections go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub udp: bool,
    pub target: SocketAddr,
}

#[derive(Debug)]
pub enum Request {
    /// Serve this table (DNS, ruleset, bridges); answered when done.
    Sync(Table),
    /// Serve the host socket `fd` for container `id`.
    Add { id: String, port: Port, fd: OwnedFd },
    /// Stop serving every port of container `id`.
    Del { id: String },
    /// The end of a session of ADD/DEL.
    End,
    /// A `cove mdns` question; answered with [`Reply::Data`].
    Mdns(Ask),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok,
    Err(String),
    /// A body (JSON) of at most [`MAX_TABLE`] bytes.
    Data(Vec<u8>),
}

/// Container ids travel as words: letters, digits, `_`, `-`, `.` (a 64-digit hex id in practice).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl Request {
    /// Writes the request on `sock` (the descriptor of an ADD first, with its marker byte).
    pub fn send(&self, sock: &UnixStream) -> Result<()> {
        let io = crate::io_err("talk to the network helper");
        let mut s = sock;
        match self {
            Request::Sync(t) => {
                let body = serde_json::to_vec(t).map_err(|e| Error::Protocol(format!("encode the table: {e}")))?;
                if body.len() > MAX_TABLE {
                    return Err(Error::Protocol(format!("a table of {} bytes is more than {MAX_TABLE}", body.len())));
                }
                let mut msg = format!("SYNC {}\n", body.len()).into_bytes();
                msg.extend_from_slice(&body);
                s.write_all(&msg).map_err(io)
            }
            Request::Add { id, port, fd } => {
                if !valid_id(id) {
                    return Err(Error::Protocol(format!("invalid container id {id:?}")));
                }
                cove_sys::send_fd(sock.as_fd(), fd.as_fd())
                    .map_err(|e| Error::Other(format!("pass a published port to the network helper: {e}")))?;
                let proto = if port.udp { "udp" } else { "tcp" };
                s.write_all(format!("ADD {id} {proto} {} {}\n", port.target.ip(), port.target.port()).as_bytes())
                    .map_err(io)
            }
            Request::Del { id } => {
                if !valid_id(id) {
                    return Err(Error::Protocol(format!("invalid container id {id:?}")));
                }
                s.write_all(format!("DEL {id}\n").as_bytes()).map_err(io)
            }
            Request::End => s.write_all(b"END\n").map_err(io),
            Request::Mdns(ask) => {
                let body = serde_json::to_vec(ask).map_err(|e| Error::Protocol(format!("encode: {e}")))?;
                let mut msg = format!("MDNS {}\n", body.len()).into_bytes();
                msg.extend_from_slice(&body);
                s.write_all(&msg).map_err(io)
            }
        }
    }
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Ok => b"OK\n".to_vec(),
            Reply::Err(e) => format!("ERR {}\n", one_line(e)).into_bytes(),
            Reply::Data(body) => {
                let mut msg = format!("DATA {}\n", body.len()).into_bytes();
                msg.extend_from_slice(body);
                msg
            }
        }
    }

    pub fn send(&self, sock: &UnixStream) -> Result<()> {
        let mut s = sock;
        s.write_all(&self.encode()).map_err(crate::io_err("answer a client"))
    }

    pub fn decode(line: &str) -> Result<Reply> {
        match line.trim_end_matches(['\n', '\r']) {
            "OK" => Ok(Reply::Ok),
            l => match l.strip_prefix("ERR ") {
                Some(e) => Ok(Reply::Err(e.to_string())),
                None => Err(Error::Protocol(format!("unexpected reply {:?}", truncated(l)))),
            },
        }
    }

    /// Reads one reply from `sock` (EOF before it: an error).
    pub fn recv(sock: &UnixStream) -> Result<Reply> {
        let mut r = Reader::new(sock);
        match r.line()? {
            Some(l) => match l.strip_prefix("DATA ") {
                Some(len) => {
                    let len: usize = len.parse().map_err(|_| Error::Protocol("bad DATA".into()))?;
                    if len > MAX_TABLE {
                        return Err(Error::Protocol(format!("a reply of {len} bytes is more than {MAX_TABLE}")));
                    }
                    Ok(Reply::Data(r.bytes(len)?))
                }
                None => Reply::decode(&l),
            },
            None => Err(Error::Protocol("the network helper closed the connection without a reply".into())),
        }
    }

    /// `Ok(())` for OK, the helper's words for ERR.
    pub fn into_result(self) -> Result<()> {
        match self {
            Reply::Ok | Reply::Data(_) => Ok(()),
            Reply::Err(e) => Err(Error::Refused(e)),
        }
    }
}

fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The report a starting helper writes on its report pipe: `OK` once it serves, `E<why>` if it
/// could not start. The pipe's EOF ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Ok,
    Failed(String),
}

impl Report {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Report::Ok => b"OK".to_vec(),
            Report::Failed(e) => format!("E{}", one_line(e)).into_bytes(),
        }
    }

    pub fn decode(text: &str) -> Report {
        match text {
            t if t.starts_with("OK") => Report::Ok,
            t if t.starts_with('E') => Report::Failed(t[1..].trim().to_string()),
            "" => Report::Failed("it exited without a word".into()),
            t => Report::Failed(format!("unexpected report {:?}", truncated(t))),
        }
    }
}

/// Reads requests (or reply lines) from a unix stream, with the descriptors that ride on marker
/// bytes. Reads in chunks: the kernel returns a descriptor with the last byte of the chunk
/// that carries it (it never glues data after a descriptor into one read), so descriptors are
/// queued in order and each marker byte takes the next one.
pub struct Reader<'a> {
    sock: &'a UnixStream,
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
    eof: bool,
}

impl<'a> Reader<'a> {
    pub fn new(sock: &'a UnixStream) -> Reader<'a> {
        Reader { sock, buf: Vec::new(), fds: VecDeque::new(), eof: false }
    }

    /// Reads more; false at EOF.
    fn fill(&mut self) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = [0u8; 4096];
        let (n, fd) = cove_sys::recv_with_fd(self.sock.as_fd(), &mut chunk).map_err(|e| Error::Io {
            what: "read from the control socket".into(),
            source: e.errno().map(std::io::Error::from).unwrap_or_else(|| std::io::Error::other(e.to_string())),
        })?;
        self.fds.extend(fd);
        self.buf.extend_from_slice(&chunk[..n]);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    /// The next line (without its newline), `None` at EOF between lines.
    pub fn line(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                if i > MAX_LINE {
                    return Err(Error::Protocol(format!("line longer than {MAX_LINE} bytes")));
                }
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return String::from_utf8(line[..i].to_vec())
                    .map(Some)
                    .map_err(|_| Error::Protocol("a line that is not UTF-8".into()));
            }
            if self.buf.len() > MAX_LINE {
                return Err(Error::Protocol(format!("line longer than {MAX_LINE} bytes")));
            }
            if !self.fill()? {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(Error::Protocol("the connection ended in the middle of a line".into())),
                };
            }
        }
    }

    fn bytes(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(Error::Protocol(format!("the connection ended after {} of {n} bytes", self.buf.len())));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// The descriptor of a marker byte at the start of a line, if there is one.
    fn marker(&mut self) -> Result<Option<OwnedFd>> {
        if self.buf.is_empty() && !self.fill()? {
            return Ok(None);
        }
        if self.buf.first() != Some(&FD_MARK) {
            return Ok(None);
        }
        self.buf.remove(0);
        self.fds.pop_front().map(Some).ok_or_else(|| Error::Protocol("a descriptor marker without a descriptor".into()))
    }

    /// The next request; `None` when the client closed the connection between requests.
    pub fn request(&mut self) -> Result<Option<Request>> {
        let fd = self.marker()?;
        let Some(line) = self.line()? else {
            return match fd {
                None => Ok(None),
                Some(_) => Err(Error::Protocol("the connection ended after a descriptor".into())),
            };
        };
        let bad = |why: &str| Error::Protocol(format!("{why}: {:?}", truncated(&line)));
        let f: Vec<&str> = line.split(' ').collect();
        let req = match (f.as_slice(), fd) {
            (["SYNC", len], None) => {
                let len: usize = len.parse().map_err(|_| bad("bad SYNC"))?;
                if len > MAX_TABLE {
                    return Err(Error::Protocol(format!("a table of {len} bytes is more than {MAX_TABLE}")));
                }
                let body = self.bytes(len)?;
                Request::Sync(serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("bad table: {e}")))?)
            }
            (["ADD", id, proto, ip, port], Some(fd)) => {
                let udp = match *proto {
                    "udp" => true,
                    "tcp" => false,
                    _ => return Err(bad("bad ADD")),
                };
                let (Ok(ip), Ok(port)) = (ip.parse::<IpAddr>(), port.parse::<u16>()) else {
                    return Err(bad("bad ADD"));
                };
                if !valid_id(id) {
                    return Err(bad("bad ADD"));
                }
                Request::Add { id: id.to_string(), port: Port { udp, target: SocketAddr::new(ip, port) }, fd }
            }
            (["ADD", ..], None) => return Err(bad("ADD without a descriptor")),
            (["DEL", id], None) if valid_id(id) => Request::Del { id: id.to_string() },
            (["END"], None) => Request::End,
            (["MDNS", len], None) => {
                let len: usize = len.parse().map_err(|_| bad("bad MDNS"))?;
                if len > MAX_LINE * 8 {
                    return Err(bad("an MDNS question too long"));
                }
                let body = self.bytes(len)?;
                Request::Mdns(serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("bad MDNS: {e}")))?)
            }
            (_, Some(_)) => return Err(bad("a descriptor with something else than ADD")),
            _ => return Err(bad("unknown request")),
        };
        Ok(Some(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            networks: vec![Network {
                name: "cove".into(),
                bridge: "cove-0123abcd".into(),
                subnet: "10.90.0.0/24".into(),
                subnet6: Some("fd63::/64".into()),
                gateway: "10.90.0.1".parse().unwrap(),
                gateway6: Some("fd63::1".parse().unwrap()),
                internal: false,
                dns: vec!["192.0.2.53:53".parse().unwrap()],
                allow_host_loopback: Some(true),
                mdns: true,
                mdns_interfaces: vec!["eth0".into()],
                mdns_resolve: false,
            }],
            endpoints: vec![Endpoint {
                network: "cove".into(),
                id: "ab".repeat(32),
                name: "web\nx".into(),
                aliases: vec!["w".into()],
                ip: "10.90.0.2".parse().unwrap(),
                ip6: None,
                ifname: "cvabababab0".into(),
                dns: vec![],
                mdns_labels: [("cove.mdns.service.80".to_string(), "_http._tcp".to_string())].into(),
            }],
        }
    }

    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().unwrap()
    }

    #[test]
    fn round_trip() {
        let (a, b) = pair();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = Port { udp: true, target: "10.90.0.2:53".parse().unwrap() };
        let id = "ab".repeat(32);
        Request::Sync(table()).send(&a).unwrap();
        Request::Add { id: id.clone(), port, fd: OwnedFd::from(sock.try_clone().unwrap()) }.send(&a).unwrap();
        Request::Add {
            id: id.clone(),
            port: Port { udp: false, target: "[fd63::2]:80".parse().unwrap() },
            fd: OwnedFd::from(sock.try_clone().unwrap()),
        }
        .send(&a)
        .unwrap();
        Request::Del { id: id.clone() }.send(&a).unwrap();
        Request::End.send(&a).unwrap();
        drop(a);
        let mut r = Reader::new(&b);
        assert!(matches!(r.request().unwrap(), Some(Request::Sync(t)) if t == table()));
        match r.request().unwrap() {
            Some(Request::Add { id: i, port: p, fd }) => {
                assert_eq!((i, p), (id.clone(), port));
                // The very socket: same local address.
                assert_eq!(std::net::UdpSocket::from(fd).local_addr().unwrap(), sock.local_addr().unwrap());
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(r.request().unwrap(), Some(Request::Add { port: Port { udp: false, .. }, .. })));
        assert!(matches!(r.request().unwrap(), Some(Request::Del { id: i }) if i == id));
        assert!(matches!(r.request().unwrap(), Some(Request::End)));
        assert!(r.request().unwrap().is_none());
        // Replies and reports.
        for rep in [Reply::Ok, Reply::Err("no: bad\nthing".into())] {
            let back = Reply::decode(std::str::from_utf8(&rep.encode()).unwrap()).unwrap();
            assert_eq!(
                back,
                match rep {
                    Reply::Err(_) => Reply::Err("no: bad thing".into()),
                    r => r,
                }
            );
        }
        assert!(Reply::decode("MAYBE").is_err());
        assert_eq!(Report::decode(std::str::from_utf8(&Report::Ok.encode()).unwrap()), Report::Ok);
        assert_eq!(
            Report::decode(std::str::from_utf8(&Report::Failed("no netns".into()).encode()).unwrap()),
            Report::Failed("no netns".into())
        );
        assert!(matches!(Report::decode(""), Report::Failed(_)));
        // Ids that would break a line are refused before anything is sent.
        assert!(Request::Del { id: "a b".into() }.send(&b).is_err());
        assert!(Request::Del { id: String::new() }.send(&b).is_err());
    }

    fn decode(bytes: &[u8]) -> Result<Option<Request>> {
        let (a, b) = pair();
        (&a).write_all(bytes).unwrap();
        drop(a);
        Reader::new(&b).request()
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b"HELLO\n"[..],
            b"ADD x tcp 10.0.0.1 80\n",
            b"DEL\n",
            b"DEL a b\n",
            b"END now\n",
            b"SYNC x\n",
            b"SYNC 3\n{}x",
            b"SYNC 99999999999\n",
            b"SYNC 10\n{}",
            b"\xff\xfe\n",
            b"END",
            b"F",
            b"FADD x tcp 10.0.0.1 80\n",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(decode(b"").unwrap().is_none());
        let long = vec![b'A'; MAX_LINE + 10];
        assert!(decode(&long).unwrap_err().to_string().contains("longer than"));
        let mut long_line = long.clone();
        long_line.push(b'\n');
        assert!(decode(&long_line).unwrap_err().to_string().contains("longer than"));
        let big = format!("SYNC {}\n", MAX_TABLE + 1);
        assert!(decode(big.as_bytes()).unwrap_err().to_string().contains("more than"));
    }

    #[test]
    fn a_descriptor_with_the_wrong_request() {
        let (a, b) = pair();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        cove_sys::send_fd(a.as_fd(), sock.as_fd()).unwrap();
        (&a).write_all(b"END\n").unwrap();
        assert!(Reader::new(&b).request().is_err());
    }
}
