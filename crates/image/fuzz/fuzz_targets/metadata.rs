//! Feeds arbitrary bytes to every decoder of image metadata that `cove load` and the store use:
//! a docker-archive manifest.json, an OCI index.json (with the host platform's choice), an image
//! manifest, oci-layout, and an image config. Contract (`cove_image::fuzz::metadata`): never
//! panics; every error is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cove_image::fuzz::metadata(data));
