//! Docker-shaped JSON: what `inspect` prints for a container and what the listing commands
//! (`ps`, `images`, `network ls`) hand to `--format`, with Docker's field names, built from the
//! engine's rows; and Docker's human units (sizes, "5 minutes ago").

use cove_engine::db::{ContainerRow, ContainerState, ImageRow};
use cove_engine::lifecycle;
use cove_engine::network::{Attached, NetworkRow};
use cove_engine::run::Engine;
use cove_engine::spec::RunRequest;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::IpAddr;

pub fn container_json(eng: &Engine, c: &ContainerRow) -> anyhow::Result<serde_json::Value> {
    let req = serde_json::to_value(c.request()?)?;
    // What the container really runs with (image defaults merged): its OCI spec.
    let spec: serde_json::Value = std::fs::read(eng.dirs.container(&c.id).join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let env = spec.pointer("/process/env").cloned().filter(|e| e.is_array()).or_else(|| req.get("env").cloned());
    Ok(serde_json::json!({
        "Id": c.id,
        "Name": format!("/{}", c.name),
        "Created": c.created,
        "Image": c.image_id,
        "State": {
            "Status": c.state,
            "Running": c.state == ContainerState::Running,
            "Pid": c.pid.unwrap_or(0),
            "ExitCode": c.exit_code.unwrap_or(0),
            "StartedAt": c.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": c.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
        "Config": {
            "Image": c.image,
            "Cmd": req.get("cmd"),
            "Env": env,
            "Hostname": spec.get("hostname").cloned().unwrap_or_default(),
            "User": req.get("user").cloned().unwrap_or_default(),
            "WorkingDir": req.get("workdir").cloned().unwrap_or_default(),
            "Tty": req.get("tty"),
            "Labels": req.get("labels").and_then(|l| l.as_array()).map(|l| {
                l.iter().filter_map(|x| x.as_str()).map(|x| { let (k, v) = x.split_once('=').unwrap_or((x, "")); (k.to_string(), serde_json::Value::from(v)) }).collect::<serde_json::Map<_, _>>()
            }),
        },
        "NetworkSettings": network_settings(eng, c)?,
        "HostConfig": {
            "AutoRemove": req.get("rm"),
            "ReadonlyRootfs": req.get("read_only"),
            "Binds": req.get("volumes"),
            "Privileged": req.get("privileged"),
            "CapAdd": req.get("cap_add"),
            "CapDrop": req.get("cap_drop"),
            // No --network: the default network ("bridge" for Docker's tools).
            "NetworkMode": req.get("network").cloned().filter(|v| !v.is_null() && v.as_str() != Some("")).unwrap_or_else(|| "bridge".into()),
            "Dns": req.get("dns"),
            "DnsSearch": req.get("dns_search"),
            "DnsOptions": req.get("dns_options"),
            "ExtraHosts": req.get("add_hosts"),
            "PublishAllPorts": req.get("publish_all"),
            "RestartPolicy": { "Name": req.get("restart").cloned().filter(|v| !v.is_null()).unwrap_or_else(|| "no".into()) },
        },
    }))
}

fn network_settings(eng: &Engine, c: &ContainerRow) -> anyhow::Result<serde_json::Value> {
    let req = c.request()?;
    let nets = cove_engine::network::list(eng).unwrap_or_default();
    let eps = eng.db.container_endpoints6(&c.id).unwrap_or_default();
    let aliases: std::collections::HashMap<String, Vec<String>> =
        eng.db.container_aliases(&c.id).unwrap_or_default().into_iter().collect();
    let prefix = |subnet: &str| subnet.split('/').nth(1).and_then(|p| p.parse::<u8>().ok()).unwrap_or(0);
    let mut networks = serde_json::Map::new();
    for (k, (name, ip, ip6)) in eps.iter().enumerate() {
        let n = nets.iter().find(|n| &n.name == name);
        let mut v = serde_json::json!({
            "NetworkID": n.map(|n| n.id.clone()).unwrap_or_default(),
            "IPAddress": ip,
            "IPPrefixLen": n.map(|n| prefix(&n.subnet)).unwrap_or(0),
            "Gateway": n.map(|n| n.gateway.clone()).unwrap_or_default(),
            "GlobalIPv6Address": ip6.clone().unwrap_or_default(),
            "GlobalIPv6PrefixLen": n.and_then(|n| n.subnet6.as_deref()).map(prefix).unwrap_or(0),
            "IPv6Gateway": n.and_then(|n| n.gateway6.clone()).unwrap_or_default(),
            "Aliases": aliases.get(name).cloned().unwrap_or_default(),
        });
        if let (0, Some(m)) = (k, &req.mac_address) {
            v["MacAddress"] = m.to_lowercase().replace('-', ":").into();
        }
        // --ip/--ip6 (on the first network, as run takes them).
        if k == 0 && (req.ip.is_some() || req.ip6.is_some()) {
            v["IPAMConfig"] = serde_json::json!({ "IPv4Address": req.ip.clone().unwrap_or_default(), "IPv6Address": req.ip6.clone().unwrap_or_default() });
        }
        networks.insert(name.clone(), v);
    }
    // Docker's Ports: "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, ...]; null while
    // the container does not run.
    let mut ports = serde_json::Map::new();
    for p in cove_engine::ports::served(&eng.dirs.run, &eng.dirs.container_run(&c.id)) {
        let key = format!("{}/{}", p.container_port, p.proto);
        let entry = ports.entry(key).or_insert_with(|| serde_json::json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(serde_json::json!({ "HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string() }));
        }
    }
    // The top-level fields are the first network's (eth0's); the map is sorted by name.
    let first = eps.first().and_then(|(n, _, _)| networks.get(n)).cloned().unwrap_or_else(|| serde_json::json!({}));
    let field = |k: &str| first.get(k).cloned().unwrap_or_else(|| serde_json::json!(""));
    Ok(serde_json::json!({
        "IPAddress": field("IPAddress"),
        "IPPrefixLen": first.get("IPPrefixLen").cloned().unwrap_or_else(|| 0.into()),
        "Gateway": field("Gateway"),
        "GlobalIPv6Address": field("GlobalIPv6Address"),
        "IPv6Gateway": field("IPv6Gateway"),
        "MacAddress": field("MacAddress"),
        "Ports": ports,
        "Networks": networks,
    }))
}

/// One `ps` row with Docker's field names (what `--format` templates and json see).
pub fn ps_row(eng: &Engine, c: &ContainerRow, req: &RunRequest, no_trunc: bool) -> serde_json::Value {
    let mut cmd = req.cmd.join(" ");
    if cmd.chars().count() > 20 && !no_trunc {
        cmd = cmd.chars().take(17).collect::<String>() + "...";
    }
    // Docker's PORTS: "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp" while the container runs.
    let ports: Vec<String> = if c.state == ContainerState::Running {
        cove_engine::ports::served(&eng.dirs.run, &eng.dirs.container_run(&c.id))
            .iter()
            .map(|p| format!("{}->{}/{}", std::net::SocketAddr::new(p.host_ip, p.host_port), p.container_port, p.proto))
            .collect()
    } else {
        vec![]
    };
    let networks: Vec<String> =
        eng.db.container_endpoints6(&c.id).unwrap_or_default().into_iter().map(|(n, _, _)| n).collect();
    serde_json::json!({
        "ID": if no_trunc { c.id.clone() } else { cove_oci::short_id(&c.id).to_string() },
        "Image": c.image,
        "Command": format!("\"{cmd}\""),
        "CreatedAt": c.created,
        "RunningFor": ago(&c.created),
        "Ports": ports.join(", "),
        "State": c.state,
        "Status": lifecycle::status_text(c, ago),
        "Names": c.name,
        "Labels": req.labels.join(","),
        "Networks": networks.join(","),
    })
}

/// `image inspect`: Docker-shaped JSON of an image; `tags`: (name, image id) of every tag.
pub fn image_json(img: &ImageRow, tags: &[(String, String)]) -> serde_json::Value {
    let cfg: serde_json::Value = serde_json::from_str(&img.config).unwrap_or(json!({}));
    let tags: Vec<&String> = tags.iter().filter(|(_, id)| *id == img.id).map(|(n, _)| n).collect();
    let digests: Vec<String> = img
        .digest
        .iter()
        .flat_map(|d| tags.iter().map(move |t| format!("{}@{d}", t.rsplit_once(':').map(|x| x.0).unwrap_or(t))))
        .collect();
    json!({
        "Id": img.id,
        "RepoTags": tags,
        "RepoDigests": digests,
        "Created": img.created,
        "Size": img.size,
        "Architecture": cfg.get("architecture").cloned().unwrap_or(json!("amd64")),
        "Os": cfg.get("os").cloned().unwrap_or(json!("linux")),
        "Author": cfg.get("author").cloned().unwrap_or(json!("")),
        "Config": docker_config(cfg.get("config")),
        "RootFS": { "Type": "layers", "Layers": img.diff_ids },
        "Metadata": { "LastTagTime": img.added },
    })
}

/// Docker spells image config keys in PascalCase, as the OCI config does: pass through.
fn docker_config(c: Option<&serde_json::Value>) -> serde_json::Value {
    let c = c.cloned().unwrap_or(json!({}));
    json!({
        "User": c.get("User").cloned().unwrap_or(json!("")),
        "ExposedPorts": c.get("ExposedPorts").cloned().unwrap_or(serde_json::Value::Null),
        "Env": c.get("Env").cloned().unwrap_or(json!([])),
        "Entrypoint": c.get("Entrypoint").cloned().unwrap_or(serde_json::Value::Null),
        "Cmd": c.get("Cmd").cloned().unwrap_or(serde_json::Value::Null),
        "Volumes": c.get("Volumes").cloned().unwrap_or(serde_json::Value::Null),
        "WorkingDir": c.get("WorkingDir").cloned().unwrap_or(json!("")),
        "Labels": c.get("Labels").cloned().unwrap_or(serde_json::Value::Null),
        "StopSignal": c.get("StopSignal").cloned().unwrap_or(serde_json::Value::Null),
    })
}

/// The `images` rows of one image: one per tag (`<none>` when untagged), Docker's field
/// names. `tags`: (name, image id) of every tag.
pub fn image_rows(i: &ImageRow, tags: &[(String, String)], no_trunc: bool) -> Vec<serde_json::Value> {
    let id = if no_trunc { i.id.clone() } else { cove_oci::short_id(&i.id).to_string() };
    let mine: Vec<&String> = tags.iter().filter(|(_, t)| *t == i.id).map(|(n, _)| n).collect();
    let rows: Vec<(String, String)> = if mine.is_empty() {
        vec![("<none>".into(), "<none>".into())]
    } else {
        mine.iter()
            .map(|n| match n.split_once('@') {
                Some((r, _)) => (r.to_string(), "<none>".to_string()),
                None => n
                    .rsplit_once(':')
                    .map(|(r, t)| (r.to_string(), t.to_string()))
                    .unwrap_or(((*n).clone(), "latest".into())),
            })
            .collect()
    };
    rows.into_iter()
        .map(|(repo, tag)| {
            serde_json::json!({
                "Repository": repo, "Tag": tag, "Digest": i.digest.clone().unwrap_or_else(|| "<none>".into()), "ID": id,
                "CreatedSince": ago(&i.created), "CreatedAt": i.created, "Size": human_size(i.size),
            })
        })
        .collect()
}

/// The `network ls` row of a network, Docker's field names.
pub fn network_row(n: &NetworkRow) -> serde_json::Value {
    let subnet = n.subnet6.as_ref().map_or(n.subnet.clone(), |s6| format!("{},{s6}", n.subnet));
    let gateway = n.gateway6.as_ref().map_or(n.gateway.clone(), |g6| format!("{},{g6}", n.gateway));
    serde_json::json!({
        "ID": &n.id[..12], "Name": n.name, "Driver": "bridge", "Scope": "local",
        "IPv6": n.subnet6.is_some().to_string(), "Internal": n.internal.to_string(),
        "Labels": n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "CreatedAt": n.created, "Subnet": subnet, "Gateway": gateway,
    })
}

/// One `IPAM.Config` entry of `network inspect`, as Docker shows it.
fn ipam_config(
    subnet: &str,
    gateway: Option<&str>,
    range: Option<&str>,
    aux: &BTreeMap<String, IpAddr>,
) -> serde_json::Value {
    let mut c = serde_json::json!({ "Subnet": subnet, "Gateway": gateway });
    if let Some(r) = range {
        c["IPRange"] = r.into();
    }
    let s: Option<cove_engine::network::Subnet> = subnet.parse().ok();
    let mine: serde_json::Map<String, serde_json::Value> = aux
        .iter()
        .filter(|(_, a)| s.is_some_and(|s| s.contains(**a)))
        .map(|(k, a)| (k.clone(), a.to_string().into()))
        .collect();
    if !mine.is_empty() {
        c["AuxiliaryAddresses"] = mine.into();
    }
    c
}

/// Docker-shaped `network inspect` of `n` with the containers attached to it.
pub fn network_json(n: &NetworkRow, attached: &[Attached]) -> serde_json::Value {
    let mut containers = serde_json::Map::new();
    for a in attached {
        let v6 = a.ip6.map(|(ip, p)| format!("{ip}/{p}")).unwrap_or_default();
        containers.insert(
            a.id.clone(),
            json!({ "Name": a.name, "IPv4Address": format!("{}/{}", a.ip, a.prefix_len), "IPv6Address": v6 }),
        );
    }
    let mut options = json!({ "com.docker.network.bridge.name": n.bridge });
    if let Some(m) = n.options.mtu {
        options["com.docker.network.driver.mtu"] = m.to_string().into();
    }
    if let Some(b) = n.options.allow_host_loopback {
        options["allow_host_loopback"] = b.to_string().into();
    }
    let dns: Vec<String> = n.options.dns.iter().map(|a| a.to_string()).collect();
    let ipam: Vec<serde_json::Value> =
        std::iter::once(ipam_config(&n.subnet, Some(&n.gateway), n.options.ip_range.as_deref(), &n.options.aux))
            .chain(
                n.subnet6
                    .iter()
                    .map(|s6| ipam_config(s6, n.gateway6.as_deref(), n.options.ip_range6.as_deref(), &n.options.aux)),
            )
            .collect();
    json!({
        "Name": n.name, "Id": n.id, "Created": n.created, "Driver": "bridge", "Scope": "local",
        "Internal": n.internal, "EnableIPv6": n.subnet6.is_some(),
        "IPAM": { "Driver": "default", "Config": ipam },
        "Options": options,
        "Labels": n.labels,
        "NetworkDNSServers": dns,
        "Containers": containers,
    })
}

pub fn human_size(n: i64) -> String {
    let n = n as f64;
    for (unit, div) in [("GB", 1e9), ("MB", 1e6), ("kB", 1e3)] {
        if n >= div {
            return format!("{:.3}{unit}", n / div).replace(".000", "");
        }
    }
    format!("{n}B")
}

pub fn ago(ts: &str) -> String {
    let Some(t) = cove_engine::db::parse_rfc3339(ts) else { return "N/A".into() };
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let s = (now - t).max(0);
    match s {
        0..=1 => "Less than a second ago".into(),
        2..=59 => format!("{s} seconds ago"),
        60..=3599 => format!("{} minutes ago", s / 60),
        3600..=86399 => format!("{} hours ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageRow {
        ImageRow {
            id: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            config: r#"{"architecture":"arm64","config":{"Cmd":["sh"],"Env":["A=1"]}}"#.into(),
            diff_ids: vec!["sha256:aa".into()],
            size: 1_234_567,
            created: "2026-01-02T03:04:05Z".into(),
            added: "2026-01-02T03:04:06Z".into(),
            digest: Some("sha256:dd".into()),
        }
    }

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
        assert_eq!(ago("garbage"), "N/A");
    }

    #[test]
    fn image_rows_one_per_tag_or_none() {
        let i = image();
        let none = image_rows(&i, &[], false);
        assert_eq!(none.len(), 1);
        assert_eq!((none[0]["Repository"].as_str(), none[0]["Tag"].as_str()), (Some("<none>"), Some("<none>")));
        assert_eq!(none[0]["ID"], cove_oci::short_id(&i.id));
        assert_eq!(none[0]["Size"], "1.235MB");
        let tags = vec![
            ("bb:1".to_string(), i.id.clone()),
            ("x@sha256:dd".to_string(), i.id.clone()),
            ("other:2".to_string(), "sha256:other".to_string()),
        ];
        let rows = image_rows(&i, &tags, true);
        let pairs: Vec<(&str, &str)> =
            rows.iter().map(|r| (r["Repository"].as_str().unwrap(), r["Tag"].as_str().unwrap())).collect();
        assert_eq!(pairs, [("bb", "1"), ("x", "<none>")]);
        assert_eq!(rows[0]["ID"], i.id);
    }

    #[test]
    fn image_inspect_shape() {
        let i = image();
        let v = image_json(&i, &[("bb:1".to_string(), i.id.clone())]);
        assert_eq!(v["RepoTags"], json!(["bb:1"]));
        assert_eq!(v["RepoDigests"], json!(["bb@sha256:dd"]));
        assert_eq!(v["Architecture"], "arm64");
        assert_eq!(v["Os"], "linux");
        assert_eq!(v["Config"]["Cmd"], json!(["sh"]));
        assert_eq!(v["Config"]["WorkingDir"], "");
        assert_eq!(v["RootFS"]["Layers"], json!(["sha256:aa"]));
    }
}
