//! Answers for ordinary DNS clients (a container's resolver asking the network's DNS server
//! about a `.local` name): the reply to a unicast DNS query built from what mDNS knows, so the
//! DNS server can hand `.local` questions over as bytes and get bytes back
//! ([`crate::Control::answer_dns`]).

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};

use crate::wire;

/// The largest reply to a client that sent no EDNS0 (RFC 1035).
const CLASSIC_UDP_PAYLOAD: u16 = 512;
/// The most a client's EDNS0 payload size is believed.
const MAX_UDP_PAYLOAD: u16 = 4096;

/// A parsed query the engine can answer: one question, class IN (or ANY), opcode QUERY.
pub(crate) fn question(query: &[u8]) -> Option<Message> {
    let m = Message::from_vec(query).ok()?;
    if m.metadata.message_type != MessageType::Query || m.metadata.op_code != OpCode::Query || m.queries.len() != 1 {
        return None;
    }
    if !matches!(m.queries[0].query_class, DNSClass::IN | DNSClass::ANY) {
        return None;
    }
    Some(m)
}

/// The reply to `query` with `answers` (TTLs as given, cache-flush bits cleared): NOERROR with
/// the records, NOERROR without records when `exists` (the name has other types), NXDOMAIN
/// otherwise. Too big for the client's UDP payload: TC and no records. `None` only when the
/// reply cannot be encoded.
pub(crate) fn reply(query: &Message, answers: &[Record], exists: bool) -> Option<Vec<u8>> {
    let mut meta = Metadata::new(query.metadata.id, MessageType::Response, OpCode::Query);
    meta.recursion_desired = query.metadata.recursion_desired;
    meta.recursion_available = true;
    meta.response_code = if answers.is_empty() && !exists { ResponseCode::NXDomain } else { ResponseCode::NoError };
    let mut m = Message::new(meta.id, MessageType::Response, OpCode::Query);
    m.metadata = meta;
    m.queries = query.queries.clone();
    for q in &mut m.queries {
        q.mdns_unicast_response = false;
    }
    m.answers = answers
        .iter()
        .cloned()
        .map(|mut r| {
            r.mdns_cache_flush = false;
            r
        })
        .collect();
    let limit = match &query.edns {
        Some(e) => {
            let mut edns = Edns::new();
            edns.set_max_payload(MAX_UDP_PAYLOAD);
            edns.set_version(0);
            m.edns = Some(edns);
            e.max_payload().clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
        }
        None => CLASSIC_UDP_PAYLOAD,
    };
    let bytes = wire::encode(&m)?;
    if bytes.len() <= usize::from(limit) {
        return Some(bytes);
    }
    m.answers.clear();
    m.metadata.truncation = true;
    wire::encode(&m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};

    fn query(name: &str, qtype: RecordType, edns: bool) -> Message {
        let mut m = Message::query();
        m.metadata.id = 0x4242;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            m.set_edns(e);
        }
        m
    }

    #[test]
    fn answers_nodata_nxdomain_and_truncation() {
        let q = query("nas.local.", RecordType::A, false);
        let parsed = question(&q.to_vec().unwrap()).unwrap();
        let n = wire::host_name("nas.local").unwrap();
        let a = wire::address_record(&n, "192.0.2.7".parse().unwrap(), 42);
        let m = Message::from_vec(&reply(&parsed, std::slice::from_ref(&a), true).unwrap()).unwrap();
        assert_eq!(m.metadata.id, 0x4242);
        assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
        assert_eq!(m.queries, parsed.queries);
        assert_eq!(m.answers.len(), 1);
        assert!(!m.answers[0].mdns_cache_flush);
        assert_eq!(m.answers[0].ttl, 42);
        let m = Message::from_vec(&reply(&parsed, &[], true).unwrap()).unwrap();
        assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
        let m = Message::from_vec(&reply(&parsed, &[], false).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // Forty addresses do not fit 512 bytes; they fit a 4096-byte EDNS0 payload.
        let many: Vec<Record> = (0..40u8).map(|i| wire::address_record(&n, [10, 0, 0, i].into(), 42)).collect();
        let m = Message::from_vec(&reply(&parsed, &many, true).unwrap()).unwrap();
        assert!(m.metadata.truncation && m.answers.is_empty());
        let big = question(&query("nas.local.", RecordType::A, true).to_vec().unwrap()).unwrap();
        let m = Message::from_vec(&reply(&big, &many, true).unwrap()).unwrap();
        assert_eq!(m.answers.len(), 40);
        assert!(m.edns.is_some());
    }

    #[test]
    fn only_plain_single_questions() {
        assert!(question(&[1, 2, 3]).is_none());
        let mut two = query("a.local.", RecordType::A, false);
        two.add_query(Query::query(Name::from_ascii("b.local.").unwrap(), RecordType::A));
        assert!(question(&two.to_vec().unwrap()).is_none());
        let mut chaos = Message::query();
        let mut q = Query::query(Name::from_ascii("a.local.").unwrap(), RecordType::A);
        q.set_query_class(DNSClass::CH);
        chaos.add_query(q);
        assert!(question(&chaos.to_vec().unwrap()).is_none());
    }
}
