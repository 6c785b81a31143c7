//! The failures a request can meet, each variant naming the failed check, and the one
//! function that turns them into responses ([`GatewayError::into_response`]: status, page,
//! log line). The check enums of the provider calls (ID token, JWT, token grants) live here
//! too, because [`GatewayError`] carries them as its sources.

use crate::outbound::OpHttpError;
use crate::response::{self, page, Body};
use crate::session::SessionError;
use http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use openidconnect::{ClaimsVerificationError, ConfigurationError, SignatureVerificationError};

/// The provider's metadata or keys cannot be had (unreachable, or answering nonsense).
/// Carries the cause as one line: it is remembered and handed to every request for a
/// couple of seconds, so it must be cheap to clone.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the OpenID Provider is unreachable or misconfigured: {0}")]
pub struct ProviderUnavailable(pub String);

/// Why an ID token was refused. The `Display` of each variant starts with the claim or
/// step that failed (`iss: …`, `signature: …`), which the login error page shows.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdTokenError {
    #[error("missing: the token response has no id_token")]
    Missing,
    #[error("malformed: not a signed JWT")]
    Malformed(#[source] serde_json::Error),
    #[error("malformed claims")]
    MalformedClaims(#[source] jsonwebtoken::errors::Error),
    #[error("alg: unsigned tokens (alg none) are not accepted")]
    Unsigned,
    #[error("alg: {0}")]
    DisallowedAlg(String),
    #[error("signature: no key in the provider's JWKS matches the token's key id")]
    NoMatchingKey,
    #[error("signature: invalid")]
    Signature(#[source] SignatureVerificationError),
    /// Our `iat` window (too old, or in the future); the text says which.
    #[error("{0}")]
    IssuedAt(String),
    #[error("exp: the token has expired")]
    Expired(#[source] ClaimsVerificationError),
    #[error("aud: not for this client")]
    Audience(#[source] ClaimsVerificationError),
    #[error("iss: not the provider")]
    Issuer(#[source] ClaimsVerificationError),
    #[error("nonce: does not match the login")]
    Nonce(#[source] ClaimsVerificationError),
    #[error("sub: missing")]
    NoSubject,
    /// Several audiences without `azp`, or an `azp` that is not this client.
    #[error("azp: the token was not issued to this client")]
    Azp,
    #[error("sub: changed since login")]
    SubjectChanged,
    #[error("claims: refused")]
    Claims(#[source] ClaimsVerificationError),
}

impl From<ClaimsVerificationError> for IdTokenError {
    /// Names the failed check of openidconnect's verifier.
    fn from(e: ClaimsVerificationError) -> IdTokenError {
        use ClaimsVerificationError as C;
        use SignatureVerificationError as S;
        match e {
            // openidconnect reports our iat check as Expired; its message names it.
            C::Expired(m) if m.starts_with("iat") => IdTokenError::IssuedAt(m),
            C::Expired(_) => IdTokenError::Expired(e),
            C::InvalidAudience(_) => IdTokenError::Audience(e),
            C::InvalidIssuer(_) => IdTokenError::Issuer(e),
            C::InvalidNonce(_) => IdTokenError::Nonce(e),
            C::SignatureVerification(S::NoSignature) => IdTokenError::Unsigned,
            C::SignatureVerification(S::DisallowedAlg(m) | S::UnsupportedAlg(m)) => {
                IdTokenError::DisallowedAlg(m)
            }
            C::SignatureVerification(S::NoMatchingKey) => IdTokenError::NoMatchingKey,
            C::SignatureVerification(s) => IdTokenError::Signature(s),
            other => IdTokenError::Claims(other),
        }
    }
}

/// Why a JWT (bearer access token, back-channel logout token) was refused, or could not
/// be checked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtError {
    /// The provider's keys could not be had: not the token's fault.
    #[error(transparent)]
    Unavailable(#[from] ProviderUnavailable),
    #[error("malformed: not a JWT")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    #[error("alg: {0:?} is not allowed")]
    DisallowedAlg(jsonwebtoken::Algorithm),
    #[error("signature: no key in the provider's JWKS matches the kid")]
    NoMatchingKey,
    #[error("signature: unusable key")]
    UnusableKey(#[source] jsonwebtoken::errors::Error),
    #[error("signature: invalid")]
    Signature(#[source] jsonwebtoken::errors::Error),
    #[error("alg: does not match the key")]
    AlgorithmMismatch(#[source] jsonwebtoken::errors::Error),
    #[error("exp: the token has expired")]
    Expired,
    #[error("nbf: not yet valid")]
    NotYetValid,
    #[error("iss: not the provider")]
    Issuer,
    #[error("aud: not for this client")]
    Audience,
    #[error("{0}: missing")]
    MissingClaim(String),
    /// The `typ` header names another kind of token (`logout+jwt`, …).
    #[error("typ: {0:?} is not an access token type")]
    NotAccessToken(String),
    /// An ID token (it carries `nonce`) presented as an access token.
    #[error("nonce: an access token must not carry one")]
    Nonce,
    #[error("invalid")]
    Other(#[source] jsonwebtoken::errors::Error),
}

impl From<jsonwebtoken::errors::Error> for JwtError {
    fn from(e: jsonwebtoken::errors::Error) -> JwtError {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => JwtError::Signature(e),
            K::ExpiredSignature => JwtError::Expired,
            K::InvalidIssuer => JwtError::Issuer,
            K::InvalidAudience => JwtError::Audience,
            K::ImmatureSignature => JwtError::NotYetValid,
            K::MissingRequiredClaim(c) => JwtError::MissingClaim(c.clone()),
            K::InvalidAlgorithm => JwtError::AlgorithmMismatch(e),
            _ => JwtError::Other(e),
        }
    }
}

/// Why a grant at the token endpoint (authorization code, refresh token) failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GrantError {
    #[error(transparent)]
    Unavailable(#[from] ProviderUnavailable),
    #[error("the provider has no token endpoint")]
    NoTokenEndpoint(#[source] ConfigurationError),
    /// An OAuth error response (`invalid_grant`, …). Both texts come from the provider
    /// and are made printable (no control characters) before they are kept.
    #[error("the token endpoint answered {error}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("the token endpoint is unreachable")]
    Unreachable(#[source] OpHttpError),
    #[error("the token endpoint's answer is not a token response")]
    Malformed(#[source] serde_path_to_error::Error<serde_json::Error>),
    #[error("the token request failed: {0}")]
    Protocol(String),
    /// The client assertion (`private_key_jwt`, `client_secret_jwt`) could not be made.
    #[error("client authentication: {0}")]
    ClientAuth(String),
    #[error("ID token rejected: {0}")]
    IdToken(#[from] IdTokenError),
    /// RFC 6749 §7.1: the gateway uses access tokens as bearer tokens only.
    #[error("the token endpoint returned a token of type {0:?}, not Bearer")]
    NotBearer(String),
    /// Another replica made this grant (`[redis]`), and it failed or did not finish in
    /// time; the text is that replica's error or the wait.
    #[error("the refresh on another replica: {0}")]
    OtherReplica(String),
}

impl GrantError {
    /// Whether the provider could not be reached (as opposed to refusing).
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(
            self,
            GrantError::Unavailable(_) | GrantError::Unreachable(_)
        )
    }
}

/// Text from the provider or the client, safe to show and log: control characters (a
/// forged log line, a header split) become `?`.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Why a request on a bearer-token route was refused (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BearerError {
    /// No token, or more than one (header and query, say).
    #[error("invalid_request")]
    InvalidRequest,
    /// Malformed, unknown, inactive, expired, or failing a JWT check.
    #[error("invalid_token")]
    InvalidToken,
    /// Valid, but a claim rule of the route is not met.
    #[error("insufficient_scope")]
    InsufficientScope,
}

impl BearerError {
    fn status(self) -> StatusCode {
        match self {
            BearerError::InvalidRequest | BearerError::InvalidToken => StatusCode::UNAUTHORIZED,
            BearerError::InsufficientScope => StatusCode::FORBIDDEN,
        }
    }
}

/// Why a browser's form POST was not kept across a login (`route.preserve_post`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotKept {
    #[error("the form is larger than 64 KiB")]
    TooLarge,
    #[error("the body is not application/x-www-form-urlencoded")]
    MediaType,
    #[error("the form is not UTF-8")]
    NotUtf8,
    /// Neither `Sec-Fetch-Site: same-origin` nor an `Origin` of the gateway's own.
    #[error("the form was posted from another origin")]
    CrossOrigin,
    #[error("the form was not received in time")]
    Timeout,
    /// Redis did not take it (`[redis]`).
    #[error("the kept-forms store is unavailable")]
    Unavailable,
}

impl NotKept {
    fn status(self) -> StatusCode {
        match self {
            NotKept::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            NotKept::MediaType | NotKept::NotUtf8 => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            NotKept::CrossOrigin => StatusCode::FORBIDDEN,
            NotKept::Timeout => StatusCode::REQUEST_TIMEOUT,
            NotKept::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Why, for the person who sent the form.
    fn explained(self) -> &'static str {
        match self {
            NotKept::TooLarge => "it is larger than 64 KiB",
            NotKept::MediaType => {
                "only plain forms (application/x-www-form-urlencoded) are kept, not file \
                 uploads or other content"
            }
            NotKept::NotUtf8 => "only forms sent as UTF-8 are kept",
            NotKept::CrossOrigin => "it was sent from another site",
            NotKept::Timeout => "it did not arrive in time",
            NotKept::Unavailable => "the gateway cannot keep forms right now",
        }
    }
}

/// Why a form kept across a login was not re-submitted after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotResent {
    /// Not in the store: expired, pushed out by newer ones, or already re-submitted.
    #[error("the kept form is gone (expired, pushed out, or already sent)")]
    Gone,
    /// The kept form did not open (another passphrase), or is not this login's.
    #[error("the kept form does not belong to this login")]
    Mismatch,
    #[error("the kept-forms store is unavailable")]
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum GatewayError {
    /// The request has no usable `Host` (missing, or not a host name).
    #[error("the request has no valid Host")]
    BadHost,
    /// No route's path prefix matches.
    #[error("no route matches the path")]
    NoRoute,
    /// The path holds a (decoded) `.` or `..` segment.
    #[error("the path contains dot segments")]
    DotSegment,
    /// The decoded path holds a control character or is not UTF-8.
    #[error("invalid path: {0}")]
    BadPath(&'static str),
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// The authorization response could not be tied to a login this browser started.
    #[error("login could not be matched: {0}")]
    LoginMismatch(&'static str),
    /// The provider answered the authorization request with an error (made printable).
    #[error("provider returned error {error:?}")]
    ProviderError {
        error: String,
        description: Option<String>,
    },
    /// The token endpoint refused or failed the code exchange.
    #[error("code exchange failed: {0}")]
    TokenExchange(#[source] GrantError),
    #[error("ID token rejected: {0}")]
    IdToken(#[from] IdTokenError),
    #[error("userinfo failed: {0}")]
    Userinfo(String),
    /// The pushed authorization request (RFC 9126) was refused or answered wrongly.
    #[error("pushed authorization request failed: {0}")]
    PushedRequest(String),
    #[error(transparent)]
    ProviderUnavailable(#[from] ProviderUnavailable),
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("claim rule not satisfied: {0}")]
    Forbidden(String),
    /// The session could not be stored (too large, store unreachable, …).
    #[error("session could not be stored: {0}")]
    Session(#[from] SessionError),
    /// A bearer-token route refused the request.
    #[error("bearer token refused: {0}")]
    Bearer(BearerError),
    /// A form-encoded body (carrying the access token) is larger than the gateway reads.
    #[error("the form body is too large")]
    FormTooLarge,
    /// A body the gateway reads itself did not arrive within the read deadline.
    #[error("the request body was not received in time")]
    BodyTimeout,
    /// A bearer token could not be validated: the provider cannot be asked.
    #[error("bearer token could not be validated: {0}")]
    BearerUnavailable(#[source] ProviderUnavailable),
    /// A forward-auth check from an address outside `server.trusted_proxies`.
    #[error("forward-auth check from an untrusted address")]
    UntrustedForwardAuth,
    /// A browser's form POST could not be kept across the login it needs; `return_to` is
    /// where the person can start again.
    #[error("form not kept across the login: {why}")]
    PostNotKept { why: NotKept, return_to: String },
    /// The login finished, but the form kept for it could not be re-submitted.
    #[error("kept form not re-submitted: {why}")]
    PostNotResent { why: NotResent, return_to: String },
}

impl GatewayError {
    /// A short name for `/metrics` (`oidc_gateway_refusals_total{reason=…}`).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            GatewayError::BadHost => "bad_host",
            GatewayError::NoRoute => "no_route",
            GatewayError::DotSegment => "dot_segment",
            GatewayError::BadPath(_) => "bad_path",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::LoginMismatch(_) => "login_mismatch",
            GatewayError::ProviderError { .. } => "provider_error",
            GatewayError::TokenExchange(_) => "token_exchange",
            GatewayError::IdToken(_) => "id_token",
            GatewayError::Userinfo(_) => "userinfo",
            GatewayError::PushedRequest(_) => "pushed_request",
            GatewayError::ProviderUnavailable(_) => "provider_unavailable",
            GatewayError::UpstreamUnreachable(_) => "upstream_unreachable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::Forbidden(_) => "claim_rule",
            GatewayError::Session(_) => "session",
            GatewayError::Bearer(BearerError::InvalidRequest) => "bearer_invalid_request",
            GatewayError::Bearer(BearerError::InvalidToken) => "bearer_invalid_token",
            GatewayError::Bearer(BearerError::InsufficientScope) => "bearer_insufficient_scope",
            GatewayError::FormTooLarge => "form_too_large",
            GatewayError::BodyTimeout => "body_timeout",
            GatewayError::BearerUnavailable(_) => "bearer_unavailable",
            GatewayError::UntrustedForwardAuth => "forward_auth_untrusted",
            GatewayError::PostNotKept { why, .. } => match why {
                NotKept::TooLarge => "post_too_large",
                NotKept::MediaType => "post_media_type",
                NotKept::NotUtf8 => "post_not_utf8",
                NotKept::CrossOrigin => "post_cross_origin",
                NotKept::Timeout => "post_timeout",
                NotKept::Unavailable => "post_store_unavailable",
            },
            GatewayError::PostNotResent { why, .. } => match why {
                NotResent::Gone => "post_gone",
                NotResent::Mismatch => "post_mismatch",
                NotResent::Unavailable => "post_store_unavailable",
            },
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        use GatewayError as E;
        match self {
            E::BadHost
            | E::DotSegment
            | E::BadPath(_)
            | E::BadRequest(_)
            | E::LoginMismatch(_)
            | E::ProviderError { .. } => StatusCode::BAD_REQUEST,
            E::NoRoute => StatusCode::NOT_FOUND,
            E::TokenExchange(e) if e.is_unreachable() => StatusCode::SERVICE_UNAVAILABLE,
            E::TokenExchange(_)
            | E::IdToken(_)
            | E::Userinfo(_)
            | E::PushedRequest(_)
            | E::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            E::ProviderUnavailable(_) | E::BearerUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            E::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            E::Forbidden(_) | E::UntrustedForwardAuth => StatusCode::FORBIDDEN,
            E::Session(SessionError::Store(_)) => StatusCode::SERVICE_UNAVAILABLE,
            E::Session(_) => StatusCode::INTERNAL_SERVER_ERROR,
            E::Bearer(b) => b.status(),
            E::FormTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            E::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            E::PostNotKept { why, .. } => why.status(),
            E::PostNotResent { why, .. } => match why {
                NotResent::Gone | NotResent::Mismatch => StatusCode::GONE,
                NotResent::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    /// The response for this error; logs it once (routine refusals at debug, so a flood of
    /// bad requests cannot flood the log). Messages never contain secrets: the variants
    /// carry check names and provider error codes, not token values.
    pub(crate) fn into_response(self) -> Response<Body> {
        let provider_down = matches!(
            &self,
            GatewayError::ProviderUnavailable(_)
                | GatewayError::BearerUnavailable(_)
                | GatewayError::TokenExchange(
                    GrantError::Unavailable(_) | GrantError::Unreachable(_)
                )
        );
        let mut resp = self.respond();
        if provider_down {
            // The provider (or the gateway's budget of calls to it) should recover soon.
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }

    fn respond(self) -> Response<Body> {
        use GatewayError as E;
        let status = self.status();
        match &self {
            E::BadHost
            | E::NoRoute
            | E::DotSegment
            | E::BadPath(_)
            | E::Bearer(_)
            | E::FormTooLarge
            | E::BodyTimeout
            | E::UntrustedForwardAuth => {
                tracing::debug!(status = status.as_u16(), error = %self, "request refused")
            }
            // What a client sent: routine, like the refusals above.
            E::PostNotKept { why, .. } if *why != NotKept::Unavailable => {
                tracing::debug!(status = status.as_u16(), error = %self, "request refused")
            }
            _ if status.is_server_error() => {
                tracing::warn!(status = status.as_u16(), error = %self, "request failed")
            }
            _ => tracing::info!(status = status.as_u16(), error = %self, "request refused"),
        }
        let start_again = Some(("/", "Start again"));
        let unreachable = "The identity provider is unreachable right now, so you cannot log in. Please try again in a moment.";
        match &self {
            E::BadHost => page(status, "Invalid request", "The request has no valid Host.", None),
            E::NoRoute => page(
                status,
                "Not found",
                "No application is configured at this address.",
                None,
            ),
            E::DotSegment => page(
                status,
                "Invalid request",
                "The path contains dot segments.",
                None,
            ),
            E::BadPath(why) => page(status, "Invalid request", why, None),
            E::BadRequest(reason) => page(status, "Invalid request", reason, None),
            E::UntrustedForwardAuth => page(
                status,
                "Forbidden",
                "Forward-auth checks are answered for the front proxies in server.trusted_proxies only.",
                None,
            ),
            E::LoginMismatch(why) => page(
                status,
                "Login could not be completed",
                &format!("The login could not be matched to this browser ({why}). Please start again."),
                start_again,
            ),
            E::ProviderError { error, description } => page(
                status,
                "Login failed",
                &match description {
                    Some(d) => format!("The identity provider returned the error \"{error}\": {d}"),
                    None => format!("The identity provider returned the error \"{error}\"."),
                },
                start_again,
            ),
            E::TokenExchange(e) if e.is_unreachable() => {
                page(status, "Identity provider unreachable", unreachable, None)
            }
            E::TokenExchange(GrantError::IdToken(check)) | E::IdToken(check) => page(
                status,
                "Login failed",
                &format!("The identity provider's ID token was rejected: {check}"),
                start_again,
            ),
            E::TokenExchange(why) => page(
                status,
                "Login failed",
                &format!("The identity provider did not complete the login: {why}"),
                start_again,
            ),
            E::Userinfo(why) => page(
                status,
                "Login failed",
                &format!("The identity provider's user information was rejected: {why}"),
                start_again,
            ),
            E::PushedRequest(why) => page(
                status,
                "Login could not start",
                &format!("The identity provider did not accept the login request: {why}"),
                start_again,
            ),
            E::ProviderUnavailable(_) => {
                page(status, "Identity provider unreachable", unreachable, None)
            }
            E::BearerUnavailable(_) => page(
                status,
                "Identity provider unreachable",
                "The access token cannot be validated right now.",
                None,
            ),
            E::UpstreamUnreachable(_) => page(
                status,
                "Bad gateway",
                "The application behind this gateway is unreachable.",
                None,
            ),
            E::UpstreamTimeout => page(
                status,
                "Gateway timeout",
                "The application behind this gateway did not answer in time.",
                None,
            ),
            E::Forbidden(_) => page(
                status,
                "Access denied",
                "You are logged in, but your account is not allowed to use this application.",
                None,
            ),
            E::Session(SessionError::Store(_)) => page(
                status,
                "Temporarily unavailable",
                "Sessions cannot be stored right now, so you cannot log in. Please try again in a moment.",
                None,
            ),
            E::Session(_) => page(
                status,
                "Session error",
                "Your session could not be stored. Please contact the administrator.",
                None,
            ),
            E::Bearer(error) => {
                let mut resp =
                    response::text(status, format!("{} {error}\n", status.as_u16()));
                resp.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_str(&format!("Bearer error=\"{error}\""))
                        .expect("static header"),
                );
                resp
            }
            E::FormTooLarge => response::text(status, "413 form body too large\n"),
            E::PostNotKept { why, return_to } => page(
                status,
                "Your form could not be kept",
                &format!(
                    "You need to log in again, and the form you sent could not be kept while \
                     you do: {}. Log in, then fill in the form and send it again.",
                    why.explained()
                ),
                Some((return_to, "Log in again")),
            ),
            E::PostNotResent { why, return_to } => page(
                status,
                "Your form was not sent",
                &format!(
                    "You are logged in, but the form you sent before logging in {}: it did \
                     not reach the application. Please fill it in and send it again.",
                    match why {
                        NotResent::Gone => "has expired or was already sent",
                        NotResent::Mismatch => "could not be matched to this login",
                        NotResent::Unavailable => "cannot be read right now",
                    }
                ),
                Some((return_to, "Continue")),
            ),
            E::BodyTimeout => response::text(status, "408 request body not received in time\n"),
        }
    }
}

#[cfg(test)]
mod tests;
