//! Feeds arbitrary text to the template parser and renders what parses over a fixed object
//! shaped like `docker inspect`'s. Contract (`cove_gotemplate::fuzz::parse_render`): never
//! panics; every error is one line starting with `template: `; output stays within the crate's
//! bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cove_gotemplate::fuzz::parse_render(data));
