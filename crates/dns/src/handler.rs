//! One query in, one answer out: the wire-level handler shared by the UDP and TCP loops and the
//! fuzz target. Parsing and encoding are hickory-proto's; nothing here reads bytes by hand.

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use crate::records::{Forward, Records, Resolved};

/// The largest UDP payload cove sends, and the size it advertises in its EDNS0 OPT record.
/// Answers never leave the host (a bridge or loopback), so fragmentation is not the worry it is
/// on the Internet (where 1232 is the usual choice); a client asking for less gets less.
pub const MAX_UDP_PAYLOAD: u16 = 4096;

/// The payload every DNS client accepts over UDP without EDNS0 (RFC 1035).
const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// How the query arrived, which bounds the size of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// 512 bytes, or the client's EDNS0 payload size up to [`MAX_UDP_PAYLOAD`]; an answer that
    /// does not fit is sent with TC set and no records, and the client retries over TCP.
    Udp,
    /// Up to 65535 bytes.
    Tcp,
}

/// What [`handle_query`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Handled {
    /// The answer is in the output buffer.
    Reply,
    /// A well-formed query that is not ours: forward the packet as it is.
    Forward(Forward),
    /// Not worth an answer (a response, or too short to carry an id): say nothing.
    Drop,
}

/// Handles one DNS message as the server does, writing the answer into `out` (cleared first).
///
/// Malformed queries get FORMERR, other opcodes NOTIMP, unknown EDNS versions BADVERS; a
/// message that is itself a response, or too short for a header, is dropped. Never panics on
/// any input (the fuzz target's contract).
pub fn handle_query(
    packet: &[u8],
    network: &str,
    records: &Records,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Handled {
    handle_query_from(packet, network, None, records, transport, out)
}

/// [`handle_query`] for a query from `client`: a container on several networks also finds
/// the names of its other networks here.
pub fn handle_query_from(
    packet: &[u8],
    network: &str,
    client: Option<std::net::IpAddr>,
    records: &Records,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Handled {
    out.clear();
    let query = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(e) => {
            tracing::trace!(error = %e, "malformed query");
            return malformed(packet, out);
        }
    };
    if query.metadata.message_type != MessageType::Query {
        return Handled::Drop;
    }
    let mut meta = Metadata::response_from_request(&query.metadata);
    meta.recursion_available = true;
    let edns = query.edns.as_ref().map(|_| response_edns());
    if query.metadata.op_code != OpCode::Query {
        meta.response_code = ResponseCode::NotImp;
        return reply(meta, query.queries, Vec::new(), edns, out);
    }
    if query.queries.len() != 1 {
        meta.response_code = ResponseCode::FormErr;
        return reply(meta, query.queries, Vec::new(), edns, out);
    }
    if let Some(e) = &query.edns {
        if e.version() > 0 {
            meta.response_code = ResponseCode::BADVERS;
            return reply(meta, query.queries, Vec::new(), edns, out);
        }
    }
    let q = &query.queries[0];
    if q.query_class() != DNSClass::IN {
        return Handled::Forward(Forward::Upstream);
    }
    let found = match records.resolve_from(network, client, q.name(), q.query_type()) {
        Resolved::NotOurs(to) => return Handled::Forward(to),
        Resolved::NoData => None,
        Resolved::NxDomain => {
            meta.response_code = ResponseCode::NXDomain;
            None
        }
        Resolved::Found(found) => Some(found),
    };
    meta.authoritative = true;
    let answers = match found {
        Some(found) => {
            let mut v = Vec::with_capacity(found.len());
            v.extend(found.records(q.name()));
            v
        }
        None => Vec::new(),
    };
    let limit = match transport {
        Transport::Tcp => u16::MAX,
        Transport::Udp => match &query.edns {
            Some(e) => e.max_payload().clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
            None => CLASSIC_UDP_PAYLOAD,
        },
    };
    let mut response = message(meta, query.queries, answers, edns);
    if !encode(&response, out) {
        return Handled::Drop;
    }
    if out.len() > usize::from(limit) {
        // Too big for the channel: TC with the question only (RFC 2181 section 9: a partial
        // RRset would be worse than none), so the client asks again over TCP.
        response.answers.clear();
        response.metadata.truncation = true;
        if !encode(&response, out) {
            return Handled::Drop;
        }
    }
    Handled::Reply
}

/// [`handle_query`] for a query that came over UDP, returning the answer when there is one
/// (`None`: forward or drop). The entry point of the fuzz target.
pub fn handle_packet(packet: &[u8], network: &str, records: &Records) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    match handle_query(packet, network, records, Transport::Udp, &mut out) {
        Handled::Reply => Some(out),
        _ => None,
    }
}

/// Writes an error answer (SERVFAIL for a failed forward, say) to a query that parsed before.
/// Returns false when the query does not parse or cannot be answered.
pub(crate) fn error_reply(packet: &[u8], code: ResponseCode, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Ok(query) = Message::from_vec(packet) else {
        return false;
    };
    if query.metadata.message_type != MessageType::Query {
        return false;
    }
    let mut meta = Metadata::response_from_request(&query.metadata);
    meta.recursion_available = true;
    meta.response_code = code;
    let edns = query.edns.as_ref().map(|_| response_edns());
    reply(meta, query.queries, Vec::new(), edns, out) == Handled::Reply
}

/// FORMERR for a query whose header parses but whose body does not; drop anything else.
fn malformed(packet: &[u8], out: &mut Vec<u8>) -> Handled {
    let mut decoder = BinDecoder::new(packet);
    let Ok(header) = Header::read(&mut decoder) else {
        return Handled::Drop;
    };
    if header.metadata.message_type != MessageType::Query {
        return Handled::Drop;
    }
    let mut meta = Metadata::response_from_request(&header.metadata);
    meta.recursion_available = true;
    meta.response_code = ResponseCode::FormErr;
    reply(meta, Vec::new(), Vec::new(), None, out)
}

fn response_edns() -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(MAX_UDP_PAYLOAD);
    e.set_version(0);
    e
}

fn message(
    meta: Metadata,
    queries: Vec<hickory_proto::op::Query>,
    answers: Vec<Record>,
    edns: Option<Edns>,
) -> Message {
    let mut m = Message::new(meta.id, MessageType::Response, meta.op_code);
    m.metadata = meta;
    m.queries = queries;
    m.answers = answers;
    m.edns = edns;
    m
}

fn reply(
    meta: Metadata,
    queries: Vec<hickory_proto::op::Query>,
    answers: Vec<Record>,
    edns: Option<Edns>,
    out: &mut Vec<u8>,
) -> Handled {
    if encode(&message(meta, queries, answers, edns), out) {
        Handled::Reply
    } else {
        Handled::Drop
    }
}

fn encode(m: &Message, out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut encoder = BinEncoder::new(out);
    match m.emit(&mut encoder) {
        Ok(()) => true,
        Err(e) => {
            tracing::trace!(error = %e, "cannot encode an answer");
            out.clear();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};

    fn records() -> Records {
        crate::sample_records(vec![])
    }

    fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn answers_forwards_and_drops() {
        let r = records();
        let mut out = Vec::new();
        let q = query("web.net.", RecordType::A, None);
        assert_eq!(handle_query(&q, "net", &r, Transport::Udp, &mut out), Handled::Reply);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.answers.len(), 1);
        assert!(m.edns.is_none(), "no OPT to a client that sent none");
        let q = query("example.com.", RecordType::A, None);
        assert_eq!(handle_query(&q, "net", &r, Transport::Udp, &mut out), Handled::Forward(Forward::Upstream));
        assert!(out.is_empty());
        let q = query("printer.local.", RecordType::A, None);
        assert_eq!(handle_query(&q, "net", &r, Transport::Udp, &mut out), Handled::Forward(Forward::Mdns));
        assert_eq!(handle_packet(&[1, 2, 3], "net", &r), None);
    }

    #[test]
    fn other_classes_are_forwarded() {
        let r = records();
        let mut m = Message::query();
        let mut q = Query::query(Name::from_ascii("web.").unwrap(), RecordType::A);
        q.set_query_class(DNSClass::CH);
        m.add_query(q);
        let mut out = Vec::new();
        assert_eq!(
            handle_query(&m.to_vec().unwrap(), "net", &r, Transport::Udp, &mut out),
            Handled::Forward(Forward::Upstream)
        );
    }

    #[test]
    fn truncation_depends_on_transport_and_edns() {
        let r = records();
        let mut out = Vec::new();
        for (edns, transport, truncated) in [
            (None, Transport::Udp, true),
            (Some(100), Transport::Udp, true), // below 512 counts as 512
            (Some(512), Transport::Udp, true),
            (Some(1232), Transport::Udp, false),
            (Some(65000), Transport::Udp, false),
            (None, Transport::Tcp, false),
        ] {
            let q = query("big.", RecordType::A, edns);
            assert_eq!(handle_query(&q, "net", &r, transport, &mut out), Handled::Reply);
            let m = Message::from_vec(&out).unwrap();
            assert_eq!(m.metadata.truncation, truncated, "{edns:?} {transport:?}");
            assert_eq!(m.answers.len(), if truncated { 0 } else { 60 });
            assert!(out.len() <= 512 || !truncated);
        }
    }

    #[test]
    fn servfail_for_a_failed_forward_keeps_id_question_and_opt() {
        let q = query("example.com.", RecordType::A, Some(1232));
        let mut out = Vec::new();
        assert!(error_reply(&q, ResponseCode::ServFail, &mut out));
        let (q, m) = (Message::from_vec(&q).unwrap(), Message::from_vec(&out).unwrap());
        assert_eq!(m.metadata.id, q.metadata.id);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(m.queries, q.queries);
        assert!(m.edns.is_some());
        assert!(!error_reply(&[0; 3], ResponseCode::ServFail, &mut out));
    }

    /// The fuzz target's contract, on a budget: random and mutated packets never panic, and every
    /// answer parses as a response within the transport's size.
    #[test]
    fn random_packets_never_panic() {
        let r = records();
        let mut out = Vec::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let seeds = [
            query("web.net.", RecordType::A, Some(1232)),
            query("big.", RecordType::ANY, None),
            query("2.0.1.10.in-addr.arpa.", RecordType::PTR, None),
        ];
        for i in 0..30_000 {
            let pkt: Vec<u8> = if i % 3 == 0 {
                (0..(next() % 300)).map(|_| next() as u8).collect()
            } else {
                let mut p = seeds[i % seeds.len()].clone();
                for _ in 0..(1 + next() % 6) {
                    let at = (next() as usize) % p.len();
                    p[at] = next() as u8;
                }
                p.truncate((next() as usize) % (p.len() + 8));
                p
            };
            for transport in [Transport::Udp, Transport::Tcp] {
                if handle_query(&pkt, "net", &r, transport, &mut out) == Handled::Reply {
                    let m = Message::from_vec(&out).expect("answers parse");
                    assert_eq!(m.metadata.message_type, MessageType::Response);
                    if transport == Transport::Udp {
                        assert!(out.len() <= usize::from(MAX_UDP_PAYLOAD));
                    }
                }
            }
        }
    }
}
