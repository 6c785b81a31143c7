//! Host and forwarding headers (`name: value` lines), from a trusted and an untrusted peer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oidc_gateway::fuzzing::request_context(data, false);
    oidc_gateway::fuzzing::request_context(data, true);
});
