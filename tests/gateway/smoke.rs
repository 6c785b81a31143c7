use crate::common::*;

#[tokio::test]
async fn full_login_reaches_upstream_with_identity() {
    let h = Harness::start().await;
    let b = Browser::new();
    let r = h.login(&b, "/hello?x=1", "alice").await;
    let echo = Echo::of(r).await;
    assert_eq!(echo.0["path"], "/hello");
    assert_eq!(echo.header("oidc_claim_sub").as_deref(), Some("alice"));
    assert!(echo.header("oidc_access_token").is_some());
}
