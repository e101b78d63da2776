//! Feeds arbitrary bytes to what `cove pull` does with a manifest endpoint's answer: parsing
//! under every Content-Type, the image check of a manifest, the platform choice in an index.
//! Contract (`cove_registry::fuzz::manifest`): never panics; every error is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cove_registry::fuzz::manifest(data));
