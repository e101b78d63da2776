//! Behaviour tests: the responder over a fake clock ([`responder`]), and the serve loop end to
//! end over 127.0.0.1 unicast ([`serve_loop`]; never multicast: this machine's rule).

mod responder;
mod serve_loop;

use hickory_proto::rr::Name;

fn name(s: &str) -> Name {
    crate::wire::host_name(s).unwrap()
}
