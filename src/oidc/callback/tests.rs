use super::*;
use http::StatusCode;

const ISSUER: &str = "https://op.test";

#[test]
fn a_response_is_parsed_first_value_wins() {
    let r = AuthResponse::parse("code=c1&state=s&code=c2&iss=https%3A%2F%2Fop.test&x=1");
    assert_eq!(r.code.as_deref(), Some("c1"));
    assert_eq!(r.state.as_deref(), Some("s"));
    assert_eq!(r.iss.as_deref(), Some(ISSUER));
}

#[test]
fn a_good_response_yields_its_code() {
    let r = AuthResponse::parse("code=c1&state=s");
    assert_eq!(code_of(r, ISSUER, false).unwrap(), "c1");
    let r = AuthResponse::parse("code=c1&state=s&iss=https%3A%2F%2Fop.test");
    assert_eq!(code_of(r, ISSUER, false).unwrap(), "c1");
}

#[test]
fn a_provider_error_is_shown_printable() {
    let r = AuthResponse::parse("error=access_denied%0d%0aX&error_description=no%0a&state=s");
    match code_of(r, ISSUER, false) {
        Err(GatewayError::ProviderError { error, description }) => {
            assert_eq!(error, "access_denied??X");
            assert_eq!(description.as_deref(), Some("no?"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn another_issuer_or_no_code_is_refused() {
    let r = AuthResponse::parse("code=c&state=s&iss=https%3A%2F%2Fevil.test");
    let e = code_of(r, ISSUER, false).unwrap_err();
    assert!(matches!(e, GatewayError::LoginMismatch(_)), "{e:?}");
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    let e = code_of(AuthResponse::parse("state=s"), ISSUER, false).unwrap_err();
    assert!(matches!(e, GatewayError::BadRequest(_)), "{e:?}");
}

#[test]
fn a_provider_that_names_itself_must_always_do_so() {
    let without = || AuthResponse::parse("code=c&state=s");
    assert_eq!(code_of(without(), ISSUER, false).unwrap(), "c");
    let e = code_of(without(), ISSUER, true).unwrap_err();
    assert!(matches!(e, GatewayError::LoginMismatch(_)), "{e:?}");
    let with = AuthResponse::parse("code=c&state=s&iss=https%3A%2F%2Fop.test");
    assert_eq!(code_of(with, ISSUER, true).unwrap(), "c");
    // A provider error is shown as such, named or not.
    let error = AuthResponse::parse("error=login_required&state=s");
    let e = code_of(error, ISSUER, true).unwrap_err();
    assert!(matches!(e, GatewayError::ProviderError { .. }), "{e:?}");
}
