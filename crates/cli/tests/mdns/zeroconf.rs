//! python-zeroconf as a peer on the simulated LAN ([`Host::zeroconf`]): `zeroconf_agent.py`
//! behind a JSON-line pipe, one command and one reply at a time.
#![allow(dead_code)] // the fixture's API is for the mDNS tests; the self-tests use part of it

use super::super::*;
use super::lan::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::ChildStdin;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, SystemTime};

const ZEROCONF_AGENT: &str = include_str!("zeroconf_agent.py");

impl Host {
    /// A python-zeroconf peer on this host (bound to eth0's IPv4 and IPv6 addresses), ready.
    pub fn zeroconf(&self) -> ZeroconfPeer {
        let script = script_file(&self.dir, "zeroconf_agent.py", ZEROCONF_AGENT);
        let log = tempfile::NamedTempFile::new_in(&self.dir).expect("log file");
        let mut child = self
            .cmd("setpriv")
            .args(["--pdeathsig", "KILL", "--", python()])
            .arg(&script)
            .args([self.ipv4.to_string(), self.ipv6.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("start the zeroconf agent");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let zc = ZeroconfPeer { peer: Peer { child, log }, io: Mutex::new((stdin, rx)), host: self.clone() };
        let ready = zc.read_reply(Duration::from_secs(15));
        assert_eq!(
            ready["ready"],
            true,
            "zeroconf agent in {} (python3-zeroconf: scripts/setup-host.sh installs it): {ready}\n{}",
            self.ns,
            zc.peer.log()
        );
        zc
    }
}

/// A python-zeroconf peer (see [`Host::zeroconf`] and `zeroconf_agent.py`); killed on drop.
pub struct ZeroconfPeer {
    pub peer: Peer,
    io: Mutex<(ChildStdin, mpsc::Receiver<String>)>,
    pub host: Host,
}

/// One DNS-SD instance found by [`ZeroconfPeer::browse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInstance {
    /// The full instance name, `Web Box._http._tcp.local.`
    pub name: String,
    /// The SRV target, `host.local.`; empty if the instance could not be resolved.
    pub host: String,
    pub port: u16,
    pub addresses: Vec<IpAddr>,
    pub txt: BTreeMap<String, String>,
}

/// A goodbye (a record with TTL 0) seen by [`ZeroconfPeer::wait_goodbye`].
#[derive(Clone, Debug)]
pub struct Goodbye {
    /// When the agent received it (its wall clock: compare with `SystemTime::now()` here).
    pub at: SystemTime,
    /// The record's type: A, AAAA, PTR, SRV, TXT.
    pub rtype: String,
}

impl ZeroconfPeer {
    fn read_reply(&self, timeout: Duration) -> serde_json::Value {
        let io = self.io.lock().unwrap();
        match io.1.recv_timeout(timeout) {
            Ok(line) => serde_json::from_str(&line).unwrap_or_else(|e| panic!("zeroconf agent said {line:?}: {e}")),
            Err(e) => panic!("zeroconf agent in {}: no reply ({e}):\n{}", self.host.ns, self.peer.log()),
        }
    }

    /// Sends one command (`{"cmd": ..., ...}`) and returns the reply, or its error line.
    pub fn request(&self, cmd: serde_json::Value) -> Result<serde_json::Value, String> {
        let secs = cmd["timeout"].as_f64().or(cmd["seconds"].as_f64()).unwrap_or(0.0);
        {
            let mut io = self.io.lock().unwrap();
            writeln!(io.0, "{cmd}").unwrap_or_else(|e| panic!("zeroconf agent gone ({e}):\n{}", self.peer.log()));
            io.0.flush().unwrap();
        }
        let v = self.read_reply(Duration::from_secs_f64(secs + 20.0));
        if v["ok"] == true {
            Ok(v)
        } else {
            Err(v["error"].as_str().unwrap_or("?").to_string())
        }
    }

    fn must(&self, cmd: serde_json::Value) -> serde_json::Value {
        let what = cmd.to_string();
        self.request(cmd).unwrap_or_else(|e| panic!("zeroconf agent: {what}: {e}"))
    }

    /// Resolves `name` by mDNS (`rtype`: "A", "AAAA", or `None` for both in one query), forgetting
    /// what the cache held; returns with the first answer (with `None`, a responder that answers
    /// A and AAAA separately gives one family only: ask each), empty if none within `timeout`.
    pub fn resolve(&self, name: &str, rtype: Option<&str>, timeout: Duration) -> Vec<IpAddr> {
        self.resolve_timed(name, rtype, timeout).0
    }

    /// [`ZeroconfPeer::resolve`], and how long the answer took (ms; `None` without one).
    pub fn resolve_timed(&self, name: &str, rtype: Option<&str>, timeout: Duration) -> (Vec<IpAddr>, Option<f64>) {
        let v = self
            .must(serde_json::json!({"cmd": "resolve", "name": name, "type": rtype, "timeout": timeout.as_secs_f64()}));
        let addrs = v["addresses"].as_array().into_iter().flatten().filter_map(|a| a.as_str()?.parse().ok()).collect();
        (addrs, v["ms"].as_f64())
    }

    /// Browses `ty` (`_http._tcp`) for `secs`, then resolves every instance found (SRV, TXT and
    /// the addresses known once one is: a responder may leave out an address record it
    /// multicast less than a second ago, so resolve the host for all of them).
    pub fn browse(&self, ty: &str, secs: f64) -> Vec<ServiceInstance> {
        let v = self.must(serde_json::json!({"cmd": "browse", "type": ty, "seconds": secs}));
        v["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| ServiceInstance {
                name: i["name"].as_str().unwrap_or_default().to_string(),
                host: i["host"].as_str().unwrap_or_default().to_string(),
                port: i["port"].as_u64().unwrap_or(0) as u16,
                addresses: i["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str()?.parse().ok())
                    .collect(),
                txt: i["txt"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
            })
            .collect()
    }

    /// Answers A/AAAA queries for `name` with `addrs` (announced twice; no probing, no PTR).
    pub fn register_host(&self, name: &str, addrs: &[&str]) {
        self.must(serde_json::json!({"cmd": "register_host", "name": name, "addresses": addrs}));
    }

    /// Registers instance `instance` of `ty` on `port` with TXT `txt`, its SRV pointing at
    /// `zc-192-168-88-N.local.` (this host's addresses); returns the full instance name.
    pub fn register_service(&self, ty: &str, instance: &str, port: u16, txt: &[(&str, &str)]) -> String {
        let txt: serde_json::Map<String, serde_json::Value> =
            txt.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
        let v = self.must(
            serde_json::json!({"cmd": "register_service", "type": ty, "instance": instance, "port": port, "txt": txt}),
        );
        v["name"].as_str().unwrap_or_default().to_string()
    }

    /// Withdraws a host or service instance registered here (goodbye packets, TTL 0).
    pub fn unregister(&self, name: &str) {
        self.must(serde_json::json!({"cmd": "unregister", "name": name}));
    }

    /// From now on, goodbyes for `name` (a record's name, or a PTR's target) count.
    pub fn watch_goodbye(&self, name: &str) {
        self.must(serde_json::json!({"cmd": "watch_goodbye", "name": name}));
    }

    /// The first goodbye for `name` since [`ZeroconfPeer::watch_goodbye`], waiting up to `timeout`.
    pub fn wait_goodbye(&self, name: &str, timeout: Duration) -> Option<Goodbye> {
        let v = self.must(serde_json::json!({"cmd": "wait_goodbye", "name": name, "timeout": timeout.as_secs_f64()}));
        (v["seen"] == true).then(|| Goodbye {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs_f64(v["at"].as_f64().unwrap_or(0.0)),
            rtype: v["type"].as_str().unwrap_or_default().to_string(),
        })
    }
}
