//! Serves a host name and a service over 127.0.0.1 unicast (never multicast), for poking at the
//! engine by hand with `dig`:
//!
//! ```text
//! cargo run -p cove-mdns --example mdns-loopback -- 15353 node1.mycluster.local &
//! dig -p 15353 @127.0.0.1 node1.mycluster.local A      # legacy unicast: ID and question echoed
//! dig -p 15353 @127.0.0.1 node1.mycluster.local AAAA   # NSEC: only A exists
//! dig -p 15353 @127.0.0.1 _http._tcp.local PTR         # PTR, SRV/TXT/A as additionals
//! ```
//! Runs for 60 s (or the third argument, in seconds), then says goodbye and exits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use cove_mdns::{channel, serve, sockets, Interface, Options, ServiceSpec, Sockets};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args.get(1).map(|p| p.parse()).transpose()?.unwrap_or(15353);
    let name = args.get(2).cloned().unwrap_or_else(|| "node1.mycluster.local".into());
    let secs: u64 = args.get(3).map(|p| p.parse()).transpose()?.unwrap_or(60);
    let sock = sockets::bind_v4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))?;
    let lo = nix::net::if_::if_nametoindex("lo")?;
    let options = Options {
        port,
        groups_v4: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))],
        groups_v6: vec![],
        interfaces: vec![Interface { index: lo, name: "lo".into(), addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)] }],
        manage_groups: false,
    };
    let (control, commands) = channel()?;
    let engine = std::thread::spawn(move || {
        serve(Sockets { v4: Some(sock), ..Sockets::default() }, options, commands, |e| eprintln!("event: {e:?}"))
    });
    control.publish_host(&name)?;
    control.publish_service(ServiceSpec {
        service_type: "_http._tcp".into(),
        instance: "web on loopback".into(),
        host: name.clone(),
        port: 8080,
        txt: vec!["path=/".into()],
    })?;
    std::thread::sleep(Duration::from_secs(secs));
    control.shutdown();
    engine.join().map_err(|_| "engine thread panicked")??;
    Ok(())
}
