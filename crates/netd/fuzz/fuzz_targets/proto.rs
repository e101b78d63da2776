//! Feeds arbitrary bytes to the network helper's control protocol as the helper reads a
//! client's session on netd.sock (a leading `F` comes with a descriptor, as an ADD's does), as
//! a client reads a reply, and as the starter reads a helper's report. Contract
//! (`cove_netd::fuzz::proto`): never panics; an error reply is one line that decodes back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cove_netd::fuzz::proto(data));
