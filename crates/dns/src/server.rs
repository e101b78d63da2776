//! The serve loops: one per listening socket, each bound to one network. They take sockets the
//! caller already bound (in whatever network namespace), answer from the newest records snapshot,
//! and never close or reopen their socket on a reload (aardvark-dns#389).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use std::os::fd::AsRawFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::handler::{error_reply, handle_query_from, Handled, Transport};
use crate::mmsg;
use crate::records::{Forward, Records};
use crate::upstream::Upstream;
use crate::Result;

/// Forwarded queries in flight per UDP listener; past this, new ones get SERVFAIL at once.
const MAX_FORWARDS: usize = 1024;

/// Open TCP connections per listener; past this, new ones are closed at once.
const MAX_TCP_CONNECTIONS: usize = 256;

/// A TCP connection with no complete query for this long is closed (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Batches of datagrams (up to `mmsg::SLOTS` each) handled in a row before the loop lets
/// forward tasks run.
const BATCHES: usize = 4;

/// The records as the serve loops see them: the newest snapshot, fetched only when the sender
/// has published a new one (one atomic load per query otherwise). A dropped sender leaves the
/// last snapshot in place.
struct Snapshot {
    rx: watch::Receiver<Arc<Records>>,
    current: Arc<Records>,
}

impl Snapshot {
    fn new(mut rx: watch::Receiver<Arc<Records>>) -> Self {
        let current = rx.borrow_and_update().clone();
        Snapshot { rx, current }
    }

    fn get(&mut self) -> &Records {
        if self.rx.has_changed().unwrap_or(false) {
            self.current = self.rx.borrow_and_update().clone();
        }
        &self.current
    }
}

/// Serves DNS over UDP on `sock` for `network` until `shutdown` completes.
///
/// Queries for the network's names are answered in the loop itself; every other one is
/// forwarded on a task of its own (`upstream`), at most 1024 at a time (SERVFAIL past that).
/// Datagrams are read and answered in batches (`recvmmsg`/`sendmmsg`, up to 32 a call);
/// datagrams over 4096 bytes are dropped. Errors on single datagrams are logged at trace level
/// and never end the loop.
pub async fn serve_udp(
    sock: UdpSocket,
    network: String,
    records: watch::Receiver<Arc<Records>>,
    upstream: Arc<Upstream>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let span = tracing::debug_span!("dns", network = %network, transport = "udp");
    udp_loop(Arc::new(sock), network, records, upstream, shutdown).instrument(span).await
}

async fn udp_loop(
    sock: Arc<UdpSocket>,
    network: String,
    records: watch::Receiver<Arc<Records>>,
    upstream: Arc<Upstream>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    tracing::debug!(addr = ?sock.local_addr().ok(), "serving");
    let fd = sock.as_raw_fd();
    let mut snapshot = Snapshot::new(records);
    let limit = Arc::new(Semaphore::new(MAX_FORWARDS));
    let mut forwards: JoinSet<()> = JoinSet::new();
    let mut rbuf = vec![0u8; mmsg::SLOTS * mmsg::SLOT];
    let mut got = Vec::with_capacity(mmsg::SLOTS);
    let mut out = Vec::with_capacity(4096);
    // Answers of one batch, back to back, and (start, end, peer) of each.
    let mut sbuf: Vec<u8> = Vec::with_capacity(mmsg::SLOTS * 512);
    let mut replies: Vec<(usize, usize, SocketAddr)> = Vec::with_capacity(mmsg::SLOTS);
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
            ready = sock.readable() => {
                if let Err(e) = ready {
                    tracing::trace!(error = %e, "udp socket not readable");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
            }
        }
        for _ in 0..BATCHES {
            match sock.try_io(Interest::READABLE, || mmsg::recv(fd, &mut rbuf, &mut got)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::trace!(error = %e, "udp receive failed");
                    break;
                }
            }
            let records = snapshot.get();
            for (i, r) in got.iter().enumerate() {
                let Some(peer) = r.peer else { continue };
                if r.truncated {
                    tracing::trace!(%peer, "dropped an oversized datagram");
                    continue;
                }
                let packet = &rbuf[i * mmsg::SLOT..i * mmsg::SLOT + r.len];
                match handle_query_from(packet, &network, Some(peer.ip()), records, Transport::Udp, &mut out) {
                    Handled::Reply => {
                        let start = sbuf.len();
                        sbuf.extend_from_slice(&out);
                        replies.push((start, sbuf.len(), peer));
                    }
                    Handled::Forward(to) => {
                        let Ok(permit) = limit.clone().try_acquire_owned() else {
                            tracing::trace!(%peer, "too many forwards in flight");
                            if error_reply(packet, ResponseCode::ServFail, &mut out) {
                                let start = sbuf.len();
                                sbuf.extend_from_slice(&out);
                                replies.push((start, sbuf.len(), peer));
                            }
                            continue;
                        };
                        let query = packet.to_vec();
                        let sock = sock.clone();
                        let upstream = upstream_for(&upstream, records, &network, peer.ip());
                        forwards.spawn(async move {
                            let reply = forward(&upstream, to, &query, Transport::Udp).await;
                            if let Some(reply) = reply {
                                send_udp(&sock, &reply, peer).await;
                            }
                            drop(permit);
                        });
                    }
                    _ => tracing::trace!(%peer, "dropped a datagram"),
                }
            }
            flush(&sock, &sbuf, &replies).await;
            sbuf.clear();
            replies.clear();
        }
        while forwards.try_join_next().is_some() {}
    }
    forwards.shutdown().await;
    Ok(())
}

/// Sends a batch of answers, as many per system call as the socket takes.
async fn flush(sock: &UdpSocket, data: &[u8], msgs: &[(usize, usize, SocketAddr)]) {
    let fd = sock.as_raw_fd();
    let mut done = 0;
    while done < msgs.len() {
        match sock.try_io(Interest::WRITABLE, || mmsg::send(fd, data, &msgs[done..])) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = sock.writable().await {
                    tracing::trace!(error = %e, "udp socket not writable");
                    return;
                }
            }
            Err(e) => {
                // The first message of the rest could not go (its peer, say): skip it.
                tracing::trace!(peer = %msgs[done].2, error = %e, "udp send failed");
                done += 1;
            }
        }
    }
}

async fn send_udp(sock: &UdpSocket, data: &[u8], peer: SocketAddr) {
    let sent = match sock.try_send_to(data, peer) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock.send_to(data, peer).await,
        other => other,
    };
    if let Err(e) = sent {
        tracing::trace!(%peer, error = %e, "udp send failed");
    }
}

/// The upstream for a query from `client`: its own resolvers (`--dns`) when it has some.
fn upstream_for(shared: &Arc<Upstream>, records: &Records, network: &str, client: std::net::IpAddr) -> Arc<Upstream> {
    match records.upstreams_of(network, client) {
        Some(servers) => shared.custom(&servers),
        None => shared.clone(),
    }
}

/// Forwards one query and returns the reply for the client: the upstream's, or SERVFAIL.
/// `.local` names (`Forward::Mdns`) go to the listener's mDNS resolver when it has one (a
/// network made with `-o mdns_resolve=false` has none: its upstreams own `.local`).
async fn forward(upstream: &Upstream, to: Forward, query: &[u8], client: Transport) -> Option<Vec<u8>> {
    match (to, upstream.local()) {
        (Forward::Mdns, Some(local)) => {
            return match local.resolve(query.to_vec(), client).await {
                Some(reply) => Some(reply),
                None => {
                    let mut out = Vec::new();
                    error_reply(query, ResponseCode::ServFail, &mut out).then_some(out)
                }
            };
        }
        // A LAN address's reverse name: the LAN's mDNS answer, else its unicast DNS's.
        (Forward::MdnsThenUpstream, Some(local)) => {
            if let Some(reply) = local.resolve(query.to_vec(), client).await {
                let rcode = reply.get(3).map(|b| b & 0x0f);
                let answers = reply.get(6..8).map(|b| u16::from_be_bytes([b[0], b[1]]));
                if rcode == Some(0) && answers.is_some_and(|n| n > 0) {
                    return Some(reply);
                }
            }
        }
        _ => {}
    }
    match upstream.forward(query, client).await {
        Ok(reply) => Some(reply),
        Err(e) => {
            tracing::trace!(error = %e, "forward failed");
            let mut out = Vec::new();
            error_reply(query, ResponseCode::ServFail, &mut out).then_some(out)
        }
    }
}

/// Serves DNS over TCP on `listener` for `network` until `shutdown` completes, with the same
/// answers as [`serve_udp`] (never truncated below 65535 bytes). Each connection may send any
/// number of queries; they are answered in order. Connections are closed on shutdown.
pub async fn serve_tcp(
    listener: TcpListener,
    network: String,
    records: watch::Receiver<Arc<Records>>,
    upstream: Arc<Upstream>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let span = tracing::debug_span!("dns", network = %network, transport = "tcp");
    tcp_loop(listener, network, records, upstream, shutdown).instrument(span).await
}

async fn tcp_loop(
    listener: TcpListener,
    network: String,
    records: watch::Receiver<Arc<Records>>,
    upstream: Arc<Upstream>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    tracing::debug!(addr = ?listener.local_addr().ok(), "serving");
    let network: Arc<str> = network.into();
    let mut connections: JoinSet<()> = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= MAX_TCP_CONNECTIONS {
                        tracing::trace!(%peer, "too many tcp connections");
                        continue;
                    }
                    let conn = Connection {
                        network: network.clone(),
                        snapshot: Snapshot::new(records.clone()),
                        upstream: upstream.clone(),
                    };
                    connections.spawn(conn.run(stream, peer));
                }
                Err(e) => {
                    // Out of descriptors, say: wait a little rather than spin.
                    tracing::trace!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    connections.shutdown().await;
    Ok(())
}

struct Connection {
    network: Arc<str>,
    snapshot: Snapshot,
    upstream: Arc<Upstream>,
}

impl Connection {
    async fn run(mut self, mut stream: TcpStream, peer: SocketAddr) {
        if let Err(e) = self.serve(&mut stream, peer).await {
            tracing::trace!(%peer, error = %e, "tcp connection closed");
        }
    }

    async fn serve(&mut self, stream: &mut TcpStream, peer: SocketAddr) -> io::Result<()> {
        let _ = stream.set_nodelay(true);
        let mut query = Vec::with_capacity(512);
        let mut out = Vec::with_capacity(4096);
        loop {
            let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
                Ok(Ok(len)) => usize::from(len),
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(()),
            };
            query.resize(len, 0);
            match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            };
            let records = self.snapshot.get();
            let reply =
                match handle_query_from(&query, &self.network, Some(peer.ip()), records, Transport::Tcp, &mut out) {
                    Handled::Reply => std::mem::take(&mut out),
                    Handled::Forward(to) => {
                        let upstream = upstream_for(&self.upstream, records, &self.network, peer.ip());
                        match forward(&upstream, to, &query, Transport::Tcp).await {
                            Some(r) => r,
                            None => return Ok(()),
                        }
                    }
                    // Nothing sensible to say to garbage on a stream: close it.
                    _ => return Ok(()),
                };
            let Ok(len) = u16::try_from(reply.len()) else {
                return Ok(());
            };
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&reply);
            stream.write_all(&framed).await?;
            out = reply;
        }
    }
}
