//! HTML pages of the development provider (login form, errors, signed out). Every
//! reflected value goes through [`escape`].

use super::http::escape;

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}\
main{max-width:28rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;\
box-shadow:0 1px 4px #0002}h1{font-size:1.3rem;margin-top:0}\
.dev{background:#fff4ce;border:1px solid #e0c45c;padding:.6rem;border-radius:4px}\
.err{background:#fde7e9;border:1px solid #d13438;padding:.6rem;border-radius:4px}\
label{display:block;margin:1rem 0 .3rem}input{width:100%;padding:.5rem;box-sizing:border-box}\
button{margin-top:1rem;padding:.5rem 1.2rem}code{word-break:break-all}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>{STYLE}</style></head>\
<body><main>{body}</main></body></html>\n",
        title = escape(title),
    )
}

/// What the login form shows and where it posts.
pub(crate) struct LoginForm<'a> {
    /// Path and query of the authorization request; the form posts back to it.
    pub action: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub login_hint: Option<&'a str>,
    pub problem: Option<&'a str>,
}

pub(crate) fn login(form: &LoginForm<'_>) -> String {
    let problem = form
        .problem
        .map(|p| format!("<p class=\"err\" role=\"alert\">{}</p>", escape(p)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Development OpenID Provider</h1>\
<p class=\"dev\"><strong>For development only.</strong> Any user name signs in and there is \
no password. Never put this provider in front of real users.</p>\
<p>Signing in to <strong>{client}</strong>; you will be sent back to <code>{redirect}</code>.</p>\
{problem}\
<form method=\"post\" action=\"{action}\">\
<label for=\"username\">User name</label>\
<input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus value=\"{hint}\">\
<button type=\"submit\">Sign in</button></form>",
        client = escape(form.client_id),
        redirect = escape(form.redirect_uri),
        action = escape(form.action),
        hint = escape(form.login_hint.unwrap_or("")),
    );
    layout("Development OpenID Provider — sign in", &body)
}

pub(crate) fn error(title: &str, detail: &str) -> String {
    let body = format!(
        "<h1>{}</h1><p class=\"err\">{}</p>\
<p>The provider refused this request and did not send you back to the application.</p>",
        escape(title),
        escape(detail),
    );
    layout(title, &body)
}

pub(crate) fn signed_out() -> String {
    layout(
        "You are signed out",
        "<h1>You are signed out</h1><p>You have been signed out of the Development OpenID \
Provider. You may close this window.</p>",
    )
}
