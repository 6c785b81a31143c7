//! `rediss://` (docs/behaviour.md §2.10): replicas reach a real TLS-only redis-server that
//! requires client certificates, trusting the CA of `ca_file` and presenting
//! `cert_file`/`key_file`; a logout on one is then refused on the other. Without the
//! client certificate, Redis refuses the connection and `/readyz` says degraded.
use crate::common::*;
use reqwest::StatusCode;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, all as files.
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("oidc-gw-rediss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // Distinct names: OpenSSL (Redis) takes a certificate whose subject is its
        // issuer's for a self-signed one.
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "oidc-gateway test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        for (name, sans) in [
            ("server", vec!["127.0.0.1".to_string()]),
            ("client", vec!["gateway".to_string()]),
        ] {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(
                rcgen::DnType::CommonName,
                format!("oidc-gateway test {name}"),
            );
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct TlsRedis {
    child: Child,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS-only redis-server (no plain port) that requires client certificates.
fn start_tls_redis(pki: &Pki) -> TlsRedis {
    for _ in 0..5 {
        let port = closed_port();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &pki.path("server.pem")])
            .args(["--tls-key-file", &pki.path("server.key")])
            .args(["--tls-ca-cert-file", &pki.path("ca.pem")])
            .args(["--tls-auth-clients", "yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return TlsRedis { child, port };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("a TLS redis-server did not start");
}

fn options(pki: &Pki, port: u16, client_cert: bool) -> Options {
    let mut redis = format!(
        "url = \"rediss://127.0.0.1:{port}/0\"\nca_file = \"{}\"\ntimeout = \"1s\"\n",
        pki.path("ca.pem")
    );
    if client_cert {
        redis.push_str(&format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            pki.path("client.pem"),
            pki.path("client.key")
        ));
    }
    Options {
        server: "\n[admin]\nlisten = \"127.0.0.1:0\"\n".into(),
        redis: Some(redis),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_logouts_over_rediss_with_a_client_certificate() {
    // The TLS Redis needs the same redis-server as the other Redis tests.
    let Some(probe) = RedisServer::start_or_skip("rediss") else {
        return;
    };
    drop(probe);
    let pki = Pki::new();
    let redis = start_tls_redis(&pki);

    let h = Harness::with(options(&pki, redis.port, true)).await;
    let (b, b_base) = h.another_gateway(options(&pki, redis.port, true)).await;
    wait_for_readyz(h.gw.admin_addrs[0], "ok").await;
    wait_for_readyz(b.admin_addrs[0], "ok").await;
    let browser = Browser::new();
    assert_eq!(
        h.login(&browser, "/app", "alice").await.status(),
        StatusCode::OK
    );
    let cookie = browser.cookie_header(&h.base);
    let out = get_with_cookie(
        &h.hook_url(&format!("logout={}", enc("/public/bye"))),
        &cookie,
    )
    .await;
    assert_eq!(out.status(), StatusCode::FOUND);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = get_with_cookie(&format!("{b_base}/app"), &cookie).await;
        if r.status() == StatusCode::FOUND {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the logout did not reach the other replica over TLS"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Without a client certificate this Redis refuses the handshake: degraded, not down.
    let (c, c_base) = h.another_gateway(options(&pki, redis.port, false)).await;
    wait_for_readyz(c.admin_addrs[0], "degraded").await;
    assert_eq!(
        get_with_cookie(&format!("{c_base}/public/x"), "")
            .await
            .status(),
        StatusCode::OK
    );
}
