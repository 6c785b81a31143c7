//! conf/oidc-gateway.service, the systemd unit for VMs: `systemd-analyze verify` accepts it
//! without a single warning (an unknown or misspelt hardening directive is only a
//! warning to systemd, and would silently not apply), pointing at the binary under test.
use std::path::Path;
use std::process::Command;

#[test]
fn the_systemd_unit_verifies_cleanly() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("the_systemd_unit_verifies_cleanly: skipped, systemd-analyze is not installed");
        return;
    }
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/oidc-gateway.service"),
    )
    .unwrap();
    for key in [
        "Type=notify",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == key), "{key} missing");
    }
    let dir = std::env::temp_dir().join(format!("oidcgw-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("oidc-gateway.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/oidc-gateway", env!("CARGO_BIN_EXE_oidc-gateway")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "systemd-analyze warns: {stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
