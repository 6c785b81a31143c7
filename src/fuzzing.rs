//! Entry points for the fuzz targets in `fuzz/` and the property tests: one per parser an
//! anonymous client feeds, each checking the invariant that parser must keep (a panic is
//! a finding). Not an API: hidden from the docs, and only thin wrappers.

use crate::config::Config;
use crate::hooks::Hook;
use crate::oidc::callback::AuthResponse;
use crate::redirect::validate_redirect;
use crate::request::request_ctx;
use crate::session::{Loaded, Sessions};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Map, Value};
use std::net::SocketAddr;
use std::sync::OnceLock;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
trusted_proxies = ["10.0.0.0/8"]

[provider]
issuer = "https://op.example"
client_id = "gateway"
client_secret = "fuzz-client-secret"

[session]
passphrase = "fuzz-passphrase-0123456789abcdef"

[[route]]
path = "/"
upstream = "http://127.0.0.1:9"
"#;

fn config() -> &'static Config {
    static CONFIG_ONCE: OnceLock<Config> = OnceLock::new();
    CONFIG_ONCE.get_or_init(|| Config::from_toml(CONFIG, "fuzz", None).expect("fuzz config"))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn sessions() -> &'static Sessions {
    static SESSIONS: OnceLock<Sessions> = OnceLock::new();
    SESSIONS.get_or_init(|| {
        let cfg = config();
        let deployment = crate::session::Deployment {
            issuer: &cfg.provider.issuer,
            client_id: &cfg.provider.client_id,
        };
        // Built inside the runtime: the session caches may spawn on it.
        let _guard = runtime().enter();
        Sessions::new(
            &cfg.session,
            deployment,
            crate::clock::Clock::system(),
            None,
        )
    })
}

/// Cookie header values as a client sends them (split at `\n` into several `Cookie`
/// fields): the session cookie is found, reassembled from its chunks, opened and parsed,
/// or refused; never a panic. Forged data never opens.
pub fn session_cookies(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(http::header::COOKIE, v);
        }
    }
    let loaded = runtime().block_on(sessions().load(&headers));
    assert!(
        !matches!(loaded, Loaded::Valid(_)),
        "a forged cookie opened as a session"
    );
    let mut stripped = headers.clone();
    sessions().strip_gateway_cookies(&mut stripped);
    for v in stripped.get_all(http::header::COOKIE) {
        let text = v.to_str().unwrap_or("");
        for pair in text.split(';') {
            // A pair without `=` is a nameless cookie (RFC 6265bis), not one of ours.
            let Some((name, _)) = pair.split_once('=') else {
                continue;
            };
            let name = name.trim();
            let chunk = |rest: &str| {
                rest == "chunks" || (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
            };
            let ours = name == "oidc_session"
                || name.strip_prefix("oidc_session_").is_some_and(chunk)
                || name.starts_with("oidc_state_");
            assert!(!ours, "a gateway cookie went upstream: {text}");
        }
    }
}

/// A redirect target that passes validation stays on `host`: relative, it resolves on
/// the host; absolute, it names the host (no allow-list).
pub fn redirect_target(target: &str, host: &str) {
    let Ok(url) = validate_redirect(target, host, &[]) else {
        return;
    };
    // The gateway only ever passes a plausible Host (no userinfo, path or spaces).
    let plausible =
        !host.contains(['@', '/', '\\', '?', '#']) && !host.contains(char::is_whitespace);
    let base = url::Url::parse(&format!("http://{host}/"))
        .ok()
        .filter(|_| plausible);
    let Some(base) = base else {
        // No usable request host: only a relative target (resolved by the browser on
        // whatever host it is on) may pass; an absolute one names a host to compare.
        assert!(
            url.starts_with('/') && !url.starts_with("//"),
            "{target:?} -> {url:?} passed for a host that is not one: {host:?}"
        );
        return;
    };
    let resolved = base
        .join(&url)
        .unwrap_or_else(|e| panic!("{url:?} passed but does not resolve: {e}"));
    assert_eq!(
        resolved.host_str(),
        base.host_str(),
        "{target:?} -> {url:?} leaves {host:?}"
    );
    assert!(
        resolved.username().is_empty() && resolved.password().is_none(),
        "{url:?} carries userinfo"
    );
    assert!(
        matches!(resolved.scheme(), "http" | "https"),
        "{url:?} has scheme {}",
        resolved.scheme()
    );
}

/// The routing normal form: starts with `/`, no empty, dot, or `;params` segment, no
/// control character; and normalising it again changes nothing.
pub fn route_path(raw: &str) {
    // The router sees what hyper parsed: an origin-form path (no raw controls, spaces or
    // `#`), starting with `/`.
    let Ok(parsed) = http::uri::PathAndQuery::try_from(raw) else {
        return;
    };
    let raw = parsed.path();
    if !raw.starts_with('/') {
        return;
    }
    let Ok(path) = crate::router::normalise(raw) else {
        return;
    };
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    assert!(!path.chars().any(char::is_control), "{raw:?} -> {path:?}");
    if path.contains(['%', '\\', ';']) || path.contains("//") {
        // Decoded once; a literal `%` (from `%25`) may decode again, which is the
        // upstream's business: the match used this form.
        return;
    }
    for segment in path.split('/').skip(1) {
        assert!(
            segment != "." && segment != "..",
            "{raw:?} -> {path:?} has a dot segment"
        );
    }
    let again = crate::router::normalise(&path).expect("a normal form normalises");
    assert_eq!(again, path, "{raw:?}: not idempotent");
}

/// Request headers as `name: value` lines, from a trusted or an untrusted peer: the
/// context has a plausible host, and an untrusted peer's forwarding headers are ignored.
pub fn request_context(data: &[u8], trusted: bool) {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            headers.append(n, v);
        }
    }
    let peer: SocketAddr = if trusted {
        "10.0.0.1:1234"
    } else {
        "192.0.2.1:1234"
    }
    .parse()
    .expect("address");
    let uri: http::Uri = "/".parse().expect("uri");
    let Some(ctx) = request_ctx(&config().server, &uri, &headers, peer, false) else {
        return;
    };
    assert!(
        !ctx.host.is_empty() && ctx.host.len() <= 255,
        "{:?}",
        ctx.host
    );
    assert!(
        ctx.host
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"/@?#\\".contains(&b)),
        "implausible host {:?}",
        ctx.host
    );
    if !trusted {
        assert_eq!(ctx.scheme, "http", "an untrusted peer chose the scheme");
        let host = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            Some(ctx.host.as_str()),
            host,
            "an untrusted peer chose the host"
        );
    }
}

/// A redirect-URI query: every hook decision and the authorization-response parse
/// terminate without panicking, for every method.
pub fn hook_query(query: &str) {
    for method in [Method::GET, Method::POST] {
        let _ = Hook::of(&method, query);
    }
    let _ = AuthResponse::parse(query);
}

/// A form body a `preserve_post` route keeps: decoding never panics; what it accepts
/// re-encodes to the same fields, and the page that re-submits them holds one hidden input
/// per field and one script (nothing a name or value holds opens an element).
pub fn kept_form(data: &[u8]) {
    use crate::oidc::preserve_post::{fields, page};
    use http_body_util::BodyExt;
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(kept) = fields(body) else {
        return;
    };
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&kept)
        .finish();
    assert_eq!(fields(&encoded).ok().as_ref(), Some(&kept), "{body:?}");
    let response = page("/form?a=1", &kept, "nonce");
    let html = runtime()
        .block_on(response.into_body().collect())
        .expect("a page body")
        .to_bytes();
    let html = String::from_utf8_lossy(&html);
    assert_eq!(
        html.matches('<').count(),
        PAGE_ELEMENTS + kept.len(),
        "{body:?}"
    );
    assert_eq!(html.matches("<input ").count(), kept.len(), "{body:?}");
    assert_eq!(html.matches("<script").count(), 1, "{body:?}");
}

/// The `<` of the re-submitting page without fields: its own tags, opening and closing.
const PAGE_ELEMENTS: usize = 29;

/// An introspection answer (status and body): deciding whether it refuses the token and
/// whether an active result is an access token never panics.
pub fn introspection_response(status: u16, body: &[u8]) {
    if let Ok(status) = http::StatusCode::from_u16(status) {
        let _ = crate::resource::validate::refuses_the_token(status, body);
    }
    if let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(body) {
        let _ = crate::resource::validate::is_access_token(&claims, true);
        let _ = crate::resource::validate::is_access_token(&claims, false);
    }
}

/// A logout token's claims (after the signature check): the checks never panic, and a
/// token they accept names a session or subject and carries a `jti`.
pub fn logout_claims(body: &[u8], now: i64) {
    let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(body) else {
        return;
    };
    if let Ok((_, jti)) = crate::oidc::logout::check_logout_claims(&claims, now) {
        assert!(claims.contains_key("jti") && claims["jti"].as_str() == Some(jti));
        assert!(
            claims.get("sid").is_some_and(Value::is_string)
                || claims.get("sub").is_some_and(Value::is_string)
        );
        assert!(!claims.contains_key("nonce"));
    }
}

/// The route (`/open`, open; `/open/admin`, protected) the router picks for `raw`, or
/// `None` when the path is refused or matches neither.
pub fn open_or_protected(raw: &str) -> Option<&'static str> {
    static ROUTER: OnceLock<crate::router::Router> = OnceLock::new();
    let router = ROUTER.get_or_init(|| {
        let text = format!(
            "{CONFIG}\n[[route]]\npath = \"/open\"\nupstream = \"http://127.0.0.1:9\"\n\
             auth = \"none\"\n\n[[route]]\npath = \"/open/admin\"\n\
             upstream = \"http://127.0.0.1:9\"\n"
        );
        let cfg = Config::from_toml(&text, "fuzz", None).expect("fuzz routes");
        crate::router::Router::new(&cfg.routes)
    });
    match router.route(raw).ok()??.path.as_str() {
        "/open" => Some("/open"),
        "/open/admin" => Some("/open/admin"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kept_form_invariant_holds_for_the_seeds() {
        for seed in [
            &b"title=%3Cscript%3Ealert(1)%3C%2Fscript%3E&tag=a&tag=b&submit=Save&empty="[..],
            b"a&&=&%zz=100%&n%3Dame=v=w&x=%+1&t=line+1%0D%0Aline+2",
            b"",
            b"%3C%21--=--%3E&%22%27=%26amp%3B",
            b"a=%E9",
        ] {
            super::kept_form(seed);
        }
    }
}
