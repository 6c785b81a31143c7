//! Client authentication on every call that authenticates the client: the secret methods
//! (`client_secret_basic`, `client_secret_post`) and the RFC 7523 JWT assertions
//! (`private_key_jwt`, `client_secret_jwt`) used at the token endpoint (through
//! openidconnect, see [`super::grant`]) and on the form POSTs made here (introspection,
//! revocation, pushed authorization requests).

use super::{Discovered, Provider};
use crate::config::{AssertionAudience, ProviderConfig, TokenEndpointAuth};
use crate::error::ProviderUnavailable;
use crate::secret::{random_id, Secret};
use base64::Engine;
use serde::Serialize;

/// RFC 7523 §2.2: the `client_assertion_type` of a JWT assertion.
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Seconds an assertion is valid: one call, with room for clock skew, and short so a
/// captured assertion is of little use (the provider also refuses a repeated `jti`).
pub(crate) const ASSERTION_LIFETIME: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientAuthError {
    #[error(transparent)]
    Unavailable(#[from] ProviderUnavailable),
    #[error("the provider's metadata has no token_endpoint to address the client assertion to (set provider.assertion_audience = \"issuer\")")]
    NoAudience,
    #[error("the client assertion cannot be signed: {0}")]
    Sign(String),
    #[error("invalid request: {0}")]
    Request(#[from] ::http::Error),
}

impl From<ClientAuthError> for crate::error::GrantError {
    fn from(e: ClientAuthError) -> Self {
        match e {
            ClientAuthError::Unavailable(u) => crate::error::GrantError::Unavailable(u),
            other => crate::error::GrantError::ClientAuth(other.to_string()),
        }
    }
}

/// The claims of a client assertion (RFC 7523 §3).
#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: i64,
    exp: i64,
}

/// Whether the configured method sends a JWT assertion (and no secret).
pub(crate) fn uses_assertion(cfg: &ProviderConfig) -> bool {
    matches!(
        cfg.token_endpoint_auth,
        TokenEndpointAuth::PrivateKeyJwt | TokenEndpointAuth::ClientSecretJwt
    )
}

/// A fresh client assertion for one call, or `None` with the secret methods. The
/// assertion is a credential: never logged, and built anew for every call.
pub(crate) fn client_assertion(
    cfg: &ProviderConfig,
    discovered: &Discovered,
    now: i64,
) -> Result<Option<Secret>, ClientAuthError> {
    if !uses_assertion(cfg) {
        return Ok(None);
    }
    let aud = match cfg.assertion_audience {
        AssertionAudience::Issuer => cfg.issuer.clone(),
        AssertionAudience::TokenEndpoint => discovered
            .metadata
            .token_endpoint()
            .map(|u| u.url().as_str().to_string())
            .ok_or(ClientAuthError::NoAudience)?,
    };
    sign_assertion(cfg, &aud, now).map(Some)
}

/// Signs the assertion of `cfg`'s client for audience `aud`.
pub(crate) fn sign_assertion(
    cfg: &ProviderConfig,
    aud: &str,
    now: i64,
) -> Result<Secret, ClientAuthError> {
    let claims = AssertionClaims {
        iss: &cfg.client_id,
        sub: &cfg.client_id,
        aud,
        jti: random_id(),
        iat: now,
        exp: now + ASSERTION_LIFETIME,
    };
    let token = match (&cfg.token_endpoint_auth, &cfg.private_key) {
        (TokenEndpointAuth::PrivateKeyJwt, Some(key)) => {
            key.sign(&claims).map_err(ClientAuthError::Sign)?
        }
        (TokenEndpointAuth::ClientSecretJwt, _) => {
            let key = jsonwebtoken::EncodingKey::from_secret(cfg.client_secret.expose().as_bytes());
            let header = jsonwebtoken::Header::new(cfg.secret_jwt_alg);
            jsonwebtoken::encode(&header, &claims, &key)
                .map_err(|e| ClientAuthError::Sign(e.to_string()))?
        }
        _ => return Err(ClientAuthError::Sign("no signing key is configured".into())),
    };
    Ok(Secret::new(token))
}

/// A form POST to a provider endpoint, with the client authenticated as at the token
/// endpoint. A `client_id` among `params` is not repeated (a provider may refuse a
/// repeated parameter).
pub(crate) async fn client_authenticated_post(
    provider: &Provider,
    url: &str,
    params: &[(&str, &str)],
) -> Result<::http::Request<Vec<u8>>, ClientAuthError> {
    let cfg = provider.config();
    let assertion = if uses_assertion(cfg) {
        let discovered = provider.get().await?;
        client_assertion(cfg, &discovered, provider.clock().now())?
    } else {
        None
    };
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        form.append_pair(k, v);
    }
    let has_client_id = params.iter().any(|(k, _)| *k == "client_id");
    let mut builder = ::http::Request::post(url)
        .header(
            ::http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(::http::header::ACCEPT, "application/json");
    match cfg.token_endpoint_auth {
        TokenEndpointAuth::ClientSecretBasic => {
            // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!(
                "{}:{}",
                enc(&cfg.client_id),
                enc(cfg.client_secret.expose())
            );
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            builder = builder.header(::http::header::AUTHORIZATION, format!("Basic {b64}"));
        }
        TokenEndpointAuth::ClientSecretPost => {
            if !has_client_id {
                form.append_pair("client_id", &cfg.client_id);
            }
            form.append_pair("client_secret", cfg.client_secret.expose());
        }
        TokenEndpointAuth::PrivateKeyJwt | TokenEndpointAuth::ClientSecretJwt => {
            if !has_client_id {
                form.append_pair("client_id", &cfg.client_id);
            }
            if let Some(assertion) = &assertion {
                form.append_pair("client_assertion_type", ASSERTION_TYPE);
                form.append_pair("client_assertion", assertion.expose());
            }
        }
    }
    Ok(builder.body(form.finish().into_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use jsonwebtoken::{DecodingKey, Validation};

    fn provider_config(extra: &str) -> ProviderConfig {
        let text = format!(
            "[provider]\nissuer = \"https://idp.example.com\"\nclient_id = \"gw\"\n\
             client_secret = \"0123456789abcdef0123456789abcdef\"\n{extra}\n\
             [session]\npassphrase = \"test-passphrase-0123456789abcdef\"\n\
             [[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:7000\"\n"
        );
        Config::from_toml(&text, "t.toml", None)
            .unwrap_or_else(|e| panic!("{e}"))
            .provider
    }

    fn claims_of(
        token: &str,
        key: &DecodingKey,
        alg: jsonwebtoken::Algorithm,
    ) -> serde_json::Value {
        let mut v = Validation::new(alg);
        v.set_audience(&["https://idp.example.com/token"]);
        v.set_issuer(&["gw"]);
        v.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(token, key, &v)
            .unwrap()
            .claims
    }

    #[test]
    fn secret_jwt_assertion_has_the_rfc_7523_claims() {
        let cfg = provider_config("token_endpoint_auth = \"client_secret_jwt\"");
        let token = sign_assertion(&cfg, "https://idp.example.com/token", 1_000).unwrap();
        let key = DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let claims = claims_of(token.expose(), &key, jsonwebtoken::Algorithm::HS256);
        assert_eq!(claims["iss"], "gw");
        assert_eq!(claims["sub"], "gw");
        assert_eq!(claims["aud"], "https://idp.example.com/token");
        assert_eq!(claims["iat"], 1_000);
        assert_eq!(claims["exp"], 1_060, "exp at most 60 s after iat");
        let jti = claims["jti"].as_str().unwrap();
        assert!(jti.len() >= 22, "a random jti: {jti}");
        let again = sign_assertion(&cfg, "https://idp.example.com/token", 1_000).unwrap();
        let again = claims_of(again.expose(), &key, jsonwebtoken::Algorithm::HS256);
        assert_ne!(again["jti"], claims["jti"], "a new jti for every assertion");
        // Signed with another secret: refused.
        let other = DecodingKey::from_secret(b"another secret entirely, 32 bytes");
        let mut v = Validation::new(jsonwebtoken::Algorithm::HS256);
        v.validate_aud = false;
        assert!(jsonwebtoken::decode::<serde_json::Value>(token.expose(), &other, &v).is_err());
    }

    #[test]
    fn no_assertion_with_the_secret_methods() {
        let cfg = provider_config("");
        assert!(!uses_assertion(&cfg));
    }
}
