//! Request paths: the routing normal form (decoding, `;params`, dot segments) and the
//! open/protected route decision.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        oidc_gateway::fuzzing::route_path(path);
        let _ = oidc_gateway::fuzzing::open_or_protected(path);
    }
});
