//! The echo upstream of `oidc-gateway demo` and of the tests: answers every request with
//! what it received (method, path, query, headers in order, body length), as JSON, or as
//! an HTML page for browsers that highlights the identity headers the gateway added.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::http::escape as escape_html;
use crate::serve::{spawn_on, Stopper};

/// Where the page's "Log out" link points by default: the gateway's logout hook.
pub const DEFAULT_LOGOUT_HREF: &str = "/oauth2/callback?logout=%2F";

/// A running echo upstream. Cheap to clone; runs until [`EchoServer::shutdown`].
#[derive(Clone, Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    stopper: Stopper,
}

impl EchoServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and drops every open connection.
    pub fn shutdown(&self) {
        self.stopper.stop();
    }
}

/// Starts an echo upstream whose HTML page links "Log out" to [`DEFAULT_LOGOUT_HREF`].
pub async fn start_echo(listen: SocketAddr) -> std::io::Result<EchoServer> {
    start_echo_with(listen, Some(DEFAULT_LOGOUT_HREF.to_owned())).await
}

/// Starts an echo upstream; `logout_href` is the HTML page's "Log out" link (None: no link).
pub async fn start_echo_with(
    listen: SocketAddr,
    logout_href: Option<String>,
) -> std::io::Result<EchoServer> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let logout_href = Arc::new(logout_href);
    let handler = move |req| echo(req, Arc::clone(&logout_href));
    let stopper = spawn_on(listener, handler);
    Ok(EchoServer { addr, stopper })
}

async fn echo(req: Request<Incoming>, logout_href: Arc<Option<String>>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body_len = drain(body).await;
    let Some(status) = status_for(parts.uri.path()) else {
        return respond(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "bad status\n".into(),
        );
    };
    if matches!(status.as_u16(), 204 | 304) {
        return respond(status, "text/plain; charset=utf-8", String::new());
    }
    let headers = header_pairs(&parts.headers);
    if wants_html(&parts.headers) {
        let page = html_page(
            &parts.method,
            &parts.uri,
            &headers,
            body_len,
            logout_href.as_deref(),
        );
        return respond(status, "text/html; charset=utf-8", page);
    }
    let report = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<Value>>(),
        "body_len": body_len,
    });
    respond(status, "application/json", report.to_string())
}

/// Reads the body frame by frame, counting bytes (never buffering it whole).
async fn drain(mut body: Incoming) -> u64 {
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => len += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    len
}

/// `/status/NNN` answers NNN (200..=599); every other path answers 200.
fn status_for(path: &str) -> Option<StatusCode> {
    let Some(code) = path.strip_prefix("/status/") else {
        return Some(StatusCode::OK);
    };
    let code: u16 = code.trim_end_matches('/').parse().ok()?;
    (200..=599)
        .contains(&code)
        .then(|| StatusCode::from_u16(code).ok())?
}

/// Header names and values in the order hyper kept them (values as lossy UTF-8).
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (n.as_str().to_owned(), value)
        })
        .collect()
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .any(|v| String::from_utf8_lossy(v.as_bytes()).contains("text/html"))
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Headers the gateway adds, which the page highlights.
fn is_identity_header(name: &str) -> bool {
    name.starts_with("oidc_")
        || name.starts_with("x-forwarded-")
        || name.starts_with("x-remote-user")
}

fn html_page(
    method: &http::Method,
    uri: &http::Uri,
    headers: &[(String, String)],
    body_len: u64,
    logout_href: Option<&str>,
) -> String {
    let rows: String = headers
        .iter()
        .map(|(name, value)| {
            let class = if is_identity_header(&name.to_ascii_lowercase()) {
                " class=\"id\""
            } else {
                ""
            };
            format!(
                "<tr{class}><th>{}</th><td>{}</td></tr>",
                escape_html(name),
                escape_html(value)
            )
        })
        .collect();
    let logout = logout_href
        .map(|href| format!("<p><a href=\"{}\">Log out</a></p>", escape_html(href)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>oidc-gateway demo upstream</title><style>\
body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse}}\
th,td{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top;\
font-family:ui-monospace,monospace;font-size:.85rem;word-break:break-all}}\
tr.id{{background:#e6f4ea}}</style></head><body>\
<h1>oidc-gateway demo upstream</h1>\
<p>This application knows nothing about OpenID Connect: the gateway in front of it signed \
you in and added the highlighted headers.</p>\
<p><code>{method} {uri}</code> &middot; body: {body_len} bytes</p>{logout}\
<table><thead><tr><th>Header</th><th>Value</th></tr></thead><tbody>{rows}</tbody></table>\
</body></html>\n",
        method = escape_html(method.as_str()),
        uri = escape_html(&uri.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::ACCEPT;
    use reqwest::{Client, StatusCode};

    async fn start() -> EchoServer {
        start_echo("127.0.0.1:0".parse().unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn reports_the_request_as_json() {
        let echo = start().await;
        assert_eq!(
            echo.url(),
            format!("http://127.0.0.1:{}", echo.addr().port())
        );
        let body = vec![b'x'; 200_000];
        let resp = Client::new()
            .post(format!("{}/some/path?a=1&b=%20", echo.url()))
            .header("x-first", "1")
            .header("oidc_claim_sub", "alice")
            .header("x-bytes", &b"caf\xc3\xa9"[..])
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let report: Value = resp.json().await.unwrap();
        assert_eq!(report["method"], "POST");
        assert_eq!(report["path"], "/some/path");
        assert_eq!(report["query"], "a=1&b=%20");
        assert_eq!(report["body_len"], 200_000);
        assert_eq!(report["version"], "HTTP/1.1");
        let headers = report["headers"].as_array().unwrap();
        let names: Vec<&str> = headers.iter().map(|h| h[0].as_str().unwrap()).collect();
        let first = names.iter().position(|n| *n == "x-first").unwrap();
        let second = names.iter().position(|n| *n == "oidc_claim_sub").unwrap();
        assert!(first < second, "received order kept: {names:?}");
        assert!(headers.contains(&json!(["x-bytes", "café"])));

        let report: Value = Client::new()
            .get(echo.url())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(report["query"], Value::Null);
        assert_eq!(report["body_len"], 0);
    }

    #[tokio::test]
    async fn keeps_connections_alive_and_speaks_http2() {
        let echo = start().await;
        let client = Client::new();
        for _ in 0..3 {
            assert_eq!(
                client.get(echo.url()).send().await.unwrap().status(),
                StatusCode::OK
            );
        }
        let h2 = Client::builder().http2_prior_knowledge().build().unwrap();
        let report: Value = h2
            .get(echo.url())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(report["version"], "HTTP/2.0");
    }

    #[tokio::test]
    async fn browsers_get_an_escaped_page_with_highlights() {
        let echo = start().await;
        let page = Client::new()
            .get(format!("{}/app?q=<i>", echo.url()))
            .header(ACCEPT, "text/html,application/xhtml+xml")
            .header("OIDC_CLAIM_name", "<script>alert(1)</script>")
            .header("X-Forwarded-For", "10.0.0.1")
            .header("X-Remote-User", "alice")
            .header("X-Other", "plain")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("<title>oidc-gateway demo upstream</title>"));
        assert!(
            !page.contains("<script>") && page.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
        );
        assert!(page.contains("<tr class=\"id\"><th>oidc_claim_name</th>"));
        assert!(page.contains("<tr class=\"id\"><th>x-forwarded-for</th>"));
        assert!(page.contains("<tr class=\"id\"><th>x-remote-user</th>"));
        assert!(page.contains("<tr><th>x-other</th>"));
        assert!(page.contains("<a href=\"/oauth2/callback?logout=%2F\">Log out</a>"));

        let custom = start_echo_with(
            "127.0.0.1:0".parse().unwrap(),
            Some("/cb?logout=\"x\"".into()),
        )
        .await
        .unwrap();
        let page = Client::new()
            .get(custom.url())
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert!(page
            .text()
            .await
            .unwrap()
            .contains("href=\"/cb?logout=&quot;x&quot;\""));
        let bare = start_echo_with("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let page = Client::new()
            .get(bare.url())
            .header(ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert!(!page.text().await.unwrap().contains("Log out"));
    }

    #[tokio::test]
    async fn status_paths_answer_that_status() {
        let echo = start().await;
        let client = Client::new();
        let get = |path: &str| client.get(format!("{}{path}", echo.url())).send();
        let resp = get("/status/418").await.unwrap();
        assert_eq!(resp.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(resp.json::<Value>().await.unwrap()["path"], "/status/418");
        assert_eq!(
            get("/status/503").await.unwrap().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let resp = get("/status/204").await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert!(resp.bytes().await.unwrap().is_empty());
        for bad in ["/status/99", "/status/600", "/status/abc"] {
            assert_eq!(
                get(bad).await.unwrap().status(),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn shutdown_stops_serving() {
        let echo = start().await;
        echo.shutdown();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(Client::new().get(echo.url()).send().await.is_err());
    }
}
