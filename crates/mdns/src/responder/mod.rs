//! The records cove owns on the LAN and everything RFC 6762 asks of their owner: probing and
//! tie-breaking (section 8), renaming on conflict, announcing (8.3), conflict detection after
//! that (9), answering (6: multicast with aggregation and random delay, QU unicast, legacy
//! unicast, known-answer suppression of 7.1, duplicate-answer suppression of 7.4, the 1 s
//! per-record rate limit) and goodbyes (10.1).
//!
//! This file holds the records and their lifecycle (publish, probe, conflict, announce,
//! goodbye); `answer.rs` answers queries.
//!
//! Sans-IO: datagrams in through [`Responder::handle_packet`], time through
//! [`Responder::handle_timeout`], datagrams out through [`Responder::poll_transmit`], events
//! through [`Responder::poll_event`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::rdata::{PTR, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::rng::Rng;
use crate::wire::{self, Family, Target, Transmit, MAX_PACKET, MAX_QUESTIONS, MAX_RECORDS};
use crate::{Error, Interface, Result};

mod answer;

/// TTL of records tied to a host name: A, AAAA, SRV (RFC 6762 section 10).
pub const HOST_TTL: u32 = 120;
/// TTL of every other record: PTR, TXT.
pub const OTHER_TTL: u32 = 4500;

const PROBE_INTERVAL: Duration = Duration::from_millis(250);
const PROBES: u8 = 3;
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);
const ANNOUNCEMENTS: u8 = 2;
/// RFC 6762 section 8.1: more than 15 conflicts in 10 s, and the next probe waits 5 s.
const CONFLICT_WINDOW: Duration = Duration::from_secs(10);
const CONFLICT_LIMIT: usize = 15;
const CONFLICT_BACKOFF: Duration = Duration::from_secs(5);

/// What the caller gets back from a publish: the handle to withdraw it with, and the key of
/// its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub u64);

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A DNS-SD service to publish (RFC 6763): `instance._type._proto.local` pointing at `host`
/// (one of the names published with [`Responder::publish_host`], which the SRV record follows
/// through renames, or any other `.local` name) and `port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceSpec {
    /// `_redis._tcp` (`.local` is added).
    pub service_type: String,
    /// The instance name: raw UTF-8, up to 63 bytes (`node1 on mycluster`).
    pub instance: String,
    /// The host name in the SRV record (`node1.mycluster.local`).
    pub host: String,
    pub port: u16,
    /// TXT strings (`key=value`); empty means a TXT record with one empty string (RFC 6763
    /// section 6.1: every service has a TXT record).
    pub txt: Vec<String>,
}

/// Where a published name is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Probing,
    Announcing,
    Established,
}

/// Something the caller should know (netd shows renames in `cove mdns ls` and as a warning).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Another host holds `from`: the entry now probes for `to`.
    Renamed { id: Id, from: String, to: String },
    /// Probing and announcing done: `name` is ours on the LAN.
    Established { id: Id, name: String },
    /// A conflict with an announced name: it is probed again (and renamed if the other side
    /// defends it).
    Conflict { id: Id, name: String },
}

/// One published entry as `cove mdns ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: Id,
    /// The name asked for (host name, or instance name of a service).
    pub requested: String,
    /// The name in use (differs after a conflict).
    pub name: String,
    /// `None` for a host name, the service type for a service.
    pub service_type: Option<String>,
    pub state: State,
}

#[derive(Debug, Clone)]
enum What {
    Host,
    Service { type_name: Name, service_type: String, host: String, port: u16, txt: Vec<String> },
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Probing { sent: u8, next: Instant },
    Announcing { sent: u8, next: Instant },
    Established,
}

#[derive(Debug, Clone)]
struct Entry {
    id: Id,
    requested: String,
    /// Host: the full name in use. Service: the instance in use.
    current: String,
    /// The unique name: the host name, or the service instance name.
    name: Name,
    /// The suffix number the next rename takes.
    next_suffix: u32,
    what: What,
    phase: Phase,
    conflicts: VecDeque<Instant>,
}

impl Entry {
    fn state(&self) -> State {
        match self.phase {
            Phase::Probing { .. } => State::Probing,
            Phase::Announcing { .. } => State::Announcing,
            Phase::Established => State::Established,
        }
    }

    fn answers(&self) -> bool {
        !matches!(self.phase, Phase::Probing { .. })
    }
}

/// A multicast answer waiting for its moment.
#[derive(Debug, Clone)]
struct Pending {
    interface: u32,
    family: Family,
    record: Record,
    due: Instant,
    /// In answer to a probe: the 250 ms rate limit applies instead of 1 s.
    probe: bool,
}

/// Key of the per-record, per-interface multicast rate limit.
type SentKey = (u32, Family, Name, RecordType, Vec<u8>);

/// The mDNS responder: see the module docs.
#[derive(Debug, Clone)]
pub struct Responder {
    port: u16,
    interfaces: BTreeMap<u32, Interface>,
    entries: Vec<Entry>,
    /// Every name an entry has records under (its unique name, a service's type and the
    /// type enumeration name) to the entries' positions: rebuilt whenever entries or their
    /// names change, so answering does not compare every name.
    names: HashMap<Name, Vec<usize>>,
    next_id: u64,
    pending: Vec<Pending>,
    last_multicast: HashMap<SentKey, Instant>,
    /// Unicast answers to everyone, and per source address.
    unicast: answer::Bucket,
    per_source: HashMap<std::net::IpAddr, answer::Bucket>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rng: Rng,
}

impl Responder {
    /// A responder for the mDNS `port` (5353; another in tests): queries from any other source
    /// port are legacy unicast, responses from any other port are ignored.
    pub fn new(port: u16) -> Self {
        Self::with_rng(port, Rng::from_os())
    }

    /// [`Responder::new`] with a fixed seed for the random delays (tests).
    pub fn with_seed(port: u16, seed: u64) -> Self {
        Self::with_rng(port, Rng::seeded(seed))
    }

    fn with_rng(port: u16, rng: Rng) -> Self {
        Responder {
            port,
            interfaces: BTreeMap::new(),
            entries: Vec::new(),
            names: HashMap::new(),
            next_id: 1,
            pending: Vec::new(),
            last_multicast: HashMap::new(),
            unicast: answer::Bucket::everyone(),
            per_source: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            rng,
        }
    }

    /// Replaces the interface table (RFC 6762 section 8.4). A new interface (another link,
    /// maybe with its own holders of our names) sends every entry back to probing under its
    /// current name; an interface whose addresses changed gets every announced entry announced
    /// again, and goodbyes for the addresses it lost.
    pub fn set_interfaces(&mut self, interfaces: Vec<Interface>, now: Instant) {
        let new: BTreeMap<u32, Interface> = interfaces.into_iter().map(|i| (i.index, i)).collect();
        let mut changed = false;
        let mut added = false;
        for (index, iface) in &new {
            match self.interfaces.get(index).cloned() {
                Some(old) if old.addrs == iface.addrs => {}
                Some(old) => {
                    changed = true;
                    let gone: Vec<_> = old.addrs.iter().filter(|a| !iface.addrs.contains(a)).copied().collect();
                    if !gone.is_empty() {
                        let records: Vec<Record> = self
                            .entries
                            .iter()
                            .filter(|e| e.answers() && matches!(e.what, What::Host))
                            .flat_map(|e| gone.iter().map(|a| wire::address_record(&e.name, *a, 0)))
                            .collect();
                        self.goodbye_on(&old, &records);
                    }
                }
                None => added |= !iface.addrs.is_empty(),
            }
        }
        self.interfaces = new;
        self.pending.retain(|p| self.interfaces.contains_key(&p.interface));
        if added {
            for e in self.entries.iter_mut().filter(|e| e.answers()) {
                e.phase = Phase::Probing { sent: 0, next: now + self.rng.millis(0, 250) };
            }
        } else if changed {
            for e in &mut self.entries {
                if e.answers() {
                    e.phase = Phase::Announcing { sent: 0, next: now };
                }
            }
        }
    }

    pub fn interfaces(&self) -> impl Iterator<Item = &Interface> {
        self.interfaces.values()
    }

    /// Publishes `name` (`node1.mycluster.local`) with the addresses of each interface, after
    /// probing. Renames (`node1-2.mycluster.local`) are reported as [`Event::Renamed`].
    pub fn publish_host(&mut self, name: &str, now: Instant) -> Result<Id> {
        let n = wire::host_name(name)?;
        let requested = n.to_ascii().trim_end_matches('.').to_string();
        if self.entries.iter().any(|e| matches!(e.what, What::Host) && e.requested.eq_ignore_ascii_case(&requested)) {
            return Err(Error::Duplicate { name: requested });
        }
        Ok(self.add(requested.clone(), requested, n, What::Host, now))
    }

    /// Publishes a DNS-SD service (PTR, SRV, TXT), after probing its instance name. Renames
    /// (`Instance (2)`) are reported as [`Event::Renamed`].
    pub fn publish_service(&mut self, spec: ServiceSpec, now: Instant) -> Result<Id> {
        let type_name = wire::service_type_name(&spec.service_type)?;
        let name = wire::instance_name(&spec.instance, &type_name)?;
        wire::host_name(&spec.host)?;
        if spec.txt.iter().any(|t| t.len() > 255) {
            return Err(Error::BadName { name: spec.instance, reason: "a TXT string is at most 255 bytes".into() });
        }
        if self.entries.iter().any(|e| e.name == name) {
            return Err(Error::Duplicate { name: name.to_utf8() });
        }
        let service_type = type_name.to_ascii().trim_end_matches('.').to_string();
        let what = What::Service { type_name, service_type, host: spec.host, port: spec.port, txt: spec.txt };
        Ok(self.add(spec.instance.clone(), spec.instance, name, what, now))
    }

    fn add(&mut self, requested: String, current: String, name: Name, what: What, now: Instant) -> Id {
        let id = Id(self.next_id);
        self.next_id += 1;
        let first = now + self.rng.millis(0, 250);
        self.entries.push(Entry {
            id,
            requested,
            current,
            name,
            next_suffix: 2,
            what,
            phase: Phase::Probing { sent: 0, next: first },
            conflicts: VecDeque::new(),
        });
        self.reindex();
        id
    }

    fn reindex(&mut self) {
        self.names.clear();
        let services = wire::services_name();
        for (i, e) in self.entries.iter().enumerate() {
            self.names.entry(e.name.clone()).or_default().push(i);
            if let What::Service { type_name, .. } = &e.what {
                self.names.entry(type_name.clone()).or_default().push(i);
                self.names.entry(services.clone()).or_default().push(i);
            }
        }
    }

    /// The entries with records named `name`.
    fn named(&self, name: &Name) -> impl Iterator<Item = &Entry> {
        self.names.get(name).into_iter().flatten().filter_map(|&i| self.entries.get(i))
    }

    /// Withdraws one entry: goodbyes (TTL 0) on every interface if it was announced.
    pub fn withdraw(&mut self, id: Id) -> Result<()> {
        let Some(at) = self.entries.iter().position(|e| e.id == id) else {
            return Err(Error::UnknownId(id.0));
        };
        let entry = self.entries.remove(at);
        self.reindex();
        self.say_goodbye(&[entry]);
        Ok(())
    }

    /// Withdraws everything (the helper exits): goodbyes for every announced record.
    pub fn withdraw_all(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        self.reindex();
        self.say_goodbye(&entries);
    }

    fn say_goodbye(&mut self, gone: &[Entry]) {
        let names: Vec<&Name> = gone.iter().map(|e| &e.name).collect();
        self.pending.retain(|p| !names.contains(&&p.record.name));
        let interfaces: Vec<Interface> = self.interfaces.values().cloned().collect();
        for iface in &interfaces {
            let mut records = Vec::new();
            for e in gone.iter().filter(|e| e.answers()) {
                for mut r in self.records_of(e, iface) {
                    // The type enumeration PTR stays while another instance of the type does.
                    if r.name == wire::services_name() && self.entries.iter().any(|o| same_type(o, e) && o.answers()) {
                        continue;
                    }
                    r.ttl = 0;
                    records.push(r);
                }
            }
            self.goodbye_on(iface, &records);
        }
    }

    fn goodbye_on(&mut self, iface: &Interface, records: &[Record]) {
        if records.is_empty() {
            return;
        }
        for family in [Family::V4, Family::V6] {
            if iface.has(family) {
                for payload in wire::pack(&wire::response(0, vec![]), records, &[], MAX_PACKET) {
                    self.out.push_back(Transmit { interface: iface.index, target: Target::Multicast(family), payload });
                }
            }
        }
    }

    /// What is published, for `cove mdns ls`.
    pub fn published(&self) -> Vec<Published> {
        self.entries
            .iter()
            .map(|e| Published {
                id: e.id,
                requested: e.requested.clone(),
                name: e.current.clone(),
                service_type: match &e.what {
                    What::Host => None,
                    What::Service { service_type, .. } => Some(service_type.clone()),
                },
                state: e.state(),
            })
            .collect()
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Responder::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phases = self.entries.iter().filter_map(|e| match e.phase {
            Phase::Probing { next, .. } | Phase::Announcing { next, .. } => Some(next),
            Phase::Established => None,
        });
        phases.chain(self.pending.iter().map(|p| p.due)).min()
    }

    /// Runs what is due at `now`: probes, announcements, delayed answers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.probe(now);
        self.announce(now);
        self.flush_pending(now);
        if self.last_multicast.len() > 4096 {
            self.last_multicast.retain(|_, at| now.saturating_duration_since(*at) < Duration::from_secs(1200));
        }
    }

    fn probe(&mut self, now: Instant) {
        let due: Vec<usize> = (0..self.entries.len())
            .filter(|&i| matches!(self.entries[i].phase, Phase::Probing { next, .. } if next <= now))
            .collect();
        if due.is_empty() {
            return;
        }
        if !self.interfaces.values().any(|i| !i.addrs.is_empty()) {
            // Nowhere to probe: wait for an interface rather than claim a name unasked.
            for i in due {
                self.entries[i].phase = Phase::Probing { sent: 0, next: now + PROBE_INTERVAL };
            }
            return;
        }
        let mut probes: Vec<(Name, bool)> = Vec::new();
        for &i in &due {
            let e = &mut self.entries[i];
            let Phase::Probing { sent, .. } = e.phase else { continue };
            if sent >= PROBES {
                e.phase = Phase::Announcing { sent: 0, next: now };
                continue;
            }
            // The first probe asks for a unicast answer (RFC 6762 section 8.1).
            probes.push((e.name.clone(), sent == 0));
            e.phase = Phase::Probing { sent: sent + 1, next: now + PROBE_INTERVAL };
        }
        if probes.is_empty() {
            return;
        }
        let interfaces: Vec<Interface> = self.interfaces.values().cloned().collect();
        for iface in &interfaces {
            let mut m = Message::query();
            m.metadata.id = 0;
            m.metadata.recursion_desired = false;
            for (name, qu) in &probes {
                let mut q = Query::query(name.clone(), RecordType::ANY);
                q.mdns_unicast_response = *qu;
                m.queries.push(q);
                if let Some(e) = self.entries.iter().find(|e| &e.name == name) {
                    m.authorities.extend(self.unique_records(e, iface));
                }
            }
            if m.authorities.is_empty() {
                continue;
            }
            let Some(payload) = wire::encode(&m) else { continue };
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

    fn announce(&mut self, now: Instant) {
        let due: Vec<usize> = (0..self.entries.len())
            .filter(|&i| matches!(self.entries[i].phase, Phase::Announcing { next, .. } if next <= now))
            .collect();
        if due.is_empty() {
            return;
        }
        let interfaces: Vec<Interface> = self.interfaces.values().cloned().collect();
        for iface in &interfaces {
            let mut records = Vec::new();
            for &i in &due {
                records.extend(self.records_of(&self.entries[i], iface));
            }
            dedup(&mut records);
            self.multicast(iface, &records, &[], now);
        }
        for i in due {
            let e = &mut self.entries[i];
            let Phase::Announcing { sent, .. } = e.phase else { continue };
            if sent + 1 >= ANNOUNCEMENTS {
                e.phase = Phase::Established;
                self.events.push_back(Event::Established { id: e.id, name: e.current.clone() });
            } else {
                e.phase = Phase::Announcing { sent: sent + 1, next: now + ANNOUNCE_INTERVAL };
            }
        }
    }

    /// Sends `records` as one response (or several datagrams) on both families of `iface`,
    /// noting the time for the rate limit.
    fn multicast(&mut self, iface: &Interface, records: &[Record], additionals: &[Record], now: Instant) {
        if records.is_empty() {
            return;
        }
        for family in [Family::V4, Family::V6] {
            if !iface.has(family) {
                continue;
            }
            self.multicast_family(iface.index, family, records, additionals, now);
        }
    }

    fn multicast_family(
        &mut self,
        index: u32,
        family: Family,
        records: &[Record],
        additionals: &[Record],
        now: Instant,
    ) {
        for r in records {
            self.last_multicast.insert(sent_key(index, family, r), now);
        }
        for payload in wire::pack(&wire::response(0, vec![]), records, additionals, MAX_PACKET) {
            self.out.push_back(Transmit { interface: index, target: Target::Multicast(family), payload });
        }
    }

    /// Handles one datagram that arrived on interface `interface` from `from`. Anything
    /// malformed is ignored; so is a packet from an interface not in the table.
    pub fn handle_packet(&mut self, packet: &[u8], from: SocketAddr, interface: u32, now: Instant) {
        let Some(iface) = self.interfaces.get(&interface).cloned() else {
            return;
        };
        let Some(msg) = wire::parse(packet) else {
            tracing::trace!(%from, len = packet.len(), "malformed mDNS packet ignored");
            return;
        };
        match msg.metadata.message_type {
            MessageType::Response => {
                // RFC 6762 section 6: responses from another port are not mDNS.
                if from.port() == self.port {
                    self.on_response(&msg, &iface, Family::of(from.ip()), now);
                }
            }
            MessageType::Query => self.on_query(&msg, packet.len(), &iface, from, now),
        }
        self.flush_pending(now);
    }

    fn on_response(&mut self, msg: &Message, iface: &Interface, family: Family, now: Instant) {
        let records: Vec<&Record> =
            msg.answers.iter().take(MAX_RECORDS).chain(msg.additionals.iter().take(MAX_RECORDS)).collect();
        // Duplicate answer suppression (7.4): someone else multicast our pending answer.
        self.pending.retain(|p| {
            !(p.interface == iface.index
                && p.family == family
                && records.iter().any(|r| wire::same_rr(r, &p.record) && r.ttl >= p.record.ttl / 2))
        });
        // Only entries that have a name in the packet (through the index, not every entry).
        let mut touched: Vec<usize> =
            records.iter().filter_map(|r| self.names.get(&r.name)).flatten().copied().collect();
        touched.sort_unstable();
        touched.dedup();
        for i in touched {
            let Some(e) = self.entries.get(i) else { continue };
            let theirs: Vec<&Record> = records
                .iter()
                .copied()
                .filter(|r| r.name == e.name && r.ttl > 0 && r.dns_class == DNSClass::IN)
                // An NSEC (ours looped back, or a peer's negative answer) claims nothing new.
                .filter(|r| r.record_type() != RecordType::NSEC)
                .collect();
            if theirs.is_empty() {
                continue;
            }
            // Ours on any interface: our own packets come back (multicast loop) and on a
            // multi-homed host one interface hears what another announced.
            let ours = self.unique_records_everywhere(e);
            if theirs.iter().all(|r| ours.iter().any(|o| wire::same_rr(o, r))) {
                continue;
            }
            tracing::debug!(name = %e.name, phase = ?e.phase, "mDNS conflict");
            self.conflict(i, now);
        }
    }

    fn conflict(&mut self, i: usize, now: Instant) {
        let e = &mut self.entries[i];
        match e.phase {
            Phase::Probing { .. } => {
                e.conflicts.push_back(now);
                while e.conflicts.front().is_some_and(|t| now.saturating_duration_since(*t) > CONFLICT_WINDOW) {
                    e.conflicts.pop_front();
                }
                let from = e.current.clone();
                let (current, name) = loop {
                    let n = e.next_suffix;
                    e.next_suffix += 1;
                    let candidate = match &e.what {
                        What::Host => {
                            let (first, rest) = e.requested.split_once('.').unwrap_or((&e.requested, "local"));
                            format!("{first}-{n}.{rest}")
                        }
                        What::Service { .. } => format!("{} ({n})", e.requested),
                    };
                    let name = match &e.what {
                        What::Host => wire::host_name(&candidate),
                        What::Service { type_name, .. } => wire::instance_name(&candidate, type_name),
                    };
                    match name {
                        Ok(name) => break (candidate, name),
                        // An instance name at 63 bytes has no room for a suffix: cut it.
                        Err(_) if e.requested.len() > 8 => {
                            let mut cut = e.requested.len() - 8;
                            while !e.requested.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            e.requested.truncate(cut);
                        }
                        Err(_) => return,
                    }
                };
                e.current = current.clone();
                e.name = name;
                let delay = if e.conflicts.len() > CONFLICT_LIMIT { CONFLICT_BACKOFF } else { Duration::ZERO };
                self.reindex();
                let first = now + delay + self.rng.millis(0, 250);
                let e = &mut self.entries[i];
                e.phase = Phase::Probing { sent: 0, next: first };
                let id = e.id;
                let host = matches!(e.what, What::Host).then(|| e.requested.clone());
                self.events.push_back(Event::Renamed { id, from, to: current });
                // Services on a renamed host: their SRV follows, so announce them again.
                if let Some(host) = host {
                    for s in self.entries.iter_mut().filter(|s| s.answers()) {
                        if let What::Service { host: h, .. } = &s.what {
                            if h.trim_end_matches('.').eq_ignore_ascii_case(&host) {
                                s.phase = Phase::Announcing { sent: 0, next: now };
                            }
                        }
                    }
                }
            }
            Phase::Announcing { .. } | Phase::Established => {
                // RFC 6762 section 9: back to probing under the same name.
                e.phase = Phase::Probing { sent: 0, next: now };
                let ev = Event::Conflict { id: e.id, name: e.current.clone() };
                let name = e.name.clone();
                self.pending.retain(|p| p.record.name != name);
                self.events.push_back(ev);
            }
        }
    }

    fn tie_break(&mut self, msg: &Message, iface: &Interface, now: Instant) {
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if !matches!(e.phase, Phase::Probing { .. }) {
                continue;
            }
            if !msg.queries.iter().take(MAX_QUESTIONS).any(|q| q.name == e.name) {
                continue;
            }
            let theirs: Vec<Record> = msg
                .authorities
                .iter()
                .take(MAX_RECORDS)
                .filter(|r| r.name == e.name && r.record_type() != RecordType::NSEC)
                .cloned()
                .collect();
            if theirs.is_empty() {
                continue;
            }
            let ours_everywhere = self.unique_records_everywhere(e);
            if theirs.iter().all(|r| ours_everywhere.iter().any(|o| wire::same_rr(o, r))) {
                continue; // our own probe, looped back
            }
            let ours = self.unique_records(e, iface);
            if wire::tie_break(&ours, &theirs) == std::cmp::Ordering::Less {
                // We lose: wait a second and probe again (RFC 6762 section 8.2 as updated).
                tracing::debug!(name = %e.name, "lost a simultaneous probe tie-break");
                self.entries[i].phase = Phase::Probing { sent: 0, next: now + Duration::from_secs(1) };
            }
        }
    }

    /// Every record of `e` on `iface` (the host's addresses are that interface's).
    fn records_of(&self, e: &Entry, iface: &Interface) -> Vec<Record> {
        match &e.what {
            What::Host => iface.addrs.iter().map(|a| wire::address_record(&e.name, *a, HOST_TTL)).collect(),
            What::Service { type_name, .. } => {
                let mut v = self.unique_records(e, iface);
                v.push(Record::from_rdata(type_name.clone(), OTHER_TTL, RData::PTR(PTR(e.name.clone()))));
                v.push(Record::from_rdata(wire::services_name(), OTHER_TTL, RData::PTR(PTR(type_name.clone()))));
                v
            }
        }
    }

    /// The unique records of `e` on `iface`: what its probes carry and conflicts are about.
    fn unique_records(&self, e: &Entry, iface: &Interface) -> Vec<Record> {
        match &e.what {
            What::Host => self.records_of(e, iface),
            What::Service { host, port, txt, .. } => {
                let target = self.srv_target(host);
                let strings: Vec<String> = if txt.is_empty() { vec![String::new()] } else { txt.clone() };
                vec![
                    wire::unique(Record::from_rdata(
                        e.name.clone(),
                        HOST_TTL,
                        RData::SRV(SRV::new(0, 0, *port, target)),
                    )),
                    wire::unique(Record::from_rdata(e.name.clone(), OTHER_TTL, RData::TXT(TXT::new(strings)))),
                ]
            }
        }
    }

    fn unique_records_everywhere(&self, e: &Entry) -> Vec<Record> {
        let mut v: Vec<Record> = self.interfaces.values().flat_map(|i| self.unique_records(e, i)).collect();
        if matches!(e.what, What::Service { .. }) && v.is_empty() {
            v = self.unique_records(e, &Interface { index: 0, name: String::new(), addrs: vec![] });
        }
        v
    }

    /// The SRV target: a host we publish is followed through its renames.
    fn srv_target(&self, host: &str) -> Name {
        let wanted = host.trim_end_matches('.');
        for e in &self.entries {
            if matches!(e.what, What::Host) && e.requested.eq_ignore_ascii_case(wanted) {
                return e.name.clone();
            }
        }
        wire::host_name(host).unwrap_or_default()
    }
}

fn same_type(a: &Entry, b: &Entry) -> bool {
    match (&a.what, &b.what) {
        (What::Service { type_name: x, .. }, What::Service { type_name: y, .. }) => x == y,
        _ => false,
    }
}

fn sent_key(index: u32, family: Family, r: &Record) -> SentKey {
    (index, family, r.name.to_lowercase(), r.record_type(), wire::rdata_bytes(r))
}

/// A record's identity for sets: name (case-insensitive), type, class, rdata.
pub(super) type RrKey = (Name, RecordType, u16, Vec<u8>);

pub(super) fn rr_key(r: &Record) -> RrKey {
    (r.name.clone(), r.record_type(), u16::from(r.dns_class), wire::rdata_bytes(r))
}

/// Drops repeated records (same RR), keeping the first of each.
pub(crate) fn dedup(records: &mut Vec<Record>) {
    let mut seen: std::collections::HashSet<RrKey> = std::collections::HashSet::with_capacity(records.len());
    records.retain(|r| seen.insert(rr_key(r)));
}
