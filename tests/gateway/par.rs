//! Pushed Authorization Requests (RFC 9126; `provider.par`, docs/behaviour.md §4): the
//! authorization request goes to the provider's PAR endpoint, client authenticated, and
//! the browser's redirect carries only `client_id` and `request_uri`.

use crate::common::*;
use reqwest::StatusCode;

async fn gateway(provider: &str) -> Harness {
    Harness::with(Options {
        provider: provider.into(),
        ..Options::default()
    })
    .await
}

/// The names of the query parameters of `url`.
fn query_names(url: &str) -> Vec<String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, _)| k.into_owned())
        .collect()
}

async fn logs_in(h: &Harness) {
    let b = Browser::new();
    let authorize = h.start_login(&b, "/app").await;
    assert_eq!(
        query_names(&authorize),
        ["client_id", "request_uri"],
        "{authorize}"
    );
    assert!(authorize.contains("request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3A"));
    let callback = h.authorize(&b, &authorize, "alice").await;
    let done = b.get(&callback).await;
    assert_eq!(
        done.status(),
        StatusCode::FOUND,
        "{}",
        done.text().await.unwrap_or_default()
    );
    assert_eq!(location(&done), "/app");
    assert_eq!(b.get(&h.url("/app")).await.status(), StatusCode::OK);
    assert_eq!(h.op.counters().pushed_requests, 1);
}

#[tokio::test]
async fn auto_pushes_when_the_provider_requires_it() {
    let h = gateway("").await;
    h.op.set_require_par(true);
    logs_in(&h).await;
}

#[tokio::test]
async fn auto_does_not_push_when_the_provider_does_not_require_it() {
    let h = gateway("").await;
    let b = Browser::new();
    let authorize = h.start_login(&b, "/app").await;
    assert!(query_names(&authorize).contains(&"state".to_string()));
    assert_eq!(h.op.counters().pushed_requests, 0);
}

#[tokio::test]
async fn always_pushes_with_a_client_assertion() {
    let h = gateway("par = \"always\"\ntoken_endpoint_auth = \"client_secret_jwt\"").await;
    h.op.require_client_auth(Some("client_secret_jwt"));
    logs_in(&h).await;
    // The push and the code grant.
    assert_eq!(h.op.client_auth_methods().len(), 2);
}

#[tokio::test]
async fn never_does_not_push_and_the_provider_that_requires_it_refuses() {
    let h = gateway("par = \"never\"").await;
    h.op.set_require_par(true);
    let b = Browser::new();
    let authorize = h.start_login(&b, "/app").await;
    assert!(!query_names(&authorize).contains(&"request_uri".to_string()));
    assert_eq!(b.get(&authorize).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_refused_push_is_a_page_not_a_redirect() {
    let h = gateway("par = \"always\"").await;
    // The gateway authenticates with client_secret_basic, which the provider now refuses.
    h.op.require_client_auth(Some("private_key_jwt"));
    let b = Browser::new();
    let r = b.get(&h.url("/app")).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_no_store(&r);
    let page = r.text().await.unwrap();
    assert!(page.contains("did not accept the login request"), "{page}");
    assert!(page.contains("invalid_client"), "{page}");
}
