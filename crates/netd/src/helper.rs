//! The helper process (`cove __netd RUNDIR CONFIG FD`) around [`crate::server::serve`]: holds
//! the network namespace in which cove's bridges live, started on demand by the first
//! container that joins a network and gone once no container has been attached for
//! `COVE_NETD_IDLE_SECS` (default 10): its namespace, bridges and all go with it, so nothing
//! is left behind.
//!
//! It runs in the caller's user namespace (the keeper's when rootless) and in the host's
//! network namespace; a thread of it sits inside the rootless namespace. Other cove processes
//! reach that namespace through `/proc/<netd>/fd/<n>` (named in `netd.pid`).

use crate::proto::Report;
use crate::server::{Exit, Idle, LoopbackDefault, Options};
use crate::{outbound, RunFiles};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

fn idle_limit() -> Duration {
    Duration::from_secs(std::env::var("COVE_NETD_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10).max(1))
}

/// Sets the process up, reports `OK` (or `E<why>`) on `report`, and serves until idle.
/// `loopback_default`: cove.conf's `allow_host_loopback`, read at every reload. Returns the
/// process's exit code; call it from the main thread, which must live as long as the process
/// (the outbound tool gets SIGTERM when it ends).
pub fn run(run: &Path, loopback_default: LoopbackDefault, report: Option<OwnedFd>) -> i32 {
    let mut report = report.map(std::fs::File::from);
    match setup(run, loopback_default) {
        Ok((control, opts)) => {
            if let Some(mut r) = report.take() {
                let _ = r.write_all(&Report::Ok.encode());
            }
            let shutdown = match cove_net::forward::Shutdown::new() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("{e}");
                    return 1;
                }
            };
            match crate::server::serve(control, opts, shutdown) {
                Ok(Exit::Idle | Exit::Orphaned | Exit::Shutdown) => 0,
                Err(e) => {
                    tracing::warn!("{e}");
                    1
                }
            }
        }
        Err(e) => {
            if let Some(mut r) = report.take() {
                let _ = r.write_all(&Report::Failed(e).encode());
            }
            1
        }
    }
}

fn setup(run: &Path, loopback_default: LoopbackDefault) -> Result<(std::os::unix::net::UnixListener, Options), String> {
    let files = RunFiles::new(run);
    let _ = std::env::set_current_dir("/");
    // cove's main restores SIGPIPE's default for the containers it starts; this helper splices
    // into sockets whose peers come and go, and must see EPIPE instead of dying (it did: every
    // published port and the namespace went with it).
    cove_sys::ignore_sigpipe();
    // Every relayed TCP connection holds six descriptors (two sockets, two pipes): the usual
    // soft limit of 1024 would cap a published port at ~170 concurrent clients.
    if let Ok((soft, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
    // A monitor that started us had signals blocked for its signalfd; the mask survives exec.
    let _ = nix::sys::signal::SigSet::all().thread_unblock();
    let netns = cove_net::netns::create().map_err(|e| format!("create the network namespace: {e}"))?;
    // Inside: loopback up. IP forwarding stays off: containers talk within their bridge
    // (switched, not routed), and nothing is routed between bridges, which is what isolates
    // networks from each other until outbound access (and its nftables rules) is added.
    let setup = cove_net::netns::run_on_thread(netns.as_fd(), || -> Result<bool, String> {
        let mut nl = cove_net::link::Netlink::open().map_err(|e| e.to_string())?;
        nl.loopback_up().map_err(|e| e.to_string())?;
        // Replies to published ports' clients (see ports::Transparent): without this rule
        // containers see the gateway as every client's address, which still works.
        let route = match nl.route_marked_to_local(cove_net::nft::TRANSPARENT_MARK, cove_net::nft::TRANSPARENT_TABLE) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("published ports will not keep client addresses: {e}");
                false
            }
        };
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").map_err(|e| format!("disable forwarding: {e}"))?;
        // Bridged traffic (container to container on one network) skips netfilter: faster,
        // and the forward chain sees only routed packets.
        let _ = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "0");
        let _ = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-ip6tables", "0");
        Ok(route)
    });
    let transparent_route = setup.map_err(|e| e.to_string())??;
    let _ = std::fs::remove_file(files.sock());
    let control = cove_sys::with_short_path(run, RunFiles::SOCK, |p| std::os::unix::net::UnixListener::bind(p))
        .map_err(|e| format!("listen on {}: {e}", files.sock().display()))?;
    let me = std::process::id() as i32;
    let line = format!("{me} {} {}\n", cove_monitor::start_time(me).unwrap_or(0), netns.as_raw_fd());
    let tmp = files.pid().with_extension("tmp");
    std::fs::write(&tmp, line)
        .and_then(|_| std::fs::rename(&tmp, files.pid()))
        .map_err(|_| "write netd.pid".to_string())?;
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = cove_sys::dup_onto(null.as_fd(), fd);
        }
    }
    // The DNS runtime's thread is made here, in the host's namespace (see crate::dns).
    let rt = crate::dns::start_runtime()?;
    let upstreams = crate::dns::upstreams();
    // Outbound access (see crate::outbound). Started by this thread, which lives as long as
    // the process: the tool gets SIGTERM when it ends. Without one, containers still reach
    // each other; `cove run` has warned the user already.
    let (tool, host, mapped) = match outbound::choose() {
        Ok(Some(tool)) => match outbound::start(&tool, netns.as_fd(), &files.log()) {
            Ok(child) => {
                let _ = std::fs::write(files.outbound_pid(), format!("{}\n", child.id()));
                // The child is never waited for: it ends with us.
                std::mem::forget(child);
                (true, outbound::host_address(&tool), outbound::loopback_mapped(&tool))
            }
            Err(e) => {
                tracing::warn!("outbound access: {e}");
                (false, None, vec![])
            }
        },
        Ok(None) => (false, None, vec![]),
        Err(e) => {
            tracing::warn!("outbound access: {e}");
            (false, None, vec![])
        }
    };
    // Which networks reach the host's loopback (see crate::outbound): closed until the first
    // reload says otherwise.
    let policy = outbound::LoopbackPolicy::default();
    let redirect = match outbound::serve_tcp(netns.as_fd(), host, policy.clone()) {
        Ok(port) => Some(port),
        Err(e) => {
            tracing::warn!("outbound tcp: {e}");
            None
        }
    };
    let nat = outbound::Nat::new(redirect, tool, mapped, policy);
    // mDNS runs on this (the host's) side: see crate::mdns. Without it `.local` names go to the
    // upstreams as any other name.
    let mdns = crate::mdns::Mdns::start();
    let opts = Options {
        netns: Some(netns),
        dns_runtime: rt,
        upstreams,
        dns_port: crate::dns::PORT,
        host,
        nat: Some(nat),
        transparent_route,
        loopback_default,
        log: Some(files.log()),
        idle: Some(Idle { files, limit: idle_limit() }),
        tick: Duration::from_millis(250),
        mdns,
    };
    Ok((control, opts))
}
