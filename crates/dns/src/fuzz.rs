//! Entry point of the fuzz target (crates/dns/fuzz), also replayed over the checked-in corpus
//! by this crate's unit tests. Not an API: it takes arbitrary bytes and panics only when an
//! invariant of the handler breaks (never on bad input).

use std::sync::LazyLock;

use hickory_proto::op::{Message, MessageType};

use crate::{handle_query, Handled, Records, Transport, MAX_UDP_PAYLOAD};

static RECORDS: LazyLock<Records> = LazyLock::new(|| crate::sample_records(vec![[10, 1, 0, 1].into()]));

/// Feeds `data` to the handler the server runs on every datagram and stream message, over both
/// transports. Panics if an answer does not parse, is not a response, or is too big for UDP.
pub fn handle_packet(data: &[u8]) {
    let mut out = Vec::new();
    for transport in [Transport::Udp, Transport::Tcp] {
        if handle_query(data, "net", &RECORDS, transport, &mut out) == Handled::Reply {
            let m = Message::from_vec(&out).expect("answers parse");
            assert_eq!(m.metadata.message_type, MessageType::Response);
            if transport == Transport::Udp {
                assert!(out.len() <= usize::from(MAX_UDP_PAYLOAD));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    #[test]
    fn handle_packet_corpus_replays() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut files = Vec::new();
        for dir in ["corpus", "regressions"] {
            if let Ok(rd) = fs::read_dir(fuzz.join(dir).join("handle_packet")) {
                files.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
            }
        }
        assert!(!files.is_empty(), "no corpus under {}", fuzz.display());
        for f in files {
            super::handle_packet(&fs::read(&f).unwrap());
        }
    }
}
