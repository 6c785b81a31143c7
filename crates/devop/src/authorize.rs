//! The authorization endpoint: validates the request (untrusted client or redirect_uri ->
//! error page; anything else -> error redirect), shows the login form, and on POST issues
//! a single-use code.

use http::request::Parts;
use http::{Method, StatusCode};
use hyper::body::Incoming;

use super::error::{AuthRequestError, UntrustedRequest};
use super::http::{escape, html, read_form, redirect, with_query, Params, Resp};
use super::mint::has_scope;
use super::pages::{self, LoginForm};
use super::par;
use super::provider::{lock, Provider};
use super::store::{random_token, AuthCode, Login, Pkce, PkceMethod, CODE_TTL};
use super::token::is_pkce_value;

/// Longest user name the form accepts.
const MAX_USERNAME: usize = 200;

/// A validated authorization request.
struct AuthRequest {
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scope: String,
    pkce: Option<Pkce>,
    prompt_none: bool,
    login_hint: Option<String>,
    /// `response_mode=form_post`: the code comes back in an auto-submitted form.
    form_post: bool,
}

pub(crate) async fn handle(op: &Provider, parts: Parts, body: Incoming) -> Resp {
    let query = parts.uri.query().unwrap_or("");
    let sent = Params::parse(query.as_bytes());
    // A pushed request (RFC 9126): the browser brings only client_id and request_uri.
    let resolved = match sent.get("request_uri") {
        Some(uri) => match par::resolve(op, uri, sent.get("client_id")) {
            Some(pushed) => Some(pushed),
            None => return UntrustedRequest::UnknownRequestUri.response(),
        },
        None if op.require_par.load(std::sync::atomic::Ordering::Relaxed) => {
            return UntrustedRequest::ParRequired.response()
        }
        None => None,
    };
    let params = match &resolved {
        Some(pushed) => Params::parse(pushed.as_bytes()),
        None => sent,
    };
    let redirect_uri = match trusted_redirect_uri(op, &params) {
        Ok(uri) => uri,
        Err(err) => return err.response(),
    };
    let request = match validate(&params, redirect_uri) {
        Ok(request) => request,
        Err((err, redirect_uri)) => {
            return err.response(&redirect_uri, params.get("state"), &op.issuer)
        }
    };
    let action = format!("{}?{query}", parts.uri.path());
    if parts.method != Method::POST {
        return show_form(op, &request, &action);
    }
    match read_form(&parts.headers, body).await {
        Ok(form) => sign_in(op, &request, &action, form.get("username")),
        Err(err) => html(
            StatusCode::BAD_REQUEST,
            pages::error("Invalid sign-in", &err.to_string()),
        ),
    }
}

/// The checks that decide whether we may redirect at all.
fn trusted_redirect_uri(op: &Provider, params: &Params) -> Result<String, UntrustedRequest> {
    for name in ["client_id", "redirect_uri"] {
        if params.is_repeated(name) {
            return Err(UntrustedRequest::RepeatedParameter(name));
        }
    }
    let client_id = params
        .get("client_id")
        .ok_or(UntrustedRequest::MissingClientId)?;
    if client_id != op.client_id {
        return Err(UntrustedRequest::UnknownClient);
    }
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or(UntrustedRequest::MissingRedirectUri)?;
    if !op.is_redirect_uri(redirect_uri) {
        return Err(UntrustedRequest::UnregisteredRedirectUri);
    }
    Ok(redirect_uri.to_owned())
}

/// The checks reported to the client by redirect; the error carries the target back.
fn validate(
    params: &Params,
    redirect_uri: String,
) -> Result<AuthRequest, (AuthRequestError, String)> {
    match check_request(params) {
        Ok(pkce) => Ok(AuthRequest {
            redirect_uri,
            state: params.get("state").map(str::to_owned),
            nonce: params.get("nonce").map(str::to_owned),
            scope: normalized_scope(params.get("scope").unwrap_or("")),
            pkce,
            prompt_none: params.get("prompt").is_some_and(|p| has_scope(p, "none")),
            form_post: params.get("response_mode") == Some("form_post"),
            login_hint: params.get("login_hint").map(str::to_owned),
        }),
        Err(err) => Err((err, redirect_uri)),
    }
}

fn check_request(params: &Params) -> Result<Option<Pkce>, AuthRequestError> {
    if let Some(name) = params.repeated() {
        return Err(AuthRequestError::RepeatedParameter(name.to_owned()));
    }
    if params.get("request").is_some() {
        return Err(AuthRequestError::RequestNotSupported);
    }
    if params.get("request_uri").is_some() {
        return Err(AuthRequestError::RequestUriNotSupported);
    }
    match params.get("response_type") {
        None => return Err(AuthRequestError::MissingResponseType),
        Some("code") => {}
        Some(_) => return Err(AuthRequestError::UnsupportedResponseType),
    }
    if params
        .get("response_mode")
        .is_some_and(|m| m != "query" && m != "form_post")
    {
        return Err(AuthRequestError::UnsupportedResponseMode);
    }
    if !has_scope(params.get("scope").unwrap_or(""), "openid") {
        return Err(AuthRequestError::OpenidScopeMissing);
    }
    pkce(params)
}

/// RFC 7636 §4.3: the method defaults to `plain`.
fn pkce(params: &Params) -> Result<Option<Pkce>, AuthRequestError> {
    let method = params.get("code_challenge_method");
    let Some(challenge) = params.get("code_challenge") else {
        return match method {
            Some(_) => Err(AuthRequestError::ChallengeMethodWithoutChallenge),
            None => Ok(None),
        };
    };
    let method = match method.unwrap_or("plain") {
        "S256" => PkceMethod::S256,
        "plain" => PkceMethod::Plain,
        _ => return Err(AuthRequestError::UnsupportedChallengeMethod),
    };
    if !is_pkce_value(challenge) {
        return Err(AuthRequestError::MalformedChallenge);
    }
    Ok(Some(Pkce {
        challenge: challenge.to_owned(),
        method,
    }))
}

/// Space-separated scope values, deduplicated, in request order.
fn normalized_scope(scope: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(" ")
}

fn show_form(op: &Provider, request: &AuthRequest, action: &str) -> Resp {
    // There is never a session at this provider, so a silent login cannot succeed.
    if request.prompt_none {
        return AuthRequestError::LoginRequired.response(
            &request.redirect_uri,
            request.state.as_deref(),
            &op.issuer,
        );
    }
    login_page(op, request, action, None, StatusCode::OK)
}

fn login_page(
    op: &Provider,
    request: &AuthRequest,
    action: &str,
    problem: Option<&str>,
    status: StatusCode,
) -> Resp {
    let form = LoginForm {
        action,
        client_id: &op.client_id,
        redirect_uri: &request.redirect_uri,
        login_hint: request.login_hint.as_deref(),
        problem,
    };
    html(status, pages::login(&form))
}

fn sign_in(op: &Provider, request: &AuthRequest, action: &str, username: Option<&str>) -> Resp {
    let username = username.map(str::trim).unwrap_or("");
    if let Some(problem) = username_problem(username) {
        return login_page(op, request, action, Some(problem), StatusCode::BAD_REQUEST);
    }
    let now = op.now();
    let login = Login {
        sub: username.to_owned(),
        sid: random_token(),
        auth_time: now,
    };
    let code = AuthCode {
        client_id: op.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        nonce: request.nonce.clone(),
        scope: request.scope.clone(),
        pkce: request.pkce.clone(),
        login,
        expires_at: now + CODE_TTL,
        consumed: false,
        grant_id: random_token(),
    };
    let code = lock(&op.store).insert_code(now, code);
    op.count(|c| c.authorizations += 1);
    let mut pairs = vec![("code", code.as_str())];
    if let Some(state) = &request.state {
        pairs.push(("state", state));
    }
    pairs.push(("iss", &op.issuer));
    if request.form_post {
        return form_post(&request.redirect_uri, &pairs);
    }
    redirect(&with_query(&request.redirect_uri, &pairs))
}

/// OAuth 2.0 Form Post Response Mode: a page whose form POSTs the response parameters to
/// the redirect URI, submitted by its script (or by hand without script).
fn form_post(redirect_uri: &str, pairs: &[(&str, &str)]) -> Resp {
    let inputs: String = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let page = format!(
        "<!doctype html><html><head><title>Submit</title></head><body>\
         <form method=\"post\" action=\"{}\">{inputs}<button type=\"submit\">Continue</button></form>\
         <script>document.forms[0].submit()</script></body></html>",
        escape(redirect_uri)
    );
    let mut resp = html(StatusCode::OK, page);
    // The page's one inline script submits the form.
    resp.headers_mut().insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static("default-src 'none'; script-src 'unsafe-inline'"),
    );
    resp
}

fn username_problem(username: &str) -> Option<&'static str> {
    if username.is_empty() {
        Some("Enter a user name.")
    } else if username.chars().count() > MAX_USERNAME {
        Some("That user name is too long.")
    } else if username.chars().any(char::is_control) {
        Some("A user name cannot contain control characters.")
    } else {
        None
    }
}
