//! Outbound connections: the rustls connector shared by the provider and upstream
//! clients, and the client for calls to the OpenID Provider (one hyper-util pool, with a
//! timeout and a response-size bound, and no redirect following: a provider that
//! redirects a back-channel call is an error, not a hop to follow).

use crate::metrics::Metrics;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::Semaphore;

/// Largest provider response read (metadata, JWKS, token, userinfo, introspection).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

pub(crate) type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Builds the TLS-capable connector shared by the provider and upstream clients: system
/// roots when the machine has any, else the bundled Mozilla roots.
pub(crate) fn https_connector(connect_timeout: Duration) -> HttpsConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_native_roots() {
        Ok(b) => b,
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots(),
    };
    builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum OpHttpError {
    /// `provider.max_concurrent_calls` calls are already in flight: this one is shed
    /// rather than queued, so a flood cannot get the gateway throttled at the provider.
    #[error("too many calls to the provider in flight")]
    Busy,
    #[error("the provider did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the provider: {0}")]
    Connect(String),
    #[error("the provider's response is larger than {MAX_RESPONSE_BYTES} bytes or broken: {0}")]
    Body(String),
    #[error("invalid request: {0}")]
    Request(String),
}

/// Which of the provider's endpoints a call goes to (metrics and traces name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Discovery,
    Jwks,
    /// The token endpoint, for an authorization code.
    Token,
    /// The token endpoint, for a refresh token.
    Refresh,
    Introspection,
    Userinfo,
    Revocation,
    /// The pushed authorization request endpoint (RFC 9126).
    Par,
}

impl Endpoint {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Endpoint::Discovery => "discovery",
            Endpoint::Jwks => "jwks",
            Endpoint::Token => "token",
            Endpoint::Refresh => "refresh",
            Endpoint::Introspection => "introspection",
            Endpoint::Userinfo => "userinfo",
            Endpoint::Revocation => "revocation",
            Endpoint::Par => "par",
        }
    }
}

/// The future openidconnect awaits for one provider call.
pub(crate) type OpFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<http::Response<Vec<u8>>, OpHttpError>> + Send>,
>;

/// Cheap to clone: the pool, the concurrency budget and the metrics are shared.
#[derive(Clone)]
pub(crate) struct OpClient {
    client: Client<HttpsConnector, Full<Bytes>>,
    timeout: Duration,
    in_flight: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl OpClient {
    pub(crate) fn new(timeout: Duration, max_concurrent: usize, metrics: Arc<Metrics>) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https_connector(timeout));
        Self {
            client,
            timeout,
            in_flight: Arc::new(Semaphore::new(max_concurrent)),
            metrics,
        }
    }

    /// Sends one request and reads the whole (bounded) response.
    pub(crate) async fn call(
        &self,
        endpoint: Endpoint,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, OpHttpError> {
        let started = Instant::now();
        let Ok(_slot) = self.in_flight.try_acquire() else {
            self.metrics.provider_calls_shed.inc();
            self.metrics
                .provider_call(endpoint.as_str(), "shed", started.elapsed());
            return Err(OpHttpError::Busy);
        };
        let span = crate::telemetry::provider_span(endpoint.as_str());
        let result = self.send(request).await;
        crate::telemetry::provider_outcome(&span, result.as_ref().ok().map(|r| r.status()));
        let outcome = match &result {
            Ok(response) if response.status().is_success() => "ok",
            Ok(_) => "refused",
            Err(_) => "error",
        };
        self.metrics
            .provider_call(endpoint.as_str(), outcome, started.elapsed());
        result
    }

    /// The request on the wire, within `timeout`, its response read whole (bounded).
    async fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, OpHttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let work = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| OpHttpError::Connect(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| OpHttpError::Body(e.to_string()))?
                .to_bytes();
            Ok(http::Response::from_parts(parts, bytes.to_vec()))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| OpHttpError::Timeout(self.timeout))?
    }

    /// The client in the shape openidconnect's `request_async` takes.
    pub(crate) fn for_openidconnect(
        &self,
        endpoint: Endpoint,
    ) -> impl Fn(http::Request<Vec<u8>>) -> OpFuture + '_ {
        move |request| {
            let this = self.clone();
            Box::pin(async move { this.call(endpoint, request).await })
        }
    }

    /// GET `url` with an `Accept: application/json` header.
    pub(crate) async fn get(
        &self,
        endpoint: Endpoint,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<http::Response<Vec<u8>>, OpHttpError> {
        let mut builder = http::Request::get(url).header(http::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = builder
            .body(Vec::new())
            .map_err(|e| OpHttpError::Request(e.to_string()))?;
        self.call(endpoint, request).await
    }
}

/// The error and its sources in one line, for logs and 503 pages.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
