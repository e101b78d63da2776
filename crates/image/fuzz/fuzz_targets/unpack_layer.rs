//! Feeds arbitrary bytes to the layer unpacker (plain, gzip or zstd tar) into a fresh temporary
//! directory, with overlay whiteouts and with applied ones, and removes it. Contract (checked by
//! `cove_image::fuzz::unpack_layer`): never panics; nothing is written outside the target, not
//! even through `../outside/victim` beside it; every error is one line; the tree can be removed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cove_image::fuzz::unpack_layer(data));
