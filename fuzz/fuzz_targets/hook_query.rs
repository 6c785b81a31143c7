//! Queries on the redirect URI: hook dispatch and the authorization-response parse.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oidc_gateway::fuzzing::hook_query(&String::from_utf8_lossy(data));
});
