//! Feeds arbitrary bytes to the handler the server runs on every datagram and stream message,
//! over both transports. Contract: never panics; an answer, when there is one, parses and is a
//! response.
#![no_main]

use std::sync::LazyLock;

use cove_dns::hickory_proto::op::{Message, MessageType};
use cove_dns::{handle_query, Handled, Records, Transport};
use libfuzzer_sys::fuzz_target;

static RECORDS: LazyLock<Records> = LazyLock::new(|| cove_dns::sample_records(vec!["10.1.0.1".parse().unwrap()]));

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    for transport in [Transport::Udp, Transport::Tcp] {
        if handle_query(data, "net", &RECORDS, transport, &mut out) == Handled::Reply {
            let m = Message::from_vec(&out).expect("answers parse");
            assert_eq!(m.metadata.message_type, MessageType::Response);
            if transport == Transport::Udp {
                assert!(out.len() <= usize::from(cove_dns::MAX_UDP_PAYLOAD));
            }
        }
    }
});
