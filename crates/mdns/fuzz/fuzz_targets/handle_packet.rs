//! Feeds arbitrary bytes to the responder (as a multicast-port packet and as legacy unicast)
//! and the querier, with a host and a service published and established. Contract
//! (`cove_mdns::fuzz::handle_packet`): never panics; whatever the responder sends parses and
//! fits a datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cove_mdns::fuzz::handle_packet(data));
