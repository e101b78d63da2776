//! Feeds arbitrary bytes to the registry client's parsing of a registry's answers: the
//! WWW-Authenticate challenge, the bearer token response, the error body. Contract
//! (`cove_registry::fuzz::auth`): never panics; every error, the registry's message included, is
//! one line; an accepted token fits an Authorization header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cove_registry::fuzz::auth(data));
