//! Starting a login: tell browsers from API clients, then redirect the browser to the
//! provider's authorization endpoint with state, nonce and PKCE, remembering them in a
//! sealed state cookie.

use super::state::{self, LoginState};
use crate::config::{Par, Pkce, ResponseMode};
use crate::error::GatewayError;
use crate::error::{printable, ProviderUnavailable};
use crate::outbound::Endpoint;
use crate::provider::Provider;
use crate::provider::{client_authenticated_post, Discovered};
use crate::request::RequestCtx;
use crate::response::{self, Body};
use crate::services::Services;
use http::header::{HeaderMap, ACCEPT};
use http::{Response, StatusCode};
use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge, RedirectUrl, Scope};
use std::borrow::Cow;

/// Whether the request comes from a browser navigating (which can follow a login
/// redirect) rather than from script or an API client (which gets a 401).
pub(crate) fn is_browser_navigation(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // A WebSocket (or other protocol upgrade) cannot follow a login redirect.
    if headers.contains_key(http::header::UPGRADE) {
        return false;
    }
    if header("x-requested-with").is_some_and(|v| v.eq_ignore_ascii_case("XMLHttpRequest")) {
        return false;
    }
    if header("sec-fetch-mode").is_some_and(|v| !v.eq_ignore_ascii_case("navigate")) {
        return false;
    }
    let accepts: Vec<&str> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    accepts.is_empty()
        || accepts.iter().flat_map(|a| a.split(',')).any(|media| {
            let media = media.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("text/html") || media == "*/*"
        })
}

/// The 401 answer for clients that cannot follow a login redirect.
pub(crate) fn unauthorized() -> Response<Body> {
    response::text(StatusCode::UNAUTHORIZED, "401 Unauthorized: log in first\n")
}

/// Redirects the browser to `provider`. `return_to` is the origin-relative URL to come
/// back to, or an absolute http(s) URL already validated as a redirect target
/// (`server.login_path`'s `rd`); `extra_cookies` (e.g. clearing a bad session cookie) ride
/// along.
pub(crate) async fn start(
    gw: &Services,
    provider: &Provider,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    method: &http::Method,
    return_to: &str,
    extra_cookies: Vec<http::HeaderValue>,
) -> Response<Body> {
    match build(gw, provider, ctx, headers, method, return_to, None).await {
        Ok((location, mut cookies)) => {
            gw.metrics.logins_started.inc();
            cookies.extend(extra_cookies);
            response::with_cookies(response::redirect(&location), cookies)
        }
        Err(e) => response::with_cookies(e.into_response(), extra_cookies),
    }
}

/// `return_to` with any run of leading slashes or backslashes collapsed to one `/`. A
/// request for `//evil.com/x` routes like `/evil.com/x`, but sent back verbatim after the
/// login it would be a scheme-relative redirect to evil.com.
pub(crate) fn on_site(return_to: &str) -> String {
    format!("/{}", return_to.trim_start_matches(['/', '\\']))
}

/// The authorization URL and the Set-Cookie values (older state cookies pruned, the new
/// one) of a login; `kept_post` is the id of the form kept for it (`preserve_post`).
pub(crate) async fn build(
    gw: &Services,
    provider: &Provider,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    method: &http::Method,
    return_to: &str,
    kept_post: Option<String>,
) -> Result<(String, Vec<http::HeaderValue>), GatewayError> {
    let discovered = provider.get().await?;
    let cfg = provider.config();
    let redirect_uri = cfg.redirect_uri.resolve(ctx.scheme, &ctx.host);
    let redirect_url = RedirectUrl::new(redirect_uri.clone()).map_err(|_| {
        GatewayError::BadRequest("the request's host cannot form a redirect URI".into())
    })?;

    let mut request = discovered
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_redirect_uri(Cow::Owned(redirect_url));
    for scope in cfg.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let verifier = match cfg.pkce {
        Pkce::S256 => {
            let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            Some(verifier.secret().clone())
        }
        Pkce::Plain => {
            let (challenge, verifier) = PkceCodeChallenge::new_random_plain();
            request = request.set_pkce_challenge(challenge);
            Some(verifier.secret().clone())
        }
        Pkce::None => None,
    };
    for (name, value) in &cfg.auth_params {
        request = request.add_extra_param(name.as_str(), value.as_str());
    }
    let form_post = cfg.response_mode == ResponseMode::FormPost;
    if form_post {
        request = request.add_extra_param("response_mode", "form_post");
    }
    let (url, csrf, nonce) = request.url();
    let url = if uses_par(cfg.par, &discovered) {
        push(provider, &discovered, &url).await?
    } else {
        url.to_string()
    };

    let now = gw.clock.now();
    let login = LoginState {
        state: csrf.secret().clone(),
        return_to: if return_to.starts_with("https://") || return_to.starts_with("http://") {
            return_to.to_string()
        } else {
            on_site(return_to)
        },
        method: method.as_str().to_string(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier,
        redirect_uri,
        created_at: now,
        kept_post,
        provider: cfg.name.clone(),
        form_post,
    };
    let codec = gw.sessions.codec();
    let session_cfg = &gw.config.session;
    let mut cookies = state::prune(codec, session_cfg, headers, now, ctx.secure());
    cookies.extend(state::seal(codec, session_cfg, &login, ctx.secure()));
    Ok((url, cookies))
}

/// Whether this login's request is pushed (RFC 9126): `always`, or with `auto` when the
/// provider requires it (and names where).
fn uses_par(par: Par, discovered: &Discovered) -> bool {
    let extra = discovered.extra();
    match par {
        Par::Always => true,
        Par::Never => false,
        Par::Auto => {
            extra.pushed_authorization_request_endpoint.is_some()
                && extra.require_pushed_authorization_requests == Some(true)
        }
    }
}

/// The RFC 9126 response: a reference to the pushed request.
#[derive(serde::Deserialize)]
struct PushedRequest {
    request_uri: String,
    /// Required by RFC 9126 §2.2; read so a response without it is refused.
    #[allow(dead_code)]
    expires_in: u64,
}

/// Pushes the authorization request of `url` (its query, with client authentication) and
/// returns the browser's URL: the authorization endpoint with only `client_id` and
/// `request_uri`.
async fn push(
    provider: &Provider,
    discovered: &Discovered,
    url: &url::Url,
) -> Result<String, GatewayError> {
    let cfg = provider.config();
    let Some(endpoint) = discovered
        .extra()
        .pushed_authorization_request_endpoint
        .as_ref()
    else {
        tracing::warn!(provider = %cfg.name, "provider.par = \"always\", but the provider's metadata has no pushed_authorization_request_endpoint");
        return Err(ProviderUnavailable(
            "provider.par = \"always\", but the provider's metadata has no pushed_authorization_request_endpoint".into(),
        )
        .into());
    };
    let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let borrowed: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let request = client_authenticated_post(provider, endpoint.as_str(), &borrowed)
        .await
        .map_err(|e| GatewayError::PushedRequest(e.to_string()))?;
    let response = provider
        .http()
        .call(Endpoint::Par, request)
        .await
        .map_err(|e| ProviderUnavailable(format!("pushed authorization request: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let error = serde_json::from_slice::<serde_json::Value>(response.body())
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(printable))
            .unwrap_or_default();
        tracing::warn!(provider = %cfg.name, %status, %error, "pushed authorization request refused");
        return Err(GatewayError::PushedRequest(format!(
            "the provider answered {status} {error}"
        )));
    }
    let pushed: PushedRequest = serde_json::from_slice(response.body()).map_err(|_| {
        GatewayError::PushedRequest("the response has no request_uri and expires_in".into())
    })?;
    let mut browser = discovered.metadata.authorization_endpoint().url().clone();
    browser
        .query_pairs_mut()
        .append_pair("client_id", &cfg.client_id)
        .append_pair("request_uri", &pushed.request_uri);
    Ok(browser.to_string())
}

#[cfg(test)]
mod tests {
    use super::on_site;

    #[test]
    fn return_addresses_stay_on_site() {
        assert_eq!(on_site("/app?x=1"), "/app?x=1");
        assert_eq!(on_site("//evil.com/x"), "/evil.com/x");
        assert_eq!(on_site("/\\evil.com"), "/evil.com");
        assert_eq!(on_site("///\\/evil.com?a=//b"), "/evil.com?a=//b");
        assert_eq!(on_site("/"), "/");
    }
}
