//! Provider metadata (OpenID Connect Discovery 1.0) and the JWKS document.

use serde_json::{json, Value};

use super::provider::{lock, Provider};

/// The `/.well-known/openid-configuration` document.
pub(crate) fn metadata(op: &Provider) -> Value {
    let iss = &op.issuer;
    let auth_methods = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "client_secret_jwt",
    ];
    json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "jwks_uri": format!("{iss}/jwks"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "end_session_endpoint": format!("{iss}/end_session"),
        "pushed_authorization_request_endpoint": format!("{iss}/par"),
        "require_pushed_authorization_requests": op.require_par.load(std::sync::atomic::Ordering::Relaxed),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "at_hash",
            "name", "preferred_username", "email", "email_verified", "locale"
        ],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "HS256", "HS384", "HS512"],
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "code_challenge_methods_supported": ["S256", "plain"],
        "authorization_response_iss_parameter_supported": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    })
}

/// The `/jwks` document: current key and, during rotation, the previous one.
pub(crate) fn jwks(op: &Provider) -> Value {
    op.count(|c| c.jwks += 1);
    lock(&op.keys).jwks()
}
