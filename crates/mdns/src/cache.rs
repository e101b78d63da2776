//! What other hosts said on the LAN, for as long as they said it holds: a bounded cache of
//! records with TTL expiry, cache-flush semantics (RFC 6762 section 10.2), goodbyes (10.1) and
//! short negative entries, answering the questions a DNS server gets about `.local` names:
//! A/AAAA, reverse PTR (from cached addresses when nobody published the PTR), SRV, TXT, ANY.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::wire::{self, MAX_RECORDS};

/// How long a name nobody answered for is remembered as missing.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// RFC 6762 section 10.2: records of a flushed rrset (and goodbyes) go after one second.
const FLUSH_DELAY: Duration = Duration::from_secs(1);
/// A cached record is never trusted for longer than this (a peer's TTL can be anything).
const MAX_TTL: u32 = 4500;
const MAX_NEGATIVES: usize = 1024;
/// An NSEC's negative entries last at most this long (seconds).
const NSEC_MAX_TTL: u32 = 120;

type Key = (Name, RecordType);

#[derive(Debug, Clone)]
struct Cached {
    record: Record,
    received: Instant,
    expires: Instant,
}

/// What the cache knows about a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Records, each with its remaining TTL (at least 1 s).
    Found(Vec<Record>),
    /// Asked recently, nobody answered.
    Negative,
    /// Nothing known: ask the LAN.
    Miss,
}

/// A bounded mDNS cache: see the module docs.
#[derive(Debug)]
pub struct Cache {
    map: HashMap<Key, Vec<Cached>>,
    len: usize,
    capacity: usize,
    negative: HashMap<Key, Instant>,
}

impl Cache {
    /// A cache of at most `capacity` records; past it, the records closest to expiry go first.
    pub fn new(capacity: usize) -> Self {
        Cache { map: HashMap::new(), len: 0, capacity: capacity.max(1), negative: HashMap::new() }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes in every record of a response (answers and additionals).
    pub fn insert_message(&mut self, msg: &Message, now: Instant) {
        let records = msg.answers.iter().take(MAX_RECORDS).chain(msg.additionals.iter().take(MAX_RECORDS));
        // Cache-flush applies to the whole rrset of the packet: records of the same packet are
        // all kept (RFC 6762 section 10.2), so flush first, then insert.
        for r in records.clone() {
            if r.mdns_cache_flush && r.ttl > 0 {
                self.flush(r, now);
            }
        }
        for r in records {
            if let Some(types) = wire::nsec_types(r) {
                self.insert_nsec(r, &types, now);
            } else {
                self.insert(r, now);
            }
        }
    }

    /// An NSEC (RFC 6762 section 6.1) says which types a name has: the usual types it does not
    /// list become negative entries, for its TTL (at most two minutes), so a question for them
    /// ends at once instead of at the timeout.
    fn insert_nsec(&mut self, r: &Record, types: &[RecordType], now: Instant) {
        if r.ttl == 0 || r.dns_class != DNSClass::IN {
            return;
        }
        let until = now + Duration::from_secs(u64::from(r.ttl.min(NSEC_MAX_TTL)));
        for t in [RecordType::A, RecordType::AAAA, RecordType::PTR, RecordType::SRV, RecordType::TXT] {
            if !types.contains(&t) {
                self.negative_until(&r.name, t, until, now);
            }
        }
    }

    fn flush(&mut self, r: &Record, now: Instant) {
        if let Some(set) = self.map.get_mut(&key(r)) {
            for c in set.iter_mut() {
                if now.saturating_duration_since(c.received) > FLUSH_DELAY && !wire::same_rr(&c.record, r) {
                    c.expires = c.expires.min(now + FLUSH_DELAY);
                }
            }
        }
    }

    /// Takes in one record (a goodbye, TTL 0, makes the cached copy expire in one second).
    pub fn insert(&mut self, r: &Record, now: Instant) {
        if r.dns_class != DNSClass::IN
            || !matches!(
                r.record_type(),
                RecordType::A
                    | RecordType::AAAA
                    | RecordType::PTR
                    | RecordType::SRV
                    | RecordType::TXT
                    | RecordType::CNAME
            )
        {
            return;
        }
        let k = key(r);
        let set = self.map.entry(k.clone()).or_default();
        if let Some(c) = set.iter_mut().find(|c| wire::same_rr(&c.record, r)) {
            if r.ttl == 0 {
                c.expires = c.expires.min(now + FLUSH_DELAY);
            } else {
                c.expires = now + Duration::from_secs(u64::from(r.ttl.min(MAX_TTL)));
                c.received = now;
                c.record.ttl = r.ttl.min(MAX_TTL);
            }
            return;
        }
        if r.ttl == 0 {
            if set.is_empty() {
                self.map.remove(&k);
            }
            return;
        }
        let mut record = r.clone();
        record.mdns_cache_flush = false;
        record.ttl = r.ttl.min(MAX_TTL);
        set.push(Cached { record, received: now, expires: now + Duration::from_secs(u64::from(r.ttl.min(MAX_TTL))) });
        self.len += 1;
        self.negative.remove(&k);
        if self.len > self.capacity {
            self.expire(now);
        }
        if self.len > self.capacity {
            self.evict();
        }
    }

    /// Drops the records closest to expiry until a tenth of the room is free again: one pass
    /// per many inserts, not one per insert.
    fn evict(&mut self) {
        let target = self.capacity - self.capacity / 10;
        if self.len <= target {
            return;
        }
        let mut all: Vec<Instant> = self.map.values().flat_map(|s| s.iter().map(|c| c.expires)).collect();
        all.sort_unstable();
        let cutoff = all[self.len - target - 1];
        let mut len = 0;
        self.map.retain(|_, set| {
            set.retain(|c| c.expires > cutoff);
            len += set.len();
            !set.is_empty()
        });
        self.len = len;
    }

    /// Remembers that nobody answered `name`/`qtype`, for [`NEGATIVE_TTL`].
    pub fn insert_negative(&mut self, name: &Name, qtype: RecordType, now: Instant) {
        self.negative_until(name, qtype, now + NEGATIVE_TTL, now);
    }

    fn negative_until(&mut self, name: &Name, qtype: RecordType, until: Instant, now: Instant) {
        if self.negative.len() >= MAX_NEGATIVES {
            self.negative.retain(|_, until| *until > now);
            if self.negative.len() >= MAX_NEGATIVES {
                return;
            }
        }
        self.negative.insert((name.to_lowercase(), qtype), until);
    }

    /// Drops what expired.
    pub fn expire(&mut self, now: Instant) {
        let mut len = 0;
        self.map.retain(|_, set| {
            set.retain(|c| c.expires > now);
            len += set.len();
            !set.is_empty()
        });
        self.len = len;
        self.negative.retain(|_, until| *until > now);
    }

    /// Answers `name`/`qtype` from the cache, TTLs counted down. ANY gives every type; a PTR
    /// question for a reverse `.arpa` name nobody published is answered from cached A/AAAA.
    pub fn lookup(&self, name: &Name, qtype: RecordType, now: Instant) -> Lookup {
        let name = name.to_lowercase();
        let mut found: Vec<Record> = Vec::new();
        let alive = |c: &&Cached| c.expires > now;
        let remaining = |c: &Cached| {
            let mut r = c.record.clone();
            r.ttl = u32::try_from(c.expires.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX).max(1);
            r
        };
        if qtype == RecordType::ANY {
            for ((n, _), set) in &self.map {
                if *n == name {
                    found.extend(set.iter().filter(alive).map(remaining));
                }
            }
        } else if let Some(set) = self.map.get(&(name.clone(), qtype)) {
            found.extend(set.iter().filter(alive).map(remaining));
        }
        if found.is_empty() && qtype == RecordType::PTR {
            if let Ok(net) = name.parse_arpa_name() {
                let addr = net.addr();
                for ((_, t), set) in &self.map {
                    if !matches!(t, RecordType::A | RecordType::AAAA) {
                        continue;
                    }
                    for c in set.iter().filter(alive) {
                        let matches = match &c.record.data {
                            RData::A(a) => std::net::IpAddr::V4(a.0) == addr,
                            RData::AAAA(a) => std::net::IpAddr::V6(a.0) == addr,
                            _ => false,
                        };
                        if matches {
                            let mut r = remaining(c);
                            r.data = RData::PTR(PTR(c.record.name.clone()));
                            r.name = name.clone();
                            found.push(r);
                        }
                    }
                }
            }
        }
        if !found.is_empty() {
            return Lookup::Found(found);
        }
        match self.negative.get(&(name, qtype)) {
            Some(until) if *until > now => Lookup::Negative,
            _ => Lookup::Miss,
        }
    }

    /// Every live record of `name` and type `qtype` (no reverse synthesis): what browsing reads.
    pub(crate) fn records(&self, name: &Name, qtype: RecordType, now: Instant) -> Vec<Record> {
        match self.lookup(name, qtype, now) {
            Lookup::Found(v) if qtype != RecordType::PTR || !name.to_ascii().ends_with(".arpa.") => v,
            _ => Vec::new(),
        }
    }
}

fn key(r: &Record) -> Key {
    (r.name.to_lowercase(), r.record_type())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{address_record, host_name, response, unique};

    fn a(name: &str, addr: &str, ttl: u32) -> Record {
        address_record(&host_name(name).unwrap(), addr.parse().unwrap(), ttl)
    }

    fn msg(records: &[Record]) -> Message {
        let mut m = response(0, vec![]);
        m.answers = records.to_vec();
        m
    }

    #[test]
    fn ttl_counts_down_and_expires() {
        let t0 = Instant::now();
        let mut c = Cache::new(16);
        c.insert_message(&msg(&[a("nas.local", "192.0.2.7", 120)]), t0);
        let n = host_name("NAS.local").unwrap();
        let Lookup::Found(v) = c.lookup(&n, RecordType::A, t0 + Duration::from_secs(20)) else { panic!() };
        assert_eq!(v[0].ttl, 100);
        assert_eq!(c.lookup(&n, RecordType::AAAA, t0), Lookup::Miss);
        assert_eq!(c.lookup(&n, RecordType::A, t0 + Duration::from_secs(121)), Lookup::Miss);
        c.expire(t0 + Duration::from_secs(121));
        assert!(c.is_empty());
    }

    #[test]
    fn negative_entries_are_brief() {
        let t0 = Instant::now();
        let mut c = Cache::new(16);
        let n = host_name("nobody.local").unwrap();
        c.insert_negative(&n, RecordType::A, t0);
        assert_eq!(c.lookup(&n, RecordType::A, t0 + Duration::from_secs(4)), Lookup::Negative);
        assert_eq!(c.lookup(&n, RecordType::A, t0 + NEGATIVE_TTL), Lookup::Miss);
        // An answer replaces the negative entry.
        c.insert_negative(&n, RecordType::A, t0);
        c.insert(&a("nobody.local", "192.0.2.1", 120), t0);
        assert!(matches!(c.lookup(&n, RecordType::A, t0), Lookup::Found(_)));
    }

    #[test]
    fn cache_flush_drops_older_records_after_a_second() {
        let t0 = Instant::now();
        let mut c = Cache::new(16);
        let n = host_name("nas.local").unwrap();
        c.insert_message(&msg(&[a("nas.local", "192.0.2.1", 120)]), t0);
        let t1 = t0 + Duration::from_secs(5);
        // Two addresses in one packet with the bit: both stay, the old one goes a second later.
        c.insert_message(&msg(&[a("nas.local", "192.0.2.2", 120), a("nas.local", "192.0.2.3", 120)]), t1);
        let Lookup::Found(v) = c.lookup(&n, RecordType::A, t1) else { panic!() };
        assert_eq!(v.len(), 3);
        let Lookup::Found(v) = c.lookup(&n, RecordType::A, t1 + Duration::from_millis(1001)) else { panic!() };
        assert_eq!(v.len(), 2);
        // Without the bit (a shared record) nothing is flushed.
        let mut shared = a("nas.local", "192.0.2.9", 120);
        shared.mdns_cache_flush = false;
        c.insert_message(&msg(&[shared]), t1 + Duration::from_secs(3));
        let Lookup::Found(v) = c.lookup(&n, RecordType::A, t1 + Duration::from_secs(5)) else { panic!() };
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn goodbye_expires_in_a_second() {
        let t0 = Instant::now();
        let mut c = Cache::new(16);
        let n = host_name("nas.local").unwrap();
        c.insert_message(&msg(&[a("nas.local", "192.0.2.1", 120)]), t0);
        c.insert_message(&msg(&[a("nas.local", "192.0.2.1", 0)]), t0);
        assert!(matches!(c.lookup(&n, RecordType::A, t0), Lookup::Found(_)));
        assert_eq!(c.lookup(&n, RecordType::A, t0 + Duration::from_millis(1001)), Lookup::Miss);
    }

    #[test]
    fn nsec_makes_negative_entries() {
        let t0 = Instant::now();
        let mut c = Cache::new(16);
        let n = host_name("nas.local").unwrap();
        // Through the wire, as peers' NSECs arrive (hickory reads it as unknown-type data).
        let nsec = wire::nsec(&n, &[RecordType::A], 120);
        let nsec = wire::parse(&msg(&[nsec]).to_vec().unwrap()).unwrap().answers.remove(0);
        c.insert_message(&msg(&[a("nas.local", "192.0.2.7", 120), nsec]), t0);
        assert!(matches!(c.lookup(&n, RecordType::A, t0), Lookup::Found(_)));
        assert_eq!(c.lookup(&n, RecordType::AAAA, t0), Lookup::Negative);
        assert_eq!(c.lookup(&n, RecordType::AAAA, t0 + Duration::from_secs(121)), Lookup::Miss);
        // The address appears after all: the negative entry goes.
        c.insert(&a("nas.local", "2001:db8::7", 120), t0 + Duration::from_secs(1));
        assert!(matches!(c.lookup(&n, RecordType::AAAA, t0 + Duration::from_secs(1)), Lookup::Found(_)));
    }

    #[test]
    fn bounded() {
        let t0 = Instant::now();
        let mut c = Cache::new(100);
        for i in 0..1000u32 {
            let name = format!("h{i}.local");
            c.insert(&a(&name, "192.0.2.1", 10 + i), t0);
            assert!(c.len() <= 100);
        }
        // The longest-lived ones stay.
        assert!(matches!(c.lookup(&host_name("h999.local").unwrap(), RecordType::A, t0), Lookup::Found(_)));
        assert_eq!(c.lookup(&host_name("h0.local").unwrap(), RecordType::A, t0), Lookup::Miss);
    }

    #[test]
    fn reverse_ptr_srv_txt_and_any() {
        let t0 = Instant::now();
        let mut c = Cache::new(64);
        c.insert(&a("nas.local", "192.0.2.7", 120), t0);
        c.insert(&a("nas.local", "2001:db8::7", 120), t0);
        let rev = Name::from_ascii("7.2.0.192.in-addr.arpa.").unwrap();
        let Lookup::Found(v) = c.lookup(&rev, RecordType::PTR, t0) else { panic!() };
        assert_eq!(v[0].data, RData::PTR(PTR(host_name("nas.local").unwrap())));
        assert_eq!(v[0].name, rev);
        let rev6 = Name::from(std::net::IpAddr::from("2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap()));
        assert!(matches!(c.lookup(&rev6, RecordType::PTR, t0), Lookup::Found(_)));
        let inst = Name::from_ascii("web._http._tcp.local.").unwrap();
        let srv = unique(Record::from_rdata(
            inst.clone(),
            120,
            RData::SRV(hickory_proto::rr::rdata::SRV::new(0, 0, 80, host_name("nas.local").unwrap())),
        ));
        let txt = Record::from_rdata(inst.clone(), 4500, RData::TXT(hickory_proto::rr::rdata::TXT::new(vec![])));
        c.insert_message(&msg(&[srv, txt]), t0);
        assert!(matches!(c.lookup(&inst, RecordType::SRV, t0), Lookup::Found(v) if v.len() == 1));
        assert!(matches!(c.lookup(&inst, RecordType::TXT, t0), Lookup::Found(v) if v.len() == 1));
        assert!(matches!(c.lookup(&inst, RecordType::ANY, t0), Lookup::Found(v) if v.len() == 2));
    }
}
