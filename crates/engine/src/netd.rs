//! The engine's side of the network helper (crate `cove_netd`): the process entry of
//! `cove __netd`, finding or starting the helper, and the one place where the table the helper
//! serves ([`cove_netd::proto::Table`]) is built from the state database.

use crate::db::Db;
use crate::{Error, Result};
use cove_netd::proto::{Endpoint, Network, Table};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::Path;

pub use cove_netd::client::{running, stop};

/// Entry point of `cove __netd RUNDIR CONFIG FD` (CONFIG: the user's cove.conf, or empty).
/// Never returns.
pub fn main(run: &Path, config: Option<&Path>, report: Option<OwnedFd>) -> ! {
    // cove.conf's `allow_host_loopback` is the default of networks that do not say: the file
    // the command that started us found, re-read at every reload.
    let config = config.map(Path::to_path_buf);
    let loopback_default = Box::new(move || match &config {
        Some(p) => crate::config::load_from(p).map(|c| c.allow_host_loopback).map_err(|e| e.to_string()),
        None => Ok(false),
    });
    cove_sys::exit_now(cove_netd::helper::run(run, loopback_default, report))
}

/// A handle on the rootless network namespace, starting the helper if needed; `config`: the
/// user's cove.conf ([`crate::config::path`]) for a helper started now; `recover`: run with
/// the new namespace when this call started the helper (under its start lock), to re-wire the
/// containers of a helper that went away (the network module's `helper_netns` does).
pub fn rootless_netns(
    run: &Path,
    config: Option<&Path>,
    recover: impl FnOnce(std::os::fd::BorrowedFd<'_>),
) -> Result<OwnedFd> {
    Ok(cove_netd::client::rootless_netns(
        run,
        || {
            // The helper reads the user's cove.conf at every reload; its path is settled by the
            // command (with the whole environment: the helper gets only COVE_*, PATH and HOME; and
            // knowing whether it is rootless, which the user namespace hides). Empty: none.
            let config = config.map(|p| p.display().to_string()).unwrap_or_default();
            crate::spawn_helper("cove-netd", "__netd", &[run.display().to_string(), config]).map_err(|e| e.to_string())
        },
        recover,
    )?)
}

/// Resolver addresses (`--dns`, validated where given) on port 53.
fn dns_servers<'a>(list: impl IntoIterator<Item = &'a str>) -> Vec<SocketAddr> {
    list.into_iter().filter_map(|a| a.parse::<IpAddr>().ok()).map(|a| SocketAddr::new(a, 53)).collect()
}

/// The networks and endpoints the helper serves, read in one transaction. A row that does
/// not decode fails the whole (the helper keeps its last table): never a partial table, which
/// would drop listeners and names.
pub fn table(db: &Db) -> Result<Table> {
    db.read(|db| {
        let networks = db
            .networks()?
            .into_iter()
            .map(|n| {
                let bad = |what: &str| Error::Corrupt(format!("network {} has a corrupt {what}", n.name));
                Ok(Network {
                    gateway: n.gateway.parse().map_err(|_| bad("gateway"))?,
                    gateway6: n.gateway6.as_deref().map(str::parse).transpose().map_err(|_| bad("IPv6 gateway"))?,
                    internal: n.internal,
                    dns: n.options.dns.iter().map(|a| SocketAddr::new(*a, 53)).collect(),
                    allow_host_loopback: n.options.allow_host_loopback,
                    mdns: n.options.mdns,
                    mdns_interfaces: n.options.mdns_interfaces.clone(),
                    mdns_resolve: n.options.mdns_resolve.unwrap_or(true),
                    name: n.name,
                    bridge: n.bridge,
                    subnet: n.subnet,
                    subnet6: n.subnet6,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let containers: HashMap<String, crate::db::ContainerRow> =
            db.containers()?.into_iter().map(|c| (c.id.clone(), c)).collect();
        let mut endpoints = vec![];
        for e in db.all_endpoints()? {
            // An endpoint outlives its container only inside a transaction that removes both.
            let Some(c) = containers.get(&e.container_id) else { continue };
            let req = c.request()?;
            let mdns_labels = req
                .labels
                .iter()
                .filter_map(|l| l.split_once('=').or(Some((l.as_str(), ""))))
                .filter(|(k, _)| k.starts_with("cove.mdns."))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            endpoints.push(Endpoint {
                network: e.network,
                id: e.container_id,
                name: c.name.clone(),
                ip: e.ip,
                ip6: e.ip6,
                ifname: e.ifname,
                aliases: e.aliases,
                // The container's own upstreams (`--dns`) come from its run request.
                dns: dns_servers(req.dns.iter().map(String::as_str)),
                mdns_labels,
            });
        }
        Ok(Table { networks, endpoints })
    })
}

/// Sends the helper the table of the database at `db` (after a container joined or left a
/// network, or a network went) and waits until it serves it. Nothing to do when the helper
/// is not running.
pub fn sync(run: &Path, db: &Path) -> Result<()> {
    cove_netd::client::sync_built(run, || table(&Db::open(db)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_from_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("cove.db")).unwrap();
        let req = crate::spec::RunRequest { dns: vec!["192.0.2.53".into()], ..Default::default() };
        db.raw()
            .execute_batch(&format!(
                "INSERT INTO networks (id, name, subnet, gateway, bridge, internal, created, options) VALUES ('n1', 'web', '10.97.3.0/24', '10.97.3.1', 'cove-n1', 1, '', '{{\"dns\":[\"192.0.2.1\"],\"allow_host_loopback\":true}}');
                 INSERT INTO containers (id, name, image_id, image, config, state, created) VALUES ('c1', 'db', 'i', 'i', '{}', 'running', '');
                 INSERT INTO endpoints (container_id, network, ip, ifname, aliases, ip6) VALUES ('c1', 'web', '10.97.3.2', 'cv00000000010', '[\"pg\"]', NULL);",
                serde_json::to_string(&req).unwrap().replace('\'', "''")
            ))
            .unwrap();
        let t = table(&db).unwrap();
        assert_eq!(t.networks.len(), 1);
        let n = &t.networks[0];
        assert_eq!(
            (n.name.as_str(), n.bridge.as_str(), n.internal, n.allow_host_loopback),
            ("web", "cove-n1", true, Some(true))
        );
        assert_eq!(n.dns, vec!["192.0.2.1:53".parse::<SocketAddr>().unwrap()]);
        let e = &t.endpoints[0];
        assert_eq!(
            (e.name.as_str(), e.aliases.clone(), e.ip),
            ("db", vec!["pg".to_string()], "10.97.3.2".parse::<IpAddr>().unwrap())
        );
        // The container's own resolvers come from its run request.
        assert_eq!(e.dns, vec!["192.0.2.53:53".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn a_corrupt_row_fails_the_table_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("cove.db")).unwrap();
        db.raw()
            .execute_batch(
                "INSERT INTO networks (id, name, subnet, gateway, bridge, internal, created) VALUES ('n1', 'web', '10.97.3.0/24', '10.97.3.1', 'cove-n1', 0, '');
                 INSERT INTO containers (id, name, image_id, image, config, state, created) VALUES ('c1', 'db', 'i', 'i', '{}', 'running', '');
                 INSERT INTO endpoints (container_id, network, ip, ifname, aliases, ip6) VALUES ('c1', 'web', '10.97.3.2', 'cv00000000010', '[\"pg\"', NULL);",
            )
            .unwrap();
        let e = table(&db).unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        assert!(e.to_string().contains("container c1 on network web"), "{e}");
        // A network's options that do not decode name the network.
        db.raw().execute_batch("DELETE FROM endpoints; UPDATE networks SET options = '{' WHERE name = 'web';").unwrap();
        let e = table(&db).unwrap_err();
        assert!(e.to_string().contains("network web has corrupt options"), "{e}");
    }
}
