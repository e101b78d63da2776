//! Network verbs: network create, ls, inspect, connect, prune, and `dns resolve` (disconnect
//! and rm are one engine call each: see `verbs`).

use crate::format::{inspect_template, print_inspected, ListFormat};
use anyhow::{bail, Result};
use cove_engine::network::{self, CreateOptions};
use cove_engine::run::Engine;

/// `network create`: `subnet` and `gateway` as given (at most one IPv4 and one IPv6 each).
pub fn create(
    eng: &mut Engine,
    name: &str,
    driver: &str,
    subnet: Vec<String>,
    gateway: Vec<String>,
    o: CreateOptions,
) -> Result<i32> {
    if driver != "bridge" {
        bail!("network driver {driver:?} is not supported (bridge)");
    }
    // Split by family: an IPv4 subnet and gateway, and optionally IPv6 ones.
    let is6 = |s: &String| s.contains(':');
    let (s6, s4): (Vec<String>, Vec<String>) = subnet.into_iter().partition(is6);
    let (g6, g4): (Vec<String>, Vec<String>) = gateway.into_iter().partition(is6);
    if s4.len() > 1 || s6.len() > 1 || g4.len() > 1 || g6.len() > 1 {
        bail!("--subnet and --gateway: at most one IPv4 and one IPv6 each");
    }
    let o = CreateOptions {
        subnet: s4.into_iter().next(),
        gateway: g4.into_iter().next(),
        subnet6: s6.into_iter().next(),
        gateway6: g6.into_iter().next(),
        ..o
    };
    println!("{}", network::create(eng, name, &o)?.id);
    Ok(0)
}

pub fn list(eng: &mut Engine, quiet: bool, filter: &[String], format: Option<&str>) -> Result<i32> {
    let format = ListFormat::parse(format)?;
    let filters = network::Filters::parse(filter, &["name", "id", "label", "driver"])?;
    let rows: Vec<_> = network::list(eng)?.into_iter().filter(|n| filters.matches(n)).collect();
    if quiet {
        for n in &rows {
            println!("{}", &n.id[..12]);
        }
        return Ok(0);
    }
    let data: Vec<serde_json::Value> = rows.iter().map(crate::docker::network_row).collect();
    let headers = [
        ("ID", "NETWORK ID"),
        ("Name", "NAME"),
        ("Driver", "DRIVER"),
        ("Scope", "SCOPE"),
        ("IPv6", "IPV6"),
        ("Internal", "INTERNAL"),
        ("Labels", "LABELS"),
        ("CreatedAt", "CREATED"),
        ("Subnet", "SUBNET"),
        ("Gateway", "GATEWAY"),
    ];
    format.print(&data, &headers, || {
        let mut table = crate::table::Table::new(&["NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY"]);
        for d in &data {
            let f = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            table.row(vec![f("ID"), f("Name"), f("Driver"), f("Subnet"), f("Gateway")]);
        }
        table.write(&mut std::io::stdout().lock())?;
        Ok(())
    })?;
    Ok(0)
}

pub fn inspect(eng: &mut Engine, networks: &[String], format: Option<&str>) -> Result<i32> {
    let tmpl = inspect_template(format)?;
    let mut out = vec![];
    let mut failed = false;
    for n in networks {
        match network::find(eng, n).and_then(|r| Ok(crate::docker::network_json(&r, &network::attached(eng, &r)?))) {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("cove: error: {e}");
                failed = true;
            }
        }
    }
    print_inspected(&out, tmpl.as_ref())?;
    Ok(if failed { 1 } else { 0 })
}

/// `dns resolve`: the answers a container on the network would get.
pub fn resolve(eng: &mut Engine, name: &str, qtype: &str, net: Option<&str>) -> Result<i32> {
    match network::resolve(eng, name, qtype, net) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            Ok(0)
        }
        // Like `host`/`nslookup`: a name that does not resolve is exit 1, not an engine failure.
        Err(e @ cove_engine::Error::NotFound(_)) => {
            eprintln!("cove: error: {e}");
            Ok(1)
        }
        Err(e) => Err(e.into()),
    }
}

/// `cove mdns ls`: names and services published, their state, the interfaces; renames.
pub fn mdns_ls(eng: &mut Engine) -> Result<i32> {
    let l = cove_engine::mdns::list(eng)?;
    println!("interfaces: {}", if l.interfaces.is_empty() { "(none)".to_string() } else { l.interfaces.join(", ") });
    let mut table = crate::table::Table::new(&["NAME", "SERVICE", "STATE", "ASKED FOR"]);
    for p in &l.published {
        let asked = if p.requested == p.name { String::new() } else { p.requested.clone() };
        table.row(vec![p.name.clone(), p.service_type.clone().unwrap_or_default(), p.state.clone(), asked]);
    }
    table.write(&mut std::io::stdout().lock())?;
    for n in &l.notes {
        eprintln!("cove: warning: {n}");
    }
    Ok(0)
}

/// `cove mdns browse [TYPE]`: one line a service, as avahi-browse -r prints the essentials.
pub fn mdns_browse(eng: &mut Engine, service_type: Option<&str>, timeout: std::time::Duration) -> Result<i32> {
    for s in cove_engine::mdns::browse(eng, service_type, timeout)? {
        let addrs: Vec<String> = s.addrs.iter().map(|a| a.to_string()).collect();
        println!("{}\t{}\t{}:{}\t{}\t{}", s.instance, s.service_type, s.host, s.port, addrs.join(","), s.txt.join(" "));
    }
    Ok(0)
}

/// `cove mdns resolve NAME`: `NAME<TAB>DATA` lines, as avahi-resolve; exit 1 when nobody answered.
pub fn mdns_resolve(eng: &mut Engine, name: &str, qtype: &str, timeout: std::time::Duration) -> Result<i32> {
    let records = cove_engine::mdns::resolve(eng, name, qtype, timeout)?;
    if records.is_empty() {
        eprintln!("cove: error: {name}: no answer on the LAN within {timeout:?}");
        return Ok(1);
    }
    for r in records {
        println!("{}\t{}", r.name.trim_end_matches('.'), r.data);
    }
    Ok(0)
}

pub fn connect(
    eng: &mut Engine,
    net: &str,
    container: &str,
    aliases: &[String],
    ip: Option<&str>,
    ip6: Option<&str>,
) -> Result<i32> {
    let fixed = network::StaticIp::parse(ip, ip6)?;
    network::connect(eng, net, container, aliases, fixed)?;
    Ok(0)
}

pub fn prune(eng: &mut Engine, filter: &[String]) -> Result<i32> {
    let filters = network::Filters::parse(filter, &["label", "label!"])?;
    let removed = network::prune(eng, &filters)?;
    if !removed.is_empty() {
        println!("Deleted Networks:");
        for n in removed {
            println!("{n}");
        }
    }
    Ok(0)
}
