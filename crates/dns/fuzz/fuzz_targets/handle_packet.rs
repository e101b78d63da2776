//! Feeds arbitrary bytes to the handler the server runs on every datagram and stream message,
//! over both transports. Contract (`cove_dns::fuzz::handle_packet`): never panics; an answer,
//! when there is one, parses and is a response (and fits a datagram over UDP).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cove_dns::fuzz::handle_packet(data));
