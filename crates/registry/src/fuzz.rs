//! Entry points of the fuzz targets (crates/registry/fuzz), also replayed over the checked-in
//! corpus by this crate's unit tests. Not an API: each function takes arbitrary bytes and
//! panics only when an invariant of this crate breaks (never on bad input).

use crate::client::{error_message, parse_challenge, token_from_body};
use crate::manifest::{self, Parsed, Platform};
use crate::Error;
use ureq::http;

fn one_line(what: &str, e: &Error) {
    let s = e.to_string();
    assert!(!s.is_empty() && !s.contains(['\n', '\r']), "{what}: error is not one line: {s:?}");
}

/// What `pull` does with the bytes of a manifest endpoint: [`manifest::parse`] under every
/// Content-Type it may get, then [`manifest::check_image`] on a manifest and
/// [`manifest::choose`] (the host, and linux/arm64/v8) on an index.
pub fn manifest(data: &[u8]) {
    let content_types = manifest::ACCEPT_MANIFESTS.iter().copied().chain(["", "application/json; charset=utf-8"]);
    let platforms = [Platform::host(), Platform::parse("linux/arm64/v8").expect("a platform")];
    for ct in content_types {
        match manifest::parse(data, ct, "manifest") {
            Ok(Parsed::Manifest(m)) => {
                if let Err(e) = manifest::check_image(&m, "manifest") {
                    one_line("check_image", &e);
                }
            }
            Ok(Parsed::Index(idx)) => {
                for p in &platforms {
                    if let Err(e) = manifest::choose(&idx, p, "index") {
                        one_line("choose", &e);
                    }
                }
            }
            Err(e) => one_line("parse", &e),
        }
    }
}

/// What the client does with a registry's answers: a `WWW-Authenticate` challenge (the bytes as
/// text), a bearer token response, and an error body turned into the error `pull` prints. A
/// token accepted must fit an `Authorization` header.
pub fn auth(data: &[u8]) {
    let _ = parse_challenge(&String::from_utf8_lossy(data));
    match token_from_body(data, "registry.example") {
        Ok(token) => assert!(
            http::HeaderValue::from_str(&format!("Bearer {token}")).is_ok(),
            "token {token:?} accepted but not a header value"
        ),
        Err(e) => one_line("token", &e),
    }
    let message = error_message(data);
    one_line("error body", &Error::Status { what: "registry.example/a/b:latest".into(), status: 404, message });
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};

    use super::*;

    /// Every file of `fuzz/corpus/<target>` and `fuzz/regressions/<target>`.
    fn corpus(target: &str) -> Vec<PathBuf> {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut files = Vec::new();
        for dir in ["corpus", "regressions"] {
            if let Ok(rd) = fs::read_dir(fuzz.join(dir).join(target)) {
                files.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
            }
        }
        files.sort();
        assert!(!files.is_empty(), "no corpus for {target} under {}", fuzz.display());
        files
    }

    #[test]
    fn manifest_corpus_replays() {
        for f in corpus("manifest") {
            eprintln!("{}", f.display());
            manifest(&fs::read(&f).unwrap());
        }
    }

    #[test]
    fn auth_corpus_replays() {
        for f in corpus("auth") {
            eprintln!("{}", f.display());
            auth(&fs::read(&f).unwrap());
        }
    }
}
