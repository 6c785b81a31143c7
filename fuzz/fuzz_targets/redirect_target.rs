//! Refresh `return_to` and logout targets: a target that passes stays on the host.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first line is the request's host, the rest the target.
    let (host, target) = text.split_once('\n').unwrap_or(("app.test", &text));
    oidc_gateway::fuzzing::redirect_target(target, host);
    oidc_gateway::fuzzing::redirect_target(&text, "app.test:8443");
});
