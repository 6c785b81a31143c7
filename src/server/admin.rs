//! The admin listener: `/healthz` (process up), `/readyz` (provider discovery and JWKS
//! loaded, listeners bound; Redis ok or degraded), both JSON, `/metrics`
//! (Prometheus), and `/jwks.json` (the public keys of `private_key_jwt` clients). Never served on the proxied port. Nothing here calls out: every check
//! reads state the gateway already holds.

use crate::metrics::{self, Scrape};
use crate::redis_link::Health;
use crate::response::{self, Body};
use crate::services::Services;
use http::{Request, Response, StatusCode};
use serde::Serialize;
use std::net::SocketAddr;

/// `listeners`: the bound proxied addresses (`server.listen`, then
/// `server.redirect_http_listen`), for `/readyz`.
pub(crate) async fn handle<B>(
    gw: &Services,
    listeners: &[SocketAddr],
    req: Request<B>,
) -> Response<Body> {
    match req.uri().path() {
        "/healthz" => response::json(
            StatusCode::OK,
            &serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
        ),
        "/readyz" => {
            let ready = readiness(gw, listeners);
            let status = match ready.status {
                "not_ready" => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::OK,
            };
            // Serialized from the structs (not a `Value`, whose keys would be sorted):
            // `status` first, then the checks.
            let mut resp = response::json(status, &serde_json::Value::Null);
            *resp.body_mut() = response::full(serde_json::to_string(&ready).unwrap_or_default());
            resp
        }
        "/metrics" => {
            let scraped = scrape(gw).await;
            let mut resp = response::text(StatusCode::OK, gw.metrics.render(&scraped));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            resp
        }
        "/jwks.json" => {
            let mut resp = response::json(StatusCode::OK, &client_jwks(gw));
            // Public keys that change only with the config: providers may cache them a
            // while (a reload with a new key is seen within five minutes).
            resp.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("public, max-age=300"),
            );
            resp
        }
        _ => response::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The public keys of every provider that uses `private_key_jwt`, once per `kid`: what a
/// provider that fetches the client's JWKS (`jwks_uri` in its client registration) reads.
fn client_jwks(gw: &Services) -> serde_json::Value {
    let mut keys: Vec<serde_json::Value> = Vec::new();
    let mut kids = std::collections::HashSet::new();
    for key in gw
        .config
        .providers
        .iter()
        .filter_map(|p| p.private_key.as_ref())
    {
        if kids.insert(key.kid().to_string()) {
            keys.extend(serde_json::to_value(key.public_jwk()).ok());
        }
    }
    serde_json::json!({ "keys": keys })
}

/// What `/metrics` copies in from the services when scraped.
async fn scrape(gw: &Services) -> Scrape {
    let (entries, bytes) = gw.token_cache.size().await;
    let mut caches = vec![("token", entries, bytes)];
    if let Some((entries, bytes)) = gw.sessions.decode_cache_size() {
        caches.push(("session_cookie", entries, bytes));
    }
    Scrape {
        provider_ready: gw.providers.iter().all(|p| p.is_ready()),
        config_generation: gw.generation,
        redis: gw.replicas.status().map(|status| {
            let up = status.subscribed && !matches!(status.health, Health::Degraded(_));
            (up, status.errors)
        }),
        memory_sessions: gw.sessions.memory_sessions().await,
        caches,
    }
}

/// The `/readyz` body: `ready`, `degraded` (still 200) or `not_ready` (503), and each check.
#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    checks: Checks,
    /// The running configuration: its generation (1 at start, +1 per reload).
    config: ConfigState,
}

#[derive(Serialize)]
struct ConfigState {
    generation: u64,
}

#[derive(Serialize)]
struct Checks {
    /// Every provider together (the one provider's check when there is one).
    provider: ProviderCheck,
    /// With several providers: each one's check, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    providers: Option<std::collections::BTreeMap<String, ProviderCheck>>,
    listeners: ListenersCheck,
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<RedisCheck>,
}

#[derive(Clone, Serialize)]
struct ProviderCheck {
    status: &'static str,
    discovery: bool,
    jwks: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Serialize)]
struct ListenersCheck {
    status: &'static str,
    bound: Vec<String>,
}

#[derive(Serialize)]
struct RedisCheck {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// Ready once the provider's discovery document and JWKS are loaded and the listeners
/// are bound. A Redis that is down leaves the gateway ready (degraded): every replica
/// would otherwise be taken out of the load balancer at once, while cookie sessions
/// still work without Redis.
fn readiness(gw: &Services, listeners: &[SocketAddr]) -> Readiness {
    let checks: Vec<(String, ProviderCheck)> = gw
        .providers
        .iter()
        .map(|p| (p.config().name.clone(), provider_check(p.readiness())))
        .collect();
    let provider_ok = checks.iter().all(|(_, c)| c.status == "ok");
    let provider = match &checks[..] {
        [(_, one)] => one.clone(),
        several => ProviderCheck {
            status: if provider_ok { "ok" } else { "failed" },
            discovery: several.iter().all(|(_, c)| c.discovery),
            jwks: several.iter().all(|(_, c)| c.jwks),
            detail: (!provider_ok).then(|| {
                several
                    .iter()
                    .filter_map(|(name, c)| Some(format!("{name}: {}", c.detail.as_ref()?)))
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
        },
    };
    let providers = (checks.len() > 1).then(|| checks.into_iter().collect());
    let listeners_ok = !listeners.is_empty();
    let listeners = ListenersCheck {
        status: if listeners_ok { "ok" } else { "failed" },
        bound: listeners.iter().map(ToString::to_string).collect(),
    };
    let redis = gw.replicas.status().map(|status| {
        let cause = match (&status.health, status.subscribed) {
            (Health::Degraded(cause), _) => Some(cause.clone()),
            (_, false) => Some("not subscribed yet".to_string()),
            (_, true) => None,
        };
        RedisCheck {
            status: if cause.is_some() { "degraded" } else { "ok" },
            detail: cause
                .map(|cause| format!("{cause}; logouts and refreshes are local until it is back")),
        }
    });
    let status = if !(provider_ok && listeners_ok) {
        "not_ready"
    } else if redis.as_ref().is_some_and(|r| r.detail.is_some()) {
        "degraded"
    } else {
        "ready"
    };
    Readiness {
        status,
        checks: Checks {
            provider,
            providers,
            listeners,
            redis,
        },
        config: ConfigState {
            generation: gw.generation,
        },
    }
}

/// One provider's readiness check: ok once its discovery document and JWKS are loaded.
fn provider_check(loaded: crate::provider::Readiness) -> ProviderCheck {
    let ok = loaded.discovery && loaded.jwks;
    ProviderCheck {
        status: if ok { "ok" } else { "failed" },
        discovery: loaded.discovery,
        jwks: loaded.jwks,
        detail: (!ok).then(|| {
            let missing = if loaded.discovery {
                "JWKS not loaded"
            } else {
                "discovery document not loaded"
            };
            match loaded.failure {
                Some(cause) => format!("{missing}: {cause}"),
                None => format!("{missing} yet"),
            }
        }),
    }
}
