//! Batched datagram I/O for the UDP loop: `recvmmsg`/`sendmmsg` through nix's safe wrappers,
//! so that a burst of queries costs one system call each way instead of one per datagram.
//!
//! The nix headers hold raw pointers (not `Send`), so they are built and dropped inside these
//! synchronous functions and never live across an `.await`.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};

/// Datagrams per system call.
pub(crate) const SLOTS: usize = 32;

/// Receive buffer per datagram. A UDP query longer than this is not a query any resolver sends
/// (4096 is the usual EDNS0 ceiling); it arrives cut (MSG_TRUNC) and is dropped.
pub(crate) const SLOT: usize = 4096;

/// One received datagram: its length in its slot, where it came from, whether it was cut.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub len: usize,
    pub peer: Option<SocketAddr>,
    pub truncated: bool,
}

/// Receives up to [`SLOTS`] datagrams without blocking into `bufs` (SLOTS * SLOT bytes, slot i
/// at `i * SLOT`), describing them in `got` (cleared first). `WouldBlock` when there is none.
pub(crate) fn recv(fd: RawFd, bufs: &mut [u8], got: &mut Vec<Received>) -> io::Result<()> {
    got.clear();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(SLOTS, None);
    let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs.chunks_mut(SLOT).take(SLOTS).map(|c| [IoSliceMut::new(c)]).collect();
    let results = recvmmsg(fd, &mut headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None).map_err(io::Error::from)?;
    for r in results {
        got.push(Received {
            len: r.bytes,
            peer: r.address.as_ref().and_then(to_std),
            truncated: r.flags.contains(MsgFlags::MSG_TRUNC),
        });
    }
    Ok(())
}

/// Sends `msgs` (ranges of `data`, each to its peer) without blocking; returns how many of the
/// first ones went out (possibly 0 with `WouldBlock`).
pub(crate) fn send(fd: RawFd, data: &[u8], msgs: &[(usize, usize, SocketAddr)]) -> io::Result<usize> {
    if msgs.is_empty() {
        return Ok(0);
    }
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(msgs.len(), None);
    let iovs: Vec<[IoSlice<'_>; 1]> = msgs.iter().map(|&(s, e, _)| [IoSlice::new(&data[s..e])]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = msgs.iter().map(|&(_, _, p)| Some(SockaddrStorage::from(p))).collect();
    let results = sendmmsg(fd, &mut headers, &iovs, &addrs, [], MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)?;
    Ok(results.count())
}

fn to_std(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    s.as_sockaddr_in6().map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}
