//! Entry point of the fuzz target (crates/netd/fuzz), also replayed over the checked-in corpus
//! by this crate's unit tests. Not an API: it takes arbitrary bytes and panics only when an
//! invariant of the control protocol breaks (never on bad input).

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use crate::proto::{Reader, Reply, Report};

/// At most this much of an input is sent (it must fit the socket buffer: nothing reads while
/// it is written).
const MAX_INPUT: usize = 64 * 1024;

fn stream(data: &[u8]) -> UnixStream {
    let (a, b) = UnixStream::pair().expect("a socket pair");
    let data = &data[..data.len().min(MAX_INPUT)];
    // A leading marker byte goes with a descriptor, as a client's ADD sends it.
    let rest = match data.split_first() {
        Some((b'F', rest)) => {
            let null = std::fs::File::open("/dev/null").expect("open /dev/null");
            cove_sys::send_fd(a.as_fd(), null.as_fd()).expect("send a descriptor");
            rest
        }
        _ => data,
    };
    (&a).write_all(rest).expect("write the input");
    b
}

fn one_line_reply(reply: &Reply) {
    let bytes = reply.encode();
    let text = std::str::from_utf8(&bytes).expect("a reply is text");
    assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "reply is not one line: {text:?}");
    assert!(
        matches!((Reply::decode(text), reply), (Ok(Reply::Err(_)), Reply::Err(_)) | (Ok(Reply::Ok), Reply::Ok)),
        "reply {text:?} does not decode back"
    );
}

/// Reads `data` as the helper reads a client's session on `netd.sock` (requests until END, a
/// SYNC, an MDNS question, an error or EOF: the bytes after a leading `F` come with a
/// descriptor), answers an error as the helper would, and reads `data` as the client reads a
/// reply and as the starter reads a helper's report. Panics if an error reply is not one line
/// or does not decode back.
pub fn proto(data: &[u8]) {
    let server = stream(data);
    let mut r = Reader::new(&server);
    for _ in 0..MAX_INPUT {
        match r.request() {
            Ok(Some(crate::proto::Request::Add { .. } | crate::proto::Request::Del { .. })) => continue,
            Ok(_) => break,
            Err(e) => {
                one_line_reply(&Reply::Err(e.to_string()));
                break;
            }
        }
    }
    let client = stream(data);
    if let Ok(Reply::Err(e)) = Reply::recv(&client) {
        assert!(!e.contains('\n'), "an ERR reply spans lines: {e:?}");
    }
    let _ = Report::decode(&String::from_utf8_lossy(data));
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    #[test]
    fn proto_corpus_replays() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut files = Vec::new();
        for dir in ["corpus", "regressions"] {
            if let Ok(rd) = fs::read_dir(fuzz.join(dir).join("proto")) {
                files.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
            }
        }
        assert!(!files.is_empty(), "no corpus under {}", fuzz.display());
        for f in files {
            eprintln!("{}", f.display());
            super::proto(&fs::read(&f).unwrap());
        }
    }
}
