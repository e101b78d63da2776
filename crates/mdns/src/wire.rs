//! Packets: parsing with cheap sanity checks first, names, records, splitting answers into
//! datagrams, and the raw rdata comparison of RFC 6762 section 8.2. hickory-proto does the
//! encoding and decoding.

use std::cmp::Ordering;
use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NULL};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::{Error, Result};

/// The largest datagram the engine sends: fits a 1500-byte MTU with IPv6 and UDP headers
/// (RFC 6762 section 17 allows more, but fragments are lost more often than they arrive).
pub(crate) const MAX_PACKET: usize = 1400;
/// The largest datagram the engine reads (RFC 6762 section 17: 9000 bytes).
pub(crate) const MAX_INPUT: usize = 9000;
/// Questions looked at per packet; the rest are ignored (bounded work per packet).
pub(crate) const MAX_QUESTIONS: usize = 32;
/// Records looked at per packet section.
pub(crate) const MAX_RECORDS: usize = 128;

/// An address family: which socket and which group a datagram goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The mDNS group of that family (whatever destinations the serve loop was given for it).
    Multicast(Family),
    /// One peer, straight (QU and legacy unicast answers).
    Unicast(SocketAddr),
}

/// A datagram to send out of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub interface: u32,
    pub target: Target,
    pub payload: Vec<u8>,
}

/// Parses a datagram, refusing cheaply what cannot be a sane mDNS message: shorter than a
/// header, longer than 9000 bytes, or header counts that the length cannot hold (a question is
/// at least 5 bytes, a record at least 11), so a packet claiming 65535 records is not walked.
/// Compression loops and bad labels are hickory-proto's to refuse.
pub(crate) fn parse(packet: &[u8]) -> Option<Message> {
    if packet.len() < 12 || packet.len() > MAX_INPUT {
        return None;
    }
    let count = |at: usize| usize::from(u16::from_be_bytes([packet[at], packet[at + 1]]));
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    if 12 + qd * 5 + (an + ns + ar) * 11 > packet.len() {
        return None;
    }
    let m = Message::from_vec(packet).ok()?;
    // RFC 6762 section 18.3 and 18.11: other opcodes and non-zero response codes are ignored.
    if m.metadata.op_code != OpCode::Query || m.metadata.response_code != ResponseCode::NoError {
        return None;
    }
    Some(m)
}

/// A host name as cove publishes it: `node1.mycluster.local` (a trailing dot is fine); ASCII
/// letters, digits and hyphens, ending in `.local`.
pub(crate) fn host_name(name: &str) -> Result<Name> {
    let bad = |reason: &str| Error::BadName { name: name.to_string(), reason: reason.to_string() };
    let trimmed = name.trim_end_matches('.');
    if !trimmed.to_ascii_lowercase().ends_with(".local") {
        return Err(bad("not under .local"));
    }
    if !trimmed.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
        return Err(bad("only letters, digits, '-' and '.'"));
    }
    let mut n = Name::from_ascii(trimmed).map_err(|e| bad(&e.to_string()))?;
    n.set_fqdn(true);
    Ok(n)
}

/// `_redis._tcp` (or `_redis._tcp.local`) as a name under `.local`.
pub(crate) fn service_type_name(service_type: &str) -> Result<Name> {
    let bad = |reason: &str| Error::BadName { name: service_type.to_string(), reason: reason.to_string() };
    let trimmed = service_type.trim_end_matches('.');
    let trimmed = trimmed.strip_suffix(".local").unwrap_or(trimmed);
    let labels: Vec<&str> = trimmed.split('.').collect();
    if labels.len() != 2 || !labels[0].starts_with('_') || !matches!(labels[1], "_tcp" | "_udp") {
        return Err(bad("a service type is _name._tcp or _name._udp"));
    }
    let mut n = Name::from_ascii(format!("{trimmed}.local.")).map_err(|e| bad(&e.to_string()))?;
    n.set_fqdn(true);
    Ok(n)
}

/// `Instance Name._redis._tcp.local`: the instance is one label of raw UTF-8 (RFC 6763 section
/// 4.3: spaces and dots allowed, at most 63 bytes).
pub(crate) fn instance_name(instance: &str, service_type: &Name) -> Result<Name> {
    let bad = |reason: &str| Error::BadName { name: instance.to_string(), reason: reason.to_string() };
    if instance.is_empty() || instance.len() > 63 {
        return Err(bad("an instance name is 1 to 63 bytes"));
    }
    let label = Name::from_labels([instance.as_bytes()]).map_err(|e| bad(&e.to_string()))?;
    label.append_name(service_type).map_err(|e| bad(&e.to_string()))
}

/// `_services._dns-sd._udp.local`, the service type enumeration name (RFC 6763 section 9).
pub(crate) fn services_name() -> Name {
    let mut n = Name::from_ascii("_services._dns-sd._udp.local.").unwrap_or_default();
    n.set_fqdn(true);
    n
}

pub(crate) fn address_record(name: &Name, addr: IpAddr, ttl: u32) -> Record {
    let data = match addr {
        IpAddr::V4(a) => RData::A(A(a)),
        IpAddr::V6(a) => RData::AAAA(AAAA(a)),
    };
    unique(Record::from_rdata(name.clone(), ttl, data))
}

/// An NSEC record in mDNS's restricted form (RFC 6762 section 6.1): next name = own name,
/// one bitmap window for types below 256. hickory-proto has NSEC only with DNSSEC support, so
/// the rdata is written here, as unknown-type data.
pub(crate) fn nsec(name: &Name, types: &[RecordType], ttl: u32) -> Record {
    let mut rdata = Vec::with_capacity(name.len() + 36);
    for label in name.iter() {
        rdata.push(label.len() as u8);
        rdata.extend_from_slice(label);
    }
    rdata.push(0);
    let mut bitmap = [0u8; 32];
    for t in types {
        let v = usize::from(u16::from(*t));
        if v < 256 {
            bitmap[v / 8] |= 0x80 >> (v % 8);
        }
    }
    if let Some(last) = bitmap.iter().rposition(|b| *b != 0) {
        rdata.push(0);
        rdata.push(last as u8 + 1);
        rdata.extend_from_slice(&bitmap[..=last]);
    }
    let data = RData::Unknown { code: RecordType::NSEC, rdata: NULL::with(rdata) };
    unique(Record::from_rdata(name.clone(), ttl, data))
}

/// The types an mDNS NSEC lists (window 0: types below 256, all mDNS uses), or `None` for
/// anything else.
pub(crate) fn nsec_types(r: &Record) -> Option<Vec<RecordType>> {
    let RData::Unknown { code: RecordType::NSEC, rdata } = &r.data else { return None };
    let b = &rdata.anything;
    let mut at = 0;
    while *b.get(at)? != 0 {
        at += 1 + usize::from(b[at]);
    }
    at += 1;
    let mut types = Vec::new();
    if at < b.len() {
        let len = usize::from(*b.get(at + 1)?);
        for (i, byte) in b.get(at + 2..at + 2 + len)?.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    types.push(RecordType::from((i * 8 + bit) as u16));
                }
            }
        }
    }
    Some(types)
}

pub(crate) fn unique(mut r: Record) -> Record {
    r.mdns_cache_flush = true;
    r
}

/// Whether two records are the same RR: name (case-insensitively), type, class and rdata; TTL
/// and cache-flush bit aside (hickory's `Record` equality).
pub(crate) fn same_rr(a: &Record, b: &Record) -> bool {
    a == b
}

/// A record's rdata as written on the wire without name compression, the bytes RFC 6762
/// section 8.2 compares.
pub(crate) fn rdata_bytes(r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = BinEncoder::new(&mut out);
    enc.set_canonical_form(true);
    if r.data.emit(&mut enc).is_err() {
        out.clear();
    }
    out
}

/// RFC 6762 section 8.2: records sorted by class, type, then raw rdata, compared in turn; the
/// first difference decides, and a list that runs out first is the lesser.
pub(crate) fn tie_break(ours: &[Record], theirs: &[Record]) -> Ordering {
    let key = |r: &Record| (u16::from(r.dns_class), u16::from(r.record_type()), rdata_bytes(r));
    let mut a: Vec<_> = ours.iter().map(key).collect();
    let mut b: Vec<_> = theirs.iter().map(key).collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a.cmp(&b)
}

/// Whether a question asks for `record`: same name, the record's type or ANY, class IN or ANY.
pub(crate) fn asks_for(q: &Query, record: &Record) -> bool {
    (q.query_type == RecordType::ANY || q.query_type == record.record_type())
        && matches!(q.query_class, DNSClass::IN | DNSClass::ANY)
        && q.name == record.name
}

/// One record's size on the wire without compression: an upper bound for packing.
pub(crate) fn record_size(r: &Record) -> usize {
    r.name.len() + 2 + 10 + rdata_bytes(r).len()
}

/// A response message: id, questions (legacy unicast echoes them), authoritative.
pub(crate) fn response(id: u16, queries: Vec<Query>) -> Message {
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
    m.metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    m.queries = queries;
    m
}

/// Encodes a response carrying `answers` (and `additionals`, which are dropped first when they do
/// not fit) in as many datagrams of at most `limit` bytes as needed. A single record larger than
/// the limit is dropped.
pub(crate) fn pack(template: &Message, answers: &[Record], additionals: &[Record], limit: usize) -> Vec<Vec<u8>> {
    let base = encode(template).map(|v| v.len()).unwrap_or(12);
    let mut packets = Vec::new();
    let mut msg = template.clone();
    let mut size = base;
    for r in answers {
        let s = record_size(r);
        if base + s > limit {
            continue;
        }
        if size + s > limit {
            packets.extend(encode(&msg));
            msg = template.clone();
            size = base;
        }
        msg.answers.push(r.clone());
        size += s;
    }
    for r in additionals {
        let s = record_size(r);
        if size + s <= limit && !msg.answers.iter().any(|a| same_rr(a, r)) {
            if msg.additionals.iter().any(|a| same_rr(a, r)) {
                continue;
            }
            msg.additionals.push(r.clone());
            size += s;
        }
    }
    if !msg.answers.is_empty() || !msg.queries.is_empty() || !msg.authorities.is_empty() || packets.is_empty() {
        packets.extend(encode(&msg));
    }
    packets
}

pub(crate) fn encode(m: &Message) -> Option<Vec<u8>> {
    match m.to_vec() {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::trace!(error = %e, "cannot encode an mDNS message");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{SRV, TXT};

    #[test]
    fn names() {
        assert_eq!(host_name("node1.mycluster.local").unwrap().to_ascii(), "node1.mycluster.local.");
        assert!(host_name("node1.example.com").is_err());
        assert!(host_name("a b.local").is_err());
        let t = service_type_name("_redis._tcp").unwrap();
        assert_eq!(t.to_ascii(), "_redis._tcp.local.");
        assert_eq!(service_type_name("_http._tcp.local.").unwrap(), service_type_name("_http._tcp").unwrap());
        assert!(service_type_name("redis").is_err());
        let i = instance_name("My Redis (2)", &t).unwrap();
        assert_eq!(i.num_labels(), 4);
        assert_eq!(i.iter().next().unwrap(), b"My Redis (2)");
        assert!(instance_name(&"x".repeat(64), &t).is_err());
    }

    #[test]
    fn round_trip_keeps_mdns_bits() {
        let name = host_name("node1.local").unwrap();
        let mut q = Query::query(name.clone(), RecordType::ANY);
        q.mdns_unicast_response = true;
        let mut m = Message::query();
        m.add_query(q);
        m.add_authority(address_record(&name, "192.0.2.1".parse().unwrap(), 120));
        let bytes = m.to_vec().unwrap();
        let back = parse(&bytes).unwrap();
        assert!(back.queries[0].mdns_unicast_response);
        assert!(back.authorities[0].mdns_cache_flush);
        assert_eq!(back.authorities[0].ttl, 120);

        let t = service_type_name("_http._tcp").unwrap();
        let inst = instance_name("web", &t).unwrap();
        let srv = Record::from_rdata(inst.clone(), 120, RData::SRV(SRV::new(0, 0, 8080, name.clone())));
        let txt = Record::from_rdata(inst, 4500, RData::TXT(TXT::new(vec!["a=b".into()])));
        let mut r = response(0, vec![]);
        r.answers = vec![unique(srv.clone()), txt.clone()];
        let back = parse(&r.to_vec().unwrap()).unwrap();
        assert!(same_rr(&back.answers[0], &srv) && back.answers[0].mdns_cache_flush);
        assert!(same_rr(&back.answers[1], &txt) && !back.answers[1].mdns_cache_flush);
    }

    #[test]
    fn insane_counts_and_garbage_are_refused() {
        assert!(parse(&[0; 11]).is_none());
        let mut p = vec![0u8; 40];
        p[4] = 0xff;
        p[5] = 0xff;
        assert!(parse(&p).is_none());
        // A compression pointer to itself.
        let mut m = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend([0xc0, 12, 0, 1, 0, 1]);
        assert!(parse(&m).is_none());
        assert!(parse(&vec![0u8; MAX_INPUT + 1]).is_none());
    }

    #[test]
    fn tie_break_orders_by_rdata() {
        let n = host_name("x.local").unwrap();
        let a1 = address_record(&n, "192.0.2.1".parse().unwrap(), 120);
        let a2 = address_record(&n, "192.0.2.2".parse().unwrap(), 120);
        let one = |r: &Record| vec![r.clone()];
        assert_eq!(tie_break(&one(&a1), &one(&a2)), Ordering::Less);
        assert_eq!(tie_break(&one(&a2), &one(&a1)), Ordering::Greater);
        assert_eq!(tie_break(&one(&a1), &one(&a1)), Ordering::Equal);
        // More records win over a prefix of them.
        assert_eq!(tie_break(&[a1.clone(), a2.clone()], &one(&a1)), Ordering::Greater);
        // Class and type compare before rdata: AAAA (28) beats A (1).
        let v6 = address_record(&n, "2001:db8::1".parse().unwrap(), 120);
        assert_eq!(tie_break(&[v6], &[a2]), Ordering::Greater);
    }

    #[test]
    fn pack_splits_and_drops_additionals_first() {
        let n = host_name("x.local").unwrap();
        let answers: Vec<Record> = (0..200u8).map(|i| address_record(&n, [10, 0, 1, i].into(), 120)).collect();
        let packets = pack(&response(0, vec![]), &answers, &[], MAX_PACKET);
        assert!(packets.len() > 1);
        let mut total = 0;
        for p in &packets {
            assert!(p.len() <= MAX_PACKET);
            total += parse(p).unwrap().answers.len();
        }
        assert_eq!(total, 200);
        let extra = address_record(&n, "10.9.9.9".parse().unwrap(), 120);
        let one = pack(&response(0, vec![]), &answers[..1], std::slice::from_ref(&extra), 50);
        assert_eq!(one.len(), 1);
        let m = parse(&one[0]).unwrap();
        assert_eq!((m.answers.len(), m.additionals.len()), (1, 0));
    }
}
