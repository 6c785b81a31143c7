//! One error type for everything a request can fail on, and the one function that turns
//! it into a response (status, page, log line). Variants name the failed check.

use crate::oidc::provider::ProviderUnavailable;
use crate::response::{page, Body};
use http::{Response, StatusCode};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// The authorization response could not be tied to a login this browser started.
    #[error("login could not be matched: {0}")]
    LoginMismatch(&'static str),
    /// The provider answered the authorization request with an error.
    // Debug formatting: the provider's text is attacker-influenced; no raw newlines in logs.
    #[error("provider returned error {error:?}")]
    ProviderError {
        error: String,
        description: Option<String>,
    },
    /// The token endpoint refused or failed the code exchange.
    #[error("code exchange failed: {0:?}")]
    TokenExchange(String),
    /// The ID token failed a check; the string names it.
    #[error("ID token rejected: {0}")]
    IdToken(String),
    #[error("userinfo failed: {0}")]
    Userinfo(String),
    #[error(transparent)]
    ProviderUnavailable(#[from] ProviderUnavailable),
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("claim rule not satisfied: {0}")]
    Forbidden(String),
    #[error("session could not be stored: {0}")]
    Session(String),
    /// The server-side session store (Redis) is unreachable.
    #[error("session store unavailable: {0}")]
    SessionStoreUnavailable(String),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_)
            | GatewayError::LoginMismatch(_)
            | GatewayError::ProviderError { .. } => StatusCode::BAD_REQUEST,
            GatewayError::TokenExchange(_)
            | GatewayError::IdToken(_)
            | GatewayError::Userinfo(_)
            | GatewayError::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            GatewayError::ProviderUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::Session(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::SessionStoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The response for this error; logs it once. Messages never contain secrets: the
    /// variants carry check names and provider error codes, not token values.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = %self, "request refused");
        }
        let start_again = Some(("/", "Start again"));
        match &self {
            GatewayError::BadRequest(reason) => page(status, "Invalid request", reason, None),
            GatewayError::LoginMismatch(why) => page(
                status,
                "Login could not be completed",
                &format!("The login could not be matched to this browser ({why}). Please start again."),
                start_again,
            ),
            GatewayError::ProviderError { error, description } => page(
                status,
                "Login failed",
                &match description {
                    Some(d) => format!("The identity provider returned the error \"{error}\": {d}"),
                    None => format!("The identity provider returned the error \"{error}\"."),
                },
                start_again,
            ),
            GatewayError::TokenExchange(why) => page(
                status,
                "Login failed",
                &format!("The identity provider did not complete the login: {why}"),
                start_again,
            ),
            GatewayError::IdToken(check) => page(
                status,
                "Login failed",
                &format!("The identity provider's ID token was rejected: {check}"),
                start_again,
            ),
            GatewayError::Userinfo(why) => page(
                status,
                "Login failed",
                &format!("The identity provider's user information was rejected: {why}"),
                start_again,
            ),
            GatewayError::ProviderUnavailable(_) => page(
                status,
                "Identity provider unreachable",
                "The identity provider is unreachable right now, so you cannot log in. Please try again in a moment.",
                None,
            ),
            GatewayError::UpstreamUnreachable(_) => page(
                status,
                "Bad gateway",
                "The application behind this gateway is unreachable.",
                None,
            ),
            GatewayError::UpstreamTimeout => page(
                status,
                "Gateway timeout",
                "The application behind this gateway did not answer in time.",
                None,
            ),
            GatewayError::Forbidden(_) => page(
                status,
                "Access denied",
                "You are logged in, but your account is not allowed to use this application.",
                None,
            ),
            GatewayError::SessionStoreUnavailable(_) => page(
                status,
                "Temporarily unavailable",
                "Sessions cannot be stored right now, so you cannot log in. Please try again in a moment.",
                None,
            ),
            GatewayError::Session(_) => page(
                status,
                "Session error",
                "Your session could not be stored. Please contact the administrator.",
                None,
            ),
        }
    }
}
