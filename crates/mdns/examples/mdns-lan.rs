//! Runs the engine on a real interface with the real sockets (port 5353, the groups): for
//! trying it against avahi-daemon or python-zeroconf on a LAN of network namespaces made for
//! the purpose (never on a machine's real interfaces):
//!
//! ```text
//! ip netns exec lan-a mdns-lan IFACE ADDR NAME [SECONDS] [RESOLVE-NAME] [BROWSE-TYPE]
//! ```
//! Publishes NAME with ADDR on IFACE and an `_http._tcp` service on it, prints events, resolves
//! RESOLVE-NAME (A) and browses BROWSE-TYPE after 3 s, then runs until SECONDS and says goodbye.

use std::net::IpAddr;
use std::time::Duration;

use cove_mdns::hickory_proto::rr::{Name, RecordType};
use cove_mdns::{channel, serve, sockets, Interface, Options, ServiceSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: mdns-lan IFACE ADDR NAME [SECONDS] [RESOLVE-NAME] [BROWSE-TYPE]".into());
    }
    let iface = Interface {
        index: nix::net::if_::if_nametoindex(args[1].as_str())?,
        name: args[1].clone(),
        addrs: vec![args[2].parse::<IpAddr>()?],
    };
    let name = args[3].clone();
    let secs: u64 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(20);
    let socks = sockets::open(std::slice::from_ref(&iface))?;
    let (control, commands) = channel()?;
    let options = Options::standard(vec![iface]);
    let engine = std::thread::spawn(move || serve(socks, options, commands, |e| println!("event: {e:?}")));
    control.publish_host(&name)?;
    control.publish_service(ServiceSpec {
        service_type: "_http._tcp".into(),
        instance: format!("web on {name}"),
        host: name.clone(),
        port: 8080,
        txt: vec!["path=/".into()],
    })?;
    std::thread::sleep(Duration::from_secs(3));
    if let Some(other) = args.get(5) {
        let answers =
            control.resolve(&Name::from_ascii(format!("{other}."))?, RecordType::A, Duration::from_secs(1))?;
        println!("resolve {other}: {:?}", answers.iter().map(|r| r.data.to_string()).collect::<Vec<_>>());
    }
    if let Some(t) = args.get(6) {
        for s in control.browse(t, Duration::from_secs(2))? {
            println!("browse {t}: {s:?}");
        }
    }
    println!("published: {:?}", control.published()?);
    std::thread::sleep(Duration::from_secs(secs.saturating_sub(3)));
    control.shutdown();
    engine.join().map_err(|_| "engine thread panicked")??;
    Ok(())
}
