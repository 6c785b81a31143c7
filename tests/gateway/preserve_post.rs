//! A form POST kept across a login (`route.preserve_post`, docs/behaviour.md §4.1): posted
//! without a session, kept while the browser logs in at the development provider, and
//! re-submitted after the callback by the page the gateway answers, so that the upstream
//! receives the original fields. Refusals are pages that name the reason.
use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use reqwest::StatusCode;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// One request as the recording upstream received it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// An upstream that records every request whole (the echo upstream only counts body
/// bytes) and answers `200 {}`.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let record = Arc::clone(&record);
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes().to_vec();
                            record.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                target: parts.uri.to_string(),
                                headers: parts.headers,
                                body,
                            });
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                                b"{}",
                            ))))
                        }
                    });
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Recorder { url, seen }
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

const ROUTES: &str = r#"
[[route]]
path = "/"
upstream = "{upstream}"
auth = "openid-connect"
preserve_post = true

[[route]]
path = "/plain"
upstream = "{upstream}"
auth = "openid-connect"
"#;

async fn start(redis: Option<String>) -> (Harness, Recorder) {
    let recorder = Recorder::start().await;
    let h = Harness::with(Options {
        routes: Some(ROUTES.into()),
        upstream: Some(recorder.url.clone()),
        redis,
        ..Options::default()
    })
    .await;
    (h, recorder)
}

/// A form as a browser posts it from a page of the gateway's own origin.
const FORM: &str =
    "title=%3Cscript%3Ealert(1)%3C%2Fscript%3E&tag=a&tag=b&note=caf%C3%A9+%26+%22more%22&submit=Save&empty=";

fn decoded(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// POSTs `body` to `path` as a browser navigating would, from `origin`.
async fn post(
    b: &Browser,
    url: &str,
    content_type: &str,
    origin: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    b.client
        .post(url)
        .header("content-type", content_type)
        .header("accept", "text/html,application/xhtml+xml")
        .header("sec-fetch-mode", "navigate")
        .header("origin", origin)
        .body(body)
        .send()
        .await
        .expect("request")
}

async fn post_form(h: &Harness, b: &Browser, path: &str, body: &str) -> reqwest::Response {
    post(
        b,
        &h.url(path),
        "application/x-www-form-urlencoded; charset=UTF-8",
        &h.base,
        body.to_string(),
    )
    .await
}

fn state_cookies(b: &Browser, h: &Harness) -> Vec<(String, String)> {
    b.cookies(&h.url("/"))
        .into_iter()
        .filter(|(n, _)| n.starts_with("oidc_state_"))
        .collect()
}

/// HTML entities the gateway writes, undone.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in `tag` (one `<…>` element).
fn attribute(tag: &str, name: &str) -> String {
    let tag = format!(" {tag}");
    let start = tag
        .find(&format!(" {name}=\""))
        .unwrap_or_else(|| panic!("{name} in {tag}"))
        + name.len()
        + 3;
    let end = start + tag[start..].find('"').unwrap();
    unescape(&tag[start..end])
}

/// The re-submitting page's form: its action and its fields in order.
fn resubmitted_form(html: &str) -> (String, Vec<(String, String)>) {
    let form = &html[html.find("<form ").expect("a form")..];
    let action = attribute(&form[..form.find('>').unwrap()], "action");
    let fields = form
        .split("<input ")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').unwrap()];
            assert_eq!(attribute(tag, "type"), "hidden");
            (attribute(tag, "name"), attribute(tag, "value"))
        })
        .collect();
    (action, fields)
}

/// Sends the page's form as the browser would: a url-encoded POST to its action.
async fn submit(
    h: &Harness,
    b: &Browser,
    action: &str,
    fields: &[(String, String)],
) -> reqwest::Response {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    post(
        b,
        &h.url(action),
        "application/x-www-form-urlencoded",
        &h.base,
        body,
    )
    .await
}

#[tokio::test]
async fn a_form_posted_without_a_session_reaches_the_upstream_after_the_login() {
    let (h, upstream) = start(None).await;
    let b = Browser::new();
    let posted = post_form(&h, &b, "/app/save?draft=1&x=%22", FORM).await;
    assert_eq!(posted.status(), StatusCode::FOUND);
    assert!(location(&posted).starts_with(&format!("{}/authorize?", h.op.issuer())));
    assert_eq!(upstream.count(), 0, "nothing reached the upstream yet");
    // Only an id is in the (sealed) state cookie, never the form.
    let (_, state) = state_cookies(&b, &h).pop().expect("a state cookie");
    assert!(state.len() < 800, "{} characters", state.len());
    assert!(set_cookies(&posted)
        .iter()
        .all(|c| !c.contains("alert") && !c.contains("Save")));

    let callback = h.authorize(&b, &location(&posted), "alice").await;
    let page = b.get(&callback).await;
    assert_eq!(page.status(), StatusCode::OK, "the re-submitting page");
    assert!(sets_session_cookie(&page), "the session is in place");
    assert!(
        state_cookies(&b, &h).is_empty(),
        "the state cookie was cleared"
    );
    assert_no_store(&page);
    let header = |name: &str| page.headers()[name].to_str().unwrap().to_string();
    assert_eq!(header("referrer-policy"), "strict-origin");
    let csp = header("content-security-policy");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a script nonce")
        .to_string();
    assert!(nonce.len() >= 22, "128 random bits: {nonce}");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>alert"), "escaped: {html}");
    assert!(
        html.contains(&format!("<script nonce=\"{nonce}\">")),
        "{html}"
    );
    let (action, fields) = resubmitted_form(&html);
    assert_eq!(action, "/app/save?draft=1&x=%22");
    assert_eq!(fields, decoded(FORM.as_bytes()), "every field, in order");

    let sent = submit(&h, &b, &action, &fields).await;
    assert_eq!(sent.status(), StatusCode::OK);
    let seen = upstream.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/app/save?draft=1&x=%22");
    assert_eq!(decoded(&seen.body), decoded(FORM.as_bytes()));
    assert_eq!(
        seen.headers["oidc_claim_sub"], "alice",
        "the form arrives as the logged-in user"
    );

    // Another page load of the callback finds no login to finish: the form is not sent twice.
    let again = b.get(&callback).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn a_kept_form_is_re_submitted_once_and_only_to_the_browser_that_posted_it() {
    let (h, upstream) = start(None).await;
    let alice = Browser::new();
    let posted = post_form(&h, &alice, "/form", "a=1").await;
    assert_eq!(posted.status(), StatusCode::FOUND);
    let authorize = location(&posted);
    let state = state_cookies(&alice, &h);

    // Another browser logging in meanwhile gets its own login, without the form.
    let bob = Browser::new();
    let callback = h.callback_for(&bob, "/elsewhere", "bob").await;
    let done = bob.get(&callback).await;
    assert_eq!(done.status(), StatusCode::FOUND);
    assert_eq!(location(&done), "/elsewhere");

    let callback = h.authorize(&alice, &authorize, "alice").await;
    let page = alice.get(&callback).await;
    assert_eq!(page.status(), StatusCode::OK);
    let (_, fields) = resubmitted_form(&page.text().await.unwrap());
    assert_eq!(fields, [("a".to_string(), "1".to_string())]);

    // The same login state again (the state cookie put back, a new code for it): the
    // login works, the form was taken by the first callback.
    for (name, value) in &state {
        alice.set_cookie(&h.url("/"), name, value);
    }
    let callback = h.authorize(&alice, &authorize, "alice").await;
    let gone = alice.get(&callback).await;
    assert_eq!(gone.status(), StatusCode::GONE);
    assert!(sets_session_cookie(&gone), "logged in all the same");
    let html = gone.text().await.unwrap();
    assert!(html.contains("Your form was not sent"), "{html}");
    assert!(html.contains("href=\"/form\""), "{html}");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn forms_the_gateway_cannot_keep_get_a_page_that_says_why_and_no_login() {
    let (h, upstream) = start(None).await;
    let b = Browser::new();
    let at_bound = format!("a={}", "x".repeat(64 * 1024 - 2));
    let kept = post_form(&h, &b, "/big", &at_bound).await;
    assert_eq!(kept.status(), StatusCode::FOUND, "64 KiB is kept");

    let b = Browser::new();
    let cases: [(&str, String, StatusCode, &str); 5] = [
        (
            "application/x-www-form-urlencoded",
            format!("a={}", "x".repeat(64 * 1024)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 64 KiB",
        ),
        (
            "application/json",
            "{\"a\":1}".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only plain forms",
        ),
        (
            "multipart/form-data; boundary=XyZ",
            "--XyZ\r\ncontent-disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ--\r\n".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "file uploads",
        ),
        (
            "application/x-www-form-urlencoded; charset=iso-8859-1",
            "a=%E9".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UTF-8",
        ),
        (
            "application/x-www-form-urlencoded",
            "a=%E9t%E9".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UTF-8",
        ),
    ];
    for (content_type, body, status, says) in cases {
        let r = post(&b, &h.url("/save?x=1"), content_type, &h.base, body).await;
        assert_eq!(r.status(), status, "{content_type}");
        assert_no_store(&r);
        assert!(state_cookies(&b, &h).is_empty(), "no login started");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let html = r.text().await.unwrap();
        assert!(html.contains("Your form could not be kept"), "{html}");
        assert!(html.contains(says), "{content_type}: {html}");
        assert!(html.contains("href=\"/save?x=1\">Log in again"), "{html}");
    }

    // From another site: not kept (its re-submission would carry the session cookie).
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = b
            .client
            .post(h.url("/save"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "text/html")
            .header(name, value)
            .body("a=1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        assert!(r.text().await.unwrap().contains("sent from another site"));
    }
    assert!(state_cookies(&b, &h).is_empty());
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_streamed_body_is_read_no_further_than_the_bound() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (h, _upstream) = start(None).await;
    let mut stream = tokio::net::TcpStream::connect(h.gw.addr()).await.unwrap();
    let head = format!(
        "POST /stream HTTP/1.1\r\nhost: {}\r\norigin: {}\r\naccept: text/html\r\n\
         content-type: application/x-www-form-urlencoded\r\ntransfer-encoding: chunked\r\n\r\n",
        h.host(),
        h.base
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
    // 5 chunks of 16 KiB: the fifth passes the bound; the rest is never needed.
    for _ in 0..5 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than 64 KiB"));
}

#[tokio::test]
async fn routes_without_preserve_post_and_script_requests_keep_their_behaviour() {
    let (h, upstream) = start(None).await;
    // Without preserve_post: the login starts, and comes back with a GET (the form is lost,
    // as before).
    let b = Browser::new();
    let posted = post_form(&h, &b, "/plain/save", "a=1").await;
    assert_eq!(posted.status(), StatusCode::FOUND);
    let callback = h.authorize(&b, &location(&posted), "alice").await;
    let done = b.get(&callback).await;
    assert_eq!(done.status(), StatusCode::FOUND);
    assert_eq!(location(&done), "/plain/save");
    // JSON there is not refused either: only preserve_post routes look at the body.
    let b = Browser::new();
    let json = post(&b, &h.url("/plain/x"), "application/json", &h.base, "{}").await;
    assert_eq!(json.status(), StatusCode::FOUND);

    // Script on a preserve_post route: a 401, as on every route.
    let xhr = b
        .client
        .post(h.url("/save"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-requested-with", "XMLHttpRequest")
        .header("origin", &h.base)
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(xhr.status(), StatusCode::UNAUTHORIZED);
    // A GET there logs in and comes back as before.
    let b = Browser::new();
    let echo = h.login(&b, "/page", "alice").await;
    assert_eq!(echo.status(), StatusCode::OK);
    assert_eq!(upstream.last().method, "GET");
    // With a session, a form goes straight through.
    let sent = post_form(&h, &b, "/save", "a=1&b=2").await;
    assert_eq!(sent.status(), StatusCode::OK);
    assert_eq!(upstream.last().body, b"a=1&b=2");
}

#[tokio::test]
async fn with_redis_the_login_may_finish_on_another_replica() {
    let Some(redis) = RedisServer::start_or_skip("preserve_post across replicas") else {
        return;
    };
    let section = Some(format!("url = \"{}\"", redis.url()));
    let (h, upstream) = start(section.clone()).await;
    let (_replica, replica_base) = h
        .another_gateway(Options {
            routes: Some(ROUTES.into()),
            upstream: Some(upstream.url.clone()),
            redis: section,
            ..Options::default()
        })
        .await;
    let b = Browser::new();
    let posted = post_form(&h, &b, "/save", FORM).await;
    assert_eq!(posted.status(), StatusCode::FOUND);
    let callback = h.authorize(&b, &location(&posted), "alice").await;
    // The browser's cookies are per host, not per port: the replica sees them too.
    let on_replica = callback.replace(&h.base, &replica_base);
    assert_ne!(on_replica, callback);
    let page = b.get(&on_replica).await;
    assert_eq!(page.status(), StatusCode::OK, "the replica has the form");
    let (action, fields) = resubmitted_form(&page.text().await.unwrap());
    assert_eq!(fields, decoded(FORM.as_bytes()));
    let sent = submit(&h, &b, &action, &fields).await;
    assert_eq!(sent.status(), StatusCode::OK);
    assert_eq!(decoded(&upstream.last().body), decoded(FORM.as_bytes()));
    assert_eq!(upstream.last().headers["oidc_claim_sub"], "alice");
}

#[tokio::test]
async fn a_redis_that_is_down_is_a_page_not_a_lost_form() {
    let (h, upstream) = start(Some(format!(
        "url = \"redis://127.0.0.1:{}/0\"\ntimeout = \"300ms\"",
        closed_port()
    )))
    .await;
    let b = Browser::new();
    let r = post_form(&h, &b, "/save", "a=1").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        state_cookies(&b, &h).is_empty(),
        "no login without the form"
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("cannot keep forms right now"), "{html}");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn a_reload_during_the_login_keeps_the_form() {
    let (h, upstream) = start(None).await;
    let b = Browser::new();
    let posted = post_form(&h, &b, "/save", "a=1&b=2").await;
    assert_eq!(posted.status(), StatusCode::FOUND);

    // The same file with one more route: the kept forms (same byte bound) carry on.
    let path = std::env::temp_dir().join(format!(
        "oidc-gateway-preserve-post-{}.toml",
        std::process::id()
    ));
    let options = Options {
        routes: Some(format!(
            "{ROUTES}\n[[route]]\npath = \"/more\"\nupstream = \"{{upstream}}\"\nauth = \"none\"\n"
        )),
        ..Options::default()
    };
    std::fs::write(&path, toml(&h.op.issuer(), &upstream.url, &options)).unwrap();
    assert_eq!(h.gw.reloader(&path).reload().await.expect("valid"), 2);
    std::fs::remove_file(&path).unwrap();

    let callback = h.authorize(&b, &location(&posted), "alice").await;
    let page = b.get(&callback).await;
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "the form survived the reload"
    );
    let (action, fields) = resubmitted_form(&page.text().await.unwrap());
    assert_eq!(
        submit(&h, &b, &action, &fields).await.status(),
        StatusCode::OK
    );
    assert_eq!(upstream.last().body, b"a=1&b=2");
}

#[tokio::test]
async fn a_failed_callback_deletes_the_kept_form() {
    let (h, upstream) = start(None).await;
    let b = Browser::new();
    let posted = post_form(&h, &b, "/save", "a=1").await;
    let authorize = location(&posted);
    let state_cookie = state_cookies(&b, &h);
    let state = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");

    // The provider answers with an error: the login fails, and its kept form goes with it.
    let failed = b
        .get(&h.hook_url(&format!("error=access_denied&state={}", enc(&state))))
        .await;
    assert_eq!(failed.status(), StatusCode::BAD_REQUEST);

    // The same login state again, completed this time: logged in, the form is gone.
    for (name, value) in &state_cookie {
        b.set_cookie(&h.url("/"), name, value);
    }
    let callback = h.authorize(&b, &authorize, "alice").await;
    let gone = b.get(&callback).await;
    assert_eq!(gone.status(), StatusCode::GONE);
    assert!(sets_session_cookie(&gone));
    assert_eq!(upstream.count(), 0);
}

/// A client that sends neither `Origin` nor `Sec-Fetch-Site` is not a browser a cross-site
/// page could have made post: its form is kept, as mod_auth_openidc keeps it.
#[tokio::test]
async fn a_form_without_origin_headers_is_kept_too() {
    let (h, _upstream) = start(None).await;
    let b = Browser::new();
    let posted = b
        .client
        .post(h.url("/app/save"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .body("a=1&b=two")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::FOUND);
    let callback = h.authorize(&b, &location(&posted), "alice").await;
    let page = b.get(&callback).await;
    assert_eq!(page.status(), StatusCode::OK);
    let (action, fields) = resubmitted_form(&page.text().await.unwrap());
    assert_eq!(action, "/app/save");
    assert_eq!(fields, decoded(b"a=1&b=two"));
}
