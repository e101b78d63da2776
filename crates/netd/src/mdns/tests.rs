use super::*;
use crate::proto::{Endpoint, Network, Table};

fn net(name: &str, mdns: bool, ifaces: &[&str]) -> Network {
    Network {
        name: name.into(),
        bridge: format!("cove-{name}"),
        subnet: "10.90.0.0/24".into(),
        subnet6: None,
        gateway: "10.90.0.1".parse().unwrap(),
        gateway6: None,
        internal: false,
        dns: vec![],
        allow_host_loopback: None,
        mdns,
        mdns_interfaces: ifaces.iter().map(|s| s.to_string()).collect(),
        mdns_resolve: true,
    }
}

fn ep(network: &str, id: &str, name: &str, ip: &str, labels: &[(&str, &str)]) -> Endpoint {
    Endpoint {
        network: network.into(),
        id: id.into(),
        name: name.into(),
        aliases: vec![],
        ip: ip.parse().unwrap(),
        ip6: None,
        ifname: format!("cv{id}"),
        dns: vec![],
        mdns_labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

const SERVICES: &str =
    "# comment\nhttp\t\t80/tcp\t\twww\t# WorldWideWeb HTTP\nredis\t6379/tcp\nsyslog\t514/udp\nbad_name\t7/tcp\n";

fn ports(id: &str) -> Vec<PortInfo> {
    match id {
        "a" => vec![
            PortInfo { udp: false, host_port: 12000, container_port: 6379 },
            PortInfo { udp: true, host_port: 5514, container_port: 514 },
            // No label and not in the services file: no service.
            PortInfo { udp: false, host_port: 9999, container_port: 9999 },
        ],
        "b" => vec![PortInfo { udp: false, host_port: 8080, container_port: 80 }],
        _ => vec![],
    }
}

#[test]
fn services_file_names_ports() {
    let f = ServicesFile::parse(SERVICES);
    assert_eq!(f.name(80, "tcp"), Some("http"));
    assert_eq!(f.name(6379, "tcp"), Some("redis"));
    assert_eq!(f.name(514, "udp"), Some("syslog"));
    assert_eq!(f.name(514, "tcp"), None);
    assert_eq!(f.name(7, "tcp"), None, "not a DNS-SD service name");
}

#[test]
fn published_names_and_services_of_mdns_networks() {
    let t = Table {
        networks: vec![net("mycluster", true, &[]), net("quiet", false, &[])],
        endpoints: vec![
            ep("mycluster", "a", "node1", "10.90.0.2", &[]),
            ep(
                "mycluster",
                "b",
                "web",
                "10.90.0.3",
                &[("cove.mdns.service.80", "_myapp._tcp"), ("cove.mdns.instance", "Front door")],
            ),
            // Not running: its interface is gone.
            ep("mycluster", "c", "gone", "10.90.0.4", &[]),
            ep("quiet", "d", "hidden", "10.90.1.2", &[]),
        ],
    };
    let here: BTreeSet<String> = ["cva", "cvb", "cvd"].iter().map(|s| s.to_string()).collect();
    let d = desired(&t, &here, ports, &ServicesFile::parse(SERVICES));
    let hosts: Vec<&str> = d.hosts.iter().map(String::as_str).collect();
    assert_eq!(
        hosts,
        [
            "mycluster.local",
            "node1-mycluster.local",
            "node1.mycluster.local",
            "web-mycluster.local",
            "web.mycluster.local"
        ]
    );
    let services: Vec<(&str, &str, &str, u16)> =
        d.services.iter().map(|s| (s.service_type.as_str(), s.instance.as_str(), s.host.as_str(), s.port)).collect();
    assert_eq!(
        services,
        [
            ("_myapp._tcp", "Front door", "web.mycluster.local", 8080),
            ("_redis._tcp", "node1 on mycluster", "node1.mycluster.local", 12000),
            ("_syslog._udp", "node1 on mycluster", "node1.mycluster.local", 5514),
        ]
    );
    assert!(d.services.iter().all(|s| s.txt.iter().any(|t| t.starts_with("container="))));
    assert_eq!(d.only, None);
}

#[test]
fn interfaces_narrow_only_when_every_mdns_network_names_some() {
    let t = |nets: Vec<Network>| Table { networks: nets, endpoints: vec![] };
    let f = ServicesFile::default();
    let here = BTreeSet::new();
    let d = desired(&t(vec![net("a", true, &["eth0"]), net("b", true, &["eth1"])]), &here, ports, &f);
    assert_eq!(d.only, Some(["eth0", "eth1"].iter().map(|s| s.to_string()).collect()));
    let d = desired(&t(vec![net("a", true, &["eth0"]), net("b", true, &[])]), &here, ports, &f);
    assert_eq!(d.only, None);
    // An internal network is never published, nor a network without --mdns.
    let mut internal = net("c", true, &[]);
    internal.internal = true;
    assert!(desired(&t(vec![internal, net("d", false, &[])]), &here, ports, &f).hosts.is_empty());
}

#[test]
fn containers_resolve_this_hosts_local_names_to_their_own_addresses() {
    let t = Table {
        networks: vec![net("mycluster", true, &[]), net("quiet", false, &[])],
        endpoints: vec![ep("mycluster", "a", "node1", "10.90.0.2", &[]), ep("quiet", "d", "hidden", "10.90.1.2", &[])],
    };
    let here: BTreeSet<String> = ["cva", "cvd"].iter().map(|s| s.to_string()).collect();
    let names: Vec<(String, Vec<std::net::Ipv4Addr>)> =
        local_names(&t, &here).into_iter().map(|l| (l.name, l.ipv4)).collect();
    let ip = |s: &str| vec![s.parse::<std::net::Ipv4Addr>().unwrap()];
    assert_eq!(
        names,
        [
            ("mycluster".to_string(), ip("10.90.0.1")),
            ("node1.mycluster".to_string(), ip("10.90.0.2")),
            ("node1-mycluster".to_string(), ip("10.90.0.2")),
        ]
    );
}

#[test]
fn never_cove_interfaces_or_loopback() {
    for n in ["lo", "cove-0123abcd", "cv0123456789a0"] {
        assert!(!is_lan_name(n), "{n}");
    }
    for n in ["eth0", "wlan0", "enp3s0", "br0"] {
        assert!(is_lan_name(n), "{n}");
    }
    // Whatever this machine has: none of them is loopback or cove's.
    assert!(lan_interfaces(None).iter().all(|i| is_lan_name(&i.name)));
}
