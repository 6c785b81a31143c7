//! Grants at the provider's token endpoint: the authorization code of a login and the
//! refresh token of a session. Errors name what failed ([`GrantError`]); the provider's
//! own error texts are kept printable.

use super::client_auth::{client_assertion, ASSERTION_TYPE};
use super::id_token::{verify_id_token, VerifiedIdToken};
use super::{Discovered, Provider};
use crate::error::{printable, GrantError};
use crate::outbound::Endpoint;
use crate::outbound::OpHttpError;
use crate::secret::Secret;
use openidconnect::core::{CoreErrorResponseType, CoreTokenResponse, CoreTokenType};

use openidconnect::{
    AuthorizationCode, OAuth2TokenResponse, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, StandardErrorResponse, TokenResponse,
};
use std::borrow::Cow;

/// What a successful refresh grant produced.
pub(crate) struct TokenGrant {
    pub(crate) access_token: Secret,
    pub(crate) expires_at: Option<i64>,
    /// `None` when the provider did not rotate the refresh token.
    pub(crate) refresh_token: Option<Secret>,
    pub(crate) id_token: Option<VerifiedIdToken>,
}

type TokenRequestError =
    RequestTokenError<OpHttpError, StandardErrorResponse<CoreErrorResponseType>>;

fn request_error(e: TokenRequestError) -> GrantError {
    match e {
        RequestTokenError::ServerResponse(r) => GrantError::Refused {
            error: printable(r.error().as_ref()),
            description: r.error_description().map(|d| printable(d)),
        },
        RequestTokenError::Request(e) => GrantError::Unreachable(e),
        RequestTokenError::Parse(e, _body) => GrantError::Malformed(e),
        RequestTokenError::Other(m) => GrantError::Protocol(printable(&m)),
    }
}

/// Exchanges a login's authorization code (with its redirect URI and PKCE verifier).
pub(crate) async fn code_grant(
    provider: &Provider,
    discovered: &Discovered,
    code: String,
    redirect_url: RedirectUrl,
    pkce_verifier: Option<String>,
) -> Result<CoreTokenResponse, GrantError> {
    let mut exchange = discovered
        .client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(GrantError::NoTokenEndpoint)?
        .set_redirect_uri(Cow::Owned(redirect_url));
    if let Some(v) = pkce_verifier {
        exchange = exchange.set_pkce_verifier(PkceCodeVerifier::new(v));
    }
    let assertion = client_assertion(provider.config(), discovered, provider.clock().now())?;
    if let Some(assertion) = &assertion {
        exchange = exchange
            .add_extra_param("client_assertion_type", ASSERTION_TYPE)
            .add_extra_param("client_assertion", assertion.expose());
    }
    let http = provider.http().for_openidconnect(Endpoint::Token);
    let response = exchange.request_async(&http).await.map_err(request_error)?;
    require_bearer(&response)?;
    Ok(response)
}

/// RFC 6749 §7.1: a token of another type (`DPoP`, `MAC`, …) cannot be sent as the
/// bearer token the gateway passes upstream.
fn require_bearer(response: &CoreTokenResponse) -> Result<(), GrantError> {
    match response.token_type() {
        CoreTokenType::Bearer => Ok(()),
        other => Err(GrantError::NotBearer(printable(other.as_ref()))),
    }
}

/// One refresh grant. `scope` is not resent: the provider keeps the original grant's
/// scope. A refreshed ID token must keep the session's `sub`.
pub(crate) async fn refresh_grant(
    provider: &Provider,
    refresh_token: &Secret,
    sub: &str,
) -> Result<TokenGrant, GrantError> {
    let discovered = provider.get().await?;
    let token = RefreshToken::new(refresh_token.expose().to_string());
    let http = provider.http().for_openidconnect(Endpoint::Refresh);
    let mut exchange = discovered
        .client
        .exchange_refresh_token(&token)
        .map_err(GrantError::NoTokenEndpoint)?;
    let assertion = client_assertion(provider.config(), &discovered, provider.clock().now())?;
    if let Some(assertion) = &assertion {
        exchange = exchange
            .add_extra_param("client_assertion_type", ASSERTION_TYPE)
            .add_extra_param("client_assertion", assertion.expose());
    }
    let response = exchange.request_async(&http).await.map_err(request_error)?;
    require_bearer(&response)?;
    let id_token = match response.id_token() {
        Some(raw) => {
            let verified =
                verify_id_token(provider, discovered.clone(), &raw.to_string(), None).await?;
            if verified.str_claim("sub") != Some(sub) {
                return Err(crate::error::IdTokenError::SubjectChanged.into());
            }
            Some(verified)
        }
        None => None,
    };
    let now = provider.clock().now();
    Ok(TokenGrant {
        access_token: Secret::new(response.access_token().secret().clone()),
        expires_at: response.expires_in().map(|d| now + d.as_secs() as i64),
        refresh_token: response
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone())),
        id_token,
    })
}
