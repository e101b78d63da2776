//! Forwarding to the caller's upstream resolvers.
//!
//! Sockets are created by this process when a query is forwarded, so they live in the network
//! namespace the caller runs in (the host's, for the network helper): a host resolver on
//! 127.0.0.53 works as an upstream. No resolver address is ever built in.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Header, MessageType, Query};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, Instant};

use crate::handler::Transport;
use crate::{Error, Result};

/// Time for one forwarded query, all upstreams and retries included, after which the client
/// gets SERVFAIL. Well under the 5 s a glibc stub waits before it asks again.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The least time one upstream is given before the next is tried.
const MIN_ATTEMPT: Duration = Duration::from_millis(250);

/// Idle connected UDP sockets kept per upstream for reuse.
const POOL_PER_SERVER: usize = 8;

/// The caller's upstream resolvers, and the sockets used to reach them.
///
/// Each forward rewrites the query id with a random one (restored in the reply) and sends it
/// from a connected UDP socket with a random source port, so only the upstream's own replies are
/// seen; a reply is taken only when its id and question match. Sockets that saw a clean exchange
/// go back to a small per-upstream pool; a socket that timed out or failed is closed.
/// A truncated reply is retried over TCP when the client itself came over TCP; a UDP client
/// gets the truncated reply and retries over TCP on its own.
///
/// Upstreams are tried in order, each given an equal share of the timeout (at least 250 ms) and
/// the last one whatever is left; an upstream that refuses (ICMP port unreachable) costs no wait.
pub struct Upstream {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    /// Where `.local` questions go (mDNS), when this listener resolves them.
    local: Option<Arc<dyn LocalResolver>>,
    pools: Vec<Mutex<Vec<UdpSocket>>>,
    /// Containers' own resolver lists (`--dns`), each with its socket pools: see
    /// [`Upstream::custom`].
    custom: Mutex<HashMap<Arc<[SocketAddr]>, Arc<Upstream>>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("servers", &self.servers)
            .field("timeout", &self.timeout)
            .field("local", &self.local.is_some())
            .finish()
    }
}

/// Answers `.local` questions (RFC 6762) for the server: the mDNS querier of the network
/// helper. It gets the client's query as received and returns the whole reply for the client
/// (its id and question echoed), or `None` to fall back to SERVFAIL. Bounded in time by the
/// implementation (a second or so: nobody may answer on the LAN).
pub trait LocalResolver: Send + Sync {
    fn resolve(
        &self,
        query: Vec<u8>,
        client: Transport,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>>;
}

/// Custom resolver lists kept at once; past that the memo starts over (their sockets close).
const MAX_CUSTOM: usize = 64;

impl Upstream {
    /// Upstreams in the order they are tried, with [`DEFAULT_TIMEOUT`]. An empty list makes every
    /// forward fail (SERVFAIL).
    pub fn new(servers: Vec<SocketAddr>) -> Self {
        let pools = servers.iter().map(|_| Mutex::new(Vec::new())).collect();
        Upstream { servers, timeout: DEFAULT_TIMEOUT, local: None, pools, custom: Mutex::new(HashMap::new()) }
    }

    /// Sends `.local` questions to `resolver` instead of the upstream servers.
    pub fn with_local(mut self, resolver: Arc<dyn LocalResolver>) -> Self {
        self.local = Some(resolver);
        self
    }

    /// The `.local` resolver, if this upstream has one.
    pub fn local(&self) -> Option<&Arc<dyn LocalResolver>> {
        self.local.as_ref()
    }

    /// Sets the time a forward may take in all.
    pub fn with_timeout(mut self, total: Duration) -> Self {
        self.timeout = total;
        self
    }

    /// The upstream for a container with resolvers of its own, with this one's timeout. One
    /// per distinct list, kept, so its sockets are reused as the shared upstream's are.
    pub fn custom(&self, servers: &Arc<[SocketAddr]>) -> Arc<Upstream> {
        let mut memo = self.custom.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = memo.get(servers) {
            return u.clone();
        }
        if memo.len() >= MAX_CUSTOM {
            memo.clear();
        }
        let mut u = Upstream::new(servers.to_vec()).with_timeout(self.timeout);
        u.local = self.local.clone();
        let u = Arc::new(u);
        memo.insert(servers.clone(), u.clone());
        u
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends a client's query (its raw bytes) upstream and returns the reply, with the client's
    /// id. Errors when no upstream answered in time (the server answers SERVFAIL then).
    pub async fn forward(&self, query: &[u8], client: Transport) -> Result<Vec<u8>> {
        let (client_id, question) = parse_query(query)?;
        if self.servers.is_empty() {
            return Err(Error::NoUpstream);
        }
        let id = random_id()?;
        let mut ours = query.to_vec();
        ours[..2].copy_from_slice(&id.to_be_bytes());

        let start = Instant::now();
        // A timeout too large for the clock (Duration::MAX, say) means "a day".
        let deadline = start.checked_add(self.timeout).unwrap_or(start + Duration::from_secs(86_400));
        let n = u32::try_from(self.servers.len()).unwrap_or(u32::MAX);
        let share = (self.timeout / n).max(MIN_ATTEMPT);
        let mut last = None;
        for (i, &server) in self.servers.iter().enumerate() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let left = deadline - now;
            let budget = if i + 1 == self.servers.len() { left } else { share.min(left) };
            let mut reply = match timeout(budget, self.exchange_udp(i, &ours, id, question.as_ref())).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => {
                    tracing::trace!(%server, error = %e, "upstream failed");
                    last = Some(e);
                    continue;
                }
                Err(_) => {
                    tracing::trace!(%server, "upstream timed out");
                    last = Some(Error::UpstreamTimeout { server, after: budget });
                    continue;
                }
            };
            if client == Transport::Tcp && is_truncated(&reply) {
                let left = deadline.saturating_duration_since(Instant::now()).max(MIN_ATTEMPT);
                match timeout(left, exchange_tcp(server, &ours, id, question.as_ref())).await {
                    Ok(Ok(full)) => reply = full,
                    Ok(Err(e)) => tracing::trace!(%server, error = %e, "tcp retry failed"),
                    Err(_) => tracing::trace!(%server, "tcp retry timed out"),
                }
            }
            reply[..2].copy_from_slice(&client_id.to_be_bytes());
            return Ok(reply);
        }
        Err(last.unwrap_or(Error::UpstreamTimeout { server: self.servers[0], after: self.timeout }))
    }

    async fn exchange_udp(&self, i: usize, query: &[u8], id: u16, question: Option<&Query>) -> Result<Vec<u8>> {
        let server = self.servers[i];
        let io = |source| Error::Upstream { server, source };
        let sock = match self.take(i) {
            Some(s) => s,
            None => {
                let local: SocketAddr = match server {
                    SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                    SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                let s = UdpSocket::bind(local).await.map_err(io)?;
                s.connect(server).await.map_err(io)?;
                s
            }
        };
        sock.send(query).await.map_err(io)?;
        let mut buf = vec![0u8; usize::from(u16::MAX)];
        loop {
            let n = sock.recv(&mut buf).await.map_err(io)?;
            if is_reply_to(&buf[..n], id, question) {
                buf.truncate(n);
                self.give_back(i, sock);
                return Ok(buf);
            }
            tracing::trace!(%server, "ignoring a reply that is not to our query");
        }
    }

    fn take(&self, i: usize) -> Option<UdpSocket> {
        self.pools[i].lock().ok()?.pop()
    }

    fn give_back(&self, i: usize, sock: UdpSocket) {
        if let Ok(mut pool) = self.pools[i].lock() {
            if pool.len() < POOL_PER_SERVER {
                pool.push(sock);
            }
        }
    }
}

async fn exchange_tcp(server: SocketAddr, query: &[u8], id: u16, question: Option<&Query>) -> Result<Vec<u8>> {
    let io = |source| Error::Upstream { server, source };
    let mut stream = TcpStream::connect(server).await.map_err(io)?;
    let len = u16::try_from(query.len()).map_err(|_| Error::BadQuery("longer than 65535 bytes".into()))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(io)?;
    loop {
        let len = stream.read_u16().await.map_err(io)?;
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await.map_err(io)?;
        if is_reply_to(&buf, id, question) {
            return Ok(buf);
        }
    }
}

/// The id and the first question of a query.
fn parse_query(query: &[u8]) -> Result<(u16, Option<Query>)> {
    let mut decoder = BinDecoder::new(query);
    let header = Header::read(&mut decoder).map_err(|e| Error::BadQuery(e.to_string()))?;
    let question = if header.counts.queries > 0 {
        Some(Query::read(&mut decoder).map_err(|e| Error::BadQuery(e.to_string()))?)
    } else {
        None
    };
    Ok((header.metadata.id, question))
}

/// Whether `reply` answers our query: a response with our id and the same question (or none,
/// as some servers send with FORMERR).
fn is_reply_to(reply: &[u8], id: u16, question: Option<&Query>) -> bool {
    let mut decoder = BinDecoder::new(reply);
    let Ok(header) = Header::read(&mut decoder) else {
        return false;
    };
    if header.metadata.message_type != MessageType::Response || header.metadata.id != id {
        return false;
    }
    if header.counts.queries == 0 {
        return true;
    }
    match (Query::read(&mut decoder), question) {
        (Ok(got), Some(asked)) => got == *asked,
        _ => false,
    }
}

fn is_truncated(reply: &[u8]) -> bool {
    let mut decoder = BinDecoder::new(reply);
    Header::read(&mut decoder).is_ok_and(|h| h.metadata.truncation)
}

fn random_id() -> Result<u16> {
    getrandom::u32().map(|x| x as u16).map_err(|e| Error::Random(e.to_string()))
}

/// The nameservers of a resolv.conf text, port 53, in file order, duplicates removed.
///
/// Comments (`#`, `;`) and every other keyword are ignored, as are addresses that do not parse
/// (a warning-free skip: resolv.conf is the host's, not ours to reject). IPv6 addresses may carry
/// a zone (`fe80::1%eth0` or `fe80::1%2`); a zone naming an interface that does not exist here
/// drops that one address (aardvark-dns#535 failed the whole file instead).
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    parse_resolv_conf(text, interface_index)
}

/// An interface's index, from sysfs (no ioctl, no FFI).
fn interface_index(name: &str) -> Option<u32> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok()?.trim().parse().ok()
}

pub(crate) fn parse_resolv_conf(text: &str, ifindex: impl Fn(&str) -> Option<u32>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        let parsed = match addr.split_once('%') {
            None => addr.parse().ok().map(|ip| SocketAddr::new(ip, 53)),
            Some((ip, zone)) => match ip.parse::<Ipv6Addr>() {
                Ok(ip) => {
                    let scope = zone.parse::<u32>().ok().or_else(|| ifindex(zone));
                    scope.map(|scope| SocketAddr::V6(std::net::SocketAddrV6::new(ip, 53, 0, scope)))
                }
                Err(_) => None,
            },
        };
        match parsed {
            Some(sa) if !out.contains(&sa) => out.push(sa),
            Some(_) => {}
            None => tracing::debug!(nameserver = addr, "skipping a nameserver that does not parse"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn resolv_conf_nameservers_in_order_with_port_53() {
        let text = "\
# generated by NetworkManager
; another comment
search example.com corp.example
options edns0 trust-ad ndots:2
nameserver 127.0.0.53
nameserver   10.0.0.1   # trailing comment
nameserver\t2001:db8::1
nameserver 10.0.0.1
domain example.com
";
        assert_eq!(parse_resolv_conf(text, |_| None), [sa("127.0.0.53:53"), sa("10.0.0.1:53"), sa("[2001:db8::1]:53")]);
    }

    #[test]
    fn resolv_conf_zone_ids() {
        let text = "nameserver fe80::1%eth0\nnameserver fe80::2%7\nnameserver fe80::3%nosuchif\nnameserver 1.1.1.1\n";
        let got = parse_resolv_conf(text, |n| (n == "eth0").then_some(3));
        let v6 = |ip: &str, scope| SocketAddr::V6(std::net::SocketAddrV6::new(ip.parse().unwrap(), 53, 0, scope));
        assert_eq!(got, [v6("fe80::1", 3), v6("fe80::2", 7), sa("1.1.1.1:53")]);
    }

    #[test]
    fn resolv_conf_garbage_is_skipped() {
        let text = "nameserver\nnameserver not-an-ip\nnameserver 10.0.0.1:53\nnameserver 10.0.0.2%eth0\n\
                    nameserver [::1]\nnameservers 10.0.0.3\n#nameserver 10.0.0.4\n  nameserver 10.0.0.5\n";
        assert_eq!(parse_resolv_conf(text, |_| Some(1)), [sa("10.0.0.5:53")]);
        assert!(parse_resolv_conf("", |_| None).is_empty());
    }

    #[test]
    fn resolv_conf_real_interface_lookup_does_not_fail() {
        // `lo` exists in every network namespace; its index is 1.
        let got = upstreams_from_resolv_conf("nameserver fe80::1%lo\nnameserver fe80::1%no-such-if0\n");
        assert_eq!(got.len(), 1);
        let SocketAddr::V6(v6) = got[0] else { panic!() };
        assert_eq!(v6.scope_id(), 1);
    }

    #[test]
    fn reply_matching() {
        use hickory_proto::op::Message;
        use hickory_proto::rr::{Name, RecordType};
        let q = Query::query(Name::from_ascii("a.example.").unwrap(), RecordType::A);
        let mut m = Message::response(7, hickory_proto::op::OpCode::Query);
        m.add_query(q.clone());
        let bytes = m.to_vec().unwrap();
        assert!(is_reply_to(&bytes, 7, Some(&q)));
        assert!(!is_reply_to(&bytes, 8, Some(&q)));
        let other = Query::query(Name::from_ascii("b.example.").unwrap(), RecordType::A);
        assert!(!is_reply_to(&bytes, 7, Some(&other)));
        let upper = Query::query(Name::from_ascii("A.EXAMPLE.").unwrap(), RecordType::A);
        assert!(is_reply_to(&bytes, 7, Some(&upper)));
        assert!(!is_reply_to(&bytes[..5], 7, Some(&q)));
        let mut query = Message::query();
        query.metadata.id = 7;
        assert!(!is_reply_to(&query.to_vec().unwrap(), 7, None));
    }
}
