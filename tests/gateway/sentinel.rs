//! Redis Sentinel: the gateway asks the sentinels for the master and follows a failover
//! (docs/behaviour.md §13). A master, its replica and one sentinel, all real processes; the
//! master is failed over while a browser keeps making requests: no 5xx, no lost session,
//! and writes (a new login) go to the new master.
use crate::common::*;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

const MASTER: &str = "gateway-main";

async fn cmd<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> T {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_multiplexed_async_connection_with_config(
            // WAIT blocks for up to its timeout: longer than the client's default.
            &redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(&mut conn).await.unwrap()
}

/// The master's port as the sentinel reports it.
async fn master_port(sentinel: u16) -> u16 {
    let addr: Vec<String> = cmd(sentinel, &["SENTINEL", "get-master-addr-by-name", MASTER]).await;
    addr[1].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_while_requests_run_loses_no_session() {
    let Some(master) = RedisServer::start_or_skip("sentinel failover") else {
        return;
    };
    let replica = RedisServer::start_replica_of(&master);
    let sentinel = RedisServer::start_sentinel(&master, MASTER);
    // The sentinel must know the replica before it can promote it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let replicas: Vec<redis::Value> =
            cmd(sentinel.port(), &["SENTINEL", "replicas", MASTER]).await;
        if !replicas.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sentinel never saw the replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let redis = format!(
        "sentinels = [\"127.0.0.1:{}\"]\nmaster_name = \"{MASTER}\"\ntimeout = \"500ms\"",
        sentinel.port()
    );
    let h = Harness::with(Options {
        session: "store = \"redis\"\ninactivity_timeout = \"1h\"".into(),
        redis: Some(redis),
        ..Options::default()
    })
    .await;
    let b = Browser::new();
    assert_eq!(h.login(&b, "/app", "alice").await.status(), StatusCode::OK);
    let cookie = b.cookie_header(&h.base);
    // The session has reached the replica before the master is failed over.
    let acked: i64 = cmd(master.port(), &["WAIT", "1", "5000"]).await;
    assert_eq!(acked, 1);

    // A browser that keeps going while the master changes.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let url = h.url("/app");
    let load = {
        let cookie = cookie.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !*stop_rx.borrow_and_update() {
                let status = get_with_cookie(&url, &cookie).await.status();
                answers.push((Instant::now(), status));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let failover_at = Instant::now();
    let _: String = cmd(sentinel.port(), &["SENTINEL", "FAILOVER", MASTER]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while master_port(sentinel.port()).await != replica.port() {
        assert!(Instant::now() < deadline, "the sentinel did not fail over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let switched = failover_at.elapsed();
    // Let the gateway notice (a write refused by the demoted master, or its closed
    // connections) and keep serving.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(true).unwrap();
    let answers = load.await.unwrap();

    assert!(
        answers.len() > 20,
        "the load ran ({} requests)",
        answers.len()
    );
    assert!(
        answers.iter().all(|(_, s)| !s.is_server_error()),
        "a 5xx during the failover: {:?}",
        answers.iter().map(|(_, s)| s.as_u16()).collect::<Vec<_>>()
    );
    let degraded: Vec<&Instant> = answers
        .iter()
        .filter(|(_, s)| *s != StatusCode::OK)
        .map(|(at, _)| at)
        .collect();
    let window = match (degraded.first(), degraded.last()) {
        (Some(first), Some(last)) => last.duration_since(**first),
        _ => Duration::ZERO,
    };
    println!(
        "sentinel failover: master switched after {switched:?}; {} requests, {} not 200, \
         degraded for {window:?}",
        answers.len(),
        degraded.len()
    );
    // No lost session: the same cookie still works, now read from the new master...
    let after = get_with_cookie(&h.url("/app"), &cookie).await;
    assert_eq!(after.status(), StatusCode::OK);
    // ...and new sessions are written there.
    let b2 = Browser::new();
    assert_eq!(h.login(&b2, "/app", "bob").await.status(), StatusCode::OK);
    let keys: Vec<String> = cmd(replica.port(), &["KEYS", "*session:*"]).await;
    let old: Vec<String> = cmd(master.port(), &["KEYS", "*session:*"]).await;
    assert_eq!(
        keys.len(),
        2,
        "both sessions on the new master: {keys:?} (the old master has {old:?})"
    );
    drop(master);
}
