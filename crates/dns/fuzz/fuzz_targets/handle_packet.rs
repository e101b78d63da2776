//! Feeds arbitrary bytes to the handler the server runs on every datagram and stream message,
//! over both transports. Contract: never panics; an answer, when there is one, parses and is a
//! response.
#![no_main]

use std::sync::LazyLock;

use cove_dns::hickory_proto::op::{Message, MessageType};
use cove_dns::{handle_query, Entry, Handled, NetworkRecords, Records, Transport};
use libfuzzer_sys::fuzz_target;

static RECORDS: LazyLock<Records> = LazyLock::new(|| {
    let mut containers = vec![Entry {
        id: "0123456789abcdef".into(),
        name: "web".into(),
        aliases: vec!["www".into()],
        ipv4: vec!["10.1.0.2".parse().unwrap()],
        ipv6: vec!["fd01::2".parse().unwrap()],
    }];
    for i in 0..60u8 {
        containers.push(Entry {
            id: format!("{i:016x}"),
            name: format!("r{i}"),
            aliases: vec!["big".into()],
            ipv4: vec![[10, 1, 1, i].into()],
            ipv6: vec![],
        });
    }
    Records::new(&[NetworkRecords {
        name: "net".into(),
        containers,
        host: vec!["10.1.0.1".parse().unwrap()],
    }])
});

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
