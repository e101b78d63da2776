//! Entry point of the fuzz target (crates/gotemplate/fuzz), also replayed over the checked-in
//! corpus by this crate's unit tests. Not an API: it takes arbitrary bytes and panics only when
//! an invariant of the engine breaks (never on bad input).

use std::sync::LazyLock;

use serde_json::{json, Value};

static DATA: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "Name": "/web", "Id": "0123456789abcdef",
        "State": {"Pid": 42, "Running": true, "Status": "running", "ExitCode": 0},
        "Config": {"Cmd": ["sh", "-c", "x"], "Labels": {"a": "1", "b": ""}, "Env": null},
        "NetworkSettings": {"Networks": {"cove": {"IPAddress": "10.90.0.2", "Aliases": ["w"]}}},
        "F": 1.5, "Big": 1e300, "Neg": -7, "Empty": "", "Nil": null, "Arr": [3, "x", [1], {}]
    })
});

/// Parses `data` (when it is UTF-8) as a template and renders what parses over a fixed object
/// shaped like `docker inspect`'s. Panics if an error is not one line starting with
/// `template: `.
pub fn parse_render(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let result = crate::Template::parse(text).and_then(|t| t.render(&DATA));
    if let Err(e) = result {
        let e = e.to_string();
        assert!(e.starts_with("template: ") && !e.contains('\n'), "{e:?}");
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    #[test]
    fn parse_render_corpus_replays() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut files = Vec::new();
        for dir in ["corpus", "regressions"] {
            if let Ok(rd) = fs::read_dir(fuzz.join(dir).join("parse_render")) {
                files.extend(rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
            }
        }
        assert!(!files.is_empty(), "no corpus under {}", fuzz.display());
        for f in files {
            super::parse_render(&fs::read(&f).unwrap());
        }
    }
}
