//! Cookie headers (one per line): reassembly of chunked session cookies, `Codec::open`,
//! the session parse, and the stripping of gateway cookies before forwarding.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| oidc_gateway::fuzzing::session_cookies(data));
