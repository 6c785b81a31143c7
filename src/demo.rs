//! `oidc-gateway demo`: the gateway, the development OpenID Provider and the echo upstream,
//! all on loopback, so the whole login flow can be seen with one command.

use crate::clock::Clock;
use crate::config::Config;
use devop::echo::start_echo_with;
use devop::{DevOp, DevOpOptions};
use rand::RngCore;
use std::net::SocketAddr;
use std::sync::Arc;

/// The demo configuration: `/` behind login, `/public` open, `/api` for bearer tokens.
pub(crate) fn demo_config(
    listen: SocketAddr,
    issuer: &str,
    upstream: &str,
    passphrase: &str,
) -> String {
    format!(
        r#"
[server]
listen = "{listen}"

[provider]
issuer = "{issuer}"
client_id = "gateway"
client_secret = "gateway-secret"
scopes = ["openid", "profile", "email", "offline_access"]

[session]
passphrase = "{passphrase}"
inactivity_timeout = "30m"

[hooks]
# The session info page the demo links to (off unless listed; no refresh token).
info = ["iat", "access_token", "access_token_expires", "id_token", "userinfo", "exp", "timeout", "remote_user"]

[[route]]
path = "/"
upstream = "{upstream}"
auth = "openid-connect"

[[route]]
path = "/public"
upstream = "{upstream}"
auth = "none"

[[route]]
path = "/api"
upstream = "{upstream}"
auth = "oauth20"
"#
    )
}

/// Runs the demo until Ctrl-C.
pub async fn run(listen: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let clock = Clock::system();
    let op_clock = clock.clone();
    let op = DevOp::start(DevOpOptions {
        now: Arc::new(move || op_clock.now()),
        ..DevOpOptions::default()
    })
    .await?;
    let logout_href = "/oauth2/callback?logout=%2Fpublic%2F".to_string();
    let echo = start_echo_with("127.0.0.1:0".parse()?, Some(logout_href)).await?;
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let passphrase: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let text = demo_config(listen, &op.issuer(), &echo.url(), &passphrase);
    let config = Config::from_toml(&text, "demo configuration", None)?;
    let stop = crate::shutdown_signal();
    let running = crate::server::start(config, clock).await?;
    let addr = running.addr();
    let hosts = [
        format!("127.0.0.1:{}", addr.port()),
        format!("localhost:{}", addr.port()),
    ];
    for host in &hosts {
        op.add_redirect_uri(&format!("http://{host}/oauth2/callback"));
        op.add_post_logout_redirect_uri(&format!("http://{host}/public/"));
    }
    println!();
    println!("  oidc-gateway demo is running.");
    println!();
    println!(
        "  Open   http://{}/            (log in with any user name)",
        hosts[0]
    );
    println!("  Open   http://{}/public/     (no login needed)", hosts[0]);
    println!("  Info   http://{}/oauth2/callback?info=html", hosts[0]);
    println!(
        "  Logout http://{}/oauth2/callback?logout=%2Fpublic%2F",
        hosts[0]
    );
    println!();
    println!("  Development OpenID Provider: {}", op.issuer());
    println!("  Echo upstream:               {}", echo.url());
    println!("  Press Ctrl-C to stop.");
    println!();
    stop.await;
    running.shutdown().await;
    op.shutdown();
    echo.shutdown();
    Ok(())
}
