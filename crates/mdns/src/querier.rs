//! Asking the LAN: one-shot queries (RFC 6762 section 5.1: sent from an ephemeral port, so
//! responders answer straight back by unicast) with a bounded wait, and browsing (RFC 6763: PTR
//! for a service type, then SRV, TXT and addresses of each instance). Every response heard fills
//! the shared [`Cache`]; results are read from it.
//!
//! Sans-IO like the responder: [`Querier::handle_packet`], [`Querier::handle_timeout`],
//! [`Querier::poll_transmit`] (datagrams for the one-shot socket), [`Querier::poll_done`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::cache::{Cache, Lookup};
use crate::rng::Rng;
use crate::wire::{self, Family, Target, Transmit};
use crate::{Error, Interface, Result};

/// Pending queries and browses at most; past it new ones fail at once.
const MAX_PENDING: usize = 256;
/// A one-shot query is sent again this long after the first if nothing answered yet.
const RESEND_AFTER: Duration = Duration::from_millis(300);
/// The longest a query or browse may wait.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Instances a browse follows up (SRV, TXT, addresses).
const MAX_INSTANCES: usize = 64;

/// The handle of a query or browse, given back with its [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// A service instance found by browsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInstance {
    /// The instance label (`My Printer`).
    pub instance: String,
    /// `_ipp._tcp.local`
    pub service_type: String,
    /// The SRV target (`printer.local`), empty when no SRV was heard.
    pub host: String,
    pub port: u16,
    pub txt: Vec<String>,
    pub addrs: Vec<IpAddr>,
}

/// What a query or browse ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The answers (TTLs counted down); empty when nobody answered in time.
    Records(Vec<Record>),
    Services(Vec<ServiceInstance>),
}

#[derive(Debug, Clone)]
enum Kind {
    Resolve { name: Name, qtype: RecordType },
    Browse { type_name: Name, followed_up: bool },
}

#[derive(Debug, Clone)]
struct Pending {
    id: QueryId,
    kind: Kind,
    start: Instant,
    deadline: Instant,
    resend: Option<Instant>,
}

/// The cache as the serve loop and its [`crate::Control`] handles share it.
pub type SharedCache = Arc<Mutex<Cache>>;

pub(crate) fn lock(cache: &SharedCache) -> MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

/// The querier: see the module docs.
#[derive(Debug)]
pub struct Querier {
    port: u16,
    cache: SharedCache,
    interfaces: Vec<Interface>,
    pending: Vec<Pending>,
    next_id: u64,
    out: VecDeque<Transmit>,
    done: VecDeque<(QueryId, Outcome)>,
    rng: Rng,
}

impl Querier {
    /// A querier for the mDNS `port` (responses from other ports are ignored), filling `cache`.
    pub fn new(port: u16, cache: SharedCache) -> Self {
        Querier {
            port,
            cache,
            interfaces: Vec::new(),
            pending: Vec::new(),
            next_id: 1,
            out: VecDeque::new(),
            done: VecDeque::new(),
            rng: Rng::from_os(),
        }
    }

    pub fn cache(&self) -> &SharedCache {
        &self.cache
    }

    pub fn set_interfaces(&mut self, interfaces: Vec<Interface>) {
        self.interfaces = interfaces;
    }

    /// A one-shot query for `name`/`qtype`, QM, from whatever socket sends it (RFC 6762
    /// section 5.1: from a port other than 5353, answers come back by unicast).
    pub fn query_packet(questions: &[(Name, RecordType)], id: u16) -> Option<Vec<u8>> {
        let mut m = Message::query();
        m.metadata.id = id;
        m.metadata.recursion_desired = false;
        for (name, qtype) in questions {
            m.add_query(Query::query(name.clone(), *qtype));
        }
        wire::encode(&m)
    }

    /// Resolves `name`/`qtype`: at once from the cache (a hit or a negative entry), else by
    /// asking on every interface and waiting at most `timeout` for an answer. The outcome comes
    /// out of [`Querier::poll_done`] under the returned id.
    pub fn resolve(&mut self, name: &Name, qtype: RecordType, timeout: Duration, now: Instant) -> Result<QueryId> {
        let id = self.new_id()?;
        let mut name = name.clone();
        name.set_fqdn(true);
        match lock(&self.cache).lookup(&name, qtype, now) {
            Lookup::Found(v) => {
                self.done.push_back((id, Outcome::Records(v)));
                return Ok(id);
            }
            Lookup::Negative => {
                self.done.push_back((id, Outcome::Records(Vec::new())));
                return Ok(id);
            }
            Lookup::Miss => {}
        }
        self.send(&[(name.clone(), qtype)]);
        self.pending.push(Pending {
            id,
            kind: Kind::Resolve { name, qtype },
            start: now,
            deadline: now + timeout.min(MAX_WAIT),
            resend: Some(now + RESEND_AFTER),
        });
        Ok(id)
    }

    /// Browses `service_type` (`_http._tcp`) for `timeout`: PTR first, SRV/TXT/addresses of the
    /// instances heard half-way; the outcome lists what the cache holds at the end.
    pub fn browse(&mut self, service_type: &str, timeout: Duration, now: Instant) -> Result<QueryId> {
        let type_name = wire::service_type_name(service_type)?;
        let id = self.new_id()?;
        self.send(&[(type_name.clone(), RecordType::PTR)]);
        self.pending.push(Pending {
            id,
            kind: Kind::Browse { type_name, followed_up: false },
            start: now,
            deadline: now + timeout.min(MAX_WAIT),
            resend: None,
        });
        Ok(id)
    }

    fn new_id(&mut self) -> Result<QueryId> {
        if self.pending.len() >= MAX_PENDING {
            return Err(Error::Stopped);
        }
        let id = QueryId(self.next_id);
        self.next_id += 1;
        Ok(id)
    }

    fn send(&mut self, questions: &[(Name, RecordType)]) {
        let Some(payload) = Self::query_packet(questions, self.rng.next() as u16) else { return };
        for iface in &self.interfaces {
            for family in [Family::V4, Family::V6] {
                if iface.has(family) {
                    self.out.push_back(Transmit {
                        interface: iface.index,
                        target: Target::Multicast(family),
                        payload: payload.clone(),
                    });
                }
            }
        }
    }

    /// Takes in one datagram: responses from the mDNS port on a known interface fill the
    /// cache, and finish the queries they answer.
    pub fn handle_packet(&mut self, packet: &[u8], from: SocketAddr, interface: u32, now: Instant) {
        if from.port() != self.port || !self.interfaces.iter().any(|i| i.index == interface) {
            return;
        }
        let Some(msg) = wire::parse(packet) else { return };
        if msg.metadata.message_type != MessageType::Response {
            return;
        }
        lock(&self.cache).insert_message(&msg, now);
        self.complete(now);
    }

    fn complete(&mut self, now: Instant) {
        let cache = lock(&self.cache);
        let mut finished = Vec::new();
        for (i, p) in self.pending.iter().enumerate() {
            if let Kind::Resolve { name, qtype } = &p.kind {
                match cache.lookup(name, *qtype, now) {
                    Lookup::Found(v) => finished.push((i, Outcome::Records(v))),
                    // An NSEC said the name has no such record.
                    Lookup::Negative => finished.push((i, Outcome::Records(Vec::new()))),
                    Lookup::Miss => {}
                }
            }
        }
        drop(cache);
        let mut ids = Vec::with_capacity(finished.len());
        for (i, outcome) in finished.into_iter().rev() {
            ids.push((self.pending.remove(i).id, outcome));
        }
        self.done.extend(ids.into_iter().rev());
    }

    /// When [`Querier::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .iter()
            .flat_map(|p| {
                let half = match p.kind {
                    Kind::Browse { followed_up: false, .. } => Some(p.start + (p.deadline - p.start) / 2),
                    _ => None,
                };
                [Some(p.deadline), p.resend, half]
            })
            .flatten()
            .min()
    }

    /// Resends, browse follow-ups and deadlines due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut resend = Vec::new();
        let mut follow = Vec::new();
        for p in &mut self.pending {
            if p.resend.is_some_and(|t| t <= now) {
                p.resend = None;
                if let Kind::Resolve { name, qtype } = &p.kind {
                    resend.push((name.clone(), *qtype));
                }
            }
            if let Kind::Browse { type_name, followed_up } = &mut p.kind {
                if !*followed_up && p.start + (p.deadline - p.start) / 2 <= now {
                    *followed_up = true;
                    follow.push(type_name.clone());
                }
            }
        }
        for q in resend {
            self.send(&[q]);
        }
        for t in follow {
            let questions = self.follow_up(&t, now);
            for chunk in questions.chunks(16) {
                self.send(chunk);
            }
        }
        let (due, keep): (Vec<Pending>, Vec<Pending>) =
            std::mem::take(&mut self.pending).into_iter().partition(|p| p.deadline <= now);
        self.pending = keep;
        for p in due {
            let outcome = match &p.kind {
                Kind::Resolve { name, qtype } => {
                    let mut cache = lock(&self.cache);
                    match cache.lookup(name, *qtype, now) {
                        Lookup::Found(v) => Outcome::Records(v),
                        _ => {
                            cache.insert_negative(name, *qtype, now);
                            Outcome::Records(Vec::new())
                        }
                    }
                }
                Kind::Browse { type_name, .. } => Outcome::Services(self.instances(type_name, now)),
            };
            self.done.push_back((p.id, outcome));
        }
        lock(&self.cache).expire(now);
    }

    /// The questions that complete what the cache knows of `type_name`'s instances.
    fn follow_up(&self, type_name: &Name, now: Instant) -> Vec<(Name, RecordType)> {
        let cache = lock(&self.cache);
        let mut qs = Vec::new();
        for ptr in cache.records(type_name, RecordType::PTR, now).iter().take(MAX_INSTANCES) {
            let RData::PTR(inst) = &ptr.data else { continue };
            let srv = cache.records(&inst.0, RecordType::SRV, now);
            if srv.is_empty() {
                qs.push((inst.0.clone(), RecordType::SRV));
            }
            if cache.records(&inst.0, RecordType::TXT, now).is_empty() {
                qs.push((inst.0.clone(), RecordType::TXT));
            }
            for s in &srv {
                if let RData::SRV(s) = &s.data {
                    if cache.records(&s.target, RecordType::A, now).is_empty()
                        && cache.records(&s.target, RecordType::AAAA, now).is_empty()
                    {
                        qs.push((s.target.clone(), RecordType::A));
                        qs.push((s.target.clone(), RecordType::AAAA));
                    }
                }
            }
        }
        qs
    }

    /// The instances of `type_name` in the cache, with what is known of each.
    pub fn instances(&self, type_name: &Name, now: Instant) -> Vec<ServiceInstance> {
        let cache = lock(&self.cache);
        let mut out: Vec<ServiceInstance> = Vec::new();
        for ptr in cache.records(type_name, RecordType::PTR, now).iter().take(MAX_INSTANCES) {
            let RData::PTR(inst) = &ptr.data else { continue };
            let label = inst.0.iter().next().map(|l| String::from_utf8_lossy(l).into_owned()).unwrap_or_default();
            if out.iter().any(|s| s.instance == label) {
                continue;
            }
            let mut s = ServiceInstance {
                instance: label,
                service_type: type_name.to_ascii().trim_end_matches('.').to_string(),
                host: String::new(),
                port: 0,
                txt: Vec::new(),
                addrs: Vec::new(),
            };
            if let Some(RData::SRV(srv)) = cache.records(&inst.0, RecordType::SRV, now).first().map(|r| &r.data) {
                s.host = srv.target.to_ascii().trim_end_matches('.').to_string();
                s.port = srv.port;
                for t in [RecordType::A, RecordType::AAAA] {
                    for r in cache.records(&srv.target, t, now) {
                        match r.data {
                            RData::A(a) => s.addrs.push(IpAddr::V4(a.0)),
                            RData::AAAA(a) => s.addrs.push(IpAddr::V6(a.0)),
                            _ => {}
                        }
                    }
                }
            }
            if let Some(RData::TXT(txt)) = cache.records(&inst.0, RecordType::TXT, now).first().map(|r| &r.data) {
                s.txt = txt
                    .txt_data
                    .iter()
                    .filter(|b| !b.is_empty())
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect();
            }
            out.push(s);
        }
        out
    }

    /// The next datagram to send from the one-shot socket.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next finished query or browse.
    pub fn poll_done(&mut self) -> Option<(QueryId, Outcome)> {
        self.done.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{address_record, host_name, nsec, response};

    fn querier() -> Querier {
        let mut q = Querier::new(5353, Arc::new(Mutex::new(Cache::new(64))));
        q.set_interfaces(vec![Interface { index: 2, name: "eth0".into(), addrs: vec!["192.0.2.1".parse().unwrap()] }]);
        q
    }

    #[test]
    fn one_shot_query_answered_by_record_or_nsec_or_timeout() {
        let t0 = Instant::now();
        let mut q = querier();
        let n = host_name("nas.local").unwrap();
        let a = q.resolve(&n, RecordType::A, Duration::from_secs(1), t0).unwrap();
        let aaaa = q.resolve(&n, RecordType::AAAA, Duration::from_secs(1), t0).unwrap();
        let sent = q.poll_transmit().unwrap();
        assert_eq!(sent.target, Target::Multicast(Family::V4));
        let m = wire::parse(&sent.payload).unwrap();
        assert_eq!(m.queries[0].query_type, RecordType::A);
        assert!(!m.queries[0].mdns_unicast_response);
        // The answer (a legacy unicast reply: question echoed) with an NSEC for AAAA.
        let mut r = response(m.metadata.id, m.queries.clone());
        r.answers = vec![address_record(&n, "192.0.2.7".parse().unwrap(), 10)];
        r.additionals = vec![nsec(&n, &[RecordType::A], 10)];
        let from: SocketAddr = "192.0.2.7:5353".parse().unwrap();
        q.handle_packet(&r.to_vec().unwrap(), from, 2, t0 + Duration::from_millis(5));
        let done: Vec<_> = std::iter::from_fn(|| q.poll_done()).collect();
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(matches!(&done[0], (id, Outcome::Records(v)) if *id == a && v.len() == 1));
        assert!(matches!(&done[1], (id, Outcome::Records(v)) if *id == aaaa && v.is_empty()));
        // Nobody answers: empty at the deadline, and a negative entry.
        let other = host_name("nobody.local").unwrap();
        let id = q.resolve(&other, RecordType::A, Duration::from_secs(1), t0).unwrap();
        q.handle_timeout(t0 + Duration::from_secs(1));
        assert!(matches!(q.poll_done(), Some((i, Outcome::Records(v))) if i == id && v.is_empty()));
        assert_eq!(lock(q.cache()).lookup(&other, RecordType::A, t0 + Duration::from_secs(2)), Lookup::Negative);
        // Responses from another port or an unknown interface are not taken.
        let id = q.resolve(&other, RecordType::AAAA, Duration::from_secs(1), t0 + Duration::from_secs(10)).unwrap();
        let mut r = response(0, vec![]);
        r.answers = vec![address_record(&other, "2001:db8::9".parse().unwrap(), 10)];
        q.handle_packet(&r.to_vec().unwrap(), "192.0.2.7:40000".parse().unwrap(), 2, t0 + Duration::from_secs(10));
        q.handle_packet(&r.to_vec().unwrap(), from, 9, t0 + Duration::from_secs(10));
        assert!(q.poll_done().is_none());
        q.handle_packet(&r.to_vec().unwrap(), from, 2, t0 + Duration::from_secs(10));
        assert!(matches!(q.poll_done(), Some((i, Outcome::Records(v))) if i == id && v.len() == 1));
    }
}
