//! Back-channel logout token claims (JSON), after the signature check.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oidc_gateway::fuzzing::logout_claims(data, 1_700_000_000);
});
