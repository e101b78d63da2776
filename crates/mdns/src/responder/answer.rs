//! Answering (RFC 6762 sections 6 and 7): which records a question gets on the interface it
//! arrived on, NSEC for types a name of ours lacks, multicast answers delayed and aggregated
//! (20-120 ms for shared records, at once for unique ones, 400-500 ms after a truncated query),
//! known-answer and duplicate-answer suppression, QU and legacy unicast, the per-record
//! multicast rate limit and the unicast budget.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::{dedup, rr_key, sent_key, Entry, Pending, Responder, RrKey, What, HOST_TTL};
use crate::wire::{self, Family, Target, Transmit, MAX_PACKET, MAX_QUESTIONS, MAX_RECORDS};
use crate::Interface;

/// TTL cap of legacy unicast answers (RFC 6762 section 6.7).
const LEGACY_TTL: u32 = 10;
/// RFC 6762 section 6.2: a record is multicast at most once a second per interface...
const MULTICAST_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// ... except in answer to a probe, which waits at most 250 ms.
const PROBE_DEFENCE_INTERVAL: Duration = Duration::from_millis(250);
/// Unicast answers (QU and legacy) to everyone together: a token bucket of this many a second,
/// bursts up to `UNICAST_BURST`...
const UNICAST_RATE: f64 = 50.0;
const UNICAST_BURST: f64 = 100.0;
/// ... and to one source address: this many a second, bursts up to `SOURCE_BURST`.
const SOURCE_RATE: f64 = 10.0;
const SOURCE_BURST: f64 = 20.0;
/// Source addresses with a bucket at most; idle ones are forgotten after `SOURCE_IDLE`, and
/// past the limit the least recently served.
const MAX_SOURCES: usize = 256;
const SOURCE_IDLE: Duration = Duration::from_secs(10);
/// A unicast answer is at most this many times the bytes of the query it answers (no
/// amplification towards a forged source): what does not fit is left out.
const UNICAST_AMPLIFICATION: usize = 3;
/// Delayed multicast answers kept at most; past it, further ones are not queued.
const MAX_PENDING: usize = 1024;

impl Responder {
    /// Sends the delayed multicast answers that are due, one response per interface and
    /// family, skipping records multicast there within the rate limit.
    pub(super) fn flush_pending(&mut self, now: Instant) {
        if self.pending.iter().all(|p| p.due > now) {
            return;
        }
        let (due, keep): (Vec<Pending>, Vec<Pending>) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.due <= now);
        self.pending = keep;
        let mut groups: BTreeMap<(u32, Family), Vec<Record>> = BTreeMap::new();
        for p in due {
            let min = if p.probe { PROBE_DEFENCE_INTERVAL } else { MULTICAST_MIN_INTERVAL };
            if let Some(at) = self.last_multicast.get(&sent_key(p.interface, p.family, &p.record)) {
                if now.saturating_duration_since(*at) < min {
                    continue;
                }
            }
            groups.entry((p.interface, p.family)).or_default().push(p.record);
        }
        for ((index, family), mut records) in groups {
            dedup(&mut records);
            let Some(iface) = self.interfaces.get(&index).cloned() else { continue };
            let additionals = self.additionals(&records, &iface);
            self.multicast_family(index, family, &records, &additionals, now);
        }
    }

    pub(super) fn on_query(
        &mut self,
        msg: &Message,
        query_len: usize,
        iface: &Interface,
        from: SocketAddr,
        now: Instant,
    ) {
        let legacy = from.port() != self.port;
        let family = Family::of(from.ip());
        let is_probe = !msg.authorities.is_empty();
        let known: Vec<&Record> = msg.answers.iter().take(MAX_RECORDS).collect();

        // Known answers suppress pending answers too: a querier that set TC sends the rest of
        // its known answers in the next packets, which may have no question at all (7.2).
        if !legacy && !known.is_empty() {
            self.pending.retain(|p| {
                !(p.interface == iface.index
                    && p.family == family
                    && known.iter().any(|k| wire::same_rr(k, &p.record) && k.ttl >= p.record.ttl / 2))
            });
        }

        // Simultaneous probes (8.2).
        if is_probe && !legacy {
            self.tie_break(msg, iface, now);
        }

        let mut multicast: Vec<Record> = Vec::new();
        let mut unicast: Vec<Record> = Vec::new();
        let mut all_unique = true;
        for q in msg.queries.iter().take(MAX_QUESTIONS) {
            for r in self.answers_for(q, iface) {
                if known.iter().any(|k| wire::same_rr(k, &r) && k.ttl >= r.ttl / 2) {
                    continue;
                }
                all_unique &= r.mdns_cache_flush;
                if legacy || (q.mdns_unicast_response && self.multicast_recently(iface.index, family, &r, now)) {
                    unicast.push(r);
                } else {
                    multicast.push(r);
                }
            }
        }
        dedup(&mut unicast);
        dedup(&mut multicast);

        if !unicast.is_empty() {
            self.unicast_answer(msg, query_len, legacy, unicast, iface, from, now);
        }
        if multicast.is_empty() {
            return;
        }
        let delay = if msg.metadata.truncation {
            self.rng.millis(400, 500)
        } else if all_unique {
            Duration::ZERO
        } else {
            self.rng.millis(20, 120)
        };
        let mut waiting: HashMap<RrKey, usize> = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.interface == iface.index && p.family == family)
            .map(|(i, p)| (rr_key(&p.record), i))
            .collect();
        for record in multicast {
            let key = rr_key(&record);
            if let Some(&i) = waiting.get(&key) {
                let p = &mut self.pending[i];
                p.due = p.due.min(now + delay);
                p.probe |= is_probe;
                continue;
            }
            if self.pending.len() >= MAX_PENDING {
                break;
            }
            waiting.insert(key, self.pending.len());
            self.pending.push(Pending { interface: iface.index, family, record, due: now + delay, probe: is_probe });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn unicast_answer(
        &mut self,
        query: &Message,
        query_len: usize,
        legacy: bool,
        answers: Vec<Record>,
        iface: &Interface,
        to: SocketAddr,
        now: Instant,
    ) {
        if !self.take_token(to.ip(), now) {
            tracing::trace!(%to, "unicast mDNS answer dropped by the rate limit");
            return;
        }
        let mut additionals = self.additionals(&answers, iface);
        let mut answers = answers;
        let template = if legacy {
            // RFC 6762 section 6.7: ID and question echoed, TTL capped, no cache-flush bit.
            for r in answers.iter_mut().chain(additionals.iter_mut()) {
                r.ttl = r.ttl.min(LEGACY_TTL);
                r.mdns_cache_flush = false;
            }
            let qs: Vec<Query> = query.queries.iter().take(MAX_QUESTIONS).cloned().collect();
            wire::response(query.metadata.id, qs)
        } else {
            wire::response(0, vec![])
        };
        // No amplification: at most a few times the query's bytes.
        let limit = (query_len * UNICAST_AMPLIFICATION).min(MAX_PACKET);
        // What does not fit in one datagram is left out (the first datagram holds as many
        // answers as fit; additionals only come after every answer). No TC: mDNS has no TCP.
        let packets = wire::pack(&template, &answers, &additionals, limit);
        if let Some(payload) = packets.into_iter().next() {
            if payload.len() <= limit && parse_answers(&payload) > 0 {
                self.out.push_back(Transmit { interface: iface.index, target: Target::Unicast(to), payload });
            }
        }
    }

    /// The unicast budget: the source's own bucket first (one flooding source cannot starve
    /// the others), then everyone's.
    fn take_token(&mut self, source: IpAddr, now: Instant) -> bool {
        if !self.per_source.contains_key(&source) && self.per_source.len() >= MAX_SOURCES {
            self.per_source.retain(|_, b| b.at.is_some_and(|at| now.saturating_duration_since(at) < SOURCE_IDLE));
            // Still full (a flood of forged sources): the least recently served one goes, so
            // the table never locks a newcomer out.
            if let Some(oldest) = self.per_source.iter().min_by_key(|(_, b)| b.at).map(|(a, _)| *a) {
                self.per_source.remove(&oldest);
            }
        }
        let mine = self.per_source.entry(source).or_insert_with(|| Bucket::full(SOURCE_BURST));
        mine.take(now, SOURCE_RATE, SOURCE_BURST) && self.unicast.take(now, UNICAST_RATE, UNICAST_BURST)
    }

    /// RFC 6762 section 5.4: a QU question still gets a multicast answer when the record was not
    /// multicast on that interface within a quarter of its TTL.
    fn multicast_recently(&self, index: u32, family: Family, r: &Record, now: Instant) -> bool {
        self.last_multicast
            .get(&sent_key(index, family, r))
            .is_some_and(|at| now.saturating_duration_since(*at) < Duration::from_secs(u64::from(r.ttl / 4)))
    }

    /// The records of answered entries that `q` asks for, on `iface`.
    /// A question for a type we do not have under a name we own gets an NSEC saying which
    /// types exist (RFC 6762 section 6.1), so the asker need not wait for a timeout.
    fn answers_for(&self, q: &Query, iface: &Interface) -> Vec<Record> {
        let mut out = Vec::new();
        let mut owner = None;
        for e in self.named(&q.name).filter(|e| e.answers()) {
            if e.name == q.name {
                owner = Some(e);
            }
            for r in self.records_of(e, iface) {
                if wire::asks_for(q, &r) {
                    out.push(r);
                }
            }
        }
        if let Some(e) = owner {
            if out.is_empty()
                && q.query_type != RecordType::ANY
                && matches!(q.query_class, DNSClass::IN | DNSClass::ANY)
            {
                out.push(self.nsec(e, iface));
            }
        }
        out
    }

    /// The NSEC of `e`'s unique name on `iface`: the types it has there.
    pub(super) fn nsec(&self, e: &Entry, iface: &Interface) -> Record {
        let types: Vec<RecordType> =
            self.records_of(e, iface).iter().filter(|r| r.name == e.name).map(|r| r.record_type()).collect();
        wire::nsec(&e.name, &types, HOST_TTL)
    }

    /// RFC 6763 section 12: PTR answers bring SRV, TXT and addresses; SRV answers bring
    /// addresses.
    pub(super) fn additionals(&self, answers: &[Record], iface: &Interface) -> Vec<Record> {
        let by_name = ByName(self);
        let mut out = Vec::new();
        let mut targets: Vec<Name> = Vec::new();
        for a in answers {
            match &a.data {
                RData::PTR(PTR(instance)) => {
                    if let Some(e) = by_name.get(instance) {
                        for r in self.unique_records(e, iface) {
                            if let RData::SRV(srv) = &r.data {
                                targets.push(srv.target.clone());
                            }
                            out.push(r);
                        }
                    }
                }
                RData::SRV(srv) => targets.push(srv.target.clone()),
                _ => {}
            }
        }
        let mut hosts: Vec<&Entry> = Vec::new();
        for t in &targets {
            if let Some(e) = by_name.get(t).filter(|e| matches!(e.what, What::Host)) {
                if !hosts.iter().any(|h| h.id == e.id) {
                    hosts.push(e);
                    out.extend(self.records_of(e, iface));
                }
            }
        }
        // A host's addresses of one family only: an NSEC says there is none of the other.
        if !(iface.has(Family::V4) && iface.has(Family::V6)) {
            for a in answers.iter().filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA)) {
                if let Some(e) = by_name.get(&a.name).filter(|e| matches!(e.what, What::Host)) {
                    if !hosts.iter().any(|h| h.id == e.id) {
                        hosts.push(e);
                    }
                }
            }
            for e in &hosts {
                out.push(self.nsec(e, iface));
            }
        }
        let in_answers: HashSet<RrKey> = answers.iter().map(rr_key).collect();
        out.retain(|r| !in_answers.contains(&rr_key(r)));
        dedup(&mut out);
        out
    }
}

/// How many answers an encoded response carries (0 if it does not parse).
fn parse_answers(payload: &[u8]) -> usize {
    if payload.len() < 8 {
        return 0;
    }
    usize::from(u16::from_be_bytes([payload[6], payload[7]]))
}

/// The answering entry whose unique name is the one asked for.
struct ByName<'a>(&'a Responder);

impl<'a> ByName<'a> {
    fn get(&self, name: &Name) -> Option<&'a Entry> {
        self.0.named(name).find(|e| e.answers() && e.name == *name)
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    /// The bucket of unicast answers to everyone, full.
    pub(super) fn everyone() -> Bucket {
        Bucket::full(UNICAST_BURST)
    }

    fn full(burst: f64) -> Bucket {
        Bucket { tokens: burst, at: None }
    }

    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + dt * rate).min(burst);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
