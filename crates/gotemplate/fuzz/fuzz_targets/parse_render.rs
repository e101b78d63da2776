//! Feeds arbitrary text to the template parser and renders what parses over a fixed object
//! shaped like `docker inspect`'s. Contract: never panics; every error is one line starting
//! with `template: `; output stays within the crate's bounds.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let result = cove_gotemplate::Template::parse(text).and_then(|t| t.render(&DATA));
    if let Err(e) = result {
        let e = e.to_string();
        assert!(e.starts_with("template: ") && !e.contains('\n'), "{e:?}");
    }
});
