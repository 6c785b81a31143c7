//! Introspection answers: status (first two bytes) and JSON body.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() >= 2 {
        let status = 100 + u16::from_be_bytes([data[0], data[1]]) % 500;
        oidc_gateway::fuzzing::introspection_response(status, &data[2..]);
    }
});
