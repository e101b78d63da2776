//! The `networks` and `endpoints` tables: every SQL statement about networks and leases.
//! Rows decode into typed records; a row that does not decode is [`crate::Error::Corrupt`]
//! naming the network or container, never a default.

use super::{corrupt, Db, Tx};
use crate::Result;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkRow {
    pub name: String,
    pub id: String,
    pub subnet: String,
    pub gateway: String,
    pub bridge: String,
    pub internal: bool,
    pub created: String,
    /// `--ipv6`: the IPv6 subnet and gateway (dual stack).
    #[serde(default)]
    pub subnet6: Option<String>,
    #[serde(default)]
    pub gateway6: Option<String>,
    /// `--label`s.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `-o mtu`, `--dns`, `--ip-range`, `--aux-address`.
    #[serde(default)]
    pub options: NetOptions,
}

/// A container's place on one network (what the container process needs to be wired).

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetOptions {
    /// `-o mtu=N`: the MTU of the network's links (default: the kernel's, 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// `--dns`: the network's upstream resolvers (the host's when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
    /// `--ip-range` of each family: where addresses are picked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range6: Option<String>,
    /// `--aux-address NAME=IP`: addresses never handed out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux: BTreeMap<String, IpAddr>,
    /// `-o allow_host_loopback=BOOL` (podman's name, from slirp4netns): whether the network's
    /// containers reach services bound to the host's loopback through
    /// `host.containers.internal`. Unset: cove.conf's `allow_host_loopback` (off by default),
    /// read by the network helper at every reload, so the default network follows it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_host_loopback: Option<bool>,
    /// `--mdns`: containers published on the LAN.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mdns: bool,
    /// `--mdns-interface`: where (empty: every LAN interface).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mdns_interfaces: Vec<String>,
    /// `-o mdns_resolve=false`: `.local` goes to the unicast upstreams (sites whose DNS owns it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdns_resolve: Option<bool>,
}

/// One lease: a container's endpoint on a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    pub container_id: String,
    pub network: String,
    pub ip: IpAddr,
    pub ip6: Option<IpAddr>,
    /// The host end of its veth pair (`cv` + 10 id digits + N; eth<N> inside).
    pub ifname: String,
    pub aliases: Vec<String>,
}

/// A container's interface and the gateways of its network ([`Db::container_gateways`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateways {
    pub ifname: String,
    pub gateway: IpAddr,
    pub gateway6: Option<IpAddr>,
}

const NETWORK_SELECT: &str =
    "SELECT name, id, subnet, gateway, bridge, internal, created, subnet6, gateway6, labels, options FROM networks";
const ENDPOINT_SELECT: &str = "SELECT container_id, network, ip, ip6, ifname, aliases FROM endpoints";

fn network_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NetworkRow> {
    let name: String = r.get(0)?;
    let labels: String = r.get(9)?;
    let options: String = r.get(10)?;
    let labels =
        serde_json::from_str(&labels).map_err(|e| corrupt(9, format!("network {name} has corrupt labels: {e}")))?;
    let options =
        serde_json::from_str(&options).map_err(|e| corrupt(10, format!("network {name} has corrupt options: {e}")))?;
    Ok(NetworkRow {
        id: r.get(1)?,
        subnet: r.get(2)?,
        gateway: r.get(3)?,
        bridge: r.get(4)?,
        internal: r.get::<_, i64>(5)? != 0,
        created: r.get(6)?,
        subnet6: r.get(7)?,
        gateway6: r.get(8)?,
        labels,
        options,
        name,
    })
}

fn ip(col: usize, text: &str, what: impl FnOnce() -> String) -> rusqlite::Result<IpAddr> {
    text.parse().map_err(|e| corrupt(col, format!("{} has a corrupt address {text:?}: {e}", what())))
}

fn endpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EndpointRow> {
    let container_id: String = r.get(0)?;
    let network: String = r.get(1)?;
    let what = || format!("the endpoint of container {container_id} on network {network}");
    let ip4: String = r.get(2)?;
    let ip6: Option<String> = r.get(3)?;
    let aliases: String = r.get(5)?;
    Ok(EndpointRow {
        ip: ip(2, &ip4, what)?,
        ip6: ip6.map(|a| ip(3, &a, what)).transpose()?,
        ifname: r.get(4)?,
        aliases: serde_json::from_str(&aliases)
            .map_err(|e| corrupt(5, format!("{} has corrupt aliases: {e}", what())))?,
        container_id,
        network,
    })
}

impl Db {
    /// Every network, by name.
    pub fn networks(&self) -> Result<Vec<NetworkRow>> {
        let mut st = self.conn.prepare(&format!("{NETWORK_SELECT} ORDER BY name"))?;
        let rows = st.query_map([], network_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The network named `key`, or whose full id is `key`.
    pub fn network(&self, key: &str) -> Result<Option<NetworkRow>> {
        Ok(self
            .conn
            .query_row(&format!("{NETWORK_SELECT} WHERE name = ?1 OR id = ?1"), [key], network_row)
            .optional()?)
    }

    /// At most two networks whose id starts with `prefix` (two: ambiguous).
    pub fn networks_by_id_prefix(&self, prefix: &str) -> Result<Vec<NetworkRow>> {
        let mut st = self.conn.prepare(&format!("{NETWORK_SELECT} WHERE id LIKE ?1 || '%' LIMIT 2"))?;
        let rows = st.query_map([prefix], network_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Records a new network; a taken name or subnet is a constraint violation ([`crate::Error::Db`]).
    pub fn insert_network(&mut self, r: &NetworkRow) -> Result<()> {
        let labels = serde_json::to_string(&r.labels).unwrap_or_else(|_| "{}".into());
        let options = serde_json::to_string(&r.options).unwrap_or_else(|_| "{}".into());
        self.write(|tx| {
            tx.0.execute(
                "INSERT INTO networks (name, id, subnet, gateway, bridge, internal, created, subnet6, gateway6, labels, options) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![r.name, r.id, r.subnet, r.gateway, r.bridge, r.internal as i64, r.created, r.subnet6, r.gateway6, labels, options],
            )?;
            Ok(())
        })
    }

    pub fn delete_network(&mut self, name: &str) -> Result<()> {
        self.write(|tx| {
            tx.0.execute("DELETE FROM networks WHERE name = ?1", [name])?;
            Ok(())
        })
    }

    /// Containers attached to a network: (container id, IPv4 address as stored), by address.
    pub fn endpoints_of(&self, network: &str) -> Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare("SELECT container_id, ip FROM endpoints WHERE network = ?1 ORDER BY ip")?;
        let rows = st.query_map([network], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every endpoint of every network.
    pub fn all_endpoints(&self) -> Result<Vec<EndpointRow>> {
        let mut st = self.conn.prepare(ENDPOINT_SELECT)?;
        let rows = st.query_map([], endpoint_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The container's endpoint on `network`.
    pub fn endpoint(&self, container_id: &str, network: &str) -> Result<Option<EndpointRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("{ENDPOINT_SELECT} WHERE container_id = ?1 AND network = ?2"),
                params![container_id, network],
                endpoint_row,
            )
            .optional()?)
    }

    /// The host-side interface names of a container's endpoints.
    pub fn endpoint_ifnames(&self, container_id: &str) -> Result<Vec<String>> {
        let mut st = self.conn.prepare("SELECT ifname FROM endpoints WHERE container_id = ?1")?;
        let rows = st.query_map([container_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Each interface of a container with its network's gateways, in interface order.
    pub fn container_gateways(&self, container_id: &str) -> Result<Vec<Gateways>> {
        let mut st = self.conn.prepare(
            "SELECT e.ifname, n.gateway, n.gateway6, n.name FROM endpoints e JOIN networks n ON n.name = e.network WHERE e.container_id = ?1 ORDER BY length(e.ifname), e.ifname",
        )?;
        let rows = st
            .query_map([container_id], |r| {
                let network: String = r.get(3)?;
                let what = || format!("network {network}'s gateway");
                let g6: Option<String> = r.get(2)?;
                Ok(Gateways {
                    ifname: r.get(0)?,
                    gateway: ip(1, &r.get::<_, String>(1)?, what)?,
                    gateway6: g6.map(|g| ip(2, &g, what)).transpose()?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

impl Tx<'_> {
    /// IPv4 addresses leased on `network`.
    pub fn leased_ips(&self, network: &str) -> Result<HashSet<IpAddr>> {
        self.addresses("SELECT ip FROM endpoints WHERE network = ?1", network)
    }

    /// IPv6 addresses leased on `network`.
    pub fn leased_ips6(&self, network: &str) -> Result<HashSet<IpAddr>> {
        self.addresses("SELECT ip6 FROM endpoints WHERE network = ?1 AND ip6 IS NOT NULL", network)
    }

    fn addresses(&self, sql: &str, network: &str) -> Result<HashSet<IpAddr>> {
        let mut st = self.0.prepare(sql)?;
        let rows = st
            .query_map([network], |r| ip(0, &r.get::<_, String>(0)?, || format!("a lease on network {network}")))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn insert_endpoint(
        &self,
        container_id: &str,
        network: &str,
        ip: IpAddr,
        ifname: &str,
        aliases: &[String],
        ip6: Option<IpAddr>,
    ) -> Result<()> {
        self.0.execute(
            "INSERT INTO endpoints (container_id, network, ip, ifname, aliases, ip6) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                container_id,
                network,
                ip.to_string(),
                ifname,
                serde_json::to_string(aliases).unwrap_or_else(|_| "[]".into()),
                ip6.map(|a| a.to_string())
            ],
        )?;
        Ok(())
    }

    pub fn delete_endpoint(&self, container_id: &str, network: &str) -> Result<()> {
        self.0.execute(
            "DELETE FROM endpoints WHERE container_id = ?1 AND network = ?2",
            params![container_id, network],
        )?;
        Ok(())
    }

    /// Releases every lease of a container.
    pub fn release_endpoints(&self, container_id: &str) -> Result<()> {
        self.0.execute("DELETE FROM endpoints WHERE container_id = ?1", [container_id])?;
        Ok(())
    }
}
