//! Path and method dispatch for the development provider.

use std::sync::Arc;

use http::header::{HeaderValue, ALLOW};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::http::{json, text, Resp};
use super::provider::Provider;
use super::{authorize, discovery, logout, par, resource, token};

pub(crate) async fn route(op: Arc<Provider>, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    match parts.uri.path() {
        "/.well-known/openid-configuration" if get => {
            json(StatusCode::OK, &discovery::metadata(&op))
        }
        "/jwks" if get => json(StatusCode::OK, &discovery::jwks(&op)),
        "/authorize" if get || post => authorize::handle(&op, parts, body).await,
        "/token" if post => token::handle(&op, parts, body).await,
        "/userinfo" if get || post => resource::userinfo(&op, &parts.headers),
        "/introspect" if post => resource::introspect(&op, parts, body).await,
        "/revoke" if post => resource::revoke(&op, parts, body).await,
        "/par" if post => par::handle(&op, parts, body).await,
        "/end_session" if get || post => logout::handle(&op, parts, body).await,
        path => not_allowed_or_found(path),
    }
}

fn not_allowed_or_found(path: &str) -> Resp {
    let allow = match path {
        "/.well-known/openid-configuration" | "/jwks" => "GET, HEAD",
        "/token" | "/introspect" | "/revoke" | "/par" => "POST",
        "/authorize" | "/userinfo" | "/end_session" => "GET, HEAD, POST",
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}
