//! Graceful shutdown: in-flight requests finish, new connections are refused.
use crate::common::*;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::time::Duration;

/// An upstream that answers after `delay`, and says on `arrived` when a request came in.
async fn slow_upstream(delay: Duration, arrived: tokio::sync::mpsc::UnboundedSender<()>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let _ = arrived.send(());
                    async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"slow ok",
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_stops_accepting() {
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let upstream = slow_upstream(Duration::from_millis(600), arrived).await;
    let h = Harness::with(Options {
        upstream: Some(upstream),
        ..Options::default()
    })
    .await;
    let url = h.url("/public/slow");
    let in_flight = tokio::spawn(async move { reqwest::get(url).await });
    // Shut down once the request has reached the upstream (a condition, not a sleep).
    arrivals
        .recv()
        .await
        .expect("the request reaches the upstream");
    let addr = h.gw.addr();
    let shutdown = tokio::spawn(h.gw.shutdown());

    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "slow ok");
    shutdown.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}

#[tokio::test]
async fn the_binary_exits_zero_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("oidcgw-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    // An unreachable provider is fine: the gateway starts anyway.
    let text = toml(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &Options::default(),
    );
    std::fs::write(&config, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oidc-gateway"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it logs that it listens.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("gateway listening") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("gateway starts");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "clean exit on SIGTERM");
    let _ = std::fs::remove_dir_all(dir);
}

/// Under systemd (`Type=notify`): `READY=1` once the listeners are bound, `STOPPING=1`
/// when SIGTERM starts the drain, as datagrams on `$NOTIFY_SOCKET`.
#[cfg(target_os = "linux")]
#[test]
fn the_binary_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let dir = std::env::temp_dir().join(format!("oidcgw-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket_path = dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let port = closed_port();
    let text = toml(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &Options::default(),
    )
    .replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let config = dir.join("gateway.toml");
    std::fs::write(&config, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oidc-gateway"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "off")
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "ready means listening"
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let _ = std::fs::remove_dir_all(dir);
}

/// With several worker threads (`server.workers`), connections spread over them are all
/// served, each keeping its keep-alive connection, and shutdown returns once every worker
/// thread has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_on_every_worker_are_served_and_shutdown_ends_the_workers() {
    let h = Harness::with(Options {
        server: "workers = 3".into(),
        ..Options::default()
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..9 {
        // One connection per client (a pool of its own), three requests on it.
        let client = raw_client();
        let url = h.url(&format!("/public/c{i}"));
        clients.push(tokio::spawn(async move {
            for _ in 0..3 {
                let r = client.get(&url).send().await.expect("served");
                assert_eq!(r.status(), 200);
                assert_eq!(Echo::of(r).await.0["path"], format!("/public/c{i}"));
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), h.gw.shutdown())
        .await
        .expect("shutdown ends every worker thread");
}
