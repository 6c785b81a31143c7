//! Every check the development provider can fail, named, and the one place each family of
//! failures becomes an HTTP answer (JSON error, error redirect, or error page).

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::StatusCode;
use serde_json::json;

use super::http::{html, json, redirect, with_query, Resp};
use super::keys::JwtError;
use super::pages;

/// Reading a form body failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormError {
    #[error("only application/x-www-form-urlencoded bodies are supported")]
    NotFormEncoded,
    #[error("the request body is unreadable or larger than 64 KiB")]
    BodyUnreadable,
}

/// Failures at the JSON endpoints: token, introspection, revocation.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error(transparent)]
    Form(#[from] FormError),
    #[error("missing required parameter '{0}'")]
    MissingParameter(&'static str),
    #[error("parameter '{0}' must not be included more than once")]
    RepeatedParameter(String),
    #[error("client authentication must use exactly one method")]
    MultipleClientAuth,
    #[error("client_id in the body does not match the HTTP Basic credentials")]
    ClientIdMismatch,
    #[error("no client authentication was provided")]
    NoClientAuth,
    #[error("malformed HTTP Basic credentials")]
    MalformedBasic,
    #[error("client authentication failed")]
    ClientAuthFailed { basic: bool },
    #[error("client authentication method {0} is not the one registered")]
    ClientAuthMethodRefused(&'static str),
    #[error("client assertion refused: {0}")]
    AssertionRefused(&'static str),
    #[error("authorization code not found")]
    CodeNotFound,
    #[error("authorization code was issued to another client")]
    CodeClientMismatch,
    #[error("authorization code is expired")]
    CodeExpired,
    #[error("authorization code already consumed")]
    CodeConsumed,
    #[error("redirect_uri does not match the authorization request")]
    RedirectUriMismatch,
    #[error("PKCE verification failed: code_verifier missing")]
    PkceVerifierMissing,
    #[error("PKCE verification failed: the authorization request had no code_challenge")]
    PkceVerifierUnexpected,
    #[error("PKCE verification failed")]
    PkceMismatch,
    #[error("refresh token grants are refused (test knob)")]
    RefreshRefused,
    #[error("refresh token not found or revoked")]
    RefreshNotFound,
    #[error("refresh token was issued to another client")]
    RefreshClientMismatch,
    #[error("refresh token is expired")]
    RefreshExpired,
    #[error("refresh token already used (rotation); the grant is revoked")]
    RefreshConsumed,
    #[error("requested scope exceeds the scope originally granted")]
    ScopeExceedsGrant,
    #[error("unsupported grant_type '{0}'")]
    UnsupportedGrantType(String),
}

impl TokenError {
    /// The RFC 6749 §5.2 error code.
    pub(crate) fn code(&self) -> &'static str {
        use TokenError::*;
        match self {
            Form(_) | MissingParameter(_) | RepeatedParameter(_) | MultipleClientAuth
            | ClientIdMismatch => "invalid_request",
            NoClientAuth
            | MalformedBasic
            | ClientAuthFailed { .. }
            | ClientAuthMethodRefused(_)
            | AssertionRefused(_) => "invalid_client",
            ScopeExceedsGrant => "invalid_scope",
            UnsupportedGrantType(_) => "unsupported_grant_type",
            _ => "invalid_grant",
        }
    }

    /// Whether the client tried HTTP Basic (then 401 must carry a Basic challenge).
    fn basic_tried(&self) -> bool {
        matches!(
            self,
            TokenError::MalformedBasic | TokenError::ClientAuthFailed { basic: true }
        )
    }

    pub(crate) fn response(&self) -> Resp {
        let body = json!({"error": self.code(), "error_description": self.to_string()});
        if self.code() != "invalid_client" {
            return json(StatusCode::BAD_REQUEST, &body);
        }
        let mut resp = json(StatusCode::UNAUTHORIZED, &body);
        if self.basic_tried() {
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"devop\""),
            );
        }
        resp
    }
}

/// Authorization request failures that must NOT redirect: the client or redirect_uri
/// cannot be trusted, so the user sees an error page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UntrustedRequest {
    #[error("missing required parameter 'client_id'")]
    MissingClientId,
    #[error("unknown client_id")]
    UnknownClient,
    #[error("missing required parameter 'redirect_uri'")]
    MissingRedirectUri,
    #[error("redirect_uri is not registered for this client (exact match required)")]
    UnregisteredRedirectUri,
    #[error("parameter '{0}' must not be included more than once")]
    RepeatedParameter(&'static str),
    #[error("request_uri is unknown, expired or another client's")]
    UnknownRequestUri,
    #[error("authorization requests must be pushed (require_pushed_authorization_requests)")]
    ParRequired,
}

impl UntrustedRequest {
    pub(crate) fn response(&self) -> Resp {
        html(
            StatusCode::BAD_REQUEST,
            pages::error("Invalid authorization request", &self.to_string()),
        )
    }
}

/// Authorization request failures reported to the client by redirect (RFC 6749 §4.1.2.1).
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthRequestError {
    #[error("parameter '{0}' must not be included more than once")]
    RepeatedParameter(String),
    #[error("missing required parameter 'response_type'")]
    MissingResponseType,
    #[error("only response_type=code is supported")]
    UnsupportedResponseType,
    #[error("only response_mode=query or form_post is supported")]
    UnsupportedResponseMode,
    #[error("scope must contain 'openid'")]
    OpenidScopeMissing,
    #[error("code_challenge_method requires a code_challenge")]
    ChallengeMethodWithoutChallenge,
    #[error("code_challenge_method must be S256 or plain")]
    UnsupportedChallengeMethod,
    #[error("code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]")]
    MalformedChallenge,
    #[error("prompt=none but there is no session at the provider")]
    LoginRequired,
    #[error("request objects are not supported")]
    RequestNotSupported,
    #[error("request_uri is not supported")]
    RequestUriNotSupported,
}

impl AuthRequestError {
    pub(crate) fn code(&self) -> &'static str {
        use AuthRequestError::*;
        match self {
            UnsupportedResponseType => "unsupported_response_type",
            OpenidScopeMissing => "invalid_scope",
            LoginRequired => "login_required",
            RequestNotSupported => "request_not_supported",
            RequestUriNotSupported => "request_uri_not_supported",
            _ => "invalid_request",
        }
    }

    /// `302` to the (already validated) redirect URI with error, state and iss (RFC 9207).
    pub(crate) fn response(&self, redirect_uri: &str, state: Option<&str>, issuer: &str) -> Resp {
        let description = self.to_string();
        let mut pairs = vec![
            ("error", self.code()),
            ("error_description", description.as_str()),
        ];
        if let Some(state) = state {
            pairs.push(("state", state));
        }
        pairs.push(("iss", issuer));
        redirect(&with_query(redirect_uri, &pairs))
    }
}

/// RP-initiated logout failures; always an error page, never a redirect.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogoutError {
    #[error(transparent)]
    Form(#[from] FormError),
    #[error("parameter '{0}' must not be included more than once")]
    RepeatedParameter(String),
    #[error("id_token_hint: {0}")]
    IdTokenHint(#[from] JwtError),
    #[error("id_token_hint was not issued by this provider")]
    IdTokenHintWrongIssuer,
    #[error("id_token_hint was not issued to this client")]
    IdTokenHintWrongAudience,
    #[error("unknown client_id")]
    UnknownClient,
    #[error("post_logout_redirect_uri requires id_token_hint or client_id")]
    PostLogoutUriWithoutClient,
    #[error("post_logout_redirect_uri is not registered (exact match required)")]
    UnregisteredPostLogoutUri,
}

impl LogoutError {
    pub(crate) fn response(&self) -> Resp {
        html(
            StatusCode::BAD_REQUEST,
            pages::error("Invalid logout request", &self.to_string()),
        )
    }
}

/// Failures at the userinfo endpoint (RFC 6750 §3).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BearerError {
    #[error("no bearer token")]
    Missing,
    #[error("the access token is unknown, expired or revoked")]
    InvalidToken,
    #[error("the access token lacks the openid scope")]
    InsufficientScope,
}

impl BearerError {
    pub(crate) fn response(&self) -> Resp {
        let (status, challenge, code) = match self {
            // §3.1: without any credentials, no error code.
            BearerError::Missing => (StatusCode::UNAUTHORIZED, "Bearer realm=\"devop\"", None),
            BearerError::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"devop\", error=\"invalid_token\"",
                Some("invalid_token"),
            ),
            BearerError::InsufficientScope => (
                StatusCode::FORBIDDEN,
                "Bearer realm=\"devop\", error=\"insufficient_scope\"",
                Some("insufficient_scope"),
            ),
        };
        let body = match code {
            Some(code) => json!({"error": code, "error_description": self.to_string()}),
            None => json!({"error": "invalid_request", "error_description": self.to_string()}),
        };
        let mut resp = json(status, &body);
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        resp
    }
}
