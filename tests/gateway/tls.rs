//! TLS on the listener (docs/behaviour.md §12.2): a certificate made here (rcgen), a real
//! rustls client: TLS 1.2/1.3 with ALPN h2 and http/1.1, Secure cookies and HSTS, the
//! plain-HTTP listener's 308 to https, and certificate rotation: a renewed file is served to
//! new handshakes without dropping an open connection, and a broken one keeps the old.
use crate::common::*;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A self-signed certificate for `localhost` and `127.0.0.1`: (cert PEM, key PEM, DER).
fn certificate() -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("oidc-gw-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }
    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    /// Replaces the files atomically (a rename, as certificate renewers do).
    fn write(&self, cert: &str, key: &str) {
        for (path, text) in [(self.key(), key), (self.cert(), cert)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn client_config(trusted: &[&[u8]], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for der in trusted {
        roots.add(CertificateDer::from(der.to_vec())).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to the gateway as `localhost`.
async fn connect(
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// The certificate a new handshake presents.
async fn served_cert(port: u16, trusted: &[&[u8]]) -> Vec<u8> {
    let stream = connect(port, client_config(trusted, &[b"http/1.1"])).await;
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// One HTTP/1.1 request on an open TLS stream (keep-alive); returns the response head.
async fn http1_get(stream: &mut tokio_rustls::client::TlsStream<TcpStream>, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = Vec::new();
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return head;
            }
        }
    }
}

fn tls_server(files: &Files, extra: &str) -> String {
    format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n{extra}",
        files.cert().display(),
        files.key().display()
    )
}

async fn gateway(files: &Files, extra: &str) -> Harness {
    Harness::with(Options {
        server: tls_server(files, extra),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn tls_listener_speaks_h2_and_http1_with_secure_cookies_and_hsts() {
    oidc_gateway::install_crypto_provider();
    let files = Files::new("alpn");
    let (cert, key, der) = certificate();
    files.write(&cert, &key);
    let h = gateway(
        &files,
        "hsts = \"365d\"\nredirect_http_listen = \"127.0.0.1:0\"",
    )
    .await;
    let port = h.gw.addr().port();

    for (alpn, version) in [
        (&b"h2"[..], http::Version::HTTP_2),
        (&b"http/1.1"[..], http::Version::HTTP_11),
    ] {
        let stream = connect(port, client_config(&[&der], &[alpn])).await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
        let io = hyper_util::rt::TokioIo::new(stream);
        let request = http::Request::get("https://localhost/hello")
            .header("accept", "text/html")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = if version == http::Version::HTTP_2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            send.send_request(request).await.unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            send.send_request(request).await.unwrap()
        };
        assert_eq!(resp.version(), version);
        // A login starts: its state cookie is Secure because the listener is TLS.
        assert_eq!(resp.status(), http::StatusCode::FOUND);
        let state = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with("oidc_state_"))
            .expect("a state cookie");
        assert!(state.contains("Secure"), "{state}");
        assert_eq!(
            resp.headers()["strict-transport-security"],
            "max-age=31536000"
        );
        let _ = resp.into_body().collect().await;
    }

    // Only TLS 1.2 and 1.3; a client offering TLS 1.2 alone still gets in.
    let tls12 = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(der.clone())).unwrap();
            roots
        })
        .with_no_client_auth();
    let stream = connect(port, Arc::new(tls12)).await;
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );

    // Plain HTTP on the redirect listener: a 308 to the same path over https.
    let redirect = h.gw.redirect_addrs[0];
    let r = raw_client()
        .get(format!("http://{redirect}/app/x?y=1"))
        .header("host", format!("localhost:{}", redirect.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::PERMANENT_REDIRECT);
    assert_eq!(location(&r), format!("https://localhost:{port}/app/x?y=1"));
    // Plain HTTP on the TLS port is not served.
    assert!(raw_client()
        .get(format!("http://127.0.0.1:{port}/public/x"))
        .send()
        .await
        .is_err());
}

/// Waits until new handshakes present `expected` (the watcher looks every 5 s).
async fn wait_for_cert(port: u16, trusted: &[&[u8]], expected: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_cert(port, trusted).await != expected {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_dropping_connections_and_a_broken_one_is_refused()
{
    oidc_gateway::install_crypto_provider();
    let files = Files::new("rotate");
    let (cert1, key1, der1) = certificate();
    files.write(&cert1, &key1);
    let h = gateway(&files, "").await;
    let port = h.gw.addr().port();
    let (cert2, key2, der2) = certificate();
    let trusted: [&[u8]; 2] = [&der1, &der2];
    assert_eq!(served_cert(port, &trusted).await, der1);

    // A keep-alive connection opened before the renewal.
    let mut open = connect(port, client_config(&trusted, &[b"http/1.1"])).await;
    assert!(http1_get(&mut open, "/public/before")
        .await
        .starts_with("HTTP/1.1 200"));

    files.write(&cert2, &key2);
    wait_for_cert(port, &trusted, &der2).await;
    assert!(
        http1_get(&mut open, "/public/after")
            .await
            .starts_with("HTTP/1.1 200"),
        "the connection opened before the renewal still works"
    );

    // A broken renewal (a key that does not match) keeps the current certificate.
    let (_, other_key, _) = certificate();
    files.write(&cert1, &other_key);
    // Longer than the watcher's period: it has looked at the new files by then.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(served_cert(port, &trusted).await, der2);
    assert!(http1_get(&mut open, "/public/still")
        .await
        .starts_with("HTTP/1.1 200"));
}

#[test]
fn bad_tls_settings_are_config_errors() {
    oidc_gateway::install_crypto_provider();
    let files = Files::new("config");
    let (cert, key, _) = certificate();
    let (_, other_key, _) = certificate();
    files.write(&cert, &other_key);
    let base = |server: &str| {
        format!(
            "[server]\n{server}\n[provider]\nissuer = \"https://op.example.com\"\nclient_id = \"c\"\n\
             client_secret = \"s\"\n[session]\npassphrase = \"0123456789abcdef0123\"\n\
             [[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n"
        )
    };
    let problem = |server: &str| -> String {
        let e = oidc_gateway::config::Config::from_toml(&base(server), "test", None).unwrap_err();
        e.to_string()
    };
    assert!(problem(&tls_server(&files, "")).contains("do not belong together"));
    let missing = format!("tls_cert_file = \"{}\"", files.cert().display());
    assert!(problem(&missing).contains("server.tls_key_file"));
    assert!(
        problem("redirect_http_listen = \"127.0.0.1:0\"").contains("needs server.tls_cert_file")
    );
    assert!(problem("hsts = \"1d\"").contains("server.hsts"));
    std::fs::write(files.key(), &key).unwrap();
    assert!(
        oidc_gateway::config::Config::from_toml(&base(&tls_server(&files, "")), "test", None)
            .is_ok()
    );
}
