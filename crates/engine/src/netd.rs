//! The engine's side of the network helper (crate `cove_netd`): the process entry of
//! `cove __netd`, finding or starting the helper, and the one place where the table the helper
//! serves ([`cove_netd::proto::Table`]) is built from the state database.

use crate::{Error, Result};
use cove_netd::proto::{Endpoint, Network, Table};
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
/// user's cove.conf ([`crate::config::path`]) for a helper started now.
pub fn rootless_netns(run: &Path, config: Option<&Path>) -> Result<OwnedFd> {
    Ok(cove_netd::client::rootless_netns(run, || {
        // The helper reads the user's cove.conf at every reload; its path is settled by the
        // command (with the whole environment: the helper gets only COVE_*, PATH and HOME; and
        // knowing whether it is rootless, which the user namespace hides). Empty: none.
        let config = config.map(|p| p.display().to_string()).unwrap_or_default();
        crate::spawn_helper("cove-netd", "__netd", &[run.display().to_string(), config]).map_err(|e| e.to_string())
    })?)
}

/// Resolver addresses stored as a JSON array of IPs (`--dns`), on port 53.
fn dns_servers(json: Option<&str>) -> Vec<SocketAddr> {
    let list: Vec<String> = json.and_then(|d| serde_json::from_str(d).ok()).unwrap_or_default();
    list.iter().filter_map(|a| a.parse::<IpAddr>().ok()).map(|a| SocketAddr::new(a, 53)).collect()
}

/// The networks and endpoints the helper serves, read in one transaction. A row that fails to
/// read fails the whole (the helper keeps its last table): never a partial table, which would
/// drop listeners and names.
pub fn table(conn: &rusqlite::Connection) -> Result<Table> {
    let tx = conn.unchecked_transaction()?;
    let networks = tx
        .prepare("SELECT name, gateway, bridge, internal, subnet, subnet6, gateway6, json_extract(options, '$.dns'), json_extract(options, '$.allow_host_loopback') FROM networks")?
        .query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?),
                (r.get::<_, String>(4)?, r.get::<_, Option<String>>(5)?, r.get::<_, Option<String>>(6)?, r.get::<_, Option<String>>(7)?),
                r.get::<_, Option<i64>>(8)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .filter_map(|((name, gw, bridge, internal), (subnet, subnet6, gw6, dns), host_loopback)| {
            Some(Network {
                name,
                bridge,
                subnet,
                subnet6,
                gateway: gw.parse().ok()?,
                gateway6: gw6.and_then(|g| g.parse().ok()),
                internal: internal != 0,
                dns: dns_servers(dns.as_deref()),
                allow_host_loopback: host_loopback.map(|b| b != 0),
            })
        })
        .collect();
    let endpoints = tx
        // `--dns` is the run request's `dns` (the `RunRequest` of the spec module), validated there.
        .prepare("SELECT e.network, e.container_id, c.name, e.ip, e.ifname, e.aliases, e.ip6, json_extract(c.config, '$.dns') FROM endpoints e JOIN containers c ON c.id = e.container_id")?
        .query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?),
                (r.get::<_, String>(4)?, r.get::<_, String>(5)?, r.get::<_, Option<String>>(6)?, r.get::<_, Option<String>>(7)?),
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .filter_map(|((network, id, name, ip), (ifname, aliases, ip6, dns))| {
            Some(Endpoint { network, id, name, ip: ip.parse().ok()?, ip6: ip6.and_then(|a| a.parse().ok()), ifname, aliases: serde_json::from_str(&aliases).unwrap_or_default(), dns: dns_servers(dns.as_deref()) })
        })
        .collect();
    Ok(Table { networks, endpoints })
}

/// Sends the helper the table of the database at `db` (after a container joined or left a
/// network, or a network went) and waits until it serves it. Nothing to do when the helper
/// is not running.
pub fn sync(run: &Path, db: &Path) -> Result<()> {
    if !running(run) {
        return Ok(());
    }
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Other(format!("open {}: {e}", db.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let t = table(&conn).map_err(|e| Error::Other(format!("read {}: {e}", db.display())))?;
    Ok(cove_netd::client::sync(run, &t)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_from_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("cove.db")).unwrap();
        let req = crate::spec::RunRequest { dns: vec!["192.0.2.53".into()], ..Default::default() };
        db.conn
            .execute_batch(&format!(
                "INSERT INTO networks (id, name, subnet, gateway, bridge, internal, created, options) VALUES ('n1', 'web', '10.97.3.0/24', '10.97.3.1', 'cove-n1', 1, '', '{{\"dns\":[\"192.0.2.1\"],\"allow_host_loopback\":true}}');
                 INSERT INTO containers (id, name, image_id, image, config, state, created) VALUES ('c1', 'db', 'i', 'i', '{}', 'running', '');
                 INSERT INTO endpoints (container_id, network, ip, ifname, aliases, ip6) VALUES ('c1', 'web', '10.97.3.2', 'cv00000000010', '[\"pg\"]', NULL);",
                serde_json::to_string(&req).unwrap().replace('\'', "''")
            ))
            .unwrap();
        let t = table(&db.conn).unwrap();
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
}
