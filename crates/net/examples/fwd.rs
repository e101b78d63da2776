//! A standalone TCP forwarder over `cove_net::forward::serve_tcp`, for benchmarks
//! (bench/network) and manual tests:
//!
//!     cargo run --release -p cove-net --example fwd -- 127.0.0.1:5201 127.0.0.1:5202
//!
//! Listens on the first address and forwards every connection to the second, until killed.
//! Prints "listening on ADDR" once ready.

use std::net::TcpListener;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, target] = args.as_slice() else {
        eprintln!("usage: fwd LISTEN_ADDR TARGET_ADDR");
        std::process::exit(2);
    };
    // Many connections need many descriptors (six per connection): raise the soft limit.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| {
        eprintln!("fwd: bind {listen}: {e}");
        std::process::exit(1);
    });
    let target: std::net::SocketAddr = target.parse().unwrap_or_else(|e| {
        eprintln!("fwd: target {target:?}: {e}");
        std::process::exit(2);
    });
    println!("listening on {}", listener.local_addr().expect("bound"));
    let shutdown = cove_net::forward::Shutdown::new().expect("shutdown pipe");
    if let Err(e) =
        cove_net::forward::serve_tcp(listener, move |_| cove_net::forward::start_connect(target, None), &shutdown)
    {
        eprintln!("fwd: {e}");
        std::process::exit(1);
    }
}
