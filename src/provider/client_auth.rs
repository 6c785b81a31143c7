//! Client authentication for form POSTs to provider endpoints other than through
//! openidconnect (introspection, revocation), as at the token endpoint.

use crate::config::{ProviderConfig, TokenEndpointAuth};
use base64::Engine;

/// A form POST to a provider endpoint, with the client authenticated as at the token
/// endpoint (`client_secret_basic` or `client_secret_post`).
pub(crate) fn client_authenticated_post(
    cfg: &ProviderConfig,
    url: &str,
    params: &[(&str, &str)],
) -> Result<::http::Request<Vec<u8>>, ::http::Error> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        form.append_pair(k, v);
    }
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
            form.append_pair("client_id", &cfg.client_id);
            form.append_pair("client_secret", cfg.client_secret.expose());
        }
    }
    builder.body(form.finish().into_bytes())
}
