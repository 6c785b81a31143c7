//! The form body a `preserve_post` route keeps, and the page that re-submits it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    oidc_gateway::fuzzing::kept_form(data);
});
