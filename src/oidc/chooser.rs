//! Logging in on a route that accepts several providers (`route.providers`): the chooser
//! page with one link per provider (as mod_auth_openidc's discovery page), and the
//! `<redirect_uri>?provider=<name>&target_link_uri=<url>` hook those links lead to, which
//! starts the login at the named provider and comes back to the (validated) target.

use super::login;
use crate::redirect::validate_redirect;
use crate::request::RequestCtx;
use crate::response::{self, escape_html, Body};
use crate::services::Services;
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

/// The chooser: a link per provider of `providers` (indexes into the config's), each to
/// the login hook with `return_to` (origin-relative) as its target. Everything shown is
/// escaped; `extra_cookies` (clearing a bad session cookie) ride along.
pub(crate) fn page(
    gw: &Services,
    providers: &[usize],
    return_to: &str,
    extra_cookies: Vec<HeaderValue>,
) -> Response<Body> {
    let hook = gw.config.redirect_path();
    let target = login::on_site(return_to);
    let target: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
    let mut items = String::new();
    for &index in providers {
        let provider = gw.providers.at(index).config();
        let name: String = form_urlencoded::byte_serialize(provider.name.as_bytes()).collect();
        let href = format!("{hook}?provider={name}&target_link_uri={target}");
        items.push_str(&format!(
            "<li><a href=\"{}\">{}</a></li>",
            escape_html(&href),
            escape_html(&provider.title)
        ));
    }
    let body = format!("<p>Choose where to log in:</p><ul class=\"providers\">{items}</ul>");
    // No-store and the same CSP as every other page the gateway writes.
    let resp = response::html_response(StatusCode::OK, response::document("Log in", &body));
    response::with_cookies(resp, extra_cookies)
}

/// `?provider=<name>&target_link_uri=<url>`: starts a login at the provider named `name`
/// (a configured one, else a 400 page) that comes back to `target` (empty: `/`), which
/// must pass redirect validation and stay on this site, as every other redirect target.
pub(crate) async fn start_at(
    gw: &Services,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    name: &str,
    target: Option<&str>,
) -> Response<Body> {
    let bad = |why: &str| response::page(StatusCode::BAD_REQUEST, "Invalid request", why, None);
    let Some((_, provider)) = gw.providers.by_name(name) else {
        return bad("This gateway has no provider of that name.");
    };
    let target = target.filter(|t| !t.is_empty()).unwrap_or("/");
    let Some(return_to) = on_this_site(gw, ctx, target) else {
        return bad("The login return address is not allowed.");
    };
    login::start(
        gw,
        provider,
        ctx,
        headers,
        &Method::GET,
        &return_to,
        Vec::new(),
    )
    .await
}

/// `target` as an origin-relative URL once it passes redirect validation and names this
/// site (an absolute URL only when its host is the request's).
fn on_this_site(gw: &Services, ctx: &RequestCtx, target: &str) -> Option<String> {
    let allowed = &gw.config.hooks.redirect_urls_allowed;
    let valid = validate_redirect(target, &ctx.host, allowed).ok()?;
    if valid.starts_with('/') {
        return Some(valid);
    }
    let url = url::Url::parse(&valid).ok()?;
    let authority = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => return None,
    };
    if !authority.eq_ignore_ascii_case(&ctx.host) {
        return None;
    }
    Some(match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    })
}
