use super::*;
use http::StatusCode;

#[test]
fn bearer_refusals_carry_www_authenticate() {
    for (error, status) in [
        (BearerError::InvalidRequest, StatusCode::UNAUTHORIZED),
        (BearerError::InvalidToken, StatusCode::UNAUTHORIZED),
        (BearerError::InsufficientScope, StatusCode::FORBIDDEN),
    ] {
        let resp = GatewayError::Bearer(error).into_response();
        assert_eq!(resp.status(), status);
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            format!("Bearer error=\"{error}\"").as_str()
        );
    }
}

#[test]
fn routing_refusals_map_to_client_errors() {
    assert_eq!(GatewayError::BadHost.status(), StatusCode::BAD_REQUEST);
    assert_eq!(GatewayError::DotSegment.status(), StatusCode::BAD_REQUEST);
    assert_eq!(GatewayError::NoRoute.status(), StatusCode::NOT_FOUND);
}

#[test]
fn an_unreachable_token_endpoint_is_503_and_a_refusal_502() {
    let unreachable = GatewayError::TokenExchange(GrantError::Unreachable(OpHttpError::Connect(
        "connection refused".into(),
    )));
    assert_eq!(unreachable.status(), StatusCode::SERVICE_UNAVAILABLE);
    let refused = GatewayError::TokenExchange(GrantError::Refused {
        error: "invalid_grant".into(),
        description: None,
    });
    assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
}

#[test]
fn session_store_outage_is_503_other_session_errors_500() {
    let store = GatewayError::Session(SessionError::Store("redis down".into()));
    assert_eq!(store.status(), StatusCode::SERVICE_UNAVAILABLE);
    let too_large = GatewayError::Session(SessionError::TooLarge { sealed_len: 99_999 });
    assert_eq!(too_large.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn id_token_checks_are_named_by_the_claim() {
    use openidconnect::ClaimsVerificationError as C;
    let named = |e: C| IdTokenError::from(e).to_string();
    assert!(named(C::InvalidAudience("x".into())).starts_with("aud:"));
    assert!(named(C::InvalidIssuer("x".into())).starts_with("iss:"));
    assert!(named(C::InvalidNonce("x".into())).starts_with("nonce:"));
    assert!(named(C::Expired("x".into())).starts_with("exp:"));
    assert!(named(C::Expired("iat: issued 900s ago".into())).starts_with("iat:"));
    assert!(named(C::SignatureVerification(
        SignatureVerificationError::NoSignature
    ))
    .starts_with("alg:"));
    assert!(named(C::SignatureVerification(
        SignatureVerificationError::NoMatchingKey
    ))
    .starts_with("signature:"));
}

#[test]
fn provider_text_is_made_printable() {
    assert_eq!(printable("bad\r\nSet-Cookie: x"), "bad??Set-Cookie: x");
}
