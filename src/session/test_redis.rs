//! Test support: a throwaway `redis-server` on a free loopback port, killed on drop. Used by
//! the unit tests and, through `#[path]`, by the integration tests (so std only).
//!
//! Without `redis-server` on PATH the Redis tests print a notice and pass, so `cargo test`
//! needs no external service; with `OIDC_GATEWAY_REQUIRE_REDIS=1` (as CI sets) they fail.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Set to `1` to make a missing `redis-server` a test failure instead of a skip.
pub const REQUIRE_ENV: &str = "OIDC_GATEWAY_REQUIRE_REDIS";

/// A `redis-server` child process without persistence, listening on 127.0.0.1 only.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts a server for `test`, or returns `None` after printing why when `redis-server`
    /// is not installed and [`REQUIRE_ENV`] is not `1`.
    ///
    /// # Panics
    /// If `redis-server` is missing while required, or does not start.
    pub fn start_or_skip(test: &str) -> Option<RedisServer> {
        if !installed() {
            if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                panic!(
                    "{test}: redis-server is not on PATH but {REQUIRE_ENV}=1 requires it; \
                     install it (Debian: apt-get install redis-server)"
                );
            }
            eprintln!(
                "{test}: skipped, redis-server is not on PATH (install it to run the Redis \
                 store tests; set {REQUIRE_ENV}=1 to make this a failure)"
            );
            return None;
        }
        for _ in 0..5 {
            if let Some(server) = Self::try_start(free_port()) {
                return Some(server);
            }
        }
        panic!("{test}: redis-server did not start (5 attempts on free ports)");
    }

    /// Starts a server on `port` (a restart on the port a stopped server used).
    ///
    /// # Panics
    /// If it does not start within a few seconds.
    pub fn start_on(port: u16) -> RedisServer {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(server) = Self::try_start(port) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            sleep(Duration::from_millis(50));
        }
    }

    fn try_start(port: u16) -> Option<RedisServer> {
        Self::try_start_with(port, &[])
    }

    /// A replica of `master` (`--replicaof`), on a free port.
    ///
    /// # Panics
    /// If it does not start.
    pub fn start_replica_of(master: &RedisServer) -> RedisServer {
        let master_port = master.port.to_string();
        for _ in 0..5 {
            let args = ["--replicaof", "127.0.0.1", master_port.as_str()];
            if let Some(server) = Self::try_start_with(free_port(), &args) {
                return server;
            }
        }
        panic!("a replica redis-server did not start (5 attempts on free ports)");
    }

    /// A Sentinel (`redis-sentinel`, or `redis-server --sentinel`) on a free port watching
    /// `master` as `name`, with quorum 1 and a 1 s down-after, so a failover is quick.
    ///
    /// # Panics
    /// If it does not start.
    pub fn start_sentinel(master: &RedisServer, name: &str) -> RedisServer {
        for _ in 0..5 {
            let port = free_port();
            let conf = std::env::temp_dir().join(format!(
                "oidc-gateway-test-sentinel-{}-{port}.conf",
                std::process::id()
            ));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\n\
                     sentinel monitor {name} 127.0.0.1 {} 1\n\
                     sentinel down-after-milliseconds {name} 1000\n\
                     sentinel failover-timeout {name} 5000\n\
                     sentinel parallel-syncs {name} 1\n",
                    master.port
                ),
            )
            .expect("write the sentinel config");
            // Debian's redis-sentinel package, or the same binary as redis-server
            // --sentinel (which wants the config file first).
            let mut command = Command::new(if on_path("redis-sentinel") {
                "redis-sentinel"
            } else {
                "redis-server"
            });
            command.arg(&conf);
            if !on_path("redis-sentinel") {
                command.arg("--sentinel");
            }
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-sentinel");
            if let Some(server) = Self::wait_until_up(child, port) {
                return server;
            }
        }
        panic!("redis-sentinel did not start (5 attempts on free ports)");
    }

    fn try_start_with(port: u16, extra: &[&str]) -> Option<RedisServer> {
        let port_arg = port.to_string();
        // A file name that never exists, so nothing is loaded (and with `--save ""`, nothing
        // is ever written).
        let dbfilename = format!("oidc-gateway-test-{}-{port}.rdb", std::process::id());
        let child = Command::new("redis-server")
            .args(["--port", &port_arg, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dbfilename", &dbfilename])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        Self::wait_until_up(child, port)
    }

    fn wait_until_up(mut child: Child, port: u16) -> Option<RedisServer> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                // Exited: most likely the port was taken meanwhile.
                return None;
            }
            if ping(port) {
                return Some(RedisServer { child, port });
            }
            sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Freezes the process (SIGSTOP): connections stay open but nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Undoes [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} redis-server");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused server still dies of SIGKILL.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A port that was free a moment ago (the caller retries if it is taken by then).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}
